//! proptest generators shared by the equivalence tests: random events over a few info hashes
//! (so events collide on the same torrents; one of them a v2 hash), and envelopes that number
//! them as a journal would.

use proptest::prelude::*;
use torrent_journal::event::{Envelope, Event, HookRecord};
use torrent_journal::model::{
    HookEvent, InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};

/// The commit time of the first generated envelope (2023-11-14T22:13:20Z).
pub const BASE_NANOS: i64 = 1_700_000_000_000_000_000;

/// The `n`th info hash of the mix; number 3 is a v2 hash.
pub fn hash(n: u8) -> InfoHash {
    if n == 3 {
        InfoHash::V2([n; 32])
    } else {
        InfoHash::V1([n; 20])
    }
}

prop_compose! {
    /// A sample torrent among `hashes` info hashes, with random progress, status, error,
    /// metainfo and file list.
    pub fn arb_torrent(hashes: u8)(n in 0..hashes, done in 0u32..=100, meta in any::<bool>(),
                     files in any::<bool>(), error in proptest::option::of("[a-z ]{1,12}"),
                     status in 0i64..7) -> TorrentState {
        let mut t = TorrentState::sample(hash(n), &format!("t{n}"), Timestamp::from_unix_nanos(BASE_NANOS));
        t.percent_done = f64::from(done) / 100.0;
        t.status = status;
        t.error = error;
        if meta {
            t.meta_info = Some(MetaInfo::new(format!("d4:infod4:name2:t{n}ee").into_bytes()));
        }
        if !files {
            t.files.clear();
            t.priorities.clear();
            t.wanted.clear();
        }
        t
    }
}

/// One of the seven hook events.
pub fn arb_hook_event() -> impl Strategy<Value = HookEvent> {
    prop::sample::select(HookEvent::ALL.to_vec())
}

/// Any event kind over `hashes` info hashes (metrics also for one torrent never saved).
pub fn arb_event(hashes: u8) -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (arb_hook_event(), arb_torrent(hashes), proptest::option::of("[a-z]{1,8}")).prop_map(|(event, torrent, err)| {
            let mut data = serde_json::Map::new();
            if let Some(err) = err {
                data.insert("error".into(), err.into());
            }
            Event::Hook(HookRecord { event, torrent: Box::new(torrent), data, timestamp: Timestamp::from_unix_nanos(BASE_NANOS) })
        }),
        2 => arb_torrent(hashes).prop_map(|t| Event::TorrentSaved { torrent: Box::new(t) }),
        1 => prop::collection::vec(arb_torrent(hashes), 1..4).prop_map(|torrents| Event::TorrentsSaved { torrents }),
        1 => (0..hashes).prop_map(|n| Event::TorrentDeleted { info_hash: hash(n) }),
        1 => (1i64..60_000).prop_map(|port| Event::SessionConfigSaved {
            config: Box::new(SessionConfiguration { peer_port: port, ..SessionConfiguration::sample() }),
        }),
        2 => prop::collection::vec((0..=hashes, 0i64..100), 1..4).prop_map(|samples| Event::MetricsRecorded {
            samples: samples.into_iter().map(|(n, secs)| TorrentMetrics {
                info_hash: hash(n),
                timestamp: Timestamp::from_unix_nanos(BASE_NANOS + secs * 1_000_000_000),
                downloaded: secs * 1000,
                ..TorrentMetrics::default()
            }).collect(),
        }),
        1 => (0i64..100).prop_map(|secs| Event::MetricsPurged {
            older_than: Timestamp::from_unix_nanos(BASE_NANOS + secs * 1_000_000_000),
        }),
    ]
}

/// Numbers `events` from seq 1, one nanosecond apart from [`BASE_NANOS`].
pub fn envelopes(events: Vec<Event>) -> Vec<Envelope> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            Envelope::new(
                i as u64 + 1,
                Timestamp::from_unix_nanos(BASE_NANOS + i as i64),
                e,
            )
        })
        .collect()
}
