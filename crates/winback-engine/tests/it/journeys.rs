//! The journey state machine over the shipped examples, with the clock driven by hand.

use jiff::tz::TimeZone;
use winback_domain::Timestamp;
use winback_engine::Campaign;
use winback_engine::audience::{Evaluator, JourneyFacts};
use winback_engine::journey::{
    Admission, Effect, Enrolment, EntryHistory, Next, Snapshot, Terminal, admit, advance,
    date_entry,
};

fn load(name: &str) -> Campaign {
    let path = format!(
        "{}/../../examples/campaigns/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    Campaign::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

fn enrolment(step: usize, resume: bool, due: &str) -> Enrolment {
    Enrolment {
        id: winback_domain::EnrolmentId::new(41),
        profile_id: winback_domain::ProfileId::new(7),
        step,
        resume,
        entered_at: ts("2026-01-05T09:00:00Z"),
        due_at: ts(due),
        variant: "a".into(),
    }
}

fn snap() -> Snapshot {
    Snapshot {
        time_zone: Some("Europe/Amsterdam".into()),
        ..Snapshot::default()
    }
}

fn messages(effects: &[Effect]) -> Vec<(String, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Message(m) => Some((m.step_id.clone(), m.idempotency_key.to_string())),
            _ => None,
        })
        .collect()
}

#[test]
fn we_miss_you_then_ask_why_then_an_offer_for_price_leavers() {
    let c = load("we-miss-you");
    let ev = Evaluator::new();
    let now = ts("2026-01-05T09:00:00Z");
    let plan = advance(
        &c,
        &enrolment(0, false, "2026-01-05T09:00:00Z"),
        &snap(),
        now,
        b"k",
        &ev,
    );
    assert_eq!(
        messages(&plan.effects),
        [(
            "miss-you".to_owned(),
            "we-miss-you/41/miss-you/email".to_owned()
        )]
    );
    assert!(
        plan.effects
            .contains(&Effect::Tag(vec!["was-lapsed".into()]))
    );
    let wait = c.step_index("wait-reaction").unwrap();
    // Ten days, then on to 10:00 Amsterdam (09:00 UTC in winter): already 10:00 then.
    assert_eq!(
        plan.next,
        Next::At {
            step: wait,
            resume: true,
            due_at: ts("2026-01-15T09:00:00Z"),
            waiting_event: None
        }
    );

    // No click: ask why.
    let later = ts("2026-01-16T09:00:00Z");
    let plan = advance(
        &c,
        &enrolment(wait, true, "2026-01-16T09:00:00Z"),
        &snap(),
        later,
        b"k",
        &ev,
    );
    assert_eq!(messages(&plan.effects)[0].0, "ask-why");

    // A click ends the journey instead.
    let mut clicked = snap();
    clicked.journey = JourneyFacts {
        clicked: vec!["miss-you".into()],
        ..JourneyFacts::default()
    };
    let plan = advance(
        &c,
        &enrolment(wait, true, "2026-01-16T09:00:00Z"),
        &clicked,
        later,
        b"k",
        &ev,
    );
    assert!(messages(&plan.effects).is_empty());
    assert!(matches!(
        plan.next,
        Next::Done {
            state: Terminal::Completed,
            ..
        }
    ));

    // Answered "too expensive": an offer and the offer mail; otherwise the farewell.
    let answered_wait = c.step_index("wait-answer").unwrap();
    let mut price = snap();
    price.journey.survey_reason = Some("too_expensive".into());
    let plan = advance(
        &c,
        &enrolment(answered_wait, true, "2026-01-31T09:00:00Z"),
        &price,
        ts("2026-01-31T09:00:00Z"),
        b"k",
        &ev,
    );
    let offer = plan
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::Offer { offer, .. } => Some(offer.clone()),
            _ => None,
        })
        .expect("an offer");
    assert_eq!(offer.expires_at, ts("2026-02-21T09:00:00Z"));
    assert_eq!(messages(&plan.effects)[0].0, "send-price-offer");
    // The same enrolment and step always get the same code.
    let again = advance(
        &c,
        &enrolment(answered_wait, true, "2026-01-31T09:00:00Z"),
        &price,
        ts("2026-01-31T09:00:00Z"),
        b"k",
        &ev,
    );
    assert!(
        again
            .effects
            .iter()
            .any(|e| matches!(e, Effect::Offer { offer: o, .. } if o.code == offer.code))
    );

    let plan = advance(
        &c,
        &enrolment(answered_wait, true, "2026-01-31T09:00:00Z"),
        &snap(),
        ts("2026-01-31T09:00:00Z"),
        b"k",
        &ev,
    );
    match &plan.effects[..] {
        [Effect::Log { .. }, Effect::Message(m)] => {
            assert_eq!(m.step_id, "farewell");
            assert!(m.sunset, "the farewell unsubscribes once settled");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn steps_due_while_workers_were_down_are_skipped_or_spread_never_burst() {
    let ev = Evaluator::new();
    // Cart reminder: stale = skip, max_late = 12h.
    let cart = load("cart-reminder");
    let now = ts("2026-03-10T12:00:00Z");
    let plan = advance(
        &cart,
        &enrolment(0, true, "2026-03-08T12:00:00Z"),
        &snap(),
        now,
        b"k",
        &ev,
    );
    assert!(messages(&plan.effects).is_empty(), "{plan:?}");
    assert!(
        plan.effects
            .iter()
            .any(|e| matches!(e, Effect::Log { what, .. } if what.starts_with("skipped")))
    );
    // On time, it sends.
    let plan = advance(
        &cart,
        &enrolment(0, true, "2026-03-10T08:00:00Z"),
        &snap(),
        now,
        b"k",
        &ev,
    );
    assert_eq!(messages(&plan.effects).len(), 1);

    // we-miss-you uses the default: re-plan, spread over 6 hours.
    let c = load("we-miss-you");
    let wait = c.step_index("wait-reaction").unwrap();
    let mut dues = Vec::new();
    for id in 0..200 {
        let mut e = enrolment(wait, true, "2026-03-01T09:00:00Z");
        e.id = winback_domain::EnrolmentId::new(id);
        let plan = advance(&c, &e, &snap(), now, b"k", &ev);
        assert!(messages(&plan.effects).is_empty());
        match plan.next {
            Next::At { step, due_at, .. } => {
                // The branch ran; the send it led to is re-planned.
                assert_eq!(step, c.step_index("ask-why").unwrap());
                assert!(due_at > now && due_at <= now.plus_seconds(6 * 3600));
                dues.push(due_at);
            }
            other => panic!("{other:?}"),
        }
    }
    dues.sort();
    dues.dedup();
    assert!(
        dues.len() > 150,
        "spread, not a burst: {} distinct times",
        dues.len()
    );
}

#[test]
fn keep_promises_holds_until_the_assortment_is_updated() {
    let c = load("keep-promises");
    let ev = Evaluator::new();
    let now = ts("2026-05-01T08:00:00Z");
    let plan = advance(
        &c,
        &enrolment(0, false, "2026-05-01T08:00:00Z"),
        &snap(),
        now,
        b"k",
        &ev,
    );
    assert_eq!(plan.effects, vec![Effect::Tag(vec!["quality".into()])]);
    let hold = c.step_index("hold").unwrap();
    match &plan.next {
        Next::At {
            step,
            waiting_event,
            ..
        } => {
            assert_eq!(*step, hold);
            assert_eq!(waiting_event.as_deref(), Some("custom:assortment_updated"));
        }
        other => panic!("{other:?}"),
    }
    let mut arrived = snap();
    arrived.event_arrived = true;
    let later = ts("2026-07-01T08:00:00Z");
    let plan = advance(
        &c,
        &enrolment(hold, true, "2026-07-01T08:00:00Z"),
        &arrived,
        later,
        b"k",
        &ev,
    );
    assert_eq!(messages(&plan.effects)[0].0, "we-fixed-it");
    assert!(
        plan.effects
            .contains(&Effect::Untag(vec!["quality".into()]))
    );
    let plan = advance(
        &c,
        &enrolment(hold, true, "2027-05-01T08:00:00Z"),
        &snap(),
        ts("2027-05-01T08:00:00Z"),
        b"k",
        &ev,
    );
    assert!(messages(&plan.effects).is_empty());
    assert!(matches!(plan.next, Next::Done { .. }));
}

#[test]
fn entry_rules_cooldown_limits_and_exclusivity() {
    let c = load("we-miss-you");
    let now = ts("2026-06-01T00:00:00Z");
    let ok = admit(
        &c,
        winback_domain::ProfileId::new(5),
        &EntryHistory::default(),
        &[],
        now,
        now,
    );
    assert!(matches!(ok, Admission::Enter { .. }));
    let recent = EntryHistory {
        last_ended_at: Some(ts("2026-03-01T00:00:00Z")),
        entries: 1,
        ..EntryHistory::default()
    };
    assert_eq!(
        admit(
            &c,
            winback_domain::ProfileId::new(5),
            &recent,
            &[],
            now,
            now
        ),
        Admission::Refuse("in cooldown after the last journey")
    );
    let twice = EntryHistory {
        last_ended_at: Some(ts("2025-01-01T00:00:00Z")),
        entries: 2,
        ..EntryHistory::default()
    };
    assert_eq!(
        admit(&c, winback_domain::ProfileId::new(5), &twice, &[], now, now),
        Admission::Refuse("entered the maximum number of times")
    );
    let elsewhere = EntryHistory {
        exclusive_elsewhere: Some("one-time-buyer".into()),
        ..EntryHistory::default()
    };
    assert_eq!(
        admit(
            &c,
            winback_domain::ProfileId::new(5),
            &elsewhere,
            &[],
            now,
            now
        ),
        Admission::Refuse("already in another win-back journey")
    );
    // Cart reminders are not exclusive: they run beside a win-back journey.
    let cart = load("cart-reminder");
    assert!(matches!(
        admit(
            &cart,
            winback_domain::ProfileId::new(5),
            &elsewhere,
            &[],
            now,
            now
        ),
        Admission::Enter { .. }
    ));
}

#[test]
fn first_purchase_anniversaries_fire_once_a_year_in_the_contacts_zone() {
    let c = load("first-purchase-anniversary");
    let zone = TimeZone::get("Europe/Warsaw").unwrap();
    let row = winback_engine::AudienceRow::default();
    let first = Some(ts("2025-04-14T15:00:00Z"));
    let got = date_entry(&c, &row, first, &zone, ts("2026-04-14T06:00:00Z"), 2);
    assert_eq!(got, Some(("2026".to_owned(), ts("2026-04-14T07:30:00Z"))));
    // Two days late (worker down) still counts; a week late does not; nor the first year.
    assert!(date_entry(&c, &row, first, &zone, ts("2026-04-16T06:00:00Z"), 2).is_some());
    assert!(date_entry(&c, &row, first, &zone, ts("2026-04-21T06:00:00Z"), 2).is_none());
    assert!(date_entry(&c, &row, first, &zone, ts("2025-04-14T20:00:00Z"), 2).is_none());
}
