//! Proves journals written by format version 1 stay readable, and that this build still writes
//! version 1 byte for byte. `tests/fixtures/v1/` is a checked-in journal (several segments,
//! every `Event` variant, all seven hook kinds, a v2 info hash); the tests read it in place
//! (read-only), verify it, and compare every event's `tj tail` JSON line with an insta snapshot
//! (`snapshots/journal_fixture__v1_tail.snap`); a CRC of its bytes guards against a silent
//! rewrite; and the current writer, fed the same deterministic input, must reproduce it exactly.
//!
//! Regenerate (only when creating the fixture of a NEW format version, never to "fix" v1):
//! `TJ_REGENERATE_FIXTURES=1 cargo test --test journal_fixture`, then update `FIXTURE_V1_CRC`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};
use torrent_journal::event::{self, Event, HookRecord};
use torrent_journal::journal::{self, JOURNAL_DIR_NAME, segment};
use torrent_journal::model::{HookEvent, InfoHash, ManualClock, Timestamp, TorrentState};
use torrent_journal::simulate::Simulation;
use torrent_journal::storage::{RealStorage, SimStorage, Storage};
use torrent_journal::{Journal, JournalOptions, JournalReader};

/// Set to `1` to (re)write `tests/fixtures/v1/` from the current writer.
const REGENERATE_VAR: &str = "TJ_REGENERATE_FIXTURES";
/// CRC32C over every fixture segment's name and bytes, in name order (see [`fixture_crc`]).
const FIXTURE_V1_CRC: u32 = 0xd574_4ec1;
/// Small segments, so the fixture spans several.
const SEGMENT_BYTES: u64 = 32 * 1024;
/// Where the fixture's clocks start: 2023-11-14T22:13:20Z.
const START_NANOS: i64 = 1_700_000_000_000_000_000;
/// The store directory used when generating on simulated storage.
const GEN_DIR: &str = "/fixture";

/// The fixture store directory; regenerates it first (once per test run) when asked to.
fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
        if std::env::var(REGENERATE_VAR).is_ok_and(|v| v == "1") {
            regenerate(&dir);
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

/// Writes the fixture stream with the current writer onto `storage`, one append per event, the
/// commit clock advancing 250 ms before each.
fn write_journal(storage: Arc<dyn Storage>, dir: &Path, events: Vec<Event>) {
    let clock = ManualClock::new(Timestamp::from_unix_nanos(START_NANOS));
    let options = JournalOptions {
        segment_size_bytes: SEGMENT_BYTES,
        storage,
        clock: Arc::new(clock.clone()),
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options).unwrap();
    for event in events {
        clock.advance(Duration::from_millis(250));
        journal.append(&event).unwrap();
    }
    journal.close().unwrap();
}

/// The segments the current writer produces for the fixture's own events: (file name, bytes).
/// The input is read back from the fixture, so this checks the writer and the encoding, not the
/// simulator that first produced the events (which may evolve).
fn current_writer_segments() -> Vec<(String, Vec<u8>)> {
    let events: Vec<Event> = JournalReader::open(fixture_dir())
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().event)
        .collect();
    segments_for(events)
}

/// The segments the current writer produces for `events`: (file name, bytes).
fn segments_for(events: Vec<Event>) -> Vec<(String, Vec<u8>)> {
    let storage = SimStorage::new();
    write_journal(Arc::new(storage.clone()), Path::new(GEN_DIR), events);
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

fn regenerate(dir: &Path) {
    let journal_dir = dir.join(JOURNAL_DIR_NAME);
    std::fs::create_dir_all(&journal_dir).unwrap();
    for (name, _) in fixture_segments(dir) {
        std::fs::remove_file(journal_dir.join(name)).unwrap();
    }
    let files = segments_for(fixture_events());
    for (name, bytes) in &files {
        std::fs::write(journal_dir.join(name), bytes).unwrap();
    }
    eprintln!(
        "wrote {} segments to {}; set FIXTURE_V1_CRC to {:#010x}",
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

    let report = journal::verify(&RealStorage, dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let expected_events = fixture_events().len() as u64;
    assert_eq!(report.events, expected_events);
    assert_eq!(report.segments, before.len());
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(expected_events));

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
    let current = current_writer_segments();
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

    let report = journal::verify(&RealStorage, tmp.path()).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.events, count + 1);
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
