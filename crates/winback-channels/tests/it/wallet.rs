//! Apple Wallet passes signed with keys made by plain `openssl`, and verified by `openssl cms
//! -verify` against the issuing certificate, as Wallet verifies them against Apple's chain.

use std::io::Read;

use sha2::Digest;
use winback_channels::wallet::{PassContent, PassSigner, PassStyle};
use winback_domain::Timestamp;

use winback_testkit::openssl::{cms_verifies, pass_certificates, rsa_key};

pub fn content() -> PassContent {
    PassContent {
        pass_type: "pass.com.shop.winback".into(),
        team: "TEAM123456".into(),
        serial: "3f9a0c".into(),
        auth_token: "0123456789abcdef0123456789abcdef".into(),
        web_service_url: "https://mail.shop.example/wallet".into(),
        organization: "The Shop".into(),
        style: PassStyle::Coupon,
        code: Some("WB-7QK2MX4PLRTA".into()),
        offer: Some("€ 15,00 korting".into()),
        expires: Some(Timestamp::new("2025-08-01T00:00:00Z".parse().unwrap())),
        voided: false,
    }
}

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_owned(), b)
        })
        .collect()
}

#[test]
fn passes_verify_with_openssl_and_their_manifest_covers_every_file() {
    for traditional in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, wwdr) = pass_certificates(dir.path(), traditional);
        let signer = PassSigner::from_pem(&cert, &key, &wwdr).unwrap();
        let pkpass = content().build(&signer, None).unwrap();
        let files = unzip(&pkpass);
        assert_eq!(
            files.keys().map(String::as_str).collect::<Vec<_>>(),
            [
                "icon.png",
                "icon@2x.png",
                "manifest.json",
                "pass.json",
                "signature"
            ]
        );
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        for (name, bytes) in &files {
            if name == "manifest.json" || name == "signature" {
                continue;
            }
            assert_eq!(
                manifest[name].as_str().unwrap(),
                hex::encode(sha1::Sha1::digest(bytes)),
                "{name}"
            );
        }
        let pass: serde_json::Value = serde_json::from_slice(&files["pass.json"]).unwrap();
        assert_eq!(pass["serialNumber"], "3f9a0c");
        assert_eq!(pass["passTypeIdentifier"], "pass.com.shop.winback");
        assert_eq!(pass["barcodes"][0]["message"], "WB-7QK2MX4PLRTA");
        assert_eq!(
            pass["coupon"]["primaryFields"][0]["value"],
            "€ 15,00 korting"
        );
        assert_eq!(pass["expirationDate"], "2025-08-01T00:00:00Z");
        assert_eq!(pass["webServiceURL"], "https://mail.shop.example/wallet");
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        assert!(
            cms_verifies(dir.path()),
            "openssl cms -verify accepts the pass"
        );
        // A changed manifest no longer verifies.
        std::fs::write(dir.path().join("manifest.json"), b"{}").unwrap();
        assert!(!cms_verifies(dir.path()), "a tampered manifest must fail");
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, wwdr) = pass_certificates(dir.path(), false);
    rsa_key(dir.path(), "other.key");
    let other = std::fs::read_to_string(dir.path().join("other.key")).unwrap();
    let e = PassSigner::from_pem(&cert, &other, &wwdr)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not belong to the pass certificate"), "{e}");
    let e = PassSigner::from_pem(&cert, "not a key", &wwdr)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pass key: not an RSA private key"), "{e}");
    let e = PassSigner::from_pem(b"garbage", &other, &wwdr)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("pass certificate:"), "{e}");
}

#[test]
fn a_used_code_voids_the_pass_and_a_store_card_has_its_own_fields() {
    let mut c = content();
    c.voided = true;
    c.style = PassStyle::StoreCard;
    let p = c.pass_json();
    assert_eq!(p["voided"], true);
    assert!(p["storeCard"]["primaryFields"].is_array());
    assert!(p.get("coupon").is_none());
}
