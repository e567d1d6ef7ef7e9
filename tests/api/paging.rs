//! Lists page like Twilio's: the SDKs follow `meta.next_page_url` verbatim, so walking it must
//! visit every record exactly once.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::helpers::*;

const SERVICES: usize = 1100;
const PARALLEL_REQUESTS: usize = 16;

/// Creates `n` services with at most [`PARALLEL_REQUESTS`] requests in flight; returns their SIDs.
async fn create_services(client: &Client, n: usize) -> HashSet<String> {
    let permits = Arc::new(Semaphore::new(PARALLEL_REQUESTS));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let service = create_service(&client, &format!("Paging {i}")).await;
            str_of(&service["sid"])
        });
    }
    let mut sids = HashSet::new();
    while let Some(sid) = tasks.join_next().await {
        assert!(sids.insert(sid.expect("create task")), "duplicate SID");
    }
    assert_eq!(sids.len(), n);
    sids
}

/// One page as seen by a client: its records' SIDs and its meta.
struct Page {
    sids: Vec<String>,
    meta: Value,
}

async fn fetch_page(client: &Client, url: &str, key: &str) -> Page {
    let page = client.get(url).await.expect(200);
    let meta = page["meta"].clone();
    for field in [
        "page",
        "page_size",
        "first_page_url",
        "previous_page_url",
        "next_page_url",
        "key",
        "url",
    ] {
        assert!(
            meta.get(field).is_some(),
            "meta.{field} is missing on {url}: {meta}"
        );
    }
    assert_eq!(meta["key"], key, "{url}");
    let records = page[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array on {url}: {page}"));
    Page {
        sids: records.iter().map(|r| str_of(&r["sid"])).collect(),
        meta,
    }
}

/// Follows `next_page_url` from `first_url` to the end; returns the pages in order.
async fn walk(client: &Client, first_url: &str, key: &str, max_pages: usize) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut url = first_url.to_owned();
    loop {
        let page = fetch_page(client, &url, key).await;
        let next = page.meta["next_page_url"].as_str().map(str::to_owned);
        pages.push(page);
        match next {
            Some(next) => {
                assert!(
                    pages.len() < max_pages,
                    "more than {max_pages} pages: next_page_url never ends ({next})"
                );
                url = next;
            }
            None => return pages,
        }
    }
}

/// Asserts a walk over `expected` records at `page_size`: full pages except the last, pages
/// numbered 0, 1, 2…, absolute URLs, every record exactly once.
fn check_walk(pages: &[Page], expected: &HashSet<String>, page_size: usize, base: &str) {
    let want_pages = expected.len().div_ceil(page_size);
    assert_eq!(
        pages.len(),
        want_pages,
        "{} records at PageSize={page_size}",
        expected.len()
    );
    let mut seen = HashSet::new();
    for (i, page) in pages.iter().enumerate() {
        assert_eq!(page.meta["page"], i, "meta.page of page {i}");
        assert_eq!(
            page.meta["page_size"], page_size,
            "meta.page_size of page {i}"
        );
        let want = if i + 1 < want_pages {
            page_size
        } else {
            expected.len() - page_size * (want_pages - 1)
        };
        assert_eq!(page.sids.len(), want, "records on page {i}");
        for sid in &page.sids {
            assert!(seen.insert(sid.clone()), "{sid} appears twice (page {i})");
            assert!(expected.contains(sid), "{sid} was never created");
        }
        for field in ["first_page_url", "url"] {
            let url = page.meta[field].as_str().unwrap_or_default();
            assert!(url.starts_with(base), "meta.{field} of page {i}: {url}");
        }
        if let Some(next) = page.meta["next_page_url"].as_str() {
            assert!(next.starts_with(base), "next_page_url of page {i}: {next}");
        }
        if i == 0 {
            assert_eq!(page.meta["previous_page_url"], Value::Null, "page 0");
        } else {
            let previous = page.meta["previous_page_url"].as_str().unwrap_or_default();
            assert!(
                previous.starts_with(base),
                "previous_page_url of page {i}: {previous:?}"
            );
        }
    }
    assert_eq!(
        pages.last().map(|p| &p.meta["next_page_url"]),
        Some(&Value::Null)
    );
    assert_eq!(&seen, expected, "every record exactly once");
}

#[tokio::test]
async fn walking_next_page_url_visits_every_service_exactly_once() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let expected = create_services(&a, SERVICES).await;
    let base = format!("{}/v2/Services", server.base_url());

    let pages = walk(&a, "/v2/Services?PageSize=50", "services", 100).await;
    check_walk(&pages, &expected, 50, &base);

    let pages = walk(&a, "/v2/Services?PageSize=1000", "services", 10).await;
    check_walk(&pages, &expected, 1000, &base);

    // The default page size is 50.
    let pages = walk(&a, "/v2/Services", "services", 100).await;
    check_walk(&pages, &expected, 50, &base);

    // previous_page_url from page 2 gives page 1's records, in the same order; and first_page_url
    // gives page 0's.
    let pages = walk(&a, "/v2/Services?PageSize=50", "services", 100).await;
    let previous = pages[2].meta["previous_page_url"]
        .as_str()
        .expect("page 2 has a previous_page_url");
    let back = fetch_page(&a, previous, "services").await;
    assert_eq!(back.sids, pages[1].sids, "previous_page_url of page 2");
    assert_eq!(back.meta["page"], 1);
    let first = pages[5].meta["first_page_url"]
        .as_str()
        .expect("first_page_url");
    let front = fetch_page(&a, first, "services").await;
    assert_eq!(front.sids, pages[0].sids, "first_page_url of page 5");
    assert_eq!(front.meta["page"], 0);
    // And the page's own url gives the page again.
    let again = fetch_page(&a, pages[3].meta["url"].as_str().expect("url"), "services").await;
    assert_eq!(again.sids, pages[3].sids, "meta.url of page 3");
}

#[tokio::test]
async fn a_page_size_of_1000_is_accepted_and_1001_is_refused_with_20007() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, _) = one_of_each(&a).await.first_sids();
    for list in [
        "/v2/Services".to_owned(),
        rate_limits_path(&vs),
        buckets_path(&vs, &rk),
    ] {
        let page = a.get(&format!("{list}?PageSize=1000")).await.expect(200);
        assert_eq!(page["meta"]["page_size"], 1000, "{list}");
        a.get(&format!("{list}?PageSize=1001"))
            .await
            .expect_error(400, 20007);
    }
}

#[tokio::test]
async fn a_page_token_the_server_did_not_issue_is_refused_with_21481() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let (vs, rk, _) = one_of_each(&a).await.first_sids();
    for list in [
        "/v2/Services".to_owned(),
        rate_limits_path(&vs),
        buckets_path(&vs, &rk),
    ] {
        for token in ["garbage", "PA", "%00%01", "PAnot-a-sid"] {
            a.get(&format!("{list}?PageSize=1&Page=1&PageToken={token}"))
                .await
                .expect_error(400, 21481);
        }
    }
}

#[tokio::test]
async fn rate_limits_and_buckets_page_through_next_page_url_too() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let vs = str_of(&create_service(&a, "Paging").await["sid"]);
    let mut rate_limits = HashSet::new();
    for i in 0..7 {
        let rk = create_rate_limit(&a, &vs, &format!("limit_{i}")).await;
        rate_limits.insert(str_of(&rk["sid"]));
    }
    let base = format!("{}{}", server.base_url(), rate_limits_path(&vs));
    let pages = walk(
        &a,
        &format!("{}?PageSize=3", rate_limits_path(&vs)),
        "rate_limits",
        10,
    )
    .await;
    check_walk(&pages, &rate_limits, 3, &base);

    let rk = rate_limits.iter().next().expect("a rate limit").clone();
    let mut buckets = HashSet::new();
    for interval in [1, 10, 60, 600, 3600] {
        let bucket = create_bucket(&a, &vs, &rk, 5, interval).await;
        buckets.insert(str_of(&bucket["sid"]));
    }
    let base = format!("{}{}", server.base_url(), buckets_path(&vs, &rk));
    let pages = walk(
        &a,
        &format!("{}?PageSize=2", buckets_path(&vs, &rk)),
        "buckets",
        10,
    )
    .await;
    check_walk(&pages, &buckets, 2, &base);
}

#[tokio::test]
async fn records_created_while_paging_are_not_repeated_and_none_is_skipped() {
    let server = TestServer::start(ServerOptions::new()).await;
    let a = server.a();
    let before = create_services(&a, 30).await;
    let mut url = "/v2/Services?PageSize=10".to_owned();
    let mut seen = Vec::new();
    loop {
        let page = fetch_page(&a, &url, "services").await;
        seen.extend(page.sids);
        // A new record appears between every two page requests.
        create_service(&a, "Late").await;
        match page.meta["next_page_url"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
        assert!(seen.len() < 1000, "next_page_url never ends");
    }
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no record is listed twice");
    assert!(
        before.is_subset(&unique),
        "every record that existed before the walk is listed"
    );
}
