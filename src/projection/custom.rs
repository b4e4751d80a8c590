//! Owns the projections an embedder registers on the store ([`Registered`],
//! [`StoreOptions::with_projection`](crate::StoreOptions::with_projection)): how the store catches them up at open and feeds them each
//! committed batch on its projection thread, rebuilding one that reports damage.
//!
//! A registered projection is any [`Projection`]: the store drives it with the same
//! [`catch_up`] as the built-in ones, so the rules are theirs — a projection
//! ahead of the journal (or from another journal) is reset and rebuilt; one whose checkpoint
//! is older than the retained journal (compaction removed the events it needs) gets
//! [`Projection::install`] of the state at the head (newest snapshot + journal tail), then the
//! events after it. What the store cannot do for a custom projection is move its files aside:
//! on damage ([`Error::ProjectionDamaged`] from `apply`) it calls [`Projection::reset`], which
//! must leave an empty projection at seq 0 (a projection whose storage is beyond repair should
//! recreate it there).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{error, info, warn};

use super::{Projection, catch_up};
use crate::error::{Error, Result};
use crate::event::Envelope;
use crate::journal::JournalReader;

/// A projection shared between the embedder (who reads it) and the store (which feeds it).
pub type SharedProjection = Arc<Mutex<dyn Projection>>;

/// The projections registered on a store with `StoreOptions::with_projection`. Cloning the
/// options shares them: a store opened again with the same options feeds the same instances,
/// from their own checkpoints.
#[derive(Clone, Default)]
pub struct Registered {
    projections: Vec<SharedProjection>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A count only: reading names would lock, and could wait for the projection thread.
        f.debug_struct("Registered")
            .field("count", &self.projections.len())
            .finish()
    }
}

impl Registered {
    /// Adds one.
    pub fn push(&mut self, projection: SharedProjection) {
        self.projections.push(projection);
    }

    /// How many are registered.
    pub fn len(&self) -> usize {
        self.projections.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.projections.is_empty()
    }

    /// Catches every one up with the journal (at store open); see [`Fed::open_caught_up`].
    pub(crate) fn open_caught_up(&self, reader: &JournalReader) -> Result<Vec<Fed>> {
        self.projections
            .iter()
            .map(|shared| Fed::open_caught_up(Arc::clone(shared), reader))
            .collect()
    }
}

/// A registered projection the store's projection thread feeds (`None` once it failed with an
/// error that is not damage: it catches up from its checkpoint when the store reopens).
pub(crate) struct Fed {
    projection: Option<SharedProjection>,
}

fn lock(shared: &SharedProjection) -> MutexGuard<'_, dyn Projection + 'static> {
    // A panic in the embedder's code while it held the lock leaves the projection as it was:
    // its checkpoint still says what it holds, so carrying on is as safe as before.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_damage(err: &Error) -> bool {
    matches!(err, Error::ProjectionDamaged { .. })
}

impl Fed {
    /// Catches `shared` up with the journal; damage found on the way resets it and rebuilds it
    /// from the journal once (damage again is an error, which fails the store's open).
    fn open_caught_up(shared: SharedProjection, reader: &JournalReader) -> Result<Fed> {
        {
            let mut projection = lock(&shared);
            match catch_up(&mut *projection, reader, &mut |_| {}) {
                Ok(_) => {}
                Err(err) if is_damage(&err) => rebuild(&mut *projection, &err, reader)?,
                Err(err) => return Err(err),
            }
        }
        Ok(Fed {
            projection: Some(shared),
        })
    }

    /// Applies the part of `batch` the projection does not hold yet. Damage resets it and
    /// rebuilds it from the journal at once; another error stops feeding it until reopen.
    pub(crate) fn apply(&mut self, batch: &[Envelope], reader: &JournalReader) {
        let Some(shared) = &self.projection else {
            return;
        };
        let mut projection = lock(shared);
        // A projection rebuilt from the journal may already hold part of the batch, or all.
        let done = projection.checkpoint().seq;
        let fresh = &batch[batch.partition_point(|e| e.seq <= done)..];
        if fresh.is_empty() {
            return;
        }
        let name = projection.name();
        let failed = match projection.apply(fresh) {
            Ok(()) => None,
            Err(err) if is_damage(&err) => rebuild(&mut *projection, &err, reader).err(),
            Err(err) => Some(err),
        };
        drop(projection);
        if let Some(err) = failed {
            // The journal has the events; the projection catches up from its checkpoint on
            // the next open. Until then it stays behind rather than guess.
            error!(projection = name, error = %err, "projection failed; it will catch up on reopen");
            self.projection = None;
        }
    }
}

/// Resets a damaged projection and replays the journal (or installs the newest snapshot's
/// state, when compacted) into it.
fn rebuild(projection: &mut dyn Projection, damage: &Error, reader: &JournalReader) -> Result<()> {
    let name = projection.name();
    warn!(projection = name, damage = %damage, "projection damaged; resetting it and rebuilding it from the journal");
    projection.reset()?;
    let caught_up = catch_up(projection, reader, &mut |_| {})?;
    info!(
        projection = name,
        seq = caught_up.checkpoint.seq,
        "rebuilt the projection from the journal"
    );
    Ok(())
}
