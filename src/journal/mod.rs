//! The journal: a checksummed, segmented, append-only log of opaque payloads with seqs and
//! commit times — the only source of truth. It knows bytes, not events: encoding events,
//! decoding them and what happens after a commit belong to the typed layer above
//! (`crate::typed_journal`: [`crate::Journal`], `JournalReader::events`, `RawFrame::decode`),
//! and snapshots to the snapshot module.
//!
//! Layout of a store directory `DIR` (see `docs/FORMAT.md`):
//!
//! ```text
//! DIR/LOCK                          the single writer's lock (holds its pid)
//! DIR/journal/<first seq:020>.seg   segments, in seq order
//! DIR/journal/<segment>.broken      bytes cut from a torn tail, kept for inspection
//! ```
//!
//! `Log` is the byte-level writer handle (cheap to clone, usable from threads and tokio tasks);
//! [`JournalReader`] reads frames without the lock, from this or any other process.

// The byte layouts and the recovery that truncates files are internal: recovery runs under the
// writer's lock only, and the test kit (`testing::format`) exposes the layouts for damage tests.
pub(crate) mod durable;
pub(crate) mod frame;
pub(crate) mod judge;
pub(crate) mod reader;
pub(crate) mod recovery;
pub(crate) mod segment;
// The byte-level tailer exists for the follower.
#[cfg(feature = "follow")]
pub(crate) mod tail;
pub mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::info_span;

pub use frame::FrameRef;
pub use reader::{JournalReader, RawFrame};
pub use recovery::SegmentInfo;
pub use verify::{Problem, ProblemKind};
pub use writer::{Receipt, WriterStatus};

use crate::error::{Error, IoContext, Result};
use crate::model::{Clock, SystemClock, Timestamp};
use crate::storage::{RealStorage, Storage};
pub(crate) use writer::CommitListener;
use writer::{Message, Request, StartPosition, Writer};

/// Name of the journal's subdirectory inside a store directory.
pub const JOURNAL_DIR_NAME: &str = "journal";
/// Name of the writer's lock file inside a store directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// `DIR/journal`.
pub fn journal_dir(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_DIR_NAME)
}

/// When an append is acknowledged, and so what a crash can take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Acknowledge after the batch's `fdatasync` returned Ok. A power cut loses nothing
    /// acknowledged. The default.
    #[default]
    EveryBatch,
    /// Acknowledge after the batch's `write`; `fdatasync` at most `interval_ms` later. A process
    /// crash loses nothing acknowledged; a power cut may lose the last `interval_ms` of events.
    Interval {
        /// The longest an acknowledged batch waits for its `fdatasync`.
        interval_ms: u64,
    },
    /// Acknowledge after `write`; sync only on segment rotation and close. A process crash loses
    /// nothing acknowledged; a power cut may lose everything since the last rotation.
    Never,
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EveryBatch => write!(f, "every-batch (fdatasync before ack)"),
            Self::Interval { interval_ms } => write!(f, "interval ({interval_ms} ms)"),
            Self::Never => write!(f, "never (OS decides)"),
        }
    }
}

impl Durability {
    /// The longest [`Durability::Interval`] its text form accepts: one hour.
    pub const MAX_INTERVAL_MS: u64 = 3_600_000;
}

/// Reads `every-batch`, `never`, or `interval:T` with T in milliseconds (`interval:250`) or a
/// `humantime` duration (`interval:250ms`, `interval:2s`), between 1 ms and
/// [`Durability::MAX_INTERVAL_MS`] — the form `tj` and configuration files use.
impl std::str::FromStr for Durability {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "every-batch" => return Ok(Self::EveryBatch),
            "never" => return Ok(Self::Never),
            _ => {}
        }
        let invalid = |message: String| Error::InvalidArgument(message);
        let Some(interval) = text.strip_prefix("interval:") else {
            return Err(invalid(format!(
                "expected every-batch, interval:MS or never, got {text:?}"
            )));
        };
        let interval_ms = if !interval.is_empty() && interval.bytes().all(|b| b.is_ascii_digit()) {
            interval
                .parse::<u64>()
                .map_err(|_| invalid(format!("interval {interval:?} is too large")))?
        } else {
            let duration = humantime::parse_duration(interval.trim())
                .map_err(|err| invalid(format!("interval {interval:?}: {err}")))?;
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
        };
        if !(1..=Self::MAX_INTERVAL_MS).contains(&interval_ms) {
            return Err(invalid(format!(
                "interval {interval:?} must be between 1 ms and {} ms (one hour)",
                Self::MAX_INTERVAL_MS
            )));
        }
        Ok(Self::Interval { interval_ms })
    }
}

/// How a journal is opened.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// A segment is sealed and a new one started once it reaches this size (a soft limit: a
    /// batch is never split across segments).
    pub segment_size_bytes: u64,
    /// The active segment is extended with real zeros (written and synced, not `fallocate`d)
    /// this many bytes ahead of the data, so most `fdatasync`s overwrite allocated blocks of a
    /// file whose size does not change and flush only data, not file-system metadata. 0
    /// disables it (the segment grows with every batch). Only batches up to 1/32 of it extend the
    /// padding: for large batches the zeros cost more to flush than the metadata commit they
    /// save. See `docs/FORMAT.md`, "Preallocation".
    pub preallocate_bytes: u64,
    /// Payloads (encoded events) larger than this are refused before anything is written
    /// ([`Error::EventTooLarge`]).
    pub max_event_bytes: usize,
    /// When appends are acknowledged.
    pub durability: Durability,
    /// Appends waiting for the writer before appenders are made to wait (back-pressure).
    pub queue_capacity: usize,
    /// The writer stops gathering a batch once it holds this many bytes.
    pub max_batch_bytes: usize,
    /// The file system.
    pub storage: Arc<dyn Storage>,
    /// The source of commit times.
    pub clock: Arc<dyn Clock>,
    /// The segment format version of segments this writer creates: the current one
    /// (`FORMAT_VERSION`, 2) by default, or 1 for a journal that builds reading only
    /// version 1 must still open (version 1 cannot mark batches, so recovery cannot tell a
    /// batch torn by a power cut from damage; see `docs/FORMAT.md`). An existing active
    /// segment keeps its own version until the writer rotates.
    pub format_version: u8,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            segment_size_bytes: 64 * 1024 * 1024,
            preallocate_bytes: 1024 * 1024,
            max_event_bytes: 16 * 1024 * 1024,
            durability: Durability::EveryBatch,
            queue_capacity: 4096,
            max_batch_bytes: 8 * 1024 * 1024,
            storage: Arc::new(RealStorage),
            clock: Arc::new(SystemClock),
            format_version: segment::FORMAT_VERSION,
        }
    }
}

/// The byte-level writer handle of a journal: appends opaque payloads as consecutive seqs and
/// answers with their [`Receipt`]s. Clones share one writer thread. Each append carries an
/// attachment `A` the writer hands back untouched to the commit listener (the typed layer,
/// `crate::typed_journal`, attaches the events the payloads encode, so the store's projections
/// get them without decoding); without a listener attachments are dropped.
pub(crate) struct Log<A> {
    shared: Arc<Shared<A>>,
}

impl<A> Clone for Log<A> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<A> std::fmt::Debug for Log<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .field("durability", &self.shared.durability)
            .finish_non_exhaustive()
    }
}

struct Shared<A> {
    tx: mpsc::Sender<Message<A>>,
    dir: PathBuf,
    max_payload_bytes: usize,
    durability: Durability,
    status: Arc<WriterStatus>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What the layer above gives a journal it opens, besides its options.
pub(crate) struct OpenHooks<'a, A> {
    /// Sees every committed append (see [`CommitListener`]).
    pub listener: Option<CommitListener<A>>,
    /// The earliest commit time the writer may give, asked (with the storage and the store
    /// directory) under the writer's lock after recovery: commit times must not go back before
    /// what the journal's events once said, and after a compaction the retained segments may
    /// hold no event at all — the layer that owns snapshots knows the newest one's time.
    pub commit_time_floor: &'a dyn Fn(&dyn Storage, &Path) -> Option<Timestamp>,
}

impl<A: Send + 'static> Log<A> {
    /// Opens the journal in store directory `dir`: takes the lock, recovers, starts the writer
    /// thread.
    pub(crate) fn open(
        dir: &Path,
        options: JournalOptions,
        hooks: OpenHooks<'_, A>,
    ) -> Result<Self> {
        let dir = dir.to_path_buf();
        let span = info_span!("journal_open", dir = %dir.display());
        let _entered = span.enter();
        validate_options(&options)?;
        let storage = &*options.storage;
        prepare_dir(storage, &dir)?;
        let lock = take_lock(storage, &dir)?;
        let journal_dir = journal_dir(&dir);
        let recovered = recovery::recover(storage, &journal_dir)?;
        let floor = (hooks.commit_time_floor)(storage, &dir).map_or(0, |t| t.as_unix_nanos());
        let position = StartPosition {
            next_seq: recovered.next_seq,
            last_at_unix_nanos: recovered.last_at_unix_nanos.max(floor),
            active: recovered
                .segments
                .last()
                .map(|s| (s.path.clone(), recovered.active_len_bytes)),
            active_marks_batches: recovered.active_marks_batches,
        };
        let status = Arc::new(WriterStatus::default());
        let writer = Writer::start(
            &options,
            journal_dir,
            position,
            lock,
            Arc::clone(&status),
            hooks.listener,
        )?;
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let thread = std::thread::Builder::new()
            .name("tj-writer".into())
            .spawn(move || writer.run(rx))
            .ctx("spawn writer thread", &dir)?;
        if let Durability::Interval { interval_ms } = options.durability {
            spawn_ticker(tx.downgrade(), interval_ms);
        }
        Ok(Self {
            shared: Arc::new(Shared {
                tx,
                dir,
                max_payload_bytes: options.max_event_bytes,
                durability: options.durability,
                status,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The store directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The durability policy in force.
    pub(crate) fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// The writer's last written and last durable seqs.
    pub(crate) fn status(&self) -> &WriterStatus {
        &self.shared.status
    }

    /// Refuses a payload over the configured `max_event_bytes` before anything is queued.
    pub(crate) fn check_payload(&self, payload: &[u8]) -> Result<()> {
        if payload.len() > self.shared.max_payload_bytes {
            return Err(Error::EventTooLarge {
                size_bytes: payload.len(),
                max_bytes: self.shared.max_payload_bytes,
            });
        }
        Ok(())
    }

    /// Appends `payloads` (at least one, each checked by [`Log::check_payload`]) as
    /// consecutive seqs in one commit, blocking until it is committed.
    ///
    /// An error means the outcome is unknown: the bytes may have reached the disk before the
    /// failure, and a reopen keeps every whole frame (see `docs/FORMAT.md`, "Durability and
    /// recovery").
    pub(crate) fn append(&self, payloads: Vec<Vec<u8>>, attachment: A) -> Result<Receipt> {
        let (message, rx) = self.request(payloads, attachment)?;
        self.shared
            .tx
            .blocking_send(message)
            .map_err(|_| Error::Closed)?;
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    /// Async form of [`Log::append`].
    pub(crate) async fn append_async(
        &self,
        payloads: Vec<Vec<u8>>,
        attachment: A,
    ) -> Result<Receipt> {
        let (message, rx) = self.request(payloads, attachment)?;
        self.shared
            .tx
            .send(message)
            .await
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn request(
        &self,
        payloads: Vec<Vec<u8>>,
        attachment: A,
    ) -> Result<(Message<A>, oneshot::Receiver<Result<Receipt>>)> {
        if payloads.is_empty() {
            return Err(Error::InvalidArgument(
                "an append needs at least one payload".into(),
            ));
        }
        for payload in &payloads {
            self.check_payload(payload)?;
        }
        let (reply, rx) = oneshot::channel();
        let request = Request {
            payloads,
            attachment,
            reply,
        };
        Ok((Message::Append(request), rx))
    }

    /// Syncs what is written, stops the writer and releases the lock. Other clones of this
    /// handle get [`Error::Closed`] afterwards.
    pub(crate) fn close(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let sent = self.shared.tx.blocking_send(Message::Shutdown(reply));
        let result = match sent {
            Ok(()) => rx.blocking_recv().unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        self.shared.join();
        result
    }

    /// Async form of [`Log::close`].
    pub(crate) async fn close_async(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let result = match self.shared.tx.send(Message::Shutdown(reply)).await {
            Ok(()) => rx.await.unwrap_or(Ok(())),
            Err(_) => Ok(()),
        };
        let shared = Arc::clone(&self.shared);
        // Joining blocks; the writer has already stopped, so this is brief, but keep it off
        // the runtime's worker threads all the same.
        let _ = tokio::task::spawn_blocking(move || shared.join()).await;
        result
    }
}

impl<A> Shared<A> {
    fn join(&self) {
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl<A> Drop for Shared<A> {
    fn drop(&mut self) {
        // Dropping the last handle closes the queue: the writer syncs, exits and frees the lock.
        let (tx, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.tx, tx));
        self.join();
    }
}

fn validate_options(options: &JournalOptions) -> Result<()> {
    if options.max_event_bytes == 0 || options.max_event_bytes > frame::MAX_FRAME_PAYLOAD_BYTES {
        return Err(Error::InvalidArgument(format!(
            "max_event_bytes must be 1..={}",
            frame::MAX_FRAME_PAYLOAD_BYTES
        )));
    }
    if options.queue_capacity == 0 {
        return Err(Error::InvalidArgument(
            "queue_capacity must be at least 1".into(),
        ));
    }
    if options.format_version == 0 || options.format_version > segment::FORMAT_VERSION {
        return Err(Error::InvalidArgument(format!(
            "format_version must be 1..={}",
            segment::FORMAT_VERSION
        )));
    }
    if let Durability::Interval { interval_ms: 0 } = options.durability {
        return Err(Error::InvalidArgument(
            "durability interval must be at least 1 ms".into(),
        ));
    }
    Ok(())
}

/// Creates `dir/journal` (durably) and refuses a `dir` that is a file.
fn prepare_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    if storage.exists(dir) && !storage.is_dir(dir) {
        return Err(Error::InvalidArgument(format!(
            "{} exists and is not a directory",
            dir.display()
        )));
    }
    let journal = journal_dir(dir);
    if storage.is_dir(&journal) {
        return Ok(());
    }
    if storage.exists(&journal) {
        return Err(Error::InvalidArgument(format!(
            "{} exists and is not a directory",
            journal.display()
        )));
    }
    storage
        .create_dir_all(&journal)
        .ctx("create directory", &journal)?;
    storage.sync_dir(dir).ctx("fsync dir", dir)?;
    storage
        .sync_dir(crate::storage::parent_dir(dir))
        .ctx("fsync dir", dir)
}

/// Seals the active segment of a **closed** journal in store directory `dir`, so compaction may
/// remove it once a snapshot covers its events. Under the writer's lock it recovers the journal
/// exactly as opening it would (torn tail cut, padding trimmed, everything synced), then starts
/// a new, empty segment at the next seq crash-safely (tmp → header → `fdatasync` → rename →
/// directory fsync): the seqs stay contiguous and a writer opening the journal later continues
/// in the new segment. Returns the new segment's path, or `None` when the active segment holds
/// no event (nothing to seal). Fails with [`Error::Locked`] while a writer holds the journal.
pub fn seal_active_segment(storage: &dyn Storage, dir: &Path) -> Result<Option<PathBuf>> {
    let _lock = take_lock(storage, dir)?;
    let journal = journal_dir(dir);
    let recovered = recovery::recover(storage, &journal)?;
    let Some(active) = recovered.segments.last() else {
        return Ok(None);
    };
    if recovered.next_seq <= active.first_seq {
        return Ok(None);
    }
    let created = Timestamp::now().as_unix_nanos();
    let version = segment::FORMAT_VERSION;
    let (_file, path) =
        writer::create_segment(storage, &journal, recovered.next_seq, created, version)?;
    tracing::info!(sealed = %active.path.display(), next = %path.display(), "sealed the active segment");
    Ok(Some(path))
}

fn take_lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn crate::storage::LockGuard>> {
    let path = dir.join(LOCK_FILE_NAME);
    match storage
        .try_lock(&path, std::process::id())
        .ctx("lock", &path)?
    {
        Some(guard) => Ok(guard),
        None => {
            let pid = crate::storage::lock_holder_pid(storage, &path);
            Err(Error::Locked {
                path: dir.to_path_buf(),
                pid,
            })
        }
    }
}

/// Sends `Tick`s so the writer syncs on time under `Durability::Interval`, even when idle.
fn spawn_ticker<A: Send + 'static>(tx: mpsc::WeakSender<Message<A>>, interval_ms: u64) {
    let spawned = std::thread::Builder::new()
        .name("tj-sync-ticker".into())
        .spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(interval_ms));
                let Some(tx) = tx.upgrade() else { break };
                // A full queue means the writer is busy and will check the deadline anyway.
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Message::Tick) {
                    break;
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "no sync ticker thread; interval syncs happen on appends only");
    }
}

#[cfg(test)]
mod tests {
    use super::Durability;

    #[test]
    fn durability_parses_its_text_form_in_milliseconds_or_a_duration() {
        let parse = |text: &str| text.parse::<Durability>();
        assert_eq!(parse("every-batch").unwrap(), Durability::EveryBatch);
        assert_eq!(parse("never").unwrap(), Durability::Never);
        assert_eq!(
            parse("interval:250").unwrap(),
            Durability::Interval { interval_ms: 250 }
        );
        assert_eq!(
            parse("interval:2s").unwrap(),
            Durability::Interval { interval_ms: 2000 }
        );
        assert_eq!(
            parse("interval:1h").unwrap(),
            Durability::Interval {
                interval_ms: Durability::MAX_INTERVAL_MS
            }
        );
        for bad in [
            "interval:0",
            "interval:",
            "interval:x",
            "interval:99999999999999999999999",
            "interval:2h",
            "interval:1ns",
            "sometimes",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
