//! `winback serve` (tracking links, preference centre, surveys and the `/v1` API) and
//! `winback keys` (API keys: create, list, revoke).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Subcommand;
use winback_domain::Clock;

use crate::Config;

/// `winback keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// A name to recognise it by.
        name: String,
        /// Scopes (comma-separated): ingest, webhooks, read, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
    },
    /// List keys (prefix, name, scopes, created, revoked, last used).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke keys by prefix (`wbk_1a2b3c4d`) or name; refused from the next request on.
    Revoke {
        /// Prefix or name.
        key: String,
    },
    /// Print a fresh random secret (32 bytes, base64url) for `[tokens]` or `[engine] secret`.
    Secret,
}

/// Runs `winback keys …`.
pub async fn keys(config: &Config, clock: &dyn Clock, cmd: KeysCommand) -> Result<ExitCode> {
    if let KeysCommand::Secret = cmd {
        use base64::Engine as _;
        use rand_core::RngCore as _;
        let mut bytes = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut bytes);
        println!(
            "{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store = crate::open_store(config).await?;
    let code = match cmd {
        KeysCommand::Create { name, scopes } => {
            let scopes = winback_http::auth::parse_scopes(&scopes).map_err(anyhow::Error::msg)?;
            let key = winback_http::auth::generate();
            store
                .create_api_key(&name, &key.prefix, &key.hash, &scopes, clock.now())
                .await?;
            println!("{}", key.secret);
            eprintln!(
                "key `{name}` ({}) with scopes {}: store it now, it is not shown again",
                key.prefix,
                scopes.join(", ")
            );
            ExitCode::SUCCESS
        }
        KeysCommand::List { json } => {
            let list = store.api_keys().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no API keys; create one with `winback keys create NAME --scopes ingest`");
            } else {
                println!(
                    "{:<14} {:<20} {:<28} {:<22} status",
                    "prefix", "name", "scopes", "created"
                );
                for k in list {
                    let status = match (k.revoked_at, k.last_used_at) {
                        (Some(t), _) => format!("revoked {t}"),
                        (None, Some(t)) => format!("last used {t}"),
                        (None, None) => "never used".into(),
                    };
                    println!(
                        "{:<14} {:<20} {:<28} {:<22} {status}",
                        k.prefix,
                        k.name,
                        k.scopes.join(","),
                        k.created_at.to_string()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { key } => {
            let n = store.revoke_api_key(&key, clock.now()).await?;
            if n == 0 {
                eprintln!("no active key with prefix or name `{key}`");
                ExitCode::from(3)
            } else {
                println!("revoked {n} key(s)");
                ExitCode::SUCCESS
            }
        }
        KeysCommand::Secret => unreachable!("answered before the store is opened"),
    };
    store.close().await;
    Ok(code)
}

/// `winback admin`
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Create a dashboard administrator or change their password (read from standard input,
    /// one line, or from `WINBACK_ADMIN_PASSWORD`); their sessions end.
    SetPassword {
        /// The administrator's name.
        name: String,
    },
}

/// Runs `winback admin`.
pub async fn admin(config: &Config, clock: &dyn Clock, cmd: AdminCommand) -> Result<ExitCode> {
    let AdminCommand::SetPassword { name } = cmd;
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 64 && !name.chars().any(char::is_control),
        "the administrator's name must be 1 to 64 printable characters"
    );
    let password = match std::env::var("WINBACK_ADMIN_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            eprintln!("password for {name} (one line on standard input):");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    anyhow::ensure!(
        password.chars().count() >= 12,
        "the password must be at least 12 characters"
    );
    let hash = winback_http::dashboard::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    let store = crate::open_store(config).await?;
    store.set_admin_password(name, &hash, clock.now()).await?;
    store.close().await;
    println!(
        "administrator {name} can log in at {}/admin",
        config.email.public_url.trim_end_matches('/')
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `winback serve` until Ctrl-C or SIGTERM, then lets requests in flight finish; with
/// `worker`, the engine's passes run in the same process and stop at the same signal.
pub async fn serve(config: &Config, listen: Option<String>, worker: bool) -> Result<ExitCode> {
    config.refuse_builtin_secrets()?;
    let store = crate::open_store(config).await?;
    let clock: Arc<dyn Clock> = Arc::new(winback_domain::SystemClock);
    store
        .set_links(
            &[("shop".into(), config.email.shop_url.clone())],
            clock.now(),
        )
        .await?;
    let mut settings = winback_http::ServerSettings::from_config(config, clock.now())?;
    if !store.has_admins().await? {
        println!(
            "winback serve: no dashboard administrator yet; create one with `winback admin set-password NAME`"
        );
    }
    let sms = if config.sms.url.is_empty() {
        None
    } else {
        Some(winback_channels::sms::HttpSms::new(
            config.sms.clone(),
            &config.email.shop_name,
            clock.clone(),
        ))
    };
    let addr = listen.unwrap_or_else(|| config.server.listen.clone());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let dashboard = settings.listen_at(local, config.public_url_configured());
    println!(
        "winback serve: listening on http://{local} (links in messages point at {})",
        config.email.public_url
    );
    println!("winback serve: open the dashboard at {dashboard}");
    let state = winback_http::AppState::new(store.clone(), config.keyring()?, clock, settings, sms);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = async {
        winback_http::serve(listener, state, stopped(stop_rx.clone()))
            .await
            .context("serving")
    };
    // With `--worker`, everything a worker does; without, the refresh of what the API
    // ingests (a separate `winback worker` sends, scores and enforces retention).
    let role = if worker {
        winback_app::worker::Role::Full
    } else {
        winback_app::worker::Role::RefreshOnly
    };
    // A worker that fails (a clock off the database's) stops the service too.
    let ((), code) = tokio::try_join!(
        server,
        crate::campaigns::worker_until(
            config,
            role,
            false,
            &winback_domain::SystemClock,
            stopped(stop_rx.clone())
        )
    )?;
    println!("winback serve: stopped");
    store.close().await;
    Ok(code)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
