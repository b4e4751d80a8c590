//! `tj check`: compare the projections with the journal; `--repair` rebuilds the drifted ones.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use torrent_journal::check::{self, CheckOptions, DriftKind, DriftReport, Verdict};

use crate::CmdResult;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Store directory (the store must not be open: the check takes its lock).
    dir: PathBuf,
    /// Rebuild every drifted (or damaged) projection from the journal; the old one is moved to
    /// `<name>.drifted-<UTC time>`. The journal is never written.
    #[arg(long)]
    repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: CheckArgs, quiet: bool) -> CmdResult {
    let options = CheckOptions {
        repair: args.repair,
        ..CheckOptions::default()
    };
    let report = check::check_projections(&args.dir, &options)?;
    if args.json {
        crate::emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else if !quiet {
        crate::emit(&text(&report))?;
    }
    Ok(if report.drifted() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn text(report: &DriftReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "journal {} (last seq {})",
        report.dir.display(),
        report.journal_seq
    );
    if report.projections.is_empty() {
        let _ = writeln!(out, "no projection to check (neither state.db nor files/)");
    }
    for p in &report.projections {
        let seq = p
            .checkpoint_seq
            .map_or("-".to_owned(), |seq| seq.to_string());
        let verdict = match p.verdict {
            Verdict::Clean => "clean",
            Verdict::Drifted => "DRIFTED",
            Verdict::Damaged => "DAMAGED",
            Verdict::Unverifiable => "unverifiable",
        };
        let _ = writeln!(
            out,
            "{:<7} {}  checkpoint seq {seq}  {verdict}  ({} torrents expected, {} differ, {:.1} ms)",
            p.projection,
            p.path.display(),
            p.torrents_expected,
            p.torrents.len(),
            p.check_ms
        );
        if let Some(detail) = &p.detail {
            let _ = writeln!(out, "  {detail}");
        }
        for t in &p.torrents {
            let kind = kind(t.kind);
            match &t.field {
                Some(field) => {
                    let _ = writeln!(out, "  {kind:<8} {}  ({field})", t.info_hash);
                }
                None => {
                    let _ = writeln!(out, "  {kind:<8} {}", t.info_hash);
                }
            }
        }
        if let Some(session) = &p.session {
            let field = session.field.as_deref().unwrap_or("");
            let _ = writeln!(
                out,
                "  {:<8} session configuration {field}",
                kind(session.kind)
            );
        }
        if let Some(repair) = &p.repair {
            let _ = writeln!(
                out,
                "  repaired: moved to {}, rebuilt to seq {} in {:.1} ms, now {:?}",
                repair.set_aside.display(),
                repair.seq,
                repair.rebuild_ms,
                repair.verdict_after
            );
        }
    }
    out
}

fn kind(kind: DriftKind) -> &'static str {
    match kind {
        DriftKind::Extra => "extra",
        DriftKind::Missing => "missing",
        DriftKind::Changed => "changed",
    }
}
