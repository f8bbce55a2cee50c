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
            // A simulation on a store no other worker uses: the worker's clock is a year
            // behind the database's on purpose.
            .env("WINBACK_ENGINE__MAX_CLOCK_SKEW_SECONDS", "0")
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

    // Bounce mail comes back to the return path hours later: a 5.1.1 DSN, a policy DSN and an
    // ARF complaint with the recipient redacted, each quoting its message's headers, beside an
    // out-of-office reply. Only the unknown user and the complainer are suppressed.
    let mut emls: Vec<PathBuf> = std::fs::read_dir(env.path("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    emls.sort();
    let header = |mail: &str, name: &str| -> String {
        mail.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name}"))
            .to_owned()
    };
    let addr_of = |to: &str| -> String {
        to.rsplit('<')
            .next()
            .unwrap()
            .trim_end_matches('>')
            .trim()
            .to_lowercase()
    };
    let mails: Vec<String> = emls[..3]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let to: Vec<String> = mails.iter().map(|m| addr_of(&header(m, "To"))).collect();
    let dsn = |i: usize, status: &str, diag: &str| {
        format!(
            "From MAILER-DAEMON Tue Jun  3 08:00:00 2025\n\
From: Mail Delivery System <MAILER-DAEMON@mx.example.nl>\n\
To: bounces@winkel.example\n\
Date: Tue, 03 Jun 2025 08:00:0{i} +0000\n\
Message-ID: <dsn-{i}@mx.example.nl>\n\
Subject: Undelivered Mail Returned to Sender\n\
MIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B{i}\"\n\
\n\
--B{i}\n\
Content-Type: text/plain\n\
\n\
Delivery failed.\n\
\n\
--B{i}\n\
Content-Type: message/delivery-status\n\
\n\
Reporting-MTA: dns; mx.example.nl\n\
\n\
Final-Recipient: rfc822; {to}\n\
Action: failed\n\
Status: {status}\n\
Diagnostic-Code: smtp; {diag}\n\
\n\
--B{i}\n\
Content-Type: text/rfc822-headers\n\
\n\
To: {to}\n\
Message-ID: {mid}\n\
\n\
--B{i}--\n\n",
            to = to[i],
            mid = header(&mails[i], "Message-ID"),
        )
    };
    let arf = format!(
        "From fbl@fbl.example.com Wed Jun  4 09:00:00 2025\n\
From: fbl@fbl.example.com\n\
To: abuse@winkel.example\n\
Date: Wed, 04 Jun 2025 09:00:00 +0000\n\
Message-ID: <arf-1@fbl.example.com>\n\
MIME-Version: 1.0\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\
\n\
--F\n\
Content-Type: text/plain\n\
\n\
Abuse report.\n\
--F\n\
Content-Type: message/feedback-report\n\
\n\
Feedback-Type: abuse\n\
Version: 1\n\
Original-Rcpt-To: redacted\n\
\n\
--F\n\
Content-Type: text/rfc822-headers\n\
\n\
Message-ID: {}\n\
\n\
--F--\n\n",
        header(&mails[2], "Message-ID")
    );
    let reply = "From jan@example.nl Wed Jun  4 10:00:00 2025\nFrom: jan@example.nl\nTo: bounces@winkel.example\nSubject: Afwezig\n\nTot maandag.\n\n";
    let mbox = env.write(
        "bounces.mbox",
        &format!(
            "{}{}{arf}{reply}",
            dsn(0, "5.1.1", "550 5.1.1 User unknown"),
            dsn(
                1,
                "5.7.1",
                "554 5.7.1 Service unavailable; client host blocked using a blocklist"
            )
        ),
    );
    let out = run(&["bounces", "import", mbox.to_str().unwrap(), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["messages"], 4, "{r}");
    assert_eq!(r["read"]["reports"], 3, "{r}");
    assert_eq!(r["read"]["matched_messages"], 3, "{r}");
    assert_eq!(r["read"]["verdicts"]["hard"], 1, "{r}");
    assert_eq!(r["read"]["verdicts"]["sender"], 1, "{r}");
    assert_eq!(r["read"]["verdicts"]["complaint"], 1, "{r}");
    assert_eq!(r["applied"]["suppressed"], 2, "{r}");
    assert_eq!(r["skipped"].as_array().unwrap().len(), 1, "{r}");
    let suppressions = |addr: &str| -> String {
        let out = run(&["customers", "show", addr, "--json"]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        v["profile"]["suppressions"].to_string()
    };
    assert!(
        suppressions(&to[0]).contains("hard_bounce"),
        "{}: {}",
        to[0],
        text(&run(&["customers", "show", &to[0], "--json"]))
    );
    assert!(
        !suppressions(&to[1]).contains("bounce"),
        "a blocklisted sender suppresses nobody: {}",
        suppressions(&to[1])
    );
    assert!(suppressions(&to[2]).contains("complaint"), "{}", to[2]);
    // The report counts the later bounces apart from what was delivered.
    let out = run(&["report", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let funnel = report["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "eerste-campagne")
        .map(|c| c["messages"].clone())
        .expect("the campaign in the report");
    let total = |k: &str| -> i64 {
        funnel
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f[k].as_i64().unwrap_or(0))
            .sum()
    };
    assert_eq!(total("sent"), sent.len() as i64, "{funnel}");
    assert_eq!(total("hard_bounced"), 1, "{funnel}");
    assert_eq!(total("soft_bounced"), 1, "{funnel}");
    assert_eq!(total("delivered"), sent.len() as i64 - 2, "{funnel}");
    assert_eq!(total("complained"), 1, "{funnel}");
    // Reading the mailbox again applies nothing twice.
    let out = run(&["bounces", "import", mbox.to_str().unwrap(), "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["applied"]["duplicates"], 3, "{r}");
    assert_eq!(r["applied"]["suppressed"], 0, "{r}");
}
