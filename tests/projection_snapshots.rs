//! Pins down what each projection looks like after a fixed, deterministic event script that
//! covers every event kind: insta snapshots (in the top-level `snapshots/` folder) of the memory
//! state, the file tree with its contents, and a dump of the SQLite tables. A change to any
//! projection's output shows up as a snapshot diff to review.

use std::fmt::Write as _;
use std::sync::Arc;

use torrent_journal::event::{Envelope, Event, HookRecord};
use torrent_journal::model::{HookEvent, InfoHash, Timestamp, TorrentState};
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, MemoryProjection, Projection, SqliteOptions,
    SqliteProjection,
};
use torrent_journal::simulate::Simulation;
use torrent_journal::storage::SimStorage;

const BASE_NANOS: i64 = 1_700_000_000_000_000_000;

/// The script: a small simulated session plus the events the simulation never emits.
fn script() -> Vec<Envelope> {
    let sim = Simulation {
        seed: 11,
        torrents: 3,
        events: 45,
        tasks: 1,
        start: Timestamp::from_unix_nanos(BASE_NANOS),
    };
    let mut events: Vec<Event> = sim.task(0).collect();
    let extra = |n: u8| {
        TorrentState::sample(
            InfoHash::V1([n; 20]),
            &format!("extra-{n}"),
            Timestamp::from_unix_nanos(BASE_NANOS),
        )
    };
    events.push(Event::TorrentsSaved {
        torrents: vec![extra(0xa1), extra(0xb2)],
    });
    events.push(Event::TorrentDeleted {
        info_hash: InfoHash::V1([0xa1; 20]),
    });
    events.push(Event::Hook(HookRecord {
        event: HookEvent::TorrentRemoved,
        torrent: Box::new(extra(0xb2)),
        data: serde_json::Map::new(),
        timestamp: Timestamp::from_unix_nanos(BASE_NANOS),
    }));
    let kinds: std::collections::BTreeSet<&str> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds.len(),
        Event::KINDS.len(),
        "the script covers every kind: {kinds:?}"
    );
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            Envelope::new(
                i as u64 + 1,
                Timestamp::from_unix_nanos(BASE_NANOS + i as i64 * 1_000_000),
                e,
            )
        })
        .collect()
}

fn snapshot(name: &str, value: &str) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        insta::assert_snapshot!(name, value);
    });
}

#[test]
fn memory_projection_snapshot() {
    let mut memory = MemoryProjection::new();
    memory.apply(&script()).unwrap();
    snapshot(
        "projection_memory",
        &serde_json::to_string_pretty(memory.state()).unwrap(),
    );
}

#[test]
fn file_projection_snapshot() {
    let storage = SimStorage::new();
    let mut files = FileProjection::open(
        Arc::new(storage),
        "/files",
        FileProjectionOptions::default(),
    )
    .unwrap();
    files.apply(&script()).unwrap();
    let mut out = String::new();
    for (path, bytes) in files.tree_listing().unwrap() {
        match std::str::from_utf8(&bytes) {
            Ok(text) if !path.ends_with(".torrent") => writeln!(out, "=== {path}\n{text}").unwrap(),
            _ => writeln!(
                out,
                "=== {path} ({} bytes, crc32c {:08x})",
                bytes.len(),
                crc32(&bytes)
            )
            .unwrap(),
        }
    }
    snapshot("projection_files", &out);
}

#[test]
fn sqlite_projection_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sqlite =
        SqliteProjection::open(tmp.path().join("p.db"), SqliteOptions::default()).unwrap();
    sqlite.apply(&script()).unwrap();
    snapshot("projection_sqlite", &sqlite.dump_tables().unwrap());
}

/// A checksum to show binary files compactly (CRC-32/Castagnoli, bitwise: no extra dependency).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
