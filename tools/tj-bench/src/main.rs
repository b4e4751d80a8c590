//! `tj-bench`: torrent-journal's benchmarks. Each section is its own module with a
//! `run(&Context) -> anyhow::Result<SectionReport>`, listed in [`SECTIONS`]; `--only NAME`
//! selects sections (default: all), `--quick` shrinks them, `--json FILE` writes every figure,
//! its baseline and ratio, and every section's numbers. Sections that need a second process
//! re-execute this binary with a hidden subcommand (see [`Internal`]).
//!
//! Baselines (the disk's floor, the seed's three strategies) are measured in the same run, so
//! the ratios hold on a noisy machine even when the absolute numbers move. Sections run in
//! order and later ones read earlier ones' values for their ratios (a ratio whose baseline's
//! section was not selected is left out).
//!
//! Run with `cargo run --release -p tj-bench -- [--quick] [--json FILE] [--dir DIR] [--keep]`.
#![forbid(unsafe_code)]

mod append;
mod common;
mod figures;
mod floor;
mod follow_latency;
mod memory_rss;
mod replay;
mod seed;
mod stats;
mod store_ops;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

use crate::figures::{Figure, Values};

/// torrent-journal benchmarks: prints a markdown table per section and a summary table.
#[derive(Debug, Parser)]
#[command(name = "tj-bench")]
struct Cli {
    /// Run only this section (repeatable). Sections: floor, seed, append, store, replay,
    /// memory, follow.
    #[arg(long, value_name = "SECTION")]
    only: Vec<String>,
    /// Smaller runs (under 2 minutes on 2 cores; the replay journal is 100k events / 10k
    /// torrents instead of 1M / 100k).
    #[arg(long)]
    quick: bool,
    /// Also write every figure, baseline and ratio as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Put the benchmark files in a new subdirectory of DIR (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Keep the benchmark files instead of removing them at the end.
    #[arg(long)]
    keep: bool,
    /// Journal segment preallocation for the append section (default: the library's default;
    /// 0 turns it off, to compare).
    #[arg(long, value_name = "BYTES")]
    preallocate_bytes: Option<u64>,
    #[command(subcommand)]
    child: Option<Internal>,
}

/// Processes the sections start as children of this binary (not for people).
#[derive(Debug, Subcommand)]
enum Internal {
    /// The follower process of the `follow` section.
    #[command(hide = true)]
    FollowChild(follow_latency::ChildArgs),
    /// The measuring process of the `memory` section.
    #[command(hide = true)]
    MemoryChild(memory_rss::ChildArgs),
    /// Replays a kept store's journal into memory (for profiling).
    #[command(hide = true)]
    ReplayMemory(replay::ProfileArgs),
    /// Opens a kept store (for profiling).
    #[command(hide = true)]
    OpenStore(replay::ProfileArgs),
}

/// What every section gets.
#[derive(Debug)]
pub struct Context {
    /// `--quick` was given.
    pub quick: bool,
    /// `--keep` was given.
    pub keep: bool,
    /// A directory the section may use (each section takes a subdirectory named after it).
    pub work_dir: PathBuf,
    /// This binary, to start child processes.
    pub exe: PathBuf,
    /// Values earlier sections measured (baselines for later ratios).
    pub values: Values,
    /// When the run started (for progress lines).
    pub started: Instant,
    /// `--preallocate-bytes`, if given.
    pub preallocate_bytes: Option<u64>,
}

/// What a section reports.
#[derive(Debug)]
pub struct SectionReport {
    /// Markdown: a heading, a table and a few lines of explanation.
    pub markdown: String,
    /// The same numbers, machine-readable.
    pub json: Value,
    /// Its rows of the summary table.
    pub figures: Vec<Figure>,
}

/// One benchmark section.
struct Section {
    name: &'static str,
    run: fn(&Context) -> anyhow::Result<SectionReport>,
}

/// Every section, in the order they run (baselines first).
const SECTIONS: &[Section] = &[
    Section {
        name: "floor",
        run: floor::run,
    },
    Section {
        name: "seed",
        run: seed::run,
    },
    Section {
        name: "append",
        run: append::run,
    },
    Section {
        name: "store",
        run: store_ops::run,
    },
    Section {
        name: "replay",
        run: replay::run,
    },
    Section {
        name: "memory",
        run: memory_rss::run,
    },
    Section {
        name: "follow",
        run: follow_latency::run,
    },
];

/// A command's first line of output, or `?`.
fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn machine() -> Value {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    serde_json::json!({
        "cores": cores,
        "kernel": command_line("uname", &["-r"]),
        "meminfo": mem_total,
        "cpu": std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|c| c
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())),
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(child) = cli.child {
        return match child {
            Internal::FollowChild(args) => follow_latency::child(&args),
            Internal::MemoryChild(args) => memory_rss::child(&args),
            Internal::ReplayMemory(args) => replay::profile_memory(&args),
            Internal::OpenStore(args) => replay::profile_open(&args),
        };
    }
    for name in &cli.only {
        if !SECTIONS.iter().any(|s| s.name == name) {
            let known: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
            anyhow::bail!("unknown section {name:?}; sections: {}", known.join(", "));
        }
    }
    let parent = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    let temp = tempfile::Builder::new()
        .prefix("tj-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a directory in {}", parent.display()))?;
    let context = Context {
        quick: cli.quick,
        keep: cli.keep,
        work_dir: temp.path().to_path_buf(),
        exe: std::env::current_exe().context("find this binary")?,
        values: Values::default(),
        started: Instant::now(),
        preallocate_bytes: cli.preallocate_bytes,
    };
    let (events, torrents) = replay::scale(cli.quick);
    println!(
        "# tj-bench{}\n\nReplay/open journal: {events} events over {torrents} torrents{}. \
         Ratios compare with baselines measured in this run.\n",
        if cli.quick { " --quick" } else { "" },
        if cli.quick {
            " (--quick: scaled down from 1M / 100k)"
        } else {
            ""
        }
    );
    let mut results = Map::new();
    let mut all_figures = Vec::new();
    for section in SECTIONS
        .iter()
        .filter(|s| cli.only.is_empty() || cli.only.iter().any(|o| o == s.name))
    {
        common::progress(section.name, "start", context.started);
        let report =
            (section.run)(&context).with_context(|| format!("section {}", section.name))?;
        common::progress(section.name, "done", context.started);
        println!("{}", report.markdown);
        results.insert(section.name.to_string(), report.json);
        all_figures.extend(report.figures);
    }
    let elapsed = context.started.elapsed().as_secs_f64();
    println!("## summary\n\n{}", figures::table(&all_figures));
    let missed: Vec<&str> = all_figures
        .iter()
        .filter(|f| f.goal.as_ref().is_some_and(|g| !g.met))
        .map(|f| f.id.as_str())
        .collect();
    println!(
        "Goals: {} of {} met{}. Run time {elapsed:.0} s.",
        all_figures
            .iter()
            .filter(|f| f.goal.as_ref().is_some_and(|g| g.met))
            .count(),
        all_figures.iter().filter(|f| f.goal.is_some()).count(),
        if missed.is_empty() {
            String::new()
        } else {
            format!(" (missed: {})", missed.join(", "))
        }
    );
    if let Some(path) = &cli.json {
        let figures: Map<String, Value> = all_figures
            .iter()
            .map(|f| (f.id.clone(), f.to_json()))
            .collect();
        let all = serde_json::json!({
            "quick": cli.quick,
            "scale": { "events": events, "torrents": torrents },
            "seconds": elapsed,
            "machine": machine(),
            "figures": figures,
            "sections": results,
        });
        std::fs::write(path, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    if cli.keep {
        let kept = temp.keep();
        eprintln!("kept the benchmark files in {}", kept.display());
    }
    Ok(())
}
