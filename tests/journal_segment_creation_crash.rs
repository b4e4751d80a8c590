//! Proves what recovery does with what a crash leaves while a segment is being created (tmp
//! file → header → fsync → rename → directory fsync): a `*.tmp` file never renamed is removed
//! (durably: the image a power cut right after the open leaves has none either) and the events
//! are untouched; a journal's only segment whose header reached the disk in part (every cut
//! length, 0 to 31 bytes) is removed with its bytes kept in `.broken`, and the writer starts at
//! seq 1 — the rule for a torn last segment, with no earlier segment before it. Runs on
//! simulated storage, asserting the exact seqs, files and bytes after each reopen.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::Journal;
use torrent_journal::storage::{CrashFill, Storage};
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;

#[test]
fn a_tmp_file_never_renamed_is_removed_durably_and_the_events_are_kept() {
    let storage = sim_journal(3, 1 << 20);
    let last = segments(&storage).pop().unwrap();
    let dir = last.parent().unwrap().to_path_buf();
    // The next segment's tmp cut mid-header, and a leftover of any other name ending in .tmp.
    let tmps = [
        dir.join("00000000000000000004.seg.tmp"),
        dir.join("anything.tmp"),
    ];
    for tmp in &tmps {
        storage.put_file(tmp, vec![0xAB; 7]);
    }

    let journal = Journal::open_with(SIM_DIR, sim_options(&storage, 1 << 20)).unwrap();
    let after_power_cut = storage.crash(CrashFill::Drop);
    for tmp in &tmps {
        assert!(!storage.exists(tmp), "{} is left", tmp.display());
        assert!(
            !after_power_cut.exists(tmp),
            "{} is back after a power cut",
            tmp.display()
        );
    }
    assert_eq!(journal.append(&small_event(4)).unwrap().first_seq, 4);
    journal.close().unwrap();
    assert_eq!(
        read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR)),
        vec![1, 2, 3, 4]
    );
}

#[test]
fn the_only_segment_cut_inside_its_header_is_removed_and_the_writer_starts_at_seq_1() {
    let original = sim_journal(0, 300);
    let paths = segments(&original);
    assert_eq!(paths.len(), 1, "a fresh journal has its first segment");
    let only = paths[0].clone();
    let header = original.file_bytes(&only).unwrap()[..SEGMENT_HEADER_BYTES].to_vec();
    let broken = Path::new(&format!("{}.broken", only.display())).to_path_buf();
    for cut in 0..SEGMENT_HEADER_BYTES {
        let storage = original.crash(CrashFill::Drop);
        storage.put_file(&only, header[..cut].to_vec());

        let journal = Journal::open_with(SIM_DIR, sim_options(&storage, 300))
            .unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        let receipt = journal.append(&small_event(1)).unwrap();
        assert_eq!(receipt.first_seq, 1, "cut at {cut}");
        journal.close().unwrap();

        let seqs = read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR));
        assert_eq!(seqs, vec![1], "cut at {cut}");
        if cut == 0 {
            assert!(!storage.exists(&broken), "cut at {cut}: nothing to keep");
        } else {
            assert_eq!(
                storage.file_bytes(&broken).unwrap(),
                header[..cut].to_vec(),
                "cut at {cut}: the .broken file holds the cut header"
            );
        }
    }
}
