//! The dashboard in a real browser: headless Chromium from Debian's packages, driven over the
//! WebDriver protocol by chromedriver. The demo's programme is served by `winback serve`; the
//! test logs in, opens every page, checks the figures against `GET /v1/report`, finds no console
//! errors, and shows that a customer named `<img src=x onerror=alert(1)>` runs no script.
//!
//! The WebDriver client is the dozen lines below over a `TcpStream`: the test needs six commands
//! plus chromedriver's log endpoint, which the Rust WebDriver crates do not expose, and a crate
//! would add an async HTTP stack to a synchronous test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Env, http, text};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(addr: &str, what: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(started.elapsed().as_secs() < 60, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Splits a raw HTTP/1.1 reply into status line and body (decoding a chunked body).
fn reply_body(raw: &str) -> (String, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return (status, body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    (status, out)
}

/// One request and its reply, read up to `Content-Length`: chromedriver keeps the connection
/// open whatever the request says, so reading to the end would wait forever.
fn exchange(addr: &str, request: &str) -> (String, String) {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut length = None;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        }
        None => {
            r.read_to_end(&mut body).unwrap();
        }
    }
    (
        status.trim().to_owned(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

struct Browser {
    driver: Child,
    addr: String,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromedriver: &str) -> Self {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        wait_for(&addr, "chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut b = Self {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": std::env::var("WINBACK_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1280,1000",
                         format!("--user-data-dir={}", b._profile.path().display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        b
    }

    /// One WebDriver command; returns its `value`, panicking on a WebDriver error (an open
    /// `alert()` is one: "unexpected alert open").
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, body) = exchange(
            &self.addr,
            &format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                self.addr,
                body.len()
            ),
        );
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}: {status} {body}"));
        assert!(
            status.contains(" 200"),
            "{method} {path}: {status} {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    fn go(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    fn url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Waits until the current URL satisfies `ok` (a form post navigates asynchronously).
    fn wait_url(&self, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let u = self.url();
            if ok(&u) {
                return u;
            }
            assert!(started.elapsed().as_secs() < 15, "stuck at {u}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            &self.s("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/value")),
            Some(json!({ "text": text })),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/click")),
            Some(json!({})),
        );
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs an asynchronous script; it ends by calling its last argument with the result.
    fn js_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.s("/execute/async"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Resizes the window so the page's viewport is `width` CSS pixels wide.
    fn viewport(&self, width: i64) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": 900})),
        );
        // Headless Chromium's window has no frame, but make sure: widen by the difference.
        let inner = self.js("return window.innerWidth").as_i64().unwrap();
        if inner != width {
            self.call(
                "POST",
                &self.s("/window/rect"),
                Some(json!({"width": 2 * width - inner, "height": 900})),
            );
        }
    }

    /// A PNG of the viewport.
    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call("GET", &self.s("/screenshot"), None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// The console's errors since the last call (chromedriver's log endpoint).
    fn console_errors(&self) -> Vec<String> {
        self.call("POST", &self.s("/se/log"), Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.call("DELETE", &format!("/session/{}", self.session), None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// axe-core, vendored: see `tests/assets/axe-core/README.md`.
const AXE: &str = include_str!("../assets/axe-core/axe.min.js");

/// Where the browser test keeps its screenshots: `target/dashboard-screenshots/`.
fn screenshots() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the open page at its current width: nothing wider than the viewport (tables scroll
/// inside their cards), no serious or critical axe-core violation, and keeps a screenshot.
fn check_page(b: &Browser, width: i64, name: &str) {
    let overflow = b.js(
        "var w = window.innerWidth;          var wide = Array.from(document.querySelectorAll('body *')).filter(function (e) {            if (e.closest('.scroll')) { return false; }            return e.getBoundingClientRect().right > w + 1; })            .slice(0, 5).map(function (e) { return e.tagName + (e.id ? '#' + e.id : '') + (e.className && e.className.baseVal === undefined ? '.' + e.className : ''); });          return [document.documentElement.scrollWidth, w, wide];",
    );
    let (scroll, inner) = (overflow[0].as_i64().unwrap(), overflow[1].as_i64().unwrap());
    assert!(
        scroll <= inner,
        "{name} at {width} px scrolls sideways: {scroll} px wide in {inner}; too wide: {}",
        overflow[2]
    );
    b.js(&format!("{AXE}\nreturn null;"));
    let violations = b.js_async(
        "var done = arguments[arguments.length - 1];          axe.run(document, {resultTypes: ['violations']}).then(function (r) {            done(r.violations.filter(function (v) { return v.impact === 'serious' || v.impact === 'critical'; })              .map(function (v) { return v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 3).map(function (n) { return n.target.join(' '); }).join(', '); }));          }).catch(function (e) { done(['axe failed: ' + e]); });",
    );
    assert_eq!(
        violations,
        json!([]),
        "{name} at {width} px: accessibility violations"
    );
    let file = format!(
        "{width}-{}.png",
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    );
    // The whole page: the window as tall as the document (at most 8,000 px), then back.
    let height = b
        .js("return document.documentElement.scrollHeight")
        .as_i64()
        .unwrap()
        .clamp(600, 8_000);
    let rect = b.call("GET", &b.s("/window/rect"), None);
    b.call(
        "POST",
        &b.s("/window/rect"),
        Some(json!({"width": rect["width"], "height": height})),
    );
    std::fs::write(screenshots().join(file), b.screenshot()).unwrap();
    b.call(
        "POST",
        &b.s("/window/rect"),
        Some(json!({"width": rect["width"], "height": 900})),
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<String> {
    let path =
        std::env::var("WINBACK_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {path} is missing: .ci/run installs Debian's chromium and chromium-driver"
    );
    eprintln!(
        "SKIP dashboard browser test: {path} not found (apt-get install chromium chromium-driver)"
    );
    None
}

#[test]
fn the_dashboard_in_chromium_shows_the_report_figures_and_runs_no_injected_script() {
    let Some(chromedriver) = chromedriver() else {
        return;
    };
    let env = Env::new();
    let out = env.run(&["demo", "--customers", "300", "--months", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let db = format!(
        "sqlite://{}",
        env.path("winback-demo/programme.db").display()
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let base = format!("http://{addr}");
    let run = |args: &[&str]| {
        let out = env
            .cmd()
            .env("WINBACK_DATABASE_URL", &db)
            .env("WINBACK_EMAIL__PUBLIC_URL", &base)
            .env("WINBACK_ADMIN_PASSWORD", "a long dashboard password")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    run(&["admin", "set-password", "marketer"]);
    let read_key = run(&["keys", "create", "dash", "--scopes", "read,ingest"]);
    let server = Server(
        env.cmd()
            .env("WINBACK_DATABASE_URL", &db)
            .env("WINBACK_EMAIL__PUBLIC_URL", &base)
            .args(["serve", "--listen", &addr])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&addr, "winback serve");
    // A customer whose name is markup.
    let evil = "<img src=x onerror=alert(1)>";
    let body = json!({"customer_id": "XSS-1", "email": "evil@example.com", "first_name": evil, "email_consent": "yes"}).to_string();
    let reply = http(
        &addr,
        &format!(
            "POST /v1/customers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {read_key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, api) = reply_body(&http(
        &addr,
        &format!(
            "GET /v1/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {read_key}\r\nConnection: close\r\n\r\n"
        ),
    ));
    let api: Value = serde_json::from_str(&api).unwrap();
    let campaigns = api["campaigns"].as_array().unwrap().clone();
    assert!(!campaigns.is_empty());

    let b = Browser::start(&chromedriver);
    // Not logged in: every page leads to the login form.
    b.go(&format!("{base}/admin"));
    assert!(b.url().ends_with("/admin/login"), "{}", b.url());
    for width in [1440, 390] {
        b.viewport(width);
        b.go(&format!("{base}/admin/login"));
        check_page(&b, width, "login");
    }
    b.viewport(1280);
    b.type_into("#username", "marketer");
    b.type_into("#password", "wrong password!");
    b.click("#login");
    let started = Instant::now();
    while b.js("return document.getElementById('error') !== null") != true {
        assert!(started.elapsed().as_secs() < 15, "no error shown");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        b.js("return document.getElementById('error').textContent"),
        "Wrong name or password."
    );
    b.console_errors(); // the 401 of a refused login is logged by the browser; expected
    b.type_into("#username", "marketer");
    b.type_into("#password", "a long dashboard password");
    b.click("#login");
    b.wait_url(|u| u.ends_with("/admin"));
    let errors = b.console_errors();
    assert!(
        errors.is_empty(),
        "console errors on the overview: {errors:?}"
    );

    // Overview: contacts per campaign as in the API; the base-health chart drawn by uPlot.
    let rows = b.js("return Array.from(document.querySelectorAll('#campaigns tr[data-campaign]')).map(r => [r.dataset.campaign, Number(r.querySelector('[data-k=contacts]').dataset.v)])");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), campaigns.len());
    for c in &campaigns {
        let contacts: i64 = c["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["contacts"].as_i64().unwrap())
            .sum();
        assert!(
            rows.iter().any(|r| r[0] == c["name"] && r[1] == contacts),
            "{} contacts {contacts}: {rows:?}",
            c["name"]
        );
    }
    if !api["base"]["stages"].as_array().unwrap().is_empty() {
        assert_eq!(
            b.js("var c = document.getElementById('health-chart'); return c.dataset.drawn === 'true' && c.querySelector('canvas') !== null"),
            true,
            "uPlot drew the base-health chart"
        );
    }

    // Every campaign page: arms as in the API, the journey graph with a box per step.
    for c in &campaigns {
        let name = c["name"].as_str().unwrap();
        b.go(&format!("{base}/admin/campaigns/{name}"));
        assert_eq!(
            b.js("return document.getElementById('campaign-name').textContent"),
            name
        );
        let arms = b.js("return Array.from(document.querySelectorAll('#arms tr[data-arm]')).map(r => [r.dataset.arm, Number(r.querySelector('[data-k=contacts]').textContent), Number(r.querySelector('[data-k=converted]').textContent), Number(r.querySelector('[data-k=revenue]').dataset.v)])");
        let want: Vec<Value> = c["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                json!([
                    if a["holdout"] == true {
                        "holdout".into()
                    } else {
                        a["variant"].clone()
                    },
                    a["contacts"],
                    a["converted"],
                    a["revenue_minor"]
                ])
            })
            .collect();
        assert_eq!(arms, Value::Array(want), "{name}");
        let steps = b.js("return Array.from(document.querySelectorAll('#journey g.step')).map(g => [g.dataset.step, Number(g.dataset.sent)])");
        let want: Vec<Value> = c["journey"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!([s["id"], s["sent"]]))
            .collect();
        assert_eq!(steps, Value::Array(want), "{name}");
        let sent = b.js("return Array.from(document.querySelectorAll('#messages [data-k=sent]')).reduce((s, e) => s + Number(e.textContent), 0)");
        let want: i64 = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sent"].as_i64().unwrap())
            .sum();
        assert_eq!(sent, want, "{name}");
        // Over time: with two or more months of entries both charts are drawn, and the table
        // beside them carries their numbers.
        let months = b.js("return document.querySelectorAll('#months tbody tr').length");
        if months.as_i64().unwrap_or(0) > 1 {
            assert_eq!(
                b.js("return ['counts-chart', 'margin-chart'].every(id => { var e = document.getElementById(id); return e === null ? id === 'margin-chart' : e.dataset.drawn === 'true'; })"),
                true,
                "{name}: charts over time"
            );
        }
        let errors = b.console_errors();
        assert!(errors.is_empty(), "console errors on {name}: {errors:?}");
    }

    // A customer's timeline, found through the search form.
    b.go(&format!("{base}/admin/customers"));
    b.type_into("#q", "C0000001");
    b.js("document.querySelector('main form').submit(); return null");
    b.wait_url(|u| u.contains("/admin/customers/"));
    let items = b.js("return document.querySelectorAll('#timeline li').length");
    assert!(items.as_i64().unwrap() > 0, "a timeline");
    let errors = b.console_errors();
    assert!(
        errors.is_empty(),
        "console errors on a customer: {errors:?}"
    );

    // The customer named `<img src=x onerror=alert(1)>`: shown as text, no element, no alert
    // (an open alert would fail the next WebDriver command).
    b.go(&format!("{base}/admin/customers/XSS-1"));
    assert_eq!(
        b.js("return document.getElementById('customer-name').textContent"),
        evil
    );
    assert_eq!(
        b.js("return document.querySelectorAll('img').length"),
        0,
        "no element was made from the name"
    );
    assert_eq!(
        b.js("return document.getElementById('customer-name').children.length"),
        0
    );
    let errors = b.console_errors();
    assert!(
        errors.is_empty(),
        "console errors on the markup customer: {errors:?}"
    );

    // The programme table agrees with `GET /v1/report` and with report.html: the same counts
    // and the same verdict for every campaign.
    b.go(&format!("{base}/admin"));
    let table = b.js("return Array.from(document.querySelectorAll('#campaigns tbody tr[data-campaign]')).map(r => [r.dataset.campaign, r.querySelector('.verdict').textContent, ['contacts', 'held_out', 'messaged', 'sent', 'delivered', 'dropped', 'buyers'].map(k => Number(r.querySelector('[data-k=' + k + ']').dataset.v))])");
    let want: Vec<Value> = campaigns
        .iter()
        .map(|c| {
            let s = &c["summary"];
            json!([
                c["name"],
                s["verdict_label"],
                [
                    s["entered"],
                    s["held_out"],
                    s["messaged"],
                    s["sent"],
                    s["delivered"],
                    s["dropped"],
                    s["buyers"]
                ]
            ])
        })
        .collect();
    assert_eq!(
        table,
        Value::Array(want.clone()),
        "dashboard against the API"
    );
    assert_eq!(
        b.js("return document.querySelector('#programme-total [data-k=contacts]').textContent.replace(/,/g, '')"),
        api["total"]["entered"].to_string(),
    );
    // The demo's report.html was written from the same database before the server started.
    let html = format!("file://{}", env.path("winback-demo/report.html").display());
    b.go(&html);
    let table = b.js("return Array.from(document.querySelectorAll('#programme-table tbody tr[data-campaign]')).map(r => [r.dataset.campaign, r.querySelector('.verdict').textContent, Array.from(r.querySelectorAll('td')).slice(1, 8).map(td => td.textContent === '–' ? 0 : Number(td.textContent.replace(/,/g, '')))])");
    assert_eq!(table, Value::Array(want), "report.html against the API");
    // Sorting the table by a column of counts puts the rows in its order. (The test's small
    // demo has too few buyers for margins: they show "–".)
    b.go(&format!("{base}/admin"));
    b.click("#campaigns th button[data-col='2']");
    let entered = b.js("return Array.from(document.querySelectorAll('#campaigns tbody tr[data-campaign]')).map(r => r.cells[2].dataset.v).map(Number)");
    let m: Vec<f64> = entered
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        m.len() > 1 && m.first() != m.last(),
        "counts to sort: {entered}"
    );
    assert!(m.windows(2).all(|w| w[0] <= w[1]), "sorted: {m:?}");
    // From a count to the people behind it.
    let busiest = campaigns
        .iter()
        .max_by_key(|c| c["summary"]["entered"].as_i64().unwrap())
        .unwrap();
    let name = busiest["name"].as_str().unwrap();
    b.click(&format!(
        "#campaigns tr[data-campaign='{name}'] [data-k=contacts] a"
    ));
    b.wait_url(|u| u.contains("/people?group=entered"));
    assert_eq!(
        b.js("return Number(document.getElementById('people-total').dataset.v)"),
        busiest["summary"]["entered"]
    );

    // Every page at a laptop's and a phone's width: no sideways scrolling, no serious or
    // critical accessibility violation, and a screenshot in target/dashboard-screenshots.
    let mut pages: Vec<(String, String)> = vec![
        ("overview".into(), format!("{base}/admin")),
        (
            "customers".into(),
            format!("{base}/admin/customers?q=example"),
        ),
        (
            "customer".into(),
            format!("{base}/admin/customers/C0000001"),
        ),
        ("help".into(), format!("{base}/admin/help")),
        ("report-html".into(), html.clone()),
    ];
    for c in &campaigns {
        let name = c["name"].as_str().unwrap();
        pages.push((
            format!("campaign-{name}"),
            format!("{base}/admin/campaigns/{name}"),
        ));
    }
    pages.push((
        format!("people-{name}"),
        format!("{base}/admin/campaigns/{name}/people?group=entered"),
    ));
    for width in [1440, 390] {
        b.viewport(width);
        for (page, url) in &pages {
            b.go(url);
            check_page(&b, width, page);
        }
    }
    b.viewport(1280);
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // Logging out ends the session: the overview leads to the login form again.
    b.go(&format!("{base}/admin"));
    b.click("#logout");
    b.wait_url(|u| u.ends_with("/admin/login"));
    b.go(&format!("{base}/admin"));
    assert!(b.url().ends_with("/admin/login"), "{}", b.url());
    drop(b);
    drop(server);
}
