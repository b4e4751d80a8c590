//! Owns tailing a journal's bytes without the writer's lock: [`Tail`] keeps a cursor (segment,
//! byte offset, seq of the frame there), reads new bytes in bounded chunks, walks them with
//! [`segment::Scan`], hands every verified frame from a given seq on to the caller — up to the
//! durable position unless reading ahead — and judges whether bytes that are not the next frame
//! are a write in progress (wait) or damage (error). It knows frames, not events; the event-level
//! follower ([`crate::follow`]) decodes them and resynchronizes from snapshots on top of it.
//!
//! The rules (see [`crate::follow`] for the whole story): a partial frame, zeros, or bytes
//! failing their checksum at the end of the data are "not written yet"; they are damage only
//! when the durable position covers their seq, a later segment exists (after a re-read), or a
//! later batch follows them while no writer publishes a durable position that could still cover
//! them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::debug;

use crate::error::{Error, IoContext, Result};
use crate::journal::durable;
use crate::journal::frame::{
    self, FRAME_HEADER_BYTES, FrameError, FrameRef, MAX_FRAME_PAYLOAD_BYTES,
};
use crate::journal::judge::{self, Place, Verdict};
use crate::journal::recovery::{self, SegmentInfo};
use crate::journal::segment::{Damage, SEGMENT_HEADER_BYTES, Scan, SegmentHeader, Stop};
use crate::storage::Storage;

/// One verified frame handed to the caller, and where it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TailFrame<'a> {
    pub(crate) segment: &'a Path,
    pub(crate) offset: u64,
    pub(crate) frame: FrameRef<'a>,
}

/// Receives each frame; returns `Ok(false)` when the consumer is gone.
pub(crate) type Deliver<'d> = &'d mut dyn FnMut(TailFrame<'_>) -> Result<bool>;

/// What one look at the journal achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailStep {
    /// Something changed (frames delivered, or the cursor moved): look again at once.
    Progress,
    /// Nothing new: wait for a wake-up or the poll interval.
    Idle,
    /// The consumer is gone.
    Closed,
    /// Compaction removed the segments holding the next seq; the first retained seq is this.
    /// The caller resynchronizes (from a snapshot) and continues with [`Tail::skip_to`].
    NotRetained { first_retained: u64 },
}

/// Where the tail is: the frame at `offset` of `path` carries `seq`.
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

impl Cursor {
    /// At the first frame of the segment `info`.
    fn at_start(info: &SegmentInfo) -> Self {
        Self {
            path: info.path.clone(),
            first_seq: info.first_seq,
            offset: SEGMENT_HEADER_BYTES as u64,
            seq: info.first_seq,
            header_checked: false,
            marks_batches: false,
        }
    }
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

/// Why the scan of one chunk stopped.
#[derive(Debug)]
enum ChunkStop {
    /// The buffer ended inside a frame: read on.
    ReadMore { needed_bytes: usize },
    /// The next frame is not durable yet.
    NotDurable,
    /// No more data (end of file, or zeros).
    EndOfData,
    /// Bytes that are not the next frame.
    Suspect(Damage),
    /// The consumer is gone.
    Closed,
}

/// What the scan of one chunk found.
#[derive(Debug)]
struct Chunk {
    /// Bytes of whole frames walked (delivered or skipped as before `next_seq`).
    consumed: usize,
    /// The seq of the frame after them.
    next_frame_seq: u64,
    delivered: bool,
    stop: ChunkStop,
}

/// Tails the segments of `DIR/journal`; see the [module docs](self).
pub(crate) struct Tail {
    storage: Arc<dyn Storage>,
    journal_dir: PathBuf,
    /// The next seq to deliver.
    next_seq: u64,
    read_chunk_bytes: usize,
    read_ahead: bool,
    cursor: Option<Cursor>,
    /// Reused read buffer; at most `read_chunk_bytes`, or one frame when a frame is larger.
    buf: Vec<u8>,
    /// The last durable seq read, kept when a read of the file comes back torn.
    last_durable_seq: u64,
}

impl Tail {
    /// A tail of `journal_dir` delivering from `from_seq` (0 counts as 1).
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        journal_dir: PathBuf,
        from_seq: u64,
        read_chunk_bytes: usize,
        read_ahead: bool,
    ) -> Self {
        Self {
            storage,
            journal_dir,
            next_seq: from_seq.max(1),
            read_chunk_bytes: read_chunk_bytes.max(FRAME_HEADER_BYTES),
            read_ahead,
            cursor: None,
            buf: Vec::new(),
            last_durable_seq: 0,
        }
    }

    /// The next seq to deliver.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Continues at `next_seq` (after a resync from a snapshot), locating its segment anew.
    pub(crate) fn skip_to(&mut self, next_seq: u64) {
        self.next_seq = next_seq;
        self.cursor = None;
    }

    /// One look: find the cursor if needed, read what is new, deliver what may be delivered.
    pub(crate) fn look(&mut self, deliver: Deliver<'_>) -> Result<TailStep> {
        let durable = self.durable_seq()?;
        let limit = if self.read_ahead { None } else { durable };
        let Some(cursor) = self.cursor.take() else {
            return self.locate();
        };
        self.read_from(cursor, limit, durable, deliver)
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

    /// Sets the cursor at the segment holding `next_seq`, or reports that compaction removed it.
    fn locate(&mut self) -> Result<TailStep> {
        let segments = self.segments()?;
        let Some(first) = segments.first() else {
            return Ok(TailStep::Idle);
        };
        if self.next_seq < first.first_seq {
            return Ok(TailStep::NotRetained {
                first_retained: first.first_seq,
            });
        }
        let Some(info) = segments.iter().rev().find(|s| s.first_seq <= self.next_seq) else {
            return Ok(TailStep::Idle);
        };
        self.cursor = Some(Cursor::at_start(info));
        Ok(TailStep::Progress)
    }

    fn segments(&self) -> Result<Vec<SegmentInfo>> {
        recovery::list_segments(&*self.storage, &self.journal_dir)
    }

    /// Whether a segment after the cursor's exists: the cursor's segment is sealed.
    fn is_sealed(&self, cursor: &Cursor) -> Result<bool> {
        Ok(self
            .segments()?
            .iter()
            .any(|s| s.first_seq > cursor.first_seq))
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

    /// Checks the segment header when the cursor enters a segment.
    fn check_header(&mut self, cursor: &Cursor) -> Result<HeaderLook> {
        let Some(n) = self.fill(&cursor.path, 0, SEGMENT_HEADER_BYTES)? else {
            return Ok(HeaderLook::Gone);
        };
        if n < SEGMENT_HEADER_BYTES {
            // A header cut by a crash while the segment was created; the writer's recovery
            // removes it. Damage only if a later segment shows this one was sealed.
            if self.is_sealed(cursor)? {
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

    /// Checks the header of a segment the cursor just entered. `Some(step)`: stop with it.
    fn enter_segment(&mut self, cursor: &mut Cursor) -> Result<Option<TailStep>> {
        if cursor.header_checked {
            return Ok(None);
        }
        match self.check_header(cursor)? {
            HeaderLook::Gone => Ok(Some(TailStep::Progress)), // locate again
            HeaderLook::Torn => {
                self.cursor = Some(cursor.clone());
                Ok(Some(TailStep::Idle))
            }
            HeaderLook::Valid(header) => {
                cursor.header_checked = true;
                cursor.marks_batches = header.marks_batches();
                Ok(None)
            }
        }
    }

    /// Reads and delivers from `cursor` until the data (or what may be delivered) ends.
    fn read_from(
        &mut self,
        mut cursor: Cursor,
        limit: Option<u64>,
        durable: Option<u64>,
        deliver: Deliver<'_>,
    ) -> Result<TailStep> {
        if let Some(step) = self.enter_segment(&mut cursor)? {
            return Ok(step);
        }
        let mut delivered = false;
        let mut want = self.read_chunk_bytes;
        loop {
            let Some(n) = self.fill(&cursor.path, cursor.offset, want)? else {
                // Compaction removed the segment: find where `next_seq` lives now.
                return Ok(TailStep::Progress);
            };
            if n == 0 {
                self.check_not_cut(&cursor)?;
            }
            let full = n == want;
            let chunk = scan_chunk(
                &self.buf[..n],
                &cursor,
                full,
                limit,
                &mut self.next_seq,
                deliver,
            )?;
            delivered |= chunk.delivered;
            cursor.offset += chunk.consumed as u64;
            cursor.seq = chunk.next_frame_seq;
            let pos = chunk.consumed;
            match chunk.stop {
                ChunkStop::ReadMore { needed_bytes } => {
                    // `needed_bytes` is bounded: `decode` refused lengths over the format limit.
                    want = self
                        .read_chunk_bytes
                        .max(needed_bytes.min(FRAME_HEADER_BYTES + MAX_FRAME_PAYLOAD_BYTES));
                }
                ChunkStop::Closed => return Ok(TailStep::Closed),
                ChunkStop::NotDurable => {
                    self.cursor = Some(cursor);
                    return Ok(progress(delivered));
                }
                ChunkStop::EndOfData => {
                    self.shrink_buffer();
                    return self.end_of_data(cursor, durable, delivered);
                }
                ChunkStop::Suspect(damage) => {
                    let step = self.judge(cursor, pos, n, damage, durable, delivered);
                    self.shrink_buffer();
                    return step;
                }
            }
        }
    }

    /// Nothing to read at the cursor: fine, unless the segment is now shorter than the cursor —
    /// the writer's recovery cut events this tail delivered ahead of durability.
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
    ) -> Result<TailStep> {
        let segments = self.segments()?;
        if !segments.iter().any(|s| s.path == cursor.path) {
            // Compaction removed it; locate `next_seq` again.
            return Ok(TailStep::Progress);
        }
        let Some(next) = segments.iter().find(|s| s.first_seq > cursor.first_seq) else {
            // The durable position was read before these bytes, and the writer publishes it
            // only after the write and its fdatasync returned: the events up to it must be
            // here. They are not: acknowledged events are missing, not still being written.
            if let Some(durable_seq) = durable.filter(|&d| d >= cursor.seq) {
                return Err(recovery::lost_durable_events(
                    &cursor.path,
                    cursor.offset as usize,
                    cursor.seq - 1,
                    durable_seq,
                    "the segment's data ends there",
                ));
            }
            self.cursor = Some(cursor);
            return Ok(progress(delivered));
        };
        if next.first_seq == cursor.seq {
            debug!(segment = %next.path.display(), "following into the next segment");
            self.cursor = Some(Cursor::at_start(next));
            return Ok(TailStep::Progress);
        }
        let next = next.clone();
        self.check_gap(cursor, next)
    }

    /// A later segment exists, so the cursor's is sealed — but it may have grown between our
    /// read and the listing. Read again: if it still ends here, the journal has a gap.
    fn check_gap(&mut self, cursor: Cursor, next: SegmentInfo) -> Result<TailStep> {
        let Some(n) = self.fill(&cursor.path, cursor.offset, FRAME_HEADER_BYTES)? else {
            return Ok(TailStep::Progress);
        };
        if self.buf[..n].iter().any(|&b| b != 0) {
            self.cursor = Some(cursor);
            return Ok(TailStep::Progress);
        }
        Err(Error::SequenceBreak {
            segment: next.path,
            offset: 12,
            expected: cursor.seq,
            found: next.first_seq,
        })
    }

    /// The bytes at the cursor (`pos` in the buffer of `n` bytes read) are not the next frame.
    /// Damage, or a write in progress? The follow policy of the torn-tail rule.
    fn judge(
        &mut self,
        cursor: Cursor,
        pos: usize,
        n: usize,
        damage: Damage,
        durable: Option<u64>,
        delivered: bool,
    ) -> Result<TailStep> {
        let place = Place::Last {
            durable_seq: durable,
            live_writer: true,
        };
        let after_seq = cursor.seq - 1;
        let verdict = judge::judge(
            &self.buf[..n],
            pos,
            &damage,
            after_seq,
            cursor.marks_batches,
            place,
        );
        // Covered by the durable position (its bytes were complete before we read them), or
        // before a later batch no live write explains: damage. A torn tail or a write in
        // progress is decided by sealing or the durable position moving past it.
        if matches!(verdict, Verdict::Damage | Verdict::LostAcknowledged) {
            return Err(damage_error(&cursor, &self.buf[pos..n], &damage));
        }
        if self.is_sealed(&cursor)? {
            return self.judge_sealed(cursor, &damage);
        }
        debug!(
            segment = %cursor.path.display(),
            offset = cursor.offset,
            "incomplete or unverified bytes at the tail; waiting for the writer"
        );
        self.cursor = Some(cursor);
        Ok(progress(delivered))
    }

    /// The segment was sealed, perhaps after our read: read again before calling it damage.
    fn judge_sealed(&mut self, cursor: Cursor, damage: &Damage) -> Result<TailStep> {
        let Some(m) = self.fill(&cursor.path, cursor.offset, self.read_chunk_bytes)? else {
            return Ok(TailStep::Progress);
        };
        match frame::decode(&self.buf[..m]) {
            Ok(found) if found.seq == cursor.seq => {
                self.cursor = Some(cursor);
                Ok(TailStep::Progress)
            }
            Err(_) if self.buf[..m].iter().all(|&b| b == 0) => {
                self.cursor = Some(cursor);
                Ok(TailStep::Progress)
            }
            _ => Err(damage_error(&cursor, &self.buf[..m], damage)),
        }
    }
}

fn progress(delivered: bool) -> TailStep {
    if delivered {
        TailStep::Progress
    } else {
        TailStep::Idle
    }
}

/// Walks the frames of `buf` (bytes read at the cursor; `full` when the read filled the
/// request, so more may follow) with [`Scan`], delivering those from `next_seq` on up to
/// `limit`, and says why it stopped.
fn scan_chunk(
    buf: &[u8],
    cursor: &Cursor,
    full: bool,
    limit: Option<u64>,
    next_seq: &mut u64,
    deliver: Deliver<'_>,
) -> Result<Chunk> {
    let mut chunk = Chunk {
        consumed: 0,
        next_frame_seq: cursor.seq,
        delivered: false,
        stop: ChunkStop::EndOfData,
    };
    let mut scan = Scan::starting_at(buf, 0, cursor.seq);
    for found in scan.by_ref() {
        let seq = found.frame.seq;
        if limit.is_some_and(|limit| seq > limit) {
            chunk.stop = ChunkStop::NotDurable;
            return Ok(chunk);
        }
        if seq >= *next_seq {
            let offset = cursor.offset + found.offset as u64;
            let frame = TailFrame {
                segment: &cursor.path,
                offset,
                frame: found.frame,
            };
            if !deliver(frame)? {
                chunk.stop = ChunkStop::Closed;
                return Ok(chunk);
            }
            *next_seq = seq + 1;
            chunk.delivered = true;
        }
        chunk.consumed = found.offset + found.frame.encoded_len();
        chunk.next_frame_seq = seq + 1;
    }
    chunk.stop = chunk_stop(scan.stop(), buf.len(), full);
    Ok(chunk)
}

/// Reads a scan's stop for a chunk that may continue past the bytes read (`full`): a frame
/// (or a frame header of zeros) cut by the end of the read is read on, not judged.
fn chunk_stop(stop: Option<&Stop>, n: usize, full: bool) -> ChunkStop {
    match stop {
        Some(Stop::Clean { offset }) if full && n - offset < FRAME_HEADER_BYTES => {
            ChunkStop::ReadMore {
                needed_bytes: FRAME_HEADER_BYTES,
            }
        }
        Some(Stop::Damaged {
            damage: Damage::Frame(FrameError::Incomplete { needed_bytes, .. }),
            ..
        }) if full => ChunkStop::ReadMore {
            needed_bytes: *needed_bytes,
        },
        Some(Stop::Damaged { damage, .. }) => ChunkStop::Suspect(damage.clone()),
        Some(Stop::Clean { .. }) | None => ChunkStop::EndOfData,
    }
}

/// The error for damage at the cursor; `bytes` start at the damaged position.
fn damage_error(cursor: &Cursor, bytes: &[u8], damage: &Damage) -> Error {
    recovery::damage_error(&cursor.path, bytes, cursor.offset, damage, Some(cursor.seq))
}
