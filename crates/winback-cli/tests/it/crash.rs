//! The crash test: `winback worker` processes (four on one PostgreSQL, one on SQLite) send a
//! campaign through a real SMTP conversation to a sink on loopback while the test kills a random
//! worker with SIGKILL every second or two and starts it again. Midway some contacts
//! unsubscribe. Then: at most one message per idempotency key reached the sink, every message
//! ended sent, failed, dropped or in doubt, nothing is left claimed, no sent message is missing
//! from the sink, and nobody got a message whose send began after their unsubscribe.
//!
//! Size: `WINBACK_CRASH_CONTACTS` (default 1,500 on PostgreSQL, a fifth of that on SQLite).
//! `WINBACK_CRASH_REPORT=FILE` appends the figures as one line of JSON.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use winback_store::SqlStore;
use winback_testkit::{Reply, SmtpSink};

const CAMPAIGN: &str = r#"
[campaign]
name = "crash-NAME"
audience = 'email_ok'
[trigger]
type = "audience"
[holdout]
share = 0.0
[[steps]]
id = "hello"
type = "send"
template = "we-miss-you"
subject = "We miss you, {{ first_name | default('friend') }}"
"#;

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A send window that is open now and for hours to come: closed only for the minute twelve
/// hours away (it wraps around midnight).
fn open_window() -> String {
    let closed = (now_micros() / 60_000_000 + 12 * 60) % 1440;
    let open = (closed + 1) % 1440;
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        open / 60,
        open % 60,
        closed / 60,
        closed % 60
    )
}

/// One store with its folder, config and contacts.
struct Shop {
    dir: PathBuf,
    contacts: usize,
    prefix: &'static str,
}

impl Shop {
    fn new(
        dir: PathBuf,
        db: &str,
        schema: Option<&str>,
        smtp_port: u16,
        contacts: usize,
        prefix: &'static str,
    ) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        let schema = schema.map_or(String::new(), |s| format!("database_schema = \"{s}\"\n"));
        std::fs::write(
            dir.join("winback.toml"),
            format!(
                "database_url = \"{db}\"\n{schema}default_time_zone = \"UTC\"\n\
                 [engine]\nlease_seconds = 5\npoll_seconds = 1\nbatch = 100\nsecret = \"crash-test-engine-secret-0123456789\"\n\
                 [policy]\nsend_window = \"{}\"\nramp = {{ start_share = 1.0 }}\n\
                 [email]\ntransport = \"smtp\"\n\
                 [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\npool = 2\ntimeout_seconds = 10\n\
                 [privacy]\nenforce = false\n\
                 [tokens]\ncurrent = \"k1\"\nkeys = {{ k1 = \"crash-test-token-key-0123456789abcdef\" }}\n",
                open_window()
            ),
        )
        .unwrap();
        let mut customers = String::from("customer_id,email,first_name,email_consent,time_zone\n");
        let mut orders = String::from("order_id,customer_id,ordered_at,total,currency,status\n");
        for i in 0..contacts {
            customers.push_str(&format!(
                "{prefix}{i},{prefix}{i}@example.com,Ann,yes,UTC\n"
            ));
            orders.push_str(&format!(
                "O{prefix}{i},{prefix}{i},2024-01-10T10:00:00Z,40.00,EUR,paid\n"
            ));
            // Repeat buyers too, so `winback score` can fit its purchase model.
            if i % 2 == 0 {
                orders.push_str(&format!(
                    "R{prefix}{i},{prefix}{i},2024-0{}-15T10:00:00Z,25.00,EUR,paid\n",
                    2 + i % 7
                ));
            }
        }
        std::fs::write(dir.join("customers.csv"), customers).unwrap();
        std::fs::write(dir.join("orders.csv"), orders).unwrap();
        // Each store its own campaign name: idempotency keys (and so Message-IDs) are unique within
        // a store, and the two stores share one sink.
        std::fs::write(
            dir.join("crash.toml"),
            CAMPAIGN.replace("NAME", &prefix.to_lowercase()),
        )
        .unwrap();
        let shop = Self {
            dir,
            contacts,
            prefix,
        };
        for args in [
            &["import", "customers", "customers.csv"][..],
            &["import", "orders", "orders.csv"],
            &["score"],
            &["campaigns", "apply", "crash.toml"],
            &[
                "campaigns",
                "start",
                &format!("crash-{}", prefix.to_lowercase()),
            ],
        ] {
            let out = shop.cmd().args(args).output().unwrap();
            assert!(
                out.status.success(),
                "winback {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        shop
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_winback"));
        c.current_dir(&self.dir)
            .env_remove("WINBACK_DATABASE_URL")
            .env_remove("WINBACK_DATABASE_SCHEMA")
            .env_remove("WINBACK_CRASH_CONTACTS")
            .env_remove("WINBACK_CRASH_REPORT");
        c
    }

    fn worker(&self) -> Child {
        self.cmd()
            .arg("worker")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Unsubscribes contacts by importing `email_unsubscribed` events while workers run.
    fn unsubscribe(&self, ids: &[usize]) {
        let mut events = String::new();
        let at = jiff::Timestamp::from_microsecond(now_micros()).unwrap();
        for i in ids {
            events.push_str(&format!(
                "{{\"event_id\":\"unsub-{i}\",\"customer_id\":\"{}{i}\",\"type\":\"email_unsubscribed\",\"occurred_at\":\"{at}\"}}\n",
                self.prefix
            ));
        }
        std::fs::write(self.dir.join("unsub.jsonl"), events).unwrap();
        let out = self
            .cmd()
            .args(["import", "events", "unsub.jsonl"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Figures {
    rows: usize,
    by_state: HashMap<String, usize>,
    active_enrolments: i64,
    /// Message-IDs of rows marked sent.
    sent: Vec<String>,
    in_doubt: Vec<String>,
    /// Rows of unsubscribed contacts whose send began after the unsubscribe.
    late_for_unsubscribed: i64,
    /// Contacts with no message row at all, by external id.
    without_row: Vec<String>,
}

async fn figures(store: &SqlStore, prefix: &str, unsubscribed: &[usize], unsub_at: i64) -> Figures {
    let pool = store.pool();
    let rows = pool
        .fetch("SELECT idempotency_key, state FROM outbox", &[])
        .await
        .unwrap();
    let mut by_state = HashMap::new();
    let (mut sent, mut in_doubt) = (Vec::new(), Vec::new());
    for r in &rows {
        let key = r.text(0).unwrap();
        let state = r.text(1).unwrap();
        let id = winback_channels::email::message_id(&key, "shop.example");
        match state.as_str() {
            "sent" => sent.push(id),
            "in_doubt" => in_doubt.push(id),
            _ => {}
        }
        *by_state.entry(state).or_insert(0) += 1;
    }
    let active_enrolments = pool
        .fetch(
            "SELECT COUNT(*) FROM enrolments WHERE state = 'active'",
            &[],
        )
        .await
        .unwrap()[0]
        .i64(0)
        .unwrap();
    let mut late = 0;
    for i in unsubscribed {
        late += pool
            .fetch(
                "SELECT COUNT(*) FROM outbox o JOIN customers c ON (c.id = o.profile_id OR c.profile_id = o.profile_id) \
                 WHERE c.external_id = $1 AND o.sent_at > $2",
                &[
                    winback_store::db::Val::from(format!("{prefix}{i}")),
                    winback_store::db::Val::from(unsub_at),
                ],
            )
            .await
            .unwrap()[0]
            .i64(0)
            .unwrap();
    }
    let without_row = pool
        .fetch(
            "SELECT c.external_id FROM customers c WHERE NOT EXISTS \
             (SELECT 1 FROM outbox o WHERE o.profile_id = c.id OR o.profile_id = c.profile_id) ORDER BY c.id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    Figures {
        rows: rows.len(),
        by_state,
        active_enrolments,
        sent,
        in_doubt,
        late_for_unsubscribed: late,
        without_row,
    }
}

/// The test PostgreSQL's URL, or `None` with a skip line when it is unreachable (a failure under
/// `CI=true`); `test` names the test in both.
pub(crate) fn pg_url(test: &str) -> Option<String> {
    let url = std::env::var("WINBACK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let reachable = std::net::TcpStream::connect_timeout(
        &url_addr(&url)
            .parse()
            .unwrap_or_else(|_| "127.0.0.1:5432".parse().unwrap()),
        Duration::from_secs(2),
    )
    .is_ok();
    if reachable {
        Some(url)
    } else if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("PostgreSQL at {url} is required under CI=true for the {test}")
    } else {
        eprintln!("SKIP {test}: PostgreSQL at {url} unreachable; set WINBACK_TEST_DATABASE_URL");
        None
    }
}

fn url_addr(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split('/').next().unwrap_or("127.0.0.1:5432");
    if host.contains(':') {
        host.replace("localhost", "127.0.0.1")
    } else {
        format!("{}:5432", host.replace("localhost", "127.0.0.1"))
    }
}

/// A small deterministic generator (no test should depend on the OS's randomness).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_killed_at_random_never_send_twice_nor_lose_a_message() {
    let Some(url) = pg_url("crash test") else {
        return;
    };
    let contacts: usize = std::env::var("WINBACK_CRASH_CONTACTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500);
    // Each message takes the sink 10 ms to accept, so sends are in flight when workers die.
    let sink = SmtpSink::with_rule_and_delay(|_| Reply::Accept, Duration::from_millis(10))
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let schema = format!("crash_{}_{}", std::process::id(), now_micros() % 1_000_000);
    let pg = Shop::new(
        tmp.path().join("pg"),
        &url,
        Some(&schema),
        sink.addr().port(),
        contacts,
        "P",
    );
    let lite_db = format!("sqlite://{}", tmp.path().join("lite/w.db").display());
    let lite = Shop::new(
        tmp.path().join("lite"),
        &lite_db,
        None,
        sink.addr().port(),
        contacts / 5,
        "S",
    );

    let shops = [&pg, &pg, &pg, &pg, &lite];
    let mut workers: Vec<Child> = shops.iter().map(|s| s.worker()).collect();
    let mut rng = Lcg(7);
    let mut kills = 0;
    let start = Instant::now();
    let (mut unsubscribed_pg, mut unsubscribed_lite) = (Vec::new(), Vec::new());
    let mut unsub_at = i64::MAX;
    let pg_store = SqlStore::connect_in_schema(&url, Some(&schema))
        .await
        .unwrap();
    let lite_store = SqlStore::connect(&lite_db).await.unwrap();
    let open = "SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'claimed', 'sending')";
    let not_enrolled_yet = "SELECT COUNT(*) FROM enrolments";
    loop {
        tokio::time::sleep(Duration::from_millis(1000 + rng.next(1000))).await;
        let victim = rng.next(workers.len() as u64) as usize;
        workers[victim].kill().unwrap();
        workers[victim].wait().unwrap();
        kills += 1;
        workers[victim] = shops[victim].worker();
        if kills == 2 {
            // Contacts near the end of the list, most of them not yet sent to.
            unsubscribed_pg = (contacts - 40..contacts).collect();
            unsubscribed_lite = (contacts / 5 - 10..contacts / 5).collect();
            pg.unsubscribe(&unsubscribed_pg);
            lite.unsubscribe(&unsubscribed_lite);
            // Every send that began after this moment must have seen the unsubscribe.
            unsub_at = now_micros();
        }
        let mut busy = 0;
        for store in [&pg_store, &lite_store] {
            busy += store.pool().fetch(open, &[]).await.unwrap()[0]
                .i64(0)
                .unwrap();
            if store.pool().fetch(not_enrolled_yet, &[]).await.unwrap()[0]
                .i64(0)
                .unwrap()
                == 0
            {
                busy += 1;
            }
        }
        if (busy == 0 && kills >= 3) || start.elapsed() > Duration::from_secs(600) {
            break;
        }
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    // Leases of the killed workers run out; one pass of a fresh worker then reaps: claims go
    // back to pending and are sent, sends that began are declared in doubt.
    tokio::time::sleep(Duration::from_secs(6)).await;
    for shop in [&pg, &lite] {
        for _ in 0..3 {
            let out = shop.cmd().args(["worker", "--once"]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    let received = sink.messages();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for m in &received {
        *per_id
            .entry(
                m.message_id
                    .clone()
                    .expect("every message has a Message-ID"),
            )
            .or_insert(0) += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    let got: HashSet<&String> = per_id.keys().collect();
    let mut report = Vec::new();
    for (name, store, shop, unsubscribed) in [
        ("postgres", &pg_store, &pg, &unsubscribed_pg),
        ("sqlite", &lite_store, &lite, &unsubscribed_lite),
    ] {
        let f = figures(store, shop.prefix, unsubscribed, unsub_at).await;
        let lost = f.sent.iter().filter(|id| !got.contains(id)).count();
        let open: usize = ["pending", "claimed", "sending"]
            .iter()
            .map(|s| f.by_state.get(*s).copied().unwrap_or(0))
            .sum();
        report.push(format!(
            "{{\"store\":\"{name}\",\"contacts\":{},\"rows\":{},\"never_enrolled_after_unsubscribing\":{},\"states\":{:?},\"lost\":{lost},\"in_doubt\":{},\"late_for_unsubscribed\":{}}}",
            shop.contacts,
            f.rows,
            f.without_row.len(),
            f.by_state,
            f.in_doubt.len(),
            f.late_for_unsubscribed
        ));
        assert_eq!(
            open, 0,
            "{name}: rows left claimed or pending: {:?}",
            f.by_state
        );
        assert_eq!(f.active_enrolments, 0, "{name}: enrolments not terminal");
        assert_eq!(
            lost, 0,
            "{name}: rows marked sent that never reached the sink"
        );
        assert_eq!(
            f.late_for_unsubscribed, 0,
            "{name}: a send began after an unsubscribe"
        );
        // Every contact is accounted for: one message row each, in a final state, except
        // contacts who unsubscribed before the audience reached them (never enrolled).
        let unsubscribed_ids: HashSet<String> = unsubscribed
            .iter()
            .map(|i| format!("{}{i}", shop.prefix))
            .collect();
        let unexplained: Vec<&String> = f
            .without_row
            .iter()
            .filter(|id| !unsubscribed_ids.contains(*id))
            .collect();
        assert!(
            unexplained.is_empty(),
            "{name}: contacts without a message: {unexplained:?}"
        );
        assert_eq!(
            f.rows + f.without_row.len(),
            shop.contacts,
            "{name}: {:?}",
            f.by_state
        );
    }
    let line = format!(
        "{{\"kills\":{kills},\"received\":{},\"duplicates\":{duplicates},\"seconds\":{:.1},\"stores\":[{}]}}",
        received.len(),
        start.elapsed().as_secs_f64(),
        report.join(",")
    );
    println!("crash test: {line}");
    if let Ok(path) = std::env::var("WINBACK_CRASH_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
    assert!(kills >= 3, "the run should have survived several kills");
    assert_eq!(duplicates, 0, "a message reached the sink twice");
    pg_store.close().await;
    lite_store.close().await;
    let admin = winback_store::db::Pool::connect(&url, None).await.unwrap();
    admin
        .execute(&format!("DROP SCHEMA {schema} CASCADE"), &[])
        .await
        .unwrap();
    admin.close().await;
}
