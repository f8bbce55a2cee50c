//! Schema migrations, one ordered list per backend, applied automatically on connect.
//!
//! A small runner of our own rather than sqlx's: sqlx's runtime `Migrator` is built from
//! semver-exempt fields, and its `migrate!` macro would pull the whole proc-macro stack into every
//! build. Each migration runs in a transaction with its checksum recorded; an edited migration
//! that was already applied is refused rather than silently diverging. On PostgreSQL an advisory
//! lock serialises workers that start together.

use sha2::{Digest, Sha256};

use crate::{
    StoreError,
    db::{Backend, Pool, Val},
};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "scores",
        sqlite: include_str!("../migrations/sqlite/0002_scores.sql"),
        postgres: include_str!("../migrations/postgres/0002_scores.sql"),
    },
    Migration {
        version: 3,
        name: "features and models",
        sqlite: include_str!("../migrations/sqlite/0003_features_models.sql"),
        postgres: include_str!("../migrations/postgres/0003_features_models.sql"),
    },
    Migration {
        version: 4,
        name: "campaigns",
        sqlite: include_str!("../migrations/sqlite/0004_campaigns.sql"),
        postgres: include_str!("../migrations/postgres/0004_campaigns.sql"),
    },
    Migration {
        version: 5,
        name: "ramp window",
        sqlite: include_str!("../migrations/sqlite/0005_ramp_window.sql"),
        postgres: include_str!("../migrations/postgres/0005_ramp_window.sql"),
    },
    Migration {
        version: 6,
        name: "tracking and api",
        sqlite: include_str!("../migrations/sqlite/0006_tracking_api.sql"),
        postgres: include_str!("../migrations/postgres/0006_tracking_api.sql"),
    },
    Migration {
        version: 7,
        name: "privacy",
        sqlite: include_str!("../migrations/sqlite/0007_privacy.sql"),
        postgres: include_str!("../migrations/postgres/0007_privacy.sql"),
    },
    Migration {
        version: 8,
        name: "dashboard",
        sqlite: include_str!("../migrations/sqlite/0008_dashboard.sql"),
        postgres: include_str!("../migrations/postgres/0008_dashboard.sql"),
    },
    Migration {
        version: 9,
        name: "identity_held_apart",
        sqlite: include_str!("../migrations/sqlite/0009_identity_held_apart.sql"),
        postgres: include_str!("../migrations/postgres/0009_identity_held_apart.sql"),
    },
    Migration {
        version: 10,
        name: "transport_pauses",
        sqlite: include_str!("../migrations/sqlite/0010_transport_pauses.sql"),
        postgres: include_str!("../migrations/postgres/0010_transport_pauses.sql"),
    },
    Migration {
        version: 11,
        name: "outbox_key_digest",
        sqlite: include_str!("../migrations/sqlite/0011_outbox_key_digest.sql"),
        postgres: include_str!("../migrations/postgres/0011_outbox_key_digest.sql"),
    },
    Migration {
        version: 12,
        name: "jobs",
        sqlite: include_str!("../migrations/sqlite/0012_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0012_jobs.sql"),
    },
    Migration {
        version: 13,
        name: "message_rollup",
        sqlite: include_str!("../migrations/sqlite/0013_message_rollup.sql"),
        postgres: include_str!("../migrations/postgres/0013_message_rollup.sql"),
    },
    Migration {
        version: 14,
        name: "last_engaged",
        sqlite: include_str!("../migrations/sqlite/0014_last_engaged.sql"),
        postgres: include_str!("../migrations/postgres/0014_last_engaged.sql"),
    },
    Migration {
        version: 15,
        name: "enrolment_outcomes",
        sqlite: include_str!("../migrations/sqlite/0015_enrolment_outcomes.sql"),
        postgres: include_str!("../migrations/postgres/0015_enrolment_outcomes.sql"),
    },
    Migration {
        version: 16,
        name: "trigger_leases",
        sqlite: include_str!("../migrations/sqlite/0016_trigger_leases.sql"),
        postgres: include_str!("../migrations/postgres/0016_trigger_leases.sql"),
    },
    Migration {
        version: 17,
        name: "profile_hygiene",
        sqlite: include_str!("../migrations/sqlite/0017_profile_hygiene.sql"),
        postgres: include_str!("../migrations/postgres/0017_profile_hygiene.sql"),
    },
    Migration {
        version: 18,
        name: "enrolment_segments",
        sqlite: include_str!("../migrations/sqlite/0018_enrolment_segments.sql"),
        postgres: include_str!("../migrations/postgres/0018_enrolment_segments.sql"),
    },
    Migration {
        version: 19,
        name: "enrolment_messaged",
        sqlite: include_str!("../migrations/sqlite/0019_enrolment_messaged.sql"),
        postgres: include_str!("../migrations/postgres/0019_enrolment_messaged.sql"),
    },
    Migration {
        version: 20,
        name: "outbox_sent_subject",
        sqlite: include_str!("../migrations/sqlite/0020_outbox_sent_subject.sql"),
        postgres: include_str!("../migrations/postgres/0020_outbox_sent_subject.sql"),
    },
    Migration {
        version: 21,
        name: "enrolment_pre_entry",
        sqlite: include_str!("../migrations/sqlite/0021_enrolment_pre_entry.sql"),
        postgres: include_str!("../migrations/postgres/0021_enrolment_pre_entry.sql"),
    },
    Migration {
        version: 22,
        name: "channel_mix",
        sqlite: include_str!("../migrations/sqlite/0022_channel_mix.sql"),
        postgres: include_str!("../migrations/postgres/0022_channel_mix.sql"),
    },
    Migration {
        version: 23,
        name: "wallet_google",
        sqlite: include_str!("../migrations/sqlite/0023_wallet_google.sql"),
        postgres: include_str!("../migrations/postgres/0023_wallet_google.sql"),
    },
];

/// SHA-256 (hex) of an outbox row's idempotency key: what `outbox.key_digest` holds.
pub(crate) fn key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Fills `outbox.key_digest` for the rows written before migration 11.
async fn fill_key_digests(tx: &mut crate::db::Tx) -> Result<(), StoreError> {
    let rows = tx
        .fetch(
            "SELECT id, idempotency_key FROM outbox WHERE key_digest IS NULL",
            &[],
        )
        .await?;
    for r in rows {
        tx.execute(
            "UPDATE outbox SET key_digest = $2 WHERE id = $1",
            &[Val::from(r.i64(0)?), Val::from(key_digest(&r.text(1)?))],
        )
        .await?;
    }
    Ok(())
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Brings the schema up to date.
pub async fn migrate(pool: &Pool) -> Result<u32, StoreError> {
    let mut tx = pool.begin().await?;
    if pool.backend() == Backend::Postgres {
        // 0x77696e6261636b = "winback"
        tx.execute("SELECT pg_advisory_xact_lock(33629012323379563)", &[])
            .await?;
    }
    tx.execute(
        "CREATE TABLE IF NOT EXISTS winback_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL)",
        &[],
    )
    .await?;
    let applied = tx
        .fetch(
            "SELECT version, checksum FROM winback_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut done = std::collections::HashMap::new();
    for row in applied {
        done.insert(row.i64(0)?, row.text(1)?);
    }
    let mut ran = 0;
    for m in MIGRATIONS {
        let sql = match pool.backend() {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        let sum = checksum(sql);
        match done.get(&m.version) {
            Some(existing) if *existing == sum => continue,
            Some(_) => {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) was changed after it was applied; restore it and add a new migration instead",
                    m.version, m.name
                )));
            }
            None => {}
        }
        tx.execute_script(sql).await.map_err(|e| {
            StoreError::Migration(format!("migration {} ({}): {e}", m.version, m.name))
        })?;
        if m.version == 11 {
            fill_key_digests(&mut tx).await?;
        }
        tx.execute(
            "INSERT INTO winback_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[Val::from(m.version), Val::from(m.name), Val::from(sum)],
        )
        .await?;
        ran += 1;
    }
    let newest = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(&unknown) = done.keys().find(|v| **v > newest) {
        return Err(StoreError::Migration(format!(
            "the database has migration {unknown}, newer than this winback knows ({newest}); upgrade winback"
        )));
    }
    tx.commit().await?;
    Ok(ran)
}
