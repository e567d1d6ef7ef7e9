//! verilimit: a local Twilio Verify v2 server that enforces Service Rate Limits exactly.
//!
//! A request flows one way: Twilio's wire dialect (`twilio`) → resource handlers (`api`,
//! `emulator`) → the engine (`engine`) → the pure core (`core`) and persistence (`store`).

pub mod api;
pub mod catalog;
pub mod config;
pub mod core;
pub mod emulator;
pub mod engine;
pub mod event_streams;
pub mod events;
pub mod healthcheck;
pub mod memory;
pub mod metrics;
pub mod replay;
pub mod seed;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod twilio;
pub mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{BoxError, Json, Router, middleware};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

use crate::config::Config;
use crate::state::AppState;
use crate::twilio::ApiError;

/// The whole HTTP application.
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    app_with_ca(state, request_timeout, None)
}

/// The whole HTTP application; `ca_pem` is the `--tls` CA certificate that
/// `GET /emulator/v1/ca.pem` serves (404 without one).
pub fn app_with_ca(state: AppState, request_timeout: Duration, ca_pem: Option<Arc<str>>) -> Router {
    let mut router = Router::new()
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .route(
            "/emulator/v1/ca.pem",
            get(tls::ca_pem).layer(axum::Extension(ca_pem)),
        )
        .merge(api::routes());
    if state.settings.control_plane {
        router = router.merge(emulator::routes()).merge(ui::routes());
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside the timeout: a body that never completes is cut like any slow request, and so
        // is a configuration refresh that cannot get through.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            prepare_request,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        20503,
                        "The request took too long and was abandoned",
                    )
                }))
                .timeout(request_timeout),
        )
        .layer(DefaultBodyLimit::max(twilio::form::BODY_LIMIT))
        .layer(middleware::from_fn(telemetry::trace_request))
        .with_state(state)
}

/// Before each request: reads its whole body (`twilio::form::read_whole_body`: an answer sent
/// before the body has arrived would cost the client its connection), then, on PostgreSQL,
/// brings this instance's configuration cache up to date.
async fn prepare_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let request = twilio::form::read_whole_body(request).await;
    if let Err(e) = state.refresh().await {
        return axum::response::IntoResponse::into_response(ApiError::from(e));
    }
    next.run(request).await
}

/// Prometheus metrics, for any configured account; decisions are shown for the caller's own
/// services only, so no account learns another's service SIDs.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: twilio::auth::Caller,
) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let (values, recipients) = state.tracked();
            let catalog = state.catalog.read();
            metrics::render(values, recipients, |s| {
                catalog.service(&caller.account, s).is_some()
            })
        },
    )
}

async fn not_found(OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(api::printable(uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed")
}

/// How long idle or slow clients may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets in-flight
/// requests finish (closing idle keep-alive connections), and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, None, app, shutdown).await
}

/// [`serve`] over TLS: each connection's handshake runs in its own task, bounded by the header
/// read timeout, so a slow or failed handshake never holds up the accept loop or the server.
/// Requests carry [`tls::ViaTls`], so the URLs they are answered with say `https://`.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, Some(acceptor), app, shutdown).await
}

async fn serve_with(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match &acceptor {
                    None => {
                        let service = TowerToHyperService::new(app.clone());
                        let conn = graceful
                            .watch(builder.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        let builder = Arc::clone(&builder);
                        let app = app.clone();
                        tokio::spawn(async move {
                            let handshake =
                                tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                            let stream = match handshake.await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    tracing::debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                            let service = TowerToHyperService::new(
                                tower::ServiceBuilder::new()
                                    .map_request(|mut r: axum::http::Request<_>| {
                                        r.extensions_mut().insert(tls::ViaTls);
                                        r
                                    })
                                    .service(app),
                            );
                            let conn = watcher
                                .watch(builder.serve_connection(TokioIo::new(stream), service));
                            let _ = conn.await;
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("some connections did not finish within the drain timeout");
        }
    }
    Ok(())
}

/// Runs the server from its configuration until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), String> {
    let creds = config.credentials()?;
    if creds.dev_account {
        tracing::warn!(
            account_sid = config::DEV_ACCOUNT_SID,
            "no credentials configured: serving the development account (see README)"
        );
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let seed = match &config.seed {
        Some(path) => {
            let accounts: Vec<String> = creds.credentials.accounts().map(str::to_owned).collect();
            Some(seed::load(path, &creds.default_account, &accounts)?)
        }
        None => None,
    };
    let (state, writer) = AppState::open(&config, creds.credentials).await?;
    // After the database is open: the TLS authority is kept in it.
    let tls = match config.tls {
        true => {
            let tls = tls::setup(&config, &state.store).await?;
            let listener = TcpListener::bind(config.tls_listen).await.map_err(|e| {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    " (a port below 1024 needs net.ipv4.ip_unprivileged_port_start=0 or \
                     CAP_NET_BIND_SERVICE)"
                } else {
                    ""
                };
                format!("cannot listen on {}: {e}{hint}", config.tls_listen)
            })?;
            Some((tls, listener))
        }
        false => None,
    };
    if let Some(seed) = seed {
        seed::apply(&state, seed).await?;
        tracing::info!("seed file applied");
    }
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance = tokio::spawn(state::maintenance_loop(
        state.clone(),
        Duration::from_secs(5),
        stop_rx,
    ));
    let app = app_with_ca(
        state,
        Duration::from_secs(config.request_timeout),
        tls.as_ref().map(|(t, _)| Arc::clone(&t.ca_pem)),
    );
    let tls_addr = match &tls {
        Some((_, l)) => Some(
            l.local_addr()
                .map_err(|e| format!("cannot read the bound address: {e}"))?,
        ),
        None => None,
    };
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "verilimit listening on http://{addr}");
        if let Some(tls_addr) = tls_addr {
            let _ = writeln!(out, "verilimit listening on https://{tls_addr}");
        }
        let _ = out.flush();
    }
    tracing::info!(%addr, ?tls_addr, "listening");
    // One shutdown signal for both listeners.
    let (down_tx, down_rx) = tokio::sync::watch::channel(false);
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = down_tx.send(true);
    });
    let down = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|d| *d).await;
    };
    let plain = serve(listener, app.clone(), down(down_rx.clone()));
    let result = match tls {
        Some((tls, tls_listener)) => {
            let secure = serve_tls(tls_listener, tls.acceptor, app, down(down_rx));
            let (a, b) = tokio::join!(plain, secure);
            a.and(b)
        }
        None => {
            drop(app);
            plain.await
        }
    };
    signal.abort();
    result.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = maintenance.await;
    // The writer finishes once the last request holding the state is gone.
    if let Some(writer) = writer
        && tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .is_err()
    {
        tracing::warn!("the writer did not finish in time");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
