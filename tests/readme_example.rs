//! Proves the README's embedding example works: the same code, run against a temporary directory.

use torrent_journal::event::Event;
use torrent_journal::model::{InfoHash, Timestamp, TorrentState};
use torrent_journal::{Journal, JournalReader};

#[test]
fn readme_embedding_example_runs() -> torrent_journal::Result<()> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("client-state");
    let journal = Journal::open(&dir)?;
    let hash: InfoHash = "0123456789abcdef0123456789abcdef01234567".parse()?;
    let torrent = TorrentState::sample(hash, "debian.iso", Timestamp::now());
    let receipt = journal.append(&Event::TorrentSaved {
        torrent: Box::new(torrent.clone()),
    })?;
    assert_eq!(receipt.first_seq, 1);
    journal.close()?;

    let events: Vec<_> = JournalReader::open(&dir)?
        .events(1)?
        .collect::<Result<_, _>>()?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, 1);
    assert_eq!(
        events[0].event,
        Event::TorrentSaved {
            torrent: Box::new(torrent)
        }
    );
    Ok(())
}
