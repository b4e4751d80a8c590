//! `tj`: the operator tool for torrent-journal. Thin glue: parsing, printing, exit codes.

mod bounds;
mod check;
mod demo;
mod follow;
mod inspect;
mod replay;
mod timetravel;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for verify: the journal is clean; for check: the projections agree with it)
  1  the journal is damaged (verify found problems, or an operation hit damage); for check: a
     projection drifted from the journal (or is damaged) and was not repaired
  2  usage error: bad arguments, or DIR is not a journal
  3  any other failure (I/O or SQLite error, lock held by another writer, internal error, ...)
  4  nothing found: the command ran but had nothing to show (history: no retained event of
     that torrent), like grep's 1";

/// Exit code 4: the command ran and found nothing (see [`EXIT_CODES`]).
pub const EXIT_NOTHING_FOUND: u8 = 4;

/// Operate a torrent-journal store: simulate a client, inspect, verify.
#[derive(Debug, Parser)]
#[command(name = "tj", version, after_help = EXIT_CODES)]
struct Cli {
    /// Print only errors, and the data a command exists to produce: no progress bars, summaries
    /// or notes. `tail`, `export` and `history` still print their events/state, and any
    /// `--json` report is still printed (you asked for it); summary commands (`demo`, `stats`,
    /// `verify`, `check`, `replay`, `follow`, `restore`, `compact`, `undelete`, `salvage`) print
    /// nothing on stdout and speak through their exit code.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate a torrent client session writing through the library (continues an existing
    /// journal).
    Demo(demo::DemoArgs),
    /// Segments, events, seq and time range, bytes, torrents seen.
    Stats(inspect::StatsArgs),
    /// Check every frame; exit 1 if anything is damaged. Never repairs.
    Verify(inspect::VerifyArgs),
    /// Print events as JSON lines.
    Tail(inspect::TailArgs),
    /// Compare each projection (state.db, files/) with the journal at its checkpoint; exit 1 on
    /// drift, listing the torrents that differ. `--repair` rebuilds the drifted ones.
    Check(check::CheckArgs),
    /// Rebuild a projection (`sqlite:PATH` or `files:DIR`) from the journal.
    Replay(replay::ReplayArgs),
    /// Keep a projection (`sqlite:PATH` or `files:DIR`) up to date with a journal another
    /// process writes: a live read replica, resuming from its own checkpoint.
    Follow(follow::FollowArgs),
    /// Write a projection (`sqlite:PATH` or `files:DIR`) as of a seq or a time; never touches
    /// the live ones.
    Restore(timetravel::RestoreArgs),
    /// Print the whole state (torrents, session configuration) as of a point as JSON.
    Export(timetravel::ExportArgs),
    /// Print every retained event of one torrent, in order, as JSON lines.
    History(timetravel::HistoryArgs),
    /// Snapshot at the retention boundary, then remove (or archive) the covered segments.
    ///
    /// What is kept: every event at or after the retention boundary — the head minus
    /// `--retain-events N`, or the last event committed before the head's commit time minus
    /// `--retain DURATION` (none given: the head itself) — so `restore`/`export` work anywhere
    /// in that window; the snapshot at the boundary (it holds the state the removed events
    /// built, plus tombstones so `undelete` works for 7 days) and one older snapshot; and the
    /// segment being written. The active segment of a closed journal (no writer holds its
    /// lock) is sealed first, so its events can be covered too.
    ///
    /// Two generations: segments are removed only up to the previous snapshot (the one
    /// this run started from; it is always kept), never up to the one just written. So no
    /// single file is the only copy of anything: if the newest snapshot is damaged, the
    /// previous one plus the journal after it still reach the head. A first compaction
    /// therefore writes a snapshot and removes nothing; the next one removes what it covers.
    ///
    /// Why it is safe: segments are deleted (or moved to `--archive`) only after the covering
    /// snapshot is durable (written to a temporary file, fsynced, renamed, directory
    /// fsynced) and the new one reads back whole, oldest first, so a crash at any point leaves
    /// a store that opens to the same state. A run with nothing to remove writes no snapshot.
    /// Safe while a client writes: compaction never takes the writer's lock and never
    /// touches its active segment.
    #[command(verbatim_doc_comment)]
    Compact(timetravel::CompactArgs),
    /// Restore a removed torrent from its last state (appends an event).
    Undelete(timetravel::UndeleteArgs),
    /// Copy every readable event of a damaged journal into a new one; quarantine the rest.
    Salvage(inspect::SalvageArgs),
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        let error = error.into();
        let code = error
            .downcast_ref::<torrent_journal::Error>()
            .map_or(3, exit_code);
        Self { code, error }
    }
}

/// The exit code of a library error (see [`EXIT_CODES`]): damage 1, the caller's mistake 2,
/// anything else (I/O, SQLite, locks, a closed or poisoned journal, internal errors) 3.
fn exit_code(error: &torrent_journal::Error) -> u8 {
    use torrent_journal::Error;
    match error {
        Error::ChecksumMismatch { .. }
        | Error::Corrupt { .. }
        | Error::SequenceBreak { .. }
        | Error::Decode { .. }
        | Error::CorruptSnapshot { .. }
        | Error::ProjectionDamaged { .. }
        // Nothing at all is restorable: the journal starts after seq 1 and no usable snapshot
        // continues it (damaged or missing), so the store cannot reach its head.
        | Error::NotRestorable {
            earliest_seq: None,
            ..
        } => 1,
        Error::InvalidArgument(_)
        | Error::InvalidInfoHash { .. }
        | Error::SeqNotRetained { .. }
        // A point before the earliest restorable one: the history asked for is not retained.
        | Error::NotRestorable {
            earliest_seq: Some(_),
            ..
        } => 2,
        Error::Io { .. }
        | Error::Sqlite { .. }
        | Error::Unsupported { .. }
        | Error::Internal { .. }
        | Error::Locked { .. }
        | Error::CompactionRunning { .. }
        | Error::Poisoned { .. }
        | Error::Unacknowledged { .. }
        | Error::Closed => 3,
        // Errors a newer library adds (the enum is non-exhaustive): "any other failure".
        _ => 3,
    }
}

impl Failure {
    /// A usage error (exit code 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Self {
            code: 2,
            error: anyhow::anyhow!("{message}"),
        }
    }
}

/// Result of a command: the exit code on success.
pub type CmdResult = Result<ExitCode, Failure>;

/// Writes to stdout; a closed pipe (`tj … | head`) is a normal way for a reader to stop.
pub fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.quiet);
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, cli.quiet),
        Command::Stats(args) => inspect::stats(args, cli.quiet),
        Command::Verify(args) => inspect::verify(args, cli.quiet),
        Command::Tail(args) => inspect::tail(args, cli.quiet),
        Command::Check(args) => check::run(args, cli.quiet),
        Command::Replay(args) => replay::run(args, cli.quiet),
        Command::Follow(args) => follow::run(args, cli.quiet),
        Command::Restore(args) => timetravel::restore(args, cli.quiet),
        Command::Export(args) => timetravel::export(args, cli.quiet),
        Command::History(args) => timetravel::history(args, cli.quiet),
        Command::Compact(args) => timetravel::compact(args, cli.quiet),
        Command::Undelete(args) => timetravel::undelete(args, cli.quiet),
        Command::Salvage(args) => inspect::salvage(args, cli.quiet),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("tj: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}

fn init_tracing(quiet: bool) {
    let default = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TJ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
