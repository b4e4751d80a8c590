//! `tj replay`: rebuild a projection from the journal, from scratch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use torrent_journal::JournalReader;
use torrent_journal::projection::{
    self, FileProjection, FileProjectionOptions, Projection, SqliteOptions, SqliteProjection,
};
use torrent_journal::storage::RealStorage;

use crate::{CmdResult, Failure};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Store directory.
    dir: PathBuf,
    /// The projection to (re)build: `sqlite:PATH` or `files:DIR`.
    #[arg(long, value_parser = parse_target)]
    into: Target,
    /// Shard the file projection into `torrents/<first two hex>/`.
    #[arg(long)]
    shard: bool,
}

/// Where a projection goes.
#[derive(Debug, Clone)]
pub enum Target {
    Sqlite(PathBuf),
    Files(PathBuf),
}

pub fn parse_target(text: &str) -> Result<Target, String> {
    match text.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(Target::Sqlite(path.into())),
        Some(("files", dir)) if !dir.is_empty() => Ok(Target::Files(dir.into())),
        _ => Err(format!("expected sqlite:PATH or files:DIR, got {text:?}")),
    }
}

impl Target {
    /// Opens the projection this target names.
    pub fn open(&self, shard: bool) -> torrent_journal::Result<Box<dyn Projection>> {
        Ok(match self {
            Target::Sqlite(path) => {
                Box::new(SqliteProjection::open(path, SqliteOptions::default())?)
            }
            Target::Files(dir) => Box::new(FileProjection::open_empty(
                Arc::new(RealStorage),
                dir,
                FileProjectionOptions {
                    shard,
                    ..FileProjectionOptions::default()
                },
            )?),
        })
    }
}

pub fn run(args: ReplayArgs, quiet: bool) -> CmdResult {
    let reader = JournalReader::open(&args.dir)?;
    let head = reader.head()?.map_or(0, |(seq, _)| seq);
    let mut projection = args.into.open(args.shard)?;
    projection.reset()?;
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(head)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .map_err(Failure::usage)?
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let started = Instant::now();
    let done = projection::catch_up(projection.as_mut(), &reader, &mut |seq| {
        bar.set_position(seq)
    })?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if !quiet {
        crate::emit(&format!(
            "replayed {} events into {} in {:.1} ms: {:.0} events/s (checkpoint seq {})\n",
            done.applied,
            projection.name(),
            elapsed.as_secs_f64() * 1e3,
            done.applied as f64 / elapsed.as_secs_f64().max(1e-9),
            done.checkpoint.seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
