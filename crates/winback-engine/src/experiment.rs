//! Holdouts and variants: deterministic, sticky assignment from (campaign, contact, salt), and
//! optional Thompson sampling over the variants' reactivations so far.

use rand::SeedableRng;
use rand_distr::{Beta, Distribution};
use sha2::{Digest, Sha256};

use crate::definition::{Allocation, Campaign};

/// A uniform number in [0, 1) drawn from the hash of the parts: the same parts always give the
/// same number, on every machine and in every version.
pub fn unit_hash(parts: &[&str]) -> f64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 53 random bits → [0, 1).
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the contact is in the campaign's holdout. Reproducible from (campaign, contact,
/// salt): the same contact is held out on every entry until the salt changes.
pub fn in_holdout(campaign: &Campaign, profile_id: winback_domain::ProfileId) -> bool {
    campaign.holdout.share > 0.0
        && unit_hash(&[
            "holdout",
            &campaign.name,
            &profile_id.to_string(),
            &campaign.holdout.salt,
        ]) < campaign.holdout.share
}

/// Reactivations and enrolments of one variant so far, for Thompson sampling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArmStats {
    /// Enrolments that received the variant.
    pub enrolled: u64,
    /// Of them, how many ordered within the conversion window.
    pub converted: u64,
}

/// The variant for a contact. With fixed allocation it is the weighted pick from a hash of
/// (campaign, contact, salt); with Thompson sampling it is the arm with the highest draw from
/// Beta(1 + converted, 1 + enrolled − converted), the draw seeded by the same hash so a replay
/// gives the same answer.
pub fn assign_variant(
    campaign: &Campaign,
    profile_id: winback_domain::ProfileId,
    stats: &[ArmStats],
) -> String {
    let variants = &campaign.experiment.variants;
    if variants.len() == 1 {
        return variants[0].0.clone();
    }
    let key = profile_id.to_string();
    let u = unit_hash(&["variant", &campaign.name, &key, &campaign.holdout.salt]);
    match campaign.experiment.allocation {
        Allocation::Fixed => weighted(variants, u),
        Allocation::Thompson => {
            let seed = (u * (1u64 << 53) as f64) as u64;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut best = (f64::MIN, 0usize);
            for (i, _) in variants.iter().enumerate() {
                let s = stats.get(i).copied().unwrap_or_default();
                let a = 1.0 + s.converted as f64;
                let b = 1.0 + s.enrolled.saturating_sub(s.converted) as f64;
                let draw = Beta::new(a, b).map(|d| d.sample(&mut rng)).unwrap_or(0.0);
                if draw > best.0 {
                    best = (draw, i);
                }
            }
            variants[best.1].0.clone()
        }
    }
}

fn weighted(variants: &[(String, u32)], u: f64) -> String {
    let total: u64 = variants.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut target = u * total as f64;
    for (id, w) in variants {
        target -= f64::from(*w);
        if target < 0.0 {
            return id.clone();
        }
    }
    variants
        .last()
        .map(|(id, _)| id.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campaign(extra: &str) -> Campaign {
        let text = format!(
            "[campaign]\nname = \"c\"\naudience = 'orders > 0'\n[trigger]\ntype = \"audience\"\n{extra}\n[[steps]]\nid = \"s\"\ntype = \"send\"\ntemplate = \"t\"\n"
        );
        Campaign::parse("c.toml", &text).unwrap()
    }

    #[test]
    fn holdout_is_sticky_and_close_to_its_share() {
        let c = campaign("");
        let held: Vec<bool> = (0..20_000)
            .map(|i| in_holdout(&c, winback_domain::ProfileId::new(i)))
            .collect();
        let again: Vec<bool> = (0..20_000)
            .map(|i| in_holdout(&c, winback_domain::ProfileId::new(i)))
            .collect();
        assert_eq!(held, again);
        let share = held.iter().filter(|h| **h).count() as f64 / 20_000.0;
        assert!((share - 0.10).abs() < 0.01, "share {share}");
        let resalted = campaign("[holdout]\nshare = 0.1\nsalt = \"other\"");
        let moved = (0..20_000)
            .filter(|i| {
                in_holdout(&resalted, winback_domain::ProfileId::new(*i)) != held[*i as usize]
            })
            .count();
        assert!(
            moved > 2_000,
            "a new salt draws a new holdout ({moved} moved)"
        );
    }

    #[test]
    fn fixed_weights_split_deterministically() {
        let c = campaign(
            "[experiment]\nvariants = [{ id = \"a\", weight = 3 }, { id = \"b\", weight = 1 }]",
        );
        let picks: Vec<String> = (0..8_000)
            .map(|i| assign_variant(&c, winback_domain::ProfileId::new(i), &[]))
            .collect();
        let b = picks.iter().filter(|v| *v == "b").count() as f64 / 8_000.0;
        assert!((b - 0.25).abs() < 0.02, "b share {b}");
        assert_eq!(
            picks[17],
            assign_variant(&c, winback_domain::ProfileId::new(17), &[])
        );
    }

    #[test]
    fn thompson_favours_the_arm_that_converts() {
        let c = campaign(
            "[experiment]\nallocation = \"thompson\"\nvariants = [{ id = \"a\" }, { id = \"b\" }]",
        );
        let stats = [
            ArmStats {
                enrolled: 500,
                converted: 20,
            },
            ArmStats {
                enrolled: 500,
                converted: 60,
            },
        ];
        let b = (0..2_000)
            .filter(|i| assign_variant(&c, winback_domain::ProfileId::new(*i), &stats) == "b")
            .count();
        assert!(b > 1_900, "b chosen {b} of 2000");
        let even = (0..2_000)
            .filter(|i| {
                assign_variant(
                    &c,
                    winback_domain::ProfileId::new(*i),
                    &[ArmStats::default(); 2],
                ) == "b"
            })
            .count();
        assert!((700..1_300).contains(&even), "no data: {even} of 2000");
    }
}
