//! The chat room of this instance: the newest messages in memory, each rendered once, and the
//! channel that carries them to every open chat page.
//!
//! A committed message is read from the database once per instance, not once per page: a post
//! (here, or on another instance through its notification) wakes one fetcher task, which reads
//! every message after the newest it has (`messages_after`, in id order: ids commit in order on
//! both backends), renders each into the two frames a page can get (its author's, with the "(you)"
//! marker, and everyone else's), keeps them in a bounded log and broadcasts them. A page writes
//! the frame it is given as it is: one render and one query per message, however many pages are
//! open. A page that fell behind, or comes back, catches up from the log; only one older than the
//! log reads the database.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::chat::Message;
use crate::lock::RwLock;
use crate::session::SessionId;
use crate::store::Store;
use crate::views;

/// Messages kept in memory, the newest. A page that missed no more than this catches up without
/// a query; the first render of a chat page reads its last page from here.
pub const LOG_SIZE: usize = 512;

/// Messages broadcast ahead of the slowest page before it is told it lagged (it then catches up
/// from the log).
const CHANNEL: usize = 256;

/// Messages read per query by the fetcher.
const FETCH: usize = 256;

/// One stored message, rendered once for every page: its `<li>` and the `messages` frame that
/// carries it, in the two variants a page can get (its author's, marked "(you)", and everyone
/// else's).
#[derive(Debug)]
pub struct RenderedMessage {
    /// The message as stored.
    pub message: Message,
    for_author: Rendered,
    for_others: Rendered,
}

/// One variant of a rendered message.
#[derive(Debug)]
struct Rendered {
    html: String,
    frame: Utf8Bytes,
}

impl RenderedMessage {
    fn render(message: Message) -> RenderedMessage {
        let render = |viewer| {
            let html = views::message_item(&message, viewer).into_string();
            let frame = serde_json::json!({ "t": "messages", "html": html, "last": message.id });
            Rendered {
                html,
                frame: Utf8Bytes::from(frame.to_string()),
            }
        };
        RenderedMessage {
            for_author: render(message.author),
            // The nil id is nobody's session: nobody sees "(you)" on it.
            for_others: render(SessionId::NOBODY),
            message,
        }
    }

    fn variant(&self, viewer: SessionId) -> &Rendered {
        if self.message.author == viewer && viewer != SessionId::NOBODY {
            &self.for_author
        } else {
            &self.for_others
        }
    }

    /// The frame the page of `viewer` gets: shared bytes, the same for every such page.
    pub fn frame_for(&self, viewer: SessionId) -> &Utf8Bytes {
        &self.variant(viewer).frame
    }

    /// The `<li>` the page of `viewer` shows.
    pub fn html_for(&self, viewer: SessionId) -> &str {
        &self.variant(viewer).html
    }
}

/// The newest messages, in id order, and how far back they are complete.
#[derive(Default)]
struct Log {
    messages: VecDeque<Arc<RenderedMessage>>,
    /// Every message with an id above this is in `messages` (or was pruned from the database):
    /// the log is complete back to here.
    complete_after: i64,
}

impl Log {
    fn newest(&self) -> i64 {
        self.messages
            .back()
            .map_or(self.complete_after, |m| m.message.id)
    }
}

/// The room: the log, the channel, and the fetcher's wake-up.
pub struct Room {
    log: RwLock<Log>,
    /// Held by the one fetch that runs at a time, so messages are logged and broadcast in id
    /// order.
    fetching: tokio::sync::Mutex<()>,
    /// Messages the log keeps, at most: [`LOG_SIZE`], or fewer when `--message-limit` keeps fewer
    /// in the database (the log never shows what the database no longer has).
    capacity: usize,
    channel: broadcast::Sender<Arc<RenderedMessage>>,
    wake: Notify,
}

/// What a page gets to catch up after its newest message.
pub enum CatchUp {
    /// Every message after it, from the log (possibly none).
    Logged(Vec<Arc<RenderedMessage>>),
    /// It is older than the log: read the database.
    TooOld,
}

impl Room {
    /// An empty room whose log keeps at most `keep` messages (and never more than [`LOG_SIZE`]).
    pub fn new(keep: usize) -> Room {
        Room {
            log: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
            capacity: keep.clamp(1, LOG_SIZE),
            channel: broadcast::channel(CHANNEL).0,
            wake: Notify::new(),
        }
    }

    /// Fills the log with the newest messages of `store`, as they are now: at startup, and after
    /// a prune deleted some. What the fetcher logged after this read stays.
    pub async fn load(&self, store: &Store) -> Result<(), crate::store::StoreError> {
        let recent = store.recent_messages(self.capacity).await?;
        let complete_after = match recent.first() {
            // Fewer than asked: the whole chat is here, nothing older exists.
            _ if recent.len() < self.capacity => 0,
            Some(first) => first.id - 1,
            None => 0,
        };
        let newest = recent.last().map_or(complete_after, |m| m.id);
        let mut messages: VecDeque<Arc<RenderedMessage>> = recent
            .into_iter()
            .map(RenderedMessage::render)
            .map(Arc::new)
            .collect();
        let mut log = self.log.write();
        messages.extend(log.messages.drain(..).filter(|m| m.message.id > newest));
        while messages.len() > self.capacity {
            messages.pop_front();
        }
        log.complete_after = match messages.front() {
            Some(front) if front.message.id - 1 > complete_after => front.message.id - 1,
            _ => complete_after,
        };
        log.messages = messages;
        Ok(())
    }

    /// Something was posted (here or on another instance): the fetcher reads it.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts receiving the messages the room takes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RenderedMessage>> {
        self.channel.subscribe()
    }

    /// The messages after `last`, from the log, when it reaches back that far.
    pub fn after(&self, last: i64) -> CatchUp {
        let log = self.log.read();
        if last < log.complete_after {
            return CatchUp::TooOld;
        }
        let start = log.messages.partition_point(|m| m.message.id <= last);
        CatchUp::Logged(log.messages.range(start..).cloned().collect())
    }

    /// The newest `count` messages, oldest first, when the log holds them (it holds all of a chat
    /// shorter than the log).
    pub fn recent(&self, count: usize) -> Option<Vec<Message>> {
        let log = self.log.read();
        if log.messages.len() < count && log.complete_after != 0 {
            return None;
        }
        let start = log.messages.len().saturating_sub(count);
        Some(
            log.messages
                .range(start..)
                .map(|m| m.message.clone())
                .collect(),
        )
    }

    /// Makes sure the log has message `id` (just posted here): reads what is new unless a fetch
    /// got it already. The poster's next page view then shows it.
    pub async fn catch_up_to(
        &self,
        store: &Store,
        id: i64,
    ) -> Result<(), crate::store::StoreError> {
        while self.log.read().newest() < id {
            if self.fetch(store).await? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Takes `posted`, a message just stored by this instance, into the log and sends it to every
    /// page without reading the database, when it is the one the log expects next (ids commit
    /// in order, so nothing can be missing before it); otherwise reads what is new, as
    /// [`Room::catch_up_to`] does. A poster's page so waits for no query before its next post.
    pub async fn take_posted(
        &self,
        store: &Store,
        posted: Message,
    ) -> Result<(), crate::store::StoreError> {
        let id = posted.id;
        {
            let _turn = self.fetching.lock().await;
            let newest = self.log.read().newest();
            if id <= newest {
                return Ok(());
            }
            if id == newest + 1 {
                let rendered = Arc::new(RenderedMessage::render(posted));
                self.log_and_send(&mut self.log.write(), rendered);
                return Ok(());
            }
        }
        self.catch_up_to(store, id).await
    }

    /// Reads what was posted after the newest message of the log, once, renders it, logs it and
    /// broadcasts it, one fetch at a time. Returns how many it read.
    async fn fetch(&self, store: &Store) -> Result<usize, crate::store::StoreError> {
        let _turn = self.fetching.lock().await;
        let newest = self.log.read().newest();
        let fetched = store.messages_after(newest, FETCH).await?;
        let count = fetched.len();
        let rendered: Vec<Arc<RenderedMessage>> = fetched
            .into_iter()
            .map(|message| Arc::new(RenderedMessage::render(message)))
            .collect();
        let mut log = self.log.write();
        for posted in rendered {
            self.log_and_send(&mut log, posted);
        }
        Ok(count)
    }

    /// Appends `posted` to the log (unless it has it) and broadcasts it. Called with the log's
    /// lock held, by the one fetch (or take) at a time: a page that catches up from the log
    /// and then listens sees each message once, in order.
    fn log_and_send(&self, log: &mut Log, posted: Arc<RenderedMessage>) {
        if posted.message.id <= log.newest() {
            return;
        }
        if log.messages.len() >= self.capacity
            && let Some(oldest) = log.messages.pop_front()
        {
            log.complete_after = oldest.message.id;
        }
        log.messages.push_back(Arc::clone(&posted));
        let _ = self.channel.send(posted);
    }

    /// Runs the fetcher until `shutdown`: each wake-up reads what is new, as many queries as it
    /// takes; a failed read is tried again a moment later.
    pub fn spawn(
        self: &Arc<Self>,
        store: Store,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let room = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = room.wake.notified() => {}
                    () = shutdown.cancelled() => return,
                }
                loop {
                    match room.fetch(&store).await {
                        Ok(n) if n < FETCH => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read new chat messages; retrying");
                            tokio::select! {
                                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                                () = shutdown.cancelled() => return,
                            }
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::MessageBody;
    use crate::store::{Durability, StoreOptions};

    async fn store(dir: &tempfile::TempDir) -> Store {
        let options = StoreOptions {
            durability: Durability::Normal,
            busy_timeout: Duration::from_secs(5),
        };
        Store::open_sqlite(&dir.path().join("livesession.db"), options).unwrap()
    }

    async fn post(store: &Store, room: &Room, n: usize) -> i64 {
        let body = MessageBody::parse(&format!("m{n}")).unwrap();
        let author = SessionId::generate();
        let posted = store
            .post_message(author, body, format!("n{n}"), 1_000)
            .await
            .unwrap();
        room.catch_up_to(store, posted.message.id).await.unwrap();
        posted.message.id
    }

    #[tokio::test]
    async fn a_subscriber_that_lagged_finds_everything_it_missed_in_the_log_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let room = Room::new(LOG_SIZE);
        room.load(&store).await.unwrap();
        let mut slow = room.subscribe();
        let mut ids = Vec::new();
        for n in 0..CHANNEL + 44 {
            ids.push(post(&store, &room, n).await);
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        let CatchUp::Logged(missed) = room.after(0) else {
            panic!("the whole chat is in the log");
        };
        let missed: Vec<i64> = missed.iter().map(|p| p.message.id).collect();
        assert_eq!(missed, ids);
        let CatchUp::Logged(tail) = room.after(ids[99]) else {
            panic!("in the log");
        };
        assert_eq!(tail.len(), ids.len() - 100);
    }

    #[tokio::test]
    async fn the_log_keeps_its_capacity_and_says_when_a_page_is_older_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let room = Room::new(5);
        room.load(&store).await.unwrap();
        assert_eq!(
            room.recent(50),
            Some(Vec::new()),
            "an empty chat is complete"
        );
        let mut ids = Vec::new();
        for n in 0..20 {
            ids.push(post(&store, &room, n).await);
        }
        assert!(matches!(room.after(ids[3]), CatchUp::TooOld));
        assert!(matches!(room.after(ids[14]), CatchUp::Logged(ref m) if m.len() == 5));
        let recent: Vec<i64> = room.recent(5).unwrap().iter().map(|m| m.id).collect();
        assert_eq!(recent, ids[15..]);
        assert_eq!(room.recent(6), None, "the database has the rest");

        // A new room over the same database starts from where the chat is.
        let again = Room::new(5);
        again.load(&store).await.unwrap();
        assert!(matches!(again.after(ids[14]), CatchUp::Logged(ref m) if m.len() == 5));
        assert!(matches!(again.after(ids[13]), CatchUp::TooOld));
    }

    #[tokio::test]
    async fn the_next_message_posted_here_is_taken_without_a_query_and_a_gap_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let room = Room::new(LOG_SIZE);
        room.load(&store).await.unwrap();
        let mut page = room.subscribe();
        let first = post(&store, &room, 0).await;
        assert_eq!(page.recv().await.unwrap().message.id, first);

        // A gap before the message (stored, not taken yet): what is new is read, in order, the
        // gap first.
        let author = SessionId::generate();
        let stored = async |n: &str| {
            let body = MessageBody::parse(n).unwrap();
            store
                .post_message(author, body, n.to_owned(), 1_000)
                .await
                .unwrap()
                .message
        };
        let gap = stored("gap").await;
        let later = stored("later").await;
        assert_eq!((gap.id, later.id), (first + 1, first + 2));
        room.take_posted(&store, later.clone()).await.unwrap();
        assert_eq!(page.recv().await.unwrap().message, gap);
        assert_eq!(page.recv().await.unwrap().message, later);

        // The next id, taken as given: this one is in no database, so no query could find it.
        let next = Message {
            id: later.id + 1,
            author,
            author_name: "ada".into(),
            body: "taken as posted".into(),
            created_at: 0,
        };
        room.take_posted(&store, next.clone()).await.unwrap();
        let taken = page.recv().await.unwrap();
        assert_eq!(taken.message, next);
        assert!(taken.html_for(author).contains("taken as posted"));
        // Taken again (a resent post): nothing more.
        room.take_posted(&store, next).await.unwrap();
        assert!(page.try_recv().is_err(), "sent twice");
    }

    #[test]
    fn only_the_author_gets_the_frame_marked_as_theirs() {
        let author = SessionId::generate();
        let posted = RenderedMessage::render(Message {
            id: 7,
            author,
            author_name: "ada".into(),
            body: "hello".into(),
            created_at: 0,
        });
        assert!(posted.frame_for(author).contains("(you)"));
        assert!(!posted.frame_for(SessionId::generate()).contains("(you)"));
        assert!(!posted.frame_for(SessionId::NOBODY).contains("(you)"));
        assert!(posted.html_for(author).starts_with("<li"));
    }
}
