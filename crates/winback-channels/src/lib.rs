//! Channels: rendering messages (minijinja → MJML via mrml → HTML, and a plain-text part via
//! html2text) from a sandboxed, localised template library; signed tokens for every link a
//! message carries; composing RFC 5322 messages with the headers bulk senders need (Message-ID
//! from the idempotency key, RFC 8058 one-click `List-Unsubscribe`, `List-Id`, `Feedback-ID`,
//! DKIM); and the email transports the engine drives through its `Transport` trait: SMTP
//! through lettre's async pool, and an `.eml` file outbox.
//!
//! The engine never sees lettre: it hands a `Dispatch` to a `Transport` and gets a
//! `SendOutcome` back (a 5xx reply is a hard bounce, a 4xx a soft one).

pub mod email;
pub mod library;
pub mod render;
pub mod subjects;
pub mod tokens;

pub use email::{
    ByChannel, Composer, EmailSettings, EmlOutbox, Mailer, SmtpSettings, SmtpTransport,
};
pub use render::{Links, RenderError, Rendered, Renderer};
pub use tokens::{Claims, Keyring, Purpose, TokenError};
