//! What runs each store test on both backends: a [`Fixture`] per test, and the macro that makes
//! one test per backend of each contract function.

use std::time::Duration;

use livesession::chat::MessageBody;
use livesession::settings::{SettingsChange, Theme, Username};
use livesession::store::Durability;
use livesession::store::{Store, StoreOptions};

use crate::common::postgres::TestDatabase;

/// A store for one test, and what keeps its database alive.
pub struct Fixture {
    pub store: Store,
    pub postgres: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("livesession.db");
        let options = StoreOptions {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
        };
        let store = tokio::task::spawn_blocking(move || Store::open_sqlite(&path, options))
            .await
            .unwrap()
            .unwrap();
        Fixture {
            store,
            postgres: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres(test: &str) -> Option<Fixture> {
        let database = TestDatabase::create(test).await?;
        Some(Fixture {
            store: open_postgres(&database.url).await.unwrap(),
            postgres: Some(database),
            _dir: None,
        })
    }

    /// Another instance on the same database (on SQLite, the one instance itself).
    pub async fn another(&self) -> Store {
        match &self.postgres {
            Some(database) => open_postgres(&database.url).await.unwrap(),
            None => self.store.clone(),
        }
    }
}

pub async fn open_postgres(url: &str) -> anyhow::Result<Store> {
    let options = StoreOptions {
        durability: Durability::Normal,
        busy_timeout: Duration::from_secs(5),
    };
    Store::open_postgres(url, options).await
}

/// A fixture on a PostgreSQL database of its own, for the tests only PostgreSQL has.
pub async fn postgres_fixture(test: &str) -> Option<Fixture> {
    Fixture::postgres(test).await
}

/// Each named test, once per backend: `module: [test, ...]` runs `crate::module::test` on a fresh
/// [`Fixture`] as `sqlite::test` and as `postgres::test`.
macro_rules! on_both_backends {
    ($($module:ident: [$($test:ident),* $(,)?]),* $(,)?) => {
        mod sqlite {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::store::$module::$test(crate::store::harness::Fixture::sqlite().await).await;
                }
            )*)*
        }
        mod postgres {
            $($(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let fixture = crate::store::harness::Fixture::postgres(stringify!($test)).await;
                    if let Some(fixture) = fixture {
                        crate::store::$module::$test(fixture).await;
                    }
                }
            )*)*
        }
    };
}
pub(crate) use on_both_backends;

pub fn change(username: Option<&str>, theme: Option<Theme>) -> SettingsChange {
    SettingsChange {
        username: username.map(|name| Username::parse(name).unwrap()),
        theme,
    }
}

pub fn body(text: &str) -> MessageBody {
    MessageBody::parse(text).unwrap()
}
