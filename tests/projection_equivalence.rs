//! Proves the one-reducer rule: for random event sequences split into random batches, the
//! memory, file and SQLite projections all equal folding the events through `state::apply`; and
//! catching up incrementally — reopening each projection at every batch boundary — ends exactly
//! where applying everything at once does, and so does installing the reducer's state (the
//! snapshot path). proptest generates the events from a small set of
//! info hashes so that events collide on the same torrents.

use std::sync::Arc;

use proptest::prelude::*;
use torrent_journal::event::{Envelope, Event, HookRecord};
use torrent_journal::model::{
    HookEvent, InfoHash, MetaInfo, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, FileView, MemoryProjection, Projection, SqliteOptions,
    SqliteProjection,
};
use torrent_journal::state::State;
use torrent_journal::storage::SimStorage;

const BASE_NANOS: i64 = 1_700_000_000_000_000_000;

fn hash(n: u8) -> InfoHash {
    if n == 3 {
        InfoHash::V2([n; 32]) // one v2 hash in the mix
    } else {
        InfoHash::V1([n; 20])
    }
}

prop_compose! {
    fn arb_torrent()(n in 0u8..4, done in 0u32..=100, meta in any::<bool>(), files in any::<bool>(),
                     error in proptest::option::of("[a-z ]{1,12}"), status in 0i64..7) -> TorrentState {
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

fn arb_hook_event() -> impl Strategy<Value = HookEvent> {
    prop::sample::select(HookEvent::ALL.to_vec())
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (arb_hook_event(), arb_torrent(), proptest::option::of("[a-z]{1,8}")).prop_map(|(event, torrent, err)| {
            let mut data = serde_json::Map::new();
            if let Some(err) = err {
                data.insert("error".into(), err.into());
            }
            Event::Hook(HookRecord { event, torrent: Box::new(torrent), data, timestamp: Timestamp::from_unix_nanos(BASE_NANOS) })
        }),
        2 => arb_torrent().prop_map(|t| Event::TorrentSaved { torrent: Box::new(t) }),
        1 => prop::collection::vec(arb_torrent(), 1..4).prop_map(|torrents| Event::TorrentsSaved { torrents }),
        1 => (0u8..4).prop_map(|n| Event::TorrentDeleted { info_hash: hash(n) }),
        1 => (1i64..60_000).prop_map(|port| Event::SessionConfigSaved {
            config: Box::new(SessionConfiguration { peer_port: port, ..SessionConfiguration::sample() }),
        }),
        2 => prop::collection::vec((0u8..5, 0i64..100), 1..4).prop_map(|samples| Event::MetricsRecorded {
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

fn envelopes(events: Vec<Event>) -> Vec<Envelope> {
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

/// Splits `envelopes` at the given cut points (sorted, deduplicated, in range).
fn batches(envelopes: &[Envelope], mut cuts: Vec<usize>) -> Vec<&[Envelope]> {
    cuts.retain(|&c| c > 0 && c < envelopes.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([envelopes.len()]) {
        out.push(&envelopes[start..cut]);
        start = cut;
    }
    out
}

struct Projections {
    _tmp: tempfile::TempDir,
    sim: SimStorage,
}

impl Projections {
    fn new() -> Self {
        let sim = SimStorage::new();
        Self {
            _tmp: tempfile::tempdir().unwrap(),
            sim,
        }
    }

    fn sqlite(&self) -> SqliteProjection {
        SqliteProjection::open(self._tmp.path().join("p.db"), SqliteOptions::default()).unwrap()
    }

    fn files(&self) -> FileProjection {
        FileProjection::open(
            Arc::new(self.sim.clone()),
            "/files",
            FileProjectionOptions::default(),
        )
        .unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_projection_equals_the_reducer(
        events in prop::collection::vec(arb_event(), 1..40),
        cuts in prop::collection::vec(0usize..40, 0..6),
    ) {
        let envelopes = envelopes(events);
        let expected = State::from_envelopes(&envelopes);
        let expected_files = FileView::of_state(&expected).unwrap();

        // All at once.
        let once = Projections::new();
        let mut memory = MemoryProjection::new();
        memory.apply(&envelopes).unwrap();
        let (mut sqlite, mut files) = (once.sqlite(), once.files());
        sqlite.apply(&envelopes).unwrap();
        files.apply(&envelopes).unwrap();
        prop_assert_eq!(memory.state(), &expected);
        for (hash, torrent) in &expected.torrents {
            let found = memory.get(hash);
            prop_assert_eq!(found.as_ref(), Some(torrent));
        }
        prop_assert_eq!(memory.all().len(), expected.torrents.len());
        prop_assert_eq!(&sqlite.load_state().unwrap(), &expected);
        prop_assert_eq!(&files.read_view().unwrap(), &expected_files);

        // Incrementally, reopening every projection at each batch boundary.
        let incremental = Projections::new();
        let mut memory = MemoryProjection::new();
        for batch in batches(&envelopes, cuts) {
            memory.apply(batch).unwrap();
            incremental.sqlite().apply(batch).unwrap();
            incremental.files().apply(batch).unwrap();
        }
        prop_assert_eq!(memory.state(), &expected);
        prop_assert_eq!(incremental.sqlite().dump_tables().unwrap(), sqlite.dump_tables().unwrap());
        prop_assert_eq!(incremental.files().tree_listing().unwrap(), files.tree_listing().unwrap());
        prop_assert_eq!(incremental.sqlite().checkpoint(), memory.checkpoint());
        prop_assert_eq!(incremental.files().checkpoint(), memory.checkpoint());

        // Installing the reducer's state (as from a snapshot) gives the same views.
        let installed = Projections::new();
        let (mut sqlite, mut files) = (installed.sqlite(), installed.files());
        sqlite.install(&expected).unwrap();
        files.install(&expected).unwrap();
        let mut memory = MemoryProjection::new();
        memory.install(&expected).unwrap();
        prop_assert_eq!(memory.state(), &expected);
        prop_assert_eq!(&installed.sqlite().load_state().unwrap(), &expected);
        prop_assert_eq!(&installed.files().read_view().unwrap(), &expected_files);
        prop_assert_eq!(installed.files().checkpoint(), memory.checkpoint());
    }
}
