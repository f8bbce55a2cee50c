//! `winback privacy`: the retention policy (`winback_app::retention`, also run daily by the
//! worker's schedule), subject access exports, erasure, objection, the audit log and the
//! list-hygiene report.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context, Result};
use clap::Subcommand;
use winback_domain::Clock;
use winback_store::privacy::{Outcome, Request};

use crate::config::Config;

pub use winback_app::retention::{RetentionOutcome, retention};

/// `winback privacy …`
#[derive(Debug, Subcommand)]
pub enum PrivacyCommand {
    /// Erase everyone without customer-originated activity (order, human click, visit, login,
    /// survey answer…) for `[privacy] retention_months` (36). Opens do not count.
    Retention {
        /// List who would be erased and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Months without activity (default: `[privacy] retention_months`).
        #[arg(long)]
        months: Option<u32>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Everything stored about one person, as JSON (right of access).
    Export {
        /// Email address, +phone number, customer id or external id.
        key: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erase one person (right to erasure): anonymised, kept out of later imports.
    Erase {
        /// Email address, +phone number, customer id or external id.
        key: String,
    },
    /// Objection to direct marketing: every channel withdrawn at once.
    Object {
        /// Email address, +phone number, customer id or external id.
        key: String,
    },
    /// The latest privacy runs and the people they affected.
    Log {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The list-hygiene report: idle addresses, spam-trap risk, bounces, complaints, merges.
    Hygiene {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `winback privacy …`.
pub async fn run(config: &Config, clock: &dyn Clock, cmd: PrivacyCommand) -> Result<ExitCode> {
    let store = crate::open_store(config).await?;
    let now = clock.now();
    let code = match cmd {
        PrivacyCommand::Retention {
            dry_run,
            months,
            json,
        } => {
            let months = months.unwrap_or(config.privacy.retention_months);
            anyhow::ensure!(months >= 1, "--months: at least 1");
            let out = retention(&store, now, months, config.privacy.notice_days, dry_run).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_retention(&out, months);
            }
            ExitCode::SUCCESS
        }
        PrivacyCommand::Export { ref key, .. }
        | PrivacyCommand::Erase { ref key }
        | PrivacyCommand::Object { ref key } => {
            let request = match &cmd {
                PrivacyCommand::Export { .. } => Request::Export,
                PrivacyCommand::Erase { .. } => Request::Erase,
                _ => Request::Object,
            };
            let Some(profile) = store.find_profile(key).await? else {
                eprintln!(
                    "no person `{key}` (already erased, or give an email, +phone, customer id or external id)"
                );
                store.close().await;
                return Ok(ExitCode::from(3));
            };
            match store.privacy_request(request, profile, "cli", now).await? {
                Outcome::Exported(data) => {
                    let text = serde_json::to_string_pretty(&data)?;
                    match &cmd {
                        PrivacyCommand::Export {
                            out: Some(path), ..
                        } => {
                            crate::campaigns::write_atomic(path, text.as_bytes())
                                .with_context(|| format!("writing {}", path.display()))?;
                            println!("wrote {} (profile {profile})", path.display());
                        }
                        _ => println!("{text}"),
                    }
                }
                Outcome::Erased(Some(e)) => println!(
                    "erased profile {}: {} records anonymised, {} identifiers kept only as salted hashes, {} queued messages dropped",
                    e.profile_id, e.records, e.hashes, e.messages_dropped
                ),
                Outcome::Erased(None) => println!("profile {profile} was already erased"),
                Outcome::Objected(dropped) => println!(
                    "profile {profile}: marketing consent withdrawn on every channel, {dropped} queued messages dropped"
                ),
            }
            ExitCode::SUCCESS
        }
        PrivacyCommand::Log { limit, json } => {
            let (runs, entries) = store.privacy_log(limit.clamp(1, 100_000)).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"runs": runs, "entries": entries})
                    )?
                );
            } else {
                println!(
                    "{:>5}  {:<10} {:<8} {:>8}  started",
                    "run", "kind", "dry run", "people"
                );
                for r in &runs {
                    println!(
                        "{:>5}  {:<10} {:<8} {:>8}  {}",
                        r.id,
                        r.kind,
                        if r.dry_run { "yes" } else { "no" },
                        r.affected,
                        r.started_at
                    );
                }
                println!();
                for e in &entries {
                    println!(
                        "run {:>4}  profile {:>8}  {:<12} {}",
                        e.run_id, e.profile_id, e.action, e.reason
                    );
                }
            }
            ExitCode::SUCCESS
        }
        PrivacyCommand::Hygiene { json } => {
            let h = store.hygiene(now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&h)?);
            } else {
                print_hygiene(&h);
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

fn print_retention(out: &RetentionOutcome, months: u32) {
    let verb = if out.dry_run { "would erase" } else { "erased" };
    println!(
        "Retention ({months} months, activity before {}): {verb} {} people; {} wait for their answer to the retention notice. Run {}.",
        out.cutoff.date_local(),
        out.erased.len(),
        out.waiting_for_answer.len(),
        out.run_id
    );
    for c in out.erased.iter().take(50) {
        println!(
            "  profile {:>8}  last activity {} ({})",
            c.profile_id,
            c.last_activity.at.date_local(),
            c.last_activity.basis
        );
    }
    if out.erased.len() > 50 {
        println!("  … and {} more (--json lists all)", out.erased.len() - 50);
    }
}

/// Prints the list-hygiene report.
pub fn print_hygiene(h: &winback_store::privacy::Hygiene) {
    println!(
        "List hygiene ({} people with an email address)",
        h.addresses
    );
    println!(
        "  idle 6+ months:  {:>7}  {}",
        h.idle_6m,
        winback_report::present::percent_of(h.idle_6m, h.addresses)
    );
    println!(
        "  idle 12+ months: {:>7}  {}  ← spam-trap risk: abandoned addresses get recycled as traps",
        h.idle_12m,
        winback_report::present::percent_of(h.idle_12m, h.addresses)
    );
    println!(
        "  idle 24+ months: {:>7}  {}",
        h.idle_24m,
        winback_report::present::percent_of(h.idle_24m, h.addresses)
    );
    println!(
        "  never engaged:   {:>7}  {}",
        h.never_engaged,
        winback_report::present::percent_of(h.never_engaged, h.addresses)
    );
    println!(
        "  hard bounces suppressed {}, soft-bounce suppressions {}, complaints {} ({:.3}% of {} emails sent)",
        h.hard_bounces,
        h.soft_bounce_suppressions,
        h.complaints,
        100.0 * h.complaint_rate,
        h.emails_sent
    );
    println!(
        "  duplicates merged by identity resolution {}, unsubscribed by sunset {}, erased people {} ({} identifiers kept as salted hashes)",
        h.duplicates_merged, h.sunset, h.erased_profiles, h.erased_identities
    );
    if h.look_alike_addresses > 0 {
        println!(
            "  look-alike addresses {} (letters from another script or full-width, e.g. {}): check them before mailing",
            h.look_alike_addresses,
            h.look_alike_examples.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use winback_domain::{ManualClock, Timestamp};
    use winback_store::SqlStore;

    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::new(s.parse().unwrap())
    }

    async fn import(store: &SqlStore, kind: winback_import::SourceKind, text: &'static str) {
        let opts = winback_import::ImportOptions::new(at("2021-03-01T12:00:00Z"));
        let rows = winback_import::from_reader(
            kind,
            "test.csv".into(),
            std::io::Cursor::new(text),
            &opts,
            None,
        )
        .unwrap();
        let report = winback_store::ingest::ingest(
            store,
            rows,
            &winback_store::ingest::IngestOptions {
                file: "test.csv".into(),
                mode: winback_store::ingest::Mode::Strict,
                max_errors: 10,
                batch_rows: 100,
                now: at("2021-03-01T12:00:00Z"),
            },
            |_| {},
            |_| {},
        )
        .await
        .unwrap();
        assert!(report.committed, "{:?}", report.errors);
    }

    #[test]
    fn the_notice_example_is_the_campaign_retention_waits_for() {
        let text = include_str!("../../../examples/campaigns/retention-notice.toml");
        let c = winback_engine::Campaign::parse("retention-notice.toml", text).unwrap();
        assert_eq!(c.name, winback_app::retention::NOTICE_CAMPAIGN);
    }

    #[test]
    fn the_cutoff_is_calendar_months_in_utc() {
        assert_eq!(
            winback_app::retention::cutoff(at("2024-03-02T10:00:00Z"), 36).unwrap(),
            at("2021-03-02T10:00:00Z")
        );
        // 29 February minus a year is 28 February.
        assert_eq!(
            winback_app::retention::cutoff(at("2024-02-29T00:00:00Z"), 12).unwrap(),
            at("2023-02-28T00:00:00Z")
        );
    }

    /// The worker runs the retention policy on its own, once a day, with the clock it is given:
    /// 36 months and a day after the last order the customer is erased, the other is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_worker_erases_after_36_months_and_a_day_once_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            database_url: format!("sqlite://{}", dir.path().join("w.db").display()),
            ..Config::default()
        };
        config.email.outbox_dir = dir.path().join("outbox").display().to_string();
        // The worker's clock is years behind the database's on purpose.
        config.engine.max_clock_skew_seconds = 0;
        let store = crate::open_store(&config).await.unwrap();
        import(
            &store,
            winback_import::SourceKind::Customers,
            "customer_id,email,email_consent,created_at\nGONE,gone@example.nl,yes,2020-01-01T00:00:00Z\nSTAYS,stays@example.nl,yes,2020-01-01T00:00:00Z\n",
        )
        .await;
        import(
            &store,
            winback_import::SourceKind::Orders,
            "order_id,customer_id,ordered_at,total,currency,status\nO1,GONE,2021-03-01T10:00:00Z,40.00,EUR,paid\nO2,STAYS,2021-03-05T10:00:00Z,40.00,EUR,paid\n",
        )
        .await;
        let clock = ManualClock::new(at("2024-03-01T10:00:00Z"));
        let pass = |config: &Config, clock: &ManualClock| {
            let config = config.clone();
            let clock = clock.clone();
            async move {
                crate::campaigns::worker_until(
                    &config,
                    winback_app::worker::Role::Full,
                    true,
                    &clock,
                    async {},
                )
                .await
                .unwrap();
            }
        };
        // Exactly 36 months: not yet.
        pass(&config, &clock).await;
        assert!(
            store
                .find_profile("gone@example.nl")
                .await
                .unwrap()
                .is_some()
        );
        // Twelve hours later the morning's run still counts: nothing runs.
        clock.advance_seconds(12 * 3_600);
        pass(&config, &clock).await;
        let (runs, _) = store.privacy_log(10).await.unwrap();
        assert_eq!(runs.len(), 1, "one retention run per day");
        // 36 months, a day and an hour after the last order: erased.
        clock.advance_seconds(13 * 3_600);
        pass(&config, &clock).await;
        assert!(
            store
                .find_profile("gone@example.nl")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .find_profile("stays@example.nl")
                .await
                .unwrap()
                .is_some()
        );
        let (runs, entries) = store.privacy_log(10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].affected, 1);
        assert_eq!(entries.len(), 1);
        assert!(
            entries[0].reason.contains("36 months"),
            "{}",
            entries[0].reason
        );
        store.close().await;
    }
}
