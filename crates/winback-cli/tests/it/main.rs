//! End-to-end tests of the `winback` binary.
#![allow(missing_docs)]

mod bench_cycle;
mod crash;
mod dashboard;
mod dutch_shop;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_winback"));
        c.current_dir(self.dir.path())
            .env_remove("WINBACK_DATABASE_URL")
            .env(
                "WINBACK_DATABASE_URL",
                format!("sqlite://{}", self.path("w.db").display()),
            );
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn status_json(&self) -> serde_json::Value {
        let out = self.run(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn repo_file(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
}

const GOOD: &str =
    "order_id,customer_id,ordered_at,total\nO1,C1,2024-05-01,10.00\nO2,C2,2024-05-02,12.50\n";
const BAD: &str = "order_id,customer_id,ordered_at,total\nO3,C1,2024-05-01,10.00\nO4,C1,2024-05-01,=HYPERLINK(\"x\")\nO5,C1,03/04/2024,1.00\n";

#[test]
fn a_malformed_file_is_refused_with_line_exact_errors_and_the_store_unchanged() {
    let env = Env::new();
    let good = env.write("orders.csv", GOOD);
    let out = env.run(&["import", "orders", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.status_json()["orders"], 2);

    let bad = env.write("bad.csv", BAD);
    let out = env.run(&["import", "orders", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("REFUSED: nothing was written"), "{t}");
    assert!(
        t.contains("bad.csv:3: total: `=HYPERLINK(\"x\")` is not an amount"),
        "{t}"
    );
    assert!(
        t.contains("bad.csv:4: ordered_at: `03/04/2024` is ambiguous"),
        "{t}"
    );
    assert_eq!(
        env.status_json()["orders"],
        2,
        "the valid O3 was not written either"
    );

    let out = env.run(&["import", "orders", bad.to_str().unwrap(), "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(env.status_json()["orders"], 2);

    let out = env.run(&["import", "orders", bad.to_str().unwrap(), "--skip-invalid"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.status_json()["orders"], 3);
    let rejects = std::fs::read_to_string(env.path("bad.csv.rejects.csv")).unwrap();
    assert!(
        rejects.starts_with("file,line,field,reason,record\n"),
        "{rejects}"
    );
    assert!(rejects.contains(",3,total,"), "{rejects}");
    assert!(
        rejects.contains("'O4,C1,2024-05-01,") || rejects.contains("O4,C1"),
        "{rejects}"
    );
    // The refused record is kept verbatim but defused: the cell cannot start with `=`.
    for line in rejects.lines() {
        for cell in line.split(',') {
            assert!(!cell.starts_with('='), "formula left in {line}");
        }
    }
}

#[test]
fn shopify_and_cdnow_import_with_the_right_counts() {
    let env = Env::new();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../winback-import/tests/fixtures/shopify_orders.csv");
    let out = env.run(&[
        "import",
        "shopify",
        fixture.to_str().unwrap(),
        "--skip-invalid",
        // Rejects go beside the test's database, never into the source tree.
        "--rejects",
        env.path("shopify.rejects.csv").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["imports"][0]["report"]["rows_ok"], 3);
    assert_eq!(report["imports"][0]["report"]["written"]["orders"], 3);
    assert_eq!(
        report["imports"][0]["report"]["written"]["order_items"], 4,
        "#1001 has two lines, #1002 and #1003 one each"
    );

    let out = env.run(&[
        "import",
        "cdnow",
        repo_file("data/cdnow/CDNOW_master.txt").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let s = env.status_json();
    assert_eq!(s["orders"], 3 + 69_659);
    // The shop's own customer number, and winback's profile number only in its explicit form.
    let out = env.run(&["customers", "show", "00001", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["profile"]["records"][0]["external_id"], "00001");
    let out = env.run(&["customers", "show", "profile:1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["customers", "show", "nobody@example.nl"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn an_import_killed_mid_transaction_leaves_the_store_as_it_was() {
    let env = Env::new();
    let big = env.path("big.csv");
    let as_of = winback_domain::Timestamp::from_micros(1_717_200_000_000_000).unwrap();
    winback_synth::orders_only(400_000, 3, as_of, &big).unwrap();
    let good = env.write("orders.csv", GOOD);
    assert!(
        env.run(&["import", "orders", good.to_str().unwrap()])
            .status
            .success()
    );

    let mut child = env
        .cmd()
        .args(["import", "orders", big.to_str().unwrap(), "--quiet"])
        .spawn()
        .unwrap();
    // Kill once the transaction has written a good deal into the WAL: the import is mid-way.
    let wal = env.path("w.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > 4 << 20 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import finished before it could be killed; use a larger file"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the import never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        env.status_json()["orders"],
        2,
        "nothing of the killed import is visible"
    );
    let out = env.run(&["import", "orders", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "the store is usable after the crash: {}",
        text(&out)
    );
}

#[test]
fn the_demo_tells_the_story_and_is_idempotent() {
    let env = Env::new();
    let out = env.run(&["demo", "--customers", "300", "--months", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    for part in [
        "1. The shop exported its data",
        "2. Importing into",
        "3. Who is who",
        "4. What the data looks like",
        "6. Running the win-back programme (11 campaigns",
        "put on a call list",
        "we-miss-you — We miss you, then ask why",
        "Sent twice: 0. In doubt after a crash: 0.",
        "The report with its charts:",
        "7. List hygiene and privacy",
        "8. The report on the simulated programme",
        "incremental margin (95% at every look)",
        "all campaigns",
        "   Why:",
        "people have done nothing themselves for 36 months",
        "Done in",
    ] {
        assert!(t.contains(part), "missing `{part}` in:\n{t}");
    }
    let first = env.status_json();
    assert!(first["merged_records"].as_u64().unwrap() > 0, "{first}");
    // The simulated months wrote their messages to the file outbox, one file per key.
    let outbox = env.dir.path().join("winback-demo/outbox");
    let files = std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert!(files > 0, "no messages in {}", outbox.display());
    // Email is rendered into real messages: `.eml` files with the bulk-sender headers.
    let eml = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "eml"))
        .expect("an .eml file in the demo outbox");
    let mail = std::fs::read_to_string(&eml).unwrap();
    assert!(
        mail.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
        "{mail}"
    );
    assert!(mail.contains("Content-Type: text/html"), "{mail}");
    // Dutch and Polish mail is Dutch and Polish from subject to footer.
    let mut read = std::collections::BTreeMap::new();
    let mut subjects: Vec<(String, String)> = Vec::new();
    for p in std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        if p.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let raw = std::fs::read(&p).unwrap();
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        subjects.push((
            p.display().to_string(),
            m.subject().unwrap_or_default().to_owned(),
        ));
        let html = m.body_html(0).unwrap_or_default().into_owned();
        let words = format!(
            "{}\n{}\n{html}",
            m.subject().unwrap_or_default(),
            m.body_text(0).unwrap_or_default()
        );
        let lang = ["nl", "pl", "en"]
            .into_iter()
            .find(|l| html.contains(&format!("lang=\"{l}\"")))
            .unwrap_or("?");
        *read.entry(lang).or_insert(0) += 1;
        if lang == "nl" || lang == "pl" {
            for english in [
                "Unsubscribe",
                "valid until",
                "Your code",
                "You receive this",
                "EUR off",
                "Email preferences",
                " off",
            ] {
                assert!(
                    !words.contains(english),
                    "`{english}` in a {lang} message {}:\n{words}",
                    p.display()
                );
            }
        }
    }
    assert!(
        read.get("nl").is_some_and(|n| *n > 0) && read.get("pl").is_some_and(|n| *n > 0),
        "{read:?}"
    );
    assert!(
        !read.contains_key("?"),
        "every message says its language: {read:?}"
    );
    // The demo writes the HTML report: self-contained, charts as inline SVG.
    let html = std::fs::read_to_string(env.dir.path().join("winback-demo/report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("we-miss-you"));
    assert!(!html.contains("<script"));
    // The report on the simulated programme matches the stored rows exactly.
    let programme = env.dir.path().join("winback-demo/programme.db");
    let url = format!("sqlite://{}", programme.display());
    let out = env.run(&["report", "--json", "--database", &url]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum = |f: &dyn Fn(&serde_json::Value) -> i64| -> i64 {
        report["campaigns"].as_array().unwrap().iter().map(f).sum()
    };
    let contacts = sum(&|c| {
        c["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["contacts"].as_i64().unwrap())
            .sum()
    });
    // Messages only: the funnel also counts audience files, cards and calls as their channels.
    let sent = sum(&|c| {
        c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| winback_report::is_outbox(m["channel"].as_str().unwrap()))
            .map(|m| m["delivered"].as_i64().unwrap())
            .sum()
    });
    let clicked = sum(&|c| {
        c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["clicked"].as_i64().unwrap())
            .sum()
    });
    let discount = sum(&|c| {
        c["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["discount_minor"].as_i64().unwrap())
            .sum()
    });
    let stored = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = winback_store::SqlStore::connect(&url).await.unwrap();
        let one = |sql: &'static str| {
            let store = store.clone();
            async move { store.pool().fetch(sql, &[]).await.unwrap()[0].i64(0).unwrap() }
        };
        // Each campaign month by month adds up to its row, and its margin to date at the last
        // month is the row's margin; "messaged" is the people with an accepted message.
        // The demo's settings: the report says the margin it assumed.
        let settings = winback_report::Settings {
            margin: report["margin"].as_f64().unwrap(),
            ..winback_report::Settings::default()
        };
        for c in report["campaigns"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let months = winback_report::timeline(
                &settings,
                &store,
                name,
                winback_domain::Timestamp::EPOCH,
                winback_report::forever(),
            )
            .await
            .unwrap()
            .unwrap();
            let s = &c["summary"];
            assert_eq!(
                months.iter().map(|m| m.entered).sum::<i64>(),
                s["entered"].as_i64().unwrap(),
                "{name}"
            );
            assert_eq!(
                months.iter().map(|m| m.buyers).sum::<i64>(),
                s["buyers"].as_i64().unwrap(),
                "{name}"
            );
            // The journey graph's counts flow: every step passes on the people who reached it
            // less those waiting or gone there (a branch's logged answers included), and what
            // reaches the end is the stored count of finished journeys.
            assert_eq!(c["journey_other_versions"], 0, "{name}");
            let journey = c["journey"].as_array().unwrap();
            let held_out = s["held_out"].as_i64().unwrap_or(0);
            assert_eq!(
                journey[0]["reached"].as_i64().unwrap(),
                s["entered"].as_i64().unwrap() - held_out,
                "{name}"
            );
            let mut finished = 0;
            for step in journey {
                let get = |k: &str| step[k].as_i64().unwrap();
                let onward = get("reached") - get("waiting") - get("left");
                let taken: Vec<i64> = step["taken"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_i64().unwrap())
                    .collect();
                if taken.is_empty() {
                    finished += onward; // an exit step
                    continue;
                }
                assert_eq!(taken.iter().sum::<i64>(), onward, "{name}: {step}");
                for (edge, people) in step["next"].as_array().unwrap().iter().zip(&taken) {
                    if edge[0] == "end" {
                        finished += people;
                    }
                }
            }
            let completed = store
                .pool()
                .fetch(
                    &format!(
                        "SELECT COUNT(*) FROM enrolments e JOIN campaigns c ON c.id = e.campaign_id \
                         WHERE c.name = '{name}' AND e.state = 'completed' AND e.holdout = 0"
                    ),
                    &[],
                )
                .await
                .unwrap()[0]
                .i64(0)
                .unwrap();
            assert_eq!(finished, completed, "{name}: people at the journey's end");
            let last = months.last().and_then(|m| m.margin_to_date);
            match (last, s["margin_minor"]["estimate"].as_f64()) {
                (Some(m), Some(want)) => {
                    assert!((m.estimate - want).abs() < 1e-6 * want.abs().max(1.0), "{name}: {m:?} against {want}")
                }
                (None, None) => {}
                (m, want) => panic!("{name}: margin to date {m:?}, row {want:?}"),
            }
        }
        // Each sent mail's subject is kept as its recipient got it: the stored subjects are
        // the .eml files' Subject headers, one for one.
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut stored: Vec<String> = store
            .pool()
            .fetch(
                "SELECT sent_subject FROM outbox WHERE channel = 'email' AND state = 'sent'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| words(&r.opt_text(0).unwrap().expect("a subject as sent")))
            .collect();
        let mut written: Vec<String> = subjects.iter().map(|(_, s)| words(s)).collect();
        stored.sort();
        written.sort();
        assert!(!written.is_empty());
        assert_eq!(stored, written);
        // The phone campaign: its call step filled the list once per journey, only in the
        // variant that calls; the simulated agents' outcomes came back as events, and the
        // journeys branched on them.
        let listed = one("SELECT COUNT(*) FROM call_tasks").await;
        assert!(listed > 0, "nobody was put on a call list");
        assert_eq!(
            one("SELECT COUNT(*) FROM call_tasks t JOIN enrolments e ON e.id = t.enrolment_id WHERE e.variant <> 'pass-and-call' OR e.holdout = 1").await,
            0,
            "only the calling variant is called"
        );
        let answered = one("SELECT COUNT(*) FROM call_tasks WHERE outcome IS NOT NULL").await;
        let outcomes = one("SELECT COUNT(DISTINCT CAST(payload AS TEXT)) FROM events WHERE type = 'call_outcome'").await;
        assert!(answered > 0 && outcomes >= answered, "{answered} tasks with an outcome, {outcomes} outcome events");
        let branched = one("SELECT COUNT(*) FROM journey_log WHERE what LIKE 'call outcome %'").await;
        let closed = one("SELECT COUNT(*) FROM call_tasks WHERE state = 'done'").await;
        assert!(branched >= 1 && branched <= closed, "{branched} branches on {closed} closed calls");
        let messaged = report["total"]["messaged"].as_i64().unwrap();
        assert_eq!(
            messaged,
            one("SELECT COUNT(DISTINCT enrolment_id) FROM outbox WHERE state = 'sent'").await
        );
        let r = (
            one("SELECT COUNT(*) FROM enrolments").await,
            one("SELECT COUNT(*) FROM outbox WHERE state = 'sent'").await,
            one("SELECT COUNT(DISTINCT o.id) FROM outbox o JOIN events e ON e.type = 'email_clicked' AND e.payload LIKE '%' || o.idempotency_key || '%'").await,
            one("SELECT CAST(COALESCE(SUM(cost_minor), 0) AS BIGINT) FROM offers WHERE used > 0").await,
        );
        store.close().await;
        r
    });
    assert_eq!((contacts, sent, clicked, discount), stored, "{report}");
    assert!(sent > 0 && contacts > 0);
    let out = env.run(&["report", "--csv", "--database", &url]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("campaign,arm,holdout,contacts"));
    // The same seed on the same day: re-running updates, never duplicates; the simulation ran
    // on a copy and left the shop's data as imported.
    let out = env.run(&["demo", "--customers", "300", "--months", "2"]);
    assert!(out.status.success());
    let second = env.status_json();
    assert_eq!(first["orders"], second["orders"]);
    assert_eq!(first["customer_records"], second["customer_records"]);
    assert_eq!(first["events_by_type"], second["events_by_type"]);
    // Applying the examples to the programme plans each one: who matches today, what they can
    // detect, and the holdout share a target needs.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/campaigns");
    let out = env.run(&[
        "campaigns",
        "apply",
        examples,
        "--database",
        &url,
        "--target-mde",
        "40",
        "--weeks",
        "52",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let plans = &t[t.find("Plans (for the anytime-valid test").expect("plans")..];
    for c in [
        "we-miss-you",
        "cart-reminder",
        "retention-notice",
        "one-time-buyer",
    ] {
        assert!(plans.contains(c), "{c}: {plans}");
    }
    assert!(
        plans.contains("no holdout: what it earns cannot be measured"),
        "{plans}"
    );
    let customers = second["customer_records"].as_u64().unwrap();
    for line in plans
        .lines()
        .filter(|l| l.contains("match the audience today"))
    {
        let n: u64 = line
            .split_whitespace()
            .nth(1)
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap();
        assert!(n <= customers, "{line}");
    }
    let shares: Vec<f64> = plans
        .lines()
        .filter_map(|l| l.split("`[holdout] share = ").nth(1))
        .map(|s| s.trim_end_matches('`').parse().unwrap())
        .collect();
    assert!(!shares.is_empty(), "{plans}");
    assert!(shares.iter().all(|s| *s > 0.0 && *s <= 0.5), "{shares:?}");
}

#[test]
fn bad_configuration_is_refused_clearly() {
    let env = Env::new();
    env.write(
        "winback.toml",
        "database_url = \"sqlite://x.db\"\n[import]\nmax_errros = 3\n",
    );
    let out = env.run(&["status"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("max_errros"), "{}", text(&out));
}

#[test]
fn environment_variables_override_the_config_file() {
    let env = Env::new();
    env.write("winback.toml", "[import]\nmax_errors = 5\n");
    let bad = env.write("bad.csv", BAD);
    let out = env.run(&["import", "orders", bad.to_str().unwrap()]);
    assert_eq!(
        text(&out).matches("bad.csv:").count(),
        3,
        "two errors listed, plus the file line: {}",
        text(&out)
    );
    let out = env
        .cmd()
        .env("WINBACK_IMPORT__MAX_ERRORS", "1")
        .args(["import", "orders", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(
        t.matches("bad.csv:").count(),
        2,
        "one error listed, plus the file line: {t}"
    );
    assert!(t.contains("… and 1 more"), "{t}");
}

#[test]
fn score_places_every_profile_in_one_stage_with_a_reason() {
    let env = Env::new();
    assert!(
        env.run(&["demo", "--customers", "400", "--months", "1"])
            .status
            .success()
    );
    let out = env.run(&["score", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let profiles = v["profiles"].as_array().unwrap();
    assert_eq!(
        profiles.len() as u64,
        env.status_json()["profiles"].as_u64().unwrap(),
        "every person is scored once"
    );
    for p in profiles {
        assert!(
            p["stage"].is_string() && !p["reason"].as_str().unwrap().is_empty(),
            "{p}"
        );
        if p["purchases"].as_u64().unwrap() > 0 {
            let alive = p["p_alive"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&alive), "{p}");
            assert!(p["segment"].is_string(), "buyers get an RFM segment: {p}");
        } else {
            assert!(
                matches!(
                    p["stage"].as_str().unwrap(),
                    "never_purchased" | "inactive_subscriber"
                ),
                "{p}"
            );
        }
    }
    assert_eq!(v["models"]["purchase"]["kind"], "bgnbd");
    assert!(v["models"]["purchase"]["params"][0].as_f64().unwrap() > 0.0);
    let ranked: Vec<&serde_json::Value> = profiles
        .iter()
        .filter(|p| p["priority"].is_object())
        .collect();
    assert!(!ranked.is_empty(), "some customers are worth winning back");
    for p in &ranked {
        assert!(
            p["priority"]["reasons"].as_array().unwrap().len() >= 3,
            "{p}"
        );
    }
    let table = env.run(&["score", "--top", "3"]);
    let t = text(&table);
    assert!(t.contains("customers most worth winning back"), "{t}");
    assert!(t.contains("Inactive by definition"), "{t}");
    // The ranked list, by priority, with a budget on the expected offer cost.
    let out = env.run(&[
        "customers",
        "list",
        "--min-priority",
        "0.01",
        "--format",
        "json",
        "--limit",
        "5",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let priorities: Vec<f64> = listed
        .iter()
        .map(|r| r["score"]["priority_minor"].as_f64().unwrap())
        .collect();
    assert!(
        !priorities.is_empty() && priorities.windows(2).all(|w| w[0] >= w[1]),
        "{priorities:?}"
    );
    let out = env.run(&["customers", "list", "--budget", "0.00", "--format", "json"]);
    let none: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(none.is_empty(), "a zero budget buys no offers");
    let out = env.run(&["customers", "list", "--inactive", "nope"]);
    assert!(!out.status.success() && text(&out).contains("no inactivity definition `nope`"));
    let who = listed[0]["external_id"].as_str().unwrap();
    let show = text(&env.run(&["customers", "show", who]));
    for part in [
        "Features (as of",
        "RFM ",
        "P(alive)",
        "Win-back priority",
        "last human email engagement",
        "next order expected 20",
    ] {
        assert!(show.contains(part), "{part} missing from:\n{show}");
    }
}

#[test]
fn models_fit_reproduces_cdnow_and_reports_the_holdout() {
    // Days are calendar days in the shop's zone: the same dates give the same fit whether the
    // shop is in London, Amsterdam or New York (CDNOW's dates have no time; each is stored at
    // local midnight, which is the previous day in UTC east of Greenwich).
    for zone in ["Europe/Amsterdam", "America/New_York"] {
        let env = Env::new();
        let sample = repo_file("data/cdnow/CDNOW_sample.txt");
        let run = |args: &[&str]| {
            let out = env
                .cmd()
                .env("WINBACK_DEFAULT_TIME_ZONE", zone)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "{zone}: {}", text(&out));
            out
        };
        run(&["import", "cdnow", sample.to_str().unwrap()]);
        let out = run(&[
            "models",
            "fit",
            "--as-of",
            "1998-06-30",
            "--holdout-days",
            "273",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == "BG/NBD")
            .unwrap();
        let fitted = m["calibration_fit"]["params"].as_array().unwrap();
        for (got, want) in fitted.iter().zip([0.2426, 4.4135, 0.7929, 2.4258]) {
            let got = got.as_f64().unwrap();
            assert!(
                ((got - want) / want).abs() < 1e-3,
                "{zone}: {got} vs {want}"
            );
        }
        assert_eq!(m["holdout_actual"].as_f64().unwrap(), 1882.0, "{zone}");
    }
    let env = Env::new();
    let sample = repo_file("data/cdnow/CDNOW_sample.txt");
    let out = env
        .cmd()
        .env("WINBACK_DEFAULT_TIME_ZONE", "UTC")
        .args(["import", "cdnow", sample.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // 1998-06-30 minus 273 days is 1997-09-30, the literature's calibration end.
    let args = [
        "models",
        "fit",
        "--as-of",
        "1998-06-30",
        "--holdout-days",
        "273",
    ];
    let out = env.run(&[&args[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    let published = [
        ("BG/NBD", [0.2426, 4.4135, 0.7929, 2.4258]),
        ("Pareto/NBD", [0.5533, 10.578, 0.6062, 11.669]),
    ];
    for (name, params) in published {
        let m = models.iter().find(|m| m["model"] == name).unwrap();
        let fitted = m["calibration_fit"]["params"].as_array().unwrap();
        for (got, want) in fitted.iter().zip(params) {
            let got = got.as_f64().unwrap();
            assert!(
                ((got - want) / want).abs() < 1e-3,
                "{name}: {got} vs {want}"
            );
        }
        assert_eq!(m["holdout_actual"].as_f64().unwrap(), 1882.0, "{name}");
    }
    let report = text(&env.run(&[&args[..], &["--report"]].concat()));
    for part in [
        "Holdout check",
        "MBG/NBD",
        "Pareto/NBD",
        "std err",
        "Gamma-Gamma",
    ] {
        assert!(report.contains(part), "{part} missing from:\n{report}");
    }
    let saved = text(&env.run(&["models", "show"]));
    assert!(
        saved.contains("pareto_nbd") && saved.contains("gamma_gamma"),
        "{saved}"
    );
}

#[test]
fn campaign_files_are_checked_before_anything_is_applied() {
    let env = Env::new();
    env.write(
        "campaigns/bad.toml",
        "[campaign]\nname = \"bad\"\naudience = 'stage == \"lapsed\"'\n[trigger]\ntype = \"audience\"\n[[steps]]\nid = \"s\"\ntype = \"send\"\n",
    );
    let out = env.run(&["campaigns", "apply", "campaigns"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("campaigns/bad.toml:6:1: step `s`: a send step needs `template`"),
        "{err}"
    );
    assert!(err.contains("nothing was applied"), "{err}");
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/campaigns");
    let out = env.run(&["campaigns", "apply", examples]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("we-miss-you"));
    let again = env.run(&["campaigns", "apply", examples]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("unchanged (version 1)"));
    assert!(
        env.run(&["campaigns", "start", "we-miss-you"])
            .status
            .success()
    );
    let list = env.run(&["campaigns", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let wmy = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "we-miss-you")
        .unwrap();
    assert_eq!(wmy["status"], "active");
    assert_eq!(
        env.run(&["campaigns", "start", "nope"]).status.code(),
        Some(3)
    );
}

/// One HTTP/1.1 request over a plain socket (the CLI's tests carry no HTTP client).
fn http(addr: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn keys_and_serve_take_events_and_stop_gracefully() {
    let env = Env::new();
    let out = env.run(&["keys", "create", "shop", "--scopes", "ingest,read"]);
    assert!(out.status.success(), "{}", text(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("wbk_"), "{key}");
    let out = env.run(&["keys", "create", "bad", "--scopes", "root"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown scope `root`"),
        "{}",
        text(&out)
    );
    // The store holds the key's hash, never the key.
    let db = std::fs::read(env.path("w.db")).unwrap();
    // The random part after `wbk_XXXXXXXX_` (base64url: it may itself contain `_`).
    let secret = key.splitn(3, '_').nth(2).unwrap().as_bytes();
    assert!(!db.windows(secret.len()).any(|w| w == secret));
    // A free port, then the server on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // A server the public reaches needs its own keys (the built-in ones are refused).
    let refused = env.run(&["serve", "--listen", &addr]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains(
            "refusing to start: [tokens] and [engine] secret use the built-in development keys"
        ),
        "{}",
        text(&refused)
    );
    let secret = env.run(&["keys", "secret"]);
    let token_key = String::from_utf8_lossy(&secret.stdout).trim().to_owned();
    assert_eq!(
        token_key.len(),
        43,
        "32 random bytes, base64url: {token_key}"
    );
    let server = env
        .cmd()
        .env("WINBACK_TOKENS__CURRENT", "k1")
        .env("WINBACK_TOKENS__KEYS__K1", &token_key)
        .env("WINBACK_ENGINE__SECRET", "a-secret-of-this-shop-0123456789")
        .args(["serve", "--listen", &addr, "--worker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(started.elapsed().as_secs() < 30, "the server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let body = "{\"event_id\":\"e1\",\"customer_id\":\"C1\",\"type\":\"logged_in\",\"occurred_at\":\"2026-01-02T10:00:00Z\"}";
    let reply = http(
        &addr,
        &format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let health = http(
        &addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // Revoked from another process: refused on the next request.
    let prefix = key[..12].to_owned();
    assert!(env.run(&["keys", "revoke", &prefix]).status.success());
    let reply = http(
        &addr,
        &format!(
            "GET /v1/customers/C1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    // SIGTERM: the server finishes and exits cleanly.
    let pid = server.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = server.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("worker stopping") && said.contains("winback serve: stopped"),
        "{said}"
    );
    // No public URL is configured here and the listener is loopback: the dashboard opens at
    // the listener's own address, and `serve` says so.
    assert!(
        said.contains(&format!("open the dashboard at http://{addr}/admin")),
        "{said}"
    );
    let status = env.status_json();
    assert_eq!(
        status["events_by_type"],
        serde_json::json!([["logged_in", 1]]),
        "{status}"
    );
}

#[test]
fn audience_files_for_ads_and_print() {
    let env = Env::new();
    env.write(
        "customers.csv",
        "customer_id,email,phone,first_name,last_name,address1,postal_code,city,country\n\
         C1,Anna@Example.nl,+31612345678,Anna,de Vries,Keizersgracht 12,1015 CS,Amsterdam,NL\n\
         C2,bob@example.nl,,=HYPERLINK(\"http://x\"),Bakker,Dorpsstraat 1,1234 AB,Gouda,NL\n",
    );
    assert!(
        env.run(&["import", "customers", "customers.csv"])
            .status
            .success()
    );
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/campaigns/lost-customers-offline.toml"
    );
    let out = env.run(&["campaigns", "apply", example]);
    assert!(out.status.success(), "{}", text(&out));
    // What the campaign's offer and export steps store (the engine's own tests run the steps).
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = winback_store::SqlStore::connect(&format!("sqlite://{}", env.path("w.db").display()))
            .await
            .unwrap();
        let far = 4_102_444_800_000_000i64; // 2100-01-01
        for sql in [
            "INSERT INTO audience_exports (campaign_id, step, target, profile_id, added_at) \
             SELECT 1, 'card', 'print', id, 0 FROM customers",
            "INSERT INTO audience_exports (campaign_id, step, target, profile_id, added_at) \
             SELECT 1, 'ads-meta', 'meta', id, 0 FROM customers WHERE external_id = 'C1'",
            &format!(
                "INSERT INTO offers (code, campaign_id, enrolment_id, profile_id, step, variant, ladder, rung, kind, amount_minor, currency, min_order_minor, uses, issued_at, expires_at, state, description) \
                 SELECT 'WB-CARD-7Q', 1, 1, id, 'card-code', 'a', 'card', 0, 'fixed', 1000, 'EUR', 4000, 1, 0, {far}, 'issued', '10.00 EUR off' FROM customers WHERE external_id = 'C1'"
            ),
        ] {
            store.pool().execute(sql, &[]).await.unwrap();
        }
        store.close().await;
    });
    let out = env.run(&[
        "campaigns",
        "export",
        "lost-customers-offline",
        "--format",
        "print",
        "--out",
        "print.csv",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 of 2 contacts"), "{}", text(&out));
    let print = std::fs::read_to_string(env.path("print.csv")).unwrap();
    assert!(
        print.starts_with("first_name,last_name,address1,address2,postal_code,city,country,code\n"),
        "{print}"
    );
    assert!(
        print.contains("Anna,de Vries,Keizersgracht 12,,1015 CS,Amsterdam,NL,WB-CARD-7Q"),
        "{print}"
    );
    assert!(
        print.contains("\"'=HYPERLINK(\"\"http://x\"\")\""),
        "formulas defused: {print}"
    );
    let out = env.run(&[
        "campaigns",
        "export",
        "lost-customers-offline",
        "--format",
        "meta",
        "--out",
        "meta.csv",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let meta = std::fs::read_to_string(env.path("meta.csv")).unwrap();
    let lines: Vec<&str> = meta.lines().collect();
    assert_eq!(lines.len(), 2, "only C1 was added for meta: {meta}");
    assert_eq!(lines[0], "email,phone,fn,ln,zip,ct,country");
    use sha2::Digest;
    let hashed = hex::encode(sha2::Sha256::digest(b"anna@example.nl"));
    assert!(
        lines[1].starts_with(&format!(
            "{hashed},{}",
            hex::encode(sha2::Sha256::digest(b"31612345678"))
        )),
        "{meta}"
    );
    assert!(!meta.contains("anna"), "no identifier in plain text");
}

/// LinkedIn and a CRM-onboarding partner take contacts on the basis `[exports]` sets: consent
/// by default (only an explicit opt-in goes, and only the address that carries it), legitimate
/// interest when the shop sets it. Objection leaves a person out of every file.
#[test]
fn linkedin_and_onboarding_files_follow_each_destinations_legal_basis() {
    let env = Env::new();
    env.write(
        "klanten.csv",
        "klantnummer;e-mail;telefoon;voornaam;postcode;land;nieuwsbrief\n\
         1001;Anna@Example.nl;+31612345678;Anna;1015 CS;NL;ja\n\
         1002;bob@example.nl;;Bob;1234 AB;NL;nee\n\
         1003;eva@example.nl;;Eva;=1+1;NL;afgemeld\n",
    );
    env.write(
        "onboarding.toml",
        r#"
[campaign]
name = "display-retargeting"
audience = 'orders == 0'
[trigger]
type = "audience"
[[steps]]
id = "linkedin"
type = "export"
target = "linkedin"
[[steps]]
id = "partner"
type = "export"
target = "crm"
columns = [
  { header = "EMAIL_SHA256", value = "email_sha256" },
  { header = "PHONE_SHA256", value = "phone_sha256" },
  { header = "ZIP", value = "postal_code" },
]
"#,
    );
    env.write(
        "klanten.toml",
        "kind = \"customers\"\ndelimiter = \";\"\nregion = \"NL\"\n\
         [columns]\ncustomer_id = \"klantnummer\"\nemail = \"e-mail\"\nphone = \"telefoon\"\n\
         first_name = \"voornaam\"\npostal_code = \"postcode\"\ncountry = \"land\"\nemail_consent = \"nieuwsbrief\"\n",
    );
    let out = env.run(&[
        "import",
        "mapped",
        "klanten.csv",
        "--mapping",
        "klanten.toml",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["campaigns", "apply", "onboarding.toml"]);
    assert!(out.status.success(), "{}", text(&out));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = winback_store::SqlStore::connect(&format!("sqlite://{}", env.path("w.db").display()))
            .await
            .unwrap();
        for (step, target) in [("linkedin", "linkedin"), ("partner", "crm")] {
            store
                .pool()
                .execute(
                    &format!(
                        "INSERT INTO audience_exports (campaign_id, step, target, profile_id, added_at, variant) \
                         SELECT 1, '{step}', '{target}', id, 0, 'a' FROM customers"
                    ),
                    &[],
                )
                .await
                .unwrap();
        }
        store.close().await;
    });
    let export = |format: &str, file: &str| {
        let out = env.run(&[
            "campaigns",
            "export",
            "display-retargeting",
            "--format",
            format,
            "--out",
            file,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        (text(&out), std::fs::read_to_string(env.path(file)).unwrap())
    };
    use sha2::Digest;
    let h = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    // Consent (the default): only Anna, who said "ja".
    let (said, linkedin) = export("linkedin", "linkedin.csv");
    assert!(said.contains("1 of 3 contacts"), "{said}");
    assert!(said.contains("left out: 2 no explicit opt-in"), "{said}");
    assert!(
        said.contains("LinkedIn refuses lists under 300 rows"),
        "{said}"
    );
    assert_eq!(
        linkedin,
        format!(
            "email,firstname,lastname,jobtitle,employeecompany,country,googleaid\n{},,,,,NL,\n",
            h("anna@example.nl")
        )
    );
    let (_, crm) = export("crm", "crm.csv");
    // Anna's number has no SMS opt-in: under consent only her email goes.
    assert_eq!(
        crm,
        format!(
            "EMAIL_SHA256,PHONE_SHA256,ZIP\n{},,1015 CS\n",
            h("anna@example.nl")
        )
    );
    // Legitimate interest for the partner: everyone, formulas defused, until Eva objects.
    env.write("winback.toml", "[exports]\ncrm = \"legitimate_interest\"\n");
    let (said, crm) = export("crm", "crm.csv");
    assert!(said.contains("3 of 3 contacts"), "{said}");
    assert!(
        crm.contains(&format!(
            "{},{},1015 CS",
            h("anna@example.nl"),
            h("31612345678")
        )),
        "{crm}"
    );
    assert!(
        crm.contains(&format!("{},,'=1+1", h("eva@example.nl"))),
        "{crm}"
    );
    let out = env.run(&["privacy", "object", "eva@example.nl"]);
    assert!(out.status.success(), "{}", text(&out));
    let (said, crm) = export("crm", "crm.csv");
    assert!(said.contains("2 of 3 contacts"), "{said}");
    assert!(
        said.contains("left out: 1 objected to direct marketing"),
        "{said}"
    );
    assert!(!crm.contains(&h("eva@example.nl")), "{crm}");
}

#[test]
fn privacy_export_erase_and_reimport_end_to_end() {
    let env = Env::new();
    let customers = env.write(
        "customers.csv",
        "customer_id,email,phone,first_name,email_consent,created_at\n\
         C1,eva@example.nl,+31612345678,Eva,yes,2020-01-01T00:00:00Z\n\
         C2,max@example.nl,,Max,yes,2020-01-01T00:00:00Z\n",
    );
    let orders = env.write(
        "orders.csv",
        "order_id,customer_id,ordered_at,total,currency,status\n\
         O1,C1,2020-02-01T10:00:00Z,40.00,EUR,paid\n\
         O2,C2,2020-02-01T10:00:00Z,50.00,EUR,paid\n",
    );
    for (kind, file) in [("customers", &customers), ("orders", &orders)] {
        let out = env.run(&["import", kind, file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let json = env.path("eva.json");
    let out = env.run(&[
        "privacy",
        "export",
        "Eva@Example.nl",
        "--out",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(export["records"][0]["email"], "eva@example.nl");
    assert_eq!(export["orders"][0]["external_id"], "O1");
    assert!(!export.to_string().contains("max@"), "{export}");

    // Everyone ordered in 2020: a dry run lists both and changes nothing.
    let out = env.run(&["privacy", "retention", "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["erased"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let out = env.run(&["privacy", "export", "max@example.nl"]);
    assert!(
        out.status.success(),
        "the dry run erased nobody: {}",
        text(&out)
    );

    let out = env.run(&["privacy", "erase", "+31612345678"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("erased profile"), "{}", text(&out));
    // The shop imports its files again: Eva stays erased, her order still counts.
    for (kind, file) in [("customers", &customers), ("orders", &orders)] {
        let out = env.run(&["import", kind, file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = env.run(&["privacy", "export", "eva@example.nl"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let status = env.status_json();
    assert_eq!(status["orders"], 2, "{status}");
    let out = env.run(&["privacy", "log", "--json"]);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = log["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["erasure", "export", "retention", "export"]);
    let out = env.run(&["privacy", "hygiene", "--json"]);
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["erased_profiles"], 1, "{h}");
    assert_eq!(h["addresses"], 1, "{h}");
}

/// The small things a new user hit: honest import reports (distinct counts, a repeated row named
/// with its line, "nothing new" on a re-import), errors that say their cause once, a closed
/// pipe that ends quietly, a CSV listing with the profile, orders, last order and money in major
/// units, phones not prefixed with `'`, and an address's city written on an existing customer.
#[test]
fn honest_reports_and_small_things() {
    let env = Env::new();
    let orders = env.write(
        "orders.csv",
        "order_id,customer_id,ordered_at,total\nO1,C1,2024-05-01,10.00\nO2,C2,2024-05-02,12.50\nO1,C1,2024-05-01,10.00\n",
    );
    let out = env.run(&["import", "orders", orders.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rep = &r["imports"][0]["report"];
    assert_eq!(rep["written"]["orders"], 2, "distinct orders: {rep}");
    assert_eq!(rep["duplicate_rows"], 1);
    assert!(
        rep["warnings"][0]
            .as_str()
            .unwrap()
            .ends_with("orders.csv:4: order_id: `O1` repeats line 2; the later row is kept"),
        "{rep}"
    );
    let out = env.run(&["import", "orders", orders.to_str().unwrap()]);
    assert!(text(&out).contains("nothing new"), "{}", text(&out));

    // The city of a customer an orders import created is written by the customer file.
    let customers = env.write(
        "customers.csv",
        "customer_id,email,phone,city,country,email_consent\nC1,c1@example.nl,+31612345678,Utrecht,Nederland,yes\n",
    );
    let out = env.run(&["import", "customers", customers.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["customers", "show", "C1", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        shown["profile"]["records"][0]["address"]
            .as_str()
            .unwrap_or_default()
            .contains("Utrecht"),
        "{shown}"
    );
    let out = env.run(&["customers", "list", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.starts_with("profile,customer_id,email,phone,first_name,last_name,orders,last_order,"),
        "{csv}"
    );
    assert!(
        csv.contains(",1,2024-05-01,"),
        "C1's one order and its date: {csv}"
    );
    assert!(
        csv.contains(",+31612345678,"),
        "no `'` before a phone: {csv}"
    );

    // An error names its cause once.
    let out = env.run(&["import", "orders", "/nonexistent/orders.csv"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");

    // A closed pipe ends quietly.
    let mut child = env
        .cmd()
        .args(["customers", "list", "--format", "csv", "--limit", "100000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calendar days in the shop's zone, checked against lifetimes 0.11.3 on the CDNOW master at
/// several calibration cuts (tests/data/lifetimes_cuts.py wrote tests/data/lifetimes_cuts.txt):
/// in Amsterdam, where every date-only order is stored at 22:00 or 23:00 UTC the day before,
/// the calibration fits equal lifetimes' at the same observation_period_end.
#[test]
fn cdnow_master_cuts_fit_like_lifetimes_in_the_shops_zone() {
    let env = Env::new();
    let master = repo_file("data/cdnow/CDNOW_master.txt");
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            .env("WINBACK_DEFAULT_TIME_ZONE", "Europe/Amsterdam")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        out
    };
    run(&["import", "cdnow", master.to_str().unwrap(), "--quiet"]);
    let reference = include_str!("../data/lifetimes_cuts.txt");
    let end: jiff::civil::Date = "1998-06-30".parse().unwrap();
    for line in reference.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let cut: jiff::civil::Date = f[0].parse().unwrap();
        let want: Vec<f64> = f[1..].iter().map(|v| v.parse().unwrap()).collect();
        let holdout = (end - cut).get_days().to_string();
        let out = run(&[
            "models",
            "fit",
            "--as-of",
            "1998-06-30",
            "--holdout-days",
            &holdout,
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let m = v["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == "BG/NBD")
            .unwrap();
        let got: Vec<f64> = m["calibration_fit"]["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .collect();
        for (name, (g, w)) in ["r", "alpha", "a", "b"].iter().zip(got.iter().zip(&want)) {
            assert!(
                ((g - w) / w).abs() < 1e-4,
                "cut {cut}: {name} {g} vs lifetimes {w}"
            );
        }
    }
}

/// A shop's own templates: listed beside the library's, previewed in a language, accepted by
/// `campaigns apply` only when they exist, and a broken one refused at start with its file and
/// line.
#[test]
fn the_shops_own_templates_are_listed_previewed_and_checked() {
    let env = Env::new();
    env.write(
        "templates/en/spring-sale.mjml",
        "{% extends \"en/layout.mjml\" %}{% block heading %}Spring is here{% endblock %}{% block body %}<mj-text>Our spring collection has arrived.</mj-text><mj-button href=\"{{ links.shop }}\">See it</mj-button>{% endblock %}",
    );
    env.write(
        "templates/nl/spring-sale.mjml",
        "{% extends \"nl/layout.mjml\" %}{% block heading %}De lente is er{% endblock %}{% block body %}<mj-text>Onze voorjaarscollectie is binnen.</mj-text><mj-button href=\"{{ links.shop }}\">Bekijk</mj-button>{% endblock %}",
    );
    let campaign = env.write(
        "spring.toml",
        "[campaign]\nname = \"spring\"\naudience = 'stage == \"lapsed\" && email_ok'\n\n[trigger]\ntype = \"audience\"\n\n[[steps]]\nid = \"hello\"\ntype = \"send\"\ntemplate = \"spring-sale\"\nsubject = { en = \"Spring is here\", nl = \"De lente is er\" }\n",
    );
    // Without the folder the template does not exist: the file, line and step are named.
    let out = env.run(&["campaigns", "apply", "--check", campaign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("spring.toml:11:12: step `hello`: no email template `spring-sale`"),
        "{}",
        text(&out)
    );
    env.write("winback.toml", "[email]\ntemplates_dir = \"templates\"\n");
    let out = env.run(&["campaigns", "apply", "--check", campaign.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = env.run(&["templates", "list"]);
    let list = text(&out);
    assert!(
        list.lines().any(|l| l.starts_with("spring-sale")
            && l.contains("en,nl")
            && l.ends_with("templates_dir")),
        "{list}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("we-miss-you")
            && l.contains("en,nl,pl")
            && l.ends_with("library")),
        "{list}"
    );
    let out = env.run(&["templates", "show", "spring-sale", "--locale", "nl"]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("Onze voorjaarscollectie is binnen."),
        "{shown}"
    );
    assert!(
        shown.contains("Afmelden"),
        "the library's Dutch footer: {shown}"
    );
    // Polish falls back to English, the language every template has.
    let out = env.run(&["templates", "show", "spring-sale", "--locale", "pl"]);
    assert!(text(&out).contains("Our spring collection has arrived."));
    // A broken template stops every command that renders, naming the file and line.
    env.write(
        "templates/nl/spring-sale.mjml",
        "{% extends \"nl/layout.mjml\" %}\n{% block body %}{% if %}{% endblock %}",
    );
    let out = env.run(&["templates", "list"]);
    assert!(!out.status.success());
    let err = text(&out);
    assert!(
        err.contains("templates/nl/spring-sale.mjml: line 2:"),
        "{err}"
    );
    // A language without the English fallback is refused too.
    env.write(
        "templates/nl/spring-sale.mjml",
        "{% extends \"nl/layout.mjml\" %}{% block body %}<mj-text>Hoi</mj-text>{% endblock %}",
    );
    env.write(
        "templates/nl/only-dutch.mjml",
        "{% extends \"nl/layout.mjml\" %}{% block body %}<mj-text>Hoi</mj-text>{% endblock %}",
    );
    let out = env.run(&["templates", "list"]);
    assert!(
        text(&out).contains("`only-dutch` has no English version"),
        "{}",
        text(&out)
    );
}

/// A full disk: the import fails with a message that says so, nothing of it is stored, later
/// commands open the store (no SIGBUS replaying the log), and with room again the same import
/// succeeds. Needs a small file system of its own: a tmpfs mount, so root.
#[test]
fn a_full_disk_fails_the_import_clearly_and_leaves_the_store_usable() {
    let env = Env::new();
    let out = env.run(&[
        "synth",
        "--customers",
        "20000",
        "--no-events",
        "--out",
        env.path("shop").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let small = env.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let mount = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&small)
        .output();
    if !mount.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipping: cannot mount a 4 MB tmpfs here (needs root): {}",
            mount
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_else(|e| e.to_string())
        );
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(small.clone());
    let url = format!("sqlite://{}", small.join("w.db").display());
    let run = |args: &[&str]| {
        env.cmd()
            .env("WINBACK_DATABASE_URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    let customers = env.path("shop/customers.csv");
    let out = run(&["import", "customers", customers.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the disk holding the database is full"),
        "{err}"
    );
    assert!(err.contains("the store is as it was"), "{err}");
    assert!(err.contains("customers.csv"), "{err}");
    // The next command opens the store: nothing half-imported.
    let out = run(&["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["customer_records"], 0, "{status}");
    // With room, the same import goes through.
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=96m"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(grown.success());
    let out = run(&["import", "customers", customers.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        status["customer_records"].as_u64().unwrap() > 19_000,
        "{status}"
    );
}

/// One worker's clock moved 30 days ahead: it refuses to run and leases nothing, so the
/// healthy workers keep sending.
#[test]
fn a_worker_whose_clock_is_off_refuses_to_run() {
    let env = Env::new();
    env.write(
        "winback.toml",
        "[email]\npublic_url = \"http://127.0.0.1:8080\"\n",
    );
    let ahead = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30)).to_string();
    let out = env
        .cmd()
        .env("WINBACK_NOW", &ahead)
        .args(["worker", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("s ahead of the database's"), "{err}");
    let out = env.run(&["worker", "--once"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// A call centre's file of outcomes, as it exports it (Dutch headers, `;`, numeric customer
/// ids): a file with one bad row stores nothing and names the line and field; the corrected
/// file moves the tasks, and importing it again changes nothing.
#[test]
fn call_outcomes_from_a_call_centre_file() {
    let env = Env::new();
    env.write(
        "customers.csv",
        "customer_id,email,phone,first_name,time_zone\n\
         1001,anna@example.nl,+31612345601,Anna,Europe/Amsterdam\n\
         1002,ben@example.nl,+31612345602,=cmd,Europe/Amsterdam\n",
    );
    assert!(
        env.run(&["import", "customers", "customers.csv"])
            .status
            .success()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = format!("sqlite://{}", env.path("w.db").display());
    rt.block_on(async {
        let store = winback_store::SqlStore::connect(&url).await.unwrap();
        for sql in [
            "INSERT INTO campaigns (id, name, status, version, file, created_at, updated_at) VALUES (1, 'phone', 'active', 1, 'p.toml', 0, 0)",
            "INSERT INTO enrolments (id, campaign_id, version, profile_id, trigger_key, exclusive, state, step, resume, variant, holdout, entered_at) \
             SELECT id, 1, 1, id, 'audience', 0, 'active', 1, 0, 'a', 0, 0 FROM customers",
            "INSERT INTO call_tasks (campaign_id, enrolment_id, profile_id, step, variant, list, added_at, state) \
             SELECT 1, id, id, 'call', 'a', 'win-back', 0, 'open' FROM customers",
        ] {
            store.pool().execute(sql, &[]).await.unwrap();
        }
        store.close().await;
    });
    env.write("winback.toml", "[policy.calls]\ncustomer_years = 0\n");
    let out = env.run(&["calls", "list", "win-back", "--out", "bellijst.csv"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 to call on `win-back`"),
        "{}",
        text(&out)
    );
    let list = std::fs::read_to_string(env.path("bellijst.csv")).unwrap();
    assert!(list.contains(",'=cmd,"), "formulas defused: {list}");

    env.write(
        "uitkomsten.csv",
        "klantnummer;belijst;uitkomst;reden;medewerker;gebeld_op\n\
         1001;win-back;reden;te duur;Sanne;2020-01-01T10:00:00Z\n\
         1002;win-back;misschien;;Sanne;2020-01-01T10:05:00Z\n",
    );
    let out = env.run(&["calls", "import", "uitkomsten.csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("REFUSED: nothing was stored"), "{said}");
    assert!(
        said.contains("uitkomsten.csv:2: reason: `te duur` is not one of"),
        "{said}"
    );
    assert!(
        said.contains("uitkomsten.csv:3: outcome: `misschien` is not one of"),
        "{said}"
    );
    let events = || {
        let out = env.run(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["events_by_type"].clone()
    };
    assert_eq!(events(), serde_json::json!([]), "nothing stored");

    env.write(
        "uitkomsten.csv",
        "klantnummer;belijst;uitkomst;reden;medewerker;gebeld_op\n\
         1001;win-back;reden;too_expensive;Sanne;2020-01-01T10:00:00Z\n\
         1002;win-back;niet bellen;;Sanne;2020-01-01T10:05:00Z\n",
    );
    let out = env.run(&["calls", "import", "uitkomsten.csv"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("2 outcomes recorded, 0 already recorded"),
        "{}",
        text(&out)
    );
    assert_eq!(events(), serde_json::json!([["call_outcome", 2]]));
    // The same file again: the tasks are closed, so the customers have no open task to match.
    let out = env.run(&["calls", "import", "uitkomsten.csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("has no open task on call list `win-back`"),
        "{}",
        text(&out)
    );
    assert_eq!(events(), serde_json::json!([["call_outcome", 2]]));
    let out = env.run(&["calls", "list", "win-back"]);
    assert!(
        text(&out).contains("0 to call on `win-back`"),
        "{}",
        text(&out)
    );
}
