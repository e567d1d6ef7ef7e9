//! Event Streams configuration: sinks and subscriptions are kept in the database only (no
//! cache, so nothing to apply after commit and nothing for another instance to reload), and
//! read back from it by the API and by the delivery router. Also the hook through which factor
//! and challenge outcomes reach Service Webhooks (`Engine::factor_event`).

use super::Engine;
use crate::event_streams::service_webhook::FactorEvent;
use crate::event_streams::{SinkRecord, SubscribedType, SubscriptionRecord};
use crate::store::StoreError;

impl Engine {
    /// The one hook of Service Webhooks: a factor or challenge event (already committed) for
    /// the enabled webhooks of its service subscribed to its type. Never blocks: delivery is
    /// asynchronous (`crate::event_streams::delivery`).
    pub fn factor_event(&self, event: FactorEvent) {
        self.event_streams.offer(event);
    }

    pub async fn create_sink(&self, s: SinkRecord) -> Result<SinkRecord, StoreError> {
        self.store.insert_sink(s).await
    }

    pub async fn update_sink(&self, s: SinkRecord) -> Result<SinkRecord, StoreError> {
        self.store.update_sink(s).await
    }

    /// Deletes the sink and its subscriptions; events still queued for it are still sent.
    pub async fn delete_sink(&self, account: &str, sid: &str) -> Result<(), StoreError> {
        self.store
            .delete_sink(account.to_owned(), sid.to_owned())
            .await
    }

    pub async fn sink(&self, account: &str, sid: &str) -> Result<Option<SinkRecord>, StoreError> {
        self.store.sink(account, sid).await
    }

    /// The account's sinks, ordered by SID, each with whether a subscription uses it.
    pub async fn sinks(&self, account: &str) -> Result<Vec<(SinkRecord, bool)>, StoreError> {
        self.store.sinks(account).await
    }

    pub async fn create_subscription(
        &self,
        s: SubscriptionRecord,
        types: Vec<SubscribedType>,
    ) -> Result<SubscriptionRecord, StoreError> {
        self.store.insert_subscription(s, types).await
    }

    pub async fn update_subscription(
        &self,
        s: SubscriptionRecord,
    ) -> Result<SubscriptionRecord, StoreError> {
        self.store.update_subscription(s).await
    }

    pub async fn delete_subscription(&self, account: &str, sid: &str) -> Result<(), StoreError> {
        self.store
            .delete_subscription(account.to_owned(), sid.to_owned())
            .await
    }

    pub async fn subscription(
        &self,
        account: &str,
        sid: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        self.store.subscription(account, sid).await
    }

    pub async fn subscriptions(
        &self,
        account: &str,
        sink: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        self.store.subscriptions(account, sink).await
    }

    pub async fn subscribed_types(
        &self,
        subscription: &str,
    ) -> Result<Vec<SubscribedType>, StoreError> {
        self.store.subscribed_types(subscription).await
    }

    /// Whether the type was subscribed already (its schema version is then replaced).
    pub async fn put_subscribed_type(&self, t: SubscribedType) -> Result<bool, StoreError> {
        self.store.upsert_subscribed_type(t).await
    }

    pub async fn delete_subscribed_type(
        &self,
        subscription: &str,
        event_type: &str,
    ) -> Result<(), StoreError> {
        self.store
            .delete_subscribed_type(subscription.to_owned(), event_type.to_owned())
            .await
    }

    /// The sinks of the account subscribed to `event_type`, with the schema version each asked
    /// for.
    pub async fn event_targets(
        &self,
        account: &str,
        event_type: &str,
    ) -> Result<Vec<(SinkRecord, i64)>, StoreError> {
        self.store.event_targets(account, event_type).await
    }
}
