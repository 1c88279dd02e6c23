//! An IamIdentityMapping spec -> the aws-auth entry it renders to, or every problem with it.
//!
//! The CRD's OpenAPI patterns and CEL rules reject most bad input at admission; this is the full
//! check, also applied to mappings read from files and to objects created before a CRD upgrade.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;

use crate::api::IamIdentityMappingSpec;
use crate::arn::{IamArnRef, PrincipalKind, is_account_id, template_variables};
use crate::awsauth::{ArnMapping, Entry, has_whitespace};

/// Same bound as the CRD schema (`maxItems`), which keeps CEL cost estimates small.
pub const MAX_GROUPS: usize = 64;

/// One reason a mapping cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Machine-readable reason (CamelCase), used as the condition reason.
    pub reason: &'static str,
    /// The spec field at fault, e.g. `spec.groups[2]`.
    pub field: String,
    pub message: String,
}

impl Problem {
    fn new(reason: &'static str, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.field, self.message, self.reason)
    }
}

/// The reason of the one "problem" of a valid `spec.ssoPermissionSet` mapping checked without
/// its role: not a mistake in the spec, only nothing to render until the operator resolves it.
pub const UNRESOLVED: &str = "PermissionSetUnresolved";

impl Problem {
    /// Whether this only says that a permission set is not resolved (see [`UNRESOLVED`]).
    pub fn is_unresolved(&self) -> bool {
        self.reason == UNRESOLVED
    }
}

/// Validates a spec and returns the aws-auth entry it renders to. A valid `spec.ssoPermissionSet`
/// mapping has no entry without its role: it gets the single [`UNRESOLVED`] problem (see
/// [`validate_resolved`] and [`problems`]).
pub fn validate(spec: &IamIdentityMappingSpec) -> Result<Entry, Vec<Problem>> {
    validate_resolved(spec, None)
}

/// The mistakes in a spec, with no IAM at hand (`validate` on files): empty when it is valid,
/// a permission set that only the running operator can resolve included.
pub fn problems(spec: &IamIdentityMappingSpec) -> Vec<Problem> {
    match validate(spec) {
        Ok(_) => Vec::new(),
        Err(mut problems) => {
            problems.retain(|p| !p.is_unresolved());
            problems
        }
    }
}

/// [`validate`], with the role `spec.ssoPermissionSet` resolved to (full ARN, from IAM).
pub fn validate_resolved(
    spec: &IamIdentityMappingSpec,
    resolved_arn: Option<&str>,
) -> Result<Entry, Vec<Problem>> {
    let mut problems = Vec::new();
    let given = [
        spec.arn.is_some(),
        spec.account.is_some(),
        spec.sso_permission_set.is_some(),
    ];
    let entry = match (&spec.arn, &spec.account, &spec.sso_permission_set) {
        (Some(_), Some(_), None) => {
            problems.push(Problem::new(
                "ArnAndAccount",
                "spec",
                "set exactly one of spec.arn or spec.account, not both",
            ));
            None
        }
        _ if given.iter().filter(|g| **g).count() > 1 => {
            problems.push(Problem::new(
                "SeveralPrincipals",
                "spec",
                "set exactly one of spec.arn, spec.account or spec.ssoPermissionSet",
            ));
            None
        }
        (None, None, None) => {
            problems.push(Problem::new(
                "NoPrincipal",
                "spec",
                "set spec.arn (an IAM role or user ARN), spec.account (a 12-digit account id) or spec.ssoPermissionSet (an IAM Identity Center permission set)",
            ));
            None
        }
        (Some(arn), _, _) => validate_arn_mapping(spec, arn, "spec.arn", &mut problems),
        (_, Some(account), _) => validate_account_mapping(spec, account, &mut problems),
        (_, _, Some(set)) => validate_permission_set(spec, &set.name, resolved_arn, &mut problems),
    };
    // The ARN's kind decides which template variables a group may use; parsed once.
    let kind = match &entry {
        Some(Entry::Role(_)) => Some(PrincipalKind::Role),
        Some(Entry::User(_)) => Some(PrincipalKind::User),
        _ if spec.sso_permission_set.is_some() => Some(PrincipalKind::Role),
        _ => spec
            .arn
            .as_deref()
            .and_then(|a| IamArnRef::parse(a).ok())
            .map(|a| a.kind),
    };
    check_groups(spec, kind, &mut problems);
    match entry {
        Some(entry) if problems.is_empty() => Ok(entry),
        _ => Err(problems),
    }
}

/// The longest permission set name IAM Identity Center accepts.
const MAX_PERMISSION_SET_NAME: usize = 32;

fn validate_permission_set(
    spec: &IamIdentityMappingSpec,
    name: &str,
    resolved_arn: Option<&str>,
    problems: &mut Vec<Problem>,
) -> Option<Entry> {
    let field = "spec.ssoPermissionSet.name";
    let name_ok = !name.is_empty()
        && name.len() <= MAX_PERMISSION_SET_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if name.starts_with("AWSReservedSSO_") {
        problems.push(Problem::new(
            "RoleNameAsPermissionSet",
            field,
            format!(
                "`{name}` is a role name: give the permission set's name only (the part between AWSReservedSSO_ and the suffix), which survives re-provisioning"
            ),
        ));
    } else if !name_ok {
        problems.push(Problem::new(
            "InvalidPermissionSetName",
            field,
            format!(
                "`{name}` is not a permission set name: 1 to {MAX_PERMISSION_SET_NAME} letters, digits and _+=,.@-"
            ),
        ));
    }
    match resolved_arn {
        Some(arn) => validate_arn_mapping(spec, arn, "status.resolvedArn", problems),
        None => {
            // The username and groups are still checked, as for a role.
            let placeholder = format!(
                "arn:aws:iam::000000000000:role/AWSReservedSSO_{}_0000000000000000",
                if name_ok { name } else { "x" }
            );
            let checked = validate_arn_mapping(spec, &placeholder, field, problems);
            if checked.is_some() && problems.is_empty() {
                problems.push(Problem::new(
                    UNRESOLVED,
                    "spec.ssoPermissionSet",
                    format!(
                        "permission set {name} is not resolved to its IAM role yet: the running operator asks IAM (see the PrincipalResolved condition)"
                    ),
                ));
            }
            None
        }
    }
}

fn validate_arn_mapping(
    spec: &IamIdentityMappingSpec,
    raw: &str,
    field: &str,
    problems: &mut Vec<Problem>,
) -> Option<Entry> {
    let arn = match IamArnRef::parse(raw) {
        Ok(arn) => Some(arn),
        Err(err) => {
            problems.push(Problem::new(err.reason(), field, err.to_string()));
            None
        }
    };
    let username = match spec.username.as_deref() {
        None | Some("") => {
            problems.push(Problem::new(
                "UsernameRequired",
                "spec.username",
                "spec.username is required with spec.arn and spec.ssoPermissionSet (e.g. `admin:{{SessionName}}`)",
            ));
            None
        }
        Some(u) if u.trim() != u => {
            problems.push(Problem::new(
                "UsernameHasWhitespace",
                "spec.username",
                format!("username `{u}` has leading or trailing whitespace"),
            ));
            None
        }
        Some(u) => Some(u),
    };
    let kind = arn.as_ref().map(|a| a.kind);
    if let Some(username) = username {
        check_templates("spec.username", username, kind, problems);
    }
    let (arn, username) = (arn?, username?);
    let mapping = ArnMapping {
        arn: arn.aws_auth_arn(),
        username: username.to_string(),
        groups: spec.groups.clone(),
        extra: Default::default(),
    };
    Some(match arn.kind {
        PrincipalKind::Role => Entry::Role(mapping),
        PrincipalKind::User => Entry::User(mapping),
    })
}

fn validate_account_mapping(
    spec: &IamIdentityMappingSpec,
    account: &str,
    problems: &mut Vec<Problem>,
) -> Option<Entry> {
    let mut ok = true;
    if !is_account_id(account) {
        problems.push(Problem::new(
            "InvalidAccount",
            "spec.account",
            format!("`{account}` is not a 12-digit AWS account id"),
        ));
        ok = false;
    }
    if spec.username.is_some() {
        problems.push(Problem::new(
            "AccountTakesNoUsername",
            "spec.username",
            "mapAccounts entries have no username (the caller's ARN is used): remove spec.username, or map a role or user with spec.arn",
        ));
        ok = false;
    }
    if !spec.groups.is_empty() {
        problems.push(Problem::new(
            "AccountTakesNoGroups",
            "spec.groups",
            "mapAccounts entries have no groups: remove spec.groups, or map a role or user with spec.arn",
        ));
        ok = false;
    }
    ok.then(|| Entry::Account(account.to_string()))
}

fn check_groups(
    spec: &IamIdentityMappingSpec,
    kind: Option<PrincipalKind>,
    problems: &mut Vec<Problem>,
) {
    if spec.groups.len() > MAX_GROUPS {
        problems.push(Problem::new(
            "TooManyGroups",
            "spec.groups",
            format!(
                "{} groups given; at most {MAX_GROUPS} are allowed",
                spec.groups.len()
            ),
        ));
    }
    // A short list (the usual case) is scanned for repeats; a long one gets a set, so that
    // a file with thousands of groups is still checked in linear time.
    let mut seen: Option<HashSet<&str>> = (spec.groups.len() > 16).then(HashSet::new);
    let mut is_repeat = |i: usize| {
        let group = spec.groups[i].as_str();
        match &mut seen {
            Some(set) => !set.insert(group),
            None => spec.groups[..i].iter().any(|earlier| earlier == group),
        }
    };
    for (i, group) in spec.groups.iter().enumerate() {
        // Formatted only when reported: most groups have no problem.
        let field = || format!("spec.groups[{i}]");
        if group.is_empty() {
            problems.push(Problem::new(
                "EmptyGroup",
                field(),
                "group names must not be empty",
            ));
        } else if has_whitespace(group) {
            problems.push(Problem::new(
                "GroupHasWhitespace",
                field(),
                format!("group `{group}` contains whitespace"),
            ));
        } else if is_repeat(i) {
            problems.push(Problem::new(
                "DuplicateGroup",
                field(),
                format!("group `{group}` is listed twice"),
            ));
        } else if group.contains('{') {
            // Only `{{...}}` can be a template variable.
            check_templates(&field(), group, kind, problems);
        }
    }
}

fn check_templates(
    field: &str,
    text: &str,
    kind: Option<PrincipalKind>,
    problems: &mut Vec<Problem>,
) {
    for variable in template_variables(text) {
        if !variable.known {
            problems.push(Problem::new(
                "UnknownTemplateVariable",
                field,
                format!(
                    "`{{{{{}}}}}` is not substituted by the authenticator; use {{{{AccountID}}}}, {{{{SessionName}}}}, {{{{SessionNameRaw}}}}, {{{{AccessKeyID}}}} or {{{{EC2PrivateDNSName}}}} (case-sensitive)",
                    variable.variable
                ),
            ));
        } else if kind == Some(PrincipalKind::User)
            && matches!(
                variable.variable,
                "SessionName" | "SessionNameRaw" | "EC2PrivateDNSName"
            )
        {
            problems.push(Problem::new(
                "TemplateNotApplicable",
                field,
                format!(
                    "`{{{{{}}}}}` exists only for role sessions, and this mapping is for an IAM user",
                    variable.variable
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        arn: Option<&str>,
        account: Option<&str>,
        username: Option<&str>,
        groups: &[&str],
    ) -> IamIdentityMappingSpec {
        IamIdentityMappingSpec {
            access_entry: None,
            arn: arn.map(str::to_string),
            account: account.map(str::to_string),
            username: username.map(str::to_string),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            adopt_existing_entry: false,
            sso_permission_set: None,
        }
    }

    fn sso(name: &str, username: Option<&str>, groups: &[&str]) -> IamIdentityMappingSpec {
        IamIdentityMappingSpec {
            sso_permission_set: Some(crate::api::SsoPermissionSetRef {
                name: name.to_string(),
            }),
            ..spec(None, None, username, groups)
        }
    }

    const ADMIN_ROLE: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef";

    #[test]
    fn a_resolved_permission_set_renders_its_role_path_stripped() {
        let entry = validate_resolved(
            &sso("Admin", Some("sso:{{SessionName}}"), &["ops"]),
            Some(ADMIN_ROLE),
        )
        .unwrap();
        assert_eq!(
            entry.principal(),
            "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"
        );
        assert_eq!(entry.username(), Some("sso:{{SessionName}}"));
    }

    #[test]
    fn an_unresolved_permission_set_is_valid_but_has_nothing_to_render() {
        let spec = sso("Admin", Some("sso:{{SessionName}}"), &["ops"]);
        let problems = validate(&spec).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].is_unresolved(), "{problems:?}");
        assert!(super::problems(&spec).is_empty());
    }

    #[test]
    fn a_permission_set_mapping_is_checked_like_a_role_mapping() {
        // Real mistakes are reported with or without the role.
        let bad = sso("Admin", None, &["", "{{Nope}}"]);
        assert_eq!(
            super::problems(&bad)
                .iter()
                .map(|p| p.reason)
                .collect::<Vec<_>>(),
            vec!["UsernameRequired", "EmptyGroup", "UnknownTemplateVariable"]
        );
        // {{SessionName}} is fine: the role is assumed by a session.
        assert!(super::problems(&sso("Admin", Some("{{SessionName}}"), &[])).is_empty());
        for (name, reason) in [
            ("", "InvalidPermissionSetName"),
            ("Admin Access", "InvalidPermissionSetName"),
            (
                "ThisPermissionSetNameIsFarTooLong",
                "InvalidPermissionSetName",
            ),
            (
                "AWSReservedSSO_Admin_0123456789abcdef",
                "RoleNameAsPermissionSet",
            ),
        ] {
            let reasons: Vec<_> = super::problems(&sso(name, Some("u"), &[]))
                .iter()
                .map(|p| p.reason)
                .collect();
            assert_eq!(reasons, vec![reason], "{name:?}");
        }
    }

    #[test]
    fn a_permission_set_and_another_principal_is_one_too_many() {
        let mut both = sso("Admin", Some("u"), &[]);
        both.arn = Some("arn:aws:iam::111122223333:role/a".into());
        assert_eq!(reasons(&both), vec!["SeveralPrincipals"]);
        let mut both = sso("Admin", Some("u"), &[]);
        both.account = Some("111122223333".into());
        assert!(reasons(&both).contains(&"SeveralPrincipals"));
    }

    fn reasons(spec: &IamIdentityMappingSpec) -> Vec<&'static str> {
        validate(spec)
            .unwrap_err()
            .into_iter()
            .map(|p| p.reason)
            .collect()
    }

    #[test]
    fn role_with_path_renders_path_stripped() {
        let entry = validate(&spec(
            Some("arn:aws:iam::111122223333:role/platform/admin"),
            None,
            Some("admin:{{SessionName}}"),
            &["system:masters"],
        ))
        .unwrap();
        assert_eq!(
            entry,
            Entry::Role(ArnMapping {
                arn: "arn:aws:iam::111122223333:role/admin".into(),
                username: "admin:{{SessionName}}".into(),
                groups: vec!["system:masters".into()],
                extra: Default::default(),
            })
        );
    }

    #[test]
    fn user_keeps_path() {
        let entry = validate(&spec(
            Some("arn:aws:iam::111122223333:user/ops/alice"),
            None,
            Some("alice"),
            &[],
        ))
        .unwrap();
        assert_eq!(
            entry.principal(),
            "arn:aws:iam::111122223333:user/ops/alice"
        );
        assert!(matches!(entry, Entry::User(_)));
    }

    #[test]
    fn account_mapping() {
        let entry = validate(&spec(None, Some("111122223333"), None, &[])).unwrap();
        assert_eq!(entry, Entry::Account("111122223333".into()));
        assert_eq!(
            reasons(&spec(None, Some("111122223333"), Some("x"), &["g"])),
            vec!["AccountTakesNoUsername", "AccountTakesNoGroups"]
        );
        assert_eq!(
            reasons(&spec(None, Some("1234"), None, &[])),
            vec!["InvalidAccount"]
        );
    }

    #[test]
    fn exactly_one_principal() {
        assert_eq!(
            reasons(&spec(None, None, Some("u"), &[])),
            vec!["NoPrincipal"]
        );
        assert_eq!(
            reasons(&spec(
                Some("arn:aws:iam::111122223333:role/a"),
                Some("111122223333"),
                Some("u"),
                &[]
            )),
            vec!["ArnAndAccount"]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = reasons(&spec(
            Some("arn:aws:sts::111122223333:assumed-role/Admin/bob"),
            None,
            None,
            &["", "a b", "ok", "ok", "{{Nope}}"],
        ));
        assert_eq!(
            got,
            vec![
                "ArnIsAssumedRole",
                "UsernameRequired",
                "EmptyGroup",
                "GroupHasWhitespace",
                "DuplicateGroup",
                "UnknownTemplateVariable"
            ]
        );
    }

    #[test]
    fn repeated_groups_are_found_in_short_and_long_lists() {
        for count in [3, 40] {
            let mut groups: Vec<String> = (0..count).map(|i| format!("g{i}")).collect();
            groups.extend(["g1", "", "", "a b", "a b", "g1"].map(String::from));
            let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
            let problems = validate(&spec(
                Some("arn:aws:iam::111122223333:role/r"),
                None,
                Some("r"),
                &refs,
            ))
            .unwrap_err();
            let found: Vec<(&str, &str)> = problems
                .iter()
                .map(|p| (p.reason, p.field.as_str()))
                .collect();
            let at = |k: usize| format!("spec.groups[{}]", count + k);
            let expected = [
                ("DuplicateGroup", at(0)),
                ("EmptyGroup", at(1)),
                ("EmptyGroup", at(2)),
                ("GroupHasWhitespace", at(3)),
                ("GroupHasWhitespace", at(4)),
                ("DuplicateGroup", at(5)),
            ];
            let expected: Vec<(&str, &str)> =
                expected.iter().map(|(r, f)| (*r, f.as_str())).collect();
            let found: Vec<_> = found
                .into_iter()
                .filter(|(r, _)| *r != "TooManyGroups")
                .collect();
            assert_eq!(found, expected, "{count} groups");
        }
    }

    #[test]
    fn templates() {
        assert!(
            validate(&spec(
                Some("arn:aws:iam::111122223333:role/node"),
                None,
                Some("system:node:{{EC2PrivateDNSName}}"),
                &["system:bootstrappers", "system:nodes"],
            ))
            .is_ok()
        );
        assert_eq!(
            reasons(&spec(
                Some("arn:aws:iam::111122223333:role/a"),
                None,
                Some("{{sessionname}}"),
                &[]
            )),
            vec!["UnknownTemplateVariable"]
        );
        assert_eq!(
            reasons(&spec(
                Some("arn:aws:iam::111122223333:user/a"),
                None,
                Some("u-{{SessionName}}"),
                &[]
            )),
            vec!["TemplateNotApplicable"]
        );
        assert!(
            validate(&spec(
                Some("arn:aws:iam::111122223333:user/a"),
                None,
                Some("u-{{AccessKeyID}}-{{AccountID}}"),
                &[]
            ))
            .is_ok()
        );
    }

    #[test]
    fn group_count_is_bounded_like_the_crd() {
        let groups: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let spec = spec(
            Some("arn:aws:iam::111122223333:role/a"),
            None,
            Some("u"),
            &groups,
        );
        assert_eq!(reasons(&spec), vec!["TooManyGroups"]);
    }

    #[test]
    fn problems_name_the_field() {
        let problems = validate(&spec(
            Some("arn:aws:iam::111122223333:role/a"),
            None,
            Some("u"),
            &["ok", "bad group"],
        ))
        .unwrap_err();
        assert_eq!(problems[0].field, "spec.groups[1]");
        assert!(problems[0].to_string().contains("bad group"));
    }
}
