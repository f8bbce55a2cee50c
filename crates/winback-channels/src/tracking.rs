//! Telling human opens from machine opens.
//!
//! Apple Mail Privacy Protection fetches every image through Apple's proxies whether or not the
//! message is read, and security scanners fetch images and links on delivery. Counting those as
//! engagement would keep dead addresses "active" forever, so inactivity and sunset rules use
//! human opens only. The rules here are the published signals: Apple's 17.0.0.0/8 network and
//! its bare `Mozilla/5.0` agent, scanner and library user agents, no user agent at all, and a
//! fetch within seconds of delivery.

use std::net::IpAddr;

/// Opens this soon after the send began are machines (scanners fetch on delivery).
pub const MACHINE_OPEN_SECONDS: i64 = 10;

/// Who opened a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenKind {
    /// A person, as far as anyone can tell.
    Human,
    /// A proxy or scanner, with the rule that said so.
    Machine(&'static str),
}

impl OpenKind {
    /// `true` for a machine.
    pub fn is_machine(self) -> bool {
        matches!(self, OpenKind::Machine(_))
    }
}

/// Whether `ip` is Apple's network (17.0.0.0/8), where Mail Privacy Protection's proxies live.
fn apple_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 17,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 17),
    }
}

/// Classifies one open from its user agent, client address and the seconds since the send
/// began (`None` when unknown).
pub fn classify_open(
    user_agent: Option<&str>,
    ip: Option<IpAddr>,
    seconds_since_send: Option<i64>,
) -> OpenKind {
    if seconds_since_send.is_some_and(|s| s < MACHINE_OPEN_SECONDS) {
        return OpenKind::Machine("opened within seconds of delivery");
    }
    if ip.is_some_and(apple_network) {
        return OpenKind::Machine("Apple Mail Privacy Protection proxy");
    }
    let agent = user_agent.map(str::trim).unwrap_or_default();
    if agent.is_empty() {
        return OpenKind::Machine("no user agent");
    }
    // MPP's proxy sends exactly `Mozilla/5.0`; scanners and HTTP libraries name themselves.
    // The list is the domain's, so imported opens and tracked ones are judged alike.
    if winback_domain::is_machine_open(None, Some(agent)) {
        return OpenKind::Machine("proxy, security scanner or HTTP library");
    }
    OpenKind::Human
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

    #[test]
    fn people_and_machines() {
        let home: IpAddr = "84.241.10.2".parse().unwrap();
        assert_eq!(
            classify_open(Some(IPHONE), Some(home), Some(3600)),
            OpenKind::Human
        );
        // Gmail's image proxy fetches when the person opens the message: human.
        assert_eq!(
            classify_open(
                Some(
                    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
                ),
                Some("66.249.84.1".parse().unwrap()),
                Some(600)
            ),
            OpenKind::Human
        );
        assert!(
            classify_open(Some(IPHONE), Some("17.58.1.4".parse().unwrap()), Some(900)).is_machine()
        );
        assert!(classify_open(Some("Mozilla/5.0"), Some(home), Some(900)).is_machine());
        assert!(classify_open(None, Some(home), Some(900)).is_machine());
        assert!(classify_open(Some("Barracuda Sentinel (EE)"), Some(home), Some(900)).is_machine());
        assert!(classify_open(Some("python-requests/2.31"), Some(home), None).is_machine());
        assert!(classify_open(Some(IPHONE), Some(home), Some(2)).is_machine());
        assert!(
            classify_open(Some(IPHONE), Some("::ffff:17.1.2.3".parse().unwrap()), None)
                .is_machine()
        );
    }
}
