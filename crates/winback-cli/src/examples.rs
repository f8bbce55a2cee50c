//! The example win-back programme (`examples/campaigns/`), built into the binary so
//! `winback demo` runs it wherever the binary is.

use std::path::PathBuf;

use winback_engine::Campaign;

/// File name and text of every example campaign.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "we-miss-you.toml",
        include_str!("../../../examples/campaigns/we-miss-you.toml"),
    ),
    (
        "one-time-buyer.toml",
        include_str!("../../../examples/campaigns/one-time-buyer.toml"),
    ),
    (
        "re-permission.toml",
        include_str!("../../../examples/campaigns/re-permission.toml"),
    ),
    (
        "cart-reminder.toml",
        include_str!("../../../examples/campaigns/cart-reminder.toml"),
    ),
    (
        "first-purchase-anniversary.toml",
        include_str!("../../../examples/campaigns/first-purchase-anniversary.toml"),
    ),
    (
        "welcome-back.toml",
        include_str!("../../../examples/campaigns/welcome-back.toml"),
    ),
    (
        "review-request.toml",
        include_str!("../../../examples/campaigns/review-request.toml"),
    ),
    (
        "lost-customers-offline.toml",
        include_str!("../../../examples/campaigns/lost-customers-offline.toml"),
    ),
    (
        "lost-customers-wallet-and-phone.toml",
        include_str!("../../../examples/campaigns/lost-customers-wallet-and-phone.toml"),
    ),
    (
        "loyalty-points.toml",
        include_str!("../../../examples/campaigns/loyalty-points.toml"),
    ),
    (
        "keep-promises.toml",
        include_str!("../../../examples/campaigns/keep-promises.toml"),
    ),
];

/// The examples, checked.
pub fn campaigns() -> anyhow::Result<Vec<(PathBuf, String, Campaign)>> {
    EXAMPLES
        .iter()
        .map(|(file, text)| {
            let path = PathBuf::from("examples/campaigns").join(file);
            let c = Campaign::parse(&path.display().to_string(), text)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((path, (*text).to_owned(), c))
        })
        .collect()
}
