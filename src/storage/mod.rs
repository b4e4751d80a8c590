//! The storage seam: every file-system effect of the journal goes through [`Storage`].
//!
//! Two implementations: [`RealStorage`] (the OS, with real `fdatasync` and directory fsync) and,
//! with the `testing` feature, `SimStorage` (in memory, remembers what was synced, crashes and
//! injects faults on demand).
//! Code above this seam never calls `std::fs` for journal data, so every crash and I/O-error test
//! exercises the same code paths production runs.

mod real;
#[cfg(any(test, feature = "testing"))]
mod sim;

use std::fmt;
use std::io;
use std::path::Path;

pub use real::RealStorage;
#[cfg(any(test, feature = "testing"))]
pub use sim::{CrashFill, Fault, FaultKind, OpKind, SimStorage};

/// A file opened for writing. Writes go to the end of what this handle has written so far.
pub trait StorageFile: Send + fmt::Debug {
    /// Appends `buf` at the handle's position (the end of the file for handles from
    /// [`Storage::create`] and [`Storage::open_append`]).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Overwrites bytes at `offset` (`pwrite`), extending the file with zeros if needed. The
    /// handle's append position is unaffected.
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Truncates (or extends with zeros) to `len_bytes`; the write position moves to the new end.
    fn set_len(&mut self, len_bytes: u64) -> io::Result<()>;
}

/// A file opened for reading. Like a POSIX descriptor, it keeps reading the file it opened even
/// after the name is removed: a reader that opened a segment is not disturbed by a compaction
/// that deletes it.
pub trait ReadFile: Send + fmt::Debug {
    /// The whole contents, from the first byte to the current end.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
}

/// Held while a lock is owned; dropping it releases the lock.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The file-system operations torrent-journal performs. Paths are absolute or relative to the
/// process's working directory, exactly as with `std::fs`.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Creates a directory and its parents; succeeds if it exists.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` names a directory (false if missing).
    fn is_dir(&self, path: &Path) -> bool;
    /// Whether `path` exists (file or directory).
    fn exists(&self, path: &Path) -> bool;
    /// The names of the entries of `dir` (not sorted).
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole contents of a file.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Opens a file for reading (see [`ReadFile`]).
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadFile>>;
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at the end).
    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// A file's length in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Creates (or truncates) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Sets a file's or directory's permission bits (`chmod`).
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing) and records `pid` in it.
    /// Returns `Ok(None)` when another holder has it.
    fn try_lock(&self, path: &Path, pid: u32) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// The pid a lock holder recorded in the lock file at `path`, if readable.
pub fn lock_holder_pid(storage: &dyn Storage, path: &Path) -> Option<u32> {
    let bytes = storage.read_file(path).ok()?;
    String::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// Writes a whole file crash-safely: `<path>.tmp` → write → fsync → rename → fsync the directory.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut file = storage.create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(parent_dir(path))
}

/// `<path>.tmp`, the name a file has while it is being written.
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
