//! Owns [`Harness`]: a real store in a temporary directory, driven by a [`Script`] with a
//! deterministic clock, into the built-in projections and any of yours.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{EPOCH_NANOS, ManualClock, Script};
use crate::compaction::{self, CompactOptions, CompactReport, Retention};
use crate::error::{Error, IoContext, Result};
use crate::history::Target;
use crate::journal::{JournalOptions, JournalReader};
use crate::model::Timestamp;
use crate::projection::{CatchUp, Projection, replay_into};
use crate::state::State;
use crate::storage::RealStorage;
use crate::store::{StoreOptions, TorrentStore};

/// A store directory in a fresh temporary directory (removed on drop), a [`ManualClock`] the
/// journal commits with, and the options every open uses.
///
/// Synchronous on purpose, for plain `#[test]` functions: each call runs the async store on
/// its own single-threaded runtime (so do not call it from inside a tokio runtime).
#[derive(Debug)]
pub struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    options: StoreOptions,
}

impl Harness {
    /// A harness whose store keeps the memory projection only.
    pub fn new() -> Result<Harness> {
        Self::with_options(StoreOptions::default())
    }

    /// A harness opening the store with `options` (their journal clock is replaced by the
    /// harness's; small segments, 16 KiB, so compaction has sealed segments to remove).
    pub fn with_options(mut options: StoreOptions) -> Result<Harness> {
        let dir = tempfile::tempdir().ctx("create temp dir", std::env::temp_dir())?;
        let clock = ManualClock::new(Timestamp::from_unix_nanos(EPOCH_NANOS));
        options.journal = JournalOptions {
            clock: Arc::new(clock.clone()),
            segment_size_bytes: 16 * 1024,
            ..options.journal
        };
        Ok(Harness {
            dir,
            clock,
            options,
        })
    }

    /// Also keeps the SQLite projection (`DIR/state.db`, with the `sqlite` feature) and the file
    /// projection (`DIR/files/`).
    pub fn with_disk_projections(self) -> Harness {
        let options = self.options.clone().with_files();
        #[cfg(feature = "sqlite")]
        let options = options.with_sqlite();
        Harness { options, ..self }
    }

    /// Registers your projection on the store ([`StoreOptions::with_projection`]): every run
    /// and open feeds it.
    pub fn with_projection<P: Projection + 'static>(self, projection: Arc<Mutex<P>>) -> Harness {
        let options = self.options.clone().with_projection(projection);
        Harness { options, ..self }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The clock the journal commits with.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The options every open uses.
    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Opens the store, appends every step of `script` (each committed at its step's time),
    /// waits for every projection, and closes the store.
    pub fn run(&self, script: &Script) -> Result<()> {
        self.with_store(|store| async move {
            for step in script.steps() {
                self.clock.set(step.at);
                store.append_event(step.event.clone()).await?;
            }
            Ok(())
        })
    }

    /// Opens the store (catching every projection up), runs `work` on it, waits for the
    /// projections and closes it.
    pub fn with_store<'a, F, T>(&'a self, work: impl FnOnce(TorrentStore) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>> + 'a,
    {
        runtime()?.block_on(async {
            let store = TorrentStore::open(self.dir(), self.options.clone()).await?;
            let result = work(store.clone()).await;
            store.flush_projections().await?;
            store.close().await?;
            result
        })
    }

    /// The reducer's state at the head (the memory projection after an open).
    pub fn state(&self) -> Result<State> {
        self.with_store(|store| async move { Ok(store.read_memory(|m| m.state().clone())) })
    }

    /// Replays the journal into `projection` up to `target` ([`replay_into`]).
    pub fn replay_into(&self, projection: &mut dyn Projection, target: Target) -> Result<CatchUp> {
        let reader = JournalReader::open(self.dir())?;
        replay_into(&reader, projection, target, &mut |_| {})
    }

    /// Compacts the journal so that it keeps only the last `retain_events` events (plus the
    /// rest of their segments): twice — first with the boundary halfway, then at `head −
    /// retain_events` — because a compaction removes only what the *previous* snapshot covers.
    /// Returns the second report.
    pub fn compact(&self, retain_events: u64) -> Result<CompactReport> {
        let head = JournalReader::open(self.dir())?
            .head()?
            .map_or(0, |(seq, _)| seq);
        let halfway = retain_events + head.saturating_sub(retain_events) / 2;
        let options = |retain| CompactOptions {
            retain: Retention::Events(retain),
            ..CompactOptions::default()
        };
        compaction::compact(Arc::new(RealStorage), self.dir(), &options(halfway))?;
        compaction::compact(Arc::new(RealStorage), self.dir(), &options(retain_events))
    }

    /// The first seq the journal still holds.
    pub fn first_retained_seq(&self) -> Result<u64> {
        JournalReader::open(self.dir())?.first_retained_seq()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start a tokio runtime: {e}")))
}
