//! The crate's error type: one structured, `#[non_exhaustive]` enum that names where things went wrong.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in torrent-journal.
///
/// Damage is always reported with its location (segment file, byte offset, and the sequence
/// number when one is known), so an operator can find it with a hex editor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed. The OS error is part of the message and not also
    /// returned by `source()`, so an error chain (`{:#}`, anyhow) says it once.
    #[error("{op} {path}: {cause}")]
    Io {
        /// What was being done (`open`, `write`, `fsync`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },

    /// Another writer holds the journal's lock.
    #[error("journal {path} is locked by another writer{}", holder_suffix(.pid))]
    Locked {
        /// The file or directory concerned.
        path: PathBuf,
        /// The holder's pid, when its lock file names one.
        pid: Option<u32>,
    },

    /// A frame's checksum does not match its contents.
    #[error(
        "checksum mismatch in {segment} at offset {offset}{}: expected {expected:#010x}, got {got:#010x}",
        seq_suffix(.seq)
    )]
    ChecksumMismatch {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame (or damage) in the file.
        offset: u64,
        /// The sequence number.
        seq: Option<u64>,
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes.
        got: u32,
    },

    /// Bytes that cannot be a valid journal, with the reason.
    #[error("corrupt journal {segment} at offset {offset}{}: {reason}", seq_suffix(.seq))]
    Corrupt {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame (or damage) in the file.
        offset: u64,
        /// The sequence number.
        seq: Option<u64>,
        /// Why, in words.
        reason: String,
    },

    /// Sequence numbers are not gap-free and strictly increasing.
    #[error(
        "sequence break in {segment} at offset {offset}: expected seq {expected}, found {found}"
    )]
    SequenceBreak {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame (or damage) in the file.
        offset: u64,
        /// The seq that should have come next.
        expected: u64,
        /// The seq found there.
        found: u64,
    },

    /// A file written by a newer (or unknown) format version.
    #[error("{path} has format version {found}; this build reads up to version {supported}")]
    UnsupportedVersion {
        /// The file or directory concerned.
        path: PathBuf,
        /// The version the file declares.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },

    /// An event larger than the configured maximum; nothing was written.
    #[error(
        "event of {size_bytes} bytes exceeds the maximum of {max_bytes} bytes; nothing was written"
    )]
    EventTooLarge {
        /// The encoded event's size.
        size_bytes: usize,
        /// The configured maximum.
        max_bytes: usize,
    },

    /// The batch holding this append failed while being written or synced (the cause), so the
    /// append was not acknowledged and its outcome is unknown: the bytes may have reached the
    /// disk before the failure, and a reopen keeps every whole frame it finds. The events were
    /// to be seqs `first_seq..first_seq + count`; after reopening, and before appending anything
    /// else, [`JournalReader::appended`](crate::JournalReader::appended) says how many of them
    /// the journal holds. The writer is poisoned until reopened.
    #[error(
        "append of seq {first_seq}..={} was not acknowledged (outcome unknown; reopen and ask          JournalReader::appended): {cause}",
        .first_seq + .count - 1
    )]
    Unacknowledged {
        /// The seq the append's first event was given.
        first_seq: u64,
        /// How many events the append held (consecutive seqs).
        count: u64,
        /// Why the batch failed (said in the message, not again as `source()`).
        cause: Box<Error>,
    },

    /// The writer saw a failed write or fsync and refuses further appends until reopened.
    #[error("journal writer is poisoned by an earlier I/O failure ({cause}); reopen the journal")]
    Poisoned {
        /// The underlying error.
        cause: String,
    },

    /// The journal or store was closed.
    #[error("journal is closed")]
    Closed,

    /// A malformed info hash.
    #[error("invalid info hash {input:?}: {reason}")]
    InvalidInfoHash {
        /// The text given.
        input: String,
        /// Why, in words.
        reason: String,
    },

    /// No torrent with this info hash.
    #[error("torrent {info_hash} not found")]
    TorrentNotFound {
        /// The info hash asked for.
        info_hash: String,
    },

    /// An event could not be encoded.
    #[error("cannot encode event: {0}")]
    Encode(String),

    /// A frame's checksum is right but its payload does not decode as an event.
    #[error("cannot decode event seq {seq} in {segment} at offset {offset}: {reason}")]
    Decode {
        /// The segment file.
        segment: PathBuf,
        /// Byte offset of the frame (or damage) in the file.
        offset: u64,
        /// The sequence number.
        seq: u64,
        /// Why, in words.
        reason: String,
    },

    /// The requested seq is older than the oldest event the journal still holds.
    #[error("seq {requested} is not retained: the journal starts at seq {earliest}")]
    SeqNotRetained {
        /// The seq asked for.
        requested: u64,
        /// The oldest seq the journal still holds.
        earliest: u64,
    },

    /// A point in time that the retained history cannot materialize. The message states the
    /// earliest restorable seq and time.
    #[error("{message}")]
    NotRestorable {
        /// The point in time asked for, as given.
        target: String,
        /// The earliest restorable seq, if any.
        earliest_seq: Option<u64>,
        /// The full explanation (also the error's message).
        message: String,
    },

    /// A snapshot file whose bytes are unusable.
    #[error("corrupt snapshot {path} at offset {offset}: {reason}")]
    CorruptSnapshot {
        /// The file or directory concerned.
        path: PathBuf,
        /// Byte offset of the frame (or damage) in the file.
        offset: u64,
        /// Why, in words.
        reason: String,
    },

    /// A projection's file (the SQLite database, a file of the file projection) is damaged:
    /// SQLite reports it corrupt or not a database, `PRAGMA quick_check` fails after an error,
    /// or a file does not parse. Projections are disposable: the store sets the damaged file
    /// aside and rebuilds the projection from the journal.
    #[error("{projection} projection {path} is damaged: {reason}")]
    ProjectionDamaged {
        /// Which projection (`sqlite`, `files`, or a custom one's name).
        projection: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },

    /// Another compaction holds the compaction lock.
    #[error("another compaction is running on {dir}{}", holder_suffix(.pid))]
    CompactionRunning {
        /// The store directory.
        dir: PathBuf,
        /// The holder's pid, when its lock file names one.
        pid: Option<u32>,
    },

    /// A SQLite call of the SQLite projection failed and the database is not damaged: it
    /// cannot be opened or created, permission denied, disk full, locked by another connection
    /// past the busy timeout, ... (SQLite's corrupt / not-a-database codes are
    /// [`Error::ProjectionDamaged`] instead). `cause` keeps SQLite's error, so its code can be
    /// inspected (`cause.sqlite_error_code()`). Like [`Error::Io`], the cause is part of the
    /// message and not also returned by `source()`: an error chain says it once.
    #[cfg(feature = "sqlite")]
    #[error("{op} {path}: {cause}")]
    Sqlite {
        /// What was being done (`open`, `write`, `fsync`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        cause: rusqlite::Error,
    },

    /// Something this build needs from its environment is missing (a SQLite without WAL or
    /// foreign keys, ...): not damage, not a caller's mistake.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What, in words.
        what: String,
    },

    /// A bug or a broken invariant inside torrent-journal: a worker thread panicked, a task
    /// was cancelled, a value that cannot occur did. The operation failed; nothing acknowledged
    /// is lost (the journal stays the truth), but please report it.
    #[error("internal error: {what}")]
    Internal {
        /// What, in words.
        what: String,
    },

    /// A caller passed something unusable (bad path, bad option, bad range, a batch that does
    /// not continue a projection's checkpoint). Only for the caller's mistakes: damage, I/O and
    /// bugs have their own variants.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

fn holder_suffix(pid: &Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    }
}

fn seq_suffix(seq: &Option<u64>) -> String {
    match seq {
        Some(seq) => format!(" (seq {seq})"),
        None => String::new(),
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an operation name and path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| Error::Io {
            op,
            path: path.into(),
            cause,
        })
    }
}
