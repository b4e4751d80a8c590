//! Helpers shared by the sections: the realistic torrent states, progress lines, sizes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use torrent_journal::event::Event;
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};

/// A fixed point in time for generated states (reproducible encodings).
pub const EPOCH_NANOS: i64 = 1_700_000_000_000_000_000;

/// The info hash of torrent `n` (distinct, deterministic). Derived directly rather than from
/// the simulator, which generates a whole `.torrent` (up to MBs) to hash its info dictionary.
pub fn info_hash(n: usize) -> InfoHash {
    let mut state = 0x7e57_be4c_u64 ^ (n as u64).wrapping_mul(0xA24B_AED4_963E_E407);
    let mut bytes = [0u8; 20];
    for chunk in bytes.chunks_mut(8) {
        // SplitMix64.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes()[..chunk.len()]);
    }
    InfoHash::V1(bytes)
}

/// A realistic ~1.2 KB (MessagePack) torrent state: 5 files, 3 trackers, 2 labels, 1 peer.
pub fn state(n: usize) -> TorrentState {
    TorrentState::sample(
        info_hash(n),
        &format!("ubuntu-24.04.{n:06}-desktop-amd64"),
        Timestamp::from_unix_nanos(EPOCH_NANOS + n as i64 * 1_000_000_000),
    )
}

/// `count` distinct states.
pub fn states(count: usize) -> Vec<TorrentState> {
    (0..count).map(state).collect()
}

/// `TorrentSaved` events of `count` distinct states.
pub fn saved_events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|n| Event::TorrentSaved {
            torrent: Box::new(state(n)),
        })
        .collect()
}

/// A progress line on stderr (stdout carries only the report).
pub fn progress(section: &str, what: &str, started: Instant) {
    eprintln!(
        "[tj-bench {:>7.1}s] {section}: {what}",
        started.elapsed().as_secs_f64()
    );
}

/// A fresh subdirectory `name` of `work_dir` (emptied when it exists).
pub fn fresh_dir(work_dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A multi-threaded tokio runtime with one worker per core (as an application would have).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Resident set size of this process, bytes (`VmRSS` in `/proc/self/status`).
pub fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("bad VmRSS line {line:?}"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Total size of the files under `dir`, bytes.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
