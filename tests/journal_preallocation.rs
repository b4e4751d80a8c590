//! Proves segment preallocation is invisible to everything but `fdatasync`: the writer keeps the
//! active segment zero-filled ahead of its data (so the file's size rarely changes), readers
//! and reopen treat the zeros as the end of data, a clean close and a rotation cut the padding
//! off, and a crash that leaves garbage or zeros in the padding recovers exactly the
//! acknowledged events, the reopened segment ending exactly with its data. Real files for the
//! shape, simulated storage for the crash images.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use torrent_journal::model::Timestamp;
use torrent_journal::storage::{CrashFill, Fault, FaultKind, SimStorage, Storage};
use torrent_journal::testing::format::durable::{self, DurablePosition};
use torrent_journal::testing::format::frame::{self, FRAME_HEADER_BYTES};
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;
use torrent_journal::{Error, Journal, JournalOptions, JournalReader, event};

const PREALLOCATE_BYTES: u64 = 64 * 1024;

fn encoded_len(n: u64) -> u64 {
    (event::encode(&small_event(n)).unwrap().len() + FRAME_HEADER_BYTES) as u64
}

fn real_options(segment_size_bytes: u64) -> JournalOptions {
    JournalOptions {
        segment_size_bytes,
        preallocate_bytes: PREALLOCATE_BYTES,
        ..JournalOptions::default()
    }
}

#[test]
fn the_active_segment_is_zero_filled_ahead_and_trimmed_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_with(dir.path(), real_options(1 << 30)).unwrap();
    let mut data_end = SEGMENT_HEADER_BYTES as u64;
    for n in 1..=100 {
        journal.append(&small_event(n)).unwrap();
        data_end += encoded_len(n);
    }
    let reader = JournalReader::open(dir.path()).unwrap();
    let segment = reader.segments().unwrap()[0].path.clone();
    let open_len = std::fs::metadata(&segment).unwrap().len();
    assert!(
        open_len >= data_end + PREALLOCATE_BYTES / 2,
        "file {open_len} bytes, data {data_end}: allocated ahead"
    );
    // A reader of the live journal sees every event and takes the zeros for the end.
    let seqs: Vec<u64> = reader.events(1).unwrap().map(|e| e.unwrap().seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());

    journal.close().unwrap();
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), data_end);

    // Reopened, it continues at the data's end and allocates ahead again.
    let journal = Journal::open_with(dir.path(), real_options(1 << 30)).unwrap();
    assert_eq!(journal.append(&small_event(101)).unwrap().first_seq, 101);
    assert!(std::fs::metadata(&segment).unwrap().len() > data_end + encoded_len(101));
    journal.close().unwrap();
    let seqs: Vec<u64> = reader.events(1).unwrap().map(|e| e.unwrap().seq).collect();
    assert_eq!(seqs, (1..=101).collect::<Vec<_>>());
}

#[test]
fn sealed_segments_end_with_their_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open_with(dir.path(), real_options(4096)).unwrap();
    for n in 1..=300 {
        journal.append(&small_event(n)).unwrap();
    }
    let reader = JournalReader::open(dir.path()).unwrap();
    let segments = reader.segments().unwrap();
    assert!(segments.len() >= 3, "{} segments", segments.len());
    for (sealed, next) in segments.iter().zip(&segments[1..]) {
        let bytes = std::fs::read(&sealed.path).unwrap();
        let data_end = SEGMENT_HEADER_BYTES as u64
            + (sealed.first_seq..next.first_seq)
                .map(encoded_len)
                .sum::<u64>();
        assert_eq!(bytes.len() as u64, data_end, "{}", sealed.path.display());
        // Padding never goes past the segment size.
        assert!(data_end < 4096 + encoded_len(1) * 2);
    }
    journal.close().unwrap();
}

/// A journal on simulated storage whose last `unsynced` events were written in one batch in
/// place over the preallocated zeros, whose `fdatasync` then failed, and which then crashed
/// with `fill`. Returns the image and the unsynced frame bytes.
fn crashed(synced: u64, unsynced: u64, fill: CrashFill) -> (SimStorage, u64) {
    let storage = SimStorage::new();
    let options = JournalOptions {
        preallocate_bytes: PREALLOCATE_BYTES,
        ..sim_options(&storage, 1 << 20)
    };
    let journal = Journal::open_with(SIM_DIR, options).unwrap();
    for n in 1..=synced {
        journal.append(&small_event(n)).unwrap();
    }
    // The batch is one write (op +1, in place: the padding is already there), then its
    // fdatasync (op +2) fails.
    storage.inject(Fault {
        op: None,
        nth: storage.op_count() + 2,
        kind: FaultKind::Eio,
        persistent: false,
    });
    let batch: Vec<_> = (synced + 1..=synced + unsynced).map(small_event).collect();
    let unsynced_bytes = (synced + 1..=synced + unsynced).map(encoded_len).sum();
    assert!(
        journal.append_all(&batch).is_err(),
        "the failed sync is reported"
    );
    let image = storage.crash(fill);
    drop(journal);
    (image, unsynced_bytes)
}

#[test]
fn a_crash_in_the_padding_recovers_the_synced_events_and_keeps_only_written_bytes() {
    for fill in [CrashFill::Drop, CrashFill::Zeros, CrashFill::Garbage(7)] {
        let (image, unsynced_bytes) = crashed(20, 5, fill);
        let segment = segments(&image)[0].clone();
        let before = image.file_bytes(&segment).unwrap();
        assert!(before.len() as u64 > PREALLOCATE_BYTES, "{fill:?}: padded");

        let journal = Journal::open_with(SIM_DIR, sim_options(&image, 1 << 20)).unwrap();
        // Recovery leaves the file ending with its data (padding and torn bytes cut), which
        // is what the writer assumes when it resumes at the data's end.
        let data_end = SEGMENT_HEADER_BYTES as u64 + (1..=20).map(encoded_len).sum::<u64>();
        let len = image.file_bytes(&segment).unwrap().len() as u64;
        assert_eq!(
            len, data_end,
            "{fill:?}: the segment ends with its data after open"
        );
        assert_eq!(
            journal.append(&small_event(99)).unwrap().first_seq,
            21,
            "{fill:?}: the 20 synced events kept, the unsynced ones gone"
        );
        journal.close().unwrap();
        let seqs = read_seqs(Arc::new(image.clone()), Path::new(SIM_DIR));
        assert_eq!(seqs, (1..=21).collect::<Vec<_>>(), "{fill:?}");

        let broken = std::path::PathBuf::from(format!("{}.broken", segment.display()));
        match fill {
            CrashFill::Garbage(_) => {
                let kept = image.file_bytes(&broken).expect("garbage is kept");
                let kept_len = kept.len() as u64;
                assert!(
                    kept_len <= unsynced_bytes && kept_len > unsynced_bytes - 8,
                    "{fill:?}: kept {kept_len} bytes of {unsynced_bytes} written, no padding"
                );
            }
            _ => assert!(!image.exists(&broken), "{fill:?}: zeros are a clean end"),
        }
    }
}

/// A last segment holding seq 1, then damage, then a valid frame 3 — what a reader racing an
/// in-place write can see.
fn racing_image(durable_seq: Option<u64>) -> SimStorage {
    let storage = sim_journal(1, 1 << 20);
    let segment = segments(&storage)[0].clone();
    let mut bytes = storage.file_bytes(&segment).unwrap();
    let payload = event::encode(&small_event(2)).unwrap();
    let mut torn = Vec::new();
    frame::encode(&mut torn, 2, 1, &payload);
    // Its tail not copied yet: the info hash (which ends the payload) reads as zeros.
    let len = torn.len();
    torn[len - 20..].fill(0);
    bytes.extend_from_slice(&torn);
    frame::encode(&mut bytes, 3, 1, &event::encode(&small_event(3)).unwrap());
    bytes.resize(bytes.len() + 4096, 0);
    storage.put_file(&segment, bytes);
    let durable_path = durable::path(&Path::new(SIM_DIR).join("journal"));
    match durable_seq {
        Some(seq) => {
            let position = DurablePosition {
                seq,
                at: Timestamp::from_unix_nanos(1),
            };
            storage.put_file(&durable_path, durable::encode(position).to_vec());
        }
        None => storage.remove_file(&durable_path).unwrap(),
    }
    storage
}

#[test]
fn readers_take_damage_past_the_durable_position_for_a_write_in_progress() {
    let seqs_or_error = |durable_seq| {
        let reader =
            JournalReader::with_storage(Arc::new(racing_image(durable_seq)), SIM_DIR).unwrap();
        reader
            .events(1)
            .unwrap()
            .map(|e| e.map(|e| e.seq))
            .collect::<Result<Vec<_>, Error>>()
    };
    // A writer published seq 1 as durable: frame 2 is still being written.
    assert_eq!(seqs_or_error(Some(1)).unwrap(), vec![1]);
    // Durable through 3 (or no writer publishing): the bytes of seq 2 are damage.
    for durable_seq in [Some(3), None] {
        let err = seqs_or_error(durable_seq).unwrap_err();
        assert!(
            matches!(err, Error::ChecksumMismatch { seq: Some(2), .. }),
            "{durable_seq:?}: {err}"
        );
    }
}
