//! Read-only verification of the frames: walk every frame of every segment and report each
//! problem found to a [`Visitor`]. What the payloads mean (do they decode, which torrents do
//! damaged bytes name) and whether the snapshots agree is checked above the journal, by
//! `crate::verify` (the whole store's report) and `crate::salvage`.
//!
//! Unlike recovery, verification never stops at the first problem and never repairs: after
//! damage it resynchronizes on the next valid frame and keeps going, so one report lists every
//! damaged region with its segment, byte offset and seq.
//!
//! It needs no lock. Against a live writer the last segment's bytes past the published
//! durable position may be a write in progress (the writer overwrites preallocated zeros in
//! place): while they show damage they are read again (with the durable position first), so a
//! write in progress is not reported; damage that stays is. Segments a concurrent compaction
//! removes during the walk are skipped, not reported.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::frame::{self, FrameRef};
use super::judge::{self, Place, Verdict};
use super::recovery::{self, SegmentInfo};
use super::segment::{self, Damage, SEGMENT_HEADER_BYTES, Scan, SegmentHeader, Stop};
use crate::error::Result;
use crate::model::InfoHash;
use crate::storage::Storage;

/// What kind of problem verification found. The frame walk ([`walk`]) finds all but
/// `UndecodableEvent`, `DamagedSnapshot` and `NoContinuingSnapshot`, which the typed checks
/// above the journal add to the same report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// Damage at the very end of the last segment with nothing valid after it; the next open
    /// truncates it (these bytes were never acknowledged).
    TornTail,
    /// A damaged frame with valid frames after it, or any damage in a sealed segment.
    DamagedFrame,
    /// A segment header that is damaged, or from an unsupported version.
    BadHeader,
    /// Seqs that skip or repeat between frames or segments.
    SequenceBreak,
    /// A frame whose checksum is right but whose payload is not a known event.
    UndecodableEvent,
    /// A segment that could not be read at all.
    Unreadable,
    /// The journal ends (or its damage starts) before the seq `journal/durable` says was
    /// acknowledged: acknowledged events are missing or damaged. Reported once, after any
    /// damage found in the last segment.
    MissingDurableEvents,
    /// A snapshot that does not read back whole (header, checksums, body, header agreement),
    /// or that disagrees with the journal (its own event has another commit time, or its seq
    /// is beyond the journal's last event). `segment` is the snapshot's path.
    DamagedSnapshot,
    /// The journal starts after seq 1 and no usable snapshot is at or after its first seq − 1:
    /// nothing continues the retained journal, so the store cannot reach its head.
    NoContinuingSnapshot,
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of difference (or problem).
    pub kind: ProblemKind,
    /// The segment file.
    pub segment: PathBuf,
    /// Byte offset of the frame (or damage) in the file.
    pub offset: u64,
    /// The seq stored at that offset, if a header was readable there.
    pub seq: Option<u64>,
    /// What is wrong, in words.
    pub detail: String,
    /// Bytes skipped before the next valid frame (or to the end of the segment).
    pub damaged_bytes: u64,
    /// Torrents whose events the damaged bytes seem to hold (best effort: decoded despite the
    /// failed checksum, so a name to check, not a fact). The frame walk leaves it empty: the
    /// typed visitors fill it from the damaged bytes they are handed (`crate::verify`).
    pub affected_torrents: Vec<InfoHash>,
}

/// What [`walk`] reports to.
pub trait Visitor {
    /// A segment was read; `bytes` is its size.
    fn segment(&mut self, info: &SegmentInfo, bytes: u64);
    /// A valid frame (checksum right, seq continuing).
    fn frame(&mut self, info: &SegmentInfo, offset: usize, frame: &FrameRef<'_>);
    /// A problem; `damaged` are the bytes it covers (empty for a sequence break).
    fn problem(&mut self, problem: Problem, damaged: &[u8]);
}

/// Walks every segment of store directory `dir`, reporting valid frames and problems; after
/// damage it resynchronizes on the next valid frame and keeps going.
///
/// The durable position is read before any segment: beside a live writer, bytes read later
/// only ever extend past it, so a shortfall is real loss, never a write in progress.
pub fn walk(storage: &dyn Storage, dir: &Path, visitor: &mut dyn Visitor) -> Result<()> {
    let journal_dir = super::journal_dir(dir);
    let durable_seq = super::durable::read_in(storage, &journal_dir)?.map_or(0, |p| p.seq);
    let mut segments = recovery::list_segments(storage, &journal_dir)?;
    let first_listed = segments.first().map(|s| s.first_seq);
    let mut last_walked: Option<SegmentInfo> = None;
    let mut expected_seq: Option<u64> = None;
    let mut index = 0;
    while index < segments.len() {
        let info = segments[index].clone();
        let is_last = index + 1 == segments.len();
        index += 1;
        let read = if is_last {
            read_last_segment(storage, &journal_dir, &info, durable_seq)
        } else {
            storage
                .read_file(&info.path)
                .map(|bytes| (bytes, durable_seq))
        };
        let (bytes, tail_durable_seq) = match read {
            Ok(read) => read,
            Err(err)
                if err.kind() == std::io::ErrorKind::NotFound
                    && removed_by_compaction(storage, &journal_dir, &info) =>
            {
                // A concurrent compaction removed it after the listing (a snapshot holds its
                // events): not a problem. The listing is stale (the writer may have rotated
                // too): go on with what follows this segment now.
                tracing::debug!(segment = %info.path.display(), "removed by a compaction meanwhile");
                expected_seq = None;
                segments = recovery::list_segments(storage, &journal_dir)?;
                segments.retain(|s| s.first_seq > info.first_seq);
                index = 0;
                continue;
            }
            Err(err) => {
                visitor.problem(unreadable(&info, &err), &[]);
                expected_seq = None;
                last_walked = Some(info);
                continue;
            }
        };
        let tail = is_last.then_some(tail_durable_seq);
        expected_seq = walk_segment(&info, &bytes, tail, expected_seq, visitor);
        last_walked = Some(info);
    }
    let next_seq = expected_seq.or(first_listed).unwrap_or(1);
    check_durable_reached(
        storage,
        &journal_dir,
        last_walked.as_ref(),
        next_seq,
        durable_seq,
        visitor,
    );
    Ok(())
}

fn unreadable(info: &SegmentInfo, err: &std::io::Error) -> Problem {
    Problem {
        kind: ProblemKind::Unreadable,
        segment: info.path.clone(),
        offset: 0,
        seq: None,
        detail: format!("cannot read: {err}"),
        damaged_bytes: 0,
        affected_torrents: Vec::new(),
    }
}

/// Reports acknowledged events missing: the valid events end before the durable position.
fn check_durable_reached(
    storage: &dyn Storage,
    journal_dir: &Path,
    last_walked: Option<&SegmentInfo>,
    next_seq: u64,
    durable_seq: u64,
    visitor: &mut dyn Visitor,
) {
    if next_seq > durable_seq {
        return;
    }
    let (segment, offset) = match last_walked {
        Some(last) => (last.path.clone(), storage.file_len(&last.path).unwrap_or(0)),
        None => (journal_dir.to_path_buf(), 0),
    };
    let missing = durable_seq + 1 - next_seq;
    let detail = format!(
        "the journal's valid events end at seq {}, but journal/durable says seq \
         {durable_seq} was acknowledged: {missing} acknowledged events are missing or damaged",
        next_seq - 1
    );
    let problem = Problem {
        kind: ProblemKind::MissingDurableEvents,
        segment,
        offset,
        seq: Some(next_seq),
        detail,
        damaged_bytes: 0,
        affected_torrents: Vec::new(),
    };
    visitor.problem(problem, &[]);
}

/// Walks one segment; returns the seq expected next. `durable_tail` is `Some(durable seq)` for
/// the last segment: damage there with nothing valid after it is a torn tail only past it.
fn walk_segment(
    info: &SegmentInfo,
    bytes: &[u8],
    durable_tail: Option<u64>,
    expected_seq: Option<u64>,
    visitor: &mut dyn Visitor,
) -> Option<u64> {
    visitor.segment(info, bytes.len() as u64);
    let mut walk = SegmentWalk {
        info,
        bytes,
        durable_tail,
        visitor,
    };
    let header = walk.header(expected_seq)?;
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut next_seq = header.first_seq;
    loop {
        let mut scan = Scan::starting_at(bytes, pos, next_seq);
        for found in scan.by_ref() {
            walk.visitor.frame(info, found.offset, &found.frame);
        }
        next_seq = scan.expected_seq();
        let Some(Stop::Damaged { offset, damage }) = scan.stop().cloned() else {
            return Some(next_seq);
        };
        let Some(resume) = walk.damage(offset, &damage, next_seq, header.marks_batches()) else {
            return Some(next_seq);
        };
        (pos, next_seq) = resume;
    }
}

/// One segment being walked by [`walk_segment`], and where its problems go.
struct SegmentWalk<'a, 'v> {
    info: &'a SegmentInfo,
    bytes: &'a [u8],
    durable_tail: Option<u64>,
    visitor: &'v mut dyn Visitor,
}

impl SegmentWalk<'_, '_> {
    fn problem(
        &self,
        kind: ProblemKind,
        offset: usize,
        seq: Option<u64>,
        detail: String,
        damaged: &[u8],
    ) -> Problem {
        Problem {
            kind,
            segment: self.info.path.clone(),
            offset: offset as u64,
            seq,
            detail,
            damaged_bytes: damaged.len() as u64,
            // Which torrents the damaged bytes seem to hold is the typed visitors' to say.
            affected_torrents: Vec::new(),
        }
    }

    /// The segment's header, when it is valid and agrees with the file name (`None`: a
    /// problem, reported, and the segment is not walked). A first seq other than
    /// `expected_seq` is reported as a sequence break; the walk goes on.
    fn header(&mut self, expected_seq: Option<u64>) -> Option<SegmentHeader> {
        let header = match SegmentHeader::decode(self.bytes) {
            Ok(header) if header.first_seq == self.info.first_seq => header,
            Ok(header) => {
                let detail = format!(
                    "header says first seq {}, file name says {}",
                    header.first_seq, self.info.first_seq
                );
                let first_seq = Some(header.first_seq);
                let p = self.problem(ProblemKind::BadHeader, 12, first_seq, detail, &[]);
                self.visitor.problem(p, self.bytes);
                return None;
            }
            Err(err) => {
                let p = self.problem(ProblemKind::BadHeader, 0, None, err.to_string(), &[]);
                self.visitor.problem(p, self.bytes);
                return None;
            }
        };
        if let Some(expected) = expected_seq
            && expected != header.first_seq
        {
            let detail = format!(
                "expected seq {expected}, segment starts at {}",
                header.first_seq
            );
            let first_seq = Some(header.first_seq);
            let p = self.problem(ProblemKind::SequenceBreak, 12, first_seq, detail, &[]);
            self.visitor.problem(p, &[]);
        }
        Some(header)
    }

    /// Reports the damage at `offset` (the walk expected `next_seq` there) and says where the
    /// walk goes on — offset and the seq expected there — or `None` when the segment ends.
    fn damage(
        &mut self,
        offset: usize,
        damage: &Damage,
        next_seq: u64,
        marks_batches: bool,
    ) -> Option<(usize, u64)> {
        let bytes = self.bytes;
        let seq = frame::peek_seq(&bytes[offset..]);
        if let Damage::SeqBreak { found, .. } = *damage {
            // The frame itself is intact: report the break and continue from its seq.
            let p = self.problem(
                ProblemKind::SequenceBreak,
                offset,
                seq,
                damage.to_string(),
                &[],
            );
            self.visitor.problem(p, &[]);
            return Some((offset, found));
        }
        let after_seq = next_seq - 1;
        // Verify re-reads damage a live writer may explain on its own (see `walk`).
        let place = Place::of(self.durable_tail.is_some(), self.durable_tail, false);
        let verdict = judge::judge(bytes, offset, damage, after_seq, marks_batches, place);
        if verdict == Verdict::TornTail {
            // A torn final write: what follows (if anything) is of the same unacknowledged batch.
            let end = bytes
                .iter()
                .rposition(|&b| b != 0)
                .map_or(offset, |i| (i + 1).max(offset));
            let damaged = &bytes[offset..end];
            let p = self.problem(
                ProblemKind::TornTail,
                offset,
                seq,
                damage.to_string(),
                damaged,
            );
            self.visitor.problem(p, damaged);
            return None;
        }
        let resync = segment::find_valid_frame_after(bytes, offset + 1, after_seq);
        let damaged = &bytes[offset..resync.unwrap_or(bytes.len())];
        let p = self.problem(
            ProblemKind::DamagedFrame,
            offset,
            seq,
            damage.to_string(),
            damaged,
        );
        self.visitor.problem(p, damaged);
        // Continue from the next valid frame, expecting whatever seq it carries.
        let resync = resync?;
        Some((
            resync,
            frame::peek_seq(&bytes[resync..]).unwrap_or(next_seq),
        ))
    }
}

/// How often the last segment is read again while it shows damage past the durable position.
const LAST_SEGMENT_REREADS: u64 = 6;

/// Reads the last segment, and the durable position that judges its tail. Beside a live writer,
/// bytes past the durable position may be a write in progress (the writer overwrites
/// preallocated zeros in place, and a read racing that copy can see a later part of it before
/// an earlier one): while they show damage, the position and then the bytes are read again,
/// a little later each time (≈ 100 ms at most). A write in progress is complete by then; damage
/// that stays is reported. Bytes and position that did not change between two reads are
/// settled (no writer is writing there: a closed journal costs one re-read, not all of them).
fn read_last_segment(
    storage: &dyn Storage,
    journal_dir: &Path,
    info: &SegmentInfo,
    mut durable_seq: u64,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut bytes = storage.read_file(&info.path)?;
    for attempt in 1..=LAST_SEGMENT_REREADS {
        if !damaged_past(&bytes, info.first_seq, durable_seq) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(3 * attempt));
        let before = durable_seq;
        if let Ok(Some(position)) = super::durable::read_in(storage, journal_dir) {
            durable_seq = durable_seq.max(position.seq);
        }
        let again = storage.read_file(&info.path)?;
        let settled = again == bytes && durable_seq == before;
        bytes = again;
        if settled {
            break;
        }
    }
    Ok((bytes, durable_seq))
}

/// Whether the frames of a segment's `bytes` stop at damage past seq `durable_seq`.
fn damaged_past(bytes: &[u8], first_seq: u64, durable_seq: u64) -> bool {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return false;
    }
    let mut scan = Scan::starting_at(bytes, SEGMENT_HEADER_BYTES, first_seq);
    scan.by_ref().for_each(drop);
    matches!(scan.stop(), Some(Stop::Damaged { .. })) && scan.expected_seq() > durable_seq
}

/// Whether a segment that could not be found was removed by a compaction: it is gone and the
/// journal now starts after it.
fn removed_by_compaction(storage: &dyn Storage, journal_dir: &Path, info: &SegmentInfo) -> bool {
    !storage.exists(&info.path)
        && recovery::list_segments(storage, journal_dir)
            .ok()
            .and_then(|segments| segments.first().map(|s| s.first_seq))
            .is_some_and(|first| first > info.first_seq)
}
