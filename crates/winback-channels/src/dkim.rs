//! DKIM signatures (RFC 6376; Ed25519 by RFC 8463), one per key, so a shop can sign with RSA
//! and Ed25519 together while receivers move to Ed25519.
//!
//! Written here rather than through lettre's signer: lettre signs each listed header once and
//! keeps a single `DKIM-Signature`, so it can neither oversign (list a header once more than it
//! occurs, which makes a prepended `Subject` or a second `From` break the signature) nor carry
//! two signatures. The crypto is the `rsa` and `ed25519-dalek` crates'; this module only
//! canonicalises (relaxed/relaxed) and formats.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A DKIM key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DKIM key: {0}")]
pub struct DkimError(pub(crate) String);

/// Headers signed, in order. From, Subject, Date and the two unsubscribe headers are listed one
/// extra time (oversigned): a copy of any of them added later breaks the signature.
pub const SIGNED_HEADERS: &[&str] = &[
    "from",
    "from",
    "to",
    "subject",
    "subject",
    "date",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-unsubscribe-post",
    "list-id",
    "feedback-id",
];

/// A private key to sign with.
#[derive(Clone)]
pub enum DkimKey {
    /// `rsa-sha256`.
    Rsa(Box<rsa::RsaPrivateKey>),
    /// `ed25519-sha256`.
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.write_str(self.algorithm())
    }
}

impl DkimKey {
    /// Reads a key as people have them: what `openssl genrsa` and `openssl genpkey -algorithm
    /// ed25519` write (PKCS#8 `BEGIN PRIVATE KEY`), an RSA key in PKCS#1 (`BEGIN RSA PRIVATE
    /// KEY`), or an Ed25519 seed in base64.
    pub fn parse(text: &str) -> Result<Self, DkimError> {
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        use rsa::pkcs1::DecodeRsaPrivateKey as _;
        let t = text.trim();
        if t.contains("BEGIN RSA PRIVATE KEY") {
            return rsa::RsaPrivateKey::from_pkcs1_pem(t)
                .map(|k| Self::Rsa(Box::new(k)))
                .map_err(|e| DkimError(e.to_string()));
        }
        if t.contains("BEGIN PRIVATE KEY") {
            // PKCS#8 names its algorithm: RSA or Ed25519.
            if let Ok(k) = <rsa::RsaPrivateKey as rsa::pkcs8::DecodePrivateKey>::from_pkcs8_pem(t) {
                return Ok(Self::Rsa(Box::new(k)));
            }
            if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(t) {
                return Ok(Self::Ed25519(Box::new(k)));
            }
            return Err(DkimError(
                "the PKCS#8 key is neither RSA nor Ed25519 (make one with `openssl genrsa 2048` or `openssl genpkey -algorithm ed25519`)".into(),
            ));
        }
        if let Some(kind) = t.lines().next().and_then(|l| l.strip_prefix("-----BEGIN ")) {
            return Err(DkimError(format!(
                "a `{}` is not a private key winback can sign with (use an RSA or Ed25519 private key, e.g. from `openssl genrsa 2048`)",
                kind.trim_end_matches('-')
            )));
        }
        let seed = base64::engine::general_purpose::STANDARD
            .decode(t)
            .map_err(|e| DkimError(format!("not a PEM key, nor a base64 Ed25519 seed: {e}")))?;
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| DkimError("a base64 Ed25519 seed is 32 bytes".into()))?;
        Ok(Self::Ed25519(Box::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        )))
    }

    /// The `a=` tag.
    pub fn algorithm(&self) -> &'static str {
        match self {
            Self::Rsa(_) => "rsa-sha256",
            Self::Ed25519(_) => "ed25519-sha256",
        }
    }

    fn sign(&self, digest: &[u8]) -> Result<Vec<u8>, DkimError> {
        match self {
            Self::Rsa(k) => k
                .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), digest)
                .map_err(|e| DkimError(e.to_string())),
            // RFC 8463: PureEdDSA over the SHA-256 hash.
            Self::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                Ok(k.sign(digest).to_bytes().to_vec())
            }
        }
    }
}

/// One signing identity: `d=`, `s=` and the key.
#[derive(Debug, Clone)]
pub struct DkimSigner {
    /// `s=`.
    pub selector: String,
    /// `d=`.
    pub domain: String,
    /// The key.
    pub key: DkimKey,
}

/// Squeezes runs of spaces and tabs into one space.
fn squeeze(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c == ' ' || c == '\t' {
            space = true;
        } else {
            if space {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    if space {
        out.push(' ');
    }
    out
}

/// RFC 6376 §3.4.2, relaxed header canonicalisation.
fn relaxed_header(name: &str, value: &str) -> String {
    let unfolded = value.replace("\r\n", "");
    format!(
        "{}:{}",
        name.trim().to_ascii_lowercase(),
        squeeze(&unfolded).trim()
    )
}

/// RFC 6376 §3.4.4, relaxed body canonicalisation.
fn relaxed_body(body: &str) -> Vec<u8> {
    let mut lines: Vec<String> = body
        .split("\r\n")
        .map(|l| squeeze(l).trim_end().to_owned())
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return Vec::new();
    }
    format!("{}\r\n", lines.join("\r\n")).into_bytes()
}

/// The message's header fields as (name, value with folding), top to bottom.
fn fields(head: &str) -> Vec<(&str, String)> {
    let mut out: Vec<(&str, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push_str("\r\n");
                last.1.push_str(line);
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n, v.to_owned()));
        }
    }
    out
}

impl DkimSigner {
    /// The `DKIM-Signature` header field (with its CRLF) for `message` (CRLF line ends), signed
    /// at `unix_seconds`.
    pub fn signature(&self, message: &[u8], unix_seconds: i64) -> Result<String, DkimError> {
        let text = std::str::from_utf8(message)
            .map_err(|_| DkimError("the message is not UTF-8".into()))?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| DkimError("the message has no body separator".into()))?;
        let bh =
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(relaxed_body(body)));
        let fields = fields(head);
        // Each listed name takes the next instance from the bottom up; a name listed more often
        // than it occurs signs the missing instances as nothing (§5.4.2): oversigning.
        let mut used = vec![false; fields.len()];
        let mut data = String::new();
        for name in SIGNED_HEADERS {
            if let Some(i) = (0..fields.len())
                .rev()
                .find(|&i| !used[i] && fields[i].0.trim().eq_ignore_ascii_case(name))
            {
                used[i] = true;
                data.push_str(&relaxed_header(fields[i].0, &fields[i].1));
                data.push_str("\r\n");
            }
        }
        let tags = format!(
            "v=1; a={}; c=relaxed/relaxed; d={}; s={}; t={unix_seconds}; h={}; bh={bh}; b=",
            self.key.algorithm(),
            self.domain,
            self.selector,
            SIGNED_HEADERS.join(":"),
        );
        data.push_str(&relaxed_header("DKIM-Signature", &tags));
        let signature = self.key.sign(&Sha256::digest(data.as_bytes()))?;
        let b = base64::engine::general_purpose::STANDARD.encode(signature);
        // Folded for line length: CRLF + tab canonicalises to the single space the signed
        // form has after each `;`, and whitespace inside b= is ignored.
        let folded_tags = tags
            .replace("; h=", ";\r\n\th=")
            .replace("; bh=", ";\r\n\tbh=")
            .replace("; b=", ";\r\n\tb=");
        let folded_b = b
            .as_bytes()
            .chunks(72)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\r\n\t");
        Ok(format!("DKIM-Signature: {folded_tags}{folded_b}\r\n"))
    }
}

/// `message` with one `DKIM-Signature` per signer prepended (each computed over the message
/// as it was, so every signature verifies on its own).
pub fn sign_all(
    signers: &[DkimSigner],
    message: Vec<u8>,
    unix_seconds: i64,
) -> Result<Vec<u8>, DkimError> {
    if signers.is_empty() {
        return Ok(message);
    }
    let mut out = Vec::with_capacity(message.len() + signers.len() * 600);
    for s in signers {
        out.extend_from_slice(s.signature(&message, unix_seconds)?.as_bytes());
    }
    out.extend_from_slice(&message);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalisation_follows_rfc_6376_examples() {
        // §3.4.5's example, relaxed/relaxed.
        assert_eq!(relaxed_header("A", " X"), "a:X");
        assert_eq!(relaxed_header("B ", " Y\t\r\n\tZ  "), "b:Y Z");
        assert_eq!(relaxed_body(" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert!(relaxed_body("\r\n\r\n").is_empty());
    }

    #[test]
    fn a_key_is_never_printed() {
        let k =
            DkimKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).unwrap();
        assert_eq!(format!("{k:?}"), "ed25519-sha256");
    }
}
