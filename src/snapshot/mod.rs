//! Snapshots and everything built on them, one concern in one place: the snapshot file
//! (`file.rs`: the reducer's state at a seq, its byte layout, finding a usable one),
//! point-in-time reads ([`history`]: a snapshot plus the journal tail folded to any restorable
//! seq or time), [`compaction`] (writing a snapshot at the retention boundary, then removing the
//! segments the previous generation covers) and snapshot verification (`verify.rs`: every
//! snapshot reads back whole and agrees with the journal, for `tj verify`).
//!
//! The public paths are `torrent_journal::snapshot::*` for the file's types and functions, and
//! `torrent_journal::history` / `torrent_journal::compaction` (re-exported at the crate root,
//! where the tools and embedders have always found them).

pub mod compaction;
mod file;
pub mod history;
pub(crate) mod verify;

pub(crate) use file::write_snapshot;
pub use file::{
    SNAPSHOT_FORMAT_VERSION, SNAPSHOT_HEADER_BYTES, SNAPSHOT_MAGIC, SNAPSHOT_SUFFIX,
    SNAPSHOTS_DIR_NAME, SnapshotBody, SnapshotError, SnapshotHeader, SnapshotInfo, Tombstone,
    decode, encode, file_name, list_snapshots, load_newest, newest_header_at, parse_file_name,
    read_header, read_snapshot, snapshots_dir,
};
