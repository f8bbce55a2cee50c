//! Audience files (`winback campaigns export`): who a campaign's export steps added for one
//! destination, filtered by that destination's legal basis (`[exports]` in `winback.toml`),
//! written in the destination's format to a temporary file beside the target and renamed, so a
//! reader never sees half a file.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use winback_channels::exports::{LINKEDIN_MAX_ROWS, LINKEDIN_MIN_ROWS, write_export};
use winback_domain::{LegalBasis, Timestamp};
use winback_engine::definition::{Action, ExportColumn, ExportTarget};
use winback_engine::{Campaign, JourneyStore};
use winback_store::SqlStore;

/// `[exports]`: the legal basis on which each destination may receive contacts. Which one
/// applies is the shop's legal judgement; the defaults are the cautious reading of the GDPR
/// and the ePrivacy rules as the seeds' Dutch and Polish shops apply them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportsConfig {
    /// Meta custom audiences (default: legitimate interest in one's own customers).
    pub meta: LegalBasis,
    /// Google Customer Match (default: legitimate interest).
    pub google: LegalBasis,
    /// LinkedIn Matched Audiences (default: consent; LinkedIn is a professional network the
    /// customer did not give their address to).
    pub linkedin: LegalBasis,
    /// CRM-onboarding and display partners (default: consent; an onboarding partner joins the
    /// data with third parties' data).
    pub crm: LegalBasis,
    /// Print mailings (default: legitimate interest; post to one's own customers).
    pub print: LegalBasis,
}

impl Default for ExportsConfig {
    fn default() -> Self {
        Self {
            meta: LegalBasis::LegitimateInterest,
            google: LegalBasis::LegitimateInterest,
            linkedin: LegalBasis::Consent,
            crm: LegalBasis::Consent,
            print: LegalBasis::LegitimateInterest,
        }
    }
}

impl ExportsConfig {
    /// The basis set for `target`.
    pub fn basis(&self, target: ExportTarget) -> LegalBasis {
        match target {
            ExportTarget::Meta => self.meta,
            ExportTarget::Google => self.google,
            ExportTarget::Linkedin => self.linkedin,
            ExportTarget::Crm => self.crm,
            ExportTarget::Print => self.print,
        }
    }
}

/// What one export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The destination.
    pub target: ExportTarget,
    /// The legal basis applied.
    pub basis: LegalBasis,
    /// People the campaign's steps added (not erased).
    pub added: u64,
    /// Contacts written.
    pub written: u64,
    /// Data rows written (LinkedIn: one per email address).
    pub rows: u64,
    /// Left out: objected to direct marketing.
    pub objected: u64,
    /// Left out: no address with an explicit opt-in (consent basis).
    pub no_consent: u64,
    /// Left out: nothing the destination can match on (no email or phone; no postal address).
    pub unmatchable: u64,
    /// Things the marketer should know (a platform's size limits).
    pub warnings: Vec<String>,
}

/// The column mapping of the campaign's `crm` export step (`step` picks one when several
/// steps map columns differently).
fn crm_columns(c: &Campaign, step: Option<&str>) -> Result<Vec<ExportColumn>> {
    let steps: Vec<(&str, &Vec<ExportColumn>)> = c
        .steps
        .iter()
        .filter(|s| step.is_none_or(|id| s.id == id))
        .filter_map(|s| match &s.action {
            Action::Export {
                target: ExportTarget::Crm,
                columns,
            } => Some((s.id.as_str(), columns)),
            _ => None,
        })
        .collect();
    match &steps[..] {
        [] => bail!(
            "campaign `{}` has no crm export step{}",
            c.name,
            step.map(|s| format!(" `{s}`")).unwrap_or_default()
        ),
        [(_, cols), rest @ ..] if rest.iter().all(|(_, o)| o == cols) => Ok((*cols).clone()),
        _ => bail!(
            "campaign `{}` maps crm columns differently in steps {}; choose one with --step",
            c.name,
            steps
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Writes campaign `name`'s contacts for `target` to `out`. `Ok(None)`: no such campaign.
pub async fn export(
    store: &SqlStore,
    config: &ExportsConfig,
    name: &str,
    target: ExportTarget,
    step: Option<&str>,
    out: &Path,
    now: Timestamp,
) -> Result<Option<ExportSummary>> {
    let Some(rec) = store
        .campaigns()
        .await?
        .into_iter()
        .find(|c| c.name == name)
    else {
        return Ok(None);
    };
    let campaign = Campaign::parse(&rec.file, &rec.source)
        .map_err(|e| anyhow!("campaign `{name}` as stored: {e}"))?;
    let columns = if target == ExportTarget::Crm {
        crm_columns(&campaign, step)?
    } else {
        Vec::new()
    };
    let basis = config.basis(target);
    let file = store
        .audience_members(rec.id, target.as_str(), basis, now)
        .await
        .context("reading the audience")?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let written = write_export(
        target,
        &columns,
        &file.members,
        std::io::BufWriter::new(tmp.as_file()),
    )
    .with_context(|| format!("writing {}", out.display()))?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    let mut warnings = Vec::new();
    if target == ExportTarget::Linkedin {
        if written.rows < LINKEDIN_MIN_ROWS {
            warnings.push(format!(
                "LinkedIn refuses lists under {LINKEDIN_MIN_ROWS} rows; this one has {}",
                written.rows
            ));
        }
        if written.rows > LINKEDIN_MAX_ROWS {
            warnings.push(format!(
                "LinkedIn takes at most {LINKEDIN_MAX_ROWS} rows in one list; this one has {}: split it",
                written.rows
            ));
        }
    }
    Ok(Some(ExportSummary {
        target,
        basis,
        added: file.members.len() as u64 + file.objected + file.no_consent,
        written: written.contacts,
        rows: written.rows,
        objected: file.objected,
        no_consent: file.no_consent,
        unmatchable: file.members.len() as u64 - written.contacts,
        warnings,
    }))
}
