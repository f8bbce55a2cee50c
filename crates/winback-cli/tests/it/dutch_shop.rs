//! A Dutch shop's own exports, end to end, through mapping files and nothing else: semicolons,
//! Dutch headers, statuses and country names, `€ 1.234,56`, phones like `06-12345678` and
//! `n.v.t.`, a Mailchimp-style newsletter list, households and an office address shared by 60
//! accounts, private and work accounts sharing a mobile number. The fixture and its answer key
//! (`expected.json`, computed independently by `examples/dutch-shop/generate.py`) live in the
//! repository.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Env, text};

fn shop(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/dutch-shop")
        .join(file)
}

#[test]
fn a_dutch_shops_exports_import_score_fit_and_mail_exactly_the_consenting() {
    let env = Env::new();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shop("expected.json")).unwrap()).unwrap();
    // The deliverability ramp admits everyone: this test is about consent, and a real first
    // send to an unwarmed list would start at 10% of the inactive addresses.
    env.write(
        "winback.toml",
        "[policy.ramp]\nstart_share = 1.0\n\
         [engine]\nsecret = \"dutch-shop-engine-secret-0123456789\"\n\
         [tokens]\ncurrent = \"k1\"\nkeys = { k1 = \"dutch-shop-token-key-0123456789abcdef\" }\n",
    );
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            // Monday 2 June 2025, 12:00 in Amsterdam: inside the send window.
            .env("WINBACK_NOW", "2025-06-02T10:00:00Z")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    let import = |csv: &str, mapping: &str| -> serde_json::Value {
        let out = run(&[
            "import",
            "mapped",
            shop(csv).to_str().unwrap(),
            "--mapping",
            shop(mapping).to_str().unwrap(),
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };

    let k = import("klanten.csv", "klanten.toml");
    let r = &k["imports"][0]["report"];
    assert_eq!(r["rows_ok"], expected["customer_records"], "{k}");
    assert_eq!(r["rows_rejected"], 0);
    // `n.v.t.` and empty phones are left out with a warning, the records kept.
    assert!(r["fields_dropped"].as_u64().unwrap() > 0, "{r}");
    assert!(
        r["warnings"][0].as_str().unwrap().contains(": phone: "),
        "{r}"
    );
    let b = import("bestellingen.csv", "bestellingen.toml");
    let r = &b["imports"][0]["report"];
    assert_eq!(r["written"]["orders"], expected["orders"], "{b}");
    let n = import("nieuwsbrief.csv", "nieuwsbrief.toml");
    assert_eq!(
        n["imports"][0]["report"]["rows_ok"], expected["newsletter_rows"],
        "{n}"
    );

    // People stay people: households and the office are not merged; the private and work
    // accounts sharing a mobile number are.
    let out = run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["profiles"], expected["people"], "{status}");
    // Amounts like `€ 1.234,56` are whole euros and cents: the sum of what was imported.
    assert!(
        status["revenue_minor_by_currency"][0][1].as_i64().unwrap() > 0,
        "{status}"
    );

    // It scores, and every model fits.
    run(&["score"]);
    let out = run(&["models", "fit", "--json"]);
    let fits: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text_fits = fits.to_string();
    for model in ["BG/NBD", "MBG/NBD", "Pareto/NBD"] {
        assert!(text_fits.contains(model), "{model} in {text_fits}");
    }
    assert!(
        !text_fits.contains("\"error\":\""),
        "every model fits: {text_fits}"
    );

    // The first campaign mails exactly the addresses whose statement in force allows it.
    run(&[
        "campaigns",
        "apply",
        shop("eerste-campagne.toml").to_str().unwrap(),
    ]);
    run(&["campaigns", "start", "eerste-campagne"]);
    run(&["worker", "--once"]);
    let mut sent = BTreeSet::new();
    for e in std::fs::read_dir(env.path("outbox")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "eml") {
            let mail = std::fs::read_to_string(&p).unwrap();
            let to = mail
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .unwrap_or_else(|| panic!("no To: in {}", p.display()));
            let addr = to
                .rsplit('<')
                .next()
                .unwrap()
                .trim_end_matches('>')
                .trim()
                .to_lowercase();
            assert!(sent.insert(addr.clone()), "{addr} mailed twice");
        }
    }
    let want: BTreeSet<String> = expected["mailable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let withdrawn: BTreeSet<String> = expected["withdrawn_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        sent.is_disjoint(&withdrawn),
        "mailed a withdrawn address: {:?}",
        sent.intersection(&withdrawn).collect::<Vec<_>>()
    );
    assert_eq!(
        sent.difference(&want).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "mailed without consent"
    );
    assert_eq!(
        want.difference(&sent).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "consenting addresses not mailed"
    );
}
