//! Owns the test kit's window onto the on-disk layout: the frame, segment and durable-position
//! codecs, for tests that build or damage journal bytes by hand (torn tails, bit flips, fuzzed
//! segments). Not an embedder API: a store never needs them, and `frame::encode` writes bytes
//! no writer committed. The layouts are specified in `docs/FORMAT.md`.

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
