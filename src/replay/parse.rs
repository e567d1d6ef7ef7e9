//! Traffic records: JSON Lines (one start a line) or CSV with the same columns, read with
//! borrowed fields (no allocation per line beyond the rate limits named).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

/// One start of the traffic.
#[derive(Debug)]
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

/// Parses one JSON line.
pub fn json_line(line: &[u8]) -> Result<Record<'_>, String> {
    let l: Line<'_> = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    Ok(Record {
        time_ms: l.time.0,
        service_sid: l.service_sid,
        to: l.to,
        channel: l.channel,
        rate_limits: l.rate_limits.0,
    })
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
