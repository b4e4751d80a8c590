//! Proves crash safety of the whole stack at every I/O point: one workload drives the store
//! (journal with rotations, the file projection's checkpoints) plus a compaction (snapshot,
//! segment removal) on simulated storage; for every k it crashes after operation k — dropping
//! unsynced bytes and unsynced directory entries, or filling them with zeros or garbage — then
//! reopens the store on the crash image and checks: the journal verifies, every acknowledged
//! event is there (by its content, whether in the retained journal or folded into the
//! snapshot), the memory projection equals the reducer over the recovered history, and the file
//! projection equals the reducer's file view.

use std::path::Path;
use std::sync::Arc;

use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::history::{self, Target};
use torrent_journal::model::{InfoHash, ManualClock, Timestamp, TorrentState};
use torrent_journal::projection::{FileProjection, FileProjectionOptions, FileView};
use torrent_journal::storage::{CrashFill, SimStorage, Storage};
use torrent_journal::{JournalOptions, StoreOptions, TorrentStore};

const DIR: &str = "/store";

fn options(storage: &SimStorage) -> StoreOptions {
    StoreOptions {
        journal: JournalOptions {
            segment_size_bytes: 2048,
            storage: Arc::new(storage.clone()),
            clock: Arc::new(ManualClock::new(Timestamp::from_unix_nanos(
                1_700_000_000_000_000_000,
            ))),
            ..JournalOptions::default()
        },
        ..StoreOptions::default().with_files()
    }
}

fn torrent(id: u64) -> TorrentState {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    TorrentState {
        id: id as i64,
        info_hash: InfoHash::V1(bytes),
        download_dir: "/downloads".into(),
        ..TorrentState::default()
    }
}

/// The workload; returns the ids of acknowledged saves (each saves a distinct torrent).
async fn workload(storage: &SimStorage) -> Vec<u64> {
    let mut acked = Vec::new();
    let Ok(store) = TorrentStore::open(DIR, options(storage)).await else {
        return acked;
    };
    for id in 1..=24 {
        if store.save_torrent(&torrent(id)).await.is_ok() {
            acked.push(id);
        }
        if id == 12 {
            let _ = store.flush_projections().await;
            let storage: Arc<dyn Storage> = Arc::new(storage.clone());
            let options = CompactOptions {
                retain: Retention::Events(4),
                ..CompactOptions::default()
            };
            let _ = compaction::compact(storage, Path::new(DIR), &options);
        }
    }
    let _ = store.close().await;
    acked
}

/// Reopens the store on a crash image and checks everything; `Err` says what is wrong.
async fn check(image: &SimStorage, acked: &[u64]) -> Result<(), String> {
    let store = TorrentStore::open(DIR, options(image))
        .await
        .map_err(|e| format!("reopen: {e}"))?;
    let memory = store.read_memory(|m| m.state().clone());
    store.flush_projections().await.map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| format!("close: {e}"))?;
    let report = torrent_journal::verify(image, Path::new(DIR)).map_err(|e| e.to_string())?;
    if !report.is_clean() {
        return Err(format!("journal does not verify: {:?}", report.problems));
    }
    let head =
        history::state_at(Arc::new(image.clone()), DIR, Target::Head).map_err(|e| e.to_string())?;
    if head.state != memory {
        return Err("memory projection differs from the state at the head".into());
    }
    for id in acked {
        if !memory.torrents.contains_key(&torrent(*id).info_hash) {
            return Err(format!("acknowledged save {id} is missing"));
        }
    }
    let files = FileProjection::open(
        Arc::new(image.clone()),
        Path::new(DIR).join("files"),
        FileProjectionOptions::default(),
    )
    .map_err(|e| format!("file projection: {e}"))?;
    let expected = FileView::of_state(&memory).map_err(|e| e.to_string())?;
    if files.read_view().map_err(|e| e.to_string())? != expected {
        return Err("file projection differs from the reducer".into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_io_point_keeps_every_acknowledged_event() {
    let dry = SimStorage::new();
    let all = workload(&dry).await;
    assert_eq!(all.len(), 24);
    let ops = dry.op_count();
    let fills = [
        CrashFill::Drop,
        CrashFill::Zeros,
        CrashFill::Garbage(1),
        CrashFill::Garbage(2),
    ];
    let mut failures = Vec::new();
    let mut tried = 0;
    for k in 0..=ops {
        let storage = SimStorage::new();
        storage.crash_after(k);
        let acked = workload(&storage).await;
        for fill in fills {
            tried += 1;
            if let Err(problem) = check(&storage.crash(fill), &acked).await {
                failures.push(format!("crash after op {k} ({fill:?}): {problem}"));
            }
        }
    }
    eprintln!(
        "crash points: {} ops x {} fills = {tried} images, {} violations",
        ops + 1,
        fills.len(),
        failures.len()
    );
    assert!(ops > 100, "the workload does real I/O: {ops} operations");
    assert!(
        failures.is_empty(),
        "{} of {tried}:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
