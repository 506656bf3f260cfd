//! The PostgreSQL schema: `schema.postgres.sql` for a database that has none, its version in
//! `livesession_meta`, and the fingerprint of the key every instance must sign cookies with.

use anyhow::{Context, bail};

use super::{ADVISORY_LOCK, PostgresStore};
use crate::store::StoreError;

/// The whole schema, applied to a database that has none of it.
const SCHEMA: &str = include_str!("../../../schema.postgres.sql");

/// The schema version this build writes; `schema.postgres.sql` records it in `livesession_meta`.
pub const SCHEMA_VERSION: i64 = 4;

/// Upgrades, by the version they start from (`migrate` records the next version after each).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../migrations/postgres/002_presence.sql"),
    ),
    (
        2,
        include_str!("../../../migrations/postgres/003_link_codes.sql"),
    ),
    (
        3,
        include_str!("../../../migrations/postgres/004_devices.sql"),
    ),
];

/// The advisory lock (PostgreSQL's one-`bigint` form) instances starting together take turns
/// on, to create the schema or record the key.
const SCHEMA_LOCK: i64 = 0x6c69_7665_0001;

impl PostgresStore {
    /// Records `current` as the fingerprint of the key that signs cookies, unless the database
    /// already names another one. A fingerprint among `previous` is a rotation: it is replaced.
    /// Returns the fingerprint the database held, when it was neither.
    pub(in crate::store) async fn claim_key(
        &self,
        current: &str,
        previous: &[String],
    ) -> Result<Option<String>, StoreError> {
        self.retry(|mut client| async move {
            let tx = client.transaction().await?;
            // Instances starting together on a new database take turns: the first records its
            // key, the others compare with it.
            tx.execute(ADVISORY_LOCK, &[&SCHEMA_LOCK]).await?;
            let held = match tx
                .query_opt(
                    "SELECT value FROM livesession_meta WHERE name = 'key_fingerprint' FOR UPDATE",
                    &[],
                )
                .await?
            {
                Some(row) => Some(row.try_get::<_, String>(0)?),
                None => None,
            };
            let other = match held {
                Some(held) if held == current => None,
                Some(held) if !previous.contains(&held) => Some(held),
                _ => {
                    tx.execute(
                        "INSERT INTO livesession_meta (name, value) VALUES ('key_fingerprint', $1)
                         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                        &[&current],
                    )
                    .await?;
                    None
                }
            };
            tx.commit().await?;
            Ok(other)
        })
        .await
    }
}

/// Checks that the schema is there at this build's version, changing nothing.
pub(super) async fn check(client: &deadpool_postgres::Object) -> anyhow::Result<()> {
    let has_meta: bool = client
        .query_one("SELECT to_regclass('livesession_meta') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !has_meta {
        bail!("it has no livesession schema; start the server on it once to create one");
    }
    let recorded: Option<String> = client
        .query_opt(
            "SELECT value FROM livesession_meta WHERE name = 'schema_version'",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    match recorded.as_deref().and_then(|v| v.parse::<i64>().ok()) {
        Some(SCHEMA_VERSION) => Ok(()),
        Some(version) => bail!(
            "its schema is version {version} and this build's is {SCHEMA_VERSION}; run the \
             matching livesession (a server of this build upgrades an older schema)"
        ),
        None => bail!("its livesession_meta table records no schema version"),
    }
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a database it cannot use.
pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute(ADVISORY_LOCK, &[&SCHEMA_LOCK]).await?;
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('livesession_meta') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !has_meta {
        let foreign: Option<String> = tx
            .query_one(
                "SELECT string_agg(name, ', ') FROM unnest(ARRAY['settings', 'messages',
                 'forgotten', 'health']) AS name WHERE to_regclass(name) IS NOT NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        if let Some(tables) = foreign {
            bail!(
                "it already has tables named {tables} that livesession did not create; \
                 give livesession a database of its own"
            );
        }
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        tracing::info!(version = SCHEMA_VERSION, "created the PostgreSQL schema");
        return Ok(());
    }
    let recorded: Option<String> = tx
        .query_opt(
            "SELECT value FROM livesession_meta WHERE name = 'schema_version'",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    let mut version: i64 = recorded
        .as_deref()
        .and_then(|v| v.parse().ok())
        .context("its livesession_meta table records no schema version")?;
    if version > SCHEMA_VERSION {
        bail!(
            "it was written by a newer livesession (schema version {version}; this build knows \
             up to {SCHEMA_VERSION}); run the newer version, or restore a backup"
        );
    }
    while version < SCHEMA_VERSION {
        let Some((_, sql)) = MIGRATIONS.iter().find(|(from, _)| *from == version) else {
            bail!("no upgrade from schema version {version}");
        };
        tx.batch_execute(sql).await?;
        version += 1;
        tx.execute(
            "UPDATE livesession_meta SET value = $1 WHERE name = 'schema_version'",
            &[&version.to_string()],
        )
        .await?;
        tracing::info!(version, "upgraded the PostgreSQL schema");
    }
    tx.commit().await?;
    Ok(())
}
