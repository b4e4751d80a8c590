//! Proves `tj` behaves like a careful Unix tool (issue 11): `-q` leaves stdout empty for every
//! summary command and keeps the data of `tail`, `export`, `history` and any `--json` report,
//! with nothing on stderr; `history` of a torrent with no event says so and exits 4 (`-q`:
//! silently); `restore` refuses an existing target (exit 2, target untouched) unless
//! `--force`; bad numbers and durations are usage errors naming the flag, never a panic, while
//! `--retain "1d 12h"` works; `compact` seals the one active segment of a closed journal so it
//! can be removed (into an `--archive` directory it creates) — by the compaction after the
//! one whose snapshot covers it (two generations) —, writes no snapshot when nothing
//! is removable (counted over repeated runs), keeps export and the retained window intact, and
//! its `--help` says what is kept and why. Runs the real binary (`CARGO_BIN_EXE_tj`) in temporary
//! directories.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// A demo store with `torrents` torrents and `events` events, one segment.
fn demo(dir: &Path, torrents: &str, events: &str) {
    let dir = dir.to_str().unwrap();
    let (out, err) = run(
        &[
            "demo",
            "--dir",
            dir,
            "--torrents",
            torrents,
            "--events",
            events,
            "-q",
        ],
        0,
    );
    assert_eq!(out, "", "demo -q prints nothing on stdout");
    assert_eq!(err, "", "demo -q prints nothing on stderr");
}

#[test]
fn quiet_silences_summaries_and_keeps_data() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "40", "1200");
    let t = |name: &str| tmp.path().join(name).to_str().unwrap().to_owned();

    // Without -q the summary commands do talk: the silence below is -q's doing.
    assert!(!run(&["stats", ds], 0).0.is_empty());
    assert!(!run(&["verify", ds], 0).0.is_empty());

    let silent: Vec<Vec<String>> = vec![
        vec!["stats".into(), ds.into()],
        vec!["verify".into(), ds.into()],
        vec![
            "replay".into(),
            ds.into(),
            "--into".into(),
            format!("sqlite:{}", t("r.db")),
        ],
        vec![
            "follow".into(),
            ds.into(),
            "--into".into(),
            format!("sqlite:{}", t("f.db")),
            "--exit-at-seq".into(),
            "1200".into(),
        ],
        vec![
            "restore".into(),
            ds.into(),
            "--at".into(),
            "600".into(),
            "--into".into(),
            format!("sqlite:{}", t("at600.db")),
        ],
        vec!["salvage".into(), ds.into(), "--out".into(), t("salvaged")],
    ];
    for args in &silent {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push("-q");
        let (out, err) = run(&args, 0);
        assert_eq!(out, "", "{args:?} -q: stdout");
        assert_eq!(err, "", "{args:?} -q: stderr");
    }

    // Data commands keep their data, and nothing else.
    let (tail, err) = run(&["tail", ds, "-q"], 0);
    assert_eq!(tail.lines().count(), 1200);
    assert_eq!(err, "");
    let (followed, err) = run(&["tail", ds, "--follow", "--exit-at-seq", "10", "-q"], 0);
    assert_eq!(followed.lines().count(), 10);
    assert_eq!(err, "");
    let (export, err) = run(&["export", ds, "-q"], 0);
    assert_eq!(json(&export)["seq"], 1200);
    assert_eq!(err, "");
    let events: Vec<Value> = tail.lines().map(json).collect();
    let removed = events
        .iter()
        .find(|e| e["event"] == "torrent-removed")
        .expect("the demo removes a torrent");
    let hash = removed["info_hash"].as_str().unwrap();
    let (history, err) = run(&["history", ds, hash, "-q"], 0);
    assert!(history.lines().count() > 1, "{history}");
    assert_eq!(err, "");
    // An explicit --json report is data too.
    let (stats, err) = run(&["stats", ds, "--json", "-q"], 0);
    assert_eq!(json(&stats)["events"], 1200);
    assert_eq!(err, "");

    // Commands that write: silent with -q, and they did their work.
    let (out, err) = run(&["undelete", ds, hash, "-q"], 0);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let (out, err) = run(&["compact", ds, "-q"], 0);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let exported = json(&run(&["export", ds, "-q"], 0).0);
    assert_eq!(exported["seq"], 1201, "the undelete event is the head");
    assert_eq!(
        count(&d.join("snapshots"), ".snap"),
        1,
        "compact wrote its snapshot"
    );
    let (out, err) = run(&["demo", "--dir", ds, "--events", "10", "-q"], 0);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    assert_eq!(json(&run(&["export", ds, "-q"], 0).0)["seq"], 1211);
}

#[test]
fn damage_under_quiet_is_one_line_on_stderr_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "10", "300");
    let segment = std::fs::read_dir(d.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x5A;
    std::fs::write(&segment, &bytes).unwrap();
    let (out, err) = run(&["verify", ds, "-q"], 1);
    assert_eq!(out, "");
    assert!(err.contains("1 problem(s) found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn history_of_a_torrent_without_events_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "5", "50");
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    let (out, err) = run(&["history", ds, unknown], 4);
    assert_eq!(out, "");
    assert!(err.contains("no retained event"), "{err}");
    assert!(err.contains(unknown), "{err}");
    let (out, err) = run(&["history", ds, unknown, "-q"], 4);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let (help, _) = run(&["--help"], 0);
    assert!(help.contains("4  nothing found"), "{help}");
}

#[test]
fn restore_refuses_an_existing_target_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "5", "100");

    let db = tmp.path().join("existing.db");
    std::fs::write(&db, b"precious").unwrap();
    let into = format!("sqlite:{}", db.display());
    let (out, err) = run(&["restore", ds, "--at", "50", "--into", &into], 2);
    assert_eq!(out, "");
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&db).unwrap(), b"precious", "nothing written");

    let files = tmp.path().join("existing-dir");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("keep"), b"x").unwrap();
    let into_files = format!("files:{}", files.display());
    run(&["restore", ds, "--at", "50", "--into", &into_files], 2);
    let names: Vec<_> = std::fs::read_dir(&files).unwrap().collect();
    assert_eq!(names.len(), 1, "nothing written into the directory");

    // --force replaces them.
    std::fs::remove_file(&db).unwrap();
    let fresh = format!("sqlite:{}", db.display());
    run(&["restore", ds, "--at", "50", "--into", &fresh, "-q"], 0);
    run(&["restore", ds, "--at", "50", "--into", &fresh, "-q"], 2);
    run(
        &[
            "restore", ds, "--at", "80", "--into", &fresh, "--force", "-q",
        ],
        0,
    );
    let conn = rusqlite::Connection::open(&db).unwrap();
    let seq: i64 = conn
        .query_row("SELECT seq FROM tj_checkpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, 80);
}

#[test]
fn bad_numbers_and_durations_are_usage_errors_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "5", "50");
    let fresh = tmp.path().join("fresh");
    let fs = fresh.to_str().unwrap();
    let huge = "18446744073709551615";
    let bigger = "99999999999999999999999";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["demo", "--dir", fs, "--torrents", huge], "--torrents"),
        (vec!["demo", "--dir", fs, "--torrents", "0"], "--torrents"),
        (vec!["demo", "--dir", fs, "--torrents", "-1"], "--torrents"),
        (vec!["demo", "--dir", fs, "--events", huge], "--events"),
        (vec!["demo", "--dir", fs, "--events", bigger], "--events"),
        (vec!["demo", "--dir", fs, "--tasks", "0"], "--tasks"),
        (vec!["demo", "--dir", fs, "--tasks", huge], "--tasks"),
        (
            vec!["demo", "--dir", fs, "--segment-mib", "0"],
            "--segment-mib",
        ),
        (
            vec!["demo", "--dir", fs, "--segment-mib", huge],
            "--segment-mib",
        ),
        (
            vec!["demo", "--dir", fs, "--durability", "interval:0"],
            "--durability",
        ),
        (
            vec!["demo", "--dir", fs, "--durability", "interval:x"],
            "--durability",
        ),
        (
            vec![
                "demo",
                "--dir",
                fs,
                "--durability",
                "interval:99999999999999999999",
            ],
            "--durability",
        ),
        (
            vec!["demo", "--dir", fs, "--durability", "interval:2h"],
            "--durability",
        ),
        (vec!["tail", ds, "--from", "-1"], "--from"),
        (
            vec!["compact", ds, "--retain-events", "-5"],
            "--retain-events",
        ),
        (vec!["demo", "--dir", fs, "--tasks", "-3"], "--tasks"),
        (vec!["tail", ds, "--from", huge], "--from"),
        (
            vec!["tail", ds, "--follow", "--poll-interval-ms", "0"],
            "--poll-interval-ms",
        ),
        (
            vec!["tail", ds, "--follow", "--idle-exit-ms", huge],
            "--idle-exit-ms",
        ),
        (
            vec!["tail", ds, "--follow", "--exit-at-seq", huge],
            "--exit-at-seq",
        ),
        (
            vec![
                "follow",
                ds,
                "--into",
                "sqlite:x.db",
                "--poll-interval-ms",
                bigger,
            ],
            "--poll-interval-ms",
        ),
        (
            vec!["compact", ds, "--retain-events", huge],
            "--retain-events",
        ),
        (vec!["compact", ds, "--retain", "7"], "--retain"),
        (vec!["compact", ds, "--retain", "1d2"], "--retain"),
        (
            vec!["compact", ds, "--retain", "99999999999999999999d"],
            "--retain",
        ),
        (vec!["compact", ds, "--retain", "-1h"], "--retain"),
        (vec!["export", ds, "--at", bigger], "--at"),
        (
            vec!["restore", ds, "--at", "yesterday", "--into", "sqlite:y.db"],
            "--at",
        ),
    ];
    for (args, flag) in &cases {
        let output = tj(args);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(flag),
            "{args:?}: the message names {flag}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!fresh.exists(), "no bad demo created its directory");

    // Humantime durations, with a space, work.
    for retain in ["1d 12h", "1d12h", "90s", "0"] {
        run(&["compact", ds, "--retain", retain, "-q"], 0);
    }
    let (out, _) = run(
        &[
            "demo",
            "--dir",
            fs,
            "--torrents",
            "2",
            "--events",
            "20",
            "--durability",
            "interval:250ms",
            "--json",
            "-q",
        ],
        0,
    );
    assert_eq!(json(&out)["durability"], "interval (250 ms)");
}

fn count(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(suffix)
            })
            .count()
    })
}

#[test]
fn compact_seals_a_single_segment_removes_it_and_never_adds_empty_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    // Segments large enough that each demo run fits in one (real torrents make big events).
    let big = ["--segment-mib", "1024", "-q"];
    run(
        &[
            &["demo", "--dir", ds, "--torrents", "40", "--events", "2000"],
            &big[..],
        ]
        .concat(),
        0,
    );
    let journal = d.join("journal");
    let snapshots = d.join("snapshots");
    assert_eq!(count(&journal, ".seg"), 1, "the demo wrote one segment");
    let before = run(&["export", ds, "-q"], 0).0;

    // 500 retained events: the one segment holds them, so it stays; it is sealed (a closed
    // journal), and no snapshot is written, however often this runs.
    for _ in 0..2 {
        let report = json(&run(&["compact", ds, "--retain-events", "500", "--json"], 0).0);
        assert_eq!(report["snapshot_written"], false, "{report}");
        assert_eq!(report["segments_removed"], 0, "{report}");
    }
    assert_eq!(count(&snapshots, ".snap"), 0);
    assert_eq!(
        count(&journal, ".seg"),
        2,
        "sealed: a new empty active segment"
    );

    // More events land in the new segment; now the old one lies before the boundary and goes,
    // into an archive directory that did not exist.
    run(
        &[&["demo", "--dir", ds, "--events", "1000"], &big[..]].concat(),
        0,
    );
    let after_demo = run(&["export", ds, "-q"], 0).0;
    let archive = tmp.path().join("archive/nested");
    let archive_arg = archive.to_str().unwrap();
    let compact_archiving = |retain: &str| {
        let args = [
            "compact",
            ds,
            "--retain-events",
            retain,
            "--archive",
            archive_arg,
            "--json",
        ];
        json(&run(&args, 0).0)
    };
    // The first snapshot has no previous generation: the old segment stays for now.
    let report = compact_archiving("600");
    assert_eq!(report["snapshot_seq"], 2400, "{report}");
    assert_eq!(report["segments_removed"], 0, "{report}");
    // The next one removes what the first snapshot covers.
    let report = compact_archiving("500");
    assert_eq!(report["snapshot_seq"], 2500, "{report}");
    assert_eq!(report["previous_snapshot_seq"], 2400, "{report}");
    assert_eq!(report["segments_removed"], 1, "{report}");
    assert_eq!(report["segments_archived"], 1, "{report}");
    assert_eq!(
        count(&archive, ".seg"),
        1,
        "archived into the created directory"
    );
    assert_eq!(count(&snapshots, ".snap"), 2);
    let stats = json(&run(&["stats", ds, "--json"], 0).0);
    assert_eq!(stats["first_seq"], 2001, "{stats}");
    assert_eq!(stats["last_seq"], 3000, "{stats}");
    let (stats_text, _) = run(&["stats", ds], 0);
    assert!(
        stats_text.contains("retained      from seq 2001"),
        "{stats_text}"
    );
    // `tail` without --from starts where the journal now starts, and says so on stderr.
    let (tail, note) = run(&["tail", ds], 0);
    let seqs: Vec<u64> = tail
        .lines()
        .map(|l| json(l)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.first(), Some(&2001));
    assert_eq!(seqs.len(), 1000);
    assert!(note.contains("holds seq 2001 onward"), "{note}");
    assert_eq!(run(&["tail", ds, "-q"], 0).1, "", "-q: no note");
    assert_eq!(run(&["export", ds, "-q"], 0).0, after_demo, "same state");
    assert_eq!(
        json(&run(&["export", ds, "--at", "2500", "-q"], 0).0)["seq"],
        2500,
        "the boundary is restorable"
    );
    // The archive still restores the old history.
    let old = run(
        &["export", ds, "--at", "2000", "--archive", archive_arg, "-q"],
        0,
    )
    .0;
    assert_eq!(old, before);

    // A rerun with nothing new to remove writes nothing.
    for _ in 0..2 {
        let report = json(&run(&["compact", ds, "--retain-events", "500", "--json"], 0).0);
        assert_eq!(report["snapshot_written"], false, "{report}");
        assert_eq!(report["segments_removed"], 0, "{report}");
    }
    assert_eq!(count(&snapshots, ".snap"), 2, "no snapshot per no-op run");

    // Compacting to the head keeps the journal back to the previous snapshot (seq 2500, inside
    // the retained segment); the store reopens and continues its seqs; once a later snapshot
    // exists, the next compaction to the head removes everything the one at seq 3000 covers.
    let report = json(&run(&["compact", ds, "--json"], 0).0);
    assert_eq!(report["snapshot_seq"], 3000, "{report}");
    assert_eq!(report["previous_snapshot_seq"], 2500, "{report}");
    assert_eq!(report["segments_removed"], 0, "{report}");
    assert_eq!(run(&["export", ds, "-q"], 0).0, after_demo);
    run(&["verify", ds, "-q"], 0);
    let more = json(&run(&["demo", "--dir", ds, "--events", "10", "--json", "-q"], 0).0);
    assert_eq!(more["first_seq"], 3001);
    let after_more = run(&["export", ds, "-q"], 0).0;
    let report = json(&run(&["compact", ds, "--json"], 0).0);
    assert_eq!(report["snapshot_seq"], 3010, "{report}");
    assert_eq!(report["previous_snapshot_seq"], 3000, "{report}");
    assert!(
        report["segments_removed"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let stats = json(&run(&["stats", ds, "--json"], 0).0);
    assert_eq!(stats["first_seq"], 3001, "{stats}");
    assert_eq!(run(&["export", ds, "-q"], 0).0, after_more);
    run(&["verify", ds, "-q"], 0);
}

#[test]
fn compact_help_says_what_is_kept_and_why() {
    let (help, _) = run(&["compact", "--help"], 0);
    for needle in [
        "retention boundary",
        "--retain-events",
        "--retain",
        "snapshot",
        "one older snapshot",
        "previous snapshot",
        "only after the covering",
        "durable",
        "nothing to remove writes no snapshot",
        "sealed",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}

/// A torn tail past the durable position (bytes of a write that was never acknowledged) is
/// noted, not damage: `verify` exits 0 and says the next open cuts it; damage the durable
/// position covers still exits 1.
#[test]
fn verify_notes_an_unacknowledged_torn_tail_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    demo(&d, "3", "40");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(d.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let clean_len = bytes.len();
    bytes.extend_from_slice(&[0xab; 100]);
    std::fs::write(&last, &bytes).unwrap();

    let (report, _) = run(&["verify", ds], 0);
    assert!(report.contains("NOTE (an unacknowledged write"), "{report}");
    assert!(
        report.contains("ok: every acknowledged frame verified"),
        "{report}"
    );
    assert!(!report.contains("DAMAGE"), "{report}");
    assert_eq!(
        run(&["verify", ds, "-q"], 0),
        (String::new(), String::new())
    );

    // A flipped byte inside the acknowledged frames is damage.
    bytes[clean_len - 10] ^= 0x40;
    std::fs::write(&last, &bytes).unwrap();
    let (report, _) = run(&["verify", ds], 1);
    assert!(report.contains("DAMAGE"), "{report}");
}
