//! The `store` section: the seed's interface on our store, end to end.
//!
//! * `save_torrent` latency (one caller, one save at a time) with the memory projection only,
//!   and with memory + SQLite (the SQLite projection follows on its own thread; the figure is
//!   the caller's latency, and the time for SQLite to catch up afterwards is reported).
//! * `load_torrent` from the memory projection of a store holding `T` torrents: the async call
//!   (read lock + lookup + `Arc` clone), and the bare `memory().get()`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use torrent_journal::model::{InfoHash, TorrentState};
use torrent_journal::{StoreOptions, TorrentStore};

use crate::common::{fresh_dir, runtime, states};
use crate::figures::{Figure, RatioKind, Unit};
use crate::stats::Summary;
use crate::{Context, SectionReport};

const WARMUP: usize = 20;

/// Info hashes are SHA-1/SHA-256 digests, already uniform: their first bytes are a good hash.
#[derive(Debug, Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 =
            (self.0.rotate_left(29) ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

fn saves(
    ctx: &Context,
    name: &str,
    options: StoreOptions,
    n: usize,
) -> anyhow::Result<(Summary, f64)> {
    let dir = fresh_dir(&ctx.work_dir, name)?;
    let torrents = states(1000);
    let rt = runtime()?;
    let result = rt.block_on(async {
        let store = TorrentStore::open(&dir, options).await?;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + WARMUP {
            let started = Instant::now();
            store.save_torrent(&torrents[i % torrents.len()]).await?;
            if i >= WARMUP {
                samples.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        // Only with a disk projection: without one, `flush_projections` waits for a progress
        // counter nothing advances (a library bug, see BENCHMARKS.md).
        let started = Instant::now();
        if store.sqlite_path().is_some() {
            store.flush_projections().await?;
        }
        let flush_ms = started.elapsed().as_secs_f64() * 1e3;
        store.close().await?;
        anyhow::Ok((
            Summary::of(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))?,
            flush_ms,
        ))
    })?;
    drop(rt);
    std::fs::remove_dir_all(&dir)?;
    Ok(result)
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let n = if ctx.quick { 300 } else { 2000 };
    let (mem, _) = saves(ctx, "store-memory", StoreOptions::default(), n)?;
    let (sql, sql_flush_ms) = saves(
        ctx,
        "store-sqlite",
        StoreOptions::default().with_sqlite(),
        n,
    )?;

    // Lookups in a store of T torrents.
    let t = if ctx.quick { 10_000 } else { 100_000 };
    let ops = if ctx.quick { 1_000_000 } else { 5_000_000 };
    let dir = fresh_dir(&ctx.work_dir, "store-load")?;
    let rt = runtime()?;
    let (load_ns, get_ns, hash_ns) = rt.block_on(async {
        let store = TorrentStore::open(&dir, StoreOptions::default()).await?;
        let mut hashes: Vec<InfoHash> = Vec::with_capacity(t);
        for start in (0..t).step_by(1000) {
            let chunk: Vec<_> = (start..(start + 1000).min(t))
                .map(crate::common::state)
                .collect();
            hashes.extend(chunk.iter().map(|s| s.info_hash));
            store.save_all_torrents(&chunk).await?;
        }
        anyhow::ensure!(
            store.memory_stats().torrents == t,
            "store holds {} torrents",
            store.memory_stats().torrents
        );
        // Stride through the hashes so consecutive lookups touch different parts of the map.
        let mut found = 0usize;
        let started = Instant::now();
        for i in 0..ops {
            let h = &hashes[(i * 7919) % t];
            found += usize::from(std::hint::black_box(store.load_torrent(h).await).is_ok());
        }
        let load_ns = started.elapsed().as_secs_f64() * 1e9 / ops as f64;
        let started = Instant::now();
        for i in 0..ops {
            let h = &hashes[(i * 7919) % t];
            found += usize::from(std::hint::black_box(store.read_memory(|m| m.get(h))).is_some());
        }
        let get_ns = started.elapsed().as_secs_f64() * 1e9 / ops as f64;
        anyhow::ensure!(found == 2 * ops, "lookups missed");
        // A lower bound for the store's lookup: a bare hash index (keyed by the hash's own first
        // bytes) behind the same kind of lock, handing out the same `Arc`s.
        let index: std::sync::RwLock<
            HashMap<InfoHash, Arc<TorrentState>, BuildHasherDefault<PrefixHasher>>,
        > = std::sync::RwLock::new(
            store
                .read_memory(|m| m.all())
                .into_iter()
                .map(|t| (t.info_hash, t))
                .collect(),
        );
        let started = Instant::now();
        for i in 0..ops {
            let h = &hashes[(i * 7919) % t];
            let hit = index
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(h)
                .cloned();
            found += usize::from(std::hint::black_box(hit).is_some());
        }
        let hash_ns = started.elapsed().as_secs_f64() * 1e9 / ops as f64;
        anyhow::ensure!(found == 3 * ops, "lookups missed");
        store.close().await?;
        anyhow::Ok((load_ns, get_ns, hash_ns))
    })?;
    drop(rt);
    std::fs::remove_dir_all(&dir)?;

    let v = &ctx.values;
    v.set("load_torrent_ns", load_ns);
    let figures = vec![
        Figure::new(
            "save_torrent_memory_p50_us",
            "save_torrent end to end, memory projection: median",
            mem.p50,
            Unit::Micros,
        )
        .vs(
            "seed file, equal durability",
            v.get("seed_file_durable_p50_us"),
            Unit::Micros,
            RatioKind::Speedup,
        ),
        Figure::new(
            "save_torrent_memory_p99_us",
            "save_torrent end to end, memory projection: p99",
            mem.p99,
            Unit::Micros,
        )
        .vs(
            "disk floor p99",
            v.get("floor_p99_us"),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "save_torrent_memory_vs_floor",
            "save_torrent end to end, memory: median vs disk floor",
            mem.p50,
            Unit::Micros,
        )
        .vs(
            "disk floor median",
            v.get("floor_p50_us"),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "save_torrent_sqlite_p50_us",
            "save_torrent end to end, memory + SQLite: median",
            sql.p50,
            Unit::Micros,
        )
        .vs(
            "seed SQLite autocommit",
            v.get("seed_sqlite_auto_p50_us"),
            Unit::Micros,
            RatioKind::Speedup,
        ),
        Figure::new(
            "save_torrent_sqlite_p99_us",
            "save_torrent end to end, memory + SQLite: p99",
            sql.p99,
            Unit::Micros,
        )
        .vs(
            "disk floor p99",
            v.get("floor_p99_us"),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "load_torrent_ns",
            "load_torrent from the memory projection",
            load_ns,
            Unit::Nanos,
        )
        .vs(
            "seed memory load (deep copy)",
            v.get("seed_memory_load_ns"),
            Unit::Nanos,
            RatioKind::Speedup,
        )
        .goal_value("≤ 50 ns", |ns| ns <= 50.0)
        .note(format!("{t} torrents")),
        Figure::new(
            "hash_index_lookup_ns",
            "lower bound: bare RwLock<HashMap> lookup + Arc clone, no store",
            hash_ns,
            Unit::Nanos,
        )
        .vs(
            "load_torrent today",
            Some(load_ns),
            Unit::Nanos,
            RatioKind::Speedup,
        ),
        Figure::new(
            "memory_get_ns",
            "read_memory(|m| m.get()) (lock + lookup + Arc clone)",
            get_ns,
            Unit::Nanos,
        )
        .vs(
            "seed memory load (deep copy)",
            v.get("seed_memory_load_ns"),
            Unit::Nanos,
            RatioKind::Speedup,
        ),
    ];
    let mut md = String::from("## store: the seed's interface on our store\n\n");
    md.push_str(
        "| operation | count | median | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (name, s) in [
        ("save_torrent, memory projection (µs)", &mem),
        ("save_torrent, memory + SQLite (µs)", &sql),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
            s.count, s.p50, s.p90, s.p99, s.max
        ));
    }
    md.push_str(&format!(
        "\nSQLite caught up {sql_flush_ms:.1} ms after the last save returned. \
         Lookups in a store of {t} torrents ({ops} each, strided): `load_torrent` {load_ns:.1} ns, `memory().get()` {get_ns:.1} ns; \
         a bare hash index as a lower bound (keyed by the digest's first bytes, same lock and `Arc`s) {hash_ns:.1} ns.\n"
    ));
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "save_memory_us": mem.to_json(),
            "save_sqlite_us": sql.to_json(),
            "sqlite_flush_ms": sql_flush_ms,
            "lookups": { "torrents": t, "ops": ops, "load_torrent_ns": load_ns, "memory_get_ns": get_ns, "hash_index_prototype_ns": hash_ns },
        }),
        figures,
    })
}
