//! The SQLite projection: the reducer's [`State`] materialized in a SQLite database that the
//! go-i2p-bt SQLite persistence (and any SQL tool) can read.
//!
//! It owns the database file: its schema, its migrations and every row in it. Like every
//! projection it holds nothing the journal does not; deleting the file loses nothing.
//!
//! # Schema (`PRAGMA user_version` = [`SCHEMA_VERSION`])
//!
//! Migration 1 is the Go persistence's schema, verbatim (`IF NOT EXISTS`, so a database the Go
//! code created — `user_version` 0 — is adopted as is, rows included):
//!
//! ```text
//! torrents(info_hash TEXT PRIMARY KEY, data TEXT NOT NULL, status INTEGER NOT NULL,
//!          percent_done REAL NOT NULL, downloaded INTEGER NOT NULL, uploaded INTEGER NOT NULL,
//!          added_date DATETIME NOT NULL, updated_date DATETIME NOT NULL)
//!   idx_torrents_status(status), idx_torrents_updated(updated_date)
//! session_config(id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL,
//!                updated_date DATETIME NOT NULL)
//! torrent_metrics(id INTEGER PRIMARY KEY AUTOINCREMENT, info_hash TEXT NOT NULL,
//!                 timestamp DATETIME NOT NULL, downloaded, uploaded, download_rate,
//!                 upload_rate, peer_count INTEGER NOT NULL,
//!                 FOREIGN KEY (info_hash) REFERENCES torrents(info_hash) ON DELETE CASCADE)
//!   idx_metrics_hash_time(info_hash, timestamp), idx_metrics_timestamp(timestamp)
//! ```
//!
//! Migration 2 adds our own tables: `tj_checkpoint(id = 1, seq, at_unix_nanos)` (the last
//! event applied) and `torrent_metainfo(info_hash → torrents ON DELETE CASCADE, raw BLOB)` (the
//! raw `.torrent`, which the `data` JSON leaves out), and rewrites `DATETIME` text into one
//! form. Migration 3 added `torrent_metrics.seeding_time` and `downloading_time` columns;
//! migration 4 takes them out again, because the Go code inserts metrics positionally
//! (`INSERT INTO torrent_metrics VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)`) and needs exactly its
//! eight columns: SQLite's table rebuild (foreign keys off, one transaction) moves the non-zero
//! durations to `torrent_metrics_durations(metric_id → torrent_metrics(id) ON DELETE CASCADE,
//! seeding_time, downloading_time)` (nanoseconds; no row means 0, as for every row the Go code
//! inserts) and keeps ids and the `AUTOINCREMENT` mark. Migration 5 rewrites every `DATETIME`
//! text into [`sql_timestamp`]'s form (older databases hold RFC 3339 text there, which does not
//! sort with Go's). Each migration runs in its own transaction that also bumps `user_version`; a database newer than
//! this build is refused with [`Error::UnsupportedVersion`], a file that is not a SQLite
//! database (or a damaged one) with [`Error::ProjectionDamaged`] (see [`is_not_a_database`]) —
//! the caller sets it aside and rebuilds (the store does: see `TorrentStore::open`).
//!
//! A database adopted from the Go code keeps its rows but starts at checkpoint 0: those rows
//! are not from the journal, and replaying the journal writes over them (torrents the journal
//! never mentions stay). Call [`Projection::reset`] first to get a pure journal projection.
//!
//! # Column contents
//!
//! - `torrents.data`: the torrent as JSON with Go's `TorrentState` keys (all of them; the
//!   `meta_info` key is `null`, the bytes live in `torrent_metainfo`). `status`,
//!   `percent_done`, `downloaded`, `uploaded` copy the torrent's fields; `added_date` is the
//!   torrent's, `updated_date` the commit time (`Envelope::at`) of the event that last wrote
//!   the row.
//! - `session_config.data`: the [`SessionConfiguration`] as JSON.
//! - Every `DATETIME` column we write holds [`sql_timestamp`] text: what Go's
//!   `mattn/go-sqlite3` driver writes for a UTC `time.Time` (`2024-05-01 12:00:00+00:00`,
//!   `2024-05-01 12:00:00.5+00:00`). Text order is time order among these strings, so range
//!   queries and `ORDER BY` compare rows written by either program correctly (as long as the
//!   Go program binds UTC times). Reading accepts that form in any offset, RFC 3339 (our form
//!   before schema version 5) and the driver's other layouts. (Timestamps inside the `data`
//!   JSON keep [`Timestamp`]'s serde form, RFC 3339 with 0, 3, 6 or 9 fraction digits, which
//!   Go's `time.Time` reads.)
//! - `torrent_metrics_durations`: a sample's `seeding_time` and `downloading_time` when either
//!   is not zero; reads join it back, purges and torrent deletions cascade to it.
//!
//! # Atomicity
//!
//! [`Projection::apply`] writes a whole batch **and the checkpoint in the same transaction**
//! (`BEGIN IMMEDIATE` … `COMMIT`), with `journal_mode=WAL` and `synchronous=FULL`, so after a
//! crash the checkpoint always names exactly the data that is there.
//!
//! # Meaning
//!
//! Every event means what [`crate::state::apply`] says, and only the reducer says it: a batch
//! is folded through [`state::apply_noting`] on a state holding just what the batch needs of
//! the stored torrents ([`state::needs`]: the rows of torrents it amends, whether the torrents
//! of its samples exist — loaded in the batch's transaction, never the whole state), and the
//! [`Change`]s it reports are written: removals, kept samples and purges in event order (so a
//! sample gets the `id` it would get event by event, whatever the batching), then each torrent
//! written once, as it is after the batch, with its write time; then the session configuration
//! and the checkpoint. [`Projection::install`] writes the rows of a [`State`] directly. This
//! module knows rows, not events: an event kind it has not seen needs no code here.
//!
//! [`SqliteProjection::load_state`] equals the reducer's state (the tests in
//! `tests/projection_sqlite.rs` and `tests/projection_equivalence.rs` hold it to that), except
//! that the optional [`SqliteOptions::metrics_retention`] also purges old samples, and
//! non-finite floats (which JSON cannot carry) are stored as `0.0`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{Type, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Checkpoint, Projection, check_batch};
use crate::error::{Error, Result};
use crate::event::Envelope;
use crate::model::{
    InfoHash, MetaInfo, MetricsSummary, SessionConfiguration, Timestamp, TorrentMetrics,
    TorrentState, go_json,
};
use crate::state::{self, Change, Needs, State};

/// Options of the SQLite projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How long a statement waits for a lock held by another connection before failing
    /// (milliseconds). Default 10 000, as the Go code.
    pub busy_timeout_ms: u64,
    /// When set, each batch also deletes the metrics samples older than the batch's last
    /// commit time minus this, in the same transaction. Default `None` (keep everything the
    /// journal keeps).
    pub metrics_retention: Option<Duration>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout_ms: 10_000,
            metrics_retention: None,
        }
    }
}

/// One schema step: SQL, then optionally a data fix-up in Rust, in the same transaction.
struct Migration {
    sql: &'static str,
    then: Option<fn(&Connection) -> rusqlite::Result<()>>,
    /// Runs with foreign keys off (SQLite's table-rebuild procedure: dropping and renaming a
    /// table must not cascade), checked with `PRAGMA foreign_key_check` before committing.
    foreign_keys_off: bool,
}

/// The schema migrations, in order: `MIGRATIONS[i]` takes `user_version` `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[
    // 1: the go-i2p-bt schema, exactly. `IF NOT EXISTS` adopts a database the Go code created.
    Migration {
        sql: MIGRATION_1_GO_SCHEMA,
        then: None,
        foreign_keys_off: false,
    },
    // 2: our checkpoint and the raw .torrent files; DATETIME text rewritten into one form.
    Migration {
        sql: MIGRATION_2_OUR_TABLES,
        then: Some(normalize_datetimes),
        foreign_keys_off: false,
    },
    // 3: the duration fields of TorrentMetrics, which the Go table does not keep.
    Migration {
        sql: MIGRATION_3_METRIC_DURATIONS,
        then: None,
        foreign_keys_off: false,
    },
    // 4: torrent_metrics back to the Go table's eight columns (Go inserts positionally); the
    // durations move to a side table.
    Migration {
        sql: MIGRATION_4_METRICS_SIDE_TABLE,
        then: None,
        foreign_keys_off: true,
    },
    // 5: every DATETIME text in the form Go's driver writes, so that rows written by either
    // program sort together.
    Migration {
        sql: "",
        then: Some(normalize_datetimes),
        foreign_keys_off: false,
    },
];

const MIGRATION_1_GO_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS torrents (
        info_hash TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        status INTEGER NOT NULL,
        percent_done REAL NOT NULL,
        downloaded INTEGER NOT NULL,
        uploaded INTEGER NOT NULL,
        added_date DATETIME NOT NULL,
        updated_date DATETIME NOT NULL
    );
    CREATE INDEX IF NOT EXISTS idx_torrents_status ON torrents(status);
    CREATE INDEX IF NOT EXISTS idx_torrents_updated ON torrents(updated_date);
    CREATE TABLE IF NOT EXISTS session_config (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        data TEXT NOT NULL,
        updated_date DATETIME NOT NULL
    );
    CREATE TABLE IF NOT EXISTS torrent_metrics (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        info_hash TEXT NOT NULL,
        timestamp DATETIME NOT NULL,
        downloaded INTEGER NOT NULL,
        uploaded INTEGER NOT NULL,
        download_rate INTEGER NOT NULL,
        upload_rate INTEGER NOT NULL,
        peer_count INTEGER NOT NULL,
        FOREIGN KEY (info_hash) REFERENCES torrents(info_hash) ON DELETE CASCADE
    );
    CREATE INDEX IF NOT EXISTS idx_metrics_hash_time ON torrent_metrics(info_hash, timestamp);
    CREATE INDEX IF NOT EXISTS idx_metrics_timestamp ON torrent_metrics(timestamp);";

const MIGRATION_2_OUR_TABLES: &str = "CREATE TABLE tj_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        at_unix_nanos INTEGER NOT NULL
    );
    INSERT INTO tj_checkpoint (id, seq, at_unix_nanos) VALUES (1, 0, 0);
    CREATE TABLE torrent_metainfo (
        info_hash TEXT PRIMARY KEY REFERENCES torrents(info_hash) ON DELETE CASCADE,
        raw BLOB NOT NULL
    );";

const MIGRATION_3_METRIC_DURATIONS: &str =
    "ALTER TABLE torrent_metrics ADD COLUMN seeding_time INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE torrent_metrics ADD COLUMN downloading_time INTEGER NOT NULL DEFAULT 0;";

/// SQLite's table-rebuild procedure (<https://sqlite.org/lang_altertable.html>, "other kinds of
/// table schema changes"), run with foreign keys off: a new `torrent_metrics` with the Go
/// table's eight columns gets the rows (ids kept), the non-zero durations go to
/// `torrent_metrics_durations`, the old table is dropped, the new one renamed and its indexes
/// re-created. The `AUTOINCREMENT` high-water mark is carried over, so ids of purged samples are
/// never reused (a side row left behind by a connection without foreign keys — Go's driver does
/// not enable them — can then never be attached to a new sample).
const MIGRATION_4_METRICS_SIDE_TABLE: &str = "CREATE TABLE torrent_metrics_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        info_hash TEXT NOT NULL,
        timestamp DATETIME NOT NULL,
        downloaded INTEGER NOT NULL,
        uploaded INTEGER NOT NULL,
        download_rate INTEGER NOT NULL,
        upload_rate INTEGER NOT NULL,
        peer_count INTEGER NOT NULL,
        FOREIGN KEY (info_hash) REFERENCES torrents(info_hash) ON DELETE CASCADE
    );
    INSERT INTO torrent_metrics_new
        (id, info_hash, timestamp, downloaded, uploaded, download_rate, upload_rate, peer_count)
        SELECT id, info_hash, timestamp, downloaded, uploaded, download_rate, upload_rate,
            peer_count
        FROM torrent_metrics;
    CREATE TABLE torrent_metrics_durations (
        metric_id INTEGER PRIMARY KEY REFERENCES torrent_metrics(id) ON DELETE CASCADE,
        seeding_time INTEGER NOT NULL,
        downloading_time INTEGER NOT NULL
    );
    INSERT INTO torrent_metrics_durations (metric_id, seeding_time, downloading_time)
        SELECT id, seeding_time, downloading_time FROM torrent_metrics
        WHERE seeding_time <> 0 OR downloading_time <> 0;
    DELETE FROM sqlite_sequence WHERE name = 'torrent_metrics_new';
    UPDATE sqlite_sequence SET name = 'torrent_metrics_new' WHERE name = 'torrent_metrics';
    DROP TABLE torrent_metrics;
    ALTER TABLE torrent_metrics_new RENAME TO torrent_metrics;
    CREATE INDEX idx_metrics_hash_time ON torrent_metrics(info_hash, timestamp);
    CREATE INDEX idx_metrics_timestamp ON torrent_metrics(timestamp);";

/// The schema version this build creates and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Every table, with the key [`SqliteProjection::dump_tables`] orders it by.
const TABLES: [(&str, &str); 6] = [
    ("tj_checkpoint", "id"),
    ("session_config", "id"),
    ("torrents", "info_hash"),
    ("torrent_metainfo", "info_hash"),
    ("torrent_metrics", "id"),
    ("torrent_metrics_durations", "metric_id"),
];

const UPSERT_TORRENT: &str = "INSERT INTO torrents
        (info_hash, data, status, percent_done, downloaded, uploaded, added_date, updated_date)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
    ON CONFLICT (info_hash) DO UPDATE SET
        data = excluded.data, status = excluded.status, percent_done = excluded.percent_done,
        downloaded = excluded.downloaded, uploaded = excluded.uploaded,
        added_date = excluded.added_date, updated_date = excluded.updated_date";
const UPSERT_METAINFO: &str = "INSERT INTO torrent_metainfo (info_hash, raw) VALUES (?1, ?2)
    ON CONFLICT (info_hash) DO UPDATE SET raw = excluded.raw";
const DELETE_METAINFO: &str = "DELETE FROM torrent_metainfo WHERE info_hash = ?1";
const DELETE_TORRENT: &str = "DELETE FROM torrents WHERE info_hash = ?1";
/// The samples of a torrent whose row is not written yet (inserted earlier in the batch); the
/// other samples go with the row (`ON DELETE CASCADE`), their durations with them.
const DELETE_METRICS_OF_TORRENT: &str = "DELETE FROM torrent_metrics WHERE info_hash = ?1";
const TORRENT_EXISTS: &str = "SELECT 1 FROM torrents WHERE info_hash = ?1";
const SELECT_TORRENT: &str = "SELECT t.data, t.percent_done, m.raw FROM torrents t
    LEFT JOIN torrent_metainfo m ON m.info_hash = t.info_hash WHERE t.info_hash = ?1";
const SELECT_ALL_TORRENTS: &str = "SELECT t.data, t.percent_done, m.raw FROM torrents t
    LEFT JOIN torrent_metainfo m ON m.info_hash = t.info_hash
    ORDER BY t.added_date, t.info_hash";
const UPSERT_SESSION: &str = "INSERT INTO session_config (id, data, updated_date)
    VALUES (1, ?1, ?2)
    ON CONFLICT (id) DO UPDATE SET data = excluded.data, updated_date = excluded.updated_date";
const SELECT_SESSION: &str = "SELECT data FROM session_config WHERE id = 1";
/// The rows' write times, read into [`State::written`].
const SELECT_TORRENT_WRITE_TIMES: &str = "SELECT info_hash, updated_date FROM torrents";
const SELECT_SESSION_WRITE_TIME: &str = "SELECT updated_date FROM session_config WHERE id = 1";
/// A sample the reducer kept (its torrent is known; the row may come later in the same
/// transaction: foreign keys are checked at commit, see [`write_changes`]).
const INSERT_METRIC: &str = "INSERT INTO torrent_metrics
        (info_hash, timestamp, downloaded, uploaded, download_rate, upload_rate, peer_count)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
/// The durations of the sample just inserted, when either is not zero.
const INSERT_METRIC_DURATIONS: &str = "INSERT INTO torrent_metrics_durations
        (metric_id, seeding_time, downloading_time) VALUES (?1, ?2, ?3)";
/// Their durations go with them (`ON DELETE CASCADE`).
const PURGE_METRICS: &str = "DELETE FROM torrent_metrics WHERE timestamp < ?1";
/// The metrics columns [`metric_from_row`] reads, in its order; absent durations read as 0.
macro_rules! select_metrics {
    ($rest:literal) => {
        concat!(
            "SELECT m.info_hash, m.timestamp, m.downloaded, m.uploaded, m.download_rate, \
             m.upload_rate, m.peer_count, coalesce(d.seeding_time, 0), \
             coalesce(d.downloading_time, 0) FROM torrent_metrics m \
             LEFT JOIN torrent_metrics_durations d ON d.metric_id = m.id ",
            $rest
        )
    };
}
const SELECT_METRICS_OF_TORRENT: &str = select_metrics!(
    "WHERE m.info_hash = ?1 AND m.timestamp >= ?2 AND m.timestamp <= ?3 \
     ORDER BY m.timestamp, m.id"
);
const SELECT_METRICS_IN_RANGE: &str =
    select_metrics!("WHERE m.timestamp >= ?1 AND m.timestamp <= ?2 ORDER BY m.id");
const SELECT_ALL_METRICS: &str = select_metrics!("ORDER BY m.id");
const UPDATE_CHECKPOINT: &str =
    "UPDATE tj_checkpoint SET seq = ?1, at_unix_nanos = ?2 WHERE id = 1";
const SELECT_CHECKPOINT: &str = "SELECT seq, at_unix_nanos FROM tj_checkpoint WHERE id = 1";

/// The SQLite projection. See the [module docs](self) for the schema and guarantees.
#[derive(Debug)]
pub struct SqliteProjection {
    conn: Connection,
    path: PathBuf,
    options: SqliteOptions,
    checkpoint: Checkpoint,
}

/// Whether `err` says the SQLite projection's file is damaged or not a SQLite database at all
/// ([`Error::ProjectionDamaged`] of the `sqlite` projection): the file can only be set aside
/// and the projection rebuilt.
pub fn is_not_a_database(err: &Error) -> bool {
    matches!(
        err,
        Error::ProjectionDamaged {
            projection: PROJECTION_NAME,
            ..
        }
    )
}

const PROJECTION_NAME: &str = "sqlite";

/// `t` as the text the SQLite projection stores in `DATETIME` columns: what Go's
/// `mattn/go-sqlite3` driver writes for a UTC `time.Time` (its layout
/// `2006-01-02 15:04:05.999999999-07:00`: `2024-05-01 12:00:00+00:00`,
/// `2024-05-01 12:00:00.5+00:00`), see [`go_json::go_sqlite_timestamp`].
///
/// Comparing these strings compares the instants (four-digit years; `+` sorts before `.` and
/// every digit), so `ORDER BY` and range queries work on rows written by either program: use it
/// for range-query parameters. (Go writes a `time.Time` in its own location: rows a Go program
/// writes with a non-UTC `time.Time` carry another offset and do not sort with these.)
pub fn sql_timestamp(t: Timestamp) -> String {
    go_json::go_sqlite_timestamp(t)
}

/// Parses a `DATETIME` column: Go's driver form (any offset), any RFC 3339 (our form before
/// schema version 5, `2024-05-01T12:00:00.500000000Z`), and the other layouts Go's driver
/// reads (`T` or space, no offset meaning UTC, optional seconds).
fn parse_sql_timestamp(s: &str) -> Option<Timestamp> {
    if let Ok(t) = Timestamp::parse_rfc3339(s) {
        return Some(t);
    }
    let s = s.trim_end_matches('Z');
    for layout in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%:z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(s, layout) {
            return Timestamp::from_datetime(&dt);
        }
    }
    for layout in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, layout) {
            return Timestamp::from_datetime(&dt.and_utc());
        }
    }
    let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Timestamp::from_datetime(&date.and_hms_opt(0, 0, 0)?.and_utc())
}

impl SqliteProjection {
    /// Opens (creating if needed) the database at `path` and migrates it to
    /// [`SCHEMA_VERSION`].
    ///
    /// Errors: [`Error::UnsupportedVersion`] when the database is newer than this build
    /// ([`Error::ProjectionDamaged`] for a version no build writes); [`Error::ProjectionDamaged`] when
    /// the file is not a usable SQLite database (SQLite reports it corrupt or not a database);
    /// [`Error::Sqlite`] for other SQLite failures (cannot open, permission denied, locked, ...);
    /// [`Error::Unsupported`] for a SQLite without WAL or foreign keys.
    /// Opening reads only the header and the checkpoint: damage elsewhere shows when a page is
    /// read, or with [`SqliteProjection::quick_check`].
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |op| sql_error(op, &path);
        let mut conn = Connection::open(&path).map_err(err("open SQLite projection"))?;
        conn.busy_timeout(Duration::from_millis(options.busy_timeout_ms))
            .map_err(err("set busy timeout on"))?;
        // The first read of the file: a non-database fails here, before anything is written.
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| open_error(e, &path))?;
        check_version(version, &path)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| open_error(e, &path))?;
        if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
            return Err(Error::Unsupported {
                what: format!(
                    "SQLite projection {}: cannot enable WAL journal mode (got {mode:?})",
                    path.display()
                ),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err("set synchronous=FULL on"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(err("enable foreign keys on"))?;
        let foreign_keys: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .map_err(err("enable foreign keys on"))?;
        if foreign_keys != 1 {
            return Err(Error::Unsupported {
                what: format!(
                    "SQLite projection {}: this SQLite does not enforce foreign keys",
                    path.display()
                ),
            });
        }
        migrate(&mut conn, &path, version)?;
        let checkpoint = read_checkpoint(&conn).map_err(|e| open_error(e, &path))?;
        Ok(Self {
            conn,
            path,
            options,
            checkpoint,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options it was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// One torrent, with its metainfo, or `None`.
    pub fn load_torrent(&self, info_hash: &InfoHash) -> Result<Option<TorrentState>> {
        let run = || {
            self.conn
                .prepare_cached(SELECT_TORRENT)?
                .query_row([info_hash.to_hex()], torrent_from_row)
                .optional()
        };
        run().map_err(self.err("read torrent from"))
    }

    /// Every torrent, with its metainfo, ordered by `added_date` (then info hash).
    pub fn load_all_torrents(&self) -> Result<Vec<TorrentState>> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(SELECT_ALL_TORRENTS)?;
            let rows = stmt.query_map([], torrent_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(self.err("read torrents from"))
    }

    /// The session configuration, if one was saved.
    pub fn load_session_config(&self) -> Result<Option<SessionConfiguration>> {
        let run = || {
            self.conn
                .prepare_cached(SELECT_SESSION)?
                .query_row([], |row| json_column::<SessionConfiguration>(row, 0))
                .optional()
        };
        run().map_err(self.err("read session configuration from"))
    }

    /// One torrent's samples taken in `from..=to`, ordered by timestamp, then insertion.
    pub fn load_metrics(
        &self,
        info_hash: &InfoHash,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<TorrentMetrics>> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(SELECT_METRICS_OF_TORRENT)?;
            let rows = stmt.query_map(
                params![info_hash.to_hex(), sql_timestamp(from), sql_timestamp(to)],
                metric_from_row,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        };
        run().map_err(self.err("read metrics from"))
    }

    /// A summary per torrent of the samples taken in `from..=to`, in info-hash order;
    /// torrents without samples in the range are left out.
    pub fn metrics_summary(&self, from: Timestamp, to: Timestamp) -> Result<Vec<MetricsSummary>> {
        let run = || {
            let mut stmt = self.conn.prepare_cached(SELECT_METRICS_IN_RANGE)?;
            let rows = stmt.query_map(
                params![sql_timestamp(from), sql_timestamp(to)],
                metric_from_row,
            )?;
            let mut by_torrent: BTreeMap<InfoHash, Vec<TorrentMetrics>> = BTreeMap::new();
            for sample in rows {
                let sample = sample?;
                by_torrent.entry(sample.info_hash).or_default().push(sample);
            }
            Ok(by_torrent
                .values()
                .filter_map(|samples| MetricsSummary::from_samples(samples))
                .collect())
        };
        run().map_err(self.err("summarize metrics from"))
    }

    /// The whole state, read in one transaction: what [`State::from_envelopes`] over the
    /// journal up to the checkpoint gives (modulo the retention option), write times
    /// ([`State::written`]) read from the `updated_date` columns.
    pub fn load_state(&self) -> Result<State> {
        let run = || -> rusqlite::Result<State> {
            let tx = self.conn.unchecked_transaction()?;
            let mut state = State::default();
            {
                let mut stmt = tx.prepare_cached(SELECT_ALL_TORRENTS)?;
                for torrent in stmt.query_map([], torrent_from_row)? {
                    let torrent = torrent?;
                    state.torrents.insert(torrent.info_hash, Arc::new(torrent));
                }
            }
            state.session = tx
                .prepare_cached(SELECT_SESSION)?
                .query_row([], |row| json_column::<SessionConfiguration>(row, 0))
                .optional()?;
            {
                let mut stmt = tx.prepare_cached(SELECT_ALL_METRICS)?;
                for sample in stmt.query_map([], metric_from_row)? {
                    let sample = sample?;
                    state
                        .metrics
                        .entry(sample.info_hash)
                        .or_default()
                        .push(sample);
                }
            }
            {
                // A row whose key or time does not parse (a row the Go code wrote with its zero
                // time, say) has no known write time.
                let mut stmt = tx.prepare_cached(SELECT_TORRENT_WRITE_TIMES)?;
                let mut rows = stmt.query([])?;
                while let Some(row) = rows.next()? {
                    let (Some(hash), Some(at)) = (
                        row.get_ref(0)?
                            .as_str()
                            .ok()
                            .and_then(|h| InfoHash::parse(h).ok()),
                        row.get_ref(1)?.as_str().ok().and_then(parse_sql_timestamp),
                    ) else {
                        continue;
                    };
                    state.written.torrents.insert(hash, at);
                }
            }
            state.written.session = tx
                .prepare_cached(SELECT_SESSION_WRITE_TIME)?
                .query_row([], |row| {
                    Ok(row.get_ref(0)?.as_str().ok().and_then(parse_sql_timestamp))
                })
                .optional()?
                .flatten();
            let checkpoint = read_checkpoint(&tx)?;
            state.last_seq = checkpoint.seq;
            state.last_at = checkpoint.at;
            Ok(state)
        };
        run().map_err(self.err("read state from"))
    }

    /// A deterministic text dump of every row of every table, each table ordered by its
    /// primary key, for snapshot tests and debugging. Text is quoted, blobs are hex, reals
    /// are printed with Rust's shortest round-trip form.
    pub fn dump_tables(&self) -> Result<String> {
        let run = || -> rusqlite::Result<String> {
            let tx = self.conn.unchecked_transaction()?;
            let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            let mut out = format!("user_version = {version}\n");
            for (table, key) in TABLES {
                let mut stmt = tx.prepare(&format!("SELECT * FROM {table} ORDER BY {key}"))?;
                let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
                let mut rows = stmt.query([])?;
                let _ = writeln!(out, "\n[{table}]");
                while let Some(row) = rows.next()? {
                    for (i, name) in names.iter().enumerate() {
                        let sep = if i == 0 { "" } else { " " };
                        let _ = write!(out, "{sep}{name}={}", render_value(row.get_ref(i)?));
                    }
                    out.push('\n');
                }
            }
            Ok(out)
        };
        run().map_err(self.err("dump tables of"))
    }

    /// `PRAGMA quick_check`: [`Error::ProjectionDamaged`] naming the problems SQLite finds
    /// (or the corruption it hits while looking); other errors when the check cannot run.
    /// Reads every page: O(size of the database).
    pub fn quick_check(&self) -> Result<()> {
        match quick_check(&self.conn) {
            Ok(None) => Ok(()),
            Ok(Some(problems)) => Err(damaged(
                &self.path,
                format!("PRAGMA quick_check: {problems}"),
            )),
            Err(e) => Err(sql_error("run PRAGMA quick_check on", &self.path)(e)),
        }
    }

    fn err<'a>(&'a self, op: &'static str) -> impl Fn(rusqlite::Error) -> Error + 'a {
        sql_error(op, &self.path)
    }

    /// Maps an error of the projection's own writes (apply, reset, install; the transaction is
    /// rolled back by then). SQLite's corrupt / not-a-database codes and rows the projection
    /// cannot read back are [`Error::ProjectionDamaged`]; any other error is damage only when
    /// `PRAGMA quick_check` then fails — so a full disk, a denied permission or a lock held by
    /// another connection stay the [`Error::Sqlite`] they are.
    fn write_error(&self, op: &'static str, e: rusqlite::Error) -> Error {
        if is_corrupt(&e) || is_unreadable_row(&e) {
            return damaged(&self.path, format!("{op}: {e}"));
        }
        match quick_check(&self.conn) {
            Ok(None) => sql_error(op, &self.path)(e),
            Ok(Some(problems)) => damaged(
                &self.path,
                format!("{op}: {e}; PRAGMA quick_check: {problems}"),
            ),
            Err(check) if is_corrupt(&check) => damaged(
                &self.path,
                format!("{op}: {e}; PRAGMA quick_check: {check}"),
            ),
            Err(_) => sql_error(op, &self.path)(e),
        }
    }
}

/// Runs `PRAGMA quick_check`: `None` when it says `ok`, else its messages (at most 10).
fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare("PRAGMA quick_check(10)")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    let messages = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    if messages.len() == 1 && messages[0].eq_ignore_ascii_case("ok") {
        return Ok(None);
    }
    Ok(Some(messages.join("; ")))
}

/// SQLite's "database disk image is malformed" and "file is not a database".
fn is_corrupt(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

fn damaged(path: &Path, reason: String) -> Error {
    Error::ProjectionDamaged {
        projection: PROJECTION_NAME,
        path: path.to_path_buf(),
        reason,
    }
}

impl Projection for SqliteProjection {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    fn apply(&mut self, batch: &[Envelope]) -> Result<()> {
        check_batch(self.name(), self.checkpoint, batch)?;
        let Some(last) = batch.last() else {
            return Ok(());
        };
        let retention_cutoff = self.options.metrics_retention.map(|retention| {
            let nanos = i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX);
            last.at.saturating_add_nanos(-nanos)
        });
        // Dropping an uncommitted transaction rolls it back: on error nothing changed.
        if let Err(e) = apply_batch(&mut self.conn, self.checkpoint, batch, retention_cutoff) {
            return Err(self.write_error("apply batch to SQLite projection", e));
        }
        self.checkpoint = Checkpoint::of(last);
        Ok(())
    }

    fn reset(&mut self) -> Result<()> {
        if let Err(e) = reset_tables(&mut self.conn) {
            return Err(self.write_error("reset SQLite projection", e));
        }
        self.checkpoint = Checkpoint::default();
        Ok(())
    }

    fn install(&mut self, state: &State) -> Result<()> {
        if let Err(e) = install_state(&mut self.conn, state) {
            return Err(self.write_error("install a snapshot into the SQLite projection", e));
        }
        self.checkpoint = Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        };
        Ok(())
    }
}

/// Replaces every row with `state` and sets the checkpoint to its last event, in one
/// transaction. Writes the rows applying every event would have written: `updated_date` is
/// each row's own write time ([`State::written`]; the state's last commit time only for a row
/// without one, which a state from the reducer or a snapshot never has). Metrics samples get
/// fresh `id`s, torrent by torrent in info-hash order and each torrent's in recording order:
/// their ids are not part of the state, every other column is.
fn install_state(conn: &mut Connection, state: &State) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "DELETE FROM torrent_metrics_durations;
         DELETE FROM torrent_metrics;
         DELETE FROM torrent_metainfo;
         DELETE FROM torrents;
         DELETE FROM session_config;
         DELETE FROM sqlite_sequence WHERE name = 'torrent_metrics';",
    )?;
    let at = state.last_at;
    for (info_hash, torrent) in &state.torrents {
        put_torrent(&tx, torrent, state.written.torrent(info_hash).unwrap_or(at))?;
    }
    if let Some(config) = &state.session {
        put_session(&tx, config, state.written.session.unwrap_or(at))?;
    }
    // A state holds samples of live torrents only; the filter keeps a state made by hand from
    // breaking the foreign key.
    for (info_hash, samples) in &state.metrics {
        if state.torrents.contains_key(info_hash) {
            samples.iter().try_for_each(|s| insert_metric(&tx, s))?;
        }
    }
    tx.prepare_cached(UPDATE_CHECKPOINT)?
        .execute(params![seq_to_sql(state.last_seq)?, at.as_unix_nanos()])?;
    tx.commit()
}

/// Applies a batch and advances the checkpoint in one transaction: folds the batch through
/// the reducer on the torrents it reads ([`fold_batch`]), then writes what it changed
/// ([`write_changes`]).
fn apply_batch(
    conn: &mut Connection,
    checkpoint: Checkpoint,
    batch: &[Envelope],
    retention_cutoff: Option<Timestamp>,
) -> rusqlite::Result<()> {
    let Some(last) = batch.last() else {
        return Ok(());
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (folded, changes) = fold_batch(&tx, checkpoint, batch)?;
    write_changes(&tx, &folded, &changes)?;
    if let Some(cutoff) = retention_cutoff {
        tx.prepare_cached(PURGE_METRICS)?
            .execute([sql_timestamp(cutoff)])?;
    }
    tx.prepare_cached(UPDATE_CHECKPOINT)?
        .execute(params![seq_to_sql(last.seq)?, last.at.as_unix_nanos()])?;
    tx.commit()
}

/// Folds `batch` through [`state::apply_noting`], starting from a state that holds what the
/// batch needs of the stored torrents ([`load_needed`]); returns the state after it (those
/// torrents, and the samples the batch kept) and the changes, in order.
fn fold_batch<'a>(
    conn: &Connection,
    checkpoint: Checkpoint,
    batch: &'a [Envelope],
) -> rusqlite::Result<(State, Vec<Change<'a>>)> {
    let mut folded = State {
        last_seq: checkpoint.seq,
        last_at: checkpoint.at,
        ..State::default()
    };
    load_needed(conn, batch, &mut folded)?;
    let mut changes = Vec::new();
    for envelope in batch {
        state::apply_noting(&mut folded, envelope, &mut |change| changes.push(change));
    }
    Ok((folded, changes))
}

/// Loads into `folded` what the batch needs to know of the stored torrents ([`state::needs`]),
/// as of before the batch: a torrent's row when an event amends it before any replaces it, a
/// stand-in when an event only asks whether it exists. A stand-in is never written: an event
/// that writes a torrent either replaces it (and the stand-in with it) or needs its content.
/// Only these rows are resident, never the whole state.
fn load_needed(conn: &Connection, batch: &[Envelope], folded: &mut State) -> rusqlite::Result<()> {
    // Per torrent: what the events before its first replacement need (`true`: replaced).
    let mut first: HashMap<InfoHash, (Needs, bool)> = HashMap::new();
    for envelope in batch {
        state::needs(&envelope.event, |info_hash, needs| {
            let (most, replaced) = first.entry(info_hash).or_insert((Needs::Nothing, false));
            if needs == Needs::Nothing {
                *replaced = true;
            } else if !*replaced {
                *most = (*most).max(needs);
            }
        });
    }
    for (info_hash, (needs, _)) in first {
        let stored = match needs {
            Needs::Nothing => None,
            Needs::Existence => torrent_exists(conn, &info_hash)?.then(|| TorrentState {
                info_hash,
                ..TorrentState::default()
            }),
            Needs::Content => select_torrent(conn, &info_hash)?,
        };
        if let Some(torrent) = stored {
            folded.torrents.insert(info_hash, Arc::new(torrent));
        }
    }
    Ok(())
}

/// Writes the changes of a folded batch: removals, kept samples and purges in event order (so
/// samples get the ids and the fate they would have had event by event), then each torrent
/// written (once, as it is after the batch, with its write time) and the session. Foreign
/// keys are checked at commit: a sample may name a torrent whose row is written at the end.
fn write_changes(tx: &Connection, folded: &State, changes: &[Change<'_>]) -> rusqlite::Result<()> {
    tx.pragma_update(None, "defer_foreign_keys", "ON")?;
    let mut written = BTreeSet::new();
    let mut session = false;
    for change in changes {
        match *change {
            Change::TorrentWritten(info_hash) => {
                written.insert(info_hash);
            }
            Change::TorrentRemoved(info_hash) => remove_torrent(tx, &info_hash)?,
            Change::SessionWritten => session = true,
            Change::MetricKept(sample) => insert_metric(tx, sample)?,
            Change::MetricsPurged(older_than) => {
                tx.prepare_cached(PURGE_METRICS)?
                    .execute([sql_timestamp(older_than)])?;
            }
        }
    }
    // A torrent written and then removed in the batch is gone: its row was deleted above.
    for info_hash in written {
        if let Some(torrent) = folded.torrents.get(&info_hash) {
            let at = folded.written.torrent(&info_hash).unwrap_or(folded.last_at);
            put_torrent(tx, torrent, at)?;
        }
    }
    if let (true, Some(config)) = (session, &folded.session) {
        put_session(tx, config, folded.written.session.unwrap_or(folded.last_at))?;
    }
    Ok(())
}

/// Deletes every row and returns the checkpoint to 0, in one transaction.
fn reset_tables(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "DELETE FROM torrent_metrics_durations;
         DELETE FROM torrent_metrics;
         DELETE FROM torrent_metainfo;
         DELETE FROM torrents;
         DELETE FROM session_config;
         DELETE FROM sqlite_sequence WHERE name = 'torrent_metrics';
         UPDATE tj_checkpoint SET seq = 0, at_unix_nanos = 0 WHERE id = 1;",
    )?;
    tx.commit()
}

/// Refuses databases newer than this build.
fn check_version(version: i64, path: &Path) -> Result<()> {
    if version <= i64::from(SCHEMA_VERSION) && version >= 0 {
        return Ok(());
    }
    match u8::try_from(version) {
        Ok(found) => Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION as u8,
        }),
        // No build writes a negative or a > 255 version: the header is not ours.
        Err(_) => Err(damaged(
            path,
            format!(
                "schema version (user_version) {version} is not one any build writes; this \
                 build reads up to version {SCHEMA_VERSION}"
            ),
        )),
    }
}

/// Runs the migrations after `from`, each in its own transaction that also bumps
/// `user_version`. The version is re-read under the write lock, so two processes opening the
/// same file at once do not run a migration twice.
fn migrate(conn: &mut Connection, path: &Path, from: i64) -> Result<()> {
    let from = usize::try_from(from).unwrap_or(0);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(from) {
        let version = index as i64 + 1;
        run_migration(conn, version, migration).map_err(|e| {
            if is_corrupt(&e) {
                open_error(e, path)
            } else {
                sql_error("migrate the schema of SQLite projection", path)(e)
            }
        })?;
    }
    Ok(())
}

/// Runs one migration in its own transaction, unless another connection already did.
fn run_migration(
    conn: &mut Connection,
    version: i64,
    migration: &Migration,
) -> rusqlite::Result<()> {
    if !migration.foreign_keys_off {
        return run_migration_tx(conn, version, migration);
    }
    // The pragma is a no-op inside a transaction: switch outside, and back whatever happens.
    let fk_before: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let result = run_migration_tx(conn, version, migration);
    let restored = conn.pragma_update(None, "foreign_keys", fk_before);
    result.and(restored)
}

fn run_migration_tx(
    conn: &mut Connection,
    version: i64,
    migration: &Migration,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current >= version {
        return Ok(());
    }
    tx.execute_batch(migration.sql)?;
    if let Some(then) = migration.then {
        then(&tx)?;
    }
    if migration.foreign_keys_off {
        check_side_table_keys(&tx)?;
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

/// `PRAGMA foreign_key_check` of the durations table: every side row must name a sample. (The
/// other tables are not checked: a database the Go code wrote without foreign keys enabled may
/// hold samples of deleted torrents, which this migration neither made nor needs to refuse.)
fn check_side_table_keys(conn: &Connection) -> rusqlite::Result<()> {
    let orphans: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_foreign_key_check('torrent_metrics_durations')",
        [],
        |r| r.get(0),
    )?;
    if orphans == 0 {
        return Ok(());
    }
    Err(rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
        Some(format!(
            "{orphans} torrent_metrics_durations rows name no torrent_metrics row"
        )),
    ))
}

/// Rewrites every `DATETIME` text (Go's driver form in any offset, our RFC 3339 form before
/// schema version 5, ...) into the [`sql_timestamp`] form, so that text order is time order
/// for every row. Text that does not parse (or lies outside the representable range, like Go's
/// zero time) is left as it is.
fn normalize_datetimes(conn: &Connection) -> rusqlite::Result<()> {
    for (table, key, column) in [
        ("torrents", "info_hash", "added_date"),
        ("torrents", "info_hash", "updated_date"),
        ("session_config", "id", "updated_date"),
        ("torrent_metrics", "id", "timestamp"),
    ] {
        let mut select = conn.prepare(&format!(
            "SELECT {key}, {column} FROM {table} WHERE typeof({column}) = 'text'"
        ))?;
        let mut update = conn.prepare(&format!(
            "UPDATE {table} SET {column} = ?2 WHERE {key} = ?1"
        ))?;
        let mut rows = select.query([])?;
        while let Some(row) = rows.next()? {
            let key = row.get::<_, rusqlite::types::Value>(0)?;
            let text: String = row.get(1)?;
            if let Some(t) = parse_sql_timestamp(&text) {
                let fixed = sql_timestamp(t);
                if fixed != text {
                    update.execute(params![key, fixed])?;
                }
            }
        }
    }
    Ok(())
}

fn read_checkpoint(conn: &Connection) -> rusqlite::Result<Checkpoint> {
    let (seq, at): (i64, i64) = conn
        .prepare_cached(SELECT_CHECKPOINT)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let seq = u64::try_from(seq)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Integer, Box::new(e)))?;
    Ok(Checkpoint {
        seq,
        at: Timestamp::from_unix_nanos(at),
    })
}

fn seq_to_sql(seq: u64) -> rusqlite::Result<i64> {
    i64::try_from(seq).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Stores the session configuration, written at `at`.
fn put_session(
    conn: &Connection,
    config: &SessionConfiguration,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let data = to_json(&finite_session(config))?;
    conn.prepare_cached(UPSERT_SESSION)?
        .execute(params![data, sql_timestamp(at)])?;
    Ok(())
}

/// Inserts one sample (a fresh `id`), and its durations when either is not zero.
fn insert_metric(conn: &Connection, s: &TorrentMetrics) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_METRIC)?.execute(params![
        s.info_hash.to_hex(),
        sql_timestamp(s.timestamp),
        s.downloaded,
        s.uploaded,
        s.download_rate,
        s.upload_rate,
        s.peer_count,
    ])?;
    if s.seeding_time != 0 || s.downloading_time != 0 {
        conn.prepare_cached(INSERT_METRIC_DURATIONS)?
            .execute(params![
                conn.last_insert_rowid(),
                s.seeding_time,
                s.downloading_time
            ])?;
    }
    Ok(())
}

/// Replaces the stored torrent (row and metainfo) with `torrent`. An upsert, never
/// `INSERT OR REPLACE`: replacing would delete the row and cascade to its metrics.
fn put_torrent(conn: &Connection, torrent: &TorrentState, at: Timestamp) -> rusqlite::Result<()> {
    let hash = torrent.info_hash.to_hex();
    let stored = stored_form(torrent);
    conn.prepare_cached(UPSERT_TORRENT)?.execute(params![
        hash,
        to_json(&*stored)?,
        stored.status,
        stored.percent_done,
        stored.downloaded,
        stored.uploaded,
        sql_timestamp(stored.added_date),
        sql_timestamp(at),
    ])?;
    match &torrent.meta_info {
        Some(meta) => conn
            .prepare_cached(UPSERT_METAINFO)?
            .execute(params![hash, meta.as_bytes()])?,
        None => conn.prepare_cached(DELETE_METAINFO)?.execute([&hash])?,
    };
    Ok(())
}

/// Forgets a torrent; its metrics and metainfo go with it (`ON DELETE CASCADE`, and
/// explicitly for samples inserted before its row, see [`write_changes`]).
fn remove_torrent(conn: &Connection, info_hash: &InfoHash) -> rusqlite::Result<()> {
    let hash = info_hash.to_hex();
    conn.prepare_cached(DELETE_TORRENT)?.execute([&hash])?;
    conn.prepare_cached(DELETE_METRICS_OF_TORRENT)?
        .execute([&hash])?;
    Ok(())
}

fn torrent_exists(conn: &Connection, info_hash: &InfoHash) -> rusqlite::Result<bool> {
    conn.prepare_cached(TORRENT_EXISTS)?
        .exists([info_hash.to_hex()])
}

fn select_torrent(
    conn: &Connection,
    info_hash: &InfoHash,
) -> rusqlite::Result<Option<TorrentState>> {
    conn.prepare_cached(SELECT_TORRENT)?
        .query_row([info_hash.to_hex()], torrent_from_row)
        .optional()
}

/// What goes into `data`: the torrent without its metainfo (stored apart) and with
/// non-finite floats (which JSON cannot carry) as 0.0. Borrowed when nothing changes.
fn stored_form(torrent: &TorrentState) -> Cow<'_, TorrentState> {
    let finite = torrent.percent_done.is_finite() && torrent.seed_ratio_limit.is_finite();
    if torrent.meta_info.is_none() && finite {
        return Cow::Borrowed(torrent);
    }
    let mut copy = torrent.clone();
    copy.meta_info = None;
    if !copy.percent_done.is_finite() {
        copy.percent_done = 0.0;
    }
    if !copy.seed_ratio_limit.is_finite() {
        copy.seed_ratio_limit = 0.0;
    }
    Cow::Owned(copy)
}

fn finite_session(config: &SessionConfiguration) -> Cow<'_, SessionConfiguration> {
    if config.seed_ratio_limit.is_finite() {
        return Cow::Borrowed(config);
    }
    Cow::Owned(SessionConfiguration {
        seed_ratio_limit: 0.0,
        ..config.clone()
    })
}

/// Reads `data, percent_done, raw` into a torrent. `percent_done` comes from its REAL column,
/// which holds the exact `f64` (JSON float parsing may be off by one unit in the last place).
fn torrent_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TorrentState> {
    let mut torrent: TorrentState = json_column(row, 0)?;
    torrent.percent_done = row.get(1)?;
    torrent.meta_info = row.get::<_, Option<Vec<u8>>>(2)?.map(MetaInfo::new);
    Ok(torrent)
}

/// Reads a row of the `select_metrics!` columns.
fn metric_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TorrentMetrics> {
    let hash: String = row.get(0)?;
    let info_hash = InfoHash::parse(&hash)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e)))?;
    let timestamp: String = row.get(1)?;
    let timestamp = parse_sql_timestamp(&timestamp).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            Type::Text,
            format!("not an RFC 3339 timestamp: {timestamp:?}").into(),
        )
    })?;
    Ok(TorrentMetrics {
        info_hash,
        timestamp,
        downloaded: row.get(2)?,
        uploaded: row.get(3)?,
        download_rate: row.get(4)?,
        upload_rate: row.get(5)?,
        peer_count: row.get(6)?,
        seeding_time: row.get(7)?,
        downloading_time: row.get(8)?,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let text = row.get_ref(index)?.as_str()?;
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(e)))
}

fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn render_value(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(t) => format!("{:?}", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

/// Maps a SQLite error: SQLite's corrupt / not-a-database codes and rows the projection cannot
/// read back (a `data` that is not its JSON, a column of the wrong type) to
/// [`Error::ProjectionDamaged`]; every other error to [`Error::Sqlite`], which keeps SQLite's
/// error (and so its code).
fn sql_error<'a>(op: &'static str, path: &'a Path) -> impl Fn(rusqlite::Error) -> Error + 'a {
    move |e| {
        if is_corrupt(&e) || is_unreadable_row(&e) {
            return damaged(path, format!("{op}: {e}"));
        }
        Error::Sqlite {
            op,
            path: path.to_path_buf(),
            cause: e,
        }
    }
}

/// A row whose value does not convert into what the projection wrote there.
fn is_unreadable_row(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..)
    )
}

/// Maps an error while first reading the file: "not a database" / "corrupt" become the
/// [`is_not_a_database`] error.
fn open_error(e: rusqlite::Error, path: &Path) -> Error {
    if is_corrupt(&e) {
        damaged(path, format!("not a usable SQLite database ({e})"))
    } else {
        sql_error("open SQLite projection", path)(e)
    }
}

// ---- drift check (see crate::check) -------------------------------------------------------

/// Named values of one row (a torrent or the session configuration) as the drift check
/// ([`crate::check`]) compares them: the Go columns, then `data.<key>` for every key of the
/// `data` JSON read back into its type and written out again (so only meaning is compared, not
/// formatting), then the metainfo. The field names are what a report calls the first
/// differing field.
pub(crate) type Fields = Vec<(String, serde_json::Value)>;

/// What the drift check reads of a SQLite projection: its checkpoint, and its rows by
/// `info_hash` text (a key that does not parse keeps its text).
#[derive(Debug, Default)]
pub(crate) struct Image {
    pub checkpoint: Checkpoint,
    pub torrents: BTreeMap<String, Fields>,
    pub session: Option<Fields>,
    /// Samples by `info_hash` text, in `id` order (ids themselves are not state).
    pub metrics: BTreeMap<String, Vec<TorrentMetrics>>,
    /// Torrents with a metrics row that does not read back.
    pub unreadable_metrics: std::collections::BTreeSet<String>,
}

/// Counts and a digest of the rows (see [`summary`]), for the store's cheap check at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub checkpoint: Checkpoint,
    pub torrents: u64,
    pub metrics: Option<u64>,
    pub session: bool,
    pub digest: u64,
}

/// Opens the database at `path` for reading only what the check reads: no create, no
/// migration, no write. A database of another schema version cannot be compared.
fn open_for_check(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(sql_error("open SQLite projection", path))?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| open_error(e, path))?;
    if version != i64::from(SCHEMA_VERSION) {
        return Err(Error::InvalidArgument(format!(
            "SQLite projection {} has schema version {version}, this build {SCHEMA_VERSION}: \
             open the store once to migrate it before checking",
            path.display()
        )));
    }
    Ok(conn)
}

/// A `DATETIME` column as the check compares it: the instant in RFC 3339, or the raw text
/// when it does not parse.
fn time_value(value: ValueRef<'_>) -> serde_json::Value {
    match value.as_str() {
        Ok(text) => match parse_sql_timestamp(text) {
            Some(t) => serde_json::Value::String(t.to_rfc3339()),
            None => serde_json::Value::String(format!("unparseable: {text}")),
        },
        Err(_) => plain_value(value),
    }
}

/// Any column as a JSON value; blobs as their length and hash.
fn plain_value(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => f.into(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => blob_value(b),
    }
}

fn blob_value(bytes: &[u8]) -> serde_json::Value {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{} bytes, hash {:016x}", bytes.len(), hasher.finish()).into()
}

/// Appends `data.<key>` fields of a JSON object (or one `data` field for anything else).
fn data_fields(fields: &mut Fields, data: serde_json::Value) {
    match data {
        serde_json::Value::Object(map) => {
            fields.extend(map.into_iter().map(|(k, v)| (format!("data.{k}"), v)));
        }
        other => fields.push(("data".into(), other)),
    }
}

/// The `data` JSON text read into `T` and written out again; the text itself when it does not
/// read.
fn canonical_data<T: serde::de::DeserializeOwned + serde::Serialize>(
    text: Option<&str>,
) -> serde_json::Value {
    let Some(text) = text else {
        return serde_json::Value::String("not text".into());
    };
    serde_json::from_str::<T>(text)
        .ok()
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| serde_json::Value::String(format!("unreadable: {text}")))
}

/// Reads the projection at `path` for the drift check, in one read transaction.
pub(crate) fn read_image(path: &Path) -> Result<Image> {
    let conn = open_for_check(path)?;
    let run = || -> rusqlite::Result<Image> {
        let tx = conn.unchecked_transaction()?;
        let mut image = Image {
            checkpoint: read_checkpoint(&tx)?,
            ..Image::default()
        };
        {
            let mut stmt = tx.prepare(
                "SELECT t.info_hash, t.status, t.percent_done, t.downloaded, t.uploaded,
                        t.added_date, t.updated_date, t.data, m.raw
                 FROM torrents t LEFT JOIN torrent_metainfo m ON m.info_hash = t.info_hash",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key = match row.get_ref(0)? {
                    ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    other => plain_value(other).to_string(),
                };
                let mut fields: Fields = ["status", "percent_done", "downloaded", "uploaded"]
                    .iter()
                    .enumerate()
                    .map(|(i, name)| Ok(((*name).to_owned(), plain_value(row.get_ref(i + 1)?))))
                    .collect::<rusqlite::Result<_>>()?;
                fields.push(("added_date".into(), time_value(row.get_ref(5)?)));
                fields.push(("updated_date".into(), time_value(row.get_ref(6)?)));
                let data = canonical_data::<TorrentState>(row.get_ref(7)?.as_str().ok());
                data_fields(&mut fields, data);
                fields.push(("metainfo".into(), plain_value(row.get_ref(8)?)));
                image.torrents.insert(key, fields);
            }
        }
        image.session = tx
            .query_row(
                "SELECT data, updated_date FROM session_config WHERE id = 1",
                [],
                |row| {
                    let mut fields = vec![("updated_date".into(), time_value(row.get_ref(1)?))];
                    let data =
                        canonical_data::<SessionConfiguration>(row.get_ref(0)?.as_str().ok());
                    data_fields(&mut fields, data);
                    Ok(fields)
                },
            )
            .optional()?;
        {
            let mut stmt = tx.prepare(SELECT_ALL_METRICS)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key = plain_value(row.get_ref(0)?);
                let key = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
                match metric_from_row(row) {
                    Ok(sample) => image.metrics.entry(key).or_default().push(sample),
                    Err(_) => {
                        image.unreadable_metrics.insert(key);
                    }
                }
            }
        }
        Ok(image)
    };
    run().map_err(|e| sql_read_error(path, e))
}

/// A read error of the check: damage when SQLite says so, else the error it is.
fn sql_read_error(path: &Path, e: rusqlite::Error) -> Error {
    if is_corrupt(&e) {
        damaged(path, format!("read for the drift check: {e}"))
    } else {
        sql_error("read for the drift check", path)(e)
    }
}

/// What [`read_image`] reads from a projection that holds exactly `state` (its checkpoint is
/// the state's last event).
pub(crate) fn expected_image(state: &State) -> Result<Image> {
    let mut image = Image {
        checkpoint: Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        },
        ..Image::default()
    };
    let time = |t: Timestamp| serde_json::Value::String(t.to_rfc3339());
    for (info_hash, torrent) in &state.torrents {
        let stored = stored_form(torrent);
        let written = state.written.torrent(info_hash).unwrap_or(state.last_at);
        let mut fields: Fields = vec![
            ("status".into(), stored.status.into()),
            ("percent_done".into(), stored.percent_done.into()),
            ("downloaded".into(), stored.downloaded.into()),
            ("uploaded".into(), stored.uploaded.into()),
            ("added_date".into(), time(stored.added_date)),
            ("updated_date".into(), time(written)),
        ];
        data_fields(&mut fields, to_value(&*stored)?);
        let meta = torrent
            .meta_info
            .as_ref()
            .map_or(serde_json::Value::Null, |m| blob_value(m.as_bytes()));
        fields.push(("metainfo".into(), meta));
        image.torrents.insert(info_hash.to_hex(), fields);
    }
    if let Some(config) = &state.session {
        let written = state.written.session.unwrap_or(state.last_at);
        let mut fields = vec![("updated_date".into(), time(written))];
        data_fields(&mut fields, to_value(&*finite_session(config))?);
        image.session = Some(fields);
    }
    for (info_hash, samples) in &state.metrics {
        image.metrics.insert(info_hash.to_hex(), samples.clone());
    }
    Ok(image)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::Encode(e.to_string()))
}

/// One torrent's part of a [`Summary`] digest.
#[allow(clippy::too_many_arguments)]
fn digest_torrent(
    hasher: &mut impl std::hash::Hasher,
    key: &str,
    columns: [ValueRef<'_>; 4],
    added: ValueRef<'_>,
    updated: ValueRef<'_>,
    meta_len: Option<i64>,
    metrics: Option<i64>,
) {
    use std::hash::Hash;
    key.hash(hasher);
    for column in columns {
        hash_value(hasher, column);
    }
    for time in [added, updated] {
        match time.as_str().ok().and_then(parse_sql_timestamp) {
            Some(t) => t.as_unix_nanos().hash(hasher),
            None => hash_value(hasher, time),
        }
    }
    meta_len.hash(hasher);
    metrics.hash(hasher);
}

fn hash_value(hasher: &mut impl std::hash::Hasher, value: ValueRef<'_>) {
    use std::hash::Hash;
    match value {
        ValueRef::Null => 0u8.hash(hasher),
        ValueRef::Integer(i) => (1u8, i).hash(hasher),
        ValueRef::Real(f) => (2u8, f.to_bits()).hash(hasher),
        ValueRef::Text(t) => (3u8, t).hash(hasher),
        ValueRef::Blob(b) => (4u8, b).hash(hasher),
    }
}

/// Counts and a digest of the rows, cheap to read: per torrent (in key order) its key, the
/// `status`, `percent_done`, `downloaded`, `uploaded`, `added_date` and `updated_date`
/// columns, the metainfo's length and (`metrics`) its number of samples; the session's
/// `updated_date`. The `data` JSON is not read: a write that leaves every column alone
/// (`updated_date` included) is for the full check ([`read_image`]) to find.
pub(crate) fn read_summary(path: &Path, metrics: bool) -> Result<Summary> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let conn = open_for_check(path)?;
    let run = || -> rusqlite::Result<Summary> {
        let tx = conn.unchecked_transaction()?;
        let checkpoint = read_checkpoint(&tx)?;
        let mut hasher = DefaultHasher::new();
        let torrents = digest_torrent_rows(&tx, metrics, &mut hasher)?;
        let session = read_session_updated(&tx)?;
        session.hash(&mut hasher);
        let metrics = if metrics {
            Some(
                tx.query_row("SELECT count(*) FROM torrent_metrics", [], |r| {
                    r.get::<_, i64>(0)
                })?,
            )
        } else {
            None
        };
        Ok(Summary {
            checkpoint,
            torrents,
            metrics: metrics.map(|m| u64::try_from(m).unwrap_or(u64::MAX)),
            session: session.is_some(),
            digest: hasher.finish(),
        })
    };
    run().map_err(|e| sql_read_error(path, e))
}

/// Feeds every torrent row's summarized columns to `hasher`, in key order; returns the rows.
fn digest_torrent_rows(
    tx: &rusqlite::Transaction<'_>,
    metrics: bool,
    hasher: &mut std::hash::DefaultHasher,
) -> rusqlite::Result<u64> {
    let sql = if metrics {
        "SELECT t.info_hash, t.status, t.percent_done, t.downloaded, t.uploaded,
                t.added_date, t.updated_date, length(m.raw),
                (SELECT count(*) FROM torrent_metrics x WHERE x.info_hash = t.info_hash)
         FROM torrents t LEFT JOIN torrent_metainfo m ON m.info_hash = t.info_hash
         ORDER BY t.info_hash"
    } else {
        "SELECT t.info_hash, t.status, t.percent_done, t.downloaded, t.uploaded,
                t.added_date, t.updated_date, length(m.raw), NULL
         FROM torrents t LEFT JOIN torrent_metainfo m ON m.info_hash = t.info_hash
         ORDER BY t.info_hash"
    };
    let mut torrents = 0;
    let mut stmt = tx.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        torrents += 1;
        let key = plain_value(row.get_ref(0)?);
        let key = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
        digest_torrent(
            hasher,
            &key,
            [
                row.get_ref(1)?,
                row.get_ref(2)?,
                row.get_ref(3)?,
                row.get_ref(4)?,
            ],
            row.get_ref(5)?,
            row.get_ref(6)?,
            row.get(7)?,
            row.get(8)?,
        );
    }
    Ok(torrents)
}

/// The session row's `updated_date` (`None`: no session row; `Some(None)`: unreadable time).
fn read_session_updated(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Option<Option<i64>>> {
    tx.query_row(
        "SELECT updated_date FROM session_config WHERE id = 1",
        [],
        |row| {
            Ok(row
                .get_ref(0)?
                .as_str()
                .ok()
                .and_then(parse_sql_timestamp)
                .map(Timestamp::as_unix_nanos))
        },
    )
    .optional()
}

/// What [`read_summary`] reads from a projection that holds exactly `state`.
pub(crate) fn expected_summary(state: &State, metrics: bool) -> Summary {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    // The order of `ORDER BY info_hash` on the hex text: hex is fixed-width lowercase per kind.
    let mut keyed: Vec<(String, &InfoHash)> =
        state.torrents.keys().map(|h| (h.to_hex(), h)).collect();
    keyed.sort();
    for (key, info_hash) in &keyed {
        let torrent = &state.torrents[*info_hash];
        let stored = stored_form(torrent);
        let written = state.written.torrent(info_hash).unwrap_or(state.last_at);
        let (added, updated) = (sql_timestamp(stored.added_date), sql_timestamp(written));
        let meta_len = torrent
            .meta_info
            .as_ref()
            .map(|m| i64::try_from(m.as_bytes().len()).unwrap_or(i64::MAX));
        let samples = metrics.then(|| {
            let n = state.metrics.get(info_hash).map_or(0, Vec::len);
            i64::try_from(n).unwrap_or(i64::MAX)
        });
        digest_torrent(
            &mut hasher,
            key,
            [
                ValueRef::Integer(stored.status),
                ValueRef::Real(stored.percent_done),
                ValueRef::Integer(stored.downloaded),
                ValueRef::Integer(stored.uploaded),
            ],
            ValueRef::Text(added.as_bytes()),
            ValueRef::Text(updated.as_bytes()),
            meta_len,
            samples,
        );
    }
    let session = state.session.as_ref().map(|_| {
        Some(
            state
                .written
                .session
                .unwrap_or(state.last_at)
                .as_unix_nanos(),
        )
    });
    session.hash(&mut hasher);
    Summary {
        checkpoint: Checkpoint {
            seq: state.last_seq,
            at: state.last_at,
        },
        torrents: state.torrents.len() as u64,
        metrics: metrics.then(|| state.metrics_len() as u64),
        session: state.session.is_some(),
        digest: hasher.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_714_564_800_000_000_000 + secs * 1_000_000_000)
    }

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// The Go persistence's schema as the Go code creates it (written out independently of
    /// `MIGRATIONS[0]`), with `user_version` left at 0.
    const GO_SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS torrents (info_hash TEXT PRIMARY KEY, data TEXT NOT NULL,
            status INTEGER NOT NULL, percent_done REAL NOT NULL, downloaded INTEGER NOT NULL,
            uploaded INTEGER NOT NULL, added_date DATETIME NOT NULL,
            updated_date DATETIME NOT NULL);
        CREATE INDEX IF NOT EXISTS idx_torrents_status ON torrents(status);
        CREATE INDEX IF NOT EXISTS idx_torrents_updated ON torrents(updated_date);
        CREATE TABLE IF NOT EXISTS session_config (id INTEGER PRIMARY KEY CHECK (id = 1),
            data TEXT NOT NULL, updated_date DATETIME NOT NULL);
        CREATE TABLE IF NOT EXISTS torrent_metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,
            info_hash TEXT NOT NULL, timestamp DATETIME NOT NULL, downloaded INTEGER NOT NULL,
            uploaded INTEGER NOT NULL, download_rate INTEGER NOT NULL,
            upload_rate INTEGER NOT NULL, peer_count INTEGER NOT NULL,
            FOREIGN KEY (info_hash) REFERENCES torrents(info_hash) ON DELETE CASCADE);
        CREATE INDEX IF NOT EXISTS idx_metrics_hash_time ON torrent_metrics(info_hash, timestamp);
        CREATE INDEX IF NOT EXISTS idx_metrics_timestamp ON torrent_metrics(timestamp);";

    const HASH: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    /// A row as Go writes it: the file-projection keys, Go's driver time format.
    fn insert_go_rows(conn: &Connection) {
        let torrent = TorrentState::sample(InfoHash::parse(HASH).unwrap(), "go", at(0));
        let data = String::from_utf8(torrent.to_go_file_json_pretty().unwrap()).unwrap();
        conn.execute(
            "INSERT INTO torrents VALUES (?1, ?2, 4, ?3, 100, 25,
                '2024-05-01 12:00:00+00:00', '2024-05-01 12:05:00.5+00:00')",
            params![HASH, data, torrent.percent_done],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO torrent_metrics (info_hash, timestamp, downloaded, uploaded,
                download_rate, upload_rate, peer_count)
             VALUES (?1, '2024-05-01 12:01:00+00:00', 10, 1, 1000, 100, 3)",
            [HASH],
        )
        .unwrap();
    }

    fn check_migrated(path: &Path) {
        let projection = SqliteProjection::open(path, SqliteOptions::default()).unwrap();
        assert_eq!(user_version(&projection.conn), i64::from(SCHEMA_VERSION));
        assert_eq!(projection.checkpoint(), Checkpoint::default());
        let hash = InfoHash::parse(HASH).unwrap();
        let torrent = projection.load_torrent(&hash).unwrap().expect("row kept");
        let expected = TorrentState::sample(hash, "go", at(0));
        assert_eq!(torrent.files, expected.files);
        assert_eq!(torrent.percent_done, expected.percent_done);
        assert_eq!(torrent.added_date, at(0));
        let metrics = projection.load_metrics(&hash, at(-10), at(120)).unwrap();
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].timestamp, at(60));
        assert_eq!(
            (metrics[0].seeding_time, metrics[0].downloading_time),
            (0, 0)
        );
        // Our tables work on the adopted database.
        let dump = projection.dump_tables().unwrap();
        assert!(dump.contains("id=1 seq=0 at_unix_nanos=0"), "{dump}");
        assert!(
            dump.ends_with("peer_count=3\n\n[torrent_metrics_durations]\n"),
            "zero durations keep no side row: {dump}"
        );
        // Go's DATETIME text is already in the form we write: kept as it is.
        assert!(
            dump.contains(
                "added_date=\"2024-05-01 12:00:00+00:00\" \
                 updated_date=\"2024-05-01 12:05:00.5+00:00\""
            ),
            "{dump}"
        );
        assert!(
            dump.contains("timestamp=\"2024-05-01 12:01:00+00:00\""),
            "{dump}"
        );
    }

    #[test]
    fn a_database_created_by_the_go_code_is_migrated_forward_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("go.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(GO_SCHEMA).unwrap();
            insert_go_rows(&conn);
            assert_eq!(user_version(&conn), 0);
        }
        check_migrated(&path);
        // Reopening at the newest version migrates nothing and keeps everything.
        check_migrated(&path);
    }

    #[test]
    fn a_database_at_version_1_is_migrated_step_by_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            run_migration(&mut conn, 1, &MIGRATIONS[0]).unwrap();
            assert_eq!(user_version(&conn), 1);
            insert_go_rows(&conn);
        }
        check_migrated(&path);
        let conn = Connection::open(&path).unwrap();
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('torrent_metrics') ORDER BY cid")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            columns,
            [
                "id",
                "info_hash",
                "timestamp",
                "downloaded",
                "uploaded",
                "download_rate",
                "upload_rate",
                "peer_count",
            ]
        );
    }

    #[test]
    fn a_newer_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", i64::from(SCHEMA_VERSION) + 1)
                .unwrap();
        }
        let err = SqliteProjection::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    found: 6,
                    supported: 5,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("new.db"), "{err}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(user_version(&conn), i64::from(SCHEMA_VERSION) + 1);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete", "a refused database is not switched to WAL");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        std::fs::write(
            &path,
            "this is not a SQLite database, just some text. ".repeat(40),
        )
        .unwrap();
        let err = SqliteProjection::open(&path, SqliteOptions::default()).unwrap_err();
        assert!(is_not_a_database(&err), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("not a usable SQLite database"), "{text}");
        assert!(text.contains("junk.db"), "{text}");
        // The caller deletes it and rebuilds.
        std::fs::remove_file(&path).unwrap();
        let projection = SqliteProjection::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(projection.checkpoint().seq, 0);
    }

    #[test]
    fn pragmas_are_set() {
        let dir = tempfile::tempdir().unwrap();
        let projection =
            SqliteProjection::open(dir.path().join("p.db"), SqliteOptions::default()).unwrap();
        let get = |name: &str| -> String {
            projection
                .conn
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .unwrap()
        };
        assert_eq!(get("journal_mode"), "Text(\"wal\")");
        assert_eq!(get("synchronous"), "Integer(2)"); // FULL
        assert_eq!(get("foreign_keys"), "Integer(1)");
        assert_eq!(get("busy_timeout"), "Integer(10000)");
    }

    #[test]
    fn sql_timestamps_are_go_driver_text_and_sort_like_time() {
        assert_eq!(sql_timestamp(at(0)), "2024-05-01 12:00:00+00:00");
        assert_eq!(
            sql_timestamp(Timestamp::from_unix_nanos(1_714_564_800_500_000_000)),
            "2024-05-01 12:00:00.5+00:00"
        );
        let instants = [
            Timestamp::MIN,
            Timestamp::from_unix_nanos(-1),
            Timestamp::UNIX_EPOCH,
            Timestamp::from_unix_nanos(1),
            at(0),
            Timestamp::from_unix_nanos(1_714_564_800_000_000_001),
            Timestamp::from_unix_nanos(1_714_564_800_100_000_000),
            Timestamp::from_unix_nanos(1_714_564_800_120_000_000),
            at(1),
            Timestamp::MAX,
        ];
        let texts: Vec<String> = instants.iter().map(|&t| sql_timestamp(t)).collect();
        for pair in texts.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for (t, text) in instants.iter().zip(&texts) {
            assert_eq!(parse_sql_timestamp(text), Some(*t));
        }
        // Every form read before, and the other layouts Go's driver reads.
        let half = Some(Timestamp::from_unix_nanos(1_714_564_800_500_000_000));
        for text in [
            "2024-05-01 12:00:00.5+00:00",
            "2024-05-01T12:00:00.500000000Z",
            "2024-05-01T12:00:00.500Z",
            "2024-05-01 14:00:00.5+02:00",
            "2024-05-01T12:00:00.5",
            "2024-05-01 12:00:00.5",
            "2024-05-01 12:00:00.5Z",
        ] {
            assert_eq!(parse_sql_timestamp(text), half, "{text}");
        }
        assert_eq!(parse_sql_timestamp("2024-05-01 12:00"), Some(at(0)));
        assert_eq!(parse_sql_timestamp("2024-05-01"), Some(at(-12 * 3600)));
        assert_eq!(parse_sql_timestamp("yesterday"), None);
    }
}
