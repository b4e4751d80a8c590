//! Owns compaction: write a snapshot at the retention boundary, then remove (or archive) the
//! sealed segments it covers — crash-safely, without the writer's lock — plus the automatic
//! [`CompactionPolicy`] and the tombstones kept for removed torrents.
//!
//! # Steps and why each is safe
//!
//! 1. Take `DIR/COMPACT.lock` (never the writer's `LOCK`), so two compactions never overlap.
//! 2. List the segments **once**. All but the last are sealed: the writer never touches them
//!    again, so removing them cannot race it. The last (the writer's active segment, or one it
//!    will continue) is never touched, whatever happens later — nor the one before it when the
//!    last has a torn header (recovery would remove that one and continue the previous).
//! 3. Find the head (last event) and the boundary the retention asks for; materialize the state
//!    at the boundary (newest snapshot at or before it + the journal), noting removals for
//!    tombstones. If the boundary's events may still be unsynced in the active segment (a
//!    writer with a relaxed durability policy), `fdatasync` that segment first: a snapshot must
//!    never claim events a power cut could take back.
//!    If the writer's active segment holds events at or before the boundary and no writer holds
//!    the journal (its `LOCK` is free), seal it ([`journal::seal_active_segment`]: a new empty
//!    segment at the next seq, created crash-safely) so it becomes removable. If no sealed
//!    segment then lies wholly at or before the boundary, stop: a snapshot would only add bytes
//!    (a rerun with nothing to remove writes nothing).
//! 4. Write the snapshot durably (tmp → write → `fdatasync` → rename → directory fsync), then
//!    read it back whole (checksums, decoding, header agreement).
//! 5. Only then remove the sealed segments whose events all lie at or before the **previous
//!    generation** — the verified snapshot this run materialized from (or, on a rerun at the
//!    same boundary, the newest older snapshot that reads back whole and that the journal
//!    continues; seq 0, the empty state, while the journal starts at seq 1) — in seq order,
//!    fsyncing the journal directory after each removal, so a crash leaves a contiguous suffix
//!    of segments (never a gap). The segments between the previous generation and the new
//!    snapshot stay: if the new snapshot is damaged later, the previous one plus the journal
//!    still reach the head, and the state the removed segments built lives in two snapshots.
//!    No previous generation (the first compaction of a journal that starts at seq 1 removes
//!    nothing; the next one removes what the first snapshot covers). With an archive directory,
//!    each segment is first copied there durably (the archive directory is created first if
//!    missing, and the parent of each directory created is fsynced).
//! 6. Remove snapshots older than the boundary beyond the newest `keep_snapshots − 1`, never
//!    the previous generation.
//!
//! Why two generations rather than writing each snapshot twice: the retained journal is
//! independent evidence (frames checksummed one by one, written long before, by other code),
//! whereas two copies of one snapshot share the encoder, the moment and the write path — a bug
//! or a bad write hits both. It is what etcd and LevelDB do, it costs one compaction interval of
//! journal instead of a second copy of the whole state, and it keeps point-in-time reads over
//! that interval.
//!
//! A crash anywhere leaves either the old layout (plus perhaps a stray `*.tmp`, ignored and
//! cleaned by the next compaction) or the new snapshot with a suffix of the segments; both
//! materialize the same state, and rerunning compaction finishes the job.
//!
//! # Tombstones
//!
//! A snapshot carries a tombstone for every torrent removed (`torrent-removed` hook or
//! `TorrentDeleted`) at or before its seq and within `tombstone_window` of its commit time:
//! the previous snapshot's tombstones plus the removals replayed since, minus torrents live
//! again, minus those removed more than the window before the snapshot's time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, info_span, warn};

use crate::error::{Error, IoContext, Result};
use crate::event::Envelope;
use crate::history::{self, BaseOrder, Catalog, Materialized, Sources, Target};
use crate::journal::segment::SEGMENT_HEADER_BYTES;
use crate::journal::{self, recovery};
use crate::model::{InfoHash, Timestamp};
use crate::snapshot::{self, SnapshotBody, Tombstone};
use crate::state::State;
use crate::storage::{self, LockGuard, Storage};

/// Name of the compaction lock file inside a store directory.
pub const COMPACT_LOCK_FILE_NAME: &str = "COMPACT.lock";
/// How long a removed torrent stays restorable by default: 7 days.
pub const DEFAULT_TOMBSTONE_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Snapshots kept by default: the new one and one older.
pub const DEFAULT_KEEP_SNAPSHOTS: usize = 2;

/// How much history compaction keeps in the journal. Times are measured against the head's
/// commit time, not the wall clock, so an idle journal keeps its recent history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// No history beyond the snapshot: snapshot at the head, remove every sealed segment whose
    /// events are all at or before it.
    #[default]
    None,
    /// Keep events committed at or after `head's commit time − duration`: the snapshot is at
    /// the last event committed before that, and sealed segments ending at or before it go.
    Duration(Duration),
    /// Keep the last `n` events: the snapshot is at `head − n`.
    Events(u64),
}

/// What [`compact`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactOptions {
    /// Where the retention boundary lies.
    pub retain: Retention,
    /// Move removed segments here (durably) instead of deleting them.
    pub archive: Option<PathBuf>,
    /// Removed torrents stay in snapshots' tombstones this long after their removal.
    pub tombstone_window: Duration,
    /// Snapshots kept: the boundary's plus up to `keep_snapshots − 1` older ones (at least 1).
    pub keep_snapshots: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            retain: Retention::None,
            archive: None,
            tombstone_window: DEFAULT_TOMBSTONE_WINDOW,
            keep_snapshots: DEFAULT_KEEP_SNAPSHOTS,
        }
    }
}

/// What [`compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The snapshot at the retention boundary (`None`: nothing to compact).
    pub snapshot_seq: Option<u64>,
    /// The snapshot written at the boundary, if one was.
    pub snapshot_path: Option<PathBuf>,
    /// Whether this run wrote it (`false`: it existed already).
    pub snapshot_written: bool,
    /// Tombstones the snapshot carries.
    pub tombstones: usize,
    /// The previous generation: the verified snapshot (or 0, the empty state) that removal
    /// stopped at, kept with the journal after it. `None`: there was none, nothing was removed.
    pub previous_snapshot_seq: Option<u64>,
    /// Segments removed from the journal directory (archived or deleted), in seq order.
    pub segments_removed: Vec<PathBuf>,
    /// Where archived segments went.
    pub segments_archived: Vec<PathBuf>,
    /// Older snapshots removed.
    pub snapshots_removed: Vec<PathBuf>,
    /// Bytes of segments and snapshots in the store before and after.
    pub bytes_before: u64,
    /// Bytes of segments left after compaction.
    pub bytes_after: u64,
}

/// Automatic compaction: the store calls [`compact`] when [`CompactionPolicy::due`] says so.
/// Off by default (no trigger set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompactionPolicy {
    /// Compact after this many events since the last compaction.
    pub every_events: Option<u64>,
    /// Compact after this many journal bytes since the last compaction.
    pub every_bytes: Option<u64>,
    /// The retention to compact with.
    pub retain: Retention,
}

impl CompactionPolicy {
    /// Whether any trigger is set.
    pub fn is_enabled(&self) -> bool {
        self.every_events.is_some() || self.every_bytes.is_some()
    }

    /// Whether a compaction is due after `events_since` events and `bytes_since` bytes
    /// appended since the last one. A trigger of 0 counts as 1 (due after any append).
    pub fn due(&self, events_since: u64, bytes_since: u64) -> bool {
        let hit = |limit: Option<u64>, since: u64| limit.is_some_and(|l| since >= l.max(1));
        hit(self.every_events, events_since) || hit(self.every_bytes, bytes_since)
    }

    /// The options to call [`compact`] with.
    pub fn options(&self) -> CompactOptions {
        CompactOptions {
            retain: self.retain,
            ..CompactOptions::default()
        }
    }
}

/// Compacts store directory `dir`; see the [module docs](self). Works on a closed journal and
/// on one a live writer (in this or another process) holds open: it never takes the writer's
/// lock. Refuses to run while another compaction of `dir` runs.
pub fn compact(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
    options: &CompactOptions,
) -> Result<CompactReport> {
    let dir = dir.as_ref();
    let span = info_span!("compact", dir = %dir.display());
    let _entered = span.enter();
    let journal_dir = check_request(&*storage, dir, options)?;
    let _lock = take_lock(&*storage, dir)?;
    remove_leftover_tmp_files(&*storage, &snapshot::snapshots_dir(dir))?;
    if let Some(archive) = &options.archive {
        create_dir_durably(&*storage, archive)?;
        remove_leftover_tmp_files(&*storage, archive)?;
    }
    let mut segments = Segments::list(&*storage, &journal_dir)?;
    let bytes_before = stored_bytes(&*storage, dir)?;
    let mut report = CompactReport {
        bytes_before,
        bytes_after: bytes_before,
        ..CompactReport::default()
    };
    let sources = Sources::open(Arc::clone(&storage), dir, None)?;
    let Some(target) = retention_target(&*storage, dir, &sources, options.retain)? else {
        return Ok(report);
    };
    let (built, removals) = materialize_with_removals(&sources, target)?;
    let boundary = built.state.last_seq;
    if boundary == 0 {
        info!(%target, "nothing to compact: no event before the retention boundary");
        return Ok(report);
    }
    segments.seal_active_if_covered(&*storage, dir, &journal_dir, boundary)?;
    let reuses_snapshot = built.base.as_ref().is_some_and(|base| base.seq == boundary);
    if segments.covered_by(boundary) == 0 && !reuses_snapshot {
        // A snapshot would only add bytes: no segment lies wholly at or before the boundary.
        info!(
            boundary,
            "nothing to compact: no sealed segment lies wholly before the boundary"
        );
        return Ok(report);
    }
    let previous = previous_of(&*storage, dir, &built, boundary, sources.first_seq())?;
    let written = BoundarySnapshot {
        built,
        removals,
        tombstone_window: options.tombstone_window,
    };
    written.write(&*storage, dir, &segments.sealed, &mut report)?;
    report.snapshot_seq = Some(boundary);
    report.previous_snapshot_seq = previous;
    segments.remove_covered(&*storage, &journal_dir, previous, options, &mut report)?;
    remove_old_snapshots(&*storage, dir, boundary, previous, options, &mut report)?;
    report.bytes_after = stored_bytes(&*storage, dir)?;
    info!(
        snapshot_seq = boundary,
        written = report.snapshot_written,
        segments_removed = report.segments_removed.len(),
        archived = options.archive.is_some(),
        snapshots_removed = report.snapshots_removed.len(),
        tombstones = report.tombstones,
        bytes_before = report.bytes_before,
        bytes_after = report.bytes_after,
        "compacted"
    );
    Ok(report)
}

/// Checks the options and that `dir` holds a journal; returns the journal directory.
fn check_request(storage: &dyn Storage, dir: &Path, options: &CompactOptions) -> Result<PathBuf> {
    if options.keep_snapshots == 0 {
        return Err(Error::InvalidArgument(
            "keep_snapshots must be at least 1".into(),
        ));
    }
    let journal_dir = journal::journal_dir(dir);
    if !storage.is_dir(&journal_dir) {
        return Err(Error::InvalidArgument(format!(
            "no journal in {} (expected a directory {})",
            dir.display(),
            journal_dir.display()
        )));
    }
    if let Some(archive) = &options.archive
        && archive.components().eq(journal_dir.components())
    {
        return Err(Error::InvalidArgument(format!(
            "the archive directory {} is the journal directory itself",
            archive.display()
        )));
    }
    Ok(journal_dir)
}

/// Where the new snapshot goes: the retention's target, or `None` (nothing to compact) when the
/// journal is empty or the retention keeps more history than is left.
fn retention_target(
    storage: &dyn Storage,
    dir: &Path,
    sources: &Sources,
    retain: Retention,
) -> Result<Option<Target>> {
    let Some((head_seq, head_at)) = sources.head()? else {
        info!("nothing to compact: the journal holds no event");
        return Ok(None);
    };
    let target = boundary_target(retain, head_seq, head_at);
    let earliest = Catalog::load(storage, dir)?.earliest(sources.first_seq());
    let before_earliest = match (target, earliest) {
        (Target::Seq(seq), Some(e)) => seq < e.seq,
        (Target::Time(at), Some(e)) => e.at.is_some_and(|earliest_at| at < earliest_at),
        _ => false,
    };
    if before_earliest {
        info!(%target, "nothing to compact: the retention keeps more history than is left");
        return Ok(None);
    }
    Ok(Some(target))
}

/// The state at `target` (from the newest usable snapshot), and a tombstone for every torrent
/// removed in the events replayed to build it.
fn materialize_with_removals(
    sources: &Sources,
    target: Target,
) -> Result<(Materialized, BTreeMap<InfoHash, Tombstone>)> {
    let mut removals: BTreeMap<InfoHash, Tombstone> = BTreeMap::new();
    let mut observe = |state: &State, envelope: &Envelope| {
        if let Some(info_hash) = history::removed_torrent(&envelope.event)
            && let Some(last) = state.torrents.get(&info_hash)
        {
            removals.insert(
                info_hash,
                Tombstone {
                    info_hash,
                    removed_at: envelope.at,
                    removed_seq: envelope.seq,
                    last: (**last).clone(),
                },
            );
        }
    };
    let built = history::materialize(sources, target, BaseOrder::Newest, Some(&mut observe))?;
    Ok((built, removals))
}

/// The journal's segments, listed once: everything but the last is sealed and immutable from
/// here on. A last segment with a torn header (a crash while it was created) will be removed
/// by the writer's recovery, which then continues the one before: that one is protected too.
struct Segments {
    live: Vec<recovery::SegmentInfo>,
    sealed: Vec<recovery::SegmentInfo>,
}

impl Segments {
    fn list(storage: &dyn Storage, journal_dir: &Path) -> Result<Self> {
        let live = recovery::list_segments(storage, journal_dir)?;
        let sealed = sealed_segments(storage, &live);
        Ok(Self { live, sealed })
    }

    /// How many sealed segments (oldest first) hold only events at or before `seq`.
    fn covered_by(&self, seq: u64) -> usize {
        self.sealed
            .iter()
            .zip(self.live.iter().skip(1))
            .take_while(|(_, next)| next.first_seq.saturating_sub(1) <= seq)
            .count()
    }

    /// The active segment holds events the boundary covers: on a closed journal, seal it so
    /// this run (or a later one, once the boundary passes its end) can remove it. A live writer
    /// keeps its segment: compaction never takes its lock for long, nor touches what it writes.
    fn seal_active_if_covered(
        &mut self,
        storage: &dyn Storage,
        dir: &Path,
        journal_dir: &Path,
        boundary: u64,
    ) -> Result<()> {
        let covered = self
            .live
            .last()
            .is_some_and(|active| active.first_seq <= boundary);
        if !covered || self.sealed.len() + 1 != self.live.len() {
            return Ok(());
        }
        match journal::seal_active_segment(storage, dir) {
            Ok(Some(_)) => *self = Self::list(storage, journal_dir)?,
            Ok(None) => {}
            Err(Error::Locked { .. }) => {
                info!("a writer holds the journal: its active segment stays")
            }
            Err(err) => return Err(err),
        }
        Ok(())
    }

    /// Both generations are durable: the segments the previous one covers may go, oldest
    /// first (archived first when asked). Without a previous generation (no usable older
    /// snapshot continues the journal), nothing goes: the new snapshot would be the only copy
    /// of what they hold.
    fn remove_covered(
        &self,
        storage: &dyn Storage,
        journal_dir: &Path,
        previous: Option<u64>,
        options: &CompactOptions,
        report: &mut CompactReport,
    ) -> Result<()> {
        let removable = previous.map_or(0, |seq| self.covered_by(seq));
        for segment in &self.sealed[..removable] {
            if let Some(archive) = &options.archive {
                let copy = archive_segment(storage, archive, segment)?;
                report.segments_archived.push(copy);
            }
            storage
                .remove_file(&segment.path)
                .ctx("remove", &segment.path)?;
            storage
                .sync_dir(journal_dir)
                .ctx("fsync dir", journal_dir)?;
            report.segments_removed.push(segment.path.clone());
        }
        Ok(())
    }
}

/// The previous generation: the verified base this run materialized from (or, when it reuses
/// a snapshot at the boundary, the newest verified one before it). Segments are removed only
/// up to it, so the journal still continues it to the head and the state up to it lives in two
/// snapshots.
fn previous_of(
    storage: &dyn Storage,
    dir: &Path,
    built: &Materialized,
    boundary: u64,
    first: Option<u64>,
) -> Result<Option<u64>> {
    Ok(match &built.base {
        Some(base) if base.seq == boundary => previous_generation(storage, dir, boundary, first)?,
        Some(base) => Some(base.seq),
        None => (first == Some(1)).then_some(0),
    })
}

/// The snapshot at the boundary: reused when one is there already, written otherwise.
struct BoundarySnapshot {
    built: Materialized,
    removals: BTreeMap<InfoHash, Tombstone>,
    tombstone_window: Duration,
}

impl BoundarySnapshot {
    fn write(
        self,
        storage: &dyn Storage,
        dir: &Path,
        sealed: &[recovery::SegmentInfo],
        report: &mut CompactReport,
    ) -> Result<()> {
        let built = self.built;
        if let Some(base) = built
            .base
            .as_ref()
            .filter(|b| b.seq == built.state.last_seq)
        {
            report.snapshot_path = Some(base.path.clone());
            report.tombstones = built.base_tombstones.len();
            return Ok(());
        }
        if let Some(segment) = &built.last_segment
            && !sealed.iter().any(|s| s.path == **segment)
        {
            // The boundary lies in the writer's active segment: make it durable first.
            let mut file = storage.open_append(segment).ctx("open", &**segment)?;
            file.sync_data().ctx("fdatasync", &**segment)?;
        }
        let tombstones = merge_tombstones(
            built.base_tombstones,
            self.removals,
            &built.state,
            self.tombstone_window,
        );
        let body = SnapshotBody {
            state: built.state,
            tombstones,
        };
        report.tombstones = body.tombstones.len();
        let path = snapshot::write_snapshot(storage, dir, &body)?;
        // It must read back whole before anything relies on it.
        snapshot::read_snapshot(storage, &path)?;
        report.snapshot_path = Some(path);
        report.snapshot_written = true;
        Ok(())
    }
}

/// Older snapshots beyond the newest `keep_snapshots − 1` go, but never the previous
/// generation: the retained journal starts right after it.
fn remove_old_snapshots(
    storage: &dyn Storage,
    dir: &Path,
    boundary: u64,
    previous: Option<u64>,
    options: &CompactOptions,
    report: &mut CompactReport,
) -> Result<()> {
    let snapshots = snapshot::list_snapshots(storage, dir)?;
    let older: Vec<_> = snapshots.iter().filter(|s| s.seq < boundary).collect();
    let excess = older.len().saturating_sub(options.keep_snapshots - 1);
    for old in older[..excess]
        .iter()
        .filter(|s| previous.is_none_or(|p| s.seq != p))
    {
        storage.remove_file(&old.path).ctx("remove", &old.path)?;
        report.snapshots_removed.push(old.path.clone());
    }
    if !report.snapshots_removed.is_empty() {
        let snapshots_dir = snapshot::snapshots_dir(dir);
        storage
            .sync_dir(&snapshots_dir)
            .ctx("fsync dir", &snapshots_dir)?;
    }
    Ok(())
}

/// The newest snapshot before `boundary` that reads back whole and that the journal (starting
/// at `first`) continues; else seq 0 when the journal starts at seq 1.
fn previous_generation(
    storage: &dyn Storage,
    dir: &Path,
    boundary: u64,
    first: Option<u64>,
) -> Result<Option<u64>> {
    let snapshots = snapshot::list_snapshots(storage, dir)?;
    for info in snapshots.iter().rev().filter(|s| s.seq < boundary) {
        if first.is_some_and(|f| info.seq.saturating_add(1) < f) {
            break;
        }
        match snapshot::read_snapshot(storage, &info.path) {
            Ok(_) => return Ok(Some(info.seq)),
            Err(err) => warn!(
                snapshot = %info.path.display(),
                error = %err,
                "skipping a damaged snapshot as the previous generation"
            ),
        }
    }
    Ok((first == Some(1)).then_some(0))
}

/// Where the snapshot goes for a retention, given the head.
fn boundary_target(retain: Retention, head_seq: u64, head_at: Timestamp) -> Target {
    match retain {
        Retention::None => Target::Seq(head_seq),
        Retention::Events(n) => Target::Seq(head_seq.saturating_sub(n)),
        Retention::Duration(d) => {
            let d = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            // The last event committed strictly before `head_at − d`.
            let cutoff = head_at.as_unix_nanos().saturating_sub(d).saturating_sub(1);
            Target::Time(Timestamp::from_unix_nanos(cutoff))
        }
    }
}

/// The previous snapshot's tombstones plus the removals since, minus torrents live at the
/// snapshot, minus those removed more than `window` before it; in info-hash order.
fn merge_tombstones(
    base: Vec<Tombstone>,
    removals: BTreeMap<InfoHash, Tombstone>,
    state: &State,
    window: Duration,
) -> Vec<Tombstone> {
    let mut all: BTreeMap<InfoHash, Tombstone> =
        base.into_iter().map(|t| (t.info_hash, t)).collect();
    for (info_hash, tombstone) in removals {
        let newer = all
            .get(&info_hash)
            .is_none_or(|old| old.removed_seq < tombstone.removed_seq);
        if newer {
            all.insert(info_hash, tombstone);
        }
    }
    let window = i64::try_from(window.as_nanos()).unwrap_or(i64::MAX);
    let oldest = state.last_at.as_unix_nanos().saturating_sub(window);
    all.into_values()
        .filter(|t| !state.torrents.contains_key(&t.info_hash))
        .filter(|t| t.removed_at.as_unix_nanos() >= oldest)
        .collect()
}

/// Copies a sealed segment durably into `archive`; returns the copy's path.
fn archive_segment(
    storage: &dyn Storage,
    archive: &Path,
    segment: &recovery::SegmentInfo,
) -> Result<PathBuf> {
    create_dir_durably(storage, archive)?;
    let bytes = recovery::read_segment(storage, segment)?;
    let name = segment.path.file_name().ok_or_else(|| Error::Internal {
        what: format!("segment path {} has no name", segment.path.display()),
    })?;
    let copy = archive.join(name);
    storage::write_atomic(storage, &copy, &bytes).ctx("archive segment", &copy)?;
    Ok(copy)
}

/// The sealed segments of `live` (listed in seq order): all but the last, and not the one
/// before a last segment with a torn header (recovery removes that one and continues the
/// previous).
fn sealed_segments(
    storage: &dyn Storage,
    live: &[recovery::SegmentInfo],
) -> Vec<recovery::SegmentInfo> {
    let torn_last = live.last().is_some_and(|last| {
        storage
            .file_len(&last.path)
            .map_or(true, |len| len < SEGMENT_HEADER_BYTES as u64)
    });
    live[..live.len().saturating_sub(if torn_last { 2 } else { 1 })].to_vec()
}

/// Creates `dir` and any missing ancestors, then fsyncs the parent of each one created
/// (outermost first), so the new directories survive a power cut.
fn create_dir_durably(storage: &dyn Storage, dir: &Path) -> Result<()> {
    if storage.is_dir(dir) {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut path = dir;
    while !storage.exists(path) {
        missing.push(path);
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => path = parent,
            _ => break,
        }
    }
    storage.create_dir_all(dir).ctx("create directory", dir)?;
    for created in missing.iter().rev() {
        let parent = storage::parent_dir(created);
        storage.sync_dir(parent).ctx("fsync dir", parent)?;
    }
    Ok(())
}

fn take_lock(storage: &dyn Storage, dir: &Path) -> Result<Box<dyn LockGuard>> {
    let path = dir.join(COMPACT_LOCK_FILE_NAME);
    match storage
        .try_lock(&path, std::process::id())
        .ctx("lock", &path)?
    {
        Some(guard) => Ok(guard),
        None => {
            let pid = storage::lock_holder_pid(storage, &path);
            Err(Error::CompactionRunning {
                dir: dir.to_path_buf(),
                pid,
            })
        }
    }
}

/// A `*.tmp` left in `dir` is a snapshot or archive copy a crash interrupted before its rename.
fn remove_leftover_tmp_files(storage: &dyn Storage, dir: &Path) -> Result<()> {
    if !storage.is_dir(dir) {
        return Ok(());
    }
    let names = storage.list_dir(dir).ctx("list", dir)?;
    let mut removed = false;
    for name in names.iter().filter(|n| n.ends_with(".tmp")) {
        let path = dir.join(name);
        storage.remove_file(&path).ctx("remove", &path)?;
        removed = true;
    }
    if removed {
        storage.sync_dir(dir).ctx("fsync dir", dir)?;
    }
    Ok(())
}

/// Bytes of the journal's segments and the snapshots.
fn stored_bytes(storage: &dyn Storage, dir: &Path) -> Result<u64> {
    let journal_dir = journal::journal_dir(dir);
    let segments = recovery::list_segments(storage, &journal_dir)?
        .into_iter()
        .map(|s| s.path);
    let snapshots = snapshot::list_snapshots(storage, dir)?
        .into_iter()
        .map(|s| s.path);
    // A file gone since the listing (a concurrent recovery) simply counts no more.
    Ok(segments
        .chain(snapshots)
        .filter_map(|path| storage.file_len(&path).ok())
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_off_by_default_and_due_at_either_trigger() {
        let off = CompactionPolicy::default();
        assert!(!off.is_enabled());
        assert!(!off.due(u64::MAX, u64::MAX));
        let policy = CompactionPolicy {
            every_events: Some(100),
            every_bytes: Some(1 << 20),
            retain: Retention::Events(10),
        };
        assert!(policy.is_enabled());
        assert!(!policy.due(99, 1000));
        assert!(policy.due(100, 0));
        assert!(policy.due(1, 1 << 20));
        assert_eq!(policy.options().retain, Retention::Events(10));
    }
}
