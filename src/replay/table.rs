//! The replay's hash tables, built for a stream of lookups that miss the cache.
//!
//! With a day of traffic live, the state is hundreds of megabytes and every value a start names
//! is a cache miss: the slot, then its log. A start names several values, and the next starts
//! are already read, so their misses can be overlapped: `Slots` puts a whole entry (hash, key,
//! the log's header) in one 64-byte line at an address the hash alone gives, so the replay
//! prefetches the lines of the starts two groups ahead (`touch`), and the log entries of the
//! next group, while it decides the current one (`super::sim::Sim::touch_slots`, `touch_logs`).
//!
//! Open addressing with linear probing, at most half full; entries are removed only by
//! `retain`, which rebuilds (the replay prunes in bulk, every so many records).

use std::hash::Hasher;

/// Asks the CPU to bring the cache line holding `p` closer, without waiting for it.
#[inline(always)]
#[allow(unsafe_code)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address, and changes nothing
    // the program can observe (Intel SDM, "PREFETCHh"); SSE is part of every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// FxHash: fast for short keys; the keys come from the operator's own traffic.
#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().unwrap_or_default());
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(i)).wrapping_mul(K);
    }
    fn write_usize(&mut self, i: usize) {
        self.0 = (self.0.rotate_left(5) ^ i as u64).wrapping_mul(K);
    }
    fn finish(&self) -> u64 {
        // One more mix so the low bits the tables use depend on every byte.
        let h = self.0;
        (h ^ (h >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ (h >> 32)
    }
}

/// The hash `Slots` files a key under.
pub fn hash_of(b: &[u8]) -> u64 {
    let mut h = Fx::default();
    h.write(b);
    h.finish()
}

/// A value or recipient as a table key: up to 22 bytes inline (no pointer to chase on a probe),
/// longer ones on the heap.
#[derive(Clone)]
pub enum Key {
    Inline(u8, [u8; 22]),
    Heap(Box<[u8]>),
}

impl Key {
    pub fn new(b: &[u8]) -> Self {
        if b.len() <= 22 {
            let mut buf = [0u8; 22];
            buf[..b.len()].copy_from_slice(b);
            Key::Inline(b.len() as u8, buf)
        } else {
            Key::Heap(Box::from(b))
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Key::Inline(len, buf) => &buf[..usize::from(*len)],
            Key::Heap(b) => b,
        }
    }
}

/// One slot: a cache line.
#[repr(align(64))]
struct Line<V>(Option<(u64, Key, V)>);

/// Where a key is, or where it would go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Found(usize),
    Vacant(usize),
}

pub struct Slots<V> {
    lines: Vec<Line<V>>,
    len: usize,
    /// Changes whenever entries move (growth, `retain`): a slot found at the same generation
    /// still holds its entry (entries are only added in between, into vacant slots).
    generation: u64,
}

/// Where a probe found an entry, valid while its table's generation stays the same: the
/// decision reuses what the loads ahead found instead of probing again.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hint(Option<(u64, usize)>);

const MIN_LINES: usize = 16;

impl<V> Default for Slots<V> {
    fn default() -> Self {
        Self::with_lines(MIN_LINES)
    }
}

impl<V> Slots<V> {
    fn with_lines(n: usize) -> Self {
        Self {
            lines: std::iter::repeat_with(|| Line(None)).take(n).collect(),
            len: 0,
            generation: 0,
        }
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.lines.len() - 1)
    }

    /// Prefetches the lines a key's probe starts at, so that `probe` finds it in the cache.
    pub fn touch(&self, hash: u64) {
        let home = self.home(hash);
        prefetch(self.lines.as_ptr().wrapping_add(home));
        // Many entries sit a slot or more past their home (linear probing, up to half full).
        prefetch(
            self.lines
                .as_ptr()
                .wrapping_add((home + 1) & (self.lines.len() - 1)),
        );
    }

    pub fn probe(&self, hash: u64, key: &[u8]) -> Probe {
        let mask = self.lines.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            match &self.lines[i].0 {
                None => return Probe::Vacant(i),
                Some((h, k, _)) if *h == hash && k.bytes() == key => return Probe::Found(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    pub fn get(&self, hash: u64, key: &[u8]) -> Option<&V> {
        self.get_hinted(hash, key).0
    }

    /// Like `get`, and where it found the entry, for `probe_hinted`.
    pub fn get_hinted(&self, hash: u64, key: &[u8]) -> (Option<&V>, Hint) {
        match self.probe(hash, key) {
            Probe::Found(i) => (self.at(i), Hint(Some((self.generation, i)))),
            Probe::Vacant(_) => (None, Hint(None)),
        }
    }

    /// `probe`, without the walk when `hint` found the key in this generation of the table.
    pub fn probe_hinted(&self, hint: Hint, hash: u64, key: &[u8]) -> Probe {
        match hint.0 {
            Some((generation, i)) if generation == self.generation => {
                debug_assert_eq!(self.probe(hash, key), Probe::Found(i));
                Probe::Found(i)
            }
            _ => self.probe(hash, key),
        }
    }

    /// The value in slot `i` (from `probe`).
    pub fn at(&self, i: usize) -> Option<&V> {
        self.lines.get(i)?.0.as_ref().map(|e| &e.2)
    }

    pub fn at_mut(&mut self, i: usize) -> Option<&mut V> {
        self.lines.get_mut(i)?.0.as_mut().map(|e| &mut e.2)
    }

    /// Fills the vacant slot `i` a `probe` for this key gave (nothing changed since).
    pub fn fill(&mut self, i: usize, hash: u64, key: &[u8], value: V) {
        if let Some(line) = self.lines.get_mut(i) {
            line.0 = Some((hash, Key::new(key), value));
            self.len += 1;
        }
        if self.len * 2 > self.lines.len() {
            self.rebuild(self.lines.len() * 2);
        }
    }

    /// Updates the value for `key`, inserted as `new()` first if absent.
    pub fn upsert(&mut self, key: &[u8], new: impl FnOnce() -> V, update: impl FnOnce(&mut V)) {
        let hash = hash_of(key);
        match self.probe(hash, key) {
            Probe::Found(i) => {
                if let Some(v) = self.at_mut(i) {
                    update(v);
                }
            }
            Probe::Vacant(i) => {
                let mut v = new();
                update(&mut v);
                self.fill(i, hash, key, v);
            }
        }
    }

    /// Keeps the entries `keep` says to, and sizes the table to them. `ahead` is shown each
    /// entry a few slots before `keep` is, to prefetch what `keep` will read.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool, ahead: impl Fn(&V)) {
        const AHEAD: usize = 8;
        let mut dropped = 0;
        for i in 0..self.lines.len() {
            if let Some(e) = self.lines.get(i + AHEAD).and_then(|l| l.0.as_ref()) {
                ahead(&e.2);
            }
            if let Some(e) = self.lines[i].0.as_mut()
                && !keep(&mut e.2)
            {
                self.lines[i].0 = None;
                dropped += 1;
            }
        }
        if dropped == 0 {
            return;
        }
        // Entries after a freed slot may now be unreachable from their home: place them again.
        let kept: Vec<(u64, Key, V)> = self.lines.iter_mut().filter_map(|l| l.0.take()).collect();
        let lines = (kept.len() * 2).next_power_of_two().max(MIN_LINES);
        let generation = self.generation + 1;
        if lines <= self.lines.len() && lines * 4 > self.lines.len() {
            // The same size, give or take: refill the table in place (no new pages to fault in).
            self.len = 0;
        } else {
            *self = Self::with_lines(lines);
        }
        self.generation = generation;
        for e in kept {
            self.place(e);
        }
    }

    fn rebuild(&mut self, lines: usize) {
        let old = std::mem::replace(self, Self::with_lines(lines));
        self.generation = old.generation + 1;
        for line in old.lines {
            if let Some(e) = line.0 {
                self.place(e);
            }
        }
    }

    fn place(&mut self, e: (u64, Key, V)) {
        let mask = self.lines.len() - 1;
        let mut i = e.0 as usize & mask;
        while self.lines[i].0.is_some() {
            i = (i + 1) & mask;
        }
        self.lines[i].0 = Some(e);
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.lines
            .iter()
            .filter_map(|l| l.0.as_ref().map(|e| (e.1.bytes(), &e.2)))
    }
}

/// A set of 64-bit hashes, each with one flag: (service, `To`) seen, and whether it met a 429.
/// Eight bytes a slot, at most half full.
pub struct Seen {
    slots: Vec<u64>,
    len: usize,
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            slots: vec![0; MIN_LINES],
            len: 0,
        }
    }
}

impl Seen {
    /// The identity kept for `hash`: never 0 (an empty slot), the low bit free for the flag.
    fn id(hash: u64) -> u64 {
        (hash & !1).max(2)
    }

    pub fn touch(&self, hash: u64) {
        prefetch(
            self.slots
                .as_ptr()
                .wrapping_add(Self::id(hash) as usize & (self.slots.len() - 1)),
        );
    }

    fn slot(&mut self, hash: u64) -> usize {
        let id = Self::id(hash);
        let mask = self.slots.len() - 1;
        let mut i = id as usize & mask;
        loop {
            match self.slots[i] {
                0 => {
                    self.slots[i] = id;
                    self.len += 1;
                    if self.len * 2 > self.slots.len() {
                        self.grow();
                        return self.slot(hash);
                    }
                    return i;
                }
                s if s & !1 == id => return i,
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// Records `hash` as seen; true if it had not been.
    pub fn see(&mut self, hash: u64) -> bool {
        let before = self.len;
        self.slot(hash);
        self.len != before
    }

    /// Sets the flag of `hash` (seen if it was not); true if it was not set.
    pub fn flag(&mut self, hash: u64) -> bool {
        let i = self.slot(hash);
        let was = self.slots[i] & 1 == 1;
        self.slots[i] |= 1;
        !was
    }

    fn grow(&mut self) {
        let lines = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, vec![0; lines]);
        let mask = self.slots.len() - 1;
        for s in old.into_iter().filter(|&s| s != 0) {
            let mut i = (s & !1) as usize & mask;
            while self.slots[i] != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_slot_with_a_compact_log_is_one_cache_line() {
        assert_eq!(
            std::mem::size_of::<Line<super::super::log::CompactLog>>(),
            64
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(Vec<u8>),
        Prune(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => proptest::collection::vec(0u8..4, 0..30).prop_map(Op::Add),
            1 => (0u8..4).prop_map(Op::Prune),
        ]
    }

    proptest! {
        /// `Slots` holds what a `HashMap` would, through growth and pruning.
        #[test]
        fn slots_are_a_map(ops in proptest::collection::vec(op(), 0..300)) {
            let mut s: Slots<u32> = Slots::default();
            let mut m: HashMap<Vec<u8>, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Add(k) => {
                        s.upsert(&k, || 0, |v| *v += 1);
                        *m.entry(k).or_default() += 1;
                    }
                    Op::Prune(r) => {
                        s.retain(|v| *v % 4 != u32::from(r), |_| {});
                        m.retain(|_, v| *v % 4 != u32::from(r));
                    }
                }
                prop_assert_eq!(s.len(), m.len());
            }
            for (k, v) in &m {
                prop_assert_eq!(s.get(hash_of(k), k), Some(v));
            }
            let listed: HashMap<Vec<u8>, u32> = s.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
            prop_assert_eq!(listed, m);
        }

        /// A hint taken by `get_hinted` gives what a fresh probe gives, after any entries were
        /// added (growth) or pruned since: reused only while the generation is the same.
        #[test]
        fn a_hinted_probe_is_a_probe(
            keys in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..6), 1..60),
            later in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..6), 0..60),
            prune in any::<bool>(),
        ) {
            let mut s: Slots<u32> = Slots::default();
            for k in &keys {
                s.upsert(k, || 0, |v| *v += 1);
            }
            let hints: Vec<Hint> = keys.iter().map(|k| s.get_hinted(hash_of(k), k).1).collect();
            for k in &later {
                s.upsert(k, || 0, |v| *v += 1);
            }
            if prune {
                s.retain(|v| *v % 2 == 0, |_| {});
            }
            for (k, hint) in keys.iter().zip(hints) {
                prop_assert_eq!(s.probe_hinted(hint, hash_of(k), k), s.probe(hash_of(k), k));
            }
        }

        /// `Seen` counts distinct hashes and keeps one flag each.
        #[test]
        fn seen_is_a_set_with_a_flag(ops in proptest::collection::vec((0u64..500, any::<bool>()), 0..400)) {
            let mut s = Seen::default();
            let (mut seen, mut flagged) = (HashSet::new(), HashSet::new());
            for (h, flag) in ops {
                // Spread the small numbers over the 64 bits as real hashes are.
                let hash = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if flag {
                    prop_assert_eq!(s.flag(hash), flagged.insert(h));
                    seen.insert(h);
                } else {
                    prop_assert_eq!(s.see(hash), seen.insert(h));
                }
                prop_assert_eq!(s.len(), seen.len());
            }
        }
    }
}
