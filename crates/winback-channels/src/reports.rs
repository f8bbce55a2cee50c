//! Bounce and complaint mail: delivery status notifications (RFC 3464, `multipart/report;
//! report-type=delivery-status`) and abuse feedback reports (ARF, RFC 5965,
//! `report-type=feedback-report`), read from a raw message, an mbox file or a Maildir.
//!
//! A relay that accepted a message may still fail to deliver it hours later; the receiving side
//! then mails a report to the envelope sender. winback's envelope sender carries the message's
//! VERP tag (`bounces+TAG@shop.example`, see [`crate::email::verp`]), and its `Message-ID` is
//! derived from the same key, so a report names its message even when a mailbox provider
//! redacts the recipient. Parsing the MIME structure and header fields is `mail-parser`'s job;
//! this module only reads the report's fields and decides what each recipient's status means,
//! with the same rules as a synchronous SMTP reply ([`crate::email::classify_reply`]).

use std::path::Path;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use winback_engine::ports::SendOutcome;

/// What a report says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A permanent failure about the recipient (5.1.x): suppress the address.
    Hard,
    /// A full mailbox or a temporary recipient failure: counts toward the soft-bounce limit.
    Soft,
    /// A failure about the sender (policy, reputation, content, 5.7.x): the message bounced,
    /// but the recipient is not suppressed.
    Sender,
    /// Still trying (`Action: delayed`), or delivered, relayed or expanded: nothing to do.
    Informational,
    /// A spam complaint (ARF `abuse`, `fraud`, `virus`, `other`): suppress marketing email.
    Complaint,
}

/// One recipient of a report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recipient {
    /// The recipient's address, when the report names it (`Final-Recipient`,
    /// `Original-Recipient`, ARF `Original-Rcpt-To`, or the enclosed message's `To`).
    pub address: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`, or the ARF feedback type.
    pub action: String,
    /// The enhanced status code (`5.1.1`), when given.
    pub status: Option<String>,
    /// The receiving server's words (`Diagnostic-Code`), when given.
    pub diagnostic: Option<String>,
    /// What it means.
    pub verdict: Verdict,
}

/// A delivery status notification or a complaint report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// `dsn` or `arf`.
    pub kind: &'static str,
    /// The VERP tag of the envelope sender the report was mailed to (`bounces+TAG@…`).
    pub verp_tag: Option<String>,
    /// The `Message-ID` of the message the report is about (from the enclosed message or
    /// headers), without angle brackets.
    pub original_message_id: Option<String>,
    /// When the report was written (`Date`), as RFC 3339, when it parses.
    pub date: Option<String>,
    /// The report's own `Message-ID`, which makes reading the same mailbox twice a no-op.
    pub report_id: Option<String>,
    /// The recipients it is about.
    pub recipients: Vec<Recipient>,
}

/// Why a message could not be read as a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not a MIME message at all.
    #[error("not a mail message (no header fields)")]
    NotMail,
    /// A message, but not a `multipart/report` DSN or ARF (an auto-reply, a person's answer).
    #[error("not a delivery status or feedback report (Content-Type {0})")]
    NotReport(String),
    /// A report without a status part.
    #[error("a {0} report without its {1} part")]
    MissingPart(&'static str, &'static str),
}

/// Reads one raw message as a report.
pub fn parse(raw: &[u8]) -> Result<Report, ReportError> {
    // mail-parser 0.11.9 has a `debug_assert!` that malformed MIME reaches (message.rs:485,
    // "Invalid part ID", found by our fuzzer). Release builds compile it out and go on; in a
    // debug build it would panic on a stranger's mail, so it is caught here and the message
    // refused like any unreadable one.
    std::panic::catch_unwind(|| parse_message(raw)).unwrap_or(Err(ReportError::NotMail))
}

fn parse_message(raw: &[u8]) -> Result<Report, ReportError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(ReportError::NotMail)?;
    if message.headers().is_empty() {
        return Err(ReportError::NotMail);
    }
    let ct = message
        .content_type()
        .map(|c| {
            format!(
                "{}/{}",
                c.ctype().to_ascii_lowercase(),
                c.subtype().unwrap_or("").to_ascii_lowercase()
            )
        })
        .unwrap_or_else(|| "text/plain".into());
    let report_type = message
        .content_type()
        .and_then(|c| c.attribute("report-type"))
        .map(str::to_ascii_lowercase);
    if ct != "multipart/report" {
        return Err(ReportError::NotReport(ct));
    }
    let verp_tag = ["Delivered-To", "X-Original-To", "To", "Envelope-To"]
        .iter()
        .filter_map(|h| message.header_raw(*h))
        .find_map(verp_tag_of);
    let date = message
        .date()
        .and_then(|d| d.to_rfc3339().parse::<jiff::Timestamp>().ok())
        .map(|t| t.to_string());
    let report_id = message.message_id().map(str::to_owned);

    // The parts by content type: the machine-readable status, and the returned message or its
    // headers.
    let mut status_part: Option<(&'static str, String)> = None;
    let mut original: Option<Vec<u8>> = None;
    for part in &message.parts {
        let Some(pct) = part.content_type() else {
            continue;
        };
        let full = format!(
            "{}/{}",
            pct.ctype().to_ascii_lowercase(),
            pct.subtype().unwrap_or("").to_ascii_lowercase()
        );
        match full.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                status_part = Some(("dsn", String::from_utf8_lossy(part.contents()).into()));
            }
            "message/feedback-report" => {
                status_part = Some(("arf", String::from_utf8_lossy(part.contents()).into()));
            }
            "message/rfc822"
            | "message/global"
            | "text/rfc822-headers"
            | "message/rfc822-headers"
                if original.is_none() =>
            {
                original = Some(match &part.body {
                    PartType::Message(m) => m.raw_message().to_vec(),
                    _ => part.contents().to_vec(),
                });
            }
            _ => {}
        }
    }
    let kind = match (status_part.as_ref().map(|s| s.0), report_type.as_deref()) {
        (Some(k), _) => k,
        (None, Some("feedback-report")) => {
            return Err(ReportError::MissingPart(
                "feedback",
                "message/feedback-report",
            ));
        }
        (None, _) => {
            return Err(ReportError::MissingPart(
                "delivery-status",
                "message/delivery-status",
            ));
        }
    };
    let fields = status_part.map(|s| s.1).unwrap_or_default();
    let groups = field_groups(&fields);

    // The enclosed original: its Message-ID names the message; its To names the recipient
    // when the report does not.
    let (original_message_id, original_to) = match original.as_deref() {
        Some(bytes) => {
            // Headers alone (text/rfc822-headers) need a blank line to parse as a message.
            let mut owned = bytes.to_vec();
            if !owned.windows(4).any(|w| w == b"\r\n\r\n")
                && !owned.windows(2).any(|w| w == b"\n\n")
            {
                owned.extend_from_slice(b"\r\n\r\n");
            }
            match MessageParser::default().parse_headers(&owned) {
                Some(m) => (
                    m.message_id().map(str::to_owned),
                    m.to()
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .map(str::to_owned),
                ),
                None => (None, None),
            }
        }
        None => (None, None),
    };

    let recipients = if kind == "arf" {
        let f = groups.first().cloned().unwrap_or_default();
        let feedback = get(&f, "feedback-type")
            .unwrap_or_else(|| "abuse".into())
            .to_ascii_lowercase();
        let address = get(&f, "original-rcpt-to")
            .map(|a| strip_address_type(&a))
            .filter(|a| a.contains('@') && !a.contains("redacted"))
            .or(original_to);
        let verdict = if feedback == "not-spam" {
            Verdict::Informational
        } else {
            Verdict::Complaint
        };
        vec![Recipient {
            address,
            action: feedback,
            status: None,
            diagnostic: None,
            verdict,
        }]
    } else {
        // The first group holds the per-message fields; each later group is one recipient.
        groups
            .iter()
            .skip(1)
            .filter(|g| get(g, "final-recipient").is_some() || get(g, "action").is_some())
            .map(|g| {
                let address = get(g, "final-recipient")
                    .or_else(|| get(g, "original-recipient"))
                    .map(|a| strip_address_type(&a))
                    .or_else(|| original_to.clone());
                let action = get(g, "action").unwrap_or_default().to_ascii_lowercase();
                let status = get(g, "status")
                    .map(|s| s.split_whitespace().next().unwrap_or_default().to_owned());
                let diagnostic = get(g, "diagnostic-code").map(|d| {
                    // `smtp; 550 5.1.1 …`: the diagnostic type is not the server's words.
                    match d.split_once(';') {
                        Some((_, rest)) => rest.trim().to_owned(),
                        None => d,
                    }
                });
                let verdict = dsn_verdict(&action, status.as_deref(), diagnostic.as_deref());
                Recipient {
                    address,
                    action,
                    status,
                    diagnostic,
                    verdict,
                }
            })
            .collect()
    };
    Ok(Report {
        kind,
        verp_tag,
        original_message_id: original_message_id.map(|m| m.trim_matches(['<', '>']).to_owned()),
        date,
        report_id,
        recipients,
    })
}

/// What a DSN's action, status and diagnostic mean, by the rules of a synchronous reply.
fn dsn_verdict(action: &str, status: Option<&str>, diagnostic: Option<&str>) -> Verdict {
    if action != "failed" {
        return Verdict::Informational;
    }
    // The status field is authoritative; the diagnostic adds the server's words (and its
    // enhanced code when the status is missing).
    let text = match (status, diagnostic) {
        (Some(s), Some(d)) => format!("{s} {d}"),
        (Some(s), None) => s.to_owned(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => String::new(),
    };
    let class = status
        .and_then(|s| s.split('.').next())
        .or_else(|| diagnostic.and_then(|d| d.trim().get(..1)));
    let code = match class {
        Some("4") => 450,
        _ => 550,
    };
    match crate::email::classify_reply(code, &text) {
        SendOutcome::HardBounce(_) => Verdict::Hard,
        SendOutcome::SoftBounce(_) => Verdict::Soft,
        _ => Verdict::Sender,
    }
}

/// `rfc822; ann@example.nl` → `ann@example.nl`.
fn strip_address_type(v: &str) -> String {
    let v = match v.split_once(';') {
        Some((_, a)) => a,
        None => v,
    };
    v.trim().trim_matches(['<', '>']).to_owned()
}

/// The VERP tag in `user+TAG@domain` (16 hex digits, as [`crate::email::verp`] writes it).
fn verp_tag_of(header: &str) -> Option<String> {
    header
        .split([',', ' ', '<', '>', '\t', '\r', '\n'])
        .filter_map(|a| {
            let (local, _) = a.split_once('@')?;
            let (_, tag) = local.rsplit_once('+')?;
            (tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| tag.to_ascii_lowercase())
        })
        .next()
}

type Fields = Vec<(String, String)>;

/// The blank-line separated groups of a status part; each group's fields (unfolded, names
/// lower-cased) are read with mail-parser's header parser.
fn field_groups(text: &str) -> Vec<Fields> {
    let normal = text.replace("\r\n", "\n");
    normal
        .split("\n\n")
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            let block = format!("{}\r\n\r\n", g.trim_matches('\n').replace('\n', "\r\n"));
            MessageParser::default()
                .parse_headers(block.as_bytes())
                .map(|m| {
                    m.headers_raw()
                        .map(|(n, v)| {
                            (
                                n.to_ascii_lowercase(),
                                v.split_whitespace().collect::<Vec<_>>().join(" "),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect()
}

fn get(fields: &Fields, name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// One message of a mailbox, with where it came from (for error messages).
#[derive(Debug)]
pub struct MailboxMessage {
    /// `FILE#N` for an mbox, the file's path for a Maildir or a single message.
    pub origin: String,
    /// The raw message.
    pub raw: Vec<u8>,
}

/// Every message at `path`: a Maildir (a folder with `cur` and `new`), an mbox file (starting
/// with `From `), or one raw message (`.eml`).
pub fn read_mailbox(path: &Path) -> std::io::Result<Vec<MailboxMessage>> {
    if path.is_dir() {
        let mut out = Vec::new();
        for m in mail_parser::mailbox::maildir::MessageIterator::new(path)? {
            let m = m?;
            out.push(MailboxMessage {
                origin: m.path().display().to_string(),
                raw: m.unwrap_contents(),
            });
        }
        // Oldest first, so a later report about the same address is applied last.
        out.sort_by(|a, b| a.origin.cmp(&b.origin));
        return Ok(out);
    }
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(b"From ") {
        let reader = std::io::BufReader::new(std::io::Cursor::new(bytes));
        let mut out = Vec::new();
        for (i, m) in mail_parser::mailbox::mbox::MessageIterator::new(reader).enumerate() {
            let m = m.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "{}: message {} of the mbox cannot be read",
                        path.display(),
                        i + 1
                    ),
                )
            })?;
            out.push(MailboxMessage {
                origin: format!("{}#{}", path.display(), i + 1),
                raw: m.unwrap_contents(),
            });
        }
        return Ok(out);
    }
    Ok(vec![MailboxMessage {
        origin: path.display().to_string(),
        raw: bytes,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "Return-Path: <>\r\n\
Received: from mx.example.nl by mail.shop.example\r\n\
Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n\
From: Mail Delivery System <MAILER-DAEMON@mx.example.nl>\r\n\
To: bounces+0123456789abcdef@shop.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn-1@mx.example.nl>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\
\tboundary=\"BOUNDARY\"\r\n\
\r\n\
--BOUNDARY\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
This is the mail system at host mx.example.nl.\r\n\
\r\n\
--BOUNDARY\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.nl\r\n\
Arrival-Date: Tue, 03 Mar 2026 09:59:58 +0000\r\n\
\r\n\
Final-Recipient: rfc822; jan@example.nl\r\n\
Original-Recipient: rfc822;jan@example.nl\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <jan@example.nl>: Recipient address rejected:\r\n\
\x20User unknown in virtual mailbox table\r\n\
\r\n\
Final-Recipient: rfc822; vol@example.nl\r\n\
Action: failed\r\n\
Status: 5.2.2\r\n\
Diagnostic-Code: smtp; 552 5.2.2 Mailbox full\r\n\
\r\n\
Final-Recipient: rfc822; later@example.nl\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--BOUNDARY\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: Winkel <shop@shop.example>\r\n\
To: jan@example.nl\r\n\
Message-ID: <wb.0123456789abcdef0123456789abcdef@shop.example>\r\n\
Subject: We missen je\r\n\
\r\n\
--BOUNDARY--\r\n";

    #[test]
    fn a_postfix_dsn_names_its_message_and_judges_each_recipient() {
        let r = parse(DSN.as_bytes()).unwrap();
        assert_eq!(r.kind, "dsn");
        assert_eq!(r.verp_tag.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            r.original_message_id.as_deref(),
            Some("wb.0123456789abcdef0123456789abcdef@shop.example")
        );
        assert_eq!(r.report_id.as_deref(), Some("dsn-1@mx.example.nl"));
        assert_eq!(r.date.as_deref(), Some("2026-03-03T10:00:00Z"));
        let v: Vec<_> = r
            .recipients
            .iter()
            .map(|x| (x.address.clone().unwrap(), x.verdict.clone()))
            .collect();
        assert_eq!(
            v,
            vec![
                ("jan@example.nl".into(), Verdict::Hard),
                ("vol@example.nl".into(), Verdict::Soft),
                ("later@example.nl".into(), Verdict::Informational),
            ]
        );
        assert!(r.recipients[0].diagnostic.as_deref().is_some_and(|d| {
            d.starts_with("550 5.1.1 <jan@example.nl>: Recipient address rejected: User unknown")
        }),);
    }

    #[test]
    fn a_policy_bounce_is_the_senders_problem() {
        let raw = DSN.replace("Status: 5.1.1", "Status: 5.7.1").replace(
            "550 5.1.1 <jan@example.nl>: Recipient address rejected:",
            "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org;",
        );
        let r = parse(raw.as_bytes()).unwrap();
        assert_eq!(r.recipients[0].verdict, Verdict::Sender);
    }

    const ARF: &str = "From: feedback@fbl.example.com\r\n\
To: fbl@shop.example\r\n\
Subject: complaint about message\r\n\
Date: Wed, 04 Mar 2026 12:00:00 +0000\r\n\
Message-ID: <arf-7@fbl.example.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"part\"\r\n\
\r\n\
--part\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is an email abuse report.\r\n\
--part\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <bounces+0123456789abcdef@shop.example>\r\n\
Original-Rcpt-To: <piet@example.com>\r\n\
Source-IP: 192.0.2.1\r\n\
\r\n\
--part\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: Winkel <shop@shop.example>\r\n\
To: piet@example.com\r\n\
Message-ID: <wb.00112233445566778899aabbccddeeff@shop.example>\r\n\
Subject: We missen je\r\n\
\r\n\
Hallo Piet\r\n\
--part--\r\n";

    #[test]
    fn an_arf_complaint_names_recipient_and_message() {
        let r = parse(ARF.as_bytes()).unwrap();
        assert_eq!(r.kind, "arf");
        assert_eq!(
            r.original_message_id.as_deref(),
            Some("wb.00112233445566778899aabbccddeeff@shop.example")
        );
        assert_eq!(r.recipients.len(), 1);
        assert_eq!(r.recipients[0].address.as_deref(), Some("piet@example.com"));
        assert_eq!(r.recipients[0].verdict, Verdict::Complaint);
        // A redacted recipient falls back to the enclosed message's To.
        let redacted = ARF.replace(
            "Original-Rcpt-To: <piet@example.com>",
            "Original-Rcpt-To: redacted@example.com",
        );
        let r = parse(redacted.as_bytes()).unwrap();
        assert_eq!(r.recipients[0].address.as_deref(), Some("piet@example.com"));
    }

    #[test]
    fn mime_that_trips_the_parsers_debug_assertion_is_refused_or_read() {
        let raw = include_bytes!("../tests/data/mime-that-trips-mail-parser.eml");
        // Either outcome is fine; a panic is not.
        let _ = parse(raw);
    }

    #[test]
    fn an_auto_reply_is_not_a_report() {
        let raw = b"From: a@example.nl\r\nTo: shop@shop.example\r\nSubject: Out of office\r\n\r\nBack Monday\r\n";
        assert!(matches!(parse(raw), Err(ReportError::NotReport(_))));
        assert!(matches!(parse(b""), Err(ReportError::NotMail)));
    }

    #[test]
    fn mbox_and_maildir_are_read_message_by_message() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("bounces.mbox");
        let body = format!(
            "From MAILER-DAEMON Tue Mar  3 10:00:00 2026\n{}\nFrom feedback@fbl.example.com Wed Mar  4 12:00:00 2026\n{}\n",
            DSN.replace("\r\n", "\n"),
            ARF.replace("\r\n", "\n")
        );
        std::fs::write(&mbox, body).unwrap();
        let msgs = read_mailbox(&mbox).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(parse(&msgs[0].raw).unwrap().kind, "dsn");
        assert_eq!(parse(&msgs[1].raw).unwrap().kind, "arf");
        assert!(msgs[1].origin.ends_with("bounces.mbox#2"));

        let md = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        std::fs::write(md.join("new").join("1.host"), DSN).unwrap();
        std::fs::write(md.join("cur").join("2.host:2,S"), ARF).unwrap();
        let msgs = read_mailbox(&md).unwrap();
        assert_eq!(msgs.len(), 2);
        let kinds: Vec<_> = msgs.iter().map(|m| parse(&m.raw).unwrap().kind).collect();
        assert!(kinds.contains(&"dsn") && kinds.contains(&"arf"));
    }
}
