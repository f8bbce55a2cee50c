//! Terminal output (tables, CSV, JSON) and the `winback bench` measurements.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use winback_domain::{Clock, Timestamp};
use winback_import::SourceKind;
use winback_store::{CustomerDetail, CustomerRow, SqlStore, Summary, ingest::Mode};

use crate::{Config, import};

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// CSV with formula-defused cells.
    Csv,
    /// JSON.
    Json,
}

pub use winback_report::{money, n};

/// `too_expensive 3, other 1`: non-zero counts of named groups.
pub fn counts(v: &[(String, u64)]) -> String {
    v.iter()
        .filter(|(_, c)| *c > 0)
        .map(|(k, c)| format!("{} {}", k.replace('_', " "), n(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// First and family name, as far as known.
fn full_name(r: &CustomerRow) -> String {
    [r.first_name.as_deref(), r.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a profile for `winback customers show`.
pub fn print_customer(d: &CustomerDetail, messages: &[winback_store::admin::MessageView]) {
    println!("Profile {} — {} record(s)", d.profile_id, d.records.len());
    for r in &d.records {
        let name = full_name(r);
        println!(
            "  #{:<8} {:<22} {:<34} {:<14} {}",
            r.id,
            r.external_id,
            r.email.as_deref().unwrap_or("-"),
            r.phone.as_deref().unwrap_or("-"),
            if name.is_empty() { "-".into() } else { name }
        );
        if let Some(a) = &r.address {
            println!("            {a}");
        }
        if r.attributes.as_object().is_some_and(|o| !o.is_empty()) {
            println!("            attributes: {}", r.attributes);
        }
    }
    for (title, links) in [
        ("Why these records are one person:", &d.links),
        (
            "Held apart (one more merge would have made a profile larger than max_group_size):",
            &d.held_apart,
        ),
    ] {
        if links.is_empty() {
            continue;
        }
        println!("{title}");
        for l in links {
            println!(
                "  {} and {} share {} {}",
                l.a,
                l.b,
                l.rule.replace('_', " "),
                l.value
            );
        }
    }
    if !d.consent.is_empty() {
        println!("Consent in force:");
        for c in &d.consent {
            println!(
                "  {:<22} {:<6} {:<12} from {} ({})",
                c.customer_external_id,
                c.channel,
                c.status,
                c.source,
                c.at.date_local()
            );
        }
    }
    if !d.suppressions.is_empty() {
        println!("Suppressions:");
        for x in &d.suppressions {
            println!(
                "  {:<6} {:<32} {:<14} {} since {}{}",
                x.channel,
                x.address,
                x.reason.replace('_', " "),
                if x.active { "in force" } else { "lifted" },
                x.at.date_local(),
                if x.soft_bounces > 0 {
                    format!(" ({} soft bounces)", x.soft_bounces)
                } else {
                    String::new()
                }
            );
        }
    }
    if !messages.is_empty() {
        println!("Latest messages:");
        for m in messages {
            println!(
                "  {} {:<24} {:<18} {:<5} {:<9} {}{}",
                m.sent_at.unwrap_or(m.queued_at).date_local(),
                m.campaign,
                m.step,
                m.channel,
                m.state,
                m.outcome.as_deref().unwrap_or("").replace('_', " "),
                m.recipient
                    .as_deref()
                    .map_or(String::new(), |r| format!(" to {r}"))
            );
        }
    }
    println!("Orders: {} (latest first)", d.order_count);
    for o in &d.orders {
        let codes = if o.discount_codes.is_empty() {
            String::new()
        } else {
            format!(" codes {}", o.discount_codes.join(","))
        };
        println!(
            "  {}  {:<16} {:>14}  {:<10} {:<22} via {}{codes}",
            o.ordered_at.date_local(),
            o.external_id,
            money(o.total_minor, &o.currency),
            o.status,
            o.category.as_deref().unwrap_or("-"),
            o.customer_external_id
        );
    }
    println!("Events: {} (latest first, up to 50)", d.event_count);
    for e in d.events.iter().take(15) {
        println!("  {}  {:<24} {}", e.at, e.kind, e.payload);
    }
}

/// Prints `winback customers list`.
pub fn print_customers(
    rows: &[CustomerRow],
    orders: &std::collections::HashMap<i64, (i64, Option<Timestamp>)>,
    format: Format,
) -> Result<()> {
    let summary = |id: i64| orders.get(&id).copied().unwrap_or((0, None));
    match format {
        Format::Json => {
            let out: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    let (n, last) = summary(r.id);
                    let mut v = serde_json::to_value(r).unwrap_or_default();
                    v["orders"] = n.into();
                    v["last_order"] = last.map(|t| t.date_local().to_string()).into();
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&out)?)
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record([
                "profile",
                "customer_id",
                "email",
                "phone",
                "first_name",
                "last_name",
                "orders",
                "last_order",
                "locale",
                "time_zone",
            ])?;
            for r in rows {
                let (n, last) = summary(r.id);
                let cells = [
                    format!("profile:{}", r.id),
                    r.external_id.clone(),
                    r.email.clone().unwrap_or_default(),
                    r.phone.clone().unwrap_or_default(),
                    r.first_name.clone().unwrap_or_default(),
                    r.last_name.clone().unwrap_or_default(),
                    n.to_string(),
                    last.map_or(String::new(), |t| t.date_local().to_string()),
                    r.locale.clone().unwrap_or_default(),
                    r.time_zone.clone().unwrap_or_default(),
                ];
                w.write_record(cells.iter().map(|c| import::defuse(c)))?;
            }
            w.flush()?;
        }
        Format::Table => {
            println!(
                "{:<9} {:<22} {:<36} {:<24} {:<6}",
                "id", "external id", "email", "name", "locale"
            );
            for r in rows {
                let name = full_name(r);
                println!(
                    "{:<9} {:<22} {:<36} {:<24} {:<6}",
                    r.id,
                    r.external_id,
                    r.email.as_deref().unwrap_or("-"),
                    name,
                    r.locale.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

/// Prints a profile's latest score and stage history.
pub fn print_score(
    score: Option<&winback_store::ScoreRow>,
    history: &[winback_store::StageChange],
) {
    let Some(s) = score else {
        println!("Score: none yet (run `winback score`)");
        return;
    };
    let cur = s.currency.as_deref().unwrap_or("EUR");
    println!("Score: {} — {}", s.stage.replace('_', " "), s.reason);
    println!(
        "  RFM {} ({}), P(alive) {}, attrition {}, expected purchases in the horizon {}, predicted value {}",
        s.rfm.as_deref().unwrap_or("-"),
        s.segment.as_deref().unwrap_or("-").replace('_', " "),
        s.p_alive.map_or("-".into(), |p| format!("{p:.2}")),
        s.attrition.map_or("-".into(), |p| format!("{p:.2}")),
        s.expected_90d.map_or("-".into(), |e| format!("{e:.2}")),
        s.clv_minor
            .map_or("-".into(), |c| money(c.round() as i64, cur))
    );
    if let Some(r) = &s.reorder {
        let next = s.details["expected_next_order"]
            .as_str()
            .map_or(String::new(), |t| {
                format!("; next order expected {}", t.get(..10).unwrap_or(t))
            });
        println!("  Reorder rhythm: {r}{next}");
    }
    for m in s.details["inactive_by"].as_array().into_iter().flatten() {
        println!(
            "  Inactive ({}): {}",
            m["name"].as_str().unwrap_or("-"),
            m["why"].as_str().unwrap_or("-")
        );
    }
    match s.priority_minor {
        Some(p) => {
            println!(
                "  Win-back priority {} (expected incremental margin):",
                money(p.round() as i64, cur)
            );
            for r in s.details["priority"]["reasons"]
                .as_array()
                .into_iter()
                .flatten()
            {
                println!("    - {}", r.as_str().unwrap_or("-"));
            }
        }
        None => println!(
            "  Not ranked for win-back: {}",
            s.details["excluded"]
                .as_str()
                .unwrap_or("-")
                .replace('_', " ")
        ),
    }
    for c in history {
        match &c.from {
            Some(from) => println!(
                "  {}: moved from {} to {}",
                c.at.date_local(),
                from.replace('_', " "),
                c.to.replace('_', " ")
            ),
            None => println!(
                "  {}: first scored as {}",
                c.at.date_local(),
                c.to.replace('_', " ")
            ),
        }
    }
}

/// Prints a profile's features, as `winback customers show` shows them.
pub fn print_features(f: Option<&serde_json::Value>) {
    let Some(f) = f else {
        println!("Features: none yet (run `winback score`)");
        return;
    };
    let day = |k: &str| {
        f[k].as_str()
            .map_or("-".to_owned(), |t| t.get(..10).unwrap_or(t).to_owned())
    };
    let num = |k: &str| match &f[k] {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::Number(n) => n.as_f64().map_or(n.to_string(), |v| format!("{v:.0}")),
        v => v.to_string(),
    };
    println!(
        "Features (as of {}): {} orders on {} days, first {}, last {} ({} days ago), mean gap {} days",
        day("as_of"),
        num("orders"),
        num("order_days"),
        day("first_order_at"),
        day("last_order_at"),
        num("recency_days"),
        num("gap_mean_days"),
    );
    println!(
        "  last human email engagement {}, last machine open {}, last site visit {}, last survey {}, last quote {}",
        day("last_human_email_engagement_at"),
        day("last_machine_open_at"),
        day("last_site_visit_at"),
        day("last_survey_at"),
        day("last_quote_request_at"),
    );
    println!(
        "  loyalty {} (balance {}), subscription {}, complaints {} opened / {} resolved, referrals {}, reasons for leaving: {}",
        f["loyalty_trend"].as_str().unwrap_or("-"),
        num("loyalty_balance"),
        f["subscription"].as_str().unwrap_or("-"),
        num("complaints_opened"),
        num("complaints_resolved"),
        num("referrals"),
        f["reasons"]
            .as_array()
            .filter(|r| !r.is_empty())
            .map_or("-".to_owned(), |r| {
                r.iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
    );
}

/// Prints `winback customers list --stage …`.
pub fn print_scored(rows: &[winback_store::ScoredProfile], format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(rows)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record([
                "profile",
                "customer_id",
                "name",
                "email",
                "stage",
                "orders",
                "last_order",
                "p_alive",
                "clv",
                "priority",
                "currency",
                "inactive_by",
                "reason",
            ])?;
            // Money in major units with its currency, as a spreadsheet user reads it.
            let major = |minor: Option<f64>, cur: &str| {
                minor.filter(|m| m.is_finite()).map_or(String::new(), |m| {
                    let digits = winback_domain::Currency::parse(cur)
                        .map_or(2, winback_domain::Currency::minor_digits);
                    format!(
                        "{:.*}",
                        usize::from(digits),
                        m.round() / 10f64.powi(i32::from(digits))
                    )
                })
            };
            for r in rows {
                let cur = r.score.currency.clone().unwrap_or_default();
                let cells = [
                    format!("profile:{}", r.score.profile_id),
                    r.external_id.clone(),
                    r.name.clone().unwrap_or_default(),
                    r.email.clone().unwrap_or_default(),
                    r.score.stage.clone(),
                    r.score.purchases.to_string(),
                    r.last_order_at
                        .map_or(String::new(), |t| t.date_local().to_string()),
                    r.score.p_alive.map_or(String::new(), |p| format!("{p:.4}")),
                    major(r.score.clv_minor, &cur),
                    major(r.score.priority_minor, &cur),
                    cur.clone(),
                    r.score.inactive_by.join(" "),
                    r.score.reason.clone(),
                ];
                w.write_record(cells.iter().map(|c| import::defuse(c)))?;
            }
            w.flush()?;
        }
        Format::Table => {
            println!(
                "{:<14} {:<24} {:<15} {:>8} {:>14} {:>12}  reason",
                "customer", "name", "stage", "P(alive)", "value", "priority"
            );
            for r in rows {
                let cur = r.score.currency.as_deref().unwrap_or("EUR");
                println!(
                    "{:<14} {:<24} {:<15} {:>8} {:>14} {:>12}  {}",
                    r.external_id,
                    r.name.as_deref().unwrap_or("-"),
                    r.score.stage.replace('_', " "),
                    r.score.p_alive.map_or("-".into(), |p| format!("{p:.2}")),
                    r.score
                        .clv_minor
                        .map_or("-".into(), |c| money(c.round() as i64, cur)),
                    r.score
                        .priority_minor
                        .map_or("-".into(), |c| money(c.round() as i64, cur)),
                    r.score.reason
                );
            }
        }
    }
    Ok(())
}

/// Prints `winback status`.
pub fn print_summary(s: &Summary) {
    println!(
        "Customers: {} records, {} people ({} records merged into another profile)",
        n(s.customer_records),
        n(s.profiles),
        n(s.merged_records)
    );
    for (rule, c) in &s.merges_by_rule {
        println!("  merged by {:<20} {}", rule.replace('_', " "), n(*c));
    }
    if s.skipped_identity_keys > 0 {
        println!(
            "  {} identifiers shared by too many records were not used to merge (e.g. a shop's own address)",
            n(s.skipped_identity_keys)
        );
    }
    if s.held_apart_links > 0 {
        println!(
            "  {} links held apart: they would have made a profile larger than max_group_size (see `customers show`)",
            n(s.held_apart_links)
        );
    }
    let span = s
        .order_span
        .map(|(a, b)| format!(" from {} to {}", a.date_local(), b.date_local()))
        .unwrap_or_default();
    println!(
        "Orders: {}{span}; {} order lines",
        n(s.orders),
        n(s.order_items)
    );
    for (cur, minor) in &s.revenue_minor_by_currency {
        println!(
            "  revenue (paid and pending orders): {}",
            money(*minor, cur)
        );
    }
    println!(
        "  {} refunded or cancelled, {} with a zero total",
        n(s.refunded_or_cancelled_orders),
        n(s.zero_value_orders)
    );
    println!(
        "  {} people never ordered (subscribers only)",
        n(s.profiles_without_orders)
    );
    let events: u64 = s.events_by_type.iter().map(|(_, c)| c).sum();
    println!("Events: {}", n(events));
    for (t, c) in &s.events_by_type {
        println!("  {:<24} {}", t, n(*c));
    }
    println!("Data quality:");
    println!(
        "  {} records without an email address",
        n(s.records_without_email)
    );
    println!(
        "  {} records known only by an id (no name, email or phone)",
        n(s.records_without_contact)
    );
    println!("Email consent (per record): {}", counts(&s.email_consent));
    println!("SMS consent (per record):   {}", counts(&s.sms_consent));
}

/// `winback bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Import N synthetic order rows into a fresh database and report rows per second.
    Import {
        /// Order rows.
        #[arg(long, default_value_t = 1_000_000)]
        orders: u64,
        /// Database to measure: `sqlite` (a fresh file) or a `postgres://` URL (a fresh schema).
        #[arg(long, default_value = "sqlite")]
        target: String,
        /// Folder for the generated file (reused when it already holds one of this size).
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// Fit a purchase model on N synthetic customers and predict P(alive), expected purchases
    /// and CLV for each, with winback and with lifetimes 0.11.3 on the same data, side by side.
    Fit {
        /// `bgnbd`, `mbgnbd` or `pareto_nbd`.
        #[arg(long, value_enum, default_value = "bgnbd")]
        model: ModelArg,
        /// Customers.
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Python with lifetimes 0.11.3 installed (`pip install lifetimes==0.11.3`).
        #[arg(long, default_value = "python3")]
        python: String,
        /// Folder for the generated file.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// Compute customer features from N synthetic orders: the store's scan (SQLite) and the
    /// computation, and lifetimes' summary_data_from_transaction_data on the same orders.
    Features {
        /// Order rows.
        #[arg(long, default_value_t = 10_000_000)]
        orders: u64,
        /// Also import them into a fresh SQLite store and time its scan (slow for 10M: the import
        /// alone takes minutes).
        #[arg(long)]
        store: bool,
        /// Python with lifetimes 0.11.3 installed.
        #[arg(long, default_value = "python3")]
        python: String,
        /// Folder for the generated file.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// Journey steps executed into the outbox per second: N contacts enrolled in a mail-wait-
    /// offer-mail journey, then stepped to their first wait by W workers.
    Engine {
        /// Contacts.
        #[arg(long, default_value_t = 100_000)]
        contacts: u64,
        /// `sqlite` (a fresh file) or a `postgres://` URL (a fresh schema).
        #[arg(long, default_value = "sqlite")]
        target: String,
        /// Concurrent workers (on PostgreSQL; SQLite serialises writers).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Enrolments claimed per batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Also run graphile-worker on the same PostgreSQL with this many jobs (needs Node and
        /// `npm install graphile-worker@0.18.0 pg` in `--node-dir`).
        #[arg(long)]
        peer_jobs: Option<u64>,
        /// Folder holding graphile-worker's node_modules.
        #[arg(long, default_value = "target/bench/graphile-worker")]
        node_dir: PathBuf,
        /// Folder for generated files.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// Evaluate a typical win-back audience over N synthetic customers.
    Audience {
        /// Customers.
        #[arg(long, default_value_t = 1_000_000)]
        customers: usize,
        /// Threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// The HTTP service on loopback: NDJSON event ingest, then tracking redirects (throughput
    /// and latency percentiles).
    Http {
        /// Events to ingest.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per NDJSON request.
        #[arg(long, default_value_t = 1_000)]
        batch: u64,
        /// Redirects to request.
        #[arg(long, default_value_t = 100_000)]
        redirects: u64,
        /// Concurrent client connections.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Contacts (one sent message each; with as many as redirects, every click is a
        /// different message, as in real traffic).
        #[arg(long, default_value_t = 100_000)]
        contacts: u64,
        /// `sqlite` (a fresh file) or a `postgres://` URL (a fresh schema).
        #[arg(long, default_value = "sqlite")]
        target: String,
        /// Folder for the database file.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
    /// Render N personalised emails (minijinja → MJML → HTML + text → signed MIME message).
    Render {
        /// Messages.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Threads (one per core to measure per-core throughput).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// The whole life of a shop, each step a process of its own with its wall time and peak
    /// memory: synthesis, initial load, scoring, campaigns and the first worker pass, the report
    /// and dashboard pages, then a day's delta through files and the API and two daily passes.
    Cycle(crate::bench_cycle::CycleArgs),
    /// Resolve identities of N synthetic customers, in memory and through the store.
    Identity {
        /// Customers.
        #[arg(long, default_value_t = 1_000_000)]
        customers: u64,
        /// Folder for the generated file.
        #[arg(long, default_value = "target/bench")]
        dir: PathBuf,
    },
}

pub(crate) async fn fresh_store(
    target: &str,
    dir: &std::path::Path,
    tag: &str,
) -> Result<(SqlStore, String)> {
    if target == "sqlite" {
        let path = dir.join(format!("bench-{tag}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let url = format!("sqlite://{}", path.display());
        Ok((SqlStore::connect(&url).await?, url))
    } else {
        let schema = format!("bench_{tag}_{}", std::process::id());
        let store = SqlStore::connect_in_schema(target, Some(&schema))
            .await
            .context("connecting to PostgreSQL")?;
        Ok((
            store,
            format!("{} (schema {schema})", crate::config::redact(target)),
        ))
    }
}

pub(crate) async fn drop_bench_schema(target: &str, store: &SqlStore) {
    store.close().await;
    if target != "sqlite" {
        if let Ok(admin) = winback_store::db::Pool::connect(target, None).await {
            let schemas = admin
                .fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\\_%'",
                    &[],
                )
                .await
                .unwrap_or_default();
            for s in schemas {
                if let Ok(name) = s.text(0) {
                    let _ = admin
                        .execute(&format!("DROP SCHEMA {name} CASCADE"), &[])
                        .await;
                }
            }
            admin.close().await;
        }
    }
}

/// Runs a benchmark and prints its figures.
pub async fn bench(config: &Config, clock: &dyn Clock, cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Import {
            orders,
            target,
            dir,
        } => {
            std::fs::create_dir_all(&dir)?;
            let file = dir.join(format!("orders-{orders}.csv"));
            if !file.exists() {
                let t = Instant::now();
                winback_synth::orders_only(orders, 7, clock.now(), &file)?;
                eprintln!(
                    "generated {} in {:.1} s",
                    file.display(),
                    t.elapsed().as_secs_f64()
                );
            }
            let (store, url) = fresh_store(&target, &dir, "import").await?;
            let t = Instant::now();
            let report = import_orders(config, &store, clock, &file).await?;
            let secs = t.elapsed().as_secs_f64();
            anyhow::ensure!(
                report.committed,
                "the benchmark import was refused: {:?}",
                report.errors
            );
            let size = std::fs::metadata(&file)?.len();
            println!(
                "import {} order rows ({:.0} MB CSV) into {url}: {:.1} s, {} rows/s (parse + validate + upsert + commit, indexes on)",
                n(orders),
                size as f64 / 1e6,
                secs,
                n((orders as f64 / secs) as u64)
            );
            drop_bench_schema(&target, &store).await;
        }
        BenchCommand::Fit {
            model,
            customers,
            python,
            dir,
        } => bench_fit(model.0, customers, &python, &dir)?,
        BenchCommand::Features {
            orders,
            store,
            python,
            dir,
        } => bench_features(config, clock, orders, store, &python, &dir).await?,
        BenchCommand::Engine {
            contacts,
            target,
            workers,
            batch,
            peer_jobs,
            node_dir,
            dir,
        } => {
            let ours =
                crate::bench_engine::steps(config, &target, contacts, workers, batch, &dir).await?;
            if let Some(jobs) = peer_jobs {
                anyhow::ensure!(
                    target != "sqlite",
                    "graphile-worker runs on PostgreSQL: give --target postgres://…"
                );
                let peer = crate::bench_engine::graphile_worker(&target, &node_dir, jobs, 10)?;
                println!(
                    "ratio: winback {:.2}× graphile-worker on this machine",
                    ours / peer
                );
            }
        }
        BenchCommand::Http {
            events,
            batch,
            redirects,
            concurrency,
            contacts,
            target,
            dir,
        } => {
            crate::bench_http::http(
                config,
                &target,
                events,
                batch.max(1),
                redirects,
                concurrency.max(1),
                contacts.max(1),
                &dir,
            )
            .await?;
        }
        BenchCommand::Cycle(args) => crate::bench_cycle::run(args).await?,
        BenchCommand::Render { messages, threads } => {
            crate::bench_http::render(config, messages, threads)?;
        }
        BenchCommand::Audience { customers, threads } => {
            crate::bench_engine::audience(customers, threads)?;
        }
        BenchCommand::Identity { customers, dir } => {
            std::fs::create_dir_all(&dir)?;
            let file = dir.join(format!("customers-{customers}.csv"));
            write_identity_customers(customers, &file)?;
            let (store, url) = fresh_store("sqlite", &dir, "identity").await?;
            let t = Instant::now();
            let job = winback_app::ingest::FileJob {
                kind: SourceKind::Customers,
                file: &file,
                mapping: None,
                mode: Mode::Strict,
                strict: false,
            };
            let report = import::import_file(config, &store, clock, job, true, None).await?;
            anyhow::ensure!(report.committed, "{:?}", report.errors);
            eprintln!(
                "imported {} customers in {:.1} s",
                n(customers),
                t.elapsed().as_secs_f64()
            );
            let t = Instant::now();
            let ids = store.identifiers().await?;
            let load = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let resolution = winback_identity::resolve(&config.identity.rules, &ids);
            let uf = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let stats = store.save_resolution(&resolution, clock.now()).await?;
            let save = t.elapsed().as_secs_f64();
            println!(
                "identity resolution of {} customers ({url}): load {:.2} s, union-find {:.2} s, save {:.2} s, total {:.2} s; {} merged into {} people",
                n(customers),
                load,
                uf,
                save,
                load + uf + save,
                n(stats.merged_records),
                n(stats.profiles)
            );
            store.close().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Imports a benchmark's orders file, strictly and without a progress bar.
async fn import_orders(
    config: &Config,
    store: &SqlStore,
    clock: &dyn Clock,
    file: &std::path::Path,
) -> Result<winback_store::ingest::IngestReport> {
    let job = winback_app::ingest::FileJob {
        kind: SourceKind::Orders,
        file,
        mapping: None,
        mode: Mode::Strict,
        strict: false,
    };
    import::import_file(config, store, clock, job, true, None).await
}

/// A model for `bench fit`.
#[derive(Debug, Clone, Copy)]
pub struct ModelArg(winback_scoring::ModelKind);

impl clap::ValueEnum for ModelArg {
    fn value_variants<'a>() -> &'a [Self] {
        use winback_scoring::ModelKind::*;
        &[ModelArg(Bgnbd), ModelArg(Mbgnbd), ModelArg(ParetoNbd)]
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.as_str()))
    }
}

/// Runs lifetimes through `bench/lifetimes_*.py`; `None` (with the reason printed) when it
/// cannot run.
fn lifetimes(python: &str, script: &str, args: &[String]) -> Option<serde_json::Value> {
    match std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
    {
        Ok(o) if o.status.success() => serde_json::from_slice(&o.stdout).ok(),
        Ok(o) => {
            println!(
                "lifetimes failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            None
        }
        Err(e) => {
            println!("lifetimes not run: cannot start {python}: {e}");
            None
        }
    }
}

/// Fits a purchase model with winback and with lifetimes on the same synthetic histories, and
/// times P(alive), expected purchases and CLV for every customer at the same parameters.
fn bench_fit(
    kind: winback_scoring::ModelKind,
    customers: usize,
    python: &str,
    dir: &std::path::Path,
) -> Result<()> {
    use winback_scoring::{ClvSettings, Frequency, GammaGamma, GammaGammaParams, Predictor, group};
    std::fs::create_dir_all(dir)?;
    // The published CDNOW parameters generate the population; spend varies per customer.
    let truth = [0.2426, 4.4135, 0.7929, 2.4258];
    let histories = winback_synth::bgnbd_histories(customers, truth, 11);
    let monetary = |i: usize, x: f64| {
        if x > 0.0 {
            15.0 + (i * 7919 % 6000) as f64 / 100.0
        } else {
            0.0
        }
    };
    let csv_path = dir.join(format!("fit-{customers}.csv"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    writeln!(w, "frequency,recency,T,monetary")?;
    for (i, (x, tx, t)) in histories.iter().enumerate() {
        writeln!(w, "{x},{tx},{t},{}", monetary(i, *x))?;
    }
    w.flush()?;
    let data: Vec<Frequency> = histories
        .iter()
        .map(|&(x, t_x, t)| Frequency { x, t_x, t })
        .collect();
    let start = Instant::now();
    let grouped = group(&data);
    let fit = kind
        .fit(&grouped)
        .with_context(|| format!("winback's {} fit", kind.label()))?;
    let ours = start.elapsed().as_secs_f64();
    let names = kind.param_names();
    let shown = |p: &[f64]| -> String {
        names
            .iter()
            .zip(p)
            .map(|(n, v)| format!("{n} {v:.6}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "winback {} on {} customers ({} distinct histories): fit {:.3} s (grouping included), {}, log-likelihood {:.2}, {} iterations",
        kind.label(),
        n(customers as u64),
        n(grouped.len() as u64),
        ours,
        shown(&fit.params),
        fit.log_likelihood,
        fit.iterations
    );
    let model = fit.model();
    let gg_params = GammaGammaParams {
        p: 6.25,
        q: 3.74,
        gamma: 15.44,
    };
    let gg = GammaGamma(gg_params);
    let settings = ClvSettings::default();
    let horizon = 90.0 / 7.0;
    let start = Instant::now();
    let (mut alive, mut expected, mut value) = (0.0, 0.0, 0.0);
    // As scoring predicts: once per distinct history.
    let mut predictor = Predictor::new(&model, horizon, settings);
    for (i, h) in data.iter().enumerate() {
        let p = predictor.predict(*h);
        alive += p.p_alive;
        expected += p.expected_purchases;
        value += p.clv(gg.expected_value(h.x, monetary(i, h.x)), &settings);
    }
    let predict = start.elapsed().as_secs_f64();
    println!(
        "winback predictions for {} customers (P(alive), expected purchases in 90 days, 12-month CLV): {:.3} s; totals {:.4} / {:.4} / {:.2}",
        n(customers as u64),
        predict,
        alive,
        expected,
        value
    );
    let ours_json: serde_json::Value = names
        .iter()
        .zip(&fit.params)
        .map(|(n, v)| ((*n).to_owned(), serde_json::json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let args = [
        kind.as_str().to_owned(),
        csv_path.display().to_string(),
        ours_json.to_string(),
        serde_json::json!({"p": gg_params.p, "q": gg_params.q, "v": gg_params.gamma}).to_string(),
        horizon.to_string(),
    ];
    let Some(v) = lifetimes(python, "bench/lifetimes_fit.py", &args) else {
        return Ok(());
    };
    let theirs: Vec<f64> = names
        .iter()
        .map(|k| v["params"][k].as_f64().unwrap_or(f64::NAN))
        .collect();
    let rel = fit
        .params
        .iter()
        .zip(&theirs)
        .map(|(a, b)| ((a - b) / b).abs())
        .fold(0.0, f64::max);
    let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "lifetimes 0.11.3 on the same data: fit {:.3} s, {}",
        get("fit_seconds"),
        shown(&theirs)
    );
    println!(
        "lifetimes predictions at winback's parameters: {:.3} s; totals {:.4} / {:.4} / {:.2}",
        get("predict_seconds"),
        get("p_alive_sum"),
        get("expected_sum"),
        get("clv_sum")
    );
    let diff = [
        (alive, get("p_alive_sum")),
        (expected, get("expected_sum")),
        (value, get("clv_sum")),
    ]
    .iter()
    .map(|(a, b)| ((a - b) / b).abs())
    .fold(0.0, f64::max);
    println!(
        "ratio: fit {:.1}× faster, largest relative parameter difference {:.2e}; predictions {:.1}× faster, totals agree to {:.2e}",
        get("fit_seconds") / ours,
        rel,
        get("predict_seconds") / predict,
        diff
    );
    Ok(())
}

/// Computes features from synthetic orders: in memory, optionally through the store, and with
/// lifetimes' summary on the same file.
async fn bench_features(
    config: &Config,
    clock: &dyn Clock,
    orders: u64,
    with_store: bool,
    python: &str,
    dir: &std::path::Path,
) -> Result<()> {
    use winback_domain::{FactSet, OrderFact, ProfileFacts};
    std::fs::create_dir_all(dir)?;
    let file = dir.join(format!("orders-{orders}.csv"));
    if !file.exists() {
        winback_synth::orders_only(orders, 7, clock.now(), &file)?;
    }
    // Read the file with the orders importer into facts the way the store's scan hands them
    // over: counted orders, grouped per customer, in time order.
    let mut set = FactSet {
        categories: vec![String::new()],
        profiles: Vec::new(),
    };
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut rows = 0u64;
    let options = config.import_options(clock.now())?;
    for row in winback_import::open(SourceKind::Orders, &file, &options, None)? {
        let row = row.map_err(|r| anyhow::anyhow!("{}", r.error))?;
        for item in row.items {
            let winback_import::Item::Order(o) = item else {
                continue;
            };
            rows += 1;
            if !o.status.counts_as_purchase() {
                continue;
            }
            let i = *index
                .entry(o.customer.as_str().to_owned())
                .or_insert_with(|| {
                    set.profiles.push(ProfileFacts {
                        profile_id: set.profiles.len() as i64 + 1,
                        currency: Some(o.total.currency().to_string()),
                        ..ProfileFacts::default()
                    });
                    set.profiles.len() - 1
                });
            set.profiles[i].orders.push(OrderFact {
                at: o.ordered_at,
                total_minor: o.total.minor(),
                discounted: o.discount.minor() > 0,
                category: 0,
            });
        }
    }
    for p in &mut set.profiles {
        p.orders.sort_by_key(|o| o.at);
    }
    let now = clock.now();
    let t = Instant::now();
    let features = crate::score::compute_features(&set, now);
    let compute = t.elapsed().as_secs_f64();
    println!(
        "winback features of {} customers from {} orders, in memory: {:.3} s = {:.1}M rows/s",
        n(features.len() as u64),
        n(rows),
        compute,
        rows as f64 / compute / 1e6
    );
    if with_store {
        let (store, url) = fresh_store("sqlite", dir, "features").await?;
        let report = import_orders(config, &store, clock, &file).await?;
        anyhow::ensure!(report.committed, "{:?}", report.errors);
        let t = Instant::now();
        let facts = store.profile_facts(winback_store::FactScope::All).await?;
        let scan = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let f = crate::score::compute_features(&facts, now);
        let compute = t.elapsed().as_secs_f64();
        println!(
            "winback through the store ({url}): scan {:.2} s = {:.2}M rows/s, compute {:.3} s; {} profiles, end to end {:.2}M rows/s",
            scan,
            rows as f64 / scan / 1e6,
            compute,
            n(f.len() as u64),
            rows as f64 / (scan + compute) / 1e6
        );
        store.close().await;
    }
    let args = [file.display().to_string()];
    if let Some(v) = lifetimes(python, "bench/lifetimes_summary.py", &args) {
        let secs = v["seconds"].as_f64().unwrap_or(f64::NAN);
        println!(
            "lifetimes 0.11.3 summary_data_from_transaction_data on the same orders: {:.2} s = {:.2}M rows/s; ratio (in memory): {:.0}×",
            secs,
            rows as f64 / secs / 1e6,
            secs / compute
        );
    }
    Ok(())
}

/// Customers of whom about 4% share a phone, 3% an address and family name, and 3% an email
/// written differently (Gmail dots, +tags) with another record.
fn write_identity_customers(count: u64, path: &std::path::Path) -> Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        w,
        "customer_id,email,phone,last_name,address1,postal_code,city,country"
    )?;
    for i in 1..=count {
        // In every block of 100 customers, records 1-4 share the block head's phone, 5-7 its
        // address and family name, 8-10 its Gmail address written another way.
        let k = i % 100;
        let base = if (1..=10).contains(&k) { i - k } else { i };
        let email = if (8..=10).contains(&k) {
            format!("p.erson{base}+shop@gmail.com")
        } else {
            format!("person{i}@gmail.com")
        };
        let phone = if (1..=4).contains(&k) { base } else { i };
        let addr_id = if (5..=7).contains(&k) { base } else { i };
        writeln!(
            w,
            "C{i},{email},+316{:08},Family{addr_id},Street {addr_id},{:04} AB,Town,NL",
            10_000_000 + phone % 50_000_000,
            1000 + addr_id % 9000
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_whole_units_and_keeps_minor_digits() {
        assert_eq!(money(26_994_016, "EUR"), "269,940.16 EUR");
        assert_eq!(money(-1205, "EUR"), "-12.05 EUR");
        assert_eq!(money(7, "EUR"), "0.07 EUR");
        assert_eq!(money(1_234_567, "JPY"), "1,234,567 JPY");
        assert_eq!(money(5, "???"), "5 ??? (minor units)");
        assert_eq!(n(1_000), "1,000");
    }
}
