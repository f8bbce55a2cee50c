//! The link-token decoder: arbitrary strings are refused without panicking; arbitrary payloads
//! carrying a valid signature reach the claims parser; a forged or altered token never
//! verifies; what was signed verifies back to the same claims.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use winback_channels::tokens::{Claims, Keyring, Purpose};
use winback_domain::Timestamp;

const SECRET: &[u8] = b"fuzzing-secret-of-at-least-32-bytes!";

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new("k1", SECRET).expect("a valid key");
    let now = Timestamp::EPOCH;
    let purposes = [
        Purpose::Unsubscribe,
        Purpose::Preferences,
        Purpose::Survey,
        Purpose::Click,
    ];
    let purpose = purposes[data.first().map_or(0, |b| *b as usize) % purposes.len()];
    // 1. The bytes as a token.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ring.verify(purpose, text, now);
    }
    // 2. The bytes as a payload with a valid signature: the JSON claims parser sees them.
    let payload = B64.encode(data);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(format!("v1.k1.{}.{payload}", purpose.as_str()).as_bytes());
    let tag = mac.finalize().into_bytes();
    let token = format!("v1.k1.{payload}.{}", B64.encode(&tag[..16]));
    let _ = ring.verify(purpose, &token, now);
    // 3. Claims from the bytes round-trip; a flipped character never verifies.
    let message = String::from_utf8_lossy(data).into_owned();
    let claims = Claims {
        message,
        extra: None,
        expires: i64::MAX / 2,
    };
    let signed = ring.sign(purpose, &claims);
    assert_eq!(ring.verify(purpose, &signed, now).ok(), Some(claims));
    let mut bytes = signed.into_bytes();
    let i = data.len() % bytes.len();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    if let Ok(tampered) = String::from_utf8(bytes) {
        assert!(
            ring.verify(purpose, &tampered, now).is_err(),
            "a tampered token verified: {tampered}"
        );
    }
});
