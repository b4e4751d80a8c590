//! Proves that damage the durable position covers is an error, never a torn tail: for every
//! truncation length of the last segment, a zero-fill after its header, every single-bit flip
//! in its last frame, and the removal of the whole last segment, reopening fails with an error
//! naming the segment, the byte offset and the first missing seq; nothing is cut (the bytes on
//! disk are unchanged, no `.broken` file appears) and `verify` reports the missing acknowledged
//! events, and a reader's iteration (and a follower's) ends in an error instead of stopping
//! short or waiting forever. The control: when `journal/durable` says the last write was never acknowledged, the
//! same damage in the last frame is a torn tail, cut and kept in `.broken`, and the writer
//! continues with the next seq. Runs on real files in temporary directories.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{frame_starts, small_event};
use torrent_journal::follow::{FollowOptions, Follower};
use torrent_journal::journal::{self, JOURNAL_DIR_NAME, ProblemKind};
use torrent_journal::model::Timestamp;
use torrent_journal::storage::RealStorage;
use torrent_journal::testing::format::durable::{self, DurablePosition};
use torrent_journal::testing::format::segment::SEGMENT_HEADER_BYTES;
use torrent_journal::{Error, Journal, JournalOptions, JournalReader};

/// Events in the test journal; the last segment holds the last `EVENTS_IN_LAST` of them.
const EVENTS: u64 = 12;
const EVENTS_IN_LAST: u64 = 4;
/// The first seq of the last segment.
const FIRST_OF_LAST: u64 = EVENTS - EVENTS_IN_LAST + 1;

/// A closed journal of `EVENTS` small events whose last segment holds the last
/// `EVENTS_IN_LAST`; returns the last segment and where its last frame starts.
fn journal(dir: &Path) -> (PathBuf, usize) {
    let write = |range: std::ops::RangeInclusive<u64>| {
        let journal = Journal::open_with(dir, JournalOptions::default()).unwrap();
        for n in range {
            journal.append(&small_event(n)).unwrap();
        }
        journal.close().unwrap();
    };
    write(1..=EVENTS - EVENTS_IN_LAST);
    // A second segment: seal the first (a closed journal), then the rest goes after it.
    journal::seal_active_segment(&RealStorage, dir).unwrap();
    write(EVENTS - EVENTS_IN_LAST + 1..=EVENTS - 1);
    let last = segments(dir).pop().unwrap();
    let last_frame_at = std::fs::metadata(&last).unwrap().len() as usize;
    write(EVENTS..=EVENTS);
    assert_eq!(segments(dir).len(), 2);
    assert_eq!(
        durable::read(&RealStorage, dir).unwrap().unwrap().seq,
        EVENTS
    );
    (last, last_frame_at)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let reader = JournalReader::open(dir).unwrap();
    reader
        .segments()
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

fn broken_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join(JOURNAL_DIR_NAME))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".broken"))
        .collect()
}

/// Reopening fails naming `segment` and a seq within the last segment's events, and leaves
/// every byte as it was; `verify` reports the loss, and a reader's iteration ends in an error
/// rather than quietly short.
/// `first_missing`: the first acknowledged seq the damage took, which the error must name.
fn assert_refused(dir: &Path, segment: &Path, first_missing: u64, what: &str) {
    let before = std::fs::read(segment).ok();
    let read: Vec<_> = JournalReader::open(dir)
        .unwrap()
        .events(1)
        .unwrap()
        .collect();
    match read.last() {
        Some(Err(Error::Corrupt { .. } | Error::ChecksumMismatch { .. })) => {}
        other => panic!("{what}: the reader ended with {other:?}"),
    }
    let err = Journal::open_with(dir, JournalOptions::default())
        .map(|_| ())
        .expect_err(what);
    let (named, seq) = match &err {
        Error::Corrupt { segment, seq, .. } => (segment.clone(), *seq),
        Error::ChecksumMismatch { segment, seq, .. } => (segment.clone(), *seq),
        other => panic!("{what}: unexpected error {other}"),
    };
    assert_eq!(named, segment, "{what}: {err}");
    let seq = seq.unwrap_or_else(|| panic!("{what}: no seq in {err}"));
    assert_eq!(seq, first_missing, "{what}: {err}");
    assert_eq!(
        std::fs::read(segment).ok(),
        before,
        "{what}: the segment changed"
    );
    assert!(broken_files(dir).is_empty(), "{what}: something was cut");

    let report = torrent_journal::verify(&RealStorage, dir).unwrap();
    let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind).collect();
    assert!(
        kinds.contains(&ProblemKind::MissingDurableEvents),
        "{what}: verify reported {kinds:?}"
    );
    assert!(!kinds.contains(&ProblemKind::TornTail), "{what}: {kinds:?}");
}

#[test]
fn every_truncation_of_an_acknowledged_last_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (last, _) = journal(tmp.path());
    let bytes = std::fs::read(&last).unwrap();
    let frame_ends = &frame_starts(&bytes)[1..];
    for cut in 0..bytes.len() {
        std::fs::write(&last, &bytes[..cut]).unwrap();
        let whole_frames = frame_ends.iter().filter(|&&end| end <= cut).count() as u64;
        assert_refused(
            tmp.path(),
            &last,
            FIRST_OF_LAST + whole_frames,
            &format!("cut at {cut} of {}", bytes.len()),
        );
    }
}

#[test]
fn a_zero_filled_or_removed_last_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (last, _) = journal(tmp.path());
    let bytes = std::fs::read(&last).unwrap();
    let mut zeroed = bytes.clone();
    zeroed[SEGMENT_HEADER_BYTES..].fill(0);
    std::fs::write(&last, &zeroed).unwrap();
    assert_refused(
        tmp.path(),
        &last,
        FIRST_OF_LAST,
        "zero-filled after the header",
    );

    assert_follower_fails(tmp.path(), "zero-filled after the header");

    std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
    assert_follower_fails(tmp.path(), "cut in half");

    std::fs::remove_file(&last).unwrap();
    let first = segments(tmp.path()).pop().unwrap();
    assert_refused(tmp.path(), &first, FIRST_OF_LAST, "last segment removed");

    // Every segment gone: the error names the journal directory and seq 1.
    std::fs::remove_file(&first).unwrap();
    let err = Journal::open_with(tmp.path(), JournalOptions::default())
        .map(|_| ())
        .expect_err("every segment removed");
    match &err {
        Error::Corrupt { segment, seq, .. } => {
            assert_eq!(segment, &tmp.path().join(JOURNAL_DIR_NAME), "{err}");
            assert_eq!(*seq, Some(1), "{err}");
        }
        other => panic!("every segment removed: unexpected error {other}"),
    }
}

/// A follower in another process delivers what is there, then fails with an error naming the
/// first missing acknowledged seq (it does not wait forever for bytes that were acknowledged).
fn assert_follower_fails(dir: &Path, what: &str) {
    let options = FollowOptions {
        poll_interval_ms: 10,
        ..FollowOptions::default()
    };
    let mut follower = Follower::start(Arc::new(RealStorage), dir, options).unwrap();
    let mut delivered = 0;
    let err = loop {
        match follower.blocking_next() {
            Some(Ok(_)) => delivered += 1,
            Some(Err(err)) => break err,
            None => panic!("{what}: the follower ended without an error"),
        }
    };
    assert!(delivered < EVENTS, "{what}: delivered {delivered}");
    let Error::Corrupt { seq: Some(seq), .. } = &err else {
        panic!("{what}: unexpected error {err}");
    };
    assert_eq!(*seq, delivered + 1, "{what}: {err}");
}

#[test]
fn every_bit_flip_in_the_last_acknowledged_frame_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (last, last_frame_at) = journal(tmp.path());
    let bytes = std::fs::read(&last).unwrap();
    for bit in last_frame_at * 8..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&last, &flipped).unwrap();
        assert_refused(tmp.path(), &last, EVENTS, &format!("bit {bit} flipped"));
    }
}

/// The control: the same damage past the durable position is a torn tail.
#[test]
fn damage_past_the_durable_position_is_a_torn_tail_and_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let (last, last_frame_at) = journal(tmp.path());
    let bytes = std::fs::read(&last).unwrap();
    // The last write was never acknowledged: the durable position stops before it.
    let position = DurablePosition {
        seq: EVENTS - 1,
        at: Timestamp::from_unix_nanos(0),
    };
    let durable_path = durable::path(&tmp.path().join(JOURNAL_DIR_NAME));
    for cut in [
        last_frame_at + 1,
        (last_frame_at + bytes.len()) / 2,
        bytes.len() - 1,
    ] {
        std::fs::write(&last, &bytes[..cut]).unwrap();
        std::fs::write(&durable_path, durable::encode(position)).unwrap();
        let report = torrent_journal::verify(&RealStorage, tmp.path()).unwrap();
        let kinds: Vec<ProblemKind> = report.problems.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![ProblemKind::TornTail], "cut at {cut}");

        let journal = Journal::open_with(tmp.path(), JournalOptions::default()).unwrap();
        let receipt = journal.append(&small_event(99)).unwrap();
        assert_eq!(
            receipt.first_seq, EVENTS,
            "cut at {cut}: continues after the cut"
        );
        journal.close().unwrap();
        assert_eq!(
            broken_files(tmp.path()).len(),
            1,
            "cut at {cut}: bytes kept"
        );
        for name in broken_files(tmp.path()) {
            std::fs::remove_file(tmp.path().join(JOURNAL_DIR_NAME).join(name)).unwrap();
        }
        // Back to the journal under test for the next cut.
        std::fs::write(&last, &bytes).unwrap();
    }
}
