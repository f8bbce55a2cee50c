//! Configuration: built-in defaults, then `winback.toml`, then `WINBACK_…` environment variables
//! (`WINBACK_DATABASE_URL`, `WINBACK_IMPORT__MAX_ERRORS`, `WINBACK_IDENTITY__PHONE=false`, …).

use std::path::Path;

use anyhow::{Context, Result};
use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use winback_domain::{Currency, DecimalSeparator, Locale, Region, TimeZoneName, Timestamp};
use winback_identity::IdentityRules;
use winback_import::{DateOrder, ImportOptions};
use winback_scoring::{ClvSettings, InactivityDefinition, ModelKind, PrioritySettings, StageRules};

/// Everything `winback.toml` can set.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `sqlite://winback.db` (default) or `postgres://user@host/db`.
    pub database_url: String,
    /// Region for phone numbers without a country code.
    pub default_region: String,
    /// Zone for times without an offset, and for customers without one.
    pub default_time_zone: String,
    /// Currency for amounts without a currency column.
    pub default_currency: String,
    /// Locale for customers without one.
    pub default_locale: Option<String>,
    /// Import settings.
    pub import: ImportConfig,
    /// Identity-resolution rules.
    pub identity: IdentityConfig,
    /// `[scoring]`: which purchase model, and the prediction horizon.
    pub scoring: ScoringConfig,
    /// `[stages]`: lifecycle stage thresholds.
    pub stages: StageRules,
    /// `[clv]`: horizon, discount rate and margin of CLV.
    pub clv: ClvSettings,
    /// `[[inactivity]]`: named inactivity definitions (replacing the defaults when given).
    pub inactivity: Vec<InactivityDefinition>,
    /// `[priority]`: win-back priority response rates, boosts, offer cost and exclusions.
    pub priority: PrioritySettings,
    /// `[engine]`: the worker's leases, batches and offer-code key.
    pub engine: EngineConfig,
    /// `[policy]`: send windows, frequency caps and the deliverability ramp.
    pub policy: PolicyConfig,
    /// `[simulation]`: how simulated contacts respond (`winback simulate`, `winback demo`).
    pub simulation: winback_engine::simulate::ResponseModel,
}

/// `[engine]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Key that makes offer codes unguessable; set it (`WINBACK_ENGINE__SECRET`) in production.
    pub secret: String,
    /// Seconds a claim is held before another worker may take it over.
    pub lease_seconds: i64,
    /// Claims per batch.
    pub batch: usize,
    /// Seconds between passes of `winback worker`.
    pub poll_seconds: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            secret: "winback-development-secret".into(),
            lease_seconds: 60,
            batch: 500,
            poll_seconds: 5,
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Local window for marketing sends, e.g. `"09:00-20:00"` (SMS never outside 08:00–21:00).
    pub send_window: String,
    /// Frequency caps across every campaign.
    pub caps: Vec<winback_engine::policy::Cap>,
    /// The deliverability ramp and breaker.
    pub ramp: winback_engine::policy::RampSettings,
    /// A message that cannot leave within this long is dropped as expired, e.g. `"7d"`.
    pub max_defer: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let p = winback_engine::policy::PolicySettings::default();
        Self {
            send_window: p.send_window.to_string(),
            caps: p.caps,
            ramp: p.ramp,
            max_defer: p.max_defer.to_string(),
        }
    }
}

impl Config {
    /// The engine's settings from `[engine]`, `[policy]` and the default zone.
    pub fn engine_settings(&self) -> Result<winback_engine::EngineSettings> {
        use winback_engine::duration::{Duration, LocalWindow};
        let send_window = LocalWindow::parse(&self.policy.send_window)
            .map_err(|e| anyhow::anyhow!("policy.send_window: {e}"))?;
        let max_defer = Duration::parse(&self.policy.max_defer)
            .map_err(|e| anyhow::anyhow!("policy.max_defer: {e}"))?;
        anyhow::ensure!(
            self.policy.ramp.step > 0.0 && self.policy.ramp.step <= 0.10,
            "policy.ramp.step must be above 0 and at most 0.10 (seed 001: widen in steps of at most 10%)"
        );
        anyhow::ensure!(
            self.engine.lease_seconds >= 5,
            "engine.lease_seconds must be at least 5"
        );
        Ok(winback_engine::EngineSettings {
            policy: winback_engine::policy::PolicySettings {
                send_window,
                default_zone: self.default_time_zone.clone(),
                caps: self.policy.caps.clone(),
                ramp: self.policy.ramp,
                max_defer,
            },
            secret: self.engine.secret.as_bytes().to_vec(),
            lease_seconds: self.engine.lease_seconds,
            batch: self.engine.batch.max(1),
            worker_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
                std::process::id()
            ),
            date_grace_days: 2,
        })
    }
}

/// `[scoring]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// `bgnbd` (default), `mbgnbd` or `pareto_nbd`.
    pub model: ModelKind,
    /// Horizon of "expected purchases", in days.
    pub horizon_days: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            model: ModelKind::Bgnbd,
            horizon_days: 90.0,
        }
    }
}

/// `[import]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    /// How to read `03/04/2024`: `dmy` or `mdy`; unset refuses ambiguous dates.
    pub date_order: Option<DateOrder>,
    /// `auto`, `dot` or `comma`.
    pub decimal: DecimalSeparator,
    /// CSV delimiter.
    pub delimiter: String,
    /// Errors listed before an import stops looking.
    pub max_errors: usize,
    /// Records per write batch.
    pub batch_rows: usize,
}

/// `[identity]`
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Resolve identities after every import.
    pub auto_resolve: bool,
    /// The merge rules.
    #[serde(flatten)]
    pub rules: IdentityRules,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "sqlite://winback.db".into(),
            default_region: "NL".into(),
            default_time_zone: "Europe/Amsterdam".into(),
            default_currency: "EUR".into(),
            default_locale: None,
            import: ImportConfig::default(),
            identity: IdentityConfig::default(),
            scoring: ScoringConfig::default(),
            stages: StageRules::default(),
            clv: ClvSettings::default(),
            inactivity: InactivityDefinition::defaults(),
            priority: PrioritySettings::default(),
            engine: EngineConfig::default(),
            policy: PolicyConfig::default(),
            simulation: winback_engine::simulate::ResponseModel::default(),
        }
    }
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            date_order: None,
            decimal: DecimalSeparator::Auto,
            delimiter: ",".into(),
            max_errors: 20,
            batch_rows: 5000,
        }
    }
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            auto_resolve: true,
            rules: IdentityRules::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (when it exists, or always when given explicitly), then the
    /// environment.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
                fig = fig.merge(Toml::file(p));
            }
            None => fig = fig.merge(Toml::file("winback.toml")),
        }
        fig = fig.merge(
            Env::prefixed("WINBACK_")
                .split("__")
                .ignore(&["test_database_url"]),
        );
        let config: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        InactivityDefinition::validate(&config.inactivity)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        anyhow::ensure!(
            config.scoring.horizon_days > 0.0,
            "invalid configuration: scoring.horizon_days must be positive"
        );
        config
            .engine_settings()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }

    /// The import options these settings give, as of `now`.
    pub fn import_options(&self, now: Timestamp) -> Result<ImportOptions> {
        let mut o = ImportOptions::new(now);
        o.default_region = Region::parse(&self.default_region).context("default_region")?;
        o.default_time_zone =
            TimeZoneName::parse(&self.default_time_zone).context("default_time_zone")?;
        o.default_currency = Currency::parse(&self.default_currency).context("default_currency")?;
        o.default_locale = self
            .default_locale
            .as_deref()
            .map(Locale::parse)
            .transpose()
            .context("default_locale")?;
        o.date_order = self.import.date_order;
        o.decimal = self.import.decimal;
        o.delimiter = match self.import.delimiter.as_str() {
            "tab" | "\t" => b'\t',
            d if d.len() == 1 => d.as_bytes()[0],
            d => anyhow::bail!("import.delimiter `{d}` must be one character or `tab`"),
        };
        Ok(o)
    }
}

/// The URL with any password replaced, for messages: secrets are never printed or logged.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/w"),
            "postgres://app:***@db:5432/w"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite://winback.db"), "sqlite://winback.db");
    }
}
