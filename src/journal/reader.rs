//! Reading the journal without the writer's lock: iterate frames from any seq (decoding their
//! payloads into events is the typed layer's, `crate::typed_journal`).
//!
//! Every frame's checksum is verified. At the end of the last segment, an incomplete or torn
//! frame with nothing valid after it ends the iteration quietly: a writer may be in the middle of
//! writing it (or a crash cut it and the next writer will truncate it); so does any damage past
//! the durable position a live writer publishes. Damage anywhere else is an error naming
//! segment, offset and seq.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::judge::Place;
use super::recovery::{self, Ending, SegmentInfo};
use super::segment::{self, SEGMENT_HEADER_BYTES, Scan};
use crate::error::{Error, IoContext, Result};
use crate::model::Timestamp;
use crate::storage::{ReadFile, RealStorage, Storage};

/// A frame as read from disk, with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The sequence number.
    pub seq: u64,
    /// The commit time.
    pub at: Timestamp,
    /// The payload bytes (opaque here; an encoded event, see `RawFrame::decode`).
    pub payload: Vec<u8>,
    /// The segment file.
    pub segment: Arc<PathBuf>,
    /// Byte offset of the frame (or damage) in the file.
    pub offset: u64,
}

/// Reads a journal directory; needs no lock and never writes.
#[derive(Debug, Clone)]
pub struct JournalReader {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    journal_dir: PathBuf,
}

impl JournalReader {
    /// Opens the journal of store directory `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_storage(Arc::new(RealStorage), dir)
    }

    /// Opens the journal of store directory `dir` on `storage`.
    pub fn with_storage(storage: Arc<dyn Storage>, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let journal_dir = super::journal_dir(&dir);
        if !storage.is_dir(&journal_dir) {
            return Err(Error::InvalidArgument(format!(
                "no journal in {} (expected a directory {})",
                dir.display(),
                journal_dir.display()
            )));
        }
        Ok(Self {
            storage,
            dir,
            journal_dir,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The storage this reader reads through.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The segments, in seq order.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        recovery::list_segments(&*self.storage, &self.journal_dir)
    }

    /// The first seq the journal still holds: 1, or where compaction left it (the events before
    /// it live only in a snapshot).
    pub fn first_retained_seq(&self) -> Result<u64> {
        Ok(self.segments()?.first().map_or(1, |s| s.first_seq.max(1)))
    }

    /// The seq and commit time of the last event, reading only the last non-empty segment.
    pub fn head(&self) -> Result<Option<(u64, Timestamp)>> {
        let segments = self.segments()?;
        for info in segments.iter().rev() {
            let last = self
                .frames_in(vec![info.clone()], 0, info.first_seq, 0)
                .last()
                .transpose()?;
            if let Some(frame) = last {
                return Ok(Some((frame.seq, frame.at)));
            }
        }
        Ok(None)
    }

    /// Frames with seq ≥ `from_seq`, in seq order.
    ///
    /// Ending before the durable position published when the iteration started is an error
    /// (acknowledged events are missing or damaged); it is read before the segments, so a
    /// writer appending meanwhile can only add bytes past it, never cause a false alarm.
    pub fn frames(&self, from_seq: u64) -> Result<Frames> {
        let durable_seq = super::durable::read(&*self.storage, &self.dir)?.map_or(0, |p| p.seq);
        let segments = self.segments()?;
        if let Some(first) = segments.first()
            && from_seq < first.first_seq
            && first.first_seq > 1
        {
            return Err(Error::SeqNotRetained {
                requested: from_seq,
                earliest: first.first_seq,
            });
        }
        // Start in the last segment whose first seq is ≤ from_seq.
        let start = segments
            .iter()
            .rposition(|s| s.first_seq <= from_seq)
            .unwrap_or(0);
        let mut frames = self.frames_in(segments, start, from_seq, durable_seq);
        // A segment gone between the listing and its opening was removed by a compaction (or
        // is damage): say so now, before anything is read, so the caller can plan again.
        if let Some(gone) = frames.open_ahead(start) {
            frames.index = gone;
            return Err(frames.vanished(frames.segments[gone].first_seq));
        }
        Ok(frames)
    }

    fn frames_in(
        &self,
        segments: Vec<SegmentInfo>,
        index: usize,
        from_seq: u64,
        durable_seq: u64,
    ) -> Frames {
        Frames {
            storage: Arc::clone(&self.storage),
            store_dir: self.dir.clone(),
            durable_seq,
            segments,
            opened: BTreeMap::new(),
            index,
            from_seq,
            current: None,
            done: false,
        }
    }
}

#[derive(Debug)]
struct Loaded {
    path: Arc<PathBuf>,
    bytes: Vec<u8>,
    pos: usize,
    expected_seq: u64,
    /// The durable position read just before `bytes`: every frame up to it is complete in
    /// them; damage past it in the last segment may be a write in progress.
    /// `None`: no writer published one.
    durable_seq: Option<u64>,
}

/// Iterator over frames; see [`JournalReader::frames`].
#[derive(Debug)]
pub struct Frames {
    storage: Arc<dyn Storage>,
    store_dir: PathBuf,
    /// The durable position when the iteration started: the frames must reach it.
    durable_seq: u64,
    segments: Vec<SegmentInfo>,
    /// Read handles of the segments from `index` on, opened ahead of reading them (at most
    /// [`OPEN_AHEAD_SEGMENTS`]): an opened segment stays readable when a concurrent compaction
    /// removes it, so a read that has started is not cut short by one.
    opened: BTreeMap<usize, Box<dyn ReadFile>>,
    index: usize,
    from_seq: u64,
    current: Option<Loaded>,
    done: bool,
}

/// How many segments a [`Frames`] keeps open ahead of the one it reads: each holds a file
/// descriptor (256 stays well inside the usual 1024 soft limit), so the window is bounded; a
/// compaction can only cut short a read that still has more than this many segments to go,
/// and then with [`Error::SeqNotRetained`] naming the first seq not read.
const OPEN_AHEAD_SEGMENTS: usize = 256;

impl Frames {
    /// Opens the segments of the window from `first` that are not open yet, stopping at the
    /// first one that cannot be opened and returning its index. During a read that one is left
    /// for [`Frames::load`] to report when the read reaches it (the ones before it still read).
    fn open_ahead(&mut self, first: usize) -> Option<usize> {
        let end = self.segments.len().min(first + OPEN_AHEAD_SEGMENTS);
        for index in first..end {
            if self.opened.contains_key(&index) {
                continue;
            }
            match self.storage.open_read(&self.segments[index].path) {
                Ok(handle) => {
                    self.opened.insert(index, handle);
                }
                Err(_) => return Some(index),
            }
        }
        None
    }

    /// The bytes of segment `index`, through the handle opened ahead when there is one.
    fn read_segment(&mut self, index: usize) -> Result<Vec<u8>> {
        let info = &self.segments[index];
        let mut handle = match self.opened.remove(&index) {
            Some(handle) => handle,
            None => self.storage.open_read(&info.path).ctx("open", &info.path)?,
        };
        let bytes = handle.read_all().ctx("read", &info.path)?;
        recovery::check_header(&info.path, &bytes, info.first_seq)?;
        Ok(bytes)
    }

    fn load(&mut self) -> Result<()> {
        let info = self.segments[self.index].clone();
        if let Some(previous) = &self.current
            && previous.expected_seq != info.first_seq
        {
            return Err(Error::SequenceBreak {
                segment: info.path.clone(),
                offset: 12,
                expected: previous.expected_seq,
                found: info.first_seq,
            });
        }
        let is_last = self.index + 1 == self.segments.len();
        // Before the bytes: a write that becomes durable after this read was already complete
        // in them, so only a write still in progress can be judged by this position.
        let durable_seq = super::durable::read(&*self.storage, &self.store_dir)?.map(|p| p.seq);
        let bytes = match self.read_segment(self.index) {
            Err(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.vanished(info.first_seq));
            }
            // A last segment cut while being created holds no frame yet; the next writer
            // recovers it. Read it as empty rather than as damage.
            Err(Error::Corrupt { .. })
                if is_last && recovery::is_torn_header(&*self.storage, &info)? =>
            {
                segment::SegmentHeader {
                    version: segment::FORMAT_VERSION,
                    first_seq: info.first_seq,
                    created_unix_nanos: 0,
                }
                .encode()
                .to_vec()
            }
            other => other?,
        };
        self.current = Some(Loaded {
            path: Arc::new(info.path.clone()),
            bytes,
            pos: SEGMENT_HEADER_BYTES,
            expected_seq: info.first_seq,
            durable_seq,
        });
        // A segment that cannot be opened now is reported when the read reaches it.
        let _ = self.open_ahead(self.index + 1);
        Ok(())
    }

    /// The error for a listed segment (starting at `first_seq`) that is gone when read. When the
    /// journal now starts after it, a concurrent compaction removed it (a snapshot holds its
    /// events): [`Error::SeqNotRetained`] names the next seq this iteration needed, so callers
    /// can re-plan from the new layout. Otherwise the segment is missing: damage.
    fn vanished(&self, first_seq: u64) -> Error {
        let needed = self
            .current
            .as_ref()
            .map_or(self.from_seq.max(first_seq), |c| c.expected_seq);
        let journal_dir = super::journal_dir(&self.store_dir);
        let now_first = recovery::list_segments(&*self.storage, &journal_dir)
            .ok()
            .and_then(|segments| segments.first().map(|s| s.first_seq));
        match now_first {
            Some(earliest) if earliest > first_seq => {
                tracing::debug!(
                    needed,
                    earliest,
                    "a concurrent compaction removed a segment being read"
                );
                Error::SeqNotRetained {
                    requested: needed,
                    earliest,
                }
            }
            _ => {
                let path = self.segments[self.index].path.clone();
                Error::Corrupt {
                    segment: path,
                    offset: 0,
                    seq: Some(first_seq),
                    reason: "the segment was listed but is gone, and the journal still starts \
                             before it"
                        .into(),
                }
            }
        }
    }

    /// The next frame of the loaded segment, `Ok(None)` at its end.
    fn next_in_segment(&mut self) -> Result<Option<RawFrame>> {
        let is_last = self.index + 1 == self.segments.len();
        let Some(loaded) = self.current.as_mut() else {
            return Ok(None);
        };
        let mut scan = Scan::starting_at(&loaded.bytes, loaded.pos, loaded.expected_seq);
        if let Some(found) = scan.next() {
            loaded.pos = found.offset + found.frame.encoded_len();
            loaded.expected_seq += 1;
            return Ok(Some(RawFrame {
                seq: found.frame.seq,
                at: Timestamp::from_unix_nanos(found.frame.at_unix_nanos),
                payload: found.frame.payload.to_vec(),
                segment: Arc::clone(&loaded.path),
                offset: found.offset as u64,
            }));
        }
        let Some(stop) = scan.stop().cloned() else {
            return Ok(None);
        };
        let last_seq = loaded.expected_seq - 1;
        let place = Place::of(is_last, loaded.durable_seq, true);
        match recovery::judge(&loaded.path, &loaded.bytes, &stop, place, last_seq)? {
            Ending::Clean { .. } | Ending::TornTail { .. } => Ok(None),
            Ending::InProgress { offset } => {
                tracing::debug!(offset, "unfinished write at the tail; stopping there");
                Ok(None)
            }
        }
    }

    fn advance(&mut self) -> Result<Option<RawFrame>> {
        loop {
            if self.index >= self.segments.len() {
                return Ok(None);
            }
            if self.current.is_none() {
                self.load()?;
            }
            match self.next_in_segment()? {
                Some(frame) if frame.seq < self.from_seq => continue,
                Some(frame) => return Ok(Some(frame)),
                None if self.index + 1 < self.segments.len() => {
                    // `load` checks the new segment continues where this one ended.
                    self.index += 1;
                    self.load()?;
                }
                None => return self.check_reached_durable().map(|()| None),
            }
        }
    }

    /// At the end of the journal: every event up to the durable position was read.
    fn check_reached_durable(&self) -> Result<()> {
        let (path, offset, next_seq) = match (&self.current, self.segments.last()) {
            (Some(loaded), _) => (loaded.path.to_path_buf(), loaded.pos, loaded.expected_seq),
            (None, Some(last)) => (last.path.clone(), 0, last.first_seq),
            (None, None) => (super::journal_dir(&self.store_dir), 0, 1),
        };
        if next_seq > self.durable_seq {
            return Ok(());
        }
        let reason = "the readable events end there";
        let err =
            recovery::lost_durable_events(&path, offset, next_seq - 1, self.durable_seq, reason);
        Err(err)
    }
}

impl Iterator for Frames {
    type Item = Result<RawFrame>;

    fn next(&mut self) -> Option<Result<RawFrame>> {
        if self.done {
            return None;
        }
        let item = self.advance().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
