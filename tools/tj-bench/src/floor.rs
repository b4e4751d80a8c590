//! The `floor` section: what the disk can do at best, measured in the same run as everything
//! else so ratios against it are meaningful on a noisy machine.
//!
//! * **disk floor**: `pwrite` 4 KiB at successive offsets of a preallocated (zero-filled and
//!   fsynced) file, then `fdatasync`; per-iteration latency. Nothing about the file's size or
//!   allocation changes, so `fdatasync` flushes only data.
//! * **growing-file floor** (diagnostic): the same 4 KiB appended to a file that grows, then
//!   `fdatasync` — the file size changes every time, so ext4 must also commit its journal.
//!   This is what an append-only segment that is not preallocated pays.
//! * **no-sync ceiling**: `event::encode` + `frame::encode` (CRC32C) into a buffer + `write`
//!   (1 MiB at a time), no sync: the most a single writer could push, events/s.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::time::Instant;

use serde_json::json;
use torrent_journal::event;
use torrent_journal::testing::format::frame;

use crate::common::{fresh_dir, saved_events};
use crate::figures::{Figure, RatioKind, Unit};
use crate::stats::Summary;
use crate::{Context, SectionReport};

const BLOCK: usize = 4096;
const WARMUP: usize = 10;

fn iterations(ctx: &Context) -> usize {
    if ctx.quick { 400 } else { 3000 }
}

/// The disk floor as a probe: a file of zero-filled, synced 4 KiB blocks; each sample
/// overwrites the next block and `fdatasync`s. Other sections interleave its samples with their
/// own, so both see the same disk.
pub struct FloorProbe {
    file: File,
    blocks: usize,
    next_block: usize,
    block: Vec<u8>,
}

impl FloorProbe {
    /// Creates `path` with `blocks` blocks of real zeros (not `fallocate`: unwritten extents
    /// would make the first write of each block a metadata change), durably.
    pub fn create(path: &std::path::Path, blocks: usize) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        let zeros = vec![0u8; 1 << 20];
        let total = blocks * BLOCK;
        let mut written = 0;
        while written < total {
            let len = zeros.len().min(total - written);
            file.write_all_at(&zeros[..len], written as u64)?;
            written += len;
        }
        file.sync_all()?;
        Ok(Self {
            file,
            blocks,
            next_block: 0,
            block: vec![0xa5u8; BLOCK],
        })
    }

    /// One `pwrite` 4 KiB + `fdatasync`, in µs.
    pub fn sample(&mut self) -> anyhow::Result<f64> {
        anyhow::ensure!(self.next_block < self.blocks, "floor probe file exhausted");
        let started = Instant::now();
        self.file
            .write_all_at(&self.block, (self.next_block * BLOCK) as u64)?;
        self.file.sync_data()?;
        self.next_block += 1;
        Ok(started.elapsed().as_secs_f64() * 1e6)
    }
}

/// pwrite 4 KiB + fdatasync into a preallocated file; latencies in µs.
fn preallocated(probe: &mut FloorProbe, n: usize) -> anyhow::Result<Summary> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + WARMUP {
        let sample = probe.sample()?;
        if i >= WARMUP {
            samples.push(sample);
        }
    }
    Summary::of(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))
}

/// write 4 KiB at the end of a growing file + fdatasync; latencies in µs.
fn growing(file: &mut File, n: usize) -> anyhow::Result<Summary> {
    let block = vec![0x5au8; BLOCK];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + WARMUP {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        if i >= WARMUP {
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Summary::of(&samples).ok_or_else(|| anyhow::anyhow!("no samples"))
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let dir = fresh_dir(&ctx.work_dir, "floor")?;
    let n = iterations(ctx);

    let mut probe = FloorProbe::create(&dir.join("floor.dat"), n + WARMUP)?;
    let floor = preallocated(&mut probe, n)?;
    drop(probe);

    let mut grow_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("growing.dat"))?;
    grow_file.sync_all()?;
    let grow = growing(&mut grow_file, n)?;
    drop(grow_file);

    // No-sync ceiling.
    let events = saved_events(1000);
    let count = if ctx.quick { 200_000 } else { 1_000_000 };
    let mut out = File::create(dir.join("ceiling.dat"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(2 << 20);
    let mut payload = Vec::with_capacity(4096);
    let mut bytes = 0usize;
    let started = Instant::now();
    for i in 0..count {
        payload.clear();
        event::encode_into(&events[i % events.len()], &mut payload)?;
        frame::encode(&mut buf, i as u64 + 1, 0, &payload);
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            bytes += buf.len();
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    bytes += buf.len();
    let elapsed = started.elapsed().as_secs_f64();
    drop(out);
    let ceiling_eps = count as f64 / elapsed;
    let ceiling_mbps = bytes as f64 / elapsed / 1e6;
    let avg_frame = bytes as f64 / count as f64;
    std::fs::remove_dir_all(&dir)?;

    ctx.values.set("floor_p50_us", floor.p50);
    ctx.values.set("floor_p99_us", floor.p99);
    ctx.values.set("growing_p50_us", grow.p50);
    ctx.values.set("growing_p99_us", grow.p99);
    ctx.values.set("ceiling_eps", ceiling_eps);
    ctx.values.set("avg_frame_bytes", avg_frame);

    let figures = vec![
        Figure::new(
            "disk_floor_p50_us",
            "disk floor: pwrite 4 KiB + fdatasync, median",
            floor.p50,
            Unit::Micros,
        ),
        Figure::new(
            "disk_floor_p99_us",
            "disk floor: pwrite 4 KiB + fdatasync, p99",
            floor.p99,
            Unit::Micros,
        ),
        Figure::new(
            "growing_floor_p50_us",
            "growing-file floor: append 4 KiB + fdatasync, median",
            grow.p50,
            Unit::Micros,
        )
        .vs(
            "disk floor",
            Some(floor.p50),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "growing_floor_p99_us",
            "growing-file floor: append 4 KiB + fdatasync, p99",
            grow.p99,
            Unit::Micros,
        )
        .vs(
            "disk floor",
            Some(floor.p99),
            Unit::Micros,
            RatioKind::Multiple,
        ),
        Figure::new(
            "nosync_ceiling_eps",
            "no-sync ceiling: encode + CRC + buffered write",
            ceiling_eps,
            Unit::EventsPerSec,
        ),
        Figure::new(
            "nosync_ceiling_mbps",
            "no-sync ceiling, bandwidth",
            ceiling_mbps,
            Unit::MegabytesPerSec,
        ),
    ];

    let mut md = String::from("## floor: the disk's floor and the no-sync ceiling\n\n");
    md.push_str(&format!(
        "{n} iterations each (first {WARMUP} left out), latencies in µs.\n\n\
         | what | median | p90 | p99 | max |\n|---|---:|---:|---:|---:|\n\
         | pwrite 4 KiB into a preallocated file + fdatasync | {:.0} | {:.0} | {:.0} | {:.0} |\n\
         | append 4 KiB to a growing file + fdatasync | {:.0} | {:.0} | {:.0} | {:.0} |\n\n\
         No-sync ceiling: {count} `TorrentSaved` events (avg frame {avg_frame:.0} B) encoded, framed and written \
         in {elapsed:.2} s: {:.0} events/s, {ceiling_mbps:.0} MB/s.\n",
        floor.p50, floor.p90, floor.p99, floor.max, grow.p50, grow.p90, grow.p99, grow.max, ceiling_eps
    ));
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "iterations": n,
            "preallocated_us": floor.to_json(),
            "growing_us": grow.to_json(),
            "ceiling": {
                "events": count, "seconds": elapsed, "events_per_sec": ceiling_eps,
                "mb_per_sec": ceiling_mbps, "avg_frame_bytes": avg_frame,
            },
        }),
        figures,
    })
}
