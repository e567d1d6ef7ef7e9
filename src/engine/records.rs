//! The engine's side of the records no decision reads: the Safe List, Messaging Configurations
//! and the Attempts API (a view of the send attempts every start and re-send stores).

use super::Engine;
use crate::store::records::{
    AccessToken, AttemptFilter, AttemptRow, Bound, MessagingConfiguration, SafeListEntry, Webhook,
};
use crate::twilio::ApiError;
use crate::twilio::country;
use crate::twilio::paging::Cursor;

/// What the Attempts API shows of an attempt's verification at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptStatus {
    /// The verification was approved: the code reached the user (`conversion_status`
    /// converted).
    Confirmed,
    /// Still pending, or canceled, or out of check attempts.
    Unconfirmed,
    /// The verification expired before it was approved.
    Expired,
}

impl AttemptStatus {
    pub fn of(row: &AttemptRow, now: i64) -> Self {
        match row.verification_status.as_str() {
            "approved" => Self::Confirmed,
            "expired" => Self::Expired,
            "pending" if row.expires_ms <= now => Self::Expired,
            _ => Self::Unconfirmed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Unconfirmed => "unconfirmed",
            Self::Expired => "expired",
        }
    }
}

/// Totals of `GET /v2/Attempts/Summary`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub total: u64,
    pub converted: u64,
}

/// One page of attempts, whether more follow, and whether any lie before it.
pub struct AttemptPage {
    pub rows: Vec<AttemptRow>,
    pub has_next: bool,
    pub has_previous: bool,
}

impl Engine {
    pub async fn add_safe_number(&self, e: SafeListEntry) -> Result<SafeListEntry, ApiError> {
        Ok(self.store.add_safe_number(e).await?)
    }

    pub async fn safe_number(
        &self,
        account: &str,
        number: &str,
    ) -> Result<Option<SafeListEntry>, ApiError> {
        Ok(self.store.safe_number(account, number).await?)
    }

    pub async fn remove_safe_number(&self, account: &str, number: &str) -> Result<(), ApiError> {
        Ok(self
            .store
            .remove_safe_number(account.to_owned(), number.to_owned())
            .await?)
    }

    pub async fn create_configuration(
        &self,
        m: MessagingConfiguration,
    ) -> Result<MessagingConfiguration, ApiError> {
        Ok(self.store.insert_configuration(m).await?)
    }

    pub async fn update_configuration(
        &self,
        service: &str,
        country: &str,
        messaging_service_sid: &str,
        now: i64,
    ) -> Result<MessagingConfiguration, ApiError> {
        Ok(self
            .store
            .update_configuration(
                service.to_owned(),
                country.to_owned(),
                messaging_service_sid.to_owned(),
                now,
            )
            .await?)
    }

    pub async fn delete_configuration(&self, service: &str, country: &str) -> Result<(), ApiError> {
        Ok(self
            .store
            .delete_configuration(service.to_owned(), country.to_owned())
            .await?)
    }

    pub async fn configuration(
        &self,
        service: &str,
        country: &str,
    ) -> Result<Option<MessagingConfiguration>, ApiError> {
        Ok(self.store.configuration_of(service, country).await?)
    }

    pub async fn configurations(
        &self,
        service: &str,
    ) -> Result<Vec<MessagingConfiguration>, ApiError> {
        Ok(self.store.configurations(service).await?)
    }

    pub async fn create_webhook(&self, w: Webhook) -> Result<Webhook, ApiError> {
        Ok(self.store.insert_webhook(w).await?)
    }

    pub async fn update_webhook(&self, w: Webhook) -> Result<Webhook, ApiError> {
        Ok(self.store.update_webhook(w).await?)
    }

    pub async fn delete_webhook(&self, service: &str, sid: &str) -> Result<(), ApiError> {
        Ok(self
            .store
            .delete_webhook(service.to_owned(), sid.to_owned())
            .await?)
    }

    pub async fn webhook(&self, service: &str, sid: &str) -> Result<Option<Webhook>, ApiError> {
        Ok(self.store.webhook(service, sid).await?)
    }

    pub async fn webhooks(&self, service: &str) -> Result<Vec<Webhook>, ApiError> {
        Ok(self.store.webhooks(service).await?)
    }

    pub async fn create_access_token(&self, t: AccessToken) -> Result<AccessToken, ApiError> {
        Ok(self.store.insert_access_token(t).await?)
    }

    pub async fn access_token(
        &self,
        service: &str,
        sid: &str,
    ) -> Result<Option<AccessToken>, ApiError> {
        Ok(self.store.access_token(service, sid).await?)
    }

    pub async fn attempt(&self, account: &str, sid: &str) -> Result<Option<AttemptRow>, ApiError> {
        Ok(self.store.attempt(account, sid).await?)
    }

    /// One page of the account's attempts in SID (creation) order. `country` (ISO code) is
    /// matched against each number's country, so with it every candidate row is read.
    pub async fn attempts(
        &self,
        account: &str,
        filter: &AttemptFilter,
        country: Option<&str>,
        cursor: &Cursor,
        size: usize,
    ) -> Result<AttemptPage, ApiError> {
        let narrowed;
        let filter = match country {
            None => filter,
            Some(c) => match country::calling_prefix(c) {
                // No number is of a country without a calling code.
                None => {
                    return Ok(AttemptPage {
                        rows: Vec::new(),
                        has_next: false,
                        has_previous: false,
                    });
                }
                Some(prefix) => {
                    narrowed = AttemptFilter {
                        country_prefix: Some(prefix),
                        ..filter.clone()
                    };
                    &narrowed
                }
            },
        };
        let keep = |r: &AttemptRow| country.is_none_or(|c| country::of_number(&r.to) == Some(c));
        // Without a country every row SQL returns is kept, so SQL can stop early.
        let limit = |n: usize| country.is_none().then_some(n);
        let read = |bound: Bound, n: Option<usize>| async move {
            let rows = self.store.attempts(account, filter, &bound, n).await?;
            Ok::<_, ApiError>(rows.into_iter().filter(keep).collect::<Vec<_>>())
        };
        let (mut rows, has_previous) = match cursor {
            Cursor::Start => (read(Bound::None, limit(size + 1)).await?, false),
            Cursor::Offset(skip) => {
                let mut rows = read(Bound::None, limit(skip + size + 1)).await?;
                rows.drain(..(*skip).min(rows.len()));
                (rows, *skip > 0)
            }
            Cursor::After(sid) => {
                let rows = read(Bound::After(sid.clone()), limit(size + 1)).await?;
                let before = match rows.first() {
                    Some(first) => !read(Bound::Before(first.sid.clone()), limit(1))
                        .await?
                        .is_empty(),
                    None => false,
                };
                (rows, before)
            }
            Cursor::Before(sid) => {
                let mut rows = read(Bound::Before(sid.clone()), limit(size + 1)).await?;
                let has_previous = rows.len() > size;
                rows.truncate(size);
                rows.reverse();
                let has_next = !read(Bound::From(sid.clone()), limit(1)).await?.is_empty();
                return Ok(AttemptPage {
                    rows,
                    has_next,
                    has_previous,
                });
            }
        };
        let has_next = rows.len() > size;
        rows.truncate(size);
        Ok(AttemptPage {
            rows,
            has_next,
            has_previous,
        })
    }

    /// Totals over every attempt of the account matching the filters: counted by the database,
    /// or with a country, over the rows of its calling code, each number's country found here.
    pub async fn attempts_summary(
        &self,
        account: &str,
        filter: &AttemptFilter,
        country: Option<&str>,
    ) -> Result<Summary, ApiError> {
        let Some(c) = country else {
            let (total, converted) = self.store.attempt_totals(account, filter).await?;
            return Ok(Summary {
                total: total.max(0) as u64,
                converted: converted.max(0) as u64,
            });
        };
        let Some(prefix) = country::calling_prefix(c) else {
            return Ok(Summary::default());
        };
        let narrowed = AttemptFilter {
            country_prefix: Some(prefix),
            ..filter.clone()
        };
        let rows = self
            .store
            .attempts(account, &narrowed, &Bound::None, None)
            .await?;
        Ok(rows
            .iter()
            .filter(|r| country::of_number(&r.to) == Some(c))
            .fold(Summary::default(), |s, r| Summary {
                total: s.total + 1,
                converted: s.converted + u64::from(r.verification_status == "approved"),
            }))
    }
}
