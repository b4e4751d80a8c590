//! `tj-bench`: torrent-journal's benchmarks. Each section is its own module with a
//! `run(&Context) -> anyhow::Result<SectionReport>`, listed in [`SECTIONS`]; `--only NAME`
//! selects sections (default: all), `--quick` shrinks them, `--json FILE` writes every section's
//! numbers. Sections that need a second process re-execute this binary with a hidden
//! subcommand (see [`Child`]).
//!
//! Run with `cargo run --release -p tj-bench -- [--only follow] [--quick] [--json FILE]`.
#![forbid(unsafe_code)]

mod follow_latency;
mod stats;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Map, Value};

/// torrent-journal benchmarks: prints a markdown table per section.
#[derive(Debug, Parser)]
#[command(name = "tj-bench")]
struct Cli {
    /// Run only this section (repeatable). Sections: follow.
    #[arg(long, value_name = "SECTION")]
    only: Vec<String>,
    /// Smaller runs (for CI and quick checks).
    #[arg(long)]
    quick: bool,
    /// Also write the numbers as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Put the benchmark journals here (default: a temporary directory, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    child: Option<Child>,
}

/// Processes the sections start as children of this binary (not for people).
#[derive(Debug, Subcommand)]
enum Child {
    /// The follower process of the `follow` section.
    #[command(hide = true)]
    FollowChild(follow_latency::ChildArgs),
}

/// What every section gets.
#[derive(Debug)]
pub struct Context {
    /// `--quick` was given.
    pub quick: bool,
    /// A directory the section may use (each section takes a subdirectory named after it).
    pub work_dir: PathBuf,
    /// This binary, to start child processes.
    pub exe: PathBuf,
}

/// What a section reports.
#[derive(Debug)]
pub struct SectionReport {
    /// Markdown: a heading, a table and a few lines of explanation.
    pub markdown: String,
    /// The same numbers, machine-readable.
    pub json: Value,
}

/// One benchmark section.
struct Section {
    name: &'static str,
    run: fn(&Context) -> anyhow::Result<SectionReport>,
}

/// Every section, in the order they run.
const SECTIONS: &[Section] = &[Section {
    name: "follow",
    run: follow_latency::run,
}];

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(child) = cli.child {
        return match child {
            Child::FollowChild(args) => follow_latency::child(&args),
        };
    }
    for name in &cli.only {
        if !SECTIONS.iter().any(|s| s.name == name) {
            let known: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
            anyhow::bail!("unknown section {name:?}; sections: {}", known.join(", "));
        }
    }
    let temp = tempfile::tempdir().context("create a temporary directory")?;
    let work_dir = cli.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work_dir).with_context(|| format!("create {}", work_dir.display()))?;
    let context = Context {
        quick: cli.quick,
        work_dir,
        exe: std::env::current_exe().context("find this binary")?,
    };
    let mut results = Map::new();
    for section in SECTIONS
        .iter()
        .filter(|s| cli.only.is_empty() || cli.only.iter().any(|o| o == s.name))
    {
        let report =
            (section.run)(&context).with_context(|| format!("section {}", section.name))?;
        println!("{}", report.markdown);
        results.insert(section.name.to_string(), report.json);
    }
    if let Some(path) = &cli.json {
        let all = serde_json::json!({ "quick": cli.quick, "sections": results });
        std::fs::write(path, serde_json::to_string_pretty(&all)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}
