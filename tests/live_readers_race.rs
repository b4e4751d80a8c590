//! Readers beside a live writer and a compaction loop give no false damage reports (issue 13
//! §4): a writer appends continuously to small preallocated segments (`EveryBatch`, then
//! `Interval`), compaction runs in a loop, and every read-only operation (verify, export at the
//! head and at a seq, restore at a time, stats, reader iteration, history) runs in its own loop.
//! Every error or damage report is counted; once the writer closes the journal verifies clean,
//! so every report during the run was false, and there must be none.
//!
//! Short by default (a few seconds); `TJ_SOAK_SECS=300` runs five minutes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use torrent_journal::compaction::{self, CompactOptions, Retention};
use torrent_journal::event::Event;
use torrent_journal::history::{self, Target};
use torrent_journal::journal::{Durability, JournalOptions};
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::storage::RealStorage;
use torrent_journal::{Journal, JournalReader, inspect};

const TORRENTS: u64 = 64;

fn hash(n: u64) -> InfoHash {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&(n % TORRENTS).to_le_bytes());
    InfoHash::V1(bytes)
}

fn event(n: u64) -> Event {
    if n.is_multiple_of(37) {
        return Event::TorrentDeleted { info_hash: hash(n) };
    }
    let torrent = TorrentState::sample(
        hash(n),
        &format!("t{n}"),
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000),
    );
    Event::TorrentSaved {
        torrent: Box::new(torrent),
    }
}

/// Counts per operation: runs, and what went wrong (error text → count).
#[derive(Default)]
struct Counts {
    runs: BTreeMap<&'static str, u64>,
    reports: BTreeMap<&'static str, Vec<String>>,
}

impl Counts {
    fn record(&mut self, op: &'static str, outcome: Result<(), String>) {
        *self.runs.entry(op).or_default() += 1;
        if let Err(report) = outcome {
            self.reports.entry(op).or_default().push(report);
        }
    }

    fn total_reports(&self) -> usize {
        self.reports.values().map(Vec::len).sum()
    }
}

fn soak_secs() -> u64 {
    std::env::var("TJ_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

fn run_phase(
    dir: &Path,
    durability: Durability,
    secs: u64,
    counts: &Arc<Mutex<Counts>>,
    precise: &AtomicU64,
) {
    let options = JournalOptions {
        segment_size_bytes: 64 * 1024,
        preallocate_bytes: 256 * 1024,
        durability,
        ..JournalOptions::default()
    };
    let journal = Journal::open_with(dir, options).expect("open the journal");
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let record = |op, outcome| {
        counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(op, outcome)
    };
    let looping = |op: &'static str, body: &(dyn Fn() -> Result<(), String> + Sync)| {
        while Instant::now() < deadline {
            record(op, body());
        }
    };
    let storage = || Arc::new(RealStorage);
    std::thread::scope(|scope| {
        let looping = &looping;
        let writer = {
            let (journal, stop, appended) = (journal.clone(), &stop, &appended);
            scope.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<Event> = (0..1 + n % 8).map(|i| event(n + i)).collect();
                    n += batch.len() as u64;
                    journal.append_all(&batch).expect("append");
                    appended.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    // Keep the journal (and the disk it takes) small; still thousands a second.
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        scope.spawn(move || {
            looping("compact", &|| {
                let options = CompactOptions {
                    retain: Retention::Events(2000),
                    ..CompactOptions::default()
                };
                compaction::compact(storage(), dir, &options)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        });
        scope.spawn(move || {
            looping("verify", &|| {
                let report =
                    torrent_journal::verify(&RealStorage, dir).map_err(|e| e.to_string())?;
                match report.has_damage() {
                    true => Err(format!("{:?}", report.problems)),
                    false => Ok(()),
                }
            })
        });
        scope.spawn(move || {
            looping("export-head", &|| {
                history::state_at(storage(), dir, Target::Head)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        });
        scope.spawn(move || {
            looping("export-at-seq", &|| {
                let reader = JournalReader::open(dir).map_err(|e| e.to_string())?;
                let Some((head, _)) = reader.head().map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                // Well inside what the retention keeps.
                let seq = head.saturating_sub(200).max(1);
                match history::state_at(storage(), dir, Target::Seq(seq)) {
                    Ok(_) => Ok(()),
                    // The writer outran the retention between reading the head and the
                    // materialization (a stalled thread): a precise answer, not damage.
                    Err(
                        err @ torrent_journal::Error::NotRestorable {
                            earliest_seq: Some(earliest),
                            ..
                        },
                    ) if earliest > seq => {
                        precise.fetch_add(1, Ordering::Relaxed);
                        eprintln!("  export-at-seq (precise): {err}");
                        Ok(())
                    }
                    Err(err) => Err(err.to_string()),
                }
            })
        });
        scope.spawn(move || {
            looping("restore-at-time", &|| {
                let reader = JournalReader::open(dir).map_err(|e| e.to_string())?;
                let Some((_, at)) = reader.head().map_err(|e| e.to_string())? else {
                    return Ok(());
                };
                match history::state_at(storage(), dir, Target::Time(at)) {
                    Ok(_) => Ok(()),
                    // As for export-at-seq: the writer outran the retention meanwhile.
                    Err(
                        err @ torrent_journal::Error::NotRestorable {
                            earliest_seq: Some(_),
                            ..
                        },
                    ) => {
                        precise.fetch_add(1, Ordering::Relaxed);
                        eprintln!("  restore-at-time (precise): {err}");
                        Ok(())
                    }
                    Err(err) => Err(err.to_string()),
                }
            })
        });
        scope.spawn(move || {
            looping("stats+history", &|| {
                let reader = JournalReader::open(dir).map_err(|e| e.to_string())?;
                inspect::stats(&reader).map_err(|e| format!("stats: {e}"))?;
                history::torrent_history(&reader, &hash(5))
                    .map(|_| ())
                    .map_err(|e| format!("history: {e}"))
            })
        });
        scope.spawn(move || {
            looping("read-frames", &|| {
                // As `tj tail` does: plan again when compaction moved the start before the
                // first read; a segment removed later ends the iteration with `SeqNotRetained`
                // naming the first seq not read (precise, not damage: counted apart).
                let reader = JournalReader::open(dir).map_err(|e| e.to_string())?;
                let frames =
                    history::retry_if_compacted(|| reader.frames(reader.first_retained_seq()?))
                        .map_err(|e| e.to_string())?;
                for frame in frames {
                    match frame {
                        Ok(_) => {}
                        Err(err @ torrent_journal::Error::SeqNotRetained { .. }) => {
                            precise.fetch_add(1, Ordering::Relaxed);
                            eprintln!("  read-frames (precise): {err}");
                            return Ok(());
                        }
                        Err(err) => return Err(err.to_string()),
                    }
                }
                Ok(())
            })
        });
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("the writer thread");
    });
    journal.close().expect("close");
    assert!(appended.load(Ordering::Relaxed) > 0);
}

#[test]
fn readers_and_compaction_beside_a_live_writer_report_nothing_false() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let secs = soak_secs();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let half = secs.div_ceil(2).max(1);
    let precise = AtomicU64::new(0);
    run_phase(&dir, Durability::EveryBatch, half, &counts, &precise);
    let interval = Durability::Interval { interval_ms: 5 };
    run_phase(&dir, interval, half, &counts, &precise);

    // The journal is clean afterwards: every report during the run was false.
    let report = torrent_journal::verify(&RealStorage, &dir).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let counts = counts.lock().unwrap();
    eprintln!(
        "live_readers_race: {} s, {} events",
        2 * half,
        report.extent.last_seq.unwrap_or(0)
    );
    for (op, runs) in &counts.runs {
        let reports = counts.reports.get(op).map_or(0, Vec::len);
        eprintln!("  {op:<16} runs {runs:>6}  reports {reports}");
    }
    eprintln!(
        "  precise \"compacted meanwhile\" answers (not damage): {}",
        precise.load(Ordering::Relaxed)
    );
    for (op, reports) in &counts.reports {
        for report in reports.iter().take(3) {
            eprintln!("  {op}: {report}");
        }
    }
    assert!(counts.runs.values().all(|&runs| runs > 0));
    assert!(
        counts.runs.get("compact").is_some_and(|&r| r > 1),
        "compaction ran"
    );
    assert_eq!(
        counts.total_reports(),
        0,
        "false reports beside a live writer"
    );
}
