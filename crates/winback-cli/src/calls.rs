//! `winback calls`: the call lists journeys fill for customer service, and agents' outcomes
//! from a call centre's file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use winback_app::config::Config;
use winback_domain::Clock;

/// Call lists and outcomes.
#[derive(Debug, clap::Subcommand)]
pub enum CallsCommand {
    /// Who to call on a list now, with why and what to offer (the callable first); and who is
    /// held back, by reason.
    List {
        /// The list's name, as the campaign's call step names it.
        name: String,
        /// Write the list as CSV to this file (formula-looking cells defused).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record agents' outcomes from a CSV file (`task` or `list` + `customer_id`, `outcome`,
    /// `reason`, `agent`, `note`, `at`, `id`; English or Dutch headers; `,` or `;`). Any row
    /// refused: nothing is stored.
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// Runs a `calls` command.
pub async fn run(config: &Config, clock: &dyn Clock, cmd: CallsCommand) -> Result<ExitCode> {
    let settings = config.call_settings()?;
    let store = crate::open_store(config).await?;
    let code = match cmd {
        CallsCommand::List { name, out, json } => {
            let list = store.call_list(&name, &settings, clock.now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if let Some(path) = out {
                let dir = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let tmp = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("creating a file in {}", dir.display()))?;
                winback_app::calls::write_call_list(&list, std::io::BufWriter::new(tmp.as_file()))
                    .with_context(|| format!("writing {}", path.display()))?;
                tmp.persist(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!(
                    "{} to call on `{name}` written to {}",
                    list.rows.len(),
                    path.display()
                );
            } else {
                println!(
                    "{:<6} {:<12} {:<22} {:<16} {:<6} {:<12} {:<15} offer",
                    "task", "customer", "name", "phone", "now", "window", "stage"
                );
                for r in &list.rows {
                    println!(
                        "{:<6} {:<12} {:<22} {:<16} {:<6} {:<12} {:<15} {}",
                        r.task,
                        r.customer_id,
                        r.name.as_deref().unwrap_or("-"),
                        r.phone,
                        if r.callable_now { "yes" } else { "later" },
                        r.window,
                        r.stage.as_deref().unwrap_or("-"),
                        r.offer_code.as_deref().unwrap_or("-"),
                    );
                }
                println!("{} to call on `{name}`.", list.rows.len());
            }
            if !json {
                for (why, n) in &list.held_back {
                    println!("  held back: {n} {}", why.replace('_', " "));
                }
            }
            ExitCode::SUCCESS
        }
        CallsCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let opts = config.import_options(clock.now())?;
            let dates = winback_import::DateParser::new(
                opts.default_time_zone.time_zone(),
                opts.date_order,
                None,
            );
            let name = file.display().to_string();
            let done = winback_app::calls::import_outcomes(
                &store,
                &settings,
                &name,
                &text,
                &dates,
                clock.now(),
            )
            .await?;
            if done.errors.is_empty() {
                println!(
                    "{name}: {} outcomes recorded, {} already recorded before",
                    done.recorded, done.repeats
                );
                ExitCode::SUCCESS
            } else {
                eprintln!("{name}: REFUSED: nothing was stored");
                for e in done.errors.iter().take(20) {
                    eprintln!("  {e}");
                }
                ExitCode::from(2)
            }
        }
    };
    store.close().await;
    Ok(code)
}
