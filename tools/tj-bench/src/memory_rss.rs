//! The `memory` section: resident memory per torrent of the memory projection vs the torrent's
//! encoded (MessagePack event) size.
//!
//! Measured in a child process (this binary's hidden `memory-child`) so nothing else the
//! benchmark allocated blurs it: `VmRSS` before and after applying `N` `TorrentSaved` events
//! (realistic ~1.2 KB states) to an empty `MemoryProjection`, divided by `N`.

use std::process::Command;

use anyhow::Context as _;
use clap::Args;
use serde_json::{Value, json};
use torrent_journal::event::{self, Envelope, Event};
use torrent_journal::model::Timestamp;
use torrent_journal::projection::{MemoryProjection, Projection};

use crate::common::{rss_bytes, state};
use crate::figures::{Figure, RatioKind, Unit};
use crate::{Context, SectionReport};

/// Arguments of the hidden child.
#[derive(Debug, Args)]
pub struct ChildArgs {
    /// Torrents to load.
    #[arg(long)]
    torrents: usize,
}

/// The child: prints one JSON line.
pub fn child(args: &ChildArgs) -> anyhow::Result<()> {
    let mut projection = MemoryProjection::new();
    // Touch the allocator and the projection once before the baseline.
    let before = rss_bytes()?;
    let mut encoded = 0usize;
    let mut seq = 0u64;
    let mut batch = Vec::with_capacity(256);
    for n in 0..args.torrents {
        let event = Event::TorrentSaved {
            torrent: Box::new(state(n)),
        };
        encoded += event::encode(&event)?.len();
        seq += 1;
        batch.push(Envelope::new(
            seq,
            Timestamp::from_unix_nanos(seq as i64),
            event,
        ));
        if batch.len() == 256 {
            projection.apply(&batch)?;
            batch.clear();
        }
    }
    projection.apply(&batch)?;
    drop(batch);
    let after = rss_bytes()?;
    let stats = projection.stats();
    println!(
        "{}",
        json!({
            "torrents": stats.torrents,
            "rss_before": before,
            "rss_after": after,
            "encoded_bytes": encoded,
            "approx_bytes": stats.approx_bytes,
        })
    );
    Ok(())
}

pub fn run(ctx: &Context) -> anyhow::Result<SectionReport> {
    let torrents = if ctx.quick { 20_000 } else { 100_000 };
    let output = Command::new(&ctx.exe)
        .arg("memory-child")
        .arg("--torrents")
        .arg(torrents.to_string())
        .output()
        .context("start the memory child")?;
    anyhow::ensure!(
        output.status.success(),
        "memory child failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).context("memory child output")?;
    let field = |k: &str| result[k].as_f64().unwrap_or(0.0);
    let n = field("torrents");
    let rss_per = (field("rss_after") - field("rss_before")) / n;
    let encoded_per = field("encoded_bytes") / n;
    let approx_per = field("approx_bytes") / n;
    let figures = vec![
        Figure::new(
            "memory_rss_per_torrent_bytes",
            "resident memory per torrent, memory projection",
            rss_per,
            Unit::Bytes,
        )
        .vs(
            "encoded event size",
            Some(encoded_per),
            Unit::Bytes,
            RatioKind::Multiple,
        )
        .note(format!("{torrents} torrents")),
        Figure::new(
            "encoded_torrent_bytes",
            "encoded TorrentSaved event (MessagePack)",
            encoded_per,
            Unit::Bytes,
        ),
    ];
    let md = format!(
        "## memory: resident memory of the memory projection\n\n\
         {torrents} realistic torrents applied to an empty memory projection in a fresh process: \
         VmRSS grew by {:.1} MB, {rss_per:.0} B per torrent; the encoded event is {encoded_per:.0} B \
         ({:.2}×); the projection's own estimate of heap bytes is {approx_per:.0} B per torrent.\n",
        (field("rss_after") - field("rss_before")) / 1e6,
        rss_per / encoded_per
    );
    Ok(SectionReport {
        markdown: md,
        json: json!({
            "child": result,
            "rss_per_torrent_bytes": rss_per,
            "encoded_bytes_per_torrent": encoded_per,
            "approx_bytes_per_torrent": approx_per,
        }),
        figures,
    })
}
