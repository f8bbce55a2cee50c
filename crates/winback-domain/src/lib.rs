//! `winback-domain` owns the vocabulary of winback: newtypes that can only hold valid values
//! (email addresses, E.164 phone numbers, money in integer minor units, consent, time zones,
//! locales, timestamps), the records that importers produce and the store persists (customers,
//! orders, events), the facts feature computation reads, and the injected [`Clock`].
//!
//! Everything here is pure: no IO, no async runtime, no database. Values are parsed once at the
//! boundary (`EmailAddress::parse`, `Money::parse_decimal`, …) and inner code never handles raw
//! strings for them again.

mod address;
mod clock;
mod consent;
mod customer;
mod email;
mod event;
mod facts;
mod features;
mod ids;
mod locale;
mod money;
mod name;
mod order;
mod phone;

pub use address::{AddressError, PostalAddress, country_code};
pub use clock::{Clock, ManualClock, ShiftedClock, SystemClock, Timestamp, set_shop_time_zone};
pub use consent::{Channel, Consent, ConsentError, ConsentStatus, LegalBasis};
pub use customer::CustomerRecord;
pub use email::{EmailAddress, EmailError};
pub use event::{
    ACTIVITY_EVENTS, BounceKind, CallOutcome, EventError, EventKind, EventRecord, LeaveReason,
};
pub use facts::{FactSet, OrderFact, ProfileFacts, Signal, SignalFact, is_machine_open};
pub use features::{Features, LOYALTY_WINDOW_DAYS, LoyaltyTrend, SubscriptionState};
pub use ids::{CampaignId, CustomerId, EnrolmentId, ExternalId, IdError, MessageKey, ProfileId};
pub use locale::{Locale, LocaleError, TimeZoneName};
pub use money::{Currency, DecimalSeparator, Money, MoneyError};
pub use name::{NameError, PersonName};
pub use order::{DiscountCode, LineItem, OrderRecord, OrderStatus, normalise_category};
pub use phone::{PhoneE164, PhoneError, Region};
