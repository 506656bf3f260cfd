//! A PostgreSQL database of the test's own, created on the server tests use and dropped after.
//!
//! The server is `LIVESESSION_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
//! Without one, a test that needs it says it was skipped and why, unless `CI=true`: there,
//! a missing server is a failure, never a silent pass (see [`super::skip`]).

use tokio_postgres::NoTls;

/// The server tests connect to, as an administrator able to create databases.
pub fn admin_url() -> String {
    std::env::var("LIVESESSION_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, uniquely named database; dropped (with any connection still open) on drop.
pub struct TestDatabase {
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates the database, or returns `None` after saying why the test is skipped.
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let admin = admin_url();
        let (client, connection) = match tokio_postgres::connect(&admin, NoTls).await {
            Ok(connected) => connected,
            Err(e) => {
                return super::skip(
                    &format!("PostgreSQL test {test}"),
                    &format!("no PostgreSQL at {admin} ({e}); set LIVESESSION_TEST_POSTGRES"),
                );
            }
        };
        tokio::spawn(connection);
        let name = format!("livesession_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = with_dbname(&admin, &name);
        Some(TestDatabase { url, name })
    }

    /// A plain connection to the database, to look behind the app.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// `url` with its database name replaced by `name`.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|at| at + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut url = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}
