//! Proves that a damaged projection heals itself from the journal without an operator, and that
//! nothing else does: real stores in temp directories, damaged with real bytes.
//!
//! * `state.db` with its header and checkpoint page intact but its other pages scribbled over
//!   (which only `PRAGMA quick_check` notices), and a `state.db` of random bytes: the next open
//!   sets the file aside as `state.db.damaged-<UTC time>` (same bytes, moved, not deleted),
//!   warns naming both paths, rebuilds the database from the journal — its tables equal a fresh
//!   replay of the journal into a new database — and the open after that is clean (no second
//!   damaged copy, no warning).
//! * damage while the store is open (pages scribbled after a commit, the cache of the store's
//!   connection invalidated by a WAL checkpoint from another connection, as any other writer
//!   would): the next batch hits it, the projection thread sets the file aside and rebuilds it at
//!   once, so by the time `flush_projections` returns the database holds every acknowledged
//!   event; closing and reopening is clean.
//! * the file projection: a garbage `torrents/<hex>.json` or `checkpoint.json` makes the open
//!   move the directory to `files.damaged-<time>` and rebuild it equal to a fresh replay.
//! * errors that are not damage stay errors and nothing is set aside: a `state.db` that is a
//!   directory, and a database locked by another connection.
//!
//! Warnings are collected by a minimal `tracing` subscriber on the opening thread.

mod common;

use common::with_warnings;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use torrent_journal::model::{
    InfoHash, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::{
    self, FileProjection, FileProjectionOptions, SqliteOptions, SqliteProjection,
};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Error, JournalReader, StoreOptions, TorrentStore};

fn hash(n: u8) -> InfoHash {
    InfoHash::V1([n; 20])
}

fn torrent(n: u8) -> TorrentState {
    TorrentState::sample(
        hash(n),
        &format!("torrent number {n}"),
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + i64::from(n) * 1_000_000_000),
    )
}

fn sample(n: u8, k: i64) -> TorrentMetrics {
    TorrentMetrics {
        info_hash: hash(n),
        timestamp: Timestamp::from_unix_nanos(1_700_000_100_000_000_000 + k * 1_000_000_000),
        downloaded: k * 1000,
        uploaded: k * 10,
        download_rate: 100,
        upload_rate: 10,
        peer_count: 3,
        ..TorrentMetrics::default()
    }
}

fn options() -> StoreOptions {
    StoreOptions::default().with_sqlite().with_files()
}

/// Opens the store on this thread, collecting the warnings the open logs.
fn open_warned(
    dir: &Path,
    options: StoreOptions,
) -> (torrent_journal::Result<TorrentStore>, Vec<String>) {
    with_warnings(|| TorrentStore::open_blocking(dir, options))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A store with torrents, a session configuration, metrics and a deletion; closed.
fn populate(dir: &Path, options: StoreOptions, torrents: u8) {
    let rt = runtime();
    let store = TorrentStore::open_blocking(dir, options).unwrap();
    rt.block_on(async {
        for n in 1..=torrents {
            store.save_torrent(&torrent(n)).await.unwrap();
        }
        store
            .save_session_config(&SessionConfiguration::sample())
            .await
            .unwrap();
        let samples: Vec<_> = (1..=torrents).map(|n| sample(n, 1)).collect();
        store.save_metrics(&samples).await.unwrap();
        store.delete_torrent(&hash(2)).await.unwrap();
        store.close().await.unwrap();
    });
}

/// Entries of `dir` whose names start with `prefix`, sorted.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    found.sort();
    found
}

/// The tables of a SQLite projection replayed from scratch out of `dir`'s journal.
fn replayed_dump(dir: &Path) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let mut fresh =
        SqliteProjection::open(scratch.path().join("fresh.db"), SqliteOptions::default()).unwrap();
    let reader = JournalReader::open(dir).unwrap();
    projection::catch_up(&mut fresh, &reader, &mut |_| {}).unwrap();
    fresh.dump_tables().unwrap()
}

fn dump_of(path: &Path) -> String {
    SqliteProjection::open(path, SqliteOptions::default())
        .unwrap()
        .dump_tables()
        .unwrap()
}

/// The files of a file projection replayed from scratch out of `dir`'s journal.
fn replayed_tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let scratch = tempfile::tempdir().unwrap();
    let mut fresh = FileProjection::open(
        Arc::new(RealStorage),
        scratch.path().join("files"),
        FileProjectionOptions::default(),
    )
    .unwrap();
    let reader = JournalReader::open(dir).unwrap();
    projection::catch_up(&mut fresh, &reader, &mut |_| {}).unwrap();
    fresh.tree_listing().unwrap()
}

fn tree_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    FileProjection::open(Arc::new(RealStorage), dir, FileProjectionOptions::default())
        .unwrap()
        .tree_listing()
        .unwrap()
}

/// The page size in a SQLite header (offset 16, big endian; 1 means 65536).
fn page_size(bytes: &[u8]) -> usize {
    match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65536,
        n => usize::from(n),
    }
}

/// Overwrites pages 2 .. last (exclusive, 1-based) with a pattern, except the pages in `spare`;
/// keeps page 1 (header and schema). Returns the number of pages scribbled over.
fn scribble_pages(path: &Path, spare: &[usize]) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let page = page_size(&bytes);
    let pages = bytes.len() / page;
    assert!(
        pages >= 5,
        "a database of {pages} pages is too small to damage"
    );
    let mut scribbled = 0;
    for number in (2..pages).filter(|n| !spare.contains(n)) {
        let start = (number - 1) * page;
        for (i, byte) in bytes[start..start + page].iter_mut().enumerate() {
            *byte = 0xA5 ^ (i as u8).wrapping_mul(31);
        }
        scribbled += 1;
    }
    std::fs::write(path, &bytes).unwrap();
    scribbled
}

/// The root page of `tj_checkpoint` (a one-page table).
fn checkpoint_page(db: &Path) -> usize {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(
        "SELECT rootpage FROM sqlite_master WHERE name = 'tj_checkpoint'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|page| usize::try_from(page).unwrap())
    .unwrap()
}

/// Deterministic non-database bytes.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The damaged-copy checks shared by (1) and (2): one `state.db.damaged-*` with `bad` bytes, a
/// warning naming both paths, a rebuilt database equal to a replay, and a clean second open.
fn assert_set_aside_and_rebuilt(dir: &Path, bad: &[u8], warnings: &[String]) {
    let db = dir.join("state.db");
    let damaged = entries(dir, "state.db.damaged-");
    assert_eq!(damaged.len(), 1, "one damaged copy: {damaged:?}");
    let name = damaged[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // state.db.damaged-20261202T074500Z
    let stamp = name.trim_start_matches("state.db.damaged-");
    assert_eq!(stamp.len(), 16, "{name}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[8] == b'T',
        "{name}"
    );
    assert_eq!(
        std::fs::read(&damaged[0]).unwrap(),
        bad,
        "the damaged file is moved, bytes and all"
    );
    assert!(
        warnings.iter().any(|w| w.contains(&name)
            && w.contains(&format!("path={} ", db.display()))
            && w.contains("cause=")),
        "a warning names both paths and the cause: {warnings:#?}"
    );
    let rebuilt = dump_of(&dir.join("state.db"));
    assert_eq!(
        rebuilt,
        replayed_dump(dir),
        "rebuilt = replay of the journal"
    );
    assert!(rebuilt.contains(&hash(1).to_hex()));
    assert!(
        !rebuilt.contains(&hash(2).to_hex()),
        "the deletion is replayed"
    );

    // The next open is clean.
    let (store, warnings) = open_warned(dir, options());
    let store = store.unwrap();
    runtime().block_on(store.close()).unwrap();
    assert_eq!(entries(dir, "state.db.damaged-").len(), 1);
    assert!(
        !warnings.iter().any(|w| w.contains("damaged")),
        "no damage on the second open: {warnings:#?}"
    );
    assert_eq!(dump_of(&dir.join("state.db")), rebuilt);
}

/// (1) Valid header and checkpoint, damaged pages: found by the open's `quick_check`, set
/// aside, rebuilt; the second open is clean.
#[test]
fn a_database_with_damaged_pages_is_set_aside_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir, options(), 60);
    let db = dir.join("state.db");
    assert!(!dir.join("state.db-wal").exists(), "closed cleanly");
    let header = std::fs::read(&db).unwrap()[..100].to_vec();
    // The checkpoint stays readable, so opening the database works: only `quick_check` (or a
    // write that happens to read a damaged page) can tell.
    let spare = checkpoint_page(&db);
    let pages = scribble_pages(&db, &[spare]);
    let bad = std::fs::read(&db).unwrap();
    assert_eq!(&bad[..100], header.as_slice(), "the header is intact");
    eprintln!("scribbled over {pages} pages of {} bytes", bad.len());

    let (store, warnings) = open_warned(dir, options());
    let store = store.expect("a damaged projection does not stop the store from opening");
    // The store serves the journal's state (memory) and the rebuilt database agrees.
    let rt = runtime();
    let all = rt.block_on(store.load_all_torrents()).unwrap();
    assert_eq!(all.len(), 59);
    rt.block_on(store.close()).unwrap();
    let reopened = SqliteProjection::open(&db, SqliteOptions::default()).unwrap();
    for torrent in &all {
        let row = reopened.load_torrent(&torrent.info_hash).unwrap();
        assert_eq!(row.map(|t| t.info_hash), Some(torrent.info_hash));
    }
    drop(reopened);
    assert_set_aside_and_rebuilt(dir, &bad, &warnings);
}

/// (2) A state.db that is not a database at all: the same.
#[test]
fn a_state_db_of_random_bytes_is_set_aside_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir, options(), 20);
    let bad = random_bytes(3 * 4096 + 17);
    std::fs::write(dir.join("state.db"), &bad).unwrap();

    let (store, warnings) = open_warned(dir, options());
    runtime().block_on(store.unwrap().close()).unwrap();
    assert_set_aside_and_rebuilt(dir, &bad, &warnings);
}

/// (3) Damage while the store is open heals on the projection thread: by the time
/// `flush_projections` returns, the database is rebuilt and holds every acknowledged event.
#[test]
fn damage_during_a_session_heals_before_flush_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("state.db");
    let rt = runtime();
    let store = TorrentStore::open_blocking(dir, options()).unwrap();
    rt.block_on(async {
        for n in 1..=40 {
            store.save_torrent(&torrent(n)).await.unwrap();
        }
        store.flush_projections().await.unwrap();
    });

    // Another connection moves everything into the main file and restarts the WAL (as any other
    // writer may), which makes the store's connection drop its page cache; then the pages are
    // scribbled over.
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "the checkpoint ran");
    }
    scribble_pages(&db, &[]);
    assert!(entries(dir, "state.db.damaged-").is_empty());

    rt.block_on(async {
        for n in 41..=50 {
            store.save_torrent(&torrent(n)).await.unwrap();
        }
        store.delete_torrent(&hash(3)).await.unwrap();
        store.flush_projections().await.unwrap();
    });
    let damaged = entries(dir, "state.db.damaged-");
    assert_eq!(damaged.len(), 1, "set aside while open: {damaged:?}");
    // Read while the store is open (WAL: a second reader is fine).
    let live = dump_of(&db);
    assert_eq!(live, replayed_dump(dir), "healed before flush returned");
    assert!(live.contains(&hash(50).to_hex()) && live.contains(&hash(1).to_hex()));
    assert!(!live.contains(&hash(3).to_hex()));

    // The projection keeps following after the rebuild.
    rt.block_on(async {
        store.save_torrent(&torrent(60)).await.unwrap();
        store.flush_projections().await.unwrap();
        store.close().await.unwrap();
    });
    assert!(dump_of(&db).contains(&hash(60).to_hex()));
    let (store, warnings) = open_warned(dir, options());
    let store = store.unwrap();
    assert_eq!(rt.block_on(store.load_all_torrents()).unwrap().len(), 50);
    rt.block_on(store.close()).unwrap();
    assert!(
        !warnings.iter().any(|w| w.contains("damaged")),
        "{warnings:#?}"
    );
    assert_eq!(entries(dir, "state.db.damaged-").len(), 1);
    assert_eq!(dump_of(&db), replayed_dump(dir));
}

/// (4) The file projection: a garbage torrent file, then a garbage checkpoint, are each set
/// aside with their directory and the projection rebuilt.
#[test]
fn a_damaged_file_projection_is_set_aside_and_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir, options(), 12);
    let files = dir.join("files");
    let torrent_file = files
        .join("torrents")
        .join(format!("{}.json", hash(5).to_hex()));
    assert!(torrent_file.exists());
    std::fs::write(&torrent_file, b"{ this is not json").unwrap();

    let (store, warnings) = open_warned(dir, options());
    runtime().block_on(store.unwrap().close()).unwrap();
    let damaged = entries(dir, "files.damaged-");
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    let kept = damaged[0]
        .join("torrents")
        .join(format!("{}.json", hash(5).to_hex()));
    assert_eq!(std::fs::read(&kept).unwrap(), b"{ this is not json");
    let name = damaged[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(&name) && w.contains(&hash(5).to_hex())),
        "{warnings:#?}"
    );
    let expected = replayed_tree(dir);
    assert_eq!(tree_of(&files), expected);
    assert!(expected.len() > 10);
    assert!(
        entries(dir, "state.db.damaged-").is_empty(),
        "SQLite untouched"
    );

    // A damaged checkpoint.json: a second, distinct damaged directory.
    std::fs::write(files.join("checkpoint.json"), b"\x00\x01garbage").unwrap();
    let (store, _) = open_warned(dir, options());
    runtime().block_on(store.unwrap().close()).unwrap();
    assert_eq!(entries(dir, "files.damaged-").len(), 2);
    assert_eq!(tree_of(&files), expected);

    // And then a clean open.
    let (store, warnings) = open_warned(dir, options());
    runtime().block_on(store.unwrap().close()).unwrap();
    assert_eq!(entries(dir, "files.damaged-").len(), 2);
    assert!(
        !warnings.iter().any(|w| w.contains("damaged")),
        "{warnings:#?}"
    );
}

/// (5) Errors that are not damage are reported, and nothing is set aside.
#[test]
fn errors_that_are_not_damage_stay_errors() {
    // A state.db that is a directory.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir, StoreOptions::default().with_files(), 5);
    std::fs::create_dir(dir.join("state.db")).unwrap();
    let (store, _) = open_warned(dir, options());
    let err = store.expect_err("a directory where the database should be is an error");
    assert!(!matches!(err, Error::ProjectionDamaged { .. }), "{err:?}");
    assert!(err.to_string().contains("state.db"), "{err}");
    assert!(dir.join("state.db").is_dir(), "left as it is");
    assert!(entries(dir, "state.db.damaged-").is_empty());

    // A database locked by another connection while the store needs to write to it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    populate(dir, options(), 5);
    populate(dir, StoreOptions::default(), 3); // the projection is now behind
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut locked = options();
    locked.sqlite_options.busy_timeout_ms = 50;
    let (store, _) = open_warned(dir, locked);
    let err = store.expect_err("a locked database is an error");
    assert!(!matches!(err, Error::ProjectionDamaged { .. }), "{err:?}");
    assert!(err.to_string().contains("locked"), "{err}");
    assert!(entries(dir, "state.db.damaged-").is_empty());
    conn.execute_batch("ROLLBACK").unwrap();
    drop(conn);
    // Once the lock is gone the projection catches up from its checkpoint.
    let (store, warnings) = open_warned(dir, options());
    runtime().block_on(store.unwrap().close()).unwrap();
    assert!(
        !warnings.iter().any(|w| w.contains("damaged")),
        "{warnings:#?}"
    );
    assert_eq!(dump_of(&dir.join("state.db")), replayed_dump(dir));
}
