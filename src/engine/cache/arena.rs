//! Tables of records kept in buffers: each shard holds its records in one `Vec<u8>`, each record
//! as its length (u32 LE) and its bytes, and a hash table of their offsets (4 bytes a slot). A
//! record replaced or removed stays in the buffer as garbage until the garbage is half of the
//! buffer; the live records are then copied to a new one (`compact`), so writing stays amortised
//! O(record) and the buffer at most twice what is live.
//!
//! A million records then cost their bytes, 4 for each length and a slot: nothing is rounded up
//! to an allocator's size class, and records do not share pages with the short-lived
//! allocations of requests (which, freed around them, would keep those pages resident).

use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};

const SHARDS: usize = 64;

/// Garbage below this is never worth a copy.
const COMPACT_FROM: usize = 64 * 1024;

/// Sharded: a reader locks one shard briefly.
pub struct Table {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl Table {
    pub fn hash(&self, key: impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard of a hash, locked; chosen by bits its table does not look at (a table takes a
    /// bucket's index from the low bits and its tag from the top seven).
    pub fn lock(&self, hash: u64) -> MutexGuard<'_, Shard> {
        self.shards[(hash >> 32) as usize % SHARDS].lock()
    }

    /// Every shard, each locked in turn.
    pub fn shards(&self) -> impl Iterator<Item = MutexGuard<'_, Shard>> {
        self.shards.iter().map(|s| s.lock())
    }

    pub fn len(&self) -> usize {
        self.shards().map(|s| s.len()).sum()
    }

    /// Bytes held: buffers and slots (a slot is 4 bytes and a control byte).
    pub fn bytes(&self) -> usize {
        self.shards()
            .map(|s| s.buf.capacity() + 5 * s.at.capacity())
            .sum()
    }

    /// `Shard::tighten` for every shard.
    pub fn tighten(&self) {
        for mut s in self.shards() {
            s.tighten();
        }
    }

    /// Makes room for `n` more records, of `bytes` in all, spread over the shards (at start-up:
    /// no table or buffer is copied as it grows).
    pub fn reserve(&self, n: usize, bytes: usize, rehash: impl Fn(&[u8]) -> u64) {
        let each = n / SHARDS + n / SHARDS / 8 + 1;
        let bytes = bytes / SHARDS + bytes / SHARDS / 8;
        for mut s in self.shards() {
            let Shard { buf, at, .. } = &mut *s;
            at.reserve(each, |&o| rehash(record(buf, o)));
            buf.reserve(bytes);
        }
    }
}

#[derive(Default)]
pub struct Shard {
    buf: Vec<u8>,
    /// Bytes of `buf` no offset points to.
    garbage: usize,
    at: HashTable<u32>,
    /// Where a record being written is built.
    scratch: Vec<u8>,
}

/// The record at offset `at`.
fn record(buf: &[u8], at: u32) -> &[u8] {
    let at = at as usize;
    let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("four bytes")) as usize;
    &buf[at + 4..at + 4 + len]
}

/// Appends a record; answers its offset. A shard's buffer is addressed by 32 bits: 4 GiB of
/// records in one shard (256 GiB in a table) is beyond what the cache is for.
fn append(buf: &mut Vec<u8>, rec: &[u8]) -> u32 {
    let at = buf.len();
    let end = at + 4 + rec.len();
    assert!(
        end <= u32::MAX as usize,
        "a shard of the cache holds at most 4 GiB"
    );
    buf.extend_from_slice(&(rec.len() as u32).to_le_bytes());
    buf.extend_from_slice(rec);
    at as u32
}

impl Shard {
    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn find(&self, hash: u64, is: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
        let buf = &self.buf;
        self.at
            .find(hash, |&o| is(record(buf, o)))
            .map(|&o| record(buf, o))
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.at.iter().map(|&o| record(&self.buf, o))
    }

    /// Adds a record whose key is not held (at start-up).
    pub fn insert_new(&mut self, hash: u64, rec: &[u8], rehash: impl Fn(&[u8]) -> u64) {
        let o = append(&mut self.buf, rec);
        let buf = &self.buf;
        self.at.insert_unique(hash, o, |&o| rehash(record(buf, o)));
    }

    /// Writes the record `is` finds, or a new one: `write` gets the record held (if any) and
    /// appends the new record's bytes to the vector it is given; appending nothing leaves the
    /// shard as it was (a record is never empty).
    pub fn write(
        &mut self,
        hash: u64,
        is: impl Fn(&[u8]) -> bool,
        rehash: impl Fn(&[u8]) -> u64,
        write: impl FnOnce(Option<&[u8]>, &mut Vec<u8>),
    ) {
        self.write_keeping_garbage(hash, is, rehash, write);
        self.settle();
    }

    /// `write`, leaving what it replaces in the buffer while it fits in the room made for it
    /// (the start-up writes every record more than once, into room made at once: one copy at
    /// the end, `tighten`, is cheaper). Once the buffer outgrows its room with garbage half of
    /// it, it is copied as `write` would: a recipient restored with thousands of attempts, each
    /// rewriting its record, leaves no more than that.
    pub fn write_keeping_garbage(
        &mut self,
        hash: u64,
        is: impl Fn(&[u8]) -> bool,
        rehash: impl Fn(&[u8]) -> u64,
        write: impl FnOnce(Option<&[u8]>, &mut Vec<u8>),
    ) {
        let Shard {
            buf,
            garbage,
            at,
            scratch,
        } = self;
        scratch.clear();
        let room = buf.capacity();
        match at.find_mut(hash, |&o| is(record(buf, o))) {
            Some(o) => {
                let old = record(buf, *o);
                let old_len = old.len();
                write(Some(old), scratch);
                if !scratch.is_empty() {
                    *garbage += 4 + old_len;
                    *o = append(buf, scratch);
                }
            }
            None => {
                write(None, scratch);
                if !scratch.is_empty() {
                    let o = append(buf, scratch);
                    let buf = &*buf;
                    at.insert_unique(hash, o, |&o| rehash(record(buf, o)));
                }
            }
        }
        if self.buf.capacity() != room {
            self.settle();
        }
    }

    /// Removes the record `is` finds; answers it was there.
    pub fn remove(&mut self, hash: u64, is: impl Fn(&[u8]) -> bool) -> bool {
        let buf = &self.buf;
        let Ok(entry) = self.at.find_entry(hash, |&o| is(record(buf, o))) else {
            return false;
        };
        let (o, _) = entry.remove();
        self.garbage += 4 + record(&self.buf, o).len();
        self.settle();
        true
    }

    /// Keeps the records for which `f` answers true; `f` may append a record to replace it to
    /// the vector it is given.
    pub fn retain(&mut self, mut f: impl FnMut(&[u8], &mut Vec<u8>) -> bool) {
        let Shard {
            buf,
            garbage,
            at,
            scratch,
        } = self;
        at.retain(|o| {
            scratch.clear();
            let old = record(buf, *o);
            let old_len = old.len();
            let keep = f(old, scratch);
            if !keep || !scratch.is_empty() {
                *garbage += 4 + old_len;
            }
            if keep && !scratch.is_empty() {
                *o = append(buf, scratch);
            }
            keep
        });
        self.settle();
    }

    /// Gives back what a table emptied by a sweep no longer needs (hash tables keep their
    /// capacity when entries are removed).
    pub fn shrink(&mut self, rehash: impl Fn(&[u8]) -> u64) {
        let Shard { buf, at, .. } = self;
        if at.capacity() > 64 && at.capacity() > 4 * at.len() {
            at.shrink_to_fit(|&o| rehash(record(buf, o)));
        }
        if self.buf.capacity() > 2 * self.buf.len() + COMPACT_FROM {
            self.compact();
        }
        if self.scratch.capacity() > COMPACT_FROM {
            self.scratch = Vec::new();
        }
    }

    /// Copies the buffer to exactly its live records and fits the table to them, after an
    /// eviction: what it let go of is given back at once, not when the buffer next fills.
    pub fn fit(&mut self, rehash: impl Fn(&[u8]) -> u64) {
        let Shard { buf, at, .. } = self;
        if at.capacity() > 2 * at.len() {
            at.shrink_to_fit(|&o| rehash(record(buf, o)));
        }
        if self.garbage > 0 || self.buf.capacity() > self.buf.len() + COMPACT_FROM {
            self.compact();
        }
        self.scratch = Vec::new();
    }

    /// Copies the buffer to exactly its live records, if it holds more (after the start-up,
    /// whose records were each written more than once).
    pub fn tighten(&mut self) {
        if self.garbage > 0 || self.buf.capacity() > self.buf.len() {
            self.compact();
        }
        self.scratch = Vec::new();
    }

    /// Copies the buffer once garbage is half of it.
    fn settle(&mut self) {
        if self.garbage >= COMPACT_FROM && 2 * self.garbage >= self.buf.len() {
            self.compact();
        }
    }

    /// Copies the live records to a buffer of their size.
    fn compact(&mut self) {
        let mut fresh = Vec::with_capacity(self.buf.len() - self.garbage);
        for o in self.at.iter_mut() {
            *o = append(&mut fresh, record(&self.buf, *o));
        }
        self.buf = fresh;
        self.garbage = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// A record here: its key (one byte) and a value of any length.
    fn key(rec: &[u8]) -> u8 {
        rec[0]
    }

    /// One record rewritten many times at start-up, growing each time (a verification restored
    /// with thousands of attempts): the garbage stays bounded by what is live, not by the sum of
    /// every version.
    #[test]
    fn garbage_kept_at_start_up_is_bounded() {
        let table = Table::default();
        let rehash = |rec: &[u8]| table.hash(key(rec));
        let mut shard = Shard::default();
        shard.buf.reserve(1 << 20);
        for n in 1..5_000usize {
            shard.write_keeping_garbage(
                table.hash(7u8),
                |r| key(r) == 7,
                rehash,
                |_, out| {
                    out.push(7);
                    out.resize(1 + 23 * n, 7);
                },
            );
            let live = 4 + 1 + 23 * n;
            assert!(
                shard.buf.len() <= 4 * live + (1 << 20),
                "{n}: {}",
                shard.buf.len()
            );
        }
        shard.tighten();
        assert_eq!((shard.buf.len(), shard.garbage), (4 + 1 + 23 * 4_999, 0));
    }

    proptest! {
        /// Whatever is written, removed or replaced, the shard holds what a map would, and its
        /// buffer stays within twice what is live (plus the garbage not yet worth a copy).
        #[test]
        fn a_shard_is_a_map(ops in proptest::collection::vec((0u8..16, proptest::option::of(0usize..20_000), any::<bool>()), 1..300)) {
            let table = Table::default();
            let hash = |k: u8| table.hash(k);
            let rehash = |rec: &[u8]| table.hash(key(rec));
            let mut shard = Shard::default();
            let mut model: HashMap<u8, usize> = HashMap::new();
            for (k, len, retain) in ops {
                match len {
                    Some(len) => {
                        shard.write(hash(k), |r| key(r) == k, rehash, |_, out| {
                            out.push(k);
                            out.resize(1 + len, k);
                        });
                        model.insert(k, len);
                    }
                    None if retain => {
                        // Drops the odd keys; the rest grow by one byte.
                        shard.retain(|r, out| {
                            if key(r) % 2 == 1 {
                                return false;
                            }
                            out.extend_from_slice(r);
                            out.push(key(r));
                            true
                        });
                        model.retain(|k, _| k % 2 == 0);
                        model.values_mut().for_each(|len| *len += 1);
                    }
                    None => {
                        prop_assert_eq!(shard.remove(hash(k), |r| key(r) == k), model.remove(&k).is_some());
                    }
                }
                prop_assert_eq!(shard.len(), model.len());
                for k in 0..16u8 {
                    let got = shard.find(hash(k), |r| key(r) == k);
                    prop_assert_eq!(got.map(|r| r.len() - 1), model.get(&k).copied());
                    prop_assert!(got.is_none_or(|r| r.iter().all(|&b| b == k)));
                }
                let live: usize = model.values().map(|len| 4 + 1 + len).sum();
                prop_assert_eq!(shard.buf.len() - shard.garbage, live);
                prop_assert!(shard.garbage < COMPACT_FROM || 2 * shard.garbage < shard.buf.len());
            }
            shard.shrink(rehash);
            prop_assert_eq!(shard.iter().count(), model.len());
            shard.tighten();
            let live: usize = model.values().map(|len| 4 + 1 + len).sum();
            prop_assert_eq!((shard.buf.len(), shard.garbage), (live, 0));
            for k in 0..16u8 {
                let got = shard.find(hash(k), |r| key(r) == k);
                prop_assert_eq!(got.map(|r| r.len() - 1), model.get(&k).copied());
            }
        }
    }
}
