//! Proves the SQLite projection means what the reducer means, survives reopening, stays
//! readable by the go-i2p-bt SQL, and applies batches all-or-nothing.
//!
//! How: a deterministic simulated client session (`Simulation`, seed 1, 30 torrents, 1 500
//! events, which covers every event kind) is wrapped into envelopes and fed to a
//! `SqliteProjection` in batches of varying size. After every batch `load_state()` (and the
//! other reads) must equal `state::apply` folded over the same prefix; reopening the database
//! at every batch boundary must end in byte-identical tables; the Go code's exact queries are
//! run on the file through a separate `rusqlite` connection; failures injected before and
//! inside the transaction (a seq gap, a SQL trigger that aborts mid-batch, a lock held by
//! another connection) must leave checkpoint and tables untouched; and the metrics retention
//! option must purge exactly the samples older than the last commit time minus the retention.
//!
//! Sharing the database with the Go program: a database built by hand with the schema-3 DDL
//! (ten-column `torrent_metrics`, RFC 3339 `DATETIME` text) must migrate to the Go table's eight
//! columns with the durations in the side table, rows, ids and the `AUTOINCREMENT` mark kept,
//! every `DATETIME` rewritten into Go's driver text; and rows the Go code writes (its positional
//! `INSERT INTO torrent_metrics VALUES (NULL, ?, …)`, its torrent upsert with Go's time text)
//! must be read back by the projection and sort together with ours under `ORDER BY`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::Value;
use torrent_journal::model::{
    InfoHash, MetricsSummary, SessionConfiguration, Timestamp, TorrentMetrics, TorrentState,
};
use torrent_journal::projection::sqlite::{SCHEMA_VERSION, sql_timestamp};
use torrent_journal::projection::{Checkpoint, Projection, SqliteOptions, SqliteProjection};
use torrent_journal::simulate::Simulation;
use torrent_journal::state::{self, State};
use torrent_journal::{Envelope, Error, Event};

const START: Timestamp = Timestamp::from_unix_nanos(1_700_000_000_000_000_000);

/// Batch sizes, cycled: singles, small and large batches.
const BATCH_SIZES: [usize; 12] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 7];

/// The simulated session as envelopes: seqs from 1, commit times strictly increasing with
/// varying sub-second parts (so the RFC 3339 text has 0, 3, 6 and 9 fraction digits).
fn envelopes() -> Vec<Envelope> {
    Simulation {
        seed: 1,
        torrents: 30,
        events: 1500,
        tasks: 1,
        start: START,
    }
    .task(0)
    .enumerate()
    .map(|(i, event)| {
        let i = i as i64;
        let fraction = [0, 250_000_000, 123_456_000, 7][i as usize % 4];
        let at = START.saturating_add_nanos(i * 1_000_000_000 + fraction);
        Envelope::new(i as u64 + 1, at, event)
    })
    .collect()
}

/// Splits `0..len` into consecutive batches of the cycled sizes.
fn batches(len: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for size in BATCH_SIZES.iter().cycle() {
        if start >= len {
            break;
        }
        let end = (start + size).min(len);
        out.push(start..end);
        start = end;
    }
    out
}

fn open(path: &Path) -> SqliteProjection {
    SqliteProjection::open(path, SqliteOptions::default()).unwrap()
}

/// Every read of the projection agrees with the reducer's `expected` state.
fn assert_matches_reducer(projection: &SqliteProjection, expected: &State) {
    let loaded = projection.load_state().unwrap();
    assert_eq!(loaded.torrents, expected.torrents, "torrents");
    assert_eq!(loaded.session, expected.session, "session");
    assert_eq!(loaded.metrics, expected.metrics, "metrics");
    assert_eq!(loaded.last_seq, expected.last_seq, "last_seq");
    assert_eq!(loaded.last_at, expected.last_at, "last_at");
    assert_eq!(&loaded, expected);
    assert_eq!(
        projection.checkpoint(),
        Checkpoint {
            seq: expected.last_seq,
            at: expected.last_at
        }
    );

    for (hash, torrent) in &expected.torrents {
        assert_eq!(
            projection.load_torrent(hash).unwrap().as_ref(),
            Some(&**torrent)
        );
    }
    let mut by_added: Vec<&TorrentState> = expected.torrents.values().map(|t| &**t).collect();
    by_added.sort_by_key(|t| (t.added_date, t.info_hash.to_hex()));
    let all = projection.load_all_torrents().unwrap();
    assert_eq!(all.iter().collect::<Vec<_>>(), by_added);
    assert_eq!(projection.load_session_config().unwrap(), expected.session);

    let mut summaries = Vec::new();
    for (hash, samples) in &expected.metrics {
        let mut ordered = samples.clone();
        ordered.sort_by_key(|s| s.timestamp); // stable: insertion order on ties
        assert_eq!(
            projection
                .load_metrics(hash, Timestamp::MIN, Timestamp::MAX)
                .unwrap(),
            ordered
        );
        summaries.extend(MetricsSummary::from_samples(samples));
    }
    assert_eq!(
        projection
            .metrics_summary(Timestamp::MIN, Timestamp::MAX)
            .unwrap(),
        summaries
    );
}

#[test]
fn equals_the_reducer_at_every_batch_boundary() {
    let envelopes = envelopes();
    let kinds: std::collections::BTreeSet<&str> =
        envelopes.iter().map(|e| e.event.kind()).collect();
    for kind in [
        "torrent-added",
        "torrent-metadata",
        "torrent-error",
        "torrent-removed",
        "torrent-saved",
        "metrics-recorded",
        "metrics-purged",
        "session-config-saved",
    ] {
        assert!(kinds.contains(kind), "the simulation lacks {kind}");
    }

    let dir = tempfile::tempdir().unwrap();
    let mut projection = open(&dir.path().join("p.db"));
    let mut expected = State::default();
    assert_matches_reducer(&projection, &expected);
    for range in batches(envelopes.len()) {
        let batch = &envelopes[range];
        projection.apply(batch).unwrap();
        batch.iter().for_each(|e| state::apply(&mut expected, e));
        assert_matches_reducer(&projection, &expected);
    }
    assert_eq!(expected, State::from_envelopes(&envelopes));
    assert!(!expected.torrents.is_empty() && expected.metrics_len() > 0);
    // Removed torrents took their metrics and metainfo with them.
    let dump = projection.dump_tables().unwrap();
    assert_eq!(
        dump.matches("\ninfo_hash=").count(),
        2 * expected.torrents.len() - missing_metainfo(&expected),
        "{dump}"
    );
    // Ranges are inclusive and go by time.
    let (hash, samples) = expected.metrics.iter().next().unwrap();
    let at = samples[0].timestamp;
    assert_eq!(
        projection.load_metrics(hash, at, at).unwrap(),
        vec![samples[0].clone()]
    );
    assert_eq!(
        projection
            .load_metrics(hash, at.saturating_add_nanos(1), Timestamp::MAX)
            .unwrap(),
        samples[1..].to_vec()
    );
    assert!(
        projection
            .load_metrics(hash, Timestamp::MAX, at)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        projection.load_torrent(&InfoHash::V1([0xee; 20])).unwrap(),
        None
    );
}

fn missing_metainfo(state: &State) -> usize {
    state
        .torrents
        .values()
        .filter(|t| t.meta_info.is_none())
        .count()
}

#[test]
fn reopening_at_every_batch_boundary_equals_one_shot() {
    let envelopes = envelopes();
    let dir = tempfile::tempdir().unwrap();

    let one_shot_path = dir.path().join("one-shot.db");
    let mut one_shot = open(&one_shot_path);
    one_shot.apply(&envelopes).unwrap();

    let path = dir.path().join("reopened.db");
    for range in batches(envelopes.len()) {
        let mut projection = open(&path);
        assert_eq!(projection.checkpoint().seq, range.start as u64);
        if range.start > 0 {
            assert_eq!(
                projection.checkpoint(),
                Checkpoint::of(&envelopes[range.start - 1])
            );
        }
        projection.apply(&envelopes[range]).unwrap();
    }
    let reopened = open(&path);
    assert_eq!(
        reopened.checkpoint(),
        Checkpoint::of(envelopes.last().unwrap())
    );
    assert_eq!(
        reopened.dump_tables().unwrap(),
        one_shot.dump_tables().unwrap()
    );
    let expected = State::from_envelopes(&envelopes);
    assert_matches_reducer(&reopened, &expected);
    assert_matches_reducer(&one_shot, &expected);

    // reset() forgets everything; replaying gives the same tables again (ids included).
    one_shot.reset().unwrap();
    assert_eq!(one_shot.checkpoint(), Checkpoint::default());
    assert_eq!(one_shot.load_state().unwrap(), State::default());
    drop(one_shot);
    let mut one_shot = open(&one_shot_path);
    assert_eq!(one_shot.checkpoint(), Checkpoint::default());
    one_shot.apply(&envelopes).unwrap();
    assert_eq!(
        one_shot.dump_tables().unwrap(),
        reopened.dump_tables().unwrap()
    );
}

/// The keys of `data` must be a superset of `keys`.
fn assert_has_keys(data: &str, keys: &[&str]) -> serde_json::Map<String, Value> {
    let Value::Object(map) = serde_json::from_str::<Value>(data).unwrap() else {
        panic!("data is not a JSON object: {data}");
    };
    for key in keys {
        assert!(map.contains_key(*key), "data lacks {key}: {data}");
    }
    map
}

#[test]
fn the_go_codes_queries_read_our_database() {
    let envelopes = envelopes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let mut projection = open(&path);
    for range in batches(envelopes.len()) {
        projection.apply(&envelopes[range]).unwrap();
    }
    let expected = State::from_envelopes(&envelopes);

    // A separate connection, as the Go code would have (the projection stays open: WAL).
    let go = Connection::open(&path).unwrap();
    go.busy_timeout(Duration::from_secs(10)).unwrap();
    let version: u32 = go
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);

    // The commit time of the last event that wrote each torrent's row.
    let mut last_write: BTreeMap<InfoHash, Timestamp> = BTreeMap::new();
    for envelope in &envelopes {
        if !matches!(envelope.event, Event::MetricsRecorded { .. }) {
            for hash in envelope.event.info_hashes() {
                last_write.insert(hash, envelope.at);
            }
        }
    }

    let mut one = go
        .prepare("SELECT data, added_date, updated_date FROM torrents WHERE info_hash = ?")
        .unwrap();
    for (hash, torrent) in &expected.torrents {
        let (data, added, updated): (String, String, String) = one
            .query_row([hash.to_hex()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        let map = assert_has_keys(&data, &TorrentState::JSON_KEYS);
        assert_eq!(map["meta_info"], Value::Null, "the metainfo lives apart");
        assert_eq!(map["info_hash"], hash.to_hex());
        let mut parsed: TorrentState = serde_json::from_str(&data).unwrap();
        assert_eq!(parsed.meta_info, None);
        parsed.meta_info.clone_from(&torrent.meta_info);
        assert_eq!(&parsed, &**torrent);
        assert_eq!(added, sql_timestamp(torrent.added_date));
        assert_eq!(
            Timestamp::parse_rfc3339(&added).unwrap(),
            torrent.added_date
        );
        assert_eq!(updated, sql_timestamp(last_write[hash]));
    }

    let mut all = go
        .prepare(
            "SELECT info_hash, data, added_date, updated_date FROM torrents ORDER BY added_date",
        )
        .unwrap();
    let rows: Vec<(String, String, String, String)> = all
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(rows.len(), expected.torrents.len());
    let added: Vec<Timestamp> = rows
        .iter()
        .map(|(_, _, added, _)| Timestamp::parse_rfc3339(added).unwrap())
        .collect();
    assert!(added.is_sorted(), "ORDER BY added_date is time order");
    for (hash, data, _, _) in &rows {
        let hash = InfoHash::parse(hash).unwrap();
        let map = assert_has_keys(data, &TorrentState::JSON_KEYS);
        assert_eq!(map["status"], expected.torrents[&hash].status);
    }

    let (data, updated): (String, String) = go
        .query_row(
            "SELECT data, updated_date FROM session_config WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_has_keys(&data, &SessionConfiguration::JSON_KEYS);
    assert_eq!(
        serde_json::from_str::<SessionConfiguration>(&data).unwrap(),
        SessionConfiguration::sample()
    );
    Timestamp::parse_rfc3339(&updated).unwrap();

    // Go's driver text throughout: every DATETIME column sorts as time.
    let forms: i64 = go
        .query_row(
            "SELECT count(*) FROM torrents WHERE added_date NOT LIKE '____-__-__ __:__:__%+00:00'
                OR updated_date NOT LIKE '____-__-__ __:__:__%+00:00'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(forms, 0);

    // Go's "delete by info hash" cascades to our metainfo and to the metrics.
    let (hash, _) = expected.metrics.iter().next().unwrap();
    go.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    go.execute("DELETE FROM torrents WHERE info_hash = ?", [hash.to_hex()])
        .unwrap();
    let left: i64 = go
        .query_row(
            "SELECT (SELECT count(*) FROM torrent_metrics WHERE info_hash = ?1)
                  + (SELECT count(*) FROM torrent_metainfo WHERE info_hash = ?1)",
            [hash.to_hex()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let orphans: i64 = go
        .query_row(
            "SELECT count(*) FROM torrent_metrics_durations
             WHERE metric_id NOT IN (SELECT id FROM torrent_metrics)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "the durations went with their samples");
}

#[test]
fn a_failed_batch_changes_nothing() {
    let envelopes = envelopes();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let mut projection = SqliteProjection::open(
        &path,
        SqliteOptions {
            busy_timeout_ms: 50,
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let split = 300;
    projection.apply(&envelopes[..split]).unwrap();
    let checkpoint = projection.checkpoint();
    let before = projection.dump_tables().unwrap();
    let unchanged = |projection: &SqliteProjection| {
        assert_eq!(projection.checkpoint(), checkpoint);
        assert_eq!(projection.dump_tables().unwrap(), before);
        let reopened = open(&path);
        assert_eq!(reopened.checkpoint(), checkpoint);
        assert_eq!(reopened.dump_tables().unwrap(), before);
    };

    // 1. A seq gap in the second envelope: refused before anything is written.
    let gap = [envelopes[split].clone(), envelopes[split + 2].clone()];
    let err = projection.apply(&gap).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    unchanged(&projection);
    // Replaying an already applied seq is refused too.
    assert!(projection.apply(&envelopes[split - 1..split + 1]).is_err());
    unchanged(&projection);

    // 2. A failure inside the transaction, after earlier envelopes of the batch were written:
    //    a trigger (installed through another connection) aborts the first metrics insert.
    let first_metrics = (split + 3..envelopes.len())
        .find(|&i| {
            let live = State::from_envelopes(&envelopes[..i]).torrents;
            matches!(&envelopes[i].event, Event::MetricsRecorded { samples }
                if samples.iter().any(|s| live.contains_key(&s.info_hash)))
        })
        .expect("a metrics event for a live torrent");
    let batch = &envelopes[split..first_metrics + 3];
    assert!(
        batch[..first_metrics - split]
            .iter()
            .any(|e| !e.event.info_hashes().is_empty()),
        "the batch writes torrents before the failing insert"
    );
    let other = Connection::open(&path).unwrap();
    other
        .execute_batch(
            "CREATE TRIGGER fail_metrics BEFORE INSERT ON torrent_metrics
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let err = projection.apply(batch).unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    unchanged(&projection);
    other.execute_batch("DROP TRIGGER fail_metrics").unwrap();

    // 3. Another connection holds the write lock: the batch times out, nothing changes.
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = projection.apply(batch).unwrap_err();
    assert!(
        matches!(&err, Error::Sqlite { cause, .. }
            if cause.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)),
        "{err}"
    );
    other.execute_batch("ROLLBACK").unwrap();
    unchanged(&projection);

    // The same batch then applies, and the rest of the journal too.
    projection.apply(batch).unwrap();
    projection.apply(&envelopes[first_metrics + 3..]).unwrap();
    assert_matches_reducer(&projection, &State::from_envelopes(&envelopes));
}

fn hash(n: u8) -> InfoHash {
    InfoHash::V1([n; 20])
}

fn sample(n: u8, at: Timestamp) -> TorrentMetrics {
    TorrentMetrics {
        info_hash: hash(n),
        timestamp: at,
        downloaded: at.nanos_since(START) / 1_000,
        uploaded: 7,
        download_rate: 1_000,
        upload_rate: 10,
        peer_count: 3,
        seeding_time: 0,
        downloading_time: at.nanos_since(START),
    }
}

fn ms(millis: i64) -> Timestamp {
    START.saturating_add_nanos(millis * 1_000_000)
}

#[test]
fn metrics_retention_purges_old_samples_in_each_batch() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Duration::from_secs(2);
    let mut projection = SqliteProjection::open(
        dir.path().join("p.db"),
        SqliteOptions {
            metrics_retention: Some(retention),
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    // Samples every 250 ms for 10 s: whole seconds and fractions, whose AutoSi RFC 3339 text
    // would not sort ("…:08Z" > "…:08.250Z").
    let torrent = TorrentState::sample(hash(1), "kept", START);
    let samples: Vec<TorrentMetrics> = (0..40).map(|k| sample(1, ms(k * 250))).collect();
    let events = vec![
        Event::TorrentSaved {
            torrent: Box::new(torrent),
        },
        Event::MetricsRecorded {
            samples: samples[..20].to_vec(),
        },
        Event::MetricsRecorded {
            samples: samples[20..].to_vec(),
        },
    ];
    let envelopes: Vec<Envelope> = events
        .into_iter()
        .zip([ms(0), ms(5_000), ms(10_100)])
        .enumerate()
        .map(|(i, (event, at))| Envelope::new(i as u64 + 1, at, event))
        .collect();

    projection.apply(&envelopes[..2]).unwrap();
    // Cutoff 5.000 s − 2 s = 3.000 s: samples from 3.000 s on stay (12 of the first 20).
    let kept = projection
        .load_metrics(&hash(1), Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(kept, samples[12..20].to_vec());

    projection.apply(&envelopes[2..]).unwrap();
    // Cutoff 10.100 s − 2 s = 8.100 s: samples at 8.250 s and later stay.
    let cutoff = ms(8_100);
    let expected: Vec<TorrentMetrics> = samples
        .iter()
        .filter(|s| s.timestamp >= cutoff)
        .cloned()
        .collect();
    assert_eq!(expected.first().unwrap().timestamp, ms(8_250));
    let state = projection.load_state().unwrap();
    assert_eq!(state.metrics[&hash(1)], expected);
    // Besides retention the state is the reducer's.
    let mut reducer = State::from_envelopes(&envelopes);
    reducer
        .metrics
        .values_mut()
        .for_each(|v| v.retain(|s| s.timestamp >= cutoff));
    assert_eq!(state, reducer);

    // An explicit purge is strict: a sample exactly at `older_than` stays.
    let purge = Envelope::new(
        4,
        ms(10_200),
        Event::MetricsPurged {
            older_than: ms(9_000),
        },
    );
    projection.apply(std::slice::from_ref(&purge)).unwrap();
    let kept = projection
        .load_metrics(&hash(1), Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(kept.first().unwrap().timestamp, ms(9_000));
    assert_eq!(kept.len(), 4);
    let summary = projection.metrics_summary(ms(9_000), ms(9_500)).unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].samples, 3);
    assert_eq!((summary[0].first, summary[0].last), (ms(9_000), ms(9_500)));
}

#[test]
fn retention_over_the_simulated_session_equals_the_filtered_reducer() {
    let envelopes = envelopes();
    let retention = Duration::from_secs(600);
    let dir = tempfile::tempdir().unwrap();
    let mut projection = SqliteProjection::open(
        dir.path().join("p.db"),
        SqliteOptions {
            metrics_retention: Some(retention),
            ..SqliteOptions::default()
        },
    )
    .unwrap();
    let mut expected = State::default();
    let mut unlimited = State::default();
    let (mut saw_kept, mut saw_purged) = (false, false);
    for range in batches(envelopes.len()) {
        let batch = &envelopes[range];
        projection.apply(batch).unwrap();
        batch.iter().for_each(|e| state::apply(&mut expected, e));
        batch.iter().for_each(|e| state::apply(&mut unlimited, e));
        let cutoff = batch
            .last()
            .unwrap()
            .at
            .saturating_add_nanos(-600_000_000_000);
        for samples in expected.metrics.values_mut() {
            samples.retain(|s| s.timestamp >= cutoff);
        }
        expected.metrics.retain(|_, v| !v.is_empty());
        assert_eq!(projection.load_state().unwrap(), expected);
        saw_kept |= expected.metrics_len() > 0;
        saw_purged |= expected.metrics_len() < unlimited.metrics_len();
    }
    assert!(saw_kept && saw_purged);
}

#[test]
fn dump_of_a_small_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut projection = open(&dir.path().join("p.db"));
    let mut torrent = TorrentState {
        info_hash: hash(0xab),
        status: 4,
        download_dir: "/d".to_owned(),
        added_date: ms(500),
        percent_done: 0.25,
        downloaded: 100,
        uploaded: 5,
        ..TorrentState::default()
    };
    torrent.meta_info = Some(torrent_journal::model::MetaInfo::new(
        b"d4:infod4:name1:xee".to_vec(),
    ));
    let events = vec![
        Event::SessionConfigSaved {
            config: Box::new(SessionConfiguration {
                download_dir: "/d".to_owned(),
                ..SessionConfiguration::default()
            }),
        },
        Event::TorrentSaved {
            torrent: Box::new(torrent),
        },
        Event::MetricsRecorded {
            samples: vec![sample(0xab, ms(1_000)), sample(0xcd, ms(1_000))],
        },
    ];
    let envelopes: Vec<Envelope> = events
        .into_iter()
        .enumerate()
        .map(|(i, e)| Envelope::new(i as u64 + 1, ms(2_000 + i as i64 * 250), e))
        .collect();
    projection.apply(&envelopes).unwrap();
    insta::assert_snapshot!(projection.dump_tables().unwrap(), @r#"
    user_version = 5

    [tj_checkpoint]
    id=1 seq=3 at_unix_nanos=1700000002500000000

    [session_config]
    id=1 data="{\"download_dir\":\"/d\",\"incomplete_dir\":\"\",\"incomplete_dir_enabled\":false,\"peer_port\":0,\"peer_limit_global\":0,\"peer_limit_per_torrent\":0,\"dht_enabled\":false,\"pex_enabled\":false,\"lpd_enabled\":false,\"utp_enabled\":false,\"webseeds_enabled\":false,\"encryption\":\"\",\"speed_limit_down\":0,\"speed_limit_down_enabled\":false,\"speed_limit_up\":0,\"speed_limit_up_enabled\":false,\"alt_speed_down\":0,\"alt_speed_up\":0,\"alt_speed_enabled\":false,\"download_queue_enabled\":false,\"download_queue_size\":0,\"seed_queue_enabled\":false,\"seed_queue_size\":0,\"seed_ratio_limit\":0.0,\"seed_ratio_limited\":false,\"idle_seeding_limit\":0,\"idle_seeding_limit_enabled\":false,\"start_added_torrents\":false,\"cache_size_mb\":0,\"version\":\"\",\"blocklist_enabled\":false,\"blocklist_url\":\"\",\"blocklist_size\":0,\"script_torrent_done_enabled\":false,\"script_torrent_done_filename\":\"\"}" updated_date="2023-11-14 22:13:22+00:00"

    [torrents]
    info_hash="abababababababababababababababababababab" data="{\"id\":0,\"info_hash\":\"abababababababababababababababababababab\",\"meta_info\":null,\"status\":4,\"error\":null,\"download_dir\":\"/d\",\"added_date\":\"2023-11-14T22:13:20.500Z\",\"start_date\":null,\"labels\":[],\"downloaded\":100,\"uploaded\":5,\"left\":0,\"percent_done\":0.25,\"piece_count\":0,\"pieces_complete\":0,\"pieces_available\":0,\"download_rate\":0,\"upload_rate\":0,\"eta\":0,\"peer_count\":0,\"peer_connected_count\":0,\"peer_sending_count\":0,\"peer_receiving_count\":0,\"files\":[],\"priorities\":[],\"wanted\":[],\"tracker_list\":[],\"peers\":[],\"seed_ratio_limit\":0.0,\"seed_idle_limit\":0,\"honors_session_limits\":false}" status=4 percent_done=0.25 downloaded=100 uploaded=5 added_date="2023-11-14 22:13:20.5+00:00" updated_date="2023-11-14 22:13:22.25+00:00"

    [torrent_metainfo]
    info_hash="abababababababababababababababababababab" raw=x'64343a696e666f64343a6e616d65313a786565'

    [torrent_metrics]
    id=1 info_hash="abababababababababababababababababababab" timestamp="2023-11-14 22:13:21+00:00" downloaded=1000000 uploaded=7 download_rate=1000 upload_rate=10 peer_count=3

    [torrent_metrics_durations]
    metric_id=1 seeding_time=0 downloading_time=1000000000
    "#);
}

/// The schema as this project wrote it at `user_version` 3, spelled out independently of the
/// migrations in the library: the Go tables, our two tables, and migration 3's two
/// `ALTER TABLE … ADD COLUMN`s on `torrent_metrics`.
const SCHEMA_3: &str = "
    CREATE TABLE torrents (info_hash TEXT PRIMARY KEY, data TEXT NOT NULL,
        status INTEGER NOT NULL, percent_done REAL NOT NULL, downloaded INTEGER NOT NULL,
        uploaded INTEGER NOT NULL, added_date DATETIME NOT NULL, updated_date DATETIME NOT NULL);
    CREATE INDEX idx_torrents_status ON torrents(status);
    CREATE INDEX idx_torrents_updated ON torrents(updated_date);
    CREATE TABLE session_config (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL,
        updated_date DATETIME NOT NULL);
    CREATE TABLE torrent_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,
        info_hash TEXT NOT NULL, timestamp DATETIME NOT NULL, downloaded INTEGER NOT NULL,
        uploaded INTEGER NOT NULL, download_rate INTEGER NOT NULL,
        upload_rate INTEGER NOT NULL, peer_count INTEGER NOT NULL,
        FOREIGN KEY (info_hash) REFERENCES torrents(info_hash) ON DELETE CASCADE);
    CREATE INDEX idx_metrics_hash_time ON torrent_metrics(info_hash, timestamp);
    CREATE INDEX idx_metrics_timestamp ON torrent_metrics(timestamp);
    CREATE TABLE tj_checkpoint (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
        at_unix_nanos INTEGER NOT NULL);
    INSERT INTO tj_checkpoint (id, seq, at_unix_nanos) VALUES (1, 0, 0);
    CREATE TABLE torrent_metainfo (
        info_hash TEXT PRIMARY KEY REFERENCES torrents(info_hash) ON DELETE CASCADE,
        raw BLOB NOT NULL);
    ALTER TABLE torrent_metrics ADD COLUMN seeding_time INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE torrent_metrics ADD COLUMN downloading_time INTEGER NOT NULL DEFAULT 0;
    PRAGMA user_version = 3;";

fn columns(conn: &Connection, table: &str) -> Vec<String> {
    conn.prepare(&format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    ))
    .unwrap()
    .query_map([], |r| r.get(0))
    .unwrap()
    .collect::<rusqlite::Result<_>>()
    .unwrap()
}

fn text_column(conn: &Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

const GO_METRICS_COLUMNS: [&str; 8] = [
    "id",
    "info_hash",
    "timestamp",
    "downloaded",
    "uploaded",
    "download_rate",
    "upload_rate",
    "peer_count",
];

#[test]
fn a_schema_3_database_migrates_to_the_go_metrics_table_and_go_datetime_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let (a, b) = (hash(1), hash(2));
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_3).unwrap();
        for (h, added) in [
            (a, "2023-11-14T22:13:20.500000000Z"),
            (b, "2023-11-14T22:13:20.000000000Z"),
        ] {
            let torrent = TorrentState {
                info_hash: h,
                added_date: Timestamp::parse_rfc3339(added).unwrap(),
                ..TorrentState::default()
            };
            conn.execute(
                "INSERT INTO torrents VALUES (?1, ?2, 0, 0.0, 0, 0, ?3,
                    '2023-11-14T22:13:30.000000000Z')",
                rusqlite::params![h.to_hex(), serde_json::to_string(&torrent).unwrap(), added],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO session_config VALUES (1, '{}', '2023-11-14T22:13:21.250000000Z')",
            [],
        )
        .unwrap();
        // Four samples; the fourth is purged, so the AUTOINCREMENT mark (4) is above the
        // largest id left (3).
        for (id, h, at, seeding, downloading) in [
            (
                1,
                a,
                "2023-11-14T22:13:21.000000000Z",
                5_000_000_000_i64,
                0_i64,
            ),
            (2, a, "2023-11-14T22:13:22.000000000Z", 0, 0),
            (3, b, "2023-11-14T22:13:21.500000000Z", 0, 7_000_000_000),
            (4, b, "2023-11-14T22:13:23.000000000Z", 1, 1),
        ] {
            conn.execute(
                "INSERT INTO torrent_metrics VALUES (?1, ?2, ?3, 10, 1, 100, 10, 3, ?4, ?5)",
                rusqlite::params![id, h.to_hex(), at, seeding, downloading],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM torrent_metrics WHERE id = 4", [])
            .unwrap();
        conn.execute("UPDATE tj_checkpoint SET seq = 9, at_unix_nanos = 1", [])
            .unwrap();
    }

    let mut projection = open(&path);
    assert_eq!(projection.checkpoint().seq, 9, "the checkpoint survives");
    let conn = Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(columns(&conn, "torrent_metrics"), GO_METRICS_COLUMNS);
    assert_eq!(
        columns(&conn, "torrent_metrics_durations"),
        ["metric_id", "seeding_time", "downloading_time"]
    );
    let indexes = text_column(
        &conn,
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'torrent_metrics'
         ORDER BY name",
    );
    assert_eq!(indexes, ["idx_metrics_hash_time", "idx_metrics_timestamp"]);
    let side: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT * FROM torrent_metrics_durations ORDER BY metric_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(side, [(1, 5_000_000_000, 0), (3, 0, 7_000_000_000)]);
    let mark: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'torrent_metrics'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mark, 4, "the AUTOINCREMENT mark is carried over");

    // Every DATETIME now in Go's driver text; ORDER BY sorts by time.
    assert_eq!(
        text_column(&conn, "SELECT added_date FROM torrents ORDER BY added_date"),
        ["2023-11-14 22:13:20+00:00", "2023-11-14 22:13:20.5+00:00"]
    );
    assert_eq!(
        text_column(&conn, "SELECT updated_date FROM session_config"),
        ["2023-11-14 22:13:21.25+00:00"]
    );
    assert_eq!(
        text_column(
            &conn,
            "SELECT timestamp FROM torrent_metrics ORDER BY timestamp"
        ),
        [
            "2023-11-14 22:13:21+00:00",
            "2023-11-14 22:13:21.5+00:00",
            "2023-11-14 22:13:22+00:00"
        ]
    );

    // The projection reads the durations back from the side table.
    let of_a = projection
        .load_metrics(&a, Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    let durations: Vec<(i64, i64)> = of_a
        .iter()
        .map(|m| (m.seeding_time, m.downloading_time))
        .collect();
    assert_eq!(durations, [(5_000_000_000, 0), (0, 0)]);
    let of_b = projection
        .load_metrics(&b, Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].downloading_time, 7_000_000_000);
    assert_eq!(
        of_b[0].timestamp,
        Timestamp::parse_rfc3339("2023-11-14T22:13:21.5Z").unwrap()
    );

    // Foreign keys are back on after the migration: a new sample gets id 5 (not 4), and
    // deleting its torrent takes the samples and their side rows with it.
    let at = Timestamp::parse_rfc3339("2023-11-14T22:13:40Z").unwrap();
    let mut new_sample = sample(2, at);
    new_sample.seeding_time = 11;
    projection
        .apply(&[
            Envelope::new(
                10,
                at,
                Event::MetricsRecorded {
                    samples: vec![new_sample],
                },
            ),
            Envelope::new(11, at, Event::TorrentDeleted { info_hash: b }),
        ])
        .unwrap();
    let ids: Vec<i64> = conn
        .prepare("SELECT metric_id FROM torrent_metrics_durations ORDER BY metric_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(
        ids,
        [1],
        "torrent b's side rows (3 and the new 5) cascaded away"
    );
    let mark: i64 = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'torrent_metrics'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mark, 5);
}

#[test]
fn rows_the_go_code_writes_are_read_back_and_sort_with_ours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let mut projection = open(&path);
    let ours = |n: u8, added: Timestamp| TorrentState {
        info_hash: hash(n),
        added_date: added,
        ..TorrentState::default()
    };
    projection
        .apply(&[
            Envelope::new(
                1,
                ms(10_000),
                Event::TorrentSaved {
                    torrent: Box::new(ours(1, ms(1_000))),
                },
            ),
            Envelope::new(
                2,
                ms(10_000),
                Event::TorrentSaved {
                    torrent: Box::new(ours(3, ms(3_000))),
                },
            ),
        ])
        .unwrap();

    // What the Go code does with mattn/go-sqlite3: its upsert binds time.Time values (UTC),
    // which the driver writes as "2006-01-02 15:04:05.999999999-07:00" text; its metrics insert
    // is positional over the eight Go columns.
    let go = Connection::open(&path).unwrap();
    let go_torrent = ours(2, ms(2_500));
    let data = String::from_utf8(go_torrent.to_go_file_json_pretty().unwrap()).unwrap();
    go.execute(
        "INSERT INTO torrents (info_hash, data, status, percent_done, downloaded, uploaded,
            added_date, updated_date) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(info_hash) DO UPDATE SET data = excluded.data",
        rusqlite::params![
            hash(2).to_hex(),
            data,
            0,
            0.0,
            0,
            0,
            "2023-11-14 22:13:22.5+00:00",
            "2023-11-14 22:13:31+00:00"
        ],
    )
    .unwrap();
    for (n, at) in [
        (1, "2023-11-14 22:13:21.25+00:00"),
        (2, "2023-11-14 22:13:21+00:00"),
    ] {
        go.execute(
            "INSERT INTO torrent_metrics VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
            rusqlite::params![hash(n).to_hex(), at, 10, 1, 100, 10, 3],
        )
        .unwrap();
    }
    assert_eq!(columns(&go, "torrent_metrics"), GO_METRICS_COLUMNS);

    // ORDER BY added_date interleaves the Go row between ours, in the projection and in SQL.
    let order: Vec<InfoHash> = projection
        .load_all_torrents()
        .unwrap()
        .iter()
        .map(|t| t.info_hash)
        .collect();
    assert_eq!(order, [hash(1), hash(2), hash(3)]);
    assert_eq!(projection.load_torrent(&hash(2)).unwrap(), Some(go_torrent));
    let texts = text_column(&go, "SELECT added_date FROM torrents ORDER BY added_date");
    assert_eq!(
        texts,
        [
            "2023-11-14 22:13:21+00:00",
            "2023-11-14 22:13:22.5+00:00",
            "2023-11-14 22:13:23+00:00"
        ]
    );

    // The Go samples read back with zero durations; ours (with durations) sort among them.
    let at = ms(1_100);
    projection
        .apply(&[Envelope::new(
            3,
            ms(11_000),
            Event::MetricsRecorded {
                samples: vec![sample(1, at)],
            },
        )])
        .unwrap();
    let of_1 = projection
        .load_metrics(&hash(1), Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(of_1.len(), 2);
    assert_eq!(
        of_1[0],
        sample(1, at),
        "ours first (21.1 s), durations kept"
    );
    assert_eq!(of_1[1].timestamp, ms(1_250));
    assert_eq!((of_1[1].seeding_time, of_1[1].downloading_time), (0, 0));
    assert_eq!(of_1[1].download_rate, 100);
    let of_2 = projection
        .load_metrics(&hash(2), ms(1_000), ms(1_000))
        .unwrap();
    assert_eq!(of_2.len(), 1, "range bounds compare with Go's text");
    // A retention purge removes Go's samples too.
    projection
        .apply(&[Envelope::new(
            4,
            ms(11_000),
            Event::MetricsPurged {
                older_than: ms(1_200),
            },
        )])
        .unwrap();
    let left = projection
        .load_metrics(&hash(1), Timestamp::MIN, Timestamp::MAX)
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].timestamp, ms(1_250));
    let side: i64 = go
        .query_row("SELECT count(*) FROM torrent_metrics_durations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(side, 0, "the purged sample's durations went with it");
}
