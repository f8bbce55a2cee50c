//! The dashboard in process: login, sessions, CSRF, headers, escaping, and `GET /v1/report`.
//! (The browser test, with Chromium, is in the CLI crate's tests: it needs the demo's data.)

use super::*;
use winback_store::db::Val;

const PASSWORD: &str = "a long dashboard password";
const ORIGIN: (&str, &str) = ("origin", "https://mail.shop.example");

fn set_cookie(r: &Reply, name: &str) -> Option<String> {
    r.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

/// Logs in and returns the session cookie header value.
async fn log_in(h: &Harness, password: &str) -> Reply {
    let page = h.get("/admin/login", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let login_cookie = cookie_value(&set_cookie(&page, "winback_login").unwrap());
    assert_eq!(token, login_cookie, "double-submit: form and cookie agree");
    let body = format!(
        "csrf={token}&username=marketer&password={}",
        password.replace(' ', "+")
    );
    h.form(
        "/admin/login",
        &body,
        &[("cookie", &format!("winback_login={login_cookie}")), ORIGIN],
    )
    .await
}

async fn admin(h: &Harness) {
    let hash = winback_http::dashboard::hash_password(PASSWORD).unwrap();
    h.store
        .set_admin_password("marketer", &hash, h.clock.now())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_dashboard_needs_a_login_and_guards_every_form() {
    let h = Harness::new().await;
    admin(&h).await;
    // Not logged in: every page leads to the login form.
    for page in ["/admin", "/admin/customers/C1", "/admin/campaigns/x"] {
        let r = h.get(page, &[]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(r.headers[header::LOCATION], "/admin/login");
    }
    let page = h.get("/admin/login", &[]).await;
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let token = csrf(&page.body);
    let body = format!("csrf={token}&username=marketer&password=a+long+dashboard+password");
    let with_cookie = format!("winback_login={token}");
    // From another site, or without the cookie that matches the form: refused.
    let r = h
        .form(
            "/admin/login",
            &body,
            &[("cookie", &with_cookie), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h.form("/admin/login", &body, &[ORIGIN]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .form(
            "/admin/login",
            &body,
            &[("cookie", "winback_login=someone-elses"), ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A wrong password and an unknown name get the same answer, and no session.
    let wrong = log_in(&h, "not the password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong name or password."));
    assert!(set_cookie(&wrong, "winback_admin").is_none());
    // The right password: a session cookie the browser keeps to itself and this site.
    let ok = log_in(&h, PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.headers[header::LOCATION], "/admin");
    let set = set_cookie(&ok, "winback_admin").unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/admin"] {
        assert!(set.contains(attr), "{attr} in {set}");
    }
    let token = cookie_value(&set);
    // The store keeps the token's hash only.
    assert_eq!(
        h.scalar(&format!(
            "SELECT COUNT(*) FROM admin_sessions WHERE token_hash = '{}'",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()))
        ))
        .await,
        1
    );
    assert_eq!(
        h.scalar(&format!(
            "SELECT COUNT(*) FROM admin_sessions WHERE token_hash = '{token}' OR csrf = '{token}'"
        ))
        .await,
        0
    );
    let session = format!("winback_admin={token}");
    let overview = h.get("/admin", &[("cookie", &session)]).await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview.body.contains("List hygiene") && overview.body.contains("Base health"));
    // Logging out needs the session's CSRF token and our origin.
    let r = h
        .form(
            "/admin/logout",
            "csrf=wrong",
            &[("cookie", &session), ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .form(
            "/admin/logout",
            &format!("csrf={}", csrf(&overview.body)),
            &[("cookie", &session), ("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .form(
            "/admin/logout",
            &format!("csrf={}", csrf(&overview.body)),
            &[("cookie", &session), ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        set_cookie(&r, "winback_admin")
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = h.get("/admin", &[("cookie", &session)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session ended");
    // A password change ends every session.
    let ok = log_in(&h, PASSWORD).await;
    let session = format!(
        "winback_admin={}",
        cookie_value(&set_cookie(&ok, "winback_admin").unwrap())
    );
    assert_eq!(
        h.get("/admin", &[("cookie", &session)]).await.status,
        StatusCode::OK
    );
    admin(&h).await;
    assert_eq!(
        h.get("/admin", &[("cookie", &session)]).await.status,
        StatusCode::SEE_OTHER
    );
    // Sessions expire.
    let ok = log_in(&h, PASSWORD).await;
    let session = format!(
        "winback_admin={}",
        cookie_value(&set_cookie(&ok, "winback_admin").unwrap())
    );
    h.clock.advance_seconds(8 * 3600 + 1);
    assert_eq!(
        h.get("/admin", &[("cookie", &session)]).await.status,
        StatusCode::SEE_OTHER
    );
}

/// `s` as the dashboard's HTML escaping writes it (minijinja escapes `/` too).
fn escaped(s: &str) -> String {
    s.replace('/', "&#x2f;")
}

/// Logs in from `origin` and returns the answer.
async fn log_in_from(h: &Harness, origin: &str) -> Reply {
    let page = h.get("/admin/login", &[]).await;
    let token = csrf(&page.body);
    h.form(
        "/admin/login",
        &format!(
            "csrf={token}&username=marketer&password={}",
            PASSWORD.replace(' ', "+")
        ),
        &[
            ("cookie", &format!("winback_login={token}")),
            ("origin", origin),
        ],
    )
    .await
}

/// The README's way in: `winback serve` on the loopback address with no public URL set, then
/// the browser at `http://127.0.0.1:8080/admin`. The default public URL points elsewhere, and
/// this used to end in a bare "forbidden".
#[tokio::test]
async fn a_loopback_service_without_a_public_url_opens_at_its_own_address() {
    let mut printed = String::new();
    let h = Harness::with(|s| {
        printed = s.listen_at("127.0.0.1:8080".parse().unwrap(), false);
    })
    .await;
    assert_eq!(printed, "http://127.0.0.1:8080/admin");
    admin(&h).await;
    for origin in ["http://127.0.0.1:8080", "http://localhost:8080"] {
        let ok = log_in_from(&h, origin).await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{origin}: {}", ok.body);
        // Plain HTTP on loopback: a `Secure` cookie would be dropped by the browser.
        let set = set_cookie(&ok, "winback_admin").unwrap();
        assert!(!set.contains("Secure"), "{set}");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }
    // Another port, or another site, is still refused, on a page that says why and where to go.
    for origin in ["http://127.0.0.1:9999", "https://evil.example"] {
        let r = log_in_from(&h, origin).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}");
        assert!(
            r.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "a page, not a bare line"
        );
        assert!(
            r.body.contains("This form came from another address"),
            "{}",
            r.body
        );
        assert!(
            r.body
                .contains(&format!("<code>{}</code>", escaped(origin))),
            "{}",
            r.body
        );
        for accepted in [
            "https://mail.shop.example",
            "http://127.0.0.1:8080",
            "http://localhost:8080",
        ] {
            assert!(
                r.body
                    .contains(&format!("<code>{}</code>", escaped(accepted))),
                "{accepted}"
            );
        }
        assert!(r.body.contains("Nothing was changed."));
        assert!(
            r.body.contains("dashboard.css"),
            "styled like the dashboard"
        );
    }
}

/// With a public URL configured, or a listener other machines can reach, only the public
/// origin is taken, and cookies stay `Secure` for an HTTPS public URL.
#[tokio::test]
async fn a_configured_or_reachable_service_takes_its_public_origin_only() {
    for (addr, configured) in [("127.0.0.1:8080", true), ("0.0.0.0:8080", false)] {
        let mut printed = String::new();
        let h = Harness::with(|s| {
            printed = s.listen_at(addr.parse().unwrap(), configured);
        })
        .await;
        assert_eq!(printed, "https://mail.shop.example/admin", "{addr}");
        admin(&h).await;
        let r = log_in_from(&h, "http://127.0.0.1:8080").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{addr}");
        let ok = log_in_from(&h, "https://mail.shop.example").await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{addr}");
        assert!(set_cookie(&ok, "winback_admin").unwrap().contains("Secure"));
    }
    let mut printed = String::new();
    Harness::with(|s| printed = s.listen_at("[::1]:8080".parse().unwrap(), false)).await;
    assert_eq!(printed, "http://[::1]:8080/admin");
}

/// A form without its matching cookie (an old tab, or cookies off) is refused on a page that
/// sends the user back to a fresh form, and the values they sent are not echoed.
#[tokio::test]
async fn a_stale_form_explains_itself() {
    let h = Harness::new().await;
    admin(&h).await;
    let r = h
        .form(
            "/admin/login",
            "csrf=old&username=%3Cb%3Emarketer&password=x",
            &[ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("This form has expired"), "{}", r.body);
    assert!(r.body.contains(r#"<a href="/admin/login">"#));
    assert!(!r.body.contains("marketer"));
}

#[tokio::test]
async fn login_attempts_are_limited_per_address() {
    let h = Harness::with(|s| {
        s.logins_per_minute = 2;
        s.trust_forwarded_for = true;
    })
    .await;
    admin(&h).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let page = h.get("/admin/login", &[]).await;
        let token = csrf(&page.body);
        let r = h
            .form(
                "/admin/login",
                &format!("csrf={token}&username=marketer&password=wrong"),
                &[
                    ("cookie", &format!("winback_login={token}")),
                    ORIGIN,
                    ("x-forwarded-for", "203.0.113.7"),
                ],
            )
            .await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn dashboard_pages_escape_what_people_typed_and_agree_with_the_api() {
    let h = Harness::new().await;
    admin(&h).await;
    let ok = log_in(&h, PASSWORD).await;
    let session = format!(
        "winback_admin={}",
        cookie_value(&set_cookie(&ok, "winback_admin").unwrap())
    );
    // C2's first name is `<img src=x onerror=alert(1)>`.
    let r = h.get("/admin/customers/C2", &[("cookie", &session)]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        r.body.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("<img src=x"));
    // Anna's timeline shows the message she was sent, with its subject as she got it.
    h.store
        .pool()
        .execute(
            "UPDATE outbox SET subject = '{{ first_name }}, we miss you', sent_subject = 'Anna, we miss you' WHERE idempotency_key = 'msg-1'",
            &[],
        )
        .await
        .unwrap();
    let r = h.get("/admin/customers/C1", &[("cookie", &session)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"timeline\""));
    assert!(r.body.contains("subject: Anna, we miss you"), "{}", r.body);
    assert!(!r.body.contains("first_name"), "not the template");
    // The search leads to the person; an unknown one says so.
    let r = h
        .get(
            "/admin/customers?q=anna%40example.nl",
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        format!("/admin/customers/profile:{}", h.anna)
    );
    let r = h
        .get(
            "/admin/customers?q=nobody%40example.nl",
            &[("cookie", &session)],
        )
        .await;
    assert!(r.body.contains("Nobody found"));
    // Unknown campaigns and customers are pages that say so, with a 404.
    for (path, what) in [
        ("/admin/campaigns/no-such-campaign", "campaign"),
        ("/admin/customers/NOBODY", "customer"),
    ] {
        let r = h.get(path, &[("cookie", &session)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            r.body.contains(&format!("No such {what}.")),
            "{path}: {}",
            r.body
        );
    }
    // A campaign applied through the API appears with its journey.
    let admin_key = h.key(&["admin", "read"]).await;
    let source = include_str!("../../../../examples/campaigns/review-request.toml");
    let name = source
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let r = h
        .send(
            "PUT",
            &format!("/v1/campaigns/{name}"),
            Some(&admin_key),
            "application/toml",
            source,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let api = h
        .send("GET", "/v1/report", Some(&admin_key), "", "", &[])
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let api = api.json();
    let c = api["campaigns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
        .clone();
    let page = h
        .get(&format!("/admin/campaigns/{name}"), &[("cookie", &session)])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for step in c["journey"].as_array().unwrap() {
        assert!(
            page.body
                .contains(&format!("data-step=\"{}\"", step["id"].as_str().unwrap())),
            "step {step} drawn"
        );
    }
    let overview = h.get("/admin", &[("cookie", &session)]).await;
    assert!(overview.body.contains(&format!("data-campaign=\"{name}\"")));
    // Nothing the dashboard serves carries an inline script.
    for body in [&overview.body, &page.body] {
        assert!(!body.contains("<script>") && !body.contains("onerror="));
    }
    let r = h
        .send(
            "GET",
            "/v1/report?since=yesterday",
            Some(&admin_key),
            "",
            "",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["code"], "invalid_query");
    // The vendored chart library is served from the binary.
    let r = h.get("/admin/assets/uPlot.iife.min.js", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("uPlot"));
    assert_eq!(
        h.get("/admin/assets/../Cargo.toml", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

/// A logged-in session's cookie header value and its CSRF token (from the overview's forms).
async fn session(h: &Harness) -> (String, String) {
    admin(h).await;
    let ok = log_in(h, PASSWORD).await;
    let cookie = format!(
        "winback_admin={}",
        cookie_value(&set_cookie(&ok, "winback_admin").unwrap())
    );
    let overview = h.get("/admin", &[("cookie", &cookie)]).await;
    (cookie.clone(), csrf(&overview.body))
}

/// Applies the example `review-request` campaign through the API; returns an admin key.
async fn apply_review_request(h: &Harness) -> String {
    let admin_key = h.key(&["admin", "read"]).await;
    let source = include_str!("../../../../examples/campaigns/review-request.toml");
    let r = h
        .send(
            "PUT",
            "/v1/campaigns/review-request",
            Some(&admin_key),
            "application/toml",
            source,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    admin_key
}

#[tokio::test]
async fn campaigns_start_pause_and_close_from_their_page_behind_csrf_and_origin_checks() {
    let h = Harness::new().await;
    let (cookie, token) = session(&h).await;
    let admin_key = apply_review_request(&h).await;
    let status = || async {
        let api = h
            .send("GET", "/v1/report", Some(&admin_key), "", "", &[])
            .await
            .json();
        api["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "review-request")
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(status().await, "draft");
    let page = h
        .get("/admin/campaigns/review-request", &[("cookie", &cookie)])
        .await;
    assert!(page.body.contains("id=\"start\""), "a draft can be started");
    assert!(!page.body.contains("id=\"pause\""));
    let post = |to: &'static str, csrf: String, origin: &'static str| {
        let cookie = cookie.clone();
        let h = &h;
        async move {
            h.form(
                "/admin/campaigns/review-request/status",
                &format!("csrf={csrf}&to={to}"),
                &[("cookie", &cookie), ("origin", origin)],
            )
            .await
        }
    };
    // Without the session's token, or from another site: refused, nothing changes.
    let r = post("start", "forged".into(), ORIGIN.1).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post("start", token.clone(), "https://evil.example").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(status().await, "draft");
    // Start, pause, start again, close: each lands and the page says so.
    for (to, want) in [
        ("start", "active"),
        ("pause", "paused"),
        ("start", "active"),
        ("close", "closing"),
    ] {
        let r = post(to, token.clone(), ORIGIN.1).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{to}: {}", r.body);
        assert_eq!(
            r.headers[header::LOCATION],
            format!("/admin/campaigns/review-request?changed={want}")
        );
        assert_eq!(status().await, want);
    }
    let page = h
        .get(
            "/admin/campaigns/review-request?changed=closing",
            &[("cookie", &cookie)],
        )
        .await;
    assert!(page.body.contains("The campaign is now closing."));
    assert!(!page.body.contains("id=\"start\"") && !page.body.contains("id=\"close\""));
    // Only a status the page sets is echoed.
    let page = h
        .get(
            "/admin/campaigns/review-request?changed=%3Cb%3Ehacked",
            &[("cookie", &cookie)],
        )
        .await;
    assert!(!page.body.contains("hacked"));
    // An unknown action or campaign is a 404 that changes nothing.
    let r = post("delete", token.clone(), ORIGIN.1).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .form(
            "/admin/campaigns/no-such/status",
            &format!("csrf={token}&to=start"),
            &[("cookie", &cookie), ORIGIN],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_count_links_to_its_people_and_their_csv_runs_no_formula() {
    let h = Harness::new().await;
    let (cookie, _) = session(&h).await;
    let ingest = h.key(&["ingest"]).await;
    // A customer whose name a spreadsheet would run as a formula.
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&ingest),
            "application/x-ndjson",
            "{\"customer_id\":\"C3\",\"email\":\"carla@example.nl\",\"first_name\":\"=HYPERLINK(\\\"http://evil.example\\\")\",\"email_consent\":\"yes\"}\n",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let carla = h
        .scalar("SELECT id FROM customers WHERE external_id = 'C3'")
        .await;
    apply_review_request(&h).await;
    let campaign = h
        .scalar("SELECT id FROM campaigns WHERE name = 'review-request'")
        .await;
    // Anna was messaged (her message was accepted), Carla entered and was held out.
    let entered = ts("2026-03-01T08:00:00Z").as_micros();
    for (id, profile, holdout, messaged) in [
        (101, h.anna, 0, Some(entered + 3_600_000_000)),
        (102, carla, 1, None),
    ] {
        h.store
            .pool()
            .execute(
                "INSERT INTO enrolments (id, campaign_id, version, profile_id, trigger_key, exclusive, state, step, resume, variant, holdout, entered_at, messaged_at) \
                 VALUES ($1, $2, 1, $3, 'k', 0, 'active', 0, 0, 'a', $4, $5, $6)",
                &[
                    Val::from(id),
                    Val::from(campaign),
                    Val::from(profile),
                    Val::from(holdout),
                    Val::from(entered),
                    Val::from(messaged),
                ],
            )
            .await
            .unwrap();
    }
    // The overview's counts link to the lists, and the lists are as long as the counts.
    let overview = h.get("/admin", &[("cookie", &cookie)]).await;
    for group in ["entered", "held_out", "messaged", "bought"] {
        assert!(
            overview.body.contains(&format!(
                "/admin/campaigns/review-request/people?group={group}"
            )),
            "{group}"
        );
    }
    for (group, want, name) in [
        ("entered&locale=default", 2, "Anna"),
        ("entered&locale=nl", 0, ""),
        ("treated", 1, "Anna"),
        ("entered", 2, "Anna"),
        ("messaged", 1, "Anna"),
        ("held_out", 1, "HYPERLINK"),
        ("bought", 0, ""),
    ] {
        let r = h
            .get(
                &format!("/admin/campaigns/review-request/people?group={group}"),
                &[("cookie", &cookie)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{group}: {}", r.body);
        assert!(
            r.body
                .contains(&format!("id=\"people-total\" data-v=\"{want}\"")),
            "{group}: {}",
            r.body
        );
        assert!(r.body.contains(name), "{group}");
    }
    // The date-range filter: both days included; links keep it; a bad date says so.
    for (period, want) in [
        ("since=2026-03-01&until=2026-03-01", 2),
        ("since=2026-03-02", 0),
        ("until=2026-02-28", 0),
    ] {
        let r = h
            .get(
                &format!("/admin/campaigns/review-request/people?group=entered&{period}"),
                &[("cookie", &cookie)],
            )
            .await;
        assert!(
            r.body
                .contains(&format!("id=\"people-total\" data-v=\"{want}\"")),
            "{period}"
        );
        assert!(
            r.body.contains(&format!(
                "group=held_out&amp;{}",
                period.replace('&', "&amp;")
            )),
            "{period}: links keep the period"
        );
    }
    let r = h
        .get("/admin?since=2026-03-02", &[("cookie", &cookie)])
        .await;
    assert!(
        r.body
            .contains("/admin/campaigns/review-request?since=2026-03-02")
    );
    assert!(
        r.body.contains("data-k=\"contacts\" data-v=\"0\""),
        "nobody entered since"
    );
    let r = h
        .get("/admin?since=last+tuesday", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("is not a date"), "{}", r.body);
    assert!(
        r.body.contains("data-k=\"contacts\" data-v=\"2\""),
        "all time"
    );
    let csv = h
        .get(
            "/admin/campaigns/review-request/people?group=entered&format=csv",
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("review-request-entered.csv")
    );
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(csv.body.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    let carla_row = rows.iter().find(|r| r[0] == "C3").unwrap();
    assert!(carla_row[1].starts_with("'="), "defused: {carla_row:?}");
    assert_eq!(carla_row[3], "holdout");
    // An unknown list or campaign is a 404; the lists need a login.
    for path in [
        "/admin/campaigns/review-request/people?group=everyone",
        "/admin/campaigns/no-such/people?group=entered",
    ] {
        assert_eq!(
            h.get(path, &[("cookie", &cookie)]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let r = h
        .get(
            "/admin/campaigns/review-request/people?group=entered&format=csv",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_long_list_streams_out_whole_in_pages() {
    let h = Harness::new().await;
    let (cookie, _) = session(&h).await;
    apply_review_request(&h).await;
    let campaign = h
        .scalar("SELECT id FROM campaigns WHERE name = 'review-request'")
        .await;
    // 4,500 entries (more than two of the stream's pages), half of them at one instant, so
    // the pages must break ties by enrolment and lose or repeat no one.
    let entered = ts("2026-03-01T08:00:00Z").as_micros();
    h.store
        .pool()
        .execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4500) \
             INSERT INTO enrolments (campaign_id, version, profile_id, trigger_key, exclusive, state, step, resume, variant, holdout, entered_at) \
             SELECT $1, 1, $2, 'k' || CAST(i AS TEXT), 0, 'active', 0, 0, 'a', 0, $3 + CASE WHEN i % 2 = 0 THEN 0 ELSE i END FROM n",
            &[Val::from(campaign), Val::from(h.anna), Val::from(entered)],
        )
        .await
        .unwrap();
    let csv = h
        .get(
            "/admin/campaigns/review-request/people?group=entered&format=csv",
            &[("cookie", &cookie)],
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.body.as_bytes())
        .records()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rows.len(), 4_500);
    // In entry order, every entry once: the 2,250 who share the first instant (a tie that
    // spans a page break), then 2,250 at instants of their own.
    let times: Vec<jiff::Timestamp> = rows
        .iter()
        .map(|r| r.get(4).unwrap().parse().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(times.iter().filter(|t| **t == times[0]).count(), 2_250);
    let mut rest = times[2_250..].to_vec();
    rest.dedup();
    assert_eq!(rest.len(), 2_250);
    assert!(rows.iter().all(|r| r.get(0) == Some("C1")));
}

#[tokio::test]
async fn customer_search_finds_by_name_part_of_an_email_and_phone() {
    let h = Harness::new().await;
    let (cookie, _) = session(&h).await;
    // One match opens the customer; part of a name or address, or a phone as people write
    // it, finds Anna.
    for q in ["anna", "ANNA%40EXAMPLE", "06+1234+5678", "c1"] {
        let r = h
            .get(&format!("/admin/customers?q={q}"), &[("cookie", &cookie)])
            .await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{q}: {}", r.body);
        assert_eq!(
            r.headers[header::LOCATION],
            format!("/admin/customers/profile:{}", h.anna),
            "{q}"
        );
    }
    // Several matches are listed, each linking to its customer.
    let r = h
        .get("/admin/customers?q=example.nl", &[("cookie", &cookie)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("id=\"hits\""), "{}", r.body);
    assert!(
        r.body
            .contains(&format!("/admin/customers/profile:{}", h.anna))
    );
    assert!(r.body.contains("&lt;img src=x onerror=alert(1)&gt;"));
}
