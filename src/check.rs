//! Drift: finds disk projections that disagree with the journal (a program wrote to them
//! behind its back) and, on request, rebuilds them from it.
//!
//! Every projection holds, by the [invariant](crate::projection), the reducer's state after the
//! event its checkpoint names. [`check_projections`] reads each projection present (the SQLite
//! database, the file projection's directory) without changing it, materializes the journal's
//! state at that projection's checkpoint ([`crate::history::state_at`]: snapshot + journal) and
//! compares them torrent by torrent, plus the session configuration and (SQLite) the metrics
//! samples:
//!
//! * **SQLite**: every column of `torrents` (`status`, `percent_done`, `downloaded`,
//!   `uploaded`, `added_date`, `updated_date` — each row's own write time,
//!   [`crate::state::State::written`]), every key of its `data` JSON read into its type and
//!   written again (meaning, not formatting), the `torrent_metainfo` blob; `session_config`'s
//!   data and `updated_date`; each torrent's metrics samples by content in `id` order (ids are
//!   not journal state; with [`SqliteOptions::metrics_retention`] samples are not compared).
//! * **Files**: the parsed JSON of each `torrents/<hex>.json`, the bytes of each
//!   `metadata/<hex>.torrent`, `session.json` — exactly what [`FileView::of_state`] says.
//!
//! Each difference is reported per torrent as [`DriftKind::Extra`] (in the projection, not in
//! the journal), [`DriftKind::Missing`] or [`DriftKind::Changed`] with the first differing
//! field. A checkpoint that is not an event of the journal (ahead of it, or from another
//! journal) is drift of the whole projection; damage found while reading is reported too.
//!
//! **Repair** ([`CheckOptions::repair`]) is whole-projection: a drifted projection is set aside
//! (`state.db.drifted-<UTC time>`, `files.drifted-<UTC time>`: the foreign writes are kept as
//! evidence, nothing is deleted) and rebuilt from the journal by the store's own rebuild path
//! (the one used for damage), then checked again. Why not per torrent: a foreign writer may
//! have changed what no per-torrent digest sees (metrics ids, `sqlite_sequence`, extra tables,
//! triggers); the rebuild is the path every projection already takes after damage, a reopen
//! from scratch or a restore, so a repaired projection is one the equivalence tests cover; and
//! it costs one replay of the journal, which a store can always afford at open. The journal is
//! never written.
//!
//! The check takes the store directory's lock (a store must not be open), so what it compares
//! cannot change under it. `quick_drift_sqlite` and `quick_drift_files` are the cheap
//! variants the store runs at open when [`crate::StoreOptions::drift_check`] is on.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::error::{Error, IoContext, Result};
use crate::history::{self, Target};
use crate::journal::{JournalReader, LOCK_FILE_NAME};
use crate::model::{Clock, SystemClock};
#[cfg(feature = "sqlite")]
use crate::projection::SqliteOptions;
#[cfg(feature = "sqlite")]
use crate::projection::sqlite::{self as sqlite_projection, Fields};
use crate::projection::{Checkpoint, FileProjection, FileProjectionOptions, FileView};
use crate::state::State;
use crate::storage::{RealStorage, Storage};
use crate::store::{Aside, DiskSpec, StoreOptions};

/// What [`check_projections`] checks and whether it repairs.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Rebuild every projection found drifted (or damaged) from the journal.
    pub repair: bool,
    /// The SQLite projection, checked when the file exists (relative: inside the store
    /// directory; default `state.db`).
    #[cfg(feature = "sqlite")]
    pub sqlite: PathBuf,
    /// Its options (only `metrics_retention` matters here, and for a rebuild).
    #[cfg(feature = "sqlite")]
    pub sqlite_options: SqliteOptions,
    /// The file projection, checked when it has a `checkpoint.json` (relative: inside the store
    /// directory; default `files`). Its layout is read from that file.
    pub files: PathBuf,
    /// The storage the store lives on (the OS unless testing).
    pub storage: Arc<dyn Storage>,
    /// Names set-aside projections.
    pub clock: Arc<dyn Clock>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            repair: false,
            #[cfg(feature = "sqlite")]
            sqlite: PathBuf::from(StoreOptions::SQLITE_FILE_NAME),
            #[cfg(feature = "sqlite")]
            sqlite_options: SqliteOptions::default(),
            files: PathBuf::from(StoreOptions::FILES_DIR_NAME),
            storage: Arc::new(RealStorage),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What [`check_projections`] found (and repaired).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    /// The store directory.
    pub dir: PathBuf,
    /// The journal's last seq.
    pub journal_seq: u64,
    /// One entry per projection present.
    pub projections: Vec<ProjectionCheck>,
}

impl DriftReport {
    /// Whether some projection disagrees with the journal (or is damaged) and was not repaired.
    pub fn drifted(&self) -> bool {
        self.projections.iter().any(ProjectionCheck::unresolved)
    }
}

/// The check of one projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionCheck {
    /// `sqlite` or `files`.
    pub projection: &'static str,
    /// The projection's file or directory.
    pub path: PathBuf,
    /// Its checkpoint's seq (`None` when it could not be read).
    pub checkpoint_seq: Option<u64>,
    /// What the check concluded.
    pub verdict: Verdict,
    /// Why it is not clean when no torrent says it (checkpoint, damage), or why unverifiable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Torrents in the journal's state at the checkpoint.
    pub torrents_expected: usize,
    /// Torrents that differ, in key order.
    pub torrents: Vec<TorrentDrift>,
    /// How the session configuration differs, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<FieldDrift>,
    /// Milliseconds the check took (reading both sides and comparing).
    pub check_ms: f64,
    /// What `--repair` did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

impl ProjectionCheck {
    fn unresolved(&self) -> bool {
        let bad = matches!(self.verdict, Verdict::Drifted | Verdict::Damaged);
        bad && self
            .repair
            .as_ref()
            .is_none_or(|r| r.verdict_after != Verdict::Clean)
    }
}

/// The outcome of a projection's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Equal to the journal's state at its checkpoint.
    Clean,
    /// Differs from it (see the torrents, session and detail).
    Drifted,
    /// Could not be read: damaged (the store would set it aside and rebuild it).
    Damaged,
    /// Cannot be compared: its checkpoint is before the earliest restorable point, or its
    /// schema is of another version (opening the store catches it up or migrates it).
    Unverifiable,
}

/// How a torrent differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TorrentDrift {
    /// The info hash in hex (an extra SQLite row's key as written, when it does not parse).
    pub info_hash: String,
    /// What kind of difference (or problem).
    pub kind: DriftKind,
    /// The first differing field (`status`, `data.name`, `metainfo`, `metrics`, for files the
    /// JSON key or `metadata`), for changes (and for extra or missing metrics or metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A difference of a single item (the session configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDrift {
    /// What kind of difference (or problem).
    pub kind: DriftKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The first field that differs, when one does.
    pub field: Option<String>,
}

/// Kinds of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// In the projection, not in the journal's state.
    Extra,
    /// In the journal's state, not in the projection.
    Missing,
    /// In both, different.
    Changed,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repair {
    /// Where the drifted projection was moved.
    pub set_aside: PathBuf,
    /// The rebuilt projection's checkpoint.
    pub seq: u64,
    /// The check of the rebuilt projection.
    pub verdict_after: Verdict,
    /// Time spent rebuilding it (0 without a rebuild).
    pub rebuild_ms: f64,
}

/// Checks every projection present in store directory `dir` against the journal (see the
/// [module docs](self)); with [`CheckOptions::repair`], rebuilds the drifted ones. Takes the
/// directory's lock ([`Error::Locked`] while a store is open). Errors: the journal cannot be
/// read (damage), I/O; a projection that cannot be read is a [`Verdict::Damaged`] entry.
pub fn check_projections(dir: impl AsRef<Path>, options: &CheckOptions) -> Result<DriftReport> {
    let dir = dir.as_ref();
    let storage = Arc::clone(&options.storage);
    let lock_path = dir.join(LOCK_FILE_NAME);
    if !storage.is_dir(&dir.join("journal")) {
        return Err(Error::InvalidArgument(format!(
            "{} is not a store directory (no journal/)",
            dir.display()
        )));
    }
    let _lock = match storage
        .try_lock(&lock_path, std::process::id())
        .ctx("lock", &lock_path)?
    {
        Some(guard) => guard,
        None => {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
                pid: crate::storage::lock_holder_pid(&*storage, &lock_path),
            });
        }
    };
    let reader = JournalReader::with_storage(Arc::clone(&storage), dir)?;
    let journal_seq = reader.head()?.map_or(0, |(seq, _)| seq);
    let mut states = States::new(Arc::clone(&storage), dir);
    let mut projections = Vec::new();

    #[cfg(feature = "sqlite")]
    if let Some(check) = check_sqlite_if_present(dir, &mut states, &reader, options)? {
        projections.push(check);
    }
    let files = dir.join(&options.files);
    if storage.exists(&files.join("checkpoint.json")) {
        // The rebuild keeps the layout on disk (flat unless `checkpoint.json` says sharded).
        let file_options = match FileProjection::inspect(Arc::clone(&storage), &files, false) {
            Ok(Some((_, file_options, _))) => file_options,
            _ => FileProjectionOptions::default(),
        };
        let spec = DiskSpec::Files {
            storage: Arc::clone(&storage),
            dir: files.clone(),
            options: file_options,
        };
        let check = |states: &mut States| check_files(&storage, &files, states);
        projections.push(run(spec, check, &mut states, &reader, options)?);
    }
    Ok(DriftReport {
        dir: dir.to_path_buf(),
        journal_seq,
        projections,
    })
}

/// Checks one projection, repairs it when asked and needed, and checks it again.
/// Checks (and with `repair`, rebuilds) the SQLite projection when its file exists.
#[cfg(feature = "sqlite")]
fn check_sqlite_if_present(
    dir: &Path,
    states: &mut States,
    reader: &JournalReader,
    options: &CheckOptions,
) -> Result<Option<ProjectionCheck>> {
    let sqlite = dir.join(&options.sqlite);
    if !sqlite.exists() {
        return Ok(None);
    }
    let spec = DiskSpec::Sqlite {
        path: sqlite.clone(),
        options: options.sqlite_options.clone(),
    };
    let metrics = options.sqlite_options.metrics_retention.is_none();
    let check = |states: &mut States| check_sqlite(&sqlite, metrics, states);
    run(spec, check, states, reader, options).map(Some)
}

fn run(
    spec: DiskSpec,
    check: impl Fn(&mut States) -> Result<ProjectionCheck>,
    states: &mut States,
    reader: &JournalReader,
    options: &CheckOptions,
) -> Result<ProjectionCheck> {
    let mut found = check(states)?;
    match found.verdict {
        Verdict::Clean | Verdict::Unverifiable => {
            info!(projection = found.projection, verdict = ?found.verdict, "drift check")
        }
        Verdict::Drifted | Verdict::Damaged => warn!(
            projection = found.projection,
            path = %found.path.display(),
            verdict = ?found.verdict,
            torrents = found.torrents.len(),
            "projection disagrees with the journal"
        ),
    }
    if !options.repair || !found.unresolved() {
        return Ok(found);
    }
    let started = Instant::now();
    let cause = format!(
        "{:?}: {} torrent(s) differ from the journal{}",
        found.verdict,
        found.torrents.len(),
        found
            .detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default()
    );
    let (projection, set_aside) =
        spec.rebuild(&cause, Aside::Drifted, reader, options.clock.as_ref())?;
    let seq = projection.checkpoint().seq;
    drop(projection);
    let rebuild_ms = millis(started);
    let after = check(states)?;
    found.repair = Some(Repair {
        set_aside,
        seq,
        verdict_after: after.verdict,
        rebuild_ms,
    });
    Ok(found)
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The journal's states at the checkpoints asked for, each materialized once.
struct States {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    cache: HashMap<u64, Arc<State>>,
}

/// The journal's state at a projection's checkpoint, or why there is none to compare with.
enum AtCheckpoint {
    State(Arc<State>),
    /// The checkpoint is not an event of this journal.
    NotInJournal(String),
    /// The journal no longer reaches back to it.
    Unverifiable(String),
}

impl AtCheckpoint {
    /// The state to compare with, or the projection's whole verdict when there is none.
    fn or_verdict(
        self,
        projection: &'static str,
        path: &Path,
        checkpoint_seq: Option<u64>,
        started: Instant,
    ) -> std::result::Result<Arc<State>, Box<ProjectionCheck>> {
        let (verdict, why) = match self {
            AtCheckpoint::State(state) => return Ok(state),
            AtCheckpoint::NotInJournal(why) => (Verdict::Drifted, why),
            AtCheckpoint::Unverifiable(why) => (Verdict::Unverifiable, why),
        };
        let check = verdict_only(projection, path, checkpoint_seq, verdict, why, started);
        Err(Box::new(check))
    }
}

impl States {
    fn new(storage: Arc<dyn Storage>, dir: &Path) -> Self {
        Self {
            storage,
            dir: dir.to_path_buf(),
            cache: HashMap::new(),
        }
    }

    fn at(&mut self, checkpoint: Checkpoint) -> Result<AtCheckpoint> {
        let state = match self.cache.get(&checkpoint.seq) {
            Some(state) => Arc::clone(state),
            None => {
                let target = Target::Seq(checkpoint.seq);
                let point = match history::state_at(Arc::clone(&self.storage), &self.dir, target) {
                    Ok(point) => point,
                    Err(err @ Error::NotRestorable { .. }) => {
                        return Ok(AtCheckpoint::Unverifiable(err.to_string()));
                    }
                    Err(err @ (Error::InvalidArgument(_) | Error::SeqNotRetained { .. })) => {
                        return Ok(AtCheckpoint::NotInJournal(format!(
                            "checkpoint seq {} is not in the journal: {err}",
                            checkpoint.seq
                        )));
                    }
                    Err(err) => return Err(err),
                };
                let state = Arc::new(point.state);
                self.cache.insert(checkpoint.seq, Arc::clone(&state));
                state
            }
        };
        if checkpoint.seq > 0 && state.last_at != checkpoint.at {
            return Ok(AtCheckpoint::NotInJournal(format!(
                "checkpoint seq {} committed {} is not the journal's event (committed {}): \
                 the projection is from another journal",
                checkpoint.seq,
                checkpoint.at.to_rfc3339(),
                state.last_at.to_rfc3339()
            )));
        }
        Ok(AtCheckpoint::State(state))
    }
}

/// A check result before any comparison (damage, unverifiable, not in the journal).
fn verdict_only(
    projection: &'static str,
    path: &Path,
    checkpoint_seq: Option<u64>,
    verdict: Verdict,
    detail: String,
    started: Instant,
) -> ProjectionCheck {
    ProjectionCheck {
        projection,
        path: path.to_path_buf(),
        checkpoint_seq,
        verdict,
        detail: Some(detail),
        torrents_expected: 0,
        torrents: Vec::new(),
        session: None,
        check_ms: millis(started),
        repair: None,
    }
}

/// Reads a projection; damage is a verdict, other errors (schema version) unverifiable.
fn read_or_verdict<T>(
    projection: &'static str,
    path: &Path,
    started: Instant,
    read: Result<T>,
) -> std::result::Result<T, Box<ProjectionCheck>> {
    read.map_err(|err| {
        let verdict = match err {
            Error::ProjectionDamaged { .. } => Verdict::Damaged,
            _ => Verdict::Unverifiable,
        };
        Box::new(verdict_only(
            projection,
            path,
            None,
            verdict,
            err.to_string(),
            started,
        ))
    })
}

#[cfg(feature = "sqlite")]
fn check_sqlite(path: &Path, metrics: bool, states: &mut States) -> Result<ProjectionCheck> {
    let started = Instant::now();
    let image = match read_or_verdict("sqlite", path, started, sqlite_projection::read_image(path))
    {
        Ok(image) => image,
        Err(check) => return Ok(*check),
    };
    let seq = Some(image.checkpoint.seq);
    let state = match states
        .at(image.checkpoint)?
        .or_verdict("sqlite", path, seq, started)
    {
        Ok(state) => state,
        Err(check) => return Ok(*check),
    };
    let expected = sqlite_projection::expected_image(&state)?;
    let mut torrents = compare_maps(&expected.torrents, &image.torrents, |e, a| {
        first_difference(e, a)
    });
    if metrics {
        let mut by_hash: BTreeMap<String, TorrentDrift> = torrents
            .drain(..)
            .map(|d| (d.info_hash.clone(), d))
            .collect();
        let keys = expected
            .metrics
            .keys()
            .chain(image.metrics.keys())
            .chain(image.unreadable_metrics.iter());
        for key in keys {
            let same = !image.unreadable_metrics.contains(key)
                && expected.metrics.get(key) == image.metrics.get(key);
            if same || by_hash.contains_key(key) {
                continue;
            }
            let kind = if expected.torrents.contains_key(key) {
                DriftKind::Changed
            } else {
                DriftKind::Extra
            };
            by_hash.insert(
                key.clone(),
                TorrentDrift {
                    info_hash: key.clone(),
                    kind,
                    field: Some("metrics".into()),
                },
            );
        }
        torrents = by_hash.into_values().collect();
    }
    let session = compare_option(
        expected.session.as_ref(),
        image.session.as_ref(),
        first_difference,
    );
    Ok(finish(
        "sqlite", path, seq, &state, torrents, session, started,
    ))
}

fn check_files(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    states: &mut States,
) -> Result<ProjectionCheck> {
    let started = Instant::now();
    let read = FileProjection::inspect(Arc::clone(storage), dir, true);
    let (checkpoint, view) = match read_or_verdict("files", dir, started, read) {
        Ok(Some((checkpoint, _, view))) => (checkpoint, view),
        Ok(None) => {
            let why = "no checkpoint.json".to_owned();
            return Ok(verdict_only(
                "files",
                dir,
                None,
                Verdict::Damaged,
                why,
                started,
            ));
        }
        Err(check) => return Ok(*check),
    };
    let seq = Some(checkpoint.seq);
    let state = match states
        .at(checkpoint)?
        .or_verdict("files", dir, seq, started)
    {
        Ok(state) => state,
        Err(check) => return Ok(*check),
    };
    let expected = FileView::of_state(&state)?;
    let (torrents, session) = compare_views(&expected, &view);
    Ok(finish(
        "files", dir, seq, &state, torrents, session, started,
    ))
}

fn finish(
    projection: &'static str,
    path: &Path,
    checkpoint_seq: Option<u64>,
    state: &State,
    torrents: Vec<TorrentDrift>,
    session: Option<FieldDrift>,
    started: Instant,
) -> ProjectionCheck {
    let verdict = if torrents.is_empty() && session.is_none() {
        Verdict::Clean
    } else {
        Verdict::Drifted
    };
    ProjectionCheck {
        projection,
        path: path.to_path_buf(),
        checkpoint_seq,
        verdict,
        detail: None,
        torrents_expected: state.torrents.len(),
        torrents,
        session,
        check_ms: millis(started),
        repair: None,
    }
}

/// Torrents of a file view that differ from the expected one, and the session's difference.
fn compare_views(
    expected: &FileView,
    actual: &FileView,
) -> (Vec<TorrentDrift>, Option<FieldDrift>) {
    let hex = |m: &BTreeMap<crate::model::InfoHash, Value>| -> BTreeMap<String, Value> {
        m.iter().map(|(h, v)| (h.to_hex(), v.clone())).collect()
    };
    let mut by_hash: BTreeMap<String, TorrentDrift> =
        compare_maps(&hex(&expected.torrents), &hex(&actual.torrents), |e, a| {
            first_json_difference(e, a)
        })
        .into_iter()
        .map(|d| (d.info_hash.clone(), d))
        .collect();
    for info_hash in expected.metadata.keys().chain(actual.metadata.keys()) {
        let key = info_hash.to_hex();
        if by_hash.contains_key(&key)
            || expected.metadata.get(info_hash) == actual.metadata.get(info_hash)
        {
            continue;
        }
        let kind = match (
            expected.metadata.contains_key(info_hash),
            actual.metadata.contains_key(info_hash),
        ) {
            (true, false) => DriftKind::Missing,
            (false, true) => DriftKind::Extra,
            _ => DriftKind::Changed,
        };
        let kind = if expected.torrents.contains_key(info_hash) || kind == DriftKind::Extra {
            kind
        } else {
            DriftKind::Changed
        };
        by_hash.insert(
            key.clone(),
            TorrentDrift {
                info_hash: key,
                kind,
                field: Some("metadata".into()),
            },
        );
    }
    let session = compare_option(
        expected.session.as_ref(),
        actual.session.as_ref(),
        first_json_difference,
    );
    (by_hash.into_values().collect(), session)
}

/// Entries of two maps that differ, in key order; `differ` names the first differing field.
fn compare_maps<V>(
    expected: &BTreeMap<String, V>,
    actual: &BTreeMap<String, V>,
    differ: impl Fn(&V, &V) -> Option<String>,
) -> Vec<TorrentDrift> {
    let mut out = Vec::new();
    for (key, want) in expected {
        match actual.get(key) {
            None => out.push(TorrentDrift {
                info_hash: key.clone(),
                kind: DriftKind::Missing,
                field: None,
            }),
            Some(have) => {
                if let Some(field) = differ(want, have) {
                    out.push(TorrentDrift {
                        info_hash: key.clone(),
                        kind: DriftKind::Changed,
                        field: Some(field),
                    });
                }
            }
        }
    }
    for key in actual.keys().filter(|k| !expected.contains_key(*k)) {
        out.push(TorrentDrift {
            info_hash: key.clone(),
            kind: DriftKind::Extra,
            field: None,
        });
    }
    out.sort_by(|a, b| a.info_hash.cmp(&b.info_hash));
    out
}

fn compare_option<V>(
    expected: Option<&V>,
    actual: Option<&V>,
    differ: impl Fn(&V, &V) -> Option<String>,
) -> Option<FieldDrift> {
    match (expected, actual) {
        (None, None) => None,
        (Some(_), None) => Some(FieldDrift {
            kind: DriftKind::Missing,
            field: None,
        }),
        (None, Some(_)) => Some(FieldDrift {
            kind: DriftKind::Extra,
            field: None,
        }),
        (Some(e), Some(a)) => differ(e, a).map(|field| FieldDrift {
            kind: DriftKind::Changed,
            field: Some(field),
        }),
    }
}

#[cfg(feature = "sqlite")]
/// The first field (in the expected order, then the actual one's extras) that differs.
fn first_difference(expected: &Fields, actual: &Fields) -> Option<String> {
    let have: HashMap<&str, &Value> = actual.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let want: HashMap<&str, &Value> = expected.iter().map(|(k, v)| (k.as_str(), v)).collect();
    expected
        .iter()
        .find(|(k, v)| have.get(k.as_str()) != Some(&v))
        .or_else(|| actual.iter().find(|(k, _)| !want.contains_key(k.as_str())))
        .map(|(k, _)| k.clone())
}

/// The first key (sorted) of two JSON objects that differs; `""` for non-objects that differ.
fn first_json_difference(expected: &Value, actual: &Value) -> Option<String> {
    if expected == actual {
        return None;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut keys: Vec<&String> = e.keys().chain(a.keys()).collect();
            keys.sort();
            keys.into_iter()
                .find(|k| e.get(*k) != a.get(*k))
                .cloned()
                .or_else(|| Some(String::new()))
        }
        _ => Some(String::new()),
    }
}

#[cfg(feature = "sqlite")]
/// The store's cheap check at open of the SQLite projection at `path` against `state` (the
/// reducer's, at the projection's checkpoint): counts and a digest of the columns
/// (`sqlite::read_summary`; the `data` JSON is not read). `Some(why)` on drift.
pub(crate) fn quick_drift_sqlite(
    path: &Path,
    options: &SqliteOptions,
    state: &State,
) -> Result<Option<String>> {
    let metrics = options.metrics_retention.is_none();
    let have = sqlite_projection::read_summary(path, metrics)?;
    let want = sqlite_projection::expected_summary(state, metrics);
    if have == want {
        return Ok(None);
    }
    Ok(Some(format!(
        "drift: {} torrent row(s), {:?} metrics row(s), session {} (the journal: {}, {:?}, {}); \
         digest {}",
        have.torrents,
        have.metrics,
        have.session,
        want.torrents,
        want.metrics,
        want.session,
        if have.digest == want.digest {
            "equal"
        } else {
            "differs"
        }
    )))
}

/// The store's cheap check at open of the file projection in `dir` against `state`: the
/// torrent files' JSON and `session.json` compared, metadata files by presence only (not
/// read). `Some(why)` on drift.
pub(crate) fn quick_drift_files(
    storage: Arc<dyn Storage>,
    dir: &Path,
    state: &State,
) -> Result<Option<String>> {
    let Some((checkpoint, _, view)) = FileProjection::inspect(storage, dir, false)? else {
        return Ok(Some("no checkpoint.json".into()));
    };
    if checkpoint.seq != state.last_seq {
        return Ok(None);
    }
    let mut expected = FileView::of_state(state)?;
    expected.metadata.values_mut().for_each(Vec::clear);
    let (torrents, session) = compare_views(&expected, &view);
    if torrents.is_empty() && session.is_none() {
        return Ok(None);
    }
    Ok(Some(format!(
        "drift: {} torrent(s) differ{}",
        torrents.len(),
        if session.is_some() {
            ", and the session configuration"
        } else {
            ""
        }
    )))
}
