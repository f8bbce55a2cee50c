//! The dashboard's administrators and sessions, and the per-person reads its customer timeline
//! needs. The store keeps only hashes: argon2id PHC strings of passwords (made by the HTTP
//! crate) and SHA-256 of session tokens.

use winback_domain::{ProfileId, Timestamp};

use crate::db::Val;
use crate::queries::ts;
use crate::{SqlStore, StoreError};

/// A logged-in administrator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    /// The administrator's id.
    pub user_id: i64,
    /// Their name.
    pub username: String,
    /// The session's CSRF token (forms carry it back).
    pub csrf: String,
    /// When the session ends.
    pub expires_at: Timestamp,
}

/// One message to a person, for their timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageView {
    /// Campaign.
    pub campaign: String,
    /// Step.
    pub step: String,
    /// Variant.
    pub variant: String,
    /// Channel.
    pub channel: String,
    /// Subject (email) as the campaign gives it: a template, or one per language.
    pub subject: Option<String>,
    /// The subject line as the recipient got it, once sent (rendered; cleared on erasure).
    pub sent_subject: Option<String>,
    /// State (`queued`, `sent`, `failed`, `dropped`, `in_doubt`, …).
    pub state: String,
    /// Outcome or the reason it was dropped.
    pub outcome: Option<String>,
    /// Where it went, once handed to the transport.
    pub recipient: Option<String>,
    /// Queued at.
    pub queued_at: Timestamp,
    /// Handed to the provider at.
    pub sent_at: Option<Timestamp>,
}

/// One journey of a person, for their timeline.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JourneyView {
    /// Campaign.
    pub campaign: String,
    /// Variant.
    pub variant: String,
    /// In the holdout.
    pub holdout: bool,
    /// State.
    pub state: String,
    /// Entered at.
    pub entered_at: Timestamp,
    /// Ended at.
    pub ended_at: Option<Timestamp>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

impl SqlStore {
    /// Creates the administrator or replaces their password hash; their sessions end.
    pub async fn set_admin_password(
        &self,
        username: &str,
        password_hash: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        tx.execute(
            "INSERT INTO admin_users (username, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at",
            &[
                Val::from(username),
                Val::from(password_hash),
                Val::from(now.as_micros()),
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM admin_sessions WHERE user_id = (SELECT id FROM admin_users WHERE username = $1)",
            &[Val::from(username)],
        )
        .await?;
        tx.commit().await
    }

    /// An administrator's id and password hash.
    pub async fn admin_user(&self, username: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.pool
            .fetch_optional(
                "SELECT id, password_hash FROM admin_users WHERE username = $1",
                &[Val::from(username)],
            )
            .await?
            .map(|r| Ok((r.i64(0)?, r.text(1)?)))
            .transpose()
    }

    /// Whether any administrator exists.
    pub async fn has_admins(&self) -> Result<bool, StoreError> {
        Ok(!self
            .pool
            .fetch("SELECT 1 FROM admin_users LIMIT 1", &[])
            .await?
            .is_empty())
    }

    /// Stores a new session (by its token's hash); expired sessions are removed on the way.
    pub async fn create_admin_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        tx.execute(
            "DELETE FROM admin_sessions WHERE expires_at <= $1",
            &[Val::from(now.as_micros())],
        )
        .await?;
        tx.execute(
            "INSERT INTO admin_sessions (token_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                Val::from(token_hash),
                Val::from(user_id),
                Val::from(csrf),
                Val::from(now.as_micros()),
                Val::from(expires_at.as_micros()),
            ],
        )
        .await?;
        tx.commit().await
    }

    /// The session of a token hash, if it exists and has not expired.
    pub async fn admin_session(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Option<AdminSession>, StoreError> {
        self.pool
            .fetch_optional(
                "SELECT s.user_id, u.username, s.csrf, s.expires_at FROM admin_sessions s JOIN admin_users u ON u.id = s.user_id \
                 WHERE s.token_hash = $1 AND s.expires_at > $2",
                &[Val::from(token_hash), Val::from(now.as_micros())],
            )
            .await?
            .map(|r| {
                Ok(AdminSession {
                    user_id: r.i64("user_id")?,
                    username: r.text("username")?,
                    csrf: r.text("csrf")?,
                    expires_at: ts(r.i64("expires_at")?)?,
                })
            })
            .transpose()
    }

    /// Ends a session.
    pub async fn delete_admin_session(&self, token_hash: &str) -> Result<(), StoreError> {
        self.pool
            .execute(
                "DELETE FROM admin_sessions WHERE token_hash = $1",
                &[Val::from(token_hash)],
            )
            .await?;
        Ok(())
    }

    /// A person's latest messages, newest first.
    pub async fn profile_messages(
        &self,
        profile_id: ProfileId,
        limit: i64,
    ) -> Result<Vec<MessageView>, StoreError> {
        let profile_id = profile_id.get();
        self.pool
            .fetch(
                "SELECT k.name AS campaign, o.step, o.variant, o.channel, o.subject, o.sent_subject, o.state, COALESCE(o.outcome, o.detail) AS outcome, o.created_at, o.sent_at, o.recipient \
                 FROM outbox o JOIN campaigns k ON k.id = o.campaign_id WHERE o.profile_id = $1 ORDER BY o.created_at DESC, o.id DESC LIMIT $2",
                &[Val::from(profile_id), Val::from(limit)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(MessageView {
                    campaign: r.text("campaign")?,
                    step: r.text("step")?,
                    variant: r.text("variant")?,
                    channel: r.text("channel")?,
                    subject: r.opt_text("subject")?,
                    sent_subject: r.opt_text("sent_subject")?,
                    state: r.text("state")?,
                    outcome: r.opt_text("outcome")?,
                    recipient: r.opt_text("recipient")?,
                    queued_at: ts(r.i64("created_at")?)?,
                    sent_at: r.opt_i64("sent_at")?.map(ts).transpose()?,
                })
            })
            .collect()
    }

    /// A person's journeys, newest first.
    pub async fn profile_journeys(
        &self,
        profile_id: ProfileId,
    ) -> Result<Vec<JourneyView>, StoreError> {
        let profile_id = profile_id.get();
        self.pool
            .fetch(
                "SELECT k.name AS campaign, e.variant, e.holdout, e.state, e.entered_at, e.ended_at, e.end_reason \
                 FROM enrolments e JOIN campaigns k ON k.id = e.campaign_id WHERE e.profile_id = $1 ORDER BY e.entered_at DESC, e.id DESC",
                &[Val::from(profile_id)],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(JourneyView {
                    campaign: r.text("campaign")?,
                    variant: r.text("variant")?,
                    holdout: r.i64("holdout")? != 0,
                    state: r.text("state")?,
                    entered_at: ts(r.i64("entered_at")?)?,
                    ended_at: r.opt_i64("ended_at")?.map(ts).transpose()?,
                    end_reason: r.opt_text("end_reason")?,
                })
            })
            .collect()
    }

    /// A campaign's offer codes counted by kind and state: (kind, state, codes).
    pub async fn offer_codes_summary(
        &self,
        campaign: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.pool
            .fetch(
                "SELECT o.kind, o.state, COUNT(*) AS n FROM offers o JOIN campaigns k ON k.id = o.campaign_id WHERE k.name = $1 GROUP BY o.kind, o.state ORDER BY o.kind, o.state",
                &[Val::from(campaign)],
            )
            .await?
            .iter()
            .map(|r| Ok((r.text("kind")?, r.text("state")?, r.i64("n")?)))
            .collect()
    }
}
