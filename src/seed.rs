//! The seed file: services, rate limits and buckets declared in JSON, applied idempotently at
//! start-up (matched by SID when given, else by friendly name / unique name / interval), and the
//! export of an account's configuration in the same format.

use serde::{Deserialize, Serialize};

use crate::catalog::values::{CodeLength, Description, FriendlyName, Interval, Max, UniqueName};
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

/// A seed file as parsed: every value valid, every service with its account.
#[derive(Debug)]
pub struct Seed {
    services: Vec<Service>,
}

#[derive(Debug)]
struct Service {
    account_sid: String,
    sid: Option<String>,
    friendly_name: FriendlyName,
    code_length: Option<CodeLength>,
    custom_code_enabled: Option<bool>,
    rate_limits: Vec<RateLimit>,
}

#[derive(Debug)]
struct RateLimit {
    sid: Option<String>,
    unique_name: UniqueName,
    description: Option<Description>,
    buckets: Vec<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    sid: Option<String>,
    max: Max,
    interval: Interval,
}

/// Reads and parses a seed file; errors name the line (syntax) or the key path.
pub fn load(
    path: &std::path::Path,
    default_account: &str,
    accounts: &[String],
) -> Result<Seed, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the seed file {}: {e}", path.display()))?;
    let seed: SeedFile = serde_json::from_str(&text).map_err(|e| {
        format!(
            "seed file {}: line {}, column {}: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    parse(seed, default_account, accounts).map_err(|e| format!("seed file {}: {e}", path.display()))
}

/// `key: rule` for a refused value.
fn at<T, E: std::fmt::Display>(key: &str, r: Result<T, E>) -> Result<T, String> {
    r.map_err(|e| format!("{key}: {e}"))
}

fn check_sid(key: &str, v: Option<String>, prefix: &str) -> Result<Option<String>, String> {
    match v {
        Some(s) if !sid::is_valid(&s, prefix) => Err(format!(
            "{key}: {s:?} is not a SID ({prefix} + 32 hex digits)"
        )),
        v => Ok(v),
    }
}

fn parse(seed: SeedFile, default_account: &str, accounts: &[String]) -> Result<Seed, String> {
    let mut services = Vec::new();
    for (i, s) in seed.services.into_iter().enumerate() {
        let key = format!("services[{i}]");
        let account_sid = s.account_sid.unwrap_or_else(|| default_account.to_owned());
        if !accounts.contains(&account_sid) {
            return Err(format!(
                "{key}.account_sid: {account_sid} is not a configured account"
            ));
        }
        let sid = check_sid(&format!("{key}.sid"), s.sid, sid::SERVICE)?;
        let friendly_name = at(
            &format!("{key}.friendly_name"),
            FriendlyName::try_from(s.friendly_name.as_str()),
        )?;
        let code_length = at(
            &format!("{key}.code_length"),
            s.code_length.map(CodeLength::try_from).transpose(),
        )?;
        let mut rate_limits: Vec<RateLimit> = Vec::new();
        for (j, r) in s.rate_limits.into_iter().enumerate() {
            rate_limits.push(parse_rate_limit(
                &format!("{key}.rate_limits[{j}]"),
                r,
                &rate_limits,
            )?);
        }
        services.push(Service {
            account_sid,
            sid,
            friendly_name,
            code_length,
            custom_code_enabled: s.custom_code_enabled,
            rate_limits,
        });
    }
    Ok(Seed { services })
}

/// One rate limit of a service whose earlier rate limits are `before`.
fn parse_rate_limit(
    key: &str,
    r: SeedRateLimit,
    before: &[RateLimit],
) -> Result<RateLimit, String> {
    let sid = check_sid(&format!("{key}.sid"), r.sid, sid::RATE_LIMIT)?;
    let unique_name = at(
        &format!("{key}.unique_name"),
        UniqueName::try_from(r.unique_name.as_str()),
    )?;
    if before.iter().any(|o| o.unique_name == unique_name) {
        return Err(format!(
            "{key}.unique_name: {:?} appears twice",
            unique_name.as_str()
        ));
    }
    let description = at(
        &format!("{key}.description"),
        r.description
            .as_deref()
            .map(Description::try_from)
            .transpose(),
    )?;
    let mut buckets: Vec<Bucket> = Vec::new();
    for (k, b) in r.buckets.into_iter().enumerate() {
        let key = format!("{key}.buckets[{k}]");
        let sid = check_sid(&format!("{key}.sid"), b.sid, sid::BUCKET)?;
        let max = at(&format!("{key}.max"), Max::try_from(b.max))?;
        let interval = at(&format!("{key}.interval"), Interval::try_from(b.interval))?;
        if buckets.iter().any(|o| o.interval == interval) {
            return Err(format!("{key}.interval: {} appears twice", interval.get()));
        }
        buckets.push(Bucket { sid, max, interval });
    }
    Ok(RateLimit {
        sid,
        unique_name,
        description,
        buckets,
    })
}

/// Creates what the seed declares and does not exist yet, and brings the rest up to date.
pub async fn apply(state: &AppState, seed: Seed) -> Result<(), String> {
    for s in seed.services {
        apply_service(state, s).await.map_err(|e| e.message)?;
    }
    Ok(())
}

async fn apply_service(state: &AppState, s: Service) -> Result<(), ApiError> {
    let account = s.account_sid;
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
                    .find(|n| n.record.friendly_name == s.friendly_name.as_str())
                    .map(|n| n.record.clone())
            }),
        }
    };
    let code_length = s.code_length.map(CodeLength::get);
    let record = match existing {
        Some(mut r) => {
            r.friendly_name = s.friendly_name.into();
            r.code_length = code_length.unwrap_or(r.code_length);
            r.custom_code_enabled = s.custom_code_enabled.unwrap_or(r.custom_code_enabled);
            r.date_updated = now.max(r.date_created);
            state.update_service(r).await?
        }
        None => {
            let r = ServiceRecord {
                sid: s.sid.unwrap_or_else(|| sid::generate(sid::SERVICE)),
                account_sid: account,
                friendly_name: s.friendly_name.into(),
                code_length: code_length.unwrap_or(6),
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
    r: RateLimit,
    now: i64,
) -> Result<(), ApiError> {
    let existing = {
        let catalog = state.catalog.read();
        catalog
            .service(&service.account_sid, &service.sid)
            .and_then(|n| match &r.sid {
                Some(sid) => n.rate_limits.get(sid).cloned(),
                None => n.rate_limit_by_name(r.unique_name.as_str()).cloned(),
            })
    };
    let description = r.description.map(String::from);
    let (record, buckets) = match existing {
        Some(node) => {
            let mut rec = node.record.clone();
            if description.is_some() {
                rec.description = description;
            }
            rec.date_updated = now.max(rec.date_created);
            let rec = state.update_rate_limit(rec).await?;
            (rec, node.buckets.clone())
        }
        None => {
            let rec = RateLimitRecord {
                id: 0,
                sid: r.sid.unwrap_or_else(|| sid::generate(sid::RATE_LIMIT)),
                service_sid: service.sid.clone(),
                account_sid: service.account_sid.clone(),
                unique_name: r.unique_name.into(),
                description,
                date_created: now,
                date_updated: now,
            };
            let rec = state.create_rate_limit(rec).await?;
            (rec, Default::default())
        }
    };
    for b in r.buckets {
        let (max, interval) = (b.max.get(), b.interval.get());
        let found = match &b.sid {
            Some(sid) => buckets.get(sid).cloned(),
            None => buckets.values().find(|x| x.interval == interval).cloned(),
        };
        match found {
            Some(mut rec) => {
                if rec.interval != interval {
                    rec.live_since_ms = rec.rule().live_since_after_interval_change(now);
                }
                rec.max = max;
                rec.interval = interval;
                rec.date_updated = now.max(rec.date_created);
                state.update_bucket(rec).await?;
            }
            None => {
                let rec = BucketRecord {
                    sid: b.sid.unwrap_or_else(|| sid::generate(sid::BUCKET)),
                    rate_limit_sid: record.sid.clone(),
                    service_sid: record.service_sid.clone(),
                    account_sid: record.account_sid.clone(),
                    max,
                    interval,
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

    fn parse(text: &str) -> Result<Seed, String> {
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

    #[test]
    fn invalid_values_show_the_rule_the_api_applies() {
        let e = parse(r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "ip", "buckets": [{"max": 5, "interval": 86401}]}]}]}"#).unwrap_err();
        assert!(
            e.ends_with(
                "services[0].rate_limits[0].buckets[0].interval: must be an integer from 1 to 86400"
            ),
            "{e}"
        );
        let e = parse(r#"{"services": [{"friendly_name": "   "}]}"#).unwrap_err();
        assert!(
            e.ends_with("services[0].friendly_name: must not be blank"),
            "{e}"
        );
        let e = parse(r#"{"services": [{"friendly_name": "x", "code_length": 11}]}"#).unwrap_err();
        assert!(
            e.ends_with("services[0].code_length: must be an integer from 4 to 10"),
            "{e}"
        );
        let e = parse(r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "ip", "description": "a\u0007"}]}]}"#).unwrap_err();
        assert!(
            e.ends_with("services[0].rate_limits[0].description: must not contain control characters or invalid UTF-8"),
            "{e}"
        );
        let e = parse(
            r#"{"services": [{"friendly_name": "x", "rate_limits": [{"unique_name": "a b"}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.ends_with("services[0].rate_limits[0].unique_name: use 1 to 64 letters, digits, '.', '_' or '-'"),
            "{e}"
        );
    }
}
