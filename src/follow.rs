//! Owns following a journal from another process: [`Follower`] tails `DIR/journal` without the
//! writer's lock and yields every durable event from a given seq on — in seq order, exactly
//! once, across segment rotations and compactions — as a tokio `Stream` or a blocking iterator.
//!
//! # How it reads
//!
//! A dedicated thread (`tj-follower`; blocking file reads never run on an async runtime's worker
//! threads) keeps a cursor — segment, byte offset, seq of the frame there — and reads new bytes
//! with [`Storage::read_at`] in bounded chunks ([`FollowOptions::read_chunk_bytes`], grown only
//! to hold one whole frame, whose length is checked against the format's limit before anything
//! is allocated). Every frame's checksum and seq are verified. It sends what it decoded into a
//! bounded channel ([`FollowOptions::queue_capacity`]): a slow consumer makes the thread wait,
//! never buffer without limit.
//!
//! **Wake-ups are hints.** A `notify` watcher (inotify on Linux) on `DIR/journal` wakes the
//! thread when a file there changes; the thread also wakes every
//! [`FollowOptions::poll_interval_ms`], so a lost or overflowed notification (`IN_Q_OVERFLOW`),
//! or a platform without a watcher, delays it by at most one interval and never stalls it.
//!
//! **Only durable events.** The writer publishes its durable position in `DIR/journal/durable`
//! after every `fdatasync` (see `docs/FORMAT.md`, "Durable position"); the follower delivers
//! only events up to it, so it never shows an event a power cut could take back. With
//! [`FollowOptions::read_ahead`] it delivers every complete, verified frame as soon as it is
//! written — lower latency, but it **may see events a power cut takes back** (and after a writer
//! crash whose recovery cut such events, it stops with an error rather than guess). When the file
//! is missing (no writer with this build has opened the journal, e.g. a journal closed by an
//! older build), every frame that verifies is delivered.
//!
//! **The tail is not damage.** A partial frame, zeros, or bytes failing their checksum at the end
//! of the data mean "not written yet": the follower waits. They are damage — an error naming the
//! segment, byte offset and seq, after which the stream ends — only when they cannot be a write
//! in progress: the durable position covers their seq, a later segment exists (this one is
//! sealed; the bytes are re-read after seeing that, to be sure), or — when no writer publishes a
//! durable position — a valid frame follows them. (A valid frame after them is not enough while a
//! writer publishes: it overwrites a preallocated segment's zeros in place, and a read racing
//! that copy may see a later page before an earlier one.)
//!
//! **Rotation and compaction.** At the end of a segment the follower moves to the segment whose
//! first seq is the next seq. If compaction removed the segments holding the next seq, it loads
//! the newest snapshot (which compaction writes before removing anything), yields
//! [`FollowItem::Resynced`] with the snapshot's state, and continues after it; with no covering
//! snapshot it yields [`Error::SeqNotRetained`] naming the seq. Nothing is ever skipped silently.
//!
//! **Exactly once across restarts.** Items come in seq order without gaps or repeats; a caller
//! that stores the seq of the last item it processed and restarts with `from_seq` = that + 1
//! sees every event exactly once. The caller should make sure its stored position belongs to
//! this journal (`tj follow` checks the commit time, like [`crate::projection::catch_up`]).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::{Error, IoContext, Result};
use crate::event::{self, Envelope};
use crate::journal::tail::{Tail, TailFrame, TailStep};
use crate::model::Timestamp;
use crate::snapshot;
use crate::state::State;
use crate::storage::Storage;

/// Default [`FollowOptions::poll_interval_ms`].
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 100;
/// Default [`FollowOptions::queue_capacity`].
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default [`FollowOptions::read_chunk_bytes`]: 1 MiB.
pub const DEFAULT_READ_CHUNK_BYTES: usize = 1024 * 1024;

/// How a [`Follower`] follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOptions {
    /// The first seq to deliver (0 counts as 1). A caller resuming after seq `n` passes `n + 1`.
    pub from_seq: u64,
    /// The reader re-checks the journal at least this often, notification or not (at least 1).
    pub poll_interval_ms: u64,
    /// Deliver events as soon as they are written instead of once they are durable: lower
    /// latency, but the follower may see events a power cut takes back. Default `false`.
    pub read_ahead: bool,
    /// Items decoded ahead of the consumer before the reader waits for it (at least 1).
    pub queue_capacity: usize,
    /// Bytes read per read call (at least one frame header); a larger frame is read whole.
    pub read_chunk_bytes: usize,
    /// Use file-system notifications (`notify`) as wake-ups. With `false`, only polling.
    pub watch_files: bool,
}

impl Default for FollowOptions {
    fn default() -> Self {
        Self {
            from_seq: 1,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            read_ahead: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            read_chunk_bytes: DEFAULT_READ_CHUNK_BYTES,
            watch_files: true,
        }
    }
}

impl FollowOptions {
    /// Default options starting at `from_seq`.
    pub fn from_seq(from_seq: u64) -> Self {
        Self {
            from_seq,
            ..Self::default()
        }
    }
}

/// What a [`Follower`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum FollowItem {
    /// The next event.
    Event(Envelope),
    /// Compaction removed the events the follower needed next: this is the state after event
    /// `seq` (committed at `at`), from the newest snapshot. Replace whatever was built so far
    /// with it (e.g. [`crate::projection::Projection::install`]); events continue at `seq + 1`.
    Resynced {
        /// The sequence number.
        seq: u64,
        /// The commit time.
        at: Timestamp,
        /// The state after event `seq`.
        state: Box<State>,
    },
}

impl FollowItem {
    /// The seq this item brings the consumer to: the event's, or the snapshot's.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Event(envelope) => envelope.seq,
            Self::Resynced { seq, .. } => *seq,
        }
    }
}

/// Follows a journal directory read-only, from this or another process; see the
/// [module docs](self).
///
/// Items arrive through [`Follower::next`] (async), the [`futures_core::Stream`] impl,
/// [`Follower::try_next`], or [`Follower::blocking_next`] / [`Follower::blocking_iter`] (from
/// plain threads). After an error item the stream ends. Dropping the follower stops its thread
/// (at its next wake-up or send, promptly) and its watcher.
pub struct Follower {
    rx: mpsc::Receiver<Result<FollowItem>>,
    signal: Arc<Signal>,
    watcher: Option<notify::RecommendedWatcher>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("watching", &self.watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Starts following store directory `dir` (its `journal/` must exist; it may hold no
    /// segment or event yet). The watcher is in place when this returns, so an event appended
    /// afterwards wakes the follower without waiting for a poll.
    pub fn start(
        storage: Arc<dyn Storage>,
        dir: impl AsRef<Path>,
        options: FollowOptions,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let journal_dir = crate::journal::journal_dir(&dir);
        if !storage.is_dir(&journal_dir) {
            return Err(Error::InvalidArgument(format!(
                "no journal in {} (expected a directory {})",
                dir.display(),
                journal_dir.display()
            )));
        }
        if options.poll_interval_ms == 0 || options.queue_capacity == 0 {
            return Err(Error::InvalidArgument(
                "poll_interval_ms and queue_capacity must be at least 1".into(),
            ));
        }
        let signal = Arc::new(Signal::default());
        let watcher = if options.watch_files {
            watch(&journal_dir, Arc::clone(&signal))
        } else {
            None
        };
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let tail = Tail::new(
            Arc::clone(&storage),
            journal_dir,
            options.from_seq,
            options.read_chunk_bytes,
            options.read_ahead,
        );
        let reader = Reader {
            storage,
            dir: dir.clone(),
            tail,
            poll_interval: Duration::from_millis(options.poll_interval_ms),
            tx,
            signal: Arc::clone(&signal),
        };
        let thread = std::thread::Builder::new()
            .name("tj-follower".into())
            .spawn(move || reader.run())
            .ctx("spawn follower thread", &dir)?;
        debug!(dir = %dir.display(), from_seq = options.from_seq, watching = watcher.is_some(), "following");
        Ok(Self {
            rx,
            signal,
            watcher,
            thread: Some(thread),
        })
    }

    /// Whether file-system notifications are in use (otherwise: polling only).
    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }

    /// The next item; `None` once the stream has ended (after an error).
    pub async fn next(&mut self) -> Option<Result<FollowItem>> {
        self.rx.recv().await
    }

    /// The next item if one is ready now; `None` when none is (or the stream has ended).
    pub fn try_next(&mut self) -> Option<Result<FollowItem>> {
        self.rx.try_recv().ok()
    }

    /// The next item, blocking the thread. Like tokio's blocking calls, panics when called on
    /// an async runtime's thread.
    pub fn blocking_next(&mut self) -> Option<Result<FollowItem>> {
        self.rx.blocking_recv()
    }

    /// The items as a blocking iterator (see [`Follower::blocking_next`]).
    pub fn blocking_iter(&mut self) -> impl Iterator<Item = Result<FollowItem>> + '_ {
        std::iter::from_fn(move || self.blocking_next())
    }

    /// Stops following and waits for the reader thread to exit (it finishes at most the read
    /// in progress). Dropping the follower stops it too, without waiting. Blocks: from async
    /// code, call it under `spawn_blocking` or just drop the follower.
    pub fn close(mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn stop(&mut self) {
        self.signal.stop();
        // A reader waiting for queue space sees the closed channel at once.
        self.rx.close();
        self.watcher = None;
    }
}

impl futures_core::Stream for Follower {
    type Item = Result<FollowItem>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().rx.poll_recv(cx)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the watcher; `None` (with a warning) when the platform or the directory refuses.
fn watch(journal_dir: &Path, signal: Arc<Signal>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Opens and reads (ours included) change nothing.
        Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => {}
        Ok(_) => signal.wake(),
        Err(err) => {
            debug!(error = %err, "file watcher error; polling covers it");
            signal.wake();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            warn!(error = %err, "no file watcher; following by polling only");
            return None;
        }
    };
    match watcher.watch(journal_dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(err) => {
            warn!(dir = %journal_dir.display(), error = %err, "cannot watch the journal; following by polling only");
            None
        }
    }
}

/// Wakes the reader thread: a notification arrived, or the follower was dropped.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    woken: bool,
    stopped: bool,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.lock().woken = true;
        self.changed.notify_all();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Waits for a wake-up (one that came since the last wait counts), a stop or the timeout.
    /// Returns `false` when stopped.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.lock();
        let (mut guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| !s.woken && !s.stopped)
            .unwrap_or_else(|p| p.into_inner());
        guard.woken = false;
        !guard.stopped
    }
}

/// What one look at the journal achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Something changed (items sent, or the cursor moved): look again at once.
    Progress,
    /// Nothing new: wait for a wake-up or the poll interval.
    Idle,
    /// The consumer is gone.
    Closed,
}

/// The reader thread's state: the journal's tail, and what the follower adds on top of it.
struct Reader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    tail: Tail,
    poll_interval: Duration,
    tx: mpsc::Sender<Result<FollowItem>>,
    signal: Arc<Signal>,
}

impl Reader {
    fn run(mut self) {
        loop {
            if self.signal.is_stopped() {
                return;
            }
            match self.look() {
                Ok(Step::Progress) => {}
                Ok(Step::Idle) => {
                    if !self.signal.wait(self.poll_interval) {
                        return;
                    }
                }
                Ok(Step::Closed) => return,
                Err(err) => {
                    warn!(error = %err, "follower stopped");
                    let _ = self.tx.blocking_send(Err(err));
                    return;
                }
            }
        }
    }

    fn send(&self, item: FollowItem) -> bool {
        self.tx.blocking_send(Ok(item)).is_ok()
    }

    /// One look at the tail: deliver its new frames as events, resynchronize when compaction
    /// removed the next ones.
    fn look(&mut self) -> Result<Step> {
        let tx = &self.tx;
        let mut deliver = |found: TailFrame<'_>| -> Result<bool> {
            let envelope = decode_envelope(&found)?;
            Ok(tx.blocking_send(Ok(FollowItem::Event(envelope))).is_ok())
        };
        Ok(match self.tail.look(&mut deliver)? {
            TailStep::Progress => Step::Progress,
            TailStep::Idle => Step::Idle,
            TailStep::Closed => Step::Closed,
            TailStep::NotRetained { first_retained } => return self.resync(first_retained),
        })
    }

    /// The events from the tail's next seq up to the first retained seq are gone: continue
    /// from the newest snapshot, which must cover them.
    fn resync(&mut self, first_retained: u64) -> Result<Step> {
        let next_seq = self.tail.next_seq();
        let not_retained = || Error::SeqNotRetained {
            requested: next_seq,
            earliest: first_retained,
        };
        let Some((found, body)) = snapshot::load_newest(&*self.storage, &self.dir, None)? else {
            return Err(not_retained());
        };
        let seq = body.seq();
        if seq < next_seq || seq.saturating_add(1) < first_retained {
            // The snapshot does not reach the retained journal (or predates our position).
            return Err(not_retained());
        }
        info!(
            snapshot = %found.path.display(),
            seq,
            skipped_from = next_seq,
            "compaction removed the next events; resynchronized from snapshot at seq {seq}"
        );
        let at = body.at();
        let item = FollowItem::Resynced {
            seq,
            at,
            state: Box::new(body.state),
        };
        self.tail.skip_to(seq + 1);
        Ok(if self.send(item) {
            Step::Progress
        } else {
            Step::Closed
        })
    }
}

fn decode_envelope(found: &TailFrame<'_>) -> Result<Envelope> {
    let frame = &found.frame;
    let event = event::decode(frame.payload).map_err(|reason| Error::Decode {
        segment: found.segment.to_path_buf(),
        offset: found.offset,
        seq: frame.seq,
        reason,
    })?;
    Ok(Envelope::new(
        frame.seq,
        Timestamp::from_unix_nanos(frame.at_unix_nanos),
        event,
    ))
}
