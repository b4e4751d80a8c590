//! The `follow` section: latency from an event's durable acknowledgement in the writer process
//! to its arrival in a follower process.
//!
//! The bench process opens a journal (default options: `fdatasync` before every ack), starts a
//! follower child (this binary's hidden `follow-child`), waits until it is watching, then
//! appends events one at a time, noting the wall clock (`SystemTime::now`, CLOCK_REALTIME,
//! shared by both processes) when each `append` returns — the durable ack. The child notes the
//! wall clock when each event comes out of its `Follower` and prints `seq arrival_ns at_ns` once
//! it has them all (nothing is printed while measuring, so pipes cannot interfere). Latency is
//! arrival − ack per seq. It can be negative: the writer publishes the durable position and then
//! wakes the appender, so the follower may hold the event before the appender's thread has run.
//! Two rows: the default (durable-gated) follower, and one reading ahead.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::{Value, json};
use torrent_journal::event::Event;
use torrent_journal::follow::{FollowItem, FollowOptions, Follower};
use torrent_journal::model::{InfoHash, Timestamp, TorrentMetrics};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalOptions};

use crate::figures::{Figure, Unit};
use crate::stats::Summary;
use crate::{Context, SectionReport};

/// Events appended per mode (full run / `--quick`).
const EVENTS_FULL: u64 = 20_000;
const EVENTS_QUICK: u64 = 2_000;
/// The first events (process and cache warm-up) are left out of the statistics.
const WARMUP_EVENTS: u64 = 100;
/// How long the follower child may take to report after the last append.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

/// Arguments of the hidden follower child.
#[derive(Debug, Args)]
pub struct ChildArgs {
    /// Store directory to follow.
    #[arg(long)]
    dir: PathBuf,
    /// Stop after this seq.
    #[arg(long)]
    count: u64,
    /// Follow with `read_ahead`.
    #[arg(long)]
    read_ahead: bool,
}

fn unix_nanos_now() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

/// The follower child: says `ready` once watching, records arrivals, prints them at the end.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let options = FollowOptions {
        read_ahead: args.read_ahead,
        ..FollowOptions::default()
    };
    let mut follower = Follower::start(Arc::new(RealStorage), &args.dir, options)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready watching={}", follower.is_watching())?;
    out.flush()?;
    let capacity = usize::try_from(args.count).context("count")?;
    let mut arrivals: Vec<(u64, i64, i64)> = Vec::with_capacity(capacity);
    while arrivals.len() < capacity {
        let Some(item) = follower.blocking_next() else {
            bail!("the follower stopped early");
        };
        let arrived = unix_nanos_now();
        match item? {
            FollowItem::Event(envelope) => {
                arrivals.push((envelope.seq, arrived, envelope.at.as_unix_nanos()));
                if envelope.seq >= args.count {
                    break;
                }
            }
            FollowItem::Resynced { seq, .. } => bail!("unexpected resync at seq {seq}"),
        }
    }
    for (seq, arrived, at) in arrivals {
        writeln!(out, "{seq} {arrived} {at}")?;
    }
    out.flush()?;
    Ok(())
}

/// A small, realistic event: one metrics sample (~150 bytes).
fn sample(n: u64) -> Event {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    let value = i64::try_from(n).unwrap_or(i64::MAX);
    Event::MetricsRecorded {
        samples: vec![TorrentMetrics {
            info_hash: InfoHash::V1(bytes),
            timestamp: Timestamp::now(),
            downloaded: value * 1024,
            uploaded: value * 512,
            download_rate: 4096,
            upload_rate: 1024,
            peer_count: 12,
            seeding_time: 0,
            downloading_time: value,
        }],
    }
}

/// One measured mode.
#[derive(Debug)]
struct Measured {
    mode: &'static str,
    watching: bool,
    /// Durable ack → arrival, microseconds.
    from_ack: Summary,
    /// Commit time (assigned before write + fdatasync) → arrival, microseconds.
    from_commit: Summary,
    negative: usize,
}

fn measure(ctx: &Context, mode: &'static str, read_ahead: bool) -> anyhow::Result<Measured> {
    let events = if ctx.quick { EVENTS_QUICK } else { EVENTS_FULL };
    let dir = ctx.work_dir.join(format!("follow-{mode}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    let journal = Journal::open_with(&dir, JournalOptions::default())?;

    let mut command = Command::new(&ctx.exe);
    command
        .arg("follow-child")
        .arg("--dir")
        .arg(&dir)
        .arg("--count")
        .arg(events.to_string());
    if read_ahead {
        command.arg("--read-ahead");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the follower child")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut ready = String::new();
    lines.read_line(&mut ready)?;
    if !ready.starts_with("ready") {
        let _ = child.kill();
        bail!("the follower child did not start: {ready:?}");
    }
    let watching = ready.contains("watching=true");

    let mut acks = Vec::with_capacity(usize::try_from(events)?);
    for n in 1..=events {
        let receipt = journal.append(&sample(n))?;
        acks.push(unix_nanos_now());
        debug_assert_eq!(receipt.first_seq, n);
    }
    let output = read_with_deadline(lines, &mut child)?;
    journal.close()?;

    let mut from_ack = Vec::new();
    let mut from_commit = Vec::new();
    let mut seen = 0u64;
    for line in output.lines() {
        let fields: Vec<i64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("child line {line:?}"))?;
        let [seq, arrived, at] = fields[..] else {
            bail!("child line {line:?}");
        };
        seen += 1;
        let seq = u64::try_from(seq)?;
        if seq <= WARMUP_EVENTS {
            continue;
        }
        let ack = acks[usize::try_from(seq - 1)?];
        from_ack.push((arrived - ack) as f64 / 1_000.0);
        from_commit.push((arrived - at) as f64 / 1_000.0);
    }
    if seen != events {
        bail!("the follower child reported {seen} of {events} events");
    }
    let negative = from_ack.iter().filter(|&&us| us < 0.0).count();
    Ok(Measured {
        mode,
        watching,
        from_ack: Summary::of(&from_ack).context("no samples")?,
        from_commit: Summary::of(&from_commit).context("no samples")?,
        negative,
    })
}

/// The rest of the child's output, killing it after [`CHILD_DEADLINE`].
fn read_with_deadline(
    mut lines: BufReader<std::process::ChildStdout>,
    child: &mut std::process::Child,
) -> anyhow::Result<String> {
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        lines.read_to_string(&mut text).map(|_| text)
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > CHILD_DEADLINE {
            let _ = child.kill();
            bail!("the follower child did not finish within {CHILD_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    if !status.success() {
        bail!("the follower child failed: {status}");
    }
    Ok(text)
}

fn row(m: &Measured) -> String {
    let a = &m.from_ack;
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1}% | {:.1} |",
        m.mode,
        a.count,
        a.p50,
        a.p90,
        a.p99,
        a.max,
        a.min,
        100.0 * m.negative as f64 / a.count as f64,
        m.from_commit.p50
    )
}

fn to_json(m: &Measured) -> Value {
    json!({
        "mode": m.mode,
        "watching": m.watching,
        "ack_to_arrival_us": m.from_ack.to_json(),
        "commit_to_arrival_us": m.from_commit.to_json(),
        "negative": m.negative,
    })
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let durable = measure(ctx, "durable", false)?;
    let ahead = measure(ctx, "read-ahead", true)?;
    let events = if ctx.quick { EVENTS_QUICK } else { EVENTS_FULL };
    let mut md = String::new();
    md.push_str("## follow: durable ack → arrival in a follower process\n\n");
    md.push_str(&format!(
        "{events} events appended one at a time (`fdatasync` before each ack), first {WARMUP_EVENTS} left out; \
         latency = follower's wall clock at arrival − writer's wall clock when `append` returned, in µs.\n\n"
    ));
    md.push_str("| follower | events | median | p90 | p99 | max | min | negative | median from commit time |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    md.push_str(&row(&durable));
    md.push('\n');
    md.push_str(&row(&ahead));
    md.push_str("\n\nNegative latencies are real, not clock error: the writer publishes the durable position \
         (waking followers through inotify) before it wakes the appender, so a follower can hold the event \
         before `append` has returned. \"From commit time\" starts at the commit time stamped before the \
         write and `fdatasync`, so it includes the sync.\n");
    if !durable.watching || !ahead.watching {
        md.push_str("\n**No file watcher was available: these numbers are for polling.**\n");
    }
    let figures = vec![
        Figure::new(
            "watcher_p50_ms",
            "watcher: durable ack → arrival in another process, median",
            durable.from_ack.p50 / 1000.0,
            Unit::Millis,
        )
        .goal_value("< 1 ms", |ms| ms < 1.0),
        Figure::new(
            "watcher_p99_ms",
            "watcher: durable ack → arrival in another process, p99",
            durable.from_ack.p99 / 1000.0,
            Unit::Millis,
        ),
        Figure::new(
            "watcher_read_ahead_p50_ms",
            "watcher, read-ahead follower: median",
            ahead.from_ack.p50 / 1000.0,
            Unit::Millis,
        ),
    ];
    Ok(SectionReport {
        figures,
        markdown: md,
        json: json!({
            "events": events,
            "warmup_events": WARMUP_EVENTS,
            "rows": [to_json(&durable), to_json(&ahead)],
        }),
    })
}
