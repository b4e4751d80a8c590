//! The `append` section: our durable append under the default durability policy
//! (`Durability::EveryBatch`: `fdatasync` before every acknowledgement, group commit).
//!
//! * 1 appender: `Journal::append` one event at a time; latency per append vs the disk floor.
//! * 16 and 256 concurrent appenders: tokio tasks on a multi-threaded runtime (one worker per
//!   core) each looping `append_async` for a fixed time; events/s and MB/s of frames.
//! * Diagnostics: 1 and 256 appenders again with segment preallocation off
//!   (`preallocate_bytes: 0`, the segment grows with every batch), to show what it buys.
//!
//! Events are `TorrentSaved` with ~1.2 KB realistic states (1000 distinct, cycled).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use torrent_journal::event::Event;
use torrent_journal::{Journal, JournalOptions};

use crate::common::{fresh_dir, runtime, saved_events};
use crate::figures::{Figure, RatioKind, Unit};
use crate::floor::FloorProbe;
use crate::stats::Summary;
use crate::{Context, SectionReport};

const WARMUP: usize = 20;

/// Throughput of `appenders` concurrent tasks for `duration`.
#[derive(Debug)]
struct Throughput {
    appenders: usize,
    events: u64,
    seconds: f64,
    events_per_sec: f64,
    mb_per_sec: f64,
    avg_batch: f64,
}

fn concurrent(
    ctx: &Context,
    events: &Arc<Vec<Event>>,
    appenders: usize,
    duration: Duration,
    options: &JournalOptions,
) -> anyhow::Result<Throughput> {
    let dir = fresh_dir(&ctx.work_dir, &format!("append-{appenders}"))?;
    let journal = Journal::open_with(&dir, options.clone())?;
    let rt = runtime()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (events_done, bytes, batches, seconds) = rt.block_on(async {
        // Warm up briefly, then measure between two snapshots of the writer's counters.
        let mut tasks = Vec::with_capacity(appenders);
        for a in 0..appenders {
            let journal = journal.clone();
            let events = Arc::clone(events);
            let stop = Arc::clone(&stop);
            tasks.push(tokio::spawn(async move {
                let mut i = a;
                while !stop.load(Ordering::Relaxed) {
                    journal.append_async(&events[i % events.len()]).await?;
                    i += appenders;
                }
                anyhow::Ok(())
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = journal.status();
        let (seq0, bytes0, batches0) = (
            status.last_seq(),
            status.bytes_written(),
            status.batches_written(),
        );
        let t0 = Instant::now();
        tokio::time::sleep(duration).await;
        let (seq1, bytes1, batches1) = (
            status.last_seq(),
            status.bytes_written(),
            status.batches_written(),
        );
        let seconds = t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await??;
        }
        anyhow::Ok((seq1 - seq0, bytes1 - bytes0, batches1 - batches0, seconds))
    })?;
    journal.close()?;
    drop(rt);
    std::fs::remove_dir_all(&dir)?;
    Ok(Throughput {
        appenders,
        events: events_done,
        seconds,
        events_per_sec: events_done as f64 / seconds,
        mb_per_sec: bytes as f64 / seconds / 1e6,
        avg_batch: events_done as f64 / batches.max(1) as f64,
    })
}

/// The library's defaults, with `--preallocate-bytes` applied.
fn journal_options(ctx: &Context) -> JournalOptions {
    let defaults = JournalOptions::default();
    JournalOptions {
        preallocate_bytes: ctx.preallocate_bytes.unwrap_or(defaults.preallocate_bytes),
        ..defaults
    }
}

/// Latencies (µs) of one appender (one event per `append`), with and without preallocation,
/// and of the disk floor, sampled in interleaved rounds of [`ROUND`] so all three see the same
/// disk: this VM's `fdatasync` latency switches modes (~60 µs ↔ ~4 ms) for seconds at a time,
/// which would otherwise decide a ratio of numbers taken a few seconds apart.
struct Single {
    floor: Summary,
    preallocated: Summary,
    growing: Summary,
}

const ROUND: usize = 20;

fn single_appenders(ctx: &Context, events: &[Event], n: usize) -> anyhow::Result<Single> {
    let dir = fresh_dir(&ctx.work_dir, "append-1")?;
    let rounds = (n + WARMUP).div_ceil(ROUND);
    let mut probe = FloorProbe::create(&dir.join("floor.dat"), rounds * ROUND)?;
    let growing_options = JournalOptions {
        preallocate_bytes: 0,
        ..journal_options(ctx)
    };
    let journals = [
        Journal::open_with(dir.join("preallocated"), journal_options(ctx))?,
        Journal::open_with(dir.join("growing"), growing_options)?,
    ];
    let mut floor = Vec::with_capacity(n);
    let mut samples = [Vec::with_capacity(n), Vec::with_capacity(n)];
    let mut i = 0;
    for round in 0..rounds {
        let measured = round * ROUND >= WARMUP;
        for _ in 0..ROUND {
            let sample = probe.sample()?;
            if measured {
                floor.push(sample);
            }
        }
        for (journal, samples) in journals.iter().zip(&mut samples) {
            for _ in 0..ROUND {
                let started = Instant::now();
                journal.append(&events[i % events.len()])?;
                i += 1;
                if measured {
                    samples.push(started.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
    for journal in journals {
        journal.close()?;
    }
    std::fs::remove_dir_all(&dir)?;
    let summary = |s: &[f64]| Summary::of(s).ok_or_else(|| anyhow::anyhow!("no samples"));
    Ok(Single {
        floor: summary(&floor)?,
        preallocated: summary(&samples[0])?,
        growing: summary(&samples[1])?,
    })
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let events = Arc::new(saved_events(1000));
    let n = if ctx.quick { 400 } else { 3000 };
    let duration = Duration::from_secs(if ctx.quick { 3 } else { 8 });

    let options = journal_options(ctx);
    let growing = JournalOptions {
        preallocate_bytes: 0,
        ..journal_options(ctx)
    };
    let Single {
        floor: floor_interleaved,
        preallocated: single,
        growing: single_growing,
    } = single_appenders(ctx, &events, n)?;
    let c16 = concurrent(ctx, &events, 16, duration, &options)?;
    let c256 = concurrent(ctx, &events, 256, duration, &options)?;
    let c256_growing = concurrent(ctx, &events, 256, duration, &growing)?;

    let v = &ctx.values;
    v.set("append1_p50_us", single.p50);
    v.set("append256_eps", c256.events_per_sec);
    let floor50 = Some(floor_interleaved.p50);
    let floor99 = Some(floor_interleaved.p99);
    let grow50 = v.get("growing_p50_us");
    let file_durable = v.get("seed_file_durable_ps");
    let sql_batch = v.get("seed_sqlite_batch_ps");
    let sql_auto = v.get("seed_sqlite_auto_ps");
    let ceiling = v.get("ceiling_eps");

    let figures = vec![
        Figure::new(
            "append_floor_p50_us",
            "disk floor, sampled between the appends: median",
            floor_interleaved.p50,
            Unit::Micros,
        ),
        Figure::new(
            "append_floor_p99_us",
            "disk floor, sampled between the appends: p99",
            floor_interleaved.p99,
            Unit::Micros,
        ),
        Figure::new(
            "append1_p50_us",
            "durable append, 1 appender: latency median",
            single.p50,
            Unit::Micros,
        )
        .vs(
            "disk floor median (interleaved)",
            floor50,
            Unit::Micros,
            RatioKind::Multiple,
        )
        .goal_ratio("≤ 1.2× disk floor", |r| r <= 1.2),
        Figure::new(
            "append1_p99_us",
            "durable append, 1 appender: latency p99",
            single.p99,
            Unit::Micros,
        )
        .vs(
            "disk floor p99 (interleaved)",
            floor99,
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "append1_p50_vs_growing_us",
            "durable append, 1 appender: median vs growing-file floor",
            single.p50,
            Unit::Micros,
        )
        .vs(
            "growing-file floor median",
            grow50,
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "append1_growing_p50_us",
            "durable append, 1 appender, preallocation off (diagnostic): median",
            single_growing.p50,
            Unit::Micros,
        )
        .vs(
            "with preallocation",
            Some(single.p50),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "append16_eps",
            "durable append, 16 appenders",
            c16.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "seed file, equal durability",
            file_durable,
            Unit::EventsPerSec,
            RatioKind::Speedup,
        ),
        Figure::new(
            "append16_mbps",
            "durable append, 16 appenders: bandwidth",
            c16.mb_per_sec,
            Unit::MegabytesPerSec,
        ),
        Figure::new(
            "append256_eps",
            "durable append, 256 appenders",
            c256.events_per_sec,
            Unit::EventsPerSec,
        )
        .goal_value("≥ 500k events/s", |v| v >= 500_000.0),
        Figure::new(
            "append256_vs_seed_file_durable",
            "durable append, 256 appenders vs seed file strategy",
            c256.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "seed file, equal durability",
            file_durable,
            Unit::EventsPerSec,
            RatioKind::Speedup,
        )
        .goal_ratio("≥ 100×", |r| r >= 100.0),
        Figure::new(
            "append256_vs_seed_sqlite_batch100",
            "durable append, 256 appenders vs seed SQLite batched",
            c256.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "seed SQLite, 100/tx",
            sql_batch,
            Unit::EventsPerSec,
            RatioKind::Speedup,
        )
        .goal_ratio("≥ 5×", |r| r >= 5.0),
        Figure::new(
            "append256_vs_seed_sqlite_autocommit",
            "durable append, 256 appenders vs seed SQLite autocommit",
            c256.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "seed SQLite, autocommit",
            sql_auto,
            Unit::EventsPerSec,
            RatioKind::Speedup,
        ),
        Figure::new(
            "append256_vs_ceiling",
            "durable append, 256 appenders vs no-sync ceiling",
            c256.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "no-sync ceiling",
            ceiling,
            Unit::EventsPerSec,
            RatioKind::Multiple,
        ),
        Figure::new(
            "append256_growing_eps",
            "durable append, 256 appenders, preallocation off (diagnostic)",
            c256_growing.events_per_sec,
            Unit::EventsPerSec,
        )
        .vs(
            "with preallocation",
            Some(c256.events_per_sec),
            Unit::EventsPerSec,
            RatioKind::Multiple,
        ),
        Figure::new(
            "append256_mbps",
            "durable append, 256 appenders: bandwidth",
            c256.mb_per_sec,
            Unit::MegabytesPerSec,
        ),
    ];

    let mut md =
        String::from("## append: durable append (default policy: fdatasync before every ack)\n\n");
    md.push_str(&format!(
        "1 appender, {n} appends (first {WARMUP} left out) in rounds of {ROUND} between rounds of the disk floor and of preallocation off, µs: median {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}.\n\n",
        single.p50, single.p90, single.p99, single.max
    ));
    md.push_str(&format!(
        "Disk floor in the same rounds, µs: median {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}.\n\nPreallocation off (the segment grows with every batch), µs: median {:.0}, p90 {:.0}, p99 {:.0}, max {:.0}.\n\n",
        floor_interleaved.p50,
        floor_interleaved.p90,
        floor_interleaved.p99,
        floor_interleaved.max,
        single_growing.p50,
        single_growing.p90,
        single_growing.p99,
        single_growing.max
    ));
    md.push_str("| appenders | segment | events | seconds | events/s | MB/s | events per commit |\n|---:|---|---:|---:|---:|---:|---:|\n");
    for (t, segment) in [
        (&c16, "preallocated"),
        (&c256, "preallocated"),
        (&c256_growing, "growing"),
    ] {
        md.push_str(&format!(
            "| {} | {segment} | {} | {:.2} | {:.0} | {:.1} | {:.1} |\n",
            t.appenders, t.events, t.seconds, t.events_per_sec, t.mb_per_sec, t.avg_batch
        ));
    }
    md.push_str("\nConcurrent appenders are tokio tasks calling `append_async` (encoding on the caller), one runtime worker per core.\n");
    let tj = |t: &Throughput| {
        json!({
            "appenders": t.appenders, "events": t.events, "seconds": t.seconds,
            "events_per_sec": t.events_per_sec, "mb_per_sec": t.mb_per_sec,
            "events_per_commit": t.avg_batch,
        })
    };
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "single_us": single.to_json(),
            "single_preallocation_off_us": single_growing.to_json(),
            "floor_interleaved_us": floor_interleaved.to_json(),
            "concurrent": [tj(&c16), tj(&c256)],
            "concurrent_preallocation_off": [tj(&c256_growing)],
        }),
        figures,
    })
}
