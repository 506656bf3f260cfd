//! Why the store could not answer, and what that means for the person who asked.

/// Why the store could not answer. Its `Display` is for logs; users see [`Unavailable::message`].
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the database file {0} is missing or was replaced; restart to use a new one")]
    Vanished(String),
    #[error("the database writer stopped")]
    WriterStopped,
    #[error("{0}")]
    Unsupported(&'static str),
    /// A message's author was forgotten before it could be stored: nothing was stored, and no
    /// message is ever linked to a forgotten id.
    #[error("the author's session was forgotten")]
    AuthorForgotten,
    #[error("database error: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no database connection available: {0}")]
    PostgresPool(#[from] deadpool_postgres::PoolError),
}

/// What a store failure means for the person who asked, in the few kinds they can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The disk (or the configured database size) is full.
    DiskFull,
    /// The database or its folder cannot be written (read-only storage, missing files).
    ReadOnly,
    /// Another process held the database locked for longer than the busy timeout.
    Busy,
    /// Anything else.
    Failed,
}

impl Unavailable {
    /// A sentence for the user; it always says that nothing was changed.
    pub fn message(self) -> &'static str {
        match self {
            Unavailable::DiskFull => {
                "The server's disk is full, so nothing was changed. What was saved before is safe; please try again later."
            }
            Unavailable::ReadOnly => {
                "The server cannot write to its database right now, so nothing was changed. What was saved before is safe; please try again later."
            }
            Unavailable::Busy => {
                "The server's database is busy, so nothing was changed. Please try again in a moment."
            }
            Unavailable::Failed => {
                "The database is not available right now, so nothing was changed. Please try again in a moment."
            }
        }
    }

    /// A short reason for logs and the health endpoint.
    pub fn reason(self) -> &'static str {
        match self {
            Unavailable::DiskFull => "disk full",
            Unavailable::ReadOnly => "database not writable",
            Unavailable::Busy => "database locked",
            Unavailable::Failed => "database error",
        }
    }
}

impl StoreError {
    /// True when the database connection was found closed: nothing was done on it, or what was
    /// done may be done again.
    pub fn is_closed_connection(&self) -> bool {
        match self {
            StoreError::Postgres(e)
            | StoreError::PostgresPool(deadpool_postgres::PoolError::Backend(e)) => e.is_closed(),
            _ => false,
        }
    }

    /// What kind of failure this is, for the user.
    pub fn unavailable(&self) -> Unavailable {
        use rusqlite::ErrorCode;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
                ErrorCode::DiskFull => Unavailable::DiskFull,
                ErrorCode::ReadOnly | ErrorCode::CannotOpen => Unavailable::ReadOnly,
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Unavailable::Busy,
                // A write the operating system refused, not for lack of space (that is
                // SQLITE_FULL): the storage has turned read-only or the files immutable.
                ErrorCode::SystemIoFailure
                    if e.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE =>
                {
                    Unavailable::ReadOnly
                }
                _ => Unavailable::Failed,
            },
            StoreError::Vanished(_) => Unavailable::ReadOnly,
            StoreError::PostgresPool(deadpool_postgres::PoolError::Timeout(_)) => Unavailable::Busy,
            StoreError::PostgresPool(deadpool_postgres::PoolError::Backend(e))
            | StoreError::Postgres(e) => {
                use tokio_postgres::error::SqlState;
                match e.code() {
                    Some(&SqlState::DISK_FULL) => Unavailable::DiskFull,
                    Some(&SqlState::READ_ONLY_SQL_TRANSACTION) => Unavailable::ReadOnly,
                    Some(
                        &SqlState::LOCK_NOT_AVAILABLE
                        | &SqlState::T_R_DEADLOCK_DETECTED
                        | &SqlState::T_R_SERIALIZATION_FAILURE
                        | &SqlState::TOO_MANY_CONNECTIONS
                        | &SqlState::CANNOT_CONNECT_NOW,
                    ) => Unavailable::Busy,
                    _ => Unavailable::Failed,
                }
            }
            _ => Unavailable::Failed,
        }
    }
}
