//! `winback-identity` owns identity resolution: deciding which customer records are one person.
//!
//! Seed 000: never treat a customer as inactive when they order under another email address.
//! Records that share an email matching key, an E.164 phone number, or a normalised postal
//! address plus family name are merged with a union-find. Every merge keeps the link that caused
//! it, so `winback customers show` can explain it. A key shared by more records than
//! [`IdentityRules::max_group_size`] (a shop's own address, `info@` mailboxes, a call-centre
//! number) is not used, and is reported instead of merging strangers.
//!
//! Two more guards keep a profile one person:
//! - the address rule needs the same first name as well as the same family name and address,
//!   so a household (Jan and Marieke de Vries) or an office stays several people;
//! - [`IdentityRules::max_group_size`] also bounds the *resulting* profile. Links are applied
//!   strongest first (email, then phone, then address), and a link that would make a profile
//!   larger than the limit is held apart and reported ([`Resolution::held_apart`]): an oversized
//!   chain is split at its weakest links.

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
    /// A key shared by more records than this is ignored (and reported), and no profile grows
    /// past it (the link that would is held apart and reported).
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
    /// First name, for the address rule (normalised here: case, accents and spacing ignored).
    pub first_name: Option<String>,
}

/// A first name as the address rule compares it: the first word, lower case, without accents
/// (`José-Maria` and `jose maria` agree; `Jan` and `Marieke` do not).
pub fn first_name_key(name: &str) -> Option<String> {
    let word: String = name
        .split(|c: char| c.is_whitespace() || c == '-' || c == '.')
        .find(|w| !w.is_empty())?
        .chars()
        .flat_map(char::to_lowercase)
        .collect();
    let plain: String = deunicode::deunicode(&word)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    (!plain.is_empty()).then_some(plain)
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

/// A link not applied because the profile it would make is larger than the limit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeldApart {
    /// One record.
    pub a: CustomerId,
    /// The other.
    pub b: CustomerId,
    /// The rule that would have merged them.
    pub rule: Rule,
    /// The shared identifier.
    pub value: String,
    /// The records the merged profile would have had.
    pub would_be: usize,
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
    /// Links held apart because the profile would have grown past the limit.
    pub held_apart: Vec<HeldApart>,
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
    size: Vec<u32>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
            size: vec![1; n],
        }
    }
    /// Records in the set of `x`.
    fn size_of(&mut self, x: u32) -> usize {
        let r = self.find(x);
        self.size[r as usize] as usize
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
        self.size[hi as usize] += self.size[lo as usize];
        if self.rank[hi as usize] == self.rank[lo as usize] {
            self.rank[hi as usize] += 1;
        }
        true
    }
}

/// Resolves identities over every record. Records without a `customer` id are ignored.
pub fn resolve(rules: &IdentityRules, records: &[Identifiers]) -> Resolution {
    let records: Vec<&Identifiers> = records.iter().filter(|r| r.customer.is_some()).collect();
    let mut uf = UnionFind::new(records.len());
    let mut links = Vec::new();
    let mut skipped = Vec::new();
    let mut held_apart = Vec::new();
    // The address key carries the family name; the first name joins it here, so a household
    // or an office never makes one person of different first names. A record without a first
    // name does not merge by address at all.
    let address_keys: Vec<Option<String>> = records
        .iter()
        .map(|r| {
            let first = r.first_name.as_deref().and_then(first_name_key)?;
            r.address_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(|k| format!("{k}|{first}"))
        })
        .collect();
    // Strongest first: a profile that would grow too large is split at its weakest links.
    let passes: [(bool, Rule); 3] = [
        (rules.email, Rule::Email),
        (rules.phone, Rule::Phone),
        (rules.address, Rule::AddressFamilyName),
    ];
    for (enabled, rule) in passes {
        if !enabled {
            continue;
        }
        let key_of = |i: usize| -> Option<&str> {
            match rule {
                Rule::Email => records[i].email_key.as_deref(),
                Rule::Phone => records[i].phone.as_deref(),
                Rule::AddressFamilyName => address_keys[i].as_deref(),
            }
        };
        // Group by sorting (key, record) pairs: no per-key allocation, and groups come out in
        // key order, so links are deterministic.
        let mut keyed: Vec<(&str, u32)> = (0..records.len())
            .filter_map(|i| key_of(i).filter(|k| !k.is_empty()).map(|k| (k, i as u32)))
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
                let (a, b) = (
                    records[first as usize].customer.expect("filtered"),
                    records[m as usize].customer.expect("filtered"),
                );
                if uf.find(first) == uf.find(m) {
                    continue;
                }
                let would_be = uf.size_of(first) + uf.size_of(m);
                if would_be > rules.max_group_size {
                    held_apart.push(HeldApart {
                        a,
                        b,
                        rule,
                        value: key.to_owned(),
                        would_be,
                    });
                    continue;
                }
                uf.union(first, m);
                links.push(Link {
                    a,
                    b,
                    rule,
                    value: key.to_owned(),
                });
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
        held_apart,
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
            first_name: Some("Anna".into()),
        }
    }

    fn named(id: i64, first: &str, addr: &str) -> Identifiers {
        Identifiers {
            first_name: Some(first.into()),
            ..rec(id, None, None, Some(addr))
        }
    }

    #[test]
    fn a_household_stays_several_people() {
        let home = "nl|1015cs|keizersgracht 12|devries";
        let rs = [
            named(1, "Jan", home),
            named(2, "Marieke", home),
            named(3, "jan", home),
            named(4, "Jàn ", home),
        ];
        let r = resolve(&IdentityRules::default(), &rs);
        let p: HashMap<i64, i64> = r
            .profile_of
            .iter()
            .map(|(c, p)| (c.get(), p.get()))
            .collect();
        assert_eq!((p[&1], p[&3], p[&4]), (1, 1, 1), "Jan is one person");
        assert_eq!(p[&2], 2, "Marieke is someone else");
        // No first name: no merge by address.
        let rs = [
            Identifiers {
                first_name: None,
                ..named(1, "x", home)
            },
            named(2, "Jan", home),
        ];
        assert_eq!(resolve(&IdentityRules::default(), &rs).merged_records(), 0);
    }

    #[test]
    fn an_oversized_chain_is_split_at_its_weakest_links() {
        // Two groups of 8 records, each group sharing an email pairwise chain, joined by one
        // shared phone: with a limit of 10 the phone link is held apart.
        let mut rs = Vec::new();
        for i in 0..16i64 {
            let group = i / 8;
            let phone = if i == 7 || i == 8 {
                Some("+31612345678")
            } else {
                None
            };
            rs.push(rec(i + 1, Some(&format!("g{group}@x.nl")), phone, None));
        }
        let rules = IdentityRules {
            max_group_size: 10,
            ..IdentityRules::default()
        };
        let r = resolve(&rules, &rs);
        assert_eq!(r.profiles(), 2);
        assert_eq!(r.held_apart.len(), 1);
        assert_eq!(r.held_apart[0].rule, Rule::Phone);
        assert_eq!(r.held_apart[0].would_be, 16);
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
            // With a limit, no profile is ever larger than it.
            let small = resolve(&IdentityRules { max_group_size: 4, ..IdentityRules::default() }, &rs);
            let mut sizes: HashMap<i64, usize> = HashMap::new();
            for (_, p) in &small.profile_of {
                *sizes.entry(p.get()).or_default() += 1;
            }
            prop_assert!(sizes.values().all(|n| *n <= 4), "{sizes:?}");
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
