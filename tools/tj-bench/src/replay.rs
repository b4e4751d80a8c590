//! The `replay` section: a journal of `E` events over `T` torrents from the deterministic
//! simulated client (`simulate::Simulation::task_without_metainfo`: small states, no
//! `.torrent`; 16 client tasks interleaved), then
//!
//! * replay into a fresh memory projection (`projection::catch_up`, decode included), events/s;
//! * replay into a fresh SQLite projection and a fresh file projection, events/s — time-boxed
//!   (the file projection fsyncs every torrent file it rewrites, so a full replay of a large
//!   journal takes far longer than a benchmark run; a prefix is representative);
//! * opening a store (memory projection) of that journal, before and after compaction
//!   (`Retention::None`: a snapshot at the head, sealed segments removed), ms.
//!
//! Generating the journal is setup (`Durability::Never`, `append_all` batches), not measured.
//! The journal stays in the page cache (warm reads): these are CPU figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use torrent_journal::compaction::{self, CompactOptions};
use torrent_journal::event::Event;
use torrent_journal::model::Timestamp;
use torrent_journal::projection::{
    self, CATCH_UP_BATCH_EVENTS, FileProjection, FileProjectionOptions, MemoryProjection,
    Projection, SqliteOptions, SqliteProjection,
};
use torrent_journal::simulate::Simulation;
use torrent_journal::storage::RealStorage;
use torrent_journal::{
    Durability, Journal, JournalOptions, JournalReader, StoreOptions, TorrentStore,
};

use crate::common::{EPOCH_NANOS, dir_bytes, fresh_dir, progress, runtime};
use crate::figures::{Figure, RatioKind, Unit};
use crate::{Context, SectionReport};

/// (events, torrents) of the journal.
pub fn scale(quick: bool) -> (usize, usize) {
    if quick {
        (100_000, 10_000)
    } else {
        (1_000_000, 100_000)
    }
}

fn generate(dir: &std::path::Path, events: usize, torrents: usize) -> anyhow::Result<u64> {
    let sim = Simulation {
        seed: 42,
        torrents,
        events,
        tasks: 16,
        start: Timestamp::from_unix_nanos(EPOCH_NANOS),
    };
    let options = JournalOptions {
        durability: Durability::Never,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options)?;
    // Small states (no `.torrent`): the figures measure the journal and the projections, and
    // a million events carrying real metainfo would not fit on the disk in format 1.
    let mut tasks: Vec<_> = (0..sim.tasks)
        .map(|i| sim.task_without_metainfo(i))
        .collect();
    let mut batch: Vec<Event> = Vec::with_capacity(4096);
    let mut live = true;
    while live {
        live = false;
        for task in &mut tasks {
            if let Some(event) = task.next() {
                live = true;
                batch.push(event);
                if batch.len() == 4096 {
                    journal.append_all(&batch)?;
                    batch.clear();
                }
            }
        }
    }
    if !batch.is_empty() {
        journal.append_all(&batch)?;
    }
    let bytes = journal.status().bytes_written();
    journal.close()?;
    Ok(bytes)
}

/// Events (each a save of a different torrent) of the worst-case journal for the memory
/// replay: nothing is superseded, so every event is decoded.
pub fn worst_case_events(quick: bool) -> usize {
    if quick { 100_000 } else { 250_000 }
}

/// A journal of `events` saves, each of a different torrent (`common::state`, ~1.3 KB).
fn generate_distinct(dir: &std::path::Path, events: usize) -> anyhow::Result<u64> {
    let options = JournalOptions {
        durability: Durability::Never,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options)?;
    for start in (0..events).step_by(4096) {
        let batch: Vec<Event> = (start..(start + 4096).min(events))
            .map(|n| Event::TorrentSaved {
                torrent: Box::new(crate::common::state(n)),
            })
            .collect();
        journal.append_all(&batch)?;
    }
    let bytes = journal.status().bytes_written();
    journal.close()?;
    Ok(bytes)
}

/// Replays the journal in `dir` into a fresh memory projection: (events, seconds, torrents).
fn replay_memory(dir: &std::path::Path) -> anyhow::Result<(u64, f64, usize)> {
    let reader = JournalReader::open(dir)?;
    let mut memory = MemoryProjection::new();
    let started = Instant::now();
    let done = projection::catch_up(&mut memory, &reader, &mut |_| {})?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((done.applied, seconds, memory.stats().torrents))
}

/// Applies the journal to `projection` in catch-up-sized batches until the end or `budget`.
fn replay_boxed(
    projection: &mut dyn Projection,
    reader: &JournalReader,
    budget: Duration,
) -> anyhow::Result<(u64, f64, bool)> {
    let started = Instant::now();
    let mut applied = 0u64;
    let mut batch = Vec::with_capacity(CATCH_UP_BATCH_EVENTS);
    let mut complete = true;
    for envelope in reader.events(1)? {
        batch.push(envelope?);
        if batch.len() == CATCH_UP_BATCH_EVENTS {
            projection.apply(&batch)?;
            applied += batch.len() as u64;
            batch.clear();
            if started.elapsed() > budget {
                complete = false;
                break;
            }
        }
    }
    if complete && !batch.is_empty() {
        projection.apply(&batch)?;
        applied += batch.len() as u64;
    }
    Ok((applied, started.elapsed().as_secs_f64(), complete))
}

fn open_ms(dir: &std::path::Path, rt: &tokio::runtime::Runtime) -> anyhow::Result<(f64, usize)> {
    let started = Instant::now();
    let store = TorrentStore::open_blocking(dir, StoreOptions::default())?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let torrents = store.memory_stats().torrents;
    rt.block_on(store.close())?;
    Ok((ms, torrents))
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let (events, torrents) = scale(ctx.quick);
    let dir = fresh_dir(&ctx.work_dir, "replay")?;
    let store_dir = dir.join("store");
    let t0 = Instant::now();
    let journal_bytes = generate(&store_dir, events, torrents)?;
    let generate_s = t0.elapsed().as_secs_f64();
    progress(
        "replay",
        &format!(
            "generated {events} events ({:.0} MB) in {generate_s:.1} s",
            journal_bytes as f64 / 1e6
        ),
        ctx.started,
    );
    let reader = JournalReader::open(&store_dir)?;

    // Memory.
    let (mem_applied, mem_s, mem_torrents) = replay_memory(&store_dir)?;
    let mem_eps = mem_applied as f64 / mem_s;
    progress(
        "replay",
        &format!("memory: {mem_eps:.0} events/s"),
        ctx.started,
    );

    // Memory, worst case: every event a different torrent, so nothing is superseded.
    let worst_dir = dir.join("distinct");
    let worst_events = worst_case_events(ctx.quick);
    let worst_bytes = generate_distinct(&worst_dir, worst_events)?;
    let (worst_applied, worst_s, worst_torrents) = replay_memory(&worst_dir)?;
    anyhow::ensure!(
        worst_torrents == worst_events,
        "worst case replay holds {worst_torrents} torrents, not {worst_events}"
    );
    let worst_eps = worst_applied as f64 / worst_s;
    std::fs::remove_dir_all(&worst_dir)?;
    progress(
        "replay",
        &format!("memory, nothing superseded: {worst_eps:.0} events/s"),
        ctx.started,
    );

    // SQLite and files, time-boxed.
    let budget = Duration::from_secs(if ctx.quick { 6 } else { 25 });
    let mut sqlite = SqliteProjection::open(dir.join("replay.db"), SqliteOptions::default())?;
    let (sql_n, sql_s, sql_all) = replay_boxed(&mut sqlite, &reader, budget)?;
    drop(sqlite);
    let sql_eps = sql_n as f64 / sql_s;
    progress(
        "replay",
        &format!("sqlite: {sql_eps:.0} events/s"),
        ctx.started,
    );
    let mut files = FileProjection::open(
        Arc::new(RealStorage),
        dir.join("files"),
        FileProjectionOptions::default(),
    )?;
    let (files_n, files_s, files_all) = replay_boxed(&mut files, &reader, budget)?;
    drop(files);
    let files_eps = files_n as f64 / files_s;
    progress(
        "replay",
        &format!("files: {files_eps:.0} events/s"),
        ctx.started,
    );
    drop(reader);

    // Opening before and after compaction.
    let rt = runtime()?;
    let (open_before_ms, open_torrents) = open_ms(&store_dir, &rt)?;
    anyhow::ensure!(
        open_torrents == mem_torrents,
        "open saw {open_torrents} torrents, replay {mem_torrents}"
    );
    progress(
        "replay",
        &format!("open before compaction: {open_before_ms:.0} ms"),
        ctx.started,
    );
    let started = Instant::now();
    let report = compaction::compact(
        Arc::new(RealStorage),
        &store_dir,
        &CompactOptions::default(),
    )?;
    let compact_s = started.elapsed().as_secs_f64();
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(open_ms(&store_dir, &rt)?);
    }
    anyhow::ensure!(
        after.iter().all(|(_, t)| *t == mem_torrents),
        "compaction changed the torrents"
    );
    let mut after_ms: Vec<f64> = after.iter().map(|(ms, _)| *ms).collect();
    after_ms.sort_by(f64::total_cmp);
    let open_after_ms = after_ms[1];
    let store_bytes_after = dir_bytes(&store_dir);
    progress(
        "replay",
        &format!("open after compaction: {open_after_ms:.0} ms"),
        ctx.started,
    );
    drop(rt);
    if !ctx.keep {
        std::fs::remove_dir_all(&dir)?;
    }

    let v = &ctx.values;
    v.set("replay_memory_eps", mem_eps);
    let label = format!("{}k events / {}k torrents", events / 1000, torrents / 1000);
    let figures = vec![
        Figure::new(
            "replay_memory_eps",
            "replay into memory",
            mem_eps,
            Unit::EventsPerSec,
        )
        .vs(
            "no-sync ceiling (encode side)",
            v.get("ceiling_eps"),
            Unit::EventsPerSec,
            RatioKind::Multiple,
        )
        .goal_value("≥ 1M events/s", |e| e >= 1_000_000.0)
        .note(label.clone()),
        Figure::new(
            "replay_memory_worst_eps",
            "replay into memory, worst case (every event a different torrent)",
            worst_eps,
            Unit::EventsPerSec,
        )
        .vs(
            "replay into memory",
            Some(mem_eps),
            Unit::EventsPerSec,
            RatioKind::Multiple,
        )
        .note(format!(
            "{}k saves of {}k torrents",
            worst_events / 1000,
            worst_events / 1000
        )),
        Figure::new(
            "replay_sqlite_eps",
            "replay into SQLite",
            sql_eps,
            Unit::EventsPerSec,
        )
        .vs(
            "seed SQLite, 100/tx",
            v.get("seed_sqlite_batch_ps"),
            Unit::EventsPerSec,
            RatioKind::Speedup,
        )
        .note(if sql_all {
            label.clone()
        } else {
            format!("first {sql_n} events, time-boxed")
        }),
        Figure::new(
            "replay_files_eps",
            "replay into files",
            files_eps,
            Unit::EventsPerSec,
        )
        .vs(
            "seed file, equal durability",
            v.get("seed_file_durable_ps"),
            Unit::EventsPerSec,
            RatioKind::Speedup,
        )
        .note(if files_all {
            label.clone()
        } else {
            format!("first {files_n} events, time-boxed")
        }),
        Figure::new(
            "open_before_compaction_ms",
            "open store before compaction",
            open_before_ms,
            Unit::Millis,
        )
        .note(label.clone()),
        Figure::new(
            "open_after_compaction_ms",
            "open store after compaction",
            open_after_ms,
            Unit::Millis,
        )
        .vs(
            "before compaction",
            Some(open_before_ms),
            Unit::Millis,
            RatioKind::Speedup,
        )
        .goal_value("< 300 ms", |ms| ms < 300.0)
        .note(format!("{}k torrents", torrents / 1000)),
    ];
    let mut md = String::from("## replay: rebuilding projections, opening a store\n\n");
    md.push_str(&format!(
        "Journal: {events} events over {torrents} torrents from the simulated client ({} MB of frames, \
         {:.0} B per event), generated in {generate_s:.1} s (setup, not measured){}.\n\n",
        journal_bytes / 1_000_000,
        journal_bytes as f64 / events as f64,
        if ctx.quick { "; **--quick: scaled down from 1M / 100k**" } else { "" }
    ));
    md.push_str("| replay into | events | seconds | events/s |\n|---|---:|---:|---:|\n");
    md.push_str(&format!(
        "| memory | {mem_applied} | {mem_s:.2} | {mem_eps:.0} |\n"
    ));
    md.push_str(&format!(
        "| memory, worst case: {worst_events} saves of as many torrents ({} MB), nothing superseded | {worst_applied} | {worst_s:.2} | {worst_eps:.0} |\n",
        worst_bytes / 1_000_000
    ));
    md.push_str(&format!(
        "| SQLite | {sql_n}{} | {sql_s:.2} | {sql_eps:.0} |\n",
        if sql_all { "" } else { " (time-boxed)" }
    ));
    md.push_str(&format!(
        "| files | {files_n}{} | {files_s:.2} | {files_eps:.0} |\n",
        if files_all { "" } else { " (time-boxed)" }
    ));
    md.push_str(&format!(
        "\nOpen (memory projection, {mem_torrents} torrents): {open_before_ms:.0} ms before compaction; \
         compaction took {compact_s:.1} s (snapshot at seq {:?}, {} segments removed, store {} MB → {} MB); \
         after: {:.0} / {:.0} / {:.0} ms (median {open_after_ms:.0}).\n",
        report.snapshot_seq,
        report.segments_removed.len(),
        report.bytes_before / 1_000_000,
        store_bytes_after / 1_000_000,
        after_ms[0], after_ms[1], after_ms[2]
    ));
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "events": events, "torrents": torrents, "quick_scaled_down": ctx.quick,
            "journal_bytes": journal_bytes, "generate_seconds": generate_s,
            "memory": { "events": mem_applied, "seconds": mem_s, "events_per_sec": mem_eps },
            "memory_worst_case": { "events": worst_applied, "seconds": worst_s, "events_per_sec": worst_eps, "journal_bytes": worst_bytes },
            "sqlite": { "events": sql_n, "seconds": sql_s, "events_per_sec": sql_eps, "complete": sql_all },
            "files": { "events": files_n, "seconds": files_s, "events_per_sec": files_eps, "complete": files_all },
            "open_before_compaction_ms": open_before_ms,
            "compaction_seconds": compact_s,
            "open_after_compaction_ms": after_ms,
            "open_after_compaction_median_ms": open_after_ms,
            "store_bytes_after_compaction": store_bytes_after,
        }),
        figures,
    })
}

/// Arguments of the hidden `replay-memory` subcommand (for profiling one replay alone).
#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// A store directory (e.g. `DIR/tj-bench-*/replay/store` kept by `--keep`).
    #[arg(long)]
    dir: std::path::PathBuf,
    /// Generate a journal of this many events there first when the directory does not exist.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    /// ... over this many torrents.
    #[arg(long, default_value_t = 10_000)]
    torrents: usize,
    /// Generate the worst case instead: `--events` saves, each of a different torrent.
    #[arg(long)]
    distinct: bool,
}

/// Replays the journal in `--dir` into a fresh memory projection and prints events/s.
pub fn profile_memory(args: &ProfileArgs) -> anyhow::Result<()> {
    if !args.dir.exists() {
        if args.distinct {
            generate_distinct(&args.dir, args.events)?;
        } else {
            generate(&args.dir, args.events, args.torrents)?;
        }
    }
    let (applied, seconds, torrents) = replay_memory(&args.dir)?;
    println!(
        "{applied} events in {seconds:.2} s: {:.0} events/s ({torrents} torrents)",
        applied as f64 / seconds
    );
    Ok(())
}

/// Opens the store in `--dir` (memory projection only) and prints how long it took.
pub fn profile_open(args: &ProfileArgs) -> anyhow::Result<()> {
    let rt = runtime()?;
    let (ms, torrents) = open_ms(&args.dir, &rt)?;
    println!("opened {torrents} torrents in {ms:.0} ms");
    Ok(())
}
