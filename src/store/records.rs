//! Records no rate-limit decision reads, each written once for both databases: the Safe List
//! (per account), Messaging Configurations (per service and country), and the Attempts API's
//! view of the send attempts (`send_attempts` joined with their verification).

use super::{Store, StoreError};

/// A number on an account's Safe List.
#[derive(Debug, Clone)]
pub struct SafeListEntry {
    pub sid: String,
    pub account_sid: String,
    pub phone_number: String,
    pub date_created: i64,
}

/// A service's Messaging Service for one country (`all` for every other country).
#[derive(Debug, Clone)]
pub struct MessagingConfiguration {
    pub account_sid: String,
    pub service_sid: String,
    pub country: String,
    pub messaging_service_sid: String,
    pub date_created: i64,
    pub date_updated: i64,
}

/// The filters of `GET /v2/Attempts` and `/v2/Attempts/Summary` that SQL applies (the country
/// is found from the number, so callers apply `Country` themselves).
#[derive(Debug, Default, Clone)]
pub struct AttemptFilter {
    pub service_sid: Option<String>,
    pub verification_sid: Option<String>,
    pub to: Option<String>,
    pub channel: Option<String>,
    /// Created at or after this time (ms).
    pub created_from: Option<i64>,
    /// Created before this time (ms).
    pub created_until: Option<i64>,
    /// `Some(true)`: converted only; `Some(false)`: unconverted only.
    pub converted: Option<bool>,
    /// The recipient starts with this (`DestinationPrefix`).
    pub to_prefix: Option<String>,
    /// The recipient starts with this too: the calling code of the `Country` asked for, which
    /// narrows what is read before each number's country is found.
    pub country_prefix: Option<String>,
}

/// One send attempt with what the Attempts API shows of its verification.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub sid: String,
    pub account_sid: String,
    pub service_sid: String,
    pub verification_sid: String,
    pub to: String,
    pub channel: String,
    pub code_length: i64,
    pub at_ms: i64,
    pub verification_status: String,
    pub verification_updated: i64,
    pub expires_ms: i64,
}

/// A service's webhook for Verify Push and TOTP events.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub event_types: Vec<String>,
    pub status: String,
    pub version: String,
    pub webhook_url: String,
    pub webhook_method: String,
    pub date_created: i64,
    pub date_updated: i64,
}

/// An access token for enrolling a push factor.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub entity_identity: String,
    pub factor_type: String,
    pub factor_friendly_name: Option<String>,
    pub token: String,
    pub ttl: i64,
    pub date_created: i64,
}

/// Where a page of attempts starts, in SID order.
#[derive(Debug, Clone)]
pub enum Bound {
    None,
    /// SIDs greater than this one, ascending.
    After(String),
    /// SIDs from this one on, ascending.
    From(String),
    /// SIDs less than this one, descending.
    Before(String),
}

/// A bound argument of a query built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

/// The `WHERE` conditions (with `?` placeholders) and their arguments, in order, of an attempts
/// query, and whether it reads in descending SID order (`Bound::Before`).
fn attempt_conditions(
    account: &str,
    filter: &AttemptFilter,
    bound: &Bound,
) -> (String, Vec<Arg>, bool) {
    let mut sql = String::from("a.account_sid = ? AND a.channel <> 'sna'");
    let mut args: Vec<Arg> = vec![Arg::Text(account.to_owned())];
    for (col, v) in [
        ("a.service_sid", &filter.service_sid),
        ("a.verification_sid", &filter.verification_sid),
        ("a.recipient", &filter.to),
        ("a.channel", &filter.channel),
    ] {
        if let Some(v) = v {
            sql.push_str(&format!(" AND {col} = ?"));
            args.push(Arg::Text(v.clone()));
        }
    }
    for prefix in [&filter.to_prefix, &filter.country_prefix]
        .into_iter()
        .flatten()
    {
        sql.push_str(" AND substr(a.recipient, 1, CAST(? AS INTEGER)) = ?");
        args.push(Arg::Int(prefix.chars().count() as i64));
        args.push(Arg::Text(prefix.clone()));
    }
    match filter.converted {
        Some(true) => sql.push_str(" AND v.status = 'approved'"),
        Some(false) => sql.push_str(" AND v.status <> 'approved'"),
        None => {}
    }
    let desc = match bound {
        Bound::None => false,
        Bound::After(s) => {
            sql.push_str(" AND a.sid > ?");
            args.push(Arg::Text(s.clone()));
            false
        }
        Bound::From(s) => {
            sql.push_str(" AND a.sid >= ?");
            args.push(Arg::Text(s.clone()));
            false
        }
        Bound::Before(s) => {
            sql.push_str(" AND a.sid < ?");
            args.push(Arg::Text(s.clone()));
            true
        }
    };
    if let Some(from) = filter.created_from {
        sql.push_str(" AND a.at_ms >= ?");
        args.push(Arg::Int(from));
    }
    if let Some(until) = filter.created_until {
        sql.push_str(" AND a.at_ms < ?");
        args.push(Arg::Int(until));
    }
    (sql, args, desc)
}

macro_rules! statements {
    ($conn:ty, $row:ty, $sql:path) => {
        use sqlx::Row;

        use super::{
            AccessToken, Arg, AttemptFilter, AttemptRow, Bound, MessagingConfiguration, SafeListEntry,
            Webhook, attempt_conditions,
        };
        use crate::store::StoreError;

        fn safe_list_entry(r: &$row) -> SafeListEntry {
            SafeListEntry {
                sid: r.get(0),
                account_sid: r.get(1),
                phone_number: r.get(2),
                date_created: r.get(3),
            }
        }

        /// Adds a number (once: adding it again keeps the first entry) and returns its entry.
        pub async fn add_safe_number(
            c: &mut $conn,
            e: &SafeListEntry,
        ) -> Result<SafeListEntry, StoreError> {
            sqlx::query(&$sql(
                "INSERT INTO safe_list (account_sid, phone_number, sid, date_created) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (account_sid, phone_number) DO NOTHING",
            ))
            .bind(&e.account_sid)
            .bind(&e.phone_number)
            .bind(&e.sid)
            .bind(e.date_created)
            .execute(&mut *c)
            .await?;
            Ok(safe_number(c, &e.account_sid, &e.phone_number)
                .await?
                .unwrap_or_else(|| e.clone()))
        }

        pub async fn safe_number(
            c: &mut $conn,
            account: &str,
            number: &str,
        ) -> Result<Option<SafeListEntry>, sqlx::Error> {
            Ok(sqlx::query(&$sql(
                "SELECT sid, account_sid, phone_number, date_created FROM safe_list \
                 WHERE account_sid = ? AND phone_number = ?",
            ))
            .bind(account)
            .bind(number)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| safe_list_entry(&r)))
        }

        pub async fn remove_safe_number(
            c: &mut $conn,
            account: &str,
            number: &str,
        ) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "DELETE FROM safe_list WHERE account_sid = ? AND phone_number = ?",
            ))
            .bind(account)
            .bind(number)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("/SafeList/Numbers/{number}")));
            }
            Ok(())
        }

        fn configuration(r: &$row) -> MessagingConfiguration {
            MessagingConfiguration {
                account_sid: r.get(0),
                service_sid: r.get(1),
                country: r.get(2),
                messaging_service_sid: r.get(3),
                date_created: r.get(4),
                date_updated: r.get(5),
            }
        }

        const CONFIGURATION: &str = "SELECT account_sid, service_sid, country, messaging_service_sid, date_created, date_updated \
                                     FROM messaging_configurations";

        pub async fn insert_configuration(
            c: &mut $conn,
            m: &MessagingConfiguration,
        ) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "INSERT INTO messaging_configurations (account_sid, service_sid, country, messaging_service_sid, date_created, date_updated) \
                 SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?)",
            ))
            .bind(&m.account_sid)
            .bind(&m.service_sid)
            .bind(&m.country)
            .bind(&m.messaging_service_sid)
            .bind(m.date_created)
            .bind(m.date_updated)
            .bind(&m.service_sid)
            .execute(&mut *c)
            .await
            .map_err(|e| StoreError::unique_or(e, StoreError::DuplicateCountry))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("/Services/{}", m.service_sid)));
            }
            Ok(())
        }

        /// Sets the Messaging Service of a configuration; the configuration as it now is.
        pub async fn update_configuration(
            c: &mut $conn,
            service: &str,
            country: &str,
            messaging_service_sid: &str,
            now: i64,
        ) -> Result<MessagingConfiguration, StoreError> {
            sqlx::query(&$sql(
                "UPDATE messaging_configurations SET messaging_service_sid = ?, \
                 date_updated = CASE WHEN date_created > ? THEN date_created ELSE ? END \
                 WHERE service_sid = ? AND country = ?",
            ))
            .bind(messaging_service_sid)
            .bind(now)
            .bind(now)
            .bind(service)
            .bind(country)
            .execute(&mut *c)
            .await?;
            configuration_of(c, service, country).await?.ok_or_else(|| {
                StoreError::NotFound(format!("/Services/{service}/MessagingConfigurations/{country}"))
            })
        }

        pub async fn delete_configuration(
            c: &mut $conn,
            service: &str,
            country: &str,
        ) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "DELETE FROM messaging_configurations WHERE service_sid = ? AND country = ?",
            ))
            .bind(service)
            .bind(country)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "/Services/{service}/MessagingConfigurations/{country}"
                )));
            }
            Ok(())
        }

        pub async fn configuration_of(
            c: &mut $conn,
            service: &str,
            country: &str,
        ) -> Result<Option<MessagingConfiguration>, sqlx::Error> {
            Ok(sqlx::query(&$sql(&format!(
                "{CONFIGURATION} WHERE service_sid = ? AND country = ?"
            )))
            .bind(service)
            .bind(country)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| configuration(&r)))
        }

        /// Every configuration of a service, by country.
        pub async fn configurations(
            c: &mut $conn,
            service: &str,
        ) -> Result<Vec<MessagingConfiguration>, sqlx::Error> {
            Ok(sqlx::query(&$sql(&format!(
                "{CONFIGURATION} WHERE service_sid = ? ORDER BY country"
            )))
            .bind(service)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(configuration)
            .collect())
        }

        const WEBHOOK: &str = "SELECT sid, service_sid, account_sid, friendly_name, event_types, status, version, \
                               webhook_url, webhook_method, date_created, date_updated FROM webhooks";

        fn webhook_row(r: &$row) -> Result<Webhook, StoreError> {
            Ok(Webhook {
                sid: r.get(0),
                service_sid: r.get(1),
                account_sid: r.get(2),
                friendly_name: r.get(3),
                event_types: serde_json::from_str(r.get::<&str, _>(4))?,
                status: r.get(5),
                version: r.get(6),
                webhook_url: r.get(7),
                webhook_method: r.get(8),
                date_created: r.get(9),
                date_updated: r.get(10),
            })
        }

        /// Inserts a webhook (of a service that still exists).
        pub async fn insert_webhook(c: &mut $conn, w: &Webhook) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "INSERT INTO webhooks (sid, service_sid, account_sid, friendly_name, event_types, status, version, \
                 webhook_url, webhook_method, date_created, date_updated) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?)",
            ))
            .bind(&w.sid)
            .bind(&w.service_sid)
            .bind(&w.account_sid)
            .bind(&w.friendly_name)
            .bind(serde_json::to_string(&w.event_types)?)
            .bind(&w.status)
            .bind(&w.version)
            .bind(&w.webhook_url)
            .bind(&w.webhook_method)
            .bind(w.date_created)
            .bind(w.date_updated)
            .bind(&w.service_sid)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("/Services/{}", w.service_sid)));
            }
            Ok(())
        }

        /// Stores the changeable fields of an existing webhook.
        pub async fn update_webhook(c: &mut $conn, w: &Webhook) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "UPDATE webhooks SET friendly_name = ?, event_types = ?, status = ?, version = ?, \
                 webhook_url = ?, date_updated = ? WHERE service_sid = ? AND sid = ?",
            ))
            .bind(&w.friendly_name)
            .bind(serde_json::to_string(&w.event_types)?)
            .bind(&w.status)
            .bind(&w.version)
            .bind(&w.webhook_url)
            .bind(w.date_updated)
            .bind(&w.service_sid)
            .bind(&w.sid)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "/Services/{}/Webhooks/{}",
                    w.service_sid, w.sid
                )));
            }
            Ok(())
        }

        pub async fn delete_webhook(c: &mut $conn, service: &str, sid: &str) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM webhooks WHERE service_sid = ? AND sid = ?"))
                .bind(service)
                .bind(sid)
                .execute(&mut *c)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("/Services/{service}/Webhooks/{sid}")));
            }
            Ok(())
        }

        pub async fn webhook(c: &mut $conn, service: &str, sid: &str) -> Result<Option<Webhook>, StoreError> {
            sqlx::query(&$sql(&format!("{WEBHOOK} WHERE service_sid = ? AND sid = ?")))
                .bind(service)
                .bind(sid)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| webhook_row(&r))
                .transpose()
        }

        /// Every webhook of a service, by SID.
        pub async fn webhooks(c: &mut $conn, service: &str) -> Result<Vec<Webhook>, StoreError> {
            sqlx::query(&$sql(&format!("{WEBHOOK} WHERE service_sid = ? ORDER BY sid")))
                .bind(service)
                .fetch_all(&mut *c)
                .await?
                .iter()
                .map(webhook_row)
                .collect()
        }

        pub async fn insert_access_token(c: &mut $conn, t: &AccessToken) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql(
                "INSERT INTO access_tokens (sid, service_sid, account_sid, entity_identity, factor_type, \
                 factor_friendly_name, token, ttl, date_created) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM services WHERE sid = ?)",
            ))
            .bind(&t.sid)
            .bind(&t.service_sid)
            .bind(&t.account_sid)
            .bind(&t.entity_identity)
            .bind(&t.factor_type)
            .bind(&t.factor_friendly_name)
            .bind(&t.token)
            .bind(t.ttl)
            .bind(t.date_created)
            .bind(&t.service_sid)
            .execute(&mut *c)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("/Services/{}", t.service_sid)));
            }
            Ok(())
        }

        pub async fn access_token(
            c: &mut $conn,
            service: &str,
            sid: &str,
        ) -> Result<Option<AccessToken>, sqlx::Error> {
            Ok(sqlx::query(&$sql(
                "SELECT sid, service_sid, account_sid, entity_identity, factor_type, factor_friendly_name, \
                 token, ttl, date_created FROM access_tokens WHERE service_sid = ? AND sid = ?",
            ))
            .bind(service)
            .bind(sid)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| AccessToken {
                sid: r.get(0),
                service_sid: r.get(1),
                account_sid: r.get(2),
                entity_identity: r.get(3),
                factor_type: r.get(4),
                factor_friendly_name: r.get(5),
                token: r.get(6),
                ttl: r.get(7),
                date_created: r.get(8),
            }))
        }

        const ATTEMPT: &str = "SELECT a.sid, a.account_sid, a.service_sid, a.verification_sid, a.recipient, a.channel, \
                               CAST(length(a.code) AS BIGINT), a.at_ms, v.status, v.date_updated, v.expires_ms \
                               FROM send_attempts a JOIN verifications v ON v.sid = a.verification_sid";

        fn attempt_row(r: &$row) -> AttemptRow {
            AttemptRow {
                sid: r.get(0),
                account_sid: r.get(1),
                service_sid: r.get(2),
                verification_sid: r.get(3),
                to: r.get(4),
                channel: r.get(5),
                code_length: r.get(6),
                at_ms: r.get(7),
                verification_status: r.get(8),
                verification_updated: r.get(9),
                expires_ms: r.get(10),
            }
        }

        /// The account's attempt with this SID.
        pub async fn attempt(
            c: &mut $conn,
            account: &str,
            sid: &str,
        ) -> Result<Option<AttemptRow>, sqlx::Error> {
            Ok(sqlx::query(&$sql(&format!(
                "{ATTEMPT} WHERE a.account_sid = ? AND a.sid = ? AND a.channel <> 'sna'"
            )))
            .bind(account)
            .bind(sid)
            .fetch_optional(&mut *c)
            .await?
            .map(|r| attempt_row(&r)))
        }

        /// The account's attempts matching `filter` from `bound` on (ascending by SID, or
        /// descending for `Bound::Before`), at most `limit` of them. SNA verifications send
        /// nothing, so they have no attempts here (the Attempts API covers SMS, voice, email,
        /// WhatsApp and RBM).
        pub async fn attempts(
            c: &mut $conn,
            account: &str,
            filter: &AttemptFilter,
            bound: &Bound,
            limit: Option<usize>,
        ) -> Result<Vec<AttemptRow>, sqlx::Error> {
            let (conditions, mut args, desc) = attempt_conditions(account, filter, bound);
            let mut sql = format!("{ATTEMPT} WHERE {conditions}");
            sql.push_str(if desc {
                " ORDER BY a.sid DESC"
            } else {
                " ORDER BY a.sid"
            });
            if let Some(limit) = limit {
                sql.push_str(" LIMIT ?");
                args.push(Arg::Int(limit as i64));
            }
            let sql = $sql(&sql);
            let mut q = sqlx::query(&sql);
            for arg in &args {
                q = match arg {
                    Arg::Text(text) => q.bind(text),
                    Arg::Int(number) => q.bind(number),
                };
            }
            Ok(q.fetch_all(&mut *c).await?.iter().map(attempt_row).collect())
        }

        /// How many of the account's attempts match `filter`, and how many of those converted.
        pub async fn attempt_totals(
            c: &mut $conn,
            account: &str,
            filter: &AttemptFilter,
        ) -> Result<(i64, i64), sqlx::Error> {
            let (conditions, args, _) = attempt_conditions(account, filter, &Bound::None);
            let sql = format!(
                "SELECT COUNT(*), COALESCE(SUM(CASE WHEN v.status = 'approved' THEN 1 ELSE 0 END), 0) \
                 FROM send_attempts a JOIN verifications v ON v.sid = a.verification_sid WHERE {conditions}"
            );
            let sql = $sql(&sql);
            let mut q = sqlx::query(&sql);
            for arg in &args {
                q = match arg {
                    Arg::Text(text) => q.bind(text),
                    Arg::Int(number) => q.bind(number),
                };
            }
            let row = q.fetch_one(&mut *c).await?;
            Ok((row.get::<i64, _>(0), row.get::<i64, _>(1)))
        }
    };
}

pub mod sqlite {
    statements!(
        sqlx::SqliteConnection,
        sqlx::sqlite::SqliteRow,
        crate::store::sql::as_is
    );
}

pub mod pg {
    statements!(
        sqlx::PgConnection,
        sqlx::postgres::PgRow,
        crate::store::sql::numbered
    );
}

impl Store {
    pub async fn add_safe_number(&self, e: SafeListEntry) -> Result<SafeListEntry, StoreError> {
        dual!(self, write, |_: &SafeListEntry| {}, records, |c, q| {
            q::add_safe_number(c, &e).await
        })
    }

    pub async fn safe_number(
        &self,
        account: &str,
        number: &str,
    ) -> Result<Option<SafeListEntry>, StoreError> {
        Ok(read!(self, records, |c, q| q::safe_number(
            c, account, number
        )
        .await)?)
    }

    pub async fn remove_safe_number(
        &self,
        account: String,
        number: String,
    ) -> Result<(), StoreError> {
        dual!(self, write, |_: &()| {}, records, |c, q| {
            q::remove_safe_number(c, &account, &number).await
        })
    }

    pub async fn insert_configuration(
        &self,
        m: MessagingConfiguration,
    ) -> Result<MessagingConfiguration, StoreError> {
        dual!(
            self,
            write,
            |_: &MessagingConfiguration| {},
            records,
            |c, q| q::insert_configuration(c, &m).await.map(|()| m)
        )
    }

    pub async fn update_configuration(
        &self,
        service: String,
        country: String,
        messaging_service_sid: String,
        now: i64,
    ) -> Result<MessagingConfiguration, StoreError> {
        dual!(
            self,
            write,
            |_: &MessagingConfiguration| {},
            records,
            |c, q| {
                q::update_configuration(c, &service, &country, &messaging_service_sid, now).await
            }
        )
    }

    pub async fn delete_configuration(
        &self,
        service: String,
        country: String,
    ) -> Result<(), StoreError> {
        dual!(self, write, |_: &()| {}, records, |c, q| {
            q::delete_configuration(c, &service, &country).await
        })
    }

    pub async fn configuration_of(
        &self,
        service: &str,
        country: &str,
    ) -> Result<Option<MessagingConfiguration>, StoreError> {
        Ok(read!(self, records, |c, q| q::configuration_of(
            c, service, country
        )
        .await)?)
    }

    pub async fn configurations(
        &self,
        service: &str,
    ) -> Result<Vec<MessagingConfiguration>, StoreError> {
        Ok(read!(self, records, |c, q| q::configurations(c, service).await)?)
    }

    pub async fn attempt(
        &self,
        account: &str,
        sid: &str,
    ) -> Result<Option<AttemptRow>, StoreError> {
        Ok(read!(self, records, |c, q| q::attempt(c, account, sid).await)?)
    }

    pub async fn attempts(
        &self,
        account: &str,
        filter: &AttemptFilter,
        bound: &Bound,
        limit: Option<usize>,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(read!(self, records, |c, q| q::attempts(
            c, account, filter, bound, limit
        )
        .await)?)
    }

    pub async fn attempt_totals(
        &self,
        account: &str,
        filter: &AttemptFilter,
    ) -> Result<(i64, i64), StoreError> {
        Ok(read!(self, records, |c, q| q::attempt_totals(
            c, account, filter
        )
        .await)?)
    }

    pub async fn insert_webhook(&self, w: Webhook) -> Result<Webhook, StoreError> {
        dual!(self, write, |_: &Webhook| {}, records, |c, q| {
            q::insert_webhook(c, &w).await.map(|()| w)
        })
    }

    pub async fn update_webhook(&self, w: Webhook) -> Result<Webhook, StoreError> {
        dual!(self, write, |_: &Webhook| {}, records, |c, q| {
            q::update_webhook(c, &w).await.map(|()| w)
        })
    }

    pub async fn delete_webhook(&self, service: String, sid: String) -> Result<(), StoreError> {
        dual!(self, write, |_: &()| {}, records, |c, q| {
            q::delete_webhook(c, &service, &sid).await
        })
    }

    pub async fn webhook(&self, service: &str, sid: &str) -> Result<Option<Webhook>, StoreError> {
        read!(self, records, |c, q| q::webhook(c, service, sid).await)
    }

    pub async fn webhooks(&self, service: &str) -> Result<Vec<Webhook>, StoreError> {
        read!(self, records, |c, q| q::webhooks(c, service).await)
    }

    pub async fn insert_access_token(&self, t: AccessToken) -> Result<AccessToken, StoreError> {
        dual!(self, write, |_: &AccessToken| {}, records, |c, q| {
            q::insert_access_token(c, &t).await.map(|()| t)
        })
    }

    pub async fn access_token(
        &self,
        service: &str,
        sid: &str,
    ) -> Result<Option<AccessToken>, StoreError> {
        Ok(read!(self, records, |c, q| q::access_token(
            c, service, sid
        )
        .await)?)
    }
}
