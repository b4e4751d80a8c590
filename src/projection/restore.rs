//! Owns replay for embedders: [`replay_into`] brings any projection — built-in or your own —
//! to the journal's head, or to the state as of a seq or a time, reporting progress.

use std::sync::Arc;

use tracing::{info, warn};

use super::{CATCH_UP_BATCH_EVENTS, CatchUp, Projection, catch_up, flush, journal_has};
use crate::error::{Error, Result};
use crate::history::{self, Target};
use crate::journal::JournalReader;
use crate::model::Timestamp;

/// Replays the journal `reader` reads into `projection`, up to `target`:
///
/// - [`Target::Head`]: exactly [`catch_up`] — from the projection's checkpoint, resetting it
///   when that checkpoint is not in this journal, installing the newest snapshot's state when
///   compaction removed the events it needs.
/// - [`Target::Seq`] / [`Target::Time`]: the state after that seq (after the last event
///   committed at or before that time). A projection already past the target, or whose
///   checkpoint is not in this journal, is reset first; the events after its checkpoint are
///   applied while the journal holds them, otherwise the state at the target is materialized
///   from the newest snapshot at or before it ([`crate::history::state_at`]) and installed.
///
/// `progress` is called with the last seq applied after each batch (of up to
/// [`CATCH_UP_BATCH_EVENTS`] events) or install; [`JournalReader::head`] gives the total.
/// Errors: a target before the earliest restorable point or past the head, damage in the
/// journal, and whatever the projection returns. Reading needs no lock: it works beside a
/// live writer (a store in this or another process), but a projection the store feeds must
/// not be replayed into at the same time.
pub fn replay_into(
    reader: &JournalReader,
    projection: &mut dyn Projection,
    target: Target,
    progress: &mut dyn FnMut(u64),
) -> Result<CatchUp> {
    if target == Target::Head {
        return catch_up(projection, reader, progress);
    }
    let checkpoint = projection.checkpoint();
    let usable = checkpoint.seq == 0
        || (within(target, checkpoint.seq, checkpoint.at) && journal_has(reader, checkpoint)?);
    let rebuilt = !usable;
    if rebuilt {
        warn!(
            projection = projection.name(),
            checkpoint_seq = checkpoint.seq,
            %target,
            "projection is past the target or not from this journal; rebuilding it"
        );
        projection.reset()?;
    }
    let from = projection.checkpoint().seq + 1;
    let applied = match reader.frames(from) {
        Ok(frames) if from >= reader.first_retained_seq()? => {
            apply_until(projection, frames, target, progress)?
        }
        Ok(_) | Err(Error::SeqNotRetained { .. }) => {
            install_at(reader, projection, target, progress)?;
            0
        }
        Err(err) => return Err(err),
    };
    Ok(CatchUp {
        rebuilt,
        applied,
        checkpoint: projection.checkpoint(),
    })
}

/// Whether the event `seq` committed `at` is at or before `target`.
fn within(target: Target, seq: u64, at: Timestamp) -> bool {
    match target {
        Target::Seq(last) => seq <= last,
        Target::Time(last) => at <= last,
        Target::Head => true,
    }
}

/// Applies the frames up to `target` in batches; a seq target past the head is an error.
fn apply_until(
    projection: &mut dyn Projection,
    frames: crate::journal::reader::Frames,
    target: Target,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut applied = 0;
    let mut batch = Vec::with_capacity(CATCH_UP_BATCH_EVENTS);
    for frame in frames {
        let envelope = frame?.decode()?;
        if !within(target, envelope.seq, envelope.at) {
            break;
        }
        batch.push(envelope);
        if batch.len() == CATCH_UP_BATCH_EVENTS {
            applied += flush(projection, &mut batch, progress)?;
        }
    }
    applied += flush(projection, &mut batch, progress)?;
    if let Target::Seq(seq) = target
        && projection.checkpoint().seq < seq
    {
        return Err(Error::InvalidArgument(format!(
            "seq {seq} is past the journal's head (seq {})",
            projection.checkpoint().seq
        )));
    }
    info!(
        projection = projection.name(),
        applied, %target, "replayed the journal into the projection"
    );
    Ok(applied)
}

/// Installs the state at `target`, materialized from the newest snapshot at or before it.
fn install_at(
    reader: &JournalReader,
    projection: &mut dyn Projection,
    target: Target,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let point = history::state_at(Arc::clone(reader.storage()), reader.dir(), target)?;
    let (seq, snapshot) = (point.seq, point.snapshot);
    projection.install_owned(point.state)?;
    progress(seq);
    info!(projection = projection.name(), seq, snapshot = ?snapshot, %target, "installed the state at the target");
    Ok(())
}
