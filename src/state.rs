//! The shared application state, its start-up (load everything durable back into memory) and
//! its background maintenance (forget what no window counts any more).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use parking_lot::RwLock;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::limiter::Limiter;
use crate::store::Store;
use crate::twilio::ApiError;
use crate::twilio::auth::Credentials;
use crate::verification::{Recipients, Verification};

/// Settings the handlers read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub public_url: Option<String>,
    pub control_plane: bool,
    pub send_attempts_limit: u32,
    pub send_window_ms: i64,
    pub check_attempts_limit: u32,
    pub code_ttl_ms: i64,
    pub max_rate_limits_per_service: u32,
    pub max_buckets_per_rate_limit: u32,
    pub retention_ms: i64,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            public_url: c
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            control_plane: c.control_plane,
            send_attempts_limit: c.send_attempts_limit,
            send_window_ms: i64::from(c.send_attempts_window) * 1000,
            check_attempts_limit: c.check_attempts_limit,
            code_ttl_ms: i64::from(c.code_ttl) * 1000,
            max_rate_limits_per_service: c.max_rate_limits_per_service,
            max_buckets_per_rate_limit: c.max_buckets_per_rate_limit,
            retention_ms: i64::from(c.retention_days) * 86_400_000,
        }
    }
}

/// Per-account clocks: real time plus an offset the control plane moves.
#[derive(Default)]
pub struct Clocks {
    offsets: RwLock<HashMap<String, i64>>,
}

pub fn real_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clocks {
    pub fn offset(&self, account: &str) -> i64 {
        self.offsets.read().get(account).copied().unwrap_or(0)
    }

    pub fn now(&self, account: &str) -> i64 {
        real_now_ms() + self.offset(account)
    }

    pub fn replace(&self, offsets: HashMap<String, i64>) {
        *self.offsets.write() = offsets.into_iter().filter(|(_, o)| *o != 0).collect();
    }

    pub fn set_offset(&self, account: &str, offset: i64) {
        let mut o = self.offsets.write();
        if offset == 0 {
            o.remove(account);
        } else {
            o.insert(account.to_owned(), offset);
        }
    }
}

pub struct Inner {
    pub settings: Settings,
    pub credentials: Arc<Credentials>,
    pub store: Store,
    pub catalog: RwLock<Catalog>,
    pub limiter: Limiter,
    pub recipients: Recipients,
    pub clocks: Clocks,
    pub events: crate::events::Events,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl FromRef<AppState> for Arc<Credentials> {
    fn from_ref(s: &AppState) -> Self {
        s.credentials.clone()
    }
}

impl AppState {
    /// Opens the database and loads everything durable back into memory. Returns the state and
    /// the writer task (which ends once every clone of the state is dropped).
    pub async fn open(
        config: &Config,
        credentials: Credentials,
    ) -> Result<(Self, Option<tokio::task::JoinHandle<()>>), String> {
        let (store, writer) = Store::open(&config.database_url, config.pg_pool_size).await?;
        let load = |e: sqlx::Error| format!("cannot load the database: {e}");
        let catalog = store.load_catalog().await.map_err(load)?;
        let clocks = Clocks::default();
        for (account, offset) in store.load_clocks().await.map_err(load)? {
            clocks.set_offset(&account, offset);
        }
        let limiter = Limiter::default();
        let settings = Settings::from_config(config);
        let recipients = Recipients::default();
        // On SQLite the limiter and pending verifications live in memory: rebuild them. (On
        // PostgreSQL they live in the database.)
        if let Some(sqlite) = store.sqlite() {
            for (id, value, at) in sqlite.load_admissions().await.map_err(load)? {
                limiter.restore(id, &value, at);
            }
            let oldest_offset = clocks
                .offsets
                .read()
                .values()
                .copied()
                .min()
                .unwrap_or(0)
                .min(0);
            let since = real_now_ms() + oldest_offset - settings.send_window_ms;
            let mut service_accounts: HashMap<String, String> = HashMap::new();
            for v in sqlite.load_pending().await.map_err(load)? {
                service_accounts.insert(v.service_sid.clone(), v.account_sid.clone());
                recipients.restore_pending(v);
            }
            for (service, to, at) in sqlite.load_recent_sends(since).await.map_err(load)? {
                let account = match service_accounts.get(&service) {
                    Some(a) => a.clone(),
                    None => match catalog_account_of(&catalog, &service) {
                        Some(a) => a,
                        None => continue,
                    },
                };
                recipients.restore_send(&account, &service, &to, at);
            }
        }
        let state = AppState(Arc::new(Inner {
            settings,
            credentials: Arc::new(credentials),
            store,
            catalog: RwLock::new(catalog),
            limiter,
            recipients,
            clocks,
            events: Default::default(),
        }));
        state.sweep_memory();
        Ok((state, writer))
    }

    pub fn now(&self, account: &str) -> i64 {
        self.clocks.now(account)
    }

    /// Forgets admissions no window counts any more and recipients with nothing pending or
    /// recent; returns the verifications that expired (to be stored as expired).
    pub fn sweep_memory(&self) -> Vec<Verification> {
        {
            let catalog = self.catalog.read();
            self.limiter.sweep(|id| {
                let home = catalog.rate_limit_home(id)?;
                let rl = catalog.rate_limit(
                    &home.account_sid,
                    &home.service_sid,
                    &home.rate_limit_sid,
                )?;
                Some((rl.rules.clone(), self.clocks.now(&home.account_sid)))
            });
        }
        let expired = self.recipients.sweep(
            |account| self.clocks.now(account),
            self.settings.send_window_ms,
        );
        for v in &expired {
            self.events.record(
                &v.account_sid,
                crate::events::Event::of(v, crate::events::Kind::Expired),
            );
        }
        expired
    }

    /// One round of maintenance: memory sweep, expired verifications stored as such, and
    /// admissions no bucket counts any more pruned from the database.
    pub async fn maintain(&self) -> Result<(), ApiError> {
        let expired = self.sweep_memory();
        if let (Some(sqlite), false) = (self.store.sqlite(), expired.is_empty()) {
            let items = expired.into_iter().map(|v| (v, None, Vec::new())).collect();
            sqlite.save_verifications(items).await?;
        }
        let horizons: Vec<(i64, i64)> = {
            let catalog = self.catalog.read();
            catalog
                .rate_limits()
                .map(|(home, rl)| {
                    let now = self.clocks.now(&home.account_sid);
                    let keep_from = rl.rules.iter().map(|r| r.lower_bound(now)).min();
                    (rl.record.id, keep_from.unwrap_or(now + 1))
                })
                .collect()
        };
        let cutoffs: Vec<(String, i64)> = self
            .credentials
            .accounts()
            .map(|a| {
                (
                    a.to_owned(),
                    self.clocks.now(a) - self.settings.retention_ms,
                )
            })
            .collect();
        let purged = self.store.purge_verifications(cutoffs).await?;
        if purged > 0 {
            tracing::info!(purged, "verifications past retention deleted");
        }
        if !horizons.is_empty() {
            self.store.prune_admissions(horizons).await?;
        }
        Ok(())
    }

    /// On PostgreSQL, reloads the configuration cache (and clocks) if another instance changed
    /// it since it was loaded. A no-op on SQLite, where this instance made every change.
    pub async fn refresh(&self) -> Result<(), ApiError> {
        let Some(pg) = self.store.postgres() else {
            return Ok(());
        };
        let Some(version) = pg.stale_version().await? else {
            return Ok(());
        };
        pg.reload_if_older(version, || async {
            let catalog = self.store.load_catalog().await?;
            let clocks = self.store.load_clocks().await?;
            *self.catalog.write() = catalog;
            self.clocks.replace(clocks);
            Ok(())
        })
        .await?;
        Ok(())
    }
}

fn catalog_account_of(catalog: &Catalog, service: &str) -> Option<String> {
    catalog
        .accounts()
        .find(|a| catalog.service(a, service).is_some())
        .cloned()
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
