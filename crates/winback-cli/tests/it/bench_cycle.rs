//! `winback bench cycle` on a tiny shop: every step runs as its own process, reports its peak
//! memory, and the table has a row per step, so the benchmark cannot rot between measurements.

use super::{Env, text};

/// Runs `winback bench cycle --customers N --dir DIR` with `extra` arguments on the built-in
/// SQLite default.
fn cycle(
    env: &Env,
    dir: &std::path::Path,
    customers: &str,
    extra: &[&str],
) -> std::process::Output {
    env.cmd()
        .env_remove("WINBACK_DATABASE_URL")
        .args(["bench", "cycle", "--customers", customers, "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_cycle_runs_every_step_and_records_time_and_peak_memory() {
    let env = Env::new();
    let dir = env.path("cycle");
    let out = cycle(&env, &dir, "300", &[]);
    assert!(out.status.success(), "{}", text(&out));
    let table = std::fs::read_to_string(dir.join("cycle-sqlite-300-w1.md")).unwrap();
    for step in [
        "synthesise the shop",
        "import customers",
        "import orders with lines",
        "import events",
        "score",
        "start the campaigns",
        "first worker pass",
        "report --json",
        "report --html",
        "page overview",
        "page GET /v1/report",
        "winback serve",
        "day 1: import orders",
        "day 1: import events",
        "day 1: POST /v1/events",
        "day 1: worker pass",
        "day 2: worker pass",
    ] {
        let row = row(&table, step);
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert!(cells[2].ends_with(" s"), "{row}");
        // Every process step reports its own peak; timed pages are requests, not processes.
        if !step.starts_with("page") {
            assert!(cells[3].ends_with(" MB"), "no peak memory: {row}");
        }
    }
    // The shop really went through: people were enrolled and messages sent.
    let first = row(&table, "first worker pass");
    assert!(first.contains("enrolled"), "{first}");
    // The events import says where its time went, and stands beside the database's own
    // ceiling for the same rows, measured in the same run.
    let events = row(&table, "import events");
    assert!(events.contains("event rows "), "{events}");
    assert!(events.contains("features refresh "), "{events}");
    let ceiling = row(&table, "ceiling: the same events by plain executemany");
    assert!(ceiling.contains(" of it"), "{ceiling}");
    assert!(!ceiling.contains("not measured"), "{ceiling}");
    // The report says where its time went (the pages' cost at a large shop is read from it).
    // Parts under a millisecond say nothing, and at this tiny size any one part may be that
    // quick (funnels took 0.0009 s on CI), so the row must name some parts, not each one.
    let report = row(&table, "report --json");
    let named = [
        "campaigns ",
        "funnels ",
        "stays ",
        "arms ",
        "hygiene ",
        "base ",
    ]
    .iter()
    .filter(|part| report.contains(*part))
    .count();
    assert!(
        named >= 2,
        "the report row names {named} of its parts: {report}"
    );
}

#[test]
fn more_worker_counts_run_on_copies_of_the_same_load() {
    let Some(url) = super::crash::pg_url("bench cycle --also-workers test") else {
        return;
    };
    let env = Env::new();
    let dir = env.path("cycle");
    let out = cycle(
        &env,
        &dir,
        "200",
        &["--target", &url, "--no-ceiling", "--also-workers", "2"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let table = std::fs::read_to_string(dir.join("cycle-postgres-200-w1.md")).unwrap();
    assert!(table.contains("(then 2 on copies)"), "{table}");
    // The load is measured once; the passes and the delta again with two workers.
    assert_eq!(table.matches("| import customers").count(), 1, "{table}");
    for step in [
        "2 workers: first worker pass",
        "2 workers: day 1: import orders",
        "2 workers: day 1: POST /v1/events",
        "2 workers: day 1: worker pass",
        "2 workers: day 2: worker pass",
    ] {
        let row = row(&table, step);
        assert!(row.contains(" MB"), "no peak memory: {row}");
    }
    // Both copies start from the same state, so the first passes enrol the same journeys.
    let enrolled = |step: &str| {
        let r = row(&table, step);
        let at = r
            .find("in all ")
            .unwrap_or_else(|| panic!("no totals: {r}"));
        r[at..].split(" journeys").next().unwrap().to_owned()
    };
    assert_eq!(
        enrolled("first worker pass"),
        enrolled("2 workers: first worker pass"),
        "{table}"
    );
}

#[test]
fn more_worker_counts_need_postgresql() {
    let env = Env::new();
    let dir = env.path("cycle");
    let out = cycle(&env, &dir, "200", &["--also-workers", "2"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("--also-workers needs a PostgreSQL --target"),
        "{t}"
    );
}

fn row<'a>(table: &'a str, start: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("| {start}")))
        .unwrap_or_else(|| panic!("no row for {start}:\n{table}"))
}

#[test]
fn a_missing_campaigns_folder_stops_the_cycle_before_it_starts() {
    let env = Env::new();
    let dir = env.path("cycle");
    let out = cycle(&env, &dir, "300", &["--campaigns", "no/such/campaigns"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("no/such/campaigns: no such folder"), "{t}");
    assert!(
        !t.contains("synthesise the shop"),
        "nothing ran before the check: {t}"
    );
}

#[test]
fn no_ceiling_leaves_the_ceiling_out_and_says_so() {
    let env = Env::new();
    let dir = env.path("cycle");
    let out = cycle(&env, &dir, "200", &["--no-ceiling"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = std::fs::read_to_string(dir.join("cycle-sqlite-200-w1.md")).unwrap();
    let ceiling = row(&table, "ceiling for the same events");
    assert!(
        ceiling.contains("not measured: left out with --no-ceiling"),
        "{ceiling}"
    );
    assert!(!table.contains("plain executemany"), "{table}");
    assert!(!dir.join("ceiling.db").exists());
}
