use std::{fmt, str::FromStr};

use crate::{ExternalId, Money, Timestamp};

/// What happened to an order's payment. Refunded and cancelled orders do not count as purchases
/// for inactivity, but are kept for measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Paid (or fulfilled).
    Paid,
    /// Not paid yet.
    Pending,
    /// Partially refunded; still a purchase.
    PartiallyRefunded,
    /// Fully refunded.
    Refunded,
    /// Cancelled or voided.
    Cancelled,
}

impl OrderStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Paid => "paid",
            OrderStatus::Pending => "pending",
            OrderStatus::PartiallyRefunded => "partially_refunded",
            OrderStatus::Refunded => "refunded",
            OrderStatus::Cancelled => "cancelled",
        }
    }
    /// Whether the order is a purchase for recency and frequency.
    pub fn counts_as_purchase(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Pending
        )
    }
}

impl FromStr for OrderStatus {
    type Err = String;
    /// Accepts winback's names and Shopify's financial statuses.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s
            .trim()
            .to_ascii_lowercase()
            .replace([' ', '-'], "_")
            .as_str()
        {
            "" | "paid" | "complete" | "completed" | "fulfilled" | "shipped" | "delivered" => {
                Ok(OrderStatus::Paid)
            }
            "pending" | "authorized" | "authorised" | "open" | "processing" => {
                Ok(OrderStatus::Pending)
            }
            "partially_refunded" | "partially_paid" => Ok(OrderStatus::PartiallyRefunded),
            "refunded" | "returned" => Ok(OrderStatus::Refunded),
            "cancelled" | "canceled" | "voided" | "void" => Ok(OrderStatus::Cancelled),
            other => Err(format!(
                "`{other}` is not an order status (paid, pending, partially_refunded, refunded, cancelled)"
            )),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A discount code as the shop prints it, normalised to upper case for redemption matching.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct DiscountCode(String);

impl DiscountCode {
    /// Parses a code: trimmed, 1–64 characters, letters, digits, `-` and `_`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(format!("`{s}` is not a discount code (1-64 characters)"));
        }
        if !s
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "`{s}` is not a discount code (letters, digits, - and _ only)"
            ));
        }
        Ok(Self(s.to_uppercase()))
    }
    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One product line of an order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineItem {
    /// Stock-keeping unit.
    pub sku: Option<String>,
    /// Product name.
    pub name: String,
    /// Product category (lower-case), which sets the repurchase cycle.
    pub category: Option<String>,
    /// Units.
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
}

/// An order as a source describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrderRecord {
    /// The shop's order number.
    pub external_id: ExternalId,
    /// The customer who placed it.
    pub customer: ExternalId,
    /// When it was placed.
    pub ordered_at: Timestamp,
    /// The amount paid, after discounts.
    pub total: Money,
    /// The discount given, in the order's currency.
    pub discount: Money,
    /// Payment status.
    pub status: OrderStatus,
    /// The main product category, when the source gives one per order.
    pub category: Option<String>,
    /// Number of units (CDNOW's "number of CDs"); the sum of line quantities when items exist.
    pub item_count: u32,
    /// Codes redeemed.
    pub discount_codes: Vec<DiscountCode>,
    /// Product lines, possibly empty.
    pub items: Vec<LineItem>,
}

/// Normalises a category name: trimmed and lower-case. Empty becomes `None`.
pub fn normalise_category(raw: &str) -> Option<String> {
    let s = raw.trim().to_lowercase();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_shopify_spellings() {
        assert_eq!(
            "refunded".parse::<OrderStatus>().unwrap(),
            OrderStatus::Refunded
        );
        assert_eq!(
            "Partially Refunded".parse::<OrderStatus>().unwrap(),
            OrderStatus::PartiallyRefunded
        );
        assert_eq!(
            "voided".parse::<OrderStatus>().unwrap(),
            OrderStatus::Cancelled
        );
        assert!("lost in space".parse::<OrderStatus>().is_err());
        assert!(!OrderStatus::Refunded.counts_as_purchase());
    }

    #[test]
    fn codes_normalise_and_refuse_junk() {
        assert_eq!(
            DiscountCode::parse(" welcome10 ").unwrap().as_str(),
            "WELCOME10"
        );
        assert!(DiscountCode::parse("a b").is_err());
        assert!(DiscountCode::parse("").is_err());
        assert_eq!(normalise_category(" Fashion "), Some("fashion".into()));
    }
}
