//! Proves that drift — a projection changed behind the journal's back — is found, named per
//! torrent, and repaired from the journal, and that nothing else is reported: real stores in temp
//! directories, tampered with the way a Go program would (rusqlite on `state.db`, a rewritten
//! `torrents/<hex>.json`).
//!
//! * `check_projections` on a tampered store reports exactly the tampered torrents with the
//!   right kind (an UPDATEd status: changed, field `status`; a DELETEd row: missing; an INSERTed
//!   foreign row: extra; an edited JSON file: changed, field `download_dir`); `repair` sets both
//!   projections aside as `*.drifted-<time>`, rebuilds them, the next check is clean, each
//!   projection equals the reducer's state at the head (`load_state`, `read_view`), and the
//!   journal's bytes are unchanged.
//! * an untouched store checks clean, before and after two compactions (segments removed, the
//!   state in a snapshot) and after projections rebuilt from that snapshot.
//! * the store's cheap check at open: off by default (the tampered rows survive an open and
//!   nothing is set aside), on it warns, sets the drifted projections aside and rebuilds them
//!   (the next full check is clean), and on an untouched store it sets nothing aside.

mod common;

use common::with_warnings;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use torrent_journal::check::{self, CheckOptions, DriftKind, DriftReport, TorrentDrift, Verdict};
use torrent_journal::compaction::{self, CompactOptions};
use torrent_journal::history::{self, Target};
use torrent_journal::model::{
    InfoHash, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::{
    FileProjection, FileProjectionOptions, FileView, SqliteOptions, SqliteProjection,
};
use torrent_journal::storage::RealStorage;
use torrent_journal::{JournalReader, StoreOptions, TorrentStore};

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Opens the store, saves torrents `range` with two metrics samples each and the session
/// configuration, deletes torrent 2 if saved, closes.
fn write(dir: &Path, range: std::ops::RangeInclusive<u8>, options: StoreOptions) {
    let rt = runtime();
    let store = TorrentStore::open_blocking(dir, options).unwrap();
    rt.block_on(async {
        for n in range.clone() {
            store.save_torrent(&torrent(n)).await.unwrap();
        }
        let mut config = SessionConfiguration::sample();
        config.peer_limit_global = i64::from(*range.end());
        store.save_session_config(&config).await.unwrap();
        for k in 1..=2 {
            let samples: Vec<_> = range.clone().map(|n| sample(n, k)).collect();
            store.save_metrics(&samples).await.unwrap();
        }
        if range.contains(&2) {
            store.delete_torrent(&hash(2)).await.unwrap();
        }
        store.close().await.unwrap();
    });
}

fn check(dir: &Path, repair: bool) -> DriftReport {
    let options = CheckOptions {
        repair,
        ..CheckOptions::default()
    };
    check::check_projections(dir, &options).unwrap()
}

fn assert_clean(report: &DriftReport, context: &str) {
    assert!(!report.drifted(), "{context}: {report:#?}");
    assert_eq!(report.projections.len(), 2, "{context}: {report:#?}");
    for p in &report.projections {
        assert_eq!(p.verdict, Verdict::Clean, "{context}: {p:#?}");
        assert!(
            p.torrents.is_empty() && p.session.is_none(),
            "{context}: {p:#?}"
        );
        assert!(p.torrents_expected > 0, "{context}: {p:#?}");
    }
}

fn drift(n: u8, kind: DriftKind, field: Option<&str>) -> TorrentDrift {
    TorrentDrift {
        info_hash: hash(n).to_hex(),
        kind,
        field: field.map(str::to_owned),
    }
}

fn sqlite_conn(dir: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn
}

/// What a Go program does behind the journal's back: torrent 3's status updated (an upsert,
/// with its own `updated_date`), torrent 4 deleted, a torrent 0x77 the journal never saw
/// inserted, torrent 5's JSON file rewritten with another download directory.
fn tamper(dir: &Path) {
    let conn = sqlite_conn(dir);
    let changed = conn
        .execute(
            "UPDATE torrents SET status = status + 7, updated_date = '2031-01-01 00:00:00+00:00'
             WHERE info_hash = ?1",
            [hash(3).to_hex()],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let deleted = conn
        .execute(
            "DELETE FROM torrents WHERE info_hash = ?1",
            [hash(4).to_hex()],
        )
        .unwrap();
    assert_eq!(deleted, 1);
    let foreign = serde_json::to_string(&torrent(0x77)).unwrap();
    conn.execute(
        "INSERT INTO torrents VALUES (?1, ?2, 0, 0.0, 0, 0,
         '2031-01-01 00:00:00+00:00', '2031-01-01 00:00:00+00:00')",
        rusqlite::params![hash(0x77).to_hex(), foreign],
    )
    .unwrap();
    drop(conn);

    let path = json_path(dir, 5);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let download_dir = value
        .get_mut("download_dir")
        .expect("the torrent file has a download_dir key");
    *download_dir = "/moved/by/hand".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn json_path(dir: &Path, n: u8) -> PathBuf {
    dir.join("files/torrents")
        .join(format!("{}.json", hash(n).to_hex()))
}

/// Every file under `dir/journal` with its bytes.
fn journal_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir.join("journal")).unwrap() {
        let path = entry.unwrap().path();
        out.push((path.clone(), std::fs::read(&path).unwrap()));
    }
    out.sort();
    out
}

/// Entries of `dir` whose names contain `part`, sorted.
fn entries(dir: &Path, part: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(part))
        .collect();
    found.sort();
    found
}

/// Asserts both projections equal the reducer's state at the journal's head.
fn assert_equal_to_reducer(dir: &Path) {
    let head = history::state_at(Arc::new(RealStorage), dir, Target::Head).unwrap();
    let sqlite = SqliteProjection::open(dir.join("state.db"), SqliteOptions::default()).unwrap();
    assert_eq!(sqlite.load_state().unwrap(), head.state);
    let files = FileProjection::open(
        Arc::new(RealStorage),
        dir.join("files"),
        FileProjectionOptions::default(),
    )
    .unwrap();
    assert_eq!(
        files.read_view().unwrap(),
        FileView::of_state(&head.state).unwrap()
    );
}

#[test]
fn tampering_is_reported_per_torrent_and_repaired_from_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, 1..=6, options());
    assert_clean(&check(dir, false), "untouched");
    tamper(dir);
    let journal = journal_bytes(dir);

    let report = check(dir, false);
    assert!(report.drifted());
    let [sqlite, files] = &report.projections[..] else {
        panic!("two projections: {report:#?}")
    };
    assert_eq!((sqlite.projection, files.projection), ("sqlite", "files"));
    assert_eq!(sqlite.verdict, Verdict::Drifted);
    assert_eq!(
        sqlite.torrents,
        vec![
            drift(3, DriftKind::Changed, Some("status")),
            drift(4, DriftKind::Missing, None),
            drift(0x77, DriftKind::Extra, None),
        ]
    );
    assert_eq!(sqlite.session, None);
    assert_eq!(sqlite.torrents_expected, 5);
    assert_eq!(files.verdict, Verdict::Drifted);
    assert_eq!(
        files.torrents,
        vec![drift(5, DriftKind::Changed, Some("download_dir"))]
    );
    assert!(sqlite.repair.is_none() && files.repair.is_none());
    // A check changes nothing: the same report again.
    let again = check(dir, false);
    assert_eq!(again.projections[0].torrents, sqlite.torrents);
    assert_eq!(again.projections[1].torrents, files.torrents);

    let repaired = check(dir, true);
    assert!(!repaired.drifted(), "{repaired:#?}");
    for p in &repaired.projections {
        assert_eq!(
            p.verdict,
            Verdict::Drifted,
            "what was found is kept: {p:#?}"
        );
        let repair = p.repair.as_ref().expect("repaired");
        assert_eq!(repair.verdict_after, Verdict::Clean);
        assert_eq!(repair.seq, report.journal_seq);
        assert!(repair.set_aside.exists(), "{p:#?}");
    }
    assert_eq!(entries(dir, "state.db.drifted-").len(), 1);
    assert_eq!(entries(dir, "files.drifted-").len(), 1);
    // The foreign writes are kept in the set-aside copy.
    let aside =
        rusqlite::Connection::open(&repaired.projections[0].repair.as_ref().unwrap().set_aside)
            .unwrap();
    let status: i64 = aside
        .query_row(
            "SELECT count(*) FROM torrents WHERE info_hash = ?1",
            [hash(0x77).to_hex()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, 1);

    assert_clean(&check(dir, false), "after repair");
    assert_equal_to_reducer(dir);
    assert_eq!(journal_bytes(dir), journal, "the journal is never written");
}

#[test]
fn a_store_nobody_touched_checks_clean_also_after_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, 1..=4, options());
    assert_clean(&check(dir, false), "fresh");
    let storage = Arc::new(RealStorage);
    compaction::compact(storage.clone(), dir, &CompactOptions::default()).unwrap();
    write(dir, 5..=7, options());
    compaction::compact(storage.clone(), dir, &CompactOptions::default()).unwrap();
    write(dir, 8..=9, options());
    let reader = JournalReader::open(dir).unwrap();
    assert!(
        reader.first_retained_seq().unwrap() > 1,
        "compaction removed segments"
    );
    assert_clean(&check(dir, false), "after compaction");

    // Projections rebuilt with the journal's beginning only in a snapshot: still clean.
    std::fs::remove_file(dir.join("state.db")).unwrap();
    std::fs::remove_dir_all(dir.join("files")).unwrap();
    let rt = runtime();
    let store = TorrentStore::open_blocking(dir, options()).unwrap();
    rt.block_on(store.close()).unwrap();
    let report = check(dir, false);
    assert_clean(&report, "rebuilt from a snapshot");
    assert_eq!(report.projections[0].torrents_expected, 8);
    assert_equal_to_reducer(dir);
}

/// Opens and closes the store on this thread; returns the warnings the open logged.
fn open_close(dir: &Path, options: StoreOptions) -> Vec<String> {
    let (store, warnings) = with_warnings(|| TorrentStore::open_blocking(dir, options));
    runtime().block_on(store.unwrap().close()).unwrap();
    warnings
}

fn status_of(dir: &Path, n: u8) -> Option<i64> {
    use rusqlite::OptionalExtension as _;
    sqlite_conn(dir)
        .query_row(
            "SELECT status FROM torrents WHERE info_hash = ?1",
            [hash(n).to_hex()],
            |r| r.get(0),
        )
        .optional()
        .unwrap()
}

#[test]
fn the_cheap_check_at_open_heals_drift_when_enabled_and_is_off_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write(dir, 1..=6, options());
    let clean_status = status_of(dir, 3).unwrap();

    // On, untouched: nothing to do.
    let warnings = open_close(dir, options().with_drift_check(true));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(entries(dir, ".drifted-").is_empty());

    tamper(dir);
    let tampered_json = std::fs::read(json_path(dir, 5)).unwrap();

    // Off (the default): the open reads nothing of it, the drift stays.
    assert!(!StoreOptions::default().drift_check);
    let warnings = open_close(dir, options());
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(entries(dir, ".drifted-").is_empty());
    assert_eq!(status_of(dir, 3), Some(clean_status + 7));
    assert_eq!(status_of(dir, 4), None);
    assert_eq!(std::fs::read(json_path(dir, 5)).unwrap(), tampered_json);
    assert!(check(dir, false).drifted());

    // On: warned, set aside, rebuilt.
    let warnings = open_close(dir, options().with_drift_check(true));
    let drifted: Vec<&String> = warnings.iter().filter(|w| w.contains("drifted")).collect();
    assert_eq!(drifted.len(), 2, "{warnings:?}");
    assert_eq!(entries(dir, "state.db.drifted-").len(), 1);
    assert_eq!(entries(dir, "files.drifted-").len(), 1);
    assert_eq!(status_of(dir, 3), Some(clean_status));
    assert_eq!(status_of(dir, 0x77), None);
    assert_clean(&check(dir, false), "healed at open");
    assert_equal_to_reducer(dir);

    // And the next open finds nothing.
    let warnings = open_close(dir, options().with_drift_check(true));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(entries(dir, ".drifted-").len(), 2);
}

#[test]
fn the_cheap_check_sees_a_deleted_row_and_an_edited_file_alone() {
    for what in ["delete", "json"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, 1..=3, options());
        match what {
            "delete" => {
                sqlite_conn(dir)
                    .execute(
                        "DELETE FROM torrents WHERE info_hash = ?1",
                        [hash(1).to_hex()],
                    )
                    .unwrap();
            }
            _ => {
                let path = json_path(dir, 3);
                let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
                let edited = text.replace("torrent number 3", "torrent number 33");
                assert_ne!(edited, text);
                std::fs::write(&path, edited).unwrap();
            }
        }
        let warnings = open_close(dir, options().with_drift_check(true));
        assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
        assert_eq!(entries(dir, ".drifted-").len(), 1, "{what}");
        assert_clean(&check(dir, false), what);
    }
}
