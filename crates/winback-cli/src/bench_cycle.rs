//! `winback bench cycle`: the whole life of a shop, measured step by step. Every step is a
//! `winback` process of its own, started from this binary as a user would start it, so that its
//! wall time and its peak resident memory are its own (each reports its kernel high-water mark,
//! `VmHWM`, at exit), and nothing is shared between steps but the database:
//!
//! 1. synthesise a shop with events;
//! 2. the initial load (customers, orders with lines, events; each import refreshes the
//!    features it touched, and customers and orders also resolve identities), then scoring;
//! 3. the example campaigns applied and started, and the first worker pass (W workers at once);
//! 4. the report (JSON and HTML), then `winback serve` with each dashboard page and
//!    `GET /v1/report` timed through HTTP;
//! 5. a daily delta: one simulated day's orders and events (about 1% of customers ordering, 10%
//!    engaging), half the events through files and half through `POST /v1/events`, the worker's
//!    pass that day, and the next day's pass;
//! 6. on PostgreSQL, for each of `--also-workers`, step 3's pass and step 5 again with that many
//!    workers, on a copy of the database as it stood before the first pass.
//!
//! The table goes to standard output and to `--out` (Markdown), ready for `BENCHMARKS.md`.

use std::{
    fmt::Write as _,
    fs::File,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use winback_domain::Timestamp;

/// `winback bench cycle`
#[derive(Debug, Args)]
pub struct CycleArgs {
    /// Customers in the synthetic shop.
    #[arg(long, default_value_t = 100_000)]
    pub customers: u64,
    /// `sqlite` (a fresh file in `--dir`) or a `postgres://` URL (a fresh database is created
    /// next to the one named, and dropped at the end unless `--keep`).
    #[arg(long, default_value = "sqlite")]
    pub target: String,
    /// Worker processes for each worker pass (PostgreSQL; SQLite serialises writers).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// PostgreSQL: more worker counts to measure on the same load, e.g. `2,4`. The database is
    /// copied (`CREATE DATABASE … TEMPLATE`) as it stands before the first worker pass; after
    /// the cycle, each count runs the first pass, the day's delta and both daily passes on a
    /// fresh copy, so the load is measured once and the passes start from the same state.
    #[arg(long, value_delimiter = ',')]
    pub also_workers: Vec<usize>,
    /// Folder for the shop's files, the database and the logs.
    #[arg(long, default_value = "target/bench/cycle")]
    pub dir: PathBuf,
    /// A folder of campaign files to apply and start (default: the example programme built
    /// into the binary, written to DIR/campaigns).
    #[arg(long)]
    pub campaigns: Option<PathBuf>,
    /// Random seed of the shop.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Reuse the shop's files in `--dir` when they are there (synthesis is then not measured).
    #[arg(long)]
    pub reuse_files: bool,
    /// Keep the PostgreSQL database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Where to write the Markdown table (default: DIR/cycle-TARGET-N.md).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The Python that runs the database's own ceiling for the events import (its standard
    /// `sqlite3` module; `psql` for PostgreSQL). When it cannot run, the step says so.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Leave out the ceiling step: at a million customers SQLite's plain inserts of the same
    /// events take about an hour (the table then says it was left out).
    #[arg(long)]
    pub no_ceiling: bool,
}

/// The ceiling measurement: the same events by the database's plainest fast path.
const CEILING_SCRIPT: &str = include_str!("../../../bench/ingest_ceiling.py");

/// One measured step.
#[derive(Debug, Clone)]
struct Step {
    name: String,
    seconds: f64,
    /// Peak resident memory of the step's process(es), in KiB; the largest of them when several
    /// ran at once.
    peak_kib: u64,
    note: String,
}

/// A finished child process.
struct Finished {
    seconds: f64,
    peak_kib: u64,
    stdout: String,
    /// Every process's log, one after the other (the phases they logged).
    stderr: String,
}

/// The shop's clock: the synthetic history ends at `day0`, the delta is the day after.
struct Clocks {
    day0: Timestamp,
}

impl Clocks {
    fn at(&self, days: i64) -> String {
        self.day0.plus_seconds(days * 86_400).to_string()
    }
}

struct Runner {
    exe: PathBuf,
    database: String,
    /// Fresh link and engine keys for this run (the built-in development keys are refused).
    secrets: [String; 2],
    outbox: PathBuf,
    logs: PathBuf,
    clocks: Clocks,
    steps: Vec<Step>,
}

impl Runner {
    fn command(&self, day: i64, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args)
            .env("WINBACK_DATABASE_URL", &self.database)
            .env("WINBACK_NOW", self.clocks.at(day))
            // The shop's clock is not the database's: the skew check would refuse it.
            .env("WINBACK_ENGINE__MAX_CLOCK_SKEW_SECONDS", "0")
            .env("WINBACK_TOKENS__CURRENT", "k1")
            .env("WINBACK_TOKENS__KEYS__K1", &self.secrets[0])
            .env("WINBACK_ENGINE__SECRET", &self.secrets[1])
            .env("WINBACK_EMAIL__OUTBOX_DIR", &self.outbox)
            // Imports, scoring, the worker and the report log where their time went; the notes
            // show it.
            .env(
                "WINBACK_LOG",
                "warn,winback::import=info,winback::score=info,winback::worker=info,winback::report=info",
            )
            .stdin(Stdio::null());
        c
    }

    fn log(&self, name: &str, stream: &str) -> Result<File> {
        let path = self.logs.join(format!("{}.{stream}", slug(name)));
        File::create(&path).with_context(|| format!("creating {}", path.display()))
    }

    /// Runs `args` in `n` processes at once and waits for all; fails if any fails.
    fn run_n(&self, name: &str, day: i64, n: usize, args: &[&str]) -> Result<Finished> {
        let started = Instant::now();
        let mut children = Vec::new();
        for i in 0..n.max(1) {
            let tag = if n > 1 {
                format!("{name}-{i}")
            } else {
                name.to_owned()
            };
            let out_path = self.logs.join(format!("{}.out", slug(&tag)));
            let peak_path = self.logs.join(format!("{}.peak", slug(&tag)));
            let child = self
                .command(day, args)
                .env(PEAK_FILE_ENV, &peak_path)
                .stdout(Stdio::from(self.log(&tag, "out")?))
                .stderr(Stdio::from(self.log(&tag, "err")?))
                .spawn()
                .with_context(|| format!("starting {}", self.exe.display()))?;
            children.push((tag, child, out_path, peak_path));
        }
        let mut peak = 0;
        let mut stdout = String::new();
        let mut stderr = String::new();
        for (tag, child, out_path, peak_path) in children {
            let (ok, kib) = wait(child, &peak_path)?;
            peak = peak.max(kib);
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            let err = std::fs::read_to_string(self.logs.join(format!("{}.err", slug(&tag))))
                .unwrap_or_default();
            if !ok {
                anyhow::bail!(
                    "step `{tag}` (winback {}) failed:\n{}",
                    args.join(" "),
                    err.lines().rev().take(20).collect::<Vec<_>>().join("\n")
                );
            }
            stdout.push_str(&text);
            stderr.push_str(&err);
        }
        Ok(Finished {
            seconds: started.elapsed().as_secs_f64(),
            peak_kib: peak,
            stdout,
            stderr,
        })
    }

    fn step(
        &mut self,
        name: &str,
        day: i64,
        args: &[&str],
        note: impl FnOnce(&Finished) -> String,
    ) -> Result<Finished> {
        self.step_n(name, day, 1, args, note)
    }

    fn step_n(
        &mut self,
        name: &str,
        day: i64,
        n: usize,
        args: &[&str],
        note: impl FnOnce(&Finished) -> String,
    ) -> Result<Finished> {
        eprintln!("  {name} …");
        let f = self.run_n(name, day, n, args)?;
        let step = Step {
            name: name.to_owned(),
            seconds: f.seconds,
            peak_kib: f.peak_kib,
            note: note(&f),
        };
        self.record(step);
        Ok(f)
    }

    /// Keeps a step for the table and prints it at once: a run stopped before its end (hours
    /// in, at a million customers) still leaves every step it measured in its log.
    fn record(&mut self, step: Step) {
        eprintln!(
            "  {}: {:.2} s{}{}",
            step.name,
            step.seconds,
            if step.peak_kib > 0 {
                format!(", {:.0} MB", step.peak_kib as f64 / 1024.0)
            } else {
                String::new()
            },
            if step.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", step.note)
            }
        );
        self.steps.push(step);
    }
}

impl Runner {
    /// An import step, noted with its rows per second, the features refresh's share and where
    /// the import session's time went. Returns (rows, seconds without the refresh).
    fn import(&mut self, name: &str, day: i64, args: &[&str]) -> Result<(u64, f64)> {
        let mut full = vec!["import"];
        full.extend_from_slice(args);
        full.extend(["--json", "--quiet"]);
        let err_log = self.logs.join(format!("{}.err", slug(name)));
        let mut out = (0, 0.0);
        self.step(name, day, &full, |f| {
            let rows = rows_ok(&f.stdout);
            let refresh = features_seconds(&f.stdout);
            out = (rows, f.seconds - refresh);
            let mut note = rate(rows, f);
            if refresh > 0.0 {
                let _ = write!(
                    note,
                    "; features refresh {refresh:.1} s, so {}/s without it",
                    crate::report::n((rows as f64 / (f.seconds - refresh).max(1e-9)) as u64)
                );
            }
            let phases = logged_phases(&std::fs::read_to_string(&err_log).unwrap_or_default());
            if !phases.is_empty() {
                let _ = write!(note, "; {phases}");
            }
            note
        })?;
        Ok(out)
    }

    /// The database's own ceiling for the rows the events import stored (`bench/
    /// ingest_ceiling.py`), as a step of its own, with winback's rate as a ratio to it.
    fn ceiling(&mut self, dir: &Path, python: &str, winback: (u64, f64)) -> Result<()> {
        let script = dir.join("ingest_ceiling.py");
        std::fs::write(&script, CEILING_SCRIPT)
            .with_context(|| format!("writing {}", script.display()))?;
        let (kind, source, scratch) = match self.database.strip_prefix("sqlite://") {
            Some(path) => ("sqlite", path.to_owned(), dir.join("ceiling.db")),
            None => (
                "postgres",
                self.database.clone(),
                dir.join("ceiling-events.tsv"),
            ),
        };
        let name = if kind == "sqlite" {
            "ceiling: the same events by plain executemany (Python sqlite3, same schema)"
        } else {
            "ceiling: the same events by plain COPY (psql \\copy, same table definition)"
        };
        eprintln!("  {name} …");
        let output = Command::new(python)
            .arg(&script)
            .args([kind, &source])
            .arg(&scratch)
            .stdin(Stdio::null())
            .output();
        let (seconds, note) = match output {
            Ok(o) if o.status.success() => {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout)
                    .context("reading the ceiling script's JSON")?;
                let rows = v["rows"].as_u64().unwrap_or(0);
                let seconds = v["seconds"].as_f64().unwrap_or(0.0);
                let ceiling = rows as f64 / seconds.max(1e-9);
                let ours = winback.0 as f64 / winback.1.max(1e-9);
                (
                    seconds,
                    format!(
                        "{} rows, {}/s; winback's import without the refresh: {}/s = {:.2} of it",
                        crate::report::n(rows),
                        crate::report::n(ceiling as u64),
                        crate::report::n(ours as u64),
                        ours / ceiling.max(1e-9)
                    ),
                )
            }
            Ok(o) => (
                0.0,
                format!(
                    "not measured: the script failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                        .replace('|', "/")
                ),
            ),
            Err(e) => (0.0, format!("not measured: cannot run {python}: {e}")),
        };
        eprintln!("  {name}: {seconds:.1} s ({note})");
        self.steps.push(Step {
            name: name.to_owned(),
            seconds,
            peak_kib: 0,
            note,
        });
        Ok(())
    }

    /// Adds the store's journeys and messages so far to the last step's note.
    fn add_totals(&mut self, day: i64) -> Result<()> {
        let counts = self.run_n(
            &format!("counts-{day}"),
            day,
            1,
            &["campaigns", "list", "--json"],
        )?;
        let (enrolled, messages) = totals(&counts.stdout);
        if let Some(last) = self.steps.last_mut() {
            last.note = format!(
                "{}; in all {} journeys, {} messages",
                last.note,
                crate::report::n(enrolled),
                crate::report::n(messages)
            );
        }
        Ok(())
    }
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// The environment variable naming the file where a `winback` process writes its peak resident
/// memory when it ends (see [`report_peak_memory`]).
pub const PEAK_FILE_ENV: &str = "WINBACK_PEAK_MEMORY_FILE";

/// At exit, when [`PEAK_FILE_ENV`] names a file: writes this process's peak resident memory in
/// KiB (`VmHWM` of `/proc/self/status`, the kernel's high-water mark) to it. The cycle reads it
/// after each step; `wait4`'s `ru_maxrss` would need `unsafe`, which the workspace forbids.
pub fn report_peak_memory() {
    let Some(path) = std::env::var_os(PEAK_FILE_ENV) else {
        return;
    };
    if let Some(kib) = peak_kib_of("self") {
        // Best effort: a step without the figure shows none.
        let _ = std::fs::write(path, kib.to_string());
    }
}

fn peak_kib_of(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Waits for `child`; (success, peak resident KiB as the child reported it in `peak_file`).
fn wait(mut child: std::process::Child, peak_file: &Path) -> Result<(bool, u64)> {
    let status = child.wait().context("waiting for a step's process")?;
    let kib = std::fs::read_to_string(peak_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let _ = std::fs::remove_file(peak_file);
    Ok((status.success(), kib))
}

fn rows_ok(import_json: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(import_json)
        .ok()
        .and_then(|v| {
            v["imports"].as_array().map(|a| {
                a.iter()
                    .filter_map(|i| i["report"]["rows_ok"].as_u64())
                    .sum()
            })
        })
        .unwrap_or(0)
}

/// Seconds the features refresh after an import took (`winback import --json`).
fn features_seconds(import_json: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(import_json)
        .ok()
        .and_then(|v| v["features"]["seconds"].as_f64())
        .unwrap_or(0.0)
}

/// A step's phases from its `winback::import` and `winback::score` log lines
/// (`name_s=seconds` fields), summed over the lines, as "event rows 12.3 s, ids 0.4 s, …".
fn logged_phases(log: &str) -> String {
    let mut phases: Vec<(String, f64)> = Vec::new();
    for line in log.lines().filter(|l| {
        [
            "winback::import",
            "winback::score",
            "winback::worker",
            "winback::report",
        ]
        .iter()
        .any(|t| l.contains(t))
    }) {
        for field in line.split_whitespace() {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let (Some(key), Ok(value)) = (key.strip_suffix("_s"), value.parse::<f64>()) else {
                continue;
            };
            let key = key.replace('_', " ");
            match phases.iter_mut().find(|(k, _)| *k == key) {
                Some((_, total)) => *total += value,
                None => phases.push((key, value)),
            }
        }
    }
    // Parts that took no time (the events parts of a customers import) say nothing.
    phases
        .iter()
        .filter(|(_, v)| *v >= 0.001)
        .map(|(k, v)| {
            if *v >= 0.1 {
                format!("{k} {v:.1} s")
            } else {
                format!("{k} {v:.3} s")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn rate(n: u64, f: &Finished) -> String {
    format!(
        "{} rows, {}/s",
        crate::report::n(n),
        crate::report::n((n as f64 / f.seconds.max(1e-9)) as u64)
    )
}

/// Creates a fresh PostgreSQL database beside the one `url` names; returns its URL and name.
async fn fresh_postgres(url: &str) -> Result<(String, String)> {
    let name = format!("winback_cycle_{}", std::process::id());
    Ok((create_postgres(url, &name, None).await?, name))
}

/// The URL of database `name` on the server `url` names.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    format!("{prefix}/{name}{query}")
}

/// Creates database `name` on the server `url` names (dropping a previous `name`), empty or as
/// a copy of `template`; returns its URL. No session may be connected to `template` meanwhile,
/// and none is: every step's process has exited.
async fn create_postgres(url: &str, name: &str, template: Option<&str>) -> Result<String> {
    let admin = winback_store::db::Pool::connect(url, None)
        .await
        .context("connecting to PostgreSQL")?;
    admin
        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
        .await?;
    let create = match template {
        Some(t) => format!("CREATE DATABASE {name} TEMPLATE {t}"),
        None => format!("CREATE DATABASE {name}"),
    };
    admin
        .execute(&create, &[])
        .await
        .with_context(|| format!("creating database {name}"))?;
    admin.close().await;
    Ok(database_url(url, name))
}

async fn drop_postgres(url: &str, name: &str) {
    if let Ok(admin) = winback_store::db::Pool::connect(url, None).await {
        let _ = admin
            .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
            .await;
        admin.close().await;
    }
}

/// Runs `winback bench cycle`.
pub async fn run(args: CycleArgs) -> Result<()> {
    anyhow::ensure!(
        args.also_workers.is_empty() || args.target != "sqlite",
        "--also-workers needs a PostgreSQL --target (SQLite serialises writers)"
    );
    let dir = std::path::absolute(&args.dir)?;
    let shop = dir.join(format!("shop-{}", args.customers));
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    // Found before an hour of imports, not after: a path relative to another folder than the
    // one the run started in once failed there.
    let campaigns = match &args.campaigns {
        Some(given) => {
            let given = std::path::absolute(given)?;
            anyhow::ensure!(
                given.is_dir(),
                "--campaigns {}: no such folder",
                given.display()
            );
            given
        }
        None => {
            let built_in = dir.join("campaigns");
            std::fs::create_dir_all(&built_in)?;
            for (name, text) in crate::examples::EXAMPLES {
                std::fs::write(built_in.join(name), text)
                    .with_context(|| format!("writing {}", built_in.join(name).display()))?;
            }
            built_in
        }
    };
    let exe = std::env::current_exe().context("finding the winback binary")?;
    let (database, pg) = if args.target == "sqlite" {
        let path = dir.join(format!("cycle-{}.db", args.customers));
        for suffix in ["", "-wal", "-shm"] {
            // A previous run's database; absent on the first run.
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        (format!("sqlite://{}", path.display()), None)
    } else {
        let (url, name) = fresh_postgres(&args.target).await?;
        (url, Some(name))
    };
    // Noon UTC today: the history ends here, the delta is tomorrow.
    let today = jiff::Timestamp::now().as_second().div_euclid(86_400) * 86_400 + 12 * 3600;
    let day0 = Timestamp::new(jiff::Timestamp::from_second(today)?);
    let secret = || {
        use base64::Engine as _;
        use rand_core::RngCore as _;
        let mut bytes = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let outbox = dir.join("outbox");
    // A previous run's messages; absent on the first run.
    let _ = std::fs::remove_dir_all(&outbox);
    let mut r = Runner {
        exe,
        database: database.clone(),
        secrets: [secret(), secret()],
        outbox,
        logs,
        clocks: Clocks { day0 },
        steps: Vec::new(),
    };
    let result = cycle(&mut r, &args, &dir, &shop, &campaigns, pg.as_deref()).await;
    if let (Some(name), false) = (&pg, args.keep) {
        drop_postgres(&args.target, name).await;
    }
    if let Some(name) = &pg {
        // The copy taken before the first pass, and the last extra count's database.
        drop_postgres(&args.target, &format!("{name}_before_pass")).await;
        if !args.keep {
            for w in &args.also_workers {
                drop_postgres(&args.target, &format!("{name}_w{w}")).await;
            }
        }
    }
    result?;

    let table = markdown(&r.steps, &args, &database);
    println!("{table}");
    let out = args.out.clone().unwrap_or_else(|| {
        let target = if args.target == "sqlite" {
            "sqlite"
        } else {
            "postgres"
        };
        dir.join(format!(
            "cycle-{target}-{}-w{}.md",
            args.customers, args.workers
        ))
    });
    std::fs::write(&out, &table).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

async fn cycle(
    r: &mut Runner,
    args: &CycleArgs,
    dir: &Path,
    shop: &Path,
    campaigns: &Path,
    pg: Option<&str>,
) -> Result<()> {
    let n = args.customers.to_string();
    let seed = args.seed.to_string();
    let shop_s = shop.display().to_string();
    let files_there = shop.join("events.jsonl").exists() && shop.join("customers.csv").exists();
    if !(args.reuse_files && files_there) {
        r.step(
            "synthesise the shop",
            0,
            &[
                "synth",
                "--customers",
                &n,
                "--seed",
                &seed,
                "--out",
                &shop_s,
            ],
            |f| f.stdout.trim().to_owned(),
        )?;
    }
    let path = |f: &str| shop.join(f).display().to_string();
    let (customers, orders, items, events) = (
        path("customers.csv"),
        path("orders.csv"),
        path("order_items.csv"),
        path("events.jsonl"),
    );
    r.import(
        "import customers (+ resolve, features)",
        0,
        &["customers", &customers],
    )?;
    r.import(
        "import orders with lines (+ resolve, features)",
        0,
        &["orders", &orders, "--items", &items],
    )?;
    // Events carry no identifiers: their import refreshes features only.
    let events_import = r.import("import events (+ features)", 0, &["events", &events])?;
    if args.no_ceiling {
        r.record(Step {
            name: "ceiling for the same events".into(),
            seconds: 0.0,
            peak_kib: 0,
            note: "not measured: left out with --no-ceiling".into(),
        });
    } else {
        r.ceiling(dir, &args.python, events_import)?;
    }
    let score_log = r
        .logs
        .join(format!("{}.err", slug("score (fit, stages, priorities)")));
    r.step("score (fit, stages, priorities)", 0, &["score"], |_| {
        logged_phases(&std::fs::read_to_string(&score_log).unwrap_or_default())
    })?;
    let campaigns = campaigns.display().to_string();
    r.step(
        "apply the example campaigns",
        0,
        &["campaigns", "apply", &campaigns],
        |_| String::new(),
    )?;
    let list = r.run_n("list", 0, 1, &["campaigns", "list", "--json"])?;
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&list.stdout)
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    anyhow::ensure!(
        !names.is_empty(),
        "no campaigns were applied from {campaigns}"
    );
    let started = Instant::now();
    let mut peak = 0;
    let mut count = 0;
    for name in &names {
        // The retention notice is the shop's choice (the README); the rest run.
        if name == winback_app::retention::NOTICE_CAMPAIGN {
            continue;
        }
        let f = r.run_n(
            &format!("start {name}"),
            0,
            1,
            &["campaigns", "start", name],
        )?;
        peak = peak.max(f.peak_kib);
        count += 1;
    }
    r.record(Step {
        name: "start the campaigns".into(),
        seconds: started.elapsed().as_secs_f64(),
        peak_kib: peak,
        note: format!("{count} campaigns"),
    });
    let workers = args.workers;
    let snapshot = match pg {
        Some(name) if !args.also_workers.is_empty() => {
            let copy = format!("{name}_before_pass");
            let t = Instant::now();
            create_postgres(&args.target, &copy, Some(name)).await?;
            eprintln!(
                "  copied the database before the first pass in {:.1} s (not a step)",
                t.elapsed().as_secs_f64()
            );
            Some(copy)
        }
        _ => None,
    };
    first_pass(r, "", workers)?;
    r.step("report --json", 0, &["report", "--json"], |f| {
        logged_phases(&f.stderr)
    })?;
    let html = r.logs.join("report.html").display().to_string();
    r.step("report --html", 0, &["report", "--html", &html], |f| {
        logged_phases(&f.stderr)
    })?;

    // The service: dashboard pages and the report through HTTP, as of day 0.
    let port = free_port()?;
    let mut serve = Serve::start(r, 0, port)?;
    let pages = pages(&serve, &names).await;
    let peak = serve.stop()?;
    let pages = pages?;
    for (page, secs) in &pages {
        r.record(Step {
            name: format!("page {page}"),
            seconds: *secs,
            peak_kib: 0,
            note: String::new(),
        });
    }
    r.record(Step {
        name: "winback serve (all pages above)".into(),
        seconds: pages.iter().map(|p| p.1).sum(),
        peak_kib: peak,
        note: "peak of the service process".into(),
    });

    // Day 1: the delta.
    let day_dir = shop.join("day1");
    let t = Instant::now();
    let (day, stats) = winback_synth::daily_delta(
        args.customers,
        args.seed,
        r.clocks.day0.plus_seconds(12 * 3600),
        &day_dir,
    )?;
    r.record(Step {
        name: "synthesise day 1".into(),
        seconds: t.elapsed().as_secs_f64(),
        peak_kib: 0,
        note: format!(
            "{} orders, {} lines, {} file events, {} API events",
            stats.orders, stats.items, stats.file_events, stats.api_events
        ),
    });
    delta(r, &day, "", workers).await?;
    // More worker counts, each on a copy of the store as it stood before the first pass.
    if let (Some(name), Some(snapshot)) = (pg, &snapshot) {
        let main_database = r.database.clone();
        if !args.keep {
            // Measured; dropped now so that at most two copies of a large store share the disk.
            drop_postgres(&args.target, name).await;
        }
        for &w in &args.also_workers {
            let copy = format!("{name}_w{w}");
            r.database = create_postgres(&args.target, &copy, Some(snapshot)).await?;
            r.outbox = dir.join(format!("outbox-w{w}"));
            // A previous run's messages; absent on the first run.
            let _ = std::fs::remove_dir_all(&r.outbox);
            let prefix = format!("{w} workers: ");
            first_pass(r, &prefix, w)?;
            delta(r, &day, &prefix, w).await?;
            if !args.keep {
                drop_postgres(&args.target, &copy).await;
            }
        }
        r.database = main_database;
    }
    Ok(())
}

/// The campaigns' first worker pass with `workers` processes at once; `prefix` names the run.
fn first_pass(r: &mut Runner, prefix: &str, workers: usize) -> Result<()> {
    r.step_n(
        &format!("{prefix}first worker pass (with the nightly scoring and retention it finds due)"),
        0,
        workers,
        &["worker", "--once"],
        worker_note,
    )?;
    r.add_totals(0)
}

/// The daily delta: day 1's files imported, its API events posted, then day 1's and day 2's
/// worker passes with `workers` processes each; `prefix` names the run.
async fn delta(
    r: &mut Runner,
    day: &winback_synth::DayFiles,
    prefix: &str,
    workers: usize,
) -> Result<()> {
    let (orders, items, events) = (
        day.orders.display().to_string(),
        day.items.display().to_string(),
        day.events.display().to_string(),
    );
    r.import(
        &format!("{prefix}day 1: import orders"),
        1,
        &["orders", &orders, "--items", &items],
    )?;
    r.import(
        &format!("{prefix}day 1: import events"),
        1,
        &["events", &events],
    )?;
    let port = free_port()?;
    let mut serve = Serve::start(r, 1, port)?;
    let posted = post_events(&serve, &day.api_events).await;
    let peak = serve.stop()?;
    let (sent, secs) = posted?;
    r.record(Step {
        name: format!("{prefix}day 1: POST /v1/events (NDJSON, 1,000 per request, 4 clients)"),
        seconds: secs,
        peak_kib: peak,
        note: format!(
            "{} events, {}/s",
            crate::report::n(sent),
            crate::report::n((sent as f64 / secs.max(1e-9)) as u64)
        ),
    });
    r.step_n(
        &format!("{prefix}day 1: worker pass"),
        1,
        workers,
        &["worker", "--once"],
        worker_note,
    )?;
    r.step_n(
        &format!("{prefix}day 2: worker pass"),
        2,
        workers,
        &["worker", "--once"],
        worker_note,
    )?;
    r.add_totals(2)
}

fn totals(list_json: &str) -> (u64, u64) {
    let v: serde_json::Value = serde_json::from_str(list_json).unwrap_or_default();
    let a = v.as_array().cloned().unwrap_or_default();
    // Each campaign's counts are by state: {"active": 10, "held_out": 4}.
    let sum = |key: &str| -> u64 {
        a.iter()
            .filter_map(|c| c[key].as_object())
            .flat_map(|m| m.values().filter_map(serde_json::Value::as_u64))
            .sum()
    };
    (sum("enrolments"), sum("messages"))
}

/// A worker step's note: what the engine did, then where the time went (the nightly scoring's
/// parts and the engine's: exits, schedule, step, dispatch with its claim, prepare, deliver and
/// finish), summed over the workers.
fn worker_note(f: &Finished) -> String {
    let phases = logged_phases(&f.stderr);
    match (worker_lines(&f.stdout), phases.is_empty()) {
        (lines, true) => lines,
        (lines, false) => format!("{lines}; {phases}"),
    }
}

/// What the worker pass(es) printed about the engine: "enrolled …, sent …" per worker.
fn worker_lines(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| l.contains("enrolled"))
        .filter_map(|l| l.split_once(": ").map(|(_, rest)| rest.to_owned()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `winback serve` as a child process, with an administrator and an API key.
struct Serve {
    child: Option<std::process::Child>,
    peak_file: PathBuf,
    base: String,
    key: String,
    password: String,
}

impl Serve {
    fn start(r: &Runner, day: i64, port: u16) -> Result<Self> {
        let base = format!("http://127.0.0.1:{port}");
        let password = "bench-cycle-password".to_owned();
        let mut admin = r.command(day, &["admin", "set-password", "bench"]);
        let status = admin
            .env("WINBACK_ADMIN_PASSWORD", &password)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "winback admin set-password failed");
        let key = r
            .command(
                day,
                &["keys", "create", "bench-cycle", "--scopes", "ingest,read"],
            )
            .stderr(Stdio::null())
            .output()?;
        anyhow::ensure!(key.status.success(), "winback keys create failed");
        let key = String::from_utf8_lossy(&key.stdout).trim().to_owned();
        let listen = format!("127.0.0.1:{port}");
        let peak_file = r.logs.join(format!("serve-{port}.peak"));
        let child = r
            .command(day, &["serve", "--listen", &listen])
            .env("WINBACK_EMAIL__PUBLIC_URL", &base)
            .env(PEAK_FILE_ENV, &peak_file)
            .stdout(Stdio::from(r.log(&format!("serve-{port}"), "out")?))
            .stderr(Stdio::from(r.log(&format!("serve-{port}"), "err")?))
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "winback serve did not listen on {listen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            child: Some(child),
            peak_file,
            base,
            key,
            password,
        })
    }

    /// Stops the service (SIGTERM) and returns its peak resident KiB.
    fn stop(&mut self) -> Result<u64> {
        let Some(child) = self.child.take() else {
            return Ok(0);
        };
        // SIGTERM, so that it shuts down as in production and reports its peak; std's `kill`
        // sends SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        Ok(wait(child, &self.peak_file)?.1)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?;
            let (k, val) = first.split_once('=')?;
            (k.trim() == name).then(|| val.to_owned())
        })
}

/// Logs in as an administrator would and times each page once, cold: (page, seconds).
async fn pages(serve: &Serve, campaigns: &[String]) -> Result<Vec<(String, f64)>> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(3600))
        .build()?;
    let base = &serve.base;
    let login = client.get(format!("{base}/admin/login")).send().await?;
    let login_cookie = cookie(&login, "winback_login").context("no login cookie")?;
    let body = login.text().await?;
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("no CSRF field on the login page")?
        .to_owned();
    let resp = client
        .post(format!("{base}/admin/login"))
        .header("origin", base.as_str())
        .header("cookie", format!("winback_login={login_cookie}"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "bench"),
            ("password", serve.password.as_str()),
        ])
        .send()
        .await?;
    let session = cookie(&resp, "winback_admin")
        .with_context(|| format!("the dashboard login was refused ({})", resp.status()))?;
    let mut paths = vec![("overview".to_owned(), "/admin".to_owned())];
    for name in campaigns.iter().take(3) {
        paths.push((
            format!("campaign {name}"),
            format!("/admin/campaigns/{name}"),
        ));
    }
    paths.push((
        "customer search".into(),
        "/admin/customers?q=C0000042".into(),
    ));
    paths.push((
        "customer C0000042".into(),
        "/admin/customers/C0000042".into(),
    ));
    let mut out = Vec::new();
    for (label, path) in paths {
        let t = Instant::now();
        let resp = client
            .get(format!("{base}{path}"))
            .header("cookie", format!("winback_admin={session}"))
            .send()
            .await?;
        let status = resp.status();
        let _ = resp.bytes().await?;
        // The search answers an exact customer id with a redirect to that customer.
        anyhow::ensure!(
            status.is_success() || status.is_redirection(),
            "{path}: {status}"
        );
        out.push((label, t.elapsed().as_secs_f64()));
    }
    let t = Instant::now();
    let resp = client
        .get(format!("{base}/v1/report"))
        .bearer_auth(&serve.key)
        .send()
        .await?;
    let status = resp.status();
    let _ = resp.bytes().await?;
    anyhow::ensure!(status.is_success(), "/v1/report: {status}");
    out.push(("GET /v1/report".into(), t.elapsed().as_secs_f64()));
    Ok(out)
}

/// Posts the NDJSON file in batches of 1,000 from 4 clients: (events, seconds).
async fn post_events(serve: &Serve, file: &Path) -> Result<(u64, f64)> {
    let text = std::fs::read_to_string(file)?;
    let lines: Vec<&str> = text.lines().collect();
    let batches: Vec<String> = lines.chunks(1_000).map(|c| c.join("\n") + "\n").collect();
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let batches = std::sync::Arc::new(batches);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, next, batches) = (client.clone(), next.clone(), batches.clone());
        let url = format!("{}/v1/events", serve.base);
        let auth = format!("Bearer {}", serve.key);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = batches.get(i) else {
                    return anyhow::Ok(());
                };
                let resp = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await?;
                let status = resp.status();
                anyhow::ensure!(
                    status.is_success(),
                    "/v1/events: {status}: {}",
                    resp.text().await?
                );
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok((lines.len() as u64, t.elapsed().as_secs_f64()))
}

fn markdown(steps: &[Step], args: &CycleArgs, database: &str) -> String {
    let target = if args.target == "sqlite" {
        "SQLite".to_owned()
    } else {
        "PostgreSQL".to_owned()
    };
    let mut s = String::new();
    let also: Vec<String> = args.also_workers.iter().map(usize::to_string).collect();
    let (also_title, also_flag) = if also.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!(" (then {} on copies)", also.join(", ")),
            format!(" --also-workers {}", also.join(",")),
        )
    };
    let _ = writeln!(
        s,
        "### {} customers, {target}, {} worker(s) per pass{also_title}\n",
        crate::report::n(args.customers),
        args.workers
    );
    let _ = writeln!(
        s,
        "`winback bench cycle --customers {} --target {} --workers {}{also_flag}`, release build, {} cores; database `{}`.\n",
        args.customers,
        if args.target == "sqlite" {
            "sqlite"
        } else {
            "postgres://…"
        },
        args.workers,
        std::thread::available_parallelism().map_or(0, usize::from),
        crate::config::redact(database)
    );
    let _ = writeln!(s, "| step | wall time | peak memory | notes |");
    let _ = writeln!(s, "| --- | ---: | ---: | --- |");
    for st in steps {
        let peak = if st.peak_kib == 0 {
            "-".to_owned()
        } else {
            format!("{:.0} MB", st.peak_kib as f64 / 1024.0)
        };
        let _ = writeln!(
            s,
            "| {} | {:.2} s | {} | {} |",
            st.name, st.seconds, peak, st.note
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_read_from_plain_log_lines_and_summed() {
        let log = "2026-12-06T04:23:34Z  INFO winback::import: import read file=\"e.jsonl\" waited_for_parser_s=0.25\n\
                   2026-12-06T04:23:42Z  INFO winback::import: import session committed ids_s=1.5 event_rows_s=30.31 engagement_s=0.0 commit_s=2.975e-6\n\
                   2026-12-06T04:23:50Z  INFO winback::import: import read file=\"f.jsonl\" waited_for_parser_s=0.0625\n\
                   2026-12-06T04:23:51Z  WARN winback::other: unrelated slow_s=99\n";
        assert_eq!(
            logged_phases(log),
            "waited for parser 0.3 s, ids 1.5 s, event rows 30.3 s"
        );
        assert_eq!(logged_phases(""), "");
    }

    #[test]
    fn the_features_refresh_is_read_from_the_import_report() {
        assert_eq!(
            features_seconds(r#"{"imports": [], "features": {"profiles": 3, "seconds": 2.5}}"#),
            2.5
        );
        assert_eq!(features_seconds("not json"), 0.0);
    }
}
