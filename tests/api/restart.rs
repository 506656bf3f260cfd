//! Restarts nobody notices: a listening socket handed to each process (systemd's socket
//! activation, `LISTEN_FDS`), a new process started on it before the old one stops, and the old
//! one draining (requests in flight finished, live sockets closed with 1012 and the spread the
//! pages reconnect within); `READY=1`, `WATCHDOG=1` and `STOPPING=1` to `NOTIFY_SOCKET`;
//! `--reuse-port` for a second process on the same address without systemd.
//!
//! The socket's holder is a few lines of Python (what systemd does: bind once, pass the socket
//! as descriptor 3 to each process it starts), so the test needs no code that touches
//! descriptors itself.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::Browser;
use crate::common::binary::{BIN, Server, as_a_user_would, command};
use crate::common::live::{self, PageInfo, Socket};

/// Binds 127.0.0.1:0 once, says its port, then starts a server on that socket (descriptor 3,
/// `LISTEN_FDS=1`) for each `start LOG` line, with its standard error in `LOG`; `wait PID` says
/// how that server exited.
const HOLDER: &str = r#"
import os, socket, subprocess, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1024)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
print("port", s.getsockname()[1], flush=True)
children = {}
for line in sys.stdin:
    word, arg = line.split()
    if word == "start":
        env = dict(os.environ, LISTEN_FDS="1")
        child = subprocess.Popen(sys.argv[1:], pass_fds=(3,), env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=open(arg, "w"))
        children[child.pid] = child
        print("pid", child.pid, flush=True)
    elif word == "wait":
        print("exit", children[int(arg)].wait(), flush=True)
"#;

/// The holder and what it says.
struct Holder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Holder {
    fn start(data: &Path, args: &[&str]) -> Holder {
        let mut holder = Command::new("python3");
        holder.args(["-c", HOLDER, BIN]);
        as_a_user_would(&mut holder, data, args);
        holder.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = holder.spawn().expect("python3 runs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let port = said(&mut stdout, "port").parse().unwrap();
        Holder {
            child,
            stdin,
            stdout,
            port,
        }
    }

    /// Starts a server on the socket, logging to `log`; its pid, once it is ready.
    fn server(&mut self, log: &Path) -> u32 {
        writeln!(self.stdin, "start {}", log.display()).unwrap();
        let pid = said(&mut self.stdout, "pid").parse().unwrap();
        let started = Instant::now();
        while !std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(started.elapsed() < Duration::from_secs(20), "not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        pid
    }

    /// Sends SIGTERM to server `pid` and waits for its exit code.
    fn stop(&mut self, pid: u32) -> i32 {
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        writeln!(self.stdin, "wait {pid}").unwrap();
        said(&mut self.stdout, "exit").parse().unwrap()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rest of the next line, which must start with `word`.
fn said(stdout: &mut BufReader<ChildStdout>, word: &str) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.strip_prefix(word)
        .unwrap_or_else(|| panic!("expected {word:?}, got {line:?}"))
        .trim()
        .to_owned()
}

/// A live settings page, as the client script keeps it: its page id and what the page it was
/// loaded with says (it reconnects with those, without loading the page again).
struct Page {
    id: String,
    info: PageInfo,
    socket: Socket,
    seq: u64,
}

impl Page {
    async fn open(browser: &mut Browser, id: &str) -> Page {
        let info = live::page_info(browser, "/settings").await;
        let socket = Page::join(browser, id, &info).await;
        Page {
            id: id.to_owned(),
            info,
            socket,
            seq: 0,
        }
    }

    async fn join(browser: &Browser, id: &str, info: &PageInfo) -> Socket {
        let origin = format!("http://{}", browser.addr);
        let mut socket = live::open(browser, Some(&origin)).await.unwrap();
        live::send_join(&mut socket, "settings", id, info).await;
        let joined = live::recv(&mut socket).await;
        assert_eq!(joined["t"], "joined", "{joined}");
        assert_eq!(joined["restart_spread_ms"], 300, "{joined}");
        socket
    }

    /// Sends a change and waits for its ack.
    async fn save(&mut self, name: &str) {
        self.seq += 1;
        live::change(&mut self.socket, self.seq, name, "dark").await;
        live::recv_until(&mut self.socket, |m| m["t"] == "ack").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_on_a_passed_socket_refuses_nothing_and_every_live_page_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--reconnect-spread", "300ms", "--shutdown-grace", "5s"];
    let mut holder = Holder::start(&data, &args);
    let first = holder.server(&dir.path().join("first.log"));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], holder.port));
    let first_log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(
        first_log.contains("serving on the socket systemd passed"),
        "{first_log}"
    );

    // Live pages, each with an edit saved.
    let mut pages = Vec::new();
    for n in 0..5 {
        let mut browser = Browser::new(addr);
        let mut page = Page::open(&mut browser, &format!("page-{n}")).await;
        page.save(&format!("before{n}")).await;
        pages.push((browser, page));
    }

    // Load: new connections, one request each, from four clients, through the restart.
    let mut reader = Browser::new(addr);
    reader.save_settings("reader", "light").await;
    let cookie = reader.cookie.clone().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, cookie) = (stop.clone(), ok.clone(), failed.clone(), cookie.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let answer = client
                    .get(format!("http://{addr}/settings"))
                    .header("cookie", &cookie)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status() == StatusCode::OK => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The new process starts on the same socket; then the old one stops.
    let second = holder.server(&dir.path().join("second.log"));
    let before_stop = ok.load(Ordering::Relaxed);
    assert_eq!(holder.stop(first), 0, "the first process exits cleanly");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("restart under load: {ok} requests, {failed} failed");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(
        ok > before_stop,
        "requests went on after the first process stopped"
    );

    // Each live page was closed with 1012, reconnects without loading the page again, and its
    // acknowledged edit is there; a new edit is saved by the new process.
    for (n, (browser, page)) in pages.iter_mut().enumerate() {
        let frame = live::closed(&mut page.socket).await.expect("a close frame");
        assert_eq!(frame.code, CloseCode::Restart);
        page.socket = Page::join(browser, &page.id, &page.info).await;
        let render = live::recv_until(&mut page.socket, |m| m["t"] == "render").await;
        let html = render["html"].as_str().unwrap();
        assert!(html.contains(&format!("before{n}")), "page {n}: {html}");
        page.save(&format!("after{n}")).await;
        let _ = page
            .socket
            .send(tokio_tungstenite::tungstenite::Message::Close(None))
            .await;
        assert_eq!(
            crate::common::username_field(&browser.page("/settings").await),
            format!("after{n}")
        );
    }
    assert_eq!(holder.stop(second), 0);
}

/// A datagram socket standing in for systemd's `NOTIFY_SOCKET`; what the server says on it.
struct Notify {
    socket: UnixDatagram,
}

impl Notify {
    fn bind(path: &Path) -> Notify {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notify { socket }
    }

    /// The next message that contains `wanted` (others are skipped).
    fn until(&self, wanted: &str) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {wanted} in time: {e}"));
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.contains(wanted) {
                return text;
            }
        }
    }
}

#[test]
fn the_server_tells_systemd_it_is_ready_answers_the_watchdog_and_says_when_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let notify = Notify::bind(&path);
    let mut server = command(&dir.path().join("data"), &[]);
    server
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let (server, _log) = Server::start_logged(server);
    notify.until("READY=1");
    // Every half of the 200 ms: a few in a second.
    let started = Instant::now();
    for _ in 0..3 {
        notify.until("WATCHDOG=1");
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    server.signal("-TERM");
    notify.until("STOPPING=1");
    assert!(server.wait(Duration::from_secs(10)));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_reuse_port_a_second_process_binds_the_same_address_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["--listen", listen.as_str(), "--reuse-port"];
    let first = Server::start(&dir.path().join("one"), &args);
    let second = Server::start(&dir.path().join("two"), &args);
    assert_eq!(first.addr, second.addr);
    first.stop();
    let mut browser = Browser::new(second.addr);
    assert_eq!(browser.get("/healthz").await.status(), StatusCode::OK);
    second.stop();
    // Without the flag the address is taken.
    let taken = Server::start(&dir.path().join("three"), &args);
    let output =
        crate::common::binary::run_to_exit(&dir.path().join("four"), &["--listen", &listen]);
    crate::common::binary::assert_refused(&output, "cannot listen on");
    taken.stop();
}
