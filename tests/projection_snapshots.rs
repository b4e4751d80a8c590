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
    let mut failing = extra(0xb2);
    failing.error = Some("tracker: unregistered torrent".to_owned());
    events.push(Event::Hook(HookRecord {
        event: HookEvent::TorrentError,
        torrent: Box::new(failing),
        data: serde_json::Map::new(),
        timestamp: Timestamp::from_unix_nanos(BASE_NANOS),
    }));
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
    let mut state = serde_json::to_value(memory.state()).unwrap();
    summarize_metainfo(&mut state);
    snapshot(
        "projection_memory",
        &serde_json::to_string_pretty(&state).unwrap(),
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
    snapshot(
        "projection_sqlite",
        &summarize_blobs(&sqlite.dump_tables().unwrap()),
    );
}

/// Replaces every `meta_info` (base64 of a `.torrent`, 10 KB to MBs) by its length and checksum:
/// a snapshot shows that the bytes changed, not the bytes.
fn summarize_metainfo(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "meta_info" => {
                        let bytes = base64_len(text);
                        *text = format!(
                            "<{bytes} bytes, base64 crc32c {:08x}>",
                            crc32(text.as_bytes())
                        );
                    }
                    _ => summarize_metainfo(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(summarize_metainfo),
        _ => {}
    }
}

fn base64_len(text: &str) -> usize {
    text.len() / 4 * 3 - text.bytes().rev().take_while(|&b| b == b'=').count()
}

/// Replaces each long SQL blob literal `x'<hex>'` in a table dump by its length and checksum.
fn summarize_blobs(dump: &str) -> String {
    let mut out = String::with_capacity(dump.len());
    let mut rest = dump;
    while let Some(start) = rest.find("x'") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('\'').expect("a closed blob literal");
        let hex = &after[..end];
        if hex.len() > 64 {
            let crc = crc32(hex.as_bytes());
            write!(out, "x'<{} bytes, hex crc32c {crc:08x}>'", hex.len() / 2).unwrap();
        } else {
            write!(out, "x'{hex}'").unwrap();
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
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
