//! List envelopes: `{"<key>": [...], "meta": {...}}` with `PageSize` (1–1000, default 50),
//! `Page` and an opaque `PageToken`.
//!
//! Lists are ordered by SID. A `PageToken` is `PA<sid>` ("the records after this SID") or
//! `PB<sid>` ("the records before it"), so walking `next_page_url` never skips or repeats a record,
//! even while records are created or deleted: the position does not depend on the deleted row.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, form::Params, form::parse_int};

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub enum Cursor {
    Start,
    Offset(usize),
    After(String),
    Before(String),
}

#[derive(Debug, Clone)]
pub struct PageRequest {
    pub size: usize,
    pub page: u64,
    pub cursor: Cursor,
}

impl PageRequest {
    /// Reads `PageSize`, `Page` and `PageToken`; `sid_prefix` is the prefix of the listed SIDs.
    pub fn from_query(q: &Params, sid_prefix: &str) -> Result<Self, ApiError> {
        let size = match q.get("PageSize") {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => match parse_int(v) {
                Some(n) if n > MAX_PAGE_SIZE as i64 => {
                    return Err(ApiError::bad_request(
                        20007,
                        format!("Page size too large: PageSize must be at most {MAX_PAGE_SIZE}"),
                    ));
                }
                Some(n) if n >= 1 => n as usize,
                _ => return Err(ApiError::invalid("PageSize")),
            },
        };
        let page = match q.get("Page") {
            None => 0,
            Some(v) => match parse_int(v) {
                Some(n) if n >= 0 => n as u64,
                _ => return Err(ApiError::invalid("Page")),
            },
        };
        let cursor = match q.get("PageToken") {
            None | Some("") => {
                if page == 0 {
                    Cursor::Start
                } else {
                    let offset = (page as usize)
                        .checked_mul(size)
                        .ok_or_else(|| ApiError::invalid("Page"))?;
                    Cursor::Offset(offset)
                }
            }
            Some(t) => parse_token(t, sid_prefix)?,
        };
        Ok(Self { size, page, cursor })
    }
}

fn parse_token(t: &str, sid_prefix: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::bad_request(21481, format!("Invalid PageToken: {}", truncate(t, 64)));
    if t.len() != 36 || !t.is_ascii() {
        return Err(bad());
    }
    let (kind, sid) = t.split_at(2);
    if !super::sid::is_valid(sid, sid_prefix) {
        return Err(bad());
    }
    match kind {
        "PA" => Ok(Cursor::After(sid.to_owned())),
        "PB" => Ok(Cursor::Before(sid.to_owned())),
        _ => Err(bad()),
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).filter(|c| !c.is_control()).collect()
}

/// One page of records, and whether there is a page after and before it.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub first_sid: Option<String>,
    pub last_sid: Option<String>,
    pub has_next: bool,
    pub has_previous: bool,
}

/// Selects a page from a map ordered by SID.
pub fn from_btree<V, T>(
    map: &BTreeMap<String, V>,
    req: &PageRequest,
    mut keep: impl FnMut(&V) -> bool,
    mut render: impl FnMut(&V) -> T,
) -> Page<T> {
    let n = req.size;
    let mut picked: Vec<(&String, &V)> = Vec::with_capacity(n + 1);
    let has_previous;
    match &req.cursor {
        Cursor::Before(sid) => {
            let mut it = map
                .range::<String, _>((Bound::Unbounded, Bound::Excluded(sid)))
                .rev()
                .filter(|(_, v)| keep(v));
            picked.extend(it.by_ref().take(n));
            has_previous = it.next().is_some();
            picked.reverse();
            let has_next = map
                .range::<String, _>((Bound::Included(sid), Bound::Unbounded))
                .any(|(_, v)| keep(v));
            return finish(picked, has_next, has_previous, &mut render);
        }
        Cursor::After(sid) => {
            has_previous = map
                .range::<String, _>((Bound::Unbounded, Bound::Included(sid)))
                .any(|(_, v)| keep(v));
            picked.extend(
                map.range::<String, _>((Bound::Excluded(sid), Bound::Unbounded))
                    .filter(|(_, v)| keep(v))
                    .take(n + 1),
            );
        }
        Cursor::Start => {
            has_previous = false;
            picked.extend(map.iter().filter(|(_, v)| keep(v)).take(n + 1));
        }
        Cursor::Offset(offset) => {
            has_previous = *offset > 0;
            picked.extend(
                map.iter()
                    .filter(|(_, v)| keep(v))
                    .skip(*offset)
                    .take(n + 1),
            );
        }
    }
    let has_next = picked.len() > n;
    picked.truncate(n);
    finish(picked, has_next, has_previous, &mut render)
}

fn finish<V, T>(
    picked: Vec<(&String, &V)>,
    has_next: bool,
    has_previous: bool,
    render: &mut impl FnMut(&V) -> T,
) -> Page<T> {
    Page {
        first_sid: picked.first().map(|(k, _)| (*k).clone()),
        last_sid: picked.last().map(|(k, _)| (*k).clone()),
        items: picked.into_iter().map(|(_, v)| render(v)).collect(),
        has_next,
        has_previous,
    }
}

/// Builds the list envelope. `list_url` is absolute and without a query; `filters` are extra
/// query parameters (already validated) kept in every page URL.
pub fn envelope<T: Serialize>(
    key: &str,
    list_url: &str,
    filters: &[(&str, &str)],
    req: &PageRequest,
    page: Page<T>,
) -> Value {
    let url = |page_no: u64, token: Option<String>| {
        let mut pairs: Vec<(String, String)> = filters
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.push(("PageSize".into(), req.size.to_string()));
        pairs.push(("Page".into(), page_no.to_string()));
        if let Some(t) = token {
            pairs.push(("PageToken".into(), t));
        }
        let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        format!("{list_url}?{qs}")
    };
    let current_token = match &req.cursor {
        Cursor::After(s) => Some(format!("PA{s}")),
        Cursor::Before(s) => Some(format!("PB{s}")),
        _ => None,
    };
    let next = match (&page.last_sid, page.has_next) {
        (Some(last), true) => Some(url(req.page + 1, Some(format!("PA{last}")))),
        _ => None,
    };
    let previous = match (&page.first_sid, page.has_previous) {
        (Some(first), true) => Some(url(req.page.saturating_sub(1), Some(format!("PB{first}")))),
        _ => None,
    };
    json!({
        key: page.items,
        "meta": {
            "page": req.page,
            "page_size": req.size,
            "first_page_url": url(0, None),
            "previous_page_url": previous,
            "next_page_url": next,
            "key": key,
            "url": url(req.page, current_token),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Params {
        Params::parse(s.as_bytes())
    }

    #[test]
    fn page_size_rules() {
        assert_eq!(PageRequest::from_query(&q(""), "VA").unwrap().size, 50);
        assert_eq!(
            PageRequest::from_query(&q("PageSize=1001"), "VA")
                .unwrap_err()
                .code,
            20007
        );
        assert_eq!(
            PageRequest::from_query(&q("PageSize=0"), "VA")
                .unwrap_err()
                .code,
            60200
        );
        assert_eq!(
            PageRequest::from_query(&q("PageToken=garbage"), "VA")
                .unwrap_err()
                .code,
            21481
        );
    }

    proptest! {
        /// Walking forward by tokens, and back again, visits every record exactly once in order.
        #[test]
        fn token_walks_cover_everything_once(n in 0usize..300, size in 1usize..40, drop_every in 2usize..9) {
            let map: BTreeMap<String, usize> = (0..n)
                .map(|i| (format!("VA{:032x}", i * 7 + 3), i))
                .collect();
            let keep = |v: &usize| v % drop_every != 0;
            let expected: Vec<usize> = map.values().copied().filter(|v| keep(v)).collect();
            let mut req = PageRequest { size, page: 0, cursor: Cursor::Start };
            let mut seen = Vec::new();
            let mut pages = Vec::new();
            loop {
                let page = from_btree(&map, &req, |v| keep(v), |v| *v);
                prop_assert!(page.items.len() <= size);
                seen.extend(page.items.iter().copied());
                pages.push(page.items.clone());
                if !page.has_next { break; }
                req = PageRequest { size, page: req.page + 1, cursor: Cursor::After(page.last_sid.unwrap()) };
            }
            prop_assert_eq!(&seen, &expected);
            // And backwards from the last page.
            let mut back = pages.pop().unwrap_or_default();
            let mut first = back.first().copied();
            while let Some(f) = first {
                let sid = format!("VA{:032x}", f * 7 + 3);
                let page = from_btree(&map, &PageRequest { size, page: 1, cursor: Cursor::Before(sid) }, |v| keep(v), |v| *v);
                if page.items.is_empty() { break; }
                prop_assert_eq!(Some(&page.items), pages.last());
                pages.pop();
                first = page.items.first().copied();
                back = page.items;
            }
            prop_assert!(pages.is_empty());
            let _ = back;
        }
    }
}
