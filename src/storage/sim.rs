//! A simulated file system for crash and fault tests: it remembers what was made durable.
//!
//! File contents become durable only through `sync_data`; directory entries (creations, renames,
//! removals) only through `sync_dir` of their parent. [`SimStorage::crash`] returns the image a
//! power cut would leave: unsynced bytes dropped (or replaced by zeros or garbage), unsynced names
//! reverted. Faults ([`Fault`]) fail the n-th operation of a kind with EIO or ENOSPC, once or
//! persistently. Directories themselves are durable as soon as they are created (a simplification:
//! the journal creates its directories once, before any data).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{LockGuard, ReadFile, Storage, StorageFile};

/// The mutating operations the simulator counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Creating a file.
    Create,
    /// Writing to a file.
    Write,
    /// `fdatasync` of a file.
    Sync,
    /// Truncating or extending a file.
    SetLen,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// fsync of a directory.
    SyncDir,
}

/// The error an injected fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`: the device failed.
    Eio,
    /// `ENOSPC`: the device is full.
    Enospc,
}

/// Fails the `nth` (1-based) operation of kind `op` (any kind when `None`).
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// Only calls of this kind count (any, if `None`).
    pub op: Option<OpKind>,
    /// Fails the n-th matching call (0: the next one).
    pub nth: u64,
    /// What the failing call does.
    pub kind: FaultKind,
    /// Keep failing every later matching operation too (a dead disk rather than a glitch).
    pub persistent: bool,
}

/// What a crash leaves of the bytes written to a file since its last sync (appended, or
/// overwriting synced bytes in place, as in a preallocated segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashFill {
    /// Unsynced bytes are gone: appended ones cut, overwritten ones back to their synced value.
    Drop,
    /// Unsynced bytes read back as zeros (the file kept its length).
    Zeros,
    /// Unsynced bytes read back as pseudo-random garbage from this seed.
    Garbage(u64),
}

#[derive(Debug, Default, Clone)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// The span written since the last sync (overwrites in place included), if any.
    unsynced: Option<std::ops::Range<usize>>,
}

impl FileData {
    fn synced(bytes: Vec<u8>) -> Self {
        Self {
            current: bytes.clone(),
            durable: bytes,
            unsynced: None,
        }
    }

    fn wrote(&mut self, span: std::ops::Range<usize>) {
        self.unsynced = Some(match self.unsynced.take() {
            Some(old) => old.start.min(span.start)..old.end.max(span.end),
            None => span,
        });
    }
}

#[derive(Debug, Default)]
struct SimState {
    next_id: u64,
    contents: HashMap<u64, FileData>,
    names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    modes: BTreeMap<PathBuf, u32>,
    ops_total: u64,
    ops_by_kind: HashMap<OpKind, u64>,
    faults: Vec<Fault>,
    crash_after_ops: Option<u64>,
}

/// A read handle: it names the file's contents, not its path, so it keeps reading a removed
/// file as a POSIX descriptor does.
#[derive(Debug)]
struct SimReadFile {
    state: Arc<Mutex<SimState>>,
    id: u64,
}

impl ReadFile for SimReadFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.contents.get(&self.id).map_or_else(
            || Err(io::Error::from(io::ErrorKind::NotFound)),
            |data| Ok(data.current.clone()),
        )
    }
}

/// An in-memory file system that can crash. Clones share the same state.
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<SimState>>,
}

impl SimStorage {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A panic while holding the lock is a test failure already; keep the state readable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many mutating operations have been attempted so far (not counting those refused
    /// after a simulated crash).
    pub fn op_count(&self) -> u64 {
        self.lock().ops_total
    }

    /// Adds a fault to inject.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// After `ops` more mutating operations, every later one fails with EIO, as if
    /// the machine lost power at that instant.
    pub fn crash_after(&self, ops: u64) {
        let mut state = self.lock();
        state.crash_after_ops = Some(state.ops_total + ops);
    }

    /// The image a power cut would leave now, as a fresh file system.
    pub fn crash(&self, fill: CrashFill) -> SimStorage {
        let state = self.lock();
        let mut image = SimState {
            dirs: state.dirs.clone(),
            next_id: state.next_id,
            ..SimState::default()
        };
        for (path, id) in &state.durable_names {
            let data = &state.contents[id];
            let bytes = crashed_bytes(data, fill, *id);
            image.names.insert(path.clone(), *id);
            image.durable_names.insert(path.clone(), *id);
            image.contents.insert(*id, FileData::synced(bytes));
        }
        SimStorage {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Every file's current contents (for tests that damage bytes directly).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let id = state.names.get(path)?;
        Some(state.contents[id].current.clone())
    }

    /// The permission bits last set on `path` with [`Storage::set_mode`] (renames carry them).
    pub fn mode_of(&self, path: &Path) -> Option<u32> {
        self.lock().modes.get(path).copied()
    }

    /// Replaces a file's contents, durably (for tests that damage bytes directly).
    pub fn put_file(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.lock();
        let id = match state.names.get(path) {
            Some(id) => *id,
            None => {
                let id = state.alloc_id();
                state.names.insert(path.to_path_buf(), id);
                state.durable_names.insert(path.to_path_buf(), id);
                id
            }
        };
        state.contents.insert(id, FileData::synced(bytes));
    }
}

fn crashed_bytes(data: &FileData, fill: CrashFill, id: u64) -> Vec<u8> {
    let Some(unsynced) = unsynced_range(data) else {
        return data.durable.clone();
    };
    let mut bytes = data.durable.clone();
    match fill {
        // What was durable survives; bytes only written are lost (appended ones entirely,
        // overwritten ones revert to their synced contents).
        CrashFill::Drop => return bytes,
        CrashFill::Zeros | CrashFill::Garbage(_) => bytes.resize(bytes.len().max(unsynced.end), 0),
    }
    if let CrashFill::Garbage(seed) = fill {
        let mut x = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for byte in &mut bytes[unsynced.clone()] {
            // xorshift64: deterministic, dependency-free garbage.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *byte = x as u8;
        }
    } else {
        bytes[unsynced].fill(0);
    }
    bytes
}

/// The bytes written since the last sync, and any the file grew by.
fn unsynced_range(data: &FileData) -> Option<std::ops::Range<usize>> {
    let grown =
        (data.current.len() > data.durable.len()).then_some(data.durable.len()..data.current.len());
    match (data.unsynced.clone(), grown) {
        (Some(written), Some(grown)) => Some(written.start.min(grown.start)..grown.end),
        (written, grown) => written.or(grown),
    }
}

impl SimState {
    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Counts a mutating operation, or fails it as a fault or a crash dictates.
    fn begin(&mut self, kind: OpKind) -> io::Result<()> {
        if let Some(limit) = self.crash_after_ops
            && self.ops_total >= limit
        {
            return Err(io::Error::other("simulated power loss"));
        }
        // Attempts count, failed or not, so "the n-th write" means the same thing whatever
        // faults came before it.
        let nth_of_kind = self.ops_by_kind.get(&kind).copied().unwrap_or(0) + 1;
        let nth_any = self.ops_total + 1;
        self.ops_total = nth_any;
        self.ops_by_kind.insert(kind, nth_of_kind);
        for fault in &self.faults {
            let nth = if fault.op.is_some() {
                nth_of_kind
            } else {
                nth_any
            };
            let kind_matches = fault.op.is_none_or(|op| op == kind);
            let hit = nth == fault.nth || (fault.persistent && nth > fault.nth);
            if kind_matches && hit {
                return Err(match fault.kind {
                    FaultKind::Eio => io::Error::from_raw_os_error(5),
                    FaultKind::Enospc => io::Error::from_raw_os_error(28),
                });
            }
        }
        Ok(())
    }

    fn id_of(&self, path: &Path) -> io::Result<u64> {
        self.names
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{}", path.display())))
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        let parent = super::parent_dir(path);
        if parent == Path::new(".") || self.dirs.contains(parent) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", parent.display()),
            ))
        }
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<SimState>>,
    id: u64,
}

impl SimFile {
    fn with<T>(&self, kind: OpKind, f: impl FnOnce(&mut FileData) -> T) -> io::Result<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.begin(kind)?;
        let data = state
            .contents
            .get_mut(&self.id)
            .ok_or_else(|| io::Error::other("simulated file vanished"))?;
        Ok(f(data))
    }
}

impl StorageFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.with(OpKind::Write, |data| data.current.extend_from_slice(buf))
    }

    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        self.with(OpKind::Write, |data| {
            let end = start + buf.len();
            if data.current.len() < end {
                data.current.resize(end, 0);
            }
            data.current[start..end].copy_from_slice(buf);
            data.wrote(start..end);
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with(OpKind::Sync, |data| {
            data.durable = data.current.clone();
            data.unsynced = None;
        })
    }

    fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        let len = usize::try_from(len_bytes).map_err(io::Error::other)?;
        self.with(OpKind::SetLen, |data| {
            data.current.resize(len, 0);
            data.unsynced = data
                .unsynced
                .take()
                .map(|span| span.start.min(len)..span.end.min(len))
                .filter(|span| !span.is_empty());
            // Shrinking is a metadata change the simulator treats as durable at once, so a
            // crash never resurrects bytes a recovery truncated away.
            data.durable.truncate(len);
        })
    }
}

#[derive(Debug)]
struct SimLock {
    state: Arc<Mutex<SimState>>,
    path: PathBuf,
}

impl LockGuard for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.locks.remove(&self.path);
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().dirs.contains(path)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        state.dirs.contains(path) || state.names.contains_key(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        let files = state.names.keys().map(PathBuf::as_path);
        let dirs = state.dirs.iter().map(PathBuf::as_path);
        Ok(files
            .chain(dirs)
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let id = state.id_of(path)?;
        Ok(state.contents[&id].current.clone())
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>> {
        let id = self.lock().id_of(path)?;
        Ok(Box::new(SimReadFile {
            state: Arc::clone(&self.state),
            id,
        }))
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let state = self.lock();
        let id = state.id_of(path)?;
        let bytes = &state.contents[&id].current;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let state = self.lock();
        let id = state.id_of(path)?;
        Ok(state.contents[&id].current.len() as u64)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let mut state = self.lock();
        state.check_parent(path)?;
        state.begin(OpKind::Create)?;
        let id = state.alloc_id();
        state.contents.insert(id, FileData::default());
        state.names.insert(path.to_path_buf(), id);
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            id,
        }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        let state = self.lock();
        let id = state.id_of(path)?;
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            id,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.id_of(from)?;
        state.check_parent(to)?;
        state.begin(OpKind::Rename)?;
        let id = state
            .names
            .remove(from)
            .ok_or_else(|| io::Error::other("raced"))?;
        state.names.insert(to.to_path_buf(), id);
        match state.modes.remove(from) {
            Some(mode) => state.modes.insert(to.to_path_buf(), mode),
            None => state.modes.remove(to),
        };
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.id_of(path)?;
        state.begin(OpKind::Remove)?;
        state.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.begin(OpKind::SyncDir)?;
        let in_dir = |path: &PathBuf| super::parent_dir(path) == dir;
        state.durable_names.retain(|path, _| !in_dir(path));
        let current: Vec<(PathBuf, u64)> = state
            .names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, id)| (path.clone(), *id))
            .collect();
        state.durable_names.extend(current);
        Ok(())
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        let mut state = self.lock();
        if !state.names.contains_key(path) && !state.dirs.contains(path) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        }
        state.modes.insert(path.to_path_buf(), mode);
        Ok(())
    }

    fn try_lock(&self, path: &Path, pid: u32) -> io::Result<Option<Box<dyn LockGuard>>> {
        {
            let mut state = self.lock();
            if !state.locks.insert(path.to_path_buf()) {
                return Ok(None);
            }
        }
        self.put_file(path, format!("{pid}\n").into_bytes());
        Ok(Some(Box::new(SimLock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(storage: &SimStorage, path: &str, bytes: &[u8], sync: bool) {
        let mut file = storage.create(Path::new(path)).unwrap();
        file.write_all(bytes).unwrap();
        if sync {
            file.sync_data().unwrap();
        }
    }

    #[test]
    fn crash_keeps_only_synced_bytes_and_names() {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/d")).unwrap();
        write(&storage, "/d/a", b"durable", true);
        storage.sync_dir(Path::new("/d")).unwrap();
        let mut file = storage.open_append(Path::new("/d/a")).unwrap();
        file.write_all(b" and not").unwrap();
        write(&storage, "/d/b", b"never named durably", true);

        let image = storage.crash(CrashFill::Drop);
        assert_eq!(image.read_file(Path::new("/d/a")).unwrap(), b"durable");
        assert!(!image.exists(Path::new("/d/b")));

        let zeros = storage.crash(CrashFill::Zeros);
        assert_eq!(
            zeros.read_file(Path::new("/d/a")).unwrap(),
            b"durable\0\0\0\0\0\0\0\0"
        );
    }

    #[test]
    fn rename_without_dir_sync_reverts() {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/d")).unwrap();
        write(&storage, "/d/x.tmp", b"new", true);
        storage.sync_dir(Path::new("/d")).unwrap();
        storage
            .rename(Path::new("/d/x.tmp"), Path::new("/d/x"))
            .unwrap();
        let image = storage.crash(CrashFill::Drop);
        assert!(image.exists(Path::new("/d/x.tmp")));
        assert!(!image.exists(Path::new("/d/x")));
    }

    #[test]
    fn faults_fail_the_nth_operation_of_a_kind() {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/d")).unwrap();
        storage.inject(Fault {
            op: Some(OpKind::Sync),
            nth: 2,
            kind: FaultKind::Enospc,
            persistent: false,
        });
        let mut file = storage.create(Path::new("/d/f")).unwrap();
        file.sync_data().unwrap();
        let err = file.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        file.sync_data().unwrap();
    }

    #[test]
    fn crash_after_fails_every_later_operation() {
        let storage = SimStorage::new();
        storage.create_dir_all(Path::new("/d")).unwrap();
        storage.crash_after(1);
        let mut file = storage.create(Path::new("/d/f")).unwrap();
        assert!(file.write_all(b"x").is_err());
        assert_eq!(storage.op_count(), 1);
    }
}
