//! `tj follow` (a live read replica: keep a projection in this process up to date with a
//! journal another process writes) and `tj tail --follow` (print events as they become durable):
//! thin loops over the library's `Follower` and `projection::Replica`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use torrent_journal::follow::{FollowItem, FollowOptions, Follower};
use torrent_journal::projection::{
    CATCH_UP_BATCH_EVENTS, Replica, ReplicaOpen, ReplicaTarget, Resync,
};
use torrent_journal::storage::RealStorage;
use torrent_journal::{JournalReader, event};

use crate::{CmdResult, Failure, bounds};

#[derive(Debug, Args)]
pub struct FollowArgs {
    /// Store directory (the journal another process writes).
    dir: PathBuf,
    /// The replica to keep up to date: `sqlite:PATH` or `files:DIR`. It resumes from its own
    /// checkpoint (rebuilt from scratch when that is not in this journal).
    #[arg(long, value_parser = bounds::parsed::<ReplicaTarget>)]
    into: ReplicaTarget,
    /// Shard the file projection into `torrents/<first two hex>/`.
    #[arg(long)]
    shard: bool,
    /// Forget what the replica holds and rebuild it from the start of the journal.
    #[arg(long)]
    rebuild: bool,
    #[command(flatten)]
    flags: FollowFlags,
}

/// How long to follow, and how. Shared by `tj follow` and `tj tail --follow`.
#[derive(Debug, Clone, Args)]
pub struct FollowFlags {
    /// Re-check the journal at least this often, file notification or not (1..=3600000).
    #[arg(long, allow_negative_numbers = true, default_value_t = 100, value_parser = bounds::ranged::<u64>(1, bounds::MAX_INTERVAL_MS))]
    pub poll_interval_ms: u64,
    /// Show events once written instead of once durable: lower latency, but may show events a
    /// power cut takes back.
    #[arg(long)]
    pub read_ahead: bool,
    /// Stop (exit 0) once seq N has been applied or printed. Default: follow until Ctrl-C.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = bounds::seq())]
    pub exit_at_seq: Option<u64>,
    /// Stop (exit 0) after this long without a new event (1..=2592000000, 30 days).
    #[arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = bounds::ranged::<u64>(1, bounds::MAX_IDLE_MS))]
    pub idle_exit_ms: Option<u64>,
}

impl FollowFlags {
    /// Whether any flag differs from its default (they need `--follow` on `tj tail`).
    pub fn any_set(&self) -> bool {
        self.poll_interval_ms != 100
            || self.read_ahead
            || self.exit_at_seq.is_some()
            || self.idle_exit_ms.is_some()
    }

    fn options(&self, from_seq: u64) -> FollowOptions {
        FollowOptions {
            from_seq,
            poll_interval_ms: self.poll_interval_ms.max(1),
            read_ahead: self.read_ahead,
            ..FollowOptions::default()
        }
    }
}

/// Why following stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    ExitSeq,
    Idle,
    Interrupted,
    OutputClosed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::ExitSeq => "reached --exit-at-seq",
            Ended::Idle => "idle for --idle-exit-ms",
            Ended::Interrupted => "interrupted",
            Ended::OutputClosed => "output closed",
        })
    }
}

/// Items handled per batch (one projection transaction, one stdout flush).
const BATCH_ITEMS: usize = CATCH_UP_BATCH_EVENTS;

/// Runs `handle` on batches of items as they arrive (the first being `from_seq`'s), until
/// `--exit-at-seq` (`handle` returns the seq reached, or `None` when its output is gone),
/// `--idle-exit-ms`, Ctrl-C, or an error (the items before it are handled first).
fn drive(
    mut follower: Follower,
    from_seq: u64,
    flags: &FollowFlags,
    mut handle: impl FnMut(Vec<FollowItem>) -> Result<Option<u64>, Failure>,
) -> Result<Ended, Failure> {
    if flags.exit_at_seq.is_some_and(|n| n < from_seq) {
        return Ok(Ended::ExitSeq);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async move {
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        let idle = flags.idle_exit_ms.map(Duration::from_millis);
        loop {
            let idle_timer = async {
                match idle {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            let first = tokio::select! {
                item = follower.next() => item,
                _ = &mut interrupted => return Ok(Ended::Interrupted),
                () = idle_timer => return Ok(Ended::Idle),
            };
            let mut failed = None;
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(item) = next.take() {
                let mut at_exit = false;
                match item {
                    Some(Ok(item)) => {
                        at_exit = flags.exit_at_seq.is_some_and(|n| item.seq() >= n);
                        batch.push(item);
                    }
                    Some(Err(err)) => failed = Some(Failure::from(err)),
                    None => failed = Some(Failure::from(anyhow::anyhow!("the follower stopped"))),
                }
                // Nothing past --exit-at-seq is handled.
                if failed.is_none() && !at_exit && batch.len() < BATCH_ITEMS {
                    next = follower.try_next().map(Some);
                }
            }
            let reached = if batch.is_empty() {
                None
            } else {
                match tokio::task::block_in_place(|| handle(batch))? {
                    Some(seq) => Some(seq),
                    None => return Ok(Ended::OutputClosed),
                }
            };
            if let Some(failure) = failed {
                return Err(failure);
            }
            if let (Some(reached), Some(exit_at)) = (reached, flags.exit_at_seq)
                && reached >= exit_at
            {
                return Ok(Ended::ExitSeq);
            }
        }
    })
}

pub fn run(args: FollowArgs, quiet: bool) -> CmdResult {
    // Fail with a usage error when DIR is not a journal at all.
    let reader = JournalReader::open(&args.dir)?;
    let mut replica = Replica::open(&args.into, args.shard, ReplicaOpen::Keep)?;
    if args.rebuild {
        replica.reset()?;
    }
    let from_seq = replica.resume(&reader)?;
    let follower = Follower::start(
        Arc::new(RealStorage),
        &args.dir,
        args.flags.options(from_seq),
    )?;
    if !quiet {
        eprintln!(
            "tj follow: following {} from seq {from_seq} into {}",
            args.dir.display(),
            replica.name()
        );
    }
    let mut applied = 0u64;
    let mut resyncs = 0u64;
    let ended = drive(follower, from_seq, &args.flags, |items| {
        applied += replica.apply_items(items, &mut |resync| {
            resyncs += 1;
            if !quiet {
                let Resync { before_seq, seq, at } = resync;
                eprintln!(
                    "tj follow: resynchronized from snapshot at seq {seq} ({at}): compaction removed events {}..={seq} before this replica read them",
                    before_seq + 1
                );
            }
        })?;
        Ok(Some(replica.checkpoint().seq))
    })?;
    if !quiet {
        crate::emit(&format!(
            "followed {}: applied {applied} events into {} ({resyncs} resyncs from snapshots), checkpoint seq {}; stopped: {ended}\n",
            args.dir.display(),
            replica.name(),
            replica.checkpoint().seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `tj tail DIR --follow`: JSON lines as events become durable (a `resynced` line where
/// compaction forced a resynchronization from a snapshot).
pub fn tail(dir: &Path, from_seq: u64, flags: &FollowFlags) -> CmdResult {
    JournalReader::open(dir)?;
    let follower = Follower::start(Arc::new(RealStorage), dir, flags.options(from_seq))?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    drive(follower, from_seq, flags, |items| {
        let mut reached = 0;
        for item in &items {
            reached = item.seq();
            let line = match item {
                FollowItem::Event(envelope) => event::to_json_line(envelope),
                FollowItem::Resynced { seq, at, .. } => serde_json::json!({
                    "event": "resynced",
                    "seq": seq,
                    "at": at.to_rfc3339(),
                    "message": format!(
                        "resynchronized from snapshot at seq {seq}: compaction removed the events before it"
                    ),
                }),
            };
            let mut text = serde_json::to_string(&line).map_err(anyhow::Error::from)?;
            text.push('\n');
            if write_or_closed(&mut out, text.as_bytes())? {
                return Ok(None);
            }
        }
        // A closed pipe (`tj tail --follow | head`) is a normal way to stop reading.
        Ok((!write_or_closed(&mut out, &[])?).then_some(reached))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Writes (and with an empty `bytes`, flushes); `Ok(true)` when the reader closed the pipe.
fn write_or_closed(out: &mut impl Write, bytes: &[u8]) -> Result<bool, Failure> {
    let written = if bytes.is_empty() {
        out.flush()
    } else {
        out.write_all(bytes)
    };
    match written {
        Ok(()) => Ok(false),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        Err(err) => Err(Failure::from(err)),
    }
}
