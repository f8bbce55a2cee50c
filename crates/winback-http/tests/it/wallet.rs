//! The PassKit web service and APNs pushes, against a fake APNs on loopback that speaks HTTP/2
//! and records every push: devices register with the pass's token, fetch the latest pass (which
//! `openssl cms -verify` accepts), ask what changed, and every change reaches every registered
//! device once.

use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use winback_domain::Clock;

use crate::{Harness, ts};

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn passkit_web_service_and_one_push_per_change_and_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Test WWDR",
        ],
    );
    openssl(d, &["genrsa", "-traditional", "-out", "pass.key", "2048"]);
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            "pass.key",
            "-out",
            "pass.csr",
            "-subj",
            "/UID=pass.com.shop.winback/CN=Pass Type ID: pass.com.shop.winback",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "pass.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "pass.pem",
            "-days",
            "30",
        ],
    );
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
    };
    let service = winback_app::wallet::WalletService::from_config(&config)
        .unwrap()
        .unwrap();
    let w = service.clone();
    let h = Harness::with(move |s| s.wallet = Some(w)).await;
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
    openssl(
        d,
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            "signature",
            "-content",
            "manifest.json",
            "-CAfile",
            "ca.pem",
            "-purpose",
            "any",
            "-out",
            "/dev/null",
        ],
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
