//! SMS: segment counting (GSM-7 and UCS-2), the STOP footer, STOP keywords, and a generic HTTP
//! provider that receives signed JSON (see [`crate::http`]).

use std::sync::Arc;

use winback_domain::Clock;
use winback_engine::ports::{Dispatch, SendOutcome, Transport};

use crate::http::{PostOutcome, SignedPoster};
use crate::render::Renderer;
use winback_engine::file_outbox::OnceDir;

/// The GSM 03.38 basic character set (one septet each).
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table (two septets each: escape + character).
const GSM_EXTENDED: &str = "^{}\\[~]|€\u{000C}";

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// 7-bit GSM alphabet: 160 per single message, 153 per part.
    Gsm7,
    /// UTF-16: 70 per single message, 67 per part.
    Ucs2,
}

/// A text's size on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Segments {
    /// Encoding.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Messages the text is billed as.
    pub segments: usize,
}

/// Counts the segments a text needs. One character outside GSM-7 makes the whole text UCS-2.
pub fn segments(text: &str) -> Segments {
    let mut septets = 0;
    let mut gsm = true;
    for c in text.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENDED.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (encoding, units, single, part) = if gsm {
        (Encoding::Gsm7, septets, 160, 153)
    } else {
        (Encoding::Ucs2, text.encode_utf16().count(), 70, 67)
    };
    // An empty text is still one message.
    let segments = if units <= single {
        1
    } else {
        units.div_ceil(part)
    };
    Segments {
        encoding,
        units,
        segments,
    }
}

/// The opt-out line every marketing SMS ends with, in the contact's language.
pub fn stop_footer(locale: Option<&str>) -> &'static str {
    match locale.map(|l| l.get(..2).unwrap_or(l)) {
        Some("nl") => "Afmelden? Antwoord STOP",
        Some("pl") => "Rezygnacja? Odpisz STOP",
        _ => "Reply STOP to opt out",
    }
}

/// The confirmation sent, once, after a STOP reply.
pub fn stop_confirmation(shop: &str, locale: Option<&str>) -> String {
    match locale.map(|l| l.get(..2).unwrap_or(l)) {
        Some("nl") => format!("{shop}: je bent afgemeld en ontvangt geen sms meer van ons."),
        Some("pl") => format!("{shop}: wypisano Cię, nie otrzymasz od nas więcej SMS-ów."),
        _ => format!("{shop}: you are unsubscribed and will get no more texts from us."),
    }
}

/// Whether an inbound reply opts out: STOP, END, CANCEL, UNSUBSCRIBE or QUIT (any case, with
/// surrounding spaces or punctuation, alone or as the first word).
pub fn is_stop(body: &str) -> bool {
    let first = body
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_uppercase();
    matches!(
        first.as_str(),
        "STOP" | "END" | "CANCEL" | "UNSUBSCRIBE" | "QUIT" | "STOPALL"
    )
}

/// The generic HTTP SMS provider (`[sms]` in `winback.toml`).
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// The provider's endpoint (checked against SSRF).
    pub url: String,
    /// Shared secret for the outgoing and inbound signatures.
    pub secret: String,
    /// Sender id or number.
    pub sender: String,
    /// Hosts allowed past the SSRF check (a provider on the local network).
    pub allow_hosts: Vec<String>,
    /// Seconds before a request times out.
    pub timeout_seconds: u64,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: String::new(),
            sender: "Shop".into(),
            allow_hosts: Vec::new(),
            timeout_seconds: 10,
        }
    }
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("sender", &self.sender)
            .field("allow_hosts", &self.allow_hosts)
            .finish()
    }
}

/// The body winback posts to the provider.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SmsRequest<'a> {
    /// Idempotency key: a provider that de-duplicates on it never sends twice.
    pub id: &'a str,
    /// Sender.
    pub from: &'a str,
    /// E.164 number.
    pub to: &'a str,
    /// Text, footer included.
    pub text: &'a str,
    /// Size on the air.
    pub segments: Segments,
}

/// Sends SMS through the generic HTTP provider.
#[derive(Clone)]
pub struct HttpSms {
    settings: SmsSettings,
    poster: SignedPoster,
    renderer: Arc<Renderer>,
    clock: Arc<dyn Clock>,
    // Boxed: most shops have no wallet, and the transport enum stays small.
    wallet_links: Option<Box<crate::WalletLinks>>,
}

impl std::fmt::Debug for HttpSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSms")
            .field("settings", &self.settings)
            .finish()
    }
}

impl HttpSms {
    /// A provider client; `shop` names the shop in default texts.
    pub fn new(settings: SmsSettings, shop: &str, clock: Arc<dyn Clock>) -> Self {
        let poster = SignedPoster::new(
            settings.secret.as_bytes(),
            settings.allow_hosts.clone(),
            std::time::Duration::from_secs(settings.timeout_seconds.max(1)),
        );
        Self {
            settings,
            poster,
            renderer: Arc::new(Renderer::new(shop)),
            clock,
            wallet_links: None,
        }
    }

    /// The text of a campaign SMS (see [`compose`]), footer included.
    pub fn text(&self, d: &Dispatch) -> Result<String, crate::render::RenderError> {
        let link = self.wallet_links.as_ref().and_then(|l| l.link(d));
        compose(&self.renderer, d, link.as_deref()).map(|c| c.text)
    }

    /// Texts carry the contact's add-to-wallet link when they have a pass.
    pub fn with_wallet_links(mut self, links: crate::WalletLinks) -> Self {
        self.wallet_links = Some(Box::new(links));
        self
    }

    /// Sends one text.
    pub async fn send_text(&self, id: &str, to: &str, text: &str) -> SendOutcome {
        let request = SmsRequest {
            id,
            from: &self.settings.sender,
            to,
            text,
            segments: segments(text),
        };
        let body = match serde_json::to_vec(&request) {
            Ok(b) => b,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        let now = self.clock.now().as_micros() / 1_000_000;
        match self.poster.post(&self.settings.url, &body, now).await {
            PostOutcome::Accepted(text) => SendOutcome::Sent {
                provider_id: serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned)),
                subject: None,
            },
            PostOutcome::Refused(s, b) => {
                let why = format!("HTTP {s}: {}", b.chars().take(200).collect::<String>());
                match s {
                    // Only the provider's word that the number is invalid suppresses it.
                    400 | 422 if says_invalid_number(&b) => SendOutcome::HardBounce(why),
                    // The provider's own trouble (credentials, throttling, outage): pause it.
                    401 | 403 | 429 | 500..=599 => SendOutcome::TransportFailure(why),
                    _ => SendOutcome::Failed(why),
                }
            }
            // No answer at all (connection refused, timeout): the provider's, not the number's.
            PostOutcome::Failed(e) => SendOutcome::TransportFailure(e),
        }
    }
}

/// Whether a provider's refusal says the number itself is invalid (not a mobile number, no
/// such subscriber), rather than that the request was wrong.
fn says_invalid_number(body: &str) -> bool {
    let b = body.to_ascii_lowercase();
    let invalid = [
        "invalid",
        "not a valid",
        "unknown subscriber",
        "not a mobile",
        "unreachable",
    ]
    .iter()
    .any(|k| b.contains(k));
    let number = ["number", "msisdn", "phone", "recipient", "\"to\""]
        .iter()
        .any(|k| b.contains(k));
    invalid && number
}

/// A campaign SMS as it goes on the air.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComposedSms {
    /// The personalised message, without the footer.
    pub body: String,
    /// The STOP footer in the contact's language.
    pub footer: &'static str,
    /// Body and footer, as sent.
    pub text: String,
    /// Its size on the air.
    pub segments: Segments,
}

/// The text of a campaign SMS: the step's `subject` as the text (a default per language
/// otherwise), personalised in the contact's language, with the STOP footer.
pub fn compose(
    renderer: &Renderer,
    d: &Dispatch,
    wallet_link: Option<&str>,
) -> Result<ComposedSms, crate::render::RenderError> {
    let lang = crate::locale::language(d.locale.as_deref().unwrap_or("en"));
    // The campaign's line in the contact's language (one text, or a table by language), as
    // an email's subject is picked; a table without it gets the default in that language.
    let stored = d
        .subject
        .as_deref()
        .and_then(|s| crate::render::line_for(s, lang));
    let source = stored.unwrap_or_else(|| match lang {
        "nl" => "{{ shop }}: we missen je{% if first_name is defined %}, {{ first_name }}{% endif %}! Kom kijken wat er nieuw is.".into(),
        "pl" => "{{ shop }}: tęsknimy{% if first_name is defined %}, {{ first_name }}{% endif %}! Zobacz, co nowego.".into(),
        _ => "{{ shop }}: we miss you{% if first_name is defined %}, {{ first_name }}{% endif %}! Come and see what's new.".into(),
    });
    // A no-break space (Polish amounts) is outside GSM-7 and would make the whole text UCS-2,
    // 70 characters a segment instead of 160: on the air it is a plain space.
    let mut body = renderer.render_line(&source, d)?.replace('\u{a0}', " ");
    // The contact's wallet pass, when the journey issued one.
    if let Some(link) = wallet_link {
        let label = match lang {
            "nl" => "Je pas voor je wallet",
            "pl" => "Twoja karta do portfela",
            _ => "Your pass for your wallet",
        };
        body = format!("{body}\n{label}: {link}");
    }
    let footer = stop_footer(d.locale.as_deref());
    let text = format!("{body}\n{footer}");
    Ok(ComposedSms {
        segments: segments(&text),
        body,
        footer,
        text,
    })
}

/// SMS without a provider: each message as the provider would get it (rendered text, footer,
/// segments) in `KEY.sms.json` in the outbox folder, written once per key.
#[derive(Debug)]
pub struct SmsOutbox {
    files: OnceDir,
    renderer: Renderer,
    sender: String,
    wallet_links: Option<crate::WalletLinks>,
}

impl SmsOutbox {
    /// Writes into `dir`; `shop` names the shop in default texts, `sender` is the `from`.
    pub fn new(
        dir: impl Into<std::path::PathBuf>,
        shop: &str,
        sender: &str,
    ) -> std::io::Result<Self> {
        Ok(Self {
            files: OnceDir::new(dir)?,
            renderer: Renderer::new(shop),
            sender: sender.to_owned(),
            wallet_links: None,
        })
    }

    /// Texts carry the contact's add-to-wallet link when they have a pass.
    pub fn with_wallet_links(mut self, links: crate::WalletLinks) -> Self {
        self.wallet_links = Some(links);
        self
    }

    /// The folder.
    pub fn files(&self) -> &OnceDir {
        &self.files
    }
}

impl Transport for SmsOutbox {
    async fn deliver(&self, message: &Dispatch) -> SendOutcome {
        let link = self.wallet_links.as_ref().and_then(|l| l.link(message));
        let sms = match compose(&self.renderer, message, link.as_deref()) {
            Ok(s) => s,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        let json = serde_json::json!({
            "id": message.key,
            "from": self.sender,
            "to": message.to,
            "campaign": message.campaign,
            "step": message.step,
            "locale": message.locale,
            "body": sms.body,
            "footer": sms.footer,
            "text": sms.text,
            "segments": sms.segments,
        });
        let bytes = match serde_json::to_vec_pretty(&json) {
            Ok(b) => b,
            Err(e) => return SendOutcome::Failed(e.to_string()),
        };
        match self.files.put(message.key.as_str(), "sms.json", &bytes) {
            // Written now, or by an earlier attempt that crashed before recording it: the
            // message exists once either way.
            Ok(_) => SendOutcome::Sent {
                provider_id: None,
                subject: None,
            },
            Err(e) => SendOutcome::TransportFailure(format!("writing the SMS outbox: {e}")),
        }
    }
}

/// SMS through the HTTP provider when one is configured, else into the outbox folder.
#[derive(Debug)]
pub enum SmsTransport {
    /// The provider.
    Http(HttpSms),
    /// The outbox folder (boxed: the renderer holds two template environments).
    Folder(Box<SmsOutbox>),
}

impl Transport for SmsTransport {
    async fn deliver(&self, message: &Dispatch) -> SendOutcome {
        match self {
            Self::Http(t) => t.deliver(message).await,
            Self::Folder(t) => t.deliver(message).await,
        }
    }
}

impl Transport for HttpSms {
    async fn deliver(&self, message: &Dispatch) -> SendOutcome {
        match self.text(message) {
            Ok(text) => {
                self.send_text(message.key.as_str(), &message.to, &text)
                    .await
            }
            Err(e) => SendOutcome::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_and_ucs2_segments() {
        assert_eq!(
            segments(""),
            Segments {
                encoding: Encoding::Gsm7,
                units: 0,
                segments: 1
            }
        );
        let s160 = "a".repeat(160);
        assert_eq!(segments(&s160).segments, 1);
        assert_eq!(
            segments(&format!("{s160}a")).segments,
            2,
            "161 septets: 2 × 153"
        );
        assert_eq!(segments(&"a".repeat(306)).segments, 2);
        assert_eq!(segments(&"a".repeat(307)).segments, 3);
        // Extension characters take two septets.
        let euro = segments(&"€".repeat(80));
        assert_eq!(
            (euro.encoding, euro.units, euro.segments),
            (Encoding::Gsm7, 160, 1)
        );
        assert_eq!(segments(&"€".repeat(81)).segments, 2);
        // One character outside GSM-7 (Polish ł) makes it UCS-2.
        let pl = segments(&format!("{}ł", "a".repeat(69)));
        assert_eq!(
            (pl.encoding, pl.units, pl.segments),
            (Encoding::Ucs2, 70, 1)
        );
        assert_eq!(segments(&format!("{}ł", "a".repeat(70))).segments, 2);
        assert_eq!(segments(&"ł".repeat(134)).segments, 2);
        assert_eq!(segments(&"ł".repeat(135)).segments, 3);
        // An emoji is two UTF-16 units.
        assert_eq!(segments("🙂").units, 2);
    }

    #[test]
    fn stop_words() {
        for yes in [
            "STOP",
            "stop",
            " Stop. ",
            "END",
            "cancel",
            "UNSUBSCRIBE",
            "quit!",
            "stop please",
        ] {
            assert!(is_stop(yes), "{yes}");
        }
        for no in ["", "yes", "don't stop", "STOPPED", "start"] {
            assert!(!is_stop(no), "{no}");
        }
    }

    #[test]
    fn footers_by_language() {
        assert!(stop_footer(Some("nl-NL")).contains("STOP"));
        assert!(stop_footer(Some("pl")).contains("STOP"));
        assert_eq!(stop_footer(None), "Reply STOP to opt out");
    }
}
