//! Channels: rendering messages (minijinja → MJML via mrml → HTML, and a plain-text part via
//! html2text) from a sandboxed, localised template library; signed tokens for every link a
//! message carries; composing RFC 5322 messages with the headers bulk senders need (Message-ID
//! from the idempotency key, RFC 8058 one-click `List-Unsubscribe`, `List-Id`, `Feedback-ID`,
//! DKIM); and the email transports the engine drives through its `Transport` trait: SMTP
//! through lettre's async pool, and an `.eml` file outbox.
//!
//! It also owns SMS ([`sms`]: segments, STOP footer and keywords, a signed HTTP provider),
//! outgoing webhooks with SSRF checks ([`http`]), audience files for ads and print
//! ([`exports`]), wallet passes and their pushes ([`wallet`]), and the human/machine
//! classification of opens ([`tracking`]).
//!
//! The engine never sees lettre: it hands a `Dispatch` to a `Transport` and gets a
//! `SendOutcome` back (a 5xx reply is a hard bounce, a 4xx a soft one).

pub mod dkim;
pub mod email;
pub mod exports;
pub mod google_wallet;
pub mod http;
pub mod library;
pub mod locale;
pub mod render;
pub mod reports;
pub mod sms;
pub mod subjects;
pub mod tokens;
pub mod tracking;
pub mod wallet;

pub use email::{
    ByChannel, Composer, EmailSettings, EmlOutbox, Mailer, SmtpSettings, SmtpTransport,
};
pub use render::{Links, RenderError, Rendered, Renderer};
pub use tokens::{Claims, Keyring, Purpose, TokenError, WalletLinks};

/// Each channel to its own transport: what `winback worker` drives.
#[derive(Debug)]
pub struct Routed<E, S, W> {
    /// Email.
    pub email: E,
    /// SMS.
    pub sms: S,
    /// Webhooks (and any other channel).
    pub webhook: W,
}

impl<E, S, W> winback_engine::ports::Transport for Routed<E, S, W>
where
    E: winback_engine::ports::Transport,
    S: winback_engine::ports::Transport,
    W: winback_engine::ports::Transport,
{
    async fn deliver(
        &self,
        d: &winback_engine::ports::Dispatch,
    ) -> winback_engine::ports::SendOutcome {
        match d.channel {
            winback_engine::MessageChannel::Email => self.email.deliver(d).await,
            winback_engine::MessageChannel::Sms => self.sms.deliver(d).await,
            winback_engine::MessageChannel::Webhook => self.webhook.deliver(d).await,
        }
    }
}
