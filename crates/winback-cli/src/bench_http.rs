//! `winback bench http` (the ingest API and tracking redirects over loopback) and
//! `winback bench render` (personalised MJML emails rendered into signed MIME messages).
//!
//! The HTTP benchmark runs `winback serve`'s router on 127.0.0.1 against a fresh store, and the
//! load from a keep-alive client in the same process: on a 2-core machine the client, the server
//! and the database share both cores, as they would on one small host.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use winback_channels::{Claims, Purpose};
use winback_domain::{Clock, SystemClock};
use winback_engine::ports::{Dispatch, OfferView};

use crate::Config;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs the ingest and redirect measurements.
#[allow(clippy::too_many_arguments)]
pub async fn http(
    config: &Config,
    target: &str,
    events: u64,
    batch: u64,
    redirects: u64,
    concurrency: usize,
    contacts: u64,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let (store, url) = crate::report::fresh_store(target, dir, "http").await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = config.keyring()?;
    let mut settings = winback_http::ServerSettings::new(
        "http://127.0.0.1",
        &config.email.shop_name,
        config.import_options(clock.now())?,
    );
    settings.rate_per_second = 10_000_000;
    settings.burst = 10_000_000;
    settings.body_limit = 64 * 1024 * 1024;
    let state =
        winback_http::AppState::new(store.clone(), keys.clone(), clock.clone(), settings, None);
    let key = winback_http::auth::generate();
    store
        .create_api_key(
            "bench",
            &key.prefix,
            &key.hash,
            &["ingest".into()],
            clock.now(),
        )
        .await?;
    store
        .set_links(
            &[("shop".into(), "https://shop.example/".into())],
            clock.now(),
        )
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(winback_http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let base = format!("http://{addr}");
    let auth = format!("Bearer {}", key.secret);

    // Contacts to attach events and messages to.
    let mut body = String::new();
    for i in 0..contacts {
        body.push_str(&format!(
            "{{\"customer_id\":\"B{i}\",\"email\":\"b{i}@example.nl\",\"email_consent\":\"yes\"}}\n"
        ));
    }
    let r = client
        .post(format!("{base}/v1/customers"))
        .header("authorization", &auth)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(r.status().is_success(), "customers: {}", r.text().await?);

    // 1. Ingest: NDJSON batches of events from `concurrency` clients.
    let batches = events.div_ceil(batch);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, auth, next) = (client.clone(), base.clone(), auth.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let mut body = String::with_capacity(batch as usize * 120);
                for j in 0..batch {
                    let i = b * batch + j;
                    if i >= events {
                        break;
                    }
                    body.push_str(&format!(
                        "{{\"event_id\":\"bench-{i}\",\"customer_id\":\"B{}\",\"type\":\"site_visited\",\"occurred_at\":\"2026-01-02T10:00:00Z\"}}\n",
                        i % contacts
                    ));
                }
                let started = Instant::now();
                let r = client
                    .post(format!("{base}/v1/events"))
                    .header("authorization", &auth)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "events: {}", r.text().await?);
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut batch_latencies = Vec::new();
    for task in tasks {
        batch_latencies.extend(task.await??);
    }
    let ingest_secs = t.elapsed().as_secs_f64();
    batch_latencies.sort();
    let stored = store
        .pool()
        .fetch(
            "SELECT COUNT(*) FROM events WHERE type = 'site_visited'",
            &[],
        )
        .await?[0]
        .i64(0)?;
    anyhow::ensure!(
        stored as u64 == events,
        "stored {stored} of {events} events"
    );

    // 2. Redirects: one sent message per contact, clicked round-robin.
    store
        .pool()
        .execute(
            "INSERT INTO campaigns (name, status, version, file, created_at, updated_at) VALUES ('bench', 'active', 1, 'bench', 0, 0)",
            &[],
        )
        .await?;
    store
        .pool()
        .execute(
            "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at, recipient, sent_at) \
             SELECT 'bench-' || external_id, (SELECT MAX(id) FROM campaigns), id, id, 's', 'a', 'email', 't', 'sent', 0, 0, email, 0 FROM customers",
            &[],
        )
        .await?;
    let expires = clock.now().as_micros() / 1_000_000 + 86_400;
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..contacts)
            .map(|i| {
                keys.sign(
                    Purpose::Click,
                    &Claims {
                        message: format!("bench-B{i}"),
                        extra: Some("shop".into()),
                        expires,
                    },
                )
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, base, next, tokens) =
            (client.clone(), base.clone(), next.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity((redirects as usize / concurrency) + 1);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= redirects {
                    break;
                }
                let token = &tokens[(i % tokens.len() as u64) as usize];
                let started = Instant::now();
                let r = client
                    .get(format!("{base}/c/{token}"))
                    .header(
                        "user-agent",
                        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148",
                    )
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_redirection(), "redirect: {}", r.status());
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let redirect_secs = t.elapsed().as_secs_f64();
    latencies.sort();
    let _ = stop.send(());
    server.await?.context("server")?;
    let clicks = store
        .pool()
        .fetch(
            "SELECT COUNT(*) FROM events WHERE type = 'email_clicked'",
            &[],
        )
        .await?[0]
        .i64(0)?;
    println!("HTTP on loopback, {url}, {concurrency} concurrent clients, {contacts} contacts");
    println!(
        "  ingest   {events} events in NDJSON batches of {batch}: {:.2} s = {:.0} events/s (target 20,000); batch p50 {:.1} ms, p99 {:.1} ms; all {stored} stored",
        ingest_secs,
        events as f64 / ingest_secs,
        percentile(&batch_latencies, 0.50),
        percentile(&batch_latencies, 0.99),
    );
    println!(
        "  redirect {redirects} clicks: {:.2} s = {:.0} req/s (target 30,000); p50 {:.2} ms, p99 {:.2} ms (target < 5); {clicks} clicks stored",
        redirect_secs,
        redirects as f64 / redirect_secs,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    crate::report::drop_bench_schema(target, &store).await;
    Ok(())
}

/// Renders `messages` personalised emails on `threads` threads: minijinja, MJML, HTML, text,
/// signed links and the MIME message with its headers.
pub fn render(config: &Config, messages: usize, threads: usize) -> Result<()> {
    let composer = config.composer(Arc::new(SystemClock))?;
    let templates = winback_channels::Renderer::templates();
    let locales = ["en-GB", "nl-NL", "pl-PL"];
    let dispatch = |i: usize| Dispatch {
        key: winback_domain::MessageKey::stored(format!("bench/{i}/email")),
        channel: winback_engine::MessageChannel::Email,
        to: format!("c{i}@example.nl"),
        campaign: "we-miss-you".into(),
        step: "miss-you".into(),
        variant: "a".into(),
        template: templates[i % templates.len()].to_owned(),
        subject: Some("{{ first_name | default('Hello') }}, we miss you".into()),
        preheader: Some("Something for {{ first_name | default('you') }}".into()),
        sender_name: None,
        customer: format!("C{i}"),
        first_name: (i % 5 != 0).then(|| format!("Name{i}")),
        locale: Some(locales[i % 3].into()),
        offer: Some(OfferView {
            code: format!("WB-{i:08}"),
            kind: winback_engine::definition::OfferKind::Percent { percent: 15 },
            currency: "EUR".into(),
            description: "15% off".into(),
            expires_at: winback_domain::Timestamp::new(
                "2027-01-01T00:00:00Z".parse().expect("valid"),
            ),
            min_order_minor: 4000,
        }),
        products: vec!["Linen shirt".into(), "Wool socks".into()],
        wallet_pass: None,
    };
    let threads = threads.max(1);
    // Two passes over the same messages: the three rendering stages alone (what the target
    // names), then the whole message (signed links, MIME encoding, headers).
    for whole in [false, true] {
        let t = Instant::now();
        let bytes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    let composer = &composer;
                    s.spawn(move || -> Result<usize> {
                        let mut total = 0;
                        for i in (k..messages).step_by(threads) {
                            let d = dispatch(i);
                            total += if whole {
                                composer
                                    .compose(&d)
                                    .with_context(|| format!("message {i}"))?
                                    .formatted()
                                    .len()
                            } else {
                                let r = composer
                                    .renderer()
                                    .render(&d, &composer.links(&d))
                                    .with_context(|| format!("message {i}"))?;
                                r.html.len() + r.text.len()
                            };
                        }
                        Ok(total)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("render thread"))
                .sum::<Result<usize>>()
        })?;
        let secs = t.elapsed().as_secs_f64();
        let rate = messages as f64 / secs;
        println!(
            "{}: {messages} messages ({} templates × en/nl/pl) on {threads} thread(s): {secs:.2} s = {rate:.0}/s, {:.0}/s per thread (target 10,000 per core); {:.1} KB per message",
            if whole {
                "whole message (+ signed links, MIME)"
            } else {
                "render (minijinja → MJML → HTML + text)"
            },
            templates.len(),
            rate / threads as f64,
            bytes as f64 / messages as f64 / 1024.0
        );
    }
    Ok(())
}
