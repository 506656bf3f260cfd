//! The single writer: one connection on its own thread, and group commit.
//!
//! Every write of the process goes through here, so writers never wait on each other's locks and
//! SQLite never answers "busy" to one of ours. Writes that arrive while a commit is running are
//! gathered and committed together in the next transaction: one fsync (with `--durability full`)
//! for the whole batch, however many sessions it holds. Each write runs inside its own savepoint,
//! so one that fails is rolled back alone; each caller is answered only after the shared commit,
//! and if the commit fails, every write of the batch gets the error: nothing is ever acknowledged
//! that was not committed.

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use crate::metrics::metrics;

/// Writes waiting for the writer, at most; more callers wait for room (backpressure).
const QUEUE: usize = 4096;

/// Writes committed together, at most.
const MAX_BATCH: usize = 512;

/// A handle to the writer thread. Cheap to clone; the thread ends when every handle is dropped,
/// after finishing the writes already queued.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(super) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("livesession-writer".to_owned())
            .spawn(move || run(conn, queue))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next batch and returns its result once the batch is committed.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let started = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        let answer = answer.await.map_err(|_| StoreError::WriterStopped)?;
        metrics().write_took(started.elapsed());
        answer
    }
}

/// One queued write, type-erased.
trait Job: Send {
    /// Runs the write inside the batch's transaction; false when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller, once the batch's fate is known.
    fn finish(self: Box<Self>, batch: Result<(), &rusqlite::Error>);
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

    fn finish(self: Box<Self>, batch: Result<(), &rusqlite::Error>) {
        let answer = match (batch, self.result) {
            (Ok(()), Some(result)) => result.map_err(StoreError::from),
            (Err(e), _) => Err(StoreError::Sqlite(copy_error(e))),
            (Ok(()), None) => Err(StoreError::WriterStopped),
        };
        // The caller may have gone away (a closed connection); the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

fn run(conn: Connection, mut queue: mpsc::Receiver<Box<dyn Job>>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit(&conn, &mut batch);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = batch.len(), "a batch of writes failed to commit");
        }
        for job in batch.drain(..) {
            job.finish(outcome.as_ref().map(|_| ()));
        }
    }
    tracing::debug!("the database writer stopped");
}

/// Runs every job of the batch in one transaction, each in its own savepoint.
fn commit(conn: &Connection, batch: &mut [Box<dyn Job>]) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        for job in batch.iter_mut() {
            conn.execute_batch("SAVEPOINT job")?;
            if job.run(conn) {
                conn.execute_batch("RELEASE job")?;
            } else {
                conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            }
        }
        conn.execute_batch("COMMIT")
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
        Writer::start(conn).unwrap()
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
        let writer = Writer::start(conn).unwrap();
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
}
