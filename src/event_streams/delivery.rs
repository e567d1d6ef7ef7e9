//! Asynchronous delivery of events to webhook sinks.
//!
//! The engine records every verification outcome (`crate::events::Events::record`); the tap
//! installed here hands each one to a bounded intake channel with `try_send` and returns at
//! once, so a start or a check never waits for a webhook (a full intake drops the event and
//! counts it). One router task takes events from the intake in the order they were recorded,
//! looks up the service's `verify_event_subscription_enabled` and the account's subscriptions
//! (read from the database, so every instance sees sinks made on another), builds the event,
//! signs it, and appends it to the sink's lane.
//!
//! A lane is one sink's FIFO queue with one task sending from its head: an event is sent only
//! after the one before it was delivered or given up on, so each sink receives the events of a
//! verification in order. Failures (a non-2xx answer, a connection error, no answer within
//! [`ATTEMPT_TIMEOUT`]) are retried with exponential backoff, at most [`MAX_ATTEMPTS`] times. A
//! lane holds at most [`LANE_CAPACITY`] events; when full, its oldest waiting event is dropped
//! and counted. Queues live in memory only: events not yet delivered are lost on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, USER_AGENT};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::cloudevent::{self, signature, signed_url, split_credentials};
use crate::core::Verification;
use crate::events::{Event, Kind};
use crate::metrics;
use crate::state::Inner;

/// Events waiting for the router, at most.
pub const INTAKE_CAPACITY: usize = 10_000;
/// Events waiting in one sink's lane, at most.
pub const LANE_CAPACITY: usize = 1_000;
/// Tries per event, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// The wait before the first retry; it doubles after each, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// How long a sink may take to answer: Twilio's documented maximum for webhook sinks
/// ("The maximum timeout for a webhook Sink response is 5 seconds", Webhook Quickstart).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A verification outcome on its way to the router.
struct Offered {
    account: String,
    kind: Kind,
    verification: Box<Verification>,
    at_ms: i64,
}

/// One signed request, ready to send (again, when retried).
struct Job {
    url: String,
    body: Bytes,
    signature: String,
    /// `Basic …` when the destination carried user info.
    authorization: Option<String>,
}

struct Lane {
    account: String,
    queue: Mutex<VecDeque<Job>>,
    wake: Notify,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub struct Delivery {
    intake: mpsc::Sender<Offered>,
    intake_rx: Mutex<Option<mpsc::Receiver<Offered>>>,
    lanes: Mutex<HashMap<String, Arc<Lane>>>,
    client: HttpClient,
}

impl Default for Delivery {
    fn default() -> Self {
        let (intake, rx) = mpsc::channel(INTAKE_CAPACITY);
        Self {
            intake,
            intake_rx: Mutex::new(Some(rx)),
            lanes: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl Delivery {
    /// What the engine's event log calls for every event it records: never blocks.
    pub fn tap(&self) -> impl Fn(&str, &Event, Box<Verification>) + Send + Sync + 'static {
        let intake = self.intake.clone();
        move |account: &str, event: &Event, verification: Box<Verification>| {
            if cloudevent::verify_type(event.kind).is_none() {
                return;
            }
            let offered = Offered {
                account: account.to_owned(),
                kind: event.kind,
                verification,
                at_ms: event.at_ms,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = intake.try_send(offered) {
                metrics::event_stream_dropped();
            }
        }
    }

    /// Starts the router; it stops once the application state is gone.
    pub fn start(&self, state: Weak<Inner>) {
        if let Some(rx) = self.intake_rx.lock().take() {
            tokio::spawn(route(rx, state));
        }
    }

    /// Signs `events` (one JSON array, one request) for `destination` and queues them on the
    /// sink's lane.
    pub fn enqueue(
        &self,
        account: &str,
        sink_sid: &str,
        destination: &str,
        auth_token: &str,
        events: &[Value],
    ) {
        let body = serde_json::to_vec(events).unwrap_or_default();
        let (destination, authorization) = split_credentials(destination);
        let url = signed_url(&destination, &body);
        let job = Job {
            signature: signature(auth_token, &url),
            url,
            body: Bytes::from(body),
            authorization,
        };
        let lane = self.lane(account, sink_sid);
        {
            let mut queue = lane.queue.lock();
            if queue.len() >= LANE_CAPACITY {
                queue.pop_front();
                metrics::event_stream_dropped();
                metrics::event_stream_queued(-1);
            }
            queue.push_back(job);
            metrics::event_stream_queued(1);
        }
        lane.wake.notify_one();
    }

    /// Forgets the waiting events of an account's sinks (control-plane reset).
    pub fn clear_account(&self, account: &str) {
        for lane in self.lanes.lock().values().filter(|l| l.account == account) {
            let mut queue = lane.queue.lock();
            metrics::event_stream_queued(-(queue.len() as i64));
            queue.clear();
        }
    }

    fn lane(&self, account: &str, sink_sid: &str) -> Arc<Lane> {
        let mut lanes = self.lanes.lock();
        if let Some(lane) = lanes.get(sink_sid) {
            return lane.clone();
        }
        let lane = Arc::new(Lane {
            account: account.to_owned(),
            queue: Mutex::default(),
            wake: Notify::new(),
        });
        tokio::spawn(run_lane(lane.clone(), self.client.clone()));
        lanes.insert(sink_sid.to_owned(), lane.clone());
        lane
    }
}

/// Turns recorded outcomes into events on the lanes of the sinks subscribed to them.
async fn route(mut rx: mpsc::Receiver<Offered>, state: Weak<Inner>) {
    while let Some(o) = rx.recv().await {
        let Some(inner) = state.upgrade() else {
            break;
        };
        let Some(event_type) = cloudevent::verify_type(o.kind) else {
            continue;
        };
        let engine = &inner.engine;
        // On PostgreSQL, an expiry found by maintenance may be this instance's first sight of
        // a service made on another: bring the catalog up to date first (a no-op on SQLite).
        if let Err(e) = engine.refresh().await {
            tracing::warn!(error = %e, "event streams: cannot refresh the configuration");
        }
        let service = engine
            .catalog
            .read()
            .service(&o.account, &o.verification.service_sid)
            .map(|n| n.record.clone());
        let Some(service) = service.filter(|s| s.settings.verify_event_subscription_enabled) else {
            continue;
        };
        let targets = match engine.event_targets(&o.account, event_type).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "event streams: cannot read subscriptions");
                metrics::event_stream_failed();
                continue;
            }
        };
        let Some(token) = inner.credentials.token(&o.account) else {
            continue;
        };
        for (sink, schema_version) in targets {
            let Some(destination) = sink.webhook_destination() else {
                continue;
            };
            let event = cloudevent::verification_event(
                event_type,
                schema_version,
                &service,
                &o.verification,
                o.at_ms,
            );
            engine
                .event_streams
                .enqueue(&o.account, &sink.sid, destination, token, &[event]);
        }
    }
}

/// Sends one lane's events, oldest first, for as long as the server runs.
async fn run_lane(lane: Arc<Lane>, client: HttpClient) {
    loop {
        let next = lane.queue.lock().pop_front();
        match next {
            Some(job) => {
                deliver(&client, &job).await;
                metrics::event_stream_queued(-1);
            }
            None => lane.wake.notified().await,
        }
    }
}

async fn deliver(client: &HttpClient, job: &Job) {
    let uri: hyper::Uri = match job.url.parse() {
        Ok(u) => u,
        Err(_) => {
            tracing::warn!("event streams: the sink's destination is not a valid URL");
            metrics::event_stream_failed();
            return;
        }
    };
    if uri.scheme_str() != Some("http") {
        tracing::warn!("event streams: only http:// webhook destinations are delivered to");
        metrics::event_stream_failed();
        return;
    }
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut request = hyper::Request::post(uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "verilimit-event-streams")
            .header("x-twilio-signature", &job.signature);
        if let Some(authorization) = &job.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(job.body.clone()));
        let Ok(request) = request else {
            metrics::event_stream_failed();
            return;
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                metrics::event_stream_delivered();
                return;
            }
            Ok(Ok(response)) => {
                tracing::debug!(status = %response.status(), attempt, "event streams: sink refused");
            }
            Ok(Err(e)) => tracing::debug!(error = %e, attempt, "event streams: sink unreachable"),
            Err(_) => tracing::debug!(attempt, "event streams: sink did not answer in time"),
        }
        if attempt < MAX_ATTEMPTS {
            metrics::event_stream_retried();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    tracing::warn!(
        attempts = MAX_ATTEMPTS,
        "event streams: gave up delivering an event"
    );
    metrics::event_stream_failed();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane's task only runs once the test yields, so the queue is seen as enqueued.
    #[tokio::test]
    async fn a_full_lane_drops_its_oldest_waiting_events() {
        let d = Delivery::default();
        for i in 0..LANE_CAPACITY + 10 {
            let event = serde_json::json!({ "n": i });
            d.enqueue("AC1", "DG1", "http://127.0.0.1:9/hook", "token", &[event]);
        }
        let lane = d.lane("AC1", "DG1");
        let queue = lane.queue.lock();
        assert_eq!(queue.len(), LANE_CAPACITY);
        let first: Value = serde_json::from_slice(&queue[0].body).unwrap();
        assert_eq!(first, serde_json::json!([{ "n": 10 }]));
        drop(queue);
        d.clear_account("AC1");
        assert!(lane.queue.lock().is_empty());
    }

    #[test]
    fn the_tap_passes_on_only_the_five_verification_status_events() {
        let d = Delivery::default();
        let tap = d.tap();
        let v = crate::core::Verification {
            sid: "VE1".into(),
            service_sid: "VA1".into(),
            account_sid: "AC1".into(),
            to: "+15005550006".into(),
            channel: "sms".into(),
            status: crate::core::Status::Pending,
            code: "123456".into(),
            amount: None,
            payee: None,
            checks_failed: 0,
            expires_ms: 0,
            date_created: 0,
            date_updated: 0,
            version: 0,
            attempts: Vec::new(),
        };
        for kind in [
            Kind::Started,
            Kind::Refused,
            Kind::CheckFailed,
            Kind::Approved,
        ] {
            tap("AC1", &Event::of(&v, kind), Box::new(v.clone()));
        }
        let mut rx = d.intake_rx.lock().take().unwrap();
        let kinds: Vec<Kind> = std::iter::from_fn(|| rx.try_recv().ok().map(|o| o.kind)).collect();
        assert_eq!(kinds, [Kind::Started, Kind::Approved]);
    }
}
