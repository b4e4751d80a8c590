//! Proves the README's embedding example works: the same code, run against a temporary
//! directory, with assertions on what it promises (durable seq, SQLite file, reopen).

use torrent_journal::model::{HookContext, HookEvent, InfoHash, Timestamp, TorrentState};
use torrent_journal::{JournalReader, StoreOptions, TorrentStore};

#[tokio::test]
async fn readme_embedding_example_runs() -> torrent_journal::Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("client-state");

    // --- the README's code, verbatim but for the directory ---
    let store = TorrentStore::open(&dir, StoreOptions::default().with_sqlite()).await?;
    let hash: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
    let torrent = TorrentState::sample(hash, "debian.iso", Timestamp::now());
    store.save_torrent(&torrent).await?;
    assert_eq!(store.load_torrent(&hash).await?.info_hash, hash);
    let context = HookContext {
        event: HookEvent::TorrentCompleted,
        torrent,
        data: Default::default(),
        timestamp: Timestamp::now(),
    };
    let receipt = store.record_hook(context).await?;
    store.close().await?;
    // --- end of the README's code ---

    assert_eq!(receipt.first_seq, 2);
    assert!(dir.join("state.db").is_file());
    let kinds: Vec<String> = JournalReader::open(&dir)?
        .events(1)?
        .map(|e| e.map(|e| e.event.kind().to_owned()))
        .collect::<Result<_, _>>()?;
    assert_eq!(kinds, ["torrent-saved", "torrent-completed"]);
    Ok(())
}
