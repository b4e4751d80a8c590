//! Snapshot verification: every snapshot reads back whole and agrees with the journal, and one
//! continues the retained journal — the snapshot half of the store's verification
//! (`crate::verify::check_snapshots`, `tj verify`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{SnapshotInfo, list_snapshots, read_snapshot, snapshots_dir};
use crate::error::{Error, Result};
use crate::journal::recovery::{self, SegmentInfo};
use crate::journal::segment::Scan;
use crate::journal::verify::{Problem, ProblemKind};
use crate::model::Timestamp;
use crate::storage::Storage;

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

/// What one pass over the snapshots found.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// The problems, in listing order.
    pub problems: Vec<Problem>,
    /// Every snapshot, oldest first.
    pub snapshots: Vec<SnapshotCheck>,
    /// False when a listed snapshot vanished meanwhile (a concurrent compaction moved the
    /// layout under the pass): check again from a fresh listing.
    pub settled: bool,
}

/// Checks every snapshot of store directory `dir` once against a journal whose last valid
/// event is `last_seq` (see `crate::verify::check_snapshots`).
pub(crate) fn check_once(
    storage: &dyn Storage,
    dir: &Path,
    last_seq: Option<u64>,
) -> Result<Findings> {
    let mut findings = Findings {
        settled: true,
        ..Findings::default()
    };
    let segments = recovery::list_segments(storage, &crate::journal::journal_dir(dir))?;
    let first = segments.first().map(|s| s.first_seq);
    for info in list_snapshots(storage, dir)? {
        let Some(found) = snapshot_problem(storage, &segments, &info, last_seq) else {
            // Removed by a concurrent compaction after the listing: not a problem.
            findings.settled = false;
            continue;
        };
        let usable = found.is_none();
        if let Some(problem) = found {
            findings.problems.push(problem);
        }
        findings.snapshots.push(SnapshotCheck {
            seq: info.seq,
            continues_journal: first.is_none_or(|f| info.seq.saturating_add(1) >= f),
            path: info.path,
            usable,
        });
    }
    if let Some(first) = first.filter(|&f| f > 1)
        && !findings
            .snapshots
            .iter()
            .any(|s| s.usable && s.continues_journal)
    {
        findings.problems.push(no_continuing_snapshot(dir, first));
    }
    Ok(findings)
}

/// What is wrong with the snapshot `info` (`Some(None)`: nothing), or `None` when a concurrent
/// compaction removed it after the listing. `last_seq` is the journal's last valid event.
fn snapshot_problem(
    storage: &dyn Storage,
    segments: &[SegmentInfo],
    info: &SnapshotInfo,
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
    let body = match read_snapshot(storage, &info.path) {
        Err(err) if super::history::compacted_meanwhile(&err) && !storage.exists(&info.path) => {
            return None;
        }
        Err(err) => {
            let offset = match &err {
                Error::CorruptSnapshot { offset, .. } => *offset,
                _ => 0,
            };
            return Some(Some(problem(err.to_string(), offset)));
        }
        Ok(body) => body,
    };
    // Beside a live writer the walk's last seq is already old: a compaction may since have
    // snapshotted events written after the walk passed. Only beyond the journal as it is now
    // is a snapshot wrong.
    if let Some(last) = last_seq.filter(|&last| body.seq() > last)
        && last_seq_now(storage, segments).is_none_or(|now| body.seq() > now)
    {
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
        segment: snapshots_dir(dir),
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

/// The journal's last intact seq as the segments read now (the last one listed may have grown
/// and a newer one may exist), or `None` when it cannot be read.
fn last_seq_now(storage: &dyn Storage, listed: &[SegmentInfo]) -> Option<u64> {
    let journal_dir = listed.first().and_then(|s| s.path.parent())?;
    let segments = recovery::list_segments(storage, journal_dir).ok()?;
    segments.iter().rev().find_map(|info| {
        let bytes = storage.read_file(&info.path).ok()?;
        Scan::new(&bytes, info.first_seq)
            .last()
            .map(|found| found.frame.seq)
    })
}

/// The commit time of the journal's event `seq`, if a segment still holds it intact.
fn own_event_at(storage: &dyn Storage, segments: &[SegmentInfo], seq: u64) -> Option<Timestamp> {
    let info = segments.iter().rev().find(|s| s.first_seq <= seq)?;
    let bytes = storage.read_file(&info.path).ok()?;
    Scan::new(&bytes, info.first_seq)
        .find(|found| found.frame.seq == seq)
        .map(|found| Timestamp::from_unix_nanos(found.frame.at_unix_nanos))
}
