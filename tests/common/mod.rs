//! Helpers shared by the integration tests: small events, journals on simulated storage.
#![allow(dead_code)]

pub mod generators;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use torrent_journal::event::Event;
use torrent_journal::journal::JournalOptions;
use torrent_journal::model::{InfoHash, ManualClock, Timestamp, TorrentState};
use torrent_journal::storage::{SimStorage, Storage};
use torrent_journal::testing::format::{frame, segment};
use torrent_journal::{Journal, JournalReader};

/// The store directory used on simulated storage.
pub const SIM_DIR: &str = "/store";

/// A deterministic commit clock starting at 2023-11-14T22:13:20Z.
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_nanos(
        1_700_000_000_000_000_000,
    )))
}

/// A small event (~40 bytes encoded) whose content depends on `n`.
pub fn small_event(n: u64) -> Event {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    Event::TorrentDeleted {
        info_hash: InfoHash::V1(bytes),
    }
}

/// A realistic ~1 KB event for torrent `n`.
pub fn torrent_event(n: u64) -> Event {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    let torrent = TorrentState::sample(
        InfoHash::V1(bytes),
        &format!("t{n}"),
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    );
    Event::TorrentSaved {
        torrent: Box::new(torrent),
    }
}

/// Options on simulated storage with a manual clock and the given segment size.
pub fn sim_options(storage: &SimStorage, segment_size_bytes: u64) -> JournalOptions {
    JournalOptions {
        segment_size_bytes,
        storage: Arc::new(storage.clone()),
        clock: clock(),
        ..JournalOptions::default()
    }
}

/// Writes `count` small events (one append each) to a fresh simulated journal.
pub fn sim_journal(count: u64, segment_size_bytes: u64) -> SimStorage {
    let storage = SimStorage::new();
    let journal = Journal::open_with(SIM_DIR, sim_options(&storage, segment_size_bytes)).unwrap();
    for n in 1..=count {
        journal.append(&small_event(n)).unwrap();
    }
    journal.close().unwrap();
    storage
}

/// The segment paths of a simulated journal, in order.
pub fn segments(storage: &SimStorage) -> Vec<PathBuf> {
    let reader = JournalReader::with_storage(Arc::new(storage.clone()), SIM_DIR).unwrap();
    reader
        .segments()
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

/// Every event's seq read back (panics on a read error).
pub fn read_seqs(storage: Arc<dyn Storage>, dir: &Path) -> Vec<u64> {
    JournalReader::with_storage(storage, dir)
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().seq)
        .collect()
}

/// Frame boundaries (offsets where each frame starts, plus the end) of a segment's bytes.
pub fn frame_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = segment::SEGMENT_HEADER_BYTES;
    while pos < bytes.len() {
        starts.push(pos);
        let raw = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap());
        let len = (raw & !frame::BATCH_START_BIT) as usize;
        pos += frame::FRAME_HEADER_BYTES + len;
    }
    starts.push(pos);
    starts
}

/// Runs `f` with a subscriber that collects WARN events (each as `field=value ` pairs, the
/// message included) and returns them with `f`'s result.
pub fn with_warnings<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let warnings = Warnings::default();
    let out = tracing::subscriber::with_default(warnings.clone(), f);
    let messages = warnings.0.lock().unwrap().clone();
    (out, messages)
}

/// Collects the fields of WARN events.
#[derive(Clone, Default)]
struct Warnings(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
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

/// A custom projection for the embedder-facing tests: folds what it is given through the
/// reducer, counts what the store asked of it, and can be told to report damage once.
#[derive(Debug, Default)]
pub struct Folding {
    pub state: torrent_journal::state::State,
    /// Events applied, installs and resets so far.
    pub applied: u64,
    pub installs: u64,
    pub resets: u64,
    /// The next `apply` fails with `Error::ProjectionDamaged` (and leaves the state unchanged).
    pub damage_next_apply: bool,
    /// The next `apply` fails with an error that is not damage (and leaves the state unchanged).
    pub fail_next_apply: bool,
}

impl torrent_journal::Projection for Folding {
    fn name(&self) -> &'static str {
        "folding"
    }

    fn checkpoint(&self) -> torrent_journal::Checkpoint {
        torrent_journal::Checkpoint {
            seq: self.state.last_seq,
            at: self.state.last_at,
        }
    }

    fn apply(&mut self, batch: &[torrent_journal::Envelope]) -> torrent_journal::Result<()> {
        if std::mem::take(&mut self.damage_next_apply) {
            return Err(torrent_journal::Error::ProjectionDamaged {
                projection: "folding",
                path: PathBuf::from("folding"),
                reason: "told to".into(),
            });
        }
        if std::mem::take(&mut self.fail_next_apply) {
            return Err(torrent_journal::Error::InvalidArgument(
                "told to fail".into(),
            ));
        }
        for envelope in batch {
            torrent_journal::state::apply(&mut self.state, envelope);
        }
        self.applied += batch.len() as u64;
        Ok(())
    }

    fn reset(&mut self) -> torrent_journal::Result<()> {
        self.state = Default::default();
        self.resets += 1;
        Ok(())
    }

    fn install(&mut self, state: &torrent_journal::state::State) -> torrent_journal::Result<()> {
        self.state = state.clone();
        self.installs += 1;
        Ok(())
    }
}
