//! The typed layer over the byte journal: [`Journal`] appends [`Event`]s, `JournalReader::events`
//! and `RawFrame::decode` read them back as [`Envelope`]s.
//!
//! The journal (`crate::journal`) is a log of opaque payloads with seqs and commit times. This
//! file is where its writer and reader meet events (verification and salvage decode the frames
//! they walk themselves, `crate::verify`, `crate::salvage`): it encodes each event (the journal refuses
//! payloads over `max_event_bytes`), attaches the events themselves to the append when a commit
//! listener wants them — the journal hands them back untouched with their receipts, so the
//! store's projections get typed events without decoding them again, and nothing is copied when
//! nobody listens — decodes frames for readers, and gives the writer its commit-time floor from
//! the newest snapshot's header (`crate::snapshot`).

use std::path::Path;

use crate::error::{Error, Result};
use crate::event::{self, Envelope, Event};
use crate::journal::{
    CommitListener, Durability, JournalOptions, JournalReader, Log, OpenHooks, RawFrame, Receipt,
    WriterStatus,
};

/// What an append attaches for the commit listener: the events its payloads encode when the
/// journal listens, empty when it does not.
type Attached = Vec<Event>;

/// Receives every committed event, in seq order, on the writer thread, before any appender of
/// its batch is answered (see `journal::CommitListener`: quick, and never appending).
pub(crate) type EventListener = Box<dyn FnMut(Vec<Envelope>) + Send>;

/// The writer handle of a journal: appends events (encoded as payloads of the byte journal).
/// Clones share one writer thread.
#[derive(Debug, Clone)]
pub struct Journal {
    log: Log<Attached>,
    /// Whether a commit listener needs the events themselves along with their encodings.
    listening: bool,
}

impl Journal {
    /// Opens (creating if needed) the journal in store directory `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, JournalOptions::default())
    }

    /// Opens the journal in `dir`: takes the lock, recovers, starts the writer thread.
    pub fn open_with(dir: impl AsRef<Path>, options: JournalOptions) -> Result<Self> {
        Self::open_listening(dir, options, None)
    }

    /// Opens with a listener that sees every committed event before its appender is answered.
    /// Appends then carry their events (see [`Journal::append_events_async`]).
    pub(crate) fn open_listening(
        dir: impl AsRef<Path>,
        options: JournalOptions,
        listener: Option<EventListener>,
    ) -> Result<Self> {
        let listening = listener.is_some();
        let hooks = OpenHooks {
            listener: listener.map(with_envelopes),
            // After a compaction the retained segments may hold no event at all; commit times
            // must still not go back before the newest snapshot's.
            commit_time_floor: &crate::snapshot::newest_header_at,
        };
        let log = Log::open(dir.as_ref(), options, hooks)?;
        Ok(Self { log, listening })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        self.log.dir()
    }

    /// The durability policy in force.
    pub fn durability(&self) -> Durability {
        self.log.durability()
    }

    /// The writer's last written and last durable seqs.
    pub fn status(&self) -> &WriterStatus {
        self.log.status()
    }

    /// Appends one event, blocking until it is committed. Returns its seq and commit time.
    ///
    /// A failed write or sync of the batch gives [`Error::Unacknowledged`]: the outcome is
    /// unknown (the bytes may have reached the disk before the failure, and a reopen keeps every
    /// whole frame; see `docs/FORMAT.md`, "Durability and recovery"). It names the seqs the
    /// events were given: after reopening, [`JournalReader::appended`] says whether they landed.
    ///
    /// Blocks the calling thread: from async code use [`Journal::append_async`] (like tokio's
    /// own blocking calls, this panics on an async runtime's worker thread).
    pub fn append(&self, event: &Event) -> Result<Receipt> {
        let payload = event::encode(event)?;
        let attached = self.attach(std::slice::from_ref(event));
        self.log.append(vec![payload], attached)
    }

    /// Appends events as consecutive seqs in one commit (all in one batch).
    pub fn append_all(&self, events: &[Event]) -> Result<Receipt> {
        let payloads = encode_all(events)?;
        self.log.append(payloads, self.attach(events))
    }

    /// Async form of [`Journal::append`].
    pub async fn append_async(&self, event: &Event) -> Result<Receipt> {
        let payload = event::encode(event)?;
        let attached = self.attach(std::slice::from_ref(event));
        self.log.append_async(vec![payload], attached).await
    }

    /// Async form of [`Journal::append_all`].
    pub async fn append_all_async(&self, events: &[Event]) -> Result<Receipt> {
        let payloads = encode_all(events)?;
        self.log.append_async(payloads, self.attach(events)).await
    }

    /// Appends owned events as consecutive seqs in one commit, without copying them for a
    /// commit listener (they are moved to it).
    pub(crate) async fn append_events_async(&self, events: Vec<Event>) -> Result<Receipt> {
        let payloads = encode_all(&events)?;
        let attached = if self.listening { events } else { Vec::new() };
        self.log.append_async(payloads, attached).await
    }

    /// Syncs what is written, stops the writer and releases the lock. Other clones of this
    /// handle get [`Error::Closed`] afterwards.
    pub fn close(&self) -> Result<()> {
        self.log.close()
    }

    /// Async form of [`Journal::close`].
    pub async fn close_async(&self) -> Result<()> {
        self.log.close_async().await
    }

    /// Copies of the events for the commit listener, if there is one.
    fn attach(&self, events: &[Event]) -> Attached {
        if self.listening {
            events.to_vec()
        } else {
            Vec::new()
        }
    }
}

fn encode_all(events: &[Event]) -> Result<Vec<Vec<u8>>> {
    if events.is_empty() {
        return Err(Error::InvalidArgument(
            "append_all needs at least one event".into(),
        ));
    }
    events.iter().map(event::encode).collect()
}

/// The byte journal's listener for an event listener: each append's events, numbered from its
/// receipt, become envelopes.
fn with_envelopes(mut listener: EventListener) -> CommitListener<Attached> {
    Box::new(move |appends: Vec<(Receipt, Attached)>| {
        let count = appends
            .iter()
            .map(|(receipt, _)| receipt.count)
            .sum::<u64>();
        let mut envelopes = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for (receipt, events) in appends {
            assert_eq!(
                events.len() as u64,
                receipt.count,
                "a listening journal carries an event for every payload"
            );
            let numbered = (receipt.first_seq..).zip(events);
            envelopes.extend(numbered.map(|(seq, event)| Envelope::new(seq, receipt.at, event)));
        }
        listener(envelopes);
    })
}

impl RawFrame {
    /// Decodes the payload into an event envelope.
    pub fn decode(&self) -> Result<Envelope> {
        let event = event::decode(&self.payload).map_err(|reason| Error::Decode {
            segment: self.segment.to_path_buf(),
            offset: self.offset,
            seq: self.seq,
            reason,
        })?;
        Ok(Envelope {
            seq: self.seq,
            at: self.at,
            event,
        })
    }
}

impl JournalReader {
    /// How many of `events` the journal holds at seqs `first_seq..`, counted from the first:
    /// the answer to an append that failed with [`Error::Unacknowledged`] (whose `first_seq` it
    /// takes). Recovery keeps whole frames in order, so what landed is a prefix of the append.
    ///
    /// Ask after reopening the journal and before appending anything else: a lost append's
    /// seqs are given to the next events. (An equal event appended there since would count as
    /// landed — true of its content, which is what a retry needs to know.)
    pub fn appended(&self, first_seq: u64, events: &[Event]) -> Result<usize> {
        let head = self.head()?.map_or(0, |(seq, _)| seq);
        if events.is_empty() || first_seq > head {
            return Ok(0);
        }
        let mut landed = 0;
        for (envelope, event) in self.events(first_seq)?.zip(events) {
            if envelope?.event != *event {
                break;
            }
            landed += 1;
        }
        Ok(landed)
    }

    /// Events with seq ≥ `from_seq`, decoded, in seq order.
    pub fn events(&self, from_seq: u64) -> Result<impl Iterator<Item = Result<Envelope>>> {
        Ok(self
            .frames(from_seq)?
            .map(|frame| frame.and_then(|f| f.decode())))
    }
}
