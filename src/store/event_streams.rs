//! The SQL of Event Streams' sinks and subscriptions (migration 0005), written once for both
//! databases like `sql`. Reads go to the pool (on SQLite: the readers); writes to the writer
//! task on SQLite and a transaction on PostgreSQL. Nothing is cached: each instance sharing a
//! PostgreSQL database reads the rows another one wrote.

use super::{Store, StoreError};
use crate::event_streams::{SinkRecord, SubscribedType, SubscriptionRecord};

macro_rules! statements {
    ($conn:ty, $row:ty, $sql:path) => {
        use sqlx::Row;

        use crate::event_streams::{SinkRecord, SubscribedType, SubscriptionRecord};
        use crate::store::StoreError;

        fn found(rows: u64, path: impl FnOnce() -> String) -> Result<(), StoreError> {
            if rows == 0 {
                Err(StoreError::NotFound(path()))
            } else {
                Ok(())
            }
        }

        const SINK_COLUMNS: &str = "sid, account_sid, description, sink_type, sink_configuration, status, date_created, date_updated";
        const SUBSCRIPTION_COLUMNS: &str = "sid, account_sid, sink_sid, description, date_created, date_updated";

        fn sink_from_row(r: &$row) -> SinkRecord {
            SinkRecord {
                sid: r.get(0),
                account_sid: r.get(1),
                description: r.get(2),
                sink_type: r.get(3),
                sink_configuration: serde_json::from_str(r.get::<&str, _>(4))
                    .unwrap_or(serde_json::Value::Null),
                status: r.get(5),
                date_created: r.get(6),
                date_updated: r.get(7),
            }
        }

        fn subscription_from_row(r: &$row) -> SubscriptionRecord {
            SubscriptionRecord {
                sid: r.get(0),
                account_sid: r.get(1),
                sink_sid: r.get(2),
                description: r.get(3),
                date_created: r.get(4),
                date_updated: r.get(5),
            }
        }

        pub async fn insert_sink(c: &mut $conn, s: &SinkRecord) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO event_sinks (sid, account_sid, description, sink_type, sink_configuration, status, date_created, date_updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))
                .bind(&s.sid)
                .bind(&s.account_sid)
                .bind(&s.description)
                .bind(&s.sink_type)
                .bind(serde_json::to_string(&s.sink_configuration)?)
                .bind(&s.status)
                .bind(s.date_created)
                .bind(s.date_updated)
                .execute(c)
                .await?;
            Ok(())
        }

        pub async fn update_sink(c: &mut $conn, s: &SinkRecord) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("UPDATE event_sinks SET description = ?, date_updated = ? WHERE sid = ? AND account_sid = ?"))
                .bind(&s.description)
                .bind(s.date_updated)
                .bind(&s.sid)
                .bind(&s.account_sid)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Sinks/{}", s.sid))
        }

        /// Deletes a sink with its subscriptions.
        pub async fn delete_sink(c: &mut $conn, account: &str, sid: &str) -> Result<(), StoreError> {
            sqlx::query(&$sql("DELETE FROM event_subscribed_types WHERE subscription_sid IN (SELECT sid FROM event_subscriptions WHERE sink_sid = ? AND account_sid = ?)"))
                .bind(sid)
                .bind(account)
                .execute(&mut *c)
                .await?;
            sqlx::query(&$sql("DELETE FROM event_subscriptions WHERE sink_sid = ? AND account_sid = ?"))
                .bind(sid)
                .bind(account)
                .execute(&mut *c)
                .await?;
            let done = sqlx::query(&$sql("DELETE FROM event_sinks WHERE sid = ? AND account_sid = ?"))
                .bind(sid)
                .bind(account)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Sinks/{sid}"))
        }

        pub async fn sink(c: &mut $conn, account: &str, sid: &str) -> Result<Option<SinkRecord>, sqlx::Error> {
            let row = sqlx::query(&$sql(&format!("SELECT {SINK_COLUMNS} FROM event_sinks WHERE sid = ? AND account_sid = ?")))
                .bind(sid)
                .bind(account)
                .fetch_optional(c)
                .await?;
            Ok(row.as_ref().map(sink_from_row))
        }

        /// An account's sinks, ordered by SID, each with whether a subscription uses it.
        pub async fn sinks(c: &mut $conn, account: &str) -> Result<Vec<(SinkRecord, bool)>, sqlx::Error> {
            let rows = sqlx::query(&$sql(&format!("SELECT {SINK_COLUMNS}, (SELECT COUNT(*) FROM event_subscriptions s WHERE s.sink_sid = event_sinks.sid) FROM event_sinks WHERE account_sid = ? ORDER BY sid")))
                .bind(account)
                .fetch_all(c)
                .await?;
            Ok(rows.iter().map(|r| (sink_from_row(r), r.get::<i64, _>(8) > 0)).collect())
        }

        pub async fn insert_subscription(
            c: &mut $conn,
            s: &SubscriptionRecord,
            types: &[SubscribedType],
        ) -> Result<(), StoreError> {
            sqlx::query(&$sql("INSERT INTO event_subscriptions (sid, account_sid, sink_sid, description, date_created, date_updated) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM event_sinks WHERE sid = ? AND account_sid = ?)"))
                .bind(&s.sid)
                .bind(&s.account_sid)
                .bind(&s.sink_sid)
                .bind(&s.description)
                .bind(s.date_created)
                .bind(s.date_updated)
                .bind(&s.sink_sid)
                .bind(&s.account_sid)
                .execute(&mut *c)
                .await
                .map_err(StoreError::from)
                .and_then(|done| found(done.rows_affected(), || format!("/Sinks/{}", s.sink_sid)))?;
            for t in types {
                upsert_subscribed_type(&mut *c, t).await?;
            }
            Ok(())
        }

        pub async fn update_subscription(c: &mut $conn, s: &SubscriptionRecord) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("UPDATE event_subscriptions SET description = ?, date_updated = ? WHERE sid = ? AND account_sid = ?"))
                .bind(&s.description)
                .bind(s.date_updated)
                .bind(&s.sid)
                .bind(&s.account_sid)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Subscriptions/{}", s.sid))
        }

        pub async fn delete_subscription(c: &mut $conn, account: &str, sid: &str) -> Result<(), StoreError> {
            sqlx::query(&$sql("DELETE FROM event_subscribed_types WHERE subscription_sid = ? AND account_sid = ?"))
                .bind(sid)
                .bind(account)
                .execute(&mut *c)
                .await?;
            let done = sqlx::query(&$sql("DELETE FROM event_subscriptions WHERE sid = ? AND account_sid = ?"))
                .bind(sid)
                .bind(account)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Subscriptions/{sid}"))
        }

        pub async fn subscription(c: &mut $conn, account: &str, sid: &str) -> Result<Option<SubscriptionRecord>, sqlx::Error> {
            let row = sqlx::query(&$sql(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE sid = ? AND account_sid = ?")))
                .bind(sid)
                .bind(account)
                .fetch_optional(c)
                .await?;
            Ok(row.as_ref().map(subscription_from_row))
        }

        /// An account's subscriptions (of one sink, if given), ordered by SID.
        pub async fn subscriptions(c: &mut $conn, account: &str, sink: Option<&str>) -> Result<Vec<SubscriptionRecord>, sqlx::Error> {
            let rows = sqlx::query(&$sql(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM event_subscriptions WHERE account_sid = ? AND (? IS NULL OR sink_sid = ?) ORDER BY sid")))
                .bind(account)
                .bind(sink)
                .bind(sink)
                .fetch_all(c)
                .await?;
            Ok(rows.iter().map(subscription_from_row).collect())
        }

        /// A subscription's types, ordered by type.
        pub async fn subscribed_types(c: &mut $conn, subscription: &str) -> Result<Vec<SubscribedType>, sqlx::Error> {
            let rows = sqlx::query(&$sql("SELECT subscription_sid, account_sid, type, schema_version FROM event_subscribed_types WHERE subscription_sid = ? ORDER BY type"))
                .bind(subscription)
                .fetch_all(c)
                .await?;
            Ok(rows
                .iter()
                .map(|r| SubscribedType {
                    subscription_sid: r.get(0),
                    account_sid: r.get(1),
                    event_type: r.get(2),
                    schema_version: r.get(3),
                })
                .collect())
        }

        /// Adds a type to a subscription, or changes its schema version; whether it was there.
        pub async fn upsert_subscribed_type(c: &mut $conn, t: &SubscribedType) -> Result<bool, StoreError> {
            let done = sqlx::query(&$sql("UPDATE event_subscribed_types SET schema_version = ? WHERE subscription_sid = ? AND type = ?"))
                .bind(t.schema_version)
                .bind(&t.subscription_sid)
                .bind(&t.event_type)
                .execute(&mut *c)
                .await?;
            if done.rows_affected() > 0 {
                return Ok(true);
            }
            sqlx::query(&$sql("INSERT INTO event_subscribed_types (subscription_sid, account_sid, type, schema_version) VALUES (?, ?, ?, ?)"))
                .bind(&t.subscription_sid)
                .bind(&t.account_sid)
                .bind(&t.event_type)
                .bind(t.schema_version)
                .execute(c)
                .await?;
            Ok(false)
        }

        pub async fn delete_subscribed_type(c: &mut $conn, subscription: &str, event_type: &str) -> Result<(), StoreError> {
            let done = sqlx::query(&$sql("DELETE FROM event_subscribed_types WHERE subscription_sid = ? AND type = ?"))
                .bind(subscription)
                .bind(event_type)
                .execute(c)
                .await?;
            found(done.rows_affected(), || format!("/Subscriptions/{subscription}/SubscribedEvents/{event_type}"))
        }

        /// The sinks of an account subscribed to `event_type`, each with the schema version
        /// asked for (a sink subscribed at two versions appears twice), ordered by sink SID.
        pub async fn targets(c: &mut $conn, account: &str, event_type: &str) -> Result<Vec<(SinkRecord, i64)>, sqlx::Error> {
            let columns: Vec<String> = SINK_COLUMNS.split(", ").map(|c| format!("k.{c}")).collect();
            let rows = sqlx::query(&$sql(&format!("SELECT DISTINCT {}, t.schema_version FROM event_subscribed_types t JOIN event_subscriptions s ON s.sid = t.subscription_sid JOIN event_sinks k ON k.sid = s.sink_sid WHERE t.account_sid = ? AND t.type = ? ORDER BY k.sid, t.schema_version", columns.join(", "))))
                .bind(account)
                .bind(event_type)
                .fetch_all(c)
                .await?;
            Ok(rows.iter().map(|r| (sink_from_row(r), r.get::<i64, _>(8))).collect())
        }

        /// Deletes every sink and subscription of an account (control-plane reset).
        pub async fn delete_account(c: &mut $conn, account: &str) -> Result<(), StoreError> {
            for sql in [
                "DELETE FROM event_subscribed_types WHERE account_sid = ?",
                "DELETE FROM event_subscriptions WHERE account_sid = ?",
                "DELETE FROM event_sinks WHERE account_sid = ?",
            ] {
                sqlx::query(&$sql(sql)).bind(account).execute(&mut *c).await?;
            }
            Ok(())
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
    pub async fn insert_sink(&self, s: SinkRecord) -> Result<SinkRecord, StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| q::insert_sink(
            c, &s
        )
        .await
        .map(|_| s))
    }

    pub async fn update_sink(&self, s: SinkRecord) -> Result<SinkRecord, StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| q::update_sink(
            c, &s
        )
        .await
        .map(|_| s))
    }

    pub async fn delete_sink(&self, account: String, sid: String) -> Result<(), StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| q::delete_sink(
            c, &account, &sid
        )
        .await)
    }

    pub async fn sink(&self, account: &str, sid: &str) -> Result<Option<SinkRecord>, StoreError> {
        read!(self, event_streams, |c, q| Ok(
            q::sink(c, account, sid).await?
        ))
    }

    pub async fn sinks(&self, account: &str) -> Result<Vec<(SinkRecord, bool)>, StoreError> {
        read!(self, event_streams, |c, q| Ok(q::sinks(c, account).await?))
    }

    pub async fn insert_subscription(
        &self,
        s: SubscriptionRecord,
        types: Vec<SubscribedType>,
    ) -> Result<SubscriptionRecord, StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::insert_subscription(c, &s, &types).await.map(|_| s)
        })
    }

    pub async fn update_subscription(
        &self,
        s: SubscriptionRecord,
    ) -> Result<SubscriptionRecord, StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::update_subscription(c, &s).await.map(|_| s)
        })
    }

    pub async fn delete_subscription(
        &self,
        account: String,
        sid: String,
    ) -> Result<(), StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::delete_subscription(c, &account, &sid).await
        })
    }

    pub async fn subscription(
        &self,
        account: &str,
        sid: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        read!(self, event_streams, |c, q| Ok(q::subscription(
            c, account, sid
        )
        .await?))
    }

    pub async fn subscriptions(
        &self,
        account: &str,
        sink: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        read!(self, event_streams, |c, q| Ok(q::subscriptions(
            c, account, sink
        )
        .await?))
    }

    pub async fn subscribed_types(
        &self,
        subscription: &str,
    ) -> Result<Vec<SubscribedType>, StoreError> {
        read!(self, event_streams, |c, q| Ok(q::subscribed_types(
            c,
            subscription
        )
        .await?))
    }

    /// Whether the type was there already.
    pub async fn upsert_subscribed_type(&self, t: SubscribedType) -> Result<bool, StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::upsert_subscribed_type(c, &t).await
        })
    }

    pub async fn delete_subscribed_type(
        &self,
        subscription: String,
        event_type: String,
    ) -> Result<(), StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::delete_subscribed_type(c, &subscription, &event_type).await
        })
    }

    /// Deletes an account's sinks and subscriptions (control-plane reset of everything).
    pub async fn delete_event_streams(&self, account: String) -> Result<(), StoreError> {
        dual!(self, write, |_| {}, event_streams, |c, q| {
            q::delete_account(c, &account).await
        })
    }

    pub async fn event_targets(
        &self,
        account: &str,
        event_type: &str,
    ) -> Result<Vec<(SinkRecord, i64)>, StoreError> {
        read!(self, event_streams, |c, q| Ok(q::targets(
            c, account, event_type
        )
        .await?))
    }
}
