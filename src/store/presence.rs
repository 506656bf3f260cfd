//! Who has the chat open, shared between the instances of one database (nothing to share on
//! SQLite, which one instance owns).

use std::time::Duration;

use super::{Backend, Present, Store, StoreError};

impl Store {
    /// Tells the other instances who has the chat open on this one (every browser in `here`),
    /// replacing what it told them before; `announce` wakes them at once, otherwise they read it
    /// at their next heartbeat. Nothing for a store no other instance shares.
    pub async fn share_presence(&self, here: &[Present], announce: bool) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.share_presence(here, announce).await,
        }
    }

    /// Who has the chat open on the other instances that shared it within `fresh`.
    pub async fn others_presence(&self, fresh: Duration) -> Result<Vec<Present>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(p) => p.others_presence(fresh).await,
        }
    }

    /// This instance stops: the others drop the browsers it counted, at once.
    pub async fn withdraw_presence(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(p) => p.withdraw_presence().await,
        }
    }
}
