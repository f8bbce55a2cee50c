//! The PassKit web service and APNs pushes, against a fake APNs on loopback that speaks HTTP/2
//! and records every push: devices register with the pass's token, fetch the latest pass (which
//! `openssl cms -verify` accepts), ask what changed, and every change reaches every registered
//! device once.

use std::io::Read;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use winback_domain::Clock;

use crate::{Harness, ts};

use winback_testkit::openssl::{self, cms_verifies, pass_certificates, rsa_key};

/// Serves `app` on a loopback port; its base URL.
async fn on_loopback(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Anna holds pass `s1` with offer code `WB-PASS-1`, as a journey's offer and wallet steps
/// leave them.
async fn issue_pass(h: &Harness) {
    let issued = ts("2026-03-01T09:00:00Z").as_micros();
    for sql in [
        format!(
            "INSERT INTO offers (code, campaign_id, enrolment_id, profile_id, step, variant, ladder, rung, kind, amount_minor, currency, min_order_minor, uses, issued_at, expires_at, state, description) \
             VALUES ('WB-PASS-1', 1, 1, {}, 'code', 'a', 'comeback', 0, 'fixed', 1500, 'EUR', 5000, 1, {issued}, {}, 'issued', '€ 15,00 korting')",
            h.anna,
            ts("2026-05-01T00:00:00Z").as_micros()
        ),
        format!(
            "INSERT INTO wallet_passes (serial, campaign_id, profile_id, enrolment_id, step, variant, style, offer_code, version, issued_at, updated_at) \
             VALUES ('s1', 1, {}, 1, 'pass', 'a', 'coupon', 'WB-PASS-1', 1, {issued}, {issued})",
            h.anna
        ),
    ] {
        h.store.pool().execute(&sql, &[]).await.unwrap();
    }
}

/// A fake APNs: records (device token, apns-topic) and answers 410 for tokens starting with
/// `dead`.
async fn fake_apns() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/3/device/{token}",
        axum::routing::post(
            move |axum::extract::Path(token): axum::extract::Path<String>,
                  headers: axum::http::HeaderMap,
                  version: axum::http::Version| {
                let record = record.clone();
                async move {
                    assert_eq!(version, axum::http::Version::HTTP_2, "APNs speaks HTTP/2");
                    let topic = headers["apns-topic"].to_str().unwrap().to_owned();
                    record.lock().unwrap().push((token.clone(), topic));
                    if token.starts_with("dead") {
                        StatusCode::GONE
                    } else {
                        StatusCode::OK
                    }
                }
            },
        ),
    );
    (on_loopback(app).await, seen)
}

#[tokio::test]
async fn passkit_web_service_and_one_push_per_change_and_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    pass_certificates(d, true);
    let (apns, pushes) = fake_apns().await;
    let mut config = winback_app::config::Config::default();
    config.email.public_url = "https://mail.shop.example".into();
    config.engine.secret = "a secret of the shop's own".into();
    config.wallet = winback_app::wallet::WalletConfig {
        pass_type_id: "pass.com.shop.winback".into(),
        team_id: "TEAM123456".into(),
        certificate: Some(d.join("pass.pem")),
        key: Some(d.join("pass.key")),
        wwdr: Some(d.join("ca.pem")),
        icon: None,
        apns_url: apns,
        google: Default::default(),
    };
    let service = winback_app::wallet::WalletService::from_config(&config)
        .unwrap()
        .unwrap();
    let w = service.clone();
    let h = Harness::with(move |s| s.wallet = Some(w)).await;
    issue_pass(&h).await;
    let token = service.auth_token("s1");
    let auth = format!("ApplePass {token}");
    let reg = |device: &str, push: &str, auth: &str| {
        let (h, body, uri, auth) = (
            &h,
            format!(r#"{{"pushToken": "{push}"}}"#),
            format!("/wallet/v1/devices/{device}/registrations/pass.com.shop.winback/s1"),
            auth.to_owned(),
        );
        async move {
            h.send(
                "POST",
                &uri,
                None,
                "application/json",
                &body,
                &[("authorization", &auth)],
            )
            .await
            .status
        }
    };
    assert_eq!(reg("d1", "abc123", &auth).await, StatusCode::CREATED);
    assert_eq!(
        reg("d1", "abc123", &auth).await,
        StatusCode::OK,
        "known already"
    );
    assert_eq!(reg("d2", "dead01", &auth).await, StatusCode::CREATED);
    assert_eq!(
        reg(
            "d3",
            "abc999",
            "ApplePass 0000000000000000000000000000000000000000"
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    let wrong_type = h
        .send(
            "POST",
            "/wallet/v1/devices/d1/registrations/pass.com.other/s1",
            None,
            "application/json",
            r#"{"pushToken":"abc"}"#,
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::NOT_FOUND);

    // What changed on d1: everything at first, then nothing after the tag.
    let r = h
        .get(
            "/wallet/v1/devices/d1/registrations/pass.com.shop.winback",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let tag = r.json()["lastUpdated"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["serialNumbers"], serde_json::json!(["s1"]));
    let r = h
        .get(
            &format!(
                "/wallet/v1/devices/d1/registrations/pass.com.shop.winback?passesUpdatedSince={tag}"
            ),
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // The latest pass: signed, and verifiable with openssl; unchanged since → 304.
    let app = h.app.clone();
    let pass = tower::ServiceExt::oneshot(
        app,
        axum::http::Request::get("/wallet/v1/passes/pass.com.shop.winback/s1")
            .header("authorization", &auth)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(pass.status(), StatusCode::OK);
    assert_eq!(
        pass.headers()["content-type"],
        "application/vnd.apple.pkpass"
    );
    let modified = pass.headers()["last-modified"].to_str().unwrap().to_owned();
    let bytes = axum::body::to_bytes(pass.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    for name in ["manifest.json", "signature", "pass.json"] {
        let mut b = Vec::new();
        z.by_name(name).unwrap().read_to_end(&mut b).unwrap();
        std::fs::write(d.join(name), b).unwrap();
    }
    assert!(
        cms_verifies(d),
        "openssl cms -verify accepts the served pass"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("pass.json")).unwrap()).unwrap();
    assert_eq!(json["barcodes"][0]["message"], "WB-PASS-1");
    assert_eq!(json["authenticationToken"], token);
    assert_eq!(json["webServiceURL"], "https://mail.shop.example/wallet");
    let r = h
        .send(
            "GET",
            "/wallet/v1/passes/pass.com.shop.winback/s1",
            None,
            "",
            "",
            &[("authorization", &auth), ("if-modified-since", &modified)],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    let r = h
        .send(
            "GET",
            "/wallet/v1/passes/pass.com.shop.winback/s1",
            None,
            "",
            "",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "no token, no pass");

    // Nothing changed since the devices fetched it: no push.
    let now = h.clock.now();
    let t = service.push_due(&h.store, now).await.unwrap();
    assert_eq!(t, winback_app::wallet::PushTally::default());
    assert!(pushes.lock().unwrap().is_empty());
    // The offer changes (the next rung): each device is told once, with the pass type as topic.
    let change = |v: i64| {
        let h = &h;
        async move {
            h.store
                .pool()
                .execute(
                    &format!("UPDATE wallet_passes SET version = {v}, updated_at = updated_at + {v} * 1000000 WHERE serial = 's1'"),
                    &[],
                )
                .await
                .unwrap();
        }
    };
    change(2).await;
    let t = service.push_due(&h.store, now).await.unwrap();
    assert_eq!((t.sent, t.gone, t.failed), (1, 1, 0), "d2's token is gone");
    assert_eq!(
        service.push_due(&h.store, now).await.unwrap(),
        winback_app::wallet::PushTally::default(),
        "once per change"
    );
    change(3).await;
    service.push_due(&h.store, now).await.unwrap();
    let seen = pushes.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            ("abc123".to_owned(), "pass.com.shop.winback".to_owned()),
            ("dead01".to_owned(), "pass.com.shop.winback".to_owned()),
            ("abc123".to_owned(), "pass.com.shop.winback".to_owned()),
        ],
        "d1 told of each change once, d2 once and then unregistered"
    );

    // The device removes the pass; its logs are taken.
    let r = h
        .send(
            "DELETE",
            "/wallet/v1/devices/d1/registrations/pass.com.shop.winback/s1",
            None,
            "",
            "",
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .send(
            "POST",
            "/wallet/v1/log",
            None,
            "application/json",
            r#"{"logs": ["Web service error for pass.com.shop.winback"]}"#,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let c = h
        .store
        .wallet_counts(
            winback_domain::CampaignId::new(1),
            ts("2026-01-01T00:00:00Z"),
            ts("2027-01-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        (c.issued, c.added, c.updated, c.removed),
        (1, 1, 2, 1),
        "{c:?}"
    );
}

/// A fake Google: the OAuth token endpoint and the Wallet API's offer objects, recording every
/// request (method, path, authorization, body).
type Seen = Arc<Mutex<Vec<(String, String, String, serde_json::Value)>>>;

async fn fake_google() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let objects: Arc<Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let o1 = objects.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post(move |body: String| {
                let s = s1.clone();
                async move {
                    assert!(body.contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"), "{body}");
                    s.lock().unwrap().push(("POST".into(), "/token".into(), String::new(), serde_json::Value::Null));
                    axum::Json(serde_json::json!({"access_token": "tok-1", "expires_in": 3600, "token_type": "Bearer"}))
                }
            }),
        )
        .route(
            "/walletobjects/v1/offerObject",
            axum::routing::post(move |headers: axum::http::HeaderMap, axum::Json(v): axum::Json<serde_json::Value>| {
                let (s, o) = (s2.clone(), o1.clone());
                async move {
                    let auth = headers["authorization"].to_str().unwrap().to_owned();
                    let id = v["id"].as_str().unwrap().to_owned();
                    s.lock().unwrap().push(("POST".into(), id.clone(), auth, v));
                    if o.lock().unwrap().insert(id) { StatusCode::OK } else { StatusCode::CONFLICT }
                }
            }),
        )
        .route(
            "/walletobjects/v1/offerObject/{id}",
            axum::routing::patch(move |axum::extract::Path(id): axum::extract::Path<String>, headers: axum::http::HeaderMap, axum::Json(v): axum::Json<serde_json::Value>| {
                let s = s3.clone();
                async move {
                    let auth = headers["authorization"].to_str().unwrap().to_owned();
                    s.lock().unwrap().push(("PATCH".into(), id, auth, v));
                    StatusCode::OK
                }
            }),
        );
    (on_loopback(app).await, seen)
}

#[tokio::test]
async fn google_wallet_objects_follow_the_pass_and_android_links_save_to_google() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    rsa_key(d, "sa.pem");
    openssl::run(d, &["pkey", "-in", "sa.pem", "-pubout", "-out", "sa.pub"]);
    let (api, seen) = fake_google().await;
    std::fs::write(
        d.join("sa.json"),
        serde_json::json!({
            "type": "service_account",
            "client_email": "winback@shop-wallet.iam.gserviceaccount.com",
            "private_key": std::fs::read_to_string(d.join("sa.pem")).unwrap(),
            "token_uri": format!("{api}/token"),
        })
        .to_string(),
    )
    .unwrap();
    let mut config = winback_app::config::Config::default();
    config.wallet.google = winback_app::wallet::GoogleWalletConfig {
        issuer_id: "3388000000012345678".into(),
        class_suffix: "winback-offer".into(),
        service_account: Some(d.join("sa.json")),
        api_url: api,
    };
    let google = winback_app::wallet::GoogleWalletService::from_config(&config)
        .unwrap()
        .unwrap();
    let g = google.clone();
    let h = Harness::with(move |s| s.google_wallet = Some(g)).await;
    issue_pass(&h).await;
    let now = h.clock.now();
    let t = google.sync_due(&h.store, now).await.unwrap();
    assert_eq!((t.created, t.updated, t.failed), (1, 0, 0));
    assert_eq!(
        google.sync_due(&h.store, now).await.unwrap(),
        winback_app::wallet::SyncTally::default(),
        "in step"
    );
    h.store
        .pool()
        .execute(
            "UPDATE wallet_passes SET version = 2, updated_at = updated_at + 1 WHERE serial = 's1'",
            &[],
        )
        .await
        .unwrap();
    let t = google.sync_due(&h.store, now).await.unwrap();
    assert_eq!((t.created, t.updated, t.failed), (0, 1, 0));
    let seen = seen.lock().unwrap().clone();
    let calls: Vec<(&str, &str)> = seen
        .iter()
        .map(|(m, p, _, _)| (m.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST", "/token"),
            ("POST", "3388000000012345678.s1"),
            ("POST", "3388000000012345678.s1"),
            ("PATCH", "3388000000012345678.s1"),
        ],
        "one token for the hour; created, then updated when the pass changed"
    );
    assert!(
        seen[1..]
            .iter()
            .all(|(_, _, auth, _)| auth == "Bearer tok-1")
    );
    let object = &seen[1].3;
    assert_eq!(object["classId"], "3388000000012345678.winback-offer");
    assert_eq!(object["barcode"]["value"], "WB-PASS-1");
    assert_eq!(object["state"], "ACTIVE");

    // The add-to-wallet link on Android: a redirect to Google's save page, with the object
    // in a JWT the service account signed (checked with openssl).
    let token = h.token(winback_channels::Purpose::Wallet, "msg-1", Some("s1"));
    let r = h
        .get(
            &format!("/w/{token}"),
            &[("user-agent", "Mozilla/5.0 (Linux; Android 14; Pixel 8)")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let location = r.headers["location"].to_str().unwrap();
    let jwt = location
        .strip_prefix("https://pay.google.com/gp/v/save/")
        .unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["aud"], "google");
    assert_eq!(claims["typ"], "savetowallet");
    assert_eq!(claims["iss"], "winback@shop-wallet.iam.gserviceaccount.com");
    assert_eq!(
        claims["payload"]["offerObjects"][0]["id"],
        "3388000000012345678.s1"
    );
    assert_eq!(
        claims["payload"]["offerObjects"][0]["barcode"]["value"],
        "WB-PASS-1"
    );
    std::fs::write(d.join("signed.txt"), format!("{}.{}", parts[0], parts[1])).unwrap();
    std::fs::write(d.join("sig.bin"), b64.decode(parts[2]).unwrap()).unwrap();
    openssl::run(
        d,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "sa.pub",
            "-signature",
            "sig.bin",
            "signed.txt",
        ],
    );
    // A forged or foreign token gets the same 404 as every bad link.
    let forged = h.token(winback_channels::Purpose::Click, "msg-1", Some("s1"));
    assert_eq!(
        h.get(&format!("/w/{forged}"), &[]).await.status,
        StatusCode::NOT_FOUND
    );
}
