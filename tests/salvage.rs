//! Proves salvage keeps everything that can be kept and says exactly what could not: a journal
//! with a damaged frame mid-log (which refuses to open) is salvaged into a new journal that
//! opens and verifies clean, holds every other event in order with renumbered seqs, and whose
//! report locates the damage, names the affected torrent and quarantines the bytes.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::event::Event;
use torrent_journal::salvage::salvage;
use torrent_journal::{Journal, JournalReader, journal};

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
    assert!(journal::verify(&storage, out).unwrap().is_clean());
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
