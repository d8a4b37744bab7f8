//! What kind of address an IP is, for the network policy: public destinations are reachable by
//! default, every other class only when a policy names it by address or CIDR.
//!
//! IPv6 forms that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
//! `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:AABB:CCDD::`) are classified by the IPv4
//! address they carry, so that `::ffff:127.0.0.1` is as much loopback as `127.0.0.1`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The class of an address, as a refusal names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// Routable on the internet: reachable without a policy.
    Public,
    /// `127.0.0.0/8`, `::1`: this machine.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `fc00::/7` (and the deprecated `fec0::/10`).
    Private,
    /// `169.254/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// `100.64/10`, carrier-grade NAT's shared space.
    SharedCgnat,
    /// `0.0.0.0/8`, `::`: "this host" to most stacks.
    Unspecified,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Not routable on the internet: `240/4`, `192.0.0/24`, `198.18/15` (benchmarking), the
    /// documentation ranges, `64:ff9b:1::/48`, `2001:db8::/32`.
    Reserved,
}

impl AddressClass {
    pub fn of(ip: IpAddr) -> AddressClass {
        match canonical(ip) {
            IpAddr::V4(v4) => v4_class(v4),
            IpAddr::V6(v6) => v6_class(v6),
        }
    }

    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::SharedCgnat => "CGNAT (shared)",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4), else itself.
/// `::` and `::1` stay IPv6: they are not IPv4-compatible addresses.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let o = v6.octets();
    let embedded_low = || IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    match s {
        // ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => embedded_low(),
        // ::a.b.c.d (deprecated), but not :: or ::1
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => embedded_low(),
        // 64:ff9b::a.b.c.d, the well-known NAT64 prefix
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => embedded_low(),
        // 2002:AABB:CCDD::/48, 6to4
        [0x2002, _, _, _, _, _, _, _] => IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => ip,
    }
}

fn v4_class(ip: Ipv4Addr) -> AddressClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => AddressClass::Unspecified,
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, b, _) if (16..32).contains(&b) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, b, _) if (64..128).contains(&b) => AddressClass::SharedCgnat,
        _ if ip.is_broadcast() => AddressClass::Broadcast,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Reserved,
        (198, 18 | 19, _) => AddressClass::Reserved,
        _ => AddressClass::Public,
    }
}

fn v6_class(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 || s[0] & 0xffc0 == 0xfec0 {
        AddressClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if s[0] & 0xff00 == 0xff00 {
        AddressClass::Multicast
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        // Documentation, inside 2000::/3. (Local-use NAT64, 64:ff9b:1::/48, lies outside it and
        // is reserved with the rest below.)
        AddressClass::Reserved
    } else if s[0] & 0xe000 == 0x2000 {
        // 2000::/3, the global unicast space.
        AddressClass::Public
    } else {
        // Everything else is unassigned or special (e.g. ::/96 leftovers, 100::/64 discard).
        AddressClass::Reserved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddressClass {
        AddressClass::of(text.parse().unwrap())
    }

    #[test]
    fn the_classes_of_the_issue() {
        for (text, expected) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.1.2", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd00::1", AddressClass::Private),
            ("fc00::1", AddressClass::Private),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.255", AddressClass::SharedCgnat),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            ("fec0::1", AddressClass::Private),
            ("64:ff9b:1::1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("198.51.100.7", AddressClass::Reserved),
            ("203.0.113.9", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("198.19.255.255", AddressClass::Reserved),
            // Neighbours of the special ranges above are public.
            ("192.0.1.1", AddressClass::Public),
            ("198.20.0.1", AddressClass::Public),
            ("203.0.114.1", AddressClass::Public),
            ("2001:4860:4860::8888", AddressClass::Public),
            ("2600:db8::1", AddressClass::Public),
            ("2600:ff9b:1::1", AddressClass::Public),
            ("93.184.215.14", AddressClass::Public),
            ("172.15.255.255", AddressClass::Public),
            ("172.32.0.0", AddressClass::Public),
            ("100.63.255.255", AddressClass::Public),
            ("100.128.0.0", AddressClass::Public),
            (
                "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                AddressClass::Public,
            ),
        ] {
            assert_eq!(class(text), expected, "{text}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_classified_by_what_they_carry() {
        for text in [
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "2002:7f00:1::",
        ] {
            assert_eq!(class(text), AddressClass::Loopback, "{text}");
        }
        assert_eq!(class("::ffff:10.0.0.1"), AddressClass::Private);
        assert_eq!(class("::ffff:169.254.169.254"), AddressClass::LinkLocal);
        assert_eq!(class("::ffff:0.0.0.0"), AddressClass::Unspecified);
        assert_eq!(class("::ffff:8.8.8.8"), AddressClass::Public);
        // `::a.b.c.d` with a zero high half is still IPv4-compatible, but `::` and `::1` are not.
        assert_eq!(
            canonical("::5".parse().unwrap()),
            "0.0.0.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("::".parse().unwrap()),
            "::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
    }
}
