//! `tj stats`, `tj verify`, `tj tail`: read-only views of a journal.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use torrent_journal::journal::{self, JournalReader, ProblemKind};
use torrent_journal::storage::RealStorage;
use torrent_journal::verify::VerifyReport;
use torrent_journal::{event, inspect};

use crate::CmdResult;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Store directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Store directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Store directory.
    dir: PathBuf,
    /// First seq to print (default: the first the journal still holds, since after compaction
    /// the earlier events live only in a snapshot, see `tj export --at`; with --follow: 1, and a
    /// compacted journal starts with a `resynced` record).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::bounds::seq())]
    from: Option<u64>,
    /// Keep printing events as they become durable (until Ctrl-C or an exit flag below).
    #[arg(long)]
    follow: bool,
    /// (With --follow.)
    #[command(flatten)]
    follow_flags: crate::follow::FollowFlags,
}

pub fn stats(args: StatsArgs, quiet: bool) -> CmdResult {
    let reader = JournalReader::open(&args.dir)?;
    let stats = inspect::stats(&reader)?;
    if args.json {
        crate::emit(&format!("{}\n", serde_json::to_string_pretty(&stats)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    let time =
        |t: Option<torrent_journal::model::Timestamp>| t.map_or("-".into(), |t| t.to_string());
    let seq = |s: Option<u64>| s.map_or("-".into(), |s| s.to_string());
    writeln!(text, "journal       {}", args.dir.display())?;
    writeln!(text, "segments      {}", stats.extent.segments)?;
    writeln!(text, "bytes         {}", stats.extent.bytes)?;
    writeln!(text, "events        {}", stats.extent.events)?;
    writeln!(
        text,
        "first seq     {}  at {}",
        seq(stats.extent.first_seq),
        time(stats.extent.first_at)
    )?;
    writeln!(
        text,
        "last seq      {}  at {}",
        seq(stats.extent.last_seq),
        time(stats.extent.last_at)
    )?;
    if let Some(first) = stats.extent.first_seq.filter(|&seq| seq > 1) {
        writeln!(
            text,
            "retained      from seq {first} (compaction moved the events before it into a snapshot)"
        )?;
    }
    writeln!(text, "torrents seen {}", stats.torrents_seen)?;
    for (kind, count) in &stats.events_by_kind {
        writeln!(text, "  {kind:<22}{count}")?;
    }
    crate::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Verification with a progress bar over the segments' bytes.
struct WithProgress<'a> {
    report: &'a mut VerifyReport,
    bar: indicatif::ProgressBar,
}

impl journal::verify::Visitor for WithProgress<'_> {
    fn segment(&mut self, info: &torrent_journal::journal::SegmentInfo, bytes: u64) {
        self.report.segment(info, bytes);
        self.bar.inc(bytes);
    }

    fn frame(
        &mut self,
        info: &torrent_journal::journal::SegmentInfo,
        offset: usize,
        frame: &torrent_journal::journal::FrameRef<'_>,
    ) {
        self.report.frame(info, offset, frame);
    }

    fn problem(&mut self, problem: journal::Problem, damaged: &[u8]) {
        self.report.problem(problem, damaged);
    }
}

pub fn verify(args: VerifyArgs, quiet: bool) -> CmdResult {
    // Fail with a usage error when DIR is not a journal at all.
    let reader = JournalReader::open(&args.dir)?;
    let mut total_bytes = 0;
    for segment in reader.segments()? {
        total_bytes += std::fs::metadata(&segment.path).map_or(0, |m| m.len());
    }
    let bar = if quiet || args.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total_bytes)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} verifying [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let mut report = VerifyReport::default();
    journal::verify::walk(
        &RealStorage,
        &args.dir,
        &mut WithProgress {
            report: &mut report,
            bar: bar.clone(),
        },
    )?;
    bar.finish_and_clear();
    torrent_journal::verify::check_snapshots(&RealStorage, &args.dir, &mut report)?;
    if args.json {
        crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else if !quiet {
        print_report(&args.dir, &report)?;
    } else if report.has_damage() {
        // Damage is an error: the one line -q still prints (on stderr).
        eprintln!(
            "tj: {}: {} problem(s) found",
            args.dir.display(),
            report.problems.len()
        );
    }
    // A torn tail past the durable position is an unacknowledged write, not damage.
    Ok(if report.has_damage() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(dir: &std::path::Path, report: &VerifyReport) -> anyhow::Result<()> {
    let mut text = String::new();
    let range = match (report.extent.first_seq, report.extent.last_seq) {
        (Some(first), Some(last)) => format!("seq {first}..={last}"),
        _ => "no events".into(),
    };
    writeln!(
        text,
        "{}: {} segments, {} bytes, {} events ({range})",
        dir.display(),
        report.extent.segments,
        report.extent.bytes,
        report.extent.events
    )?;
    for problem in &report.problems {
        let seq = problem.seq.map_or(String::new(), |s| format!(" seq {s}"));
        let label = if problem.kind == ProblemKind::TornTail {
            "NOTE (an unacknowledged write past the durable position; the next open cuts it)"
        } else {
            "DAMAGE"
        };
        writeln!(
            text,
            "{label} {:?} in {} at offset {}{seq}: {} ({} bytes)",
            problem.kind,
            problem.segment.display(),
            problem.offset,
            problem.detail,
            problem.damaged_bytes
        )?;
        if !problem.affected_torrents.is_empty() {
            let hashes: Vec<String> = problem
                .affected_torrents
                .iter()
                .map(|h| h.to_hex())
                .collect();
            writeln!(
                text,
                "  torrents whose events seem affected: {}",
                hashes.join(", ")
            )?;
        }
    }
    for snapshot in &report.snapshots {
        let verdict = match (snapshot.usable, snapshot.continues_journal) {
            (false, _) => "DAMAGED (see above)",
            (true, true) => "ok, the journal continues it",
            (true, false) => "ok, restores its own seq only (the journal after it was compacted)",
        };
        writeln!(
            text,
            "snapshot seq {} ({}): {verdict}",
            snapshot.seq,
            snapshot.path.display()
        )?;
    }
    if report.is_clean() {
        let snapshots = if report.snapshots.is_empty() {
            String::new()
        } else {
            format!(" and {} snapshot(s)", report.snapshots.len())
        };
        writeln!(text, "ok: every frame verified{snapshots}")?;
    } else if !report.has_damage() {
        writeln!(text, "ok: every acknowledged frame verified")?;
    } else {
        writeln!(text, "{} problem(s) found", report.problems.len())?;
    }
    crate::emit(&text)
}

pub fn tail(args: TailArgs, quiet: bool) -> CmdResult {
    if args.follow {
        // From the start by default: on a compacted journal the follower first delivers a
        // `resynced` record (the snapshot's state is where its history starts).
        return crate::follow::tail(&args.dir, args.from.unwrap_or(1), &args.follow_flags);
    }
    if args.follow_flags.any_set() {
        return Err(crate::Failure::usage(
            "--poll-interval-ms, --read-ahead, --exit-at-seq and --idle-exit-ms need --follow",
        ));
    }
    let reader = JournalReader::open(&args.dir)?;
    // From the first retained event by default: a concurrent compaction may move it between
    // the listing and the first read, so plan again then (nothing is printed yet).
    let (first_retained, events) = torrent_journal::history::retry_if_compacted(|| {
        let first_retained = reader.first_retained_seq()?;
        let events = reader.events(args.from.unwrap_or(first_retained))?;
        Ok((first_retained, events))
    })?;
    if args.from.is_none() && first_retained > 1 && !quiet {
        eprintln!(
            "tj tail: the journal holds seq {first_retained} onward (compaction moved the events \
             before it into a snapshot)"
        );
    }
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    // The reader holds open the segments ahead of it (a bounded window), so a compaction
    // meanwhile does not cut this loop short; one that removes a segment past the window
    // ends it with `SeqNotRetained` naming the first seq not printed (exit 2): nothing is
    // skipped silently.
    for envelope in events {
        let mut line = serde_json::to_string(&event::to_json_line(&envelope?))?;
        line.push('\n');
        if let Err(err) = out.write_all(line.as_bytes()) {
            // A closed pipe (`tj tail | head`) is a normal way to stop reading.
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(ExitCode::SUCCESS);
            }
            return Err(err.into());
        }
    }
    match out.flush() {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[derive(Debug, Args)]
pub struct SalvageArgs {
    /// The damaged store directory (read only).
    dir: PathBuf,
    /// A new directory for the salvaged journal.
    #[arg(long)]
    out: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn salvage(args: SalvageArgs, quiet: bool) -> CmdResult {
    JournalReader::open(&args.dir)?;
    let report = torrent_journal::salvage::salvage(&RealStorage, &args.dir, &args.out)?;
    if args.json {
        crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "salvaged {} events into {}\n",
        report.events_kept,
        journal::journal_dir(&args.out).display()
    );
    for region in &report.regions {
        let p = &region.problem;
        let seq = p.seq.map_or(String::new(), |s| format!(" seq {s}"));
        text.push_str(&format!(
            "LOST {:?} {} at offset {}{seq}: {} bytes quarantined at {} ({})\n",
            p.kind,
            p.segment.display(),
            p.offset,
            p.damaged_bytes,
            region.quarantine_offset,
            p.detail
        ));
        if !p.affected_torrents.is_empty() {
            let hashes: Vec<String> = p.affected_torrents.iter().map(|h| h.to_hex()).collect();
            text.push_str(&format!(
                "  torrents whose events seem affected: {}\n",
                hashes.join(", ")
            ));
        }
    }
    for run in &report.renumbered {
        text.push_str(&format!(
            "renumbered {} events: old seq {}.. are now seq {}..\n",
            run.count, run.old_first, run.new_first
        ));
    }
    text.push_str(&format!(
        "{} bytes quarantined in {}\n",
        report.bytes_quarantined,
        args.out.join("salvage/quarantine.bin").display()
    ));
    crate::emit(&text)?;
    Ok(ExitCode::SUCCESS)
}
