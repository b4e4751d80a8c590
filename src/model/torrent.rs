//! Owns the torrent data model shared with go-i2p-bt: [`TorrentState`] and its parts
//! ([`FileInfo`], [`PeerInfo`], [`MetaInfo`]), the [`TorrentStatus`] codes, and the
//! [Go file projection](TorrentState::file_projection) (the subset of keys Go's file
//! persistence writes to `torrents/<hash>.json`).
//!
//! JSON keys are exactly those of the Go library's `rpc.TorrentState`. Every struct decodes
//! with missing keys defaulted, `null` lists treated as empty (Go marshals a nil slice as
//! `null`) and Go's zero time treated as unset, so records written by older or newer versions
//! of either implementation still load.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::go_json;
use super::info_hash::InfoHash;
use super::timestamp::{Timestamp, deserialize_go_time, deserialize_optional_go_time};
use crate::error::{Error, Result};

/// Deserializes `null` (Go's nil slice) as `T::default()`.
fn null_as_default<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A torrent's lifecycle status as go-i2p-bt (and Transmission) numbers it.
///
/// [`TorrentState::status`] stays a plain `i64` so unknown future codes survive a round trip;
/// use [`TorrentStatus::from_code`] / [`TorrentState::status_kind`] to interpret it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TorrentStatus {
    /// 0: stopped (paused).
    Stopped,
    /// 1: queued to verify local data.
    QueuedToVerify,
    /// 2: verifying local data.
    Verifying,
    /// 3: queued to download.
    QueuedToDownload,
    /// 4: downloading.
    Downloading,
    /// 5: queued to seed.
    QueuedToSeed,
    /// 6: seeding.
    Seeding,
}

impl TorrentStatus {
    /// All statuses in code order.
    pub const ALL: [TorrentStatus; 7] = [
        TorrentStatus::Stopped,
        TorrentStatus::QueuedToVerify,
        TorrentStatus::Verifying,
        TorrentStatus::QueuedToDownload,
        TorrentStatus::Downloading,
        TorrentStatus::QueuedToSeed,
        TorrentStatus::Seeding,
    ];

    /// The status for a numeric code, `None` for codes outside 0..=6.
    pub fn from_code(code: i64) -> Option<TorrentStatus> {
        usize::try_from(code)
            .ok()
            .and_then(|i| TorrentStatus::ALL.get(i).copied())
    }

    /// The numeric code (0..=6) stored in [`TorrentState::status`].
    pub fn code(self) -> i64 {
        self as i64
    }

    /// A short lowercase name: `stopped`, `queued-to-verify`, `verifying`,
    /// `queued-to-download`, `downloading`, `queued-to-seed`, `seeding`.
    pub fn name(self) -> &'static str {
        match self {
            TorrentStatus::Stopped => "stopped",
            TorrentStatus::QueuedToVerify => "queued-to-verify",
            TorrentStatus::Verifying => "verifying",
            TorrentStatus::QueuedToDownload => "queued-to-download",
            TorrentStatus::Downloading => "downloading",
            TorrentStatus::QueuedToSeed => "queued-to-seed",
            TorrentStatus::Seeding => "seeding",
        }
    }

    /// The name of a numeric code, or `"unknown"`.
    pub fn name_of(code: i64) -> &'static str {
        TorrentStatus::from_code(code).map_or("unknown", TorrentStatus::name)
    }
}

impl fmt::Display for TorrentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One file of a torrent (Go `rpc.FileInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// Path inside the torrent, `/`-separated (for multi-file torrents it starts with the
    /// torrent's directory name).
    pub name: String,
    /// Size in bytes.
    pub length: i64,
    /// Bytes downloaded and verified.
    pub bytes_completed: i64,
    /// Download priority (-1 low, 0 normal, 1 high).
    pub priority: i64,
    /// Whether the file is selected for download.
    pub wanted: bool,
}

/// One connected peer (Go `rpc.PeerInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerInfo {
    /// The peer's id as reported by the client.
    pub id: String,
    /// IP address (or I2P destination).
    pub address: String,
    /// Port.
    pub port: i64,
    /// Bytes uploaded to this peer.
    pub uploaded: i64,
    /// Bytes downloaded from this peer.
    pub downloaded: i64,
    /// `"incoming"` or `"outgoing"`.
    pub direction: String,
}

/// The torrent's metainfo: the raw bencoded `.torrent` bytes (info dictionary plus announce,
/// announce-list, nodes, url-list, creation date, comment, created by, encoding), kept
/// byte-exact so the info hash stays verifiable.
///
/// Serde: human-readable formats use a standard-alphabet, padded base64 string; binary formats
/// (MessagePack) use raw bytes. Decoding also accepts a sequence of `u8`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MetaInfo {
    /// The bencoded `.torrent` file.
    pub raw: Vec<u8>,
}

impl MetaInfo {
    /// Wraps raw bencoded bytes (not validated).
    pub fn new(raw: Vec<u8>) -> MetaInfo {
        MetaInfo { raw }
    }

    /// The raw bencoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The `info.name` of the bencoded torrent when it is present and valid UTF-8. A bounded,
    /// allocation-free scan; malformed input yields `None`.
    pub fn name(&self) -> Option<&str> {
        let raw = self.raw.as_slice();
        let info = bencode::dict_get(raw, 0, b"info")?;
        let name = bencode::dict_get(raw, info, b"name")?;
        let (bytes, _) = bencode::read_bytes(raw, name)?;
        std::str::from_utf8(bytes).ok()
    }
}

impl fmt::Debug for MetaInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetaInfo({} bytes)", self.raw.len())
    }
}

impl From<Vec<u8>> for MetaInfo {
    fn from(raw: Vec<u8>) -> MetaInfo {
        MetaInfo { raw }
    }
}

impl Serialize for MetaInfo {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use base64::Engine as _;
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.raw))
        } else {
            serializer.serialize_bytes(&self.raw)
        }
    }
}

impl<'de> Deserialize<'de> for MetaInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(MetaInfoVisitor)
        } else {
            deserializer.deserialize_byte_buf(MetaInfoVisitor)
        }
    }
}

struct MetaInfoVisitor;

impl<'de> Visitor<'de> for MetaInfoVisitor {
    type Value = MetaInfo;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bencoded metainfo as bytes or a base64 string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<MetaInfo, E> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map(MetaInfo::new)
            .map_err(|e| E::custom(format!("meta_info is not valid base64: {e}")))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> std::result::Result<MetaInfo, E> {
        Ok(MetaInfo::new(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> std::result::Result<MetaInfo, E> {
        Ok(MetaInfo::new(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<MetaInfo, A::Error> {
        // Cap the pre-allocation: the hint comes from untrusted input.
        let mut raw = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            raw.push(b);
        }
        Ok(MetaInfo::new(raw))
    }
}

/// `meta_info` field decoding. Binary formats: strict `Option<MetaInfo>`. Human-readable
/// formats: a base64 string or `null`; any other shape (Go's own `metainfo.MetaInfo` marshals
/// as a JSON object, which Go's persistence never writes but a hand-made record might carry)
/// is skipped with a warning instead of failing the whole record.
fn deserialize_meta_info<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<MetaInfo>, D::Error> {
    if !deserializer.is_human_readable() {
        return Option::<MetaInfo>::deserialize(deserializer);
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Known(Option<MetaInfo>),
        Other(de::IgnoredAny),
    }
    match Lenient::deserialize(deserializer)? {
        Lenient::Known(m) => Ok(m),
        Lenient::Other(_) => {
            tracing::warn!("ignoring meta_info that is neither base64 text nor null");
            Ok(None)
        }
    }
}

/// A snapshot of one torrent's state (Go `rpc.TorrentState`).
///
/// Serialized to JSON this has exactly the Go keys, in Go's field order; `None` options are
/// written as `null` (Go reads `null` as "unset"). When decoding, missing keys take their
/// [`Default`], `null` lists become empty, and Go's zero time (`0001-01-01T00:00:00Z`) becomes
/// `None` for `start_date` and the Unix epoch for `added_date`.
///
/// `meta_info` is written as base64 here; Go would not read that shape, which is why anything
/// Go reads must be the [file projection](TorrentState::file_projection), which leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TorrentState {
    /// Session-local numeric id.
    pub id: i64,
    /// The torrent's info hash (lowercase hex in JSON).
    pub info_hash: InfoHash,
    /// The `.torrent` file, when known.
    #[serde(deserialize_with = "deserialize_meta_info")]
    pub meta_info: Option<MetaInfo>,
    /// Status code; see [`TorrentStatus`].
    pub status: i64,
    /// The last error message, if any.
    pub error: Option<String>,
    /// Directory the data is downloaded to.
    pub download_dir: String,
    /// When the torrent was added.
    #[serde(deserialize_with = "deserialize_go_time")]
    pub added_date: Timestamp,
    /// When the torrent was last started, if ever.
    #[serde(deserialize_with = "deserialize_optional_go_time")]
    pub start_date: Option<Timestamp>,
    /// User labels.
    #[serde(deserialize_with = "null_as_default")]
    pub labels: Vec<String>,
    /// Bytes downloaded.
    pub downloaded: i64,
    /// Bytes uploaded.
    pub uploaded: i64,
    /// Bytes still to download (of wanted files).
    pub left: i64,
    /// Fraction complete, 0.0 to 1.0.
    pub percent_done: f64,
    /// Number of pieces.
    pub piece_count: i64,
    /// Pieces downloaded and verified.
    pub pieces_complete: i64,
    /// Pieces available from connected peers.
    pub pieces_available: i64,
    /// Current download rate, bytes/s.
    pub download_rate: i64,
    /// Current upload rate, bytes/s.
    pub upload_rate: i64,
    /// Estimated seconds to completion, -1 when unknown.
    pub eta: i64,
    /// Known peers.
    pub peer_count: i64,
    /// Connected peers.
    pub peer_connected_count: i64,
    /// Peers we are downloading from.
    pub peer_sending_count: i64,
    /// Peers we are uploading to.
    pub peer_receiving_count: i64,
    /// The torrent's files.
    #[serde(deserialize_with = "null_as_default")]
    pub files: Vec<FileInfo>,
    /// Per-file priorities, parallel to `files`.
    #[serde(deserialize_with = "null_as_default")]
    pub priorities: Vec<i64>,
    /// Per-file wanted flags, parallel to `files`.
    #[serde(deserialize_with = "null_as_default")]
    pub wanted: Vec<bool>,
    /// Tracker announce URLs.
    #[serde(deserialize_with = "null_as_default")]
    pub tracker_list: Vec<String>,
    /// Connected peers.
    #[serde(deserialize_with = "null_as_default")]
    pub peers: Vec<PeerInfo>,
    /// Per-torrent seed ratio limit.
    pub seed_ratio_limit: f64,
    /// Per-torrent idle seeding limit (minutes).
    pub seed_idle_limit: i64,
    /// Whether session-wide speed limits apply.
    pub honors_session_limits: bool,
}

/// The borrowed view of a [`TorrentState`] that Go's file persistence writes to
/// `torrents/<hash>.json`: every key except those in
/// [`TorrentState::FILE_PROJECTION_OMITTED_KEYS`].
///
/// It serializes as Go's `file.go` marshals its `map[string]interface{}` of the torrent: keys
/// sorted bytewise (Go sorts map keys), times as `time.Time` writes them
/// ([`go_json::go_rfc3339_nano`](super::go_json::go_rfc3339_nano); an unset `start_date` is
/// Go's zero time `0001-01-01T00:00:00Z`, since Go's field is a plain `time.Time`), and empty
/// lists as Go's `createTorrentState` leaves them: `labels` and `files` are nil slices there
/// (`null`), `priorities`, `wanted` and `tracker_list` empty ones (`[]`). Serialize it with
/// [`go_json::to_vec_pretty`](super::go_json::to_vec_pretty) (what
/// [`TorrentState::to_go_file_json_pretty`] does) for Go's exact bytes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TorrentFileRecord<'a> {
    #[serde(serialize_with = "go_time")]
    added_date: Timestamp,
    download_dir: &'a str,
    downloaded: i64,
    #[serde(serialize_with = "empty_as_null")]
    files: &'a [FileInfo],
    honors_session_limits: bool,
    id: i64,
    info_hash: &'a InfoHash,
    #[serde(serialize_with = "empty_as_null")]
    labels: &'a [String],
    left: i64,
    percent_done: f64,
    piece_count: i64,
    pieces_available: i64,
    pieces_complete: i64,
    priorities: &'a [i64],
    seed_idle_limit: i64,
    seed_ratio_limit: f64,
    #[serde(serialize_with = "go_time_or_zero")]
    start_date: Option<Timestamp>,
    status: i64,
    tracker_list: &'a [String],
    uploaded: i64,
    wanted: &'a [bool],
}

/// Go's zero `time.Time` as `MarshalJSON` writes it.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn go_time<S: Serializer>(t: &Timestamp, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&go_json::go_rfc3339_nano(*t))
}

fn go_time_or_zero<S: Serializer>(
    t: &Option<Timestamp>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => go_time(t, s),
        None => s.serialize_str(GO_ZERO_TIME),
    }
}

/// A Go nil slice: `null` when empty.
fn empty_as_null<S: Serializer, T: Serialize>(
    items: &&[T],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    if items.is_empty() {
        s.serialize_none()
    } else {
        items.serialize(s)
    }
}

impl TorrentState {
    /// Every JSON key, in Go's field order.
    pub const JSON_KEYS: [&'static str; 31] = [
        "id",
        "info_hash",
        "meta_info",
        "status",
        "error",
        "download_dir",
        "added_date",
        "start_date",
        "labels",
        "downloaded",
        "uploaded",
        "left",
        "percent_done",
        "piece_count",
        "pieces_complete",
        "pieces_available",
        "download_rate",
        "upload_rate",
        "eta",
        "peer_count",
        "peer_connected_count",
        "peer_sending_count",
        "peer_receiving_count",
        "files",
        "priorities",
        "wanted",
        "tracker_list",
        "peers",
        "seed_ratio_limit",
        "seed_idle_limit",
        "honors_session_limits",
    ];

    /// Keys Go's file persistence leaves out of `torrents/<hash>.json`: the metainfo (stored
    /// separately as `metadata/<hash>.torrent`), the error message, and the transient live
    /// figures (rates, eta, the four peer counts and the peer list).
    pub const FILE_PROJECTION_OMITTED_KEYS: [&'static str; 10] = [
        "meta_info",
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

    /// The status interpreted, `None` for an unknown code.
    pub fn status_kind(&self) -> Option<TorrentStatus> {
        TorrentStatus::from_code(self.status)
    }

    /// The status name, `"unknown"` for an unknown code.
    pub fn status_name(&self) -> &'static str {
        TorrentStatus::name_of(self.status)
    }

    /// A human-friendly name: the metainfo's `info.name`, else the top-level directory shared
    /// by all files (or the single file's name), else the hex info hash.
    pub fn display_name(&self) -> String {
        if let Some(name) = self.meta_info.as_ref().and_then(MetaInfo::name) {
            return name.to_owned();
        }
        if let [only] = self.files.as_slice() {
            return only.name.clone();
        }
        let mut roots = self
            .files
            .iter()
            .map(|f| f.name.split('/').next().unwrap_or_default());
        if let Some(first) = roots.next()
            && !first.is_empty()
            && roots.all(|r| r == first)
        {
            return first.to_owned();
        }
        self.info_hash.to_hex()
    }

    /// What Go's file persistence writes for this torrent: all keys except
    /// [`TorrentState::FILE_PROJECTION_OMITTED_KEYS`]. Borrowed; serialize it with serde.
    pub fn file_projection(&self) -> TorrentFileRecord<'_> {
        TorrentFileRecord {
            added_date: self.added_date,
            download_dir: &self.download_dir,
            downloaded: self.downloaded,
            files: &self.files,
            honors_session_limits: self.honors_session_limits,
            id: self.id,
            info_hash: &self.info_hash,
            labels: &self.labels,
            left: self.left,
            percent_done: self.percent_done,
            piece_count: self.piece_count,
            pieces_available: self.pieces_available,
            pieces_complete: self.pieces_complete,
            priorities: &self.priorities,
            seed_idle_limit: self.seed_idle_limit,
            seed_ratio_limit: self.seed_ratio_limit,
            start_date: self.start_date,
            status: self.status,
            tracker_list: &self.tracker_list,
            uploaded: self.uploaded,
            wanted: &self.wanted,
        }
    }

    /// The [file projection](TorrentState::file_projection) as a JSON value (keys sorted, as
    /// `serde_json::Map` keeps them).
    pub fn file_projection_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(self.file_projection())
            .map_err(|e| Error::Encode(format!("torrent {}: {e}", self.info_hash)))
    }

    /// The [file projection](TorrentState::file_projection) exactly as Go's file persistence
    /// writes it to `torrents/<hash>.json` (`json.MarshalIndent(map, "", "  ")`: sorted keys,
    /// Go's floats, times and HTML escaping; see [`go_json`](super::go_json)).
    pub fn to_go_file_json_pretty(&self) -> Result<Vec<u8>> {
        go_json::to_vec_pretty(&self.file_projection())
            .map_err(|e| Error::Encode(format!("torrent {}: {e}", self.info_hash)))
    }

    /// A realistic, deterministic state for tests and demos (~1.5 KB of JSON, ~1.2 KB of
    /// MessagePack): a downloading torrent named `name` with 5 files (the last one unwanted),
    /// per-file priorities and wanted flags, 3 trackers, 2 labels and 1 peer, started 2 s after
    /// `added`. Everything derives from the arguments; no metainfo. Test kit (`testing` feature).
    #[cfg(any(test, feature = "testing"))]
    pub fn sample(info_hash: InfoHash, name: &str, added: Timestamp) -> TorrentState {
        let files = sample_files(name, i64::from(info_hash.as_bytes()[0]));
        let progress = SampleProgress::of(&files);
        let hash_bytes = info_hash.as_bytes();
        let id = i64::from(
            u32::from_be_bytes([hash_bytes[0], hash_bytes[1], hash_bytes[2], hash_bytes[3]]) >> 8,
        );
        TorrentState {
            id,
            info_hash,
            meta_info: None,
            status: TorrentStatus::Downloading.code(),
            error: None,
            download_dir: "/var/lib/torrents/downloads".to_owned(),
            added_date: added,
            start_date: Some(added.saturating_add_nanos(2_000_000_000)),
            labels: vec!["linux".to_owned(), "iso".to_owned()],
            downloaded: progress.completed,
            uploaded: progress.completed / 4,
            left: progress.wanted_left,
            percent_done: (progress.wanted_total - progress.wanted_left) as f64
                / progress.wanted_total as f64,
            piece_count: progress.piece_count,
            pieces_complete: progress.completed / SAMPLE_PIECE_BYTES,
            pieces_available: progress.piece_count,
            download_rate: 2_500_000,
            upload_rate: 310_000,
            eta: progress.wanted_left / 2_500_000,
            peer_count: 48,
            peer_connected_count: 2,
            peer_sending_count: 2,
            peer_receiving_count: 1,
            priorities: files.iter().map(|f| f.priority).collect(),
            wanted: files.iter().map(|f| f.wanted).collect(),
            files,
            tracker_list: vec![
                "udp://tracker.opentrackr.org:1337/announce".to_owned(),
                "udp://open.demonii.com:1337/announce".to_owned(),
                "https://tracker.example.org/announce".to_owned(),
            ],
            peers: vec![sample_peer()],
            seed_ratio_limit: 2.0,
            seed_idle_limit: 30,
            honors_session_limits: true,
        }
    }
}

/// The sample torrent's piece size.
#[cfg(any(test, feature = "testing"))]
const SAMPLE_PIECE_BYTES: i64 = 256 * 1024;

/// The sample torrent's five files under `name/`: the first complete, the second a third done,
/// two small ones complete, one not wanted. `seed` varies one length per torrent.
#[cfg(any(test, feature = "testing"))]
fn sample_files(name: &str, seed: i64) -> Vec<FileInfo> {
    let specs: [(&str, i64, i64, bool); 5] = [
        ("disc1.iso", 700 * 1024 * 1024, 0, true),
        ("disc2.iso", 650 * 1024 * 1024, 0, true),
        ("README.txt", 4_096 + seed, 1, true),
        ("checksums.sha256", 512, 1, true),
        ("extras/artwork.zip", 12 * 1024 * 1024, -1, false),
    ];
    specs
        .iter()
        .enumerate()
        .map(|(i, &(file, length, priority, wanted))| FileInfo {
            name: format!("{name}/{file}"),
            length,
            bytes_completed: match i {
                0 | 2 | 3 => length,
                1 => length / 3,
                _ => 0,
            },
            priority,
            wanted,
        })
        .collect()
}

/// The sample's progress figures, derived from its files so they agree with them.
#[cfg(any(test, feature = "testing"))]
struct SampleProgress {
    completed: i64,
    wanted_left: i64,
    wanted_total: i64,
    piece_count: i64,
}

#[cfg(any(test, feature = "testing"))]
impl SampleProgress {
    fn of(files: &[FileInfo]) -> Self {
        let total: i64 = files.iter().map(|f| f.length).sum();
        let wanted = || files.iter().filter(|f| f.wanted);
        Self {
            completed: files.iter().map(|f| f.bytes_completed).sum(),
            wanted_left: wanted().map(|f| f.length - f.bytes_completed).sum(),
            wanted_total: wanted().map(|f| f.length).sum(),
            piece_count: (total + SAMPLE_PIECE_BYTES - 1) / SAMPLE_PIECE_BYTES,
        }
    }
}

#[cfg(any(test, feature = "testing"))]
fn sample_peer() -> PeerInfo {
    PeerInfo {
        id: "-qB4650-k8hj0wgej6ch".to_owned(),
        address: "198.51.100.23".to_owned(),
        port: 51413,
        uploaded: 1_048_576,
        downloaded: 734_003_200,
        direction: "outgoing".to_owned(),
    }
}

/// Just enough bencode to find `info.name`: bounded, iterative, allocation-free.
mod bencode {
    /// Reads a byte string `<len>:<bytes>` at `pos`; returns it and the position after it.
    pub(super) fn read_bytes(b: &[u8], pos: usize) -> Option<(&[u8], usize)> {
        let colon = pos + b.get(pos..)?.iter().position(|&c| c == b':')?;
        let digits = b.get(pos..colon)?;
        if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let len = digits
            .iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
        let start = colon + 1;
        let end = start.checked_add(len)?;
        Some((b.get(start..end)?, end))
    }

    /// Skips the value at `pos`; returns the position after it.
    fn skip_value(b: &[u8], mut pos: usize) -> Option<usize> {
        let mut depth = 0usize;
        loop {
            match *b.get(pos)? {
                b'i' => pos = pos + 1 + b.get(pos + 1..)?.iter().position(|&c| c == b'e')? + 1,
                b'l' | b'd' => {
                    depth += 1;
                    pos += 1;
                    continue;
                }
                b'e' => {
                    depth = depth.checked_sub(1)?;
                    pos += 1;
                }
                b'0'..=b'9' => pos = read_bytes(b, pos)?.1,
                _ => return None,
            }
            if depth == 0 {
                return Some(pos);
            }
        }
    }

    /// In the dictionary at `pos`, the position of the value for `key`.
    pub(super) fn dict_get(b: &[u8], pos: usize, key: &[u8]) -> Option<usize> {
        if *b.get(pos)? != b'd' {
            return None;
        }
        let mut p = pos + 1;
        loop {
            if *b.get(p)? == b'e' {
                return None;
            }
            let (k, value) = read_bytes(b, p)?;
            if k == key {
                return Some(value);
            }
            p = skip_value(b, value)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    fn sample() -> TorrentState {
        TorrentState::sample(
            InfoHash::parse(HASH).unwrap(),
            "debian-12.5.0-amd64",
            Timestamp::parse_rfc3339("2024-05-01T12:00:00.25Z").unwrap(),
        )
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    /// The keys from the go-i2p-bt reference page, written out independently of JSON_KEYS.
    const GO_KEYS: &[&str] = &[
        "id",
        "info_hash",
        "meta_info",
        "status",
        "error",
        "download_dir",
        "added_date",
        "start_date",
        "labels",
        "downloaded",
        "uploaded",
        "left",
        "percent_done",
        "piece_count",
        "pieces_complete",
        "pieces_available",
        "download_rate",
        "upload_rate",
        "eta",
        "peer_count",
        "peer_connected_count",
        "peer_sending_count",
        "peer_receiving_count",
        "files",
        "priorities",
        "wanted",
        "tracker_list",
        "peers",
        "seed_ratio_limit",
        "seed_idle_limit",
        "honors_session_limits",
    ];

    #[test]
    fn json_has_exactly_the_go_keys() {
        let value = serde_json::to_value(sample()).unwrap();
        let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            sorted(keys),
            sorted(GO_KEYS.iter().map(|k| k.to_string()).collect())
        );
        assert_eq!(TorrentState::JSON_KEYS.len(), GO_KEYS.len());
        // Declared field order is Go's field order (lists emptied so that nested keys such as
        // files[].wanted cannot be mistaken for top-level ones).
        let mut flat = sample();
        flat.files.clear();
        flat.peers.clear();
        let text = serde_json::to_string(&flat).unwrap();
        let positions: Vec<usize> = GO_KEYS
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");

        let file = &value["files"][0];
        let keys: Vec<String> = file.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            sorted(keys),
            ["bytes_completed", "length", "name", "priority", "wanted"]
        );
        let peer = &value["peers"][0];
        let keys: Vec<String> = peer.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            sorted(keys),
            [
                "address",
                "direction",
                "downloaded",
                "id",
                "port",
                "uploaded"
            ]
        );
        assert_eq!(value["info_hash"], HASH);
        assert_eq!(value["added_date"], "2024-05-01T12:00:00.250Z");
        assert_eq!(value["start_date"], "2024-05-01T12:00:02.250Z");
        assert!(value["meta_info"].is_null());
        assert!(value["error"].is_null());
    }

    #[test]
    fn sample_is_realistic() {
        let s = sample();
        let json = serde_json::to_vec(&s).unwrap();
        assert!((1000..=1700).contains(&json.len()), "{} bytes", json.len());
        let bin = rmp_serde::to_vec_named(&s).unwrap();
        assert!((800..=1400).contains(&bin.len()), "{} bytes", bin.len());
        assert_eq!(s.files.len(), 5);
        assert_eq!(s.priorities.len(), 5);
        assert_eq!(s.wanted.len(), 5);
        assert_eq!(s.tracker_list.len(), 3);
        assert_eq!(s.labels.len(), 2);
        assert!(s.percent_done > 0.0 && s.percent_done < 1.0);
        assert_eq!(s.status_kind(), Some(TorrentStatus::Downloading));
        assert_eq!(s.status_name(), "downloading");
        assert_eq!(s.display_name(), "debian-12.5.0-amd64");
        assert_eq!(s, sample());
    }

    #[test]
    fn json_round_trip() {
        let mut s = sample();
        s.meta_info = Some(MetaInfo::new(b"d4:infod4:name3:abcee".to_vec()));
        s.error = Some("tracker said no".to_owned());
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains("\"meta_info\":\"ZDQ6aW5mb2Q0Om5hbWUzOmFiY2Vl\""),
            "{json}"
        );
        let back: TorrentState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.display_name(), "abc");
    }

    #[test]
    fn msgpack_round_trip_with_meta_info_as_bytes() {
        let mut s = sample();
        s.meta_info = Some(MetaInfo::new(vec![0, 1, 2, 255]));
        let bin = rmp_serde::to_vec_named(&s).unwrap();
        let back: TorrentState = rmp_serde::from_slice(&bin).unwrap();
        assert_eq!(back, s);
        // Raw bytes appear verbatim after a bin8 header.
        assert!(bin.windows(6).any(|w| w == [0xc4, 4, 0, 1, 2, 255]));
    }

    #[test]
    fn file_projection_omits_the_documented_keys() {
        let mut s = sample();
        s.meta_info = Some(MetaInfo::new(b"de".to_vec()));
        s.error = Some("x".to_owned());
        let value = s.file_projection_json().unwrap();
        let keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
        let expected: Vec<String> = GO_KEYS
            .iter()
            .filter(|k| {
                ![
                    "meta_info",
                    "error",
                    "download_rate",
                    "upload_rate",
                    "eta",
                    "peer_count",
                    "peer_connected_count",
                    "peer_sending_count",
                    "peer_receiving_count",
                    "peers",
                ]
                .contains(k)
            })
            .map(|k| k.to_string())
            .collect();
        assert_eq!(sorted(keys), sorted(expected.clone()));
        for k in TorrentState::FILE_PROJECTION_OMITTED_KEYS {
            assert!(value.get(k).is_none(), "{k}");
        }
        // Pretty bytes have Go's map order (sorted keys) and read back as the same state minus
        // omitted fields.
        let mut flat = s.clone();
        flat.files.clear();
        let pretty = flat.to_go_file_json_pretty().unwrap();
        let text = std::str::from_utf8(&pretty).unwrap();
        assert!(text.starts_with("{\n  \"added_date\": "), "{text}");
        let positions: Vec<usize> = sorted(expected.clone())
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        let pretty = s.to_go_file_json_pretty().unwrap();
        let back: TorrentState = serde_json::from_slice(&pretty).unwrap();
        let mut stripped = s.clone();
        stripped.meta_info = None;
        stripped.error = None;
        stripped.download_rate = 0;
        stripped.upload_rate = 0;
        stripped.eta = 0;
        stripped.peer_count = 0;
        stripped.peer_connected_count = 0;
        stripped.peer_sending_count = 0;
        stripped.peer_receiving_count = 0;
        stripped.peers.clear();
        assert_eq!(back, stripped);
    }

    #[test]
    fn decodes_sparse_and_go_shaped_records() {
        let s: TorrentState = serde_json::from_str("{}").unwrap();
        assert_eq!(s, TorrentState::default());

        let go = format!(
            r#"{{"id":3,"info_hash":"{HASH}","status":6,"download_dir":"/d",
               "added_date":"2024-05-01T12:00:00.123+02:00",
               "start_date":"0001-01-01T00:00:00Z","labels":null,"files":null,
               "priorities":null,"wanted":null,"tracker_list":null,"peers":null,
               "percent_done":1,"seed_ratio_limit":0,"honors_session_limits":true,
               "some_future_key":{{"nested":[1,2,3]}}}}"#
        );
        let s: TorrentState = serde_json::from_str(&go).unwrap();
        assert_eq!(s.id, 3);
        assert_eq!(s.status_kind(), Some(TorrentStatus::Seeding));
        assert_eq!(s.start_date, None);
        assert_eq!(s.added_date.to_rfc3339(), "2024-05-01T10:00:00.123Z");
        assert!(s.labels.is_empty() && s.files.is_empty() && s.peers.is_empty());
        assert_eq!(s.percent_done, 1.0);
        assert!(s.honors_session_limits);

        // Go's own metainfo object shape is skipped, not fatal.
        let odd = format!(r#"{{"info_hash":"{HASH}","meta_info":{{"InfoBytes":"ZGU="}}}}"#);
        let s: TorrentState = serde_json::from_str(&odd).unwrap();
        assert_eq!(s.meta_info, None);
        // But a bad info hash is.
        let err = serde_json::from_str::<TorrentState>(r#"{"info_hash":"xyz"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 40 or 64 hex characters, got 3"),
            "{err}"
        );
    }

    #[test]
    fn status_codes() {
        for (i, st) in TorrentStatus::ALL.iter().enumerate() {
            assert_eq!(st.code(), i as i64);
            assert_eq!(TorrentStatus::from_code(i as i64), Some(*st));
        }
        assert_eq!(TorrentStatus::from_code(7), None);
        assert_eq!(TorrentStatus::from_code(-1), None);
        assert_eq!(TorrentStatus::name_of(0), "stopped");
        assert_eq!(TorrentStatus::name_of(6), "seeding");
        assert_eq!(TorrentStatus::name_of(99), "unknown");
    }

    #[test]
    fn meta_info_name_and_malformed_input() {
        let raw = b"d8:announce20:http://t.example/ann4:infod6:lengthi5e4:name5:hello12:piece lengthi16384eee";
        assert_eq!(MetaInfo::new(raw.to_vec()).name(), Some("hello"));
        for bad in [
            &b""[..],
            b"d",
            b"d4:info",
            b"d4:infod4:name99:x",
            b"le",
            b"d4:infoi1ee",
            b"d99999999999999999999:",
        ] {
            assert_eq!(MetaInfo::new(bad.to_vec()).name(), None);
        }
        assert_eq!(
            format!("{:?}", MetaInfo::new(vec![1, 2, 3])),
            "MetaInfo(3 bytes)"
        );
    }

    #[test]
    fn display_name_fallbacks() {
        let mut s = TorrentState::default();
        assert_eq!(s.display_name(), "0".repeat(40));
        s.files.push(FileInfo {
            name: "single.iso".to_owned(),
            ..FileInfo::default()
        });
        assert_eq!(s.display_name(), "single.iso");
        s.files.push(FileInfo {
            name: "other/x".to_owned(),
            ..FileInfo::default()
        });
        assert_eq!(s.display_name(), "0".repeat(40));
    }
}
