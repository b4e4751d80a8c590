//! The durable-position file `DIR/journal/durable`: how far the journal is known durable, for
//! followers in other processes.
//!
//! The writer overwrites it in place (`pwrite`, no fsync: it is a hint shared through the page
//! cache, not data) after every successful `fdatasync`, and once when it opens. Followers read
//! events only up to the seq it names, so they never deliver an event a power cut could take
//! back. Layout (24 bytes, little-endian): `u64` seq, `i64` commit time (ns), `u32` CRC32C of
//! bytes 0..16, `u32` zero. A reader that sees a torn or garbled copy retries.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::model::Timestamp;
use crate::storage::{Storage, StorageFile};

/// File name of the durable-position file inside `DIR/journal/`.
pub const DURABLE_FILE_NAME: &str = "durable";
/// Its size in bytes.
pub const DURABLE_FILE_BYTES: usize = 24;

/// The last durable event: its seq (0: none) and commit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DurablePosition {
    /// The last seq known durable.
    pub seq: u64,
    /// Its commit time.
    pub at: Timestamp,
}

/// The 24 bytes for `position`.
pub fn encode(position: DurablePosition) -> [u8; DURABLE_FILE_BYTES] {
    let mut out = [0u8; DURABLE_FILE_BYTES];
    out[..8].copy_from_slice(&position.seq.to_le_bytes());
    out[8..16].copy_from_slice(&position.at.as_unix_nanos().to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes the file's bytes; `None` when they are short, torn or not ours.
pub fn decode(bytes: &[u8]) -> Option<DurablePosition> {
    if bytes.len() < DURABLE_FILE_BYTES {
        return None;
    }
    let word = |range: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..range.len()].copy_from_slice(&bytes[range]);
        u64::from_le_bytes(b)
    };
    let crc = word(16..20) as u32;
    (crc == crc32c::crc32c(&bytes[..16])).then(|| DurablePosition {
        seq: word(0..8),
        at: Timestamp::from_unix_nanos(word(8..16) as i64),
    })
}

/// Path of the durable-position file of the journal directory `journal_dir`.
pub fn path(journal_dir: &Path) -> PathBuf {
    journal_dir.join(DURABLE_FILE_NAME)
}

/// Reads the durable position of store directory `dir`: `Ok(None)` when no writer has
/// published one (the file is missing). Retries a torn read a few times.
pub fn read(storage: &dyn Storage, dir: &Path) -> Result<Option<DurablePosition>> {
    read_in(storage, &super::journal_dir(dir))
}

/// [`read`] for the journal directory `journal_dir` itself.
pub fn read_in(storage: &dyn Storage, journal_dir: &Path) -> Result<Option<DurablePosition>> {
    let path = path(journal_dir);
    if !storage.exists(&path) {
        return Ok(None);
    }
    for _ in 0..TORN_READ_RETRIES {
        let mut buf = [0u8; DURABLE_FILE_BYTES];
        let n = storage.read_at(&path, 0, &mut buf).ctx("read", &path)?;
        if n < DURABLE_FILE_BYTES {
            // Short: created but never written, or cut by a crash (it is never fsynced). The
            // writer writes all 24 bytes in one `pwrite`, so waiting would not help.
            return Ok(None);
        }
        if let Some(position) = decode(&buf) {
            return Ok(Some(position));
        }
        std::thread::yield_now();
    }
    Ok(None)
}

/// Reads of a full-length file that fails its CRC (a read racing the writer's rewrite) before
/// it counts as unpublished. Few: every open and every reader's segment load reads the file,
/// and a garbled file left by a crash must not cost them more than a few reads.
const TORN_READ_RETRIES: usize = 8;

/// The writer's handle on the file.
#[derive(Debug)]
pub(crate) struct Publisher {
    file: Box<dyn StorageFile>,
    path: PathBuf,
}

impl Publisher {
    /// Creates (or truncates) the file and publishes `position`.
    pub(crate) fn create(
        storage: &dyn Storage,
        journal_dir: &Path,
        position: DurablePosition,
    ) -> Result<Self> {
        let path = path(journal_dir);
        let file = storage.create(&path).ctx("create", &path)?;
        let mut publisher = Self { file, path };
        publisher.publish(position)?;
        Ok(publisher)
    }

    /// Overwrites the position in place.
    pub(crate) fn publish(&mut self, position: DurablePosition) -> Result<()> {
        let bytes = encode(position);
        self.file.write_all_at(0, &bytes).ctx("write", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_torn_copies() {
        let position = DurablePosition {
            seq: 42,
            at: Timestamp::from_unix_nanos(7),
        };
        let bytes = encode(position);
        assert_eq!(decode(&bytes), Some(position));
        assert_eq!(decode(&bytes[..20]), None);
        let mut torn = bytes;
        torn[3] ^= 1;
        assert_eq!(decode(&torn), None);
    }
}
