//! IAM Identity Center (SSO) permission sets -> the IAM role that serves them. Pure.
//!
//! For every permission set assigned to an account, IAM Identity Center provisions a role named
//! `AWSReservedSSO_<permission set>_<16 hex digits>` under `/aws-reserved/sso.amazonaws.com/`
//! (newer organisations add a region: `/aws-reserved/sso.amazonaws.com/<region>/`). The suffix
//! changes whenever the permission set is re-provisioned, so a hand-written ARN goes stale.

use std::fmt;

use serde::Serialize;

use super::closest_names;

/// Where IAM Identity Center puts its roles (the ListRoles `PathPrefix`).
pub const SSO_ROLE_PATH_PREFIX: &str = "/aws-reserved/sso.amazonaws.com/";
const ROLE_NAME_PREFIX: &str = "AWSReservedSSO_";
const SUFFIX_DIGITS: usize = 16;

/// An IAM role or user as IAM lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct IamPrincipal {
    pub name: String,
    /// `/` or `/a/b/`.
    pub path: String,
    /// The full ARN, path included.
    pub arn: String,
}

/// The permission set an IAM Identity Center role serves, from the role's name:
/// `AWSReservedSSO_AdministratorAccess_0123456789abcdef` -> `AdministratorAccess`.
pub fn permission_set_of(role_name: &str) -> Option<&str> {
    let rest = role_name.strip_prefix(ROLE_NAME_PREFIX)?;
    let (name, suffix) = rest.rsplit_once('_')?;
    let suffix_ok = suffix.len() == SUFFIX_DIGITS && suffix.bytes().all(|b| b.is_ascii_hexdigit());
    (suffix_ok && !name.is_empty()).then_some(name)
}

/// Whether `path` is where IAM Identity Center puts roles: the prefix itself or one region
/// below it.
pub fn is_sso_role_path(path: &str) -> bool {
    match path.strip_prefix(SSO_ROLE_PATH_PREFIX) {
        Some("") => true,
        Some(region) => region
            .strip_suffix('/')
            .is_some_and(|r| !r.is_empty() && !r.contains('/')),
        None => false,
    }
}

/// The `PrincipalResolved` reasons that ask a person to act (the mapping is Stalled).
pub const NO_ROLE_FOUND: &str = "NoRoleFound";
pub const SEVERAL_ROLES_FOUND: &str = "SeveralRolesFound";

/// What a permission set name matches among the roles IAM listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Exactly one role (its full ARN).
    One(String),
    /// No role; the names of the permission sets that look most alike.
    None { similar: Vec<String> },
    /// Several roles (full ARNs, sorted): e.g. the same permission set under two region paths.
    Several(Vec<String>),
}

/// Finds the role of permission set `name` among `roles` (IAM Identity Center roles, any
/// others are ignored). Names compare case-insensitively, as IAM compares role names; when
/// several roles match so, the ones of the exact spelling are preferred.
pub fn lookup(name: &str, roles: &[IamPrincipal]) -> Lookup {
    let sso_roles: Vec<(&str, &IamPrincipal)> = roles
        .iter()
        .filter(|r| is_sso_role_path(&r.path))
        .filter_map(|r| permission_set_of(&r.name).map(|set| (set, r)))
        .collect();
    let alike: Vec<&(&str, &IamPrincipal)> = sso_roles
        .iter()
        .filter(|(set, _)| set.eq_ignore_ascii_case(name))
        .collect();
    let exact: Vec<&&(&str, &IamPrincipal)> =
        alike.iter().filter(|(set, _)| *set == name).collect();
    let arns = |found: Vec<&IamPrincipal>| {
        let mut arns: Vec<String> = found.into_iter().map(|r| r.arn.clone()).collect();
        arns.sort();
        arns.dedup();
        arns
    };
    let matched = match (exact.len(), alike.len()) {
        (1, _) => arns(vec![exact[0].1]),
        (0, _) => arns(alike.iter().map(|(_, r)| *r).collect()),
        _ => arns(exact.iter().map(|(_, r)| *r).collect()),
    };
    match matched.len() {
        0 => Lookup::None {
            similar: closest_names(name, sso_roles.iter().map(|(set, _)| *set)),
        },
        1 => Lookup::One(matched.into_iter().next().unwrap_or_default()),
        _ => Lookup::Several(matched),
    }
}

/// How a permission set stands after a resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state")]
pub enum SsoState {
    /// One role serves it (`resolved` says which, in [`SsoResolution`]).
    Resolved,
    /// One role serves it, and it is not the role resolved before: the permission set was
    /// re-provisioned.
    Replaced { previous: String },
    /// No role: the permission set is not provisioned in this account (or misspelt).
    NotFound { similar: Vec<String> },
    /// Several roles; the previous one is kept if it is among them.
    Ambiguous { candidates: Vec<String> },
    /// IAM could not be asked; the previous role is kept.
    Unavailable { error: String },
}

/// The role a permission set resolves to, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SsoResolution {
    pub permission_set: String,
    /// The role to map (full ARN): the one IAM shows, or, when IAM cannot decide, the one
    /// resolved before. `None` when there is neither: nothing is rendered for the mapping.
    pub arn: Option<String>,
    #[serde(flatten)]
    pub state: SsoState,
}

impl SsoResolution {
    /// `PrincipalResolved`: True, False (a person must act) or Unknown (IAM could not say).
    pub fn condition_status(&self) -> &'static str {
        match self.state {
            SsoState::Resolved | SsoState::Replaced { .. } => "True",
            SsoState::NotFound { .. } | SsoState::Ambiguous { .. } => "False",
            SsoState::Unavailable { .. } => "Unknown",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self.state {
            SsoState::Resolved => "Resolved",
            SsoState::Replaced { .. } => "Reprovisioned",
            SsoState::NotFound { .. } => NO_ROLE_FOUND,
            SsoState::Ambiguous { .. } => SEVERAL_ROLES_FOUND,
            SsoState::Unavailable { .. } => "IamUnavailable",
        }
    }

    /// Whether a person must act (the mapping is Stalled).
    pub fn needs_attention(&self) -> bool {
        matches!(
            self.state,
            SsoState::NotFound { .. } | SsoState::Ambiguous { .. }
        )
    }
}

impl fmt::Display for SsoResolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = &self.permission_set;
        let kept = |f: &mut fmt::Formatter<'_>| match &self.arn {
            Some(arn) => write!(f, "; keeping {arn}, resolved before"),
            None => write!(f, "; nothing is mapped until it resolves"),
        };
        match &self.state {
            SsoState::Resolved => write!(
                f,
                "permission set {set} is served by {}",
                self.arn.as_deref().unwrap_or_default()
            ),
            SsoState::Replaced { previous } => write!(
                f,
                "permission set {set} was re-provisioned: {} replaces {previous}",
                self.arn.as_deref().unwrap_or_default()
            ),
            SsoState::NotFound { similar } => {
                write!(
                    f,
                    "no IAM role AWSReservedSSO_{set}_<suffix> under {SSO_ROLE_PATH_PREFIX}: permission set {set} is not provisioned in this account (assign it to the account in IAM Identity Center) or the name is misspelt"
                )?;
                if !similar.is_empty() {
                    write!(
                        f,
                        "; permission sets provisioned here that look alike: {}",
                        similar.join(", ")
                    )?;
                }
                kept(f)
            }
            SsoState::Ambiguous { candidates } => {
                write!(
                    f,
                    "several IAM roles serve permission set {set}: {}",
                    candidates.join(", ")
                )?;
                kept(f)
            }
            SsoState::Unavailable { error } => {
                write!(
                    f,
                    "IAM could not be asked which role serves permission set {set}: {error}"
                )?;
                kept(f)
            }
        }
    }
}

/// Resolves permission set `name` from IAM's listing of the SSO roles (or the error listing
/// them), given the role it resolved to before (`previous`, e.g. `status.resolvedArn`). Only a
/// role IAM shows replaces the previous one: when IAM is down, finds none or several, the
/// previous role stays mapped, so that nothing changes because IAM could not decide.
pub fn resolve(
    name: &str,
    listing: Result<&[IamPrincipal], &str>,
    previous: Option<&str>,
) -> SsoResolution {
    // A previous role of another permission set (the spec changed) is no fallback.
    let previous = previous.filter(|arn| serves(arn, name));
    let (arn, state) = match listing {
        Err(error) => (
            previous.map(str::to_string),
            SsoState::Unavailable {
                error: error.to_string(),
            },
        ),
        Ok(roles) => match lookup(name, roles) {
            Lookup::One(arn) => {
                let state = match previous {
                    Some(old) if old != arn => SsoState::Replaced {
                        previous: old.to_string(),
                    },
                    _ => SsoState::Resolved,
                };
                (Some(arn), state)
            }
            Lookup::None { similar } => {
                (previous.map(str::to_string), SsoState::NotFound { similar })
            }
            Lookup::Several(candidates) => (
                previous
                    .filter(|p| candidates.iter().any(|c| c == p))
                    .map(str::to_string),
                SsoState::Ambiguous { candidates },
            ),
        },
    };
    SsoResolution {
        permission_set: name.to_string(),
        arn,
        state,
    }
}

/// Whether `arn` is an IAM Identity Center role of permission set `name` (case-insensitively).
pub fn serves(arn: &str, name: &str) -> bool {
    let role_name = arn.rsplit('/').next().unwrap_or_default();
    arn.contains(":role/")
        && permission_set_of(role_name).is_some_and(|set| set.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT_ARN: &str = "arn:aws:iam::111122223333:role";

    fn role(path: &str, name: &str) -> IamPrincipal {
        IamPrincipal {
            name: name.to_string(),
            path: path.to_string(),
            arn: format!("{ACCOUNT_ARN}{path}{name}"),
        }
    }

    fn sso(name: &str) -> IamPrincipal {
        role(SSO_ROLE_PATH_PREFIX, name)
    }

    fn sso_in(region: &str, name: &str) -> IamPrincipal {
        role(&format!("{SSO_ROLE_PATH_PREFIX}{region}/"), name)
    }

    const ADMIN: &str = "AWSReservedSSO_AdministratorAccess_0123456789abcdef";
    const ADMIN_NEW: &str = "AWSReservedSSO_AdministratorAccess_fedcba9876543210";

    #[test]
    fn the_permission_set_is_between_the_prefix_and_a_16_hex_digit_suffix() {
        assert_eq!(permission_set_of(ADMIN), Some("AdministratorAccess"));
        // Underscores inside the name belong to the name.
        assert_eq!(
            permission_set_of("AWSReservedSSO_Data_Eng_RO_00000000000000ff"),
            Some("Data_Eng_RO")
        );
        assert_eq!(
            permission_set_of("AWSReservedSSO_Admin_0123456789ABCDEF"),
            Some("Admin")
        );
        for not_sso in [
            "AdministratorAccess",
            "AWSReservedSSO_AdministratorAccess",
            "AWSReservedSSO__0123456789abcdef",
            "AWSReservedSSO_Admin_0123456789abcde",
            "AWSReservedSSO_Admin_0123456789abcdef0",
            "AWSReservedSSO_Admin_0123456789abcdeg",
            "awsreservedsso_Admin_0123456789abcdef",
            "MyAWSReservedSSO_Admin_0123456789abcdef",
        ] {
            assert_eq!(permission_set_of(not_sso), None, "{not_sso}");
        }
    }

    #[test]
    fn sso_roles_live_under_the_prefix_or_one_region_below() {
        assert!(is_sso_role_path("/aws-reserved/sso.amazonaws.com/"));
        assert!(is_sso_role_path(
            "/aws-reserved/sso.amazonaws.com/eu-west-1/"
        ));
        assert!(!is_sso_role_path(
            "/aws-reserved/sso.amazonaws.com/eu-west-1/x/"
        ));
        assert!(!is_sso_role_path("/aws-reserved/sso.amazonaws.com//"));
        assert!(!is_sso_role_path("/"));
        assert!(!is_sso_role_path("/team/aws-reserved/sso.amazonaws.com/"));
    }

    #[test]
    fn one_role_resolves_with_or_without_a_region_path() {
        let roles = [sso(ADMIN), sso("AWSReservedSSO_ReadOnly_1111111111111111")];
        assert_eq!(
            lookup("AdministratorAccess", &roles),
            Lookup::One(format!(
                "{ACCOUNT_ARN}/aws-reserved/sso.amazonaws.com/{ADMIN}"
            ))
        );
        let roles = [sso_in("eu-west-1", ADMIN)];
        assert_eq!(
            lookup("AdministratorAccess", &roles),
            Lookup::One(format!(
                "{ACCOUNT_ARN}/aws-reserved/sso.amazonaws.com/eu-west-1/{ADMIN}"
            ))
        );
    }

    #[test]
    fn a_prefix_of_another_permission_set_does_not_match_it() {
        let roles = [sso("AWSReservedSSO_Admin_ReadOnly_0123456789abcdef")];
        assert!(matches!(lookup("Admin", &roles), Lookup::None { .. }));
        assert!(matches!(lookup("Admin_ReadOnly", &roles), Lookup::One(_)));
    }

    #[test]
    fn roles_outside_the_sso_path_or_with_another_shape_never_match() {
        let roles = [
            role("/", ADMIN),
            role("/team/", ADMIN),
            sso("AWSReservedSSO_AdministratorAccess"),
        ];
        assert!(matches!(
            lookup("AdministratorAccess", &roles),
            Lookup::None { .. }
        ));
    }

    #[test]
    fn case_differences_match_but_the_exact_spelling_wins() {
        let roles = [sso(ADMIN)];
        assert!(matches!(
            lookup("administratoraccess", &roles),
            Lookup::One(_)
        ));
        let roles = [
            sso(ADMIN),
            sso("AWSReservedSSO_ADMINISTRATORACCESS_1111111111111111"),
        ];
        assert_eq!(
            lookup("AdministratorAccess", &roles),
            Lookup::One(format!(
                "{ACCOUNT_ARN}/aws-reserved/sso.amazonaws.com/{ADMIN}"
            ))
        );
        // Neither is spelt so: both are candidates.
        assert!(
            matches!(lookup("administratoraccess", &roles), Lookup::Several(c) if c.len() == 2)
        );
    }

    #[test]
    fn the_same_permission_set_twice_is_ambiguous_with_every_candidate() {
        let roles = [sso(ADMIN), sso_in("us-east-1", ADMIN_NEW)];
        let Lookup::Several(candidates) = lookup("AdministratorAccess", &roles) else {
            panic!("expected several");
        };
        assert_eq!(
            candidates,
            vec![
                format!("{ACCOUNT_ARN}/aws-reserved/sso.amazonaws.com/{ADMIN}"),
                format!("{ACCOUNT_ARN}/aws-reserved/sso.amazonaws.com/us-east-1/{ADMIN_NEW}"),
            ]
        );
    }

    #[test]
    fn a_miss_names_the_permission_sets_that_look_alike() {
        let roles = [
            sso(ADMIN),
            sso("AWSReservedSSO_ReadOnlyAccess_1111111111111111"),
            sso("AWSReservedSSO_Billing_2222222222222222"),
        ];
        assert_eq!(
            lookup("AdministratorAcess", &roles),
            Lookup::None {
                similar: vec!["AdministratorAccess".to_string()]
            }
        );
    }

    #[test]
    fn a_permission_set_whose_name_contains_the_one_asked_for_looks_alike() {
        let roles = [
            sso("AWSReservedSSO_Power_User_3333333333333333"),
            sso("AWSReservedSSO_Billing_2222222222222222"),
        ];
        assert_eq!(
            lookup("Power", &roles),
            Lookup::None {
                similar: vec!["Power_User".to_string()]
            }
        );
    }

    fn arn_of(role: &IamPrincipal) -> String {
        role.arn.clone()
    }

    #[test]
    fn a_new_suffix_replaces_the_previous_role_and_says_so() {
        let old = arn_of(&sso(ADMIN));
        let new = sso(ADMIN_NEW);
        let r = resolve(
            "AdministratorAccess",
            Ok(std::slice::from_ref(&new)),
            Some(&old),
        );
        assert_eq!(r.arn.as_deref(), Some(new.arn.as_str()));
        assert_eq!(
            r.state,
            SsoState::Replaced {
                previous: old.clone()
            }
        );
        assert_eq!(r.reason(), "Reprovisioned");
        assert!(r.to_string().contains("re-provisioned"), "{r}");
        // The same role again is plainly resolved.
        let r = resolve(
            "AdministratorAccess",
            Ok(std::slice::from_ref(&new)),
            Some(&new.arn),
        );
        assert_eq!(r.state, SsoState::Resolved);
    }

    #[test]
    fn iam_down_keeps_the_previous_role() {
        let old = arn_of(&sso(ADMIN));
        let r = resolve("AdministratorAccess", Err("AccessDenied: no"), Some(&old));
        assert_eq!(r.arn.as_deref(), Some(old.as_str()));
        assert_eq!(r.condition_status(), "Unknown");
        assert!(!r.needs_attention());
        assert!(r.to_string().contains("keeping"), "{r}");
        let r = resolve("AdministratorAccess", Err("timeout"), None);
        assert_eq!(r.arn, None);
        assert!(r.to_string().contains("nothing is mapped"), "{r}");
    }

    #[test]
    fn none_found_keeps_the_previous_role_and_asks_for_attention() {
        let old = arn_of(&sso(ADMIN));
        let r = resolve("AdministratorAccess", Ok(&[]), Some(&old));
        assert_eq!(r.arn.as_deref(), Some(old.as_str()));
        assert_eq!(r.condition_status(), "False");
        assert!(r.needs_attention());
    }

    #[test]
    fn several_found_keep_the_previous_role_only_if_it_is_one_of_them() {
        let (a, b) = (sso(ADMIN), sso_in("eu-west-1", ADMIN_NEW));
        let both = [a.clone(), b.clone()];
        let r = resolve("AdministratorAccess", Ok(&both), Some(&a.arn));
        assert_eq!(r.arn.as_deref(), Some(a.arn.as_str()));
        assert!(matches!(&r.state, SsoState::Ambiguous { candidates } if candidates.len() == 2));
        let gone = arn_of(&sso("AWSReservedSSO_AdministratorAccess_9999999999999999"));
        let r = resolve("AdministratorAccess", Ok(&both), Some(&gone));
        assert_eq!(r.arn, None);
        let message = r.to_string();
        assert!(
            message.contains(&a.arn) && message.contains(&b.arn),
            "{message}"
        );
    }

    #[test]
    fn a_previous_role_of_another_permission_set_is_no_fallback() {
        let other = arn_of(&sso("AWSReservedSSO_ReadOnly_1111111111111111"));
        let r = resolve("AdministratorAccess", Err("down"), Some(&other));
        assert_eq!(r.arn, None);
        let r = resolve(
            "AdministratorAccess",
            Err("down"),
            Some(
                "arn:aws:iam::111122223333:user/AWSReservedSSO_AdministratorAccess_0123456789abcdef",
            ),
        );
        assert_eq!(r.arn, None, "a user is never an SSO role");
    }
}
