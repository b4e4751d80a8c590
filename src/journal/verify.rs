//! Read-only verification: check every frame of every segment and report each problem found.
//!
//! Unlike recovery, verification never stops at the first problem and never repairs: after
//! damage it resynchronizes on the next valid frame and keeps going, so one report lists every
//! damaged region with its segment, byte offset and seq.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::frame;
use super::recovery::{self, SegmentInfo};
use super::segment::{self, Damage, SEGMENT_HEADER_BYTES, Scan, SegmentHeader, Stop};
use crate::error::Result;
use crate::event;
use crate::model::Timestamp;
use crate::storage::Storage;

/// What kind of problem verification found.
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
}

/// One problem, located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub segment: PathBuf,
    pub offset: u64,
    /// The seq stored at that offset, if a header was readable there.
    pub seq: Option<u64>,
    pub detail: String,
    /// Bytes skipped before the next valid frame (or to the end of the segment).
    pub damaged_bytes: u64,
}

/// The result of verifying a journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub segments: usize,
    pub bytes: u64,
    pub events: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_at: Option<Timestamp>,
    pub last_at: Option<Timestamp>,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the journal of store directory `dir`. `Err` only when the directory cannot be
/// listed; everything else is reported as a [`Problem`].
pub fn verify(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport> {
    let journal_dir = super::journal_dir(dir);
    let segments = recovery::list_segments(storage, &journal_dir)?;
    let mut report = VerifyReport {
        segments: segments.len(),
        ..VerifyReport::default()
    };
    let mut expected_seq: Option<u64> = None;
    for (index, info) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        expected_seq = verify_segment(storage, info, is_last, expected_seq, &mut report);
    }
    Ok(report)
}

/// Verifies one segment; returns the seq expected next.
fn verify_segment(
    storage: &dyn Storage,
    info: &SegmentInfo,
    is_last: bool,
    expected_seq: Option<u64>,
    report: &mut VerifyReport,
) -> Option<u64> {
    let problem = |kind, offset: usize, seq, detail: String, damaged_bytes: usize| Problem {
        kind,
        segment: info.path.clone(),
        offset: offset as u64,
        seq,
        detail,
        damaged_bytes: damaged_bytes as u64,
    };
    let bytes = match storage.read_file(&info.path) {
        Ok(bytes) => bytes,
        Err(err) => {
            let detail = format!("cannot read: {err}");
            report
                .problems
                .push(problem(ProblemKind::Unreadable, 0, None, detail, 0));
            return None;
        }
    };
    report.bytes += bytes.len() as u64;
    let header = match SegmentHeader::decode(&bytes) {
        Ok(header) if header.first_seq == info.first_seq => header,
        Ok(header) => {
            let detail = format!(
                "header says first seq {}, file name says {}",
                header.first_seq, info.first_seq
            );
            report.problems.push(problem(
                ProblemKind::BadHeader,
                12,
                Some(header.first_seq),
                detail,
                0,
            ));
            return None;
        }
        Err(err) => {
            let size = bytes.len();
            report.problems.push(problem(
                ProblemKind::BadHeader,
                0,
                None,
                err.to_string(),
                size,
            ));
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
        report.problems.push(problem(
            ProblemKind::SequenceBreak,
            12,
            Some(header.first_seq),
            detail,
            0,
        ));
    }
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut next_seq = header.first_seq;
    loop {
        let mut scan = Scan::starting_at(&bytes, pos, next_seq);
        for found in scan.by_ref() {
            count_frame(report, info, found.offset, &found.frame);
        }
        next_seq = scan.expected_seq();
        let Some(Stop::Damaged { offset, damage }) = scan.stop().cloned() else {
            return Some(next_seq);
        };
        let seq = frame::peek_seq(&bytes[offset..]);
        if let Damage::SeqBreak { found, .. } = damage {
            // The frame itself is intact: report the break and continue from its seq.
            let detail = damage.to_string();
            report
                .problems
                .push(problem(ProblemKind::SequenceBreak, offset, seq, detail, 0));
            (pos, next_seq) = (offset, found);
            continue;
        }
        let resync = segment::find_valid_frame_after(&bytes, offset + 1, next_seq - 1);
        let end = resync.unwrap_or(bytes.len());
        let kind = if resync.is_none() && is_last {
            ProblemKind::TornTail
        } else {
            ProblemKind::DamagedFrame
        };
        report
            .problems
            .push(problem(kind, offset, seq, damage.to_string(), end - offset));
        let Some(resync) = resync else {
            return Some(next_seq);
        };
        // Continue from the next valid frame, expecting whatever seq it carries.
        pos = resync;
        next_seq = frame::peek_seq(&bytes[resync..]).unwrap_or(next_seq);
    }
}

fn count_frame(
    report: &mut VerifyReport,
    info: &SegmentInfo,
    offset: usize,
    found: &frame::FrameRef<'_>,
) {
    let at = Timestamp::from_unix_nanos(found.at_unix_nanos);
    report.events += 1;
    report.first_seq.get_or_insert(found.seq);
    report.first_at.get_or_insert(at);
    report.last_seq = Some(found.seq);
    report.last_at = Some(at);
    if let Err(reason) = event::decode(found.payload) {
        report.problems.push(Problem {
            kind: ProblemKind::UndecodableEvent,
            segment: info.path.clone(),
            offset: offset as u64,
            seq: Some(found.seq),
            detail: reason,
            damaged_bytes: found.encoded_len() as u64,
        });
    }
}
