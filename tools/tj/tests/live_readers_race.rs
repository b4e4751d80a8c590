//! The real `tj` read-only commands (verify, export at the head and at a seq, stats, tail,
//! history, restore) and `tj compact --retain-events` in loops beside a live writer on small
//! preallocated segments: no exit code says damage (1) or failure (3), and once the writer
//! closes the journal verifies clean (issue 13 §4). Exit 2 is allowed only for `export --at`
//! of a seq the writer pushed out of the retention meanwhile (a precise answer), and counted;
//! `tail` reads from the start of the journal while compaction removes it, and must still end
//! with exit 0 (its reader holds the segments it will read open).
//!
//! Short by default; `TJ_SOAK_SECS=300` runs five minutes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torrent_journal::event::Event;
use torrent_journal::journal::{Durability, JournalOptions};
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::{Journal, JournalReader};

fn hash(n: u64) -> InfoHash {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&(n % 64).to_le_bytes());
    InfoHash::V1(bytes)
}

fn event(n: u64) -> Event {
    let torrent = TorrentState::sample(
        hash(n),
        &format!("t{n}"),
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    );
    Event::TorrentSaved {
        torrent: Box::new(torrent),
    }
}

/// Per command: runs, exit-2 answers, false reports.
type Counts = BTreeMap<&'static str, (u64, u64, Vec<String>)>;
/// The arguments of one run of a command.
type ArgsFn<'a> = Box<dyn Fn() -> Vec<String> + Sync + 'a>;

fn tj(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tj"))
        .args(args)
        .output()
        .expect("run tj");
    let code = out.status.code().unwrap_or(-1);
    // Reports (verify's problems) go to stdout: keep them with the message for a failure.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: String = stdout.lines().take(20).collect::<Vec<_>>().join("\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    (code, format!("{stderr}{report}"))
}

#[test]
fn tj_commands_beside_a_live_writer_report_no_false_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let secs: u64 = std::env::var("TJ_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let options = JournalOptions {
        segment_size_bytes: 64 * 1024,
        preallocate_bytes: 256 * 1024,
        durability: Durability::Interval { interval_ms: 5 },
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(&dir, options).unwrap();
    journal
        .append_all(&(0..100).map(event).collect::<Vec<_>>())
        .unwrap();
    let stop = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(secs);
    // (runs, exit-2 answers, false reports) per command.
    let counts: Arc<Mutex<Counts>> = Arc::default();
    let d = dir.to_str().unwrap();
    let h = hash(5).to_string();
    let restore_into = format!("sqlite:{}", tmp.path().join("restored.db").display());
    let dir_ref: &Path = &dir;
    let commands: Vec<(&str, ArgsFn)> = vec![
        ("verify", Box::new(|| vec!["verify".into(), d.into()])),
        (
            "export",
            Box::new(|| vec!["-q".into(), "export".into(), d.into()]),
        ),
        (
            "export --at",
            Box::new(|| {
                let head = JournalReader::open(dir_ref)
                    .and_then(|r| r.head())
                    .ok()
                    .flatten()
                    .map_or(1, |(seq, _)| seq.saturating_sub(200).max(1));
                ["-q", "export", d, "--at", &head.to_string()]
                    .map(String::from)
                    .to_vec()
            }),
        ),
        (
            "stats",
            Box::new(|| vec!["-q".into(), "stats".into(), d.into()]),
        ),
        (
            "tail",
            Box::new(|| vec!["-q".into(), "tail".into(), d.into()]),
        ),
        (
            "history",
            Box::new(|| ["-q", "history", d, &h].map(String::from).to_vec()),
        ),
        (
            "restore",
            Box::new(|| {
                [
                    "-q",
                    "restore",
                    d,
                    "--at",
                    "head",
                    "--into",
                    &restore_into,
                    "--force",
                ]
                .map(String::from)
                .to_vec()
            }),
        ),
        (
            "compact",
            Box::new(|| {
                ["-q", "compact", d, "--retain-events", "2000"]
                    .map(String::from)
                    .to_vec()
            }),
        ),
    ];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Event> = (0..1 + n % 8).map(event).collect();
                n += batch.len() as u64;
                journal.append_all(&batch).unwrap();
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        for (name, args) in &commands {
            let counts = Arc::clone(&counts);
            scope.spawn(move || {
                while Instant::now() < deadline {
                    let args = args();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let (code, stderr) = tj(&args);
                    let mut counts = counts.lock().unwrap();
                    let entry = counts.entry(name).or_default();
                    entry.0 += 1;
                    match code {
                        // exit 4: history found no retained event of that torrent.
                        0 => {}
                        4 if *name == "history" => {}
                        2 if *name == "export --at" => entry.1 += 1,
                        _ => entry.2.push(format!("exit {code}: {stderr}")),
                    }
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
    });
    journal.close().unwrap();
    let (code, stderr) = tj(&["-q", "verify", d]);
    assert_eq!(code, 0, "the journal verifies clean afterwards: {stderr}");
    let counts = counts.lock().unwrap();
    let mut false_reports = 0;
    for (name, (runs, precise, reports)) in counts.iter() {
        eprintln!(
            "  tj {name:<12} runs {runs:>5}  exit-2 answers {precise}  false reports {}",
            reports.len()
        );
        for report in reports.iter().take(3) {
            eprintln!("    {report}");
        }
        assert!(*runs > 0, "tj {name} ran");
        false_reports += reports.len();
    }
    assert_eq!(false_reports, 0, "false reports beside a live writer");
}
