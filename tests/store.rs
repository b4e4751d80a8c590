//! Proves the store behaves as the seed's persistence interface over the journal: the eight
//! operations and the metrics interface round-trip, reads see acknowledged writes, the hook sink
//! journals all seven events, and deleting every projection loses nothing (reopen rebuilds them
//! identically from the journal), and a compacted store whose newest snapshot is damaged opens
//! to the same state from the previous one. Real directories, real SQLite.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use torrent_journal::event::Event;
use torrent_journal::model::{
    HookContext, HookEvent, InfoHash, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, SqliteOptions, SqliteProjection,
};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Error, JournalReader, StoreOptions, TorrentStore};

fn hash(n: u8) -> InfoHash {
    InfoHash::V1([n; 20])
}

fn torrent(n: u8) -> TorrentState {
    TorrentState::sample(
        hash(n),
        &format!("t{n}"),
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    )
}

fn all_projections() -> StoreOptions {
    StoreOptions::default().with_sqlite().with_files()
}

#[tokio::test]
async fn the_seed_operations_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    store.save_torrent(&torrent(1)).await.unwrap();
    assert_eq!(*store.load_torrent(&hash(1)).await.unwrap(), torrent(1));

    store
        .save_all_torrents(&[torrent(2), torrent(3)])
        .await
        .unwrap();
    let all = store.load_all_torrents().await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.info_hash).collect::<Vec<_>>(),
        [hash(1), hash(2), hash(3)]
    );

    store.delete_torrent(&hash(2)).await.unwrap();
    let err = store.load_torrent(&hash(2)).await.unwrap_err();
    assert!(matches!(err, Error::TorrentNotFound { .. }), "{err}");
    assert!(
        err.to_string().contains(&hash(2).to_hex()),
        "the error names the hash: {err}"
    );

    assert_eq!(store.load_session_config().await.unwrap(), None);
    let config = SessionConfiguration::sample();
    store.save_session_config(&config).await.unwrap();
    assert_eq!(
        store.load_session_config().await.unwrap(),
        Some(config.clone())
    );
    store.close().await.unwrap();

    // Everything survives a reopen, and the SQLite projection agrees with memory.
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    assert_eq!(store.load_all_torrents().await.unwrap().len(), 2);
    assert_eq!(store.load_session_config().await.unwrap(), Some(config));
    store.close().await.unwrap();
    let sqlite =
        SqliteProjection::open(tmp.path().join("state.db"), SqliteOptions::default()).unwrap();
    let from_sqlite = sqlite.load_state().unwrap();
    let store = TorrentStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap();
    store.read_memory(|m| assert_eq!(&from_sqlite, m.state()));
    store.close().await.unwrap();
}

#[tokio::test]
async fn metrics_are_saved_loaded_summarized_and_purged() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), StoreOptions::default().with_sqlite())
        .await
        .unwrap();
    store.save_torrent(&torrent(1)).await.unwrap();
    let at =
        |secs: i64| Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + secs * 1_000_000_000);
    let samples: Vec<TorrentMetrics> = (0..10)
        .map(|i| TorrentMetrics {
            info_hash: hash(1),
            timestamp: at(i * 60),
            downloaded: i * 1000,
            download_rate: 100 * i,
            peer_count: i,
            ..TorrentMetrics::default()
        })
        .collect();
    store.save_metrics(&samples).await.unwrap();
    let loaded = store
        .load_metrics(&hash(1), at(120), at(300))
        .await
        .unwrap();
    assert_eq!(loaded, samples[2..=5].to_vec());
    let summary = store.metrics_summary(at(0), at(540)).await.unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].samples, 10);
    assert_eq!(summary[0].downloaded_delta, 9000);
    assert_eq!(summary[0].max_peer_count, 9);

    // Samples are far in the past relative to the real clock: a one-hour retention drops all.
    store
        .purge_metrics(Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        store
            .load_metrics(&hash(1), at(0), at(600))
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_acknowledged_writes_under_concurrency() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), StoreOptions::default().with_sqlite())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..32u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..20 {
                let mut t = torrent(n);
                t.downloaded = round;
                store.save_torrent(&t).await.unwrap();
                // Read-your-writes: the acknowledged save is visible at once.
                assert_eq!(
                    store.load_torrent(&hash(n)).await.unwrap().downloaded,
                    round
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.last_seq(), 32 * 20);
    store.flush_projections().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn the_hook_sink_journals_all_seven_events() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), StoreOptions::default())
        .await
        .unwrap();
    for (i, event) in HookEvent::ALL.into_iter().enumerate() {
        let mut data = serde_json::Map::new();
        data.insert("error".into(), json!("tracker timeout"));
        let context = HookContext {
            event,
            torrent: torrent(7),
            data,
            timestamp: Timestamp::from_unix_nanos(i as i64),
        };
        store.record_hook(context).await.unwrap();
    }
    store.close().await.unwrap();
    let kinds: Vec<String> = JournalReader::open(tmp.path())
        .unwrap()
        .events(1)
        .unwrap()
        .map(|e| e.unwrap().event.kind().to_owned())
        .collect();
    let expected: Vec<String> = HookEvent::ALL
        .iter()
        .map(|e| e.as_str().to_owned())
        .collect();
    assert_eq!(kinds, expected);
}

#[tokio::test]
async fn deleting_every_projection_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    let sim = torrent_journal::simulate::Simulation {
        seed: 3,
        torrents: 40,
        events: 1500,
        tasks: 1,
        start: Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    };
    for event in sim.task(0) {
        store.append_event(event).await.unwrap();
    }
    store.close().await.unwrap();
    let (dump, tree) = projections_of(tmp.path());

    std::fs::remove_file(tmp.path().join("state.db")).unwrap();
    let _ = std::fs::remove_file(tmp.path().join("state.db-wal"));
    let _ = std::fs::remove_file(tmp.path().join("state.db-shm"));
    std::fs::remove_dir_all(tmp.path().join("files")).unwrap();

    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    store.close().await.unwrap();
    let (dump_again, tree_again) = projections_of(tmp.path());
    assert_eq!(dump, dump_again);
    assert_eq!(tree, tree_again);
    assert!(
        tree.len() > 40,
        "the file projection has files: {}",
        tree.len()
    );
}

#[tokio::test]
async fn a_garbage_sqlite_file_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    store.save_torrent(&torrent(1)).await.unwrap();
    store.close().await.unwrap();
    let (dump, _) = projections_of(tmp.path());
    std::fs::write(
        tmp.path().join("state.db"),
        b"this is not a database, it is garbage text",
    )
    .unwrap();
    let _ = std::fs::remove_file(tmp.path().join("state.db-wal"));
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    store.close().await.unwrap();
    assert_eq!(projections_of(tmp.path()).0, dump);
}

/// The SQLite dump and the file tree of a closed store.
fn projections_of(dir: &std::path::Path) -> (String, Vec<(String, Vec<u8>)>) {
    let sqlite = SqliteProjection::open(dir.join("state.db"), SqliteOptions::default()).unwrap();
    let files = FileProjection::open(
        Arc::new(RealStorage),
        dir.join("files"),
        FileProjectionOptions::default(),
    )
    .unwrap();
    (sqlite.dump_tables().unwrap(), files.tree_listing().unwrap())
}

#[tokio::test]
async fn events_appended_directly_reach_every_projection() {
    let tmp = tempfile::tempdir().unwrap();
    let store = TorrentStore::open(tmp.path(), all_projections())
        .await
        .unwrap();
    store
        .append_event(Event::TorrentSaved {
            torrent: Box::new(torrent(9)),
        })
        .await
        .unwrap();
    store.flush_projections().await.unwrap();
    store.close().await.unwrap();
    let (dump, tree) = projections_of(tmp.path());
    assert!(dump.contains(&hash(9).to_hex()));
    assert!(
        tree.iter()
            .any(|(path, _)| path.contains(&hash(9).to_hex()))
    );
}

/// After compaction removed the early segments, opening starts the memory projection from the
/// newest snapshot, and a SQLite projection that is behind the retained journal (here: deleted)
/// is installed from the state at the head; both equal the state before compaction — also when
/// the newest snapshot is then damaged (the previous one plus the retained journal reach the
/// head).
#[tokio::test]
async fn a_compacted_journal_opens_from_its_snapshot() {
    use torrent_journal::compaction::{self, CompactOptions, Retention};
    let tmp = tempfile::tempdir().unwrap();
    let small_segments = || StoreOptions {
        journal: torrent_journal::JournalOptions {
            segment_size_bytes: 16 * 1024,
            ..torrent_journal::JournalOptions::default()
        },
        ..all_projections()
    };
    let store = TorrentStore::open(tmp.path(), small_segments())
        .await
        .unwrap();
    let sim = torrent_journal::simulate::Simulation {
        seed: 9,
        torrents: 30,
        events: 600,
        tasks: 1,
        start: Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    };
    for event in sim.task(0) {
        store.append_event(event).await.unwrap();
    }
    let before = store.read_memory(|m| m.state().clone());
    store.close().await.unwrap();

    // Two compactions: the first has no previous generation and removes nothing.
    let options = |n| CompactOptions {
        retain: Retention::Events(n),
        ..CompactOptions::default()
    };
    let first = compaction::compact(Arc::new(RealStorage), tmp.path(), &options(300)).unwrap();
    assert!(first.segments_removed.is_empty(), "{first:?}");
    let report = compaction::compact(Arc::new(RealStorage), tmp.path(), &options(50)).unwrap();
    assert!(
        !report.segments_removed.is_empty(),
        "compaction removed segments"
    );
    let first = JournalReader::open(tmp.path()).unwrap().segments().unwrap()[0].first_seq;
    assert!(first > 1, "the journal no longer starts at seq 1");

    std::fs::remove_file(tmp.path().join("state.db")).unwrap();
    let store = TorrentStore::open(tmp.path(), small_segments())
        .await
        .unwrap();
    store.read_memory(|m| assert_eq!(m.state(), &before));
    store.close().await.unwrap();
    let sqlite =
        SqliteProjection::open(tmp.path().join("state.db"), SqliteOptions::default()).unwrap();
    assert_eq!(sqlite.load_state().unwrap(), before);
    drop(sqlite);

    // One flipped bit in the middle of the newest snapshot: opening falls back to the previous
    // one, which the retained journal continues, and loses nothing.
    let newest = report.snapshot_path.clone().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&newest, bytes).unwrap();
    std::fs::remove_file(tmp.path().join("state.db")).unwrap();
    let store = TorrentStore::open(tmp.path(), small_segments())
        .await
        .unwrap();
    store.read_memory(|m| assert_eq!(m.state(), &before));
    store.close().await.unwrap();
    let sqlite =
        SqliteProjection::open(tmp.path().join("state.db"), SqliteOptions::default()).unwrap();
    assert_eq!(sqlite.load_state().unwrap(), before);
}

/// The automatic compaction policy (off by default) compacts in the background as events
/// accumulate; the state is unchanged and the journal no longer starts at seq 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_journal_short() {
    use torrent_journal::compaction::{CompactionPolicy, Retention};
    let tmp = tempfile::tempdir().unwrap();
    let options = || StoreOptions {
        journal: torrent_journal::JournalOptions {
            segment_size_bytes: 16 * 1024,
            ..torrent_journal::JournalOptions::default()
        },
        compaction: CompactionPolicy {
            every_events: Some(200),
            every_bytes: None,
            retain: Retention::Events(50),
        },
        ..StoreOptions::default().with_sqlite()
    };
    let store = TorrentStore::open(tmp.path(), options()).await.unwrap();
    for n in 0..1000u64 {
        let mut t = torrent((n % 50) as u8);
        t.downloaded = n as i64;
        store.save_torrent(&t).await.unwrap();
    }
    let before = store.read_memory(|m| m.state().clone());
    store.close().await.unwrap();
    let snapshots = std::fs::read_dir(tmp.path().join("snapshots"))
        .unwrap()
        .count();
    assert!(snapshots >= 1, "automatic compaction wrote snapshots");
    let first = JournalReader::open(tmp.path()).unwrap().segments().unwrap()[0].first_seq;
    assert!(
        first > 1,
        "automatic compaction removed early segments (first seq {first})"
    );
    let store = TorrentStore::open(tmp.path(), options()).await.unwrap();
    store.read_memory(|m| assert_eq!(m.state(), &before));
    store.close().await.unwrap();
}
