//! `winback-identity` owns identity resolution: deciding which customer records are one person.
//!
//! Seed 000: never treat a customer as inactive when they order under another email address.
//! Records that share an email matching key, an E.164 phone number, or a normalised postal
//! address plus family name are merged with a union-find. Every merge keeps the link that caused
//! it, so `winback customers show` can explain it. A key shared by more records than
//! [`IdentityRules::max_group_size`] (a shop's own address, `info@` mailboxes, a call-centre
//! number) is not used, and is reported instead of merging strangers.

use std::collections::HashMap;

use winback_domain::CustomerId;

/// Which identifiers merge profiles. From `[identity]` in `winback.toml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityRules {
    /// Merge on the email matching key (no `+tag`, Gmail dots ignored).
    pub email: bool,
    /// Merge on the E.164 phone number.
    pub phone: bool,
    /// Merge on normalised postal address plus family name.
    pub address: bool,
    /// A key shared by more records than this is ignored (and reported).
    pub max_group_size: usize,
}

impl Default for IdentityRules {
    fn default() -> Self {
        Self {
            email: true,
            phone: true,
            address: true,
            max_group_size: 20,
        }
    }
}

/// The identifiers of one customer record.
#[derive(Debug, Clone, Default)]
pub struct Identifiers {
    /// The record.
    pub customer: Option<CustomerId>,
    /// Email matching key.
    pub email_key: Option<String>,
    /// E.164 phone.
    pub phone: Option<String>,
    /// Address + family name key.
    pub address_key: Option<String>,
}

/// Why two records were merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Same email matching key.
    Email,
    /// Same phone number.
    Phone,
    /// Same postal address and family name.
    AddressFamilyName,
}

impl Rule {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Email => "email",
            Rule::Phone => "phone",
            Rule::AddressFamilyName => "address_family_name",
        }
    }
}

/// One merge: `a` and `b` share `value` under `rule`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// One record.
    pub a: CustomerId,
    /// The other.
    pub b: CustomerId,
    /// Why.
    pub rule: Rule,
    /// The shared identifier.
    pub value: String,
}

/// A key too common to merge on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedKey {
    /// The rule.
    pub rule: Rule,
    /// The key.
    pub value: String,
    /// How many records share it.
    pub records: usize,
}

/// The outcome of a resolution run.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    /// Each record's profile: the smallest customer id of its merged group.
    pub profile_of: Vec<(CustomerId, CustomerId)>,
    /// The links that joined groups (a spanning forest: one link per merge).
    pub links: Vec<Link>,
    /// Keys not used because too many records share them.
    pub skipped: Vec<SkippedKey>,
}

impl Resolution {
    /// Number of records that were merged into another's profile.
    pub fn merged_records(&self) -> usize {
        self.profile_of.iter().filter(|(c, p)| c != p).count()
    }
    /// Number of distinct profiles.
    pub fn profiles(&self) -> usize {
        self.profile_of.iter().filter(|(c, p)| c == p).count()
    }
}

struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
        }
    }
    fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize]; // path halving
            x = p;
        }
        x
    }
    /// Joins the sets of `a` and `b`; `false` when they were already one.
    fn union(&mut self, a: u32, b: u32) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (hi, lo) = if self.rank[ra as usize] >= self.rank[rb as usize] {
            (ra, rb)
        } else {
            (rb, ra)
        };
        self.parent[lo as usize] = hi;
        if self.rank[hi as usize] == self.rank[lo as usize] {
            self.rank[hi as usize] += 1;
        }
        true
    }
}

/// Reads one kind of key off a record.
type KeyOf = fn(&Identifiers) -> Option<&str>;

/// Resolves identities over every record. Records without a `customer` id are ignored.
pub fn resolve(rules: &IdentityRules, records: &[Identifiers]) -> Resolution {
    let records: Vec<&Identifiers> = records.iter().filter(|r| r.customer.is_some()).collect();
    let mut uf = UnionFind::new(records.len());
    let mut links = Vec::new();
    let mut skipped = Vec::new();
    let passes: [(bool, Rule, KeyOf); 3] = [
        (rules.email, Rule::Email, |r| r.email_key.as_deref()),
        (rules.phone, Rule::Phone, |r| r.phone.as_deref()),
        (rules.address, Rule::AddressFamilyName, |r| {
            r.address_key.as_deref()
        }),
    ];
    for (enabled, rule, key_of) in passes {
        if !enabled {
            continue;
        }
        // Group by sorting (key, record) pairs: no per-key allocation, and groups come out in
        // key order, so links are deterministic.
        let mut keyed: Vec<(&str, u32)> = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| key_of(r).filter(|k| !k.is_empty()).map(|k| (k, i as u32)))
            .collect();
        keyed.sort_unstable();
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            if group.len() < 2 {
                continue;
            }
            let key = group[0].0;
            if group.len() > rules.max_group_size {
                skipped.push(SkippedKey {
                    rule,
                    value: key.to_owned(),
                    records: group.len(),
                });
                continue;
            }
            let first = group[0].1;
            for &(_, m) in &group[1..] {
                if uf.union(first, m) {
                    let (a, b) = (
                        records[first as usize].customer,
                        records[m as usize].customer,
                    );
                    links.push(Link {
                        a: a.expect("filtered"),
                        b: b.expect("filtered"),
                        rule,
                        value: key.to_owned(),
                    });
                }
            }
        }
    }
    // Each group's profile id is its smallest customer id, so it is stable as records are added.
    let mut smallest: HashMap<u32, CustomerId> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let root = uf.find(i as u32);
        let id = r.customer.expect("filtered");
        smallest
            .entry(root)
            .and_modify(|s| *s = (*s).min(id))
            .or_insert(id);
    }
    let profile_of = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let root = uf.find(i as u32);
            (r.customer.expect("filtered"), smallest[&root])
        })
        .collect();
    Resolution {
        profile_of,
        links,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: i64, email: Option<&str>, phone: Option<&str>, addr: Option<&str>) -> Identifiers {
        Identifiers {
            customer: Some(CustomerId::new(id)),
            email_key: email.map(Into::into),
            phone: phone.map(Into::into),
            address_key: addr.map(Into::into),
        }
    }

    #[test]
    fn transitive_merges_with_explanations() {
        let rs = [
            rec(1, Some("anna@x.nl"), None, None),
            rec(2, Some("anna@x.nl"), Some("+31612345678"), None),
            rec(3, Some("a.work@corp.nl"), Some("+31612345678"), None),
            rec(
                4,
                Some("bob@x.nl"),
                None,
                Some("nl|1015cs|keizersgracht 12|devries"),
            ),
            rec(
                5,
                Some("bob2@x.nl"),
                None,
                Some("nl|1015cs|keizersgracht 12|devries"),
            ),
            rec(6, Some("carl@x.nl"), None, None),
        ];
        let r = resolve(&IdentityRules::default(), &rs);
        let p: HashMap<i64, i64> = r
            .profile_of
            .iter()
            .map(|(c, p)| (c.get(), p.get()))
            .collect();
        assert_eq!((p[&1], p[&2], p[&3]), (1, 1, 1));
        assert_eq!((p[&4], p[&5]), (4, 4));
        assert_eq!(p[&6], 6);
        assert_eq!(r.links.len(), 3);
        assert!(
            r.links
                .iter()
                .any(|l| l.rule == Rule::Phone && l.value == "+31612345678")
        );
        assert_eq!(r.merged_records(), 3);
        assert_eq!(r.profiles(), 3);
    }

    #[test]
    fn rules_can_be_switched_off_and_common_keys_are_skipped() {
        let rs: Vec<Identifiers> = (1..=30)
            .map(|i| rec(i, None, Some("+31201234567"), None))
            .collect();
        let r = resolve(&IdentityRules::default(), &rs);
        assert_eq!(
            r.merged_records(),
            0,
            "a number shared by 30 records is a switchboard, not a person"
        );
        assert_eq!(r.skipped[0].records, 30);
        let pair = [
            rec(1, None, Some("+31612345678"), None),
            rec(2, None, Some("+31612345678"), None),
        ];
        let off = IdentityRules {
            phone: false,
            ..IdentityRules::default()
        };
        assert_eq!(resolve(&off, &pair).merged_records(), 0);
        assert_eq!(
            resolve(&IdentityRules::default(), &pair).merged_records(),
            1
        );
    }

    proptest! {
        /// Records sharing a key always end in one profile; the profile is a member's id, the
        /// smallest; and links form a spanning forest (one fewer than the records merged).
        #[test]
        fn profiles_are_consistent(keys in proptest::collection::vec((0u8..6, 0u8..6), 1..60)) {
            let rs: Vec<Identifiers> = keys.iter().enumerate().map(|(i, (e, p))| {
                rec(i as i64 + 1, Some(&format!("e{e}")), Some(&format!("p{p}")), None)
            }).collect();
            let r = resolve(&IdentityRules { max_group_size: 1000, ..IdentityRules::default() }, &rs);
            let p: HashMap<i64, i64> = r.profile_of.iter().map(|(c, p)| (c.get(), p.get())).collect();
            for (i, a) in keys.iter().enumerate() {
                for (j, b) in keys.iter().enumerate() {
                    if a.0 == b.0 || a.1 == b.1 {
                        prop_assert_eq!(p[&(i as i64 + 1)], p[&(j as i64 + 1)]);
                    }
                }
                prop_assert!(p[&(i as i64 + 1)] <= i as i64 + 1);
            }
            prop_assert_eq!(r.links.len(), r.merged_records());
        }
    }
}
