//! Placement: which firewalls a ban goes to, from the jail's `placement` rules and the origin
//! of the failures (the sender that reported them).
//!
//! Owns the mapping origin → target and group → targets. It is policy, so it lives with the
//! ban manager; enforcement only receives the resolved places.

use std::fmt;

use tracing::warn;

use crate::config::{OriginPattern, PlacementRule, TargetConfig, TargetName};

/// One firewall a ban is applied to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    /// This host (local nftables or the log backend).
    Local,
    /// A remote host's nftables, over SSH.
    Remote(TargetName),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Local => f.write_str("local"),
            Place::Remote(name) => f.write_str(name.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct Member {
    name: TargetName,
    origins: Vec<OriginPattern>,
    groups: Vec<String>,
}

/// The configured targets, as placement needs them.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// From the compiled `[target.*]` tables.
    pub fn new(targets: &[TargetConfig]) -> Self {
        Fleet {
            members: targets
                .iter()
                .map(|t| Member {
                    name: t.name.clone(),
                    origins: t.origins.clone(),
                    groups: t.groups.clone(),
                })
                .collect(),
        }
    }

    /// The places a ban from `origin` goes to under `rules`, sorted and without duplicates.
    /// When nothing matches (e.g. `["origin"]` and an origin that is no target's, or a manual
    /// ban), the ban is applied locally rather than nowhere.
    pub fn resolve(&self, rules: &[PlacementRule], origin: &str) -> Vec<Place> {
        let mut places = Vec::new();
        for rule in rules {
            match rule {
                PlacementRule::Local => places.push(Place::Local),
                PlacementRule::All => places.extend(self.members.iter().map(Self::remote)),
                PlacementRule::Origin => places.extend(
                    self.members
                        .iter()
                        .filter(|m| m.origins.iter().any(|o| o.matches(origin)))
                        .map(Self::remote),
                ),
                PlacementRule::Group(group) => places.extend(
                    self.members
                        .iter()
                        .filter(|m| m.groups.contains(group))
                        .map(Self::remote),
                ),
                PlacementRule::Target(name) => places.extend(
                    self.members
                        .iter()
                        .filter(|m| &m.name == name)
                        .map(Self::remote),
                ),
            }
        }
        places.sort();
        places.dedup();
        if places.is_empty() {
            warn!(%origin, rules = %describe(rules), "No target matches this ban's placement; banning locally");
            places.push(Place::Local);
        }
        places
    }

    fn remote(member: &Member) -> Place {
        Place::Remote(member.name.clone())
    }
}

fn describe(rules: &[PlacementRule]) -> String {
    rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(name: &str) -> Place {
        Place::Remote(TargetName::new(name).unwrap())
    }

    fn fleet() -> Fleet {
        Fleet::new(&[
            TargetConfig::for_test("a", &["198.51.100.10/32", "web-a.example"], &["web"]),
            TargetConfig::for_test("b", &["198.51.100.20/32"], &["web", "mail"]),
            TargetConfig::for_test("c", &["198.51.100.30/32"], &["mail"]),
        ])
    }

    #[test]
    fn origin_places_the_ban_on_the_reporting_host_only() {
        let f = fleet();
        assert_eq!(
            f.resolve(&[PlacementRule::Origin], "198.51.100.10"),
            vec![remote("a")]
        );
        assert_eq!(
            f.resolve(&[PlacementRule::Origin], "WEB-A.example"),
            vec![remote("a")]
        );
        assert_eq!(
            f.resolve(&[PlacementRule::Origin], "198.51.100.20"),
            vec![remote("b")]
        );
    }

    #[test]
    fn all_groups_targets_and_local_combine_without_duplicates() {
        let f = fleet();
        assert_eq!(
            f.resolve(&[PlacementRule::All], "x"),
            vec![remote("a"), remote("b"), remote("c")]
        );
        assert_eq!(
            f.resolve(
                &[
                    PlacementRule::Group("web".into()),
                    PlacementRule::Local,
                    PlacementRule::Origin
                ],
                "198.51.100.20"
            ),
            vec![Place::Local, remote("a"), remote("b")]
        );
        assert_eq!(
            f.resolve(&[PlacementRule::Target(TargetName::new("c").unwrap())], "x"),
            vec![remote("c")]
        );
    }

    #[test]
    fn an_origin_no_target_claims_is_banned_locally() {
        let f = fleet();
        assert_eq!(
            f.resolve(&[PlacementRule::Origin], "manual"),
            vec![Place::Local]
        );
        assert_eq!(
            Fleet::default().resolve(&[PlacementRule::All], "198.51.100.10"),
            vec![Place::Local]
        );
    }
}
