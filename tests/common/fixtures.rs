//! The configuration chain every suite sets up: a service, its rate limits, their buckets, created
//! through the Twilio surface as an SDK would. One shape, [`Chain`], for every test binary
//! (`#[path = "../common/fixtures.rs"] mod fixtures;`, next to `mod harness;`).

#![allow(dead_code)]

use serde_json::Value;

use crate::harness::Client;

/// What [`create_chain`] made.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The service SID.
    pub service: String,
    /// The service as its 201 answer showed it.
    pub service_body: Value,
    /// In the order they were given.
    pub rate_limits: Vec<RateLimit>,
}

#[derive(Debug, Clone)]
pub struct RateLimit {
    pub unique_name: String,
    pub sid: String,
    /// The 201 answer.
    pub body: Value,
    /// In the order they were given.
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone)]
pub struct Bucket {
    pub sid: String,
    /// The 201 answer.
    pub body: Value,
}

impl Chain {
    /// The rate limit named `unique_name`.
    #[track_caller]
    pub fn rate_limit(&self, unique_name: &str) -> &RateLimit {
        self.rate_limits
            .iter()
            .find(|r| r.unique_name == unique_name)
            .unwrap_or_else(|| panic!("the chain has no rate limit {unique_name:?}"))
    }

    /// The SIDs of the service, its first rate limit and that one's first bucket.
    #[track_caller]
    pub fn first_sids(&self) -> (String, String, String) {
        let rate_limit = self.rate_limits.first().expect("a rate limit");
        let bucket = rate_limit.buckets.first().expect("a bucket");
        (
            self.service.clone(),
            rate_limit.sid.clone(),
            bucket.sid.clone(),
        )
    }
}

/// A service created with `service_params` (a `FriendlyName` at least), with the rate limits
/// `(unique name, buckets)`, each bucket `(max, interval)`. Every step must answer 201.
pub async fn create_chain(
    c: &Client,
    service_params: &[(&str, &str)],
    limits: &[(&str, &[(u64, u64)])],
) -> Chain {
    let service_body = c
        .post_form("/v2/Services", service_params)
        .await
        .expect(201);
    let service = sid_of(&service_body);
    let mut rate_limits = Vec::new();
    for (unique_name, buckets) in limits {
        rate_limits
            .push(add_rate_limit(c, &service, &[("UniqueName", unique_name)], buckets).await);
    }
    Chain {
        service,
        service_body,
        rate_limits,
    }
}

/// A rate limit created with `params` (a `UniqueName` at least) on an existing service, with
/// its buckets `(max, interval)`.
pub async fn add_rate_limit(
    c: &Client,
    service: &str,
    params: &[(&str, &str)],
    buckets: &[(u64, u64)],
) -> RateLimit {
    let body = c
        .post_form(&format!("/v2/Services/{service}/RateLimits"), params)
        .await
        .expect(201);
    let sid = sid_of(&body);
    let mut created = Vec::new();
    for (max, interval) in buckets {
        let body = create_bucket(c, service, &sid, *max, *interval).await;
        created.push(Bucket {
            sid: sid_of(&body),
            body,
        });
    }
    RateLimit {
        unique_name: body["unique_name"].as_str().unwrap_or_default().to_owned(),
        sid,
        body,
        buckets: created,
    }
}

/// One service; its 201 answer.
pub async fn create_service(c: &Client, friendly_name: &str) -> Value {
    create_chain(c, &[("FriendlyName", friendly_name)], &[])
        .await
        .service_body
}

/// One rate limit without buckets; its 201 answer.
pub async fn create_rate_limit(c: &Client, service: &str, unique_name: &str) -> Value {
    add_rate_limit(c, service, &[("UniqueName", unique_name)], &[])
        .await
        .body
}

/// One bucket; its 201 answer.
pub async fn create_bucket(
    c: &Client,
    service: &str,
    rate_limit: &str,
    max: u64,
    interval: u64,
) -> Value {
    c.post_form(
        &format!("/v2/Services/{service}/RateLimits/{rate_limit}/Buckets"),
        &[
            ("Max", &max.to_string()),
            ("Interval", &interval.to_string()),
        ],
    )
    .await
    .expect(201)
}

#[track_caller]
fn sid_of(body: &Value) -> String {
    body["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid in {body}"))
        .to_owned()
}
