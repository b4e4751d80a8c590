//! Verifying a store: the journal's frames (the byte-level walk, `journal::verify::walk`), each
//! payload decoding as an event, and every snapshot agreeing with the journal — one
//! [`VerifyReport`], what `tj verify` prints.
//!
//! The journal knows bytes; this layer knows what they mean: it decodes each valid frame's
//! payload (a frame whose checksum is right but whose payload is not an event is an
//! `UndecodableEvent`), names the torrents damaged bytes seem to hold, and adds the snapshots'
//! checks (`snapshot::verify`, beside the snapshots they check; the journal knows no snapshot). It needs no lock; snapshots a concurrent compaction removes
//! during the check are skipped, not reported.

use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::event;
use crate::inspect::JournalExtent;
use crate::journal::frame::{self, FrameRef};
use crate::journal::recovery::SegmentInfo;
use crate::journal::verify::{Problem, ProblemKind, Visitor, walk};
use crate::model::{InfoHash, Timestamp};
use crate::snapshot;
pub use crate::snapshot::verify::SnapshotCheck;
use crate::storage::Storage;

/// The result of verifying a journal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Segments, bytes, valid events and their range.
    #[serde(flatten)]
    pub extent: JournalExtent,
    /// Every problem found, in file order.
    pub problems: Vec<Problem>,
    /// Every snapshot, oldest first (filled by [`check_snapshots`]).
    pub snapshots: Vec<SnapshotCheck>,
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
    let mut found = snapshot::verify::check_once(storage, dir, report.extent.last_seq)?;
    // A snapshot removed by a concurrent compaction during the check means the layout moved
    // under it (the journal's start too, perhaps past what the remaining ones continue): check
    // again from a fresh listing.
    for _ in 0..8 {
        if found.settled {
            break;
        }
        found = snapshot::verify::check_once(storage, dir, report.extent.last_seq)?;
    }
    report.problems.extend(found.problems);
    report.snapshots.extend(found.snapshots);
    Ok(())
}

impl Visitor for VerifyReport {
    fn segment(&mut self, _info: &SegmentInfo, bytes: u64) {
        self.extent.count_segment(bytes);
    }

    fn frame(&mut self, info: &SegmentInfo, offset: usize, found: &FrameRef<'_>) {
        let at = Timestamp::from_unix_nanos(found.at_unix_nanos);
        self.extent.count_event(found.seq, at);
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
    if matches!(
        problem.kind,
        ProblemKind::DamagedFrame | ProblemKind::TornTail
    ) {
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
