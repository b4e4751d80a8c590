//! `tj restore`, `tj export`, `tj history`, `tj compact`, `tj undelete`: going back in time and
//! keeping history short. Thin glue over `torrent_journal::{history, compaction}`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::history::{self, PointInTime, Target};
use torrent_journal::model::InfoHash;
use torrent_journal::projection::{Replica, ReplicaOpen, ReplicaTarget};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalReader, StoreOptions, event};

use crate::{CmdResult, Failure, bounds, emit};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Store directory.
    dir: PathBuf,
    /// The point: a seq, an RFC 3339 time (the last event at or before it), or `head`.
    #[arg(long)]
    at: Target,
    /// Where to write the projection as of that point: `sqlite:PATH` or `files:DIR`.
    #[arg(long, value_parser = bounds::parsed::<ReplicaTarget>)]
    into: ReplicaTarget,
    /// Also read segments compaction moved to this directory.
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Replace an existing target (without it, an existing PATH or DIR is refused, exit 2).
    #[arg(long)]
    force: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Store directory.
    dir: PathBuf,
    /// The point: a seq, an RFC 3339 time, or `head` (default).
    #[arg(long, default_value = "head")]
    at: Target,
    /// Also read segments compaction moved to this directory.
    #[arg(long)]
    archive: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Store directory.
    dir: PathBuf,
    /// The torrent's info hash (40 or 64 hex characters).
    info_hash: InfoHash,
}

#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Store directory (may be open by a live writer in another process).
    dir: PathBuf,
    /// Keep the events committed in the last DURATION before the head's commit time (e.g. 7d,
    /// 12h, "1d 12h", 2w; read by humantime).
    #[arg(long, allow_hyphen_values = true, conflicts_with = "retain_events", value_parser = crate::bounds::duration)]
    retain: Option<Duration>,
    /// Keep the last N events.
    #[arg(long, allow_negative_numbers = true, value_parser = crate::bounds::seq())]
    retain_events: Option<u64>,
    /// Move removed segments here instead of deleting them (created, durably, if missing).
    #[arg(long)]
    archive: Option<PathBuf>,
    /// Print a JSON report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct UndeleteArgs {
    /// Store directory (needs the writer's lock: stop the client first).
    dir: PathBuf,
    /// The removed torrent's info hash.
    info_hash: InfoHash,
}

fn spinner(message: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn point(
    dir: &Path,
    archive: Option<&Path>,
    at: Target,
    quiet: bool,
) -> torrent_journal::Result<PointInTime> {
    let bar = spinner(&format!("materializing {at}"), quiet);
    let result = history::state_at_with_archive(Arc::new(RealStorage), dir, archive, at);
    bar.finish_and_clear();
    result
}

/// The live projections of `dir`: restore never writes over them.
fn refuse_live_target(dir: &Path, into: &ReplicaTarget) -> Result<(), Failure> {
    let live = [
        dir.join(StoreOptions::SQLITE_FILE_NAME),
        dir.join(StoreOptions::FILES_DIR_NAME),
    ];
    let path = into.path();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if live.iter().any(|l| same(l, path)) {
        return Err(Failure::usage(format!(
            "{} is a live projection of {}; restore into another path",
            path.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// An existing target is replaced only with `--force`.
fn refuse_existing_target(into: &ReplicaTarget, force: bool) -> Result<(), Failure> {
    let path = into.path();
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(Failure::usage(format!(
            "{} exists; restore into a new path, or pass --force to replace it",
            path.display()
        )));
    }
    Ok(())
}

pub fn restore(args: RestoreArgs, quiet: bool) -> CmdResult {
    JournalReader::open(&args.dir)?;
    refuse_live_target(&args.dir, &args.into)?;
    refuse_existing_target(&args.into, args.force)?;
    let started = Instant::now();
    let point = point(&args.dir, args.archive.as_deref(), args.at, quiet)?;
    let mut replica = Replica::open(&args.into, false, ReplicaOpen::Empty)?;
    replica.install(&point.state)?;
    let summary = json!({
        "seq": point.seq,
        "at": point.at.to_rfc3339(),
        "from_snapshot": point.snapshot,
        "torrents": point.state.torrents.len(),
        "projection": replica.name(),
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    });
    if args.json {
        emit(&format!("{summary}\n"))?;
    } else if !quiet {
        emit(&format!(
            "restored seq {} ({}) into {}: {} torrents\n",
            point.seq,
            point.at.to_rfc3339(),
            replica.name(),
            point.state.torrents.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs, quiet: bool) -> CmdResult {
    JournalReader::open(&args.dir)?;
    let point = point(&args.dir, args.archive.as_deref(), args.at, quiet)?;
    let torrents: Vec<_> = point.state.torrents.values().collect();
    let document = json!({
        "seq": point.seq,
        "at": point.at.to_rfc3339(),
        "torrents": torrents,
        "session": point.state.session,
    });
    emit(&format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    Ok(ExitCode::SUCCESS)
}

pub fn history(args: HistoryArgs, quiet: bool) -> CmdResult {
    let reader = JournalReader::open(&args.dir)?;
    let mut text = String::new();
    for envelope in history::torrent_history(&reader, &args.info_hash)? {
        text.push_str(&serde_json::to_string(&event::to_json_line(&envelope))?);
        text.push('\n');
    }
    if text.is_empty() {
        // Not an error, a result (like grep finding no line): exit 4 says it, -q keeps quiet.
        if !quiet {
            eprintln!(
                "tj: no retained event of torrent {} in {}",
                args.info_hash,
                args.dir.display()
            );
        }
        return Ok(ExitCode::from(crate::EXIT_NOTHING_FOUND));
    }
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub fn compact(args: CompactArgs, quiet: bool) -> CmdResult {
    JournalReader::open(&args.dir)?;
    let retain = match (&args.retain, args.retain_events) {
        (Some(duration), _) => Retention::Duration(*duration),
        (None, Some(events)) => Retention::Events(events),
        (None, None) => Retention::None,
    };
    let options = CompactOptions {
        retain,
        archive: args.archive.clone(),
        ..CompactOptions::default()
    };
    let bar = spinner("compacting", quiet);
    let started = Instant::now();
    let report = compaction::compact(Arc::new(RealStorage), &args.dir, &options)?;
    bar.finish_and_clear();
    let summary = json!({
        "snapshot_seq": report.snapshot_seq,
        "snapshot": report.snapshot_path,
        "snapshot_written": report.snapshot_written,
        "previous_snapshot_seq": report.previous_snapshot_seq,
        "tombstones": report.tombstones,
        "segments_removed": report.segments_removed.len(),
        "segments_archived": report.segments_archived.len(),
        "snapshots_removed": report.snapshots_removed.len(),
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
    });
    if args.json {
        emit(&format!("{summary}\n"))?;
    } else if !quiet {
        let at = report
            .snapshot_seq
            .map_or("nothing to compact".to_owned(), |s| {
                format!("snapshot at seq {s}")
            });
        let kept = match report.previous_snapshot_seq {
            Some(0) => "; the journal is kept from seq 1 (the next compaction removes what \
                        this snapshot covers)"
                .to_owned(),
            Some(p) => format!("; the journal is kept from the previous snapshot, seq {p}"),
            None => String::new(),
        };
        emit(&format!(
            "compacted {}: {at}, {} segments removed ({} archived), {} -> {} bytes{kept}\n",
            args.dir.display(),
            report.segments_removed.len(),
            report.segments_archived.len(),
            report.bytes_before,
            report.bytes_after
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn undelete(args: UndeleteArgs, quiet: bool) -> CmdResult {
    JournalReader::open(&args.dir)?;
    let Some(tombstone) =
        history::find_tombstone(Arc::new(RealStorage), &args.dir, &args.info_hash)?
    else {
        return Err(Failure::usage(format!(
            "no removed torrent {} in the retained history or the snapshots' tombstones (it is live, was never removed, or its tombstone expired)",
            args.info_hash
        )));
    };
    let journal = Journal::open(&args.dir)?;
    let receipt = journal.append(&history::undelete_event(&tombstone))?;
    journal.close()?;
    if !quiet {
        emit(&format!(
            "restored {} (removed at seq {}, {}) as seq {}\n",
            args.info_hash,
            tombstone.removed_seq,
            tombstone.removed_at.to_rfc3339(),
            receipt.first_seq
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
