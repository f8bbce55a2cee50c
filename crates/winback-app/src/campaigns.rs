//! Campaign files: read and checked ([`load_files`]), then applied to the store ([`apply`]).

use std::path::PathBuf;

use anyhow::Result;
use winback_domain::Timestamp;
use winback_engine::ports::Applied;
use winback_engine::{Campaign, JourneyStore};
use winback_store::SqlStore;

/// Reads and checks campaign files; every problem of every file, or the campaigns.
pub fn load_files(
    paths: &[PathBuf],
    template_exists: &dyn Fn(&str) -> bool,
) -> Result<Vec<(PathBuf, String, Campaign)>, Vec<String>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                        .collect();
                    found.sort();
                    if found.is_empty() {
                        problems.push(format!("{}: no *.toml campaign files", p.display()));
                    }
                    files.extend(found);
                }
                Err(e) => problems.push(format!("{}: {e}", p.display())),
            }
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    let mut names = std::collections::BTreeMap::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        match Campaign::parse_with_templates(&f.display().to_string(), &text, template_exists) {
            Ok(c) => {
                if let Some(other) = names.insert(c.name.clone(), f.clone()) {
                    problems.push(format!(
                        "{}: campaign `{}` is also defined in {}",
                        f.display(),
                        c.name,
                        other.display()
                    ));
                }
                out.push((f, text, c));
            }
            Err(e) => problems.extend(e.problems.iter().map(|p| p.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Applies checked campaigns: a new one is created in draft, a changed one gets a new version
/// (running journeys keep theirs); returns what happened to each, in order.
pub async fn apply(
    store: &SqlStore,
    now: Timestamp,
    campaigns: &[(PathBuf, String, Campaign)],
) -> Result<Vec<Applied>> {
    let mut out = Vec::with_capacity(campaigns.len());
    for (file, text, c) in campaigns {
        out.push(
            store
                .apply_campaign(&c.name, &file.display().to_string(), text, now)
                .await?,
        );
    }
    Ok(out)
}

/// Recomputes the stored outcomes (orders and revenue in the conversion window) of the
/// enrolments whose contacts' orders changed, and of new enrolments, for every stored campaign
/// at its current window (see `SqlStore::refresh_outcomes`); returns how many it recomputed.
/// Reports are exact without it; it keeps what they compute on reading small.
pub async fn refresh_outcomes(store: &SqlStore) -> Result<u64> {
    let mut windows = Vec::new();
    for rec in store.campaigns().await? {
        // A stored campaign was checked when it was applied; one that no longer parses (an
        // older winback's file) is left out, and its marked enrolments are computed by readers.
        if let Ok(c) = Campaign::parse(&rec.file, &rec.source) {
            windows.push((rec.id, c.conversion_window.seconds()));
        }
    }
    Ok(store.refresh_outcomes(&windows).await?)
}
