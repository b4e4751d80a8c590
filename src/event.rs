//! Owns the journal's event vocabulary ([`Event`], [`HookRecord`], [`Envelope`]) and its
//! payload codec ([`encode`], [`decode`]), plus the one-line JSON rendering used by `tj tail`
//! ([`to_json_line`]).
//!
//! # Encoding
//!
//! An event payload is MessagePack written with `rmp_serde::to_vec_named`: structs (and struct
//! variants) are maps keyed by field name, enums are externally tagged by variant name
//! (`{"TorrentSaved": {"torrent": {…}}}`), info hashes and metainfo are raw bytes, timestamps
//! `i64` nanoseconds. The sequence number and append time live in the frame, not the payload;
//! [`Envelope`] joins them back together after reading.
//!
//! # Evolution rules
//!
//! Journals are kept forever, so every payload ever written must stay decodable:
//!
//! 1. **New fields** get `#[serde(default)]` (or live in a struct with a container-level
//!    `#[serde(default)]`), so old payloads without them decode. Unknown fields are ignored,
//!    so old readers skip fields added later.
//! 2. **Never rename, reuse or remove a variant** (nor a field's key): the names are the wire
//!    format. [`Event::kind`] strings are likewise stable.
//! 3. **When a variant's shape must change incompatibly**, the old shape moves to the
//!    [`legacy`] submodule as `XxxV1` (keeping its wire name through `#[serde(rename)]`), the
//!    new shape gets a new variant name, and [`decode`] reads into a private wire enum holding
//!    both and upcasts `XxxV1` to the new variant, so the rest of the crate only ever sees
//!    current shapes.
//! 4. **Adding a variant** is compatible for new readers only; an old reader reports a decode
//!    error with its location. Anything an old reader must refuse outright is signalled by the
//!    format version in the segment header, which is bumped for such changes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{
    HookContext, HookEvent, InfoHash, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};

/// One change recorded in the journal.
///
/// Variant and field names are the on-disk format; see the [module docs](self) for the rules
/// for changing them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// One of the seven go-i2p-bt hook events, with the torrent snapshot it carried.
    Hook(HookRecord),
    /// An explicit `save_torrent`.
    TorrentSaved {
        /// The torrent as saved.
        torrent: Box<TorrentState>,
    },
    /// An explicit `save_all_torrents`: applies all-or-nothing.
    TorrentsSaved {
        /// The torrents as saved.
        torrents: Vec<TorrentState>,
    },
    /// An explicit `delete_torrent`.
    TorrentDeleted {
        /// The torrent deleted.
        info_hash: InfoHash,
    },
    /// An explicit `save_session_config`.
    SessionConfigSaved {
        /// The configuration as saved.
        config: Box<SessionConfiguration>,
    },
    /// A batch of metrics samples.
    MetricsRecorded {
        /// The samples, possibly for several torrents.
        samples: Vec<TorrentMetrics>,
    },
    /// Retention: samples taken before `older_than` are dropped.
    MetricsPurged {
        /// Samples with a timestamp strictly before this are purged.
        older_than: Timestamp,
    },
}

/// A hook event as journaled: the [`HookContext`] minus the cancellation context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookRecord {
    /// Which hook event fired.
    pub event: HookEvent,
    /// The torrent snapshot the hook carried.
    pub torrent: Box<TorrentState>,
    /// The hook's free-form data.
    #[serde(default)]
    pub data: Map<String, Value>,
    /// When the hook fired (the client's clock; may differ from [`Envelope::at`]).
    pub timestamp: Timestamp,
}

/// An event with its journal position: the sequence number and the time it was appended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Gap-free, strictly increasing sequence number.
    pub seq: u64,
    /// When the journal appended the event.
    pub at: Timestamp,
    /// The event.
    pub event: Event,
}

impl Envelope {
    /// Bundles an event with its position.
    pub fn new(seq: u64, at: Timestamp, event: Event) -> Envelope {
        Envelope { seq, at, event }
    }
}

impl Event {
    /// Every value [`Event::kind`] can return.
    pub const KINDS: [&'static str; 13] = [
        "torrent-added",
        "torrent-started",
        "torrent-stopped",
        "torrent-completed",
        "torrent-removed",
        "torrent-metadata",
        "torrent-error",
        "torrent-saved",
        "torrents-saved",
        "torrent-deleted",
        "session-config-saved",
        "metrics-recorded",
        "metrics-purged",
    ];

    /// A stable kebab-case name: the Go hook string for hook events, otherwise
    /// `torrent-saved`, `torrents-saved`, `torrent-deleted`, `session-config-saved`,
    /// `metrics-recorded` or `metrics-purged`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Hook(h) => h.event.as_str(),
            Event::TorrentSaved { .. } => "torrent-saved",
            Event::TorrentsSaved { .. } => "torrents-saved",
            Event::TorrentDeleted { .. } => "torrent-deleted",
            Event::SessionConfigSaved { .. } => "session-config-saved",
            Event::MetricsRecorded { .. } => "metrics-recorded",
            Event::MetricsPurged { .. } => "metrics-purged",
        }
    }

    /// The torrent this event is about, when it is about exactly one.
    pub fn info_hash(&self) -> Option<InfoHash> {
        match self {
            Event::Hook(h) => Some(h.torrent.info_hash),
            Event::TorrentSaved { torrent } => Some(torrent.info_hash),
            Event::TorrentDeleted { info_hash } => Some(*info_hash),
            Event::TorrentsSaved { .. }
            | Event::SessionConfigSaved { .. }
            | Event::MetricsRecorded { .. }
            | Event::MetricsPurged { .. } => None,
        }
    }

    /// Every torrent the event touches, without duplicates, in order of first appearance.
    /// Empty for session and purge events.
    pub fn info_hashes(&self) -> Vec<InfoHash> {
        fn distinct(hashes: impl Iterator<Item = InfoHash>) -> Vec<InfoHash> {
            let mut out: Vec<InfoHash> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for h in hashes {
                if seen.insert(h) {
                    out.push(h);
                }
            }
            out
        }
        match self {
            Event::TorrentsSaved { torrents } => distinct(torrents.iter().map(|t| t.info_hash)),
            Event::MetricsRecorded { samples } => distinct(samples.iter().map(|s| s.info_hash)),
            other => other.info_hash().into_iter().collect(),
        }
    }
}

impl From<HookContext> for HookRecord {
    fn from(ctx: HookContext) -> HookRecord {
        HookRecord {
            event: ctx.event,
            torrent: Box::new(ctx.torrent),
            data: ctx.data,
            timestamp: ctx.timestamp,
        }
    }
}

impl From<HookRecord> for HookContext {
    fn from(rec: HookRecord) -> HookContext {
        HookContext {
            event: rec.event,
            torrent: *rec.torrent,
            data: rec.data,
            timestamp: rec.timestamp,
        }
    }
}

impl From<HookContext> for Event {
    fn from(ctx: HookContext) -> Event {
        Event::Hook(ctx.into())
    }
}

impl From<HookRecord> for Event {
    fn from(rec: HookRecord) -> Event {
        Event::Hook(rec)
    }
}

/// Encodes an event as a journal payload (named MessagePack).
pub fn encode(event: &Event) -> Result<Vec<u8>> {
    // Most events are around 1 KB: one allocation instead of a chain of doublings (measured
    // 2.8 µs → ~1 µs per event in `benches/codec.rs`).
    let mut buf = Vec::with_capacity(ENCODE_CAPACITY_BYTES);
    encode_into(event, &mut buf)?;
    Ok(buf)
}

/// Initial buffer size of [`encode`].
const ENCODE_CAPACITY_BYTES: usize = 2048;

/// Appends an event's payload to `buf` (reusing its capacity). On error `buf` is left as it
/// was.
pub fn encode_into(event: &Event, buf: &mut Vec<u8>) -> Result<()> {
    let start = buf.len();
    rmp_serde::encode::write_named(buf, event).map_err(|e| {
        buf.truncate(start);
        Error::Encode(format!("{} event: {e}", event.kind()))
    })
}

/// Decodes a journal payload. The whole slice must be one event: trailing bytes are an error.
///
/// Never panics on malformed input. The error is a bare reason; the caller adds the location
/// (segment, offset, seq) and wraps it in [`Error::Decode`].
pub fn decode(bytes: &[u8]) -> std::result::Result<Event, String> {
    // Borrowing from the slice spares every string and byte string a copy through the
    // deserializer's scratch buffer (`Deserializer::new` over a slice reads each one with
    // `read_to_end`): ~30% of a snapshot-carrying event's decode. It does not tell where the
    // value ended, so trailing bytes are found by walking the value's structure.
    let event: Event =
        rmp_serde::from_slice(bytes).map_err(|e| format!("invalid event payload: {e}"))?;
    let rest = bytes.len() - crate::msgpack::value_len(bytes).unwrap_or(bytes.len());
    if rest != 0 {
        return Err(format!(
            "{rest} trailing bytes after a {} event of {} bytes",
            event.kind(),
            bytes.len() - rest
        ));
    }
    Ok(event)
}

/// Superseded event shapes, kept so old journals stay readable (see the evolution rules in the
/// [module docs](self)). Empty while format version 1 is the only one.
pub mod legacy {}

/// Renders an envelope as one JSON object for `tj tail`: always `seq`, `at` (RFC 3339) and
/// `event` (the [`Event::kind`]), then per kind:
///
/// * hook events: `info_hash`, `name`, `status` (name), `percent_done`, `hook_timestamp`,
///   `data`, and `error` when the torrent carries one;
/// * `torrent-saved`: `info_hash`, `name`, `status`, `percent_done`;
/// * `torrents-saved`: `count`, `info_hashes`;
/// * `torrent-deleted`: `info_hash`;
/// * `session-config-saved`: `download_dir`, `peer_port`, `version`;
/// * `metrics-recorded`: `count`, `info_hashes`;
/// * `metrics-purged`: `older_than`.
pub fn to_json_line(env: &Envelope) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_owned(), v);
    };
    put("seq", Value::from(env.seq));
    put("at", Value::from(env.at.to_rfc3339()));
    put("event", Value::from(env.event.kind()));
    let hashes =
        |hs: Vec<InfoHash>| Value::Array(hs.iter().map(|h| Value::from(h.to_hex())).collect());
    match &env.event {
        Event::Hook(h) => {
            torrent_summary(&mut put, &h.torrent);
            put("hook_timestamp", Value::from(h.timestamp.to_rfc3339()));
            if let Some(err) = &h.torrent.error {
                put("error", Value::from(err.as_str()));
            }
            put("data", Value::Object(h.data.clone()));
        }
        Event::TorrentSaved { torrent } => torrent_summary(&mut put, torrent),
        Event::TorrentsSaved { torrents } => {
            put("count", Value::from(torrents.len()));
            put("info_hashes", hashes(env.event.info_hashes()));
        }
        Event::TorrentDeleted { info_hash } => put("info_hash", Value::from(info_hash.to_hex())),
        Event::SessionConfigSaved { config } => {
            put("download_dir", Value::from(config.download_dir.as_str()));
            put("peer_port", Value::from(config.peer_port));
            put("version", Value::from(config.version.as_str()));
        }
        Event::MetricsRecorded { samples } => {
            put("count", Value::from(samples.len()));
            put("info_hashes", hashes(env.event.info_hashes()));
        }
        Event::MetricsPurged { older_than } => {
            put("older_than", Value::from(older_than.to_rfc3339()));
        }
    }
    Value::Object(m)
}

fn torrent_summary(put: &mut impl FnMut(&str, Value), t: &TorrentState) {
    put("info_hash", Value::from(t.info_hash.to_hex()));
    put("name", Value::from(t.display_name()));
    put("status", Value::from(t.status_name()));
    put("percent_done", Value::from(t.percent_done));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MetaInfo;
    use proptest::prelude::*;

    fn hash(n: u8) -> InfoHash {
        InfoHash::V1([n; 20])
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_714_564_800_000_000_000 + secs * 1_000_000_000)
    }

    fn torrent(n: u8) -> TorrentState {
        TorrentState::sample(hash(n), &format!("torrent-{n}"), at(i64::from(n)))
    }

    fn metrics(n: u8, secs: i64) -> TorrentMetrics {
        TorrentMetrics {
            info_hash: hash(n),
            timestamp: at(secs),
            downloaded: 1_000 * secs,
            uploaded: 10 * secs,
            download_rate: 1_000,
            upload_rate: 10,
            peer_count: 4,
            seeding_time: 0,
            downloading_time: secs * 1_000_000_000,
        }
    }

    fn hook(event: HookEvent, n: u8) -> Event {
        let mut data = Map::new();
        match event {
            HookEvent::TorrentMetadata => {
                data.insert("action".into(), Value::from("metadata_received"));
                data.insert("file_count".into(), Value::from(5));
                data.insert("total_size".into(), Value::from(1_432_354_304_u64));
            }
            HookEvent::TorrentError => {
                data.insert("error".into(), Value::from("disk full"));
            }
            _ => {}
        }
        let mut t = torrent(n);
        if event == HookEvent::TorrentMetadata {
            t.meta_info = Some(MetaInfo::new(b"d4:infod4:name5:helloee".to_vec()));
        }
        HookContext {
            event,
            torrent: t,
            data,
            timestamp: at(100),
        }
        .into()
    }

    fn every_variant() -> Vec<Event> {
        let mut events: Vec<Event> = HookEvent::ALL.iter().map(|&e| hook(e, 1)).collect();
        events.extend([
            Event::TorrentSaved {
                torrent: Box::new(torrent(2)),
            },
            Event::TorrentsSaved {
                torrents: vec![torrent(3), torrent(4), torrent(3)],
            },
            Event::TorrentsSaved { torrents: vec![] },
            Event::TorrentDeleted { info_hash: hash(5) },
            Event::TorrentDeleted {
                info_hash: InfoHash::V2([9; 32]),
            },
            Event::SessionConfigSaved {
                config: Box::new(SessionConfiguration::sample()),
            },
            Event::MetricsRecorded {
                samples: vec![metrics(6, 1), metrics(7, 1), metrics(6, 2)],
            },
            Event::MetricsPurged {
                older_than: at(-3600),
            },
        ]);
        events
    }

    #[test]
    fn every_variant_round_trips_through_msgpack() {
        for event in every_variant() {
            let bytes = encode(&event).unwrap();
            assert_eq!(decode(&bytes).unwrap(), event, "{}", event.kind());
            let mut buf = vec![0xAA];
            encode_into(&event, &mut buf).unwrap();
            assert_eq!(&buf[1..], &bytes[..]);
        }
    }

    #[test]
    fn kinds_are_stable_and_listed() {
        let kinds: Vec<&str> = every_variant().iter().map(Event::kind).collect();
        for k in &kinds {
            assert!(Event::KINDS.contains(k), "{k}");
        }
        for k in Event::KINDS {
            assert!(kinds.contains(&k), "{k}");
        }
        assert_eq!(
            hook(HookEvent::TorrentCompleted, 1).kind(),
            "torrent-completed"
        );
    }

    #[test]
    fn encoding_is_named_and_externally_tagged() {
        let event = Event::TorrentDeleted { info_hash: hash(5) };
        let bytes = encode(&event).unwrap();
        // {"TorrentDeleted": {"info_hash": bin8(20)}}
        let mut expected = vec![0x81, 0xae];
        expected.extend_from_slice(b"TorrentDeleted");
        expected.extend_from_slice(&[0x81, 0xa9]);
        expected.extend_from_slice(b"info_hash");
        expected.extend_from_slice(&[0xc4, 20]);
        expected.extend_from_slice(&[5; 20]);
        assert_eq!(bytes, expected);

        let bytes = encode(&hook(HookEvent::TorrentAdded, 1)).unwrap();
        let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(contains(b"Hook"));
        assert!(contains(b"torrent-added"));
        assert!(contains(b"percent_done"));
        assert!(contains(b"honors_session_limits"));
    }

    #[test]
    fn unknown_fields_are_ignored_and_missing_defaulted() {
        #[derive(Serialize)]
        struct NewerTorrentDeleted {
            info_hash: InfoHash,
            reason: &'static str,
        }
        #[derive(Serialize)]
        enum Newer {
            TorrentDeleted(NewerTorrentDeleted),
        }
        let bytes = rmp_serde::to_vec_named(&Newer::TorrentDeleted(NewerTorrentDeleted {
            info_hash: hash(1),
            reason: "user",
        }))
        .unwrap();
        assert_eq!(
            decode(&bytes).unwrap(),
            Event::TorrentDeleted { info_hash: hash(1) }
        );

        // A torrent written before most fields existed.
        #[derive(Serialize)]
        struct OldTorrent {
            info_hash: InfoHash,
            status: i64,
        }
        #[derive(Serialize)]
        enum Old {
            TorrentSaved { torrent: OldTorrent },
        }
        let bytes = rmp_serde::to_vec_named(&Old::TorrentSaved {
            torrent: OldTorrent {
                info_hash: hash(2),
                status: 6,
            },
        })
        .unwrap();
        let Event::TorrentSaved { torrent } = decode(&bytes).unwrap() else {
            panic!("wrong variant");
        };
        assert_eq!(torrent.info_hash, hash(2));
        assert_eq!(torrent.status, 6);
        assert!(torrent.files.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let good = encode(&hook(HookEvent::TorrentStarted, 1)).unwrap();
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0xc0, 0xc0]);
        let err = decode(&trailing).unwrap_err();
        assert!(
            err.starts_with("2 trailing bytes after a torrent-started event"),
            "{err}"
        );

        let unknown_variant =
            rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("TorrentExploded", 1)]))
                .unwrap();
        let inputs: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xc1],
            vec![0xff; 64],
            b"not msgpack at all".to_vec(),
            good[..good.len() / 2].to_vec(),
            good[1..].to_vec(),
            rmp_serde::to_vec(&42).unwrap(),
            unknown_variant,
            // map32 claiming 4 billion entries, then nothing.
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
            // bin32 claiming 4 GiB.
            vec![
                0x81, 0xa4, b'H', b'o', b'o', b'k', 0xc6, 0xff, 0xff, 0xff, 0xff,
            ],
        ];
        for input in inputs {
            assert!(decode(&input).is_err(), "{input:?}");
        }
        // Every truncation of a valid payload fails cleanly.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_err(), "prefix {n}");
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_survives_bit_flips(pos in 0usize..4096, bit in 0u8..8) {
            let good = encode(&hook(HookEvent::TorrentAdded, 3)).unwrap();
            let mut bad = good.clone();
            let pos = pos % bad.len();
            bad[pos] ^= 1 << bit;
            let _ = decode(&bad);
        }
    }

    #[test]
    fn info_hashes_per_variant() {
        assert_eq!(
            hook(HookEvent::TorrentAdded, 1).info_hashes(),
            vec![hash(1)]
        );
        assert_eq!(
            Event::TorrentsSaved {
                torrents: vec![torrent(3), torrent(4), torrent(3)]
            }
            .info_hashes(),
            vec![hash(3), hash(4)]
        );
        assert_eq!(
            Event::MetricsRecorded {
                samples: vec![metrics(6, 1), metrics(7, 1), metrics(6, 2)]
            }
            .info_hashes(),
            vec![hash(6), hash(7)]
        );
        assert!(
            Event::MetricsPurged { older_than: at(0) }
                .info_hashes()
                .is_empty()
        );
        assert_eq!(
            Event::TorrentDeleted { info_hash: hash(9) }.info_hash(),
            Some(hash(9))
        );
    }

    #[test]
    fn json_lines() {
        let line = to_json_line(&Envelope::new(
            7,
            at(0),
            hook(HookEvent::TorrentMetadata, 1),
        ));
        assert_eq!(line["seq"], 7);
        assert_eq!(line["at"], "2024-05-01T12:00:00Z");
        assert_eq!(line["event"], "torrent-metadata");
        assert_eq!(line["info_hash"], hash(1).to_hex());
        assert_eq!(line["name"], "hello");
        assert_eq!(line["status"], "downloading");
        assert_eq!(line["data"]["file_count"], 5);
        assert_eq!(line["hook_timestamp"], "2024-05-01T12:01:40Z");

        let line = to_json_line(&Envelope::new(8, at(1), hook(HookEvent::TorrentAdded, 2)));
        assert_eq!(line["name"], "torrent-2");

        let line = to_json_line(&Envelope::new(
            9,
            at(2),
            Event::MetricsRecorded {
                samples: vec![metrics(6, 1), metrics(7, 1)],
            },
        ));
        assert_eq!(line["event"], "metrics-recorded");
        assert_eq!(line["count"], 2);
        assert_eq!(line["info_hashes"][1], hash(7).to_hex());

        for (i, event) in every_variant().into_iter().enumerate() {
            let line = to_json_line(&Envelope::new(i as u64, at(0), event));
            let text = serde_json::to_string(&line).unwrap();
            assert!(!text.contains('\n'));
            assert_eq!(line["seq"], i);
        }
    }

    #[test]
    fn envelope_json_uses_rfc3339_and_hex() {
        let env = Envelope::new(
            1,
            at(0),
            Event::TorrentDeleted {
                info_hash: hash(0xab),
            },
        );
        let json = serde_json::to_value(&env).unwrap();
        assert_eq!(json["at"], "2024-05-01T12:00:00Z");
        assert_eq!(
            json["event"]["TorrentDeleted"]["info_hash"],
            "ab".repeat(20)
        );
        assert_eq!(serde_json::from_value::<Envelope>(json).unwrap(), env);
    }

    #[test]
    fn sizes_are_reasonable() {
        let one = encode(&hook(HookEvent::TorrentAdded, 1)).unwrap();
        assert!(one.len() < 1_500, "{} bytes", one.len());
        assert!(
            std::mem::size_of::<Event>() <= 64,
            "{}",
            std::mem::size_of::<Event>()
        );
    }
}
