//! The engine's Entities, Factors and Challenges: each request is one store job (serialized on
//! SQLite's writer, one transaction with the factor locked on PostgreSQL) that runs the pure
//! core (`crate::core::mfa`) at the account's clock; here its outcome becomes Twilio's answer,
//! and, once committed, a Service Webhooks event (`Engine::factor_event`).

use std::sync::Arc;

use axum::http::StatusCode;
use parking_lot::Mutex;

use super::Engine;
use crate::core::mfa::{self, Challenge, ChallengeStatus, Entity, Factor, FactorStatus, Refused};
use crate::core::totp::Alg;
use crate::event_streams::service_webhook::{
    FACTOR_CREATED, FACTOR_DELETED, FACTOR_VERIFIED, FactorEvent,
};
use crate::store::StoreError;
use crate::store::factors::{Found, Miss};
use crate::twilio::ApiError;

/// What a factor update asks for; `None`: leave as it is.
#[derive(Debug, Default, Clone)]
pub struct FactorUpdate {
    pub friendly_name: Option<String>,
    pub alg: Option<Alg>,
    pub code_length: Option<u32>,
    pub time_step: Option<u32>,
    pub skew: Option<u32>,
    pub metadata: Option<String>,
    /// A code: verifies an unverified factor if it is accepted.
    pub auth_payload: Option<String>,
}

/// The resource a request names, for its 404.
struct Names<'a> {
    service: &'a str,
    identity: &'a str,
    sid: &'a str,
}

impl Names<'_> {
    fn entity(&self) -> String {
        format!("/Services/{}/Entities/{}", self.service, self.identity)
    }

    fn answer<T>(&self, found: Result<Found<T>, StoreError>) -> Result<T, ApiError> {
        match found? {
            Ok(t) => Ok(t),
            Err(Miss::Entity) => Err(ApiError::not_found(self.entity())),
            Err(Miss::Factor) => Err(ApiError::not_found(format!(
                "{}/Factors/{}",
                self.entity(),
                self.sid
            ))),
            Err(Miss::Challenge) => Err(ApiError::not_found(format!(
                "{}/Challenges/{}",
                self.entity(),
                self.sid
            ))),
            Err(Miss::Duplicate) => Err(ApiError::new(
                StatusCode::CONFLICT,
                60301,
                "Entity already exists: this Service has an Entity with this Identity",
            )),
            Err(Miss::Refused(Refused::FactorUnverified)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                60318,
                "Factor is unverified: verify it with an AuthPayload before creating Challenges",
            )),
            Err(Miss::Refused(Refused::Expired)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                60323,
                "Challenge expired",
            )),
            Err(Miss::Refused(Refused::Invalid(param, why))) => {
                Err(ApiError::invalid_because(param, why))
            }
        }
    }
}

impl Engine {
    pub async fn create_entity(&self, e: Entity) -> Result<Entity, ApiError> {
        let names = Names {
            service: &e.service_sid,
            identity: &e.identity,
            sid: "",
        };
        let found = self.store.insert_entity(e.clone()).await;
        names.answer(found)
    }

    pub async fn entity(&self, service: &str, identity: &str) -> Result<Entity, ApiError> {
        let names = Names {
            service,
            identity,
            sid: "",
        };
        let found = self.store.entity(service, identity).await;
        names.answer(found.map(|e| e.ok_or(Miss::Entity)))
    }

    pub async fn entities(&self, service: &str) -> Result<Vec<Entity>, ApiError> {
        Ok(self.store.entities(service).await?)
    }

    /// Deletes an entity with its factors and challenges.
    pub async fn delete_entity(&self, service: &str, identity: &str) -> Result<(), ApiError> {
        let names = Names {
            service,
            identity,
            sid: "",
        };
        let deleted = self
            .store
            .delete_entity(service.to_owned(), identity.to_owned())
            .await;
        let factors = names.answer(deleted.map(|d| d.ok_or(Miss::Entity)))?;
        for f in &factors {
            self.factor_event(FactorEvent::factor(FACTOR_DELETED, f));
        }
        Ok(())
    }

    /// Changes the unverified passkeys factor of `service` waiting for registration challenge
    /// `challenge` (`change`: the verified factor, or why not); 404 if none waits for it.
    pub async fn verify_passkey_factor(
        &self,
        service: &str,
        challenge: &str,
        change: impl FnOnce(&Factor) -> Result<Factor, ApiError> + Send + 'static,
    ) -> Result<Factor, ApiError> {
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None::<ApiError>));
        let slot = refused.clone();
        let found = self
            .store
            .update_passkey_factor(service.to_owned(), challenge.to_owned(), move |before| {
                match change(before) {
                    Ok(f) => f,
                    Err(e) => {
                        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        before.clone()
                    }
                }
            })
            .await?;
        if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let f = found.map_err(|_| {
            ApiError::not_found(format!("/Services/{service}/Passkeys/Factors (challenge)"))
        })?;
        self.factor_event(FactorEvent::factor(FACTOR_VERIFIED, &f));
        Ok(f)
    }

    /// Creates a factor, and `entity` with it unless its identity has one already.
    pub async fn create_factor(&self, entity: Entity, f: Factor) -> Result<Factor, ApiError> {
        let f = self.store.insert_factor(entity, f).await?;
        self.factor_event(FactorEvent::factor(FACTOR_CREATED, &f));
        Ok(f)
    }

    pub async fn factors(&self, service: &str, identity: &str) -> Result<Vec<Factor>, ApiError> {
        let names = Names {
            service,
            identity,
            sid: "",
        };
        let found = self.store.factors(service, identity).await;
        names.answer(found.map(|f| f.ok_or(Miss::Entity)))
    }

    pub async fn factor(
        &self,
        service: &str,
        identity: &str,
        sid: &str,
    ) -> Result<Factor, ApiError> {
        let names = Names {
            service,
            identity,
            sid,
        };
        names.answer(self.store.factor(service, identity, sid).await)
    }

    /// Applies an update to a factor: settings first, then the code (if any) is checked with the
    /// new settings at the account's clock.
    pub async fn update_factor(
        &self,
        account: &str,
        service: &str,
        identity: &str,
        sid: &str,
        update: FactorUpdate,
    ) -> Result<Factor, ApiError> {
        let names = Names {
            service,
            identity,
            sid,
        };
        let now = self.now(account);
        let was = Seen::default();
        let seen = was.clone();
        let change = move |before: &Factor| {
            seen.put(before);
            let mut f = before.clone();
            if let Some(name) = update.friendly_name {
                f.friendly_name = name;
            }
            if let Some(alg) = update.alg {
                f.config.alg = alg;
            }
            if let Some(n) = update.code_length {
                f.config.code_length = n;
            }
            if let Some(n) = update.time_step {
                f.config.time_step = n;
            }
            if let Some(n) = update.skew {
                f.config.skew = n;
            }
            if let Some(m) = update.metadata {
                f.metadata = Some(m);
            }
            if let Some(code) = update.auth_payload {
                f = mfa::verify_factor(&f, &code, now);
            }
            if f != *before {
                f.date_updated = now.max(f.date_created);
            }
            f
        };
        let found = self
            .store
            .update_factor(
                service.to_owned(),
                identity.to_owned(),
                sid.to_owned(),
                change,
            )
            .await;
        let f = names.answer(found)?;
        if f.status == FactorStatus::Verified
            && was
                .take()
                .is_some_and(|b| b.status != FactorStatus::Verified)
        {
            self.factor_event(FactorEvent::factor(FACTOR_VERIFIED, &f));
        }
        Ok(f)
    }

    pub async fn delete_factor(
        &self,
        service: &str,
        identity: &str,
        sid: &str,
    ) -> Result<(), ApiError> {
        let names = Names {
            service,
            identity,
            sid,
        };
        let found = self
            .store
            .delete_factor(service.to_owned(), identity.to_owned(), sid.to_owned())
            .await;
        let f = names.answer(found)?;
        self.factor_event(FactorEvent::factor(FACTOR_DELETED, &f));
        Ok(())
    }

    /// Creates a challenge of `fresh.factor_sid`, answered at once when `code` is given.
    pub async fn create_challenge(
        &self,
        fresh: Challenge,
        code: Option<String>,
    ) -> Result<Challenge, ApiError> {
        let (service, identity) = (fresh.service_sid.clone(), fresh.identity.clone());
        let names = Names {
            service: &service,
            identity: &identity,
            sid: &fresh.factor_sid,
        };
        let now = fresh.date_created;
        let factor = Seen::default();
        let seen = factor.clone();
        let decide = move |fresh: Challenge, f: &Factor| {
            seen.put(f);
            let mut fresh = fresh;
            fresh.factor_type = f.factor_type().to_owned();
            mfa::create_challenge(fresh, f, code.as_deref(), now)
                .map(|r| (r.challenge, r.factor))
                .map_err(Miss::Refused)
        };
        let found = self
            .store
            .insert_challenge(service.clone(), identity.clone(), fresh.clone(), decide)
            .await;
        // An unknown factor is named by its SID, like Twilio's 404 for any unknown resource.
        let c = names.answer(found)?;
        if let Some(e) = factor
            .take()
            .and_then(|f| FactorEvent::challenge(None, &c, &f))
        {
            self.factor_event(e);
        }
        Ok(c)
    }

    pub async fn challenges(
        &self,
        service: &str,
        identity: &str,
    ) -> Result<Vec<Challenge>, ApiError> {
        let names = Names {
            service,
            identity,
            sid: "",
        };
        let found = self.store.challenges(service, identity).await;
        names.answer(found.map(|c| c.ok_or(Miss::Entity)))
    }

    pub async fn challenge(
        &self,
        service: &str,
        identity: &str,
        sid: &str,
    ) -> Result<Challenge, ApiError> {
        let names = Names {
            service,
            identity,
            sid,
        };
        names.answer(self.store.challenge(service, identity, sid).await)
    }

    /// Answers a challenge with a code (and keeps `metadata`, if given) at the account's clock.
    pub async fn update_challenge(
        &self,
        account: &str,
        service: &str,
        identity: &str,
        sid: &str,
        code: String,
        metadata: Option<String>,
    ) -> Result<Challenge, ApiError> {
        let names = Names {
            service,
            identity,
            sid,
        };
        let now = self.now(account);
        let was = Seen::default();
        let seen = was.clone();
        let decide = move |c: &Challenge, f: &Factor| {
            seen.put(&(c.status, f.clone()));
            let mut r = mfa::respond(c, f, &code, now).map_err(Miss::Refused)?;
            if let Some(m) = metadata {
                r.challenge.metadata = Some(m);
            }
            Ok((r.challenge, r.factor))
        };
        let found = self
            .store
            .update_challenge(
                service.to_owned(),
                identity.to_owned(),
                sid.to_owned(),
                decide,
            )
            .await;
        let c = names.answer(found)?;
        let event = was
            .take()
            .and_then(|(before, f): (ChallengeStatus, Factor)| {
                FactorEvent::challenge(Some(before), &c, &f)
            });
        if let Some(e) = event {
            self.factor_event(e);
        }
        Ok(c)
    }
}

impl Engine {
    /// The passkeys challenge of `service` whose WebAuthn challenge is `passkey`, answered by
    /// `decide` (against it and its locked factor: the approved challenge and the factor with
    /// its new signature counter, or why not); 404 if there is none.
    pub async fn approve_passkey_challenge(
        &self,
        service: &str,
        passkey: &str,
        decide: impl FnOnce(&Challenge, &Factor) -> Result<(Challenge, Factor), Refused>
        + Send
        + 'static,
    ) -> Result<Challenge, ApiError> {
        let Some((identity, sid)) = self.store.challenge_by_passkey(service, passkey).await? else {
            return Err(ApiError::not_found(format!(
                "/Services/{service}/Passkeys/Challenges (challenge)"
            )));
        };
        let names = Names {
            service,
            identity: &identity,
            sid: &sid,
        };
        let was = Seen::default();
        let seen = was.clone();
        let found = self
            .store
            .update_challenge(
                service.to_owned(),
                identity.clone(),
                sid.clone(),
                move |c, f| {
                    seen.put(&(c.status, f.clone()));
                    decide(c, f)
                        .map(|(c, f)| (c, Some(f)))
                        .map_err(Miss::Refused)
                },
            )
            .await;
        let c = names.answer(found)?;
        let event = was
            .take()
            .and_then(|(before, f): (ChallengeStatus, Factor)| {
                FactorEvent::challenge(Some(before), &c, &f)
            });
        if let Some(e) = event {
            self.factor_event(e);
        }
        Ok(c)
    }
}

/// What a store job's decision saw (the stored factor or challenge before the change), for the
/// event sent once the job committed.
struct Seen<T>(Arc<Mutex<Option<T>>>);

impl<T> Default for Seen<T> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<T> Clone for Seen<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Clone> Seen<T> {
    fn put(&self, value: &T) {
        *self.0.lock() = Some(value.clone());
    }

    fn take(&self) -> Option<T> {
        self.0.lock().take()
    }
}
