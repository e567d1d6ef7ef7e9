//! The seed file: services, rate limits and buckets declared in JSON, applied idempotently at
//! start-up (matched by SID when given, else by friendly name / unique name / interval), and the
//! export of an account's configuration in the same format.

use serde::{Deserialize, Serialize};

use crate::catalog::{BucketRecord, Catalog, RateLimitRecord, ServiceRecord, ServiceSettings};
use crate::state::AppState;
use crate::twilio::{ApiError, sid};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedFile {
    #[serde(default)]
    pub services: Vec<SeedService>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub friendly_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_code_enabled: Option<bool>,
    #[serde(default)]
    pub rate_limits: Vec<SeedRateLimit>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub unique_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub buckets: Vec<SeedBucket>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedBucket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub max: u32,
    pub interval: u32,
}

/// Reads and validates a seed file; errors name the line (syntax) or the key path.
pub fn load(
    path: &std::path::Path,
    default_account: &str,
    accounts: &[String],
) -> Result<SeedFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the seed file {}: {e}", path.display()))?;
    let mut seed: SeedFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "seed file {}: line {}, column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    validate(&mut seed, default_account, accounts)
        .map_err(|e| format!("seed file {}: {e}", path.display()))?;
    Ok(seed)
}

fn validate(seed: &mut SeedFile, default_account: &str, accounts: &[String]) -> Result<(), String> {
    let check_sid = |key: &str, v: &Option<String>, prefix: &str| match v {
        Some(s) if !sid::is_valid(s, prefix) => Err(format!(
            "{key}: {s:?} is not a SID ({prefix} + 32 hex digits)"
        )),
        _ => Ok(()),
    };
    for (i, s) in seed.services.iter_mut().enumerate() {
        let at = format!("services[{i}]");
        let account = s
            .account_sid
            .get_or_insert_with(|| default_account.to_owned());
        if !accounts.iter().any(|a| a == account) {
            return Err(format!(
                "{at}.account_sid: {account} is not a configured account"
            ));
        }
        check_sid(&format!("{at}.sid"), &s.sid, sid::SERVICE)?;
        if s.friendly_name.trim().is_empty() || s.friendly_name.chars().count() > 32 {
            return Err(format!("{at}.friendly_name: must be 1 to 32 characters"));
        }
        if s.code_length.is_some_and(|n| !(4..=10).contains(&n)) {
            return Err(format!("{at}.code_length: must be 4 to 10"));
        }
        for (j, r) in s.rate_limits.iter().enumerate() {
            let at = format!("{at}.rate_limits[{j}]");
            check_sid(&format!("{at}.sid"), &r.sid, sid::RATE_LIMIT)?;
            crate::api::rate_limits::unique_name(&r.unique_name)
                .map_err(|e| format!("{at}.unique_name: {}", e.message))?;
            if s.rate_limits[..j]
                .iter()
                .any(|o| o.unique_name == r.unique_name)
            {
                return Err(format!(
                    "{at}.unique_name: {:?} appears twice",
                    r.unique_name
                ));
            }
            for (k, b) in r.buckets.iter().enumerate() {
                let at = format!("{at}.buckets[{k}]");
                check_sid(&format!("{at}.sid"), &b.sid, sid::BUCKET)?;
                if b.max < 1 || i64::from(b.max) > crate::api::buckets::MAX_MAX {
                    return Err(format!("{at}.max: must be at least 1"));
                }
                if b.interval < 1 || i64::from(b.interval) > crate::api::buckets::MAX_INTERVAL {
                    return Err(format!("{at}.interval: must be 1 to 86400 seconds"));
                }
                if r.buckets[..k].iter().any(|o| o.interval == b.interval) {
                    return Err(format!("{at}.interval: {} appears twice", b.interval));
                }
            }
        }
    }
    Ok(())
}

/// Creates what the seed declares and does not exist yet, and brings the rest up to date.
pub async fn apply(state: &AppState, seed: SeedFile) -> Result<(), String> {
    for s in seed.services {
        apply_service(state, s).await.map_err(|e| e.message)?;
    }
    Ok(())
}

async fn apply_service(state: &AppState, s: SeedService) -> Result<(), ApiError> {
    let account = s.account_sid.clone().unwrap_or_default();
    let now = state.now(&account);
    let existing = {
        let catalog = state.catalog.read();
        let services = catalog.services(&account);
        match &s.sid {
            Some(sid) => {
                if catalog
                    .accounts()
                    .any(|a| a != &account && catalog.service(a, sid).is_some())
                {
                    return Err(ApiError::invalid_because(
                        "sid",
                        format!("{sid} belongs to another account"),
                    ));
                }
                services.and_then(|m| m.get(sid)).map(|n| n.record.clone())
            }
            None => services.and_then(|m| {
                m.values()
                    .find(|n| n.record.friendly_name == s.friendly_name)
                    .map(|n| n.record.clone())
            }),
        }
    };
    let record = match existing {
        Some(mut r) => {
            r.friendly_name = s.friendly_name.clone();
            r.code_length = s.code_length.unwrap_or(r.code_length);
            r.custom_code_enabled = s.custom_code_enabled.unwrap_or(r.custom_code_enabled);
            r.date_updated = now.max(r.date_created);
            state.update_service(r).await?
        }
        None => {
            let r = ServiceRecord {
                sid: s.sid.clone().unwrap_or_else(|| sid::generate(sid::SERVICE)),
                account_sid: account.clone(),
                friendly_name: s.friendly_name.clone(),
                code_length: s.code_length.unwrap_or(6),
                custom_code_enabled: s.custom_code_enabled.unwrap_or(false),
                settings: ServiceSettings::default(),
                date_created: now,
                date_updated: now,
            };
            state.create_service(r).await?
        }
    };
    for rl in s.rate_limits {
        apply_rate_limit(state, &record, rl, now).await?;
    }
    Ok(())
}

async fn apply_rate_limit(
    state: &AppState,
    service: &ServiceRecord,
    r: SeedRateLimit,
    now: i64,
) -> Result<(), ApiError> {
    let existing = {
        let catalog = state.catalog.read();
        catalog
            .service(&service.account_sid, &service.sid)
            .and_then(|n| match &r.sid {
                Some(sid) => n.rate_limits.get(sid).cloned(),
                None => n.rate_limit_by_name(&r.unique_name).cloned(),
            })
    };
    let (record, buckets) = match existing {
        Some(node) => {
            let mut rec = node.record.clone();
            if r.description.is_some() {
                rec.description = r.description.clone();
            }
            rec.date_updated = now.max(rec.date_created);
            let rec = state.update_rate_limit(rec).await?;
            (rec, node.buckets.clone())
        }
        None => {
            let rec = RateLimitRecord {
                id: 0,
                sid: r
                    .sid
                    .clone()
                    .unwrap_or_else(|| sid::generate(sid::RATE_LIMIT)),
                service_sid: service.sid.clone(),
                account_sid: service.account_sid.clone(),
                unique_name: r.unique_name.clone(),
                description: r.description.clone(),
                date_created: now,
                date_updated: now,
            };
            let rec = state.create_rate_limit(rec).await?;
            (rec, Default::default())
        }
    };
    for b in r.buckets {
        let found = match &b.sid {
            Some(sid) => buckets.get(sid).cloned(),
            None => buckets.values().find(|x| x.interval == b.interval).cloned(),
        };
        match found {
            Some(mut rec) => {
                if rec.interval != b.interval {
                    rec.live_since_ms = rec.rule().live_since_after_interval_change(now);
                }
                rec.max = b.max;
                rec.interval = b.interval;
                rec.date_updated = now.max(rec.date_created);
                state.update_bucket(rec).await?;
            }
            None => {
                let rec = BucketRecord {
                    sid: b.sid.clone().unwrap_or_else(|| sid::generate(sid::BUCKET)),
                    rate_limit_sid: record.sid.clone(),
                    service_sid: record.service_sid.clone(),
                    account_sid: record.account_sid.clone(),
                    max: b.max,
                    interval: b.interval,
                    live_since_ms: now,
                    date_created: now,
                    date_updated: now,
                };
                state.create_bucket(rec, record.id).await?;
            }
        }
    }
    Ok(())
}

/// The configuration of one account, in the seed format.
pub fn export(catalog: &Catalog, account: &str) -> SeedFile {
    let services = catalog
        .services(account)
        .map(|m| {
            m.values()
                .map(|n| SeedService {
                    account_sid: Some(account.to_owned()),
                    sid: Some(n.record.sid.clone()),
                    friendly_name: n.record.friendly_name.clone(),
                    code_length: Some(n.record.code_length),
                    custom_code_enabled: Some(n.record.custom_code_enabled),
                    rate_limits: n
                        .rate_limits
                        .values()
                        .map(|r| SeedRateLimit {
                            sid: Some(r.record.sid.clone()),
                            unique_name: r.record.unique_name.clone(),
                            description: r.record.description.clone(),
                            buckets: r
                                .buckets
                                .values()
                                .map(|b| SeedBucket {
                                    sid: Some(b.sid.clone()),
                                    max: b.max,
                                    interval: b.interval,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();
    SeedFile { services }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SeedFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed.json");
        std::fs::write(&path, text).unwrap();
        load(
            &path,
            "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &["ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned()],
        )
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("{\n  \"services\": [\n    {\"friendly_name\": \"x\",}\n  ]\n}").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_key_path() {
        let e = parse(r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "ok"}, {"unique_name": "bad name"}]}]}"#).unwrap_err();
        assert!(e.contains("services[0].rate_limits[1].unique_name"), "{e}");
        let e = parse(r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "ip", "buckets": [{"max": 0, "interval": 60}]}]}]}"#).unwrap_err();
        assert!(
            e.contains("services[0].rate_limits[0].buckets[0].max"),
            "{e}"
        );
        let e = parse(r#"{"services": [{"friendly_name": "x", "colour": "red"}]}"#).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse(r#"{"services": [{"friendly_name": "x", "sid": "VA12"}]}"#).unwrap_err();
        assert!(e.contains("services[0].sid"), "{e}");
    }
}
