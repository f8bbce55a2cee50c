use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty after trimming.
    #[error("name is empty")]
    Empty,
    /// Longer than 256 characters.
    #[error("name is longer than 256 characters")]
    TooLong,
    /// Contains control characters.
    #[error("name contains control characters")]
    ControlCharacter,
}

/// A person's first or family name: trimmed, non-empty, at most 256 characters. It may contain
/// anything else, including `<`; output escapes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    /// Parses a name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(NameError::Empty);
        }
        if s.chars().count() > 256 {
            return Err(NameError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(NameError::ControlCharacter);
        }
        Ok(Self(s.to_owned()))
    }
    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A matching form: ASCII-folded, lower-case letters only (`Müller-Łuk` → `mullerluk`).
    pub fn match_key(&self) -> String {
        deunicode::deunicode(&self.0)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_their_text_and_fold_for_matching() {
        let n = PersonName::parse("  Müller-Łukasz ").unwrap();
        assert_eq!(n.as_str(), "Müller-Łukasz");
        assert_eq!(n.match_key(), "mullerlukasz");
        assert_eq!(
            PersonName::parse("<img src=x onerror=alert(1)>")
                .unwrap()
                .as_str(),
            "<img src=x onerror=alert(1)>"
        );
        assert_eq!(PersonName::parse(""), Err(NameError::Empty));
        assert_eq!(PersonName::parse("a\nb"), Err(NameError::ControlCharacter));
    }
}
