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

mod common;

use common::with_warnings;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use torrent_journal::event::Envelope;
use torrent_journal::history::{self, Target};
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{
    InfoHash, ManualClock, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::simulate::Simulation;
use torrent_journal::snapshot::{
    self, SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_BYTES, SnapshotBody, SnapshotError,
    SnapshotHeader, Tombstone,
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
    let path =
        torrent_journal::testing::format::write_snapshot(&storage, tmp.path(), &first).unwrap();
    assert_eq!(path, tmp.path().join("snapshots/00000000000000000040.snap"));
    torrent_journal::testing::format::write_snapshot(&storage, tmp.path(), &second).unwrap();
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
    let path =
        torrent_journal::testing::format::write_snapshot(&storage, Path::new(DIR), &small_body())
            .unwrap();
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
    let path =
        torrent_journal::testing::format::write_snapshot(&storage, Path::new(DIR), &small_body())
            .unwrap();
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
    torrent_journal::testing::format::write_snapshot(&storage, dir, &older).unwrap();
    let newest_path =
        torrent_journal::testing::format::write_snapshot(&storage, dir, &newer).unwrap();
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
        torrent_journal::testing::format::write_snapshot(&storage, Path::new(DIR), &body).unwrap();
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

/// A snapshot body as snapshot format 1 wrote it before `state.written` existed.
#[derive(serde::Serialize)]
struct BodyWithoutWriteTimes<'a> {
    state: StateWithoutWriteTimes<'a>,
    tombstones: &'a [Tombstone],
}

#[derive(serde::Serialize)]
struct StateWithoutWriteTimes<'a> {
    torrents: &'a std::collections::BTreeMap<InfoHash, Arc<TorrentState>>,
    session: &'a Option<SessionConfiguration>,
    metrics: &'a std::collections::BTreeMap<InfoHash, Vec<TorrentMetrics>>,
    last_seq: u64,
    last_at: Timestamp,
}

/// Header + body bytes, as `snapshot::encode` frames them.
fn framed(body: &[u8], state: &State) -> Vec<u8> {
    let header = SnapshotHeader {
        version: SNAPSHOT_FORMAT_VERSION,
        seq: state.last_seq,
        at: state.last_at,
        torrent_count: state.torrents.len() as u64,
        body_len: body.len() as u64,
        body_crc: crc32c::crc32c(body),
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(body);
    out
}

#[test]
fn write_times_round_trip_and_are_the_reducers() {
    let body = body(11, 8, 300);
    let written = &body.state.written;
    // One per live torrent, each the commit time of an event at or before the snapshot; most
    // torrents were last written well before it.
    assert_eq!(
        written.torrents.keys().collect::<Vec<_>>(),
        body.state.torrents.keys().collect::<Vec<_>>()
    );
    assert!(written.torrents.values().all(|&t| t <= body.state.last_at));
    let older = written
        .torrents
        .values()
        .filter(|&&t| t < body.state.last_at)
        .count();
    assert!(older >= written.torrents.len() / 2, "{written:?}");
    assert!(written.session.is_some_and(|t| t < body.state.last_at));

    let bytes = snapshot::encode(&body).unwrap();
    let (_, decoded) = snapshot::decode(&bytes).unwrap();
    assert_eq!(decoded.state.written, body.state.written);
    assert_eq!(decoded, body);
    // The split (parallel) decoder and serde agree on the field, in a body big enough to take
    // the split path's worker threads too.
    let big = body_with_distinct_times(4000);
    let bytes = snapshot::encode(&big).unwrap();
    assert!(bytes.len() > 4 << 20, "{} bytes", bytes.len());
    assert_eq!(snapshot::decode(&bytes).unwrap().1, big);
}

/// Many torrents, each with its own write time.
fn body_with_distinct_times(torrents: usize) -> SnapshotBody {
    let at = Timestamp::from_unix_nanos(START);
    let mut state = State {
        session: Some(SessionConfiguration::sample()),
        last_seq: 9_000,
        last_at: at.saturating_add_nanos(1 << 40),
        ..State::default()
    };
    state.written.session = Some(at.saturating_add_nanos(7));
    for n in 0..torrents {
        let mut bytes = [0u8; 20];
        bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
        let hash = InfoHash::V1(bytes);
        state.torrents.insert(
            hash,
            Arc::new(TorrentState::sample(hash, &format!("t{n}"), at)),
        );
        state
            .written
            .torrents
            .insert(hash, at.saturating_add_nanos(n as i64 * 1_000));
    }
    SnapshotBody {
        state,
        tombstones: Vec::new(),
    }
}

#[test]
fn a_body_without_write_times_reads_them_as_the_snapshots_own_time() {
    let body = body(5, 6, 200);
    assert!(body.state.torrents.len() >= 3 && body.state.session.is_some());
    let old = BodyWithoutWriteTimes {
        state: StateWithoutWriteTimes {
            torrents: &body.state.torrents,
            session: &body.state.session,
            metrics: &body.state.metrics,
            last_seq: body.state.last_seq,
            last_at: body.state.last_at,
        },
        tombstones: &body.tombstones,
    };
    let encoded = rmp_serde::to_vec_named(&old).unwrap();
    let (_, decoded) = snapshot::decode(&framed(&encoded, &body.state)).unwrap();
    let at = body.state.last_at;
    assert!(decoded.state.written.torrents.len() == body.state.torrents.len());
    assert!(decoded.state.written.torrents.values().all(|&t| t == at));
    assert_eq!(decoded.state.written.session, Some(at));
    assert_ne!(
        decoded.state.written, body.state.written,
        "the reducer's own times are earlier"
    );
    // Everything else is as written.
    let mut expected = body.clone();
    expected.state.written = decoded.state.written.clone();
    assert_eq!(decoded, expected);
    // A body whose write times miss some torrents (none live without one) is completed alike;
    // times of torrents that are not live are dropped.
    let mut partial = body.clone();
    let first = *partial.state.torrents.keys().next().unwrap();
    partial.state.written.torrents.remove(&first);
    partial
        .state
        .written
        .torrents
        .insert(InfoHash::V1([0xab; 20]), at);
    let (_, decoded) = snapshot::decode(&snapshot::encode(&partial).unwrap()).unwrap();
    let mut expected = body.state.written.clone();
    expected.torrents.insert(first, at);
    assert_eq!(decoded.state.written, expected);
}

/// `tests/fixtures/v1/snapshots-before-write-times/`: a snapshot of the v1 fixture journal at
/// seq 111, written by the build before write times were kept (`tj compact --retain-events 20`
/// on a copy of `tests/fixtures/v1/`). Never regenerate it.
fn old_snapshot_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1/snapshots-before-write-times/00000000000000000111.snap")
}

#[test]
fn a_snapshot_written_before_write_times_still_reads_and_restores() {
    let path = old_snapshot_fixture();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        crc32c::crc32c(&bytes),
        OLD_SNAPSHOT_CRC,
        "the fixture changed"
    );
    let journal = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let envelopes: Vec<Envelope> = torrent_journal::JournalReader::open(&journal)
        .unwrap()
        .events(1)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let head = envelopes.len();
    let at_111 = envelopes[110].at;

    // It reads: the reducer's state at 111, every write time being the snapshot's own.
    let body = snapshot::read_snapshot(&RealStorage, &path).unwrap();
    let reducer = State::from_envelopes(&envelopes[..111]);
    assert_eq!(body.state.torrents, reducer.torrents);
    assert_eq!(body.state.metrics, reducer.metrics);
    assert_eq!(body.state.session, reducer.session);
    assert_eq!((body.state.last_seq, body.state.last_at), (111, at_111));
    assert!(!body.state.torrents.is_empty());
    assert!(body.state.written.torrents.values().all(|&t| t == at_111));
    assert_eq!(body.state.written.torrents.len(), body.state.torrents.len());
    assert!(
        reducer.written.torrents.values().any(|&t| t < at_111),
        "the fallback is visible"
    );

    // A store compacted by that build: the fixture's segments from seq 100 plus the snapshot.
    // The state at the head has the true times of what was written after 111, the snapshot's
    // time for the rest.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("journal")).unwrap();
    std::fs::create_dir_all(tmp.path().join("snapshots")).unwrap();
    for name in ["00000000000000000100.seg", "00000000000000000126.seg"] {
        std::fs::copy(
            journal.join("journal").join(name),
            tmp.path().join("journal").join(name),
        )
        .unwrap();
    }
    std::fs::copy(
        &path,
        tmp.path().join("snapshots/00000000000000000111.snap"),
    )
    .unwrap();
    for target in [Target::Head, Target::Seq(120)] {
        let point = history::state_at(Arc::new(RealStorage), tmp.path(), target).unwrap();
        let n = match target {
            Target::Seq(seq) => seq as usize,
            _ => head,
        };
        let reducer = State::from_envelopes(&envelopes[..n]);
        assert_eq!(point.snapshot, Some(111), "{target}");
        assert_eq!(point.state.torrents, reducer.torrents, "{target}");
        let mut expected = reducer.written.clone();
        for t in expected.torrents.values_mut() {
            *t = (*t).max(at_111);
        }
        expected.session = expected.session.map(|t| t.max(at_111));
        assert_eq!(point.state.written, expected, "{target}");
        assert!(
            reducer.written.torrents.values().any(|&t| t > at_111),
            "{target}: some torrent was written after the snapshot"
        );
    }
}

/// CRC32C of `old_snapshot_fixture()`.
const OLD_SNAPSHOT_CRC: u32 = 0x48bb_c3ec;
