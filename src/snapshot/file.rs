//! The snapshot file: the reducer's full [`State`] at a seq (plus removal [`Tombstone`]s) in one
//! checksummed file, `DIR/snapshots/<seq:020>.snap`, and the rules for finding a usable one.
//!
//! Layout (all integers little-endian; specified in `docs/FORMAT.md`, "Snapshots"):
//!
//! ```text
//! 0   [u8; 8]  magic "TJSNAPSH"
//! 8   u8       format version (1)
//! 9   [u8; 3]  reserved, zero
//! 12  u64      seq: the last event folded into the state
//! 20  i64      at: that event's commit time, ns since the Unix epoch
//! 28  u64      torrent count (live torrents in the state)
//! 36  u64      body length in bytes (the file is exactly header + body)
//! 44  u32      CRC32C of the body
//! 48  u32      CRC32C of bytes 0..48
//! 52  body     SnapshotBody as named MessagePack (`rmp_serde::to_vec_named`)
//! ```
//!
//! The header checksum is checked before anything else in the header is believed (so a flipped
//! version bit is damage, not "a snapshot from the future"); the body length is checked against
//! the real file length before the body is touched; the body checksum before it is decoded; and
//! the decoded state must agree with the header's seq, time and torrent count.
//!
//! Snapshots are written only through the [`Storage`] seam, crash-safely (tmp → write →
//! `fdatasync` → rename → directory fsync), and are never modified afterwards. A damaged one is
//! skipped with a warning in favour of an older one (or a replay from the journal).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{Error, IoContext, Result};
use crate::model::{InfoHash, Timestamp, TorrentState};
use crate::msgpack;
use crate::state::{State, WriteTimes};
use crate::storage::{self, Storage};

/// The first eight bytes of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"TJSNAPSH";
/// The snapshot format this build writes, and the newest it reads.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;
/// Bytes in a snapshot header; the body starts here.
pub const SNAPSHOT_HEADER_BYTES: usize = 52;
/// Name of the snapshot directory inside a store directory.
pub const SNAPSHOTS_DIR_NAME: &str = "snapshots";
/// File-name suffix of snapshots.
pub const SNAPSHOT_SUFFIX: &str = ".snap";

/// `DIR/snapshots`.
pub fn snapshots_dir(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOTS_DIR_NAME)
}

/// `<seq, 20 digits>.snap`: names sort in seq order.
pub fn file_name(seq: u64) -> String {
    format!("{seq:020}{SNAPSHOT_SUFFIX}")
}

/// The seq a snapshot file name encodes, or `None` for other files (including `*.snap.tmp`).
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A removed torrent remembered by compaction, so a mistaken removal can be undone after the
/// removal event itself was compacted away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The torrent removed.
    pub info_hash: InfoHash,
    /// Commit time of the removal event.
    pub removed_at: Timestamp,
    /// Seq of the removal event.
    pub removed_seq: u64,
    /// The torrent as the reducer held it just before the removal.
    pub last: TorrentState,
}

/// What a snapshot holds: the reducer's state and the tombstones compaction keeps.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotBody {
    /// The state after folding events `1..=state.last_seq`.
    pub state: State,
    /// Torrents removed within the tombstone window, in info-hash order.
    #[serde(default)]
    pub tombstones: Vec<Tombstone>,
}

impl SnapshotBody {
    /// The seq the snapshot is at.
    pub fn seq(&self) -> u64 {
        self.state.last_seq
    }

    /// The commit time of the event at [`SnapshotBody::seq`].
    pub fn at(&self) -> Timestamp {
        self.state.last_at
    }
}

/// A decoded, checksum-verified snapshot header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The format version.
    pub version: u8,
    /// The sequence number.
    pub seq: u64,
    /// The commit time.
    pub at: Timestamp,
    /// Number of torrents in the body.
    pub torrent_count: u64,
    /// The body's length in bytes.
    pub body_len: u64,
    /// The body's CRC32C.
    pub body_crc: u32,
}

impl SnapshotHeader {
    /// The 52 header bytes.
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_BYTES] {
        let mut out = [0u8; SNAPSHOT_HEADER_BYTES];
        out[..8].copy_from_slice(&SNAPSHOT_MAGIC);
        out[8] = self.version;
        out[12..20].copy_from_slice(&self.seq.to_le_bytes());
        out[20..28].copy_from_slice(&self.at.as_unix_nanos().to_le_bytes());
        out[28..36].copy_from_slice(&self.torrent_count.to_le_bytes());
        out[36..44].copy_from_slice(&self.body_len.to_le_bytes());
        out[44..48].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = crc32c::crc32c(&out[..48]);
        out[48..52].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks a header (the first [`SNAPSHOT_HEADER_BYTES`] of `buf`). The version
    /// is looked at only after the checksum matched.
    pub fn decode(buf: &[u8]) -> Result<Self, SnapshotError> {
        let Some(header) = buf.get(..SNAPSHOT_HEADER_BYTES) else {
            return Err(SnapshotError::TooShort {
                len_bytes: buf.len(),
            });
        };
        if header[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let expected = le_u32(&header[48..52]);
        let got = crc32c::crc32c(&header[..48]);
        if expected != got {
            return Err(SnapshotError::HeaderChecksum { expected, got });
        }
        let version = header[8];
        if version == 0 || version > SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        Ok(Self {
            version,
            seq: le_u64(&header[12..20]),
            at: Timestamp::from_unix_nanos(le_u64(&header[20..28]).cast_signed()),
            torrent_count: le_u64(&header[28..36]),
            body_len: le_u64(&header[36..44]),
            body_crc: le_u32(&header[44..48]),
        })
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    u64::from_le_bytes(out)
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(bytes);
    u32::from_le_bytes(out)
}

/// Why bytes are not a usable snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than a header.
    TooShort {
        /// The length found.
        len_bytes: usize,
    },
    /// Not a snapshot at all.
    BadMagic,
    /// The header's checksum does not match it.
    HeaderChecksum {
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes.
        got: u32,
    },
    /// A valid header of a format this build does not read.
    UnsupportedVersion {
        /// The version the file declares.
        found: u8,
    },
    /// The file is not exactly header + the body length the header declares.
    BodyLength {
        /// The length the header declares.
        declared: u64,
        /// The length there is.
        actual: u64,
    },
    /// The body's checksum does not match it.
    BodyChecksum {
        /// The checksum stored in the file.
        expected: u32,
        /// The checksum computed from the bytes.
        got: u32,
    },
    /// The body's checksum matches but it does not decode.
    Body(String),
    /// The body decodes but disagrees with the header.
    Mismatch(String),
}

impl SnapshotError {
    /// Byte offset of the problem in the file.
    pub fn offset(&self) -> u64 {
        match self {
            Self::TooShort { .. }
            | Self::BadMagic
            | Self::HeaderChecksum { .. }
            | Self::UnsupportedVersion { .. }
            | Self::BodyLength { .. } => 0,
            Self::BodyChecksum { .. } | Self::Body(_) | Self::Mismatch(_) => {
                SNAPSHOT_HEADER_BYTES as u64
            }
        }
    }
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooShort { len_bytes } => write!(
                f,
                "snapshot truncated: {len_bytes} bytes, the header alone is {SNAPSHOT_HEADER_BYTES}"
            ),
            Self::BadMagic => write!(f, "not a torrent-journal snapshot (bad magic)"),
            Self::HeaderChecksum { expected, got } => write!(
                f,
                "snapshot header checksum mismatch: expected {expected:#010x}, got {got:#010x}"
            ),
            Self::UnsupportedVersion { found } => {
                write!(f, "unsupported snapshot format version {found}")
            }
            Self::BodyLength { declared, actual } => write!(
                f,
                "snapshot body length mismatch: the header declares {declared} bytes, the file holds {actual}"
            ),
            Self::BodyChecksum { expected, got } => write!(
                f,
                "snapshot body checksum mismatch: expected {expected:#010x}, got {got:#010x}"
            ),
            Self::Body(reason) => write!(f, "snapshot body does not decode: {reason}"),
            Self::Mismatch(reason) => {
                write!(f, "snapshot body disagrees with its header: {reason}")
            }
        }
    }
}

/// Encodes a snapshot: header + named-MessagePack body.
pub fn encode(body: &SnapshotBody) -> Result<Vec<u8>> {
    let encoded = rmp_serde::to_vec_named(body)
        .map_err(|e| Error::Encode(format!("snapshot at seq {}: {e}", body.seq())))?;
    let header = SnapshotHeader {
        version: SNAPSHOT_FORMAT_VERSION,
        seq: body.seq(),
        at: body.at(),
        torrent_count: body.state.torrents.len() as u64,
        body_len: encoded.len() as u64,
        body_crc: crc32c::crc32c(&encoded),
    };
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + encoded.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// Decodes and fully checks a snapshot's bytes. Pure and total: never panics, never allocates
/// by a length it has not checked against `bytes`.
pub fn decode(bytes: &[u8]) -> Result<(SnapshotHeader, SnapshotBody), SnapshotError> {
    let header = SnapshotHeader::decode(bytes)?;
    let body_bytes = &bytes[SNAPSHOT_HEADER_BYTES..];
    if header.body_len != body_bytes.len() as u64 {
        return Err(SnapshotError::BodyLength {
            declared: header.body_len,
            actual: body_bytes.len() as u64,
        });
    }
    let got = crc32c::crc32c(body_bytes);
    if got != header.body_crc {
        return Err(SnapshotError::BodyChecksum {
            expected: header.body_crc,
            got,
        });
    }
    let mut body = match decode_split(body_bytes)? {
        Some(body) => body,
        None => decode_whole(body_bytes)?,
    };
    check_agreement(&header, &body)?;
    // A snapshot from before write times were kept: what it holds was written at its own time
    // at the latest (docs/FORMAT.md, "Body").
    let at = body.at();
    body.state.fill_missing_write_times(at);
    Ok((header, body))
}

/// Decodes a body in one piece, with serde: the reference decoding, used whenever the body is
/// not laid out as [`split_body`] expects.
fn decode_whole(bytes: &[u8]) -> Result<SnapshotBody, SnapshotError> {
    let body: SnapshotBody =
        rmp_serde::from_slice(bytes).map_err(|e| SnapshotError::Body(e.to_string()))?;
    let rest = bytes.len() - msgpack::value_len(bytes).unwrap_or(bytes.len());
    if rest != 0 {
        return Err(SnapshotError::Body(format!(
            "{rest} trailing bytes after the body"
        )));
    }
    Ok(body)
}

/// Where the parts of a body other than the torrents are: the encoded fields of
/// [`SnapshotBody`] and its [`State`].
struct BodyParts<'a> {
    session: &'a [u8],
    metrics: &'a [u8],
    last_seq: &'a [u8],
    last_at: &'a [u8],
    /// Absent in snapshots written before write times were kept.
    written: Option<&'a [u8]>,
    tombstones: Option<&'a [u8]>,
}

/// Encoded torrents: (key, value) of consecutive entries of the torrents map.
type EncodedTorrents<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Torrents handed to a decoding thread at a time.
const CHUNK_TORRENTS: usize = 512;

/// Walks a body laid out as `encode` writes it — a map of `state` (a map of the [`State`]
/// fields, each once, `written` optional) and optionally `tombstones`, nothing after it — handing the
/// torrents (nearly all of the bytes) to `torrents` in consecutive chunks as it finds them, so
/// they can be decoded on other threads meanwhile. `None` for any other layout (the body is
/// then decoded whole, which also reports what is wrong with it).
fn split_body<'a>(
    bytes: &'a [u8],
    torrents: &mut dyn FnMut(EncodedTorrents<'a>),
) -> Option<BodyParts<'a>> {
    let mut c = msgpack::Cursor::new(bytes);
    let mut state = None;
    let mut tombstones = None;
    for _ in 0..c.map_len()? {
        match c.str()? {
            b"state" if state.is_none() => state = Some(split_state(&mut c, torrents)?),
            b"tombstones" if tombstones.is_none() => {
                let start = c.pos();
                c.skip()?;
                tombstones = Some(c.since(start));
            }
            _ => return None,
        }
    }
    if c.pos() != bytes.len() {
        return None;
    }
    let ([session, metrics, last_seq, last_at], written) = state?;
    Some(BodyParts {
        session,
        metrics,
        last_seq,
        last_at,
        written,
        tombstones,
    })
}

/// The encoded `session`, `metrics`, `last_seq`, `last_at` of a [`State`], and its `written`
/// when present.
type StateParts<'a> = ([&'a [u8]; 4], Option<&'a [u8]>);

fn split_state<'a>(
    c: &mut msgpack::Cursor<'a>,
    on_torrents: &mut dyn FnMut(EncodedTorrents<'a>),
) -> Option<StateParts<'a>> {
    let mut torrents = false;
    let mut fields: [Option<&[u8]>; 5] = [None; 5];
    for _ in 0..c.map_len()? {
        let slot = match c.str()? {
            b"torrents" if !torrents => {
                torrents = true;
                let count = c.map_len()?;
                let mut chunk = Vec::with_capacity(count.min(CHUNK_TORRENTS));
                for _ in 0..count {
                    let start = c.pos();
                    c.skip()?;
                    let key = c.since(start);
                    let start = c.pos();
                    c.skip()?;
                    chunk.push((key, c.since(start)));
                    if chunk.len() == CHUNK_TORRENTS {
                        on_torrents(std::mem::replace(
                            &mut chunk,
                            Vec::with_capacity(CHUNK_TORRENTS),
                        ));
                    }
                }
                if !chunk.is_empty() {
                    on_torrents(chunk);
                }
                continue;
            }
            b"session" => &mut fields[0],
            b"metrics" => &mut fields[1],
            b"last_seq" => &mut fields[2],
            b"last_at" => &mut fields[3],
            b"written" => &mut fields[4],
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        let start = c.pos();
        c.skip()?;
        *slot = Some(c.since(start));
    }
    let [Some(a), Some(b), Some(d), Some(e), written] = fields else {
        return None;
    };
    torrents.then_some(([a, b, d, e], written))
}

/// Upper bound on threads decoding a snapshot's torrents.
const MAX_DECODE_THREADS: usize = 8;
/// Bodies smaller than this are decoded on the calling thread alone (threads would cost more
/// than they save).
const MIN_PARALLEL_BODY_BYTES: usize = 4 << 20;
/// Chunks walked ahead of the decoding threads (bounds the queue between them).
const CHUNKS_IN_FLIGHT: usize = 64;

type DecodedTorrents = Vec<(InfoHash, Arc<TorrentState>)>;

fn field<'de, T: Deserialize<'de>>(name: &str, bytes: &'de [u8]) -> Result<T, SnapshotError> {
    rmp_serde::from_slice(bytes).map_err(|e| SnapshotError::Body(format!("{name}: {e}")))
}

fn decode_torrents(chunk: &[(&[u8], &[u8])]) -> Result<DecodedTorrents, SnapshotError> {
    chunk
        .iter()
        .map(|(key, value)| {
            let hash: InfoHash = field("torrent key", key)?;
            let torrent: TorrentState = field("torrent", value)?;
            Ok((hash, Arc::new(torrent)))
        })
        .collect()
}

/// Decodes a body laid out as [`split_body`] expects (`Ok(None)` otherwise): this thread walks
/// it while up to [`MAX_DECODE_THREADS`] threads decode the torrents, chunk by chunk. The result
/// equals [`decode_whole`]'s: the same `Deserialize` impls on the same bytes, and the torrents
/// inserted in the order they are encoded (a repeated key keeps the last, as serde's map
/// decoding does).
fn decode_split(bytes: &[u8]) -> Result<Option<SnapshotBody>, SnapshotError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_DECODE_THREADS);
    let mut decoded: Vec<(usize, Result<DecodedTorrents, SnapshotError>)> = Vec::new();
    let parts = if threads < 2 || bytes.len() < MIN_PARALLEL_BODY_BYTES {
        let mut index = 0;
        split_body(bytes, &mut |chunk| {
            decoded.push((index, decode_torrents(&chunk)));
            index += 1;
        })
    } else {
        let (tx, rx) = sync_channel::<(usize, EncodedTorrents<'_>)>(CHUNKS_IN_FLIGHT);
        let rx = Mutex::new(rx);
        std::thread::scope(|scope| {
            // Takes chunks until the walk is over and the queue empty.
            let consume = || {
                let mut out = Vec::new();
                loop {
                    let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((index, chunk)) = next else {
                        return out;
                    };
                    out.push((index, decode_torrents(&chunk)));
                }
            };
            // This thread only walks: decoding here as well measured slower (opening 100k
            // torrents on 2 cores: ~1.0 s instead of ~0.7 s).
            let workers: Vec<_> = (0..threads).map(|_| scope.spawn(consume)).collect();
            let mut index = 0;
            let parts = split_body(bytes, &mut |chunk| {
                // The workers only stop when this sender is dropped: the send cannot fail.
                let _ = tx.send((index, chunk));
                index += 1;
            });
            drop(tx);
            for worker in workers {
                let out = worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                decoded.extend(out);
            }
            parts
        })
    };
    let Some(parts) = parts else {
        return Ok(None);
    };
    decoded.sort_unstable_by_key(|(index, _)| *index);
    let mut torrents = BTreeMap::new();
    for (_, chunk) in decoded {
        torrents.extend(chunk?);
    }
    let state = State {
        torrents,
        session: field("session", parts.session)?,
        metrics: field("metrics", parts.metrics)?,
        last_seq: field("last_seq", parts.last_seq)?,
        last_at: field("last_at", parts.last_at)?,
        written: match parts.written {
            Some(bytes) => field("written", bytes)?,
            None => WriteTimes::default(),
        },
    };
    let tombstones = match parts.tombstones {
        Some(bytes) => field("tombstones", bytes)?,
        None => Vec::new(),
    };
    Ok(Some(SnapshotBody { state, tombstones }))
}

fn check_agreement(header: &SnapshotHeader, body: &SnapshotBody) -> Result<(), SnapshotError> {
    if body.seq() != header.seq {
        return Err(SnapshotError::Mismatch(format!(
            "header seq {}, state seq {}",
            header.seq,
            body.seq()
        )));
    }
    if body.at() != header.at {
        return Err(SnapshotError::Mismatch(format!(
            "header time {}, state time {}",
            header.at,
            body.at()
        )));
    }
    if body.state.torrents.len() as u64 != header.torrent_count {
        return Err(SnapshotError::Mismatch(format!(
            "header counts {} torrents, state holds {}",
            header.torrent_count,
            body.state.torrents.len()
        )));
    }
    Ok(())
}

/// A snapshot file and the seq its name says it is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The sequence number.
    pub seq: u64,
    /// The file or directory concerned.
    pub path: PathBuf,
}

/// The error for a snapshot file whose bytes are unusable.
fn file_error(path: &Path, err: SnapshotError, seq: Option<u64>) -> Error {
    match err {
        SnapshotError::UnsupportedVersion { found } => Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: SNAPSHOT_FORMAT_VERSION,
        },
        other => Error::CorruptSnapshot {
            path: path.to_path_buf(),
            offset: other.offset(),
            reason: match seq {
                Some(seq) => format!("{other} (snapshot of seq {seq})"),
                None => other.to_string(),
            },
        },
    }
}

fn check_name(path: &Path, seq: u64) -> Result<()> {
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_file_name);
    match named {
        Some(named) if named != seq => Err(Error::CorruptSnapshot {
            path: path.to_path_buf(),
            offset: 12,
            reason: format!("snapshot header says seq {seq}, the file name says {named}"),
        }),
        _ => Ok(()),
    }
}

/// The commit time in the newest readable snapshot header, if any (damaged ones are skipped).
pub fn newest_header_at(storage: &dyn Storage, dir: &Path) -> Option<Timestamp> {
    let snapshots = list_snapshots(storage, dir).ok()?;
    snapshots
        .iter()
        .rev()
        .find_map(|info| read_header(storage, &info.path).ok())
        .map(|header| header.at)
}

/// Writes `body` durably as `DIR/snapshots/<seq>.snap` (creating the directory if needed) and
/// returns its path. The file appears complete or not at all. Crate-private: a snapshot is a
/// promise about the journal (compaction later removes what it covers), so only compaction
/// writes one; tests reach it through `testing::format::write_snapshot`.
pub(crate) fn write_snapshot(
    storage: &dyn Storage,
    dir: &Path,
    body: &SnapshotBody,
) -> Result<PathBuf> {
    let snapshots = snapshots_dir(dir);
    if !storage.is_dir(&snapshots) {
        storage
            .create_dir_all(&snapshots)
            .ctx("create directory", &snapshots)?;
        storage.sync_dir(dir).ctx("fsync dir", dir)?;
    }
    let bytes = encode(body)?;
    let path = snapshots.join(file_name(body.seq()));
    storage::write_atomic(storage, &path, &bytes).ctx("write snapshot", &path)?;
    Ok(path)
}

/// The snapshots of store directory `dir`, oldest first (none when there is no snapshot
/// directory). Only names are looked at.
pub fn list_snapshots(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotInfo>> {
    let snapshots = snapshots_dir(dir);
    if !storage.is_dir(&snapshots) {
        return Ok(Vec::new());
    }
    let names = storage.list_dir(&snapshots).ctx("list", &snapshots)?;
    let mut out: Vec<SnapshotInfo> = names
        .iter()
        .filter_map(|name| {
            parse_file_name(name).map(|seq| SnapshotInfo {
                seq,
                path: snapshots.join(name),
            })
        })
        .collect();
    out.sort_by_key(|s| s.seq);
    Ok(out)
}

/// Reads and checks only a snapshot's header (and that the file length matches it).
pub fn read_header(storage: &dyn Storage, path: &Path) -> Result<SnapshotHeader> {
    let mut buf = [0u8; SNAPSHOT_HEADER_BYTES];
    let mut filled = 0;
    while filled < buf.len() {
        let n = storage
            .read_at(path, filled as u64, &mut buf[filled..])
            .ctx("read", path)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let header = SnapshotHeader::decode(&buf[..filled]).map_err(|e| file_error(path, e, None))?;
    check_name(path, header.seq)?;
    let actual = storage
        .file_len(path)
        .ctx("stat", path)?
        .saturating_sub(SNAPSHOT_HEADER_BYTES as u64);
    if actual != header.body_len {
        let err = SnapshotError::BodyLength {
            declared: header.body_len,
            actual,
        };
        return Err(file_error(path, err, Some(header.seq)));
    }
    Ok(header)
}

/// Reads and fully checks a snapshot file. Errors name the file.
pub fn read_snapshot(storage: &dyn Storage, path: &Path) -> Result<SnapshotBody> {
    let bytes = storage.read_file(path).ctx("read", path)?;
    let seq = SnapshotHeader::decode(&bytes).ok().map(|h| h.seq);
    let (header, body) = decode(&bytes).map_err(|e| file_error(path, e, seq))?;
    check_name(path, header.seq)?;
    Ok(body)
}

/// The newest snapshot (with seq ≤ `at_or_before`, when given) that reads back intact.
///
/// A damaged snapshot is skipped with a `tracing` warning in favour of the next older one;
/// `Ok(None)` means none is usable (replay the journal from the start). A snapshot of a newer
/// format version is an error ([`Error::UnsupportedVersion`]), not skipped: this build must not
/// quietly ignore what a newer one wrote.
pub fn load_newest(
    storage: &dyn Storage,
    dir: &Path,
    at_or_before: Option<u64>,
) -> Result<Option<(SnapshotInfo, SnapshotBody)>> {
    let mut snapshots = list_snapshots(storage, dir)?;
    snapshots.retain(|s| at_or_before.is_none_or(|bound| s.seq <= bound));
    for info in snapshots.into_iter().rev() {
        match read_snapshot(storage, &info.path) {
            Ok(body) => return Ok(Some((info, body))),
            Err(err @ Error::UnsupportedVersion { .. }) => return Err(err),
            Err(err) => warn!(
                snapshot = %info.path.display(),
                error = %err,
                "skipping a damaged snapshot; falling back to an older one or the journal"
            ),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse_back() {
        assert_eq!(file_name(7), "00000000000000000007.snap");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("00000000000000000007.snap.tmp"), None);
        assert_eq!(parse_file_name("7.snap"), None);
    }

    fn big_body(torrents: usize) -> SnapshotBody {
        use crate::model::{SessionConfiguration, TorrentMetrics};
        let at = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);
        let mut state = State {
            session: Some(SessionConfiguration::sample()),
            last_seq: 42,
            last_at: at.saturating_add_nanos(1 << 40),
            ..State::default()
        };
        state.written.session = Some(at);
        for n in 0..torrents {
            let mut bytes = [0u8; 20];
            bytes[..8].copy_from_slice(&(n as u64).to_be_bytes());
            let hash = if n % 7 == 0 {
                InfoHash::V2([bytes[7]; 32])
            } else {
                InfoHash::V1(bytes)
            };
            let torrent = TorrentState::sample(hash, &format!("t{n}"), at);
            state.torrents.insert(hash, Arc::new(torrent));
            state
                .written
                .torrents
                .insert(hash, at.saturating_add_nanos(n as i64));
            if n % 3 == 0 {
                let sample = TorrentMetrics {
                    info_hash: hash,
                    timestamp: at,
                    downloaded: n as i64,
                    ..TorrentMetrics::default()
                };
                state.metrics.insert(hash, vec![sample.clone(), sample]);
            }
        }
        let last = TorrentState::sample(InfoHash::V1([0xee; 20]), "gone", at);
        let tombstones = vec![Tombstone {
            info_hash: last.info_hash,
            removed_at: at,
            removed_seq: 41,
            last,
        }];
        SnapshotBody { state, tombstones }
    }

    #[test]
    fn split_decoding_equals_whole_decoding() {
        // Enough torrents for several decoding threads, and few enough for one.
        for count in [0, 5, 8 * CHUNK_TORRENTS + 17] {
            let body = big_body(count);
            let bytes = encode(&body).unwrap();
            let body_bytes = &bytes[SNAPSHOT_HEADER_BYTES..];
            if count > 5 {
                assert!(
                    body_bytes.len() > MIN_PARALLEL_BODY_BYTES,
                    "{count} torrents"
                );
            }
            assert!(
                split_body(body_bytes, &mut |_| {}).is_some(),
                "{count} torrents"
            );
            assert_eq!(decode(&bytes).unwrap().1, body, "{count} torrents");
            assert_eq!(decode_whole(body_bytes).unwrap(), body, "{count} torrents");
        }
    }

    #[test]
    fn other_layouts_fall_back_to_whole_decoding() {
        // A state with a field this build does not know (a newer writer's): serde ignores it,
        // and so must the split path — by handing the body to serde.
        #[derive(Serialize)]
        struct NewerState<'a> {
            torrents: &'a BTreeMap<InfoHash, Arc<TorrentState>>,
            session: &'a Option<crate::model::SessionConfiguration>,
            metrics: &'a BTreeMap<InfoHash, Vec<crate::model::TorrentMetrics>>,
            last_seq: u64,
            last_at: Timestamp,
            written: &'a WriteTimes,
            labels_index: Vec<String>,
        }
        #[derive(Serialize)]
        struct NewerBody<'a> {
            state: NewerState<'a>,
        }
        let body = big_body(40);
        let newer = NewerBody {
            state: NewerState {
                torrents: &body.state.torrents,
                session: &body.state.session,
                metrics: &body.state.metrics,
                last_seq: body.state.last_seq,
                last_at: body.state.last_at,
                written: &body.state.written,
                labels_index: vec!["x".into()],
            },
        };
        let bytes = rmp_serde::to_vec_named(&newer).unwrap();
        assert!(split_body(&bytes, &mut |_| {}).is_none());
        assert_eq!(decode_split(&bytes), Ok(None));
        let decoded = decode_whole(&bytes).unwrap();
        assert_eq!(decoded.state, body.state);
        assert!(decoded.tombstones.is_empty());

        // Trailing bytes are refused either way.
        let mut trailing = rmp_serde::to_vec_named(&body).unwrap();
        trailing.push(0xc0);
        assert!(split_body(&trailing, &mut |_| {}).is_none());
        assert_eq!(
            decode_whole(&trailing),
            Err(SnapshotError::Body(
                "1 trailing bytes after the body".into()
            ))
        );
    }

    #[test]
    fn empty_body_round_trips() {
        let body = SnapshotBody::default();
        let bytes = encode(&body).unwrap();
        assert_eq!(decode(&bytes).unwrap().1, body);
        assert_eq!(
            decode(&bytes[..10]),
            Err(SnapshotError::TooShort { len_bytes: 10 })
        );
    }
}
