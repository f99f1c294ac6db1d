//! The one guard for outbound addresses that users choose (git remotes, webhook payload URLs,
//! Kakao callback URLs): herald connects only to public internet addresses unless
//! `HERALD_ALLOW_PRIVATE_TARGETS` is set.
//!
//! - Hosts are read the way `url` parses them (WHATWG): decimal, octal, hexadecimal and
//!   percent-encoded spellings of an IPv4 address (`http://2130706433/`, `http://0x7f.1/`,
//!   `http://%31%32%37.0.0.1/`) are that address by the time this guard sees them, and every
//!   caller hands the *parsed* URL on to whatever connects.
//! - A name is checked on the addresses it resolves to, where the connection is made (the
//!   hook and callback clients resolve through [`resolve_public`]; git is pinned to the
//!   addresses checked with `http.curloptResolve`), so a name cannot resolve one way when
//!   checked and another when used.
//! - Refusals name the host, never what it resolved to: an answer must not map internal names.
//!
//! What counts as public: the IANA special-purpose registries for IPv4 and IPv6, minus what they
//! mark globally reachable; multicast; IPv6 outside global unicast (`2000::/3`); the IPv4 an
//! IPv6 address carries (mapped, translated, NAT64) judged as that IPv4 address; deprecated
//! transition prefixes (IPv4-compatible, 6to4, site-local) refused whole.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Part of every refusal, so that an operator knows the switch; the hook client also tells a
/// refusal (which no retry changes) from a failure by it.
pub const PRIVATE_REFUSAL: &str = "set HERALD_ALLOW_PRIVATE_TARGETS=true to allow it";

/// Why a host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} is a loopback, private or reserved address; {PRIVATE_REFUSAL}")]
    NotPublic(String),
    #[error("could not resolve {0}")]
    Unresolved(String),
}

impl Refused {
    /// Whether trying again can change the outcome (a name may resolve later).
    pub fn is_final(&self) -> bool {
        matches!(self, Refused::NotPublic(_))
    }
}

/// Whether herald may connect to `ip` when private targets are not allowed.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(network)) & mask)
}

fn in_v6(ip: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(network)) & mask)
}

/// IPv4 networks that are not public: the special-purpose registry's entries that are not
/// globally reachable, the deprecated 6to4 relay anycast, multicast and the reserved 240/4.
const V4_NOT_PUBLIC: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (CGNAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and the limited broadcast address
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !V4_NOT_PUBLIC
        .iter()
        .any(|(network, prefix)| in_v4(ip, *network, *prefix))
}

/// IPv6 networks inside global unicast (`2000::/3`) that are not public.
const V6_NOT_PUBLIC: &[([u16; 8], u32)] = &[
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, ORCHID…)
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16), // 6to4 (deprecated; carries any IPv4 address)
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    // IPv4-mapped (::ffff:a.b.c.d) and IPv4-translated (::ffff:0:a.b.c.d) reach that IPv4
    // address; so does the well-known NAT64 prefix (64:ff9b::/96) through a translator.
    let embedded = u128::from(ip) as u32;
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96)
        || in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96)
        || in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96)
    {
        return is_public_v4(Ipv4Addr::from(embedded));
    }
    // Everything else outside global unicast is refused: the unspecified address, loopback,
    // IPv4-compatible addresses (::/96), local-use NAT64 (64:ff9b:1::/48), discard-only
    // (100::/64), SRv6 SIDs (5f00::/16), unique local (fc00::/7), link-local (fe80::/10),
    // site-local (fec0::/10) and multicast (ff00::/8).
    in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3)
        && !V6_NOT_PUBLIC
            .iter()
            .any(|(network, prefix)| in_v6(ip, *network, *prefix))
}

/// Names that mean this machine or its link whatever DNS says.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.ends_with(".local")
        || name.ends_with(".internal")
        || name.ends_with(".home.arpa")
}

/// The check that needs no DNS: an IP literal that is not public, or a local name. A host that
/// passes must still be resolved through [`resolve_public`] where it is connected to.
pub fn refuse_literal(host: &url::Host<&str>) -> Result<(), Refused> {
    let refused = match host {
        url::Host::Domain(name) => is_local_name(name),
        url::Host::Ipv4(ip) => !is_public_v4(*ip),
        url::Host::Ipv6(ip) => !is_public_v6(*ip),
    };
    if refused {
        return Err(Refused::NotPublic(host.to_string()));
    }
    Ok(())
}

/// [`refuse_literal`] for a host written as text (a URL's `host_str`, brackets allowed).
pub fn refuse_literal_str(host: &str) -> Result<(), Refused> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => refuse_literal(&url::Host::Ipv4(ip)),
        Ok(IpAddr::V6(ip)) => refuse_literal(&url::Host::Ipv6(ip)),
        Err(_) => refuse_literal(&url::Host::Domain(bare)),
    }
}

/// The addresses `host` resolves to, when every one is public; otherwise a refusal that does
/// not say what the name resolved to. A name with one private answer is refused whole: the
/// connection could go to any of them.
pub async fn resolve_public(host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
    refuse_literal_str(host)?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let found: Vec<SocketAddr> = match tokio::net::lookup_host((bare, port)).await {
        Ok(found) => found.collect(),
        Err(error) => {
            tracing::debug!(%host, %error, "could not resolve an outbound host");
            return Err(Refused::Unresolved(host.to_string()));
        }
    };
    if found.is_empty() {
        return Err(Refused::Unresolved(host.to_string()));
    }
    if let Some(private) = found.iter().find(|a| !is_public_ip(a.ip())) {
        // The operator may see what it resolved to; the user who chose the address may not.
        tracing::info!(%host, resolved = %private.ip(), "refused an outbound host that resolves to a private address");
        return Err(Refused::NotPublic(host.to_string()));
    }
    Ok(found)
}

/// The addresses to connect to for a URL a user chose: its literal address, or its name
/// resolved through [`resolve_public`]; everything, unchecked, when `allow_private`.
pub async fn addresses_for(
    url: &url::Url,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, Refused> {
    let host = url
        .host()
        .ok_or_else(|| Refused::Unresolved(url.as_str().to_string()))?;
    let port = url.port_or_known_default().unwrap_or(443);
    if !allow_private {
        refuse_literal(&host)?;
    }
    match host {
        url::Host::Ipv4(ip) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        url::Host::Ipv6(ip) => Ok(vec![SocketAddr::new(ip.into(), port)]),
        url::Host::Domain(name) if allow_private => tokio::net::lookup_host((name, port))
            .await
            .map(Iterator::collect)
            .map_err(|_| Refused::Unresolved(name.to_string())),
        url::Host::Domain(name) => resolve_public(name, port).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> bool {
        is_public_ip(text.parse().expect(text))
    }

    #[test]
    fn special_purpose_ipv4_is_not_public() {
        for ip in [
            "0.1.2.3",
            "10.9.8.7",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.3.1",
            "198.20.0.1",
            "110.76.143.234",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn special_purpose_ipv6_and_carried_ipv4_are_not_public() {
        for ip in [
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(!public(ip), "{ip} must not be public");
        }
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(public(ip), "{ip} is public");
        }
    }

    #[test]
    fn other_spellings_of_loopback_are_loopback_once_parsed() {
        for spelling in [
            "http://2130706433/x.git",
            "http://0x7f.1/x.git",
            "http://0177.0.0.1/x.git",
            "http://127.1/x.git",
            "http://%31%32%37.0.0.1/x.git",
            "http://[::ffff:7f00:1]/x.git",
            "http://LOCALHOST./x.git",
            "http://printer.local/x.git",
        ] {
            let url = url::Url::parse(spelling).expect(spelling);
            let host = url.host().expect("host");
            assert!(refuse_literal(&host).is_err(), "{spelling} must be refused");
        }
        let url = url::Url::parse("https://git.example.org/x.git").expect("url");
        assert_eq!(refuse_literal(&url.host().expect("host")), Ok(()));
    }

    #[test]
    fn refusals_do_not_say_what_a_name_resolves_to() {
        let text = Refused::NotPublic("intranet.example".into()).to_string();
        assert_eq!(
            text,
            "intranet.example is a loopback, private or reserved address; set HERALD_ALLOW_PRIVATE_TARGETS=true to allow it"
        );
    }
}
