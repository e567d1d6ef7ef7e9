//! The application state the routes share: the accepted credentials and the engine.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use crate::config::Config;
use crate::engine::Engine;
use crate::twilio::auth::Credentials;

pub use crate::engine::real_now_ms;

pub struct Inner {
    pub credentials: Arc<Credentials>,
    pub engine: Engine,
    /// Simulated Verify Push devices of the control plane (in memory).
    pub devices: crate::emulator::devices::Devices,
}

/// Cheap to clone; dereferences to the engine, which is what routes call.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.0.engine
    }
}

impl FromRef<AppState> for Arc<Credentials> {
    fn from_ref(s: &AppState) -> Self {
        s.0.credentials.clone()
    }
}

impl AppState {
    /// Opens the engine. Returns the state and the SQLite writer's task (it ends once every
    /// clone of the state is dropped).
    pub async fn open(
        config: &Config,
        credentials: Credentials,
    ) -> Result<(Self, Option<tokio::task::JoinHandle<()>>), String> {
        let (engine, writer) = Engine::open(config).await?;
        let state = AppState(Arc::new(Inner {
            credentials: Arc::new(credentials),
            engine,
            devices: Default::default(),
        }));
        state.event_streams.start(Arc::downgrade(&state.0));
        Ok((state, writer))
    }
}

/// Runs maintenance every `period` until `stop` fires.
pub async fn maintenance_loop(
    state: AppState,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = state.maintain().await {
                    tracing::warn!(error = %e, "maintenance round failed");
                }
            }
            _ = stop.changed() => break,
        }
    }
}
