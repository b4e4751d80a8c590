//! The file projection: go-i2p-bt's file persistence layout in a directory `D`, kept equal to
//! folding the journal through the reducer ([`crate::state::apply`]).
//!
//! # What it owns
//!
//! Everything under `D`, which nothing else should write:
//!
//! * `D/torrents/<hex>.json` — one torrent, [`TorrentState::to_go_file_json_pretty`]: byte for
//!   byte what Go's file persistence writes (the keys Go writes — no metainfo, error, rates, eta,
//!   peer counts or peers — sorted, with Go's floats, escaping and times). Files in the form
//!   written before (Go's struct order, `null` start date) are read too, and rewritten in Go's
//!   form when their torrent next changes;
//! * `D/metadata/<hex>.torrent` — the raw bencoded metainfo, for torrents that carry one;
//! * `D/session.json` — the [`SessionConfiguration`] as Go's `MarshalIndent` writes it, once one
//!   was saved;
//! * `D/checkpoint.json` — `{"format": 1, "seq": N, "at": "<rfc3339>", "shard": bool}`: the last
//!   event the files reflect, and the layout they are in.
//!
//! With [`FileProjectionOptions::shard`], torrent files live one level down, in a directory named
//! after the first byte of the info hash (`torrents/ab/ab….json`, `metadata/ab/ab….torrent`).
//! File names are always [`InfoHash::to_hex`], never user-supplied text. Metrics are not kept
//! (Go's file layout has none): metrics events only advance the checkpoint. Every file-system
//! effect goes through the [`Storage`] seam.
//!
//! # Durability order of a batch
//!
//! The batch is first folded in memory, so each path is written at most once, with its final
//! content, and only when that content differs from what is on disk. Then:
//!
//! 1. **metadata files**: each written to `<file>.tmp`, fsynced, renamed over `<file>`; removed
//!    ones deleted; then every touched metadata directory fsynced once;
//! 2. **torrent files and `session.json`**: the same, then every touched directory fsynced once;
//! 3. **`checkpoint.json`**, last, by `write_atomic`.
//!
//! # Why a crash at any point is harmless
//!
//! A crash leaves each path either at its old or at its new content (never torn: renames of
//! fsynced files), the checkpoint at the old seq, and — thanks to the phase order — a torrent's
//! new JSON only if its metadata file is new too. Reopening rebuilds the in-memory mirror from
//! those files and the caller replays the batch from the old checkpoint. For every torrent, the
//! replay ends with the right files whatever mix it starts from:
//!
//! * if the batch `put`s or removes the torrent (added / started / stopped / completed / saved /
//!   removed / deleted, and metadata or error for a torrent that is not stored), everything after
//!   that event ignores the starting state;
//! * otherwise the batch only *attaches metadata* (sets `meta_info` if the snapshot has one; sets
//!   `files`, `priorities`, `wanted` while the stored `files` is empty) or *records errors* (not
//!   in the files) on a stored torrent. Starting from the new JSON + new metadata (the fully
//!   applied batch), each attach sets what it already set and the "files still empty" test still
//!   holds exactly when it held before: the batch is idempotent. Starting from the old JSON + new
//!   metadata, the JSON part is the original starting point and the metadata is either set again
//!   by a later attach or was unchanged by the batch. The remaining mix — new JSON, old metadata
//!   — would *not* be repaired (a metadata or error event that creates a torrent from a snapshot
//!   with metainfo, followed by nothing that rewrites it: the replay sees a stored torrent and
//!   keeps its missing metainfo); phase 1 before phase 2 is what rules it out.
//!
//! The same holds after an I/O error inside [`Projection::apply`]: the projection reloads itself
//! from the files (as a reopen would) before its next batch. A metadata file without its torrent
//! file (left by a crash in phase 1 of a batch that adds the torrent) and stray `*.tmp` files are
//! deleted on open. [`Projection::reset`] writes checkpoint 0 *before* deleting files, and opening
//! at checkpoint 0 deletes any files found, so an interrupted reset finishes on the next open.
//!
//! # Why the mirror may be rebuilt from the files
//!
//! To apply a metadata event to a stored torrent the projection needs that torrent's state, which
//! it keeps in memory (a mirror: the file-visible fields only) and rebuilds on open from the
//! JSON files. The files lack `meta_info` (kept as "present or not", the bytes stay on disk),
//! `error` and the live figures, but no reducer rule lets those influence what the files say:
//! puts replace the whole torrent, removals drop it, attaching metadata reads only the stored
//! `files` (in the file) and keeps the stored `meta_info` when the snapshot has none (tracked by
//! a sentinel), and errors change only `error`. So the file view of `apply(mirror, e)` equals the
//! file view of `apply(full state, e)` for every event. Floats are re-read from the file text,
//! so the mirror holds exactly what a reader of the file gets (Go's float text included).
//!
//! One writer per directory: the projection takes no lock (its owner is expected to hold the
//! journal's). Directory and file permission modes are whatever the process umask gives; the
//! storage seam has no way to set them yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use tracing::{debug, warn};

use super::{Checkpoint, Projection, check_batch};
use crate::error::{Error, IoContext, Result};
use crate::event::Envelope;
use crate::model::{InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentState, go_json};
use crate::state::{self, Needs, State};
use crate::storage::{Storage, parent_dir, tmp_path};

const TORRENTS_DIR: &str = "torrents";
const METADATA_DIR: &str = "metadata";
const SESSION_FILE: &str = "session.json";
const CHECKPOINT_FILE: &str = "checkpoint.json";
const TORRENT_EXT: &str = ".json";
const METADATA_EXT: &str = ".torrent";
const TMP_EXT: &str = ".tmp";
/// The `format` of `checkpoint.json` this build writes and reads.
const CHECKPOINT_FORMAT: u64 = 1;

/// Options of a [`FileProjection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileProjectionOptions {
    /// Put each torrent's files in a subdirectory named after the first two hex characters of
    /// its info hash (`torrents/ab/ab….json`), which keeps directories small with many
    /// torrents. Go's layout is flat (`false`, the default). Opening a directory written with
    /// the other setting discards its files (the caller then rebuilds from the journal).
    pub shard: bool,
    /// Permission bits of the directories it creates (0755 by default, as the seed advises).
    pub dir_mode: u32,
    /// Permission bits of the files it writes (0644 by default); e.g. 0600 for stricter.
    pub file_mode: u32,
}

impl Default for FileProjectionOptions {
    fn default() -> Self {
        Self {
            shard: false,
            dir_mode: 0o755,
            file_mode: 0o644,
        }
    }
}

/// What the files of a file projection say (or should say): the parsed JSON of each
/// `torrents/<hex>.json`, the bytes of each `metadata/<hex>.torrent`, and the parsed
/// `session.json`. Serializes with the metadata as base64.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileView {
    /// Torrents, by info hash.
    pub torrents: BTreeMap<InfoHash, Value>,
    #[serde(serialize_with = "serialize_metadata")]
    /// Metainfo (`.torrent`) bytes, by info hash.
    pub metadata: BTreeMap<InfoHash, Vec<u8>>,
    /// The session configuration, if one was saved.
    pub session: Option<Value>,
}

fn serialize_metadata<S: Serializer>(
    metadata: &BTreeMap<InfoHash, Vec<u8>>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    use base64::Engine as _;
    serializer.collect_map(
        metadata
            .iter()
            .map(|(h, bytes)| (h, base64::engine::general_purpose::STANDARD.encode(bytes))),
    )
}

impl FileView {
    /// What the files should contain for a reducer state. JSON values are obtained by parsing
    /// the exact bytes the projection writes, the way [`FileProjection::read_view`] parses what
    /// it reads, so the two compare equal exactly when the files are right.
    pub fn of_state(state: &State) -> Result<FileView> {
        let mut view = FileView::default();
        for (info_hash, torrent) in &state.torrents {
            let bytes = torrent.to_go_file_json_pretty()?;
            view.torrents
                .insert(*info_hash, parse_value(&bytes).map_err(Error::Encode)?);
            if let Some(meta) = &torrent.meta_info {
                view.metadata.insert(*info_hash, meta.raw.clone());
            }
        }
        if let Some(config) = &state.session {
            view.session = Some(parse_value(&session_bytes(config)?).map_err(Error::Encode)?);
        }
        Ok(view)
    }
}

/// The file projection; see the [module docs](self).
pub struct FileProjection {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: FileProjectionOptions,
    /// Keys the digests (random per process, so file contents cannot be crafted to collide).
    hasher: RandomState,
    /// Stands for "the metainfo in the metadata file on disk" in mirror states.
    sentinel: MetaInfo,
    checkpoint: Checkpoint,
    /// The mirror: every torrent the files hold, file-visible fields only.
    torrents: BTreeMap<InfoHash, Stored>,
    /// Digest of `session.json` as on disk.
    session: Option<Digest>,
    /// Shard directories known to exist.
    shard_dirs: BTreeSet<PathBuf>,
    /// The files may differ from the mirror (after a failed write): reload before applying.
    stale: bool,
}

/// One torrent of the mirror.
#[derive(Debug, Clone)]
struct Stored {
    /// The file-visible state; `meta_info` is the sentinel when a metadata file exists.
    state: Arc<TorrentState>,
    /// Digest of the torrent's JSON file as on disk.
    json: Digest,
    meta: MetaFile,
}

/// What is known of a torrent's metadata file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MetaFile {
    Absent,
    /// Present; not read yet (opening does not read metainfo, which can be large).
    Unread,
    Known(Digest),
}

/// Length and keyed hash of a file's bytes, to skip rewriting unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Digest {
    len: usize,
    hash: u64,
}

/// `checkpoint.json`.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointFile {
    format: u64,
    seq: u64,
    at: Timestamp,
    #[serde(default)]
    shard: bool,
}

/// The files found under `torrents/` or `metadata/` in the current layout.
#[derive(Debug, Default)]
struct Scan {
    files: BTreeMap<InfoHash, PathBuf>,
    tmp: Vec<PathBuf>,
    shard_dirs: Vec<PathBuf>,
}

/// A batch folded in memory: what to write, and the mirror afterwards.
#[derive(Debug, Default)]
struct Plan {
    /// Metadata files to write (`Some`) or remove (`None`).
    metadata: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// Torrent files to write (`Some`) or remove (`None`).
    torrents: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// New `session.json` content.
    session: Option<(Vec<u8>, Digest)>,
    /// Mirror entries to replace (`Some`) or drop (`None`).
    entries: Vec<(InfoHash, Option<Stored>)>,
}

impl fmt::Debug for FileProjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileProjection")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("checkpoint", &self.checkpoint)
            .field("torrents", &self.torrents.len())
            .field("stale", &self.stale)
            .finish_non_exhaustive()
    }
}

impl FileProjection {
    /// Opens (creating if needed) the file projection in `dir`.
    ///
    /// A missing `checkpoint.json` in an empty directory starts at seq 0. A directory written
    /// with the other [`shard`](FileProjectionOptions::shard) setting is emptied (seq 0, with a
    /// warning). Files this projection cannot have written — an unreadable `checkpoint.json` or
    /// torrent file, or torrent files without a `checkpoint.json` (say, a go-i2p-bt data
    /// directory) — are an [`Error::ProjectionDamaged`] naming the file and nothing is deleted
    /// (the store moves the directory aside and rebuilds); use
    /// [`FileProjection::open_empty`] to discard them and rebuild.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        options: FileProjectionOptions,
    ) -> Result<FileProjection> {
        let mut projection = FileProjection::new(storage, dir.into(), options);
        projection.load()?;
        Ok(projection)
    }

    /// Opens the file projection in `dir` discarding whatever it holds: checkpoint 0, no files
    /// (the rebuild path after [`FileProjection::open`] refused a damaged directory).
    pub fn open_empty(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        options: FileProjectionOptions,
    ) -> Result<FileProjection> {
        let mut projection = FileProjection::new(storage, dir.into(), options);
        projection.reset()?;
        Ok(projection)
    }

    fn new(storage: Arc<dyn Storage>, dir: PathBuf, options: FileProjectionOptions) -> Self {
        let hasher = RandomState::new();
        let mut sentinel = b"\xfftorrent-journal: metainfo on disk ".to_vec();
        sentinel.extend_from_slice(&hasher.hash_one(&dir).to_le_bytes());
        sentinel.extend_from_slice(&RandomState::new().hash_one(0u8).to_le_bytes());
        FileProjection {
            storage,
            dir,
            options,
            hasher,
            sentinel: MetaInfo::new(sentinel),
            checkpoint: Checkpoint::default(),
            torrents: BTreeMap::new(),
            session: None,
            shard_dirs: BTreeSet::new(),
            stale: true,
        }
    }

    /// The projection's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The options it was opened with.
    pub fn options(&self) -> FileProjectionOptions {
        self.options
    }

    /// Number of torrents the files hold.
    pub fn len(&self) -> usize {
        self.torrents.len()
    }

    /// Whether the files hold no torrent.
    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }

    /// Where a torrent's JSON file lives (whether or not it exists).
    pub fn torrent_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.layout_dir(TORRENTS_DIR, info_hash)
            .join(format!("{}{TORRENT_EXT}", info_hash.to_hex()))
    }

    /// Where a torrent's `.torrent` file lives (whether or not it exists).
    pub fn metadata_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.layout_dir(METADATA_DIR, info_hash)
            .join(format!("{}{METADATA_EXT}", info_hash.to_hex()))
    }

    /// Where the session configuration lives.
    pub fn session_path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// What the files contain, read back through the storage.
    pub fn read_view(&self) -> Result<FileView> {
        self.read_view_with(true)
    }

    /// [`FileProjection::read_view`], reading metadata files only when `metadata`.
    fn read_view_with(&self, metadata: bool) -> Result<FileView> {
        let mut view = FileView::default();
        for (info_hash, path) in self.scan(TORRENTS_DIR, TORRENT_EXT)?.files {
            let bytes = self.storage.read_file(&path).ctx("read", &path)?;
            let value = parse_value(&bytes).map_err(|reason| damaged(&path, reason))?;
            view.torrents.insert(info_hash, value);
        }
        for (info_hash, path) in self.scan(METADATA_DIR, METADATA_EXT)?.files {
            let bytes = if metadata {
                self.storage.read_file(&path).ctx("read", &path)?
            } else {
                Vec::new()
            };
            view.metadata.insert(info_hash, bytes);
        }
        let path = self.session_path();
        if self.storage.exists(&path) {
            let bytes = self.storage.read_file(&path).ctx("read", &path)?;
            view.session = Some(parse_value(&bytes).map_err(|reason| damaged(&path, reason))?);
        }
        Ok(view)
    }

    /// Reads the projection in `dir` without changing anything (no directory created, no
    /// stray file deleted): its checkpoint, its options (the layout `checkpoint.json` names)
    /// and what its files say. `None` when there is no `checkpoint.json`. With `metadata`
    /// false, metadata files are listed but not read (their bytes are left empty).
    pub fn inspect(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        metadata: bool,
    ) -> Result<Option<(Checkpoint, FileProjectionOptions, FileView)>> {
        let mut projection =
            FileProjection::new(storage, dir.into(), FileProjectionOptions::default());
        let Some(file) = projection.read_checkpoint_file()? else {
            return Ok(None);
        };
        projection.options.shard = file.shard;
        let checkpoint = Checkpoint {
            seq: file.seq,
            at: file.at,
        };
        let view = projection.read_view_with(metadata)?;
        Ok(Some((checkpoint, projection.options, view)))
    }

    /// Every file under the directory — path relative to it, `/`-separated — with its bytes,
    /// sorted by path (for snapshot tests and debugging).
    pub fn tree_listing(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut listing = Vec::new();
        for path in self.walk(&self.dir)? {
            let bytes = self.storage.read_file(&path).ctx("read", &path)?;
            let relative = path.strip_prefix(&self.dir).unwrap_or(&path);
            let name = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            listing.push((name, bytes));
        }
        listing.sort();
        Ok(listing)
    }

    // ---- layout -------------------------------------------------------------------------

    fn layout_dir(&self, root: &str, info_hash: &InfoHash) -> PathBuf {
        let dir = self.dir.join(root);
        if self.options.shard {
            dir.join(info_hash.shard_prefix())
        } else {
            dir
        }
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// Lists the layout's files under `root` (no side effects). Files that do not belong to the
    /// layout are ignored with a warning; `*.tmp` files are reported for removal.
    fn scan(&self, root: &str, ext: &str) -> Result<Scan> {
        let root = self.dir.join(root);
        let mut scan = Scan::default();
        for name in self.list_sorted(&root)? {
            let path = root.join(&name);
            if !self.storage.is_dir(&path) {
                self.classify(&mut scan, path, &name, ext, None);
            } else if self.options.shard && is_shard_name(&name) {
                for inner in self.list_sorted(&path)? {
                    let file = path.join(&inner);
                    if self.storage.is_dir(&file) {
                        warn!(path = %file.display(), "ignoring a directory outside the layout");
                    } else {
                        self.classify(&mut scan, file, &inner, ext, Some(&name));
                    }
                }
                scan.shard_dirs.push(path);
            } else {
                debug!(path = %path.display(), "ignoring a directory of the other layout");
            }
        }
        Ok(scan)
    }

    /// Files the layout puts at `path`: `<hex><ext>` at the top (flat) or in the shard directory
    /// of its first byte (sharded).
    fn classify(&self, scan: &mut Scan, path: PathBuf, name: &str, ext: &str, shard: Option<&str>) {
        if name.ends_with(TMP_EXT) {
            scan.tmp.push(path);
            return;
        }
        let info_hash = name
            .strip_suffix(ext)
            .and_then(|hex| InfoHash::parse(hex).ok().filter(|h| h.to_hex() == hex));
        match info_hash {
            Some(h) if shard == self.options.shard.then(|| h.shard_prefix()) => {
                scan.files.insert(h, path);
            }
            _ => {
                warn!(path = %path.display(), "ignoring a file outside the layout")
            }
        }
    }

    fn list_sorted(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = self.storage.list_dir(dir).ctx("list", dir)?;
        names.sort();
        Ok(names)
    }

    /// Every file under `dir`, recursively.
    fn walk(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for name in self.list_sorted(&dir)? {
                let path = dir.join(name);
                if self.storage.is_dir(&path) {
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        Ok(files)
    }

    // ---- loading ------------------------------------------------------------------------

    /// (Re)builds the mirror and checkpoint from the files; see [`FileProjection::open`]. On
    /// failure the projection stays stale and keeps its last known checkpoint.
    fn load(&mut self) -> Result<()> {
        self.stale = true;
        self.torrents.clear();
        self.session = None;
        self.shard_dirs.clear();
        self.ensure_dirs()?;
        let checkpoint = match self.read_checkpoint_file()? {
            None => {
                if let Some(path) = self.content_files()?.first() {
                    return Err(damaged(
                        path,
                        format!(
                            "{} has files but no {CHECKPOINT_FILE}, so it is not a torrent-journal \
                             file projection (a go-i2p-bt data directory?)",
                            self.dir.display()
                        ),
                    ));
                }
                self.clear_files()?;
                self.write_checkpoint(Checkpoint::default())?;
                Checkpoint::default()
            }
            Some(file) if file.shard != self.options.shard => {
                warn!(
                    dir = %self.dir.display(),
                    shard = self.options.shard,
                    "written with the other shard setting; discarding it"
                );
                self.reset_files()?;
                Checkpoint::default()
            }
            Some(file) if file.seq == 0 => {
                // An empty projection; files here are left by an interrupted reset or first batch.
                self.clear_files()?;
                Checkpoint {
                    seq: 0,
                    at: file.at,
                }
            }
            Some(file) => {
                self.load_files()?;
                Checkpoint {
                    seq: file.seq,
                    at: file.at,
                }
            }
        };
        self.checkpoint = checkpoint;
        self.stale = false;
        Ok(())
    }

    /// Creates `D`, `D/torrents` and `D/metadata` if needed, making their entries durable.
    fn ensure_dirs(&self) -> Result<()> {
        let torrents = self.dir.join(TORRENTS_DIR);
        let metadata = self.dir.join(METADATA_DIR);
        if self.storage.is_dir(&torrents) && self.storage.is_dir(&metadata) {
            return Ok(());
        }
        for dir in [&self.dir, &torrents, &metadata] {
            self.storage
                .create_dir_all(dir)
                .ctx("create directory", dir)?;
            self.storage
                .set_mode(dir, self.options.dir_mode)
                .ctx("chmod", dir)?;
        }
        self.storage.sync_dir(&self.dir).ctx("fsync", &self.dir)?;
        let parent = parent_dir(&self.dir);
        self.storage.sync_dir(parent).ctx("fsync", parent)
    }

    fn read_checkpoint_file(&self) -> Result<Option<CheckpointFile>> {
        let path = self.checkpoint_path();
        let bytes = match self.storage.read_file(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).ctx("read", &path),
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| damaged(&path, format!("not JSON: {e}")))?;
        let format = value.get("format").and_then(Value::as_u64);
        if format != Some(CHECKPOINT_FORMAT) {
            return Err(match format {
                Some(found) => Error::UnsupportedVersion {
                    path,
                    found: u8::try_from(found).unwrap_or(u8::MAX),
                    supported: CHECKPOINT_FORMAT as u8,
                },
                None => damaged(&path, "no numeric \"format\""),
            });
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| damaged(&path, e))
    }

    /// Torrent, metadata and session files present (in any layout), `*.tmp` files excepted.
    fn content_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for root in [TORRENTS_DIR, METADATA_DIR] {
            files.extend(
                self.walk(&self.dir.join(root))?
                    .into_iter()
                    .filter(|p| !is_tmp(p)),
            );
        }
        let session = self.session_path();
        if self.storage.exists(&session) {
            files.push(session);
        }
        Ok(files)
    }

    /// Reads the torrent files into the mirror; deletes `*.tmp` files and orphaned metadata.
    fn load_files(&mut self) -> Result<()> {
        let torrents = self.scan(TORRENTS_DIR, TORRENT_EXT)?;
        let metadata = self.scan(METADATA_DIR, METADATA_EXT)?;
        let mut garbage: Vec<PathBuf> = torrents.tmp.into_iter().chain(metadata.tmp).collect();
        for name in [SESSION_FILE, CHECKPOINT_FILE] {
            let tmp = tmp_path(&self.dir.join(name));
            if self.storage.exists(&tmp) {
                garbage.push(tmp);
            }
        }
        for (info_hash, path) in &torrents.files {
            let bytes = self.storage.read_file(path).ctx("read", path)?;
            let mut state = decode_torrent(&bytes).map_err(|reason| damaged(path, reason))?;
            if state.info_hash != *info_hash {
                return Err(damaged(
                    path,
                    format!("holds torrent {}, not {info_hash}", state.info_hash),
                ));
            }
            let meta = if metadata.files.contains_key(info_hash) {
                state.meta_info = Some(self.sentinel.clone());
                MetaFile::Unread
            } else {
                MetaFile::Absent
            };
            let stored = Stored {
                state: Arc::new(state),
                json: self.digest(&bytes),
                meta,
            };
            self.torrents.insert(*info_hash, stored);
        }
        for (info_hash, path) in metadata.files {
            if !self.torrents.contains_key(&info_hash) {
                debug!(path = %path.display(), "deleting orphaned metadata");
                garbage.push(path);
            }
        }
        let session = self.session_path();
        if self.storage.exists(&session) {
            let bytes = self.storage.read_file(&session).ctx("read", &session)?;
            serde_json::from_slice::<SessionConfiguration>(&bytes)
                .map_err(|e| damaged(&session, e))?;
            self.session = Some(self.digest(&bytes));
        }
        self.shard_dirs = torrents
            .shard_dirs
            .into_iter()
            .chain(metadata.shard_dirs)
            .collect();
        self.remove_all(&garbage)
    }

    // ---- writing ------------------------------------------------------------------------

    fn digest(&self, bytes: &[u8]) -> Digest {
        Digest {
            len: bytes.len(),
            hash: self.hasher.hash_one(bytes),
        }
    }

    /// Removes files (a missing one is fine), then fsyncs each directory touched once.
    fn remove_all(&self, paths: &[PathBuf]) -> Result<()> {
        let mut dirs = BTreeSet::new();
        for path in paths {
            self.remove_file(path)?;
            dirs.insert(parent_dir(path).to_path_buf());
        }
        self.sync_dirs(&dirs)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        match self.storage.remove_file(path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.ctx("remove", path),
        }
    }

    fn sync_dirs(&self, dirs: &BTreeSet<PathBuf>) -> Result<()> {
        for dir in dirs {
            self.storage.sync_dir(dir).ctx("fsync", dir)?;
        }
        Ok(())
    }

    /// Deletes every torrent, metadata and session file (any layout) and stray `*.tmp` files;
    /// leaves `checkpoint.json`.
    fn clear_files(&self) -> Result<()> {
        let mut files = Vec::new();
        for root in [TORRENTS_DIR, METADATA_DIR] {
            files.extend(self.walk(&self.dir.join(root))?);
        }
        for name in [SESSION_FILE, CHECKPOINT_FILE] {
            let path = self.dir.join(name);
            let tmp = tmp_path(&path);
            if name == SESSION_FILE && self.storage.exists(&path) {
                files.push(path);
            }
            if self.storage.exists(&tmp) {
                files.push(tmp);
            }
        }
        self.remove_all(&files)
    }

    /// Checkpoint 0 first, then the files: a crash in between is finished by the next open.
    fn reset_files(&mut self) -> Result<()> {
        self.write_checkpoint(Checkpoint::default())?;
        self.clear_files()?;
        self.checkpoint = Checkpoint::default();
        self.torrents.clear();
        self.session = None;
        self.shard_dirs.clear();
        Ok(())
    }

    fn write_checkpoint(&self, checkpoint: Checkpoint) -> Result<()> {
        let file = CheckpointFile {
            format: CHECKPOINT_FORMAT,
            seq: checkpoint.seq,
            at: checkpoint.at,
            shard: self.options.shard,
        };
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Encode(format!("{CHECKPOINT_FILE}: {e}")))?;
        bytes.push(b'\n');
        let path = self.checkpoint_path();
        self.write_file(&path, &bytes)?;
        self.storage.sync_dir(&self.dir).ctx("fsync", &self.dir)
    }

    /// `<path>.tmp` → write → fsync → rename (the directory is fsynced by the caller).
    fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = tmp_path(path);
        let mut file = self.storage.create(&tmp).ctx("create", &tmp)?;
        file.write_all(bytes).ctx("write", &tmp)?;
        self.storage
            .set_mode(&tmp, self.options.file_mode)
            .ctx("chmod", &tmp)?;
        file.sync_data().ctx("fsync", &tmp)?;
        drop(file);
        self.storage.rename(&tmp, path).ctx("rename", path)
    }

    /// Creates a shard directory before its first file, making its entry durable.
    fn ensure_shard_dir(&mut self, dir: &Path) -> Result<()> {
        if !self.options.shard || self.shard_dirs.contains(dir) {
            return Ok(());
        }
        self.storage
            .create_dir_all(dir)
            .ctx("create directory", dir)?;
        self.storage
            .set_mode(dir, self.options.dir_mode)
            .ctx("chmod", dir)?;
        let parent = parent_dir(dir);
        self.storage.sync_dir(parent).ctx("fsync", parent)?;
        self.shard_dirs.insert(dir.to_path_buf());
        Ok(())
    }

    /// Writes or removes each file, then fsyncs each directory touched once.
    fn write_phase(
        &mut self,
        files: &[(PathBuf, Option<Vec<u8>>)],
        dirs: &mut BTreeSet<PathBuf>,
    ) -> Result<()> {
        for (path, bytes) in files {
            let dir = parent_dir(path).to_path_buf();
            match bytes {
                Some(bytes) => {
                    self.ensure_shard_dir(&dir)?;
                    self.write_file(path, bytes)?;
                }
                None => self.remove_file(path)?,
            }
            dirs.insert(dir);
        }
        self.sync_dirs(dirs)
    }

    // ---- applying -----------------------------------------------------------------------

    /// Folds the batch through the reducer, starting from the mirror's entries for the torrents
    /// it reads or writes ([`state::needs`]). A torrent only asked about by a metrics sample is
    /// not touched: Go's file layout has no metrics.
    fn fold(&self, batch: &[Envelope]) -> (State, BTreeSet<InfoHash>) {
        let mut scratch = State {
            last_seq: self.checkpoint.seq,
            last_at: self.checkpoint.at,
            ..State::default()
        };
        let mut touched = BTreeSet::new();
        for envelope in batch {
            state::needs(&envelope.event, |info_hash, needs| {
                if needs != Needs::Existence
                    && touched.insert(info_hash)
                    && let Some(stored) = self.torrents.get(&info_hash)
                {
                    scratch
                        .torrents
                        .insert(info_hash, Arc::clone(&stored.state));
                }
            });
            state::apply(&mut scratch, envelope);
        }
        (scratch, touched)
    }

    /// Decides each touched path's final content and whether it differs from the disk.
    fn plan(&self, mut folded: State, touched: BTreeSet<InfoHash>) -> Result<Plan> {
        let mut plan = Plan::default();
        for info_hash in touched {
            let before = self.torrents.get(&info_hash).cloned();
            let before_meta = before.as_ref().map_or(MetaFile::Absent, |b| b.meta);
            let Some(after) = folded.torrents.remove(&info_hash) else {
                if before.is_some() {
                    plan.torrents.push((self.torrent_path(&info_hash), None));
                }
                if before_meta != MetaFile::Absent {
                    plan.metadata.push((self.metadata_path(&info_hash), None));
                }
                plan.entries.push((info_hash, None));
                continue;
            };
            let mut after = Arc::unwrap_or_clone(after);
            let meta = match after.meta_info.take() {
                Some(m) if m == self.sentinel => before_meta,
                None => {
                    if before_meta != MetaFile::Absent {
                        plan.metadata.push((self.metadata_path(&info_hash), None));
                    }
                    MetaFile::Absent
                }
                Some(m) => {
                    let digest = self.digest(&m.raw);
                    let on_disk = match before_meta {
                        MetaFile::Absent => None,
                        MetaFile::Known(d) => Some(d),
                        MetaFile::Unread => self.read_digest(&self.metadata_path(&info_hash)),
                    };
                    if on_disk != Some(digest) {
                        plan.metadata
                            .push((self.metadata_path(&info_hash), Some(m.raw)));
                    }
                    MetaFile::Known(digest)
                }
            };
            strip_to_file_view(&mut after);
            if meta != MetaFile::Absent {
                after.meta_info = Some(self.sentinel.clone());
            }
            let bytes = after.to_go_file_json_pretty()?;
            let json = self.digest(&bytes);
            if before.map(|b| b.json) != Some(json) {
                plan.torrents
                    .push((self.torrent_path(&info_hash), Some(bytes)));
            }
            let stored = Stored {
                state: Arc::new(after),
                json,
                meta,
            };
            plan.entries.push((info_hash, Some(stored)));
        }
        if let Some(config) = &folded.session {
            let bytes = session_bytes(config)?;
            let digest = self.digest(&bytes);
            if self.session != Some(digest) {
                plan.session = Some((bytes, digest));
            }
        }
        Ok(plan)
    }

    /// The digest of a file's bytes, `None` if it cannot be read (it is then rewritten).
    fn read_digest(&self, path: &Path) -> Option<Digest> {
        match self.storage.read_file(path) {
            Ok(bytes) => Some(self.digest(&bytes)),
            Err(err) => {
                debug!(path = %path.display(), %err, "cannot read; rewriting it");
                None
            }
        }
    }

    /// Phases 1–3 of the module docs.
    fn execute(&mut self, plan: &Plan, next: Checkpoint) -> Result<()> {
        let mut dirs = BTreeSet::new();
        self.write_phase(&plan.metadata, &mut dirs)?;
        dirs.clear();
        if let Some((bytes, _)) = &plan.session {
            let path = self.session_path();
            self.write_file(&path, bytes)?;
            dirs.insert(self.dir.clone());
        }
        self.write_phase(&plan.torrents, &mut dirs)?;
        self.write_checkpoint(next)
    }
}

impl Projection for FileProjection {
    fn name(&self) -> &'static str {
        "files"
    }

    fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    fn apply(&mut self, batch: &[Envelope]) -> Result<()> {
        if self.stale {
            self.load()?;
        }
        check_batch(self.name(), self.checkpoint, batch)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let (folded, touched) = self.fold(batch);
        let plan = self.plan(folded, touched)?;
        self.commit(plan, Checkpoint::of(last))
    }

    fn reset(&mut self) -> Result<()> {
        self.stale = true;
        self.ensure_dirs()?;
        self.reset_files()?;
        self.stale = false;
        Ok(())
    }

    fn install(&mut self, state: &State) -> Result<()> {
        // A reset first (checkpoint 0, files gone), then one plan writing every file: a crash
        // in between leaves checkpoint 0, which the caller resolves by installing again.
        self.reset()?;
        let mut folded = state.clone();
        folded.metrics.clear();
        let touched = folded.torrents.keys().copied().collect();
        let plan = self.plan(folded, touched)?;
        let next = Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        };
        self.commit(plan, next)
    }
}

impl FileProjection {
    /// Executes a plan, then moves the mirror and the checkpoint to it.
    fn commit(&mut self, plan: Plan, next: Checkpoint) -> Result<()> {
        if let Err(err) = self.execute(&plan, next) {
            // The files may now be ahead of the mirror: reload them, as a reopen would.
            if let Err(reload) = self.load() {
                let dir = self.dir.display();
                warn!(%dir, %reload, "cannot reload; retrying before the next batch");
            }
            return Err(err);
        }
        for (info_hash, entry) in plan.entries {
            match entry {
                Some(stored) => self.torrents.insert(info_hash, stored),
                None => self.torrents.remove(&info_hash),
            };
        }
        if let Some((_, digest)) = plan.session {
            self.session = Some(digest);
        }
        self.checkpoint = next;
        Ok(())
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// The error for a file this projection cannot use ([`Error::ProjectionDamaged`]); the caller
/// sets the directory aside (or discards it) and rebuilds.
fn damaged(path: &Path, reason: impl fmt::Display) -> Error {
    Error::ProjectionDamaged {
        projection: "files",
        path: path.to_path_buf(),
        reason: format!(
            "{reason}; set the directory aside (or FileProjection::open_empty) and rebuild it \
             from the journal"
        ),
    }
}

fn is_tmp(path: &Path) -> bool {
    path.to_string_lossy().ends_with(TMP_EXT)
}

/// Two lowercase hex characters.
fn is_shard_name(name: &str) -> bool {
    name.len() == 2
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_value(bytes: &[u8]) -> std::result::Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

/// `session.json`: the configuration as Go's `json.MarshalIndent` writes its struct (Go's keys
/// in Go's field order, Go's floats and escaping).
fn session_bytes(config: &SessionConfiguration) -> Result<Vec<u8>> {
    go_json::to_vec_pretty(config).map_err(|e| Error::Encode(format!("{SESSION_FILE}: {e}")))
}

/// Resets the fields Go's torrent file leaves out (except `meta_info`) to what decoding the file
/// gives, so a mirror entry is the same whether it was just written or read back on open.
fn strip_to_file_view(t: &mut TorrentState) {
    t.error = None;
    t.download_rate = 0;
    t.upload_rate = 0;
    t.eta = 0;
    t.peer_count = 0;
    t.peer_connected_count = 0;
    t.peer_sending_count = 0;
    t.peer_receiving_count = 0;
    t.peers = Vec::new();
}

/// The `f64` keys of a torrent file, re-read exactly by [`decode_torrent`].
const FLOAT_KEYS: [&str; 2] = ["percent_done", "seed_ratio_limit"];

/// Decodes a torrent file written by [`TorrentState::to_go_file_json_pretty`] so that encoding
/// the result gives the same bytes: floats are re-parsed from the text with the correctly
/// rounding `str::parse` (serde_json's default float parsing may be one ulp off), and `null`
/// floats (how serde_json writes NaN and infinities) come back as NaN.
fn decode_torrent(bytes: &[u8]) -> std::result::Result<TorrentState, String> {
    let mut value = parse_value(bytes)?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    let mut non_finite = Vec::new();
    for key in FLOAT_KEYS {
        if object.get(key).is_some_and(Value::is_null) {
            object.remove(key);
            non_finite.push(key);
        }
    }
    let mut torrent: TorrentState =
        serde_json::from_value(value).map_err(|e| format!("not a torrent: {e}"))?;
    let exact = |key: &str| {
        if non_finite.contains(&key) {
            Some(f64::NAN)
        } else {
            top_level_number(bytes, key)
        }
    };
    if let Some(x) = exact("percent_done") {
        torrent.percent_done = x;
    }
    if let Some(x) = exact("seed_ratio_limit") {
        torrent.seed_ratio_limit = x;
    }
    Ok(torrent)
}

/// The number after a top-level `"key": ` of pretty-printed JSON (two-space indentation: deeper
/// keys are indented more, and raw newlines never occur inside JSON strings).
fn top_level_number(bytes: &[u8], key: &str) -> Option<f64> {
    let needle = format!("\n  \"{key}\": ");
    let start = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let rest = &bytes[start..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b',' | b'\n' | b'\r' | b' ' | b'}'))
        .unwrap_or(rest.len());
    let x: f64 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::storage::SimStorage;

    fn sample(n: u8) -> TorrentState {
        TorrentState::sample(
            InfoHash::V1([n; 20]),
            &format!("t{n}"),
            Timestamp::from_unix_nanos(1_700_000_000_123_456_789),
        )
    }

    /// The keys [`strip_to_file_view`] resets; must be
    /// [`TorrentState::FILE_PROJECTION_OMITTED_KEYS`] minus `meta_info` (kept as its own file).
    const STRIPPED_KEYS: [&str; 9] = [
        "error",
        "download_rate",
        "upload_rate",
        "eta",
        "peer_count",
        "peer_connected_count",
        "peer_sending_count",
        "peer_receiving_count",
        "peers",
    ];

    #[test]
    fn stripped_keys_are_the_omitted_keys_but_metainfo() {
        let mut omitted: Vec<&str> = TorrentState::FILE_PROJECTION_OMITTED_KEYS
            .iter()
            .copied()
            .filter(|k| *k != "meta_info")
            .collect();
        omitted.sort_unstable();
        let mut stripped = STRIPPED_KEYS.to_vec();
        stripped.sort_unstable();
        assert_eq!(omitted, stripped);
    }

    #[test]
    fn decoding_a_written_file_gives_the_stripped_state_exactly() {
        // Values serde_json's default parser reads back one ulp off.
        for (i, x) in [
            0.9719863718547629,
            0.011935154727148345,
            0.12489148443491327,
            1.0,
            0.0,
        ]
        .into_iter()
        .enumerate()
        {
            let mut t = sample(i as u8);
            t.error = Some("boom".into());
            t.meta_info = Some(MetaInfo::new(b"d4:infod4:name1:xee".to_vec()));
            t.percent_done = x;
            t.seed_ratio_limit = 0.023284434157511358;
            let bytes = t.to_go_file_json_pretty().unwrap();
            let decoded = decode_torrent(&bytes).unwrap();
            assert_eq!(decoded.to_go_file_json_pretty().unwrap(), bytes);
            let mut expected = t.clone();
            strip_to_file_view(&mut expected);
            expected.meta_info = None;
            assert_eq!(decoded, expected);
            assert_eq!(decoded.percent_done.to_bits(), x.to_bits());
        }
    }

    #[test]
    fn non_finite_floats_round_trip_as_null() {
        let mut t = sample(1);
        t.percent_done = f64::NAN;
        t.seed_ratio_limit = f64::INFINITY;
        let bytes = t.to_go_file_json_pretty().unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"percent_done\": null"));
        let decoded = decode_torrent(&bytes).unwrap();
        assert!(decoded.percent_done.is_nan());
        assert_eq!(decoded.to_go_file_json_pretty().unwrap(), bytes);
    }

    #[test]
    fn top_level_number_ignores_nested_keys() {
        let text = b"{\n  \"files\": [\n    {\n      \"percent_done\": 1.5\n    }\n  ],\n  \"percent_done\": 0.25,\n  \"x\": 2\n}";
        assert_eq!(top_level_number(text, "percent_done"), Some(0.25));
        assert_eq!(top_level_number(text, "x"), Some(2.0));
        assert_eq!(top_level_number(text, "missing"), None);
        assert_eq!(top_level_number(b"{\n  \"x\": null\n}", "x"), None);
    }

    #[test]
    fn damaged_torrent_files_are_errors() {
        assert!(decode_torrent(b"").is_err());
        assert!(decode_torrent(b"[1, 2]").is_err());
        assert!(decode_torrent(b"{\"info_hash\": \"nothex\"}").is_err());
    }

    #[test]
    fn shard_names_and_classification() {
        assert!(is_shard_name("0a"));
        assert!(!is_shard_name("0A"));
        assert!(!is_shard_name("0"));
        assert!(!is_shard_name("abc"));
        assert!(!is_shard_name("zz"));

        let storage = Arc::new(SimStorage::new());
        for shard in [false, true] {
            let p = FileProjection::new(
                storage.clone(),
                PathBuf::from("/d"),
                FileProjectionOptions {
                    shard,
                    ..FileProjectionOptions::default()
                },
            );
            let h = InfoHash::V1([0xab; 20]);
            let hex = h.to_hex();
            let mut scan = Scan::default();
            let good = format!("{hex}.json");
            p.classify(
                &mut scan,
                p.torrent_path(&h),
                &good,
                TORRENT_EXT,
                shard.then_some("ab"),
            );
            p.classify(
                &mut scan,
                "/d/x".into(),
                &good,
                TORRENT_EXT,
                Some(if shard { "cd" } else { "ab" }),
            );
            let upper = format!("{}.json", hex.to_uppercase());
            p.classify(&mut scan, "/d/y".into(), &upper, TORRENT_EXT, None);
            p.classify(&mut scan, "/d/z".into(), "notes.txt", TORRENT_EXT, None);
            p.classify(
                &mut scan,
                "/d/t".into(),
                &format!("{good}.tmp"),
                TORRENT_EXT,
                None,
            );
            assert_eq!(scan.files.len(), 1, "shard {shard}");
            assert_eq!(scan.files[&h], p.torrent_path(&h));
            assert_eq!(scan.tmp, vec![PathBuf::from("/d/t")]);
            let expected = if shard {
                format!("/d/torrents/ab/{hex}.json")
            } else {
                format!("/d/torrents/{hex}.json")
            };
            assert_eq!(p.torrent_path(&h), PathBuf::from(expected));
        }
    }

    #[test]
    fn checkpoint_file_shape() {
        let storage = Arc::new(SimStorage::new());
        let mut p =
            FileProjection::open(storage.clone(), "/d", FileProjectionOptions::default()).unwrap();
        let at = Timestamp::from_unix_nanos(1_714_564_800_000_000_000);
        let event = Event::TorrentDeleted {
            info_hash: InfoHash::V1([1; 20]),
        };
        p.apply(&[Envelope::new(1, at, event)]).unwrap();
        let bytes = storage.file_bytes(Path::new("/d/checkpoint.json")).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"format": 1, "seq": 1, "at": "2024-05-01T12:00:00Z", "shard": false})
        );
        assert!(bytes.ends_with(b"}\n"));
    }
}
