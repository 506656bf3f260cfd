//! The store's own types: what callers hand it and what it answers.

use crate::chat::Message;
use crate::clock::Millis;
use crate::session::{DeviceId, SessionId};
use crate::settings::Settings;

/// How hard a commit works to survive a crash (`--durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// A crash of this process loses nothing that was acknowledged; a power loss (or, on
    /// PostgreSQL, a crash of the database server) may lose the last moment of commits, never
    /// consistency. SQLite's `synchronous=NORMAL` in WAL mode; PostgreSQL's
    /// `synchronous_commit=off`.
    Normal,
    /// Every acknowledged commit is on disk before the answer: it survives a power loss too.
    /// SQLite's `synchronous=FULL` (an fsync per commit); PostgreSQL's `synchronous_commit=on`.
    Full,
}

/// How the database is used, on either backend.
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// What a commit survives: SQLite's `synchronous` (`NORMAL` or `FULL`); on PostgreSQL,
    /// `synchronous_commit` off or on (with it off, a crash of this process loses nothing; a
    /// crash of the database server may lose the last moment of commits).
    pub durability: Durability,
    /// How long a statement waits for a lock held by another connection or process (SQLite's
    /// busy timeout, PostgreSQL's `lock_timeout`).
    pub busy_timeout: std::time::Duration,
}

/// A session's row as stored. The default is what a session without a row sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSettings {
    /// The values.
    pub settings: Settings,
    /// Bumped by every write that changed a value; lets a live view tell newer from older.
    pub version: i64,
    /// The last time the row was read or written, give or take the touch window.
    pub read_at: Millis,
}

/// Where a settings change came from when a live page sent it: the page (its id, stable across
/// its reconnects), the form, and the change's number on that page. A change the page resends
/// (its acknowledgement was lost) is then applied once, whichever instance it reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageChange {
    /// The page's id, chosen by the page.
    pub page: String,
    /// The form of the page the change is of.
    pub form: &'static str,
    /// The change's number on that page: it grows by one per change.
    pub seq: u64,
}

/// What saving a settings change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    /// Applied; the row as committed.
    Applied(StoredSettings),
    /// The page that sent the change had its change of that number (or a later one) applied
    /// before: nothing changed. Only a change with a [`PageChange`] can be a replay.
    Replayed,
    /// The session was forgotten: its id is never written again.
    Forgotten,
    /// The session has no row, and the change was to make none ([`crate::store::NewRow::Refuse`]):
    /// nothing changed.
    NoRow,
}

impl Saved {
    /// The row as committed, when the change was applied.
    pub fn applied(self) -> Option<StoredSettings> {
        match self {
            Saved::Applied(row) => Some(row),
            Saved::Replayed | Saved::Forgotten | Saved::NoRow => None,
        }
    }
}

/// The outcome of posting a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The stored message.
    pub message: Message,
    /// True when this author had already posted this nonce: nothing new was stored.
    pub duplicate: bool,
}

/// What another instance did, as heard through the database (PostgreSQL only). Each names what
/// changed; the data itself is read from the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Session `id`'s settings were saved and now have `version`.
    SettingsChanged { id: SessionId, version: i64 },
    /// Session `id` was forgotten at `at`.
    Forgotten { id: SessionId, at: Millis },
    /// Chat message `id` was stored.
    Message { id: i64 },
    /// Who has the chat open on another instance changed.
    Presence,
    /// Session `id`'s one-time link code now expires at `expires_at`, or it has none live.
    Link {
        id: SessionId,
        expires_at: Option<Millis>,
    },
    /// Session `session`'s devices changed: one was added, renamed, or seen.
    Devices { session: SessionId },
    /// Device `device` of session `session` joined it with a code.
    Joined {
        session: SessionId,
        device: DeviceId,
    },
    /// Device `device` of session `session` was signed out at `at`.
    SignedOut {
        session: SessionId,
        device: DeviceId,
        at: Millis,
    },
    /// The listening connection was re-established: anything may have happened meanwhile.
    Resync,
}

/// What the database holds, as `livesession stats` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Settings rows: browsers that saved something.
    pub sessions: u64,
    /// Chat messages.
    pub messages: u64,
    /// Ids of forgotten browsers still remembered.
    pub forgotten: u64,
    /// The size of the database file, in bytes.
    pub database_bytes: u64,
    /// The size of its write-ahead log, in bytes (not yet checkpointed into the file).
    pub wal_bytes: u64,
    /// The least recent use of a settings row (`read_at`), if there is a row.
    pub oldest_activity: Option<Millis>,
    /// The most recent use of a settings row.
    pub newest_activity: Option<Millis>,
    /// When the oldest chat message kept was posted.
    pub oldest_message: Option<Millis>,
    /// When the newest chat message was posted.
    pub newest_message: Option<Millis>,
}

/// One browser with the chat open, as the instances share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// Its session.
    pub id: SessionId,
    /// Its name; empty when it has none.
    pub name: String,
    /// One of the crowd of fresh sessions from one address: counted ("and 4 more"), not named.
    pub crowded: bool,
}

/// Everything the database holds of one session, read in one snapshot: what "Download my data"
/// hands its owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionData {
    /// Its settings row, if it saved any.
    pub settings: Option<SettingsRow>,
    /// Every chat message it sent that is still kept, oldest first.
    pub messages: Vec<Message>,
    /// Its devices, first added first.
    pub devices: Vec<crate::device::Device>,
}

/// A settings row with its times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsRow {
    /// The values.
    pub settings: crate::settings::Settings,
    /// When the row was created.
    pub inserted_at: Millis,
    /// The last write that changed it.
    pub updated_at: Millis,
    /// The last use, read or write (within the touch window).
    pub read_at: Millis,
}

/// What a one-time link code stands for at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeState {
    /// It carries session `session` until `expires_at` (from [`Store::spend_link`](super::Store::spend_link): it did, and
    /// is now spent).
    Active {
        session: SessionId,
        expires_at: Millis,
    },
    /// Its time ran out before anyone used it.
    Expired,
    /// It was used already.
    Spent,
    /// Its session cancelled it, made a newer one, or was forgotten.
    Cancelled,
    /// No such code was ever made.
    Unknown,
}
