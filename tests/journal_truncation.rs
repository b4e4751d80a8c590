//! Proves torn-tail recovery: for every truncation length of the last segment of a small
//! journal, reopening keeps exactly the whole frames below the cut, saves the cut bytes (up to
//! the last non-zero one) in a `.broken` file, and the writer continues with the next seq. Runs on simulated storage.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::Journal;
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;

#[test]
fn every_truncation_of_the_last_segment_reopens_to_the_whole_frames_below_the_cut() {
    // Small segments so the journal has sealed segments before the last one.
    let original = sim_journal(12, 300);
    let paths = segments(&original);
    assert!(
        paths.len() >= 3,
        "want several segments, got {}",
        paths.len()
    );
    let last = paths.last().unwrap().clone();
    let bytes = original.file_bytes(&last).unwrap();
    let starts = frame_starts(&bytes);
    let seqs_before_last = read_seqs(Arc::new(original.clone()), Path::new(SIM_DIR)).len() as u64
        - (starts.len() as u64 - 1);

    for cut in 0..=bytes.len() {
        let storage = original.crash(torrent_journal::storage::CrashFill::Drop);
        storage.put_file(&last, bytes[..cut].to_vec());
        let whole_frames = starts.iter().skip(1).filter(|&&end| end <= cut).count() as u64;
        let kept = seqs_before_last + whole_frames;

        let journal = Journal::open_with(SIM_DIR, sim_options(&storage, 300))
            .unwrap_or_else(|e| panic!("cut at {cut}: open failed: {e}"));
        let receipt = journal.append(&small_event(999)).unwrap();
        assert_eq!(receipt.first_seq, kept + 1, "cut at {cut}");
        journal.close().unwrap();

        let seqs = read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR));
        assert_eq!(seqs, (1..=kept + 1).collect::<Vec<_>>(), "cut at {cut}");

        let on_boundary = cut == 0 || starts.contains(&cut);
        let broken = Path::new(&format!("{}.broken", last.display())).to_path_buf();
        if on_boundary {
            assert!(!storage.exists(&broken), "cut at {cut}: nothing to keep");
        } else {
            let start = if cut < SEGMENT_HEADER_BYTES {
                0
            } else {
                *starts.iter().rfind(|&&s| s <= cut).unwrap()
            };
            // Trailing zeros after frames are left out: they cannot be told from preallocation
            // padding. A cut header is kept whole.
            let cut_bytes = &bytes[start..cut];
            let kept_len = if cut < SEGMENT_HEADER_BYTES {
                cut_bytes.len()
            } else {
                cut_bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
            };
            assert_eq!(
                storage.file_bytes(&broken).unwrap(),
                cut_bytes[..kept_len].to_vec(),
                "cut at {cut}: the .broken file holds the cut bytes"
            );
        }
    }
}

use torrent_journal::storage::Storage;
