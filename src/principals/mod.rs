//! Principals as people name them: IAM Identity Center permission sets resolved to their IAM
//! role, and (with `--verify-principals`) role and user ARNs checked against IAM.
//!
//! - [`sso`] (pure): permission set name + IAM's SSO roles -> the role, or why not.
//! - [`verify`] (pure): IAM's answer about an ARN -> found, differs, missing, not checkable.
//! - [`iam`]: IAM and STS (aws-sdk-iam, aws-sdk-sts) behind a small trait, built only when a
//!   mapping names a permission set or `--verify-principals` is on.
//! - [`resolver`]: the loop of its own (IAM has no watch), woken by mapping changes and a
//!   resync; it publishes into a [`PrincipalBoard`] that the aws-auth reconcile (the single
//!   status writer) and the access-entry loop read.

pub mod iam;
pub mod resolver;
pub mod sso;
pub mod verify;

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::api::{IamIdentityMapping, IamIdentityMappingSpec, IamIdentityMappingStatus};
use crate::loops::Board;
pub use sso::{IamPrincipal, SsoResolution, SsoState};
pub use verify::{PrincipalCheck, Verdict};

/// The condition that says which role `spec.ssoPermissionSet` resolved to.
pub const PRINCIPAL_RESOLVED: &str = "PrincipalResolved";
/// The condition `--verify-principals` sets: whether the role or user exists in IAM.
pub const PRINCIPAL_FOUND: &str = "PrincipalFound";

/// The flags of the principal resolver, to flatten into `run`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct PrincipalsArgs {
    /// Check every role and user ARN against IAM (GetRole/GetUser) and report a missing one in
    /// the PrincipalFound condition, with the closest existing names. A warning, never a block.
    #[arg(long, env = "AWS_AUTH_OPERATOR_VERIFY_PRINCIPALS")]
    pub verify_principals: bool,
    /// How long IAM's answer about a principal is trusted before it is asked again.
    #[arg(long, default_value_t = 600)]
    pub principal_cache_seconds: u64,
    /// IAM calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub iam_concurrency: usize,
    /// Permission sets are resolved again at least this often (with up to 10% jitter).
    #[arg(long, default_value_t = 300)]
    pub principals_resync_seconds: u64,
    /// IAM endpoint URL (tests); default: the partition's. STS uses it too unless
    /// AWS_ENDPOINT_URL_STS is set.
    #[arg(long, env = "AWS_AUTH_OPERATOR_IAM_ENDPOINT")]
    pub iam_endpoint: Option<String>,
}

impl Default for PrincipalsArgs {
    fn default() -> PrincipalsArgs {
        PrincipalsArgs {
            verify_principals: false,
            principal_cache_seconds: 600,
            iam_concurrency: 4,
            principals_resync_seconds: 300,
            iam_endpoint: None,
        }
    }
}

/// What the resolver runs with.
#[derive(Debug, Clone)]
pub struct PrincipalsConfig {
    pub verify: bool,
    pub cache_ttl: Duration,
    pub concurrency: usize,
    pub resync: Duration,
    /// AWS region to sign with (IAM is global; the SDK still needs one). `None`: the
    /// environment's, and failing that IAM is reported unavailable.
    pub region: Option<String>,
    pub iam_endpoint: Option<String>,
}

impl PrincipalsArgs {
    pub fn config(&self, region: Option<String>) -> PrincipalsConfig {
        PrincipalsConfig {
            verify: self.verify_principals,
            cache_ttl: Duration::from_secs(self.principal_cache_seconds),
            concurrency: self.iam_concurrency.max(1),
            resync: Duration::from_secs(self.principals_resync_seconds.max(1)),
            region,
            iam_endpoint: self.iam_endpoint.clone(),
        }
    }
}

/// What the resolver found for one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct PrincipalReport {
    /// `spec.ssoPermissionSet`, resolved.
    pub sso: Option<SsoResolution>,
    /// `--verify-principals`: `spec.arn` checked against IAM.
    pub check: Option<PrincipalCheck>,
}

/// The resolver's reports by mapping name, for the aws-auth reconcile and the access-entry loop.
pub type PrincipalBoard = Board<PrincipalReport>;

/// The role ARN (full, with its path) a permission-set mapping maps now: the resolver's answer,
/// or before its first pass `status.resolvedArn`, if it still serves the same permission set.
/// `None` for other mappings, and for a permission set never resolved.
pub fn resolved_arn(
    spec: &IamIdentityMappingSpec,
    status: Option<&IamIdentityMappingStatus>,
    report: Option<&PrincipalReport>,
) -> Option<String> {
    let set = spec.sso_permission_set.as_ref()?;
    match report.and_then(|r| r.sso.as_ref()) {
        Some(sso) if sso.permission_set == set.name => sso.arn.clone(),
        _ => status
            .and_then(|s| s.resolved_arn.as_deref())
            .filter(|arn| sso::serves(arn, &set.name))
            .map(str::to_string),
    }
}

/// [`resolved_arn`] for a mapping object.
pub fn resolved_arn_of(
    mapping: &IamIdentityMapping,
    board: Option<&PrincipalBoard>,
) -> Option<String> {
    mapping.spec.sso_permission_set.as_ref()?;
    let name = mapping.metadata.name.as_deref().unwrap_or_default();
    let report = board.and_then(|b| b.get(name));
    resolved_arn(&mapping.spec, mapping.status.as_ref(), report.as_ref())
}

/// The shortest name whose containment in another counts as a look-alike: below it, `x` would
/// look like every name with an x.
const MIN_CONTAINED_CHARS: usize = 3;

/// Up to three of `candidates` that look most like `name`, closest first (case-insensitive): an
/// edit distance of at most a third of the name (and at least 2), or one name containing the
/// other (`Power` and `Power_User`; the shorter of at least 3 characters).
pub fn closest_names<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let target = name.to_ascii_lowercase();
    let limit = (target.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter_map(|c| {
            let candidate = c.to_ascii_lowercase();
            let distance = edit_distance(&target, &candidate);
            let (shorter, longer) = if candidate.len() < target.len() {
                (&candidate, &target)
            } else {
                (&target, &candidate)
            };
            let contained =
                shorter.chars().count() >= MIN_CONTAINED_CHARS && longer.contains(shorter.as_str());
            (distance <= limit || contained).then_some((distance, c))
        })
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::SsoPermissionSetRef;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("admin", "admin"), 0);
        assert_eq!(edit_distance("admin", "admn"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_names_are_few_close_and_ordered() {
        let names = [
            "platform-admin",
            "platform-admins",
            "Platform-Viewer",
            "billing",
            "x",
        ];
        assert_eq!(
            closest_names("platform-admn", names),
            vec!["platform-admin", "platform-admins"]
        );
        assert_eq!(
            closest_names("PLATFORM-VIEWER", names),
            vec!["Platform-Viewer"]
        );
        assert!(closest_names("something-else-entirely", names).is_empty());
    }

    #[test]
    fn a_name_contained_in_another_looks_alike() {
        let sets = ["Power_User", "PowerUserAccess", "Admin", "ReadOnly", "Pow"];
        assert_eq!(
            closest_names("Power", sets),
            vec!["Pow", "Power_User", "PowerUserAccess"]
        );
        assert_eq!(closest_names("readonlyaccess", sets), vec!["ReadOnly"]);
        // Too short to count by containment: `x` is in no name here, `Ad` only by distance.
        assert!(closest_names("x", ["Admin", "Box-Team"]).is_empty());
        assert!(closest_names("Ad", ["ReadOnlyAdministrators"]).is_empty());
    }

    fn sso_spec(name: &str) -> IamIdentityMappingSpec {
        IamIdentityMappingSpec {
            sso_permission_set: Some(SsoPermissionSetRef {
                name: name.to_string(),
            }),
            username: Some("sso:{{SessionName}}".into()),
            ..Default::default()
        }
    }

    const ADMIN_ROLE: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef";

    #[test]
    fn the_report_wins_and_status_only_fills_in_before_it() {
        let spec = sso_spec("Admin");
        let status = IamIdentityMappingStatus {
            resolved_arn: Some(ADMIN_ROLE.into()),
            ..Default::default()
        };
        assert_eq!(
            resolved_arn(&spec, Some(&status), None).as_deref(),
            Some(ADMIN_ROLE)
        );
        let unresolved = PrincipalReport {
            sso: Some(SsoResolution {
                permission_set: "Admin".into(),
                arn: None,
                state: SsoState::NotFound { similar: vec![] },
            }),
            check: None,
        };
        assert_eq!(resolved_arn(&spec, Some(&status), Some(&unresolved)), None);
        // A status of another permission set (the spec changed) does not count.
        assert_eq!(
            resolved_arn(&sso_spec("ReadOnly"), Some(&status), None),
            None
        );
        // A report about the old name neither.
        assert_eq!(
            resolved_arn(&sso_spec("Admin2"), Some(&status), Some(&unresolved)),
            None
        );
        // Mappings by ARN have nothing to resolve.
        let by_arn = IamIdentityMappingSpec {
            arn: Some("arn:aws:iam::111122223333:role/x".into()),
            ..Default::default()
        };
        assert_eq!(resolved_arn(&by_arn, Some(&status), None), None);
    }

    #[test]
    fn publishing_the_same_reports_notifies_nobody() {
        let board = PrincipalBoard::new();
        let mut reports = BTreeMap::new();
        reports.insert("a".to_string(), PrincipalReport::default());
        assert!(board.publish(reports.clone()));
        assert!(!board.publish(reports));
        assert_eq!(board.get("a"), Some(PrincipalReport::default()));
    }
}
