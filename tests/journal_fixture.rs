//! Proves journals written by every released format version stay readable, and that this build
//! still writes each of them byte for byte. `tests/fixtures/v1/` is a checked-in journal (several
//! segments, every `Event` variant, all seven hook kinds, a v2 info hash); the tests read it in
//! place (read-only), verify it, and compare every event's `tj tail` JSON line with an insta
//! snapshot (`snapshots/journal_fixture__v1_tail.snap`); a CRC of its bytes guards against a
//! silent rewrite; and the current writer, fed the same deterministic input with
//! `format_version: 1`, must reproduce it exactly. `tests/fixtures/v2/` holds the same events
//! written by format version 2 (batch marks: appended in batches of three, so some frames are
//! unmarked); it must read back the same events, carry the marks where the batches started, and
//! be reproduced by the default writer. A copy of the v1 fixture continued by this build becomes
//! a mixed journal (v1 segments, then v2 ones) that reads, verifies and reopens end to end.
//!
//! Regenerate (only when creating the fixture of a NEW format version, never to "fix" an old
//! one): `TJ_REGENERATE_FIXTURES=<version> cargo test --test journal_fixture`, then update that
//! version's CRC constant.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use torrent_journal::event::{self, Event, HookRecord};
use torrent_journal::journal::JOURNAL_DIR_NAME;
use torrent_journal::model::{HookEvent, InfoHash, ManualClock, Timestamp, TorrentState};
use torrent_journal::simulate::Simulation;
use torrent_journal::storage::{RealStorage, SimStorage, Storage};
use torrent_journal::testing::format::segment;
use torrent_journal::{Journal, JournalOptions, JournalReader};

/// Set to a version (`2`) to (re)write `tests/fixtures/v<version>/` from the current writer.
const REGENERATE_VAR: &str = "TJ_REGENERATE_FIXTURES";
/// CRC32C over every fixture segment's name and bytes, in name order (see [`fixture_crc`]).
const FIXTURE_V1_CRC: u32 = 0xd574_4ec1;
/// The same for `tests/fixtures/v2/`.
const FIXTURE_V2_CRC: u32 = 0x872b_7775;
/// Events per append when writing the v2 fixture, so that batches of several frames exist.
const V2_BATCH_EVENTS: usize = 3;
/// Small segments, so the fixture spans several.
const SEGMENT_BYTES: u64 = 32 * 1024;
/// Where the fixture's clocks start: 2023-11-14T22:13:20Z.
const START_NANOS: i64 = 1_700_000_000_000_000_000;
/// The store directory used when generating on simulated storage.
const GEN_DIR: &str = "/fixture";

/// The v1 fixture store directory. Never regenerated.
fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1"))
}

/// The v2 fixture store directory; regenerates it first (once per test run) when asked to.
fn fixture_v2_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
        if std::env::var(REGENERATE_VAR).is_ok_and(|v| v == "2") {
            regenerate(&dir, 2);
        }
        dir
    })
}

/// The deterministic input: a simulated session plus explicit events, so every variant and
/// every hook kind appears, some for a v2 (32-byte) info hash.
fn fixture_events() -> Vec<Event> {
    let start = Timestamp::from_unix_nanos(START_NANOS);
    let sim = Simulation {
        seed: 42,
        torrents: 6,
        events: 120,
        tasks: 1,
        start,
    };
    let mut events: Vec<Event> = sim.task(0).collect();

    let mut v2_bytes = [0u8; 32];
    for (i, b) in v2_bytes.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    let v2 = InfoHash::V2(v2_bytes);
    let v2_torrent = TorrentState::sample(v2, "v2 torrent", start);
    for (i, &kind) in HookEvent::ALL.iter().enumerate() {
        let mut torrent = v2_torrent.clone();
        let mut data = Map::new();
        data.insert("fixture".into(), Value::from(i));
        if kind == HookEvent::TorrentError {
            torrent.error = Some("disk full".into());
            data.insert("error".into(), Value::from("disk full"));
        }
        events.push(Event::Hook(HookRecord {
            event: kind,
            torrent: Box::new(torrent),
            data,
            timestamp: Timestamp::from_unix_nanos(START_NANOS + 1_000_000_000 * i as i64),
        }));
    }
    let v1_torrent = TorrentState::sample(sim.info_hash(1), "torrent-000001", start);
    events.push(Event::TorrentsSaved {
        torrents: vec![v1_torrent, v2_torrent],
    });
    events.push(Event::TorrentsSaved { torrents: vec![] });
    events.push(Event::TorrentDeleted {
        info_hash: sim.info_hash(0),
    });
    events.push(Event::TorrentDeleted { info_hash: v2 });
    events
}

/// Writes the fixture stream with the current writer onto `storage` in segments of format
/// `version`, the commit clock advancing 250 ms before each append: one event per append for
/// version 1, [`V2_BATCH_EVENTS`] per append from version 2 on (so batch marks matter).
fn write_journal(storage: Arc<dyn Storage>, dir: &Path, events: Vec<Event>, version: u8) {
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START_NANOS));
    let options = JournalOptions {
        segment_size_bytes: SEGMENT_BYTES,
        storage,
        clock: Arc::new(clock.clone()),
        format_version: version,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options).unwrap();
    let per_append = if version == 1 { 1 } else { V2_BATCH_EVENTS };
    for chunk in events.chunks(per_append) {
        clock.advance(Duration::from_millis(250));
        journal.append_all(chunk).unwrap();
    }
    journal.close().unwrap();
}

/// The v1 fixture's events. Every fixture is written from them, so the checks test the writer
/// and the encoding, not the simulator that first produced the events (which may evolve).
fn fixture_stream() -> Vec<Event> {
    JournalReader::open(fixture_dir())
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().event)
        .collect()
}

/// The segments the current writer produces for the fixture's events in format `version`.
fn current_writer_segments(version: u8) -> Vec<(String, Vec<u8>)> {
    segments_for(fixture_stream(), version)
}

/// The segments the current writer produces for `events`: (file name, bytes).
fn segments_for(events: Vec<Event>, version: u8) -> Vec<(String, Vec<u8>)> {
    let storage = SimStorage::new();
    write_journal(
        Arc::new(storage.clone()),
        Path::new(GEN_DIR),
        events,
        version,
    );
    let reader = JournalReader::with_storage(Arc::new(storage.clone()), GEN_DIR).unwrap();
    reader
        .segments()
        .unwrap()
        .into_iter()
        .map(|s| {
            let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, storage.file_bytes(&s.path).unwrap())
        })
        .collect()
}

/// The fixture's segment files on disk: (file name, bytes), in name order.
fn fixture_segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let journal_dir = dir.join(JOURNAL_DIR_NAME);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&journal_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", journal_dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| segment::parse_file_name(name).is_some())
        .map(|name| {
            let bytes = std::fs::read(journal_dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

fn fixture_crc(files: &[(String, Vec<u8>)]) -> u32 {
    files.iter().fold(0, |crc, (name, bytes)| {
        let crc = crc32c::crc32c_append(crc, name.as_bytes());
        crc32c::crc32c_append(crc, bytes)
    })
}

fn regenerate(dir: &Path, version: u8) {
    let journal_dir = dir.join(JOURNAL_DIR_NAME);
    std::fs::create_dir_all(&journal_dir).unwrap();
    for (name, _) in fixture_segments(dir) {
        std::fs::remove_file(journal_dir.join(name)).unwrap();
    }
    let files = segments_for(fixture_stream(), version);
    for (name, bytes) in &files {
        std::fs::write(journal_dir.join(name), bytes).unwrap();
    }
    eprintln!(
        "wrote {} segments to {}; set FIXTURE_V{version}_CRC to {:#010x}",
        files.len(),
        journal_dir.display(),
        fixture_crc(&files)
    );
}

/// Every fixture event as its `tj tail` JSON line.
fn tail_lines(dir: &Path) -> Vec<String> {
    JournalReader::open(dir)
        .unwrap()
        .events(1)
        .unwrap()
        .map(|envelope| serde_json::to_string(&event::to_json_line(&envelope.unwrap())).unwrap())
        .collect()
}

#[test]
fn the_v1_fixture_reads_verifies_and_matches_its_snapshot() {
    let dir = fixture_dir();
    let before = fixture_segments(dir);
    assert!(
        before.len() >= 2,
        "the fixture spans several segments: {}",
        before.len()
    );

    let report = torrent_journal::verify(&RealStorage, dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let expected_events = fixture_events().len() as u64;
    assert_eq!(report.extent.events, expected_events);
    assert_eq!(report.extent.segments, before.len());
    assert_eq!(report.extent.first_seq, Some(1));
    assert_eq!(report.extent.last_seq, Some(expected_events));

    let reader = JournalReader::open(dir).unwrap();
    let envelopes: Vec<_> = reader.events(1).unwrap().map(Result::unwrap).collect();
    let seqs: Vec<u64> = envelopes.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=expected_events).collect::<Vec<_>>());
    assert!(envelopes.windows(2).all(|w| w[0].at < w[1].at));

    let kinds: BTreeSet<&str> = envelopes.iter().map(|e| e.event.kind()).collect();
    let all: BTreeSet<&str> = Event::KINDS.into_iter().collect();
    assert_eq!(
        kinds, all,
        "every event kind (and so every hook kind) is in the fixture"
    );
    assert!(
        envelopes
            .iter()
            .flat_map(|e| e.event.info_hashes())
            .any(|h| !h.is_v1()),
        "a v2 info hash is in the fixture"
    );

    let lines = tail_lines(dir);
    assert_eq!(lines.len() as u64, expected_events);
    insta::with_settings!({ snapshot_path => "../snapshots" }, {
        insta::assert_snapshot!("v1_tail", lines.join("\n"));
    });

    assert_eq!(fixture_segments(dir), before, "reading changed nothing");
}

#[test]
fn the_v1_fixture_bytes_are_unchanged() {
    let files = fixture_segments(fixture_dir());
    let crc = fixture_crc(&files);
    assert!(
        crc == FIXTURE_V1_CRC,
        "tests/fixtures/v1 was rewritten (CRC {crc:#010x}, recorded {FIXTURE_V1_CRC:#010x}): a \
         fixture of a released format version must never change (restore it from version \
         control)"
    );
}

#[test]
fn the_current_writer_still_writes_format_v1_byte_for_byte() {
    let fixture = fixture_segments(fixture_dir());
    let current = current_writer_segments(1);
    let names = |files: &[(String, Vec<u8>)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&current), names(&fixture), "segment names differ");
    for ((name, now), (_, then)) in current.iter().zip(&fixture) {
        let first_difference = now.iter().zip(then).position(|(a, b)| a != b);
        assert!(
            now == then,
            "{name}: the current writer no longer reproduces the v1 fixture (lengths {} vs {}, \
             first difference at byte {first_difference:?}). If the encoding changed on purpose, \
             bump segment::FORMAT_VERSION, add tests/fixtures/v2 with its own test, and keep v1 \
             readable; never regenerate v1. (If only the fixture's input changed, e.g. \
             simulate.rs or TorrentState::sample, pin the input instead.)",
            now.len(),
            then.len()
        );
    }
}

#[test]
fn a_writer_continues_a_copy_of_the_v1_fixture() {
    let dir = fixture_dir();
    let before = fixture_segments(dir);
    let tmp = tempfile::tempdir().unwrap();
    let copy_journal = tmp.path().join(JOURNAL_DIR_NAME);
    std::fs::create_dir(&copy_journal).unwrap();
    for (name, bytes) in &before {
        std::fs::write(copy_journal.join(name), bytes).unwrap();
    }
    let count = fixture_events().len() as u64;

    let journal = Journal::open(tmp.path()).unwrap();
    let receipt = journal
        .append(&Event::TorrentDeleted {
            info_hash: InfoHash::V1([7; 20]),
        })
        .unwrap();
    assert_eq!(receipt.first_seq, count + 1);
    journal.close().unwrap();

    let report = torrent_journal::verify(&RealStorage, tmp.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.extent.events, count + 1);
    let mut lines = tail_lines(tmp.path());
    assert_eq!(
        lines.pop().map(|l| l.contains(&"07".repeat(20))),
        Some(true)
    );
    assert_eq!(lines, tail_lines(dir), "the old events read back unchanged");
    assert_eq!(
        fixture_segments(dir),
        before,
        "the checked-in fixture is untouched"
    );
}

#[test]
fn the_v2_fixture_holds_the_v1_events_with_batch_marks() {
    let dir = fixture_v2_dir();
    let files = fixture_segments(dir);
    let crc = fixture_crc(&files);
    assert!(
        crc == FIXTURE_V2_CRC,
        "tests/fixtures/v2 was rewritten (CRC {crc:#010x}, recorded {FIXTURE_V2_CRC:#010x}): a \
         fixture of a released format version must never change"
    );
    let report = torrent_journal::verify(&RealStorage, dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let v2_events: Vec<Event> = JournalReader::open(dir)
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().event)
        .collect();
    assert!(v2_events == fixture_stream(), "the same events as v1");

    let mut marked = Vec::new();
    for (name, bytes) in &files {
        let header = segment::SegmentHeader::decode(bytes).unwrap();
        assert_eq!(header.version, 2, "{name}");
        let frames = segment::Scan::new(bytes, header.first_seq);
        marked.extend(frames.map(|f| f.frame.batch_start));
    }
    // Appends of three events that never straddle a rotation: every third frame is marked.
    let expected: Vec<bool> = (0..marked.len())
        .map(|i| i % V2_BATCH_EVENTS == 0)
        .collect();
    assert_eq!(marked, expected);
}

#[test]
fn the_current_writer_writes_format_v2_byte_for_byte() {
    let fixture = fixture_segments(fixture_v2_dir());
    let current = current_writer_segments(2);
    assert_eq!(current.len(), fixture.len(), "segment count");
    for ((name, now), (then_name, then)) in current.iter().zip(&fixture) {
        assert_eq!(name, then_name);
        assert!(
            now == then,
            "{name}: the current writer no longer reproduces the v2 fixture; if the encoding \
             changed on purpose, bump the format version and add a fixture for it"
        );
    }
}

#[test]
fn a_v1_journal_continued_by_this_build_mixes_versions_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let journal_dir = tmp.path().join(JOURNAL_DIR_NAME);
    std::fs::create_dir(&journal_dir).unwrap();
    for (name, bytes) in fixture_segments(fixture_dir()) {
        std::fs::write(journal_dir.join(name), bytes).unwrap();
    }
    let count = fixture_events().len() as u64;
    let more: Vec<Event> = (0..200)
        .map(|i| Event::TorrentDeleted {
            info_hash: InfoHash::V1([i as u8; 20]),
        })
        .collect();
    let options = || JournalOptions {
        segment_size_bytes: SEGMENT_BYTES / 8,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(tmp.path(), options()).unwrap();
    for chunk in more.chunks(4) {
        journal.append_all(chunk).unwrap();
    }
    journal.close().unwrap();

    let versions: Vec<u8> = fixture_segments(tmp.path())
        .iter()
        .map(|(_, bytes)| segment::SegmentHeader::decode(bytes).unwrap().version)
        .collect();
    let first_v2 = versions.iter().position(|&v| v == 2).expect("a v2 segment");
    assert!(first_v2 > 0, "{versions:?}");
    assert!(versions[first_v2..].iter().all(|&v| v == 2), "{versions:?}");

    let report = torrent_journal::verify(&RealStorage, tmp.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.extent.events, count + 200);
    let journal = Journal::open_with(tmp.path(), options()).unwrap();
    assert_eq!(journal.append(&more[0]).unwrap().first_seq, count + 201);
    journal.close().unwrap();
    let lines = tail_lines(tmp.path());
    assert_eq!(lines[..count as usize], tail_lines(fixture_dir())[..]);
    assert_eq!(lines.len() as u64, count + 201);
}
