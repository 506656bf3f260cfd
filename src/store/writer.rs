//! The single writer: one connection on its own thread, and group commit.
//!
//! Every write of the process goes through here, so writers never wait on each other's locks and
//! SQLite never answers "busy" to one of ours. Writes that arrive while a commit is running are
//! gathered and committed together in the next transaction: one fsync (with `--durability full`)
//! for the whole batch, however many sessions it holds. Each write runs inside its own savepoint,
//! so one that fails is rolled back alone; each caller is answered only after the shared commit,
//! and if the commit fails, every write of the batch gets the error: nothing is ever acknowledged
//! that was not committed.

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::lock::Mutex;

/// Writes waiting for the writer, at most; more callers wait for room (backpressure).
const QUEUE: usize = 4096;

/// Writes committed together, at most.
const MAX_BATCH: usize = 512;

/// Checked on the writer thread before each batch: `Err` with the database's path when the file
/// is no longer the one the writer opened (deleted or replaced), so nothing is written into a
/// file nobody will open again.
pub(super) type Guard = Box<dyn Fn() -> Result<(), String> + Send>;

/// A handle to the writer thread. Cheap to clone; the thread ends when [`Writer::stop`] is
/// called or every handle is dropped, after finishing the writes already queued.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Queued>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

/// What the writer's queue carries.
enum Queued {
    Job(Box<dyn Job>),
    /// Commit what came before, then stop.
    Stop,
}

impl Writer {
    /// Starts the writer thread on `conn`, checking `guard` before each batch.
    pub(super) fn start(conn: Connection, guard: Guard) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("livesession-writer".to_owned())
            .spawn(move || run(conn, queue, guard))?;
        Ok(Writer {
            jobs,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(Queued::Job(job))
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Lets the writes queued so far commit, stops the thread, and waits for it to end (its
    /// connection closed). Writes queued after this fail with [`StoreError::WriterStopped`].
    ///
    /// The thread is joined from a plain thread of its own, not one of tokio's blocking threads,
    /// so a caller that stops waiting (a shutdown out of grace, the writer stuck behind another
    /// process's lock) leaves nothing the runtime must wait for on its way out.
    pub(super) async fn stop(&self) {
        let _ = self.jobs.send(Queued::Stop).await;
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let (ended, has_ended) = oneshot::channel();
            let joiner = std::thread::Builder::new()
                .name("livesession-writer-join".to_owned())
                .spawn(move || {
                    let _ = thread.join();
                    let _ = ended.send(());
                });
            if joiner.is_ok() {
                let _ = has_ended.await;
            }
        }
    }
}

/// Why a whole batch failed.
enum BatchError {
    Sqlite(rusqlite::Error),
    Vanished(String),
}

/// One queued write, type-erased.
trait Job: Send {
    /// Runs the write inside the batch's transaction; false when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller, once the batch's fate is known.
    fn finish(self: Box<Self>, batch: Result<(), &BatchError>);
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<rusqlite::Result<T>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a job runs once");
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, batch: Result<(), &BatchError>) {
        let answer = match (batch, self.result) {
            (Ok(()), Some(result)) => result.map_err(StoreError::from),
            (Err(BatchError::Sqlite(e)), _) => Err(StoreError::Sqlite(copy_error(e))),
            (Err(BatchError::Vanished(path)), _) => Err(StoreError::Vanished(path.clone())),
            (Ok(()), None) => Err(StoreError::WriterStopped),
        };
        // The caller may have gone away (a closed connection); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Queued>, guard: Guard) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match queue.blocking_recv() {
            Some(Queued::Job(first)) => batch.push(first),
            Some(Queued::Stop) | None => break,
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Queued::Job(job)) => batch.push(job),
                Ok(Queued::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let outcome = match guard() {
            Ok(()) => commit(&conn, &mut batch).map_err(BatchError::Sqlite),
            Err(path) => Err(BatchError::Vanished(path)),
        };
        if let Err(BatchError::Sqlite(e)) = &outcome {
            tracing::error!(error = %e, writes = batch.len(), "a batch of writes failed to commit");
        }
        for job in batch.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()));
        }
    }
    // Writes still queued are dropped with the queue: their callers hear that the writer stopped.
    drop(queue);
    drop(conn);
    tracing::debug!("the database writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint. The statements
/// around the jobs are prepared once per connection, not parsed again for every job.
fn commit(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    let run = |sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    run("BEGIN IMMEDIATE")?;
    let result = (|| {
        for job in batch.iter_mut() {
            run("SAVEPOINT job")?;
            if !job.run(conn) {
                run("ROLLBACK TO job")?;
            }
            run("RELEASE job")?;
        }
        run("COMMIT")
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

/// The same error again, for each caller of a failed batch (rusqlite's error is not `Clone`).
fn copy_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .unwrap();
        Writer::start(conn, Box::new(|| Ok(()))).unwrap()
    }

    #[tokio::test]
    async fn a_failing_write_is_rolled_back_alone() {
        let writer = writer();
        let ok = writer.write(|c| c.execute("INSERT INTO t VALUES (1)", []));
        let bad = writer.write(|c| c.execute("INSERT INTO t VALUES (1)", []));
        let also_ok = writer.write(|c| c.execute("INSERT INTO t VALUES (2)", []));
        let (ok, bad, also_ok) = tokio::join!(ok, bad, also_ok);
        assert_eq!(ok.unwrap(), 1);
        assert!(bad.is_err(), "a duplicate key must fail");
        assert_eq!(also_ok.unwrap(), 1);
        let count = writer
            .write(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(count, 2);
    }

    #[tokio::test]
    async fn when_the_commit_fails_no_write_of_the_batch_is_acknowledged() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE t (x INTEGER PRIMARY KEY);
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        let writer = Writer::start(conn, Box::new(|| Ok(()))).unwrap();
        // Keep the writer busy, so the next two writes queue up and go into one batch.
        let (started, running) = oneshot::channel();
        let slow = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .write(move |_| {
                        let _ = started.send(());
                        std::thread::sleep(std::time::Duration::from_millis(200));
                        Ok(())
                    })
                    .await
            }
        });
        running.await.unwrap();
        let innocent = writer.write(|c| c.execute("INSERT INTO t VALUES (5)", []));
        // A deferred foreign key fails only at COMMIT, taking the whole batch with it.
        let guilty = writer.write(|c| c.execute("INSERT INTO child VALUES (99)", []));
        let (innocent, guilty) = tokio::join!(innocent, guilty);
        slow.await.unwrap().unwrap();
        assert!(guilty.is_err());
        assert!(
            innocent.is_err(),
            "acknowledged a write whose transaction failed"
        );
        let count = writer
            .write(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(count, 0);
    }

    #[tokio::test]
    async fn many_concurrent_writes_all_commit() {
        let writer = writer();
        let writes: Vec<_> = (0..1000)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(move |c| c.execute("INSERT INTO t VALUES (?1)", [n]))
                        .await
                })
            })
            .collect();
        for write in writes {
            write.await.unwrap().unwrap();
        }
        let count = writer
            .write(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(count, 1000);
    }

    #[tokio::test]
    async fn stop_commits_what_was_queued_and_refuses_what_comes_after() {
        let writer = writer();
        let queued = writer.write(|c| c.execute("INSERT INTO t VALUES (7)", []));
        let (queued, ()) = tokio::join!(queued, writer.stop());
        assert_eq!(queued.unwrap(), 1);
        let after = writer
            .write(|c| c.execute("INSERT INTO t VALUES (8)", []))
            .await;
        assert!(matches!(after, Err(StoreError::WriterStopped)), "{after:?}");
    }

    #[tokio::test]
    async fn a_failed_guard_fails_the_batch_with_the_path_and_writes_nothing() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .unwrap();
        let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let guard = {
            let gone = std::sync::Arc::clone(&gone);
            Box::new(move || {
                if gone.load(std::sync::atomic::Ordering::SeqCst) {
                    Err("/data/livesession.db".to_owned())
                } else {
                    Ok(())
                }
            })
        };
        let writer = Writer::start(conn, guard).unwrap();
        let refused = writer
            .write(|c| c.execute("INSERT INTO t VALUES (1)", []))
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Vanished(path)) if path == "/data/livesession.db"),
            "{refused:?}"
        );
        gone.store(false, std::sync::atomic::Ordering::SeqCst);
        let count = writer
            .write(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}
