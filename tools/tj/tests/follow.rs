//! Proves live following across processes with the real `tj` binary (`CARGO_BIN_EXE_tj`):
//! `tj follow DIR --into sqlite:R` started before the writer's first event keeps a replica equal
//! to the writer's state while this process appends 100 000 events from many tasks across
//! segment rotations with a compaction in the middle, and `tj tail --follow` beside it prints
//! every seq exactly once, in order; a `tj follow` started after the writer has written, killed
//! mid-stream and restarted, resumes from its replica's checkpoint and ends equal; a follower
//! starting on a compacted journal resynchronizes from the snapshot (a `resynced` line in
//! `tj tail`); and the follow flags are usage errors without `--follow`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::Event;
use torrent_journal::journal::{Durability, JournalOptions};
use torrent_journal::model::{InfoHash, Timestamp, TorrentMetrics, TorrentState};
use torrent_journal::projection::{Projection, SqliteOptions, SqliteProjection};
use torrent_journal::state::State;
use torrent_journal::storage::RealStorage;
use torrent_journal::{StoreOptions, TorrentStore};

/// How long any child may take before the test fails (debug build, 2 shared cores).
const CHILD_DEADLINE: Duration = Duration::from_secs(240);

fn tj() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tj"));
    command.env_remove("TJ_LOG");
    command
}

/// A child process killed when dropped, so a failing test leaves nothing running.
struct Running {
    child: Child,
    name: &'static str,
}

impl Running {
    fn spawn(name: &'static str, command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tj");
        Self { child, name }
    }

    /// Reads stderr until a line containing `marker` (returned), then keeps draining it.
    fn wait_for_stderr(&mut self, marker: &str) -> (String, JoinHandle<String>) {
        let stderr = self.child.stderr.take().expect("stderr piped");
        let mut lines = BufReader::new(stderr);
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let read = lines.read_line(&mut line).expect("read stderr");
            assert!(
                read > 0,
                "{} exited before saying {marker:?}:\n{seen}",
                self.name
            );
            seen.push_str(&line);
            if line.contains(marker) {
                break;
            }
        }
        (seen, drain(lines.into_inner()))
    }

    /// Waits for the exit (failing after `CHILD_DEADLINE`); asserts it succeeded.
    fn wait_success(&mut self, stderr: Option<JoinHandle<String>>) {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for tj") {
                break status;
            }
            assert!(
                started.elapsed() < CHILD_DEADLINE,
                "{} did not finish within {CHILD_DEADLINE:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr = match stderr {
            Some(handle) => handle.join().expect("stderr reader"),
            None => drain(self.child.stderr.take().expect("stderr piped"))
                .join()
                .expect("stderr reader"),
        };
        assert!(
            status.success(),
            "{} failed ({status}):\n{stderr}",
            self.name
        );
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(stderr: ChildStderr) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    })
}

/// The torrent key `k`'s info hash.
fn hash(k: u64) -> InfoHash {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&k.to_le_bytes());
    bytes[19] = 0xA5;
    InfoHash::V1(bytes)
}

fn time(secs: u64) -> Timestamp {
    Timestamp::from_unix_nanos(
        1_700_000_000_000_000_000 + i64::try_from(secs).unwrap() * 1_000_000_000,
    )
}

/// Event number `n` of a busy client: mostly metrics samples (~150 bytes), a realistic
/// ~1.2 KB torrent save every 50, a removal every 50, a metrics purge every 1 000.
fn event(n: u64) -> Event {
    match n % 50 {
        0 => {
            let k = (n / 50) % 300;
            let torrent = TorrentState::sample(hash(k), &format!("t{k}"), time(k));
            Event::TorrentSaved {
                torrent: Box::new(torrent),
            }
        }
        25 => Event::TorrentDeleted {
            info_hash: hash((n / 50 + 7) % 300),
        },
        _ if n % 1000 == 999 => Event::MetricsPurged {
            older_than: time(n.saturating_sub(500)),
        },
        _ => {
            let value = i64::try_from(n).unwrap();
            Event::MetricsRecorded {
                samples: vec![TorrentMetrics {
                    info_hash: hash(n % 300),
                    timestamp: time(n),
                    downloaded: value * 1024,
                    uploaded: value * 512,
                    download_rate: value % 4096,
                    upload_rate: value % 1024,
                    peer_count: value % 50,
                    seeding_time: value,
                    downloading_time: value * 2,
                }],
            }
        }
    }
}

/// A store with the writer's own SQLite projection and 1 MiB segments (many rotations).
async fn open_store(dir: &Path) -> TorrentStore {
    let options = StoreOptions {
        journal: JournalOptions {
            segment_size_bytes: 1024 * 1024,
            durability: Durability::EveryBatch,
            ..JournalOptions::default()
        },
        ..StoreOptions::default()
    }
    .with_sqlite();
    TorrentStore::open(dir, options).await.unwrap()
}

/// Appends events numbered `range` from `tasks` concurrent tasks, each one event at a time.
async fn append(store: &TorrentStore, range: std::ops::RangeInclusive<u64>, tasks: u64) {
    let next = Arc::new(AtomicUsize::new(0));
    let count = range.clone().count();
    let start = *range.start();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        let next = Arc::clone(&next);
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                store.append_event(event(start + i as u64)).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
}

fn replica_state(path: &Path) -> State {
    SqliteProjection::open(path, SqliteOptions::default())
        .unwrap()
        .load_state()
        .unwrap()
}

fn replica_checkpoint(path: &Path) -> u64 {
    if !path.exists() {
        return 0;
    }
    SqliteProjection::open(path, SqliteOptions::default()).map_or(0, |p| p.checkpoint().seq)
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What `tj tail --follow` printed: the seqs of events and of `resynced` notices.
#[derive(Debug, Default)]
struct Tailed {
    seqs: Vec<u64>,
    resynced: Vec<u64>,
}

fn read_tail(child: &mut Running) -> JoinHandle<Tailed> {
    let stdout = child.child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        let mut tailed = Tailed::default();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read tail output");
            let value: Value = serde_json::from_str(&line).expect("a JSON line");
            let seq = value["seq"].as_u64().expect("a seq");
            if value["event"] == "resynced" {
                tailed.resynced.push(seq);
            } else {
                tailed.seqs.push(seq);
            }
        }
        tailed
    })
}

/// Every seq from `from` exactly once, in order — allowing a jump only right after a resync
/// notice (to the seq after the snapshot's).
fn assert_exactly_once(tailed: &Tailed, last: u64) {
    let mut expected = 1;
    let mut resyncs = tailed.resynced.iter().peekable();
    for &seq in &tailed.seqs {
        if seq != expected
            && let Some(&&snapshot) = resyncs.peek()
            && seq == snapshot + 1
            && snapshot >= expected
        {
            resyncs.next();
            expected = seq;
        }
        assert_eq!(seq, expected, "a seq missing, repeated or out of order");
        expected += 1;
    }
    assert_eq!(expected - 1, last, "the tail stopped early");
}

#[test]
fn a_replica_process_follows_100k_events_across_rotations_and_a_compaction() {
    const EVENTS: u64 = 100_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let replica = tmp.path().join("replica.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(open_store(&dir));
    assert_eq!(store.last_seq(), 0);

    // Both followers start before the writer's first event.
    let exit_at = EVENTS.to_string();
    let mut follower = Running::spawn(
        "tj follow",
        tj().args(["follow", arg(&dir), "--into"])
            .arg(format!("sqlite:{}", replica.display()))
            .args(["--exit-at-seq", &exit_at]),
    );
    let (said, follower_stderr) = follower.wait_for_stderr("following");
    assert!(said.contains("from seq 1 "), "{said}");
    let mut tail = Running::spawn(
        "tj tail --follow",
        tj().args(["tail", arg(&dir), "--follow", "--exit-at-seq", &exit_at]),
    );
    let tailed = read_tail(&mut tail);

    let started = Instant::now();
    let report = runtime.block_on(async {
        let writer = append(&store, 1..=EVENTS, 32);
        // Two compactions: the first writes the previous generation, the second removes the
        // segments it covers.
        let compactor = async {
            let mut report = None;
            for at in [EVENTS / 4, EVENTS / 2] {
                while store.last_seq() < at {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let dir = dir.clone();
                report = Some(
                    tokio::task::spawn_blocking(move || {
                        let options = CompactOptions {
                            retain: Retention::Events(1000),
                            ..CompactOptions::default()
                        };
                        compaction::compact(Arc::new(RealStorage), &dir, &options).unwrap()
                    })
                    .await
                    .unwrap(),
                );
            }
            report.unwrap()
        };
        let ((), report) = tokio::join!(writer, compactor);
        store.flush_projections().await.unwrap();
        report
    });
    let appended_in = started.elapsed();
    let snapshot_seq = report.snapshot_seq.expect("compaction wrote a snapshot");
    assert!(
        !report.segments_removed.is_empty(),
        "compaction removed no segment: {report:?}"
    );
    let segments = torrent_journal::JournalReader::open(&dir)
        .unwrap()
        .segments()
        .unwrap();
    assert!(segments.len() >= 5, "only {} segments", segments.len());

    follower.wait_success(Some(follower_stderr));
    tail.wait_success(None);
    let tailed = tailed.join().unwrap();
    eprintln!(
        "appended {EVENTS} events in {appended_in:?} (snapshot at seq {snapshot_seq}, {} segments removed, {} left); \
         followers done after {:?}; tail resynced at {:?}",
        report.segments_removed.len(),
        segments.len(),
        started.elapsed(),
        tailed.resynced
    );
    assert_exactly_once(&tailed, EVENTS);
    for &resync in &tailed.resynced {
        assert!(
            resync >= snapshot_seq,
            "resynced at {resync}, before the snapshot"
        );
    }

    let expected = store.read_memory(|m| m.state().clone());
    assert_eq!(expected.last_seq, EVENTS);
    assert_eq!(
        replica_state(&replica),
        expected,
        "the replica differs from the writer"
    );
    runtime.block_on(store.close()).unwrap();
    let writers_sqlite = replica_state(&dir.join(StoreOptions::SQLITE_FILE_NAME));
    assert_eq!(writers_sqlite, expected);
}

#[test]
fn a_replica_started_late_and_killed_mid_stream_resumes_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let replica = tmp.path().join("replica.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(open_store(&dir));
    runtime.block_on(append(&store, 1..=10_000, 16));

    // Started after the writer has written; killed while the writer is still appending.
    let mut first = Running::spawn(
        "tj follow (first run)",
        tj().args(["follow", arg(&dir), "--into"])
            .arg(format!("sqlite:{}", replica.display())),
    );
    let (said, _stderr) = first.wait_for_stderr("following");
    assert!(said.contains("from seq 1 "), "{said}");
    let killed_at = runtime.block_on(async {
        let writer = append(&store, 10_001..=20_000, 16);
        let killer = async {
            while replica_checkpoint(&replica) < 10_000 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            first.kill();
        };
        tokio::join!(writer, killer);
        replica_checkpoint(&replica)
    });
    assert!(
        (10_000..20_000).contains(&killed_at),
        "killed at {killed_at}"
    );

    // More events while no follower runs, then more while the second run catches up.
    runtime.block_on(append(&store, 20_001..=22_000, 16));
    let mut second = Running::spawn(
        "tj follow (second run)",
        tj().args(["follow", arg(&dir), "--into"])
            .arg(format!("sqlite:{}", replica.display()))
            .args(["--exit-at-seq", "25000"]),
    );
    let (said, stderr) = second.wait_for_stderr("following");
    assert!(
        said.contains(&format!("from seq {} ", killed_at + 1)),
        "did not resume from its checkpoint {killed_at}: {said}"
    );
    runtime.block_on(async {
        append(&store, 22_001..=25_000, 16).await;
        store.flush_projections().await.unwrap();
    });
    second.wait_success(Some(stderr));
    let expected = store.read_memory(|m| m.state().clone());
    assert_eq!(expected.last_seq, 25_000);
    assert_eq!(replica_state(&replica), expected);
    runtime.block_on(store.close()).unwrap();
}

#[test]
fn following_a_compacted_journal_starts_from_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let replica = tmp.path().join("replica.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let store = runtime.block_on(open_store(&dir));
    // Big enough for a few segments, so compaction has sealed ones to remove.
    runtime.block_on(append(&store, 1..=12_000, 8));
    // Two compactions: the second removes what the first one's snapshot covers.
    let compact = |n| {
        let options = CompactOptions {
            retain: Retention::Events(n),
            ..CompactOptions::default()
        };
        compaction::compact(Arc::new(RealStorage), &dir, &options).unwrap()
    };
    assert!(compact(6_000).segments_removed.is_empty());
    let report = compact(100);
    assert_eq!(report.snapshot_seq, Some(11_900));
    assert!(!report.segments_removed.is_empty());
    let first_retained = torrent_journal::JournalReader::open(&dir)
        .unwrap()
        .segments()
        .unwrap()[0]
        .first_seq;

    let output = tj()
        .args([
            "tail",
            arg(&dir),
            "--follow",
            "--from",
            "1",
            "--exit-at-seq",
            "12000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "resynced", "{}", lines[0]);
    assert_eq!(lines[0]["seq"], 11_900);
    let seqs: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (11_901..=12_000).collect::<Vec<_>>());
    assert!(first_retained > 1);

    let output = tj()
        .args(["follow", arg(&dir), "--into"])
        .arg(format!("sqlite:{}", replica.display()))
        .args(["--exit-at-seq", "12000"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("resynchronized from snapshot at seq 11900"),
        "{said}"
    );
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("applied 100 events"), "{summary}");
    assert!(summary.contains("1 resyncs"), "{summary}");
    store.read_memory(|m| assert_eq!(replica_state(&replica), *m.state()));
    runtime.block_on(store.close()).unwrap();
}

#[test]
fn follow_flags_need_follow_and_a_missing_journal_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing: PathBuf = tmp.path().join("missing");
    let output = tj()
        .args(["tail", arg(tmp.path()), "--exit-at-seq", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("need --follow"));
    for args in [
        vec!["follow", arg(&missing), "--into", "sqlite:/dev/null/x"],
        vec!["tail", arg(&missing), "--follow"],
    ] {
        let output = tj().args(&args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}
