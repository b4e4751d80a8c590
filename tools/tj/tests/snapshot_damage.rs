//! Proves issue 13 §1 is fixed end to end with the real `tj` binary on a real directory: a demo
//! store compacted twice, then one bit flipped in the middle of its newest snapshot, still
//! exports the same state (from the previous snapshot, which the retained journal continues);
//! `tj verify` names the damaged snapshot and exits 1; `tj salvage` carries the usable snapshot
//! over, so the salvaged store exports the same state and verifies clean — and a healthy
//! compacted store salvages to the same export too. When no snapshot continues the journal
//! (all deleted), `tj export` is damage: exit 1, not a usage error; a point before the retained
//! history stays a usage error (2).

mod common;

use std::path::Path;

use common::*;

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    paths.sort();
    paths
}

/// A demo store compacted twice (the second compaction removed segments); its export.
fn compacted_demo(dir: &Path) -> String {
    let ds = dir.to_str().unwrap();
    run(
        &[
            "demo",
            "--dir",
            ds,
            "--torrents",
            "30",
            "--events",
            "1500",
            "--segment-mib",
            "1",
            "-q",
        ],
        0,
    );
    let segments = std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert!(segments >= 4, "{segments} segments: too few to compact");
    let export = run(&["export", ds, "-q"], 0).0;
    let first = json(
        &run(
            &["compact", ds, "--retain-events", "900", "--json", "-q"],
            0,
        )
        .0,
    );
    assert_eq!(first["segments_removed"], 0, "first generation: {first}");
    let second = json(
        &run(
            &["compact", ds, "--retain-events", "300", "--json", "-q"],
            0,
        )
        .0,
    );
    assert!(second["segments_removed"].as_u64().unwrap() > 0, "{second}");
    let stats = json(&run(&["stats", ds, "--json"], 0).0);
    let first_seq = stats["first_seq"].as_u64().unwrap();
    assert!(first_seq > 1 && first_seq <= 601, "{stats}");
    assert_eq!(snapshots(dir).len(), 2);
    assert_eq!(
        run(&["export", ds, "-q"], 0).0,
        export,
        "compaction keeps the state"
    );
    export
}

#[test]
fn a_damaged_newest_snapshot_loses_nothing_and_is_reported_as_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    let export = compacted_demo(&d);
    let (verified, _) = run(&["verify", ds], 0);
    assert!(
        verified.contains("ok: every frame verified and 2 snapshot(s)"),
        "{verified}"
    );

    let newest = snapshots(&d).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x08;
    std::fs::write(&newest, bytes).unwrap();

    // Verify checks snapshots: damage, exit 1, the file named.
    let (verified, _) = run(&["verify", ds], 1);
    assert!(verified.contains("DamagedSnapshot"), "{verified}");
    assert!(
        verified.contains(newest.file_name().unwrap().to_str().unwrap()),
        "{verified}"
    );
    let report = json(&run(&["verify", ds, "--json", "-q"], 1).0);
    assert_eq!(
        report["problems"][0]["kind"], "damaged-snapshot",
        "{report}"
    );
    let (_, err) = run(&["verify", ds, "-q"], 1);
    assert!(err.contains("1 problem(s) found"), "{err}");

    // Export falls back to the previous snapshot (with a warning) and loses nothing.
    let (out, warning) = run(&["export", ds], 0);
    assert_eq!(out, export);
    assert!(warning.contains("snapshot"), "{warning}");
    assert_eq!(run(&["export", ds, "-q"], 0).0, export);

    // Salvage carries the usable snapshot over: the result opens to the same state.
    let s2 = tmp.path().join("s2");
    let s2s = s2.to_str().unwrap();
    let report = json(&run(&["salvage", ds, "--out", s2s, "--json", "-q"], 0).0);
    assert_eq!(report["snapshots_copied"], 1, "{report}");
    assert_eq!(
        report["snapshots_not_copied"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(run(&["export", s2s, "-q"], 0).0, export);
    run(&["verify", s2s, "-q"], 0);

    // With no snapshot at all, nothing continues the journal: damage (1), not usage (2).
    std::fs::remove_dir_all(d.join("snapshots")).unwrap();
    let (_, err) = run(&["export", ds, "-q"], 1);
    assert!(err.contains("no usable snapshot covers seq"), "{err}");
    let (verified, _) = run(&["verify", ds], 1);
    assert!(verified.contains("NoContinuingSnapshot"), "{verified}");
}

#[test]
fn a_healthy_compacted_store_salvages_to_the_same_export() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let ds = d.to_str().unwrap();
    let export = compacted_demo(&d);
    let s2 = tmp.path().join("s2");
    let s2s = s2.to_str().unwrap();
    let report = json(&run(&["salvage", ds, "--out", s2s, "--json", "-q"], 0).0);
    assert_eq!(report["snapshots_copied"], 2, "{report}");
    assert_eq!(run(&["export", s2s, "-q"], 0).0, export);
    run(&["verify", s2s, "-q"], 0);

    // A point before the retained history is still a usage error naming the earliest seq.
    let (_, err) = run(&["export", ds, "--at", "5", "-q"], 2);
    assert!(err.contains("earliest restorable point"), "{err}");
}
