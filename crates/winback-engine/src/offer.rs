//! Offer codes (seed 003): unique, unguessable, issued idempotently.
//!
//! A code is the HMAC-SHA256 of (campaign, enrolment, step) under the shop's secret, written in
//! Crockford base32 without look-alike letters. Issuing again for the same enrolment and step
//! gives the same code, so a retried step cannot hand out a second one; without the secret no
//! one can derive another customer's code. The store's unique index on codes turns the
//! (2⁻⁶⁰-likely) collision into an error rather than a shared code.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use winback_domain::Timestamp;

use crate::definition::{Ladder, Rung};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The code for one offer step of one enrolment: `WB-` and 12 base32 characters (60 bits).
pub fn code(
    secret: &[u8],
    campaign: &str,
    enrolment_id: winback_domain::EnrolmentId,
    step: &str,
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for part in [
        campaign.as_bytes(),
        &enrolment_id.get().to_le_bytes(),
        step.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    let digest = mac.finalize().into_bytes();
    let mut bits = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
    let mut out = String::from("WB-");
    for _ in 0..12 {
        out.push(ALPHABET[(bits & 31) as usize] as char);
        bits >>= 5;
    }
    out
}

/// An offer to issue.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedOffer {
    /// The code.
    pub code: String,
    /// Ladder name.
    pub ladder: String,
    /// 0-based rung.
    pub rung: usize,
    /// What it is.
    pub details: Rung,
    /// Currency of amounts.
    pub currency: String,
    /// Valid until.
    pub expires_at: Timestamp,
}

/// The next rung for an enrolment that already holds `issued` offers from this ladder; past the
/// top the ladder stays on its last rung.
pub fn next_rung(ladder: &Ladder, issued: usize) -> (usize, &Rung) {
    let i = issued.min(ladder.rungs.len() - 1);
    (i, &ladder.rungs[i])
}

/// The serial number of a contact's wallet pass for a campaign: one pass per campaign and
/// person, so a later wallet step (the next rung, a reminder) updates the pass the person
/// already holds instead of issuing another. Keyed with the engine's secret, so serials cannot
/// be guessed from ids.
pub fn pass_serial(secret: &[u8], campaign: &str, profile: winback_domain::ProfileId) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    for part in [
        b"wallet".as_slice(),
        campaign.as_bytes(),
        &profile.get().to_le_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_stable_distinct_and_secret_bound() {
        let a = code(
            b"secret",
            "we-miss-you",
            winback_domain::EnrolmentId::new(1),
            "offer-1",
        );
        assert_eq!(
            a,
            code(
                b"secret",
                "we-miss-you",
                winback_domain::EnrolmentId::new(1),
                "offer-1"
            )
        );
        assert!(a.starts_with("WB-") && a.len() == 15);
        assert_ne!(
            a,
            code(
                b"other",
                "we-miss-you",
                winback_domain::EnrolmentId::new(1),
                "offer-1"
            )
        );
        let many: HashSet<String> = (0..50_000)
            .map(|i| code(b"s", "c", winback_domain::EnrolmentId::new(i), "o"))
            .collect();
        assert_eq!(many.len(), 50_000);
        assert!(
            a[3..]
                .chars()
                .all(|c| ALPHABET.contains(&(c as u8)) && !"ILOU".contains(c))
        );
    }

    #[test]
    fn a_pass_serial_is_stable_per_campaign_and_person_and_keyed() {
        let p = winback_domain::ProfileId::new(7);
        let a = pass_serial(b"k1", "c", p);
        assert_eq!(a, pass_serial(b"k1", "c", p));
        assert_eq!(a.len(), 32);
        assert_ne!(a, pass_serial(b"k2", "c", p));
        assert_ne!(a, pass_serial(b"k1", "d", p));
        assert_ne!(
            a,
            pass_serial(b"k1", "c", winback_domain::ProfileId::new(8))
        );
    }
}
