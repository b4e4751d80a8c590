//! `tj demo`: a simulated client session appending through the library from concurrent tasks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use torrent_journal::journal::{self, JournalReader};
use torrent_journal::model::Timestamp;
use torrent_journal::simulate::Simulation;
use torrent_journal::{Durability, JournalOptions, StoreOptions, TorrentStore};

use crate::{CmdResult, Failure, bounds};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Store directory (created if missing; an existing journal is continued).
    #[arg(long, default_value = "./tj-data")]
    dir: PathBuf,
    /// Torrents the simulated client adds (1..=1000000).
    #[arg(long, allow_negative_numbers = true, default_value_t = 200, value_parser = bounds::ranged::<usize>(1, bounds::MAX_TORRENTS))]
    torrents: usize,
    /// Events to append (default: 50 per torrent; 0..=100000000).
    #[arg(long, allow_negative_numbers = true, value_parser = bounds::ranged::<usize>(0, bounds::MAX_EVENTS))]
    events: Option<usize>,
    /// Concurrent client tasks (1..=1024).
    #[arg(long, allow_negative_numbers = true, default_value_t = 16, value_parser = bounds::ranged::<usize>(1, bounds::MAX_TASKS))]
    tasks: usize,
    /// `every-batch` (default), `interval:T` (T in ms, or a duration such as `250ms` or `2s`;
    /// 1 ms to 1 h) or `never`.
    #[arg(long, default_value = "every-batch", value_parser = bounds::durability)]
    durability: Durability,
    /// Segment size in MiB (1..=1024).
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = bounds::ranged::<u64>(1, bounds::MAX_SEGMENT_MIB))]
    segment_mib: u64,
    /// Projections to materialize besides memory: `sqlite` (DIR/state.db), `files`
    /// (DIR/files/), `memory` (none on disk) or `all`.
    #[arg(long, value_enum, default_value_t = Projections::Sqlite)]
    projection: Projections,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// `--projection`: which disk projections the demo store keeps besides memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Projections {
    Sqlite,
    Files,
    Memory,
    All,
}

impl Projections {
    fn sqlite(self) -> bool {
        matches!(self, Self::Sqlite | Self::All)
    }

    fn files(self) -> bool {
        matches!(self, Self::Files | Self::All)
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    dir: PathBuf,
    events: u64,
    first_seq: u64,
    last_seq: u64,
    torrents: usize,
    tasks: usize,
    bytes: u64,
    elapsed_ms: f64,
    events_per_sec: f64,
    mib_per_sec: f64,
    durability: String,
    projections: Vec<String>,
    projections_caught_up_ms: f64,
    /// Time to open the store: lock, recovery, projections caught up.
    opened_ms: f64,
}

/// The store's options for the flags, and the projections it keeps (for the summary).
fn store_options(args: &DemoArgs) -> Result<(StoreOptions, Vec<String>), Failure> {
    let segment_size_bytes = args
        .segment_mib
        .checked_mul(1024 * 1024)
        .ok_or_else(|| Failure::usage("--segment-mib is too large"))?;
    let journal = JournalOptions {
        durability: args.durability,
        segment_size_bytes,
        ..JournalOptions::default()
    };
    let mut options = StoreOptions {
        journal,
        ..StoreOptions::default()
    };
    let mut projections = vec!["memory".to_owned()];
    if args.projection.sqlite() {
        options = options.with_sqlite();
        projections.push(format!(
            "sqlite:{}",
            args.dir.join(StoreOptions::SQLITE_FILE_NAME).display()
        ));
    }
    if args.projection.files() {
        options = options.with_files();
        projections.push(format!(
            "files:{}",
            args.dir.join(StoreOptions::FILES_DIR_NAME).display()
        ));
    }
    Ok((options, projections))
}

pub fn run(args: DemoArgs, quiet: bool) -> CmdResult {
    // The parsers bound every number; checked all the same, so no input can overflow.
    let events = match args.events {
        Some(events) => events,
        None => args
            .torrents
            .checked_mul(50)
            .ok_or_else(|| Failure::usage("--torrents is too large"))?,
    };
    let (options, projections) = store_options(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let opening = Instant::now();
    let store = runtime.block_on(TorrentStore::open(&args.dir, options))?;
    let opened_ms = opening.elapsed().as_secs_f64() * 1e3;
    let bytes_before = journal_bytes(&args.dir)?;
    let first_seq = store.last_seq() + 1;
    let sim = Simulation {
        // Seeding with the next seq makes a continued journal get new torrents.
        seed: first_seq,
        torrents: args.torrents,
        events,
        tasks: args.tasks,
        start: Timestamp::now(),
    };
    let progress = progress_bar(events as u64, quiet);
    let started = Instant::now();
    let appended = runtime.block_on(append_all(&store, sim, &progress))?;
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    runtime.block_on(store.flush_projections())?;
    let caught_up = started.elapsed();
    runtime.block_on(store.close())?;
    let summary = Summary {
        dir: args.dir.clone(),
        events: appended,
        first_seq,
        last_seq: first_seq + appended - 1,
        torrents: args.torrents,
        tasks: args.tasks,
        bytes: journal_bytes(&args.dir)? - bytes_before,
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
        events_per_sec: appended as f64 / elapsed.as_secs_f64().max(1e-9),
        mib_per_sec: 0.0,
        durability: args.durability.to_string(),
        projections,
        projections_caught_up_ms: caught_up.as_secs_f64() * 1e3,
        opened_ms,
    };
    let summary = Summary {
        mib_per_sec: summary.bytes as f64 / 1048576.0 / elapsed.as_secs_f64().max(1e-9),
        ..summary
    };
    if args.json || !quiet {
        print_summary(&summary, args.json)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn append_all(
    store: &TorrentStore,
    sim: Simulation,
    progress: &ProgressBar,
) -> anyhow::Result<u64> {
    let mut handles = Vec::new();
    for task in 0..sim.tasks {
        let store = store.clone();
        let progress = progress.clone();
        handles.push(tokio::spawn(async move {
            let mut appended = 0u64;
            for event in sim.task(task) {
                store.append_event(event).await?;
                appended += 1;
                progress.inc(1);
            }
            Ok::<u64, torrent_journal::Error>(appended)
        }));
    }
    let mut total = 0;
    for handle in handles {
        total += handle.await.context("a client task panicked")??;
    }
    Ok(total)
}

fn progress_bar(len: u64, quiet: bool) -> Arc<ProgressBar> {
    if quiet {
        return Arc::new(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} appending [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    Arc::new(bar)
}

fn journal_bytes(dir: &Path) -> anyhow::Result<u64> {
    let reader = JournalReader::open(dir)?;
    let mut total = 0;
    for segment in reader.segments()? {
        total += std::fs::metadata(&segment.path)
            .with_context(|| format!("stat {}", segment.path.display()))?
            .len();
    }
    Ok(total)
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        return crate::emit(&format!("{}\n", serde_json::to_string_pretty(summary)?));
    }
    let mut text = String::new();
    writeln!(
        text,
        "demo: appended {} events (seq {}..={}) for {} torrents from {} tasks",
        summary.events, summary.first_seq, summary.last_seq, summary.torrents, summary.tasks
    )?;
    writeln!(
        text,
        "      {} bytes in {:.1} ms: {:.0} events/s, {:.2} MiB/s, durability {}",
        summary.bytes,
        summary.elapsed_ms,
        summary.events_per_sec,
        summary.mib_per_sec,
        summary.durability
    )?;
    writeln!(text, "      store opened in {:.1} ms", summary.opened_ms)?;
    writeln!(
        text,
        "      journal: {}",
        journal::journal_dir(&summary.dir).display()
    )?;
    writeln!(
        text,
        "      projections: {} (all caught up {:.1} ms after the first append)",
        summary.projections.join(", "),
        summary.projections_caught_up_ms
    )?;
    crate::emit(&text)
}
