use std::collections::BTreeMap;

use crate::{
    Consent, EmailAddress, ExternalId, Locale, PersonName, PhoneE164, PostalAddress, TimeZoneName,
    Timestamp,
};

/// A customer as a source describes them, parsed and valid. Fields a source did not provide are
/// `None`; re-importing never blanks what an earlier import stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CustomerRecord {
    /// The source's customer number, or `email:<key>` for buyers known only by address.
    pub external_id: ExternalId,
    /// Email address.
    pub email: Option<EmailAddress>,
    /// Mobile or landline in E.164.
    pub phone: Option<PhoneE164>,
    /// First name.
    pub first_name: Option<PersonName>,
    /// Family name.
    pub last_name: Option<PersonName>,
    /// Postal address.
    pub address: Option<PostalAddress>,
    /// IANA time zone.
    pub time_zone: Option<TimeZoneName>,
    /// Language for templates.
    pub locale: Option<Locale>,
    /// When the customer signed up in the source.
    pub created_at: Option<Timestamp>,
    /// Consent statements the source carries.
    pub consents: Vec<Consent>,
    /// Every other column of the source, by header name.
    pub attributes: BTreeMap<String, String>,
}

impl CustomerRecord {
    /// A record that only names the customer: what an order or event creates when the customer
    /// file has not been imported (CDNOW has no customer file at all).
    pub fn stub(external_id: ExternalId) -> Self {
        Self {
            external_id,
            email: None,
            phone: None,
            first_name: None,
            last_name: None,
            address: None,
            time_zone: None,
            locale: None,
            created_at: None,
            consents: Vec::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// The household key used by identity resolution: the address's match key plus the family
    /// name, so two people at one address with different family names stay apart.
    pub fn address_identity_key(&self) -> Option<String> {
        let addr = self.address.as_ref()?.match_key()?;
        let family = self.last_name.as_ref()?.match_key();
        if family.is_empty() {
            return None;
        }
        Some(format!("{addr}|{family}"))
    }
}
