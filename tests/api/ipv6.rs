//! IPv6 neighbours: every limit per client address counts an IPv6 client by its /64, so a
//! machine rotating its source address inside the /64 it was given gets one allowance, not one
//! per address. The server runs in a network namespace of the test's own, reached over a veth
//! pair whose host end holds many addresses of one /64.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use crate::common::binary::{BIN, Server, as_a_user_would};
use crate::common::{Browser, skip};
use reqwest::StatusCode;

/// A network namespace with one end of a veth pair at `<prefix>::ffff`, the other end (in the
/// test's own namespace) at `<prefix>::1` to `<prefix>::<count>`, all in one /64. Deleted on
/// drop.
struct Neighbours {
    namespace: String,
    host_end: String,
    prefix: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl Neighbours {
    fn new(count: u16) -> Result<Neighbours, String> {
        let pid = std::process::id();
        let neighbours = Neighbours {
            namespace: format!("ls64-{pid}"),
            host_end: format!("l6h{pid}"),
            prefix: format!("fd64:{:x}:{:x}:1", pid >> 16, pid & 0xffff),
        };
        let (ns, host, peer) = (
            neighbours.namespace.as_str(),
            neighbours.host_end.as_str(),
            format!("l6n{pid}"),
        );
        ip(&["netns", "add", ns])?;
        ip(&["link", "add", host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let server = format!("{}::ffff/64", neighbours.prefix);
        ip(&["-n", ns, "addr", "add", &server, "dev", &peer, "nodad"])?;
        ip(&["-n", ns, "link", "set", &peer, "up"])?;
        for n in 1..=count {
            let address = format!("{}::{n:x}/64", neighbours.prefix);
            ip(&["addr", "add", &address, "dev", host, "nodad"])?;
        }
        ip(&["link", "set", host, "up"])?;
        Ok(neighbours)
    }

    /// The `n`th address of the /64 (from 1).
    fn address(&self, n: u16) -> IpAddr {
        format!("{}::{n:x}", self.prefix).parse().unwrap()
    }

    /// The real binary, inside the namespace, listening at `<prefix>::ffff`.
    fn start(&self, data_dir: &std::path::Path, args: &[&str]) -> Server {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace, BIN, "--listen"])
            .arg(format!("[{}::ffff]:0", self.prefix));
        as_a_user_would(&mut command, data_dir, args);
        Server::start_logged(command).0
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair, and with it the host end's addresses.
        let _ = ip(&["link", "del", &self.host_end]);
        let _ = ip(&["netns", "del", &self.namespace]);
    }
}

/// A fresh browser whose every request comes from `from`.
fn browser_from(from: IpAddr, server: SocketAddr) -> Browser {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from)
        .build()
        .unwrap();
    Browser {
        addr: server,
        client,
        cookie: None,
    }
}

/// A browser from `from`, once the veth pair carries packets (it may take a moment to come up).
async fn first_browser_from(from: IpAddr, server: SocketAddr) -> Browser {
    let started = std::time::Instant::now();
    loop {
        let browser = browser_from(from, server);
        let url = format!("http://{server}/healthz");
        match browser.client.get(url).send().await {
            Ok(response) if response.status() == StatusCode::OK => return browser,
            _ if started.elapsed() < std::time::Duration::from_secs(10) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => panic!("the namespace's server is not reachable from {from}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn addresses_of_one_ipv6_64_share_every_per_address_limit() {
    let neighbours = match Neighbours::new(40) {
        Ok(neighbours) => neighbours,
        Err(why) => {
            skip::<()>("the IPv6 /64 test", &format!("no network namespace: {why}"));
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let server = neighbours.start(dir.path(), &["--message-burst-per-ip", "5"]);
    first_browser_from(neighbours.address(1), server.addr).await;

    // 40 fresh browsers, each from an address of its own in the /64, post one message each:
    // the /64's allowance of 5 gets through, not 40.
    let mut posted = 0;
    for n in 1..=40 {
        let mut browser = browser_from(neighbours.address(n), server.addr);
        let status = browser
            .post_message(&format!("neighbour {n}"))
            .await
            .status();
        match status {
            StatusCode::SEE_OTHER => posted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("post {n}: {other}"),
        }
    }
    assert_eq!(posted, 5, "chat posts from 40 addresses of one /64");

    // "Forget me" from 20 addresses of the /64: the address allowance of 10, not 20.
    let mut forgotten = 0;
    for n in 1..=20 {
        let mut browser = browser_from(neighbours.address(n), server.addr);
        let token = browser.csrf_token().await;
        let status = browser
            .post("/settings/forget", &[("_csrf", &token)])
            .await
            .status();
        match status {
            StatusCode::SEE_OTHER => forgotten += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("forget {n}: {other}"),
        }
    }
    assert_eq!(forgotten, 10, "forgets from 20 addresses of one /64");
    server.stop();
    drop(neighbours);
}
