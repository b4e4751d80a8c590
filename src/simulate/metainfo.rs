//! Owns the simulated client's `.torrent` files: real bencode (via `bt_bencode`), the info hash
//! computed as SHA-1 (v1) or SHA-256 (v2, BEP 52) of the bencoded info dictionary, and piece
//! counts, piece lengths and file layouts spread like the torrents users have.
//!
//! Sizes: a torrent's payload is log-uniform between 1 MiB and 64 GiB; most pick their piece
//! length as today's clients do (about 1,500 pieces, 16 KiB to 16 MiB), so their `.torrent` is
//! 1 KB to 50 KB; one v1 torrent in twelve uses the old fixed 256 KiB pieces, so a 50 GB one
//! carries 4 MB of piece hashes. One torrent in eight is v2 (`file tree`, `piece layers`).
//! Piece hashes are random bytes: there is no payload to hash, but everything a client derives
//! from the metainfo (hash, names, lengths, piece count) is exact.

use std::collections::BTreeMap;

use bt_bencode::{ByteString, Value};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use super::Rng;
use crate::model::InfoHash;

/// Smallest and largest payload, as powers of two (1 MiB and 64 GiB).
const PAYLOAD_LOG2_RANGE: (f64, f64) = (20.0, 36.0);
/// Pieces today's clients aim for when they choose a piece length.
const TARGET_PIECES: i64 = 1_500;
/// Piece length bounds for that choice (BEP 52 requires at least 16 KiB, a power of two).
const PIECE_LENGTH_RANGE: (i64, i64) = (16 * 1024, 16 * 1024 * 1024);
/// The piece length of older tools, whatever the payload size.
const LEGACY_PIECE_LENGTH: i64 = 256 * 1024;
/// One v1 torrent in this many uses [`LEGACY_PIECE_LENGTH`].
const LEGACY_ONE_IN: u64 = 12;
/// One torrent in this many is BitTorrent v2.
const V2_ONE_IN: u64 = 8;
/// One multi-file torrent in this many has an unwanted last file (a sample, extras).
const UNWANTED_ONE_IN: u64 = 4;

/// Names the generator builds torrent names from: plain ASCII, spaces, `&`, and non-ASCII, as
/// users' torrents have.
const NAMES: [&str; 12] = [
    "debian-12.8.0-amd64-DVD",
    "ubuntu-24.04.1-desktop-amd64",
    "archlinux-2024.12.01-x86_64",
    "Big Buck Bunny (2008) [1080p]",
    "Sintel.2010.4K.UHD",
    "LibreOffice_24.8_Linux_x86-64",
    "Tears of Steel & Cosmos Laundromat",
    "Músicas da Floresta — Coleção",
    "Wikipedia_en_all_maxi_2024-01",
    "OpenStreetMap planet <weekly>",
    "Project Gutenberg 日本語",
    "kernel.org linux-6.12 sources",
];

const TRACKERS: [&str; 4] = [
    "udp://tracker.opentrackr.org:1337/announce",
    "udp://open.demonii.com:1337/announce",
    "https://tracker.example.org/announce",
    "http://bt.example.net:6969/announce",
];

/// Which BitTorrent version lays out the pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// Pieces run across the concatenation of all files.
    V1,
    /// Every file starts a new piece (BEP 52).
    V2,
}

/// One file of a torrent, as a client lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SimFile {
    /// Path as the client shows it: `name` for a single-file torrent, `name/dir/file` otherwise.
    pub path: String,
    pub length: i64,
    pub wanted: bool,
}

/// A generated torrent: its `.torrent` bytes and what a client reads from them.
#[derive(Debug, Clone)]
pub(crate) struct SimTorrent {
    pub info_hash: InfoHash,
    /// The bencoded `.torrent` file.
    pub raw: Vec<u8>,
    pub piece_length: i64,
    pub version: Version,
    /// Unwanted files, if any, come last: the wanted pieces are a prefix of all pieces.
    pub files: Vec<SimFile>,
    pub trackers: Vec<String>,
}

impl SimTorrent {
    /// Generates torrent `n` of a run seeded with `seed`; the same arguments give the same bytes.
    pub fn generate(seed: u64, n: usize) -> SimTorrent {
        let (mut torrent, name, mut rng) = SimTorrent::layout(seed, n);
        let (info, extra) = match torrent.version {
            Version::V1 => (torrent.v1_info(&mut rng, &name), BTreeMap::new()),
            Version::V2 => torrent.v2_info(&mut rng, &name),
        };
        let info_bytes = encode(&Value::Dict(info));
        torrent.info_hash = match torrent.version {
            Version::V1 => InfoHash::V1(Sha1::digest(&info_bytes).into()),
            Version::V2 => InfoHash::V2(Sha256::digest(&info_bytes).into()),
        };
        torrent.raw = torrent.outer_dict(&mut rng, info_bytes, extra);
        torrent
    }

    /// Torrent `n` without its `.torrent`: the same layout and piece length as
    /// [`SimTorrent::generate`], no piece hashes, no bytes (`raw` empty), and an info hash drawn
    /// at random instead of hashed. For benchmarks that measure the journal on small states.
    pub fn generate_light(seed: u64, n: usize) -> SimTorrent {
        let (mut torrent, _, mut rng) = SimTorrent::layout(seed, n);
        torrent.info_hash = match torrent.version {
            Version::V1 => InfoHash::V1(Sha1::digest(rng.bytes(8)).into()),
            Version::V2 => InfoHash::V2(Sha256::digest(rng.bytes(8)).into()),
        };
        torrent
    }

    /// Everything but the hash and the bytes: version, name, files, piece length, trackers;
    /// and the generator, positioned to draw the rest.
    fn layout(seed: u64, n: usize) -> (SimTorrent, String, Rng) {
        let mut rng = Rng::new(seed ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let version = if rng.one_in(V2_ONE_IN) {
            Version::V2
        } else {
            Version::V1
        };
        let name = format!("{} #{n}", NAMES[rng.below(NAMES.len() as u64) as usize]);
        let files = layout_files(&mut rng, &name);
        let total: i64 = files.iter().map(|f| f.length).sum();
        let piece_length = if version == Version::V1 && rng.one_in(LEGACY_ONE_IN) {
            LEGACY_PIECE_LENGTH
        } else {
            modern_piece_length(total)
        };
        let torrent = SimTorrent {
            info_hash: InfoHash::V1([0; 20]),
            raw: Vec::new(),
            piece_length,
            version,
            files,
            trackers: pick_trackers(&mut rng),
        };
        (torrent, name, rng)
    }

    pub fn total_length(&self) -> i64 {
        self.files.iter().map(|f| f.length).sum()
    }

    pub fn wanted_length(&self) -> i64 {
        self.files
            .iter()
            .filter(|f| f.wanted)
            .map(|f| f.length)
            .sum()
    }

    /// Pieces in the torrent.
    pub fn piece_count(&self) -> i64 {
        match self.version {
            Version::V1 => div_ceil(self.total_length(), self.piece_length),
            Version::V2 => self.files.iter().map(|f| self.pieces_of(f)).sum(),
        }
    }

    /// Pieces a client downloads to complete the wanted files (a prefix of all pieces).
    pub fn wanted_piece_count(&self) -> i64 {
        match self.version {
            Version::V1 => div_ceil(self.wanted_length(), self.piece_length),
            Version::V2 => self
                .files
                .iter()
                .filter(|f| f.wanted)
                .map(|f| self.pieces_of(f))
                .sum(),
        }
    }

    /// Each file's completed bytes once the first `pieces` pieces are complete.
    pub fn bytes_completed(&self, pieces: i64) -> Vec<i64> {
        assert!(
            pieces >= 0 && pieces <= self.piece_count(),
            "piece out of range"
        );
        match self.version {
            Version::V1 => {
                let done = (pieces * self.piece_length).min(self.total_length());
                let mut start = 0;
                self.files
                    .iter()
                    .map(|f| {
                        let overlap = (done - start).clamp(0, f.length);
                        start += f.length;
                        overlap
                    })
                    .collect()
            }
            Version::V2 => {
                let mut left = pieces;
                self.files
                    .iter()
                    .map(|f| {
                        let taken = left.min(self.pieces_of(f));
                        left -= taken;
                        (taken * self.piece_length).min(f.length)
                    })
                    .collect()
            }
        }
    }

    fn pieces_of(&self, file: &SimFile) -> i64 {
        div_ceil(file.length, self.piece_length)
    }

    /// `info` of a v1 torrent: `length` or `files`, `name`, `piece length`, `pieces`.
    fn v1_info(&self, rng: &mut Rng, name: &str) -> BTreeMap<ByteString, Value> {
        let mut info = BTreeMap::new();
        if let [single] = self.files.as_slice() {
            info.insert(key("length"), Value::from(single.length));
        } else {
            let files = self.files.iter().map(|f| {
                let path = relative_path(name, &f.path).map(Value::from).collect();
                let mut entry = BTreeMap::new();
                entry.insert(key("length"), Value::from(f.length));
                entry.insert(key("path"), Value::List(path));
                Value::Dict(entry)
            });
            info.insert(key("files"), Value::List(files.collect()));
        }
        info.insert(key("name"), Value::from(name.to_owned()));
        info.insert(key("piece length"), Value::from(self.piece_length));
        let pieces = rng.bytes(20 * self.piece_count() as usize);
        info.insert(key("pieces"), Value::ByteStr(pieces.into()));
        info
    }

    /// `info` of a v2 torrent (`file tree`, `meta version` 2) and the top-level `piece layers`.
    fn v2_info(
        &self,
        rng: &mut Rng,
        name: &str,
    ) -> (BTreeMap<ByteString, Value>, BTreeMap<ByteString, Value>) {
        let mut tree = BTreeMap::new();
        let mut layers = BTreeMap::new();
        for file in &self.files {
            let root = rng.bytes(32);
            if file.length > self.piece_length {
                let layer = rng.bytes(32 * self.pieces_of(file) as usize);
                layers.insert(ByteString::from(root.clone()), Value::ByteStr(layer.into()));
            }
            let mut leaf = BTreeMap::new();
            leaf.insert(key("length"), Value::from(file.length));
            leaf.insert(key("pieces root"), Value::ByteStr(root.into()));
            let mut node = BTreeMap::new();
            node.insert(key(""), Value::Dict(leaf));
            let components: Vec<&str> = if self.files.len() == 1 {
                vec![name]
            } else {
                relative_path(name, &file.path).collect()
            };
            insert_path(&mut tree, &components, Value::Dict(node));
        }
        let mut info = BTreeMap::new();
        info.insert(key("file tree"), Value::Dict(tree));
        info.insert(key("meta version"), Value::from(2));
        info.insert(key("name"), Value::from(name.to_owned()));
        info.insert(key("piece length"), Value::from(self.piece_length));
        let mut extra = BTreeMap::new();
        extra.insert(key("piece layers"), Value::Dict(layers));
        (info, extra)
    }

    /// The whole `.torrent`: the info dictionary's exact bytes inside the outer dictionary
    /// (`announce`, `announce-list`, `comment`, `created by`, `creation date`, ...).
    fn outer_dict(
        &self,
        rng: &mut Rng,
        info_bytes: Vec<u8>,
        mut outer: BTreeMap<ByteString, Value>,
    ) -> Vec<u8> {
        if let Some(first) = self.trackers.first() {
            outer.insert(key("announce"), Value::from(first.clone()));
            let tiers = self
                .trackers
                .iter()
                .map(|t| Value::List(vec![t.clone().into()]));
            outer.insert(key("announce-list"), Value::List(tiers.collect()));
        } else {
            let node = Value::List(vec!["router.bittorrent.com".into(), Value::from(6881)]);
            outer.insert(key("nodes"), Value::List(vec![node]));
        }
        if rng.one_in(3) {
            outer.insert(
                key("comment"),
                Value::from("Seeded by the simulated client".to_owned()),
            );
            outer.insert(
                key("url-list"),
                Value::List(vec!["https://mirror.example.org/".into()]),
            );
        }
        outer.insert(key("created by"), Value::from("mktorrent 1.1".to_owned()));
        let created_unix_s = 1_500_000_000 + rng.below(200_000_000) as i64;
        outer.insert(key("creation date"), Value::from(created_unix_s));
        outer.insert(key("encoding"), Value::from("UTF-8".to_owned()));
        // The info dictionary goes in as the bytes that were hashed: splice them in at the
        // place bencode's key order puts `info` (after `encoding`, before anything later).
        let (before, after): (BTreeMap<_, _>, BTreeMap<_, _>) = outer
            .into_iter()
            .partition(|(k, _)| k.as_slice() < b"info".as_slice());
        let mut raw = encode(&Value::Dict(before));
        raw.pop(); // the closing `e`
        raw.extend_from_slice(b"4:info");
        raw.extend_from_slice(&info_bytes);
        let tail = encode(&Value::Dict(after));
        raw.extend_from_slice(&tail[1..]); // without the opening `d`
        raw
    }
}

/// One to twelve files: one dominant payload plus small companions, as real releases have.
fn layout_files(rng: &mut Rng, name: &str) -> Vec<SimFile> {
    let exponent =
        PAYLOAD_LOG2_RANGE.0 + (PAYLOAD_LOG2_RANGE.1 - PAYLOAD_LOG2_RANGE.0) * rng.unit();
    let payload = exponent.exp2() as i64;
    if rng.one_in(3) {
        return vec![SimFile {
            path: name.to_owned(),
            length: payload,
            wanted: true,
        }];
    }
    let count = 2 + rng.below(11) as usize;
    let mut files: Vec<SimFile> = (0..count)
        .map(|i| {
            let length = if i == 0 {
                payload
            } else {
                1 + rng.below((payload / 8).max(2) as u64) as i64
            };
            let path = match i {
                0 => format!("{name}/main.bin"),
                1 => format!("{name}/README.txt"),
                _ => format!("{name}/parts/part-{i:02}.bin"),
            };
            SimFile {
                path,
                length,
                wanted: true,
            }
        })
        .collect();
    if rng.one_in(UNWANTED_ONE_IN) {
        files.push(SimFile {
            path: format!("{name}/extras/sample.mkv"),
            length: 1 + rng.below(64 << 20) as i64,
            wanted: false,
        });
    }
    files
}

/// The piece length a current client picks: a power of two giving about [`TARGET_PIECES`].
fn modern_piece_length(total: i64) -> i64 {
    let wanted = (total / TARGET_PIECES).max(1) as u64;
    (wanted.next_power_of_two() as i64).clamp(PIECE_LENGTH_RANGE.0, PIECE_LENGTH_RANGE.1)
}

/// Zero to four trackers (none: a DHT-only torrent with `nodes`).
fn pick_trackers(rng: &mut Rng) -> Vec<String> {
    let count = rng.below(TRACKERS.len() as u64 + 1) as usize;
    TRACKERS[..count].iter().map(|t| (*t).to_owned()).collect()
}

/// The path components of `path` below the torrent's `name` directory.
fn relative_path<'a>(name: &str, path: &'a str) -> impl Iterator<Item = &'a str> {
    let rest = path.get(name.len() + 1..).unwrap_or(path);
    rest.split('/')
}

fn insert_path(tree: &mut BTreeMap<ByteString, Value>, components: &[&str], leaf: Value) {
    match components {
        [] => {}
        [last] => {
            tree.insert(key(last), leaf);
        }
        [first, rest @ ..] => {
            let child = tree
                .entry(key(first))
                .or_insert_with(|| Value::Dict(BTreeMap::new()));
            if let Value::Dict(child) = child {
                insert_path(child, rest, leaf);
            }
        }
    }
}

fn key(text: &str) -> ByteString {
    ByteString::from(text.as_bytes().to_vec())
}

fn encode(value: &Value) -> Vec<u8> {
    // Encoding a `Value` writes to a Vec: it cannot fail (no I/O, no unsupported types).
    bt_bencode::to_vec(value).expect("bencoding a Value into memory cannot fail")
}

fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// The info hash of a strictly decoded, canonical `.torrent` (v2 when `meta version` is 2).
#[cfg(test)]
pub(crate) fn hash_of(raw: &[u8]) -> InfoHash {
    let value = tests::decode_strictly(raw);
    let info = value.get("info").expect("an info dictionary");
    let bytes = encode(info);
    if info.get("meta version").and_then(Value::as_u64) == Some(2) {
        InfoHash::V2(Sha256::digest(&bytes).into())
    } else {
        InfoHash::V1(Sha1::digest(&bytes).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn decode_strictly(raw: &[u8]) -> Value {
        let value: Value = bt_bencode::from_slice(raw).unwrap();
        assert_eq!(
            encode(&value),
            raw,
            "canonical bencode (sorted keys, no padding)"
        );
        value
    }

    #[test]
    fn the_info_hash_is_the_hash_of_the_info_dictionary() {
        let mut versions = Vec::new();
        for n in 0..64 {
            let t = SimTorrent::generate(3, n);
            let value = decode_strictly(&t.raw);
            let info = encode(value.get("info").unwrap());
            let expected = match t.version {
                Version::V1 => InfoHash::V1(Sha1::digest(&info).into()),
                Version::V2 => InfoHash::V2(Sha256::digest(&info).into()),
            };
            assert_eq!(t.info_hash, expected);
            versions.push(t.version);
        }
        assert!(versions.contains(&Version::V1) && versions.contains(&Version::V2));
    }

    #[test]
    fn sizes_spread_from_a_kilobyte_to_megabytes() {
        let sizes: Vec<usize> = (0..400)
            .map(|n| SimTorrent::generate(1, n).raw.len())
            .collect();
        let min = sizes.iter().min().unwrap();
        let max = sizes.iter().max().unwrap();
        assert!(*min < 2_000, "smallest .torrent {min} bytes");
        assert!(*max > 1_000_000, "largest .torrent {max} bytes");
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        assert!((5_000..60_000).contains(&median), "median {median}");
    }

    #[test]
    fn piece_counts_match_the_metainfo() {
        for n in 0..40 {
            let t = SimTorrent::generate(5, n);
            let value = decode_strictly(&t.raw);
            let info = value.get("info").unwrap();
            if t.version == Version::V1 {
                let pieces = info.get("pieces").unwrap().as_byte_str().unwrap();
                assert_eq!(pieces.len() as i64, 20 * t.piece_count());
            }
            let completed = t.bytes_completed(t.piece_count());
            let lengths: Vec<i64> = t.files.iter().map(|f| f.length).collect();
            assert_eq!(completed, lengths, "every piece complete: every byte");
            assert_eq!(t.bytes_completed(0).iter().sum::<i64>(), 0);
            let wanted = t.bytes_completed(t.wanted_piece_count());
            for (file, done) in t.files.iter().zip(wanted) {
                if file.wanted {
                    assert_eq!(done, file.length, "{}", file.path);
                }
            }
        }
    }
}
