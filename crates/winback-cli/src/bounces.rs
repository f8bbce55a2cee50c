//! `winback bounces import`: reads the return-path mailbox (an mbox file, a Maildir, or single
//! `.eml` messages) for delivery status notifications and complaint reports and applies them as
//! `/v1/webhooks/dsn` does. Reading the same mailbox again applies nothing twice.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use winback_channels::reports;
use winback_domain::Clock;
use winback_store::SqlStore;

/// `winback bounces …`
#[derive(Debug, Subcommand)]
pub enum BouncesCommand {
    /// Apply the bounce (RFC 3464) and complaint (ARF, RFC 5965) reports in mailboxes: mbox
    /// files, Maildir folders or `.eml` files. The mailbox is left as it is.
    Import {
        /// Mailboxes to read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `bounces` command.
pub async fn run(store: &SqlStore, clock: &dyn Clock, command: BouncesCommand) -> Result<()> {
    match command {
        BouncesCommand::Import { paths, json } => {
            let mut parsed = Vec::new();
            let mut skipped = Vec::new();
            let mut messages = 0u64;
            for path in &paths {
                let mailbox = reports::read_mailbox(path)
                    .with_context(|| format!("cannot read the mailbox {}", path.display()))?;
                for m in mailbox {
                    messages += 1;
                    match reports::parse(&m.raw) {
                        Ok(r) => parsed.push((m.origin, r)),
                        Err(e) => skipped.push((m.origin, e.to_string())),
                    }
                }
            }
            let now = clock.now();
            let (list, read) = winback_app::mail_events::from_reports(store, now, &parsed).await?;
            let applied = winback_app::mail_events::apply(store, now, list).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "messages": messages,
                        "read": read,
                        "applied": applied,
                        "skipped": skipped.iter().map(|(o, why)| serde_json::json!({"message": o, "reason": why})).collect::<Vec<_>>(),
                    }))?
                );
                return Ok(());
            }
            let kinds = |k: &str| parsed.iter().filter(|(_, r)| r.kind == k).count();
            println!(
                "{messages} message(s) read: {} delivery status notification(s), {} complaint report(s), {} other mail skipped",
                kinds("dsn"),
                kinds("arf"),
                skipped.len()
            );
            let v = |k: &str| read.verdicts.get(k).copied().unwrap_or(0);
            println!(
                "recipients: {} hard bounce(s), {} soft, {} caused by the sender (policy or reputation: nobody suppressed), {} complaint(s), {} delayed or delivered (nothing to do)",
                v("hard"),
                v("soft"),
                v("sender"),
                v("complaint"),
                v("informational")
            );
            println!(
                "{} matched to their message; {} address(es) suppressed; {} event(s) stored; {} already applied; {} about no customer; {} named no recipient",
                read.matched_messages,
                applied.suppressed,
                applied.events,
                applied.duplicates,
                applied.unknown_recipients,
                read.unnamed
            );
            for (origin, why) in skipped.iter().take(10) {
                println!("  skipped {origin}: {why}");
            }
            if skipped.len() > 10 {
                println!("  … and {} more skipped", skipped.len() - 10);
            }
            Ok(())
        }
    }
}
