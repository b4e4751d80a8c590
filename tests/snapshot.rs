//! Snapshot files (`src/snapshot.rs`): a body round-trips byte-exactly through encode/decode and
//! through the file system (real and simulated); every kind of damage — each single-bit flip,
//! each truncation, arbitrary bytes, flips of several bits, a renamed file — is detected as an
//! error naming the file, never a wrong state and never a panic; a valid header of a future
//! format version is refused with `UnsupportedVersion`; and a damaged newest snapshot falls back
//! to the previous one (or to a replay of the journal) with a `tracing` warning.
//!
//! How: bodies are folded from the deterministic `Simulation`; damage is applied to the encoded
//! bytes directly (pure `decode`) and to files on `SimStorage` (`put_file`); warnings are caught
//! by a minimal `tracing` subscriber installed for the duration of one call.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use torrent_journal::event::Envelope;
use torrent_journal::history::{self, Target};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{ManualClock, Timestamp};
use torrent_journal::simulate::Simulation;
use torrent_journal::snapshot::{
    self, SNAPSHOT_HEADER_BYTES, SnapshotBody, SnapshotError, SnapshotHeader, Tombstone,
};
use torrent_journal::state::State;
use torrent_journal::storage::{RealStorage, SimStorage, Storage};
use torrent_journal::{Error, Journal};

const DIR: &str = "/store";
const START: i64 = 1_700_000_000_000_000_000;

fn sim(seed: u64, torrents: usize, events: usize) -> Simulation {
    Simulation {
        seed,
        torrents,
        events,
        tasks: 1,
        start: Timestamp::from_unix_nanos(START),
    }
}

/// The state after `events` simulated events (seq i+1 committed at START + i s), plus a
/// tombstone, as a snapshot body.
fn body(seed: u64, torrents: usize, events: usize) -> SnapshotBody {
    let envelopes: Vec<Envelope> = sim(seed, torrents, events)
        .task(0)
        .enumerate()
        .map(|(i, e)| {
            Envelope::new(
                i as u64 + 1,
                Timestamp::from_unix_nanos(START + i as i64 * 1_000_000_000),
                e,
            )
        })
        .collect();
    let state = State::from_envelopes(&envelopes);
    let tombstones = state
        .torrents
        .values()
        .next()
        .map(|t| Tombstone {
            info_hash: t.info_hash,
            removed_at: state.last_at,
            removed_seq: state.last_seq,
            last: (**t).clone(),
        })
        .into_iter()
        .collect();
    SnapshotBody { state, tombstones }
}

fn small_body() -> SnapshotBody {
    // A session configuration and one magnet (no metainfo yet): small enough to flip every bit.
    body(1, 1, 2)
}

/// Collects the messages of WARN events.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let warnings = Warnings::default();
    let out = tracing::subscriber::with_default(warnings.clone(), f);
    let messages = warnings.0.lock().unwrap().clone();
    (out, messages)
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

#[test]
fn body_round_trips_exactly() {
    let body = body(7, 5, 120);
    assert!(!body.state.torrents.is_empty());
    assert!(!body.state.metrics.is_empty());
    assert!(body.state.session.is_some());
    let bytes = snapshot::encode(&body).unwrap();
    let (header, decoded) = snapshot::decode(&bytes).unwrap();
    assert_eq!(decoded, body);
    assert_eq!(header.seq, 120);
    assert_eq!(header.at, body.state.last_at);
    assert_eq!(header.torrent_count, body.state.torrents.len() as u64);
    assert_eq!(
        header.body_len as usize,
        bytes.len() - SNAPSHOT_HEADER_BYTES
    );
    assert_eq!(&bytes[..8], b"TJSNAPSH");
    // Deterministic: the same state encodes to the same bytes.
    assert_eq!(snapshot::encode(&decoded).unwrap(), bytes);
}

#[test]
fn files_round_trip_on_the_real_file_system() {
    let tmp = tempfile::tempdir().unwrap();
    let storage = RealStorage;
    let first = body(3, 4, 40);
    let second = body(3, 4, 80);
    let path = snapshot::write_snapshot(&storage, tmp.path(), &first).unwrap();
    assert_eq!(path, tmp.path().join("snapshots/00000000000000000040.snap"));
    snapshot::write_snapshot(&storage, tmp.path(), &second).unwrap();
    let listed = snapshot::list_snapshots(&storage, tmp.path()).unwrap();
    assert_eq!(
        listed.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![40, 80]
    );
    assert_eq!(snapshot::read_snapshot(&storage, &path).unwrap(), first);
    let header = snapshot::read_header(&storage, &listed[1].path).unwrap();
    assert_eq!(header.seq, 80);
    let (info, newest) = snapshot::load_newest(&storage, tmp.path(), None)
        .unwrap()
        .unwrap();
    assert_eq!((info.seq, newest), (80, second));
    let (info, _) = snapshot::load_newest(&storage, tmp.path(), Some(79))
        .unwrap()
        .unwrap();
    assert_eq!(info.seq, 40);
    assert!(
        snapshot::load_newest(&storage, tmp.path(), Some(39))
            .unwrap()
            .is_none()
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "no tmp file left behind: {names:?}");
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = snapshot::encode(&small_body()).unwrap();
    assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    for bit in 0..bytes.len() * 8 {
        let damaged = flip(&bytes, bit);
        let err = snapshot::decode(&damaged).expect_err("a flipped bit must be detected");
        let expected_header = bit / 8 < SNAPSHOT_HEADER_BYTES;
        let in_header = !matches!(err, SnapshotError::BodyChecksum { .. });
        assert_eq!(in_header, expected_header, "bit {bit}: {err}");
    }
}

#[test]
fn every_truncation_and_extension_is_detected() {
    let bytes = snapshot::encode(&small_body()).unwrap();
    for len in 0..bytes.len() {
        assert!(snapshot::decode(&bytes[..len]).is_err(), "prefix {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        snapshot::decode(&longer).unwrap_err(),
        SnapshotError::BodyLength {
            declared: (bytes.len() - SNAPSHOT_HEADER_BYTES) as u64,
            actual: (longer.len() - SNAPSHOT_HEADER_BYTES) as u64,
        }
    );
}

#[test]
fn damaged_files_are_errors_naming_the_file() {
    let storage = SimStorage::new();
    let path = snapshot::write_snapshot(&storage, Path::new(DIR), &small_body()).unwrap();
    let good = storage.file_bytes(&path).unwrap();
    for (what, bytes) in [
        ("flip in header", flip(&good, 20 * 8)),
        ("flip in body", flip(&good, good.len() * 8 - 1)),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("empty", Vec::new()),
    ] {
        storage.put_file(&path, bytes);
        let err = snapshot::read_snapshot(&storage, &path).unwrap_err();
        assert!(
            matches!(err, Error::CorruptSnapshot { .. }),
            "{what}: {err}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{what}: {err}"
        );
        assert!(snapshot::read_header(&storage, &path).is_err() || what == "flip in body");
    }
    // A valid snapshot under another seq's name is not believed.
    storage.put_file(&path, good);
    let renamed = PathBuf::from(DIR).join("snapshots/00000000000000000099.snap");
    storage.put_file(&renamed, storage.file_bytes(&path).unwrap());
    let err = snapshot::read_snapshot(&storage, &renamed).unwrap_err();
    assert!(err.to_string().contains("file name says 99"), "{err}");
}

#[test]
fn a_future_version_is_refused_and_a_flipped_version_is_damage() {
    let bytes = snapshot::encode(&small_body()).unwrap();
    let header = SnapshotHeader::decode(&bytes).unwrap();
    let mut future = SnapshotHeader {
        version: 2,
        ..header
    }
    .encode()
    .to_vec();
    future.extend_from_slice(&bytes[SNAPSHOT_HEADER_BYTES..]);
    assert_eq!(
        snapshot::decode(&future).unwrap_err(),
        SnapshotError::UnsupportedVersion { found: 2 }
    );
    // The same version byte without a matching checksum is damage, not the future.
    let mut flipped = bytes.clone();
    flipped[8] = 2;
    assert!(matches!(
        snapshot::decode(&flipped).unwrap_err(),
        SnapshotError::HeaderChecksum { .. }
    ));

    let storage = SimStorage::new();
    let path = snapshot::write_snapshot(&storage, Path::new(DIR), &small_body()).unwrap();
    storage.put_file(&path, future);
    match snapshot::read_snapshot(&storage, &path).unwrap_err() {
        Error::UnsupportedVersion {
            path: p,
            found,
            supported,
        } => assert_eq!((p, found, supported), (path.clone(), 2, 1)),
        other => panic!("expected UnsupportedVersion, got {other}"),
    }
    // Not skipped as damage: this build must not quietly ignore what a newer one wrote.
    assert!(matches!(
        snapshot::load_newest(&storage, Path::new(DIR), None),
        Err(Error::UnsupportedVersion { .. })
    ));
}

#[test]
fn a_damaged_newest_snapshot_falls_back_with_a_warning() {
    let storage = SimStorage::new();
    let dir = Path::new(DIR);
    let older = body(5, 3, 30);
    let newer = body(5, 3, 60);
    snapshot::write_snapshot(&storage, dir, &older).unwrap();
    let newest_path = snapshot::write_snapshot(&storage, dir, &newer).unwrap();
    let good = storage.file_bytes(&newest_path).unwrap();
    storage.put_file(&newest_path, flip(&good, good.len() * 4));

    let (loaded, warnings) = with_warnings(|| snapshot::load_newest(&storage, dir, None));
    let (info, loaded) = loaded.unwrap().unwrap();
    assert_eq!((info.seq, loaded), (30, older.clone()));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("00000000000000000060.snap"),
        "{warnings:?}"
    );

    // Both damaged: nothing usable, the caller replays the journal.
    let older_path = dir.join("snapshots/00000000000000000030.snap");
    let good_older = storage.file_bytes(&older_path).unwrap();
    storage.put_file(&older_path, good_older[..100].to_vec());
    let (loaded, warnings) = with_warnings(|| snapshot::load_newest(&storage, dir, None));
    assert!(loaded.unwrap().is_none());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn opening_history_uses_the_newest_valid_snapshot_and_replays_only_the_tail() {
    let storage = SimStorage::new();
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START));
    let journal = Journal::open_with(
        DIR,
        JournalOptions {
            storage: Arc::new(storage.clone()),
            clock: Arc::new(clock.clone()),
            segment_size_bytes: 4096,
            ..JournalOptions::default()
        },
    )
    .unwrap();
    let mut envelopes = Vec::new();
    for event in sim(9, 4, 50).task(0) {
        clock.advance_nanos(1_000_000_000);
        let receipt = journal.append(&event).unwrap();
        envelopes.push(Envelope::new(receipt.first_seq, receipt.at, event));
    }
    journal.close().unwrap();
    let fold = |n: usize| State::from_envelopes(&envelopes[..n]);
    for n in [20, 35] {
        let body = SnapshotBody {
            state: fold(n),
            tombstones: Vec::new(),
        };
        snapshot::write_snapshot(&storage, Path::new(DIR), &body).unwrap();
    }
    let shared: Arc<dyn Storage> = Arc::new(storage.clone());
    let head = history::state_at(Arc::clone(&shared), DIR, Target::Head).unwrap();
    assert_eq!((head.snapshot, &head.state), (Some(35), &fold(50)));

    let newest = Path::new(DIR).join("snapshots/00000000000000000035.snap");
    let good = storage.file_bytes(&newest).unwrap();
    storage.put_file(&newest, flip(&good, 9 * 8));
    let (head, warnings) =
        with_warnings(|| history::state_at(Arc::clone(&shared), DIR, Target::Head));
    let head = head.unwrap();
    assert_eq!((head.snapshot, &head.state), (Some(20), &fold(50)));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("00000000000000000035.snap")),
        "{warnings:?}"
    );

    // A snapshot that disagrees with the journal (another history) is not used either.
    let mut foreign = fold(20);
    foreign.last_at = Timestamp::from_unix_nanos(1);
    storage.put_file(
        &Path::new(DIR).join("snapshots/00000000000000000020.snap"),
        snapshot::encode(&SnapshotBody {
            state: foreign,
            tombstones: Vec::new(),
        })
        .unwrap(),
    );
    let (head, warnings) =
        with_warnings(|| history::state_at(Arc::clone(&shared), DIR, Target::Head));
    let head = head.unwrap();
    assert_eq!((head.snapshot, &head.state), (None, &fold(50)));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_decode_or_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(snapshot::decode(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_magic_are_refused(rest in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = b"TJSNAPSH".to_vec();
        bytes.extend_from_slice(&rest);
        prop_assert!(snapshot::decode(&bytes).is_err());
    }

    #[test]
    fn multi_bit_flips_are_detected(bits in proptest::collection::btree_set(0usize..1_000_000, 1..4)) {
        let bytes = snapshot::encode(&small_body()).unwrap();
        let mut damaged = bytes.clone();
        let total_bits = bytes.len() * 8;
        let positions: std::collections::BTreeSet<usize> =
            bits.into_iter().map(|b| b % total_bits).collect();
        for bit in positions {
            damaged[bit / 8] ^= 1 << (bit % 8);
        }
        prop_assume!(damaged != bytes);
        prop_assert!(snapshot::decode(&damaged).is_err());
    }

    /// Garbage bodies with correct checksums reach the MessagePack decoder: still no panic, and
    /// anything accepted must agree with its header.
    #[test]
    fn garbage_bodies_with_valid_checksums_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        seq in any::<u64>(),
    ) {
        let header = SnapshotHeader {
            version: 1,
            seq,
            at: Timestamp::from_unix_nanos(0),
            torrent_count: 0,
            body_len: body.len() as u64,
            body_crc: crc32c::crc32c(&body),
        };
        let mut bytes = header.encode().to_vec();
        bytes.extend_from_slice(&body);
        if let Ok((decoded_header, decoded)) = snapshot::decode(&bytes) {
            prop_assert_eq!(decoded_header, header);
            prop_assert_eq!(decoded.state.last_seq, seq);
        }
    }

    /// Mutating a real body (then fixing both checksums) never panics the decoder.
    #[test]
    fn mutated_bodies_with_fixed_checksums_never_panic(pos in any::<usize>(), byte in any::<u8>()) {
        let bytes = snapshot::encode(&small_body()).unwrap();
        let mut body = bytes[SNAPSHOT_HEADER_BYTES..].to_vec();
        let pos = pos % body.len();
        body[pos] = byte;
        let header = SnapshotHeader {
            body_crc: crc32c::crc32c(&body),
            ..SnapshotHeader::decode(&bytes).unwrap()
        };
        let mut mutated = header.encode().to_vec();
        mutated.extend_from_slice(&body);
        let _ = snapshot::decode(&mutated);
    }
}
