//! `tj-crashtest`: the SIGKILL loop. A child process appends through the real store (journal +
//! SQLite projection, default durability) and reports each acknowledged seq to the parent over a
//! pipe; the parent kills it with SIGKILL at random moments, reopens the journal, verifies it and
//! checks that every acknowledged event is there with the right content. Prints kills,
//! acknowledged events and lost events (which must be 0); exits 1 otherwise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, Subcommand};
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::Event;
use torrent_journal::history::{self, Target};
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::projection::{SqliteOptions, SqliteProjection};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalReader, StoreOptions, TorrentStore, journal};

#[derive(Debug, Parser)]
#[command(name = "tj-crashtest")]
struct Cli {
    #[command(subcommand)]
    child: Option<ChildCommand>,
    /// How many times to kill the writer.
    #[arg(long, default_value_t = 200)]
    kills: u32,
    /// Store directory (default: a fresh temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the kill timing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest a child runs before it is killed.
    #[arg(long, default_value_t = 40)]
    max_run_ms: u64,
    /// Concurrent appending tasks in the child.
    #[arg(long, default_value_t = 4)]
    tasks: u64,
    /// Compact (keeping the last 1000 events) after every this many kills; 0 never.
    #[arg(long, default_value_t = 20)]
    compact_every: u32,
}

#[derive(Debug, Subcommand)]
enum ChildCommand {
    /// (internal) The writer that gets killed.
    #[command(hide = true)]
    Child {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        first_id: u64,
        #[arg(long)]
        tasks: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(ChildCommand::Child {
        dir,
        first_id,
        tasks,
    }) = cli.child
    {
        return child(&dir, first_id, tasks);
    }
    let tmp = tempfile::tempdir()?;
    let dir = cli.dir.clone().unwrap_or_else(|| tmp.path().join("store"));
    let report = parent(&cli, &dir)?;
    println!(
        "kills {}  acknowledged {}  lost {}  torn tails cut {}  compactions {}  elapsed {:.1} s",
        report.kills,
        report.acknowledged,
        report.lost,
        report.torn_tails,
        report.compactions,
        report.elapsed.as_secs_f64()
    );
    if report.lost > 0 {
        bail!("{} acknowledged events were lost", report.lost);
    }
    Ok(())
}

/// The store the child writes through: the real thing, with small segments so that the
/// parent's periodic compaction can remove sealed ones and the journal stays short.
fn store_options() -> StoreOptions {
    StoreOptions {
        journal: torrent_journal::JournalOptions {
            segment_size_bytes: 256 * 1024,
            ..torrent_journal::JournalOptions::default()
        },
        ..StoreOptions::default().with_sqlite()
    }
}

/// The info hash of content id `id`.
fn hash(id: u64) -> InfoHash {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&id.to_le_bytes());
    InfoHash::V1(bytes)
}

/// The torrent a child appends for content id `id` (a distinct torrent per event, so the final
/// state must hold every acknowledged one, even after compaction folded their events away).
fn torrent(id: u64) -> TorrentState {
    TorrentState {
        id: id as i64,
        info_hash: hash(id),
        download_dir: "/downloads".into(),
        added_date: Timestamp::now(),
        ..TorrentState::default()
    }
}

/// Appends until killed, printing `ack <seq> <id>` after each acknowledgement.
fn child(dir: &Path, first_id: u64, tasks: u64) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = TorrentStore::open(dir, store_options()).await?;
        println!("ready {}", store.last_seq());
        std::io::stdout().flush()?;
        let mut handles = Vec::new();
        for task in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for i in 0.. {
                    let id = first_id + i * tasks + task;
                    let receipt = store.save_torrent(&torrent(id)).await?;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {} {id}", receipt.first_seq)?;
                    out.flush()?;
                }
                Ok::<(), anyhow::Error>(())
            }));
        }
        for handle in handles {
            handle.await??;
        }
        Ok(())
    })
}

#[derive(Debug, Default)]
struct Report {
    kills: u32,
    acknowledged: u64,
    lost: u64,
    torn_tails: u64,
    compactions: u32,
    elapsed: Duration,
}

fn parent(cli: &Cli, dir: &Path) -> anyhow::Result<Report> {
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut rng = cli.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut report = Report::default();
    for kill in 0..cli.kills {
        let first_id = u64::from(kill) * 1_000_000_000;
        let mut child = Command::new(&exe)
            .args(["child", "--dir"])
            .arg(dir)
            .args([
                "--first-id",
                &first_id.to_string(),
                "--tasks",
                &cli.tasks.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .context("spawning the writer")?;
        let lines = read_lines(&mut child)?;
        wait_ready(&lines)?;
        rng = xorshift(rng);
        std::thread::sleep(Duration::from_micros(rng % (cli.max_run_ms * 1000 + 1)));
        child.kill().context("SIGKILL")?;
        child.wait()?;
        for line in lines.iter() {
            let (seq, id) = parse_ack(&line)?;
            ensure!(
                acked.insert(seq, id).is_none(),
                "seq {seq} acknowledged twice"
            );
        }
        report.torn_tails += reopen(dir)?;
        report.lost = check(dir, &acked)?;
        report.kills += 1;
        if cli.compact_every > 0 && report.kills % cli.compact_every == 0 {
            let options = CompactOptions {
                retain: Retention::Events(1000),
                ..CompactOptions::default()
            };
            compaction::compact(Arc::new(RealStorage), dir, &options)?;
            report.compactions += 1;
        }
    }
    report.acknowledged = acked.len() as u64;
    check_projection(dir)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Lines from the child's stdout, collected by a thread until the pipe closes.
fn read_lines(child: &mut Child) -> anyhow::Result<mpsc::Receiver<String>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

fn wait_ready(lines: &mpsc::Receiver<String>) -> anyhow::Result<()> {
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .context("the writer never became ready")?;
    ensure!(line.starts_with("ready "), "unexpected first line {line:?}");
    Ok(())
}

fn parse_ack(line: &str) -> anyhow::Result<(u64, u64)> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("ack"), Some(seq), Some(id)) => Ok((seq.parse()?, id.parse()?)),
        _ => bail!("unexpected line {line:?}"),
    }
}

/// Opens the journal the way the next writer would (recovery), then checks it verifies clean.
/// Returns how many torn tails recovery cut.
fn reopen(dir: &Path) -> anyhow::Result<u64> {
    let broken_before = broken_files(dir)?;
    Journal::open(dir)?.close()?;
    let report = torrent_journal::verify(&RealStorage, dir)?;
    ensure!(
        report.is_clean(),
        "journal does not verify after reopen: {:?}",
        report.problems
    );
    Ok(broken_files(dir)? - broken_before)
}

fn broken_files(dir: &Path) -> anyhow::Result<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(journal::journal_dir(dir))? {
        count += u64::from(entry?.file_name().to_string_lossy().contains(".broken"));
    }
    Ok(count)
}

/// Counts acknowledged events missing from the recovered state: the journal's head must be at
/// or past every acknowledged seq, and every acknowledged torrent must be in the state at the
/// head (snapshot + journal tail), with its content. Retained events are also checked by seq.
fn check(dir: &Path, acked: &BTreeMap<u64, u64>) -> anyhow::Result<u64> {
    let point = history::state_at(Arc::new(RealStorage), dir, Target::Head)?;
    if let Some((&max_seq, _)) = acked.last_key_value() {
        ensure!(
            point.seq >= max_seq,
            "head seq {} is before acknowledged seq {max_seq}",
            point.seq
        );
    }
    let mut lost = acked
        .values()
        .filter(|&&id| point.state.torrents.get(&hash(id)).map(|t| t.id) != Some(id as i64))
        .count() as u64;
    let mut found: BTreeMap<u64, u64> = BTreeMap::new();
    let reader = JournalReader::open(dir)?;
    let first = reader.segments()?.first().map_or(1, |s| s.first_seq);
    for envelope in reader.events(first)? {
        let envelope = envelope?;
        if let Event::TorrentSaved { torrent } = &envelope.event {
            found.insert(envelope.seq, torrent.id as u64);
        }
    }
    lost += acked
        .range(first..)
        .filter(|(seq, id)| found.get(seq) != Some(id))
        .count() as u64;
    Ok(lost)
}

/// After all kills: the SQLite projection, caught up on open, equals the memory projection.
fn check_projection(dir: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let memory = runtime.block_on(async {
        let store = TorrentStore::open(dir, store_options()).await?;
        let state = store.read_memory(|m| m.state().clone());
        store.close().await?;
        Ok::<_, anyhow::Error>(state)
    })?;
    let sqlite = SqliteProjection::open(
        dir.join(StoreOptions::SQLITE_FILE_NAME),
        SqliteOptions::default(),
    )?;
    ensure!(
        sqlite.load_state()? == memory,
        "the SQLite projection differs from memory"
    );
    Ok(())
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
