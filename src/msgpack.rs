//! A minimal, bounds-checked MessagePack walker: finds the extent of values and reads the few
//! scalars the fast paths need (the replay's peek, splitting a snapshot body for parallel
//! decoding) without decoding anything else.

use crate::model::InfoHash;

/// The length of the MessagePack value at the start of `bytes` (`None`: not one well-formed
/// value). Lets a decoder that borrows from its input report trailing bytes.
pub(crate) fn value_len(bytes: &[u8]) -> Option<usize> {
    let mut c = Cursor::new(bytes);
    c.skip()?;
    Some(c.pos)
}

/// A bounds-checked MessagePack reader; every method returns `None` on malformed input.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes from `start` to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }

    pub(crate) fn peek_byte(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = self.peek_byte()?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn be(&mut self, n: usize) -> Option<usize> {
        let bytes = self.take(n)?;
        let mut v: u64 = 0;
        for &b in bytes {
            v = (v << 8) | u64::from(b);
        }
        usize::try_from(v).ok()
    }

    pub(crate) fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            m @ 0x80..=0x8f => Some(usize::from(m & 0x0f)),
            0xde => self.be(2),
            0xdf => self.be(4),
            _ => None,
        }
    }

    pub(crate) fn str(&mut self) -> Option<&'a [u8]> {
        let len = match self.byte()? {
            m @ 0xa0..=0xbf => usize::from(m & 0x1f),
            0xd9 => self.be(1)?,
            0xda => self.be(2)?,
            0xdb => self.be(4)?,
            _ => return None,
        };
        self.take(len)
    }

    pub(crate) fn info_hash(&mut self) -> Option<InfoHash> {
        let len = match self.byte()? {
            0xc4 => self.be(1)?,
            0xc5 => self.be(2)?,
            0xc6 => self.be(4)?,
            _ => return None,
        };
        InfoHash::from_bytes(self.take(len)?).ok()
    }

    /// The `info_hash` of a torrent map (its first). With `finish`, the cursor ends after the
    /// map; without, right after the hash (inside the map: the caller reads nothing more).
    pub(crate) fn torrent_hash(&mut self, finish: bool) -> Option<InfoHash> {
        let entries = self.map_len()?;
        for i in 0..entries {
            match self.str()? {
                b"info_hash" => {
                    let hash = self.info_hash()?;
                    if finish {
                        for _ in i + 1..entries {
                            self.skip()?;
                            self.skip()?;
                        }
                    }
                    return Some(hash);
                }
                _ => self.skip()?,
            }
        }
        None
    }

    /// Skips one value (of any depth, without recursion).
    pub(crate) fn skip(&mut self) -> Option<()> {
        let mut values: usize = 1;
        while values > 0 {
            values -= 1;
            let (extra, items) = match self.byte()? {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                m @ 0x80..=0x8f => (0, 2 * usize::from(m & 0x0f)),
                m @ 0x90..=0x9f => (0, usize::from(m & 0x0f)),
                m @ 0xa0..=0xbf => (usize::from(m & 0x1f), 0),
                0xc4 | 0xd9 => (self.be(1)?, 0),
                0xc5 | 0xda => (self.be(2)?, 0),
                0xc6 | 0xdb => (self.be(4)?, 0),
                0xc7 => (self.be(1)? + 1, 0),
                0xc8 => (self.be(2)? + 1, 0),
                0xc9 => (self.be(4)?.checked_add(1)?, 0),
                0xca => (4, 0),
                0xcb => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xce | 0xd2 => (4, 0),
                0xcf | 0xd3 => (8, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (0, self.be(2)?),
                0xdd => (0, self.be(4)?),
                0xde => (0, self.be(2)?.checked_mul(2)?),
                0xdf => (0, self.be(4)?.checked_mul(2)?),
                // 0xc1 is never used.
                _ => return None,
            };
            self.take(extra)?;
            values = values.checked_add(items)?;
            // Every value takes at least a byte: more than are left is malformed (and keeps
            // the count bounded by the input).
            if values > self.buf.len() - self.pos {
                return None;
            }
        }
        Some(())
    }
}
