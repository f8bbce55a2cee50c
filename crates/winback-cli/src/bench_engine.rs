//! Benchmarks of the campaign engine: journey steps written into the outbox per second (SQLite,
//! or PostgreSQL with several workers), audience evaluation over many customers, and the peer,
//! graphile-worker, on the same PostgreSQL in the same run.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use winback_domain::{ManualClock, Timestamp};
use winback_engine::audience::{Audience, AudienceRow};
use winback_engine::file_outbox::FileOutbox;
use winback_engine::ports::JourneyStore;
use winback_engine::{Engine, EngineSettings, PassStats};
use winback_import::SourceKind;
use winback_store::{FactScope, ingest::Mode};

use crate::report::n;
use crate::{Config, import};

/// The benchmark journey: a mail, a week's wait, an offer and a second mail. One pass over a
/// fresh enrolment runs the first send and stops at the wait: two steps, one outbox row.
const JOURNEY: &str = r#"
[campaign]
name = "bench"
audience = 'orders >= 1 && email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.10
[experiment]
variants = [{ id = "a", weight = 1 }, { id = "b", weight = 1 }]
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "We miss you, {{ first_name }}"
[[steps]]
id = "wait"
type = "wait"
duration = "7d"
[[steps]]
id = "offer"
type = "offer"
ladder = "back"
[[steps]]
id = "again"
type = "send"
template = "offer"
[offers.back]
currency = "EUR"
rungs = [{ kind = "fixed", amount = "10.00", valid = "14d" }]
"#;

/// A typical win-back audience over the whole vocabulary's hot fields.
pub const AUDIENCE: &str = r#"(stage == "at_risk" || stage == "lapsed") && clv != null && clv >= 50.0 && email_ok && !("quality" in leave_reasons) && (days_since_human_open == null || days_since_human_open < 365) && orders >= 2"#;

/// Writes `contacts` customers with consent and one order each.
fn write_shop(dir: &Path, contacts: u64) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let customers = dir.join(format!("engine-customers-{contacts}.csv"));
    let orders = dir.join(format!("engine-orders-{contacts}.csv"));
    let mut c = std::io::BufWriter::new(std::fs::File::create(&customers)?);
    let mut o = std::io::BufWriter::new(std::fs::File::create(&orders)?);
    writeln!(c, "customer_id,email,first_name,email_consent,time_zone")?;
    writeln!(o, "order_id,customer_id,ordered_at,total,currency,status")?;
    for i in 0..contacts {
        writeln!(c, "C{i},c{i}@example.com,Ann,yes,Europe/Amsterdam")?;
        writeln!(
            o,
            "O{i},C{i},2024-01-{:02}T10:00:00Z,40.00,EUR,paid",
            1 + i % 28
        )?;
    }
    c.flush()?;
    o.flush()?;
    Ok((customers, orders))
}

/// Steps into the outbox: imports `contacts` contacts, enrols them all, then `workers` engines
/// step every enrolment to its first wait concurrently. Prints and returns steps per second.
pub async fn steps(
    config: &Config,
    target: &str,
    contacts: u64,
    workers: usize,
    batch: usize,
    dir: &Path,
) -> Result<f64> {
    let (customers, orders) = write_shop(dir, contacts)?;
    let (store, url) = crate::report::fresh_store(target, dir, "engine").await?;
    // Monday 2024-06-03 10:00 UTC: inside every send window.
    let start = Timestamp::new("2024-06-03T10:00:00Z".parse()?);
    let clock = ManualClock::new(start);
    for (kind, file) in [
        (SourceKind::Customers, &customers),
        (SourceKind::Orders, &orders),
    ] {
        let job = winback_app::ingest::FileJob {
            kind,
            file,
            mapping: None,
            mode: Mode::Strict,
            strict: false,
        };
        let r = import::import_file(config, &store, &clock, job, true, None).await?;
        anyhow::ensure!(r.committed, "bench import refused: {:?}", r.errors);
    }
    let facts = store.profile_facts(FactScope::All).await?;
    let features = crate::score::compute_features(&facts, start);
    store.save_features(start, &features, &[], true).await?;
    store
        .apply_campaign("bench", "bench.toml", JOURNEY, start)
        .await?;
    store
        .set_campaign_status("bench", winback_engine::CampaignStatus::Active, start)
        .await?;

    let outbox_dir = tempfile::tempdir()?;
    let outbox = FileOutbox::new(outbox_dir.path())?;
    let mut settings = EngineSettings {
        batch,
        ..EngineSettings::default()
    };
    settings.policy.ramp.start_share = 1.0;
    let engine = Engine::new(&store, &outbox, &clock, settings.clone());
    let t = Instant::now();
    let s = engine.schedule().await?;
    let enrol_secs = t.elapsed().as_secs_f64();
    drop(engine);

    let t = Instant::now();
    let outbox = std::sync::Arc::new(outbox);
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers.max(1) {
        let (store, outbox, clock) = (store.clone(), outbox.clone(), clock.clone());
        let mut settings = settings.clone();
        settings.worker_id = format!("bench-{w}");
        // Each worker is its own task, as separate `winback worker` processes would be.
        tasks.spawn(async move {
            let engine = Engine::new(&store, outbox.as_ref(), &clock, settings);
            let mut total = PassStats::default();
            loop {
                let s = engine.step_due().await?;
                total.add(&s);
                if s.advanced == 0 {
                    break;
                }
            }
            Ok::<_, winback_engine::ports::EngineError>(total)
        });
    }
    let mut total = PassStats::default();
    while let Some(r) = tasks.join_next().await {
        total.add(&r??);
    }
    let secs = t.elapsed().as_secs_f64();
    let rows = store
        .pool()
        .fetch("SELECT COUNT(*) FROM outbox", &[])
        .await?[0]
        .i64(0)?;
    let rate = total.steps as f64 / secs;
    println!(
        "engine steps ({url}, {} worker{}, batch {batch}): {} contacts enrolled in {:.2} s ({} held out); \
         {} enrolments advanced, {} steps executed, {} outbox rows written in {:.2} s = {} steps/s ({} outbox rows/s{})",
        workers,
        if workers == 1 { "" } else { "s" },
        n(s.enrolled + s.held_out),
        enrol_secs,
        n(s.held_out),
        n(total.advanced),
        n(total.steps),
        n(rows as u64),
        secs,
        n(rate as u64),
        n((rows as f64 / secs) as u64),
        if workers > 1 {
            format!(", {} steps/s per worker", n((rate / workers as f64) as u64))
        } else {
            String::new()
        }
    );
    anyhow::ensure!(
        rows as u64 == s.enrolled,
        "every enrolment not held out should have one outbox row: {rows} rows for {} enrolments",
        s.enrolled
    );
    crate::report::drop_bench_schema(target, &store).await;
    Ok(rate)
}

/// Synthetic audience rows: stages, values and engagement spread like a real shop's.
pub fn audience_rows(count: usize, seed: u64) -> Vec<AudienceRow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    const STAGES: [&str; 5] = ["new", "active", "at_risk", "lapsed", "lost"];
    (0..count)
        .map(|i| {
            let orders = rng.gen_range(0..12);
            AudienceRow {
                profile_id: winback_domain::ProfileId::new(i as i64 + 1),
                stage: Some(STAGES[rng.gen_range(0..STAGES.len())].to_owned()),
                clv: (orders > 0).then(|| rng.gen_range(0.0..400.0)),
                p_alive: (orders > 0).then(|| rng.gen_range(0.0..1.0)),
                orders,
                total_spend: f64::from(orders as i32) * 40.0,
                days_since_last_order: (orders > 0).then(|| rng.gen_range(0..900)),
                days_since_human_open: rng.gen_bool(0.7).then(|| rng.gen_range(0..800)),
                leave_reasons: if rng.gen_bool(0.05) {
                    vec!["quality".to_owned()]
                } else {
                    Vec::new()
                },
                tags: if rng.gen_bool(0.2) {
                    vec!["vip".to_owned()]
                } else {
                    Vec::new()
                },
                has_email: true,
                email_ok: rng.gen_bool(0.8),
                subscription: "none".to_owned(),
                ..AudienceRow::default()
            }
        })
        .collect()
}

/// Audience evaluation over `rows` synthetic customers on `threads` threads.
pub fn audience(rows: usize, threads: usize) -> Result<()> {
    let t = Instant::now();
    let data = audience_rows(rows, 7);
    let gen_secs = t.elapsed().as_secs_f64();
    let compiled = Audience::compile(AUDIENCE, false).context("compiling the bench audience")?;
    let t = Instant::now();
    let result = compiled.evaluate_parallel(&data, threads);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "audience over {} customers ({threads} thread{}): {} matched, {} errors, evaluated in {:.3} s = {} rows/s (rows built in {:.2} s)\n  {AUDIENCE}",
        n(rows as u64),
        if threads == 1 { "" } else { "s" },
        n(result.matched.len() as u64),
        n(result.errors as u64),
        secs,
        n((rows as f64 / secs) as u64),
        gen_secs
    );
    Ok(())
}

/// graphile-worker, the peer, on the same PostgreSQL: `jobs` no-op jobs queued in one statement,
/// then one worker with `concurrency` drains them. Needs Node and
/// `npm install graphile-worker@0.18.0 pg` in `node_dir`. Returns jobs per second.
pub fn graphile_worker(url: &str, node_dir: &Path, jobs: u64, concurrency: u32) -> Result<f64> {
    let script = node_dir.join("winback-bench.mjs");
    std::fs::write(&script, GRAPHILE_SCRIPT)?;
    let script = script.canonicalize()?;
    let out = std::process::Command::new("node")
        .arg(&script)
        .env("DATABASE_URL", url)
        .env("JOBS", jobs.to_string())
        .env("CONCURRENCY", concurrency.to_string())
        .current_dir(node_dir)
        .output()
        .context("running node (is Node installed?)")?;
    anyhow::ensure!(
        out.status.success(),
        "graphile-worker bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rate: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("jobs_per_second "))
        .context("graphile-worker bench printed no rate")?
        .trim()
        .parse()?;
    println!(
        "graphile-worker (same PostgreSQL, concurrency {concurrency}): {} jobs in {} = {} jobs/s",
        n(jobs),
        text.lines()
            .find_map(|l| l.strip_prefix("seconds "))
            .unwrap_or("?")
            .trim(),
        n(rate as u64)
    );
    Ok(rate)
}

/// graphile-worker's own performance test, reduced to what it measures: queue jobs in bulk,
/// then time one worker draining them with a no-op task.
const GRAPHILE_SCRIPT: &str = r#"
import { run, quickAddJob } from "graphile-worker";
import pg from "pg";
const url = process.env.DATABASE_URL;
const jobs = Number(process.env.JOBS);
const concurrency = Number(process.env.CONCURRENCY);
const pool = new pg.Pool({ connectionString: url, max: concurrency + 2 });
// Installs the schema.
await quickAddJob({ pgPool: pool }, "noop", {});
await pool.query("DELETE FROM graphile_worker._private_jobs");
await pool.query(
  "SELECT graphile_worker.add_jobs(array(SELECT json_populate_record(null::graphile_worker.job_spec, json_build_object('identifier', 'noop', 'payload', json_build_object('id', i))) FROM generate_series(1, $1) i))",
  [jobs],
);
let done = 0;
let t0 = 0;
const finished = new Promise((resolve) => {
  globalThis.resolveDone = resolve;
});
// The settings graphile-worker documents for throughput: jobs locked and fetched in batches
// of 500, completions batched.
const runner = await run({
  pgPool: pool,
  concurrency,
  noHandleSignals: true,
  pollInterval: 100,
  preset: {
    worker: {
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  },
  taskList: {
    noop: async () => {
      if (t0 === 0) t0 = performance.now();
      done += 1;
      if (done === jobs) globalThis.resolveDone();
    },
  },
});
const start = performance.now();
await finished;
const secs = (performance.now() - start) / 1000;
await runner.stop();
const left = (await pool.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count;
await pool.query("DROP SCHEMA graphile_worker CASCADE");
await pool.end();
console.log(`seconds ${secs.toFixed(2)}`);
console.log(`jobs_per_second ${(jobs / secs).toFixed(0)}`);
console.log(`left ${left}`);
"#;
