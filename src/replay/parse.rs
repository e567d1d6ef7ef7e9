//! Traffic records: JSON Lines (one start a line) or CSV with the same columns, read with
//! borrowed fields (no allocation per line beyond the rate limits named).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// One start of the traffic.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub time_ms: i64,
    pub service_sid: Cow<'a, str>,
    pub to: Cow<'a, str>,
    pub channel: Option<Cow<'a, str>>,
    /// (unique name, value), as named (numbers already written as the server writes them).
    pub rate_limits: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

#[derive(Deserialize)]
struct Line<'a> {
    time: Time,
    #[serde(borrow)]
    service_sid: Cow<'a, str>,
    #[serde(borrow)]
    to: Cow<'a, str>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    rate_limits: Limits<'a>,
}

/// Parses one JSON line: the common shape (the fields above, strings without escapes, integer
/// times and values) by `fast::line`, anything else by serde_json, which also words the errors.
pub fn json_line(line: &[u8]) -> Result<Record<'_>, String> {
    if let Some(r) = fast::line(line) {
        return Ok(r);
    }
    serde_json_line(line)
}

fn serde_json_line(line: &[u8]) -> Result<Record<'_>, String> {
    let l: Line<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    Ok(Record {
        time_ms: l.time.0,
        service_sid: l.service_sid,
        to: l.to,
        channel: l.channel,
        rate_limits: l.rate_limits.0,
    })
}

/// A parser for the shape every generated or exported line has, written for speed (the JSON
/// parse was the largest cost of a replay after the decision itself). It accepts a strict
/// subset of what `serde_json_line` accepts and gives the same record (property-tested); on
/// anything else — escapes, fractions, unknown or repeated fields, other types, bad syntax — it
/// answers `None` and the line goes to serde_json.
mod fast {
    use std::borrow::Cow;

    use super::{Record, parse_time};

    struct P<'a> {
        /// The line, checked as UTF-8 once: every string ends at an ASCII quote, so each is a
        /// slice of it at character boundaries.
        s: &'a str,
        b: &'a [u8],
        i: usize,
    }

    impl<'a> P<'a> {
        fn ws(&mut self) {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
                self.i += 1;
            }
        }

        fn eat(&mut self, c: u8) -> Option<()> {
            self.ws();
            (self.b.get(self.i) == Some(&c)).then(|| self.i += 1)
        }

        fn peek(&mut self) -> Option<u8> {
            self.ws();
            self.b.get(self.i).copied()
        }

        /// A string without escapes or control characters.
        fn str(&mut self) -> Option<&'a str> {
            self.eat(b'"')?;
            let start = self.i;
            self.i = string_end(self.b, start);
            if *self.b.get(self.i)? != b'"' {
                return None;
            }
            let s = self.s.get(start..self.i)?;
            self.i += 1;
            Some(s)
        }

        /// An integer as JSON writes it (no leading zeros, no fraction or exponent), within i64.
        fn int(&mut self) -> Option<(i64, &'a str)> {
            self.ws();
            let start = self.i;
            if self.b.get(self.i) == Some(&b'-') {
                self.i += 1;
            }
            let digits = self.i;
            while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let n = self.i - digits;
            if n == 0
                || n > 18
                || (n > 1 && self.b[digits] == b'0')
                || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
            {
                return None;
            }
            let text = self.s.get(start..self.i)?;
            // `-0` is written `0` by the server: leave it to serde_json.
            if text == "-0" {
                return None;
            }
            Some((text.parse().ok()?, text))
        }

        fn null(&mut self) -> Option<()> {
            self.ws();
            self.b[self.i..].starts_with(b"null").then(|| self.i += 4)
        }
    }

    /// The index of the first `"`, `\\` or control character at or after `i` (or `b.len()`),
    /// eight bytes a step: a byte of `w` is flagged when `w - 0x01…` borrows into its high bit
    /// and it had none (it was 0 after the XOR, or below 0x20). A flag can be wrong only above
    /// a true one, so the lowest is exact.
    pub(super) fn string_end(b: &[u8], mut i: usize) -> usize {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(&c) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
            let w = u64::from_le_bytes(c);
            let quote = w ^ (ONES * u64::from(b'"'));
            let backslash = w ^ (ONES * u64::from(b'\\'));
            let hit = ((quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGH;
            if hit != 0 {
                return i + (hit.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while b
            .get(i)
            .is_some_and(|c| !matches!(c, b'"' | b'\\' | 0..0x20))
        {
            i += 1;
        }
        i.min(b.len())
    }

    pub fn line(b: &[u8]) -> Option<Record<'_>> {
        let mut p = P {
            s: std::str::from_utf8(b).ok()?,
            b,
            i: 0,
        };
        let (mut time, mut sid, mut to, mut channel, mut limits) = (None, None, None, None, None);
        p.eat(b'{')?;
        if p.peek()? != b'}' {
            loop {
                let key = p.str()?;
                p.eat(b':')?;
                match key {
                    "time" if time.is_none() => {
                        time = Some(if p.peek()? == b'"' {
                            parse_time(p.str()?)?
                        } else {
                            p.int()?.0
                        });
                    }
                    "service_sid" if sid.is_none() => sid = Some(p.str()?),
                    "to" if to.is_none() => to = Some(p.str()?),
                    "channel" if channel.is_none() => {
                        channel = Some(if p.peek()? == b'n' {
                            p.null()?;
                            None
                        } else {
                            Some(Cow::Borrowed(p.str()?))
                        });
                    }
                    "rate_limits" if limits.is_none() => {
                        let mut out: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
                        if p.peek()? == b'n' {
                            p.null()?;
                        } else {
                            p.eat(b'{')?;
                            if p.peek()? != b'}' {
                                loop {
                                    let k = p.str()?;
                                    p.eat(b':')?;
                                    let v = if p.peek()? == b'"' {
                                        p.str()?
                                    } else {
                                        p.int()?.1
                                    };
                                    match out.iter_mut().find(|(n, _)| n == k) {
                                        Some(slot) => slot.1 = Cow::Borrowed(v),
                                        None => out.push((Cow::Borrowed(k), Cow::Borrowed(v))),
                                    }
                                    if p.peek()? == b'}' {
                                        break;
                                    }
                                    p.eat(b',')?;
                                }
                            }
                            p.eat(b'}')?;
                        }
                        limits = Some(out);
                    }
                    _ => return None,
                }
                if p.peek()? == b'}' {
                    break;
                }
                p.eat(b',')?;
            }
        }
        p.eat(b'}')?;
        p.ws();
        if p.i != b.len() {
            return None;
        }
        Some(Record {
            time_ms: time?,
            service_sid: Cow::Borrowed(sid?),
            to: Cow::Borrowed(to?),
            channel: channel.flatten(),
            rate_limits: limits.unwrap_or_default(),
        })
    }
}

/// `time`: RFC 3339 or epoch milliseconds.
struct Time(i64);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 time or epoch milliseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Time, E> {
                parse_time(s)
                    .map(Time)
                    .ok_or_else(|| E::custom(format!("time {s:?} is not RFC 3339 or epoch ms")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Time, E> {
                Ok(Time(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Time, E> {
                i64::try_from(v)
                    .map(Time)
                    .map_err(|_| E::custom("time out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Time, E> {
                Ok(Time(v as i64))
            }
        }
        d.deserialize_any(V)
    }
}

/// `rate_limits`: an object of unique names to strings or numbers; the last of a repeated name
/// wins, as in the server's parse.
#[derive(Default)]
struct Limits<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

/// A rate-limit value: a string, or a number written as the server writes it.
struct LimitValue<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for LimitValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LimitValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(LimitValue(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(LimitValue(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(LimitValue(Cow::Owned(s)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LimitValue(Cow::Owned(
                    serde_json::Number::from(v).to_string(),
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LimitValue(Cow::Owned(
                    serde_json::Number::from(v).to_string(),
                )))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                serde_json::Number::from_f64(v)
                    .map(|n| LimitValue(Cow::Owned(n.to_string())))
                    .ok_or_else(|| E::custom("not a finite number"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Limits<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Limits<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of rate limit unique names to values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Limits::default())
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out: Vec<(Cow<'de, str>, Cow<'de, str>)> = Vec::new();
                while let Some(k) = m.next_key::<Cow<'de, str>>()? {
                    let LimitValue(v) = m.next_value()?;
                    match out.iter_mut().find(|(n, _)| *n == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Limits(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// RFC 3339 (`2026-11-30T12:00:00.250Z`, any offset, any fraction) or epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    fast_rfc3339(s.as_bytes()).or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis())
    })
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn fast_rfc3339(b: &[u8]) -> Option<i64> {
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, sec) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_min = match &b[i..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let v = digits(&[*h1, *h2])? * 60 + digits(&[*m1, *m2])?;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// The columns of a CSV header: `time`, `service_sid`, `to`, `channel`, and either one
/// `rate_limits` column (a JSON object) or one `rate_limits.NAME` column per rate limit.
pub struct CsvHeader {
    time: usize,
    service_sid: usize,
    to: usize,
    channel: Option<usize>,
    rate_limits: Option<usize>,
    named: Vec<(String, usize)>,
}

impl CsvHeader {
    pub fn parse(line: &str) -> Result<Self, String> {
        let cols: Vec<String> = split_csv(line)?
            .into_iter()
            .map(|c| c.trim().to_owned())
            .collect();
        let find = |n: &str| cols.iter().position(|c| c == n);
        let need = |n: &str| find(n).ok_or_else(|| format!("the CSV header has no {n:?} column"));
        Ok(Self {
            time: need("time")?,
            service_sid: need("service_sid")?,
            to: need("to")?,
            channel: find("channel"),
            rate_limits: find("rate_limits"),
            named: cols
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((c.strip_prefix("rate_limits.")?.to_owned(), i)))
                .collect(),
        })
    }

    /// One CSV record (an empty `rate_limits.NAME` cell names nothing).
    pub fn record<'a>(&'a self, line: &'a str) -> Result<Record<'a>, String> {
        let f = split_csv(line)?;
        let get = |i: usize| {
            f.get(i)
                .cloned()
                .ok_or_else(|| format!("no column {}", i + 1))
        };
        let time = get(self.time)?;
        let time_ms = parse_time(&time)
            .ok_or_else(|| format!("time {time:?} is not RFC 3339 or epoch ms"))?;
        let mut rate_limits = match self.rate_limits.and_then(|i| f.get(i)) {
            Some(raw) if !raw.trim().is_empty() => serde_json::from_str::<Limits<'_>>(raw)
                .map_err(|e| format!("rate_limits: {e}"))?
                .0
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            _ => Vec::new(),
        };
        for (name, i) in &self.named {
            if let Some(v) = f.get(*i).filter(|v| !v.is_empty()) {
                rate_limits.push((Cow::Borrowed(name.as_str()), v.clone()));
            }
        }
        Ok(Record {
            time_ms,
            service_sid: get(self.service_sid)?,
            to: get(self.to)?,
            channel: self
                .channel
                .and_then(|i| f.get(i).cloned())
                .filter(|c| !c.is_empty()),
            rate_limits,
        })
    }
}

/// Splits one CSV line (RFC 4180 quoting, no line breaks inside fields).
fn split_csv(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        if i < b.len() && b[i] == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match line[j..].find('"') {
                    None => return Err("unterminated quoted field".into()),
                    Some(k) => {
                        s.push_str(&line[j..j + k]);
                        j += k + 1;
                        if b.get(j) == Some(&b'"') {
                            s.push('"');
                            j += 1;
                        } else {
                            break;
                        }
                    }
                }
            }
            out.push(Cow::Owned(s));
            i = j;
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            match line[i..].find(',') {
                Some(k) => {
                    out.push(Cow::Borrowed(&line[i..i + k]));
                    i += k + 1;
                }
                None => {
                    out.push(Cow::Borrowed(&line[i..]));
                    break;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01.250Z"), Some(1250));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("1234"), Some(1234));
        assert_eq!(
            parse_time("2026-11-30T12:00:00.250Z"),
            chrono::DateTime::parse_from_rfc3339("2026-11-30T12:00:00.250Z")
                .ok()
                .map(|t| t.timestamp_millis())
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn json_lines() {
        let r = json_line(
            br#"{"time": 5, "service_sid": "VA1", "to": "+1", "rate_limits": {"ip": "a\"b", "n": 7, "ip": "c"}}"#,
        )
        .unwrap();
        assert_eq!(r.time_ms, 5);
        assert_eq!(
            r.rate_limits,
            vec![("ip".into(), "c".into()), ("n".into(), "7".into())]
        );
        assert!(json_line(b"{\"time\": 5}").is_err());
    }

    /// Lines of the common shape, each value sometimes swapped for what the fast parser must
    /// leave to serde_json (escapes, fractions, exponents, leading zeros, `-0`, nesting, other
    /// types, non-ASCII text), sometimes with an unknown or repeated field, in any field order,
    /// sometimes cut short.
    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let weird = || {
            prop_oneof![
                Just("\"a\\\"b\"".to_owned()),
                Just("\"\\u00e9\"".to_owned()),
                Just("\"é☃\"".to_owned()),
                Just("\"\"".to_owned()),
                Just("\"yesterday\"".to_owned()),
                Just("-0".to_owned()),
                Just("007".to_owned()),
                Just("1.5".to_owned()),
                Just("1e3".to_owned()),
                Just("123456789012345678901".to_owned()),
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("[1]".to_owned()),
                Just("{}".to_owned()),
            ]
        };
        let text = || {
            prop_oneof![
                Just("\"VA1\"".to_owned()),
                Just("\"+15551234567\"".to_owned())
            ]
        };
        let time = prop_oneof![
            Just("1796040000000".to_owned()),
            Just("-12".to_owned()),
            Just("0".to_owned()),
            Just("\"1970-01-01T00:00:01.250Z\"".to_owned()),
            Just("\"2026-11-30T12:00:00+01:00\"".to_owned()),
            Just("\"1234\"".to_owned()),
        ];
        let or_weird = |good: BoxedStrategy<String>| prop_oneof![4 => good, 1 => weird()];
        let limit_value = prop_oneof![
            Just("\"10.0.0.1\"".to_owned()),
            Just("7".to_owned()),
            Just("0".to_owned()),
        ]
        .boxed();
        let limits = proptest::collection::vec(
            (
                prop_oneof![Just("ip"), Just("user"), Just("é"), Just("a\\\"b")],
                or_weird(limit_value),
            ),
            0..4,
        )
        .prop_map(|kv| {
            let body: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
            format!("{{{}}}", body.join(", "))
        });
        (
            or_weird(time.boxed()),
            or_weird(text().boxed()),
            or_weird(text().boxed()),
            proptest::option::of(or_weird(
                prop_oneof![text(), Just("null".to_owned())].boxed(),
            )),
            proptest::option::of(prop_oneof![4 => limits, 1 => weird()]),
            proptest::option::of((
                prop_oneof![Just("time"), Just("to"), Just("other"), Just("t\\u0069me")],
                weird(),
            )),
            prop_oneof![Just(""), Just(" "), Just("\t")],
            proptest::option::of(0usize..160),
        )
            .prop_flat_map(|(time, sid, to, channel, limits, extra, ws, cut)| {
                let mut fields = vec![
                    format!("\"time\":{ws}{time}"),
                    format!("\"service_sid\":{ws}{sid}"),
                    format!("\"to\":{ws}{to}"),
                ];
                fields.extend(channel.map(|c| format!("\"channel\": {c}")));
                fields.extend(limits.map(|l| format!("\"rate_limits\": {l}")));
                fields.extend(extra.map(|(k, v)| format!("\"{k}\": {v}")));
                Just(fields).prop_shuffle().prop_map(move |f| {
                    let mut line = format!("{{{ws}{}}}", f.join(","));
                    if let Some(c) = cut {
                        line.truncate(line.floor_char_boundary(c.min(line.len())));
                    }
                    line
                })
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]

        /// The word-at-a-time scan stops where a byte-at-a-time one does, from any start.
        #[test]
        fn string_end_is_the_first_special_byte(
            b in proptest::collection::vec(proptest::prop_oneof![
                4 => 0x20u8..0x7f,
                1 => proptest::strategy::Just(b'"'),
                1 => proptest::strategy::Just(b'\\'),
                1 => 0u8..0x20,
                1 => 0x7fu8..=0xff,
            ], 0..40),
            from in 0usize..45,
        ) {
            let want = (from.min(b.len())..b.len())
                .find(|&i| matches!(b[i], b'"' | b'\\' | 0..0x20))
                .unwrap_or(b.len());
            proptest::prop_assert_eq!(fast::string_end(&b, from), want);
        }

        /// Whatever the fast parser accepts, serde_json accepts and reads the same.
        #[test]
        fn the_fast_parser_reads_what_serde_json_reads(line in line()) {
            if let Some(fast) = fast::line(line.as_bytes()) {
                proptest::prop_assert_eq!(Ok(fast), serde_json_line(line.as_bytes()), "{}", line);
            }
        }
    }

    #[test]
    fn the_common_shape_takes_the_fast_parser() {
        for line in [
            r#"{"time": 1796040000000, "service_sid": "VA1", "to": "+15551234567", "channel": "sms", "rate_limits": {"ip": "10.0.0.1", "user": "u1", "n": 7}}"#,
            r#"{"time":"2026-11-30T12:00:00.250Z","service_sid":"VA1","to":"+1","rate_limits":{}}"#,
            r#"{"to": "+1", "time": 5, "service_sid": "VA1", "channel": null, "rate_limits": null}"#,
        ] {
            let fast = fast::line(line.as_bytes());
            assert!(fast.is_some(), "{line}");
            assert_eq!(fast.ok_or(String::new()), serde_json_line(line.as_bytes()));
        }
        for line in [
            r#"{"time": 5, "service_sid": "VA1", "to": "+1", "time": 6}"#,
            r#"{"time": 5, "service_sid": "VA1", "to": "+1", "extra": 1}"#,
            r#"{"time": 5, "service_sid": "VA1"}"#,
            r#"{"time": 5, "service_sid": "VA1", "to": "+1"} x"#,
        ] {
            assert!(fast::line(line.as_bytes()).is_none(), "{line}");
        }
    }

    #[test]
    fn csv() {
        let h = CsvHeader::parse("time,service_sid,to,rate_limits.ip,rate_limits").unwrap();
        let r = h
            .record(r#"1000,VA1,+1,1.2.3.4,"{""user"": ""u""}""#)
            .unwrap();
        assert_eq!(r.time_ms, 1000);
        assert_eq!(
            r.rate_limits,
            vec![("user".into(), "u".into()), ("ip".into(), "1.2.3.4".into())]
        );
    }
}
