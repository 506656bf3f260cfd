//! The origin that links for another device name (the link and QR code of "Use on another
//! device"), and the addresses the startup log says the server is reached at.
//!
//! The rule, in order:
//!
//! 1. `--public-url` set: its origin, whatever the request says.
//! 2. The request's `Host`, when it names a host this server answers for
//!    ([`Origins::for_request`] says which), unless it is a loopback one on a server listening on
//!    every interface of a machine that has a LAN address.
//! 3. Otherwise (no `Host`, a forged one, or that loopback one): on a server listening on every
//!    interface, the address the request came in on when that is not loopback, else this
//!    machine's LAN address ([`Origins::lan_address`]); on a server listening on one address,
//!    that address.
//!
//! So a phone can open a link made on the desktop at `http://localhost:4000`, and a forged `Host`
//! (`evil.example`, `user:pw@host`, 2 KB of name) never reaches a link or a QR code. The
//! interface addresses are read once, at startup: an address the machine gets later is not one
//! the server answers for until it restarts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use http::uri::{Authority, Uri};

/// The longest `Host` looked at: a DNS name (253) and a port. A longer one is not a host this
/// server answers for, and is never parsed.
const MAX_HOST_BYTES: usize = 253 + 6;

/// `--public-url`: the origin (scheme, host, port) links name, checked at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

impl PublicUrl {
    /// The origin, as `https://host[:port]`, without a trailing slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    /// An `http://` or `https://` URL with a host and nothing after it but an optional `/`: no
    /// user, no path, no query, no fragment. The error is one sentence naming what is wrong.
    fn from_str(input: &str) -> Result<PublicUrl, String> {
        let refuse = |why: &str| {
            Err(format!(
                "{input:?} {why}: the public URL names an origin only, like \
                 https://demo.example.com or http://192.168.1.20:4000"
            ))
        };
        if input.contains('#') {
            return refuse("has a fragment");
        }
        let Ok(uri) = input.trim().parse::<Uri>() else {
            return refuse("is not a URL");
        };
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase) {
            Some(scheme) if scheme == "http" || scheme == "https" => scheme,
            Some(_) => return refuse("is not http:// or https://"),
            None => return refuse("has no http:// or https://"),
        };
        let Some(authority) = uri.authority() else {
            return refuse("has no host");
        };
        if authority.as_str().contains('@') {
            return refuse("names a user");
        }
        if authority.host().is_empty() {
            return refuse("has no host");
        }
        if authority.as_str().ends_with(':') {
            return refuse("has an empty port");
        }
        if authority.as_str().len() > authority.host().len() && authority.port_u16().is_none() {
            return refuse("has a port that is not a number up to 65535");
        }
        if uri.query().is_some() {
            return refuse("has a query");
        }
        if !matches!(uri.path(), "" | "/") {
            return refuse("has a path");
        }
        let authority = authority.as_str().to_ascii_lowercase();
        Ok(PublicUrl(format!("{scheme}://{authority}")))
    }
}

/// What the origin of a link is chosen from: the bound address, this machine's interface
/// addresses (read once, at startup), `--public-url`, and the scheme of links without it.
#[derive(Debug, Clone)]
pub struct Origins {
    listen: SocketAddr,
    interfaces: Vec<IpAddr>,
    public: Option<PublicUrl>,
    scheme: &'static str,
}

/// Whether a `Host` names this server, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    /// `localhost`, `*.localhost`, `127.0.0.0/8` or `::1`: this machine only.
    Loopback,
    /// An address or name this server answers on, that other machines may reach too.
    Reachable,
    /// Nothing this server answers for: missing, malformed, too long, with a user, or foreign.
    Not,
}

impl Origins {
    /// Origins for a server bound at `listen` (the bound address, so port 0 is resolved) on a
    /// machine with `interfaces`; links are `https` when `secure` (and no `public` URL).
    pub fn new(
        listen: SocketAddr,
        interfaces: Vec<IpAddr>,
        public: Option<PublicUrl>,
        secure: bool,
    ) -> Origins {
        let listen = SocketAddr::new(listen.ip().to_canonical(), listen.port());
        Origins {
            listen,
            interfaces: interfaces.into_iter().map(|ip| ip.to_canonical()).collect(),
            public,
            scheme: if secure { "https" } else { "http" },
        }
    }

    /// The origin of links for a request with this `Host` header, that came in on the
    /// connection's `local` address (`None` when not known: the listening address stands in).
    ///
    /// The hosts this server answers for: a loopback name (`localhost`, `*.localhost`) or
    /// address when loopback reaches it, the address it listens on, the address the request came
    /// in on, and, listening on every interface, any of this machine's interface addresses. A
    /// `Host` with a user, longer than a DNS name, or not an authority answers for nothing. Its
    /// port is kept as given: a proxy or a port mapping may put the server behind another one.
    pub fn for_request(&self, host: Option<&[u8]>, local: Option<SocketAddr>) -> String {
        if let Some(public) = &self.public {
            return public.as_str().to_owned();
        }
        let host = host.and_then(|h| std::str::from_utf8(h).ok());
        let (named, host) =
            host.map_or((Named::Not, String::new()), |h| self.answers_for(h, local));
        match named {
            Named::Reachable => format!("{}://{host}", self.scheme),
            Named::Loopback if self.lan_address().is_none() => {
                format!("{}://{host}", self.scheme)
            }
            _ => self.fallback(local),
        }
    }

    /// Whether this server answers for `host` (a `Host` header's value), and how (see
    /// [`Origins::for_request`]); with the host and port rewritten from what was parsed, so
    /// nothing of the header but a checked name or address and a number reaches a link.
    fn answers_for(&self, host: &str, local: Option<SocketAddr>) -> (Named, String) {
        let not = (Named::Not, String::new());
        if host.len() > MAX_HOST_BYTES || host.contains('@') {
            return not;
        }
        let Ok(authority) = host.parse::<Authority>() else {
            return not;
        };
        let has_port = authority.as_str().len() > authority.host().len();
        let port = match (has_port, authority.port_u16()) {
            (false, _) => String::new(),
            (true, Some(port)) => format!(":{port}"),
            (true, None) => return not,
        };
        let name = authority.host().trim_end_matches('.').to_ascii_lowercase();
        let loopback_reaches = self.every_interface() || self.listen.ip().is_loopback();
        if is_localhost(&name) {
            return match loopback_reaches {
                true => (Named::Loopback, format!("{name}{port}")),
                false => not,
            };
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = bare.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            return not;
        };
        let answered = ip == self.listen.ip()
            || local.is_some_and(|local| local.ip().to_canonical() == ip)
            || (self.every_interface() && self.accepts(ip) && self.interfaces.contains(&ip));
        let host = match ip {
            IpAddr::V4(v4) => format!("{v4}{port}"),
            IpAddr::V6(v6) => format!("[{v6}]{port}"),
        };
        match answered || (ip.is_loopback() && self.every_interface()) {
            false => not,
            true if ip.is_loopback() => (Named::Loopback, host),
            true => (Named::Reachable, host),
        }
    }

    /// The origin when the request's `Host` does not name one another device can use.
    fn fallback(&self, local: Option<SocketAddr>) -> String {
        let reached = local.map_or(self.listen.ip(), |l| l.ip().to_canonical());
        let addr = if !self.every_interface() {
            self.listen
        } else if !reached.is_loopback() && !reached.is_unspecified() {
            SocketAddr::new(reached, self.listen.port())
        } else {
            self.lan_address()
                .unwrap_or_else(|| SocketAddr::new(self.loopback(), self.listen.port()))
        };
        format!("{}://{addr}", self.scheme)
    }

    /// This machine's address on its network, with the listening port: the first interface
    /// address that is neither loopback nor link-local (IPv4 first: every phone has it), of a
    /// family the listener accepts. `None` when the server listens on one address, or the
    /// machine has none.
    pub fn lan_address(&self) -> Option<SocketAddr> {
        if !self.every_interface() {
            return None;
        }
        let network = self.network_addresses();
        network
            .iter()
            .find(|a| a.is_ipv4())
            .or(network.first())
            .copied()
    }

    /// The URLs this server is reached at, for the startup log: `Local` (from this machine)
    /// and `Network` (from others, one per interface address), `https://` when it serves TLS
    /// itself (`tls`), and `Public` when set.
    pub fn reachable_at(&self, tls: bool) -> Vec<(&'static str, String)> {
        let scheme = if tls { "https" } else { "http" };
        let mut urls = Vec::new();
        let ip = self.listen.ip();
        if ip.is_loopback() || self.every_interface() {
            let local = SocketAddr::new(self.local_ip(), self.listen.port());
            urls.push(("Local", format!("{scheme}://{local}")));
        }
        if self.every_interface() {
            for addr in self.network_addresses() {
                urls.push(("Network", format!("{scheme}://{addr}")));
            }
        } else if !ip.is_loopback() {
            urls.push(("Network", format!("{scheme}://{}", self.listen)));
        }
        if let Some(public) = &self.public {
            urls.push(("Public", public.as_str().to_owned()));
        }
        urls
    }

    /// Interface addresses another machine may reach, of a family the listener accepts, with the
    /// listening port, in the order the system lists them.
    fn network_addresses(&self) -> Vec<SocketAddr> {
        self.interfaces
            .iter()
            .copied()
            .filter(|&ip| self.accepts(ip) && !ip.is_loopback() && !ip.is_unspecified())
            .filter(|ip| !is_link_local(ip) && !ip.is_multicast())
            .map(|ip| SocketAddr::new(ip, self.listen.port()))
            .collect()
    }

    /// True when the server listens on every interface (`0.0.0.0` or `::`).
    fn every_interface(&self) -> bool {
        self.listen.ip().is_unspecified()
    }

    /// Whether the listener takes connections to `ip`: `0.0.0.0` takes IPv4 only, `::` both.
    fn accepts(&self, ip: IpAddr) -> bool {
        self.listen.is_ipv6() || ip.is_ipv4()
    }

    /// The loopback address of the listener's family.
    fn loopback(&self) -> IpAddr {
        match self.listen.ip() {
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        }
    }

    /// The address this machine reaches the server at.
    fn local_ip(&self) -> IpAddr {
        if self.every_interface() {
            self.loopback()
        } else {
            self.listen.ip()
        }
    }
}

/// `localhost` or a name under it (`app.localhost`), which resolve to loopback (RFC 6761): its
/// labels letters, digits and dashes.
fn is_localhost(name: &str) -> bool {
    let Some(under) = name.strip_suffix("localhost") else {
        return false;
    };
    under.is_empty()
        || under.strip_suffix('.').is_some_and(|labels| {
            labels.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        })
}

/// `169.254.0.0/16` or `fe80::/10`: an address only the same link reaches, and only with its
/// interface named.
fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// This machine's interface addresses, as the system lists them.
pub fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    Ok(if_addrs::get_if_addrs()?
        .iter()
        .map(if_addrs::Interface::ip)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A desktop: loopback, a link-local address, then its LAN address, and an IPv6 one.
    fn desktop() -> Vec<IpAddr> {
        [
            "127.0.0.1",
            "::1",
            "169.254.7.7",
            "fe80::1",
            "192.168.1.20",
            "2001:db8::20",
        ]
        .map(ip)
        .to_vec()
    }

    fn origins(listen: &str, public: Option<&str>) -> Origins {
        let public = public.map(|p| p.parse().unwrap());
        Origins::new(addr(listen), desktop(), public, false)
    }

    fn link(origins: &Origins, host: &str, local: &str) -> String {
        origins.for_request(Some(host.as_bytes()), Some(addr(local)))
    }

    #[test]
    fn the_public_url_wins_over_any_host() {
        let o = origins("0.0.0.0:4000", Some("https://Demo.Example.com/"));
        assert_eq!(
            link(&o, "localhost:4000", "127.0.0.1:4000"),
            "https://demo.example.com"
        );
        assert_eq!(
            link(&o, "192.168.1.20:4000", "192.168.1.20:4000"),
            "https://demo.example.com"
        );
        assert_eq!(o.for_request(None, None), "https://demo.example.com");
    }

    #[test]
    fn a_loopback_request_on_every_interface_gets_the_lan_address() {
        let o = origins("0.0.0.0:4000", None);
        for host in ["127.0.0.1:4000", "localhost:4000", "app.localhost:4000"] {
            assert_eq!(
                link(&o, host, "127.0.0.1:4000"),
                "http://192.168.1.20:4000",
                "{host}"
            );
        }
        // Without a Host at all, too; and a request from the network keeps its own Host.
        assert_eq!(
            o.for_request(None, Some(addr("127.0.0.1:4000"))),
            "http://192.168.1.20:4000"
        );
        assert_eq!(
            link(&o, "192.168.1.20:4000", "192.168.1.20:4000"),
            "http://192.168.1.20:4000"
        );
    }

    #[test]
    fn link_local_and_loopback_interfaces_are_skipped() {
        let only = ["127.0.0.1", "169.254.1.1", "fe80::2", "10.0.0.5"].map(ip);
        let o = Origins::new(addr("0.0.0.0:8080"), only.to_vec(), None, false);
        assert_eq!(o.lan_address(), Some(addr("10.0.0.5:8080")));
        assert_eq!(
            o.reachable_at(false),
            vec![
                ("Local", "http://127.0.0.1:8080".to_owned()),
                ("Network", "http://10.0.0.5:8080".to_owned()),
            ]
        );
        assert_eq!(
            o.reachable_at(true)[1],
            ("Network", "https://10.0.0.5:8080".to_owned())
        );
        // Nothing but loopback and link-local: the link stays on loopback.
        let none = Origins::new(addr("0.0.0.0:8080"), only[..3].to_vec(), None, false);
        assert_eq!(none.lan_address(), None);
        assert_eq!(
            link(&none, "localhost:8080", "127.0.0.1:8080"),
            "http://localhost:8080"
        );
        assert_eq!(none.for_request(None, None), "http://127.0.0.1:8080");
    }

    #[test]
    fn ipv6_addresses_are_bracketed_with_the_port() {
        let v6 = Origins::new(
            addr("[::]:4000"),
            ["::1", "fe80::1", "2001:db8::20"].map(ip).to_vec(),
            None,
            true,
        );
        assert_eq!(
            link(&v6, "[::1]:4000", "[::1]:4000"),
            "https://[2001:db8::20]:4000"
        );
        assert_eq!(
            link(&v6, "[2001:db8::20]:4000", "[2001:db8::20]:4000"),
            "https://[2001:db8::20]:4000"
        );
        // `::` takes IPv4 too, and a phone is likelier to have it: IPv4 first.
        let dual = origins("[::]:4000", None);
        assert_eq!(dual.lan_address(), Some(addr("192.168.1.20:4000")));
        assert!(
            dual.reachable_at(false)
                .contains(&("Network", "http://[2001:db8::20]:4000".to_owned()))
        );
        assert!(
            dual.reachable_at(false)
                .contains(&("Local", "http://[::1]:4000".to_owned()))
        );
        // `0.0.0.0` takes no IPv6: no IPv6 address for it.
        assert!(
            !origins("0.0.0.0:4000", None)
                .reachable_at(false)
                .iter()
                .any(|(_, u)| u.contains('['))
        );
        // A dual-stack socket sees IPv4 as mapped addresses.
        assert_eq!(
            link(&dual, "127.0.0.1:4000", "[::ffff:127.0.0.1]:4000"),
            "http://192.168.1.20:4000"
        );
    }

    #[test]
    fn a_loopback_only_server_keeps_loopback() {
        let o = origins("127.0.0.1:4000", None);
        assert_eq!(
            link(&o, "localhost:4000", "127.0.0.1:4000"),
            "http://localhost:4000"
        );
        assert_eq!(
            link(&o, "127.0.0.1:4000", "127.0.0.1:4000"),
            "http://127.0.0.1:4000"
        );
        // What reaches the link is what was parsed, not the header's bytes.
        assert_eq!(
            link(&o, "LocalHost.:4000", "127.0.0.1:4000"),
            "http://localhost:4000"
        );
        assert_eq!(
            link(&o, "[::ffff:127.0.0.1]:4000", "127.0.0.1:4000"),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            link(&o, "dev.localhost:4000", "127.0.0.1:4000"),
            "http://dev.localhost:4000"
        );
        assert_eq!(o.lan_address(), None);
        assert_eq!(
            o.reachable_at(false),
            vec![("Local", "http://127.0.0.1:4000".to_owned())]
        );
        // An interface address it does not listen on is not one it answers for.
        assert_eq!(
            link(&o, "192.168.1.20:4000", "127.0.0.1:4000"),
            "http://127.0.0.1:4000"
        );
    }

    #[test]
    fn a_server_on_one_address_names_that_address() {
        let o = origins("192.168.1.20:4000", None);
        assert_eq!(
            link(&o, "localhost:4000", "192.168.1.20:4000"),
            "http://192.168.1.20:4000"
        );
        assert_eq!(
            link(&o, "evil.example", "192.168.1.20:4000"),
            "http://192.168.1.20:4000"
        );
        assert_eq!(
            o.reachable_at(false),
            vec![("Network", "http://192.168.1.20:4000".to_owned())]
        );
    }

    #[test]
    fn a_forged_host_falls_back() {
        let long = format!("{}.example", "a".repeat(2048));
        let forged = [
            "evil.example",
            "evil.example:4000",
            "user:pw@127.0.0.1:4000",
            "user@192.168.1.20:4000",
            long.as_str(),
            "",
            "exa mple",
            "8.8.8.8:4000",
            "192.168.1.20:4000/x",
            "127.0.0.1:99999",
            "127.0.0.1:40x",
            "a_b.localhost:4000",
            ".localhost:4000",
            "x..localhost",
        ];
        for (listen, local, fallback) in [
            ("0.0.0.0:4000", "127.0.0.1:4000", "http://192.168.1.20:4000"),
            (
                "0.0.0.0:4000",
                "192.168.1.20:4000",
                "http://192.168.1.20:4000",
            ),
            ("127.0.0.1:4000", "127.0.0.1:4000", "http://127.0.0.1:4000"),
        ] {
            let o = origins(listen, None);
            for host in forged {
                assert_eq!(link(&o, host, local), fallback, "{host:?} on {listen}");
            }
            assert_eq!(
                o.for_request(Some(b"\xff\xfe"), Some(addr(local))),
                fallback
            );
        }
    }

    #[test]
    fn a_public_url_is_an_http_or_https_origin_and_nothing_more() {
        for (good, origin) in [
            ("https://demo.example.com", "https://demo.example.com"),
            ("https://demo.example.com/", "https://demo.example.com"),
            ("HTTP://192.168.1.20:4000", "http://192.168.1.20:4000"),
            ("http://[2001:db8::1]:8080/", "http://[2001:db8::1]:8080"),
        ] {
            assert_eq!(good.parse::<PublicUrl>().unwrap().as_str(), origin);
        }
        for (bad, why) in [
            ("demo.example.com", "has no http:// or https://"),
            ("ftp://demo.example.com", "is not http:// or https://"),
            ("https://", "is not a URL"),
            ("https://user:pw@demo.example.com", "names a user"),
            ("https://demo.example.com/app", "has a path"),
            ("https://demo.example.com/?a=1", "has a query"),
            ("https://demo.example.com/#top", "has a fragment"),
            ("https://demo.example.com:", "has an empty port"),
            ("https://demo example", "is not a URL"),
            ("https://demo.example.com:99999", "up to 65535"),
            ("https://demo.example.com:80x", "up to 65535"),
            ("", "is not a URL"),
        ] {
            let error = bad.parse::<PublicUrl>().unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
            assert!(error.contains("like https://demo.example.com"), "{error}");
            assert_eq!(error.matches(". ").count(), 0, "one sentence: {error}");
        }
    }
}
