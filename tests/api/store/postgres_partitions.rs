//! PostgreSQL only: connections that go silent (a network partition) or are closed under the
//! store (a server restart) are replaced, through a proxy in front of the test database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use livesession::session::SessionId;
use livesession::shutdown::CancellationToken;
use livesession::store::{Notice, Store};

use crate::common::postgres::TestDatabase;
use crate::store::harness::{change, open_postgres, postgres_fixture};
use crate::store::postgres_notices::{next_notice, save_and_hear};

/// A TCP proxy to PostgreSQL whose existing connections can be frozen (their bytes stop flowing
/// both ways but nothing is closed, as in a network partition) or cut (closed, as when the
/// server restarts). Later connections pass.
struct FreezingProxy {
    addr: std::net::SocketAddr,
    connections: Arc<std::sync::Mutex<Vec<Connection>>>,
}

/// One proxied connection: whether it is frozen, and the token that closes it.
type Connection = (Arc<AtomicBool>, CancellationToken);

impl FreezingProxy {
    async fn start(target: std::net::SocketAddr) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let stuck = Arc::new(AtomicBool::new(false));
                let cut = CancellationToken::new();
                registry
                    .lock()
                    .unwrap()
                    .push((Arc::clone(&stuck), cut.clone()));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = pipe(client_read, server_write, Arc::clone(&stuck), cut.clone());
                tokio::spawn(up);
                tokio::spawn(pipe(server_read, client_write, stuck, cut));
            }
        });
        FreezingProxy { addr, connections }
    }

    /// Freezes every connection open now.
    fn freeze(&self) {
        for (stuck, _) in self.connections.lock().unwrap().iter() {
            stuck.store(true, Ordering::SeqCst);
        }
    }

    /// Closes every connection open now.
    fn cut(&self) {
        for (_, cut) in self.connections.lock().unwrap().drain(..) {
            cut.cancel();
        }
    }
}

/// Copies `from` to `to` until either ends or `cut`; once `stuck`, swallows everything and
/// closes nothing until `cut`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stuck: Arc<AtomicBool>,
    cut: CancellationToken,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = [0u8; 8192];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            () = cut.cancelled() => return,
        };
        if !stuck.load(Ordering::SeqCst) && to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Keep the other side open while stuck, as a partition would.
    if stuck.load(Ordering::SeqCst) {
        cut.cancelled().await;
    }
}

/// Starts a [`FreezingProxy`] in front of the test database; returns it and a URL through it.
async fn proxied(database: &TestDatabase) -> (FreezingProxy, String) {
    let config: tokio_postgres::Config = database.url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        other => panic!("the test server must be reached over TCP, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = FreezingProxy::start(target).await;
    let dbname = config.get_dbname().unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let url = format!("postgres://{user}@{}/{dbname}", proxy.addr);
    (proxy, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_listener_that_silently_stops_answering_is_replaced() {
    let Some(f) = postgres_fixture("postgres_a_listener_that_silently_stops_answering").await
    else {
        return;
    };
    let (proxy, proxied) = proxied(f.postgres.as_ref().unwrap()).await;
    let listening = open_postgres(&proxied).await.unwrap();

    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = listening.listen(sender, shutdown.clone()).unwrap();
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    // The partition: the listening connection gets no answer and no error, ever.
    proxy.freeze();
    let started = std::time::Instant::now();
    let replaced = tokio::time::timeout(Duration::from_secs(30), notices.recv())
        .await
        .expect("the dead listening connection was never replaced");
    assert_eq!(
        replaced,
        Some(Notice::Resync),
        "caught up after replacing it"
    );
    eprintln!(
        "a silently dead listener was replaced after {:?}",
        started.elapsed()
    );
    // And it hears writes again, through a fresh connection.
    save_and_hear(&f.store, SessionId::generate(), &mut notices).await;
    shutdown.cancel();
    listener.await.unwrap();
}

/// Fills the pool of `store` with `connections` open at once (each reading session `id`).
async fn warm(store: &Store, id: SessionId, connections: usize) {
    let reads: Vec<_> = (0..connections)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.load(id).await.unwrap() })
        })
        .collect();
    for read in reads {
        read.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_cut_under_the_store_are_replaced() {
    let Some(f) = postgres_fixture("postgres_connections_cut_under_the_store").await else {
        return;
    };
    let (proxy, url) = proxied(f.postgres.as_ref().unwrap()).await;
    let store = open_postgres(&url).await.unwrap();
    let shutdown = CancellationToken::new();
    let (sender, mut notices) = tokio::sync::mpsc::channel(64);
    let listener = store.listen(sender, shutdown.clone()).unwrap();
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    let id = SessionId::generate();
    warm(&store, id, 8).await;

    // As when the database server restarts: every connection is closed under the store.
    proxy.cut();
    // Nobody is told: the store finds the closed connections and uses fresh ones.
    let saved = store
        .save(id, change(Some("after"), None), 1_000)
        .await
        .expect("the first save after the cut")
        .applied()
        .unwrap();
    assert_eq!(saved.settings.username.as_str(), "after");
    for _ in 0..20 {
        assert_eq!(
            store.load(id).await.unwrap().unwrap().version,
            saved.version
        );
    }
    // The listening connection came back and caught up.
    assert_eq!(next_notice(&mut notices).await, Notice::Resync);
    shutdown.cancel();
    listener.await.unwrap();
}

/// Every operation, not only the ones a page makes, comes through a cut on its first try:
/// pruning, reading the forgotten ids, the statistics, and the key check of a starting instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_operation_is_retried_once_after_a_cut() {
    let Some(f) = postgres_fixture("postgres_every_operation_is_retried_once_after_a_cut").await
    else {
        return;
    };
    let (proxy, url) = proxied(f.postgres.as_ref().unwrap()).await;
    let store = open_postgres(&url).await.unwrap();
    let id = SessionId::generate();
    store
        .save(id, change(Some("stale"), None), 1_000)
        .await
        .unwrap();
    // Warms the pool with several open connections, then closes them all under the store.
    let cut = || async {
        warm(&store, id, 4).await;
        proxy.cut();
    };
    cut().await;
    assert_eq!(
        store
            .prune_batch(2_000, 10)
            .await
            .expect("prune after a cut"),
        1
    );
    cut().await;
    assert!(
        store
            .forgotten(10)
            .await
            .expect("forgotten after a cut")
            .is_empty()
    );
    cut().await;
    assert_eq!(store.stats().await.expect("stats after a cut").sessions, 0);
    cut().await;
    let held = store
        .claim_key("fingerprint", &[])
        .await
        .expect("the key check after a cut");
    assert_eq!(held, None);
}
