//! Outgoing HTTP: the generic SMS provider and the campaign `webhook` step. Both post JSON signed
//! with HMAC-SHA-256 (`X-Winback-Signature: t=<unix seconds>,v1=<hex>` over `"<t>.<body>"`, the
//! scheme Stripe made familiar, so receivers can check it and refuse replays).
//!
//! Destinations are checked against server-side request forgery: the host is resolved once, and
//! loopback, private, link-local, unique-local, unspecified and cloud-metadata addresses are
//! refused unless the host is allow-listed. The connection is pinned to the checked address (no
//! second lookup for a rebinding DNS server to answer differently), and redirects are never
//! followed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use winback_engine::ports::{Dispatch, SendOutcome, Transport};

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// Not an absolute http(s) URL.
    #[error("`{0}` is not an http or https URL")]
    NotHttp(String),
    /// The host did not resolve.
    #[error("cannot resolve `{0}`")]
    Unresolved(String),
    /// The host resolves to an address winback never calls unless allow-listed.
    #[error(
        "`{host}` resolves to {addr}, a {kind} address; add the host to allow_hosts to call it"
    )]
    Forbidden {
        /// Host.
        host: String,
        /// Address.
        addr: IpAddr,
        /// Loopback, private, …
        kind: &'static str,
    },
}

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() || o[0] == 100 && (64..128).contains(&o[1]) {
                Some("private")
            } else if v4.is_link_local() {
                // 169.254.169.254 is the cloud metadata service.
                Some("link-local or metadata")
            } else if v4.is_unspecified() || v4.is_broadcast() || o[0] == 0 || o[0] >= 224 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("reserved")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local or metadata")
            } else if s[0] & 0xfe00 == 0xfc00 {
                // Unique local, including AWS's metadata address fd00:ec2::254.
                Some("private")
            } else {
                None
            }
        }
    }
}

/// A checked destination: the URL, its host and the address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The URL.
    pub url: String,
    /// Its host.
    pub host: String,
    /// The address checked and pinned.
    pub addr: SocketAddr,
}

/// Resolves `url` and refuses non-public addresses unless its host is in `allow_hosts`.
pub async fn check_destination(
    url: &str,
    allow_hosts: &[String],
) -> Result<Destination, SsrfError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| SsrfError::NotHttp(url.to_owned()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(SsrfError::NotHttp(url.to_owned()));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| SsrfError::NotHttp(url.to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| SsrfError::Unresolved(host.clone()))?
            .collect(),
    };
    let allowed = allow_hosts.iter().any(|h| h.eq_ignore_ascii_case(&host));
    // Every address must pass: a name with one public and one private address is refused.
    if !allowed {
        for a in &addrs {
            if let Some(kind) = non_public(a.ip()) {
                return Err(SsrfError::Forbidden {
                    host,
                    addr: a.ip(),
                    kind,
                });
            }
        }
    }
    let addr = *addrs
        .first()
        .ok_or_else(|| SsrfError::Unresolved(host.clone()))?;
    Ok(Destination {
        url: url.to_owned(),
        host,
        addr,
    })
}

/// The signature header's value for `body` at `unix_seconds`.
pub fn signature(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={unix_seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Why an inbound signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Missing or not `t=…,v1=…`.
    #[error("malformed signature header")]
    Malformed,
    /// Older or newer than the tolerance (a replay).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// Does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a `t=…,v1=…` header against `body`, in constant time, within `tolerance_seconds` of
/// `now_seconds`.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_seconds: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    if (now_seconds - t).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&v1).map_err(|_| SignatureError::Mismatch)
}

/// Posts signed JSON to checked destinations.
#[derive(Clone)]
pub struct SignedPoster {
    secret: Vec<u8>,
    allow_hosts: Vec<String>,
    timeout: Duration,
}

/// How a POST went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 2xx, with the body.
    Accepted(String),
    /// Another status (3xx included: redirects are not followed), with the body.
    Refused(u16, String),
    /// Not sent or no answer: SSRF refusal, connection error, timeout.
    Failed(String),
}

impl std::fmt::Debug for SignedPoster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedPoster")
            .field("secret", &"<redacted>")
            .field("allow_hosts", &self.allow_hosts)
            .finish()
    }
}

impl SignedPoster {
    /// A poster signing with `secret`, allowing `allow_hosts` past the SSRF check.
    pub fn new(secret: &[u8], allow_hosts: Vec<String>, timeout: Duration) -> Self {
        Self {
            secret: secret.to_vec(),
            allow_hosts,
            timeout,
        }
    }

    /// Signs and posts `body` to `url`.
    pub async fn post(&self, url: &str, body: &[u8], unix_seconds: i64) -> PostOutcome {
        let dest = match check_destination(url, &self.allow_hosts).await {
            Ok(d) => d,
            Err(e) => return PostOutcome::Failed(e.to_string()),
        };
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .resolve(&dest.host, dest.addr)
            .build()
        {
            Ok(c) => c,
            Err(e) => return PostOutcome::Failed(e.to_string()),
        };
        let response = client
            .post(&dest.url)
            .header("content-type", "application/json")
            .header(
                "x-winback-signature",
                signature(&self.secret, unix_seconds, body),
            )
            .body(body.to_vec())
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                if (200..300).contains(&status) {
                    PostOutcome::Accepted(text)
                } else {
                    PostOutcome::Refused(status, text)
                }
            }
            Err(e) => PostOutcome::Failed(e.to_string()),
        }
    }
}

/// The campaign `webhook` step: posts the dispatch as signed JSON to the step's URL.
#[derive(Clone)]
pub struct WebhookTransport {
    poster: SignedPoster,
    clock: std::sync::Arc<dyn winback_domain::Clock>,
}

impl std::fmt::Debug for WebhookTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTransport")
            .field("poster", &self.poster)
            .finish()
    }
}

impl WebhookTransport {
    /// A transport.
    pub fn new(poster: SignedPoster, clock: std::sync::Arc<dyn winback_domain::Clock>) -> Self {
        Self { poster, clock }
    }
}

impl Transport for WebhookTransport {
    async fn deliver(&self, message: &Dispatch) -> SendOutcome {
        let body = match serde_json::to_vec(message) {
            Ok(b) => b,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        let now = self.clock.now().as_micros() / 1_000_000;
        match self.poster.post(&message.to, &body, now).await {
            PostOutcome::Accepted(_) => SendOutcome::Sent {
                provider_id: None,
                subject: None,
            },
            // A receiver that refuses is retried like a soft bounce, never suppressed.
            PostOutcome::Refused(status, body) => SendOutcome::Failed(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )),
            PostOutcome::Failed(e) => SendOutcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_not_public() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.0.10", "private"),
            ("172.16.5.4", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local or metadata"),
            ("0.0.0.0", "reserved"),
            ("::1", "loopback"),
            ("fe80::1", "link-local or metadata"),
            ("fd00:ec2::254", "private"),
            ("::ffff:127.0.0.1", "loopback"),
        ] {
            assert_eq!(non_public(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        assert_eq!(non_public("93.184.216.34".parse().unwrap()), None);
        assert_eq!(non_public("2a00:1450:4001::1".parse().unwrap()), None);
    }

    #[tokio::test]
    async fn destinations_are_checked_unless_allow_listed() {
        let err = check_destination("http://127.0.0.1:9/hook", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                SsrfError::Forbidden {
                    kind: "loopback",
                    ..
                }
            ),
            "{err}"
        );
        let err = check_destination("http://169.254.169.254/latest/meta-data", &[])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("metadata"), "{err}");
        let err = check_destination("http://localhost:8080/", &[])
            .await
            .unwrap_err();
        assert!(matches!(err, SsrfError::Forbidden { .. }), "{err}");
        assert!(matches!(
            check_destination("file:///etc/passwd", &[]).await,
            Err(SsrfError::NotHttp(_))
        ));
        let ok = check_destination("http://127.0.0.1:9/hook", &["127.0.0.1".into()])
            .await
            .unwrap();
        assert_eq!(ok.addr, "127.0.0.1:9".parse().unwrap());
    }

    #[test]
    fn signatures_verify_and_refuse_tampering_and_replay() {
        let h = signature(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify_signature(b"secret", &h, b"{\"a\":1}", 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify_signature(b"secret", &h, b"{\"a\":2}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", &h, b"{\"a\":1}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"secret", &h, b"{\"a\":1}", 1_700_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(b"secret", "v1=00", b"", 0, 300),
            Err(SignatureError::Malformed)
        );
    }
}
