//! Proves torn-tail recovery: for every truncation length of the last segment of a small
//! journal, reopening keeps exactly the whole frames below the cut, saves the cut bytes (up to
//! the last non-zero one) in a `.broken` file, and the writer continues with the next seq. A
//! sealed segment cut inside a frame header is refused, naming the first missing seq even though
//! the header that would say it is gone. Successive torn tails are each kept (`.broken`,
//! `.broken.1`, ...) and the warning says where and how many bytes were cut. Runs on simulated
//! storage.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;
use torrent_journal::{Error, Journal};

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

#[test]
fn a_sealed_segment_cut_inside_a_frame_header_names_the_missing_seq() {
    let original = sim_journal(12, 300);
    let paths = segments(&original);
    let first = &paths[0];
    let bytes = original.file_bytes(first).unwrap();
    let starts = frame_starts(&bytes);
    let frames = starts.len() as u64 - 1;
    // Keep 10 bytes of the last frame's header: too few to read its seq (bytes 8..16).
    let last_start = starts[starts.len() - 2];
    original.put_file(first, bytes[..last_start + 10].to_vec());
    let err = Journal::open_with(SIM_DIR, sim_options(&original, 300)).unwrap_err();
    match err {
        Error::Corrupt {
            segment,
            offset,
            seq,
            ..
        } => {
            assert_eq!(&segment, first);
            assert_eq!(offset, last_start as u64);
            assert_eq!(
                seq,
                Some(frames),
                "the seq the cut frame should have carried"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn successive_torn_tails_are_each_kept_and_counted() {
    let storage = sim_journal(5, 1 << 20);
    let last = segments(&storage).pop().unwrap();
    for (round, garbage_bytes) in [7usize, 19, 33].into_iter().enumerate() {
        // Bytes a crash left after the data: not a frame, nothing valid after them.
        let mut bytes = storage.file_bytes(&last).unwrap();
        let data_end = bytes.len();
        bytes.extend((0..garbage_bytes).map(|i| 0xA0 | (i as u8 & 0x0F)));
        bytes.extend([0; 64]); // preallocation zeros after the torn write are not kept
        storage.put_file(&last, bytes);

        let (journal, warnings) =
            with_warnings(|| Journal::open_with(SIM_DIR, sim_options(&storage, 1 << 20)));
        let journal = journal.unwrap();
        journal.append(&small_event(100 + round as u64)).unwrap();
        journal.close().unwrap();

        let kept = match round {
            0 => format!("{}.broken", last.display()),
            n => format!("{}.broken.{n}", last.display()),
        };
        let kept_bytes = storage.file_bytes(Path::new(&kept)).unwrap();
        assert_eq!(kept_bytes.len(), garbage_bytes, "round {round}: {kept}");
        let warning = warnings
            .iter()
            .find(|w| w.contains("torn tail"))
            .unwrap_or_else(|| panic!("round {round}: no warning in {warnings:?}"));
        assert!(
            warning.contains(&format!("offset={data_end} "))
                && warning.contains(&format!("cut_bytes={garbage_bytes} "))
                && warning.contains(&kept),
            "round {round}: {warning}"
        );
    }
    assert_eq!(
        read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR)),
        (1..=8).collect::<Vec<_>>()
    );
}
