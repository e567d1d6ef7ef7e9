//! Entities, factors and challenges in the database: the statements (written once, compiled for
//! both backends as `sqlite` and `pg`, like `super::sql`), and `Store`'s reads and writes.
//!
//! Every write runs as one job: on SQLite a job of the writer task (so it runs alone on the one
//! write connection, in order), on PostgreSQL one transaction in which the factor a decision
//! reads is locked `FOR UPDATE`. Either way the read of a factor's last used time step and the
//! write of the next one cannot interleave with another request's: two requests with the same
//! code never both succeed.

use super::{Store, StoreError};
use crate::core::mfa::{Challenge, Entity, Factor};

macro_rules! statements {
    ($conn:ty, $row:ty, $sql:path, $lock:expr) => {
        use sqlx::Row;

        use crate::core::mfa::{Challenge, ChallengeStatus, Entity, Factor, FactorStatus};
        use crate::core::totp::{Alg, Config};
        use crate::store::StoreError;

        const ENTITY_COLUMNS: &str =
            "sid, service_sid, account_sid, identity, date_created, date_updated";
        const FACTOR_COLUMNS: &str = "sid, entity_sid, service_sid, account_sid, identity, friendly_name, status, secret, alg, code_length, time_step, skew, last_used_s, metadata, date_created, date_updated, push, passkey";
        const CHALLENGE_COLUMNS: &str = "sid, factor_sid, entity_sid, service_sid, account_sid, identity, factor_type, status, message, hidden_details, metadata, expiration_ms, date_responded, date_created, date_updated, fields, passkey";

        fn entity(r: &$row) -> Entity {
            Entity {
                sid: r.get(0),
                service_sid: r.get(1),
                account_sid: r.get(2),
                identity: r.get(3),
                date_created: r.get(4),
                date_updated: r.get(5),
            }
        }

        fn factor(r: &$row) -> Factor {
            Factor {
                sid: r.get(0),
                entity_sid: r.get(1),
                service_sid: r.get(2),
                account_sid: r.get(3),
                identity: r.get(4),
                friendly_name: r.get(5),
                status: FactorStatus::parse(r.get::<&str, _>(6)).unwrap_or(FactorStatus::Unverified),
                secret: r.get(7),
                config: Config {
                    alg: Alg::parse(r.get::<&str, _>(8)).unwrap_or(Alg::Sha1),
                    code_length: r.get::<i64, _>(9) as u32,
                    time_step: r.get::<i64, _>(10) as u32,
                    skew: r.get::<i64, _>(11) as u32,
                },
                last_used_s: r.get(12),
                metadata: r.get(13),
                date_created: r.get(14),
                date_updated: r.get(15),
                push: r
                    .get::<Option<&str>, _>(16)
                    .and_then(crate::core::push::PushBinding::from_json),
                passkey: r.get(17),
            }
        }

        fn challenge(r: &$row) -> Challenge {
            Challenge {
                sid: r.get(0),
                factor_sid: r.get(1),
                entity_sid: r.get(2),
                service_sid: r.get(3),
                account_sid: r.get(4),
                identity: r.get(5),
                factor_type: r.get(6),
                status: ChallengeStatus::parse(r.get::<&str, _>(7)).unwrap_or(ChallengeStatus::Expired),
                message: r.get(8),
                hidden_details: r.get(9),
                metadata: r.get(10),
                expiration_ms: r.get(11),
                date_responded: r.get(12),
                date_created: r.get(13),
                date_updated: r.get(14),
                fields: r.get(15),
                passkey: r.get(16),
            }
        }

        /// Inserts an entity; `false` if the service has one with that identity already (or the
        /// service is gone).
        pub async fn insert_entity(c: &mut $conn, e: &Entity) -> Result<bool, StoreError> {
            let done = sqlx::query(&$sql("INSERT INTO entities (sid, service_sid, account_sid, identity, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?) ON CONFLICT (service_sid, identity) DO NOTHING"))
                .bind(&e.sid)
                .bind(&e.service_sid)
                .bind(&e.account_sid)
                .bind(&e.identity)
                .bind(e.date_created)
                .bind(e.date_updated)
                .bind(&e.service_sid)
                .execute(c)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        pub async fn entity_of(
            c: &mut $conn,
            service: &str,
            identity: &str,
        ) -> Result<Option<Entity>, StoreError> {
            let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE service_sid = ? AND identity = ?");
            Ok(sqlx::query(&$sql(&sql))
                .bind(service)
                .bind(identity)
                .fetch_optional(c)
                .await?
                .as_ref()
                .map(entity))
        }

        pub async fn entities(c: &mut $conn, service: &str) -> Result<Vec<Entity>, StoreError> {
            let sql = format!("SELECT {ENTITY_COLUMNS} FROM entities WHERE service_sid = ? ORDER BY sid");
            Ok(sqlx::query(&$sql(&sql))
                .bind(service)
                .fetch_all(c)
                .await?
                .iter()
                .map(entity)
                .collect())
        }

        /// Deletes an entity (its factors and their challenges with it); whether there was one.
        pub async fn delete_entity(c: &mut $conn, service: &str, identity: &str) -> Result<bool, StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM entities WHERE service_sid = ? AND identity = ?"))
                .bind(service)
                .bind(identity)
                .execute(c)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        pub async fn insert_factor(c: &mut $conn, f: &Factor) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO factors (sid, entity_sid, service_sid, account_sid, identity, friendly_name, factor_type, status, secret, alg, code_length, time_step, skew, last_used_s, metadata, date_created, date_updated, push, passkey, passkey_challenge) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
                .bind(&f.sid)
                .bind(&f.entity_sid)
                .bind(&f.service_sid)
                .bind(&f.account_sid)
                .bind(&f.identity)
                .bind(&f.friendly_name)
                .bind(f.factor_type())
                .bind(f.status.as_str())
                .bind(&f.secret)
                .bind(f.config.alg.as_str())
                .bind(i64::from(f.config.code_length))
                .bind(i64::from(f.config.time_step))
                .bind(i64::from(f.config.skew))
                .bind(f.last_used_s)
                .bind(&f.metadata)
                .bind(f.date_created)
                .bind(f.date_updated)
                .bind(f.push.as_ref().map(|b| b.to_json()))
                .bind(&f.passkey)
                .bind(crate::core::webauthn::pending_challenge(f))
                .execute(c)
                .await?;
            Ok(())
        }

        /// The factor `sid` of an entity; `lock`: locked until the transaction ends (PostgreSQL;
        /// on SQLite the writer runs one job at a time anyway).
        pub async fn factor_of(
            c: &mut $conn,
            entity_sid: &str,
            sid: &str,
            lock: bool,
        ) -> Result<Option<Factor>, StoreError> {
            let sql = format!(
                "SELECT {FACTOR_COLUMNS} FROM factors WHERE entity_sid = ? AND sid = ?{}",
                if lock { $lock } else { "" }
            );
            Ok(sqlx::query(&$sql(&sql))
                .bind(entity_sid)
                .bind(sid)
                .fetch_optional(c)
                .await?
                .as_ref()
                .map(factor))
        }

        pub async fn factors(c: &mut $conn, entity_sid: &str) -> Result<Vec<Factor>, StoreError> {
            let sql = format!("SELECT {FACTOR_COLUMNS} FROM factors WHERE entity_sid = ? ORDER BY sid");
            Ok(sqlx::query(&$sql(&sql))
                .bind(entity_sid)
                .fetch_all(c)
                .await?
                .iter()
                .map(factor)
                .collect())
        }

        /// Saves what a factor update or a used-up code changed.
        pub async fn save_factor(c: &mut $conn, f: &Factor) -> Result<(), StoreError> {
            sqlx::query(&$sql("UPDATE factors SET friendly_name = ?, status = ?, alg = ?, code_length = ?, time_step = ?, skew = ?, last_used_s = ?, metadata = ?, date_updated = ?, passkey = ?, passkey_challenge = ? WHERE sid = ?"))
                .bind(&f.friendly_name)
                .bind(f.status.as_str())
                .bind(f.config.alg.as_str())
                .bind(i64::from(f.config.code_length))
                .bind(i64::from(f.config.time_step))
                .bind(i64::from(f.config.skew))
                .bind(f.last_used_s)
                .bind(&f.metadata)
                .bind(f.date_updated)
                .bind(&f.passkey)
                .bind(crate::core::webauthn::pending_challenge(f))
                .bind(&f.sid)
                .execute(c)
                .await?;
            Ok(())
        }

        /// The unverified passkeys factor of a service waiting for the registration challenge
        /// `challenge`, locked like `factor_of`.
        pub async fn factor_by_passkey_challenge(
            c: &mut $conn,
            service: &str,
            challenge: &str,
        ) -> Result<Option<Factor>, StoreError> {
            let sql = format!(
                "SELECT {FACTOR_COLUMNS} FROM factors WHERE service_sid = ? AND passkey_challenge = ?{}",
                $lock
            );
            Ok(sqlx::query(&$sql(&sql))
                .bind(service)
                .bind(challenge)
                .fetch_optional(c)
                .await?
                .as_ref()
                .map(factor))
        }

        pub async fn delete_factor(c: &mut $conn, entity_sid: &str, sid: &str) -> Result<bool, StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM factors WHERE entity_sid = ? AND sid = ?"))
                .bind(entity_sid)
                .bind(sid)
                .execute(c)
                .await?;
            Ok(done.rows_affected() > 0)
        }

        /// Inserts or updates a challenge.
        pub async fn save_challenge(c: &mut $conn, ch: &Challenge) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO challenges (sid, factor_sid, entity_sid, service_sid, account_sid, identity, factor_type, status, message, hidden_details, metadata, expiration_ms, date_responded, date_created, date_updated, fields, passkey) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (sid) DO UPDATE SET status = excluded.status, metadata = excluded.metadata, date_responded = excluded.date_responded, date_updated = excluded.date_updated"))
                .bind(&ch.sid)
                .bind(&ch.factor_sid)
                .bind(&ch.entity_sid)
                .bind(&ch.service_sid)
                .bind(&ch.account_sid)
                .bind(&ch.identity)
                .bind(&ch.factor_type)
                .bind(ch.status.as_str())
                .bind(&ch.message)
                .bind(&ch.hidden_details)
                .bind(&ch.metadata)
                .bind(ch.expiration_ms)
                .bind(ch.date_responded)
                .bind(ch.date_created)
                .bind(ch.date_updated)
                .bind(&ch.fields)
                .bind(&ch.passkey)
                .execute(c)
                .await?;
            Ok(())
        }

        pub async fn challenge_of(
            c: &mut $conn,
            entity_sid: &str,
            sid: &str,
        ) -> Result<Option<Challenge>, StoreError> {
            let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE entity_sid = ? AND sid = ?");
            Ok(sqlx::query(&$sql(&sql))
                .bind(entity_sid)
                .bind(sid)
                .fetch_optional(c)
                .await?
                .as_ref()
                .map(challenge))
        }

        /// The (identity, SID) of the challenge of `service` with WebAuthn challenge `passkey`.
        pub async fn challenge_by_passkey(
            c: &mut $conn,
            service: &str,
            passkey: &str,
        ) -> Result<Option<(String, String)>, StoreError> {
            Ok(sqlx::query(&$sql("SELECT identity, sid FROM challenges WHERE service_sid = ? AND passkey = ?"))
                .bind(service)
                .bind(passkey)
                .fetch_optional(c)
                .await?
                .map(|r| (r.get(0), r.get(1))))
        }

        pub async fn challenges(c: &mut $conn, entity_sid: &str) -> Result<Vec<Challenge>, StoreError> {
            let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE entity_sid = ? ORDER BY sid");
            Ok(sqlx::query(&$sql(&sql))
                .bind(entity_sid)
                .fetch_all(c)
                .await?
                .iter()
                .map(challenge)
                .collect())
        }
    };
}

pub mod sqlite {
    statements!(
        sqlx::SqliteConnection,
        sqlx::sqlite::SqliteRow,
        crate::store::sql::as_is,
        ""
    );
}

pub mod pg {
    statements!(
        sqlx::PgConnection,
        sqlx::postgres::PgRow,
        crate::store::sql::numbered,
        " FOR UPDATE"
    );
}

/// A job's answer when what it names is not there (or may not be used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Entity,
    Factor,
    Challenge,
    /// An entity with this identity exists already.
    Duplicate,
    Refused(crate::core::mfa::Refused),
}

pub type Found<T> = Result<T, Miss>;

impl Store {
    /// Creates an entity (`Miss::Duplicate` if its identity is taken in the service).
    pub async fn insert_entity(&self, e: Entity) -> Result<Found<Entity>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            if q::insert_entity(c, &e).await? {
                Ok(Ok(e))
            } else {
                Ok(Err(Miss::Duplicate))
            }
        })
    }

    pub async fn entity(
        &self,
        service: &str,
        identity: &str,
    ) -> Result<Option<Entity>, StoreError> {
        read!(self, factors, |c, q| q::entity_of(c, service, identity)
            .await)
    }

    pub async fn entities(&self, service: &str) -> Result<Vec<Entity>, StoreError> {
        read!(self, factors, |c, q| q::entities(c, service).await)
    }

    /// Deletes an entity; the factors it had (`None`: no such entity).
    pub async fn delete_entity(
        &self,
        service: String,
        identity: String,
    ) -> Result<Option<Vec<Factor>>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(e) = q::entity_of(c, &service, &identity).await? else {
                return Ok(None);
            };
            let factors = q::factors(c, &e.sid).await?;
            Ok(q::delete_entity(c, &service, &identity)
                .await?
                .then_some(factors))
        })
    }

    /// Creates a factor, and its entity (`fresh_entity`) unless the identity has one.
    pub async fn insert_factor(
        &self,
        fresh_entity: Entity,
        mut f: Factor,
    ) -> Result<Factor, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let entity =
                match q::entity_of(c, &fresh_entity.service_sid, &fresh_entity.identity).await? {
                    Some(e) => e,
                    // Another instance may create it meanwhile (PostgreSQL): then use theirs.
                    None if q::insert_entity(c, &fresh_entity).await? => fresh_entity,
                    None => q::entity_of(c, &fresh_entity.service_sid, &fresh_entity.identity)
                        .await?
                        .ok_or_else(|| {
                            StoreError::NotFound(format!("/Services/{}", fresh_entity.service_sid))
                        })?,
                };
            f.entity_sid = entity.sid;
            q::insert_factor(c, &f).await?;
            Ok(f)
        })
    }

    /// An entity's factors (`None`: no such entity).
    pub async fn factors(
        &self,
        service: &str,
        identity: &str,
    ) -> Result<Option<Vec<Factor>>, StoreError> {
        read!(self, factors, |c, q| {
            match q::entity_of(c, service, identity).await? {
                None => Ok(None),
                Some(e) => Ok(Some(q::factors(c, &e.sid).await?)),
            }
        })
    }

    pub async fn factor(
        &self,
        service: &str,
        identity: &str,
        sid: &str,
    ) -> Result<Found<Factor>, StoreError> {
        read!(self, factors, |c, q| {
            let Some(e) = q::entity_of(c, service, identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            Ok(q::factor_of(c, &e.sid, sid, false)
                .await?
                .ok_or(Miss::Factor))
        })
    }

    /// Changes the passkeys factor of `service` waiting for registration challenge `challenge`
    /// with `change`, and saves it; `Miss::Factor` if there is none.
    pub async fn update_passkey_factor(
        &self,
        service: String,
        challenge: String,
        change: impl FnOnce(&Factor) -> Factor + Send + 'static,
    ) -> Result<Found<Factor>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(before) = q::factor_by_passkey_challenge(c, &service, &challenge).await?
            else {
                return Ok(Err(Miss::Factor));
            };
            let after = change(&before);
            if after != before {
                q::save_factor(c, &after).await?;
            }
            Ok(Ok(after))
        })
    }

    /// Changes a factor with `change` (a pure function of the stored factor), and saves it.
    pub async fn update_factor(
        &self,
        service: String,
        identity: String,
        sid: String,
        change: impl FnOnce(&Factor) -> Factor + Send + 'static,
    ) -> Result<Found<Factor>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(e) = q::entity_of(c, &service, &identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            let Some(before) = q::factor_of(c, &e.sid, &sid, true).await? else {
                return Ok(Err(Miss::Factor));
            };
            let after = change(&before);
            if after != before {
                q::save_factor(c, &after).await?;
            }
            Ok(Ok(after))
        })
    }

    pub async fn delete_factor(
        &self,
        service: String,
        identity: String,
        sid: String,
    ) -> Result<Found<Factor>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(e) = q::entity_of(c, &service, &identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            let Some(f) = q::factor_of(c, &e.sid, &sid, true).await? else {
                return Ok(Err(Miss::Factor));
            };
            if q::delete_factor(c, &e.sid, &sid).await? {
                Ok(Ok(f))
            } else {
                Ok(Err(Miss::Factor))
            }
        })
    }

    /// Creates a challenge of the factor `fresh.factor_sid`, decided by `decide` (pure: the
    /// challenge and the factor, or why not) against the locked factor; saves both.
    pub async fn insert_challenge(
        &self,
        service: String,
        identity: String,
        mut fresh: Challenge,
        decide: impl FnOnce(Challenge, &Factor) -> Result<(Challenge, Option<Factor>), Miss>
        + Send
        + 'static,
    ) -> Result<Found<Challenge>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(e) = q::entity_of(c, &service, &identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            let Some(f) = q::factor_of(c, &e.sid, &fresh.factor_sid, true).await? else {
                return Ok(Err(Miss::Factor));
            };
            fresh.entity_sid = e.sid;
            let (challenge, factor) = match decide(fresh, &f) {
                Ok(d) => d,
                Err(miss) => return Ok(Err(miss)),
            };
            if let Some(f) = &factor {
                q::save_factor(c, f).await?;
            }
            q::save_challenge(c, &challenge).await?;
            Ok(Ok(challenge))
        })
    }

    /// Answers a challenge with `decide` against it and its locked factor; saves both.
    pub async fn update_challenge(
        &self,
        service: String,
        identity: String,
        sid: String,
        decide: impl FnOnce(&Challenge, &Factor) -> Result<(Challenge, Option<Factor>), Miss>
        + Send
        + 'static,
    ) -> Result<Found<Challenge>, StoreError> {
        dual!(self, write, |_: &_| {}, factors, |c, q| {
            let Some(e) = q::entity_of(c, &service, &identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            let Some(before) = q::challenge_of(c, &e.sid, &sid).await? else {
                return Ok(Err(Miss::Challenge));
            };
            let Some(f) = q::factor_of(c, &e.sid, &before.factor_sid, true).await? else {
                return Ok(Err(Miss::Challenge));
            };
            let (challenge, factor) = match decide(&before, &f) {
                Ok(d) => d,
                Err(miss) => return Ok(Err(miss)),
            };
            if let Some(f) = &factor {
                q::save_factor(c, f).await?;
            }
            if challenge != before {
                q::save_challenge(c, &challenge).await?;
            }
            Ok(Ok(challenge))
        })
    }

    /// The (identity, SID) of the passkeys challenge of `service` with WebAuthn challenge
    /// `passkey`.
    pub async fn challenge_by_passkey(
        &self,
        service: &str,
        passkey: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        read!(self, factors, |c, q| q::challenge_by_passkey(
            c, service, passkey
        )
        .await)
    }

    /// An entity's challenges (`None`: no such entity).
    pub async fn challenges(
        &self,
        service: &str,
        identity: &str,
    ) -> Result<Option<Vec<Challenge>>, StoreError> {
        read!(self, factors, |c, q| {
            match q::entity_of(c, service, identity).await? {
                None => Ok(None),
                Some(e) => Ok(Some(q::challenges(c, &e.sid).await?)),
            }
        })
    }

    pub async fn challenge(
        &self,
        service: &str,
        identity: &str,
        sid: &str,
    ) -> Result<Found<Challenge>, StoreError> {
        read!(self, factors, |c, q| {
            let Some(e) = q::entity_of(c, service, identity).await? else {
                return Ok(Err(Miss::Entity));
            };
            Ok(q::challenge_of(c, &e.sid, sid)
                .await?
                .ok_or(Miss::Challenge))
        })
    }
}
