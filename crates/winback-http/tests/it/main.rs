//! The HTTP service driven in process: tracking links, the preference centre, surveys, the `/v1`
//! API, webhooks, keys, limits and the OpenAPI document. Each test gets its own SQLite store and
//! a manual clock.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;
use winback_channels::{Claims, Keyring, Purpose};
use winback_domain::{Clock, ManualClock, Timestamp};
use winback_http::{AppState, ServerSettings, app, auth};
use winback_import::ImportOptions;
use winback_store::SqlStore;

mod always_on;
mod dashboard;
mod wallet;

fn ts(s: &str) -> Timestamp {
    Timestamp::new(s.parse().unwrap())
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

struct Harness {
    app: Router,
    state: AppState,
    store: SqlStore,
    clock: ManualClock,
    keys: Keyring,
    /// Customer id (profile) of Anna.
    anna: i64,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Harness {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut ServerSettings)) -> Self {
        Self::with_sms(tune, None).await
    }

    async fn with_sms(
        tune: impl FnOnce(&mut ServerSettings),
        sms: Option<winback_channels::sms::SmsSettings>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        let clock = ManualClock::new(ts("2026-03-02T10:00:00Z"));
        let keys = Keyring::new("k1", b"0123456789abcdef0123456789abcdef").unwrap();
        let mut settings = ServerSettings::new(
            "https://mail.shop.example/",
            "The Shop",
            ImportOptions::new(clock.now()),
        );
        settings.sms_webhook_secret = Some("inbound-secret".into());
        tune(&mut settings);
        let clock_arc: Arc<dyn Clock> = Arc::new(clock.clone());
        let sms =
            sms.map(|s| winback_channels::sms::HttpSms::new(s, "The Shop", clock_arc.clone()));
        let state = AppState::new(store.clone(), keys.clone(), clock_arc, settings, sms);
        store
            .set_links(
                &[("shop".into(), "https://shop.example/new".into())],
                clock.now(),
            )
            .await
            .unwrap();
        let mut h = Self {
            app: app(state.clone()),
            state,
            store,
            clock,
            keys,
            anna: 0,
            _dir: dir,
        };
        // Two customers through the API, and one sent message to Anna.
        let key = h.key(&["ingest"]).await;
        let r = h
            .send(
                "POST",
                "/v1/customers",
                Some(&key),
                "application/x-ndjson",
                "{\"customer_id\":\"C1\",\"email\":\"anna@example.nl\",\"first_name\":\"Anna\",\"phone\":\"+31612345678\",\"email_consent\":\"yes\",\"sms_consent\":\"yes\"}\n\
                 {\"customer_id\":\"C2\",\"email\":\"bob@example.nl\",\"first_name\":\"<img src=x onerror=alert(1)>\",\"email_consent\":\"yes\"}\n",
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        h.anna = h
            .scalar("SELECT id FROM customers WHERE external_id = 'C1'")
            .await;
        h.store
            .pool()
            .execute(
                "INSERT INTO campaigns (name, status, version, file, created_at, updated_at) VALUES ('we-miss-you', 'active', 1, 'f.toml', 0, 0)",
                &[],
            )
            .await
            .unwrap();
        let sent = ts("2026-03-01T09:00:00Z").as_micros();
        h.store
            .pool()
            .execute(
                &format!(
                    "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at, recipient, sent_at) \
                     VALUES ('msg-1', 1, 1, {}, 'mail1', 'a', 'email', 'we_miss_you', 'sent', 0, 0, 'anna@example.nl', {sent})",
                    h.anna
                ),
                &[],
            )
            .await
            .unwrap();
        h
    }

    async fn key(&self, scopes: &[&str]) -> String {
        let k = auth::generate();
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.store
            .create_api_key("test", &k.prefix, &k.hash, &scopes, self.clock.now())
            .await
            .unwrap();
        k.secret
    }

    fn token(&self, purpose: Purpose, message: &str, extra: Option<&str>) -> String {
        self.keys.sign(
            purpose,
            &Claims {
                message: message.into(),
                extra: extra.map(str::to_owned),
                expires: self.clock.now().as_micros() / 1_000_000 + 86_400,
            },
        )
    }

    async fn send(
        &self,
        method: &str,
        uri: &str,
        key: Option<&str>,
        content_type: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
        }
        if !content_type.is_empty() {
            b = b.header(header::CONTENT_TYPE, content_type);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let response = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body.to_owned())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", uri, None, "", "", headers).await
    }

    async fn form(&self, uri: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        self.send(
            "POST",
            uri,
            None,
            "application/x-www-form-urlencoded",
            body,
            headers,
        )
        .await
    }

    async fn scalar(&self, sql: &str) -> i64 {
        self.state.engagement.flush().await;
        self.store.pool().fetch(sql, &[]).await.unwrap()[0]
            .i64(0)
            .unwrap()
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        self.state.engagement.flush().await;
        self.store
            .pool()
            .fetch(
                &format!("SELECT payload FROM events WHERE type = '{kind}' ORDER BY id"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_str(&r.text(0).unwrap()).unwrap())
            .collect()
    }
}

/// The `csrf` hidden field of a rendered form.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    html[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_open_pixel_tells_people_from_machines() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Open, "msg-1", None);
    let r = h.get(&format!("/o/{t}"), &[("user-agent", IPHONE)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "image/gif");
    // Apple's privacy proxy announces itself as bare Mozilla/5.0.
    h.get(&format!("/o/{t}"), &[("user-agent", "Mozilla/5.0")])
        .await;
    // The same person reloading within the minute is one open.
    h.get(&format!("/o/{t}"), &[("user-agent", IPHONE)]).await;
    let opens = h.events("email_opened").await;
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert_eq!(opens[0]["machine"], false);
    assert_eq!(opens[1]["machine"], true);
    assert_eq!(opens[0]["message_id"], "msg-1");
    // A scanner fetching within seconds of the send is a machine, whatever it claims to be.
    h.clock.set(ts("2026-03-01T09:00:03Z"));
    h.get(
        &format!("/o/{}", h.token(Purpose::Open, "msg-1", None)),
        &[("user-agent", IPHONE)],
    )
    .await;
    assert_eq!(h.events("email_opened").await[2]["machine"], true);
}

#[tokio::test]
async fn bad_tokens_all_get_the_same_404() {
    let h = Harness::new().await;
    let good = h.token(Purpose::Click, "msg-1", Some("shop"));
    let mut tampered = good.clone();
    tampered.replace_range(10..11, if &good[10..11] == "A" { "B" } else { "A" });
    let wrong_purpose = h.token(Purpose::Open, "msg-1", Some("shop"));
    let unknown_message = h.token(Purpose::Click, "msg-404", Some("shop"));
    let unknown_link = h.token(Purpose::Click, "msg-1", Some("evil"));
    let other_keys = Keyring::new("k1", b"another-secret-another-secret!!!")
        .unwrap()
        .sign(
            Purpose::Click,
            &Claims {
                message: "msg-1".into(),
                extra: Some("shop".into()),
                expires: i64::MAX / 2,
            },
        );
    let mut bodies = Vec::new();
    for t in [
        tampered,
        wrong_purpose,
        unknown_link,
        other_keys,
        "x".into(),
    ] {
        let r = h.get(&format!("/c/{t}"), &[("user-agent", IPHONE)]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{t}");
        assert!(r.headers.get(header::LOCATION).is_none());
        bodies.push(r.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer for every bad token"
    );
    // A token we signed for a message the store does not have (its person erased, say) still
    // leads to the link's page: the redirect reads nothing from the store. It records nothing.
    let r = h
        .get(&format!("/c/{unknown_message}"), &[("user-agent", IPHONE)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(h.events("email_clicked").await.is_empty());
    // In one batch with a click of a stored message, only that one is recorded.
    for t in [&unknown_message, &good, &unknown_message] {
        let r = h.get(&format!("/c/{t}"), &[("user-agent", IPHONE)]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    let clicks = h.events("email_clicked").await;
    assert_eq!(clicks.len(), 1, "{clicks:?}");
    assert_eq!(clicks[0]["message_id"], "msg-1");
    // Expired.
    h.clock.advance_days(2);
    assert_eq!(
        h.get(&format!("/c/{good}"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.events("email_clicked").await.len(), 1);
}

#[tokio::test]
async fn clicks_redirect_to_the_stored_link_and_count_people_only() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Click, "msg-1", Some("shop"));
    let r = h
        .get(
            &format!("/c/{t}?url=https://evil.example"),
            &[("user-agent", IPHONE)],
        )
        .await;
    assert!(r.status.is_redirection(), "{}", r.status);
    assert_eq!(r.headers[header::LOCATION], "https://shop.example/new");
    assert_eq!(r.headers[header::REFERRER_POLICY], "no-referrer");
    // A scanner following the link is redirected too, but is not engagement.
    let r = h
        .get(&format!("/c/{t}"), &[("user-agent", "Barracuda Sentinel")])
        .await;
    assert!(r.status.is_redirection());
    let clicks = h.events("email_clicked").await;
    assert_eq!(clicks.len(), 1);
    assert_eq!(clicks[0]["url"], "https://shop.example/new");
}

#[tokio::test]
async fn unsubscribe_page_changes_nothing_and_one_click_post_is_idempotent() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Unsubscribe, "msg-1", None);
    let page = h.get(&format!("/u/{t}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("method=\"post\""), "{}", page.body);
    assert!(
        page.body.contains("an***@example.nl"),
        "the address is masked"
    );
    assert!(!page.body.contains("anna@example.nl"));
    assert!(
        h.store
            .preferences(winback_domain::ProfileId::new(h.anna))
            .await
            .unwrap()
            .email,
        "a GET changes nothing"
    );
    assert!(h.events("email_unsubscribed").await.is_empty());
    // RFC 8058: the mailbox provider POSTs `List-Unsubscribe=One-Click`, with no cookie.
    for _ in 0..2 {
        let r = h
            .form(&format!("/u/{t}"), "List-Unsubscribe=One-Click", &[])
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers.get(header::SET_COOKIE).is_none());
        assert!(r.headers.get(header::LOCATION).is_none());
        assert!(r.body.contains("You are unsubscribed"));
    }
    assert_eq!(h.events("email_unsubscribed").await.len(), 1, "idempotent");
    // The consent ledger now withdraws email: the next send-time check refuses (the engine
    // reads the ledger in the send transaction).
    assert!(
        !h.store
            .preferences(winback_domain::ProfileId::new(h.anna))
            .await
            .unwrap()
            .email
    );
    let withdrawn = h
        .scalar(
            "SELECT COUNT(*) FROM consent_ledger WHERE channel = 'email' AND status = 'withdrawn'",
        )
        .await;
    assert_eq!(withdrawn, 1);
}

#[tokio::test]
async fn preference_centre_needs_its_csrf_token_and_our_origin() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Preferences, "msg-1", None);
    let page = h.get(&format!("/p/{t}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let token = csrf(&page.body);
    let fewer =
        format!("csrf={token}&frequency=low&topic_offers=on&topic_product_updates=on&sms=on");
    let uri = format!("/p/{t}");
    assert_eq!(
        h.form(&uri, "frequency=low", &[]).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.form(&uri, &fewer, &[("origin", "https://evil.example")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        h.form(&uri, &fewer, &[("sec-fetch-site", "cross-site")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // The CSRF token of another message does not work either.
    let forged = h.keys.sign(
        Purpose::Preferences,
        &Claims {
            message: "csrf:msg-2".into(),
            extra: None,
            expires: i64::MAX / 2,
        },
    );
    assert_eq!(
        h.form(&uri, &format!("csrf={forged}&frequency=low"), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let prefs = h
        .store
        .preferences(winback_domain::ProfileId::new(h.anna))
        .await
        .unwrap();
    assert!(
        !prefs.low_frequency && prefs.email,
        "refused posts changed nothing"
    );
    let r = h
        .form(&uri, &fewer, &[("origin", "https://mail.shop.example")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let prefs = h
        .store
        .preferences(winback_domain::ProfileId::new(h.anna))
        .await
        .unwrap();
    assert!(prefs.low_frequency);
    assert_eq!(prefs.topics_off, ["news"]);
    assert!(!prefs.email, "email unticked: consent withdrawn");
    assert!(prefs.sms);
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM contact_tags WHERE tag = 'topic_off:news'")
            .await,
        1
    );
}

#[tokio::test]
async fn a_survey_answer_becomes_a_tag_and_an_event_after_a_post() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Survey, "msg-1", Some("price"));
    let page = h.get(&format!("/s/{t}"), &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("The prices are too high"));
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM contact_tags").await,
        0,
        "GET changes nothing"
    );
    let r = h
        .form(
            &format!("/s/{t}"),
            &format!(
                "csrf={}&comment=%3Cb%3Etoo+dear%3C%2Fb%3E",
                csrf(&page.body)
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("Thank you"));
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM contact_tags WHERE tag = 'reason:price'")
            .await,
        1
    );
    let answers = h.events("survey_answered").await;
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0]["reason"], "too_expensive");
    assert_eq!(answers[0]["answer"], "price: <b>too dear</b>");
    // The answer names its message, so the report counts it under the message's campaign.
    assert_eq!(answers[0]["message_id"], "msg-1");
    let funnels = h
        .store
        .message_funnel_details(winback_domain::Timestamp::EPOCH, winback_report::forever())
        .await
        .unwrap();
    let reasons: Vec<_> = funnels
        .values()
        .flatten()
        .flat_map(|f| f.survey.clone())
        .collect();
    assert_eq!(reasons, vec![("too_expensive".to_owned(), 1)]);
    // A reason that is not on the list is a bad token.
    let odd = h.token(Purpose::Survey, "msg-1", Some("<script>"));
    assert_eq!(
        h.get(&format!("/s/{odd}"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn keys_are_scoped_and_revocation_is_immediate() {
    let h = Harness::new().await;
    let body = "{\"customer_id\":\"C9\",\"email\":\"c9@example.nl\"}";
    let none = h
        .send("POST", "/v1/customers", None, "application/json", body, &[])
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.json()["error"]["code"], "unauthorized");
    let bad = h
        .send(
            "POST",
            "/v1/customers",
            Some("wbk_nope"),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let reader = h.key(&["read"]).await;
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&reader),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    let r = h
        .send("GET", "/v1/customers/C1", Some(&reader), "", "", &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["records"][0]["external_id"], "C1");
    let prefix = &reader[..12];
    assert_eq!(
        h.store.revoke_api_key(prefix, h.clock.now()).await.unwrap(),
        1
    );
    let r = h
        .send("GET", "/v1/customers/C1", Some(&reader), "", "", &[])
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "refused on the very next request"
    );
    // The database holds no key in plain text.
    let stored: Vec<String> = h
        .store
        .pool()
        .fetch("SELECT prefix || hash || name FROM api_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect();
    assert!(stored.iter().all(|s| !s.contains(&reader[13..])));
}

#[tokio::test]
async fn ingest_names_line_and_field_and_strict_stores_nothing() {
    let h = Harness::new().await;
    let key = h.key(&["ingest", "read"]).await;
    let batch = "{\"customer_id\":\"C10\",\"email\":\"ten@example.nl\"}\n\
                 {\"customer_id\":\"C11\",\"email\":\"not-an-email\"}\n\
                 \n\
                 {\"customer_id\":\"C12\",\"email\":\"twelve@example.nl\",\"tags\":[\"x\"]}\n";
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&key),
            "application/x-ndjson",
            batch,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let e = r.json();
    assert_eq!(e["error"]["code"], "invalid_record");
    assert_eq!(e["error"]["details"][0]["line"], 4);
    assert_eq!(e["error"]["details"][0]["field"], "tags");
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM customers").await,
        2,
        "nothing stored"
    );
    let batch = batch.replace(",\"tags\":[\"x\"]", "");
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&key),
            "application/x-ndjson",
            &batch,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let d = &r.json()["error"]["details"][0];
    assert_eq!(
        (d["line"].as_i64(), d["field"].as_str()),
        (Some(2), Some("email")),
        "{d}"
    );
    assert_eq!(h.scalar("SELECT COUNT(*) FROM customers").await, 2);
    let r = h
        .send(
            "POST",
            "/v1/customers?mode=skip_invalid",
            Some(&key),
            "application/x-ndjson",
            &batch,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["rows_ok"], 2);
    assert_eq!(r.json()["rows_rejected"], 1);
    assert_eq!(h.scalar("SELECT COUNT(*) FROM customers").await, 4);
    // An order with its lines, then an event.
    let order = "{\"order_id\":\"O1\",\"customer_id\":\"C10\",\"ordered_at\":\"2026-02-01T10:00:00Z\",\"total\":\"59.90\",\"currency\":\"EUR\",\
                 \"items\":[{\"name\":\"Boots\",\"quantity\":1,\"unit_price\":\"59.90\"}]}";
    let r = h
        .send(
            "POST",
            "/v1/orders",
            Some(&key),
            "application/json",
            order,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(h.scalar("SELECT COUNT(*) FROM order_items").await, 1);
    let event = "{\"event_id\":\"e1\",\"customer_id\":\"C10\",\"type\":\"site_visited\",\"occurred_at\":\"2026-02-02T10:00:00Z\"}";
    let r = h
        .send(
            "POST",
            "/v1/events",
            Some(&key),
            "application/json",
            event,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = h
        .send("POST", "/v1/events", Some(&key), "text/csv", event, &[])
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = h
        .send(
            "POST",
            "/v1/events",
            Some(&key),
            "application/json",
            "{\"type\":\"maybe\"",
            &[],
        )
        .await;
    assert_eq!(r.json()["error"]["code"], "invalid_body");
}

#[tokio::test]
async fn idempotency_keys_replay_and_refuse_reuse() {
    let h = Harness::new().await;
    let key = h.key(&["ingest"]).await;
    let event = "{\"event_id\":\"e7\",\"customer_id\":\"C1\",\"type\":\"logged_in\",\"occurred_at\":\"2026-02-02T10:00:00Z\"}";
    let first = h
        .send(
            "POST",
            "/v1/events",
            Some(&key),
            "application/json",
            event,
            &[("idempotency-key", "abc")],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let again = h
        .send(
            "POST",
            "/v1/events",
            Some(&key),
            "application/json",
            event,
            &[("idempotency-key", "abc")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body, "the stored response, replayed");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let other = event.replace("e7", "e8");
    let r = h
        .send(
            "POST",
            "/v1/events",
            Some(&key),
            "application/json",
            &other,
            &[("idempotency-key", "abc")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM events WHERE type = 'logged_in'")
            .await,
        1
    );
}

#[tokio::test]
async fn large_bodies_get_413_and_fast_keys_429() {
    let h = Harness::with(|s| {
        s.body_limit = 1024;
        s.rate_per_second = 1;
        s.burst = 3;
    })
    .await;
    let key = h.key(&["ingest"]).await;
    let big = format!(
        "{{\"customer_id\":\"C9\",\"note\":\"{}\"}}",
        "x".repeat(4096)
    );
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&key),
            "application/json",
            &big,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json()["error"]["code"], "body_too_large");
    // A burst of 3 at 1 per second: within ten quick requests one is refused, however slow
    // the machine (ten requests would have to take seven seconds to all pass).
    let mut refused = None;
    for _ in 0..10 {
        let r = h
            .send("GET", "/v1/campaigns", Some(&key), "", "", &[])
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
    }
    let last = refused.expect("a request over the rate is refused");
    assert_eq!(last.json()["error"]["code"], "rate_limited");
    assert_eq!(last.headers["retry-after"], "1");
}

#[tokio::test]
async fn esp_webhooks_suppress_bounces_and_complaints() {
    let h = Harness::new().await;
    let key = h.key(&["webhooks"]).await;
    let batch = "{\"id\":\"p1\",\"type\":\"bounced\",\"bounce\":\"hard\",\"email\":\"Anna@Example.nl\",\"diagnostic\":\"550 no such user\"}\n\
                 {\"id\":\"p2\",\"type\":\"complained\",\"email\":\"bob@example.nl\"}\n\
                 {\"id\":\"p3\",\"type\":\"bounced\",\"bounce\":\"hard\",\"email\":\"stranger@example.nl\"}\n";
    let r = h
        .send(
            "POST",
            "/v1/webhooks/esp",
            Some(&key),
            "application/x-ndjson",
            batch,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(
        (v["events"].as_i64(), v["unknown_recipients"].as_i64()),
        (Some(2), Some(1))
    );
    for a in ["anna@example.nl", "bob@example.nl", "stranger@example.nl"] {
        assert!(h.store.is_suppressed("email", a).await.unwrap(), "{a}");
    }
    // The complaint withdrew Bob's consent, as an unsubscribe does.
    let bob = h
        .scalar("SELECT id FROM customers WHERE external_id = 'C2'")
        .await;
    assert!(
        !h.store
            .preferences(winback_domain::ProfileId::new(bob))
            .await
            .unwrap()
            .email
    );
    // A retried webhook changes nothing.
    let r = h
        .send(
            "POST",
            "/v1/webhooks/esp",
            Some(&key),
            "application/x-ndjson",
            batch,
            &[],
        )
        .await;
    assert_eq!(r.json()["duplicates"], 2);
    let r = h
        .send(
            "POST",
            "/v1/webhooks/esp",
            Some(&key),
            "application/json",
            "{\"id\":\"p4\",\"type\":\"exploded\",\"email\":\"a@b.nl\"}",
            &[],
        )
        .await;
    assert_eq!(r.json()["error"]["details"][0]["field"], "type");
}

#[tokio::test]
async fn ses_notifications_through_sns() {
    let h = Harness::new().await;
    let key = h.key(&["webhooks"]).await;
    let message = serde_json::json!({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "timestamp": "2026-03-02T09:00:00Z",
                   "bouncedRecipients": [{"emailAddress": "bob@example.nl", "diagnosticCode": "smtp; 550 5.1.1"}]},
        "mail": {"messageId": "ses-1"}
    });
    let envelope = serde_json::json!({"Type": "Notification", "MessageId": "sns-1", "Message": message.to_string()});
    // SNS can only carry credentials in the URL: HTTP Basic with the key as password.
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("sns:{key}"),
    );
    let r = h
        .send(
            "POST",
            "/v1/webhooks/ses",
            None,
            "text/plain",
            &envelope.to_string(),
            &[("authorization", &format!("Basic {basic}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        h.store
            .is_suppressed("email", "bob@example.nl")
            .await
            .unwrap()
    );
    assert_eq!(h.events("email_bounced").await[0]["bounce"], "hard");
    // A subscription confirmation is never fetched by the server.
    let confirm = serde_json::json!({"Type": "SubscriptionConfirmation", "SubscribeURL": "http://169.254.169.254/"});
    let r = h
        .send(
            "POST",
            "/v1/webhooks/ses",
            Some(&key),
            "application/json",
            &confirm.to_string(),
            &[],
        )
        .await;
    assert_eq!(r.json()["confirmation"], "logged");
}

#[tokio::test]
async fn sms_stop_suppresses_once_and_confirms_once() {
    // A provider on loopback (allow-listed past the SSRF check) that records what it gets.
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = got.clone();
    let provider = Router::new().route(
        "/send",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let sig = headers["x-winback-signature"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push((sig, body));
                axum::Json(serde_json::json!({"id": "prov-1"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, provider).await.unwrap() });
    let sms = winback_channels::sms::SmsSettings {
        url: format!("http://127.0.0.1:{}/send", addr.port()),
        secret: "outbound-secret".into(),
        allow_hosts: vec!["127.0.0.1".into()],
        ..Default::default()
    };
    let h = Harness::with_sms(|_| {}, Some(sms)).await;
    let body = "{\"id\":\"in-1\",\"from\":\"+31612345678\",\"text\":\"Stop\"}";
    let now = h.clock.now().as_micros() / 1_000_000;
    let unsigned = h
        .send(
            "POST",
            "/v1/webhooks/sms",
            None,
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unsigned.json()["error"]["code"], "bad_signature");
    let sig = winback_channels::http::signature(b"inbound-secret", now, body.as_bytes());
    let stale = winback_channels::http::signature(b"inbound-secret", now - 3600, body.as_bytes());
    assert_eq!(
        h.send(
            "POST",
            "/v1/webhooks/sms",
            None,
            "application/json",
            body,
            &[("x-winback-signature", &stale)]
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    for _ in 0..2 {
        let r = h
            .send(
                "POST",
                "/v1/webhooks/sms",
                None,
                "application/json",
                body,
                &[("x-winback-signature", &sig)],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert!(h.store.is_suppressed("sms", "+31612345678").await.unwrap());
    assert!(
        !h.store
            .preferences(winback_domain::ProfileId::new(h.anna))
            .await
            .unwrap()
            .sms
    );
    let sent = got.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "one confirmation for a retried webhook");
    let (sig, text) = &sent[0];
    winback_channels::http::verify_signature(b"outbound-secret", sig, text.as_bytes(), now, 300)
        .expect("the provider can check winback's signature");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["to"], "+31612345678");
    assert!(v["text"].as_str().unwrap().contains("unsubscribed"));
}

#[tokio::test]
async fn campaigns_are_applied_started_and_paused_over_the_api() {
    let h = Harness::new().await;
    let admin = h.key(&["admin", "read"]).await;
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/campaigns/cart-reminder.toml"
    ))
    .unwrap();
    let name = file
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.split('"').next())
        .unwrap()
        .to_owned();
    let r = h
        .send(
            "PUT",
            &format!("/v1/campaigns/{name}"),
            Some(&admin),
            "application/toml",
            &file,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["applied"], "created");
    let broken = file.replacen("name = ", "nmae = ", 1);
    let r = h
        .send(
            "PUT",
            &format!("/v1/campaigns/{name}"),
            Some(&admin),
            "application/toml",
            &broken,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["code"], "invalid_campaign");
    assert!(
        r.json()["error"]["details"][0]
            .as_str()
            .unwrap()
            .contains("api:"),
        "{}",
        r.body
    );
    // A template that does not exist is refused as `campaigns apply` refuses it.
    let unknown = file.replacen("template = \"", "template = \"no-such-", 1);
    assert_ne!(unknown, file);
    let r = h
        .send(
            "PUT",
            &format!("/v1/campaigns/{name}"),
            Some(&admin),
            "application/toml",
            &unknown,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("no email template `no-such-"), "{}", r.body);
    let r = h
        .send(
            "POST",
            &format!("/v1/campaigns/{name}/start"),
            Some(&admin),
            "",
            "",
            &[],
        )
        .await;
    assert_eq!(r.json()["status"], "active");
    let r = h
        .send(
            "POST",
            &format!("/v1/campaigns/{name}/pause"),
            Some(&admin),
            "",
            "",
            &[],
        )
        .await;
    assert_eq!(r.json()["status"], "paused");
    let r = h
        .send(
            "POST",
            "/v1/campaigns/nope/start",
            Some(&admin),
            "",
            "",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let list = h
        .send("GET", "/v1/campaigns", Some(&admin), "", "", &[])
        .await
        .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == name.as_str() && c["status"] == "paused")
    );
}

#[tokio::test]
async fn openapi_documents_every_api_route_and_health_and_metrics_answer() {
    let h = Harness::new().await;
    let doc = h.get("/v1/openapi.json", &[]).await.json();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/v1/customers",
        "/v1/customers/{key}",
        "/v1/orders",
        "/v1/events",
        "/v1/campaigns",
        "/v1/campaigns/{name}",
        "/v1/campaigns/{name}/start",
        "/v1/campaigns/{name}/pause",
        "/v1/webhooks/esp",
        "/v1/webhooks/ses",
        "/v1/webhooks/dsn",
        "/v1/webhooks/sms",
        "/v1/call-lists/{name}",
        "/v1/call-outcomes",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    assert_eq!(h.get("/healthz", &[]).await.status, StatusCode::OK);
    let m = h.get("/metrics", &[]).await;
    assert!(m.body.contains("winback_http_requests_total"), "{}", m.body);
    // The schedule's jobs, as the store knows them, whichever worker ran them.
    let now = h.clock.now();
    let lease = Timestamp::from_micros(now.as_micros() + 60_000_000).unwrap();
    assert!(
        h.store
            .claim_job("score", "w1", now, lease, now)
            .await
            .unwrap()
    );
    h.store.finish_job("score", "w1", now, "{}").await.unwrap();
    let m = h.get("/metrics", &[]).await;
    assert!(
        m.body.contains("winback_job_runs{job=\"score\"} 1"),
        "{}",
        m.body
    );
}

#[tokio::test]
async fn pages_escape_stored_data() {
    let h = Harness::new().await;
    // Bob's first name is markup; his message's pages must show it as text.
    let bob = h
        .scalar("SELECT id FROM customers WHERE external_id = 'C2'")
        .await;
    h.store
        .pool()
        .execute(
            &format!(
                "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at, recipient, sent_at) \
                 VALUES ('msg-2', 1, 2, {bob}, 'mail1', 'a', 'email', 'we_miss_you', 'sent', 0, 0, '\"><script>alert(1)</script>@example.nl', 0)"
            ),
            &[],
        )
        .await
        .unwrap();
    let page = h
        .get(
            &format!("/u/{}", h.token(Purpose::Unsubscribe, "msg-2", None)),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(
        page.body
            .contains("<strong>&quot;&gt;***@example.nl</strong>"),
        "{}",
        page.body
    );
}

/// Counts of everything a contact's state is made of.
async fn contact_state(h: &Harness) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM consent_ledger",
        "SELECT COUNT(*) FROM suppressions",
        "SELECT COUNT(*) FROM contact_tags",
        "SELECT COUNT(*) FROM preferences",
        "SELECT COUNT(*) FROM events WHERE type NOT IN ('email_opened', 'email_clicked')",
    ] {
        out.push(h.scalar(sql).await);
    }
    out
}

#[tokio::test]
async fn get_and_head_on_every_link_of_1000_messages_change_no_state() {
    let h = Harness::new().await;
    let key = h.key(&["ingest"]).await;
    let mut batch = String::new();
    for i in 0..1000 {
        batch.push_str(&format!(
            "{{\"customer_id\":\"M{i}\",\"email\":\"m{i}@example.nl\",\"email_consent\":\"yes\"}}\n"
        ));
    }
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&key),
            "application/x-ndjson",
            &batch,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    h.store
        .pool()
        .execute(
            "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at, recipient, sent_at) \
             SELECT 'bulk-' || external_id, 1, 1, id, 'mail1', 'a', 'email', 'we_miss_you', 'sent', 0, 0, email, 0 FROM customers WHERE external_id LIKE 'M%'",
            &[],
        )
        .await
        .unwrap();
    let before = contact_state(&h).await;
    let engagement = h.scalar("SELECT COUNT(*) FROM events").await;
    for i in 0..1000 {
        let m = format!("bulk-M{i}");
        let mut links = vec![
            format!("/u/{}", h.token(Purpose::Unsubscribe, &m, None)),
            format!("/p/{}", h.token(Purpose::Preferences, &m, None)),
            format!("/o/{}", h.token(Purpose::Open, &m, None)),
            format!("/c/{}", h.token(Purpose::Click, &m, Some("shop"))),
        ];
        for r in winback_channels::email::SURVEY_REASONS {
            links.push(format!("/s/{}", h.token(Purpose::Survey, &m, Some(r))));
        }
        let events = h.scalar("SELECT COUNT(*) FROM events").await;
        for l in &links {
            let head = h
                .send("HEAD", l, None, "", "", &[("user-agent", IPHONE)])
                .await;
            assert!(
                head.status.is_success() || head.status.is_redirection(),
                "HEAD {l}: {}",
                head.status
            );
        }
        assert_eq!(
            h.scalar("SELECT COUNT(*) FROM events").await,
            events,
            "a HEAD records nothing, not even an open"
        );
        for l in &links {
            let get = h.get(l, &[("user-agent", IPHONE)]).await;
            assert!(
                get.status.is_success() || get.status.is_redirection(),
                "GET {l}: {}",
                get.status
            );
        }
    }
    assert_eq!(
        contact_state(&h).await,
        before,
        "no consent, suppression, tag, preference or answer changed"
    );
    // Only engagement was appended: one open and one click per message.
    assert_eq!(
        h.scalar("SELECT COUNT(*) FROM events").await,
        engagement + 2000
    );
}

#[tokio::test]
async fn a_plain_one_click_post_stops_the_next_send() {
    use winback_engine::JourneyStore;
    let h = Harness::new().await;
    // An active journey for Anna with a message waiting to go.
    h.store
        .pool()
        .execute(
            &format!(
                "INSERT INTO enrolments (campaign_id, version, profile_id, trigger_key, exclusive, state, step, resume, variant, holdout, entered_at) \
                 VALUES (1, 1, {}, 'x', 0, 'active', 1, 0, 'a', 0, 0)",
                h.anna
            ),
            &[],
        )
        .await
        .unwrap();
    let enrolment = h.scalar("SELECT MAX(id) FROM enrolments").await;
    h.store
        .pool()
        .execute(
            &format!(
                "INSERT INTO outbox (idempotency_key, campaign_id, enrolment_id, profile_id, step, variant, channel, template, state, not_before, created_at) \
                 VALUES ('msg-next', 1, {enrolment}, {}, 'mail2', 'a', 'email', 'we_miss_you', 'pending', 0, 0)",
                h.anna
            ),
            &[],
        )
        .await
        .unwrap();
    // What `curl -X POST -d List-Unsubscribe=One-Click URL` sends.
    let t = h.token(Purpose::Unsubscribe, "msg-1", None);
    let r = h
        .form(&format!("/u/{t}"), "List-Unsubscribe=One-Click", &[])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The very next send-time check, well within 60 seconds, refuses the message.
    h.clock.advance_seconds(1);
    let now = h.clock.now();
    let claimed = h.store.claim_messages("w1", now, 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let settings = winback_engine::policy::PolicySettings::default();
    let prepared = h
        .store
        .prepare_sends(&claimed, now, 60, &|_, ctx| {
            winback_engine::policy::decide(ctx, &settings)
        })
        .await
        .unwrap();
    let [winback_engine::ports::Prepared::Decided(decision, dispatch)] = &prepared[..] else {
        panic!("{prepared:?}");
    };
    assert!(dispatch.is_none());
    assert!(
        matches!(decision, winback_engine::policy::Decision::Drop(_)),
        "{decision:?}"
    );
}

/// The whole database on disk — the SQLite file with its write-ahead log, and a `pg_dump` of a
/// PostgreSQL store — holds no API key in plain text, only hashes.
#[tokio::test]
async fn no_plaintext_api_key_on_disk_or_in_a_dump() {
    let h = Harness::new().await;
    let secret = h.key(&["admin"]).await;
    // Used once, so its row is written to again (last use).
    h.send("GET", "/v1/campaigns", Some(&secret), "", "", &[])
        .await;
    // The random part after `wbk_XXXXXXXX_` (base64url: it may itself contain `_`).
    let random = secret.splitn(3, '_').nth(2).unwrap().to_owned();
    let dir = h._dir.path().to_owned();
    h.store.close().await;
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        checked += bytes.len();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&random), "{} holds the key", path.display());
    }
    assert!(checked > 0);

    // PostgreSQL: a dump of the store's schema.
    let url = std::env::var("WINBACK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("t_keydump_{}", std::process::id());
    let store = match SqlStore::connect_in_schema(&url, Some(&schema)).await {
        Ok(s) => s,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL at {url} is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIP the pg_dump half: {url} unreachable ({e}); set WINBACK_TEST_DATABASE_URL"
            );
            return;
        }
    };
    let k = auth::generate();
    store
        .create_api_key("dump", &k.prefix, &k.hash, &["admin".into()], h.clock.now())
        .await
        .unwrap();
    store.close().await;
    let dump = std::process::Command::new("pg_dump")
        .args(["--schema", &schema, "--dbname", &url])
        .output()
        .expect("pg_dump runs (Debian's postgresql-client)");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains(&k.hash), "the dump has the key's row");
    assert!(
        !text.contains(k.secret.splitn(3, '_').nth(2).unwrap()),
        "the dump holds the key"
    );
    let admin = winback_store::db::Pool::connect(&url, None).await.unwrap();
    admin
        .execute(&format!("DROP SCHEMA {schema} CASCADE"), &[])
        .await
        .unwrap();
    admin.close().await;
}

/// Access, objection and erasure through the API: admin only, audited, and erased people stay
/// out when the shop sends them again.
#[tokio::test]
async fn privacy_requests_through_the_api() {
    let h = Harness::new().await;
    let admin = h.key(&["admin"]).await;
    let ingest = h.key(&["ingest"]).await;
    let body = "{\"key\":\"anna@example.nl\"}";
    let r = h
        .send(
            "POST",
            "/v1/privacy/export",
            Some(&ingest),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = h
        .send(
            "POST",
            "/v1/privacy/export",
            Some(&admin),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let export = r.json();
    assert_eq!(export["records"][0]["email"], "anna@example.nl");
    assert!(
        !r.body.contains("bob@example.nl"),
        "nothing about anyone else"
    );
    assert!(!r.body.contains("onerror"), "nothing about anyone else");

    let r = h
        .send(
            "POST",
            "/v1/privacy/object",
            Some(&admin),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let prefs = h
        .store
        .preferences(winback_domain::ProfileId::new(h.anna))
        .await
        .unwrap();
    assert!(!prefs.email && !prefs.sms);

    let r = h
        .send(
            "POST",
            "/v1/privacy/erase",
            Some(&admin),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["erased"]["profile_id"], h.anna);
    let r = h
        .send(
            "POST",
            "/v1/privacy/erase",
            Some(&admin),
            "application/json",
            body,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"]["code"], "not_found");
    let r = h
        .send(
            "POST",
            "/v1/privacy/erase",
            Some(&admin),
            "application/json",
            "{\"who\":1}",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // The shop's system sends Anna again: she is not stored.
    let r = h
        .send(
            "POST",
            "/v1/customers",
            Some(&ingest),
            "application/x-ndjson",
            "{\"customer_id\":\"C1\",\"email\":\"anna@example.nl\",\"first_name\":\"Anna\",\"email_consent\":\"yes\"}\n",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        h.scalar(
            "SELECT COUNT(*) FROM customers WHERE email = 'anna@example.nl' OR first_name = 'Anna'"
        )
        .await,
        0
    );
    let (runs, entries) = h.store.privacy_log(10).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ["erasure", "objection", "export"]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.profile_id == winback_domain::ProfileId::new(h.anna))
    );
}

/// Links in an erased person's old messages answer like a message the store does not have, and
/// write nothing: no click, no consent, no preference, no tag. (A click still leads to the
/// shop's page: the redirect reads nothing from the store.)
#[tokio::test]
async fn an_erased_persons_old_links_write_nothing() {
    let h = Harness::new().await;
    let now = h.clock.now();
    let run = h
        .store
        .begin_privacy_run("erasure", false, &serde_json::json!({}), now)
        .await
        .unwrap();
    h.store
        .erase_profile(
            winback_domain::ProfileId::new(h.anna),
            run,
            "erasure request",
            None,
            now,
        )
        .await
        .unwrap();
    let before = contact_state(&h).await;
    for (purpose, path, extra) in [
        (Purpose::Click, "c", Some("shop")),
        (Purpose::Open, "o", None),
        (Purpose::Unsubscribe, "u", None),
        (Purpose::Preferences, "p", None),
        (Purpose::Survey, "s", Some("too_expensive")),
    ] {
        let unknown = h
            .get(
                &format!("/{path}/{}", h.token(purpose, "msg-404", extra)),
                &[("user-agent", IPHONE)],
            )
            .await;
        let t = h.token(purpose, "msg-1", extra);
        let r = h
            .get(&format!("/{path}/{t}"), &[("user-agent", IPHONE)])
            .await;
        assert_eq!(r.status, unknown.status, "/{path}: like an unknown message");
        assert_eq!(r.body, unknown.body);
        if purpose == Purpose::Click {
            // The shop's page, as any click on a message the store does not have.
            assert_eq!(
                r.headers.get(header::LOCATION),
                unknown.headers.get(header::LOCATION)
            );
        } else {
            assert!(r.headers.get(header::LOCATION).is_none(), "/{path}");
        }
        let posted = h
            .form(&format!("/{path}/{t}"), "List-Unsubscribe=One-Click", &[])
            .await;
        assert!(
            !posted.status.is_success(),
            "/{path} POST: {}",
            posted.status
        );
    }
    assert_eq!(contact_state(&h).await, before, "nothing written");
    assert!(h.events("email_clicked").await.is_empty());
    assert!(h.events("email_unsubscribed").await.is_empty());
}

/// Consent given through the API without a time is recorded when it was received, not at
/// 1970-01-01.
#[tokio::test]
async fn api_consent_without_a_time_is_recorded_when_received() {
    let h = Harness::new().await;
    let received = h.clock.now().as_micros();
    let at = h
        .scalar("SELECT MIN(recorded_at) FROM consent_ledger WHERE channel = 'email'")
        .await;
    assert_eq!(at, received);
}

/// "Yes, keep me subscribed" in a re-permission mail is a click the journey's `clicked` branch
/// sees, then the message's own preference centre (never an open redirect).
#[tokio::test]
async fn keep_me_subscribed_counts_as_a_click_and_opens_the_preference_centre() {
    let h = Harness::new().await;
    let t = h.token(Purpose::Click, "msg-1", Some("preferences"));
    let r = h
        .get(
            &format!("/c/{t}?url=https://evil.example"),
            &[("user-agent", IPHONE)],
        )
        .await;
    assert!(r.status.is_redirection(), "{}", r.status);
    let to = r.headers[header::LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with("https://mail.shop.example/p/"), "{to}");
    let page = h
        .get(
            to.trim_start_matches("https://mail.shop.example"),
            &[("user-agent", IPHONE)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "the preference centre opens");
    let clicks = h.events("email_clicked").await;
    assert_eq!(clicks.len(), 1, "the yes counts as a click");
    assert_eq!(clicks[0]["message_id"], "msg-1");
}

/// A bounce mailed back to the return path hours after the relay accepted the message, piped
/// to `/v1/webhooks/dsn`: found by the VERP tag, the unknown user suppressed once, a full
/// mailbox counted as soft, ordinary mail refused with a stable code.
#[tokio::test]
async fn dsn_mail_finds_its_message_and_suppresses_only_the_unknown_user() {
    use sha2::Digest;
    let h = Harness::new().await;
    let key = h.key(&["webhooks"]).await;
    let tag = &hex::encode(sha2::Sha256::digest(b"msg-1"))[..16];
    let dsn = |rcpt: &str, status: &str, id: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example.nl\r\nTo: bounces+{tag}@shop.example\r\n\
Date: Mon, 02 Mar 2026 09:00:00 +0000\r\nMessage-ID: <{id}@mx.example.nl>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example.nl\r\n\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n\r\n--b--\r\n"
        )
    };
    let post = |body: String, key: Option<String>| {
        let h = &h;
        async move {
            h.send(
                "POST",
                "/v1/webhooks/dsn",
                key.as_deref(),
                "message/rfc822",
                &body,
                &[],
            )
            .await
        }
    };
    let r = post(dsn("anna@example.nl", "5.1.1", "d1"), Some(key.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v = r.json();
    assert_eq!(v["read"]["matched_messages"], 1, "{v}");
    assert_eq!(v["applied"]["suppressed"], 1, "{v}");
    assert!(
        h.store
            .is_suppressed("email", "anna@example.nl")
            .await
            .unwrap()
    );
    let bounced = h.events("email_bounced").await;
    assert_eq!(bounced.len(), 1);
    assert_eq!(bounced[0]["message_id"], "msg-1", "{bounced:?}");
    assert_eq!(bounced[0]["bounce"], "hard");
    // The same report again changes nothing.
    let again = post(dsn("anna@example.nl", "5.1.1", "d1"), Some(key.clone())).await;
    assert_eq!(again.json()["applied"]["duplicates"], 1, "{}", again.body);
    assert_eq!(again.json()["applied"]["suppressed"], 0);
    // A full mailbox is soft: counted, not suppressed.
    let r = post(dsn("bob@example.nl", "4.2.2", "d2"), Some(key.clone())).await;
    assert_eq!(r.json()["read"]["verdicts"]["soft"], 1, "{}", r.body);
    assert!(
        !h.store
            .is_suppressed("email", "bob@example.nl")
            .await
            .unwrap()
    );
    // Ordinary mail is not a report; without the webhooks scope nothing is read.
    let r = post(
        "From: a@example.nl\r\nSubject: Afwezig\r\n\r\nTot maandag\r\n".into(),
        Some(key.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.json()["error"]["code"], "not_a_report", "{}", r.body);
    let ingest = h.key(&["ingest"]).await;
    let r = post(dsn("bob@example.nl", "5.1.1", "d3"), Some(ingest)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        !h.store
            .is_suppressed("email", "bob@example.nl")
            .await
            .unwrap()
    );
}

/// The pages a contact opens from a message speak the contact's language.
#[tokio::test]
async fn pages_speak_the_contacts_language() {
    let h = Harness::new().await;
    let set_locale = |l: &'static str| {
        let h = &h;
        async move {
            h.store
                .pool()
                .execute(
                    &format!("UPDATE customers SET locale = '{l}' WHERE external_id = 'C1'"),
                    &[],
                )
                .await
                .unwrap();
        }
    };
    set_locale("nl-NL").await;
    let u = h
        .get(
            &format!("/u/{}", h.token(Purpose::Unsubscribe, "msg-1", None)),
            &[],
        )
        .await;
    assert!(u.body.contains("<html lang=\"nl\">"), "{}", u.body);
    assert!(
        u.body.contains("afmelden voor de marketingmails"),
        "{}",
        u.body
    );
    let p = h
        .get(
            &format!("/p/{}", h.token(Purpose::Preferences, "msg-1", None)),
            &[],
        )
        .await;
    assert!(p.body.contains("Je voorkeuren voor"), "{}", p.body);
    set_locale("pl").await;
    let s = h
        .get(
            &format!("/s/{}", h.token(Purpose::Survey, "msg-1", Some("price"))),
            &[],
        )
        .await;
    assert!(s.body.contains("<html lang=\"pl\">"), "{}", s.body);
    assert!(
        s.body.contains("Twój wybór: <strong>Za drogo</strong>"),
        "{}",
        s.body
    );
    // A language the pages lack falls back to English.
    set_locale("de").await;
    let u = h
        .get(
            &format!("/u/{}", h.token(Purpose::Unsubscribe, "msg-1", None)),
            &[],
        )
        .await;
    assert!(u.body.contains("<html lang=\"en\">"), "{}", u.body);
    assert!(u.body.contains("marketing email?"), "{}", u.body);
}

/// Puts a customer on call list `vip` as a call step would: an active enrolment and its task.
async fn listed(h: &Harness, external: &str) -> i64 {
    let profile = h
        .scalar(&format!(
            "SELECT id FROM customers WHERE external_id = '{external}'"
        ))
        .await;
    let enrolment = h
        .scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM enrolments")
        .await;
    for sql in [
        format!(
            "INSERT INTO enrolments (id, campaign_id, version, profile_id, trigger_key, exclusive, state, step, resume, variant, holdout, entered_at) \
             VALUES ({enrolment}, 1, 1, {profile}, 'audience', 0, 'active', 2, 0, 'a', 0, 0)"
        ),
        format!(
            "INSERT INTO call_tasks (campaign_id, enrolment_id, profile_id, step, variant, list, added_at, state) \
             VALUES (1, {enrolment}, {profile}, 'call', 'a', 'vip', 0, 'open')"
        ),
    ] {
        h.store.pool().execute(&sql, &[]).await.unwrap();
    }
    h.scalar(&format!(
        "SELECT id FROM call_tasks WHERE enrolment_id = {enrolment}"
    ))
    .await
}

#[tokio::test]
async fn call_lists_and_outcomes_over_the_api() {
    let h = Harness::with(|s| s.calls.customer_years = None).await;
    let read = h.key(&["read"]).await;
    let ingest = h.key(&["ingest"]).await;
    h.store
        .pool()
        .execute(
            "UPDATE customers SET phone = '+31687654321', first_name = '=HYPERLINK(\"x\")' WHERE external_id = 'C2'",
            &[],
        )
        .await
        .unwrap();
    let anna = listed(&h, "C1").await;
    let bob = listed(&h, "C2").await;
    let open = "SELECT COUNT(*) FROM call_tasks WHERE state = 'open'";

    assert_eq!(
        h.send("GET", "/v1/call-lists/vip", None, "", "", &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.send("GET", "/v1/call-lists/vip", Some(&ingest), "", "", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = h
        .send("GET", "/v1/call-lists/vip", Some(&read), "", "", &[])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = r.json();
    assert_eq!(list["list"], "vip");
    assert_eq!(list["rows"].as_array().unwrap().len(), 2, "{list}");
    let row = list["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer_id"] == "C1")
        .unwrap();
    assert_eq!(row["task"], anna);
    assert_eq!(row["phone"], "+31612345678");
    assert_eq!(row["callable_now"], true, "Monday 10:00 UTC");
    let csv = h
        .send(
            "GET",
            "/v1/call-lists/vip?format=csv",
            Some(&read),
            "",
            "",
            &[],
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
        csv.body.starts_with("task,customer_id,name,phone,"),
        "{}",
        csv.body
    );
    assert!(
        csv.body.contains("\"'=HYPERLINK(\"\"x\"\")\""),
        "defused: {}",
        csv.body
    );
    assert_eq!(h.scalar(open).await, 2, "reading the list changes nothing");

    let post = |body: String| {
        let h = &h;
        let ingest = ingest.clone();
        async move {
            h.send(
                "POST",
                "/v1/call-outcomes",
                Some(&ingest),
                "application/json",
                &body,
                &[],
            )
            .await
        }
    };
    let r = post(format!(
        r#"{{"task": {anna}, "outcome": "offer_accepted", "agent": "Sanne", "id": "crm-1"}}"#
    ))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["recorded"], true);
    let again = post(format!(
        r#"{{"task": {anna}, "outcome": "offer_accepted", "id": "crm-1"}}"#
    ))
    .await;
    assert_eq!(again.json()["repeat"], true, "{}", again.body);
    let closed = post(format!(
        r#"{{"task": {anna}, "outcome": "reached", "id": "crm-2"}}"#
    ))
    .await;
    assert_eq!(closed.status, StatusCode::CONFLICT);
    assert_eq!(
        closed.json()["error"]["code"],
        "task_closed",
        "{}",
        closed.body
    );
    let unknown = post(r#"{"task": 99999, "outcome": "reached"}"#.into()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.json()["error"]["code"], "unknown_task");
    let bad = post(format!(r#"{{"task": {bob}, "outcome": "maybe"}}"#)).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.body.contains("outcome: `maybe` is not one of reached"),
        "{}",
        bad.body
    );
    let no_reason = post(format!(
        r#"{{"task": {bob}, "outcome": "reason_for_leaving"}}"#
    ))
    .await;
    assert_eq!(no_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_reason.body.contains("reason"), "{}", no_reason.body);
    let future = post(format!(
        r#"{{"task": {bob}, "outcome": "reached", "at": "2030-01-01T00:00:00Z"}}"#
    ))
    .await;
    assert_eq!(
        future.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        future.body
    );
    let by_customer =
        post(r#"{"list": "vip", "customer_id": "C2", "outcome": "do_not_call"}"#.into()).await;
    assert_eq!(by_customer.status, StatusCode::OK, "{}", by_customer.body);
    assert_eq!(
        h.scalar(
            "SELECT COUNT(*) FROM suppressions WHERE channel = 'call' AND address = '+31687654321'"
        )
        .await,
        1
    );
    assert_eq!(h.scalar(open).await, 0);
    let events = h.events("call_outcome").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["outcome"], "offer_accepted");
    assert_eq!(events[0]["agent"], "Sanne");
    let gone = post(r#"{"list": "vip", "customer_id": "C2", "outcome": "reached"}"#.into()).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND, "{}", gone.body);
}
