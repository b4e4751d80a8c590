//! Verifying a store: the journal's frames (the byte-level walk, `journal::verify::walk`), each
//! payload decoding as an event, and every snapshot agreeing with the journal — one
//! [`VerifyReport`], what `tj verify` prints.
//!
//! The journal knows bytes; this layer knows what they mean: it decodes each valid frame's
//! payload (a frame whose checksum is right but whose payload is not an event is an
//! `UndecodableEvent`), names the torrents damaged bytes seem to hold, and checks the snapshots
//! (which the journal does not know). It needs no lock; snapshots a concurrent compaction removes
//! during the check are skipped, not reported.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::event;
use crate::journal::frame::{self, FrameRef};
use crate::journal::recovery::{self, SegmentInfo};
use crate::journal::segment::Scan;
use crate::journal::verify::{Problem, ProblemKind, Visitor, walk};
use crate::model::{InfoHash, Timestamp};
use crate::storage::Storage;

/// The result of verifying a journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Number of segment files.
    pub segments: usize,
    /// Their total size.
    pub bytes: u64,
    /// Number of events read.
    pub events: u64,
    /// The first seq, if any event.
    pub first_seq: Option<u64>,
    /// The last seq, if any event.
    pub last_seq: Option<u64>,
    /// The first event's commit time.
    pub first_at: Option<Timestamp>,
    /// The last event's commit time.
    pub last_at: Option<Timestamp>,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    /// Every snapshot, oldest first (filled by [`check_snapshots`]).
    pub snapshots: Vec<SnapshotCheck>,
}

/// One snapshot as verification found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotCheck {
    /// The sequence number.
    pub seq: u64,
    /// The file or directory concerned.
    pub path: PathBuf,
    /// It reads back whole and agrees with the journal.
    pub usable: bool,
    /// The retained journal continues it (its seq ≥ the journal's first seq − 1), so it can
    /// restore every point from its seq to the head; an older one restores its own seq only.
    pub continues_journal: bool,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// True when a problem is damage: anything but a torn tail, which lies past the durable
    /// position (an unacknowledged write a crash cut; the next open truncates it).
    pub fn has_damage(&self) -> bool {
        self.problems
            .iter()
            .any(|p| p.kind != ProblemKind::TornTail)
    }
}

/// Verifies the journal and the snapshots of store directory `dir`. `Err` only when the
/// directory cannot be listed; everything else is reported as a [`Problem`].
pub fn verify(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    walk(storage, dir, &mut report)?;
    check_snapshots(storage, dir, &mut report)?;
    Ok(report)
}

/// Checks every snapshot of store directory `dir` against the journal [`walk`] already
/// reported on (`report`): each must read back whole (header checksum, body length, body
/// checksum, decodable body agreeing with its header), its seq must not be beyond the journal's
/// last event, and where the journal still holds its own event, that event's commit time must
/// be the snapshot's. When the journal starts after seq 1, at least one usable snapshot must
/// continue it. Problems are added to `report.problems`; `Err` only when a directory cannot be
/// listed.
pub fn check_snapshots(storage: &dyn Storage, dir: &Path, report: &mut VerifyReport) -> Result<()> {
    // A snapshot removed by a concurrent compaction during the check means the layout moved
    // under it (the journal's start too, perhaps past what the remaining ones continue): check
    // again from a fresh listing.
    for _ in 0..8 {
        let mut attempt = report.clone();
        if check_snapshots_once(storage, dir, &mut attempt)? {
            *report = attempt;
            return Ok(());
        }
    }
    check_snapshots_once(storage, dir, report).map(drop)
}

/// [`check_snapshots`] once; `Ok(false)` when a listed snapshot vanished meanwhile.
fn check_snapshots_once(
    storage: &dyn Storage,
    dir: &Path,
    report: &mut VerifyReport,
) -> Result<bool> {
    let mut settled = true;
    let segments = recovery::list_segments(storage, &crate::journal::journal_dir(dir))?;
    let first = segments.first().map(|s| s.first_seq);
    for info in crate::snapshot::list_snapshots(storage, dir)? {
        let Some(found) = snapshot_problem(storage, &segments, &info, report.last_seq) else {
            // Removed by a concurrent compaction after the listing: not a problem.
            settled = false;
            continue;
        };
        let usable = found.is_none();
        if let Some(problem) = found {
            report.problems.push(problem);
        }
        report.snapshots.push(SnapshotCheck {
            seq: info.seq,
            continues_journal: first.is_none_or(|f| info.seq.saturating_add(1) >= f),
            path: info.path,
            usable,
        });
    }
    if let Some(first) = first.filter(|&f| f > 1)
        && !report
            .snapshots
            .iter()
            .any(|s| s.usable && s.continues_journal)
    {
        report.problems.push(no_continuing_snapshot(dir, first));
    }
    Ok(settled)
}

/// What is wrong with the snapshot `info` (`Some(None)`: nothing), or `None` when a concurrent
/// compaction removed it after the listing. `last_seq` is the journal's last valid event.
fn snapshot_problem(
    storage: &dyn Storage,
    segments: &[SegmentInfo],
    info: &crate::snapshot::SnapshotInfo,
    last_seq: Option<u64>,
) -> Option<Option<Problem>> {
    let problem = |detail: String, offset: u64| Problem {
        kind: ProblemKind::DamagedSnapshot,
        segment: info.path.clone(),
        offset,
        seq: Some(info.seq),
        detail,
        damaged_bytes: storage.file_len(&info.path).unwrap_or(0),
        affected_torrents: Vec::new(),
    };
    let body = match crate::snapshot::read_snapshot(storage, &info.path) {
        Err(err) if crate::history::compacted_meanwhile(&err) && !storage.exists(&info.path) => {
            return None;
        }
        Err(err) => {
            let offset = match &err {
                crate::Error::CorruptSnapshot { offset, .. } => *offset,
                _ => 0,
            };
            return Some(Some(problem(err.to_string(), offset)));
        }
        Ok(body) => body,
    };
    if let Some(last) = last_seq.filter(|&last| body.seq() > last) {
        let detail = format!(
            "the snapshot is at seq {}, beyond the journal's last event (seq {last})",
            body.seq()
        );
        return Some(Some(problem(detail, 12)));
    }
    let disagrees = own_event_at(storage, segments, body.seq()).filter(|at| *at != body.at());
    Some(disagrees.map(|at| {
        problem(
            format!(
                "the snapshot is at seq {} committed {}, but the journal's event \
                 there was committed {at}",
                body.seq(),
                body.at()
            ),
            20,
        )
    }))
}

/// The journal starts at `first` (> 1) and no usable snapshot continues it.
fn no_continuing_snapshot(dir: &Path, first: u64) -> Problem {
    Problem {
        kind: ProblemKind::NoContinuingSnapshot,
        segment: crate::snapshot::snapshots_dir(dir),
        offset: 0,
        seq: Some(first - 1),
        detail: format!(
            "the journal starts at seq {first} and no usable snapshot is at seq {} or \
             later: the events before seq {first} are lost and the store cannot reach its \
             head",
            first - 1
        ),
        damaged_bytes: 0,
        affected_torrents: Vec::new(),
    }
}

/// The commit time of the journal's event `seq`, if a segment still holds it intact.
fn own_event_at(storage: &dyn Storage, segments: &[SegmentInfo], seq: u64) -> Option<Timestamp> {
    let info = segments.iter().rev().find(|s| s.first_seq <= seq)?;
    let bytes = storage.read_file(&info.path).ok()?;
    Scan::new(&bytes, info.first_seq)
        .find(|found| found.frame.seq == seq)
        .map(|found| Timestamp::from_unix_nanos(found.frame.at_unix_nanos))
}

impl Visitor for VerifyReport {
    fn segment(&mut self, _info: &SegmentInfo, bytes: u64) {
        self.segments += 1;
        self.bytes += bytes;
    }

    fn frame(&mut self, info: &SegmentInfo, offset: usize, found: &FrameRef<'_>) {
        let at = Timestamp::from_unix_nanos(found.at_unix_nanos);
        self.events += 1;
        self.first_seq.get_or_insert(found.seq);
        self.first_at.get_or_insert(at);
        self.last_seq = Some(found.seq);
        self.last_at = Some(at);
        if let Err(reason) = event::decode(found.payload) {
            self.problems.push(Problem {
                kind: ProblemKind::UndecodableEvent,
                segment: info.path.clone(),
                offset: offset as u64,
                seq: Some(found.seq),
                detail: reason,
                damaged_bytes: found.encoded_len() as u64,
                affected_torrents: Vec::new(),
            });
        }
    }

    fn problem(&mut self, mut problem: Problem, damaged: &[u8]) {
        fill_affected_torrents(&mut problem, damaged);
        self.problems.push(problem);
    }
}

/// Names, in a damaged frame's or torn tail's problem, the torrents its `damaged` bytes seem
/// to hold (other kinds cover no frame bytes to read).
pub(crate) fn fill_affected_torrents(problem: &mut Problem, damaged: &[u8]) {
    if matches!(problem.kind, ProblemKind::DamagedFrame | ProblemKind::TornTail) {
        problem.affected_torrents = affected_torrents(damaged);
    }
}

/// Best effort: the torrents named by the events in damaged bytes, read by trusting each
/// frame's length field and decoding its payload despite the failed checksum. What decodes
/// may itself be damaged, so this names torrents to check, not facts.
fn affected_torrents(damaged: &[u8]) -> Vec<InfoHash> {
    let mut torrents = Vec::new();
    let mut pos = 0;
    while pos + frame::FRAME_HEADER_BYTES < damaged.len() {
        let len = frame::peek_len(&damaged[pos..]).unwrap_or(0);
        let end = pos + frame::FRAME_HEADER_BYTES + len;
        if len == 0 || end > damaged.len() {
            break;
        }
        if let Ok(event) = event::decode(&damaged[pos + frame::FRAME_HEADER_BYTES..end]) {
            for hash in event.info_hashes() {
                if !torrents.contains(&hash) {
                    torrents.push(hash);
                }
            }
        }
        pos = end;
    }
    torrents
}
