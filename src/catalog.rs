//! The configuration in memory: every account's services, rate limits and buckets.
//!
//! The database is the durable copy; this is what requests read, so the hot path never asks the
//! database for configuration. Only the store's writer task changes it, after the change has
//! committed and in commit order, so a request that starts after a 2xx sees that change.

pub mod values;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::Rule;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Push {
    pub include_date: bool,
    pub apn_credential_sid: Option<String>,
    pub fcm_credential_sid: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Totp {
    pub issuer: Option<String>,
    pub time_step: Option<i64>,
    pub code_length: Option<i64>,
    pub skew: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Whatsapp {
    pub msg_service_sid: Option<String>,
    pub from: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RelyingParty {
    pub id: Option<String>,
    pub name: Option<String>,
    pub origins: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Passkeys {
    pub relying_party: RelyingParty,
    pub authenticator_attachment: Option<String>,
    pub discoverable_credentials: Option<String>,
    pub user_verification: Option<String>,
}

/// The attributes of a service the limiter never reads, stored as JSON.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceSettings {
    pub lookup_enabled: bool,
    pub psd2_enabled: bool,
    pub skip_sms_to_landlines: bool,
    pub dtmf_input_required: bool,
    pub tts_name: Option<String>,
    pub do_not_share_warning_enabled: bool,
    pub default_template_sid: Option<String>,
    pub verify_event_subscription_enabled: bool,
    pub push: Push,
    pub totp: Totp,
    pub whatsapp: Whatsapp,
    pub passkeys: Passkeys,
}

impl Default for ServiceSettings {
    /// Twilio's documented defaults.
    fn default() -> Self {
        Self {
            lookup_enabled: false,
            psd2_enabled: false,
            skip_sms_to_landlines: false,
            dtmf_input_required: true,
            tts_name: None,
            do_not_share_warning_enabled: false,
            default_template_sid: None,
            verify_event_subscription_enabled: false,
            push: Push::default(),
            totp: Totp::default(),
            whatsapp: Whatsapp::default(),
            passkeys: Passkeys::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    pub sid: String,
    pub account_sid: String,
    pub friendly_name: String,
    pub code_length: u32,
    pub custom_code_enabled: bool,
    pub settings: ServiceSettings,
    pub date_created: i64,
    pub date_updated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitRecord {
    pub id: i64,
    pub sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub unique_name: String,
    pub description: Option<String>,
    pub date_created: i64,
    pub date_updated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BucketRecord {
    pub sid: String,
    pub rate_limit_sid: String,
    pub service_sid: String,
    pub account_sid: String,
    pub max: u32,
    pub interval: u32,
    pub live_since_ms: i64,
    pub date_created: i64,
    pub date_updated: i64,
}

impl BucketRecord {
    pub fn rule(&self) -> Rule {
        Rule {
            max: self.max,
            interval_ms: i64::from(self.interval) * 1000,
            live_since_ms: self.live_since_ms,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitNode {
    pub record: RateLimitRecord,
    pub buckets: BTreeMap<String, BucketRecord>,
    /// The buckets' rules, derived once per change for the hot path.
    pub rules: Vec<Rule>,
}

impl RateLimitNode {
    fn new(record: RateLimitRecord, buckets: BTreeMap<String, BucketRecord>) -> Self {
        let rules = buckets.values().map(BucketRecord::rule).collect();
        Self {
            record,
            buckets,
            rules,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceNode {
    pub record: ServiceRecord,
    pub rate_limits: BTreeMap<String, Arc<RateLimitNode>>,
    /// unique_name → rate limit SID.
    pub by_name: HashMap<String, String>,
}

impl ServiceNode {
    pub fn rate_limit_by_name(&self, unique_name: &str) -> Option<&Arc<RateLimitNode>> {
        self.by_name
            .get(unique_name)
            .and_then(|sid| self.rate_limits.get(sid))
    }
}

/// Where a rate limit lives, by its internal id.
#[derive(Debug, Clone)]
pub struct RateLimitHome {
    pub account_sid: String,
    pub service_sid: String,
    pub rate_limit_sid: String,
}

#[derive(Debug, Default)]
pub struct Catalog {
    accounts: HashMap<String, BTreeMap<String, Arc<ServiceNode>>>,
    rate_limit_homes: HashMap<i64, RateLimitHome>,
}

impl Catalog {
    pub fn services(&self, account: &str) -> Option<&BTreeMap<String, Arc<ServiceNode>>> {
        self.accounts.get(account)
    }

    pub fn service(&self, account: &str, sid: &str) -> Option<&Arc<ServiceNode>> {
        self.accounts.get(account)?.get(sid)
    }

    pub fn rate_limit(
        &self,
        account: &str,
        service: &str,
        sid: &str,
    ) -> Option<&Arc<RateLimitNode>> {
        self.service(account, service)?.rate_limits.get(sid)
    }

    pub fn bucket(
        &self,
        account: &str,
        service: &str,
        rate_limit: &str,
        sid: &str,
    ) -> Option<&BucketRecord> {
        self.rate_limit(account, service, rate_limit)?
            .buckets
            .get(sid)
    }

    pub fn rate_limit_home(&self, id: i64) -> Option<&RateLimitHome> {
        self.rate_limit_homes.get(&id)
    }

    /// A rate limit by its id, with its account.
    pub fn rate_limit_by_id(&self, id: i64) -> Option<(&str, &Arc<RateLimitNode>)> {
        let home = self.rate_limit_home(id)?;
        let rl = self.rate_limit(&home.account_sid, &home.service_sid, &home.rate_limit_sid)?;
        Some((home.account_sid.as_str(), rl))
    }

    pub fn rate_limit_ids(&self, account: &str) -> Vec<i64> {
        self.rate_limit_homes
            .iter()
            .filter(|(_, h)| h.account_sid == account)
            .map(|(id, _)| *id)
            .collect()
    }

    fn node_mut(&mut self, account: &str, service: &str) -> Option<&mut ServiceNode> {
        self.accounts
            .get_mut(account)?
            .get_mut(service)
            .map(Arc::make_mut)
    }

    pub fn put_service(&mut self, record: ServiceRecord) {
        let services = self.accounts.entry(record.account_sid.clone()).or_default();
        match services.get_mut(&record.sid) {
            Some(node) => Arc::make_mut(node).record = record,
            None => {
                services.insert(
                    record.sid.clone(),
                    Arc::new(ServiceNode {
                        record,
                        rate_limits: BTreeMap::new(),
                        by_name: HashMap::new(),
                    }),
                );
            }
        }
    }

    /// Removes a service; returns the internal ids of its rate limits.
    pub fn remove_service(&mut self, account: &str, sid: &str) -> Vec<i64> {
        let Some(node) = self.accounts.get_mut(account).and_then(|s| s.remove(sid)) else {
            return Vec::new();
        };
        let ids: Vec<i64> = node.rate_limits.values().map(|r| r.record.id).collect();
        for id in &ids {
            self.rate_limit_homes.remove(id);
        }
        ids
    }

    pub fn put_rate_limit(&mut self, record: RateLimitRecord) {
        let home = RateLimitHome {
            account_sid: record.account_sid.clone(),
            service_sid: record.service_sid.clone(),
            rate_limit_sid: record.sid.clone(),
        };
        let id = record.id;
        let Some(node) = self.node_mut(&record.account_sid, &record.service_sid) else {
            return;
        };
        node.by_name
            .insert(record.unique_name.clone(), record.sid.clone());
        let buckets = node
            .rate_limits
            .get(&record.sid)
            .map(|r| r.buckets.clone())
            .unwrap_or_default();
        node.rate_limits.insert(
            record.sid.clone(),
            Arc::new(RateLimitNode::new(record, buckets)),
        );
        self.rate_limit_homes.insert(id, home);
    }

    /// Removes a rate limit; returns its internal id.
    pub fn remove_rate_limit(&mut self, account: &str, service: &str, sid: &str) -> Option<i64> {
        let node = self.node_mut(account, service)?;
        let removed = node.rate_limits.remove(sid)?;
        node.by_name.remove(&removed.record.unique_name);
        self.rate_limit_homes.remove(&removed.record.id);
        Some(removed.record.id)
    }

    pub fn put_bucket(&mut self, record: BucketRecord) {
        self.change_buckets(
            &record.account_sid.clone(),
            &record.service_sid.clone(),
            &record.rate_limit_sid.clone(),
            |b| {
                b.insert(record.sid.clone(), record);
            },
        );
    }

    pub fn remove_bucket(&mut self, account: &str, service: &str, rate_limit: &str, sid: &str) {
        self.change_buckets(account, service, rate_limit, |b| {
            b.remove(sid);
        });
    }

    fn change_buckets(
        &mut self,
        account: &str,
        service: &str,
        rate_limit: &str,
        change: impl FnOnce(&mut BTreeMap<String, BucketRecord>),
    ) {
        let Some(node) = self.node_mut(account, service) else {
            return;
        };
        let Some(rl) = node.rate_limits.get(rate_limit) else {
            return;
        };
        let mut buckets = rl.buckets.clone();
        change(&mut buckets);
        let updated = RateLimitNode::new(rl.record.clone(), buckets);
        node.rate_limits
            .insert(rate_limit.to_owned(), Arc::new(updated));
    }

    /// Removes every service of an account; returns the internal ids of their rate limits.
    pub fn clear_account(&mut self, account: &str) -> Vec<i64> {
        let sids: Vec<String> = self
            .accounts
            .get(account)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        sids.iter()
            .flat_map(|sid| self.remove_service(account, sid))
            .collect()
    }
}

impl Catalog {
    /// Every account that has services.
    pub fn accounts(&self) -> impl Iterator<Item = &String> {
        self.accounts.keys()
    }

    /// Every rate limit, with where it lives.
    pub fn rate_limits(&self) -> impl Iterator<Item = (&RateLimitHome, &Arc<RateLimitNode>)> {
        self.rate_limit_homes.values().filter_map(|home| {
            let rl = self.rate_limit(&home.account_sid, &home.service_sid, &home.rate_limit_sid)?;
            Some((home, rl))
        })
    }
}
