//! Salvage: copy every readable event of a damaged journal into a new one, quarantining the bad
//! bytes, and say exactly what could not be kept.
//!
//! The new journal holds the readable events in their original order with their original commit
//! times. Seqs must be gap-free, so when events are lost the ones after them are renumbered
//! (the report maps every renumbered range). Damaged bytes are copied to
//! `OUT/salvage/quarantine.bin`; `OUT/salvage/report.json` lists each region (source segment,
//! offset, length, position in the quarantine file, the seqs and torrents it seems to hold).
//! Snapshots are carried over (a compacted journal starts after seq 1 and cannot be opened
//! without the snapshot it continues): each one that reads back whole (checksums, decoding,
//! header agreement), whose seq is not beyond the new journal's last event, whose events the
//! renumbering left alone (no loss at or before its seq) and, when the new journal holds its
//! own event, whose commit time matches that event's. The others are listed in the report.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::warn;

use crate::error::{Error, IoContext, Result};
use crate::event;
use crate::journal::frame::{self, FrameRef};
use crate::journal::recovery::SegmentInfo;
use crate::journal::segment::{self, SegmentHeader};
use crate::journal::verify::{self, Problem, Visitor};
use crate::snapshot;
use crate::storage::{self, Storage};

/// Where the salvaged journal starts a new segment.
const SALVAGE_SEGMENT_BYTES: usize = 64 * 1024 * 1024;

/// One quarantined region.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedRegion {
    /// The problem that made it unreadable.
    pub problem: Problem,
    /// Where its bytes are in `quarantine.bin`.
    pub quarantine_offset: u64,
}

/// A run of kept events whose seqs changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Renumbered {
    /// The first seq of the run in the damaged journal.
    pub old_first: u64,
    /// Its first seq in the salvaged journal.
    pub new_first: u64,
    /// How many events the run has.
    pub count: u64,
}

/// What [`salvage`] kept and what it could not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SalvageReport {
    /// Events copied to the salvaged journal.
    pub events_kept: u64,
    /// Frames whose checksum was right but whose payload is not an event (quarantined).
    pub events_undecodable: u64,
    /// The damaged regions, each quarantined.
    pub regions: Vec<QuarantinedRegion>,
    /// Their total size.
    pub bytes_quarantined: u64,
    /// Runs of events renumbered to close gaps.
    pub renumbered: Vec<Renumbered>,
    /// Snapshots copied along.
    pub snapshots_copied: usize,
    /// `path: reason` of each snapshot not carried over.
    pub snapshots_not_copied: Vec<String>,
    /// The salvaged store directory.
    pub out: PathBuf,
}

impl SalvageReport {
    /// Whether anything was lost.
    pub fn lost_anything(&self) -> bool {
        !self.regions.is_empty() || self.events_undecodable > 0
    }
}

#[derive(Default)]
struct Collector {
    frames: Vec<(u64, i64, Vec<u8>)>,
    quarantine: Vec<u8>,
    report: SalvageReport,
}

impl Visitor for Collector {
    fn segment(&mut self, _info: &SegmentInfo, _bytes: u64) {}

    fn frame(&mut self, info: &SegmentInfo, offset: usize, found: &FrameRef<'_>) {
        let in_order = self
            .frames
            .last()
            .is_none_or(|(seq, _, _)| found.seq > *seq);
        if in_order && event::decode(found.payload).is_ok() {
            self.frames
                .push((found.seq, found.at_unix_nanos, found.payload.to_vec()));
            return;
        }
        self.report.events_undecodable += 1;
        let mut bytes = Vec::with_capacity(found.encoded_len());
        frame::encode(&mut bytes, found.seq, found.at_unix_nanos, found.payload);
        let problem = Problem {
            kind: verify::ProblemKind::UndecodableEvent,
            segment: info.path.clone(),
            offset: offset as u64,
            seq: Some(found.seq),
            detail: if in_order {
                "payload is not an event".into()
            } else {
                "seq out of order".into()
            },
            damaged_bytes: bytes.len() as u64,
            affected_torrents: Vec::new(),
        };
        self.problem(problem, &bytes);
    }

    fn problem(&mut self, mut problem: Problem, damaged: &[u8]) {
        crate::verify::fill_affected_torrents(&mut problem, damaged);
        self.report.regions.push(QuarantinedRegion {
            problem,
            quarantine_offset: self.quarantine.len() as u64,
        });
        self.quarantine.extend_from_slice(damaged);
        self.report.bytes_quarantined += damaged.len() as u64;
    }
}

/// Salvages store directory `dir` into `out` (which must not exist or be empty).
pub fn salvage(storage: &dyn Storage, dir: &Path, out: &Path) -> Result<SalvageReport> {
    if storage.exists(out) && !storage.list_dir(out).ctx("list", out)?.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{} exists and is not empty; salvage writes into a new directory",
            out.display()
        )));
    }
    let mut collector = Collector::default();
    verify::walk(storage, dir, &mut collector)?;
    let journal_dir = crate::journal::journal_dir(out);
    storage
        .create_dir_all(&journal_dir)
        .ctx("create directory", &journal_dir)?;
    storage.sync_dir(out).ctx("fsync dir", out)?;
    let first_seq = collector.frames.first().map_or(1, |f| f.0);
    collector.report.renumbered =
        write_segments(storage, &journal_dir, &collector.frames, first_seq)?;
    collector.report.events_kept = collector.frames.len() as u64;
    collector.report.snapshots_copied = copy_snapshots(
        storage,
        dir,
        out,
        &collector.frames,
        first_seq,
        &mut collector.report,
    )?;
    collector.report.out = out.to_path_buf();
    let salvage_dir = out.join("salvage");
    storage
        .create_dir_all(&salvage_dir)
        .ctx("create directory", &salvage_dir)?;
    let quarantine = salvage_dir.join("quarantine.bin");
    storage::write_atomic(storage, &quarantine, &collector.quarantine).ctx("write", &quarantine)?;
    let report =
        serde_json::to_vec_pretty(&collector.report).map_err(|e| Error::Encode(e.to_string()))?;
    let path = salvage_dir.join("report.json");
    storage::write_atomic(storage, &path, &report).ctx("write", &path)?;
    storage.sync_dir(out).ctx("fsync dir", out)?;
    Ok(collector.report)
}

/// Writes the kept frames as consecutive seqs from `first_seq`; returns the renumbered runs.
fn write_segments(
    storage: &dyn Storage,
    journal_dir: &Path,
    frames: &[(u64, i64, Vec<u8>)],
    first_seq: u64,
) -> Result<Vec<Renumbered>> {
    let mut renumbered: Vec<Renumbered> = Vec::new();
    let mut buf = Vec::new();
    let mut segment_first = first_seq;
    let mut created_at = frames.first().map_or(0, |f| f.1);
    for (new_seq, (old_seq, at, payload)) in (first_seq..).zip(frames) {
        if buf.len() >= SALVAGE_SEGMENT_BYTES {
            write_segment(storage, journal_dir, segment_first, created_at, &buf)?;
            (segment_first, created_at) = (new_seq, *at);
            buf.clear();
        }
        frame::encode(&mut buf, new_seq, *at, payload);
        if new_seq != *old_seq {
            match renumbered.last_mut() {
                Some(run)
                    if run.old_first + run.count == *old_seq
                        && run.new_first + run.count == new_seq =>
                {
                    run.count += 1;
                }
                _ => renumbered.push(Renumbered {
                    old_first: *old_seq,
                    new_first: new_seq,
                    count: 1,
                }),
            }
        }
    }
    write_segment(storage, journal_dir, segment_first, created_at, &buf)?;
    Ok(renumbered)
}

fn write_segment(
    storage: &dyn Storage,
    journal_dir: &Path,
    first_seq: u64,
    created_at: i64,
    frames: &[u8],
) -> Result<()> {
    let header = SegmentHeader {
        version: segment::FORMAT_VERSION,
        first_seq,
        created_unix_nanos: created_at,
    };
    let mut bytes = header.encode().to_vec();
    bytes.extend_from_slice(frames);
    let path = journal_dir.join(segment::file_name(first_seq));
    storage::write_atomic(storage, &path, &bytes).ctx("write", &path)
}

/// Carries over the snapshots that still hold for the new journal (see the module docs);
/// records the others in `report.snapshots_not_copied`.
fn copy_snapshots(
    storage: &dyn Storage,
    dir: &Path,
    out: &Path,
    frames: &[(u64, i64, Vec<u8>)],
    first_seq: u64,
    report: &mut SalvageReport,
) -> Result<usize> {
    let last_seq = first_seq + frames.len() as u64 - 1;
    // Seqs from here on may mean other events than in the source journal.
    let renumbered_from = report.renumbered.first().map(|r| r.new_first);
    let mut copied = 0;
    for info in snapshot::list_snapshots(storage, dir)? {
        let body = match snapshot::read_snapshot(storage, &info.path) {
            Ok(body) => body,
            Err(err) => {
                warn!(snapshot = %info.path.display(), error = %err, "not carrying over a damaged snapshot");
                report
                    .snapshots_not_copied
                    .push(format!("{}: {err}", info.path.display()));
                continue;
            }
        };
        let seq = body.seq();
        let own_event = seq
            .checked_sub(first_seq)
            .and_then(|index| frames.get(usize::try_from(index).ok()?));
        let refused = if frames.is_empty() || seq > last_seq {
            Some(format!(
                "its seq {seq} is beyond the salvaged journal's last event"
            ))
        } else if renumbered_from.is_some_and(|from| from <= seq) {
            Some(format!(
                "events at or before its seq {seq} were lost, so the salvaged journal renumbered \
                 the ones after them"
            ))
        } else if let Some((_, at, _)) = own_event
            && *at != body.at().as_unix_nanos()
        {
            Some(format!(
                "it disagrees with the journal's event at seq {seq} (another commit time)"
            ))
        } else {
            None
        };
        if let Some(reason) = refused {
            warn!(snapshot = %info.path.display(), reason, "not carrying over a snapshot");
            report
                .snapshots_not_copied
                .push(format!("{}: {reason}", info.path.display()));
            continue;
        }
        let bytes = storage.read_file(&info.path).ctx("read", &info.path)?;
        let target_dir = snapshot::snapshots_dir(out);
        if !storage.is_dir(&target_dir) {
            storage
                .create_dir_all(&target_dir)
                .ctx("create directory", &target_dir)?;
            storage.sync_dir(out).ctx("fsync dir", out)?;
        }
        let target = target_dir.join(snapshot::file_name(seq));
        storage::write_atomic(storage, &target, &bytes).ctx("write", &target)?;
        // What was written must read back whole, like the source.
        snapshot::read_snapshot(storage, &target)?;
        copied += 1;
    }
    Ok(copied)
}
