//! The store: the seed's persistence interface (and metrics interface, and a hook sink) as
//! "append an event, let the projections follow".
//!
//! Writes go to the journal; the writer thread hands every committed batch, in seq order, to
//! the memory projection (before the appender is answered: read-your-writes) and to a bounded
//! queue feeding the disk projections (SQLite, files) on their own thread, which sets a
//! projection found damaged aside and rebuilds it from the journal at once. Blocking work never
//! runs on the async runtime's worker threads: the journal and the projections have their own
//! threads, and opening runs under `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::compaction::{self, CompactionPolicy};
use crate::error::{Error, IoContext, Result};
use crate::event::{Envelope, Event};
use crate::journal::{JournalOptions, JournalReader, Receipt};
use crate::model::{
    Clock, HookContext, InfoHash, MetricsSummary, SessionConfiguration, Timestamp, TorrentMetrics,
    TorrentState,
};
use crate::projection::custom::{self, Registered};
use crate::projection::{
    self, Base, FileProjection, FileProjectionOptions, MemoryProjection, MemoryStats, Projection,
};
#[cfg(feature = "sqlite")]
use crate::projection::{SqliteOptions, SqliteProjection};
use crate::storage::Storage;
use crate::typed_journal::{EventListener, Journal};

/// Which projections a store keeps besides memory (always on), and how.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The journal's options (durability, segment size, storage, clock).
    pub journal: JournalOptions,
    /// A SQLite projection at this path (relative paths are inside the store directory).
    #[cfg(feature = "sqlite")]
    pub sqlite: Option<PathBuf>,
    #[cfg(feature = "sqlite")]
    /// The SQLite projection's options.
    pub sqlite_options: SqliteOptions,
    /// A file projection in this directory (relative paths are inside the store directory).
    pub files: Option<PathBuf>,
    /// The file projection's options.
    pub file_options: FileProjectionOptions,
    /// Committed batches that may wait for the disk projections before appends slow down.
    pub projection_queue_batches: usize,
    /// Automatic compaction (off by default): compacts in the background when due.
    pub compaction: CompactionPolicy,
    /// The cheap drift check at open (off by default): after catching up, compare each disk
    /// projection's counts and digest with the reducer's state ([`crate::check`]); one that
    /// drifted (a program wrote to it behind the journal's back) is set aside as
    /// `<name>.drifted-<UTC time>` with a warning and rebuilt from the journal.
    pub drift_check: bool,
    /// The embedder's own projections ([`StoreOptions::with_projection`]).
    pub projections: Registered,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            journal: JournalOptions::default(),
            #[cfg(feature = "sqlite")]
            sqlite: None,
            #[cfg(feature = "sqlite")]
            sqlite_options: SqliteOptions::default(),
            files: None,
            file_options: FileProjectionOptions::default(),
            projection_queue_batches: 1024,
            compaction: CompactionPolicy::default(),
            drift_check: false,
            projections: Registered::default(),
        }
    }
}

impl StoreOptions {
    /// Default file name of the SQLite projection inside the store directory.
    pub const SQLITE_FILE_NAME: &'static str = "state.db";
    /// Default directory of the file projection inside the store directory.
    pub const FILES_DIR_NAME: &'static str = "files";

    /// Adds the SQLite projection at `DIR/state.db`.
    #[cfg(feature = "sqlite")]
    pub fn with_sqlite(mut self) -> Self {
        self.sqlite = Some(PathBuf::from(Self::SQLITE_FILE_NAME));
        self
    }

    /// Whether any projection besides memory is configured (they need the projection thread).
    fn has_disk_projections(&self) -> bool {
        #[cfg(feature = "sqlite")]
        if self.sqlite.is_some() {
            return true;
        }
        self.files.is_some() || !self.projections.is_empty()
    }

    /// Adds the file projection at `DIR/files/`.
    pub fn with_files(mut self) -> Self {
        self.files = Some(PathBuf::from(Self::FILES_DIR_NAME));
        self
    }

    /// Turns the cheap drift check at open on or off (see [`StoreOptions::drift_check`]).
    pub fn with_drift_check(mut self, on: bool) -> Self {
        self.drift_check = on;
        self
    }

    /// Registers a projection of your own: the store catches it up at open (rebuilding it when
    /// it is ahead of the journal or reports damage, installing the newest snapshot's state
    /// when compaction removed the events it needs) and feeds it every committed batch on its
    /// projection thread, like the SQLite and file projections; `flush_projections` waits for
    /// it. Keep a clone of the `Arc` to read it — briefly: the projection thread waits for the
    /// lock, and never hold it across an `.await`. See [`crate::projection::custom`].
    pub fn with_projection<P: Projection + 'static>(mut self, projection: Arc<Mutex<P>>) -> Self {
        self.projections.push(projection);
        self
    }
}

/// The embedded store. Cheap to clone; every method is safe to call from many tasks at once.
#[derive(Debug, Clone)]
pub struct TorrentStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    journal: Journal,
    memory: Arc<RwLock<MemoryProjection>>,
    applier: Mutex<Option<JoinHandle<()>>>,
    applied: Arc<Progress>,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "sqlite")]
    sqlite_path: Option<PathBuf>,
    files_dir: Option<PathBuf>,
    auto: AutoCompaction,
}

/// The state of automatic compaction.
#[derive(Debug)]
struct AutoCompaction {
    policy: CompactionPolicy,
    storage: Arc<dyn crate::storage::Storage>,
    /// Seq and writer byte count when the last compaction started.
    mark: Mutex<(u64, u64)>,
    running: Mutex<Option<JoinHandle<()>>>,
}

/// The disk projections' applied seq, waitable.
#[derive(Debug, Default)]
struct Progress {
    seq: Mutex<u64>,
    changed: Condvar,
}

impl Progress {
    fn set(&self, seq: u64) {
        *self.seq.lock().unwrap_or_else(|p| p.into_inner()) = seq;
        self.changed.notify_all();
    }

    fn wait_for(&self, target: u64, timeout: Duration) -> bool {
        let guard = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |seq| *seq < target)
            .unwrap_or_else(|p| p.into_inner());
        *guard >= target
    }
}

/// A batch of committed events on its way to the disk projections.
type Batch = Vec<Envelope>;

impl TorrentStore {
    /// Opens the store in `dir`: takes the journal's lock, recovers it, opens the configured
    /// projections and catches them up (rebuilding any that is ahead of the journal or from
    /// another one). A damaged projection — SQLite corrupt or not a database, a failed
    /// `PRAGMA quick_check`, a file of the file projection that does not parse — is moved aside
    /// (`state.db.damaged-<UTC time>`, `files.damaged-<UTC time>`, with a warning) and rebuilt
    /// from the journal; other projection errors (permission denied, locked, ...) fail the open.
    /// Runs the blocking work off the async runtime.
    pub async fn open(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir, options))
            .await
            .map_err(|e| Error::Internal {
                what: format!("store open task failed: {e}"),
            })?
    }

    /// [`TorrentStore::open`] for synchronous callers (not on an async worker thread).
    pub fn open_blocking(dir: &Path, options: StoreOptions) -> Result<Self> {
        let memory = Arc::new(RwLock::new(MemoryProjection::new()));
        let has_disk = options.has_disk_projections();
        let (tx, rx) = sync_channel::<Batch>(options.projection_queue_batches.max(1));
        let listener = listener(Arc::clone(&memory), has_disk.then_some(tx));
        let clock = Arc::clone(&options.journal.clock);
        let journal = Journal::open_listening(dir, options.journal.clone(), Some(listener))?;
        let reader = JournalReader::with_storage(Arc::clone(&options.journal.storage), dir)?;

        {
            let mut memory = memory.write().unwrap_or_else(|p| p.into_inner());
            projection::catch_up_from(&mut *memory, &reader, Base::Newest, &mut |_| {})?;
        }
        let specs = disk_specs(&options, dir);
        let disk = open_disk(specs, &reader, clock.as_ref(), options.drift_check, &memory)?;
        let custom = options.projections.open_caught_up(&reader)?;
        let applied = Arc::new(Progress::default());
        applied.set(journal.status().last_seq());
        let applier = if disk.is_empty() && custom.is_empty() {
            None
        } else {
            let progress = Arc::clone(&applied);
            let clock = Arc::clone(&clock);
            let thread = std::thread::Builder::new()
                .name("tj-projections".into())
                .spawn(move || {
                    let mut feeds = Feeds { disk, custom };
                    run_applier(&mut feeds, rx, &progress, &reader, clock.as_ref())
                })
                .ctx("spawn projection thread", dir)?;
            Some(thread)
        };
        info!(dir = %dir.display(), last_seq = journal.status().last_seq(), "store open");
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                journal,
                memory,
                applier: Mutex::new(applier),
                applied,
                clock,
                #[cfg(feature = "sqlite")]
                sqlite_path: options.sqlite.as_ref().map(|p| dir.join(p)),
                files_dir: options.files.as_ref().map(|p| dir.join(p)),
                auto: AutoCompaction {
                    policy: options.compaction,
                    storage: Arc::clone(&options.journal.storage),
                    mark: Mutex::new((0, 0)),
                    running: Mutex::new(None),
                },
            }),
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The SQLite projection's path, if configured (open it read-only for your own queries).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.inner.sqlite_path.as_deref()
    }

    /// The file projection's directory, if configured.
    pub fn files_dir(&self) -> Option<&Path> {
        self.inner.files_dir.as_deref()
    }

    /// Seq of the last committed event (0 if none).
    pub fn last_seq(&self) -> u64 {
        self.inner.journal.status().last_seq()
    }

    async fn append(&self, event: Event) -> Result<Receipt> {
        let receipt = self.inner.journal.append_events_async(vec![event]).await?;
        self.maybe_compact();
        Ok(receipt)
    }

    /// Starts a background compaction when the policy says one is due and none is running.
    fn maybe_compact(&self) {
        let auto = &self.inner.auto;
        if !auto.policy.is_enabled() {
            return;
        }
        let status = self.inner.journal.status();
        let (seq, bytes) = (status.last_seq(), status.bytes_written());
        let mut mark = auto.mark.lock().unwrap_or_else(|p| p.into_inner());
        if !auto.policy.due(seq - mark.0, bytes - mark.1) {
            return;
        }
        let mut running = auto.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        *mark = (seq, bytes);
        let storage = Arc::clone(&auto.storage);
        let dir = self.inner.dir.clone();
        let options = auto.policy.options();
        let spawned = std::thread::Builder::new()
            .name("tj-compaction".into())
            .spawn(move || match compaction::compact(storage, &dir, &options) {
                Ok(report) => info!(snapshot_seq = ?report.snapshot_seq, removed = report.segments_removed.len(), "automatic compaction"),
                Err(err) => error!(error = %err, "automatic compaction failed; the journal is unchanged"),
            });
        match spawned {
            Ok(handle) => *running = Some(handle),
            Err(err) => warn!(error = %err, "cannot start automatic compaction"),
        }
    }

    // --- the seed's eight operations -------------------------------------------------------

    /// Saves one torrent. Returns once durable and visible to `load_torrent`.
    pub async fn save_torrent(&self, torrent: &TorrentState) -> Result<Receipt> {
        let torrent = Box::new(torrent.clone());
        self.append(Event::TorrentSaved { torrent }).await
    }

    /// Loads one torrent; [`Error::TorrentNotFound`] names a missing hash.
    pub async fn load_torrent(&self, info_hash: &InfoHash) -> Result<Arc<TorrentState>> {
        self.memory()
            .get(info_hash)
            .ok_or_else(|| Error::TorrentNotFound {
                info_hash: info_hash.to_hex(),
            })
    }

    /// Saves many torrents as one event: after a crash either all are saved or none.
    pub async fn save_all_torrents(&self, torrents: &[TorrentState]) -> Result<Receipt> {
        let torrents = torrents.to_vec();
        self.append(Event::TorrentsSaved { torrents }).await
    }

    /// Every torrent, in info-hash order.
    pub async fn load_all_torrents(&self) -> Result<Vec<Arc<TorrentState>>> {
        Ok(self.memory().all())
    }

    /// Deletes one torrent (and its metrics samples).
    pub async fn delete_torrent(&self, info_hash: &InfoHash) -> Result<Receipt> {
        let info_hash = *info_hash;
        self.append(Event::TorrentDeleted { info_hash }).await
    }

    /// Saves the session configuration.
    pub async fn save_session_config(&self, config: &SessionConfiguration) -> Result<Receipt> {
        let config = Box::new(config.clone());
        self.append(Event::SessionConfigSaved { config }).await
    }

    /// The session configuration, if one was ever saved.
    pub async fn load_session_config(&self) -> Result<Option<SessionConfiguration>> {
        Ok(self.memory().session().cloned())
    }

    /// Flushes everything, waits for the projections, stops the threads, releases the lock.
    pub async fn close(&self) -> Result<()> {
        self.inner.journal.close_async().await?;
        let compaction = self
            .inner
            .auto
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = compaction {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let handle = self
            .inner
            .applier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .map_err(|e| Error::Internal {
                    what: format!("joining the projection thread failed: {e}"),
                })?
                .map_err(|_| Error::Internal {
                    what: "projection thread panicked".into(),
                })?;
        }
        Ok(())
    }

    // --- metrics ----------------------------------------------------------------------------

    /// Records a batch of samples (samples of unknown torrents are dropped by the reducer).
    pub async fn save_metrics(&self, samples: &[TorrentMetrics]) -> Result<Receipt> {
        let samples = samples.to_vec();
        self.append(Event::MetricsRecorded { samples }).await
    }

    /// One torrent's samples with `from <= timestamp <= to`, in time order.
    pub async fn load_metrics(
        &self,
        info_hash: &InfoHash,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TorrentMetrics>> {
        let memory = self.memory();
        let mut samples: Vec<TorrentMetrics> = memory
            .state()
            .metrics
            .get(info_hash)
            .into_iter()
            .flatten()
            .filter(|s| s.timestamp >= from && s.timestamp <= to)
            .cloned()
            .collect();
        samples.sort_by_key(|s| s.timestamp);
        Ok(samples)
    }

    /// A summary per torrent of the samples in `[from, to]`, in info-hash order.
    pub async fn metrics_summary(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<MetricsSummary>> {
        let memory = self.memory();
        let summaries = memory.state().metrics.values().filter_map(|samples| {
            let in_range: Vec<TorrentMetrics> = samples
                .iter()
                .filter(|s| s.timestamp >= from && s.timestamp <= to)
                .cloned()
                .collect();
            MetricsSummary::from_samples(&in_range)
        });
        Ok(summaries.collect())
    }

    /// Drops samples older than `older_than` (measured from now).
    pub async fn purge_metrics(&self, older_than: Duration) -> Result<Receipt> {
        let nanos = i64::try_from(older_than.as_nanos()).unwrap_or(i64::MAX);
        let cutoff = self.inner.clock.now().saturating_add_nanos(-nanos);
        self.append(Event::MetricsPurged { older_than: cutoff })
            .await
    }

    // --- the client's event sink ------------------------------------------------------------

    /// Journals one hook event (any of the seven). Safe to call from many tasks: events are
    /// ordered by their journal seq.
    pub async fn record_hook(&self, context: HookContext) -> Result<Receipt> {
        self.append(Event::from(context)).await
    }

    /// Appends any event (for tools such as `tj undelete`).
    pub async fn append_event(&self, event: Event) -> Result<Receipt> {
        self.append(event).await
    }

    // --- introspection ----------------------------------------------------------------------

    /// Size figures of the memory projection.
    pub fn memory_stats(&self) -> MemoryStats {
        self.memory().stats()
    }

    /// Runs `read` on the memory projection and returns what it returns. A closure rather than
    /// a guard: a guard held across an `.await` on `save_torrent` would deadlock (the commit
    /// needs the write side), a closure cannot await. Keep it short: commits wait for it.
    pub fn read_memory<R>(&self, read: impl FnOnce(&MemoryProjection) -> R) -> R {
        read(&self.memory())
    }

    /// A read guard on the memory projection, for this module's short, non-async reads.
    fn memory(&self) -> std::sync::RwLockReadGuard<'_, MemoryProjection> {
        self.inner.memory.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the disk projections have applied everything committed so far.
    pub async fn flush_projections(&self) -> Result<()> {
        // The memory projection holds exactly the committed (acknowledged) events; a batch that
        // failed to sync may be written but is never handed to the projections.
        let target = self.memory().checkpoint().seq;
        let inner = Arc::clone(&self.inner);
        let has_disk = inner
            .applier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if !has_disk {
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            loop {
                if inner.applied.wait_for(target, Duration::from_millis(200)) {
                    return Ok(());
                }
                let stopped = inner
                    .applier
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .is_none_or(|h| h.is_finished());
                if stopped {
                    return Err(Error::Closed);
                }
            }
        })
        .await
        .map_err(|e| Error::Internal {
            what: format!("flush task failed: {e}"),
        })?
    }
}

/// The commit listener: memory first (before the appender hears back), then the disk queue.
fn listener(
    memory: Arc<RwLock<MemoryProjection>>,
    disk: Option<SyncSender<Batch>>,
) -> EventListener {
    Box::new(move |batch: Vec<Envelope>| {
        {
            let mut memory = memory.write().unwrap_or_else(|p| p.into_inner());
            if let Err(err) = memory.apply(&batch) {
                // Only a seq bug can get here; the journal stays the truth and a reopen rebuilds.
                error!(error = %err, "memory projection refused a batch");
            }
        }
        if let Some(tx) = &disk
            && tx.send(batch).is_err()
        {
            warn!("disk projections stopped; they will catch up when the store reopens");
        }
    })
}

/// Most events the projection thread applies in one batch (one SQLite transaction).
const APPLY_BATCH_EVENTS: usize = 8192;

/// The disk projections' thread: drains the queue in seq order, coalescing batches.
fn run_applier(
    feeds: &mut Feeds,
    rx: Receiver<Batch>,
    applied: &Progress,
    reader: &JournalReader,
    clock: &dyn Clock,
) {
    while let Ok(mut batch) = rx.recv() {
        loop {
            match rx.try_recv() {
                Ok(mut more) if batch.len() < APPLY_BATCH_EVENTS => batch.append(&mut more),
                Ok(more) => {
                    feeds.apply(&batch, reader, clock);
                    batch = more;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        feeds.apply(&batch, reader, clock);
        if let Some(last) = batch.last() {
            applied.set(last.seq);
        }
    }
}

/// What the projection thread feeds: the built-in disk projections, then the embedder's.
struct Feeds {
    disk: Vec<Disk>,
    custom: Vec<custom::Fed>,
}

impl Feeds {
    fn apply(&mut self, batch: &[Envelope], reader: &JournalReader, clock: &dyn Clock) {
        apply_all(&mut self.disk, batch, reader, clock);
        for projection in &mut self.custom {
            projection.apply(batch, reader);
        }
    }
}

/// Applies a batch to every live disk projection. A projection found damaged is set aside and
/// rebuilt from the journal at once (on this thread, before the next batch); one that fails
/// otherwise (disk full, permission denied, locked) stops until the store reopens, when it
/// catches up from its checkpoint.
fn apply_all(disks: &mut [Disk], batch: &[Envelope], reader: &JournalReader, clock: &dyn Clock) {
    for disk in disks.iter_mut() {
        let Some(projection) = disk.projection.as_mut() else {
            continue;
        };
        // A projection rebuilt from the journal may already hold part of the batch, or all.
        let done = projection.checkpoint().seq;
        let fresh = &batch[batch.partition_point(|e| e.seq <= done)..];
        if fresh.is_empty() {
            continue;
        }
        let name = projection.name();
        match projection.apply(fresh) {
            Ok(()) => {}
            Err(err) if is_damage(&err) => {
                // Closed before it is moved (SQLite's connection, its -wal and -shm).
                disk.projection = None;
                match disk.spec.rebuild(&err, Aside::Damaged, reader, clock) {
                    Ok((projection, _)) => disk.projection = Some(projection),
                    Err(rebuild) => error!(
                        projection = name, error = %rebuild, damage = %err,
                        "cannot rebuild the damaged projection; it will be rebuilt on reopen"
                    ),
                }
            }
            Err(err) => {
                // The journal has the events; the projection catches up from its checkpoint on
                // the next open. Until then it stays behind rather than guess.
                error!(projection = name, error = %err, "projection failed; it will catch up on reopen");
                disk.projection = None;
            }
        }
    }
}

/// A disk projection of the store: how to (re)open it, and the open projection (`None` once
/// it failed; the next open of the store catches it up).
struct Disk {
    spec: DiskSpec,
    projection: Option<Box<dyn Projection>>,
}

/// Why a projection is set aside: the suffix of its new name (`.damaged-<UTC time>`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Aside {
    /// Its files are damaged.
    Damaged,
    /// It disagrees with the journal ([`crate::check`]).
    Drifted,
}

impl Aside {
    fn label(self) -> &'static str {
        match self {
            Aside::Damaged => "damaged",
            Aside::Drifted => "drifted",
        }
    }
}

/// Where a disk projection lives and how it is opened.
#[derive(Debug)]
pub(crate) enum DiskSpec {
    #[cfg(feature = "sqlite")]
    Sqlite {
        path: PathBuf,
        options: SqliteOptions,
    },
    Files {
        storage: Arc<dyn Storage>,
        dir: PathBuf,
        options: FileProjectionOptions,
    },
}

/// Whether `err` is damage of a projection's files (rebuild) rather than a failure (report).
fn is_damage(err: &Error) -> bool {
    matches!(err, Error::ProjectionDamaged { .. })
}

impl DiskSpec {
    fn path(&self) -> &Path {
        match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { path, .. } => path,
            DiskSpec::Files { dir, .. } => dir,
        }
    }

    /// Opens the projection and catches it up with the journal. Damage found on the way — at
    /// open, by the SQLite projection's `quick_check`, or while catching up — sets the damaged
    /// file aside and rebuilds the projection from the journal (once: damage again is an error).
    fn open_caught_up(
        &self,
        reader: &JournalReader,
        clock: &dyn Clock,
    ) -> Result<Box<dyn Projection>> {
        let mut projection = self.open(clock)?;
        match projection::catch_up(projection.as_mut(), reader, &mut |_| {}) {
            Ok(_) => Ok(projection),
            Err(err) if is_damage(&err) => {
                drop(projection);
                Ok(self.rebuild(&err, Aside::Damaged, reader, clock)?.0)
            }
            Err(err) => Err(err),
        }
    }

    /// The cheap drift check ([`crate::check::quick_drift`]) of this projection against
    /// `state`: `Some(why)` when it drifted. Damage found while reading counts as drift.
    fn quick_drift(&self, state: &crate::state::State) -> Result<Option<String>> {
        let found = match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { path, options } => {
                crate::check::quick_drift_sqlite(path, options, state)
            }
            DiskSpec::Files { storage, dir, .. } => {
                crate::check::quick_drift_files(Arc::clone(storage), dir, state)
            }
        };
        match found {
            Ok(found) => Ok(found),
            Err(err) if is_damage(&err) => Ok(Some(err.to_string())),
            Err(err) => Err(err),
        }
    }

    /// Sets the damaged (or drifted) projection aside and builds a new one from the journal
    /// (replay from the start, or the newest snapshot's state when the journal was compacted).
    /// Returns it and where the old one went.
    pub(crate) fn rebuild(
        &self,
        cause: &dyn std::fmt::Display,
        why: Aside,
        reader: &JournalReader,
        clock: &dyn Clock,
    ) -> Result<(Box<dyn Projection>, PathBuf)> {
        let aside = self.set_aside(cause, why, clock)?;
        let mut projection = self.open_fresh()?;
        let caught_up = projection::catch_up(projection.as_mut(), reader, &mut |_| {})?;
        info!(
            path = %self.path().display(),
            seq = caught_up.checkpoint.seq,
            why = why.label(),
            "rebuilt the projection from the journal"
        );
        Ok((projection, aside))
    }

    /// Opens the projection; one that is damaged (or from a newer build) is set aside and a new,
    /// empty one opened in its place. The SQLite projection is checked with `quick_check`.
    fn open(&self, clock: &dyn Clock) -> Result<Box<dyn Projection>> {
        let opened = match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { path, options } => SqliteProjection::open(path, options.clone())
                .and_then(|projection| {
                    projection.quick_check()?;
                    Ok(projection)
                })
                .map(|p| Box::new(p) as Box<dyn Projection>),
            DiskSpec::Files {
                storage,
                dir,
                options,
            } => FileProjection::open(Arc::clone(storage), dir, *options)
                .map(|p| Box::new(p) as Box<dyn Projection>),
        };
        match opened {
            Ok(projection) => Ok(projection),
            Err(err) if is_damage(&err) || matches!(err, Error::UnsupportedVersion { .. }) => {
                self.set_aside(&err, Aside::Damaged, clock)?;
                self.open_fresh()
            }
            Err(err) => Err(err),
        }
    }

    /// Opens the projection where nothing is left of the old one (set aside or never there).
    fn open_fresh(&self) -> Result<Box<dyn Projection>> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { path, options } => {
                Box::new(SqliteProjection::open(path, options.clone())?)
            }
            DiskSpec::Files {
                storage,
                dir,
                options,
            } => Box::new(FileProjection::open(Arc::clone(storage), dir, *options)?),
        })
    }

    /// Moves the damaged (drifted) projection out of the way, durably: `state.db` (with its
    /// `-wal`, `-shm` and `-journal` files) to `state.db.damaged-<UTC time>` (`-wal`, ...;
    /// `.drifted-` for drift), the file projection's directory to `files.damaged-<UTC time>`;
    /// then fsyncs the parent directory. Nothing is deleted. Returns the new path.
    fn set_aside(
        &self,
        cause: &dyn std::fmt::Display,
        why: Aside,
        clock: &dyn Clock,
    ) -> Result<PathBuf> {
        let path = self.path();
        let stamp = clock.now().to_datetime().format("%Y%m%dT%H%M%SZ");
        let companions: &[&str] = match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { .. } => &["", "-wal", "-shm", "-journal"],
            DiskSpec::Files { .. } => &[""],
        };
        let with = |base: &Path, suffix: &str| {
            let mut name = base.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        let exists = |p: &Path| match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { .. } => p.symlink_metadata().is_ok(),
            DiskSpec::Files { storage, .. } => storage.exists(p),
        };
        // A name no earlier set-aside took (the clock may not have moved since).
        let label = why.label();
        let mut aside = with(path, &format!(".{label}-{stamp}"));
        let mut n = 1;
        while companions.iter().any(|c| exists(&with(&aside, c))) {
            aside = with(path, &format!(".{label}-{stamp}-{n}"));
            n += 1;
        }
        for suffix in companions {
            let (from, to) = (with(path, suffix), with(&aside, suffix));
            if !exists(&from) {
                continue;
            }
            match self {
                #[cfg(feature = "sqlite")]
                DiskSpec::Sqlite { .. } => std::fs::rename(&from, &to).ctx("rename", &from)?,
                DiskSpec::Files { storage, .. } => {
                    storage.rename(&from, &to).ctx("rename", &from)?
                }
            }
        }
        let parent = crate::storage::parent_dir(path);
        match self {
            #[cfg(feature = "sqlite")]
            DiskSpec::Sqlite { .. } => std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .ctx("fsync", parent)?,
            DiskSpec::Files { storage, .. } => storage.sync_dir(parent).ctx("fsync", parent)?,
        }
        warn!(
            path = %path.display(),
            moved_to = %aside.display(),
            cause = %cause,
            "projection {label}; set it aside and rebuilding it from the journal"
        );
        Ok(aside)
    }
}

/// The disk projections `options` asks for, at their paths inside the store directory.
fn disk_specs(options: &StoreOptions, dir: &Path) -> Vec<DiskSpec> {
    let mut specs = Vec::new();
    #[cfg(feature = "sqlite")]
    if let Some(path) = &options.sqlite {
        specs.push(DiskSpec::Sqlite {
            path: dir.join(path),
            options: options.sqlite_options.clone(),
        });
    }
    if let Some(files) = &options.files {
        specs.push(DiskSpec::Files {
            storage: Arc::clone(&options.journal.storage),
            dir: dir.join(files),
            options: options.file_options,
        });
    }
    specs
}

/// Opens the disk projections caught up with the journal; with `drift_check`, one that
/// disagrees with the memory projection (both at the head) is set aside and rebuilt.
fn open_disk(
    specs: Vec<DiskSpec>,
    reader: &JournalReader,
    clock: &dyn Clock,
    drift_check: bool,
    memory: &RwLock<MemoryProjection>,
) -> Result<Vec<Disk>> {
    let mut disk = Vec::with_capacity(specs.len());
    for spec in specs {
        let mut projection = spec.open_caught_up(reader, clock)?;
        if drift_check {
            let memory = memory.read().unwrap_or_else(|p| p.into_inner());
            // Both are at the head now (nothing can append before the open returns).
            if projection.checkpoint() == memory.checkpoint() {
                let drift = spec.quick_drift(memory.state())?;
                drop(memory);
                if let Some(drift) = drift {
                    drop(projection);
                    projection = spec.rebuild(&drift, Aside::Drifted, reader, clock)?.0;
                }
            }
        }
        disk.push(Disk {
            spec,
            projection: Some(projection),
        });
    }
    Ok(disk)
}
