//! The `seed` section: faithful re-implementations of the seed's (go-i2p-bt
//! `examples/persistence`) three strategies, measured on the same ~1.2 KB torrent states.
//!
//! * **file**: the file view (`TorrentState::to_go_file_json_pretty`, what Go's
//!   `json.MarshalIndent` writes) to `torrents/<hex>.json.tmp`, then `rename` over
//!   `<hex>.json`; directories 0755, files 0644. Exactly as the seed does it: no fsync at all.
//!   The "equal durability" variant adds what it takes to survive a power cut like our journal
//!   does: fsync the tmp file, rename, fsync the directory.
//! * **SQLite**: the seed's schema, WAL, 10 s busy timeout, SQLite's default
//!   `synchronous=FULL` (what the Go code gets), an `INSERT … ON CONFLICT(info_hash) DO UPDATE`
//!   of the JSON blob and its columns; autocommit (one transaction per save, as the seed's
//!   `SaveTorrent`) and 100 saves per transaction.
//! * **memory**: `HashMap<InfoHash, TorrentState>` behind an `RwLock`, deep copy on save and on
//!   load (the seed's "deep copying to prevent external modifications").

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::RwLock;
use std::time::Instant;

use rusqlite::{Connection, params};
use serde_json::json;
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::projection::sqlite::sql_timestamp;

use crate::common::{fresh_dir, states};
use crate::figures::{Figure, RatioKind, Unit};
use crate::stats::Summary;
use crate::{Context, SectionReport};

/// The seed's SQLite schema, as `go-i2p-bt-reference.md` gives it.
pub const SEED_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS torrents (
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
CREATE INDEX IF NOT EXISTS idx_metrics_timestamp ON torrent_metrics(timestamp);
";

const UPSERT: &str = "
INSERT INTO torrents (info_hash, data, status, percent_done, downloaded, uploaded, added_date, updated_date)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
ON CONFLICT(info_hash) DO UPDATE SET
    data = excluded.data,
    status = excluded.status,
    percent_done = excluded.percent_done,
    downloaded = excluded.downloaded,
    uploaded = excluded.uploaded,
    updated_date = excluded.updated_date";

/// The seed's file strategy.
pub struct SeedFiles {
    torrents_dir: std::path::PathBuf,
    durable: bool,
}

impl SeedFiles {
    pub fn open(dir: &Path, durable: bool) -> anyhow::Result<Self> {
        let torrents_dir = dir.join("torrents");
        std::fs::create_dir_all(&torrents_dir)?;
        std::fs::create_dir_all(dir.join("metadata"))?;
        Ok(Self {
            torrents_dir,
            durable,
        })
    }

    /// Go's `SaveTorrent`: pretty JSON to `<hex>.json.tmp`, rename. (+ fsyncs when durable.)
    pub fn save(&self, torrent: &TorrentState) -> anyhow::Result<()> {
        let bytes = torrent.to_go_file_json_pretty()?;
        let hex = torrent.info_hash.to_hex();
        let path = self.torrents_dir.join(format!("{hex}.json"));
        let tmp = self.torrents_dir.join(format!("{hex}.json.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        if self.durable {
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, &path)?;
        if self.durable {
            std::fs::File::open(&self.torrents_dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// The seed's SQLite strategy.
pub struct SeedSqlite {
    conn: Connection,
}

impl SeedSqlite {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "journal_mode {mode}");
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // SQLite's default, stated: what the seed gets (it sets nothing).
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        conn.execute_batch(SEED_SCHEMA)?;
        Ok(Self { conn })
    }

    pub fn synchronous(&self) -> anyhow::Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))?)
    }

    fn upsert(conn: &Connection, torrent: &TorrentState, now: Timestamp) -> anyhow::Result<()> {
        let data = serde_json::to_string(&torrent.file_projection())?;
        let mut stmt = conn.prepare_cached(UPSERT)?;
        stmt.execute(params![
            torrent.info_hash.to_hex(),
            data,
            torrent.status,
            torrent.percent_done,
            torrent.downloaded,
            torrent.uploaded,
            sql_timestamp(torrent.added_date),
            sql_timestamp(now),
        ])?;
        Ok(())
    }

    /// One save, its own transaction (autocommit).
    pub fn save(&self, torrent: &TorrentState) -> anyhow::Result<()> {
        Self::upsert(&self.conn, torrent, Timestamp::now())
    }

    /// Many saves in one transaction.
    pub fn save_batch(&mut self, torrents: &[&TorrentState]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        let now = Timestamp::now();
        for torrent in torrents {
            Self::upsert(&tx, torrent, now)?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// The seed's memory strategy.
#[derive(Default)]
pub struct SeedMemory {
    torrents: RwLock<HashMap<InfoHash, TorrentState>>,
}

impl SeedMemory {
    pub fn save(&self, torrent: &TorrentState) {
        let copy = torrent.clone();
        self.torrents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(copy.info_hash, copy);
    }

    pub fn load(&self, info_hash: &InfoHash) -> Option<TorrentState> {
        self.torrents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(info_hash)
            .cloned()
    }
}

/// Times `n` calls of `op(i)`, µs each.
fn timed(
    n: usize,
    mut op: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<(Summary, f64)> {
    let mut samples = Vec::with_capacity(n);
    let all = Instant::now();
    for i in 0..n {
        let started = Instant::now();
        op(i)?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    let per_sec = n as f64 / all.elapsed().as_secs_f64();
    Ok((
        Summary::of(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))?,
        per_sec,
    ))
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let root = fresh_dir(&ctx.work_dir, "seed")?;
    let torrents = states(1000);
    let pick = |i: usize| &torrents[i % torrents.len()];
    let (n_fast, n_sync, n_tx) = if ctx.quick {
        (3000, 300, 20)
    } else {
        (20_000, 2000, 100)
    };

    let files = SeedFiles::open(&root.join("files"), false)?;
    for t in &torrents {
        files.save(t)?; // the files exist, as in steady state: rename replaces them
    }
    let (file_fast, file_fast_ps) = timed(n_fast, |i| files.save(pick(i)))?;

    let prefill = SeedFiles::open(&root.join("files-durable"), false)?;
    for t in &torrents {
        prefill.save(t)?;
    }
    let durable = SeedFiles::open(&root.join("files-durable"), true)?;
    let (file_sync, file_sync_ps) = timed(n_sync, |i| durable.save(pick(i)))?;

    let sqlite = SeedSqlite::open(&root.join("seed.db"))?;
    let synchronous = sqlite.synchronous()?;
    let mut sqlite = sqlite;
    for chunk in torrents.chunks(100) {
        sqlite.save_batch(&chunk.iter().collect::<Vec<_>>())?;
    }
    let (sql_auto, sql_auto_ps) = timed(n_sync, |i| sqlite.save(pick(i)))?;
    let mut batch_samples = Vec::new();
    let started = Instant::now();
    for b in 0..n_tx {
        let batch: Vec<&TorrentState> = (0..100).map(|i| pick(b * 100 + i)).collect();
        let t = Instant::now();
        sqlite.save_batch(&batch)?;
        batch_samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let sql_batch_ps = (n_tx * 100) as f64 / started.elapsed().as_secs_f64();
    let sql_batch = Summary::of(&batch_samples).ok_or_else(|| anyhow::anyhow!("no samples"))?;
    drop(sqlite);

    let memory = SeedMemory::default();
    let mem_torrents = if ctx.quick { 10_000 } else { 100_000 };
    let mem_states = states(mem_torrents);
    for t in &mem_states {
        memory.save(t);
    }
    let ops = if ctx.quick { 200_000 } else { 1_000_000 };
    let started = Instant::now();
    for i in 0..ops {
        memory.save(&torrents[i % torrents.len()]);
    }
    let mem_save_ns = started.elapsed().as_secs_f64() * 1e9 / ops as f64;
    // Stride through the map so lookups are not all cache-hot.
    let hashes: Vec<InfoHash> = mem_states.iter().map(|t| t.info_hash).collect();
    drop(mem_states);
    let started = Instant::now();
    let mut found = 0usize;
    for i in 0..ops {
        let h = &hashes[(i * 7919) % hashes.len()];
        found += usize::from(std::hint::black_box(memory.load(h)).is_some());
    }
    let mem_load_ns = started.elapsed().as_secs_f64() * 1e9 / ops as f64;
    anyhow::ensure!(found == ops, "seed memory lost torrents");
    drop(memory);
    std::fs::remove_dir_all(&root)?;

    let v = &ctx.values;
    v.set("seed_file_p50_us", file_fast.p50);
    v.set("seed_file_ps", file_fast_ps);
    v.set("seed_file_durable_p50_us", file_sync.p50);
    v.set("seed_file_durable_ps", file_sync_ps);
    v.set("seed_sqlite_auto_p50_us", sql_auto.p50);
    v.set("seed_sqlite_auto_ps", sql_auto_ps);
    v.set("seed_sqlite_batch_ps", sql_batch_ps);
    v.set("seed_memory_save_ns", mem_save_ns);
    v.set("seed_memory_load_ns", mem_load_ns);

    let floor = v.get("floor_p50_us");
    let figures = vec![
        Figure::new(
            "seed_file_save_p50_us",
            "seed file strategy (no fsync): save, median",
            file_fast.p50,
            Unit::Micros,
        ),
        Figure::new(
            "seed_file_saves_per_sec",
            "seed file strategy (no fsync): saves/s",
            file_fast_ps,
            Unit::EventsPerSec,
        ),
        Figure::new(
            "seed_file_durable_save_p50_us",
            "seed file strategy, equal durability: save, median",
            file_sync.p50,
            Unit::Micros,
        )
        .vs("disk floor", floor, Unit::Micros, RatioKind::Multiple),
        Figure::new(
            "seed_file_durable_saves_per_sec",
            "seed file strategy, equal durability: saves/s",
            file_sync_ps,
            Unit::EventsPerSec,
        ),
        Figure::new(
            "seed_sqlite_autocommit_p50_us",
            "seed SQLite (WAL, synchronous=FULL), autocommit: save, median",
            sql_auto.p50,
            Unit::Micros,
        )
        .vs("disk floor", floor, Unit::Micros, RatioKind::Multiple),
        Figure::new(
            "seed_sqlite_autocommit_saves_per_sec",
            "seed SQLite, autocommit: saves/s",
            sql_auto_ps,
            Unit::EventsPerSec,
        ),
        Figure::new(
            "seed_sqlite_batch100_saves_per_sec",
            "seed SQLite, 100 saves per transaction: saves/s",
            sql_batch_ps,
            Unit::EventsPerSec,
        ),
        Figure::new(
            "seed_memory_save_ns",
            "seed memory strategy: save (deep copy)",
            mem_save_ns,
            Unit::Nanos,
        ),
        Figure::new(
            "seed_memory_load_ns",
            "seed memory strategy: load (deep copy)",
            mem_load_ns,
            Unit::Nanos,
        ),
    ];

    let row = |name: &str, s: &Summary, ps: f64| {
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            s.count, s.p50, s.p90, s.p99, s.max, ps
        )
    };
    let mut md = String::from("## seed: the seed's three strategies, re-implemented\n\n");
    md.push_str("~1.2 KB torrent states (1000 distinct, cycled; the files/rows exist already, as in steady state). Latency in µs.\n\n");
    md.push_str("| strategy | saves | median | p90 | p99 | max | saves/s |\n|---|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&row(
        "file: tmp + rename, no fsync (as the seed)",
        &file_fast,
        file_fast_ps,
    ));
    md.push_str(&row(
        "file: fsync tmp + rename + fsync dir (equal durability)",
        &file_sync,
        file_sync_ps,
    ));
    md.push_str(&row(
        "SQLite WAL synchronous=FULL, autocommit",
        &sql_auto,
        sql_auto_ps,
    ));
    md.push_str(&row(
        "SQLite WAL synchronous=FULL, 100 per transaction (per transaction)",
        &sql_batch,
        sql_batch_ps,
    ));
    md.push_str(&format!(
        "\nSQLite `PRAGMA synchronous` read back: {synchronous} (2 = FULL).\n\
         Memory strategy with {mem_torrents} torrents: save {mem_save_ns:.0} ns, load {mem_load_ns:.0} ns (deep copies; {ops} ops each).\n"
    ));
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "file_no_fsync_us": file_fast.to_json(), "file_no_fsync_per_sec": file_fast_ps,
            "file_durable_us": file_sync.to_json(), "file_durable_per_sec": file_sync_ps,
            "sqlite_autocommit_us": sql_auto.to_json(), "sqlite_autocommit_per_sec": sql_auto_ps,
            "sqlite_batch100_tx_us": sql_batch.to_json(), "sqlite_batch100_per_sec": sql_batch_ps,
            "sqlite_synchronous": synchronous,
            "memory": { "torrents": mem_torrents, "ops": ops, "save_ns": mem_save_ns, "load_ns": mem_load_ns },
        }),
        figures,
    })
}
