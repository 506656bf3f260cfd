//! The SQLite schema: `schema.sql` for a new database, the upgrades in `migrations/` for an older
//! one, the settings every connection gets, and the check a maintenance command makes before it
//! touches a database.

use std::path::Path;

use anyhow::{Context, bail};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::store::{Durability, StoreOptions};

/// The size a checkpointed WAL file is cut back to, in bytes.
const WAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// The whole schema, applied to a new database.
const SCHEMA: &str = include_str!("../../../schema.sql");

/// The schema version this build writes; `schema.sql` sets `PRAGMA user_version` to it.
pub const SCHEMA_VERSION: i64 = 5;

/// Upgrades, by the version they start from; each ends by setting `user_version` to the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/002_messages.sql")),
    (2, include_str!("../../../migrations/003_page_acks.sql")),
    (3, include_str!("../../../migrations/004_link_codes.sql")),
    (4, include_str!("../../../migrations/005_devices.sql")),
];

/// A configured connection to the existing database at `path`, if it holds this build's schema;
/// the file is neither created nor written before that is known.
pub(super) fn open_current(
    path: &Path,
    options: StoreOptions,
    accept_older: bool,
) -> anyhow::Result<Connection> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("there is no database there (is --data-dir right?)")
        }
        Err(e) => return Err(e).context("cannot read it"),
        Ok(meta) if !meta.is_file() => bail!("it is not a file"),
        Ok(_) => {}
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(options.busy_timeout)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("not a SQLite database, or a damaged one")?;
    match version {
        SCHEMA_VERSION => {}
        0 => bail!("it is not a livesession database"),
        newer if newer > SCHEMA_VERSION => bail!(
            "it was written by a newer livesession (schema version {newer}; this build knows up \
             to {SCHEMA_VERSION})"
        ),
        older if older > 0 && accept_older => {}
        older => bail!(
            "it has the older schema version {older}; start this version's server once to \
             upgrade it (it keeps everything)"
        ),
    }
    configure(&mut conn, options)?;
    Ok(conn)
}

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// The settings every connection gets, before it is used for anything.
pub(super) fn configure(conn: &mut Connection, options: StoreOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(options.busy_timeout)?;
    // Every statement this process runs stays prepared (rusqlite keeps 16 by default, fewer
    // than the writer alone runs).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL mode; concurrent readers will block on writers");
    }
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Checkpoints run every 1000 pages (SQLite's default); after one, a WAL that grew past this
    // (a burst, a long reader) is cut back, so the file does not keep its high-water mark.
    conn.pragma_update_and_check(None, "journal_size_limit", WAL_SIZE_LIMIT, |row| {
        row.get::<_, i64>(0)
    })?;
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], or refuses a database from a newer version.
pub(super) fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("not a SQLite database, or a damaged one")?;
    let found: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .context("not a SQLite database, or a damaged one")?;
    match found {
        SCHEMA_VERSION => return Ok(()),
        0 => {
            let tables: i64 = tx.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
                [],
                |row| row.get(0),
            )?;
            if tables > 0 {
                bail!(
                    "it holds tables but no livesession schema version; is it another program's database?"
                );
            }
            tx.execute_batch(SCHEMA).context("applying schema.sql")?;
            tracing::info!(version = SCHEMA_VERSION, "created the database schema");
        }
        newer if newer > SCHEMA_VERSION => bail!(
            "it was written by a newer livesession (schema version {newer}; this build knows up to \
             {SCHEMA_VERSION}); run the newer version or restore a backup"
        ),
        older => {
            for (from, sql) in MIGRATIONS.iter().filter(|(from, _)| *from >= older) {
                tx.execute_batch(sql)
                    .with_context(|| format!("upgrading the schema from version {from}"))?;
            }
            let now: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if now != SCHEMA_VERSION {
                bail!("schema version {older} is not one this build can upgrade");
            }
            tracing::info!(
                from = older,
                to = SCHEMA_VERSION,
                "upgraded the database schema"
            );
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_sql_records_the_version_this_build_expects() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// Every table's columns and every index, as SQLite describes them.
    fn shape(conn: &Connection) -> Vec<String> {
        let mut shape = Vec::new();
        let mut objects = conn
            .prepare("SELECT type, name, tbl_name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        let objects: Vec<(String, String, String)> = objects
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for (kind, name, table) in objects {
            shape.push(format!("{kind} {name} on {table}"));
            let pragma = if kind == "table" {
                "table_xinfo"
            } else {
                "index_xinfo"
            };
            let mut columns = conn.prepare(&format!("PRAGMA {pragma}({name})")).unwrap();
            let count = columns.column_count();
            let rows: Vec<String> = columns
                .query_map([], |r| {
                    (0..count)
                        .map(|i| {
                            r.get::<_, rusqlite::types::Value>(i)
                                .map(|v| format!("{v:?}"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| v.join(","))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            shape.extend(rows);
        }
        shape
    }

    #[test]
    fn an_upgraded_database_has_the_same_shape_as_a_new_one() {
        let mut fresh = Connection::open_in_memory().unwrap();
        migrate(&mut fresh).unwrap();
        let mut upgraded = Connection::open_in_memory().unwrap();
        upgraded
            .execute_batch(include_str!("../../../tests/fixtures/schema-v1.sql"))
            .unwrap();
        migrate(&mut upgraded).unwrap();
        assert_eq!(shape(&upgraded), shape(&fresh));
    }

    #[test]
    fn migrating_twice_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = format!("{:#}", migrate(&mut conn).unwrap_err());
        assert!(err.contains("newer livesession"), "{err}");
    }

    #[test]
    fn another_programs_database_is_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE accounts (id INTEGER)")
            .unwrap();
        let err = format!("{:#}", migrate(&mut conn).unwrap_err());
        assert!(err.contains("another program"), "{err}");
    }
}
