//! Who is at the other end of a connection, as far as limits per client address are concerned.
//!
//! The accept loop puts a [`ClientAddr`] into every request's extensions: the address of the
//! socket's peer or, when that peer is a trusted proxy (`--trusted-proxy`), the client its
//! `X-Forwarded-For` names (see [`TrustedProxies::client`]). Handlers and the live endpoint take
//! it as an extractor, so a limit per address (live sockets, chat messages, "forget me") counts
//! one client however many sessions it makes. Next to it goes the [`LocalAddr`] the connection
//! came in on, which the links for another device are chosen by.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The header a proxy names the client in.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

pub use crate::site::ClientAddr;

/// The address of this server that a request's connection came in on (a loopback one, or a
/// LAN address): with `0.0.0.0`, it tells a request from this machine from one from the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// A trusted proxy: one address (`10.0.0.5`, `::1`) or a range of them in CIDR notation
/// (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `ip` is in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(net)), 32, self.prefix)
                    == mask(u128::from(u32::from(ip)), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), 128, self.prefix) == mask(u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `bits`-bit address.
fn mask(addr: u128, bits: u8, prefix: u8) -> u128 {
    match bits - prefix {
        0 => addr,
        shift if shift >= 128 => 0,
        shift => addr >> shift,
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    fn from_str(input: &str) -> Result<Network, String> {
        let input = input.trim();
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{input:?} is not an IP address or a CIDR range (10.0.0.5, 10.0.0.0/8, ::1)")
        })?;
        let addr = addr.to_canonical();
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => match prefix.parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => return Err(format!("{input:?}: the prefix length must be 0 to {bits}")),
            },
        };
        Ok(Network { addr, prefix })
    }
}

/// The proxies (`--trusted-proxy`) whose `X-Forwarded-For` names the client.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Network>);

impl TrustedProxies {
    /// These ranges.
    pub fn new(networks: Vec<Network>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(ip))
    }

    /// The client of a request from `peer`: `peer` itself, unless it is a trusted proxy; then the
    /// rightmost address of `X-Forwarded-For` (every such header, in order) that is not a trusted
    /// proxy itself. Addresses left of that one are the client's say, and are ignored. A value
    /// that is not an address ends the walk: the last address read is the client (the peer when
    /// there is none).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.0.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|&b| b == b','));
        for hop in hops {
            let Some(ip) = parse_hop(hop) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:443`).
fn parse_hop(hop: &[u8]) -> Option<IpAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_are_single_addresses_or_cidr_ranges() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.0.9")),
            "an IPv4-mapped address"
        );
        let one: Network = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Network = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")) && !all.contains(ip("::1")));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "",
            "nonsense",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/x",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = proxies(&["127.0.0.1"]);
        let headers = forwarded(&["10.0.0.1"]);
        assert_eq!(trusted.client(ip("127.0.0.2"), &headers), ip("127.0.0.2"));
        assert_eq!(
            TrustedProxies::default().client(ip("127.0.0.1"), &headers),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        let peer = ip("127.0.0.1");
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        // A client's own X-Forwarded-For comes first; the proxies append to it.
        assert_eq!(
            trusted.client(peer, &forwarded(&["1.1.1.1, 203.0.113.7, 10.0.0.3"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["1.1.1.1", "203.0.113.7 , 10.0.0.3"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["198.51.100.4:5555"])),
            ip("198.51.100.4")
        );
        assert_eq!(
            trusted.client(peer, &forwarded(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        // No header: the proxy itself. Garbage: the last address read.
        assert_eq!(trusted.client(peer, &HeaderMap::new()), peer);
        assert_eq!(trusted.client(peer, &forwarded(&["junk"])), peer);
        assert_eq!(
            trusted.client(peer, &forwarded(&["203.0.113.7, junk, 10.0.0.3"])),
            ip("10.0.0.3")
        );
        // Only proxies: the furthest one.
        assert_eq!(
            trusted.client(peer, &forwarded(&["10.0.0.9, 10.0.0.3"])),
            ip("10.0.0.9")
        );
    }
}
