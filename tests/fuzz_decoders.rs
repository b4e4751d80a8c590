//! Fuzzes the decoders with proptest on stable: the frame decoder, the segment scanner, journal
//! recovery, the event payload decoder and the fast replay's peek get arbitrary bytes and mutations of a real journal
//! (the v1 fixture is the corpus). Properties: no panic, every outcome is a value or a located
//! error, and nothing allocates by an unchecked length (the decoders only borrow slices). Set
//! `TJ_FUZZ_CASES` for a longer run (CI runs the default).

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use torrent_journal::event::Event;
use torrent_journal::journal;
use torrent_journal::replay::{self, Peek};
use torrent_journal::storage::{SimStorage, Storage};
use torrent_journal::testing::format::frame;
use torrent_journal::testing::format::segment::{self, Scan, SegmentHeader};
use torrent_journal::{JournalOptions, event};

fn cases() -> u32 {
    std::env::var("TJ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// The fixture's segments: real frames to mutate.
fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/journal");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(usize),
    SetByte(usize, u8),
    Truncate(usize),
    Splice(usize, Vec<u8>),
    ZeroSector(usize),
    ForgeLength(usize, u32),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::FlipBit),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, v)| Mutation::Splice(i, v)),
        any::<usize>().prop_map(Mutation::ZeroSector),
        (any::<usize>(), any::<u32>()).prop_map(|(i, l)| Mutation::ForgeLength(i, l)),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match mutation {
        Mutation::FlipBit(i) => bytes[(i / 8) % n] ^= 1 << (i % 8),
        Mutation::SetByte(i, b) => bytes[i % n] = *b,
        Mutation::Truncate(i) => bytes.truncate(i % n),
        Mutation::Splice(i, v) => {
            let at = i % n;
            bytes.splice(at..(at + v.len()).min(n), v.iter().copied());
        }
        Mutation::ZeroSector(i) => {
            let start = (i % n) / 512 * 512;
            bytes[start..(start + 512).min(n)].fill(0);
        }
        Mutation::ForgeLength(i, len) => {
            let at = i % n;
            let end = (at + 4).min(n);
            bytes[at..end].copy_from_slice(&len.to_le_bytes()[..end - at]);
        }
    }
}

/// The fast replay's peek never panics, and whenever it names a torrent and the payload also
/// decodes, the decoded event is about that same torrent.
fn check_peek(payload: &[u8]) {
    let Peek::Torrent(_, peeked) = replay::peek(payload) else {
        return;
    };
    let Ok(decoded) = event::decode(payload) else {
        return;
    };
    let info_hash = match &decoded {
        Event::Hook(record) => record.torrent.info_hash,
        Event::TorrentSaved { torrent } => torrent.info_hash,
        Event::TorrentDeleted { info_hash } => *info_hash,
        other => panic!("peek named torrent {peeked} for {other:?}"),
    };
    assert_eq!(info_hash, peeked, "peek and decode disagree");
}

/// Runs every decoder over `bytes` as a segment; returns whether the scan was clean.
fn exercise(bytes: &[u8]) -> bool {
    let _ = frame::decode(bytes);
    let _ = event::decode(bytes);
    check_peek(bytes);
    let Ok(header) = SegmentHeader::decode(bytes) else {
        return false;
    };
    let mut scan = Scan::new(bytes, header.first_seq);
    for found in scan.by_ref() {
        // A checksummed payload from the fixture decodes; garbage never panics.
        let _ = event::decode(found.frame.payload);
        check_peek(found.frame.payload);
    }
    let clean = matches!(scan.stop(), Some(segment::Stop::Clean { .. }));
    let _ = segment::find_valid_frame_after(bytes, segment::SEGMENT_HEADER_BYTES, 0);
    clean
}

/// Puts `bytes` in a one-segment journal on simulated storage and runs recovery and verify.
fn recover(bytes: Vec<u8>) -> (bool, bool) {
    let storage = SimStorage::new();
    let journal_dir = journal::journal_dir(Path::new(common::SIM_DIR));
    storage.create_dir_all(&journal_dir).unwrap();
    storage.put_file(&journal_dir.join(segment::file_name(1)), bytes);
    let report = torrent_journal::verify(&storage, Path::new(common::SIM_DIR)).unwrap();
    let options = JournalOptions {
        storage: Arc::new(storage),
        ..common::sim_options(&SimStorage::new(), 1 << 20)
    };
    let opened = torrent_journal::Journal::open_with(common::SIM_DIR, options).map(|j| j.close());
    (report.is_clean(), opened.is_ok())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_journals_are_detected_or_recovered(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let corpus = corpus();
        let original = which.get(&corpus).clone();
        let mut bytes = original.clone();
        for mutation in &mutations {
            mutate(&mut bytes, mutation);
        }
        let clean_scan = exercise(&bytes);
        // Only the fixture's first segment starts at seq 1; others are judged by the scan only.
        if original.get(12..20) == Some(&1u64.to_le_bytes()[..]) {
            let (verified_clean, _opened) = recover(bytes.clone());
            if bytes != original && !bytes.starts_with(&original) {
                // Changed bytes are never all accepted: either the scan or verify notices, or the
                // change only cut whole frames off the end (a clean, shorter journal).
                let cut_on_boundary = original.starts_with(&bytes);
                prop_assert!(!verified_clean || !clean_scan || cut_on_boundary,
                    "undetected damage: {mutations:?}");
            }
        }
    }
}

#[test]
fn a_forged_huge_length_is_rejected_without_allocating() {
    let mut bytes = corpus().remove(0);
    let first = segment::SEGMENT_HEADER_BYTES;
    bytes[first..first + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        frame::decode(&bytes[first..]),
        Err(frame::FrameError::LengthTooLarge { .. })
    ));
    let (clean, opened) = recover(bytes);
    assert!(!clean);
    // The only segment's first frame is damaged with nothing valid after it? No: later frames
    // are intact, so this is mid-log damage and open must refuse.
    assert!(
        !opened,
        "a forged length in front of valid frames must not open"
    );
}

#[test]
fn a_zeroed_sector_mid_segment_is_an_error_with_its_location() {
    let mut bytes = corpus().remove(0);
    assert!(bytes.len() > 2048, "fixture segment large enough");
    bytes[1024..1536].fill(0);
    let storage = SimStorage::new();
    let journal_dir = journal::journal_dir(Path::new(common::SIM_DIR));
    storage.create_dir_all(&journal_dir).unwrap();
    let path = journal_dir.join(segment::file_name(1));
    storage.put_file(&path, bytes);
    let report = torrent_journal::verify(&storage, Path::new(common::SIM_DIR)).unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.problems[0].kind, journal::ProblemKind::DamagedFrame);
    let offset = report.problems[0].offset;
    assert!(offset <= 1536, "reported where the damage is: {offset}");
    let err = torrent_journal::Journal::open_with(
        common::SIM_DIR,
        common::sim_options(&storage, 1 << 20),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("00000000000000000001.seg"),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("offset {offset}")),
        "{err}"
    );
}
