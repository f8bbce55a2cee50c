use std::{fmt, str::FromStr};

use crate::Timestamp;

/// Why a consent value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// Unknown channel name.
    #[error("`{0}` is not a channel (email, sms)")]
    UnknownChannel(String),
    /// Unknown consent status.
    #[error("`{0}` is not a consent status (opt_in, soft_opt_in, none, withdrawn)")]
    UnknownStatus(String),
}

/// A channel that needs the contact's permission for marketing messages.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS text messages.
    Sms,
}

impl Channel {
    /// All consent channels.
    pub const ALL: [Channel; 2] = [Channel::Email, Channel::Sms];
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl FromStr for Channel {
    type Err = ConsentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            _ => Err(ConsentError::UnknownChannel(s.to_owned())),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The permission a contact gave for one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Explicit opt-in.
    OptIn,
    /// Soft opt-in: an existing customer may receive marketing for similar products, with an
    /// opt-out in every message.
    SoftOptIn,
    /// No permission recorded.
    None,
    /// Permission withdrawn. Withdrawal wins over everything.
    Withdrawn,
}

impl ConsentStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::OptIn => "opt_in",
            ConsentStatus::SoftOptIn => "soft_opt_in",
            ConsentStatus::None => "none",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
    /// Whether marketing may be sent on this basis.
    pub fn allows_marketing(self) -> bool {
        matches!(self, ConsentStatus::OptIn | ConsentStatus::SoftOptIn)
    }
}

impl FromStr for ConsentStatus {
    type Err = ConsentError;
    /// Accepts the stored names and the spellings exports use (`yes`, `true`, `subscribed`,
    /// `unsubscribed`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            // Mail tools: Mailchimp `subscribed`, Laposta and others `active`; Dutch and Polish
            // yes/subscribed.
            "opt_in" | "optin" | "yes" | "y" | "true" | "1" | "subscribed" | "granted"
            | "active" | "ja" | "aangemeld" | "ingeschreven" | "tak" | "zapisany" => {
                Ok(ConsentStatus::OptIn)
            }
            "soft_opt_in" | "soft" | "softoptin" => Ok(ConsentStatus::SoftOptIn),
            // `pending`: a double opt-in never confirmed; `transactional`: a contact that only
            // receives order mail; `archived`: kept by the tool, not on the list. None of them
            // is permission, and none is a withdrawal.
            "none" | "" | "no" | "n" | "false" | "0" | "not_subscribed" | "unknown" | "pending"
            | "transactional" | "archived" | "nee" | "nie" => Ok(ConsentStatus::None),
            // `cleaned`: Mailchimp removed the address after it bounced; never mail it again.
            "withdrawn" | "unsubscribed" | "opt_out" | "optout" | "revoked" | "cleaned"
            | "afgemeld" | "uitgeschreven" | "wypisany" => Ok(ConsentStatus::Withdrawn),
            _ => Err(ConsentError::UnknownStatus(s.to_owned())),
        }
    }
}

impl fmt::Display for ConsentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ground on which the shop hands a contact to an outside destination (an ad platform, an
/// onboarding partner, a print house). Set per destination in `winback.toml`: which one applies
/// is the shop's legal judgement, not the engine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalBasis {
    /// Only contacts with an explicit opt-in in force, and only the addresses that carry it
    /// (a soft opt-in covers the shop's own email, not a third party's list).
    Consent,
    /// Existing customers under the shop's legitimate interest (GDPR art. 6(1)(f)); anyone who
    /// objected to direct marketing is left out, whatever the channel.
    LegitimateInterest,
}

impl LegalBasis {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::LegitimateInterest => "legitimate_interest",
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One consent statement for one channel: what, where it came from, when, and which wording the
/// contact agreed to. The store keeps every statement in a ledger; the latest wins, except that a
/// withdrawal is only undone by a later explicit opt-in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Consent {
    /// The channel.
    pub channel: Channel,
    /// The permission.
    pub status: ConsentStatus,
    /// Where it was recorded (`import:customers.csv`, `preference_centre`, `checkout`, …).
    pub source: String,
    /// When it was given or withdrawn.
    pub at: Timestamp,
    /// The version of the consent wording shown, when known.
    pub wording_version: Option<String>,
}

impl Consent {
    /// Whether marketing may go to an address whose statement in force is `consent`: the
    /// statement allows it, and a soft opt-in counts only for a buyer (someone whose profile
    /// has an order: the soft opt-in covers existing customers, seed 001). The one place the
    /// rule lives: audiences and the send-time check both ask it.
    pub fn allows_marketing_to(consent: Option<&Consent>, buyer: bool) -> bool {
        consent.is_some_and(|c| match c.status {
            ConsentStatus::SoftOptIn => buyer,
            s => s.allows_marketing(),
        })
    }

    /// Folds a history of statements for one channel and one address into the one in force.
    ///
    /// The rules, in order:
    /// - the latest statement wins;
    /// - a withdrawal can only be overridden by a later explicit opt-in: a soft opt-in inferred
    ///   from a later purchase never revives a withdrawn contact;
    /// - `none` is the absence of a statement (a customer export that knows nothing about the
    ///   newsletter), so it never replaces a statement that was made;
    /// - statements made at the same instant are read as opt-in, then soft opt-in, then
    ///   withdrawal, so a tie can only end withdrawn, whatever order the ledger returns them in.
    ///
    /// The result does not depend on the order of `history`.
    pub fn effective<'a>(history: impl IntoIterator<Item = &'a Consent>) -> Option<&'a Consent> {
        let mut sorted: Vec<&Consent> = history.into_iter().collect();
        sorted.sort_by(|a, b| {
            (a.at, tie_rank(a.status), &a.source, &a.wording_version).cmp(&(
                b.at,
                tie_rank(b.status),
                &b.source,
                &b.wording_version,
            ))
        });
        let mut current: Option<&Consent> = None;
        for c in sorted {
            current = match current {
                Some(cur)
                    if cur.status == ConsentStatus::Withdrawn
                        && c.status != ConsentStatus::OptIn =>
                {
                    Some(cur)
                }
                Some(cur)
                    if c.status == ConsentStatus::None && cur.status != ConsentStatus::None =>
                {
                    Some(cur)
                }
                _ => Some(c),
            };
        }
        current
    }
}

/// The order of statements made at the same instant: a withdrawal is read last.
fn tie_rank(s: ConsentStatus) -> u8 {
    match s {
        ConsentStatus::None => 0,
        ConsentStatus::OptIn => 1,
        ConsentStatus::SoftOptIn => 2,
        ConsentStatus::Withdrawn => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> Timestamp {
        Timestamp::from_micros(day * 86_400_000_000).unwrap()
    }
    fn c(status: ConsentStatus, day: i64) -> Consent {
        Consent {
            channel: Channel::Email,
            status,
            source: "test".into(),
            at: at(day),
            wording_version: None,
        }
    }

    #[test]
    fn withdrawal_wins_over_soft_opt_in_but_not_a_later_explicit_opt_in() {
        let h = [
            c(ConsentStatus::OptIn, 1),
            c(ConsentStatus::Withdrawn, 5),
            c(ConsentStatus::SoftOptIn, 9),
        ];
        assert_eq!(
            Consent::effective(&h).unwrap().status,
            ConsentStatus::Withdrawn
        );
        let h2 = [c(ConsentStatus::Withdrawn, 5), c(ConsentStatus::OptIn, 9)];
        assert_eq!(
            Consent::effective(&h2).unwrap().status,
            ConsentStatus::OptIn
        );
        assert!(Consent::effective(&[]).is_none());
    }

    #[test]
    fn none_is_no_statement_and_ties_end_withdrawn() {
        let h = [c(ConsentStatus::OptIn, 1), c(ConsentStatus::None, 5)];
        assert_eq!(Consent::effective(&h).unwrap().status, ConsentStatus::OptIn);
        let h = [c(ConsentStatus::Withdrawn, 3), c(ConsentStatus::OptIn, 3)];
        assert_eq!(
            Consent::effective(&h).unwrap().status,
            ConsentStatus::Withdrawn
        );
        let h = [c(ConsentStatus::None, 3)];
        assert_eq!(Consent::effective(&h).unwrap().status, ConsentStatus::None);
    }

    #[test]
    fn mail_tool_statuses_parse() {
        for (word, status) in [
            ("subscribed", ConsentStatus::OptIn),
            ("active", ConsentStatus::OptIn),
            ("unsubscribed", ConsentStatus::Withdrawn),
            ("cleaned", ConsentStatus::Withdrawn),
            ("pending", ConsentStatus::None),
            ("transactional", ConsentStatus::None),
            ("Uitgeschreven", ConsentStatus::Withdrawn),
        ] {
            assert_eq!(word.parse::<ConsentStatus>().unwrap(), status, "{word}");
        }
    }

    fn any_status() -> impl proptest::strategy::Strategy<Value = ConsentStatus> {
        proptest::prop_oneof![
            proptest::strategy::Just(ConsentStatus::OptIn),
            proptest::strategy::Just(ConsentStatus::SoftOptIn),
            proptest::strategy::Just(ConsentStatus::None),
            proptest::strategy::Just(ConsentStatus::Withdrawn),
        ]
    }

    proptest::proptest! {
        /// The fold does not depend on the order the ledger returns statements in, and a
        /// withdrawal stays in force unless an explicit opt-in came strictly later.
        #[test]
        fn fold_is_order_free_and_withdrawal_holds(
            statements in proptest::collection::vec((any_status(), 0i64..20), 1..12),
            seed in 0u64..1000,
        ) {
            let h: Vec<Consent> = statements.iter().map(|(s, d)| c(*s, *d)).collect();
            let mut shuffled = h.clone();
            // A deterministic shuffle from the seed.
            let n = shuffled.len();
            for i in 0..n {
                let j = (seed as usize).wrapping_mul(31).wrapping_add(i * 17) % n;
                shuffled.swap(i, j);
            }
            let a = Consent::effective(&h).map(|c| c.status);
            let b = Consent::effective(&shuffled).map(|c| c.status);
            proptest::prop_assert_eq!(a, b);
            let last_withdrawal = h.iter().filter(|c| c.status == ConsentStatus::Withdrawn).map(|c| c.at).max();
            if let Some(w) = last_withdrawal {
                let revived = h.iter().any(|c| c.status == ConsentStatus::OptIn && c.at > w);
                if !revived {
                    proptest::prop_assert_eq!(a, Some(ConsentStatus::Withdrawn));
                }
            }
        }
    }

    #[test]
    fn export_spellings_parse() {
        assert_eq!(
            "Yes".parse::<ConsentStatus>().unwrap(),
            ConsentStatus::OptIn
        );
        assert_eq!(
            "unsubscribed".parse::<ConsentStatus>().unwrap(),
            ConsentStatus::Withdrawn
        );
        assert_eq!(
            "soft-opt-in".parse::<ConsentStatus>().unwrap(),
            ConsentStatus::SoftOptIn
        );
        assert!("maybe".parse::<ConsentStatus>().is_err());
        assert!(!ConsentStatus::None.allows_marketing());
    }
}
