//! The cache's entries as bytes: a recipient (its recipient text, recent sends and pending
//! verification with its attempts) and an admission log are each one allocation, read back in
//! one pass. The cache may hold millions of them: a table's slot is then a pointer or two, and
//! the entry is exactly the size of what it holds.
//!
//! Layout of a recipient (`uv`: an unsigned LEB128 varint; `zz`: a signed one, zigzag; `text`:
//! `uv` length and UTF-8 bytes; `sid`: a generated SID packed in 18 bytes, anything else as
//! text):
//!
//! ```text
//! scope: uv | to: text | sends: uv count, i64 LE each (oldest first) | 0, or the pending verification:
//!   1 + status: u8 | sid | date_created: i64 LE | expires, date_updated: zz from date_created |
//!   version, checks_failed: uv | channel, code: text | amount, payee: 0, or 1 and text |
//!   attempts: uv count, each sid, channel (uv 0 if the verification's, else uv 1 + length and
//!   the text), at: zz from date_created (oldest first)
//! ```
//!
//! An admission log: `rate limit id: i64 LE | value: text | times: i64 LE each (oldest first)`.
//! Only this module writes these bytes, and what goes in comes back out (tests below).

use std::collections::VecDeque;

use data_encoding::HEXLOWER;

use crate::core::{Attempt, Status, Verification};

/// Every status, by its byte in a record.
const STATUSES: [Status; 7] = [
    Status::Pending,
    Status::Approved,
    Status::Canceled,
    Status::MaxAttemptsReached,
    Status::Deleted,
    Status::Failed,
    Status::Expired,
];

// --- writing --------------------------------------------------------------------------------

fn put_uv(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zz(out: &mut Vec<u8>, v: i64) {
    put_uv(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    put_uv(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_option(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_text(out, t);
        }
    }
}

/// A generated SID (two capital letters, 32 lowercase hex digits) in 18 bytes, anything else
/// as it is: tag 0 and the bytes, or tag 1 and the text.
fn put_sid(out: &mut Vec<u8>, sid: &str) {
    match pack_sid(sid) {
        Some(packed) => {
            out.push(0);
            out.extend_from_slice(&packed);
        }
        None => {
            out.push(1);
            put_text(out, sid);
        }
    }
}

/// The 18 bytes of a generated SID, or `None` for any other text. Lowercase hex only: the text
/// must come back as it was.
pub fn pack_sid(text: &str) -> Option<[u8; 18]> {
    let b = text.as_bytes();
    if b.len() != 34 || !b[..2].iter().all(u8::is_ascii_uppercase) {
        return None;
    }
    let mut out = [0u8; 18];
    out[..2].copy_from_slice(&b[..2]);
    HEXLOWER.decode_mut(&b[2..], &mut out[2..]).ok()?;
    Some(out)
}

// --- reading --------------------------------------------------------------------------------

/// Reads a record in order. Records are only ever this module's own bytes: a short or
/// malformed one is a bug, and indexing out of bounds says so.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, at: 0 }
    }

    fn u8(&mut self) -> u8 {
        self.at += 1;
        self.b[self.at - 1]
    }

    fn uv(&mut self) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = self.u8();
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn zz(&mut self) -> i64 {
        let v = self.uv();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        self.at += n;
        &self.b[self.at - n..self.at]
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.bytes(8).try_into().expect("eight bytes"))
    }

    fn text(&mut self) -> &'a str {
        let n = self.uv() as usize;
        std::str::from_utf8(self.bytes(n)).expect("a record holds UTF-8 text")
    }

    fn option(&mut self) -> Option<&'a str> {
        (self.u8() == 1).then(|| self.text())
    }

    /// A pending verification's status, or `None` for none.
    fn status(&mut self) -> Option<Status> {
        match self.u8() {
            0 => None,
            b => Some(STATUSES[usize::from(b - 1)]),
        }
    }

    /// An attempt's channel: `of`, its verification's, or its own.
    fn channel<'b>(&mut self, of: &'b str) -> &'b str
    where
        'a: 'b,
    {
        match self.uv() {
            0 => of,
            n => {
                std::str::from_utf8(self.bytes(n as usize - 1)).expect("a record holds UTF-8 text")
            }
        }
    }

    fn sid(&mut self) -> SidRef<'a> {
        match self.u8() {
            0 => SidRef::Packed(self.bytes(18)),
            _ => SidRef::Text(self.text()),
        }
    }
}

/// A SID as a record holds it.
#[derive(Clone, Copy)]
enum SidRef<'a> {
    Packed(&'a [u8]),
    Text(&'a str),
}

impl SidRef<'_> {
    fn text(self) -> String {
        match self {
            SidRef::Packed(b) => {
                let mut s = String::with_capacity(34);
                s.push(b[0] as char);
                s.push(b[1] as char);
                s.push_str(&HEXLOWER.encode(&b[2..]));
                s
            }
            SidRef::Text(t) => t.to_owned(),
        }
    }

    /// Whether this is the SID `want` (packed as `pack_sid` packs it).
    fn is(self, want: &Wanted<'_>) -> bool {
        match (self, want.packed) {
            (SidRef::Packed(b), Some(p)) => b == p,
            (SidRef::Text(t), None) => t == want.text,
            _ => false,
        }
    }
}

/// A SID being looked for, packed once.
pub struct Wanted<'a> {
    text: &'a str,
    packed: Option<[u8; 18]>,
}

impl<'a> Wanted<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            packed: pack_sid(text),
        }
    }
}

// --- a recipient ----------------------------------------------------------------------------

/// A pending verification as a record writes it.
pub struct Pending<'a> {
    pub sid: &'a str,
    pub status: Status,
    pub channel: &'a str,
    pub code: &'a str,
    pub amount: Option<&'a str>,
    pub payee: Option<&'a str>,
    pub checks_failed: u32,
    pub expires_ms: i64,
    pub date_created: i64,
    pub date_updated: i64,
    pub version: u64,
    pub attempts: &'a [Attempt],
}

impl<'a> From<&'a Verification> for Pending<'a> {
    fn from(v: &'a Verification) -> Self {
        Self {
            sid: &v.sid,
            status: v.status,
            channel: &v.channel,
            code: &v.code,
            amount: v.amount.as_deref(),
            payee: v.payee.as_deref(),
            checks_failed: v.checks_failed,
            expires_ms: v.expires_ms,
            date_created: v.date_created,
            date_updated: v.date_updated,
            version: v.version,
            attempts: &v.attempts,
        }
    }
}

fn put_sends(out: &mut Vec<u8>, sends: impl ExactSizeIterator<Item = i64>) {
    put_uv(out, sends.len() as u64);
    for t in sends {
        put_i64(out, t);
    }
}

/// An attempt of a verification sent on `of` and created at `created`: its channel is mostly
/// the verification's, written then as one byte.
fn put_attempt(
    out: &mut Vec<u8>,
    (sid, channel, at_ms): (&str, &str, i64),
    of: &str,
    created: i64,
) {
    put_sid(out, sid);
    if channel == of {
        out.push(0);
    } else {
        put_uv(out, channel.len() as u64 + 1);
        out.extend_from_slice(channel.as_bytes());
    }
    put_zz(out, at_ms.wrapping_sub(created));
}

/// Encodes a recipient of a service: the number of its service (and account), its text, its
/// recent sends (oldest first) and its pending verification (whose service, account and
/// recipient are the record's, not written again).
pub fn recipient(
    out: &mut Vec<u8>,
    scope: u32,
    to: &str,
    sends: impl ExactSizeIterator<Item = i64>,
    pending: Option<&Pending<'_>>,
) {
    put_uv(out, scope.into());
    put_text(out, to);
    put_sends(out, sends);
    match pending {
        None => out.push(0),
        Some(v) => {
            out.push(v.status as u8 + 1);
            put_sid(out, v.sid);
            put_i64(out, v.date_created);
            put_zz(out, v.expires_ms.wrapping_sub(v.date_created));
            put_zz(out, v.date_updated.wrapping_sub(v.date_created));
            put_uv(out, v.version);
            put_uv(out, v.checks_failed.into());
            put_text(out, v.channel);
            put_text(out, v.code);
            put_option(out, v.amount);
            put_option(out, v.payee);
            put_uv(out, v.attempts.len() as u64);
            for a in v.attempts {
                let a = (a.sid.as_str(), a.channel.as_str(), a.at_ms);
                put_attempt(out, a, v.channel, v.date_created);
            }
        }
    }
}

/// The record with its sends replaced (the rest as it was).
pub fn with_sends(out: &mut Vec<u8>, b: &[u8], sends: impl ExactSizeIterator<Item = i64>) {
    let rec = Rec::read(b);
    out.extend_from_slice(&b[..rec.sends_count_at]);
    put_sends(out, sends);
    out.extend_from_slice(&b[rec.r.at..]);
}

/// The record with one more attempt of its pending verification, in order (oldest first, then
/// by SID); `None` if it has no pending verification.
pub fn with_attempt(
    out: &mut Vec<u8>,
    b: &[u8],
    sid: &str,
    channel: &str,
    at_ms: i64,
) -> Option<()> {
    let rec = Rec::read(b);
    let mut r = Reader::new(b);
    r.at = rec.r.at;
    r.status()?;
    r.sid();
    let created = r.i64();
    r.zz();
    r.zz();
    r.uv();
    r.uv();
    let v_channel = r.text();
    r.text();
    r.option();
    r.option();
    let count_at = r.at;
    let n = r.uv();
    let first = r.at;
    // Where each attempt starts, and whether it comes after the new one.
    let mut starts = Vec::with_capacity(n as usize + 1);
    for _ in 0..n {
        let start = r.at;
        let s = r.sid();
        r.channel(v_channel);
        let at = created.wrapping_add(r.zz());
        starts.push((
            start,
            at > at_ms || (at == at_ms && s.text().as_str() > sid),
        ));
    }
    let later = starts.iter().rev().take_while(|(_, after)| *after).count();
    let insert_at = starts
        .get(starts.len() - later)
        .map_or(r.at, |(start, _)| *start);
    out.extend_from_slice(&b[..count_at]);
    put_uv(out, n + 1);
    out.extend_from_slice(&b[first..insert_at]);
    put_attempt(out, (sid, channel, at_ms), v_channel, created);
    out.extend_from_slice(&b[insert_at..]);
    Some(())
}

/// A recipient record, read.
pub struct Rec<'a> {
    r: Reader<'a>,
    /// Its service and account, by their number (`Scopes` in the cache).
    pub scope: u32,
    pub to: &'a str,
    /// Where the sends' count is, where their times start, and how many there are.
    sends_count_at: usize,
    sends_at: usize,
    sends: usize,
}

impl<'a> Rec<'a> {
    pub fn read(b: &'a [u8]) -> Self {
        let mut r = Reader::new(b);
        let scope = r.uv() as u32;
        let to = r.text();
        let sends_count_at = r.at;
        let sends = r.uv() as usize;
        let sends_at = r.at;
        r.at += 8 * sends;
        Self {
            r,
            scope,
            to,
            sends_count_at,
            sends_at,
            sends,
        }
    }

    pub fn sends(&self) -> impl ExactSizeIterator<Item = i64> + '_ {
        self.r.b[self.sends_at..self.sends_at + 8 * self.sends]
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("eight bytes")))
    }

    pub fn has_pending(&self) -> bool {
        self.r.b[self.r.at] != 0
    }

    /// The pending verification's SID, status and expiry, if it has one (without reading the
    /// rest).
    fn head(&self) -> Option<(SidRef<'a>, Status, i64)> {
        let mut r = Reader::new(self.r.b);
        r.at = self.r.at;
        let status = r.status()?;
        let sid = r.sid();
        let created = r.i64();
        Some((sid, status, created.wrapping_add(r.zz())))
    }

    /// When its pending verification (if any) was created and when it expires.
    pub fn pending_span(&self) -> Option<(i64, i64)> {
        let mut r = Reader::new(self.r.b);
        r.at = self.r.at;
        r.status()?;
        r.sid();
        let created = r.i64();
        Some((created, created.wrapping_add(r.zz())))
    }

    /// Whether its pending verification has this SID.
    pub fn pending_is(&self, sid: &Wanted<'_>) -> bool {
        self.head().is_some_and(|(s, _, _)| s.is(sid))
    }

    /// Whether it has a pending verification that is not live at `now` (pending and before its
    /// expiry), as `Verification::is_live` decides.
    pub fn pending_ended(&self, now: i64) -> bool {
        self.head()
            .is_some_and(|(_, status, expires)| !(status == Status::Pending && now < expires))
    }

    /// The pending verification's SID as text.
    pub fn pending_sid(&self) -> Option<String> {
        self.head().map(|(sid, _, _)| sid.text())
    }

    /// The pending verification, with the service, account and recipient of its entry.
    pub fn pending(&self, service: &str, account: &str) -> Option<Verification> {
        let mut r = Reader::new(self.r.b);
        r.at = self.r.at;
        let status = r.status()?;
        let sid = r.sid().text();
        let date_created = r.i64();
        let expires_ms = date_created.wrapping_add(r.zz());
        let date_updated = date_created.wrapping_add(r.zz());
        let version = r.uv();
        let checks_failed = r.uv() as u32;
        let channel = r.text().to_owned();
        let code = r.text().to_owned();
        let amount = r.option().map(str::to_owned);
        let payee = r.option().map(str::to_owned);
        let attempts = (0..r.uv())
            .map(|_| Attempt {
                sid: r.sid().text(),
                channel: r.channel(&channel).to_owned(),
                at_ms: date_created.wrapping_add(r.zz()),
            })
            .collect();
        Some(Verification {
            sid,
            service_sid: service.to_owned(),
            account_sid: account.to_owned(),
            to: self.to.to_owned(),
            channel,
            status,
            code,
            amount,
            payee,
            checks_failed,
            expires_ms,
            date_created,
            date_updated,
            version,
            attempts,
        })
    }
}

// --- an admission log -----------------------------------------------------------------------

/// Encodes the admission log of one value of one rate limit (times oldest first).
pub fn log(out: &mut Vec<u8>, id: i64, value: &str, times: impl ExactSizeIterator<Item = i64>) {
    put_i64(out, id);
    put_text(out, value);
    for t in times {
        put_i64(out, t);
    }
}

/// An admission log, read: its rate limit, value and times.
pub struct Log<'a> {
    pub id: i64,
    pub value: &'a str,
    times: &'a [u8],
}

impl<'a> Log<'a> {
    pub fn read(b: &'a [u8]) -> Self {
        let mut r = Reader::new(b);
        let id = r.i64();
        let value = r.text();
        Self {
            id,
            value,
            times: &b[r.at..],
        }
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = i64> + 'a {
        self.times
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("eight bytes")))
    }

    pub fn times(&self) -> VecDeque<i64> {
        self.iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Z]{2}[0-9a-f]{32}",
            "[A-Z]{2}[0-9a-fA-F]{32}",
            "\\PC{0,40}",
            ".{0,200}"
        ]
    }

    prop_compose! {
        fn verification()(
            sid in text(),
            status in 0..STATUSES.len(),
            channel in text(),
            code in text(),
            amount in proptest::option::of(text()),
            payee in proptest::option::of(text()),
            checks_failed in any::<u32>(),
            times in (any::<i64>(), any::<i64>(), any::<i64>()),
            version in any::<u64>(),
            attempts in proptest::collection::vec((text(), proptest::option::of(text()), any::<i64>()), 0..4),
        ) -> Verification {
            Verification {
                sid,
                service_sid: "VA0123456789abcdef0123456789abcdef".into(),
                account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                to: String::new(),
                channel: channel.clone(),
                status: STATUSES[status],
                code,
                amount,
                payee,
                checks_failed,
                expires_ms: times.0,
                date_created: times.1,
                date_updated: times.2,
                version,
                attempts: attempts
                    .into_iter()
                    // Mostly on the verification's channel.
                    .map(|(sid, own, at_ms)| Attempt { sid, channel: own.unwrap_or_else(|| channel.clone()), at_ms })
                    .collect(),
            }
        }
    }

    proptest! {
        /// Whatever a recipient holds comes back out as it went in, at any time, length or SID.
        #[test]
        fn a_recipient_comes_back_as_it_went_in(
            scope in any::<u32>(),
            to in text(),
            sends in proptest::collection::vec(any::<i64>(), 0..200),
            pending in proptest::option::of(verification()),
            now in any::<i64>(),
        ) {
            let pending = pending.map(|mut v| { v.to.clone_from(&to); v });
            let bytes = written(|out| recipient(out, scope, &to, sends.iter().copied(), pending.as_ref().map(Pending::from).as_ref()));
            let rec = Rec::read(&bytes);
            prop_assert_eq!(rec.scope, scope);
            prop_assert_eq!(rec.to, to.as_str());
            prop_assert_eq!(rec.sends().collect::<Vec<_>>(), sends.clone());
            prop_assert_eq!(rec.has_pending(), pending.is_some());
            let back = rec.pending(
                "VA0123456789abcdef0123456789abcdef",
                "AC0123456789abcdef0123456789abcdef",
            );
            prop_assert_eq!(&back, &pending);
            prop_assert_eq!(rec.pending_sid(), pending.as_ref().map(|v| v.sid.clone()));
            prop_assert_eq!(rec.pending_ended(now), pending.as_ref().is_some_and(|v| !v.is_live(now)));
            if let Some(v) = &pending {
                prop_assert!(rec.pending_is(&Wanted::new(&v.sid)));
                let other = format!("{}0", v.sid);
                prop_assert!(!rec.pending_is(&Wanted::new(&other)));
                prop_assert!(!rec.pending_is(&Wanted::new(&v.sid.to_uppercase())) || v.sid == v.sid.to_uppercase());
            }
        }

        /// Sends replaced, or an attempt added, change that and nothing else: the attempt goes
        /// where sorting by (time, SID) puts it, after the equal ones.
        #[test]
        fn a_record_changes_only_where_it_is_changed(
            scope in any::<u32>(),
            to in text(),
            sends in proptest::collection::vec(any::<i64>(), 0..20),
            new_sends in proptest::collection::vec(any::<i64>(), 0..200),
            pending in proptest::option::of(verification()),
            attempt in (text(), text(), any::<i64>()),
        ) {
            let pending = pending.map(|mut v| {
                v.to.clone_from(&to);
                v.attempts.sort_by(|a, b| (a.at_ms, &a.sid).cmp(&(b.at_ms, &b.sid)));
                v
            });
            let bytes = written(|out| recipient(out, scope, &to, sends.iter().copied(), pending.as_ref().map(Pending::from).as_ref()));
            let service = "VA0123456789abcdef0123456789abcdef";
            let account = "AC0123456789abcdef0123456789abcdef";

            let changed = written(|out| with_sends(out, &bytes, new_sends.iter().copied()));
            let rec = Rec::read(&changed);
            prop_assert_eq!(rec.scope, scope);
            prop_assert_eq!(rec.to, to.as_str());
            prop_assert_eq!(rec.sends().collect::<Vec<_>>(), new_sends.clone());
            prop_assert_eq!(rec.pending(service, account), pending.clone());

            let (sid, channel, at_ms) = attempt;
            let mut added = Vec::new();
            let done = with_attempt(&mut added, &bytes, &sid, &channel, at_ms);
            prop_assert_eq!(done.is_some(), pending.is_some());
            if let (Some(()), Some(mut v)) = (done, pending) {
                let rec = Rec::read(&added);
                prop_assert_eq!(rec.scope, scope);
                prop_assert_eq!(rec.sends().collect::<Vec<_>>(), sends);
                let at = v.attempts.partition_point(|a| (a.at_ms, a.sid.as_str()) <= (at_ms, sid.as_str()));
                v.attempts.insert(at, Attempt { sid, channel, at_ms });
                prop_assert_eq!(rec.pending(service, account), Some(v));
            }
        }

        /// So does an admission log.
        #[test]
        fn a_log_comes_back_as_it_went_in(
            id in any::<i64>(),
            value in text(),
            times in proptest::collection::vec(any::<i64>(), 0..100),
        ) {
            let bytes = written(|out| log(out, id, &value, times.iter().copied()));
            let back = Log::read(&bytes);
            prop_assert_eq!(back.id, id);
            prop_assert_eq!(back.value, value.as_str());
            prop_assert_eq!(back.times(), VecDeque::from(times.clone()));
        }

        /// A SID is found by its text, packed or not.
        #[test]
        fn a_sid_is_its_text(a in text(), b in text()) {
            let v = Verification { sid: a.clone(), ..typical() };
            let bytes = written(|out| recipient(out, 0, "", [].into_iter(), Some(&Pending::from(&v))));
            let rec = Rec::read(&bytes);
            prop_assert_eq!(rec.pending_sid(), Some(a.clone()));
            prop_assert_eq!(rec.pending_is(&Wanted::new(&b)), a == b);
        }
    }

    #[test]
    fn every_status_is_its_byte() {
        for (i, s) in STATUSES.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    fn typical() -> Verification {
        Verification {
            sid: "VE0123456789abcdef0123456789abcdef".into(),
            service_sid: "VA0123456789abcdef0123456789abcdef".into(),
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            to: "+15551234567".into(),
            channel: "sms".into(),
            status: Status::Pending,
            code: "123456".into(),
            expires_ms: 1_700_000_600_000,
            date_created: 1_700_000_000_000,
            date_updated: 1_700_000_000_000,
            version: 1,
            attempts: vec![Attempt {
                sid: "VL0123456789abcdef0123456789abcdef".into(),
                channel: "sms".into(),
                at_ms: 1_700_000_000_000,
            }],
            amount: None,
            payee: None,
            checks_failed: 0,
        }
    }

    /// What the memory figures rest on: a recipient (an E.164 number of the greatest length)
    /// with a pending SMS verification just sent, of one attempt and one send, takes at most
    /// 100 bytes.
    #[test]
    fn a_typical_recipient_is_small() {
        let v = typical();
        let bytes = written(|out| {
            recipient(
                out,
                3,
                "+123456789012345",
                [1_700_000_000_000].into_iter(),
                Some(&(&v).into()),
            )
        });
        // With the 4 bytes of its length in the cache's buffer.
        assert!(bytes.len() + 4 <= 100, "{}", bytes.len());
    }
}
