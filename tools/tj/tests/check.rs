//! Proves `tj check` end to end with the real binary: on a `tj demo` store (20 torrents, 600
//! events, SQLite and file projections) it exits 0; after a Go-like program changed one torrent's
//! row in `state.db` (status and `updated_date`) and another's `torrents/<hex>.json`, it exits 1
//! and names both info hashes, `--json` prints a report that parses and says the same;
//! `--repair` exits 0 after rebuilding both projections (the drifted ones moved to
//! `*.drifted-<time>`), and the next `tj check` exits 0. A directory that is not a store is a
//! usage error (exit 2).

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Changes the first torrent row (by info hash) the way a Go upsert would; returns its hash.
fn tamper_sqlite(dir: &Path) -> String {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let hash: String = conn
        .query_row(
            "SELECT info_hash FROM torrents ORDER BY info_hash LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let changed = conn
        .execute(
            "UPDATE torrents SET status = status + 100,
                                 updated_date = '2031-01-01 00:00:00+00:00'
             WHERE info_hash = ?1",
            [&hash],
        )
        .unwrap();
    assert_eq!(changed, 1);
    hash
}

/// Rewrites the last torrent file (by name) with another download directory; returns its hash.
fn tamper_files(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("files/torrents"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let path = files.last().unwrap();
    let mut value: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    value["download_dir"] = "/moved/by/hand".into();
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn check_finds_drift_repair_heals_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let d = dir.to_str().unwrap();
    tj_expect(
        &[
            "demo",
            "--dir",
            d,
            "--torrents",
            "20",
            "--events",
            "600",
            "--projection",
            "all",
            "--quiet",
        ],
        0,
    );
    let clean = tj_expect(&["check", d], 0);
    assert!(
        clean.contains("sqlite") && clean.contains("files"),
        "{clean}"
    );

    let row = tamper_sqlite(&dir);
    let file = tamper_files(&dir);
    assert_ne!(row, file, "two different torrents");
    let text = tj_expect(&["check", d], 1);
    assert!(
        text.contains(&format!("changed  {row}  (status)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("changed  {file}  (download_dir)")),
        "{text}"
    );

    let json: Value = serde_json::from_str(&tj_expect(&["check", d, "--json"], 1)).unwrap();
    let projections = json["projections"].as_array().unwrap();
    assert_eq!(projections.len(), 2);
    let listed = |i: usize| -> Vec<(String, String)> {
        projections[i]["torrents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["info_hash"].as_str().unwrap().to_owned(),
                    t["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(projections[0]["projection"], "sqlite");
    assert_eq!(projections[0]["verdict"], "drifted");
    assert_eq!(listed(0), vec![(row.clone(), "changed".to_owned())]);
    assert_eq!(projections[1]["projection"], "files");
    assert_eq!(listed(1), vec![(file.clone(), "changed".to_owned())]);

    let repaired: Value =
        serde_json::from_str(&tj_expect(&["check", d, "--repair", "--json"], 0)).unwrap();
    for p in repaired["projections"].as_array().unwrap() {
        assert_eq!(p["repair"]["verdict_after"], "clean", "{p}");
        assert!(Path::new(p["repair"]["set_aside"].as_str().unwrap()).exists());
    }
    tj_expect(&["check", d], 0);
    tj_expect(&["check", d, "--quiet"], 0);

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    tj_expect(&["check", empty.to_str().unwrap()], 2);
}
