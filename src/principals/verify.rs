//! `--verify-principals`: does the IAM role or user a mapping names exist? Pure: the shell asks
//! IAM (GetRole/GetUser) and this decides what the answer means.

use std::fmt;

use serde::Serialize;

use super::sso::IamPrincipal;
use crate::arn::{IamArn, PrincipalKind};

/// What IAM says about a mapping's principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict")]
pub enum Verdict {
    /// It exists, name and path as written.
    Found,
    /// A role or user of that name exists, with another path (or, for a user, another spelling):
    /// `actual` is its real ARN.
    Differs { actual: String },
    /// Nothing of that name; `similar` are existing names that look alike.
    Missing { similar: Vec<String> },
    /// It belongs to another account than the operator's credentials: IAM cannot be asked.
    OtherAccount { account: String, own: String },
    /// IAM could not be asked (`error` says why).
    Unchecked { error: String },
}

impl Verdict {
    /// `PrincipalFound`: True, False or Unknown.
    pub fn condition_status(&self) -> &'static str {
        match self {
            Verdict::Found => "True",
            Verdict::Differs { .. } | Verdict::Missing { .. } => "False",
            Verdict::OtherAccount { .. } | Verdict::Unchecked { .. } => "Unknown",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Found => "Found",
            Verdict::Differs { .. } => "PathOrNameDiffers",
            Verdict::Missing { .. } => "NotFound",
            Verdict::OtherAccount { .. } => "OtherAccount",
            Verdict::Unchecked { .. } => "IamUnavailable",
        }
    }

    /// Whether the verdict is IAM's answer (cached for the TTL), not a failure to ask.
    pub fn is_answer(&self) -> bool {
        !matches!(self, Verdict::Unchecked { .. })
    }
}

/// A verdict about one ARN, with the words for the condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalCheck {
    pub arn: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl fmt::Display for PrincipalCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let arn = &self.arn;
        match &self.verdict {
            Verdict::Found => write!(f, "{arn} exists in IAM"),
            Verdict::Differs { actual } => write!(
                f,
                "{arn} does not exist as written; IAM has {actual}: give the real ARN, path included (a caller's ARN carries it, and access entries need it)"
            ),
            Verdict::Missing { similar } => {
                write!(
                    f,
                    "{arn} does not exist in IAM (yet: it may be created later, e.g. by Terraform; the entry is written anyway)"
                )?;
                if !similar.is_empty() {
                    write!(
                        f,
                        "; names that exist and look alike: {}",
                        similar.join(", ")
                    )?;
                }
                // The usual cause: a re-provisioned permission set got a role with a new suffix.
                let name = arn.rsplit('/').next().unwrap_or_default();
                if let Some(set) = super::sso::permission_set_of(name) {
                    write!(
                        f,
                        "; it is an IAM Identity Center role, whose suffix changes whenever permission set {set} is re-provisioned: map it with spec.ssoPermissionSet: {{name: {set}}} instead of spec.arn"
                    )?;
                }
                Ok(())
            }
            Verdict::OtherAccount { account, own } => write!(
                f,
                "{arn} is in account {account}; the operator's IAM credentials are for account {own}, so it cannot be checked"
            ),
            Verdict::Unchecked { error } => write!(f, "{arn} could not be checked: {error}"),
        }
    }
}

/// What to ask IAM about an ARN: GetRole or GetUser of `name`, in `account`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Question {
    pub kind: PrincipalKind,
    pub account: String,
    pub name: String,
}

/// The question for `arn`, or None when it is no IAM role or user ARN.
pub fn question(arn: &str) -> Option<Question> {
    let arn = IamArn::parse(arn).ok()?;
    Some(Question {
        kind: arn.kind,
        account: arn.account.clone(),
        name: arn.name.clone(),
    })
}

/// The verdict on `arn` from IAM's answer about its name (`found`: the role or user of that
/// name, if any). A role's name compares case-insensitively (so do IAM and the authenticator
/// for roles) and its path exactly (access entries need the real ARN); a user's ARN must match
/// exactly, since the authenticator compares user ARNs as they are.
pub fn verdict(
    arn: &str,
    found: Option<&IamPrincipal>,
    similar: impl FnOnce() -> Vec<String>,
) -> Verdict {
    let Some(found) = found else {
        return Verdict::Missing { similar: similar() };
    };
    let same = match IamArn::parse(arn) {
        Ok(parsed) if parsed.kind == PrincipalKind::Role => {
            found.arn.eq_ignore_ascii_case(arn) && {
                // The path is compared exactly; only the name may differ in case.
                let written_path = arn.len() - parsed.name.len();
                found.arn.get(..written_path) == arn.get(..written_path)
            }
        }
        _ => found.arn == arn,
    };
    if same {
        Verdict::Found
    } else {
        Verdict::Differs {
            actual: found.arn.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(arn: &str) -> IamPrincipal {
        let (head, name) = arn.rsplit_once('/').unwrap();
        let path = head
            .split_once(":role")
            .or(head.split_once(":user"))
            .unwrap()
            .1;
        IamPrincipal {
            name: name.to_string(),
            path: format!("{path}/"),
            arn: arn.to_string(),
        }
    }

    fn none() -> Vec<String> {
        vec![]
    }

    #[test]
    fn an_exact_match_is_found() {
        let arn = "arn:aws:iam::111122223333:role/team/admin";
        assert_eq!(verdict(arn, Some(&principal(arn)), none), Verdict::Found);
        let arn = "arn:aws:iam::111122223333:user/people/alice";
        assert_eq!(verdict(arn, Some(&principal(arn)), none), Verdict::Found);
    }

    #[test]
    fn a_role_name_in_another_case_is_found_but_not_another_path() {
        let real = principal("arn:aws:iam::111122223333:role/team/Admin");
        assert_eq!(
            verdict(
                "arn:aws:iam::111122223333:role/team/admin",
                Some(&real),
                none
            ),
            Verdict::Found
        );
        assert_eq!(
            verdict("arn:aws:iam::111122223333:role/admin", Some(&real), none),
            Verdict::Differs {
                actual: real.arn.clone()
            }
        );
        assert_eq!(
            verdict(
                "arn:aws:iam::111122223333:role/TEAM/Admin",
                Some(&real),
                none
            ),
            Verdict::Differs {
                actual: real.arn.clone()
            },
            "paths are case-sensitive"
        );
    }

    #[test]
    fn a_user_must_match_exactly() {
        let real = principal("arn:aws:iam::111122223333:user/people/Alice");
        for written in [
            "arn:aws:iam::111122223333:user/people/alice",
            "arn:aws:iam::111122223333:user/Alice",
        ] {
            assert_eq!(
                verdict(written, Some(&real), none),
                Verdict::Differs {
                    actual: real.arn.clone()
                },
                "{written}"
            );
        }
    }

    #[test]
    fn a_missing_principal_carries_the_hint_and_says_it_is_only_a_warning() {
        let v = verdict("arn:aws:iam::111122223333:role/admn", None, || {
            vec!["admin".to_string()]
        });
        assert_eq!(v.condition_status(), "False");
        let check = PrincipalCheck {
            arn: "arn:aws:iam::111122223333:role/admn".into(),
            verdict: v,
        };
        let message = check.to_string();
        assert!(message.contains("look alike: admin"), "{message}");
        assert!(message.contains("written anyway"), "{message}");
    }

    #[test]
    fn a_missing_sso_role_suggests_its_permission_set() {
        let check = PrincipalCheck {
            arn: "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef".into(),
            verdict: Verdict::Missing { similar: vec![] },
        };
        let message = check.to_string();
        assert!(
            message.contains("spec.ssoPermissionSet: {name: Admin}"),
            "{message}"
        );
    }

    #[test]
    fn questions_come_from_role_and_user_arns_only() {
        let q = question("arn:aws:iam::111122223333:role/team/admin").unwrap();
        assert_eq!(
            (q.kind, q.account.as_str(), q.name.as_str()),
            (PrincipalKind::Role, "111122223333", "admin")
        );
        assert_eq!(question("111122223333"), None);
        assert_eq!(question("arn:aws:iam::111122223333:group/admins"), None);
    }

    #[test]
    fn failures_to_ask_are_unknown_and_not_cached() {
        let unchecked = Verdict::Unchecked {
            error: "throttled".into(),
        };
        assert_eq!(unchecked.condition_status(), "Unknown");
        assert!(!unchecked.is_answer());
        let other = Verdict::OtherAccount {
            account: "444455556666".into(),
            own: "111122223333".into(),
        };
        assert_eq!(other.condition_status(), "Unknown");
        assert!(other.is_answer());
    }
}
