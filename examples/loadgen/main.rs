//! The load generator for the live-socket benchmarks of BENCHMARKS.md (HTTP is measured with wrk).
//!
//! ```text
//! cargo run --release --example loadgen -- live-writes ADDR SOCKETS SECONDS [PAUSE_MS]
//! cargo run --release --example loadgen -- connections ADDR SOCKETS SECONDS SERVER_PID [VIEW]
//! cargo run --release --example loadgen -- cross ADDR_A ADDR_B ROUNDS
//! cargo run --release --example loadgen -- fanout ADDR RECEIVERS MESSAGES RATE SERVER_PID [bare|ADDR_B]
//! ```
//!
//! `live-writes`: SOCKETS sockets, each its own session, each sending a change and waiting for its
//! ack before the next, then pausing PAUSE_MS (0: flat out; 100: a person typing, one debounced
//! change per 100 ms, the sockets' starts spread over one pause); prints acknowledged saves per
//! second and the p50/p99 ack latency.
//!
//! `connections`: SOCKETS joined sockets (on VIEW, `settings` or `chat`), each its own session,
//! held for SECONDS while the read path is probed; prints the server's memory growth per socket (from /proc/PID/status) and the
//! errors seen. Sockets come from several loopback addresses (127.0.0.2, ...) so ephemeral ports
//! do not run out. Only loopback addresses are ever used.
//!
//! `cross`: two instances on one PostgreSQL database. One session has a tab on each; ROUNDS times,
//! a change typed in the tab on A is timed until the tab on B shows it, and a chat message sent
//! from A until a chat page on B shows it. The same is measured with both tabs on A, the
//! baseline; prints p50/p99 of each and the ratio.

mod fanout;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{WebSocketStream, client_async};

type Socket = WebSocketStream<TcpStream>;

/// A session as a freshly loaded settings page knows it.
struct Page {
    cookie: String,
    csrf: String,
    build: String,
    /// The settings version the page shows; its join says it, as a browser's does, so a page
    /// that is up to date gets no render.
    version: i64,
}

fn between<'a>(text: &'a str, start: &str, end: char) -> &'a str {
    let from = text.find(start).expect("marker in page") + start.len();
    let to = text[from..].find(end).unwrap() + from;
    &text[from..to]
}

/// A minimal HTTP/1.1 GET over a fresh connection (no client library, no pooling).
async fn load_page(addr: SocketAddr, source: IpAddr) -> Page {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect(addr, source).await;
    let request = format!("GET /settings HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let set_cookie = between(&response, "set-cookie: ", '\r');
    Page {
        cookie: set_cookie.split(';').next().unwrap().to_owned(),
        csrf: between(&response, "data-live-csrf=\"", '"').to_owned(),
        build: between(&response, "/assets/live.", '.').to_owned(),
        version: between(&response, "data-live-version=\"", '"')
            .parse()
            .unwrap(),
    }
}

async fn connect(addr: SocketAddr, source: IpAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn join(addr: SocketAddr, source: IpAddr, page: &Page, id: usize) -> Socket {
    join_view(addr, source, page, &format!("p{id}"), "settings").await
}

async fn join_view(
    addr: SocketAddr,
    source: IpAddr,
    page: &Page,
    page_id: &str,
    view: &str,
) -> Socket {
    let mut request = format!("ws://{addr}/live").into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("cookie", HeaderValue::from_str(&page.cookie).unwrap());
    headers.insert(
        "origin",
        HeaderValue::from_str(&format!("http://{addr}")).unwrap(),
    );
    let (mut socket, _) = client_async(request, connect(addr, source).await)
        .await
        .unwrap();
    let join = serde_json::json!({"t": "join", "view": view, "csrf": page.csrf,
                                  "build": page.build, "page": page_id,
                                  "version": page.version});
    socket.send(Message::text(join.to_string())).await.unwrap();
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains("\"joined\"") => return socket,
            Some(Ok(_)) => {}
            other => panic!("the socket closed before it joined: {other:?}"),
        }
    }
}

/// Loopback source addresses, a few thousand sockets each.
fn source(n: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n / 10_000) as u8))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn live_writes(addr: SocketAddr, sockets: usize, seconds: u64, pause: Duration) {
    let mut joined = Vec::new();
    for n in 0..sockets {
        let page = load_page(addr, source(n)).await;
        joined.push(join(addr, source(n), &page, n).await);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = joined
        .into_iter()
        .enumerate()
        .map(|(n, mut socket)| {
            tokio::spawn(async move {
                // People do not type in step: spread the sockets' starts over one pause.
                tokio::time::sleep(pause.mul_f64(n as f64 / sockets as f64)).await;
                let mut latencies = Vec::new();
                let mut seq = 0u64;
                while Instant::now() < deadline {
                    seq += 1;
                    let change = serde_json::json!({"t": "change", "form": "settings", "seq": seq,
                        "fields": {"username": format!("s{n}-{seq}"), "theme": "dark"}});
                    let sent = Instant::now();
                    socket
                        .send(Message::text(change.to_string()))
                        .await
                        .unwrap();
                    loop {
                        match socket.next().await {
                            Some(Ok(Message::Text(text))) if text.contains("\"ack\"") => break,
                            Some(Ok(_)) => {}
                            other => panic!("socket {n} failed: {other:?}"),
                        }
                    }
                    latencies.push(sent.elapsed());
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                latencies
            })
        })
        .collect();
    let started = Instant::now();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let took = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "live-writes sockets={sockets} pause_ms={} acks={} acks_per_s={:.0} p50_ms={:.2} p99_ms={:.2}",
        pause.as_millis(),
        all.len(),
        all.len() as f64 / took,
        percentile(&all, 0.50).as_secs_f64() * 1000.0,
        percentile(&all, 0.99).as_secs_f64() * 1000.0,
    );
}

/// The CPU time process `pid` (or this one, for `None`) has used, user and system, in clock
/// ticks (from /proc/PID/stat).
fn cpu_ticks(pid: Option<u32>) -> u64 {
    let path = pid.map_or("/proc/self/stat".to_owned(), |pid| {
        format!("/proc/{pid}/stat")
    });
    let stat = std::fs::read_to_string(path).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn connections(addr: SocketAddr, sockets: usize, seconds: u64, pid: u32, view: &'static str) {
    let before = rss_kib(pid);
    let errors = Arc::new(AtomicU64::new(0));
    let mut held = Vec::with_capacity(sockets);
    let started = Instant::now();
    // Join in parallel batches.
    for chunk_start in (0..sockets).step_by(500) {
        let chunk: Vec<_> = (chunk_start..(chunk_start + 500).min(sockets))
            .map(|n| {
                tokio::spawn(async move {
                    let page = load_page(addr, source(n)).await;
                    join_view(addr, source(n), &page, &format!("p{n}"), view).await
                })
            })
            .collect();
        for task in chunk {
            match task.await {
                Ok(socket) => held.push(socket),
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    let joined_in = started.elapsed();
    // Keep every socket read (answering pings) while holding, and probe the read path.
    let stop = Instant::now() + Duration::from_secs(seconds);
    let readers: Vec<_> = held
        .into_iter()
        .map(|mut socket| {
            let errors = errors.clone();
            tokio::spawn(async move {
                while Instant::now() < stop {
                    match tokio::time::timeout(Duration::from_secs(1), socket.next()).await {
                        Ok(Some(Ok(_))) | Err(_) => {}
                        Ok(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            return None;
                        }
                    }
                }
                Some(socket)
            })
        })
        .collect();
    let mut probes = Vec::new();
    let mut peak = rss_kib(pid);
    while Instant::now() < stop {
        let sent = Instant::now();
        let page = load_page(addr, source(sockets + 1)).await;
        assert!(!page.csrf.is_empty());
        probes.push(sent.elapsed());
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut still_open = 0;
    let mut keep = Vec::new();
    for reader in readers {
        if let Ok(Some(socket)) = reader.await {
            still_open += 1;
            keep.push(socket);
        }
    }
    probes.sort_unstable();
    let growth = peak.saturating_sub(before);
    println!(
        "connections view={view} sockets={sockets} joined_in_s={:.1} still_open={still_open} errors={} rss_before_kib={before} rss_peak_kib={peak} growth_per_socket_kib={:.1} read_path_p50_ms={:.2} read_path_p99_ms={:.2}",
        joined_in.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        growth as f64 / sockets as f64,
        percentile(&probes, 0.50).as_secs_f64() * 1000.0,
        percentile(&probes, 0.99).as_secs_f64() * 1000.0,
    );
    drop(keep);
}

/// Reads `socket` until a text message contains every one of `needles` (at most 10 s).
async fn wait_for(socket: &mut Socket, needles: &[&str]) {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("nothing with {needles:?} within 10 s"));
        match next {
            Some(Ok(Message::Text(text))) if needles.iter().all(|n| text.contains(n)) => return,
            Some(Ok(_)) => {}
            other => panic!("socket failed: {other:?}"),
        }
    }
}

/// p50/p99 of how long a change in a tab on `from` takes to show in a tab on `to`, and of how
/// long a chat message sent on `from` takes to show on a chat page on `to`.
async fn propagation(from: SocketAddr, to: SocketAddr, rounds: usize, tag: &str) -> [Duration; 4] {
    let local = source(0);
    let page = load_page(from, local).await;
    let mut writer = join_view(from, local, &page, &format!("{tag}-w"), "settings").await;
    let mut reader = join_view(to, local, &page, &format!("{tag}-r"), "settings").await;
    let mut chat_writer = join_view(from, local, &page, &format!("{tag}-cw"), "chat").await;
    let mut chat_reader = join_view(to, local, &page, &format!("{tag}-cr"), "chat").await;
    let (mut changes, mut messages) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let name = format!("{tag}{round}x");
        let change = serde_json::json!({"t": "change", "form": "settings", "seq": round,
            "fields": {"username": name, "theme": "dark"}});
        let sent = Instant::now();
        writer
            .send(Message::text(change.to_string()))
            .await
            .unwrap();
        wait_for(&mut reader, &["\"render\"", &name]).await;
        changes.push(sent.elapsed());
        wait_for(&mut writer, &["\"ack\""]).await;

        let body = format!("{tag} message {round}x");
        let post = serde_json::json!({"t": "post", "form": "composer", "seq": round,
            "nonce": format!("{tag}-{round}"), "body": body});
        let sent = Instant::now();
        chat_writer
            .send(Message::text(post.to_string()))
            .await
            .unwrap();
        // It arrives as new messages, or inside a full render when the page re-rendered for
        // the settings change at the same moment.
        wait_for(&mut chat_reader, &[&body]).await;
        messages.push(sent.elapsed());
        wait_for(&mut chat_writer, &["\"ack\""]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    changes.sort();
    messages.sort();
    [
        percentile(&changes, 0.50),
        percentile(&changes, 0.99),
        percentile(&messages, 0.50),
        percentile(&messages, 0.99),
    ]
}

async fn cross(a: SocketAddr, b: SocketAddr, rounds: usize) {
    let same = propagation(a, a, rounds, "same").await;
    let across = propagation(a, b, rounds, "across").await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{rounds} rounds each; milliseconds from sending on A to showing on the other tab");
    println!("| what | same instance p50 / p99 | across instances p50 / p99 | p99 ratio |");
    println!("|---|---|---|---|");
    for (what, at) in [
        ("settings change, tab to tab", 0),
        ("chat message, page to page", 2),
    ] {
        println!(
            "| {what} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1}x |",
            ms(same[at]),
            ms(same[at + 1]),
            ms(across[at]),
            ms(across[at + 1]),
            ms(across[at + 1]) / ms(same[at + 1]).max(0.001),
        );
    }
}

#[tokio::main]
async fn main() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: loadgen live-writes ADDR SOCKETS SECONDS | connections ADDR SOCKETS \
                 SECONDS PID [VIEW] | cross ADDR_A ADDR_B ROUNDS | fanout ADDR RECEIVERS MESSAGES RATE \
                 PID [bare|ADDR_B]";
    let addr: SocketAddr = args
        .get(1)
        .expect(usage)
        .parse()
        .expect("ADDR as host:port");
    assert!(
        addr.ip().is_loopback(),
        "the load generator only targets loopback addresses"
    );
    if args[0] == "fanout" {
        let number = |i: usize| -> u64 { args.get(i).expect(usage).parse().expect(usage) };
        let target = match args.get(6).map(String::as_str) {
            None => fanout::Target::One,
            Some("bare") => fanout::Target::Bare,
            Some(other) => {
                let b: SocketAddr = other.parse().expect("bare, or ADDR_B as host:port");
                assert!(
                    b.ip().is_loopback(),
                    "the load generator only targets loopback addresses"
                );
                fanout::Target::Two(b)
            }
        };
        return fanout::fanout(
            addr,
            number(2) as usize,
            number(3),
            number(4),
            number(5) as u32,
            target,
        )
        .await;
    }
    if args[0] == "cross" {
        let b: SocketAddr = args
            .get(2)
            .expect(usage)
            .parse()
            .expect("ADDR_B as host:port");
        assert!(
            b.ip().is_loopback(),
            "the load generator only targets loopback addresses"
        );
        let rounds: usize = args.get(3).expect(usage).parse().unwrap();
        return cross(addr, b, rounds).await;
    }
    let sockets: usize = args.get(2).expect(usage).parse().unwrap();
    let seconds: u64 = args.get(3).expect(usage).parse().unwrap();
    match args[0].as_str() {
        "live-writes" => {
            let pause: u64 = args.get(4).map_or(0, |p| p.parse().unwrap());
            live_writes(addr, sockets, seconds, Duration::from_millis(pause)).await;
        }
        "connections" => {
            let pid: u32 = args.get(4).expect(usage).parse().unwrap();
            let view = match args.get(5).map(String::as_str) {
                None | Some("settings") => "settings",
                Some("chat") => "chat",
                Some(other) => panic!("no view {other:?}: settings or chat"),
            };
            connections(addr, sockets, seconds, pid, view).await;
        }
        _ => panic!("{usage}"),
    }
}
