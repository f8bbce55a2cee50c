//! Rendering, composing and delivering email, against a real SMTP conversation on loopback.
#![allow(missing_docs)]

mod relay;
mod wallet;

use std::sync::Arc;

use winback_channels::email::{ComposeError, message_id};
use winback_channels::{
    Composer, EmailSettings, EmlOutbox, Keyring, Links, Purpose, Renderer, SmtpSettings,
    SmtpTransport,
};
use winback_domain::{ManualClock, Timestamp};
use winback_engine::Transport;
use winback_engine::ports::{Dispatch, OfferView, SendOutcome};
use winback_testkit::{Reply, SmtpSink};

fn now() -> Timestamp {
    Timestamp::new("2024-06-03T10:00:00Z".parse().unwrap())
}

fn dispatch(template: &str) -> Dispatch {
    Dispatch {
        key: winback_domain::MessageKey::stored(format!("we-miss-you/17/{template}/email")),
        channel: winback_engine::MessageChannel::Email,
        to: "ann@example.nl".into(),
        campaign: "we-miss-you".into(),
        step: "hello".into(),
        variant: "a".into(),
        template: template.into(),
        subject: Some("{{ first_name }}, we miss you!".into()),
        preheader: Some("Something for {{ first_name | default('you') }}".into()),
        sender_name: None,
        customer: "C17".into(),
        first_name: Some("Ann".into()),
        locale: Some("en-GB".into()),
        offer: Some(OfferView {
            code: "WB-7K3M9Q2XJ4HD".into(),
            kind: winback_engine::definition::OfferKind::Fixed { amount_minor: 1000 },
            currency: "EUR".into(),
            description: "10.00 EUR off".into(),
            expires_at: Timestamp::new("2024-06-17T10:00:00Z".parse().unwrap()),
            min_order_minor: 5000,
        }),
        products: vec!["Linen shirt".into(), "Wool socks".into()],
        wallet_pass: None,
    }
}

fn keys() -> Keyring {
    Keyring::new("k1", b"a test key that is long enough to sign").unwrap()
}

fn composer() -> Composer {
    Composer::new(
        EmailSettings::default(),
        keys(),
        Arc::new(ManualClock::new(now())),
    )
}

fn links() -> Links {
    composer().links(&dispatch("we-miss-you"))
}

#[test]
fn every_template_renders_in_every_locale_with_and_without_personal_data() {
    let r = Renderer::new("The Shop");
    let names = Renderer::templates();
    assert!(names.len() >= 18, "{names:?}");
    for name in names {
        for locale in ["en", "nl", "pl", "de"] {
            let mut d = dispatch(name);
            d.locale = Some(locale.into());
            d.subject = None;
            let full = r
                .render(&d, &links())
                .unwrap_or_else(|e| panic!("{name}/{locale}: {e}"));
            assert!(!full.subject.is_empty());
            assert!(full.html.contains("<html"), "{name}/{locale}");
            assert!(full.text.len() > 40, "{name}/{locale}: {}", full.text);
            assert_eq!(full.locale, if locale == "de" { "en" } else { locale });
            // No name, no offer, no products: defaults, never "none" or an error.
            d.first_name = None;
            d.offer = None;
            d.products.clear();
            let bare = r
                .render(&d, &links())
                .unwrap_or_else(|e| panic!("{name}/{locale} bare: {e}"));
            assert!(
                !bare.text.contains("none"),
                "{name}/{locale}: {}",
                bare.text
            );
        }
    }
}

#[test]
fn personal_data_is_escaped_in_html() {
    let mut d = dispatch("cart-reminder");
    d.first_name = Some("<img src=x onerror=alert(1)>".into());
    d.products = vec!["<script>alert(1)</script>".into()];
    let out = Renderer::new("The Shop").render(&d, &links()).unwrap();
    assert!(!out.html.contains("<img src=x"), "{}", out.html);
    assert!(!out.html.contains("<script>alert"), "{}", out.html);
    assert!(out.html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // The subject is a header, not HTML: kept as typed.
    assert_eq!(out.subject, "<img src=x onerror=alert(1)>, we miss you!");
}

#[test]
fn the_sandbox_refuses_undefined_values_and_runaway_templates() {
    let r = Renderer::new("The Shop");
    let d = dispatch("we-miss-you");
    let e = r.render_line("Hi {{ nickname }}", &d).unwrap_err();
    assert!(e.to_string().contains("undefined"), "{e}");
    let e = r
        .render_line(
            "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
            &d,
        )
        .unwrap_err();
    assert!(e.to_string().contains("fuel"), "{e}");
    // No loader: a template cannot include a file, and no function reads the environment.
    assert!(r.render_line("{% include '/etc/passwd' %}", &d).is_err());
    assert!(r.render_line("{{ env('HOME') }}", &d).is_err());
}

#[test]
fn the_rendered_we_miss_you_mail() {
    let out = Renderer::new("The Shop")
        .render(&dispatch("we-miss-you"), &links())
        .unwrap();
    insta::assert_snapshot!(
        "we_miss_you_en_text",
        format!(
            "Subject: {}\nPreheader: {}\n\n{}",
            out.subject,
            out.preheader.unwrap_or_default(),
            out.text
        )
    );
    // Dutch and Polish mail is Dutch and Polish from subject to footer: the offer worded,
    // priced and dated as each language writes it.
    for lang in ["nl", "pl"] {
        let mut d = dispatch("we-miss-you");
        d.locale = Some(lang.into());
        d.subject = None;
        d.preheader = None;
        let out = Renderer::new("De Winkel").render(&d, &links()).unwrap();
        insta::assert_snapshot!(
            format!("we_miss_you_{lang}_text"),
            format!("Subject: {}\n\n{}", out.subject, out.text)
        );
        for english in [
            "EUR off",
            "valid until",
            "Your code",
            "Unsubscribe",
            "2024-06-17",
        ] {
            assert!(
                !out.text.contains(english),
                "{lang}: `{english}` in {}",
                out.text
            );
        }
    }
    let mut nl = dispatch("ask-why");
    nl.locale = Some("nl".into());
    nl.subject = None;
    let out = Renderer::new("De Winkel").render(&nl, &links()).unwrap();
    insta::assert_snapshot!(
        "ask_why_nl_text",
        format!("Subject: {}\n\n{}", out.subject, out.text)
    );
}

/// A header's value, unfolded (RFC 5322 continuation lines joined).
fn header(raw: &str, name: &str) -> Option<String> {
    let head = raw
        .split("\r\n\r\n")
        .next()?
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

#[test]
fn every_message_carries_the_bulk_sender_headers() {
    let d = dispatch("we-miss-you");
    let m = composer().compose(&d).unwrap();
    let raw = String::from_utf8(m.formatted()).unwrap();
    assert_eq!(
        header(&raw, "Message-ID"),
        Some(message_id(d.key.as_str(), "shop.example"))
    );
    let lu = header(&raw, "List-Unsubscribe").unwrap();
    assert!(
        lu.starts_with("<https://mail.shop.example/u/v1.k1."),
        "{lu}"
    );
    assert!(
        lu.contains("<mailto:unsubscribe@shop.example?subject=unsubscribe"),
        "{lu}"
    );
    assert_eq!(
        header(&raw, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        header(&raw, "List-Id").as_deref(),
        Some("we-miss-you <we-miss-you.shop.example>")
    );
    assert_eq!(
        header(&raw, "Feedback-ID").as_deref(),
        Some("hello:a:we-miss-you:winback")
    );
    // The unsubscribe link's token names this message and verifies for unsubscribing only.
    let token = lu
        .trim_start_matches("<https://mail.shop.example/u/")
        .split('>')
        .next()
        .unwrap();
    let k = keys();
    assert_eq!(
        k.verify(Purpose::Unsubscribe, token, now())
            .unwrap()
            .message,
        d.key.as_str()
    );
    assert!(k.verify(Purpose::Click, token, now()).is_err());
    assert!(raw.contains("multipart/alternative"));
}

#[test]
fn a_bad_recipient_is_a_compose_error() {
    let mut d = dispatch("we-miss-you");
    d.to = "not an address".into();
    assert!(matches!(
        composer().compose(&d),
        Err(ComposeError::Address(_))
    ));
}

#[tokio::test]
async fn smtp_replies_become_outcomes() {
    let sink = SmtpSink::with_rule(|rcpt| {
        if rcpt.starts_with("busy") {
            Reply::Temporary
        } else if rcpt.starts_with("gone") {
            Reply::Permanent
        } else {
            Reply::Accept
        }
    })
    .await
    .unwrap();
    let smtp = SmtpTransport::new(
        composer(),
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.addr().port(),
            tls: "none".into(),
            ..SmtpSettings::default()
        },
    )
    .unwrap();
    let mut d = dispatch("we-miss-you");
    assert!(matches!(smtp.deliver(&d).await, SendOutcome::Sent { .. }));
    d.to = "busy@example.nl".into();
    d.key = "k/2".into();
    assert!(matches!(smtp.deliver(&d).await, SendOutcome::SoftBounce(_)));
    d.to = "gone@example.nl".into();
    d.key = "k/3".into();
    assert!(matches!(smtp.deliver(&d).await, SendOutcome::HardBounce(_)));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["ann@example.nl"]);
    assert_eq!(
        got[0].message_id.as_deref(),
        Some(message_id("we-miss-you/17/we-miss-you/email", "shop.example").as_str())
    );
    assert_eq!(sink.refused().len(), 2);
}

#[tokio::test]
async fn the_eml_outbox_writes_each_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = EmlOutbox::new(composer(), dir.path()).unwrap();
    let d = dispatch("we-miss-you");
    assert!(matches!(outbox.deliver(&d).await, SendOutcome::Sent { .. }));
    assert!(matches!(outbox.deliver(&d).await, SendOutcome::Sent { .. }));
    assert_eq!(
        (outbox.files().written(), outbox.files().repeated()),
        (1, 1)
    );
    let raw = std::fs::read_to_string(outbox.path_of(d.key.as_str())).unwrap();
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A DKIM verifier for `a=ed25519-sha256; c=relaxed/relaxed` written from RFC 6376 §3.4 and
/// RFC 8463, independent of lettre's signer, so the test can catch a signer bug.
mod dkim {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use sha2::{Digest, Sha256};

    fn squeeze(s: &str) -> String {
        s.split([' ', '\t'])
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// RFC 6376 §3.4.4: WSP runs to one space, no WSP at line ends, no empty lines at the end.
    fn body(raw: &str) -> Vec<u8> {
        let mut lines: Vec<String> = raw
            .split("\r\n")
            .map(|l| {
                let mut out = String::new();
                let mut ws = false;
                for c in l.chars() {
                    if c == ' ' || c == '\t' {
                        ws = true;
                    } else {
                        if ws {
                            out.push(' ');
                        }
                        ws = false;
                        out.push(c);
                    }
                }
                out
            })
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        if lines.is_empty() {
            return Vec::new();
        }
        format!("{}\r\n", lines.join("\r\n")).into_bytes()
    }

    /// RFC 6376 §3.4.2.
    fn header(name: &str, value: &str) -> String {
        format!(
            "{}:{}",
            name.to_ascii_lowercase(),
            squeeze(&value.replace("\r\n", "")).trim()
        )
    }

    /// A public key to verify with.
    pub enum Key<'a> {
        /// ed25519-sha256.
        Ed(&'a VerifyingKey),
        /// rsa-sha256.
        Rsa(&'a rsa::RsaPublicKey),
    }

    impl<'a> From<&'a VerifyingKey> for Key<'a> {
        fn from(k: &'a VerifyingKey) -> Self {
            Key::Ed(k)
        }
    }

    impl<'a> From<&'a rsa::RsaPublicKey> for Key<'a> {
        fn from(k: &'a rsa::RsaPublicKey) -> Self {
            Key::Rsa(k)
        }
    }

    /// Verifies the message's DKIM-Signature with `key`; returns the signed header names.
    pub fn verify<'a>(message: &[u8], key: impl Into<Key<'a>>) -> Result<Vec<String>, String> {
        let key = key.into();
        let text = std::str::from_utf8(message).map_err(|e| e.to_string())?;
        let (head, raw_body) = text.split_once("\r\n\r\n").ok_or("no body")?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                let last = headers.last_mut().ok_or("continuation without header")?;
                last.1.push_str("\r\n");
                last.1.push_str(line);
            } else {
                let (n, v) = line.split_once(':').ok_or("header without colon")?;
                headers.push((n.to_owned(), v.to_owned()));
            }
        }
        let (sig_name, sig_value) = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("DKIM-Signature"))
            .ok_or("no DKIM-Signature")?
            .clone();
        let tags: Vec<(String, String)> = sig_value
            .replace("\r\n", "")
            .split(';')
            .filter_map(|t| t.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_owned(),
                    v.split_whitespace().collect::<String>(),
                )
            })
            .collect();
        let tag = |k: &str| {
            tags.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or(format!("no {k}= tag"))
        };
        let algorithm = match key {
            Key::Ed(_) => "ed25519-sha256",
            Key::Rsa(_) => "rsa-sha256",
        };
        if tag("a")? != algorithm || tag("c")? != "relaxed/relaxed" {
            return Err("unexpected algorithm or canonicalization".into());
        }
        let bh = STANDARD.encode(Sha256::digest(body(raw_body)));
        if bh != tag("bh")? {
            return Err(format!("body hash {bh} != {}", tag("bh")?));
        }
        let signed: Vec<String> = tag("h")?.split(':').map(str::to_owned).collect();
        let mut data = String::new();
        let mut used = vec![false; headers.len()];
        for name in &signed {
            // Instances from the bottom up; a name listed more often than it occurs signs the
            // rest as nothing (RFC 6376 §5.4.2).
            if let Some(i) = (0..headers.len())
                .rev()
                .find(|&i| !used[i] && headers[i].0.eq_ignore_ascii_case(name))
            {
                used[i] = true;
                data.push_str(&header(&headers[i].0, &headers[i].1));
                data.push_str("\r\n");
            }
        }
        // The signature header itself, with b= emptied and no trailing CRLF. No other tag
        // ends in "b=" (bh= is "bh="), so the last "b=" starts the signature.
        let b_at = sig_value.rfind("b=").ok_or("no b= tag")?;
        let without_b = format!("{}b=", &sig_value[..b_at]);
        data.push_str(&header(&sig_name, &without_b));
        let sig = STANDARD.decode(tag("b")?).map_err(|e| e.to_string())?;
        let digest = Sha256::digest(data.as_bytes());
        match key {
            Key::Ed(k) => {
                let sig = Signature::from_slice(&sig).map_err(|e| e.to_string())?;
                k.verify(&digest, &sig)
                    .map_err(|e| format!("signature does not verify: {e}"))?;
            }
            Key::Rsa(k) => k
                .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                .map_err(|e| format!("signature does not verify: {e}"))?,
        }
        Ok(signed)
    }
}

#[test]
fn dkim_signatures_verify_and_cover_the_unsubscribe_headers() {
    use base64::Engine as _;
    let seed = [7u8; 32];
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let verifying = signing.verifying_key();
    let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
    let composer = composer().with_dkim("s2026", "shop.example", &b64).unwrap();
    let message = composer
        .compose(&dispatch("we-miss-you"))
        .unwrap()
        .formatted();
    let signed = dkim::verify(&message, &verifying).unwrap();
    for h in [
        "From",
        "Subject",
        "Message-ID",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ] {
        assert!(
            signed.iter().any(|s| s.eq_ignore_ascii_case(h)),
            "{h} not signed: {signed:?}"
        );
    }
    // Tampering with a signed header or the body breaks it.
    let text = String::from_utf8(message.clone()).unwrap();
    let forged = text.replacen(
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "List-Unsubscribe-Post: List-Unsubscribe=Two-Click",
        1,
    );
    assert_ne!(forged, text);
    assert!(dkim::verify(forged.as_bytes(), &verifying).is_err());
    let at = text.find("\r\n\r\n").unwrap() + 10;
    let mut body_changed = text.clone();
    body_changed.insert(at, 'X');
    assert!(
        dkim::verify(body_changed.as_bytes(), &verifying)
            .unwrap_err()
            .contains("body hash")
    );
    // Another key does not verify it.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    assert!(dkim::verify(&message, &other).is_err());
}

/// A key written by plain `openssl COMMAND -out FILE OPTIONS…` (genrsa takes its size last).
fn openssl_key(dir: &std::path::Path, args: &[&str], file: &str) -> String {
    let path = dir.join(file);
    let out = std::process::Command::new("openssl")
        .arg(args[0])
        .arg("-out")
        .arg(&path)
        .args(&args[1..])
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(path).unwrap()
}

/// The keys people have: what plain `openssl genrsa 2048` (PKCS#8 in OpenSSL 3), `openssl genrsa
/// -traditional` (PKCS#1) and `openssl genpkey -algorithm ed25519` write all sign mail that an
/// independent verifier accepts.
#[test]
fn dkim_keys_made_by_plain_openssl_sign() {
    use rsa::pkcs8::DecodePrivateKey as _;
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str], file: &str| openssl_key(dir.path(), args, file);
    let pkcs8 = openssl(&["genrsa", "2048"], "rsa.pem");
    assert!(pkcs8.contains("BEGIN PRIVATE KEY"), "{pkcs8}");
    let pkcs1 = openssl(&["genrsa", "-traditional", "2048"], "rsa1.pem");
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    for pem in [&pkcs8, &pkcs1] {
        let public = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| {
                use rsa::pkcs1::DecodeRsaPrivateKey as _;
                rsa::RsaPrivateKey::from_pkcs1_pem(pem)
            })
            .unwrap()
            .to_public_key();
        let composer = composer().with_dkim("s2026", "shop.example", pem).unwrap();
        let message = composer
            .compose(&dispatch("we-miss-you"))
            .unwrap()
            .formatted();
        let signed = dkim::verify(&message, &public).unwrap();
        assert!(
            signed
                .iter()
                .any(|h| h.eq_ignore_ascii_case("List-Unsubscribe"))
        );
    }
    let ed = openssl(&["genpkey", "-algorithm", "ed25519"], "ed.pem");
    let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&ed).unwrap();
    let composer = composer().with_dkim("s2026", "shop.example", &ed).unwrap();
    let message = composer
        .compose(&dispatch("we-miss-you"))
        .unwrap()
        .formatted();
    dkim::verify(&message, &signing.verifying_key()).unwrap();
    // A public key or a certificate is refused with a word on what to use.
    let e = composer_err("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
    assert!(e.contains("`PUBLIC KEY` is not a private key"), "{e}");
}

fn composer_err(key: &str) -> String {
    composer()
        .with_dkim("s", "shop.example", key)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// Mail in the reader's language: a campaign's per-language subject is taken in the contact's
/// language, a language the table lacks gets the library's subject (never another language's),
/// and the HTML says its language.
#[test]
fn subjects_and_html_are_in_the_readers_language() {
    let c = composer();
    let mut d = dispatch("we-miss-you");
    d.subject = Some(
        r#"{"en":"{{ first_name }}, we miss you!","nl":"{{ first_name }}, we missen je!"}"#.into(),
    );
    d.locale = Some("nl-NL".into());
    let nl = c.renderer().render(&d, &links()).unwrap();
    assert!(nl.subject.ends_with("we missen je!"), "{}", nl.subject);
    assert!(nl.html.contains("lang=\"nl\""), "html lang");
    d.locale = Some("pl".into());
    let pl = c.renderer().render(&d, &links()).unwrap();
    assert!(
        !pl.subject.contains("miss you"),
        "no English subject over Polish: {}",
        pl.subject
    );
    let library_pl = winback_channels::library::SUBJECTS
        .iter()
        .find(|(l, n, _)| *l == "pl" && *n == "we-miss-you")
        .unwrap()
        .2;
    assert_eq!(
        pl.subject,
        c.renderer().render_line(library_pl, &d).unwrap()
    );
    assert!(pl.html.contains("lang=\"pl\""));
    // A plain subject is the shop's choice for everyone.
    d.subject = Some("Plain".into());
    assert_eq!(c.renderer().render(&d, &links()).unwrap().subject, "Plain");
}

#[tokio::test]
async fn domain_rates_are_checked_and_pass_messages_through() {
    use winback_channels::email::DomainRateLimited;
    let dir = tempfile::tempdir().unwrap();
    let eml = || EmlOutbox::new(composer(), dir.path()).unwrap();
    let zero = [("gmail.com".to_owned(), 0u32)].into();
    assert!(
        DomainRateLimited::new(eml(), &zero)
            .unwrap_err()
            .contains("gmail.com")
    );
    let rates = [("Example.NL".to_owned(), 5u32)].into();
    let limited = DomainRateLimited::new(eml(), &rates).unwrap();
    // The first message to a limited domain and any to another domain go at once.
    let mut d = dispatch("we-miss-you");
    assert!(matches!(
        limited.deliver(&d).await,
        SendOutcome::Sent { .. }
    ));
    d.key = "other/1".into();
    d.to = "ann@elsewhere.example".into();
    assert!(matches!(
        limited.deliver(&d).await,
        SendOutcome::Sent { .. }
    ));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// Polish has gendered past tenses and nouns; the library's Polish copy (bodies, buttons and
/// subjects, the seed's subject lines) uses forms that fit every reader.
#[test]
fn the_polish_copy_does_not_assume_a_gender() {
    let mut texts: Vec<(String, String)> = winback_channels::library::TEMPLATES
        .iter()
        .filter(|(p, _)| p.starts_with("pl/"))
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect();
    texts.extend(
        winback_channels::library::SUBJECTS
            .iter()
            .filter(|(l, _, _)| *l == "pl")
            .map(|(_, n, s)| (format!("subject {n}"), (*s).to_owned())),
    );
    texts.extend(
        winback_channels::subjects::SEED_001
            .iter()
            .map(|(nl, _, pl)| (format!("seed subject {nl}"), (*pl).to_owned())),
    );
    // Second-person and first-person past forms of either gender, and masculine nouns or
    // adjectives addressing the reader.
    let gendered_endings = ["łeś", "łaś", "łem", "łam", "łbyś", "łabyś"];
    let gendered_words = [
        "wrócił",
        "klientem",
        "przyjacielu",
        "sam",
        "zadowolony",
        "gotowy",
    ];
    let mut found = Vec::new();
    for (origin, text) in &texts {
        for word in text.split(|c: char| !c.is_alphabetic()) {
            let w = word.to_lowercase();
            if gendered_endings.iter().any(|e| w.ends_with(e))
                || gendered_words.contains(&w.as_str())
            {
                found.push(format!("{origin}: {word}"));
            }
        }
    }
    assert!(found.is_empty(), "gendered Polish: {found:?}");
}

/// Without a provider, an SMS lands in the outbox as the provider would get it: the text
/// rendered in the contact's language from a per-language campaign line, the STOP footer,
/// and its segments; once per key.
#[tokio::test]
async fn the_sms_outbox_holds_the_rendered_text_footer_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = winback_channels::sms::SmsOutbox::new(dir.path(), "De Winkel", "Winkel").unwrap();
    let mut d = dispatch("we-miss-you");
    d.key = "we-miss-you/17/sms1/sms".into();
    d.channel = winback_engine::MessageChannel::Sms;
    d.to = "+48600123456".into();
    d.locale = Some("pl".into());
    d.subject = Some(
        r#"{"en":"{{ shop }}: {{ offer }} for you","pl":"{{ shop }}: {{ offer }} dla Ciebie"}"#
            .into(),
    );
    assert!(matches!(outbox.deliver(&d).await, SendOutcome::Sent { .. }));
    assert!(matches!(outbox.deliver(&d).await, SendOutcome::Sent { .. }));
    assert_eq!(outbox.files().written(), 1);
    let file = outbox.files().path_of(d.key.as_str(), "sms.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["body"], "De Winkel: -10,00 € dla Ciebie", "{v}");
    assert_eq!(v["footer"], "Rezygnacja? Odpisz STOP");
    assert_eq!(
        v["text"],
        "De Winkel: -10,00 € dla Ciebie\nRezygnacja? Odpisz STOP"
    );
    assert_eq!(v["to"], "+48600123456");
    // `€` is in GSM-7's extension table, and the amount's no-break space became a space: one
    // GSM-7 segment, not UCS-2.
    assert_eq!(v["segments"]["segments"], 1, "{v}");
    assert_eq!(v["segments"]["encoding"], "gsm7", "{v}");
}

/// RSA and Ed25519 signatures together, checked by dkimpy (an independent DKIM verifier): both
/// verify; a prepended Subject or From (oversigned) and a changed Content-Type (signed) break
/// both.
#[test]
fn dual_dkim_signatures_verify_independently_and_oversigning_holds() {
    use base64::Engine as _;
    use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
    let python = std::process::Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").is_err(),
            "CI needs python3 with dkimpy and pynacl (`pip install dkimpy pynacl`)"
        );
        eprintln!(
            "skipping: python3 with dkimpy and pynacl is not installed (`pip install dkimpy pynacl`)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let openssl = |args: &[&str], file: &str| openssl_key(dir.path(), args, file);
    let rsa_pem = openssl(&["genrsa", "2048"], "rsa.pem");
    let ed_pem = openssl(&["genpkey", "-algorithm", "ed25519"], "ed.pem");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let rsa_public = rsa::RsaPrivateKey::from_pkcs8_pem(&rsa_pem)
        .unwrap()
        .to_public_key()
        .to_public_key_der()
        .unwrap();
    let ed_public = ed25519_dalek::SigningKey::from_pkcs8_pem(&ed_pem)
        .unwrap()
        .verifying_key()
        .to_bytes();
    let records = serde_json::json!({
        "rsa2026._domainkey.shop.example.": format!("v=DKIM1; k=rsa; p={}", b64(rsa_public.as_bytes())),
        "ed2026._domainkey.shop.example.": format!("v=DKIM1; k=ed25519; p={}", b64(&ed_public)),
    });
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, records.to_string()).unwrap();
    let composer = composer()
        .with_dkim("rsa2026", "shop.example", &rsa_pem)
        .unwrap()
        .with_dkim("ed2026", "shop.example", &ed_pem)
        .unwrap();
    let message = composer
        .compose(&dispatch("we-miss-you"))
        .unwrap()
        .formatted();
    let verify = |bytes: &[u8]| -> String {
        let file = dir.path().join("m.eml");
        std::fs::write(&file, bytes).unwrap();
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/data/dkim_verify.py"
            ))
            .arg(&file)
            .arg(&keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        verify(&message),
        "ok a=rsa-sha256 s=rsa2026\nok a=ed25519-sha256 s=ed2026\n"
    );
    let text = String::from_utf8(message).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let both_fail = "fail a=rsa-sha256 s=rsa2026\nfail a=ed25519-sha256 s=ed2026\n";
    // A second Subject or From added above the original (after the signatures).
    for extra in [
        "Subject: You won a prize",
        "From: Bank <alerts@bank.example>",
    ] {
        let sigs_end = head.rfind("DKIM-Signature:").unwrap();
        let after = head[sigs_end..].find("\r\n").unwrap() + sigs_end;
        // Past the last signature's folded lines.
        let mut at = after;
        while head[at + 2..].starts_with([' ', '\t']) {
            at += 2 + head[at + 2..].find("\r\n").unwrap();
        }
        let forged = format!("{}\r\n{extra}{}\r\n\r\n{body}", &head[..at], &head[at..]);
        assert_eq!(verify(forged.as_bytes()), both_fail, "{extra}");
    }
    let forged = text.replacen(
        "Content-Type: multipart/alternative;",
        "Content-Type: multipart/mixed;",
        1,
    );
    assert_ne!(
        forged, text,
        "the message has a multipart/alternative Content-Type"
    );
    assert_eq!(verify(forged.as_bytes()), both_fail);
}

/// A rung's own wording is used in each language it gives; a language it lacks gets the kind
/// worded in that language, never another language's words.
#[test]
fn an_offers_own_wording_is_used_per_language() {
    let mut d = dispatch("we-miss-you");
    d.subject = Some("{{ offer }}".into());
    let o = d.offer.as_mut().unwrap();
    o.kind = winback_engine::definition::OfferKind::FreeProduct {
        sku: "TAS-1".into(),
        cost_minor: 300,
    };
    o.description = r#"{"en":"a free tote bag","nl":"een gratis tas"}"#.into();
    let r = Renderer::new("De Winkel");
    for (locale, want) in [
        ("nl", "een gratis tas"),
        ("en", "a free tote bag"),
        ("pl", "gratis: TAS-1"),
    ] {
        d.locale = Some(locale.into());
        let out = r.render(&d, &links()).unwrap();
        assert_eq!(out.subject, want, "{locale}");
        assert!(out.text.contains(want), "{locale}: {}", out.text);
    }
}

/// A journey that issued a wallet pass gives its messages an add-to-wallet link, in the
/// contact's language, signed for that purpose only; without a wallet set up, none.
#[test]
fn messages_of_a_pass_holder_carry_an_add_to_wallet_link() {
    let mut d = dispatch("we-miss-you");
    d.wallet_pass = Some("3f9a0c".into());
    let html = |c: &Composer, d: &winback_engine::ports::Dispatch| {
        c.renderer().render(d, &c.links(d)).unwrap().html
    };
    assert!(
        !html(&composer(), &d).contains("/w/v1."),
        "no wallet set up, no button"
    );
    let c = composer().with_wallet_links();
    let links = c.links(&d);
    let link = links.wallet.clone().unwrap();
    assert!(
        link.starts_with("https://mail.shop.example/w/v1.k1."),
        "{link}"
    );
    let token = link.rsplit('/').next().unwrap();
    let claims = keys()
        .verify(winback_channels::Purpose::Wallet, token, now())
        .unwrap();
    assert_eq!(claims.extra.as_deref(), Some("3f9a0c"));
    assert!(
        keys()
            .verify(winback_channels::Purpose::Click, token, now())
            .is_err(),
        "a wallet token is no click token"
    );
    let page = html(&c, &d);
    assert!(page.contains(token), "{page}");
    assert!(page.contains("Add to your wallet"), "{page}");
    d.locale = Some("nl".into());
    assert!(html(&c, &d).contains("Toevoegen aan je wallet"));
    // Without a pass, no button even with a wallet.
    assert!(!html(&c, &dispatch("we-miss-you")).contains("Add to your wallet"));

    // SMS: the link under the text, before the STOP footer.
    let wl = winback_channels::WalletLinks::new(
        keys(),
        "https://mail.shop.example",
        365,
        Arc::new(ManualClock::new(now())),
    );
    let mut s = dispatch("we-miss-you");
    s.wallet_pass = Some("3f9a0c".into());
    s.locale = Some("en".into());
    let link = wl.link(&s).unwrap();
    let sms = winback_channels::sms::compose(&Renderer::new("The Shop"), &s, Some(&link)).unwrap();
    assert!(
        sms.body
            .ends_with(&format!("Your pass for your wallet: {link}")),
        "{}",
        sms.body
    );
    assert!(sms.text.ends_with(sms.footer));
    assert_eq!(wl.link(&dispatch("we-miss-you")), None);
}
