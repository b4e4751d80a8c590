//! Owns the test kit's window onto the on-disk layout: the frame, segment and durable-position
//! codecs, for tests that build or damage journal bytes by hand (torn tails, bit flips, fuzzed
//! segments). Not an embedder API: a store never needs them, and `frame::encode` writes bytes
//! no writer committed. The layouts are specified in `docs/FORMAT.md`.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::snapshot::SnapshotBody;
use crate::storage::Storage;

/// Frames: the header layout (length with the batch-start bit, seq, time, CRC32C) and its codec.
pub mod frame {
    pub use crate::journal::frame::*;
}

/// Segments: the header, file names, and the frame scanner recovery and verify are built on.
pub mod segment {
    pub use crate::journal::segment::*;
}

/// The durable-position file (`journal/DURABLE`) followers read.
pub mod durable {
    pub use crate::journal::durable::*;
}

/// Writes `body` durably as `DIR/snapshots/<seq>.snap`, as compaction does, and returns its
/// path — without compaction's checks that it matches the journal. For tests of snapshot
/// reading, fallback and point-in-time materialization.
pub fn write_snapshot(storage: &dyn Storage, dir: &Path, body: &SnapshotBody) -> Result<PathBuf> {
    crate::snapshot::write_snapshot(storage, dir, body)
}
