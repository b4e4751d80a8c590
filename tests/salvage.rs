//! Proves salvage keeps everything that can be kept and says exactly what could not: a journal
//! with a damaged frame mid-log (which refuses to open) is salvaged into a new journal that
//! opens and verifies clean, holds every other event in order with renumbered seqs, and whose
//! report locates the damage, names the affected torrent and quarantines the bytes. A compacted
//! store (its journal starts after seq 1) is salvaged with its snapshots, verified, carried
//! over, so the result opens at the same head — also when its newest snapshot is damaged (left
//! behind, named in the report; the previous one plus the retained journal reach the head) —
//! and verify reports the damaged snapshot, and a journal no snapshot continues. Real files in
//! a temp dir for the compacted stores.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::event::Event;
use torrent_journal::history::{self, Target};
use torrent_journal::journal::ProblemKind;
use torrent_journal::salvage::salvage;
use torrent_journal::snapshot;
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalReader, verify};

#[test]
fn a_journal_damaged_mid_log_is_salvaged_with_a_precise_report() {
    let storage = torrent_storage(10);
    let path = &segments(&storage)[0];
    let mut bytes = storage.file_bytes(path).unwrap();
    let starts = frame_starts(&bytes);
    // Damage a letter of the download directory in seq 4's payload: a checksum mismatch whose
    // payload still decodes, so the report can name the torrent.
    let frame = &bytes[starts[3]..starts[4]];
    let at = frame.windows(9).position(|w| w == b"downloads").unwrap();
    bytes[starts[3] + at] ^= 0x01;
    storage.put_file(path, bytes.clone());
    assert!(Journal::open_with(SIM_DIR, sim_options(&storage, 1 << 20)).is_err());

    let out = Path::new("/salvaged");
    let report = salvage(&storage, Path::new(SIM_DIR), out).unwrap();
    assert_eq!(report.events_kept, 9);
    assert_eq!(report.regions.len(), 1);
    let region = &report.regions[0];
    assert_eq!(region.problem.offset, starts[3] as u64);
    assert_eq!(region.problem.seq, Some(4));
    assert_eq!(region.problem.damaged_bytes, (starts[4] - starts[3]) as u64);
    // The damaged frame still names its torrent (the flip is in the payload's tail).
    let Event::TorrentSaved { torrent } = torrent_event(4) else {
        unreachable!()
    };
    assert_eq!(region.problem.affected_torrents, vec![torrent.info_hash]);
    let quarantine = storage
        .file_bytes(&out.join("salvage/quarantine.bin"))
        .unwrap();
    assert_eq!(quarantine, bytes[starts[3]..starts[4]].to_vec());
    assert_eq!(report.renumbered.len(), 1);
    assert_eq!(
        (
            report.renumbered[0].old_first,
            report.renumbered[0].new_first,
            report.renumbered[0].count
        ),
        (5, 4, 6)
    );

    // The salvaged journal verifies, opens, and holds every other event in order.
    assert!(verify(&storage, out).unwrap().is_clean());
    Journal::open_with(out, sim_options(&storage, 1 << 20))
        .unwrap()
        .close()
        .unwrap();
    let events: Vec<Event> = JournalReader::with_storage(Arc::new(storage.clone()), out)
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().event)
        .collect();
    let expected: Vec<Event> = (1..=10).filter(|&n| n != 4).map(torrent_event).collect();
    assert_eq!(events, expected);
}

#[test]
fn salvage_refuses_a_non_empty_output_directory() {
    let storage = sim_journal(3, 1 << 20);
    let err = salvage(&storage, Path::new(SIM_DIR), Path::new(SIM_DIR)).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// A simulated journal of `count` realistic torrent events.
fn torrent_storage(count: u64) -> torrent_journal::storage::SimStorage {
    let storage = torrent_journal::storage::SimStorage::new();
    let journal = Journal::open_with(SIM_DIR, sim_options(&storage, 1 << 20)).unwrap();
    for n in 1..=count {
        journal.append(&torrent_event(n)).unwrap();
    }
    journal.close().unwrap();
    storage
}

/// A closed store in `dir` compacted twice (the second compaction removed segments), and the
/// state at its head.
fn compacted_store(dir: &Path) -> torrent_journal::state::State {
    use torrent_journal::compaction::{self, CompactOptions, Retention};
    let options = torrent_journal::JournalOptions {
        segment_size_bytes: 4096,
        ..torrent_journal::JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options).unwrap();
    let events: Vec<Event> = torrent_journal::simulate::Simulation {
        seed: 41,
        torrents: 5,
        events: 90,
        tasks: 1,
        start: torrent_journal::model::Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    }
    .task(0)
    .collect();
    let compact = |n| {
        let options = CompactOptions {
            retain: Retention::Events(n),
            ..CompactOptions::default()
        };
        compaction::compact(Arc::new(RealStorage), dir, &options).unwrap()
    };
    for event in &events[..50] {
        journal.append(event).unwrap();
    }
    compact(10);
    for event in &events[50..] {
        journal.append(event).unwrap();
    }
    let second = compact(10);
    assert!(!second.segments_removed.is_empty(), "{second:?}");
    journal.close().unwrap();
    let head = head_of(dir).unwrap();
    assert!(
        JournalReader::open(dir).unwrap().segments().unwrap()[0].first_seq > 1,
        "compacted"
    );
    head
}

fn head_of(dir: &Path) -> torrent_journal::Result<torrent_journal::state::State> {
    history::state_at(Arc::new(RealStorage), dir, Target::Head).map(|p| p.state)
}

#[test]
fn a_healthy_compacted_store_is_salvaged_with_its_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = (tmp.path().join("store"), tmp.path().join("out"));
    let head = compacted_store(&dir);
    let report = salvage(&RealStorage, &dir, &out).unwrap();
    assert_eq!(report.snapshots_copied, 2, "{report:?}");
    assert!(report.snapshots_not_copied.is_empty(), "{report:?}");
    assert!(!report.lost_anything());
    assert_eq!(head_of(&out).unwrap(), head);
    assert!(verify(&RealStorage, &out).unwrap().is_clean());
}

#[test]
fn a_compacted_store_with_a_damaged_newest_snapshot_verifies_dirty_and_salvages_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, out) = (tmp.path().join("store"), tmp.path().join("out"));
    let head = compacted_store(&dir);
    let snapshots = snapshot::list_snapshots(&RealStorage, &dir).unwrap();
    let newest = &snapshots.last().unwrap().path;
    let mut bytes = std::fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(newest, bytes).unwrap();

    // Every frame is fine, the snapshot is not: verify says so, naming it.
    let verified = verify(&RealStorage, &dir).unwrap();
    assert_eq!(verified.problems.len(), 1, "{verified:?}");
    assert_eq!(verified.problems[0].kind, ProblemKind::DamagedSnapshot);
    assert_eq!(&verified.problems[0].segment, newest);
    assert_eq!(verified.snapshots.len(), 2);
    assert!(verified.snapshots[0].usable && verified.snapshots[0].continues_journal);
    // The store still opens at its head, from the previous snapshot.
    assert_eq!(head_of(&dir).unwrap(), head);

    let report = salvage(&RealStorage, &dir, &out).unwrap();
    assert_eq!(report.snapshots_copied, 1, "{report:?}");
    assert_eq!(report.snapshots_not_copied.len(), 1, "{report:?}");
    assert!(
        report.snapshots_not_copied[0].contains("checksum"),
        "{report:?}"
    );
    assert_eq!(head_of(&out).unwrap(), head);
    assert!(verify(&RealStorage, &out).unwrap().is_clean());

    // Without any snapshot, nothing continues the journal: verify says the store is damaged.
    std::fs::remove_dir_all(snapshot::snapshots_dir(&out)).unwrap();
    let verified = verify(&RealStorage, &out).unwrap();
    assert_eq!(verified.problems.len(), 1, "{verified:?}");
    assert_eq!(verified.problems[0].kind, ProblemKind::NoContinuingSnapshot);
    let err = head_of(&out).unwrap_err();
    assert!(
        matches!(
            err,
            torrent_journal::Error::NotRestorable {
                earliest_seq: None,
                ..
            }
        ),
        "{err}"
    );
}
