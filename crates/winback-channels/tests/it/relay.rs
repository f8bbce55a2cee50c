//! A relay that fails as real relays do must never hurt the sender's list: every reply is
//! classified by its stage and enhanced status code, only 5.1.x recipients are suppressed, the
//! relay is paused and resumed, and every other message is sent exactly once after recovery.

use winback_channels::email::{SmtpSettings, SmtpTransport, classify_reply};
use winback_domain::{ManualClock, Timestamp};
use winback_engine::ports::SendOutcome;
use winback_engine::{Engine, EngineSettings, Transport};
use winback_import::{ImportOptions, SourceKind, from_reader};
use winback_store::{FactScope, SqlStore, ingest};
use winback_testkit::{Fault, Reply, SmtpSink};

use crate::{composer, dispatch};

fn smtp(sink: &SmtpSink, user: Option<&str>) -> SmtpTransport {
    SmtpTransport::new(
        composer(),
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.addr().port(),
            tls: "none".into(),
            user: user.map(str::to_owned),
            password: user.map(|_| "secret".to_owned()),
            pool: 1,
            ..SmtpSettings::default()
        },
    )
    .unwrap()
}

#[test]
fn replies_are_classified_by_code_and_enhanced_status() {
    let hard = |c, t| matches!(classify_reply(c, t), SendOutcome::HardBounce(_));
    let soft = |c, t| matches!(classify_reply(c, t), SendOutcome::SoftBounce(_));
    let transport = |c, t| matches!(classify_reply(c, t), SendOutcome::TransportFailure(_));
    assert!(hard(550, "550 5.1.1 No such user"));
    assert!(hard(550, "550 5.1.2 Bad destination domain"));
    assert!(hard(550, "550 User unknown in virtual mailbox table"));
    assert!(soft(452, "452 4.2.2 Mailbox full"));
    assert!(soft(552, "552 5.2.2 Mailbox over quota"));
    assert!(soft(450, "450 4.2.1 Mailbox busy"));
    assert!(transport(
        535,
        "535 5.7.8 Authentication credentials invalid"
    ));
    assert!(transport(554, "554 5.7.1 Sending IP listed on a blocklist"));
    assert!(transport(421, "421 4.7.0 Too many messages"));
    assert!(transport(550, "550 5.7.1 Message content rejected"));
    assert!(transport(
        553,
        "553 5.1.8 Sender address domain does not exist"
    ));
    assert!(transport(554, "554 Transaction failed"));
    assert!(transport(451, "451 Temporary local problem"));
}

#[tokio::test]
async fn every_stage_fails_the_transport_not_the_recipient() {
    let sink = SmtpSink::with_rule(|rcpt| {
        if rcpt.starts_with("gone") {
            Reply::Permanent
        } else if rcpt.starts_with("full") {
            Reply::MailboxFull
        } else {
            Reply::Accept
        }
    })
    .await
    .unwrap();
    let mut d = dispatch("we-miss-you");
    for (i, fault) in [
        Fault::Greeting,
        Fault::MailFromBlocked,
        Fault::Throttled,
        Fault::Content,
    ]
    .into_iter()
    .enumerate()
    {
        sink.set_fault(Some(fault));
        d.key = winback_domain::MessageKey::stored(format!("k/fault/{i}"));
        let out = smtp(&sink, None).deliver(&d).await;
        assert!(
            matches!(out, SendOutcome::TransportFailure(_)),
            "{fault:?}: {out:?}"
        );
    }
    sink.set_fault(Some(Fault::Auth));
    d.key = "k/auth".into();
    let out = smtp(&sink, Some("shop")).deliver(&d).await;
    assert!(
        matches!(out, SendOutcome::TransportFailure(_)),
        "a wrong password: {out:?}"
    );
    sink.set_fault(None);
    let relay = smtp(&sink, Some("shop"));
    d.key = "k/ok".into();
    assert!(matches!(relay.deliver(&d).await, SendOutcome::Sent { .. }));
    d.to = "gone@example.nl".into();
    d.key = "k/gone".into();
    assert!(matches!(
        relay.deliver(&d).await,
        SendOutcome::HardBounce(_)
    ));
    d.to = "full@example.nl".into();
    d.key = "k/full".into();
    assert!(matches!(
        relay.deliver(&d).await,
        SendOutcome::SoftBounce(_)
    ));
    assert_eq!(sink.messages().len(), 1);
}

fn at(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

const CAMPAIGN: &str = r#"
[campaign]
name = "hello"
audience = 'email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
"#;

/// The issue's scenario, through the engine, a real store and the sink: the relay refuses at
/// MAIL FROM for a while; nobody is suppressed, the relay is paused and resumes, then the 5.1.1
/// recipient alone is suppressed and every other contact gets exactly one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_outage_suppresses_nobody_and_everyone_gets_one_message_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let start = at("2026-03-02T10:00:00Z");
    let mut customers = String::from("customer_id,email,email_consent,time_zone\n");
    for i in 0..12 {
        let who = match i {
            0 => "gone".to_owned(),
            _ => format!("c{i}"),
        };
        customers.push_str(&format!("C{i},{who}@example.nl,yes,UTC\n"));
    }
    let rows = from_reader(
        SourceKind::Customers,
        "customers.csv".into(),
        std::io::Cursor::new(customers.into_bytes()),
        &ImportOptions::new(start),
        None,
    )
    .unwrap();
    let options = ingest::IngestOptions {
        file: "customers.csv".into(),
        mode: ingest::Mode::Strict,
        max_errors: 10,
        batch_rows: 100,
        now: start,
    };
    assert!(
        ingest::ingest(&store, rows, &options, |_| {}, |_| {})
            .await
            .unwrap()
            .committed
    );
    let facts = store.profile_facts(FactScope::All).await.unwrap();
    let features: Vec<_> = facts
        .profiles
        .iter()
        .map(|p| winback_scoring::features_of(p, &facts.categories, start))
        .collect();
    store
        .save_features(start, &features, &[], true)
        .await
        .unwrap();
    winback_engine::Campaign::parse("hello.toml", CAMPAIGN).unwrap();
    use winback_engine::ports::JourneyStore;
    store
        .apply_campaign("hello", "hello.toml", CAMPAIGN, start)
        .await
        .unwrap();
    store
        .set_campaign_status("hello", winback_engine::CampaignStatus::Active, start)
        .await
        .unwrap();

    let sink = SmtpSink::with_rule(|rcpt| {
        if rcpt.starts_with("gone") {
            Reply::Permanent
        } else {
            Reply::Accept
        }
    })
    .await
    .unwrap();
    let relay = smtp(&sink, None);
    let clock = ManualClock::new(start);
    let mut settings = EngineSettings::default();
    settings.policy.ramp.start_share = 1.0;
    let engine = Engine::new(&store, &relay, &clock, settings);
    let count = |sql: &'static str| {
        let store = store.clone();
        async move {
            store.pool().fetch(sql, &[]).await.unwrap()[0]
                .i64(0)
                .unwrap()
        }
    };

    // The relay blocks our sending IP at MAIL FROM: nothing is sent, nobody is suppressed,
    // and the email transport pauses.
    sink.set_fault(Some(Fault::MailFromBlocked));
    let s = engine.run_until_idle(10).await.unwrap();
    assert_eq!(s.sent, 0, "{s:?}");
    assert!(s.transport_failures >= 1, "{s:?}");
    assert_eq!(
        count("SELECT COUNT(*) FROM suppressions WHERE active = 1").await,
        0
    );
    assert_eq!(count("SELECT COUNT(*) FROM transport_pauses").await, 1);
    // Then it throttles: still nobody suppressed, the pause grows.
    sink.set_fault(Some(Fault::Throttled));
    for _ in 0..3 {
        clock.advance_seconds(4 * 3600 + 60);
        engine.run_until_idle(10).await.unwrap();
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM suppressions WHERE active = 1").await,
        0
    );
    assert_eq!(sink.messages().len(), 0);

    // It recovers: the next pass after the pause sends everyone once, and only the 5.1.1
    // recipient is suppressed.
    sink.set_fault(None);
    // The next morning, inside the send window.
    clock.set(at("2026-03-03T10:00:00Z"));
    engine.run_until_idle(20).await.unwrap();
    assert_eq!(
        count("SELECT COUNT(*) FROM transport_pauses").await,
        0,
        "resumed"
    );
    let got: Vec<String> = sink.messages().iter().flat_map(|m| m.to.clone()).collect();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(got.len(), unique.len(), "nobody twice: {got:?}");
    assert_eq!(got.len(), 11, "everyone but the unknown user: {got:?}");
    let suppressed = store
        .pool()
        .fetch("SELECT address FROM suppressions WHERE active = 1", &[])
        .await
        .unwrap();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0].text(0).unwrap(), "gone@example.nl");
    // `customers show` tells the story: the suppression and the message's outcome.
    let d = store.customer_detail("C0").await.unwrap().unwrap();
    assert_eq!(d.suppressions[0].reason, "hard_bounce");
    assert!(d.suppressions[0].active);
    let messages = store.profile_messages(d.profile_id, 20).await.unwrap();
    assert_eq!(messages[0].outcome.as_deref(), Some("hard_bounce"));
    let d = store.customer_detail("C1").await.unwrap().unwrap();
    assert!(d.suppressions.is_empty());
    let messages = store.profile_messages(d.profile_id, 20).await.unwrap();
    assert_eq!(messages[0].state, "sent");
    assert_eq!(messages[0].recipient.as_deref(), Some("c1@example.nl"));
}

/// The envelope sender is the configured return path with a tag naming the message (VERP), and
/// the relay's queue id is kept as the provider id.
#[tokio::test]
async fn return_path_carries_the_message_tag_and_the_queue_id_is_kept() {
    let sink = SmtpSink::start().await.unwrap();
    let relay = SmtpTransport::new(
        composer(),
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: sink.addr().port(),
            tls: "none".into(),
            ehlo_name: Some("mail.shop.example".into()),
            return_path: Some("bounces@shop.example".into()),
            ..SmtpSettings::default()
        },
    )
    .unwrap();
    let d = dispatch("we-miss-you");
    let out = relay.deliver(&d).await;
    let SendOutcome::Sent { provider_id, .. } = out else {
        panic!("{out:?}")
    };
    assert_eq!(provider_id.as_deref(), Some("SINK000001"));
    let from = &sink.messages()[0].from;
    let expected =
        winback_channels::email::verp(&"bounces@shop.example".parse().unwrap(), d.key.as_str())
            .unwrap()
            .to_string();
    assert_eq!(from, &expected);
    assert!(
        from.starts_with("bounces+") && from.ends_with("@shop.example"),
        "{from}"
    );
}
