//! Refusing a signed out device (or a forgotten session) on every instance from the moment its
//! sign-out is answered, not from the moment this instance hears of it.
//!
//! Each instance keeps the ended devices and sessions in memory (`forgotten`), filled by the
//! other instances' notifications. A notification arrives a few milliseconds after its commit,
//! so a cookie signed out on instance A and sent at once to instance B would be taken by B in
//! that window: its page would show the session's data to a browser that was just signed out.
//! The signed out browser's request carries nothing from the browser that signed it out, so B
//! cannot tell from the request whether it is behind; only the database can.
//!
//! So on a shared database, a request whose cookie memory accepts asks the database too
//! ([`Store::ended`](crate::store::Store::ended): primary-key lookups in `signed_out` and `forgotten`), before it is
//! answered. The asks are coalesced: at most one query is in flight per instance, and every
//! request that arrives while it runs waits for the next one, which asks for all of them at
//! once. A request's answer therefore always comes from a query that started after the request
//! arrived (so after any sign-out that was answered before it was sent), and under load one
//! round trip serves every request that queued behind it. What the query finds goes into memory
//! at once, as a notification would have put it, so the next request of that cookie is refused
//! without one.
//!
//! The page pays no round trip for it: the same query reads each session's settings row, which
//! every page reads anyway, and the request's page takes that row instead of reading it again
//! ([`Site::settings_for_request`], `Store::load_checked`). The row was read after the request
//! arrived, so it holds every write acknowledged before the request was sent, and a write on
//! this instance since drops it. What is left of the cost is a somewhat bigger query (43 µs
//! against 30 µs for the row alone, by `pgbench` on loopback), and under load the wait for the
//! query in flight.
//!
//! A failed query is logged and the request goes on with what memory says (the page's own
//! reads fail the same way a moment later). On SQLite no other process writes, memory is exact,
//! and nothing is asked.
//!
//! The other way to close the window, making the sign-out wait until every other instance has
//! acknowledged hearing it, costs page views nothing but is exact only while every instance's
//! notification connection is alive, and a silently dead one is found only by its heartbeat;
//! the query here is exact whenever the database answers.

use std::mem;

use tokio::sync::oneshot;

use super::Site;
use crate::lock::Mutex;
use crate::metrics::metrics;
use crate::session::Who;

/// The cookies waiting for the next query, and whether one is running.
#[derive(Default)]
pub(super) struct EndedCheck(Mutex<Queue>);

#[derive(Default)]
struct Queue {
    /// Someone is asking the database, and what waits here is asked next.
    asking: bool,
    /// The cookies to ask about next, and who waits for each answer.
    waiting: Vec<(Who, oneshot::Sender<()>)>,
}

/// Held by whoever asks: should it stop before it is done (the request that asked went away,
/// its client having hung up, or asking panicked), a task takes over what waits, so nobody
/// waits for an answer that will never come.
struct Asking<'a> {
    site: &'a Site,
    done: bool,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if std::thread::panicking() {
            self.site.0.ended.0.lock().asking = false;
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let site = self.site.clone();
            runtime.spawn(async move { site.ask_ended().await });
        } else {
            self.site.0.ended.0.lock().asking = false;
        }
    }
}

impl Site {
    /// Waits until the database was asked, by a query that started after this call, whether
    /// `who`'s device was signed out or its session forgotten, and this instance's memory holds
    /// the answer. Asks nothing on a store only this process writes.
    ///
    /// The first request to find nobody asking asks for itself (on a quiet instance, with no
    /// hand-over between tasks); those that queued meanwhile are handed to a task. A request
    /// whose asker went away before answering queues once more; should that fail too, it goes
    /// on with what memory says.
    pub(super) async fn check_not_ended(&self, who: Who) {
        if !self.0.store.is_shared() {
            return;
        }
        for _ in 0..2 {
            let (answer, answered) = oneshot::channel();
            let lead = {
                let mut queue = self.0.ended.0.lock();
                queue.waiting.push((who, answer));
                !mem::replace(&mut queue.asking, true)
            };
            if lead {
                let mut asking = Asking {
                    site: self,
                    done: false,
                };
                let more = self.ask_once().await;
                asking.done = true;
                if more {
                    let site = self.clone();
                    tokio::spawn(async move { site.ask_ended().await });
                }
            }
            if answered.await.is_ok() {
                return;
            }
        }
    }

    /// Asks the database about what waits, again and again, until nothing does.
    async fn ask_ended(&self) {
        let mut asking = Asking {
            site: self,
            done: false,
        };
        while self.ask_once().await {}
        asking.done = true;
    }

    /// Asks the database about what waits now, and answers it. True when more came meanwhile
    /// (whoever asks goes on asking); else nobody is asking any more.
    async fn ask_once(&self) -> bool {
        let batch = mem::take(&mut self.0.ended.0.lock().waiting);
        if !batch.is_empty() {
            let asked: Vec<Who> = batch.iter().map(|(who, _)| *who).collect();
            match self.0.store.ended(&asked).await {
                Ok(ended) => {
                    for (device, at) in ended.devices {
                        self.refuse_device(device, at);
                    }
                    for (session, at) in ended.sessions {
                        self.0.forgotten.insert(session, at);
                    }
                }
                Err(e) => {
                    metrics().database_error(&e);
                    tracing::warn!(error = %e, "cannot ask whether cookies were signed out");
                }
            }
            for (_, answer) in batch {
                let _ = answer.send(());
            }
        }
        let mut queue = self.0.ended.0.lock();
        if queue.waiting.is_empty() {
            queue.asking = false;
            false
        } else {
            true
        }
    }
}
