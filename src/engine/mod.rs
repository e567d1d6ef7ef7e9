//! The one engine every route and the control plane call: verification starts, checks,
//! updates, fetches, usage, the outbox, maintenance, reset, clocks and configuration writes.
//! No caller knows which backend runs.
//!
//! Both backends only do I/O around the pure core (`crate::core`):
//! - SQLite (`sqlite`): one writer task decides every change in order against its cache of
//!   committed state, writes a batch in one transaction, and publishes to the cache only after
//!   `COMMIT` (`writer`, `cache`).
//! - PostgreSQL (`pg`): the core inside one transaction per request, serialized per recipient
//!   and per (rate limit, value) by advisory locks, so any number of instances share a database.
//!
//! What both share lives here: events and metrics of each outcome, the configuration catalog
//! (changed only through `Engine`'s configuration methods, after commit, in commit order), and
//! the account clocks.

pub mod cache;
pub mod clock;
pub mod event_streams;
pub mod mfa;
mod own_thread;
pub mod pg;
pub mod pg_starts;
pub mod records;
pub mod sqlite;
pub mod writer;

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::catalog::{BucketRecord, Catalog, RateLimitNode, RateLimitRecord, ServiceRecord};
use crate::config::Config;
use crate::core::{self, Checked, Fresh, Policy, StartRequest, Started, Status, Verification};
use crate::events::{Event, Events, Kind};
use crate::store::{OutboxFilter, OutboxMessage, Store, StoreError};
use crate::twilio::paging::Cursor;
use crate::twilio::{ApiError, sid};

pub use cache::ValueLog;
pub use clock::{Clocks, real_now_ms};

/// Settings the handlers and the engine read.
#[derive(Debug, Clone)]
pub struct Settings {
    pub public_url: Option<String>,
    pub control_plane: bool,
    pub policy: Policy,
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
            policy: Policy {
                send_attempts_limit: c.send_attempts_limit,
                send_window_ms: i64::from(c.send_attempts_window) * 1000,
                check_attempts_limit: c.check_attempts_limit,
                code_ttl_ms: i64::from(c.code_ttl) * 1000,
            },
            max_rate_limits_per_service: c.max_rate_limits_per_service,
            max_buckets_per_rate_limit: c.max_buckets_per_rate_limit,
            retention_ms: i64::from(c.retention_days) * 86_400_000,
        }
    }
}

/// A change of a live verification.
#[derive(Debug, Clone)]
pub enum Change {
    /// A verification check: the code, and the `To` given beside a `VerificationSid`.
    Check { code: String, to: Option<String> },
    /// `Status` = canceled or approved.
    Update(Status),
}

impl Change {
    /// Applies the change with the core.
    fn apply(&self, v: &Verification, policy: &Policy, now: i64) -> Checked {
        match self {
            Change::Check { code, to } => {
                core::verification::check(v, code, to.as_deref(), policy, now)
            }
            Change::Update(status) => Checked::Done(core::verification::update(v, *status, now)),
        }
    }
}

/// What a change found and did, as a backend reports it.
pub enum Modified {
    /// The live verification named, and what the change made of it (already persisted).
    Live(Box<(Verification, Checked)>),
    /// The verification named had expired: stored as such.
    Expired(Box<Verification>),
    /// Nothing live by that name.
    Missing,
}

/// A path segment naming a verification: its `VE` SID, or its recipient.
pub enum Key<'a> {
    Sid(&'a str),
    To(&'a str),
}

impl<'a> Key<'a> {
    pub fn parse(segment: &'a str) -> Self {
        if sid::is_valid(segment, sid::VERIFICATION) {
            Key::Sid(segment)
        } else {
            Key::To(segment)
        }
    }
}

pub struct Engine {
    pub settings: Settings,
    pub catalog: Arc<RwLock<Catalog>>,
    pub clocks: Arc<Clocks>,
    pub events: Arc<Events>,
    pub store: Store,
    /// Event Streams webhook delivery (`crate::event_streams`).
    pub event_streams: Arc<crate::event_streams::Delivery>,
    /// On PostgreSQL, starts decided in batches (`pg_starts`).
    pg_starts: Option<pg_starts::Starts>,
}

impl Engine {
    /// Opens the database and rebuilds what the engine keeps in memory. Returns the engine and
    /// the SQLite writer's task (it ends once the engine is dropped).
    pub async fn open(
        config: &Config,
    ) -> Result<(Self, Option<tokio::task::JoinHandle<()>>), String> {
        let (store, writer) = Store::open(&config.database_url, config.pg_pool_size).await?;
        let load = |e: sqlx::Error| format!("cannot load the database: {e}");
        let catalog = store.load_catalog().await.map_err(load)?;
        let clocks = Clocks::default();
        for (account, offset) in store.load_clocks().await.map_err(load)? {
            clocks.set_offset(&account, offset);
        }
        let settings = Settings::from_config(config);
        if let Store::Sqlite(s) = &store {
            s.cache.set_budget(match config.cache_memory {
                0 => usize::MAX,
                mib => mib.saturating_mul(1 << 20),
            });
            sqlite::rebuild(s, &catalog, &clocks, &settings.policy)
                .await
                .map_err(load)?;
        }
        let clocks = Arc::new(clocks);
        let pg_starts = match &store {
            Store::Postgres(p) => Some(pg_starts::Starts::spawn(&p.pool, clocks.clone())),
            Store::Sqlite(_) => None,
        };
        let event_streams = Arc::new(crate::event_streams::Delivery::default());
        let events = Arc::new(Events::default());
        let catalog = Arc::new(RwLock::new(catalog));
        events.set_tap(Box::new(event_streams.tap(catalog.clone())));
        Ok((
            Self {
                settings,
                catalog,
                clocks,
                events,
                store,
                event_streams,
                pg_starts,
            },
            writer,
        ))
    }

    pub fn now(&self, account: &str) -> i64 {
        self.clocks.now(account)
    }

    /// How many (rate limit, value) logs and recipients this instance holds in memory.
    pub fn tracked(&self) -> (usize, usize) {
        match &self.store {
            Store::Sqlite(s) => s.cache.tracked(),
            Store::Postgres(_) => (0, 0),
        }
    }

    // --- verifications --------------------------------------------------------------------

    /// A verification start (`code_length` digits unless the request has a custom code),
    /// with every rate limit it names and the value it limits.
    pub async fn start(
        &self,
        request: StartRequest,
        code_length: u32,
        limits: Vec<(Arc<RateLimitNode>, String)>,
    ) -> Result<Started, ApiError> {
        let fresh = Fresh {
            verification_sid: sid::generate(sid::VERIFICATION),
            attempt_sid: sid::generate(sid::ATTEMPT),
            code: random_code(code_length),
        };
        let account = request.account_sid.clone();
        let service = request.service_sid.clone();
        let to = request.to.clone();
        let start_info = crate::events::StartInfo {
            channel: request.channel.clone(),
            rate_limits: limits
                .iter()
                .map(|(rl, v)| (rl.record.unique_name.clone(), v.clone()))
                .collect(),
        };
        let policy = self.settings.policy;
        let started = match &self.store {
            Store::Sqlite(s) => {
                sqlite::start(s, self.clocks.clone(), policy, request, &limits, fresh).await?
            }
            Store::Postgres(_) => {
                let starts = self.pg_starts.as_ref().ok_or(StoreError::Unavailable)?;
                starts.start(policy, request, &limits, fresh).await?
            }
        };
        let refused = |rate_limit: Option<&str>, error_code: u32| Event {
            kind: Kind::Refused,
            service_sid: service.clone(),
            verification_sid: None,
            to: to.clone(),
            rate_limit: rate_limit.map(str::to_owned),
            error_code: Some(error_code),
            at_ms: self.now(&account),
            start: Some(Box::new(start_info.clone())),
        };
        match &started {
            Started::TooManySends => self.events.record(&account, refused(None, 60203)),
            Started::Refused(r) => {
                crate::metrics::decision(&service, &r.unique_name, false);
                self.events
                    .record(&account, refused(Some(&r.unique_name), 20429));
            }
            Started::Admitted(a) => {
                for (rl, _) in &limits {
                    crate::metrics::decision(&service, &rl.record.unique_name, true);
                }
                if let Some(old) = &a.expired {
                    self.events
                        .record_of(&account, Event::of(old, Kind::Expired), old);
                }
                let kind = if a.is_new {
                    Kind::Started
                } else {
                    Kind::Resent
                };
                let mut e = Event::of(&a.verification, kind);
                e.at_ms = a.attempt.at_ms;
                e.start = Some(Box::new(start_info));
                self.events.record_of(&account, e, &a.verification);
            }
        }
        Ok(started)
    }

    /// Applies `change` to the live verification `key` names. `Ok(None)`: there is none (404).
    pub async fn change(
        &self,
        account: &str,
        service: &str,
        key: &str,
        change: Change,
    ) -> Result<Option<Verification>, ApiError> {
        if !could_name_a_verification(key) {
            return Ok(None);
        }
        let policy = self.settings.policy;
        let modified = match &self.store {
            Store::Sqlite(s) => {
                sqlite::change(
                    s,
                    self.clocks.clone(),
                    policy,
                    account,
                    service,
                    key,
                    change,
                )
                .await?
            }
            Store::Postgres(p) => {
                pg::change(p, self.now(account), policy, service, key, change).await?
            }
        };
        let (before, outcome) = match modified {
            Modified::Missing => return Ok(None),
            Modified::Expired(old) => {
                self.events
                    .record_of(account, Event::of(&old, Kind::Expired), &old);
                return Ok(None);
            }
            Modified::Live(live) => *live,
        };
        match outcome {
            Checked::ToMismatch => Err(ApiError::invalid_because(
                "To",
                "does not match the verification",
            )),
            Checked::MaxAttempts(after) => {
                let mut e = Event::of(&after, Kind::MaxAttemptsReached);
                e.error_code = Some(60202);
                self.events.record_of(account, e, &after);
                Err(ApiError::too_many(60202, "Max check attempts reached"))
            }
            Checked::Done(after) => {
                let kind = match after.status {
                    Status::Approved => Some(Kind::Approved),
                    Status::Canceled => Some(Kind::Canceled),
                    Status::Pending if after.checks_failed > before.checks_failed => {
                        Some(Kind::CheckFailed)
                    }
                    _ => None,
                };
                if let Some(kind) = kind {
                    self.events
                        .record_of(account, Event::of(&after, kind), &after);
                }
                Ok(Some(after))
            }
        }
    }

    /// The live verification `key` names, if any. Reads committed state only.
    pub async fn fetch(
        &self,
        account: &str,
        service: &str,
        key: &str,
    ) -> Result<Option<Verification>, ApiError> {
        if !could_name_a_verification(key) {
            return Ok(None);
        }
        let now = self.now(account);
        match &self.store {
            Store::Sqlite(s) => Ok(sqlite::fetch(
                s,
                &self.clocks,
                &self.settings.policy,
                account,
                service,
                key,
            )
            .await?),
            Store::Postgres(p) => Ok(pg::fetch(p, service, key, now).await?),
        }
    }

    /// The admission logs of one rate limit still counted by some bucket, optionally of one
    /// value, ordered by value, and the account's time they are counted at. That time is read
    /// after the logs: every admission they hold was decided at or before it, so no bucket is
    /// shown a longer window than its Interval.
    pub async fn usage(
        &self,
        account: &str,
        rl: &RateLimitNode,
        value: Option<&str>,
    ) -> Result<(Vec<ValueLog>, i64), ApiError> {
        let since = || {
            let now = self.now(account);
            rl.rules
                .iter()
                .map(|r| r.lower_bound(now))
                .min()
                .unwrap_or(now)
        };
        let mut logs = match &self.store {
            // Once the cache has evicted some logs, the tables hold them all.
            Store::Sqlite(s) if s.cache.evicted_any() => {
                sqlite::usage(s, rl.record.id, value, since()).await?
            }
            Store::Sqlite(s) => s.cache.usage(rl.record.id, value),
            Store::Postgres(p) => pg::usage(p, rl.record.id, value, since()).await?,
        };
        let now = self.now(account);
        for entry in &mut logs {
            core::window::prune(&mut entry.log, &rl.rules, now);
        }
        logs.retain(|l| !l.log.is_empty());
        Ok((logs, now))
    }

    /// One page of an account's outbox (ordered by attempt SID), whether more follow, and
    /// whether any message lies before it.
    pub async fn outbox(
        &self,
        account: &str,
        filter: &OutboxFilter,
        cursor: &Cursor,
        limit: usize,
    ) -> Result<(Vec<OutboxMessage>, bool, bool), ApiError> {
        let (messages, has_next) = self
            .store
            .outbox(account, filter, cursor, limit)
            .await
            .map_err(StoreError::from)?;
        let has_previous = match (cursor, messages.first()) {
            (Cursor::Start, _) | (_, None) => false,
            (_, Some(first)) => self
                .store
                .outbox_has_before(account, &first.sid)
                .await
                .map_err(StoreError::from)?,
        };
        Ok((messages, has_next, has_previous))
    }

    // --- maintenance ----------------------------------------------------------------------

    /// One round of maintenance: verifications past their lifetime stored as expired (each
    /// exactly once, whichever instance runs it), memory no decision needs given back,
    /// admissions no bucket counts pruned, verifications past retention deleted. Counted in
    /// `verilimit_maintenance_rounds_total` once it has finished, whatever the outcome.
    pub async fn maintain(&self) -> Result<(), ApiError> {
        let done = self.maintain_round().await;
        crate::metrics::maintenance_round();
        done
    }

    async fn maintain_round(&self) -> Result<(), ApiError> {
        let accounts: Vec<String> = self.catalog.read().accounts().cloned().collect();
        let (expired, dropped, held) = match &self.store {
            Store::Sqlite(s) => {
                sqlite::maintain(
                    s,
                    self.catalog.clone(),
                    self.clocks.clone(),
                    self.settings.policy,
                )
                .await?
            }
            Store::Postgres(p) => {
                let mut all = Vec::new();
                for account in &accounts {
                    all.extend(pg::expire_due(p, account, self.now(account)).await?);
                }
                (all, 0, 0)
            }
        };
        for v in &expired {
            self.events
                .record_of(&v.account_sid, Event::of(v, Kind::Expired), v);
        }
        let swept = expired.len() + dropped;
        drop(expired);
        let horizons: Vec<(i64, i64)> = {
            let catalog = self.catalog.read();
            catalog
                .rate_limits()
                .map(|(home, rl)| {
                    let now = self.now(&home.account_sid);
                    let keep_from = rl.rules.iter().map(|r| r.lower_bound(now)).min();
                    (rl.record.id, keep_from.unwrap_or(now + 1))
                })
                .collect()
        };
        let cutoffs: Vec<(String, i64)> = accounts
            .iter()
            .map(|a| (a.clone(), self.now(a) - self.settings.retention_ms))
            .collect();
        let purged = self.store.purge_verifications(cutoffs).await?;
        if purged > 0 {
            tracing::info!(purged, "verifications past retention deleted");
        }
        if !horizons.is_empty() {
            self.store.prune_admissions(horizons).await?;
        }
        if crate::memory::worth_giving_back(swept, held) {
            // What the swept entries, the expired verifications and the deletes' statements
            // held is free now: give it back rather than when the allocators get to it.
            let _ = tokio::task::spawn_blocking(crate::memory::give_back).await;
        }
        Ok(())
    }

    /// On PostgreSQL, reloads the configuration cache (and clocks) if another instance changed
    /// it since it was loaded. A no-op on SQLite, where this instance made every change.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Store::Postgres(pg) = &self.store else {
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

    // --- configuration and the control plane: written, then applied to memory in commit
    // order by `after_commit` ------------------------------------------------------------------

    /// What a committed configuration change does to memory: the catalog and, on SQLite, the
    /// cache (forgetting what belonged to what was deleted).
    fn after_commit<T: Send + 'static>(
        &self,
        apply: impl FnOnce(&mut Catalog, &T) -> Forget + Send + 'static,
    ) -> impl FnOnce(&T) + Send + 'static {
        let catalog = self.catalog.clone();
        let cache = match &self.store {
            Store::Sqlite(s) => Some(s.cache.clone()),
            Store::Postgres(_) => None,
        };
        move |value| {
            let forget = apply(&mut catalog.write(), value);
            if let Some(cache) = cache
                && !forget.is_empty()
            {
                cache.forget(&forget.rate_limits, |service, account| {
                    forget.services.contains(service) || forget.accounts.contains(account)
                });
            }
        }
    }

    pub async fn create_service(&self, r: ServiceRecord) -> Result<ServiceRecord, StoreError> {
        let done = self.after_commit(|c, r: &ServiceRecord| {
            c.put_service(r.clone());
            Forget::default()
        });
        self.store.insert_service(r, done).await
    }

    pub async fn update_service(&self, r: ServiceRecord) -> Result<ServiceRecord, StoreError> {
        let done = self.after_commit(|c, r: &ServiceRecord| {
            c.put_service(r.clone());
            Forget::default()
        });
        self.store.update_service(r, done).await
    }

    pub async fn delete_service(&self, account: &str, sid: &str) -> Result<(), StoreError> {
        let (a, s) = (account.to_owned(), sid.to_owned());
        let done = self.after_commit(move |c, _: &()| Forget {
            rate_limits: c.remove_service(&a, &s).into_iter().collect(),
            services: HashSet::from([s]),
            accounts: HashSet::new(),
        });
        self.store
            .delete_service(account.to_owned(), sid.to_owned(), done)
            .await
    }

    pub async fn create_rate_limit(
        &self,
        r: RateLimitRecord,
    ) -> Result<RateLimitRecord, StoreError> {
        let max = self.settings.max_rate_limits_per_service;
        let done = self.after_commit(|c, r: &RateLimitRecord| {
            c.put_rate_limit(r.clone());
            Forget::default()
        });
        self.store.insert_rate_limit(r, max, done).await
    }

    pub async fn update_rate_limit(
        &self,
        r: RateLimitRecord,
    ) -> Result<RateLimitRecord, StoreError> {
        let done = self.after_commit(|c, r: &RateLimitRecord| {
            c.put_rate_limit(r.clone());
            Forget::default()
        });
        self.store.update_rate_limit(r, done).await
    }

    pub async fn delete_rate_limit(&self, r: &RateLimitRecord) -> Result<(), StoreError> {
        let r2 = r.clone();
        let done = self.after_commit(move |c, _: &()| {
            c.remove_rate_limit(&r2.account_sid, &r2.service_sid, &r2.sid);
            Forget {
                rate_limits: HashSet::from([r2.id]),
                ..Forget::default()
            }
        });
        self.store.delete_rate_limit(r.id, done).await
    }

    pub async fn create_bucket(
        &self,
        b: BucketRecord,
        rate_limit_id: i64,
    ) -> Result<BucketRecord, StoreError> {
        let max = self.settings.max_buckets_per_rate_limit;
        let done = self.after_commit(|c, b: &BucketRecord| {
            c.put_bucket(b.clone());
            Forget::default()
        });
        self.store.insert_bucket(b, rate_limit_id, max, done).await
    }

    pub async fn update_bucket(&self, b: BucketRecord) -> Result<BucketRecord, StoreError> {
        let done = self.after_commit(|c, b: &BucketRecord| {
            c.put_bucket(b.clone());
            Forget::default()
        });
        self.store.update_bucket(b, done).await
    }

    pub async fn delete_bucket(&self, b: &BucketRecord) -> Result<(), StoreError> {
        let b2 = b.clone();
        let done = self.after_commit(move |c, _: &()| {
            c.remove_bucket(
                &b2.account_sid,
                &b2.service_sid,
                &b2.rate_limit_sid,
                &b2.sid,
            );
            Forget::default()
        });
        self.store.delete_bucket(b.sid.clone(), done).await
    }

    /// Moves an account's clock to `offset_ms` from real time.
    pub async fn set_clock_offset(&self, account: &str, offset_ms: i64) -> Result<(), StoreError> {
        let clocks = self.clocks.clone();
        let a = account.to_owned();
        self.store
            .set_clock_offset(account.to_owned(), offset_ms, move |_| {
                clocks.set_offset(&a, offset_ms)
            })
            .await
    }

    /// Deletes an account's verifications, codes, counters and TOTP entities (and, with
    /// `everything`, its services), and puts its clock back to real time.
    pub async fn reset(&self, account: &str, everything: bool) -> Result<(), StoreError> {
        let a = account.to_owned();
        let clocks = self.clocks.clone();
        let events = self.events.clone();
        let event_streams = self.event_streams.clone();
        let done = self.after_commit(move |c, _: &()| {
            let rate_limits: HashSet<i64> = if everything {
                c.clear_account(&a).into_iter().collect()
            } else {
                c.rate_limit_ids(&a).into_iter().collect()
            };
            events.clear_account(&a);
            event_streams.clear_account(&a);
            clocks.set_offset(&a, 0);
            Forget {
                rate_limits,
                services: HashSet::new(),
                accounts: HashSet::from([a]),
            }
        });
        if everything {
            self.store.delete_event_streams(account.to_owned()).await?;
        }
        self.store
            .reset_account(account.to_owned(), everything, done)
            .await
    }
}

/// What a configuration change takes out of the cache.
#[derive(Default)]
pub struct Forget {
    pub rate_limits: HashSet<i64>,
    pub services: HashSet<String>,
    pub accounts: HashSet<String>,
}

impl Forget {
    fn is_empty(&self) -> bool {
        self.rate_limits.is_empty() && self.services.is_empty() && self.accounts.is_empty()
    }
}

/// The core's view of one rate limit a start names, with the value it limits.
fn limit_check<'a>(rl: &'a RateLimitNode, value: &'a str) -> core::LimitCheck<'a> {
    core::LimitCheck {
        rate_limit_id: rl.record.id,
        unique_name: &rl.record.unique_name,
        value,
        rules: &rl.rules,
    }
}

/// Whether a path segment or `To` could name a verification: every stored recipient is an E.164
/// number or an email address, so one with control characters (which PostgreSQL's text cannot
/// even hold) names none.
fn could_name_a_verification(key: &str) -> bool {
    !key.is_empty() && key.len() <= 512 && !key.chars().any(char::is_control)
}

/// A random numeric code of `len` digits.
pub fn random_code(len: u32) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}
