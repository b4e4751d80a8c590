//! `tj replay`: rebuild a projection from the journal, from scratch.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use torrent_journal::JournalReader;
use torrent_journal::history::Target;
use torrent_journal::projection::{Replica, ReplicaOpen, ReplicaTarget};

use crate::{CmdResult, Failure, bounds};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Store directory.
    dir: PathBuf,
    /// The projection to (re)build: `sqlite:PATH` or `files:DIR`.
    #[arg(long, value_parser = bounds::parsed::<ReplicaTarget>)]
    into: ReplicaTarget,
    /// Shard the file projection into `torrents/<first two hex>/`.
    #[arg(long)]
    shard: bool,
}

pub fn run(args: ReplayArgs, quiet: bool) -> CmdResult {
    let reader = JournalReader::open(&args.dir)?;
    let head = reader.head()?.map_or(0, |(seq, _)| seq);
    let mut replica = Replica::open(&args.into, args.shard, ReplicaOpen::Empty)?;
    replica.reset()?;
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
    let done = replica.replay(&reader, Target::Head, &mut |seq| bar.set_position(seq))?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    if !quiet {
        crate::emit(&format!(
            "replayed {} events into {} in {:.1} ms: {:.0} events/s (checkpoint seq {})\n",
            done.applied,
            replica.name(),
            elapsed.as_secs_f64() * 1e3,
            done.applied as f64 / elapsed.as_secs_f64().max(1e-9),
            done.checkpoint.seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
