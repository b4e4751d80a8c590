//! Proves every single-bit flip in a small journal is detected: `verify` reports it, and open
//! either refuses with an error naming the segment, or — only when the flip is in the last
//! frame of the last segment, which is indistinguishable from a torn write — truncates that
//! frame. Nothing corrupt is ever read back as an event. A whole, checksummed last frame with
//! the wrong seq is damage, not a torn tail. Runs on simulated storage.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::journal::ProblemKind;
use torrent_journal::storage::CrashFill;
use torrent_journal::{Error, Journal};

#[test]
fn every_single_bit_flip_is_detected_by_verify_and_by_open() {
    const EVENTS: u64 = 9;
    let original = sim_journal(EVENTS, 250);
    let paths = segments(&original);
    assert!(
        paths.len() >= 3,
        "want several segments, got {}",
        paths.len()
    );
    let last_path = paths.last().unwrap();
    let mut flips = 0;
    let mut truncations = 0;
    for path in &paths {
        let bytes = original.file_bytes(path).unwrap();
        let last_frame_start = *frame_starts(&bytes).iter().rev().nth(1).unwrap();
        for bit in 0..bytes.len() * 8 {
            flips += 1;
            let storage = original.crash(CrashFill::Drop);
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            storage.put_file(path, damaged);

            let report = torrent_journal::verify(&storage, Path::new(SIM_DIR)).unwrap();
            assert!(
                !report.is_clean(),
                "{}: bit {bit} not reported",
                path.display()
            );

            let in_last_frame = path == last_path && bit / 8 >= last_frame_start;
            match Journal::open_with(SIM_DIR, sim_options(&storage, 250)) {
                Ok(journal) => {
                    journal.close().unwrap();
                    assert!(in_last_frame, "{}: bit {bit} opened", path.display());
                    assert_eq!(report.problems[0].kind, ProblemKind::TornTail);
                    let seqs = read_seqs(Arc::new(storage.clone()), Path::new(SIM_DIR));
                    assert_eq!(seqs, (1..EVENTS).collect::<Vec<_>>(), "bit {bit}");
                    truncations += 1;
                }
                Err(err) => {
                    let text = err.to_string();
                    let name = path.file_name().unwrap().to_string_lossy();
                    assert!(
                        text.contains(&*name),
                        "bit {bit}: error {text:?} names no segment"
                    );
                }
            }
        }
    }
    let last_frame_bits = {
        let bytes = original.file_bytes(last_path).unwrap();
        (bytes.len() - frame_starts(&bytes).iter().rev().nth(1).unwrap()) * 8
    };
    assert_eq!(
        truncations, last_frame_bits,
        "every flip in the last frame truncates"
    );
    assert!(flips > 4000, "a meaningful number of flips: {flips}");
    eprintln!(
        "bit flips: {flips} tried, {flips} detected, {truncations} of them truncated as torn tails"
    );
}

#[test]
fn mid_log_damage_names_segment_offset_and_seq() {
    let original = sim_journal(6, 1 << 20);
    let path = &segments(&original)[0];
    let mut bytes = original.file_bytes(path).unwrap();
    let starts = frame_starts(&bytes);
    // Damage the payload of the third frame (seq 3).
    bytes[starts[2] + 30] ^= 0x10;
    original.put_file(path, bytes);
    let err = Journal::open_with(SIM_DIR, sim_options(&original, 1 << 20)).unwrap_err();
    match err {
        Error::ChecksumMismatch {
            segment,
            offset,
            seq,
            expected,
            got,
        } => {
            assert_eq!(&segment, path);
            assert_eq!(offset, starts[2] as u64);
            assert_eq!(seq, Some(3));
            assert_ne!(expected, got);
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
}

#[test]
fn a_valid_last_frame_with_the_wrong_seq_is_refused_not_cut() {
    let original = sim_journal(6, 1 << 20);
    let path = &segments(&original)[0];
    let bytes = original.file_bytes(path).unwrap();
    let starts = frame_starts(&bytes);
    let last = starts[starts.len() - 2];
    let payload =
        bytes[last + torrent_journal::testing::format::frame::FRAME_HEADER_BYTES..].to_vec();
    let mut forged = bytes[..last].to_vec();
    torrent_journal::testing::format::frame::encode(&mut forged, 9, 1, &payload);
    original.put_file(path, forged.clone());
    let err = Journal::open_with(SIM_DIR, sim_options(&original, 1 << 20)).unwrap_err();
    match err {
        Error::SequenceBreak {
            offset,
            expected,
            found,
            ..
        } => assert_eq!((offset, expected, found), (last as u64, 6, 9)),
        other => panic!("expected a sequence break, got {other}"),
    }
    assert_eq!(
        original.file_bytes(path).unwrap(),
        forged,
        "nothing was cut"
    );
}
