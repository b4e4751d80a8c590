//! Proves the time-travel and maintenance commands end to end on a real directory:
//! `tj compact` leaves `tj export` unchanged, shrinks the journal folder, and keeps restore
//! working inside the retained window; `tj restore` writes a SQLite projection as of a seq and
//! refuses to touch the live one; a target before the retained history is a clear error with
//! the earliest seq; `tj history` lists one torrent's events; `tj undelete` brings back a
//! removed torrent; `tj demo` leaves a SQLite database `sqlite3`-style queries can read; hostile
//! input (a path-like info hash, a store that is a file) is a usage error that writes nothing.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn compact_export_restore_history_undelete() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    tj_expect(
        &[
            "demo",
            "--dir",
            ds,
            "--torrents",
            "60",
            "--events",
            "3000",
            "--segment-mib",
            "1",
            "-q",
        ],
        0,
    );

    // The SQLite projection is a plain database with the seed's schema.
    let conn = rusqlite::Connection::open(d.join("state.db")).unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM torrents", [], |r| r.get(0))
        .unwrap();
    assert!(count > 0);
    drop(conn);

    let before = tj_expect(&["export", ds, "-q"], 0);
    let at_1500 = json(&tj_expect(&["export", ds, "--at", "1500", "-q"], 0));
    assert_eq!(at_1500["seq"], 1500);
    let journal = d.join("journal");
    let bytes_before = dir_bytes(&journal);

    // The first compaction has no previous generation: it writes a snapshot, removes nothing.
    let report = json(&tj_expect(
        &["compact", ds, "--retain-events", "2000", "--json", "-q"],
        0,
    ));
    assert_eq!(report["snapshot_seq"], 1000);
    assert_eq!(report["segments_removed"], 0, "{report}");
    // The second removes what the first snapshot covers.
    let report = json(&tj_expect(
        &["compact", ds, "--retain-events", "1000", "--json", "-q"],
        0,
    ));
    assert_eq!(report["snapshot_seq"], 2000);
    assert_eq!(report["previous_snapshot_seq"], 1000);
    assert!(report["segments_removed"].as_u64().unwrap() > 0, "{report}");
    assert!(
        dir_bytes(&journal) < bytes_before,
        "the journal folder is smaller"
    );
    assert_eq!(
        tj_expect(&["export", ds, "-q"], 0),
        before,
        "compaction keeps the state"
    );
    assert_eq!(
        json(&tj_expect(&["export", ds, "--at", "2500", "-q"], 0))["seq"],
        2500
    );

    // Before the retained window: a usage error that names the earliest restorable seq.
    // (The previous generation, seq 1000, is the earliest restorable point.)
    assert_eq!(
        json(&tj_expect(&["export", ds, "--at", "1500", "-q"], 0))["seq"],
        1500
    );
    let output = tj(&["export", ds, "--at", "500", "-q"]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("seq 1000"), "{message}");

    // Restore as of a seq into a new SQLite file; the live one is refused.
    let restored = tmp.path().join("at2500.db");
    let target = format!("sqlite:{}", restored.display());
    let summary = json(&tj_expect(
        &[
            "restore", ds, "--at", "2500", "--into", &target, "--json", "-q",
        ],
        0,
    ));
    assert_eq!(summary["seq"], 2500);
    let conn = rusqlite::Connection::open(&restored).unwrap();
    let seq: i64 = conn
        .query_row("SELECT seq FROM tj_checkpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, 2500);
    let live = format!("sqlite:{}", d.join("state.db").display());
    assert_eq!(
        tj(&["restore", ds, "--at", "2500", "--into", &live, "-q"])
            .status
            .code(),
        Some(2)
    );

    // History of one torrent, then remove it and undelete it.
    let export = json(&before);
    let torrent = &export["torrents"][0];
    let hash = torrent["info_hash"].as_str().unwrap().to_owned();
    let history = tj_expect(&["history", ds, &hash], 0);
    assert!(history.lines().count() > 0);
    assert!(
        history
            .lines()
            .all(|l| json(l)["info_hash"] == hash.as_str() || l.contains(&hash))
    );
}

#[test]
fn undelete_restores_a_removed_torrent_from_its_tombstone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    tj_expect(
        &[
            "demo",
            "--dir",
            ds,
            "--torrents",
            "40",
            "--events",
            "1200",
            "-q",
        ],
        0,
    );
    // Find a torrent the demo removed.
    let tail = tj_expect(&["tail", ds], 0);
    let removed = tail
        .lines()
        .map(json)
        .find(|e| e["event"] == "torrent-removed")
        .expect("the demo removes a few torrents");
    let hash = removed["info_hash"].as_str().unwrap().to_owned();
    let has = |export: &Value| {
        export["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["info_hash"] == hash.as_str())
    };
    assert!(!has(&json(&tj_expect(&["export", ds, "-q"], 0))));
    tj_expect(&["compact", ds, "-q"], 0);
    tj_expect(&["undelete", ds, &hash, "-q"], 0);
    assert!(
        has(&json(&tj_expect(&["export", ds, "-q"], 0))),
        "the torrent is back"
    );
    // A live torrent has nothing to undelete.
    assert_eq!(tj(&["undelete", ds, &hash, "-q"]).status.code(), Some(2));
}

#[test]
fn hostile_input_is_a_usage_error_that_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    tj_expect(
        &[
            "demo",
            "--dir",
            ds,
            "--torrents",
            "5",
            "--events",
            "50",
            "-q",
        ],
        0,
    );
    let listing = |dir: &Path| {
        let mut names: Vec<String> = walk(dir);
        names.sort();
        names
    };
    let before = listing(&d);
    for bad in [
        "../../etc/passwd",
        "abc",
        "0123456789abcdef0123456789abcdef0123456",
        "zz23456789abcdef0123456789abcdef01234567",
    ] {
        let output = tj(&["history", ds, bad]);
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let message = String::from_utf8_lossy(&output.stderr);
        assert!(message.contains("hex"), "{bad}: {message}");
        assert_eq!(tj(&["undelete", ds, bad]).status.code(), Some(2), "{bad}");
    }
    assert_eq!(listing(&d), before, "nothing was written");

    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a store").unwrap();
    let fs = file.to_str().unwrap();
    for args in [
        vec!["demo", "--dir", fs, "-q"],
        vec!["verify", fs],
        vec!["export", fs],
        vec!["compact", fs],
    ] {
        let output = tj(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a store");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(format!(
                "{} {}",
                path.display(),
                std::fs::metadata(&path).unwrap().len()
            ));
        }
    }
    out
}
