//! Consent belongs to the address, not to the record: a property test over random records that
//! share addresses, with random statements in random order, run through the real store, the
//! audience and the send-time check. No send ever goes to an address whose statement in force
//! is a withdrawal, and every address whose statement allows marketing is reached.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use winback_domain::{Channel, Consent, ConsentStatus, ManualClock, Timestamp};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings};
use winback_identity::{IdentityRules, resolve};
use winback_import::SourceKind;
use winback_store::{SqlStore, ingest::Mode};

use crate::{TestDb, conformance, import};

const ADDRESSES: [&str; 3] = ["ann@example.nl", "Ann@Example.nl", "bob@example.nl"];
const STATUSES: [&str; 4] = ["opt_in", "soft_opt_in", "none", "withdrawn"];

fn start() -> Timestamp {
    Timestamp::new("2025-06-02T10:00:00Z".parse().unwrap())
}

/// One customer record: which address (index into [`ADDRESSES`]), its statement, the day of
/// 2025 it was made, and whether the record has an order.
#[derive(Debug, Clone)]
struct Rec {
    address: usize,
    status: usize,
    day: u32,
    buyer: bool,
}

fn recs() -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(
        (
            0usize..3,
            0usize..4,
            1u32..120,
            proptest::bool::weighted(0.7),
        )
            .prop_map(|(address, status, day, buyer)| Rec {
                address,
                status,
                day,
                buyer,
            }),
        1..7,
    )
}

fn key(address: &str) -> String {
    address.to_lowercase()
}

/// The reference: each address's statement in force, folded from every record carrying it, and
/// whether its profile (everyone sharing the address is one person after resolution) bought.
fn expected(recs: &[Rec]) -> BTreeMap<String, (Option<ConsentStatus>, bool)> {
    let mut by_key: BTreeMap<String, (Vec<Consent>, bool)> = BTreeMap::new();
    for r in recs {
        let e = by_key.entry(key(ADDRESSES[r.address])).or_default();
        e.1 |= r.buyer;
        e.0.push(Consent {
            channel: Channel::Email,
            status: STATUSES[r.status].parse().unwrap(),
            source: "import:customers.csv".into(),
            at: day(r.day),
            wording_version: None,
        });
    }
    by_key
        .into_iter()
        .map(|(k, (h, buyer))| (k, (Consent::effective(&h).map(|c| c.status), buyer)))
        .collect()
}

fn day(d: u32) -> Timestamp {
    Timestamp::new(
        jiff::civil::date(2025, 1, 1)
            .checked_add(jiff::Span::new().days(i64::from(d)))
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp(),
    )
}

fn allowed(status: Option<ConsentStatus>, buyer: bool) -> bool {
    match status {
        Some(ConsentStatus::OptIn) => true,
        Some(ConsentStatus::SoftOptIn) => buyer,
        _ => false,
    }
}

const EVERYONE: &str = r#"
[campaign]
name = "everyone"
audience = 'true'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "ads"
type = "export"
target = "linkedin"
[[steps]]
id = "hello"
type = "send"
template = "hello"
"#;

/// What one random shop produced.
struct Run {
    /// The audience's `email_ok` per address key.
    ok_by_key: HashMap<String, bool>,
    /// Recipients of every sent message.
    sent: Vec<String>,
    /// The email keys in the campaign's LinkedIn file under a consent basis, and under
    /// legitimate interest.
    file_consent: Vec<String>,
    file_interest: Vec<String>,
}

/// Loads the records, resolves, runs a campaign whose audience ignores consent (so only the
/// send-time check stands between a withdrawn address and a message, and only the file's legal
/// basis between it and an ad platform), and returns what it did.
async fn run(store: &SqlStore, recs: &[Rec]) -> Run {
    let mut customers =
        String::from("customer_id,email,first_name,email_consent,email_consent_at,time_zone\n");
    let mut orders = String::from("order_id,customer_id,ordered_at,total,currency\n");
    for (i, r) in recs.iter().enumerate() {
        let at = day(r.day).to_string();
        customers.push_str(&format!(
            "R{i},{},Ann,{},{at},UTC\n",
            ADDRESSES[r.address], STATUSES[r.status]
        ));
        if r.buyer {
            orders.push_str(&format!("O{i},R{i},2025-01-01T12:00:00Z,20.00,EUR\n"));
        }
    }
    let r = import(
        store,
        SourceKind::Customers,
        "customers.csv",
        &customers,
        Mode::Strict,
    )
    .await;
    assert!(r.committed, "{:?}", r.errors);
    if orders.lines().count() > 1 {
        let r = import(
            store,
            SourceKind::Orders,
            "orders.csv",
            &orders,
            Mode::Strict,
        )
        .await;
        assert!(r.committed, "{:?}", r.errors);
    }
    let ids = store.identifiers().await.unwrap();
    store
        .save_resolution(&resolve(&IdentityRules::default(), &ids), start())
        .await
        .unwrap();
    crate::engine::features(store, start()).await;

    let mut ok_by_key = HashMap::new();
    // The whole base, read in small pages as the engine's pass reads it.
    let mut rows = Vec::new();
    loop {
        let after = rows
            .last()
            .map(|e: &winback_engine::ports::AudienceEntry| e.row.profile_id);
        let page = store.audience_page(start(), after, 7).await.unwrap();
        let done = page.len() < 7;
        rows.extend(page);
        if done {
            break;
        }
    }
    assert!(
        rows.windows(2)
            .all(|w| w[0].row.profile_id < w[1].row.profile_id),
        "pages follow each other in profile order, each profile once"
    );
    let emails = store
        .pool()
        .fetch(
            "SELECT COALESCE(profile_id, id), email_key FROM customers ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    for e in &emails {
        let profile = e.i64(0).unwrap();
        let k = e.text(1).unwrap();
        let row = rows
            .iter()
            .find(|r| r.row.profile_id == winback_domain::ProfileId::new(profile))
            .unwrap();
        ok_by_key.insert(k, row.row.email_ok);
    }

    winback_engine::Campaign::parse("everyone", EVERYONE).unwrap();
    store
        .apply_campaign("everyone", "everyone.toml", EVERYONE, start())
        .await
        .unwrap();
    store
        .set_campaign_status("everyone", winback_engine::CampaignStatus::Active, start())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outbox = FileOutbox::new(dir.path()).unwrap();
    let clock = ManualClock::new(start());
    let mut settings = EngineSettings::default();
    settings.policy.ramp.start_share = 1.0;
    let engine = Engine::new(store, &outbox, &clock, settings);
    engine.run_until_idle(10).await.unwrap();
    let sent = store
        .pool()
        .fetch(
            "SELECT recipient FROM outbox WHERE state = 'sent' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| key(&r.text(0).unwrap()))
        .collect();
    let id = store
        .campaigns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "everyone")
        .unwrap()
        .id;
    let mut files = Vec::new();
    for basis in [
        winback_domain::LegalBasis::Consent,
        winback_domain::LegalBasis::LegitimateInterest,
    ] {
        let file = store
            .audience_members(id, "linkedin", basis, start())
            .await
            .unwrap();
        let mut keys: Vec<String> = file
            .members
            .iter()
            .flat_map(|m| m.email.iter().chain(&m.other_emails).map(|e| key(e)))
            .collect();
        keys.sort();
        files.push(keys);
    }
    let file_interest = files.pop().unwrap();
    let file_consent = files.pop().unwrap();
    Run {
        ok_by_key,
        sent,
        file_consent,
        file_interest,
    }
}

fn check(recs: &[Rec], run: &Run) {
    let (ok_by_key, sent) = (&run.ok_by_key, &run.sent);
    let want = expected(recs);
    // The ad platform's file: under consent only addresses whose statement in force is an
    // explicit opt-in (a soft opt-in covers the shop's own mail, not LinkedIn's), each once;
    // under legitimate interest every address (nobody objected).
    let opted_in: Vec<String> = want
        .iter()
        .filter(|(_, (s, _))| *s == Some(ConsentStatus::OptIn))
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        run.file_consent, opted_in,
        "consent basis; records {recs:?}"
    );
    assert_eq!(
        run.file_interest,
        want.keys().cloned().collect::<Vec<_>>(),
        "legitimate interest; records {recs:?}"
    );
    for to in sent {
        let (status, buyer) = want[to];
        assert!(
            allowed(status, buyer),
            "sent to {to} whose statement in force is {status:?} (buyer {buyer}); records {recs:?}"
        );
    }
    for (k, (status, buyer)) in &want {
        let ok = allowed(*status, *buyer);
        assert_eq!(
            ok_by_key[k], ok,
            "audience email_ok for {k} with {status:?}; records {recs:?}"
        );
        assert_eq!(
            sent.iter().filter(|s| *s == k).count(),
            usize::from(ok),
            "{k} with {status:?} (buyer {buyer}) must get exactly {} message(s); records {recs:?}",
            usize::from(ok)
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// On SQLite, 24 random shops of records sharing addresses.
    #[test]
    fn never_mails_an_address_whose_statement_in_force_is_a_withdrawal(recs in recs()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let db = TestDb::sqlite().await;
            let out = run(&db.store, &recs).await;
            check(&recs, &out);
            db.finish().await;
        });
    }
}

/// The two cases a real shop hit, on both backends: a customer record's soft opt-in (2023) and
/// the newsletter tool's withdrawal (2025) for the same address mail nobody; the newsletter's
/// opt-in on an `email:` record beside a customer record that says `none` mails the person.
async fn the_shop_cases(store: &SqlStore) {
    let recs = [
        Rec {
            address: 0,
            status: 1,
            day: 1,
            buyer: true,
        },
        Rec {
            address: 1,
            status: 3,
            day: 90,
            buyer: false,
        },
        Rec {
            address: 2,
            status: 2,
            day: 1,
            buyer: true,
        },
        Rec {
            address: 2,
            status: 0,
            day: 60,
            buyer: false,
        },
    ];
    let out = run(store, &recs).await;
    check(&recs, &out);
    assert_eq!(out.sent, vec!["bob@example.nl".to_owned()]);
    assert_eq!(out.file_consent, vec!["bob@example.nl".to_owned()]);

    // Bob objects to direct marketing: he leaves every destination's file, whatever its basis,
    // and is counted as left out.
    let bob = store
        .customer_by_email_key("bob@example.nl")
        .await
        .unwrap()
        .unwrap()
        .0;
    store
        .privacy_request(
            winback_store::privacy::Request::Object,
            winback_domain::ProfileId::new(bob),
            "test",
            start(),
        )
        .await
        .unwrap();
    let id = store
        .campaigns()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name == "everyone")
        .unwrap()
        .id;
    for basis in [
        winback_domain::LegalBasis::Consent,
        winback_domain::LegalBasis::LegitimateInterest,
    ] {
        let file = store
            .audience_members(id, "linkedin", basis, start())
            .await
            .unwrap();
        assert!(
            file.members
                .iter()
                .all(|m| m.profile_id != winback_domain::ProfileId::new(bob)),
            "{basis}"
        );
        assert_eq!(file.objected, 1, "{basis}");
    }
    let file = store
        .audience_members(id, "linkedin", winback_domain::LegalBasis::Consent, start())
        .await
        .unwrap();
    assert_eq!(
        (file.members.len(), file.no_consent),
        (0, 1),
        "Ann: no opt-in"
    );
}
conformance!(consent_is_the_addresses, super::the_shop_cases);
