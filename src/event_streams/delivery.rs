//! Asynchronous delivery of events to webhook sinks (Event Streams) and to Service Webhooks.
//!
//! The engine records every verification outcome (`crate::events::Events::record`); the tap
//! installed here hands each one to a bounded intake channel with `try_send` and returns at
//! once, so a start or a check never waits for a webhook (a full intake drops the event and
//! counts it). Factor and challenge events come the same way, through [`Delivery::offer`]
//! (`Engine::factor_event`). One router task takes events from the intake in the order they
//! were recorded and reads where they go from the database (so every instance sees sinks and
//! webhooks made on another): for a verification outcome, the service's
//! `verify_event_subscription_enabled` and the account's subscriptions; for a factor or
//! challenge event, the service's enabled webhooks subscribed to its type. It builds and signs
//! each request and appends it to the destination's lane.
//!
//! A lane is one destination's (a sink's or a webhook's) FIFO queue with one task sending from
//! its head: an event is sent only after the one before it was delivered or given up on, so
//! each destination receives events in the order they happened. Failures (a non-2xx answer, a connection error, no answer within
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
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::{Notify, mpsc};

use super::cloudevent::{self, signature, signed_url, split_credentials};
use super::service_webhook::{self, FactorEvent};
use crate::catalog::Catalog;
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

/// An event on its way to the router.
enum Offered {
    /// A verification outcome, for Event Streams.
    Verification {
        account: String,
        kind: Kind,
        verification: Box<Verification>,
        at_ms: i64,
    },
    /// A factor or challenge event, for the service's webhooks.
    Factor(Box<FactorEvent>),
}

/// Which machinery a request belongs to: only the metrics differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    EventStreams,
    ServiceWebhooks,
}

impl Channel {
    fn count(self, outcome: metrics::Delivery) {
        metrics::delivery(self == Channel::ServiceWebhooks, outcome);
    }

    fn queued(self, delta: i64) {
        metrics::delivery_queued(self == Channel::ServiceWebhooks, delta);
    }
}

/// One signed request, ready to send (again, when retried).
struct Job {
    channel: Channel,
    url: String,
    content_type: &'static str,
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
    /// What the engine's event log calls for every event it records: never blocks, and copies
    /// nothing unless the event may be delivered. The request already brought `catalog` up to
    /// date, so a service it knows without `verify_event_subscription_enabled` is the end of it
    /// (no copy, no hand-off); one it does not know yet (a service made on another instance,
    /// found expired by maintenance) goes to the router, which refreshes first.
    pub fn tap(
        &self,
        catalog: Arc<RwLock<Catalog>>,
    ) -> impl Fn(&str, &Event, &Verification) + Send + Sync + 'static {
        let intake = self.intake.clone();
        move |account: &str, event: &Event, verification: &Verification| {
            if cloudevent::verify_type(event.kind).is_none() {
                return;
            }
            let enabled = catalog
                .read()
                .service(account, &verification.service_sid)
                .map(|n| n.record.settings.verify_event_subscription_enabled);
            if enabled == Some(false) {
                return;
            }
            let offered = Offered::Verification {
                account: account.to_owned(),
                kind: event.kind,
                verification: Box::new(verification.clone()),
                at_ms: event.at_ms,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = intake.try_send(offered) {
                Channel::EventStreams.count(metrics::Delivery::Dropped);
            }
        }
    }

    /// Hands a factor or challenge event to the router for the service's webhooks: never
    /// blocks (a full intake drops it and counts it).
    pub fn offer(&self, event: FactorEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.intake.try_send(Offered::Factor(Box::new(event)))
        {
            Channel::ServiceWebhooks.count(metrics::Delivery::Dropped);
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
            channel: Channel::EventStreams,
            signature: signature(auth_token, &url),
            url,
            content_type: "application/json",
            body: Bytes::from(body),
            authorization,
        };
        self.push(account, sink_sid, job);
    }

    /// Signs a form POST of `params` to the webhook's `url` and queues it on its lane.
    pub fn enqueue_form(
        &self,
        account: &str,
        webhook_sid: &str,
        url: &str,
        auth_token: &str,
        params: &[(&str, String)],
    ) {
        let (url, authorization) = split_credentials(url);
        let job = Job {
            channel: Channel::ServiceWebhooks,
            signature: service_webhook::form_signature(auth_token, &url, params),
            url,
            content_type: "application/x-www-form-urlencoded",
            body: Bytes::from(service_webhook::form_body(params)),
            authorization,
        };
        self.push(account, webhook_sid, job);
    }

    fn push(&self, account: &str, lane_key: &str, job: Job) {
        let channel = job.channel;
        let lane = self.lane(account, lane_key);
        {
            let mut queue = lane.queue.lock();
            if queue.len() >= LANE_CAPACITY
                && let Some(old) = queue.pop_front()
            {
                old.channel.count(metrics::Delivery::Dropped);
                old.channel.queued(-1);
            }
            queue.push_back(job);
            channel.queued(1);
        }
        lane.wake.notify_one();
    }

    /// Forgets the waiting events of an account's sinks and webhooks (control-plane reset).
    pub fn clear_account(&self, account: &str) {
        for lane in self.lanes.lock().values().filter(|l| l.account == account) {
            drain(&lane.queue);
        }
    }

    /// Forgets the events waiting for one destination (a deleted webhook).
    pub fn forget(&self, lane_key: &str) {
        if let Some(lane) = self.lanes.lock().get(lane_key) {
            drain(&lane.queue);
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

fn drain(queue: &Mutex<VecDeque<Job>>) {
    for job in queue.lock().drain(..) {
        job.channel.queued(-1);
    }
}

/// Turns recorded outcomes into events on the lanes of the sinks and webhooks subscribed to
/// them.
async fn route(mut rx: mpsc::Receiver<Offered>, state: Weak<Inner>) {
    while let Some(o) = rx.recv().await {
        let Some(inner) = state.upgrade() else {
            break;
        };
        match o {
            Offered::Verification {
                account,
                kind,
                verification,
                at_ms,
            } => route_verification(&inner, &account, kind, &verification, at_ms).await,
            Offered::Factor(event) => route_factor_event(&inner, &event).await,
        }
    }
}

/// Queues a factor or challenge event for every webhook of its service that wants it.
async fn route_factor_event(inner: &Inner, event: &FactorEvent) {
    let engine = &inner.engine;
    let webhooks = match engine.store.webhooks(&event.service_sid).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "service webhooks: cannot read the webhooks");
            Channel::ServiceWebhooks.count(metrics::Delivery::Failed);
            return;
        }
    };
    let Some(token) = inner.credentials.token(&event.account_sid) else {
        return;
    };
    for w in webhooks
        .iter()
        .filter(|w| service_webhook::wants(w, &event.account_sid, event.event_type))
    {
        let params = event.params(&w.version);
        engine.event_streams.enqueue_form(
            &event.account_sid,
            &w.sid,
            &w.webhook_url,
            token,
            &params,
        );
    }
}

async fn route_verification(
    inner: &Inner,
    account: &str,
    kind: Kind,
    verification: &Verification,
    at_ms: i64,
) {
    let Some(event_type) = cloudevent::verify_type(kind) else {
        return;
    };
    let engine = &inner.engine;
    let known = |engine: &crate::engine::Engine| {
        engine
            .catalog
            .read()
            .service(account, &verification.service_sid)
            .map(|n| n.record.clone())
    };
    // On PostgreSQL, an expiry found by maintenance may be this instance's first sight of a
    // service made on another: then bring the catalog up to date (a no-op on SQLite).
    let mut service = known(engine);
    if service.is_none() {
        if let Err(e) = engine.refresh().await {
            tracing::warn!(error = %e, "event streams: cannot refresh the configuration");
        }
        service = known(engine);
    }
    let Some(service) = service.filter(|s| s.settings.verify_event_subscription_enabled) else {
        return;
    };
    let targets = match engine.event_targets(account, event_type).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "event streams: cannot read subscriptions");
            Channel::EventStreams.count(metrics::Delivery::Failed);
            return;
        }
    };
    let Some(token) = inner.credentials.token(account) else {
        return;
    };
    for (sink, schema_version) in targets {
        let Some(destination) = sink.webhook_destination() else {
            continue;
        };
        let event = cloudevent::verification_event(
            event_type,
            schema_version,
            &service,
            verification,
            at_ms,
        );
        engine
            .event_streams
            .enqueue(account, &sink.sid, destination, token, &[event]);
    }
}

/// Sends one lane's events, oldest first, for as long as the server runs.
async fn run_lane(lane: Arc<Lane>, client: HttpClient) {
    loop {
        let next = lane.queue.lock().pop_front();
        match next {
            Some(job) => {
                deliver(&client, &job).await;
                job.channel.queued(-1);
            }
            None => lane.wake.notified().await,
        }
    }
}

async fn deliver(client: &HttpClient, job: &Job) {
    let channel = job.channel;
    let uri: hyper::Uri = match job.url.parse() {
        Ok(u) => u,
        Err(_) => {
            tracing::warn!(?channel, "the webhook's URL is not a valid URL");
            channel.count(metrics::Delivery::Failed);
            return;
        }
    };
    if uri.scheme_str() != Some("http") {
        tracing::warn!(
            ?channel,
            "only http:// webhook destinations are delivered to"
        );
        channel.count(metrics::Delivery::Failed);
        return;
    }
    let agent = match channel {
        Channel::EventStreams => "verilimit-event-streams",
        Channel::ServiceWebhooks => "verilimit-service-webhooks",
    };
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let mut request = hyper::Request::post(uri.clone())
            .header(CONTENT_TYPE, job.content_type)
            .header(USER_AGENT, agent)
            .header("x-twilio-signature", &job.signature);
        if let Some(authorization) = &job.authorization {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request.body(Full::new(job.body.clone()));
        let Ok(request) = request else {
            channel.count(metrics::Delivery::Failed);
            return;
        };
        match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
            Ok(Ok(response)) if response.status().is_success() => {
                channel.count(metrics::Delivery::Delivered);
                return;
            }
            Ok(Ok(response)) => {
                tracing::debug!(?channel, status = %response.status(), attempt, "webhook refused");
            }
            Ok(Err(e)) => tracing::debug!(?channel, error = %e, attempt, "webhook unreachable"),
            Err(_) => tracing::debug!(?channel, attempt, "webhook did not answer in time"),
        }
        if attempt < MAX_ATTEMPTS {
            channel.count(metrics::Delivery::Retried);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    tracing::warn!(
        ?channel,
        attempts = MAX_ATTEMPTS,
        "gave up delivering an event"
    );
    channel.count(metrics::Delivery::Failed);
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
        let catalog = Arc::new(RwLock::new(Catalog::default()));
        let tap = d.tap(catalog.clone());
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
            tap("AC1", &Event::of(&v, kind), &v);
        }
        // A service this instance knows without `verify_event_subscription_enabled`: nothing is
        // handed off (the request path copies nothing).
        let service = |enabled: bool| crate::catalog::ServiceRecord {
            sid: "VA2".into(),
            account_sid: "AC1".into(),
            friendly_name: "s".into(),
            code_length: 6,
            custom_code_enabled: false,
            settings: crate::catalog::ServiceSettings {
                verify_event_subscription_enabled: enabled,
                ..Default::default()
            },
            date_created: 0,
            date_updated: 0,
        };
        let off = crate::core::Verification {
            sid: "VE2".into(),
            service_sid: "VA2".into(),
            ..v.clone()
        };
        catalog.write().put_service(service(false));
        tap("AC1", &Event::of(&off, Kind::Approved), &off);
        catalog.write().put_service(service(true));
        tap("AC1", &Event::of(&off, Kind::Canceled), &off);
        let mut rx = d.intake_rx.lock().take().unwrap();
        let kinds: Vec<Kind> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|o| match o {
                Offered::Verification { kind, .. } => Some(kind),
                Offered::Factor(_) => None,
            })
            .collect();
        assert_eq!(kinds, [Kind::Started, Kind::Approved, Kind::Canceled]);
    }
}
