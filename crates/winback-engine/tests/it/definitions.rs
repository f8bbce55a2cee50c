//! Campaign files: the shipped examples load, and every kind of mistake is reported with its
//! file, line, step and cause.

use std::path::PathBuf;

use winback_engine::Campaign;
use winback_engine::definition::{Action, Allocation, Condition, OfferKind, Trigger};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/campaigns")
}

fn load(name: &str) -> Campaign {
    let path = examples().join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    Campaign::parse(&path.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> Vec<String> {
    match Campaign::parse("bad.toml", text) {
        Ok(_) => panic!("accepted an invalid campaign"),
        Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
    }
}

const HEAD: &str =
    "[campaign]\nname = \"t\"\naudience = 'orders > 0'\n[trigger]\ntype = \"audience\"\n";

#[test]
fn every_seed_flow_ships_as_a_valid_example() {
    let mut names: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cart-reminder",
            "first-purchase-anniversary",
            "keep-promises",
            "lost-customers-offline",
            "lost-customers-wallet-and-phone",
            "loyalty-points",
            "one-time-buyer",
            "re-permission",
            "retention-notice",
            "review-request",
            "we-miss-you",
            "welcome-back"
        ]
    );
    for n in &names {
        let c = load(n);
        assert_eq!(&c.name, n, "file name and campaign name agree");
    }
}

#[test]
fn lost_customers_are_reached_by_ads_and_print() {
    let c = load("lost-customers-offline");
    let exports: Vec<String> = c
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Export { target, .. } => Some(format!("{target:?}")),
            _ => None,
        })
        .collect();
    assert_eq!(exports, ["Meta", "Google", "Print"]);
    assert!(
        c.steps
            .iter()
            .any(|s| matches!(s.action, Action::Offer { .. })),
        "the printed card carries a personal code"
    );
}

#[test]
fn the_three_step_scenario_asks_why_and_says_goodbye() {
    let c = load("we-miss-you");
    let ask = c.step_index("ask-why").unwrap();
    let reacted = &c.steps[c.step_index("reacted").unwrap()];
    match &reacted.action {
        Action::Branch {
            condition: Condition::Clicked(s),
            then,
            otherwise,
        } => {
            assert_eq!(s, "miss-you");
            assert_eq!(*then, None, "a click ends the journey");
            assert_eq!(*otherwise, Some(ask));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.steps.last().unwrap().action, Action::Sunset(_)));
    // Variant b's subject, in each language of the template library.
    let b_subject = c
        .message_for(c.step_index("miss-you").unwrap(), "b")
        .unwrap()
        .subject
        .unwrap();
    let table: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&b_subject).unwrap();
    assert_eq!(table["en"], "It has been a while, {{ first_name }}");
    assert_eq!(table["nl"], "Het is alweer even geleden, {{ first_name }}");
    assert!(table.contains_key("pl"));
    assert!(
        (c.holdout.share - 0.10).abs() < 1e-12,
        "10% holdout by default"
    );
}

#[test]
fn the_one_time_buyer_series_escalates_over_months() {
    let c = load("one-time-buyer");
    let sends = c
        .steps
        .iter()
        .filter(|s| matches!(s.action, Action::Send(_)))
        .count();
    assert_eq!(sends, 5);
    let waited: i64 = (0..c.steps.len())
        .filter_map(|i| c.wait_for(i, "fixed"))
        .map(|d| d.seconds())
        .sum();
    assert!(waited >= 60 * 86_400, "spread over months: {waited}s");
    let fixed = &c.offers["otb-fixed"].rungs;
    assert!(matches!(
        fixed[0].kind,
        OfferKind::Fixed { amount_minor: 500 }
    ));
    assert!(matches!(
        fixed[1].kind,
        OfferKind::Fixed { amount_minor: 1000 }
    ));
    let step = c.step_index("bigger-discount").unwrap();
    assert_eq!(c.ladder_for(step, "percent"), Some("otb-percent"));
    assert_eq!(c.ladder_for(step, "fixed"), Some("otb-fixed"));
}

#[test]
fn triggers_of_every_kind_parse() {
    assert!(matches!(
        load("cart-reminder").trigger,
        Trigger::Event { .. }
    ));
    assert!(matches!(
        load("first-purchase-anniversary").trigger,
        Trigger::Date { .. }
    ));
    assert!(matches!(
        load("loyalty-points").trigger,
        Trigger::Audience { .. }
    ));
    let keep = load("keep-promises");
    let hold = &keep.steps[keep.step_index("hold").unwrap()];
    match &hold.action {
        Action::Wait { until_event, .. } => {
            assert_eq!(
                until_event.as_ref().unwrap().label(),
                "custom:assortment_updated"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mistakes_name_file_line_step_and_cause() {
    let text = format!(
        "{HEAD}\n[[steps]]\nid = \"one\"\ntype = \"send\"\ntemplate = \"t\"\nduration = \"3d\"\n\n[[steps]]\nid = \"two\"\ntype = \"wait\"\nduration = \"3 months\"\n\n[[steps]]\nid = \"three\"\ntype = \"branch\"\nopened = \"nowhere\"\nthen = \"missing\"\n"
    );
    let p = problems(&text);
    assert!(
        p.contains(
            &"bad.toml:11:12: step `one`: `duration` does not belong to a send step".to_owned()
        ),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|m| m.starts_with("bad.toml:16:12: step `two`: duration:") && m.contains("unit")),
        "{p:#?}"
    );
    assert!(
        p.contains(&"bad.toml:21:10: step `three`: no step `nowhere`".to_owned()),
        "{p:#?}"
    );
    assert!(
        p.contains(
            &"bad.toml:22:8: step `three`: then names step `missing`, which does not exist"
                .to_owned()
        ),
        "{p:#?}"
    );
}

#[test]
fn syntax_errors_and_unknown_fields_are_located() {
    let p = problems("[campaign]\nname = \"x\"\naudiense = 'a'\n");
    assert!(
        p[0].starts_with("bad.toml:3:1: unknown field `audiense`"),
        "{p:?}"
    );
    let p = problems("[campaign\nname = 1\n");
    assert!(p[0].starts_with("bad.toml:1:"), "{p:?}");
}

#[test]
fn audiences_are_checked_before_a_campaign_can_start() {
    let p = problems(
        "[campaign]\nname = \"t\"\naudience = 'stage == \"lapsed\" && clvv > 1.0'\n[trigger]\ntype = \"audience\"\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"t\"\n",
    );
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("bad.toml:3:12: audience: unknown variable `clvv` (did you mean `clv`?)"),
        "{p:?}"
    );
}

#[test]
fn loops_ladders_variants_and_channels_are_checked() {
    let looping = format!(
        "{HEAD}[[steps]]\nid = \"a\"\ntype = \"send\"\ntemplate = \"t\"\n[[steps]]\nid = \"w\"\ntype = \"wait\"\nduration = \"1d\"\nnext = \"a\"\n"
    );
    assert!(problems(&looping)[0].contains("loop back (a → w → a)"));
    let ladder = format!(
        "{HEAD}[[steps]]\nid = \"o\"\ntype = \"offer\"\nladder = \"nope\"\n[offers.real]\ncurrency = \"EUR\"\nrungs = [{{ kind = \"percent\", percent = 150 }}]\n"
    );
    let p = problems(&ladder);
    assert!(
        p.iter().any(|m| m.contains("`percent` between 1 and 100")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|m| m.contains("no ladder `[offers.nope]`")),
        "{p:?}"
    );
    let variant = format!(
        "{HEAD}[experiment]\nvariants = [{{ id = \"a\" }}]\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"t\"\n[steps.variants.z]\nsubject = \"x\"\n"
    );
    assert!(problems(&variant)[0].contains("variant `z` is not in [experiment]"));
    let sms = format!(
        "{HEAD}[[steps]]\nid = \"s\"\ntype = \"send\"\nchannel = \"sms\"\ntemplate = \"t\"\nsubject = \"x\"\n"
    );
    assert!(problems(&sms)[0].contains("an SMS has no subject"));
    let thompson = format!(
        "{HEAD}[experiment]\nallocation = \"thompson\"\nvariants = [{{ id = \"a\" }}, {{ id = \"b\" }}]\n[[steps]]\nid = \"s\"\ntype = \"exit\"\n"
    );
    let c = Campaign::parse("t.toml", &thompson).unwrap();
    assert_eq!(c.experiment.allocation, Allocation::Thompson);
}

#[test]
fn subjects_can_be_given_per_language_and_unknown_languages_are_refused() {
    let ok = Campaign::parse(
        "ok.toml",
        "[campaign]\nname = \"t\"\naudience = 'email_ok'\n[trigger]\ntype = \"audience\"\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"t\"\nsubject = { en = \"Hi\", nl = \"Hoi\" }\n",
    )
    .unwrap();
    let subject = ok.message_for(0, "a").unwrap().subject.unwrap();
    assert_eq!(subject, r#"{"en":"Hi","nl":"Hoi"}"#);
    let p = problems(
        "[campaign]\nname = \"t\"\naudience = 'email_ok'\n[trigger]\ntype = \"audience\"\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"t\"\nsubject = { en = \"Hi\", de = \"Hallo\" }\n",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("subject: `de` is not a language of the template library (en, nl, pl)"),
        "{p:?}"
    );
}

#[test]
fn offers_can_be_worded_per_language() {
    let file = |wording: &str| {
        format!(
            "{HEAD}[[steps]]\nid = \"o\"\ntype = \"offer\"\nladder = \"gift\"\n[offers.gift]\ncurrency = \"EUR\"\nrungs = [{{ kind = \"free_product\", sku = \"TAS-1\", cost = \"3.00\"{wording} }}]\n"
        )
    };
    let c = Campaign::parse(
        "ok.toml",
        &file(", wording = { en = \"a free tote bag\", nl = \"een gratis tas\" }"),
    )
    .unwrap();
    let rung = &c.offers["gift"].rungs[0];
    assert_eq!(
        rung.description("EUR"),
        r#"{"en":"a free tote bag","nl":"een gratis tas"}"#
    );
    // One text is every language's.
    let c = Campaign::parse("ok.toml", &file(", wording = \"Tote bag\"")).unwrap();
    assert_eq!(
        c.offers["gift"].rungs[0].description("EUR"),
        r#"{"en":"Tote bag","nl":"Tote bag","pl":"Tote bag"}"#
    );
    // Without wording, the code list's English description.
    let c = Campaign::parse("ok.toml", &file("")).unwrap();
    assert_eq!(c.offers["gift"].rungs[0].description("EUR"), "free TAS-1");
    let p = problems(&file(", wording = { de = \"Gratis Tasche\" }"));
    assert!(
        p.iter()
            .any(|p| p.contains("wording: `de` is not a language")),
        "{p:?}"
    );
}

const CRM: &str = r#"
[campaign]
name = "onboarding"
audience = 'stage == "lapsed"'
[trigger]
type = "audience"
[[steps]]
id = "partner"
type = "export"
target = "crm"
columns = [
  { header = "EMAIL1", value = "email_sha256" },
  { header = "EMAIL2", value = "email_sha256_2" },
  { header = "ZIP", value = "postal_code" },
]
"#;

#[test]
fn crm_exports_map_their_columns() {
    use winback_engine::definition::{ExportField, ExportTarget};
    let c = Campaign::parse("onboarding.toml", CRM).unwrap();
    let Action::Export { target, columns } = &c.steps[0].action else {
        panic!("an export step")
    };
    assert_eq!(*target, ExportTarget::Crm);
    let got: Vec<(&str, ExportField)> = columns
        .iter()
        .map(|c| (c.header.as_str(), c.field))
        .collect();
    assert_eq!(
        got,
        [
            ("EMAIL1", ExportField::EmailSha256(1)),
            ("EMAIL2", ExportField::EmailSha256(2)),
            ("ZIP", ExportField::PostalCode),
        ]
    );
}

#[test]
fn crm_column_mistakes_are_named() {
    for (from, to, says) in [
        (
            "columns = [\n  { header = \"EMAIL1\", value = \"email_sha256\" },\n  { header = \"EMAIL2\", value = \"email_sha256_2\" },\n  { header = \"ZIP\", value = \"postal_code\" },\n]\n",
            "",
            "a crm export step needs `columns",
        ),
        (
            "\"email_sha256_2\"",
            "\"email_md5\"",
            "`email_md5` is not one of",
        ),
        (
            "\"email_sha256_2\"",
            "\"email_sha256_9\"",
            "`email_sha256_9` is not one of",
        ),
        (
            "\"EMAIL2\"",
            "\"EMAIL1\"",
            "column header `EMAIL1` appears twice",
        ),
        (
            "\"ZIP\"",
            "\"=HYPERLINK()\"",
            "must be 1–64 plain characters",
        ),
        (
            "target = \"crm\"",
            "target = \"meta\"",
            "`columns` is for target = \"crm\"",
        ),
        (
            "target = \"crm\"",
            "target = \"tiktok\"",
            "export target `tiktok` is not meta, google, linkedin, crm or print",
        ),
    ] {
        let src = CRM.replace(from, to);
        assert_ne!(src, CRM, "{from}");
        let e = Campaign::parse("onboarding.toml", &src)
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{says}: {e}");
        assert!(e.contains("onboarding.toml"), "names the file: {e}");
    }
    let only_zip = CRM
        .replace("  { header = \"EMAIL1\", value = \"email_sha256\" },\n", "")
        .replace(
            "  { header = \"EMAIL2\", value = \"email_sha256_2\" },\n",
            "",
        );
    let e = Campaign::parse("onboarding.toml", &only_zip)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("at least one email_sha256 or phone_sha256"),
        "{e}"
    );
}

const CALL: &str = r#"
[campaign]
name = "phone"
audience = 'stage == "lapsed"'
[trigger]
type = "audience"
[[steps]]
id = "call"
type = "call"
list = "vip"
[[steps]]
id = "wait"
type = "wait"
duration = "14d"
until_event = "call_outcome"
[[steps]]
id = "accepted"
type = "branch"
call_outcome = "offer_accepted"
then = "done"
[[steps]]
id = "done"
type = "exit"
"#;

#[test]
fn call_steps_name_their_list_and_branches_read_the_outcome() {
    let c = Campaign::parse("phone.toml", CALL).unwrap();
    assert!(matches!(&c.steps[0].action, Action::Call { list } if list == "vip"));
    assert!(matches!(
        &c.steps[2].action,
        Action::Branch {
            condition: Condition::CallOutcome(winback_domain::CallOutcome::OfferAccepted),
            ..
        }
    ));
    for (from, to, says) in [
        ("list = \"vip\"\n", "", "a call step needs `list"),
        (
            "list = \"vip\"",
            "list = \"VIP list\"",
            "lowercase letters, digits",
        ),
        (
            "call_outcome = \"offer_accepted\"",
            "call_outcome = \"accepted\"",
            "call_outcome `accepted` is not one of reached, not_reached",
        ),
        (
            "until_event = \"call_outcome\"",
            "until_event = \"call_outcomes\"",
            "unknown event `call_outcomes`",
        ),
    ] {
        let src = CALL.replace(from, to);
        assert_ne!(src, CALL, "{from}");
        let e = Campaign::parse("phone.toml", &src).unwrap_err().to_string();
        assert!(e.contains(says), "{says}: {e}");
    }
}
