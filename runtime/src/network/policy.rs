//! An entry's outgoing network policy (`network:` of a `process.wasm` entry), after Spin's
//! `allowed_outbound_hosts`: rules `scheme://host:port` that say where the process may connect.
//!
//! Parsed once, at load, into [`NetworkPolicy`]; its decisions are pure functions of a
//! destination (tested here without any traffic), which `wasi:http` (`network::http`) and
//! `wasi:sockets` (`network::sockets`) ask before anything is sent.
//!
//! - Without `network.allow`, the default is `*://*:*`: any public destination.
//! - Wildcard hosts (`*`, `*.example.com`) reach public addresses only: loopback, private,
//!   link-local, CGNAT, unspecified, multicast, broadcast and reserved addresses must be named by
//!   address or CIDR (`http://127.0.0.1:*`, `tcp://10.0.0.0/8:5432`). A host name matched by a
//!   wildcard is resolved and every address it resolves to is checked the same way, so a
//!   public name that resolves to `127.0.0.1` is refused.
//! - A host name written out (`http://db.internal:8080`) is trusted wherever it resolves: the
//!   manifest's author named it.
//! - `tcp` and `udp` rules name addresses (IP, CIDR or `*`): sockets connect to addresses.
//! - Binding a socket to a port of its own (not 0) and listening are allowed only by
//!   `network.listen` rules; an ephemeral bind (port 0, what every client does, explicitly or
//!   implicitly) needs none, since what the socket may reach is checked per destination.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::address::{canonical, AddressClass};
use crate::id::EntryId;

/// The protocol of a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Tcp,
    Udp,
}

impl Scheme {
    const ALL: [Scheme; 4] = [Scheme::Http, Scheme::Https, Scheme::Tcp, Scheme::Udp];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
            Scheme::Udp => "udp",
        }
    }

    /// The port a rule means when it names none.
    fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Http => Some(80),
            Scheme::Https => Some(443),
            Scheme::Tcp | Scheme::Udp => None,
        }
    }

    /// Whether its destinations are addresses only (sockets) rather than names too (HTTP).
    fn by_address(self) -> bool {
        matches!(self, Scheme::Tcp | Scheme::Udp)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Is(Scheme),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// `*`: any name, any public address.
    Any,
    /// `*.example.com`, stored as `example.com`: its subdomains (not itself).
    Subdomains(String),
    /// `api.example.com`: that name, wherever it resolves.
    Name(String),
    /// An address (a /32 or /128) or a CIDR: any address in it, whatever its class.
    Net(Cidr),
}

/// A network: its address (canonical: IPv4-mapped IPv6 written as IPv4) and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of `bits` bits of `a` and `b` are equal.
fn prefix_eq(a: u128, b: u128, bits: u8, prefix: u8) -> bool {
    let shift = u32::from(bits - prefix.min(bits));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    low: u16,
    high: u16,
}

impl Ports {
    const ANY: Ports = Ports {
        low: 0,
        high: u16::MAX,
    };

    fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// One `scheme://host:port` rule, as written.
#[derive(Clone, Debug)]
pub struct Rule {
    scheme: SchemePattern,
    host: HostPattern,
    ports: Ports,
    text: String,
}

impl Rule {
    fn applies(&self, scheme: Scheme, port: u16) -> bool {
        (self.scheme == SchemePattern::Any || self.scheme == SchemePattern::Is(scheme))
            && self.ports.contains(port)
    }

    /// Parses `scheme://host[:port]`.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let example = "write `scheme://host[:port]`, e.g. `https://api.example.com`, \
                       `http://127.0.0.1:*` or `tcp://10.0.0.0/8:5432`";
        let Some((scheme_text, rest)) = text.trim().split_once("://") else {
            return Err(format!("`{text}` is not a rule: {example}"));
        };
        let scheme = match scheme_text.to_ascii_lowercase().as_str() {
            "*" => SchemePattern::Any,
            name => match Scheme::ALL.into_iter().find(|s| s.name() == name) {
                Some(scheme) => SchemePattern::Is(scheme),
                None => {
                    return Err(format!(
                        "`{text}`: unknown scheme `{scheme_text}` (known: http, https, tcp, udp, *)"
                    ))
                }
            },
        };
        let (host_text, port_text) = split_host_port(rest).map_err(|e| format!("`{text}`: {e}"))?;
        let host = parse_host(host_text).map_err(|e| format!("`{text}`: {e}"))?;
        let ports = match port_text {
            Some(port) => parse_ports(port).map_err(|e| format!("`{text}`: {e}"))?,
            None => match &scheme {
                SchemePattern::Is(s) if s.default_port().is_some() => {
                    let port = s.default_port().unwrap_or_default();
                    Ports {
                        low: port,
                        high: port,
                    }
                }
                _ => {
                    return Err(format!(
                        "`{text}`: a port is required for scheme `{scheme_text}` (`:*` for any)"
                    ))
                }
            },
        };
        if let SchemePattern::Is(s) = &scheme {
            if s.by_address() && matches!(host, HostPattern::Name(_) | HostPattern::Subdomains(_)) {
                return Err(format!(
                    "`{text}`: {s} rules name an IP address, a CIDR or `*` (sockets connect to addresses, not names)"
                ));
            }
        }
        Ok(Rule {
            scheme,
            host,
            ports,
            text: text.trim().to_string(),
        })
    }
}

/// `host[:port]` with the host possibly `[v6]`, `[v6]/n`, `[v6/n]` or `v4/n`.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.is_empty() {
        return Err("the host is missing".into());
    }
    if rest.contains(['?', '#', '@']) {
        return Err("a rule is `scheme://host[:port]`, without path, query or user".into());
    }
    let (host, after) = if rest.starts_with('[') {
        let close = rest
            .find(']')
            .ok_or("an IPv6 address opened with `[` is not closed")?;
        let (mut host, mut after) = rest.split_at(close + 1);
        // `[v6]/n`: the prefix follows the bracket.
        if let Some(stripped) = after.strip_prefix('/') {
            let end = stripped.find(':').unwrap_or(stripped.len());
            host = &rest[..close + 2 + end];
            after = &stripped[end..];
        }
        (host, after)
    } else if rest.matches(':').count() > 1 {
        return Err(format!(
            "write IPv6 addresses in brackets (`[::1]:80`, `[fd00::]/8:*`), not `{rest}`"
        ));
    } else {
        match rest.find(':') {
            Some(colon) => rest.split_at(colon),
            None => (rest, ""),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    match after.strip_prefix(':') {
        Some(port) => Ok((host, Some(port))),
        None if after.is_empty() => Ok((host, None)),
        None => Err(format!(
            "unexpected `{after}` after the host (a rule names no path)"
        )),
    }
}

fn parse_host(text: &str) -> Result<HostPattern, String> {
    if text == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some(inner) = text.strip_prefix('[') {
        // `[v6]`, `[v6]/n` or `[v6/n]`
        let v6 = inner.replacen(']', "", 1);
        return parse_address_or_cidr(&v6, text);
    }
    if let Some((before, _)) = text.split_once('/') {
        if before.parse::<IpAddr>().is_err() {
            return Err(format!(
                "`{text}`: a rule names no path (only a CIDR has a `/`)"
            ));
        }
    }
    if text.contains('/') || text.parse::<IpAddr>().is_ok() {
        return parse_address_or_cidr(text, text);
    }
    if let Some(domain) = text.strip_prefix("*.") {
        return Ok(HostPattern::Subdomains(parse_name(domain)?));
    }
    Ok(HostPattern::Name(parse_name(text)?))
}

fn parse_address_or_cidr(text: &str, written: &str) -> Result<HostPattern, String> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("`{written}` is not an IP address or CIDR"))?;
    let ip = canonical(ip);
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => bits,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= bits => n,
            _ => {
                return Err(format!(
                    "`{written}`: the prefix length must be a number from 0 to {bits}"
                ))
            }
        },
    };
    let cidr = Cidr { net: ip, prefix };
    let value = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let host_bits = u32::from(bits - prefix);
    let host_mask = 1u128.checked_shl(host_bits).map_or(u128::MAX, |b| b - 1);
    if value & host_mask != 0 {
        return Err(format!(
            "`{written}` has bits set after its prefix: not a network address"
        ));
    }
    Ok(HostPattern::Net(cidr))
}

fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim_end_matches('.').to_ascii_lowercase();
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "`{text}` is not a host name, an IP address, a CIDR, `*` or `*.domain`"
        ));
    }
    Ok(name)
}

fn parse_ports(text: &str) -> Result<Ports, String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("bad port `{p}` (a number from 0 to 65535)"))
    };
    if text == "*" {
        return Ok(Ports::ANY);
    }
    if text.contains('/') {
        return Err(format!("`{text}`: a rule names no path"));
    }
    match text.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("bad port range `{text}`: {low} is above {high}"));
            }
            Ok(Ports { low, high })
        }
        None => {
            let p = port(text)?;
            Ok(Ports { low: p, high: p })
        }
    }
}

/// How far the addresses of a host name matched by the policy may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameReach {
    /// A rule names it exactly: wherever it resolves.
    Anywhere,
    /// Only a wildcard matched: its public addresses, and others the policy names.
    Public,
}

/// An entry's network policy: its `network.allow` rules (or the default) and `network.listen`.
#[derive(Clone, Debug)]
pub struct NetworkPolicy {
    entry: EntryId,
    allow: Vec<Rule>,
    /// Whether `network.allow` was written (else `allow` is the default `*://*:*`).
    declared: bool,
    listen: Vec<Rule>,
    /// Its refusals' lines in the log (shared by clones: they are the same entry's).
    log: std::sync::Arc<crate::log_budget::LogBudget>,
}

/// Why the policy refused a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// No rule matches the scheme, host and port.
    NotListed,
    /// The address is of a class only an address or CIDR rule reaches.
    Class(AddressClass),
    /// The name resolved to an address of such a class.
    Resolves { name: String, class: AddressClass },
    /// A bind to a fixed port, or a listen, that no `network.listen` rule covers.
    NotListening,
}

/// A refused use of the network, naming the entry, its policy, the destination and what to
/// write to allow it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub entry: EntryId,
    pub declared: bool,
    /// `http://127.0.0.1:8080`, `tcp://10.0.0.1:5432`, `tcp listen 0.0.0.0:8080`.
    pub destination: String,
    pub why: Why,
    /// The rule that would allow it.
    pub suggestion: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = if self.declared {
            "its network.allow list"
        } else {
            "the default network policy (public destinations only; the entry has no network.allow)"
        };
        write!(
            f,
            "entry `{}`: network policy refuses {}: ",
            self.entry, self.destination
        )?;
        match &self.why {
            Why::NotListed => write!(f, "no rule of {policy} matches it")?,
            Why::Class(class) => write!(
                f,
                "a {class} address, which {policy} does not name (wildcards reach public addresses only)"
            )?,
            Why::Resolves { name, class } => write!(
                f,
                "`{name}` resolves to a {class} address, which {policy} does not name (wildcards reach public addresses only)"
            )?,
            Why::NotListening => {
                return write!(
                    f,
                    "binding a port or listening needs a network.listen rule, e.g. `network: {{ listen: [\"{}\"] }}`",
                    self.suggestion
                )
            }
        }
        write!(
            f,
            "; to allow it, add `{}` to network.allow",
            self.suggestion
        )
    }
}

impl std::error::Error for Refusal {}

/// `host` as a URL writes it: IPv6 in brackets.
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

impl NetworkPolicy {
    /// No `network.allow`: `*://*:*`, any public destination.
    pub fn default_for(entry: EntryId) -> NetworkPolicy {
        NetworkPolicy {
            entry,
            allow: vec![Rule {
                scheme: SchemePattern::Any,
                host: HostPattern::Any,
                ports: Ports::ANY,
                text: "*://*:*".into(),
            }],
            declared: false,
            listen: Vec::new(),
            log: Default::default(),
        }
    }

    /// Logs `refusal` at `warn`, within this entry's budget of lines (the guest decides how
    /// often it is refused).
    pub(crate) fn log_refusal(&self, refusal: &Refusal) {
        crate::log_budget::warn_within!(
            self.log,
            target: "wasmproc::network",
            format_args!("entry `{}`: network refusals", self.entry),
            "{refusal}"
        );
    }

    /// `network: { allow, listen }`; `allow: None` keeps the default. Errors name the field and
    /// the rule.
    pub fn parse(
        entry: EntryId,
        allow: Option<&[String]>,
        listen: &[String],
    ) -> Result<NetworkPolicy, String> {
        let mut policy = NetworkPolicy::default_for(entry);
        if let Some(allow) = allow {
            policy.declared = true;
            policy.allow = allow
                .iter()
                .enumerate()
                .map(|(i, text)| Rule::parse(text).map_err(|e| format!("network.allow[{i}]: {e}")))
                .collect::<Result<_, _>>()?;
        }
        policy.listen = listen
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let rule = Rule::parse(text).map_err(|e| format!("network.listen[{i}]: {e}"))?;
                match rule.scheme {
                    SchemePattern::Is(Scheme::Tcp | Scheme::Udp) => Ok(rule),
                    _ => Err(format!(
                        "network.listen[{i}]: `{text}`: listen rules are `tcp://` or `udp://` (a local address and port)"
                    )),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(policy)
    }

    /// The entry this policy belongs to.
    pub fn entry(&self) -> &EntryId {
        &self.entry
    }

    /// Whether the entry wrote `network.allow`.
    pub fn is_declared(&self) -> bool {
        self.declared
    }

    /// The rules in force, as written (`*://*:*` for the default).
    pub fn rules(&self) -> impl Iterator<Item = &str> {
        self.allow.iter().map(|r| r.text.as_str())
    }

    /// The `network.listen` rules, as written.
    pub fn listen_rules(&self) -> impl Iterator<Item = &str> {
        self.listen.iter().map(|r| r.text.as_str())
    }

    /// The decision for a destination written as a host: an IP address, else a name (whose
    /// addresses [`NetworkPolicy::check_resolved`] then checks).
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> Result<NameReach, Box<Refusal>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => self
                .check_addr(scheme, ip, port)
                .map(|()| NameReach::Anywhere),
            Err(_) => self.check_name(scheme, host, port),
        }
    }

    /// A destination given by its address.
    pub fn check_addr(&self, scheme: Scheme, ip: IpAddr, port: u16) -> Result<(), Box<Refusal>> {
        let ip = canonical(ip);
        let class = AddressClass::of(ip);
        let mut wildcard_matched = false;
        for rule in self.allow.iter().filter(|r| r.applies(scheme, port)) {
            match &rule.host {
                HostPattern::Net(cidr) if cidr.contains(ip) => return Ok(()),
                HostPattern::Any if class.is_public() => return Ok(()),
                HostPattern::Any => wildcard_matched = true,
                _ => {}
            }
        }
        Err(self.refusal(
            format!("{scheme}://{}:{port}", url_host(ip)),
            if wildcard_matched {
                Why::Class(class)
            } else {
                Why::NotListed
            },
            format!("{scheme}://{}:{port}", url_host(ip)),
        ))
    }

    /// A destination given by a host name: refused when no rule matches it, else how far the
    /// addresses it resolves to may be.
    pub fn check_name(
        &self,
        scheme: Scheme,
        name: &str,
        port: u16,
    ) -> Result<NameReach, Box<Refusal>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut reach = None;
        for rule in self.allow.iter().filter(|r| r.applies(scheme, port)) {
            match &rule.host {
                HostPattern::Name(n) if *n == name => return Ok(NameReach::Anywhere),
                HostPattern::Subdomains(domain)
                    if name.len() > domain.len() + 1
                        && name.ends_with(domain.as_str())
                        && name.as_bytes()[name.len() - domain.len() - 1] == b'.' =>
                {
                    reach = Some(NameReach::Public)
                }
                // Sockets never reach names: their `*` covers addresses only.
                HostPattern::Any if !scheme.by_address() => reach = Some(NameReach::Public),
                _ => {}
            }
        }
        reach.ok_or_else(|| {
            self.refusal(
                format!("{scheme}://{name}:{port}"),
                Why::NotListed,
                format!("{scheme}://{name}:{port}"),
            )
        })
    }

    /// An address that `name`, matched with `reach`, resolved to.
    pub fn check_resolved(
        &self,
        reach: NameReach,
        scheme: Scheme,
        name: &str,
        ip: IpAddr,
        port: u16,
    ) -> Result<(), Box<Refusal>> {
        let class = AddressClass::of(ip);
        if reach == NameReach::Anywhere || class.is_public() {
            return Ok(());
        }
        let named = self.allow.iter().any(|rule| {
            rule.applies(scheme, port)
                && matches!(&rule.host, HostPattern::Net(c) if c.contains(ip))
        });
        if named {
            return Ok(());
        }
        Err(self.refusal(
            format!("{scheme}://{name}:{port}"),
            Why::Resolves {
                name: name.to_string(),
                class,
            },
            format!("{scheme}://{}:{port}", url_host(canonical(ip))),
        ))
    }

    /// Binding a socket to `local`: an ephemeral port (0) needs no rule (the socket's
    /// destinations are checked one by one); a fixed port needs a `network.listen` rule.
    pub fn check_bind(&self, scheme: Scheme, local: SocketAddr) -> Result<(), Box<Refusal>> {
        if local.port() == 0 {
            return Ok(());
        }
        self.check_listen(scheme, local)
    }

    /// Listening on (or binding a fixed port of) `local`: a `network.listen` rule must cover it.
    pub fn check_listen(&self, scheme: Scheme, local: SocketAddr) -> Result<(), Box<Refusal>> {
        let ip = canonical(local.ip());
        let covered = self.listen.iter().any(|rule| {
            rule.applies(scheme, local.port())
                && match &rule.host {
                    HostPattern::Any => true,
                    HostPattern::Net(cidr) => cidr.contains(ip),
                    _ => false,
                }
        });
        if covered {
            return Ok(());
        }
        let port = if local.port() == 0 {
            "*".to_string()
        } else {
            local.port().to_string()
        };
        Err(self.refusal(
            format!("{scheme} bind/listen on {}:{port}", url_host(ip)),
            Why::NotListening,
            format!("{scheme}://{}:{port}", url_host(ip)),
        ))
    }

    /// Whether a socket (`tcp` or `udp` with host `*`) may reach names resolved at run time:
    /// only then does `wasi:sockets/ip-name-lookup` serve the guest. Otherwise a lookup could
    /// reach nothing it may connect to, and would only carry data out in DNS queries.
    pub fn reaches_public_sockets(&self) -> bool {
        self.allow.iter().any(|rule| {
            rule.host == HostPattern::Any
                && matches!(
                    rule.scheme,
                    SchemePattern::Any | SchemePattern::Is(Scheme::Tcp | Scheme::Udp)
                )
        })
    }

    /// Whether a datagram from `source` may reach the guest: from where it may send, or any
    /// source when it may listen on UDP.
    pub fn check_receive(&self, source: SocketAddr) -> bool {
        self.check_addr(Scheme::Udp, source.ip(), source.port())
            .is_ok()
            || self
                .listen
                .iter()
                .any(|r| r.scheme == SchemePattern::Is(Scheme::Udp))
    }

    /// Boxed: refusals are rare, and a small `Err` keeps every decision's result small.
    fn refusal(&self, destination: String, why: Why, suggestion: String) -> Box<Refusal> {
        Box::new(Refusal {
            entry: self.entry.clone(),
            declared: self.declared,
            destination,
            why,
            suggestion,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn entry() -> EntryId {
        EntryId::parse("myns:worker").unwrap()
    }

    fn default() -> NetworkPolicy {
        NetworkPolicy::default_for(entry())
    }

    fn declared(rules: &[&str]) -> NetworkPolicy {
        let rules: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        NetworkPolicy::parse(entry(), Some(&rules), &[]).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn parse_error(rule: &str) -> String {
        NetworkPolicy::parse(entry(), Some(&[rule.to_string()]), &[]).unwrap_err()
    }

    const SPECIAL: [(&str, AddressClass); 12] = [
        ("127.0.0.1", AddressClass::Loopback),
        ("::1", AddressClass::Loopback),
        ("::ffff:127.0.0.1", AddressClass::Loopback),
        ("10.0.0.1", AddressClass::Private),
        ("192.168.0.10", AddressClass::Private),
        ("fd12::1", AddressClass::Private),
        ("169.254.169.254", AddressClass::LinkLocal),
        ("fe80::1", AddressClass::LinkLocal),
        ("100.64.1.1", AddressClass::SharedCgnat),
        ("0.0.0.0", AddressClass::Unspecified),
        ("::", AddressClass::Unspecified),
        ("255.255.255.255", AddressClass::Broadcast),
    ];

    #[test]
    fn the_default_allows_public_destinations_and_refuses_the_special_classes() {
        let policy = default();
        for scheme in Scheme::ALL {
            for port in [80, 443, 5432] {
                assert_eq!(policy.check_addr(scheme, ip("93.184.215.14"), port), Ok(()));
                assert_eq!(policy.check_addr(scheme, ip("2606:4700::1"), port), Ok(()));
                for (text, class) in SPECIAL {
                    let refusal = policy.check_addr(scheme, ip(text), port).unwrap_err();
                    assert_eq!(refusal.why, Why::Class(class), "{text}");
                }
            }
        }
        // `allows` takes a host as a URL writes it: an address literal is decided at once.
        assert_eq!(
            policy.allows(Scheme::Http, "[::1]", 80).unwrap_err().why,
            Why::Class(AddressClass::Loopback)
        );
        assert_eq!(
            policy.allows(Scheme::Http, "8.8.8.8", 80),
            Ok(NameReach::Anywhere)
        );
        // Names are matched by `*`, and their addresses checked once resolved.
        let reach = policy.check_name(Scheme::Https, "api.example.com", 443);
        assert_eq!(reach, Ok(NameReach::Public));
        let resolved = |addr| {
            policy.check_resolved(
                NameReach::Public,
                Scheme::Https,
                "api.example.com",
                ip(addr),
                443,
            )
        };
        assert_eq!(resolved("93.184.215.14"), Ok(()));
        assert_eq!(
            resolved("127.0.0.1").unwrap_err().why,
            Why::Resolves {
                name: "api.example.com".into(),
                class: AddressClass::Loopback
            }
        );
    }

    #[test]
    fn a_refusal_names_the_entry_the_policy_the_destination_and_the_fix() {
        let refusal = default()
            .check_addr(Scheme::Http, ip("127.0.0.1"), 8080)
            .unwrap_err();
        let message = refusal.to_string();
        for part in [
            "entry `myns:worker`",
            "network policy refuses http://127.0.0.1:8080",
            "a loopback address",
            "default network policy",
            "add `http://127.0.0.1:8080` to network.allow",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
        let message = declared(&["https://api.example.com"])
            .check_addr(Scheme::Tcp, ip("::1"), 22)
            .unwrap_err()
            .to_string();
        assert!(message.contains("tcp://[::1]:22"), "{message}");
        assert!(
            message.contains("no rule of its network.allow list"),
            "{message}"
        );
    }

    #[test]
    fn a_declared_list_is_all_that_is_allowed() {
        let policy = declared(&[
            "http://127.0.0.1:*",
            "tcp://10.0.0.0/8:5432",
            "udp://[::1]:53",
        ]);
        assert_eq!(
            policy.check_addr(Scheme::Http, ip("127.0.0.1"), 8080),
            Ok(())
        );
        assert_eq!(
            policy.check_addr(Scheme::Http, ip("::ffff:127.0.0.1"), 1),
            Ok(())
        );
        assert_eq!(
            policy.check_addr(Scheme::Tcp, ip("10.200.3.4"), 5432),
            Ok(())
        );
        assert_eq!(policy.check_addr(Scheme::Udp, ip("::1"), 53), Ok(()));
        for (scheme, addr, port) in [
            (Scheme::Https, "127.0.0.1", 443),
            (Scheme::Http, "127.0.0.2", 80),
            (Scheme::Tcp, "127.0.0.1", 80),
            (Scheme::Tcp, "10.0.0.1", 5433),
            (Scheme::Tcp, "11.0.0.1", 5432),
            (Scheme::Udp, "::1", 54),
            (Scheme::Udp, "127.0.0.1", 53),
            // Public, but not listed: a declared list replaces the default.
            (Scheme::Http, "93.184.215.14", 80),
        ] {
            let refusal = policy.check_addr(scheme, ip(addr), port).unwrap_err();
            assert_eq!(refusal.why, Why::NotListed, "{scheme} {addr}:{port}");
        }
        assert!(policy.check_name(Scheme::Http, "localhost", 80).is_err());
        assert!(declared(&[])
            .check_addr(Scheme::Https, ip("8.8.8.8"), 443)
            .is_err());
    }

    #[test]
    fn wildcards_reach_public_addresses_and_exact_names_reach_anywhere() {
        let policy = declared(&[
            "https://*.example.com",
            "http://db.internal:8000-8010",
            "*://*:*",
        ]);
        assert_eq!(
            policy.check_name(Scheme::Https, "A.Example.com.", 443),
            Ok(NameReach::Public)
        );
        assert_eq!(
            policy.check_name(Scheme::Http, "db.internal", 8005),
            Ok(NameReach::Anywhere)
        );
        assert_eq!(
            policy.check_resolved(
                NameReach::Anywhere,
                Scheme::Http,
                "db.internal",
                ip("10.0.0.3"),
                8005
            ),
            Ok(())
        );
        let only_subdomains = declared(&["https://*.example.com"]);
        for (name, port) in [
            ("example.com", 443),
            ("badexample.com", 443),
            ("a.example.com", 80),
            ("a.example.org", 443),
        ] {
            assert!(
                only_subdomains
                    .check_name(Scheme::Https, name, port)
                    .is_err(),
                "{name}:{port}"
            );
        }
        // `*` covers public addresses only, also when listed explicitly.
        let refusal = policy
            .check_addr(Scheme::Tcp, ip("192.168.1.1"), 22)
            .unwrap_err();
        assert_eq!(refusal.why, Why::Class(AddressClass::Private));
        // ... and sockets never reach names.
        assert!(policy.check_name(Scheme::Tcp, "example.com", 22).is_err());
        // A wildcard-matched name that resolves to a private address needs the address named.
        let with_address = declared(&["https://*.example.com", "https://10.1.0.0/16:443"]);
        let resolved = |addr| {
            with_address.check_resolved(
                NameReach::Public,
                Scheme::Https,
                "x.example.com",
                ip(addr),
                443,
            )
        };
        assert_eq!(resolved("10.1.2.3"), Ok(()));
        assert!(resolved("10.2.0.1").is_err());
    }

    #[test]
    fn a_subdomain_wildcard_matches_its_subdomains_only_and_a_name_only_itself() {
        let policy = declared(&["https://*.example.com", "http://db.internal:8000"]);
        for name in ["api.example.com", "a.example.com", "x.y.example.com"] {
            assert_eq!(
                policy.check_name(Scheme::Https, name, 443),
                Ok(NameReach::Public),
                "{name}"
            );
        }
        for name in [
            "example.com",
            ".example.com",
            "badexample.com",
            "example.com.evil",
        ] {
            assert!(
                policy.check_name(Scheme::Https, name, 443).is_err(),
                "{name}"
            );
        }
        assert_eq!(
            policy.check_name(Scheme::Http, "db.internal", 8000),
            Ok(NameReach::Anywhere)
        );
        for name in ["cache.internal", "db.internal.evil", "internal"] {
            assert!(
                policy.check_name(Scheme::Http, name, 8000).is_err(),
                "{name}"
            );
        }
        // Beside `*`, a name not written out is reached as a wildcard's: public addresses only.
        let with_any = declared(&["http://db.internal:8000", "*://*:*"]);
        assert_eq!(
            with_any.check_name(Scheme::Http, "cache.internal", 8000),
            Ok(NameReach::Public)
        );
    }

    /// Attack: names a resolver reads as addresses (`2130706433`, `0x7f000001`, `127.1`) or
    /// that mean this machine (`localhost`) are names to the policy: under a wildcard they
    /// reach public addresses only, and the loopback address they resolve to is refused.
    #[test]
    fn names_that_spell_addresses_reach_only_what_their_addresses_may() {
        let policy = default();
        for name in [
            "2130706433",
            "0x7f000001",
            "127.1",
            "localhost",
            "LOCALHOST.",
        ] {
            let reach = policy.check_name(Scheme::Http, name, 80).unwrap();
            assert_eq!(reach, NameReach::Public, "{name}");
            let refusal = policy
                .check_resolved(reach, Scheme::Http, name, ip("127.0.0.1"), 80)
                .unwrap_err();
            assert_eq!(
                refusal.why,
                Why::Resolves {
                    name: name.to_string(),
                    class: AddressClass::Loopback
                },
                "{name}"
            );
        }
        // A named host is matched whatever its case or a final dot, and nothing else is.
        let named = declared(&["http://db.internal:8000"]);
        assert_eq!(
            named.check_name(Scheme::Http, "DB.Internal.", 8000),
            Ok(NameReach::Anywhere)
        );
        assert!(named
            .check_name(Scheme::Http, "db.internal.x", 8000)
            .is_err());
        assert!(named
            .check_name(Scheme::Http, "xdb.internal", 8000)
            .is_err());
    }

    #[test]
    fn the_policy_reports_what_was_written() {
        assert!(!default().is_declared());
        assert!(declared(&["https://*:*"]).is_declared());
        assert!(declared(&[]).is_declared());
        assert_eq!(default().rules().collect::<Vec<_>>(), ["*://*:*"]);
        assert_eq!(default().listen_rules().count(), 0);
        let listening = NetworkPolicy::parse(
            entry(),
            None,
            &["tcp://127.0.0.1:8080".into(), " udp://*:* ".into()],
        )
        .unwrap();
        assert_eq!(
            listening.listen_rules().collect::<Vec<_>>(),
            ["tcp://127.0.0.1:8080", "udp://*:*"]
        );
    }

    #[test]
    fn binds_to_ephemeral_ports_are_free_and_fixed_ports_and_listening_need_a_listen_rule() {
        let sock = |text: &str| text.parse::<SocketAddr>().unwrap();
        let policy = default();
        assert_eq!(policy.check_bind(Scheme::Udp, sock("0.0.0.0:0")), Ok(()));
        assert_eq!(policy.check_bind(Scheme::Tcp, sock("[::]:0")), Ok(()));
        let refusal = policy
            .check_bind(Scheme::Tcp, sock("0.0.0.0:8080"))
            .unwrap_err();
        assert_eq!(refusal.why, Why::NotListening);
        assert!(refusal.to_string().contains("network.listen"), "{refusal}");
        assert_eq!(refusal.suggestion, "tcp://0.0.0.0:8080");
        // Listening on port 0 (any port) is suggested as `:*`.
        let refusal = policy
            .check_listen(Scheme::Tcp, sock("0.0.0.0:0"))
            .unwrap_err();
        assert_eq!(refusal.suggestion, "tcp://0.0.0.0:*");
        let listening = NetworkPolicy::parse(
            entry(),
            None,
            &["tcp://127.0.0.1:8080".into(), "udp://*:*".into()],
        )
        .unwrap();
        assert_eq!(
            listening.check_listen(Scheme::Tcp, sock("127.0.0.1:8080")),
            Ok(())
        );
        assert!(listening
            .check_listen(Scheme::Tcp, sock("0.0.0.0:8080"))
            .is_err());
        assert_eq!(
            listening.check_bind(Scheme::Udp, sock("0.0.0.0:5353")),
            Ok(())
        );
        assert!(listening.check_receive(sock("10.0.0.1:53")));
        assert!(!policy.check_receive(sock("10.0.0.1:53")));
        assert!(policy.check_receive(sock("8.8.8.8:53")));
        // Only a UDP listen rule opens the socket to datagrams from anywhere.
        let tcp_only =
            NetworkPolicy::parse(entry(), None, &["tcp://127.0.0.1:8080".into()]).unwrap();
        assert!(!tcp_only.check_receive(sock("10.0.0.1:53")));
    }

    #[test]
    fn name_lookup_is_served_only_when_a_socket_may_reach_public_addresses() {
        assert!(default().reaches_public_sockets());
        assert!(declared(&["tcp://*:443"]).reaches_public_sockets());
        assert!(!declared(&["tcp://10.0.0.0/8:*", "https://*:*"]).reaches_public_sockets());
    }

    #[test]
    fn bad_rules_are_refused_with_the_field_the_rule_and_the_reason() {
        let cases = [
            (
                "ftp://example.com:21",
                "network.allow[0]: `ftp://example.com:21`: unknown scheme `ftp`",
            ),
            ("example.com", "is not a rule: write `scheme://host[:port]`"),
            (
                "tcp://10.0.0.0/33:1",
                "the prefix length must be a number from 0 to 32",
            ),
            (
                "tcp://10.0.0.1/8:1",
                "`10.0.0.1/8` has bits set after its prefix",
            ),
            ("tcp://[fd00::]/129:1", "from 0 to 128"),
            ("tcp://10.0.0.0/8", "a port is required for scheme `tcp`"),
            ("*://*", "a port is required for scheme `*`"),
            (
                "http://127.0.0.1:90-80",
                "bad port range `90-80`: 90 is above 80",
            ),
            ("http://127.0.0.1:99999", "bad port `99999`"),
            (
                "tcp://db.example.com:5432",
                "tcp rules name an IP address, a CIDR or `*`",
            ),
            (
                "udp://*.example.com:53",
                "udp rules name an IP address, a CIDR or `*`",
            ),
            ("http://::1:80", "write IPv6 addresses in brackets"),
            ("https://example.com/api", "a rule names no path"),
            ("https://example.com:443/api", "a rule names no path"),
            ("http://user@example.com", "without path, query or user"),
            ("http://exa mple.com", "is not a host name"),
            ("http://a.*.com", "is not a host name"),
            ("http://", "the host is missing"),
            ("http://[::1]x", "unexpected `x` after the host"),
            ("http://a_b.ex-ample.com:99-98", "98"),
        ];
        for (rule, expected) in cases {
            let error = parse_error(rule);
            assert!(error.contains(expected), "{rule}: {error}");
        }
        let error =
            NetworkPolicy::parse(entry(), None, &["http://127.0.0.1:80".into()]).unwrap_err();
        assert!(
            error.contains("network.listen[0]") && error.contains("tcp://"),
            "{error}"
        );
    }

    #[test]
    fn the_accepted_forms() {
        let policy = declared(&[
            "HTTP://LocalHost",
            "https://*:*",
            "tcp://[::1]:*",
            "tcp://[fd00::]/8:5432",
            "tcp://[fd00::/8]:5433",
            "udp://0.0.0.0/0:53",
            "*://198.51.100.7:1-2",
            "http://my_host-1.example.com:8080-8080",
        ]);
        assert_eq!(
            policy.check_name(Scheme::Http, "my_host-1.example.com", 8080),
            Ok(NameReach::Anywhere)
        );
        // A name's length: at most 253 bytes (here four labels of 62 and three dots).
        let label = "a".repeat(62);
        let longest = [label.as_str(); 4].join(".");
        assert_eq!(longest.len(), 251);
        for (name, ok) in [
            (format!("{longest}.b"), true),
            (format!("{longest}.bc"), false),
            (format!("{longest}.bcd"), false),
        ] {
            let rule = format!("https://{name}");
            let result = NetworkPolicy::parse(entry(), Some(&[rule]), &[]);
            assert_eq!(result.is_ok(), ok, "{} bytes: {result:?}", name.len());
        }
        assert_eq!(
            policy.check_name(Scheme::Http, "localhost", 80),
            Ok(NameReach::Anywhere)
        );
        assert!(policy.check_name(Scheme::Http, "localhost", 81).is_err());
        assert_eq!(policy.check_addr(Scheme::Tcp, ip("::1"), 9), Ok(()));
        assert_eq!(policy.check_addr(Scheme::Tcp, ip("fd12::5"), 5432), Ok(()));
        assert_eq!(policy.check_addr(Scheme::Tcp, ip("fd12::5"), 5433), Ok(()));
        assert_eq!(policy.check_addr(Scheme::Udp, ip("10.9.9.9"), 53), Ok(()));
        assert_eq!(
            policy.check_addr(Scheme::Https, ip("198.51.100.7"), 2),
            Ok(())
        );
        assert!(policy.check_addr(Scheme::Udp, ip("::1"), 53).is_err());
        assert_eq!(
            policy.rules().collect::<Vec<_>>()[0],
            "HTTP://LocalHost",
            "rules are kept as written"
        );
    }

    fn any_scheme() -> impl Strategy<Value = Scheme> {
        prop::sample::select(Scheme::ALL.to_vec())
    }

    proptest! {
        /// No address outside the public space passes the default policy, in any of its IPv4
        /// or IPv6-mapped forms, for any scheme and port; every public one does.
        #[test]
        fn the_default_refuses_exactly_the_non_public_ipv4_addresses(
            bits: u32, scheme in any_scheme(), port: u16,
        ) {
            let v4 = Ipv4Addr::from(bits);
            let class = AddressClass::of(IpAddr::V4(v4));
            let policy = default();
            for form in [IpAddr::V4(v4), IpAddr::V6(v4.to_ipv6_mapped())] {
                let decision = policy.check_addr(scheme, form, port);
                if class.is_public() {
                    prop_assert_eq!(decision, Ok(()));
                } else {
                    prop_assert_eq!(decision.unwrap_err().why, Why::Class(class));
                }
            }
        }

        /// Addresses drawn from the refused IPv4 ranges of the issue are never allowed.
        #[test]
        fn the_special_ranges_are_refused_by_default(
            range in prop::sample::select(vec![
                (0x7f00_0000u32, 8u8), (0x0a00_0000, 8), (0xac10_0000, 12), (0xc0a8_0000, 16),
                (0xa9fe_0000, 16), (0x6440_0000, 10), (0x0000_0000, 8), (0xe000_0000, 4),
            ]),
            low: u32, scheme in any_scheme(), port: u16,
        ) {
            let (net, prefix) = range;
            let addr = net | (low & (u32::MAX >> prefix));
            let decision = default().check_addr(scheme, IpAddr::V4(Ipv4Addr::from(addr)), port);
            prop_assert!(decision.is_err(), "{} allowed", Ipv4Addr::from(addr));
        }

        /// IPv6 loopback, unique-local, link-local and multicast are refused by default.
        #[test]
        fn the_special_ipv6_ranges_are_refused_by_default(
            range in prop::sample::select(vec![(0xfc00u16, 7u8), (0xfe80, 10), (0xff00, 8)]),
            rest: u128, scheme in any_scheme(), port: u16,
        ) {
            let (net, prefix) = range;
            let mask = u128::MAX >> prefix;
            let addr = (u128::from(net) << 112) & !mask | (rest & mask);
            let decision = default().check_addr(scheme, IpAddr::V6(Ipv6Addr::from(addr)), port);
            prop_assert!(decision.is_err(), "{} allowed", Ipv6Addr::from(addr));
        }

        /// A CIDR rule allows exactly the addresses inside it, whatever their class.
        #[test]
        fn a_cidr_rule_allows_exactly_its_addresses(net: u32, prefix in 0u8..=32, probe: u32) {
            let net = if prefix == 0 { 0 } else { net & (u32::MAX << (32 - prefix)) };
            let rule = format!("tcp://{}/{prefix}:*", Ipv4Addr::from(net));
            let policy = declared(&[&rule]);
            let inside = prefix == 0 || (probe ^ net) >> (32 - prefix) == 0;
            let decision = policy.check_addr(Scheme::Tcp, IpAddr::V4(Ipv4Addr::from(probe)), 1);
            prop_assert_eq!(decision.is_ok(), inside, "{} in {}", Ipv4Addr::from(probe), rule);
        }

        /// Parsing never panics, whatever the text.
        #[test]
        fn parsing_any_text_never_panics(text in ".{0,40}", scheme in "(http|https|tcp|udp|\\*|x)") {
            let _ = Rule::parse(&text);
            let _ = Rule::parse(&format!("{scheme}://{text}"));
        }
    }
}
