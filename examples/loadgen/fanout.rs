//! `fanout`: RECEIVERS chat pages, each its own session (on livesession) or its own socket (on
//! the bare baseline), and one sender posting MESSAGES messages, flat out (RATE 0: each post
//! after the ack of the one before) or RATE per second. Prints deliveries per second, the time
//! for a message to reach every page (p50/p99), the sender's ack time (p50/p99), `/healthz`
//! during the flood (p50/p99), missing and duplicated deliveries (both must be 0), and the
//! server's memory after the join and after the flood (from /proc/PID/status), and the CPU the
//! server and the load generator used while the messages flowed (from /proc/PID/stat).
//!
//! With a second address (two instances on one PostgreSQL database), the receivers alternate
//! between the two, and the sender is on the first: half the pages get each message through the
//! database's notifications. The memory is the first instance's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{Page, cpu_ticks, join_view, load_page, percentile, rss_kib, source};

/// When each message (by its sequence number, 1 to MESSAGES) reached one page, and how often,
/// and how many distinct ones did. Indexed by number, not hashed: the load generator shares the
/// server's cores, so what it spends per frame is taken from the server.
struct Arrivals {
    at: Vec<Option<(Instant, u32)>>,
    distinct: u64,
}

impl Arrivals {
    fn new(messages: u64) -> Arrivals {
        Arrivals {
            at: vec![None; usize::try_from(messages).unwrap() + 1],
            distinct: 0,
        }
    }

    fn arrived(&mut self, seq: u64, now: Instant) {
        let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.at.get_mut(i)) else {
            return;
        };
        match slot {
            Some((_, count)) => *count += 1,
            None => {
                *slot = Some((now, 1));
                self.distinct += 1;
            }
        }
    }

    fn get(&self, seq: u64) -> Option<(Instant, u32)> {
        *self.at.get(usize::try_from(seq).ok()?)?
    }
}

type Seen = Arc<Mutex<Arrivals>>;

/// The sequence numbers of the `fanout N` bodies in a frame's HTML, parsed in place.
fn sequence_numbers(html: &str) -> impl Iterator<Item = u64> + '_ {
    html.match_indices("fanout ").filter_map(|(at, marker)| {
        let rest = &html.as_bytes()[at + marker.len()..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        (digits > 0).then(|| {
            rest[..digits]
                .iter()
                .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
        })
    })
}

/// A page for socket `n`: a session of its own on livesession; nothing on the baseline.
async fn page_for(addr: SocketAddr, n: usize, bare: bool) -> Page {
    if bare {
        Page {
            cookie: "bare=1".to_owned(),
            csrf: String::new(),
            build: String::new(),
            version: 0,
        }
    } else {
        load_page(addr, source(n)).await
    }
}

/// `GET /healthz` on a fresh connection; how long the answer took.
async fn health(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return Duration::from_secs(60);
    };
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return Duration::from_secs(60);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    started.elapsed()
}

/// What the fan-out runs against: the bare baseline, one livesession, or two sharing a database
/// (the sender on the first).
#[derive(Debug, Clone, Copy)]
pub enum Target {
    Bare,
    One,
    Two(SocketAddr),
}

pub async fn fanout(
    addr: SocketAddr,
    receivers: usize,
    messages: u64,
    rate: u64,
    pid: u32,
    target: Target,
) {
    let bare = matches!(target, Target::Bare);
    // Receiver `n`'s instance.
    let instance = move |n: usize| match target {
        Target::Two(other) if n % 2 == 1 => other,
        _ => addr,
    };
    let mut seen_by: Vec<Seen> = Vec::with_capacity(receivers);
    let mut readers = Vec::with_capacity(receivers);
    for chunk_start in (0..receivers).step_by(250) {
        let joins: Vec<_> = (chunk_start..(chunk_start + 250).min(receivers))
            .map(|n| {
                let addr = instance(n);
                tokio::spawn(async move {
                    let page = page_for(addr, n, bare).await;
                    join_view(addr, source(n), &page, &format!("r{n}"), "chat").await
                })
            })
            .collect();
        for join in joins {
            let mut socket = join.await.unwrap();
            let seen: Seen = Arc::new(Mutex::new(Arrivals::new(messages)));
            seen_by.push(Arc::clone(&seen));
            readers.push(tokio::spawn(async move {
                while let Some(Ok(frame)) = socket.next().await {
                    let Message::Text(text) = frame else {
                        continue;
                    };
                    if !text.contains("\"messages\"") {
                        continue;
                    }
                    let now = Instant::now();
                    // The bodies stand as they are in the frame's JSON: no parse needed.
                    let mut seen = seen.lock().unwrap();
                    for seq in sequence_numbers(&text) {
                        seen.arrived(seq, now);
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let joined_kib = rss_kib(pid);

    // The sender, and a reader of its acks.
    let page = page_for(addr, receivers, bare).await;
    let sender = join_view(addr, source(receivers), &page, "sender", "chat").await;
    let (mut sink, mut stream) = sender.split();
    let acks: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let (acked, mut ack_wait) = tokio::sync::mpsc::unbounded_channel::<u64>();
    {
        let acks = Arc::clone(&acks);
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                if text.contains("\"ack\"") {
                    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                    let seq = value["seq"].as_u64().unwrap_or(0);
                    acks.lock().unwrap().insert(seq, Instant::now());
                    let _ = acked.send(seq);
                }
            }
        });
    }
    // /healthz every 10 ms while the messages flow.
    let probing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let probe = {
        let probing = Arc::clone(&probing);
        tokio::spawn(async move {
            let mut times = Vec::new();
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                times.push(health(addr).await);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            times
        })
    };

    let mut sent_at = HashMap::new();
    let ticks_before = (cpu_ticks(None), cpu_ticks(Some(pid)));
    let started = Instant::now();
    let mut ticks = (rate > 0).then(|| {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        ticks
    });
    for seq in 1..=messages {
        if let Some(ticks) = &mut ticks {
            ticks.tick().await;
        }
        let post = serde_json::json!({"t": "post", "form": "composer", "seq": seq,
            "nonce": format!("f{seq}"), "body": format!("fanout {seq}")});
        sent_at.insert(seq, Instant::now());
        sink.send(Message::text(post.to_string())).await.unwrap();
        if rate == 0 {
            while let Some(done) = ack_wait.recv().await {
                if done == seq {
                    break;
                }
            }
        }
    }
    // Wait for every page to have every message, or 10 s.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let complete = seen_by
            .iter()
            .all(|seen| seen.lock().unwrap().distinct >= messages);
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ticks_after = (cpu_ticks(None), cpu_ticks(Some(pid)));
    let flood_secs = started.elapsed().as_secs_f64();
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut healthz = probe.await.unwrap();
    let flood_kib = rss_kib(pid);

    let (mut missing, mut duplicated, mut deliveries) = (0u64, 0u64, 0u64);
    let mut last_delivery = started;
    let mut reach_all = Vec::new();
    for seq in 1..=messages {
        let mut slowest = None::<Instant>;
        for seen in &seen_by {
            match seen.lock().unwrap().get(seq) {
                Some((at, count)) => {
                    deliveries += 1;
                    duplicated += u64::from(count - 1);
                    slowest = Some(slowest.map_or(at, |s| s.max(at)));
                    last_delivery = last_delivery.max(at);
                }
                None => missing += 1,
            }
        }
        if let Some(slowest) = slowest {
            reach_all.push(slowest.duration_since(sent_at[&seq]));
        }
    }
    let mut ack_times: Vec<Duration> = {
        let acks = acks.lock().unwrap();
        (1..=messages)
            .filter_map(|seq| Some(acks.get(&seq)?.duration_since(sent_at[&seq])))
            .collect()
    };
    reach_all.sort();
    ack_times.sort();
    healthz.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let took = last_delivery
        .duration_since(started)
        .as_secs_f64()
        .max(1e-9);
    // Each process's share of one core while the messages flowed (the first server's only).
    let tick = 1.0 / 100.0; // USER_HZ, 100 on Linux
    let share = |before: u64, after: u64| (after - before) as f64 * tick / flood_secs * 100.0;
    let (loadgen_cpu, server_cpu) = (
        share(ticks_before.0, ticks_after.0),
        share(ticks_before.1, ticks_after.1),
    );
    println!(
        "{} | {receivers} receivers | {messages} messages {} | {:.0} deliveries/s | reach all p50 {:.2} ms p99 {:.2} ms | ack p50 {:.2} ms p99 {:.2} ms | healthz p50 {:.2} ms p99 {:.2} ms ({} probes) | missing {missing} duplicated {duplicated} | memory {:.1} MiB after join, {:.1} MiB after the flood ({:+.1} KiB per receiver) | CPU during the flood: server {server_cpu:.0}%, load generator {loadgen_cpu:.0}% of a core",
        match target {
            Target::Bare => "bare broadcast",
            Target::One => "livesession",
            Target::Two(_) => "livesession, 2 instances",
        },
        if rate == 0 {
            "flat out".to_owned()
        } else {
            format!("at {rate}/s")
        },
        deliveries as f64 / took,
        ms(percentile(&reach_all, 0.50)),
        ms(percentile(&reach_all, 0.99)),
        ms(percentile(&ack_times, 0.50)),
        ms(percentile(&ack_times, 0.99)),
        ms(percentile(&healthz, 0.50)),
        ms(percentile(&healthz, 0.99)),
        healthz.len(),
        joined_kib as f64 / 1024.0,
        flood_kib as f64 / 1024.0,
        (flood_kib as f64 - joined_kib as f64) / receivers as f64,
    );
    for reader in readers {
        reader.abort();
    }
}
