//! Owns point-in-time reads: the state as of a seq or a wall-clock time (the newest usable
//! snapshot at or before it plus the journal tail, folded with the one reducer), the earliest
//! restorable point, one torrent's history, and the tombstones `undelete` restores from.
//!
//! # What is restorable
//!
//! A point (seq `n`) can be materialized from a *base* — the empty state at seq 0 when the
//! journal still starts at seq 1, or a snapshot at seq `s ≤ n` — plus the events `s+1..=n`,
//! which the retained journal (optionally preceded by archived segments) must hold. The
//! **earliest restorable point** is the oldest base from which the retained history continues
//! unbroken to the head: seq 0 when the journal starts at seq 1, otherwise the oldest valid
//! snapshot at or after the journal's first seq − 1. Every seq from it to the head is
//! restorable (an older snapshot outside that window restores its own seq only). A wall-clock
//! target means "after the last event committed at or before that time"; it is restorable when
//! it is not before the earliest restorable point's commit time (any time is, from seq 0).
//!
//! A snapshot whose own event the journal still holds must agree with it (same seq, same commit
//! time); otherwise it belongs to another history and is skipped like a damaged one.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::event::{Envelope, Event};
use crate::journal::judge::Place;
use crate::journal::recovery::{self, SegmentInfo};
use crate::journal::segment::Scan;
use crate::journal::{JournalReader, RawFrame};
use crate::model::{HookEvent, InfoHash, Timestamp};
use crate::replay;
use crate::snapshot::{self, SnapshotHeader, SnapshotInfo, Tombstone};
use crate::state::{self, State};
use crate::storage::Storage;

/// Which point of history to materialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// After the event with this seq (0: the empty state before the first event).
    Seq(u64),
    /// After the last event committed at or before this time.
    Time(Timestamp),
    /// After the last event.
    Head,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seq(seq) => write!(f, "seq {seq}"),
            Self::Time(at) => write!(f, "time {}", at.to_rfc3339()),
            Self::Head => write!(f, "the head"),
        }
    }
}

impl FromStr for Target {
    type Err = Error;

    /// `head`, a seq (decimal digits) or an RFC 3339 time.
    fn from_str(text: &str) -> Result<Target> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("head") {
            return Ok(Target::Head);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(Target::Seq)
                .map_err(|e| Error::InvalidArgument(format!("seq {text:?}: {e}")));
        }
        Timestamp::parse_rfc3339(text)
            .map(Target::Time)
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "{text:?} is neither `head`, a seq nor an RFC 3339 time: {e}"
                ))
            })
    }
}

/// The state at a point of history.
#[derive(Debug, Clone, PartialEq)]
pub struct PointInTime {
    /// The reducer's state after event `seq`.
    pub state: State,
    /// The last event folded in (0: none).
    pub seq: u64,
    /// Its commit time (the Unix epoch for seq 0).
    pub at: Timestamp,
    /// The snapshot the state was rebuilt from, if any (`None`: replayed from seq 1).
    pub snapshot: Option<u64>,
}

/// A point from which history can be materialized; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorePoint {
    /// Seq of the point (0: the empty state before the first event).
    pub seq: u64,
    /// Commit time of the event at `seq` (`None` for seq 0: every time is at or after it).
    pub at: Option<Timestamp>,
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Some(at) => write!(f, "seq {} (committed {})", self.seq, at.to_rfc3339()),
            None => write!(
                f,
                "seq {} (the empty state before the first event)",
                self.seq
            ),
        }
    }
}

/// The state of store directory `dir` at `target`, from the newest usable snapshot at or before
/// it plus the journal tail. Needs no lock; works while a writer appends.
///
/// Errors: a target before the earliest restorable point (the message states that point's seq
/// and time), a seq beyond the head, damage in the journal, a snapshot of a newer format.
/// Damaged snapshots are skipped with a warning.
pub fn state_at(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
    target: Target,
) -> Result<PointInTime> {
    state_at_with_archive(storage, dir, None, target)
}

/// [`state_at`], also reading segments that compaction moved to `archive` (those before the
/// live journal's first seq; they must continue into it without a gap).
pub fn state_at_with_archive(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
    archive: Option<&Path>,
    target: Target,
) -> Result<PointInTime> {
    let materialized = retry_if_compacted(|| {
        let sources = Sources::open(Arc::clone(&storage), dir.as_ref(), archive)?;
        materialize(&sources, target, BaseOrder::Newest, None)
    })?;
    let state = materialized.state;
    Ok(PointInTime {
        seq: state.last_seq,
        at: state.last_at,
        snapshot: materialized.base.map(|b| b.seq),
        state,
    })
}

/// The earliest restorable point (see the [module docs](self)), or `None` when nothing is
/// restorable (the journal starts after seq 1 and no snapshot covers its beginning). Only
/// snapshot headers are checked here.
pub fn earliest_restorable(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
    archive: Option<&Path>,
) -> Result<Option<RestorePoint>> {
    let sources = Sources::open(storage, dir.as_ref(), archive)?;
    let catalog = Catalog::load(&*sources.storage, &sources.dir)?;
    Ok(catalog.earliest(sources.first_seq()))
}

/// Every retained event touching `info_hash` (per [`Event::info_hashes`]), in seq order.
/// When a concurrent compaction removes the journal's beginning meanwhile, it reads again from
/// the new first retained event.
pub fn torrent_history(reader: &JournalReader, info_hash: &InfoHash) -> Result<Vec<Envelope>> {
    retry_if_compacted(|| {
        let first = reader.first_retained_seq()?;
        let mut out = Vec::new();
        for envelope in reader.events(first)? {
            let envelope = envelope?;
            if envelope.event.info_hashes().contains(info_hash) {
                out.push(envelope);
            }
        }
        Ok(out)
    })
}

/// How often a read is planned again when a concurrent compaction keeps moving the journal's
/// start under it. Each compaction removes segments once, so a second plan usually succeeds;
/// but a read slower than the compaction cycle (a machine four times oversubscribed, `tj
/// compact` in a loop every 200 ms: measured 2 of 186 `tj history` runs exhausting 8 plans)
/// needs more. Each plan costs one read of the retained journal.
const COMPACTED_RETRIES: usize = 32;

/// Whether `err` says a concurrent compaction moved the journal's start while it was read: a
/// segment or snapshot listed a moment ago is gone ([`Error::Io`] `NotFound`), or a seq the
/// plan needed is no longer retained ([`Error::SeqNotRetained`]; the reader returns it for a
/// segment that vanished while the journal now starts after it).
pub fn compacted_meanwhile(err: &Error) -> bool {
    match err {
        Error::SeqNotRetained { .. } => true,
        Error::Io { cause, .. } => cause.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// Runs `read` (which must plan from the layout it lists itself) again when a concurrent
/// compaction moved the journal's start under it, up to `COMPACTED_RETRIES` (32) times; then
/// returns its last error, which names what is no longer retained.
pub fn retry_if_compacted<T>(mut read: impl FnMut() -> Result<T>) -> Result<T> {
    let mut retries = 0;
    loop {
        match read() {
            Err(err) if compacted_meanwhile(&err) && retries < COMPACTED_RETRIES => {
                retries += 1;
                debug!(error = %err, retries, "compaction moved the journal's start; planning again");
            }
            other => return other,
        }
    }
}

/// The torrent an event removes, for removal events (`torrent-removed`, `TorrentDeleted`).
pub fn removed_torrent(event: &Event) -> Option<InfoHash> {
    match event {
        Event::Hook(record) if record.event == HookEvent::TorrentRemoved => {
            Some(record.torrent.info_hash)
        }
        Event::TorrentDeleted { info_hash } => Some(*info_hash),
        _ => None,
    }
}

/// The last removal of `info_hash` that can still be undone: searched in the whole retained
/// journal (replayed from the oldest usable base, so the state just before the removal is
/// known), then in the tombstones of that base snapshot. `Ok(None)` when the torrent is live at
/// the head, or no removal of it is retained.
pub fn find_tombstone(
    storage: Arc<dyn Storage>,
    dir: impl AsRef<Path>,
    info_hash: &InfoHash,
) -> Result<Option<Tombstone>> {
    retry_if_compacted(|| find_tombstone_once(Arc::clone(&storage), dir.as_ref(), info_hash))
}

fn find_tombstone_once(
    storage: Arc<dyn Storage>,
    dir: &Path,
    info_hash: &InfoHash,
) -> Result<Option<Tombstone>> {
    let sources = Sources::open(storage, dir, None)?;
    let mut found: Option<Tombstone> = None;
    let mut observe = |state: &State, envelope: &Envelope| {
        if removed_torrent(&envelope.event) == Some(*info_hash)
            && let Some(last) = state.torrents.get(info_hash)
        {
            found = Some(Tombstone {
                info_hash: *info_hash,
                removed_at: envelope.at,
                removed_seq: envelope.seq,
                last: (**last).clone(),
            });
        }
    };
    let materialized = materialize(
        &sources,
        Target::Head,
        BaseOrder::Oldest,
        Some(&mut observe),
    )?;
    if materialized.state.torrents.contains_key(info_hash) {
        return Ok(None);
    }
    let from_base = materialized
        .base_tombstones
        .into_iter()
        .find(|t| t.info_hash == *info_hash);
    Ok([found, from_base]
        .into_iter()
        .flatten()
        .max_by_key(|t| t.removed_seq))
}

/// The event that undoes a removal: saves the torrent as it was just before it.
pub fn undelete_event(tombstone: &Tombstone) -> Event {
    Event::TorrentSaved {
        torrent: Box::new(tombstone.last.clone()),
    }
}

/// Which usable base to start from when several are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseOrder {
    /// The newest: the least replay.
    Newest,
    /// The oldest: replays all retained history (to observe every retained event).
    Oldest,
}

/// A materialized state and how it was built.
#[derive(Debug)]
pub(crate) struct Materialized {
    pub(crate) state: State,
    /// The snapshot replay started from (`None`: the empty state).
    pub(crate) base: Option<SnapshotInfo>,
    /// That snapshot's tombstones.
    pub(crate) base_tombstones: Vec<Tombstone>,
    /// The segment holding the last event replayed (`None` when none was replayed).
    pub(crate) last_segment: Option<Arc<PathBuf>>,
}

/// Where history is read from: the live journal, optionally preceded by archived segments.
#[derive(Debug)]
pub(crate) struct Sources {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    reader: JournalReader,
    live: Vec<SegmentInfo>,
    /// Archived segments before the live journal's first seq, in seq order.
    archive: Vec<SegmentInfo>,
}

impl Sources {
    pub(crate) fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        archive: Option<&Path>,
    ) -> Result<Self> {
        let reader = JournalReader::with_storage(Arc::clone(&storage), dir)?;
        let live = reader.segments()?;
        let archive = match archive {
            None => Vec::new(),
            Some(archive_dir) => {
                if !storage.is_dir(archive_dir) {
                    return Err(Error::InvalidArgument(format!(
                        "no archive directory {}",
                        archive_dir.display()
                    )));
                }
                let live_first = live.first().map_or(u64::MAX, |s| s.first_seq);
                let mut segments = recovery::list_segments(&*storage, archive_dir)?;
                segments.retain(|s| s.first_seq < live_first);
                segments
            }
        };
        Ok(Self {
            storage,
            dir: dir.to_path_buf(),
            reader,
            live,
            archive,
        })
    }

    /// The first seq any source holds (by segment names).
    pub(crate) fn first_seq(&self) -> Option<u64> {
        self.archive
            .first()
            .or(self.live.first())
            .map(|s| s.first_seq)
    }

    /// The live journal's first seq now, when it differs from the listing `open` made (a
    /// concurrent compaction removed segments since).
    fn moved(&self) -> Result<Option<u64>> {
        let now = self.reader.segments()?.first().map(|s| s.first_seq);
        let then = self.live.first().map(|s| s.first_seq);
        Ok(now.filter(|&now| Some(now) != then))
    }

    /// The last event of the live journal: its seq and commit time.
    pub(crate) fn head(&self) -> Result<Option<(u64, Timestamp)>> {
        for segment in self.live.iter().rev() {
            if let Some(last) = self.reader.frames(segment.first_seq)?.last() {
                let last = last?;
                return Ok(Some((last.seq, last.at)));
            }
        }
        Ok(None)
    }

    /// Frames with seq ≥ `from`, archive first, then the live journal.
    fn frames(&self, from: u64) -> Result<Box<dyn Iterator<Item = Result<RawFrame>> + Send>> {
        let live_first = self.live.first().map(|s| s.first_seq);
        if self.archive.is_empty() || live_first.is_some_and(|first| from >= first) {
            return Ok(Box::new(self.reader.frames(from)?));
        }
        let start = self
            .archive
            .iter()
            .rposition(|s| s.first_seq <= from)
            .unwrap_or(0);
        let archived = ArchiveFrames {
            storage: Arc::clone(&self.storage),
            segments: self.archive[start..].to_vec(),
            index: 0,
            from,
            expected: None,
            live_first,
            pending: VecDeque::new(),
            done: false,
        };
        let live = match live_first {
            Some(first) => Some(self.reader.frames(first)?),
            None => None,
        };
        Ok(Box::new(archived.chain(live.into_iter().flatten())))
    }
}

/// Frames of archived (sealed) segments: any damage is an error, seqs must continue from
/// segment to segment and into the live journal.
struct ArchiveFrames {
    storage: Arc<dyn Storage>,
    segments: Vec<SegmentInfo>,
    index: usize,
    from: u64,
    expected: Option<u64>,
    live_first: Option<u64>,
    pending: VecDeque<RawFrame>,
    done: bool,
}

impl ArchiveFrames {
    /// Reads the next segment into `pending`; `Ok(false)` when there is none left.
    fn load_next(&mut self) -> Result<bool> {
        let Some(info) = self.segments.get(self.index) else {
            if let (Some(expected), Some(live_first)) = (self.expected, self.live_first)
                && expected != live_first
                && let Some(last) = self.segments.last()
            {
                return Err(Error::SequenceBreak {
                    segment: last.path.clone(),
                    offset: 0,
                    expected,
                    found: live_first,
                });
            }
            return Ok(false);
        };
        if let Some(expected) = self.expected
            && expected != info.first_seq
        {
            return Err(Error::SequenceBreak {
                segment: info.path.clone(),
                offset: 12,
                expected,
                found: info.first_seq,
            });
        }
        let bytes = recovery::read_segment(&*self.storage, info)?;
        let path = Arc::new(info.path.clone());
        let mut scan = Scan::new(&bytes, info.first_seq);
        for found in scan.by_ref() {
            if found.frame.seq >= self.from {
                self.pending.push_back(RawFrame {
                    seq: found.frame.seq,
                    at: Timestamp::from_unix_nanos(found.frame.at_unix_nanos),
                    payload: found.frame.payload.to_vec(),
                    segment: Arc::clone(&path),
                    offset: found.offset as u64,
                });
            }
        }
        let next_seq = scan.expected_seq();
        if let Some(stop) = scan.stop() {
            // Archived segments are sealed: anything but a clean end is damage.
            recovery::judge(
                &info.path,
                &bytes,
                stop,
                Place::Sealed,
                next_seq.saturating_sub(1),
            )?;
        }
        self.expected = Some(next_seq);
        self.index += 1;
        Ok(true)
    }
}

impl Iterator for ArchiveFrames {
    type Item = Result<RawFrame>;

    fn next(&mut self) -> Option<Result<RawFrame>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(frame) = self.pending.pop_front() {
                return Some(Ok(frame));
            }
            match self.load_next() {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// The snapshots whose headers check out, and what was wrong with the others.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Oldest first.
    pub(crate) snapshots: Vec<(SnapshotInfo, SnapshotHeader)>,
    /// `path: reason` of every snapshot found unusable.
    pub(crate) damaged: Vec<String>,
}

impl Catalog {
    pub(crate) fn load(storage: &dyn Storage, dir: &Path) -> Result<Self> {
        let mut catalog = Catalog::default();
        for info in snapshot::list_snapshots(storage, dir)? {
            match snapshot::read_header(storage, &info.path) {
                Ok(header) => catalog.snapshots.push((info, header)),
                Err(err @ Error::UnsupportedVersion { .. }) => return Err(err),
                // Removed by a concurrent compaction since the listing: not damage.
                Err(err) if compacted_meanwhile(&err) => {
                    debug!(snapshot = %info.path.display(), "a snapshot was removed meanwhile");
                }
                Err(err) => catalog.mark_damaged(&info, &err.to_string()),
            }
        }
        Ok(catalog)
    }

    fn mark_damaged(&mut self, info: &SnapshotInfo, reason: &str) {
        warn!(
            snapshot = %info.path.display(),
            reason,
            "skipping an unusable snapshot; falling back to an older one or the journal"
        );
        self.snapshots.retain(|(s, _)| s.path != info.path);
        self.damaged
            .push(format!("{}: {reason}", info.path.display()));
    }

    /// See the module docs; `first` is the first seq the journal sources hold.
    pub(crate) fn earliest(&self, first: Option<u64>) -> Option<RestorePoint> {
        let point = |(_, h): &(SnapshotInfo, SnapshotHeader)| RestorePoint {
            seq: h.seq,
            at: Some(h.at),
        };
        match first {
            Some(1) => Some(RestorePoint { seq: 0, at: None }),
            Some(first) => self
                .snapshots
                .iter()
                .find(|(_, h)| h.seq.saturating_add(1) >= first)
                .map(point),
            None => self
                .snapshots
                .last()
                .map(point)
                .or(Some(RestorePoint { seq: 0, at: None })),
        }
    }
}

/// Called with the state before each replayed event and the event (tombstone search,
/// compaction's removal bookkeeping).
pub(crate) type Observer<'o> = dyn FnMut(&State, &Envelope) + 'o;

/// Builds the state at `target` from the first usable base in `order`, calling `observe` (when
/// given) with the state before each replayed event. Without an observer the replay to the
/// head is the fast fold ([`replay::fold_frames`]).
pub(crate) fn materialize(
    sources: &Sources,
    target: Target,
    order: BaseOrder,
    mut observe: Option<&mut Observer<'_>>,
) -> Result<Materialized> {
    let mut catalog = Catalog::load(&*sources.storage, &sources.dir)?;
    let first = sources.first_seq();
    for candidate in base_candidates(&catalog, first, target, order) {
        let built = match candidate {
            None => Some(from_empty_state(sources, target, observe.as_deref_mut())?),
            Some((info, header)) => from_snapshot(
                sources,
                &mut catalog,
                (info, header),
                target,
                observe.as_deref_mut(),
            )?,
        };
        if let Some(built) = built {
            return Ok(built);
        }
    }
    if let Some(earliest) = sources.moved()? {
        // A concurrent compaction removed the journal's beginning (and perhaps the snapshots
        // this plan needed) after `sources` listed it: say so, so the caller plans again.
        return Err(Error::SeqNotRetained {
            requested: first.unwrap_or(1),
            earliest,
        });
    }
    Err(not_restorable(
        target,
        first,
        catalog.earliest(first),
        &catalog.damaged,
    ))
}

/// The bases `materialize` may start from, in `order`: the snapshots at or before `target`,
/// and `None` — the empty state at seq 0, a base only while the journal (starting at `first`)
/// starts at seq 1.
fn base_candidates(
    catalog: &Catalog,
    first: Option<u64>,
    target: Target,
    order: BaseOrder,
) -> Vec<Option<(SnapshotInfo, SnapshotHeader)>> {
    let reaches_target = |h: &SnapshotHeader| match target {
        Target::Seq(seq) => h.seq <= seq,
        Target::Time(at) => h.at <= at,
        Target::Head => true,
    };
    let mut candidates: Vec<Option<(SnapshotInfo, SnapshotHeader)>> = Vec::new();
    if first.is_none_or(|f| f == 1) {
        candidates.push(None);
    }
    candidates.extend(
        catalog
            .snapshots
            .iter()
            .filter(|(_, h)| reaches_target(h))
            .cloned()
            .map(Some),
    );
    if order == BaseOrder::Newest {
        candidates.reverse();
    }
    candidates
}

/// The state at `target` replayed from the empty state and the journal's first event.
fn from_empty_state(
    sources: &Sources,
    target: Target,
    observe: Option<&mut Observer<'_>>,
) -> Result<Materialized> {
    let mut last_segment = None;
    let state = replay(
        State::default(),
        sources.frames(1)?,
        target,
        observe,
        &mut last_segment,
    )?;
    check_reached(target, &state)?;
    Ok(Materialized {
        state,
        base: None,
        base_tombstones: Vec::new(),
        last_segment,
    })
}

/// The state at `target` replayed from the snapshot `base`; `Ok(None)` when the snapshot is
/// unusable for it (marked damaged in `catalog`, or the history right after it is gone).
fn from_snapshot(
    sources: &Sources,
    catalog: &mut Catalog,
    (info, header): (SnapshotInfo, SnapshotHeader),
    target: Target,
    observe: Option<&mut Observer<'_>>,
) -> Result<Option<Materialized>> {
    let first = sources.first_seq();
    let continues = first.is_some_and(|f| header.seq.saturating_add(1) >= f);
    let exact = target == Target::Seq(header.seq);
    if first.is_some() && !continues && !exact {
        // History right after this snapshot is gone: it can restore its own seq only.
        return Ok(None);
    }
    let body = match snapshot::read_snapshot(&*sources.storage, &info.path) {
        Ok(body) => body,
        Err(err @ Error::UnsupportedVersion { .. }) => return Err(err),
        // Removed by a concurrent compaction: the caller plans again from the new layout.
        Err(err) if compacted_meanwhile(&err) => return Err(err),
        Err(err) => {
            catalog.mark_damaged(&info, &err.to_string());
            return Ok(None);
        }
    };
    let holds_own_event = first.is_some_and(|f| f <= header.seq);
    let mut frames = if holds_own_event {
        sources.frames(header.seq)?
    } else if continues {
        sources.frames(header.seq.saturating_add(1))?
    } else {
        Box::new(std::iter::empty())
    };
    if holds_own_event && let Some(reason) = disagreement(&header, frames.next())? {
        catalog.mark_damaged(&info, &reason);
        return Ok(None);
    }
    let mut last_segment = None;
    let state = replay(body.state, frames, target, observe, &mut last_segment)?;
    check_reached(target, &state)?;
    debug!(
        target = %target,
        snapshot = header.seq,
        seq = state.last_seq,
        "materialized"
    );
    Ok(Some(Materialized {
        state,
        base: Some(info),
        base_tombstones: body.tombstones,
        last_segment,
    }))
}

/// Why the journal's own event at a snapshot's seq shows the snapshot is from another history.
fn disagreement(header: &SnapshotHeader, own: Option<Result<RawFrame>>) -> Result<Option<String>> {
    Ok(match own.transpose()? {
        Some(frame) if frame.seq == header.seq && frame.at == header.at => None,
        Some(frame) => Some(format!(
            "the snapshot is at seq {} committed {}, but the journal's event there is seq {} committed {}",
            header.seq, header.at, frame.seq, frame.at
        )),
        None => Some(format!(
            "the snapshot is at seq {}, beyond the journal's last event",
            header.seq
        )),
    })
}

/// Folds frames into `state` until `target` is reached.
/// Folds `frames` into `state` up to `target`. Without an observer, a replay to the head uses
/// the fast fold ([`replay::fold_frames`]: same state, and `last_segment` is left unset).
fn replay<'o>(
    mut state: State,
    frames: impl Iterator<Item = Result<RawFrame>> + Send,
    target: Target,
    mut observe: Option<&mut Observer<'o>>,
    last_segment: &mut Option<Arc<PathBuf>>,
) -> Result<State> {
    if let Target::Seq(seq) = target
        && state.last_seq >= seq
    {
        return Ok(state);
    }
    if target == Target::Head && observe.is_none() {
        return replay::fold_frames(state, frames);
    }
    for frame in frames {
        let frame = frame?;
        match target {
            Target::Seq(seq) if frame.seq > seq => break,
            Target::Time(at) if frame.at > at => break,
            _ => {}
        }
        let expected = state.last_seq.saturating_add(1);
        if frame.seq != expected || state.last_seq == u64::MAX {
            return Err(Error::SequenceBreak {
                segment: frame.segment.to_path_buf(),
                offset: frame.offset,
                expected,
                found: frame.seq,
            });
        }
        let envelope = frame.decode()?;
        if let Some(observe) = observe.as_deref_mut() {
            observe(&state, &envelope);
        }
        state::apply(&mut state, &envelope);
        *last_segment = Some(Arc::clone(&frame.segment));
        if target == Target::Seq(frame.seq) {
            break;
        }
    }
    Ok(state)
}

fn check_reached(target: Target, state: &State) -> Result<()> {
    match target {
        Target::Seq(seq) if state.last_seq < seq => Err(Error::InvalidArgument(format!(
            "cannot restore seq {seq}: the journal's last event is seq {}",
            state.last_seq
        ))),
        _ => Ok(()),
    }
}

fn not_restorable(
    target: Target,
    first: Option<u64>,
    earliest: Option<RestorePoint>,
    damaged: &[String],
) -> Error {
    let mut message = match (earliest, first) {
        (Some(earliest), _) => format!(
            "cannot restore {target}: it is before the earliest restorable point, {earliest}; \
             older history was compacted away (segments moved to an archive directory can be \
             read back from it)"
        ),
        (None, Some(first)) => format!(
            "cannot restore {target}: the journal starts at seq {first} and no usable snapshot \
             covers seq {}, so nothing is restorable",
            first.saturating_sub(1)
        ),
        (None, None) => format!("cannot restore {target}: no journal segment and no snapshot"),
    };
    if !damaged.is_empty() {
        message.push_str("; unusable snapshots skipped: ");
        message.push_str(&damaged.join("; "));
    }
    Error::NotRestorable {
        target: target.to_string(),
        earliest_seq: earliest.map(|e| e.seq),
        message,
    }
}
