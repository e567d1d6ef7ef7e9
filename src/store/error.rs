//! What can go wrong in the store, in the store's own terms; the HTTP edge maps each to Twilio's
//! error code (`impl From<StoreError> for ApiError` in `crate::api`).

/// A store failure: a rule the database enforces, or the database itself failing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row to read, change or delete is not there; its Twilio resource path.
    #[error("{0} not found")]
    NotFound(String),
    /// The service already has this many rate limits (the configured maximum).
    #[error("the service already has {0} rate limits")]
    TooManyRateLimits(u32),
    #[error("a rate limit with this unique name exists in the service")]
    DuplicateUniqueName,
    /// The rate limit already has this many buckets (the configured maximum).
    #[error("the rate limit already has {0} buckets")]
    TooManyBuckets(u32),
    #[error("a bucket with this interval exists in the rate limit")]
    DuplicateInterval,
    #[error("the service has a messaging configuration for this country")]
    DuplicateCountry,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("encoding a row: {0}")]
    Encoding(#[from] serde_json::Error),
    /// The batch holding this change failed to commit: nothing of it was kept.
    #[error("the transaction did not commit")]
    NotCommitted,
    /// The writer has stopped (shutting down).
    #[error("the store is shutting down")]
    Unavailable,
}

impl StoreError {
    /// Maps a unique-constraint violation to `on_unique`; anything else stays a database error.
    /// (`is_unique_violation` works on both drivers; `constraint()` is filled by PostgreSQL's
    /// only.)
    pub fn unique_or(e: sqlx::Error, on_unique: StoreError) -> StoreError {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => on_unique,
            _ => StoreError::Database(e),
        }
    }
}
