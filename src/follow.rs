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

use std::io;
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
use crate::journal::durable;
use crate::journal::frame::{self, FRAME_HEADER_BYTES, FrameError, MAX_FRAME_PAYLOAD_BYTES};
use crate::journal::recovery::{self, SegmentInfo};
use crate::journal::segment::{self, Damage, SEGMENT_HEADER_BYTES, SegmentHeader};
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
        let reader = Reader {
            storage,
            dir: dir.clone(),
            journal_dir,
            next_seq: options.from_seq.max(1),
            read_chunk_bytes: options.read_chunk_bytes.max(FRAME_HEADER_BYTES),
            poll_interval: Duration::from_millis(options.poll_interval_ms),
            read_ahead: options.read_ahead,
            tx,
            signal: Arc::clone(&signal),
            cursor: None,
            buf: Vec::new(),
            last_durable_seq: 0,
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

/// Where the reader is: the frame at `offset` of `path` carries `seq`.
#[derive(Debug, Clone)]
struct Cursor {
    path: PathBuf,
    first_seq: u64,
    offset: u64,
    seq: u64,
    header_checked: bool,
    /// Whether the segment's frames mark batches (known once the header was checked).
    marks_batches: bool,
}

/// What a look at a segment's header found.
#[derive(Debug)]
enum HeaderLook {
    /// The segment was removed (by compaction): locate the cursor's seq again.
    Gone,
    /// Shorter than a header while no later segment exists: being created; wait.
    Torn,
    Valid(SegmentHeader),
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

/// The reader thread's state.
struct Reader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    journal_dir: PathBuf,
    /// The next seq to deliver.
    next_seq: u64,
    read_chunk_bytes: usize,
    poll_interval: Duration,
    read_ahead: bool,
    tx: mpsc::Sender<Result<FollowItem>>,
    signal: Arc<Signal>,
    cursor: Option<Cursor>,
    /// Reused read buffer; at most `read_chunk_bytes`, or one frame when a frame is larger.
    buf: Vec<u8>,
    /// The last durable seq read, kept when a read of the file comes back torn.
    last_durable_seq: u64,
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

    /// The seq known durable: `None` when no writer has published one (the file is missing).
    /// A torn read (the writer rewriting the file) is retried, then the last value is kept.
    fn durable_seq(&mut self) -> Result<Option<u64>> {
        let path = durable::path(&self.journal_dir);
        for _ in 0..3 {
            let mut bytes = [0u8; durable::DURABLE_FILE_BYTES];
            match self.storage.read_at(&path, 0, &mut bytes) {
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err).ctx("read", &path),
                Ok(n) => {
                    if let Some(position) = durable::decode(&bytes[..n]) {
                        self.last_durable_seq = position.seq;
                        return Ok(Some(position.seq));
                    }
                }
            }
            std::thread::yield_now();
        }
        Ok(Some(self.last_durable_seq))
    }

    /// One look: find the cursor if needed, read what is new, deliver what may be delivered.
    fn look(&mut self) -> Result<Step> {
        let durable = self.durable_seq()?;
        let limit = if self.read_ahead { None } else { durable };
        let Some(cursor) = self.cursor.take() else {
            return self.locate();
        };
        self.read_from(cursor, limit, durable)
    }

    /// Sets the cursor at the segment holding `next_seq`, or resynchronizes from a snapshot
    /// when compaction removed it.
    fn locate(&mut self) -> Result<Step> {
        let segments = self.segments()?;
        let Some(first) = segments.first() else {
            return Ok(Step::Idle);
        };
        if self.next_seq < first.first_seq {
            return self.resync(first.first_seq);
        }
        let Some(info) = segments.iter().rev().find(|s| s.first_seq <= self.next_seq) else {
            return Ok(Step::Idle);
        };
        self.cursor = Some(Cursor {
            path: info.path.clone(),
            first_seq: info.first_seq,
            offset: SEGMENT_HEADER_BYTES as u64,
            seq: info.first_seq,
            header_checked: false,
            marks_batches: false,
        });
        Ok(Step::Progress)
    }

    fn segments(&self) -> Result<Vec<SegmentInfo>> {
        recovery::list_segments(&*self.storage, &self.journal_dir)
    }

    /// The events from `next_seq` up to the first retained seq are gone: continue from the
    /// newest snapshot, which must cover them.
    fn resync(&mut self, first_retained: u64) -> Result<Step> {
        let not_retained = || Error::SeqNotRetained {
            requested: self.next_seq,
            earliest: first_retained,
        };
        let Some((found, body)) = snapshot::load_newest(&*self.storage, &self.dir, None)? else {
            return Err(not_retained());
        };
        let seq = body.seq();
        if seq < self.next_seq || seq.saturating_add(1) < first_retained {
            // The snapshot does not reach the retained journal (or predates our position).
            return Err(not_retained());
        }
        info!(
            snapshot = %found.path.display(),
            seq,
            skipped_from = self.next_seq,
            "compaction removed the next events; resynchronized from snapshot at seq {seq}"
        );
        let at = body.at();
        let item = FollowItem::Resynced {
            seq,
            at,
            state: Box::new(body.state),
        };
        self.next_seq = seq + 1;
        self.cursor = None;
        Ok(if self.send(item) {
            Step::Progress
        } else {
            Step::Closed
        })
    }

    /// Reads up to `want` bytes of `path` at `offset` into the buffer; `Ok(None)` when the file
    /// is gone (compaction removed it).
    fn fill(&mut self, path: &Path, offset: u64, want: usize) -> Result<Option<usize>> {
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut filled = 0;
        while filled < want {
            match self
                .storage
                .read_at(path, offset + filled as u64, &mut self.buf[filled..want])
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err).ctx("read", path),
            }
        }
        Ok(Some(filled))
    }

    /// Checks the segment header when the cursor enters a segment. `Ok(false)`: wait.
    fn check_header(&mut self, cursor: &Cursor) -> Result<HeaderLook> {
        let Some(n) = self.fill(&cursor.path, 0, SEGMENT_HEADER_BYTES)? else {
            return Ok(HeaderLook::Gone);
        };
        if n < SEGMENT_HEADER_BYTES {
            // A header cut by a crash while the segment was created; the writer's recovery
            // removes it. Damage only if a later segment shows this one was sealed.
            let sealed = self
                .segments()?
                .iter()
                .any(|s| s.first_seq > cursor.first_seq);
            if sealed {
                return Err(Error::Corrupt {
                    segment: cursor.path.clone(),
                    offset: 0,
                    seq: None,
                    reason: format!(
                        "segment header truncated: {n} of {SEGMENT_HEADER_BYTES} bytes"
                    ),
                });
            }
            return Ok(HeaderLook::Torn);
        }
        let header = recovery::check_header(&cursor.path, &self.buf[..n], cursor.first_seq)?;
        Ok(HeaderLook::Valid(header))
    }

    /// Reads and delivers from `cursor` until the data (or what may be delivered) ends.
    fn read_from(
        &mut self,
        mut cursor: Cursor,
        limit: Option<u64>,
        durable: Option<u64>,
    ) -> Result<Step> {
        if !cursor.header_checked {
            match self.check_header(&cursor)? {
                HeaderLook::Gone => return Ok(Step::Progress), // locate again
                HeaderLook::Torn => {
                    self.cursor = Some(cursor);
                    return Ok(Step::Idle);
                }
                HeaderLook::Valid(header) => {
                    cursor.header_checked = true;
                    cursor.marks_batches = header.marks_batches();
                }
            }
        }
        let mut delivered = false;
        let mut want = self.read_chunk_bytes;
        loop {
            let Some(n) = self.fill(&cursor.path, cursor.offset, want)? else {
                // Compaction removed the segment: find where `next_seq` lives now.
                return Ok(Step::Progress);
            };
            if n == 0 {
                self.check_not_cut(&cursor)?;
            }
            let full = n == want;
            let mut pos = 0;
            let stop = loop {
                let rest = &self.buf[pos..n];
                match frame::decode(rest) {
                    Ok(found) if found.seq != cursor.seq => {
                        break Stop::Suspect(Damage::SeqBreak {
                            expected: cursor.seq,
                            found: found.seq,
                        });
                    }
                    Ok(found) if limit.is_some_and(|limit| found.seq > limit) => {
                        break Stop::NotDurable;
                    }
                    Ok(found) => {
                        let (seq, len) = (found.seq, found.encoded_len());
                        if seq >= self.next_seq {
                            let envelope = decode_envelope(&cursor, pos, found)?;
                            if !self.send(FollowItem::Event(envelope)) {
                                return Ok(Step::Closed);
                            }
                            self.next_seq = seq + 1;
                            delivered = true;
                        }
                        pos += len;
                        cursor.seq += 1;
                    }
                    Err(FrameError::Incomplete { needed_bytes, .. }) if full => {
                        // The read stopped short of this frame; read on from it.
                        break Stop::ReadMore { needed_bytes };
                    }
                    Err(_) if rest.iter().all(|&b| b == 0) => break Stop::EndOfData,
                    Err(FrameError::EndMarker) => break Stop::Suspect(Damage::BytesAfterEnd),
                    Err(err) => break Stop::Suspect(Damage::Frame(err)),
                }
            };
            cursor.offset += pos as u64;
            match stop {
                Stop::ReadMore { needed_bytes } => {
                    // `needed_bytes` is bounded: `decode` refused lengths over the format limit.
                    want = self
                        .read_chunk_bytes
                        .max(needed_bytes.min(FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES));
                    continue;
                }
                Stop::NotDurable => {
                    self.cursor = Some(cursor);
                    return Ok(if delivered {
                        Step::Progress
                    } else {
                        Step::Idle
                    });
                }
                Stop::EndOfData => {
                    self.shrink_buffer();
                    return self.end_of_data(cursor, durable, delivered);
                }
                Stop::Suspect(damage) => {
                    let step = self.judge(cursor, pos, n, damage, durable, delivered);
                    self.shrink_buffer();
                    return step;
                }
            }
        }
    }

    /// Nothing to read at the cursor: fine, unless the segment is now shorter than the cursor —
    /// the writer's recovery cut events this follower delivered ahead of durability.
    fn check_not_cut(&self, cursor: &Cursor) -> Result<()> {
        let len_bytes = match self.storage.file_len(&cursor.path) {
            Ok(len) => len,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(err) => return Err(err).ctx("stat", &cursor.path),
        };
        if len_bytes >= cursor.offset {
            return Ok(());
        }
        Err(Error::Corrupt {
            segment: cursor.path.clone(),
            offset: cursor.offset,
            seq: Some(cursor.seq),
            reason: format!(
                "the segment shrank to {len_bytes} bytes, below the follower's position: the \
                 writer's recovery took back events delivered before they were durable (read-ahead)"
            ),
        })
    }

    /// A frame larger than the chunk size grew the buffer; give the memory back.
    fn shrink_buffer(&mut self) {
        if self.buf.len() > self.read_chunk_bytes {
            self.buf.truncate(self.read_chunk_bytes);
            self.buf.shrink_to_fit();
        }
    }

    /// The segment's data ends at the cursor (end of file, or zeros). Move to the next segment
    /// if the writer rotated; otherwise wait.
    fn end_of_data(
        &mut self,
        cursor: Cursor,
        durable: Option<u64>,
        delivered: bool,
    ) -> Result<Step> {
        let progress = if delivered {
            Step::Progress
        } else {
            Step::Idle
        };
        let segments = self.segments()?;
        if !segments.iter().any(|s| s.path == cursor.path) {
            // Compaction removed it; locate `next_seq` again.
            return Ok(Step::Progress);
        }
        let Some(next) = segments.iter().find(|s| s.first_seq > cursor.first_seq) else {
            // The durable position was read before these bytes, and the writer publishes it
            // only after the write and its fdatasync returned: the events up to it must be
            // here. They are not: acknowledged events are missing, not still being written.
            if let Some(durable_seq) = durable.filter(|&d| d >= cursor.seq) {
                return Err(crate::journal::recovery::lost_durable_events(
                    &cursor.path,
                    cursor.offset as usize,
                    cursor.seq - 1,
                    durable_seq,
                    "the segment's data ends there",
                ));
            }
            self.cursor = Some(cursor);
            return Ok(progress);
        };
        if next.first_seq == cursor.seq {
            debug!(segment = %next.path.display(), "following into the next segment");
            self.cursor = Some(Cursor {
                path: next.path.clone(),
                first_seq: next.first_seq,
                offset: SEGMENT_HEADER_BYTES as u64,
                seq: next.first_seq,
                header_checked: false,
                marks_batches: false,
            });
            return Ok(Step::Progress);
        }
        // A later segment exists, so this one is sealed — but it may have grown between our
        // read and the listing. Read again: if it still ends here, the journal has a gap.
        let next = next.clone();
        let Some(n) = self.fill(&cursor.path, cursor.offset, FRAME_HEADER_BYTES)? else {
            return Ok(Step::Progress);
        };
        if self.buf[..n].iter().any(|&b| b != 0) {
            self.cursor = Some(cursor);
            return Ok(Step::Progress);
        }
        Err(Error::SequenceBreak {
            segment: next.path,
            offset: 12,
            expected: cursor.seq,
            found: next.first_seq,
        })
    }

    /// The bytes at the cursor (`pos` in the buffer of `n` bytes read) are not the next frame.
    /// Damage, or a write in progress?
    fn judge(
        &mut self,
        cursor: Cursor,
        pos: usize,
        n: usize,
        damage: Damage,
        durable: Option<u64>,
        delivered: bool,
    ) -> Result<Step> {
        let after_seq = cursor.seq - 1;
        // The durable position covers it: its bytes were complete before we read them.
        let covered = durable.is_some_and(|d| d >= cursor.seq);
        // A later batch after it is damage in the middle of the log — unless the writer may
        // still be writing both: it overwrites the zero padding of a preallocated segment in
        // place, and a read racing that copy can see a later page written before an earlier
        // one. Then only the durable position (which will cover it) or sealing decides.
        let may_be_in_progress = durable.is_some_and(|d| d < cursor.seq);
        let later =
            segment::later_batch_after(&self.buf[..n], pos + 1, after_seq, cursor.marks_batches);
        if covered || (later.is_some() && !may_be_in_progress) {
            return Err(damage_error(&cursor, &self.buf[pos..n], &damage));
        }
        let sealed = self
            .segments()?
            .iter()
            .any(|s| s.first_seq > cursor.first_seq);
        if sealed {
            // Sealed after our read, perhaps: read again before calling it damage.
            let Some(m) = self.fill(&cursor.path, cursor.offset, self.read_chunk_bytes)? else {
                return Ok(Step::Progress);
            };
            return match frame::decode(&self.buf[..m]) {
                Ok(found) if found.seq == cursor.seq => {
                    self.cursor = Some(cursor);
                    Ok(Step::Progress)
                }
                Err(_) if self.buf[..m].iter().all(|&b| b == 0) => {
                    self.cursor = Some(cursor);
                    Ok(Step::Progress)
                }
                _ => Err(damage_error(&cursor, &self.buf[..m], &damage)),
            };
        }
        debug!(
            segment = %cursor.path.display(),
            offset = cursor.offset,
            "incomplete or unverified bytes at the tail; waiting for the writer"
        );
        self.cursor = Some(cursor);
        Ok(if delivered {
            Step::Progress
        } else {
            Step::Idle
        })
    }
}

/// Why a read of a segment stopped.
#[derive(Debug)]
enum Stop {
    /// The buffer ended inside a frame: read on.
    ReadMore { needed_bytes: usize },
    /// The next frame is not durable yet.
    NotDurable,
    /// No more data (end of file, or zeros).
    EndOfData,
    /// Bytes that are not the next frame.
    Suspect(Damage),
}

fn decode_envelope(cursor: &Cursor, pos: usize, found: frame::FrameRef<'_>) -> Result<Envelope> {
    let offset = cursor.offset + pos as u64;
    let event = event::decode(found.payload).map_err(|reason| Error::Decode {
        segment: cursor.path.clone(),
        offset,
        seq: found.seq,
        reason,
    })?;
    Ok(Envelope::new(
        found.seq,
        Timestamp::from_unix_nanos(found.at_unix_nanos),
        event,
    ))
}

/// The error for damage at the cursor; `bytes` start at the damaged position.
fn damage_error(cursor: &Cursor, bytes: &[u8], damage: &Damage) -> Error {
    recovery::damage_error(&cursor.path, bytes, cursor.offset, damage, Some(cursor.seq))
}
