//! A webhook sink for tests: an axum server on a free loopback port that records every request
//! (the full URL it was sent to, `X-Twilio-Signature`, the body) and can answer 500 to the first
//! few, to exercise retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::mpsc;

/// How long a test waits for an expected delivery before failing.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Received {
    /// The URL as the sink received it (`http://127.0.0.1:PORT/hook?bodySHA256=…`).
    pub url: String,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub authorization: Option<String>,
    pub body: Bytes,
    /// The answer the receiver gave.
    pub answered: u16,
}

impl Received {
    /// The body: a JSON array of events.
    pub fn events(&self) -> Vec<Value> {
        let v: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {:?}", self.body));
        v.as_array()
            .unwrap_or_else(|| panic!("the body is not a JSON array: {v}"))
            .clone()
    }

    /// The only event of the body.
    pub fn event(&self) -> Value {
        let events = self.events();
        assert_eq!(events.len(), 1, "one event per request: {events:?}");
        events[0].clone()
    }

    /// Checks the signature as a sink does (Twilio's JSON webhook scheme): `bodySHA256` in the
    /// URL is the hex SHA-256 of the body, and the signature is the base64 HMAC-SHA1 of the
    /// whole URL keyed with the auth token.
    #[track_caller]
    pub fn assert_signed_by(&self, auth_token: &str) {
        let hash: String = sha2::Sha256::digest(&self.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let query = self.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let given = query
            .split('&')
            .find_map(|p| p.strip_prefix("bodySHA256="))
            .unwrap_or_else(|| panic!("no bodySHA256 in {}", self.url));
        assert_eq!(given, hash, "bodySHA256 is not the body's SHA-256");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).unwrap();
        mac.update(self.url.as_bytes());
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(
            self.signature.as_deref(),
            Some(expected.as_str()),
            "X-Twilio-Signature of {}",
            self.url
        );
    }
}

#[derive(Clone)]
struct Shared {
    tx: mpsc::UnboundedSender<Received>,
    fail_next: Arc<AtomicUsize>,
    port: u16,
}

pub struct Receiver {
    pub port: u16,
    rx: mpsc::UnboundedReceiver<Received>,
    fail_next: Arc<AtomicUsize>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::unbounded_channel();
        let fail_next = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            tx,
            fail_next: fail_next.clone(),
            port,
        };
        let app = Router::new().route("/hook", post(hook)).with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            port,
            rx,
            fail_next,
            server,
        }
    }

    /// The destination to configure on a sink.
    pub fn destination(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Answers 500 to the next `n` requests.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next request (waits at most [`DELIVERY_TIMEOUT`]).
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(DELIVERY_TIMEOUT, self.rx.recv())
            .await
            .expect("no delivery arrived in time")
            .expect("the receiver stopped")
    }

    /// The next request that was answered 2xx, with the events it carried.
    pub async fn next_delivered(&mut self) -> Received {
        loop {
            let r = self.next().await;
            if (200..300).contains(&r.answered) {
                return r;
            }
        }
    }

    /// Whatever already arrived and was not read yet.
    pub fn pending(&mut self) -> Vec<Received> {
        let mut out = Vec::new();
        while let Ok(r) = self.rx.try_recv() {
            out.push(r);
        }
        out
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn hook(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let fail = s
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let _ = s.tx.send(Received {
        url: format!("http://127.0.0.1:{}{}", s.port, uri),
        signature: header("x-twilio-signature"),
        content_type: header("content-type"),
        authorization: header("authorization"),
        body,
        answered: status.as_u16(),
    });
    status
}
