//! Opening a journal honestly: list and check segments, cut a torn tail, refuse anything else.
//!
//! The rule (see `docs/FORMAT.md`, "Recovery"): damage at the very end of the last segment, with
//! no valid frame after it, is a torn write from a crash — those bytes were never acknowledged,
//! so they are cut (and kept in `<segment>.broken`). Any other damage is an error naming the
//! segment, byte offset and seq; nothing is ever skipped silently.
//!
//! The durable position (`journal/durable`) bounds the first rule: the writer publishes it only
//! after `fdatasync` returned, so every event up to it was acknowledged. Bytes at or below it
//! that are missing or damaged — a truncated or zero-filled last segment, a flipped bit in its
//! last frame, a last segment removed — are never a torn tail: recovery refuses with an error
//! naming the segment, offset and seq, and cuts, renumbers and rebuilds nothing. The file is
//! not fsynced, so after a power cut it may be older than the journal (a weaker check, never a
//! false one).

use std::path::{Path, PathBuf};

use tracing::warn;

use super::frame::{self, FrameError};
use super::judge::{self, Place, Verdict};
use super::segment::{self, Damage, Scan, SegmentHeader, Stop};
use crate::error::{Error, IoContext, Result};
use crate::storage::{self, Storage};

/// A segment file and the seq its name says it starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The seq of the segment's first event (from its file name).
    pub first_seq: u64,
    /// The segment file.
    pub path: PathBuf,
}

/// The segments of a journal directory in seq order. Other files are ignored.
pub fn list_segments(storage: &dyn Storage, journal_dir: &Path) -> Result<Vec<SegmentInfo>> {
    let names = storage.list_dir(journal_dir).ctx("list", journal_dir)?;
    let mut segments: Vec<SegmentInfo> = names
        .iter()
        .filter_map(|name| {
            segment::parse_file_name(name).map(|first_seq| SegmentInfo {
                first_seq,
                path: journal_dir.join(name),
            })
        })
        .collect();
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Reads a segment and checks its header against its name.
pub fn read_segment(storage: &dyn Storage, info: &SegmentInfo) -> Result<Vec<u8>> {
    let bytes = storage.read_file(&info.path).ctx("read", &info.path)?;
    check_header(&info.path, &bytes, info.first_seq)?;
    Ok(bytes)
}

/// Decodes the header at the start of `bytes` (a segment named for `first_seq`) and checks that
/// the two agree.
pub fn check_header(path: &Path, bytes: &[u8], first_seq: u64) -> Result<SegmentHeader> {
    let header = SegmentHeader::decode(bytes).map_err(|err| header_error(path, err))?;
    if header.first_seq != first_seq {
        return Err(Error::Corrupt {
            segment: path.to_path_buf(),
            offset: 12,
            seq: Some(header.first_seq),
            reason: format!(
                "header says first seq {}, the file name says {first_seq}",
                header.first_seq
            ),
        });
    }
    Ok(header)
}

fn header_error(path: &Path, err: segment::HeaderError) -> Error {
    match err {
        segment::HeaderError::UnsupportedVersion { found } => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: segment::FORMAT_VERSION,
        },
        other => Error::Corrupt {
            segment: path.to_path_buf(),
            offset: 0,
            seq: None,
            reason: other.to_string(),
        },
    }
}

/// The error for damage found at `offset` of `segment`; `bytes` start at the damaged position.
/// The seq named is the damaged header's own, or else `expected_seq` (the seq that should have
/// been there), when the caller knows it.
pub fn damage_error(
    segment: &Path,
    bytes: &[u8],
    offset: u64,
    damage: &Damage,
    expected_seq: Option<u64>,
) -> Error {
    let seq = frame::peek_seq(bytes).or(expected_seq);
    let segment = segment.to_path_buf();
    match *damage {
        Damage::Frame(FrameError::ChecksumMismatch { expected, got }) => Error::ChecksumMismatch {
            segment,
            offset,
            seq,
            expected,
            got,
        },
        Damage::SeqBreak { expected, found } => Error::SequenceBreak {
            segment,
            offset,
            expected,
            found,
        },
        ref other => Error::Corrupt {
            segment,
            offset,
            seq,
            reason: other.to_string(),
        },
    }
}

/// How a scan of a segment ended, judged by where the segment sits in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The data ends cleanly at this offset.
    Clean { offset: usize },
    /// Damage in the last segment followed by no later batch, past the durable position: a
    /// torn final write.
    TornTail { offset: usize },
    /// Bytes a live writer may still be writing (see [`Verdict::InProgress`]).
    InProgress { offset: usize },
}

/// Judges a finished scan of a whole segment (`buf`, header included) with the policy `place`
/// ([`judge::judge`], the one torn-tail rule); `last_seq` is the seq of the last valid frame
/// before the stop. Damage and acknowledged events lost are errors naming segment, offset and
/// seq.
pub fn judge(path: &Path, buf: &[u8], stop: &Stop, place: Place, last_seq: u64) -> Result<Ending> {
    let (offset, damage) = match stop {
        Stop::Clean { offset } => return Ok(Ending::Clean { offset: *offset }),
        Stop::Damaged { offset, damage } => (*offset, damage),
    };
    let marks = segment::buf_marks_batches(buf);
    match judge::judge(buf, offset, damage, last_seq, marks, place) {
        Verdict::TornTail => Ok(Ending::TornTail { offset }),
        Verdict::InProgress => Ok(Ending::InProgress { offset }),
        Verdict::LostAcknowledged => {
            let durable_seq = place.durable_seq_or_zero();
            let reason = damage.to_string();
            Err(lost_durable_events(
                path,
                offset,
                last_seq,
                durable_seq,
                &reason,
            ))
        }
        Verdict::Damage => Err(damage_error(
            path,
            &buf[offset..],
            offset as u64,
            damage,
            Some(last_seq + 1),
        )),
    }
}

/// What recovery found: the segments and where the writer continues.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub segments: Vec<SegmentInfo>,
    /// The seq the next appended event gets.
    pub next_seq: u64,
    /// Commit time of the last event (0 when the journal is empty).
    pub last_at_unix_nanos: i64,
    /// Length of the valid data in the last segment (where appends continue).
    pub active_len_bytes: u64,
    /// Whether the last segment's format marks batches (appends must match its version).
    pub active_marks_batches: bool,
}

/// Checks every segment; cuts a torn tail of the last one. Requires the writer's lock.
pub fn recover(storage: &dyn Storage, journal_dir: &Path) -> Result<Recovered> {
    remove_leftover_tmp_files(storage, journal_dir)?;
    let durable_seq = super::durable::read_in(storage, journal_dir)?.map_or(0, |p| p.seq);
    let mut segments = list_segments(storage, journal_dir)?;
    let mut next_seq = segments.first().map_or(1, |s| s.first_seq);
    let mut last_at_unix_nanos = 0;
    let mut active_len_bytes = 0;
    let mut active_marks_batches = false;
    drop_torn_last_header(storage, &mut segments, next_seq, durable_seq)?;
    for (index, info) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let checked = recover_segment(storage, info, is_last, next_seq, durable_seq)?;
        next_seq = checked.next_seq;
        last_at_unix_nanos = checked.last_at_unix_nanos.unwrap_or(last_at_unix_nanos);
        active_len_bytes = checked.end as u64;
        active_marks_batches = checked.marks_batches;
    }
    if next_seq <= durable_seq {
        // The segment that held the acknowledged tail is gone altogether.
        let (path, offset) = segments.last().map_or((journal_dir.to_path_buf(), 0), |s| {
            (s.path.clone(), active_len_bytes)
        });
        let reason = "no segment holds the events after it";
        return Err(lost_durable_events(
            &path,
            offset as usize,
            next_seq - 1,
            durable_seq,
            reason,
        ));
    }
    sync_recovered(storage, journal_dir, segments.last())?;
    Ok(Recovered {
        segments,
        next_seq,
        last_at_unix_nanos,
        active_len_bytes,
        active_marks_batches,
    })
}

/// A last segment shorter than its header (a crash while it was created) is removed — unless
/// the durable position says it held acknowledged events.
fn drop_torn_last_header(
    storage: &dyn Storage,
    segments: &mut Vec<SegmentInfo>,
    next_seq: u64,
    durable_seq: u64,
) -> Result<()> {
    let Some(last) = segments.last() else {
        return Ok(());
    };
    if last.first_seq < next_seq || !is_torn_header(storage, last)? {
        return Ok(());
    }
    if last.first_seq <= durable_seq {
        let reason = "the segment is shorter than its header";
        return Err(lost_durable_events(
            &last.path,
            0,
            last.first_seq - 1,
            durable_seq,
            reason,
        ));
    }
    cut_torn_header(storage, last)?;
    segments.pop();
    Ok(())
}

/// What recovery found in one segment.
struct SegmentEnd {
    /// The seq after its last valid frame.
    next_seq: u64,
    /// The commit time of its last valid frame, if it has one.
    last_at_unix_nanos: Option<i64>,
    /// Where its valid data ends (after cutting a torn tail and zero padding).
    end: usize,
    marks_batches: bool,
}

/// Checks one segment, expected to start at `next_seq`; in the last one, cuts a torn tail and
/// the zero padding after the data, and checks the durable events are all there.
fn recover_segment(
    storage: &dyn Storage,
    info: &SegmentInfo,
    is_last: bool,
    next_seq: u64,
    durable_seq: u64,
) -> Result<SegmentEnd> {
    let buf = read_segment(storage, info)?;
    if info.first_seq != next_seq {
        return Err(Error::SequenceBreak {
            segment: info.path.clone(),
            offset: 12,
            expected: next_seq,
            found: info.first_seq,
        });
    }
    let mut scan = Scan::new(&buf, info.first_seq);
    let last_at_unix_nanos = scan.by_ref().last().map(|found| found.frame.at_unix_nanos);
    let next_seq = scan.expected_seq();
    let stop = scan
        .stop()
        .cloned()
        .unwrap_or(Stop::Clean { offset: buf.len() });
    // Recovery holds the writer's lock: nobody is writing.
    let place = Place::of(is_last, Some(durable_seq), false);
    let ending = judge(&info.path, &buf, &stop, place, next_seq.saturating_sub(1))?;
    if is_last && next_seq <= durable_seq {
        let (offset, reason) = match &stop {
            Stop::Clean { offset } => (*offset, "the data ends there".to_owned()),
            Stop::Damaged { offset, damage } => (*offset, damage.to_string()),
        };
        let err = lost_durable_events(&info.path, offset, next_seq - 1, durable_seq, &reason);
        return Err(err);
    }
    let end = match ending {
        Ending::Clean { offset } => offset,
        Ending::TornTail { offset } => {
            cut_torn_tail(storage, &info.path, &buf, offset)?;
            offset
        }
        Ending::InProgress { .. } => {
            return Err(Error::Internal {
                what: "recovery judged a write in progress without a live writer".into(),
            });
        }
    };
    if is_last && end < buf.len() && matches!(ending, Ending::Clean { .. }) {
        // Zero padding after the data: drop it so appends continue at the data's end.
        // (Mutation testing: `<=` for `<`, or `||` for either `&&`, only adds a truncation
        // to the length a file already has — sealed segments carry no padding, a torn tail
        // was cut above — so those mutants are equivalent.)
        let mut file = storage.open_append(&info.path).ctx("open", &info.path)?;
        file.set_len(end as u64).ctx("truncate", &info.path)?;
        file.sync_data().ctx("fdatasync", &info.path)?;
    }
    Ok(SegmentEnd {
        next_seq,
        last_at_unix_nanos,
        end,
        marks_batches: segment::buf_marks_batches(&buf),
    })
}

/// Makes the recovered state durable before anything is acknowledged on top of it: the last
/// segment may hold written-but-unsynced bytes (a failed fdatasync; `Never`/`Interval` and a
/// process crash), and its name may come from a rename whose directory fsync failed. A later
/// rotation would otherwise seal it unsynced, and a power cut could leave a seq gap.
fn sync_recovered(
    storage: &dyn Storage,
    journal_dir: &Path,
    last: Option<&SegmentInfo>,
) -> Result<()> {
    if let Some(last) = last {
        let mut file = storage.open_append(&last.path).ctx("open", &last.path)?;
        file.sync_data().ctx("fdatasync", &last.path)?;
        storage
            .sync_dir(journal_dir)
            .ctx("fsync dir", journal_dir)?;
    }
    Ok(())
}

/// The error for acknowledged events that are missing or damaged: the journal's valid data
/// ends at seq `last_seq` (at `offset` of `segment`), the durable position says `durable_seq`.
pub(crate) fn lost_durable_events(
    segment: &Path,
    offset: usize,
    last_seq: u64,
    durable_seq: u64,
    reason: &str,
) -> Error {
    Error::Corrupt {
        segment: segment.to_path_buf(),
        offset: offset as u64,
        seq: Some(last_seq + 1),
        reason: format!(
            "{reason}, after seq {last_seq}, but journal/durable says seq {durable_seq} was \
             acknowledged: {} acknowledged events are missing or damaged; nothing was cut \
             (restore the segment from a backup, or copy what is readable with `tj salvage`)",
            durable_seq - last_seq
        ),
    }
}

/// Whether a segment is shorter than its header and holds a prefix of a valid header.
pub fn is_torn_header(storage: &dyn Storage, info: &SegmentInfo) -> Result<bool> {
    let bytes = storage.read_file(&info.path).ctx("read", &info.path)?;
    let magic_prefix = bytes.len().min(segment::SEGMENT_MAGIC.len());
    Ok(bytes.len() < segment::SEGMENT_HEADER_BYTES
        && bytes[..magic_prefix] == segment::SEGMENT_MAGIC[..magic_prefix])
}

/// A last segment shorter than its header, holding a prefix of a valid header, was cut while
/// being created (the rename reached the disk, the bytes did not): it never held a frame. Its
/// bytes are kept in `<segment>.broken` and the file removed, so the writer creates it anew.
fn cut_torn_header(storage: &dyn Storage, info: &SegmentInfo) -> Result<()> {
    let bytes = storage.read_file(&info.path).ctx("read", &info.path)?;
    let broken = free_broken_path(storage, &info.path);
    if !bytes.is_empty() {
        storage::write_atomic(storage, &broken, &bytes).ctx("save torn header", &broken)?;
    }
    storage.remove_file(&info.path).ctx("remove", &info.path)?;
    let dir = storage::parent_dir(&info.path);
    storage.sync_dir(dir).ctx("fsync dir", dir)?;
    warn!(
        segment = %info.path.display(),
        len_bytes = bytes.len(),
        saved_to = %broken.display(),
        "removed a segment whose header was cut by a crash (it held no events)"
    );
    Ok(())
}

/// Saves `buf[offset..]` (without trailing zero padding) to `<segment>.broken` durably, then
/// truncates the segment to `offset`.
fn cut_torn_tail(storage: &dyn Storage, path: &Path, buf: &[u8], offset: usize) -> Result<()> {
    // Zeros after the last non-zero byte are the writer's preallocation, not part of the write.
    let damaged_end = buf
        .iter()
        .rposition(|&b| b != 0)
        .map_or(offset, |last| (last + 1).max(offset));
    let cut_bytes = damaged_end - offset;
    let broken = free_broken_path(storage, path);
    storage::write_atomic(storage, &broken, &buf[offset..damaged_end])
        .ctx("save torn tail", &broken)?;
    let mut file = storage.open_append(path).ctx("open", path)?;
    file.set_len(offset as u64).ctx("truncate", path)?;
    file.sync_data().ctx("fdatasync", path)?;
    warn!(
        segment = %path.display(),
        offset,
        cut_bytes,
        saved_to = %broken.display(),
        "truncated a torn tail (an unacknowledged write cut by a crash)"
    );
    Ok(())
}

/// `<segment>.broken`, or `<segment>.broken.N` if earlier cuts are already kept.
fn free_broken_path(storage: &dyn Storage, path: &Path) -> PathBuf {
    let base = format!("{}.broken", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while storage.exists(&candidate) {
        candidate = PathBuf::from(format!("{base}.{n}"));
        n += 1;
    }
    candidate
}

/// A `*.tmp` file in the journal directory is a segment whose creation a crash interrupted
/// before its rename; it never held an acknowledged event.
fn remove_leftover_tmp_files(storage: &dyn Storage, journal_dir: &Path) -> Result<()> {
    let names = storage.list_dir(journal_dir).ctx("list", journal_dir)?;
    let mut removed = false;
    for name in names.iter().filter(|n| n.ends_with(".tmp")) {
        let path = journal_dir.join(name);
        storage.remove_file(&path).ctx("remove", &path)?;
        removed = true;
    }
    if removed {
        storage
            .sync_dir(journal_dir)
            .ctx("fsync dir", journal_dir)?;
    }
    Ok(())
}
