//! A mapping (or a live aws-auth entry) -> the EKS access entry it becomes, or why it cannot
//! become one and what to write in `spec.accessEntry` instead. Pure.
//!
//! eksctl's migration rules are the baseline: node roles become EC2_LINUX (EC2_WINDOWS with
//! `eks:kube-proxy-windows`), Fargate pod execution roles FARGATE_LINUX, `system:masters`
//! becomes AmazonEKSClusterAdminPolicy at cluster scope, and other `system:` groups, reserved
//! usernames, service-linked roles and mapAccounts cannot move. Beyond eksctl:
//! - the principal ARN keeps its IAM path (aws-auth strips it, EKS needs it), and an IAM
//!   Identity Center role (`AWSReservedSSO_*`) given without its path is refused;
//! - username templates follow the EKS rules: `{{SessionName}}` / `{{SessionNameRaw}}` only for
//!   roles and only after a colon, `{{AccountID}}` is replaced by the principal's account (the
//!   only account a caller of that principal can have), `{{AccessKeyID}}` and
//!   `{{EC2PrivateDNSName}}` (outside node entries) are refused;
//! - ordinary groups are carried over, so existing RoleBindings keep working.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::spec::{AccessEntrySpec, AccessEntryType, AccessPolicySpec};
use crate::api::IamIdentityMappingSpec;
use crate::arn::{IamArn, Partition, PrincipalKind, template_variables};
use crate::awsauth::Entry;

/// The username aws-auth gives EC2 nodes.
pub const NODE_USERNAME: &str = "system:node:{{EC2PrivateDNSName}}";
/// The username aws-auth gives Fargate pods (and hybrid nodes).
pub const SESSION_NODE_USERNAME: &str = "system:node:{{SessionName}}";
pub const GROUP_MASTERS: &str = "system:masters";
pub const GROUP_BOOTSTRAPPERS: &str = "system:bootstrappers";
pub const GROUP_NODES: &str = "system:nodes";
pub const GROUP_NODE_PROXIER: &str = "system:node-proxier";
pub const GROUP_KUBE_PROXY_WINDOWS: &str = "eks:kube-proxy-windows";
pub const CLUSTER_ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";
// Username prefixes EKS refuses in an access entry (the operator's policy refuses them too).
pub use crate::plan::RESERVED_USERNAME_PREFIXES;
const SSO_ROLE_PREFIX: &str = "AWSReservedSSO_";

/// Where an access policy applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase", tag = "type", content = "namespaces")]
pub enum PolicyScope {
    Cluster,
    /// Sorted, without duplicates.
    Namespace(Vec<String>),
}

impl PolicyScope {
    pub fn from_namespaces(namespaces: &[String]) -> PolicyScope {
        if namespaces.is_empty() {
            return PolicyScope::Cluster;
        }
        let set: BTreeSet<&String> = namespaces.iter().collect();
        PolicyScope::Namespace(set.into_iter().cloned().collect())
    }

    pub fn namespaces(&self) -> &[String] {
        match self {
            PolicyScope::Cluster => &[],
            PolicyScope::Namespace(ns) => ns,
        }
    }
}

impl fmt::Display for PolicyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyScope::Cluster => f.write_str("cluster"),
            PolicyScope::Namespace(ns) => write!(f, "namespaces {}", ns.join(",")),
        }
    }
}

/// An access policy to associate: its full ARN and scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredPolicy {
    pub policy_arn: String,
    pub scope: PolicyScope,
}

impl DesiredPolicy {
    /// The short name (the part after the last `/`).
    pub fn name(&self) -> &str {
        self.policy_arn
            .rsplit_once('/')
            .map_or(self.policy_arn.as_str(), |(_, n)| n)
    }
}

/// Which rule produced an access entry (shown by `migrate plan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Rule {
    /// spec.accessEntry named the type.
    Explicit,
    /// `system:node:{{EC2PrivateDNSName}}` with the node groups.
    Ec2Node,
    /// `system:node:{{SessionName}}` with system:node-proxier.
    FargatePodExecutionRole,
    /// Username and groups carried over (system:masters as the cluster admin policy).
    Standard,
}

impl Rule {
    pub fn describe(self) -> &'static str {
        match self {
            Rule::Explicit => "type from spec.accessEntry",
            Rule::Ec2Node => "node role (system:node:{{EC2PrivateDNSName}})",
            Rule::FargatePodExecutionRole => {
                "Fargate pod execution role (system:node:{{SessionName}} + system:node-proxier)"
            }
            Rule::Standard => "username and groups carried over",
        }
    }
}

/// The access entry a mapping becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredEntry {
    /// The real IAM ARN, path included.
    pub principal_arn: String,
    #[serde(rename = "type")]
    pub type_: AccessEntryType,
    /// None: EKS generates it (always for node types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Sorted, without duplicates; empty for node types.
    pub kubernetes_groups: Vec<String>,
    /// Sorted by ARN, one per policy; empty for node types.
    pub policies: Vec<DesiredPolicy>,
    pub rule: Rule,
    /// Things worth a look that do not stop the migration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why a mapping cannot become an access entry (machine-readable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum NotMigratableReason {
    AccountMapping,
    InvalidArn,
    ServiceLinkedRole,
    SsoRoleWithoutPath,
    ReservedGroup,
    ReservedUsername,
    UnsupportedTemplate,
    SessionNameWithoutColon,
    SessionNameOnUser,
    NodeRoleExtraGroups,
    AmbiguousNodeType,
    NodeTypeNeedsRole,
    FieldsOnNodeType,
    InvalidPolicy,
    DuplicatePolicy,
    PermissionSetUnresolved,
}

impl NotMigratableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            NotMigratableReason::AccountMapping => "AccountMapping",
            NotMigratableReason::InvalidArn => "InvalidArn",
            NotMigratableReason::ServiceLinkedRole => "ServiceLinkedRole",
            NotMigratableReason::SsoRoleWithoutPath => "SsoRoleWithoutPath",
            NotMigratableReason::ReservedGroup => "ReservedGroup",
            NotMigratableReason::ReservedUsername => "ReservedUsername",
            NotMigratableReason::UnsupportedTemplate => "UnsupportedTemplate",
            NotMigratableReason::SessionNameWithoutColon => "SessionNameWithoutColon",
            NotMigratableReason::SessionNameOnUser => "SessionNameOnUser",
            NotMigratableReason::NodeRoleExtraGroups => "NodeRoleExtraGroups",
            NotMigratableReason::AmbiguousNodeType => "AmbiguousNodeType",
            NotMigratableReason::NodeTypeNeedsRole => "NodeTypeNeedsRole",
            NotMigratableReason::FieldsOnNodeType => "FieldsOnNodeType",
            NotMigratableReason::InvalidPolicy => "InvalidPolicy",
            NotMigratableReason::DuplicatePolicy => "DuplicatePolicy",
            NotMigratableReason::PermissionSetUnresolved => "PermissionSetUnresolved",
        }
    }
}

impl fmt::Display for NotMigratableReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason and a message that says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotMigratable {
    pub reason: NotMigratableReason,
    pub message: String,
}

impl NotMigratable {
    fn new(reason: NotMigratableReason, message: impl Into<String>) -> NotMigratable {
        NotMigratable {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for NotMigratable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The outcome of a translation.
pub type Translation = Result<DesiredEntry, NotMigratable>;

/// What a translation reads: a mapping's spec or a live aws-auth entry.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub arn: Option<&'a str>,
    pub account: Option<&'a str>,
    pub username: Option<&'a str>,
    pub groups: &'a [String],
    pub access_entry: Option<&'a AccessEntrySpec>,
    /// The ARN comes from a live aws-auth, where role ARNs are written path-stripped.
    pub from_aws_auth: bool,
}

/// The access entry an IamIdentityMapping becomes.
pub fn translate_mapping(spec: &IamIdentityMappingSpec) -> Translation {
    translate_resolved(spec, None)
}

/// [`translate_mapping`], with the role `spec.ssoPermissionSet` resolved to (full ARN, path
/// included: the access entry takes it as it is).
pub fn translate_resolved(
    spec: &IamIdentityMappingSpec,
    resolved_arn: Option<&str>,
) -> Translation {
    if let (Some(set), None) = (&spec.sso_permission_set, resolved_arn) {
        return Err(NotMigratable::new(
            NotMigratableReason::PermissionSetUnresolved,
            format!(
                "permission set {} is not resolved to its IAM role yet (see the PrincipalResolved condition); its access entry follows once it is",
                set.name
            ),
        ));
    }
    let arn = match &spec.sso_permission_set {
        Some(_) => resolved_arn,
        None => spec.arn.as_deref(),
    };
    translate(Source {
        arn,
        account: spec.account.as_deref(),
        username: spec.username.as_deref(),
        groups: &spec.groups,
        access_entry: spec.access_entry.as_ref(),
        from_aws_auth: false,
    })
}

/// The access entry a live aws-auth entry becomes (for `migrate plan`).
pub fn translate_live_entry(entry: &Entry) -> Translation {
    match entry {
        Entry::Role(m) | Entry::User(m) => translate(Source {
            arn: Some(&m.arn),
            account: None,
            username: Some(&m.username),
            groups: &m.groups,
            access_entry: None,
            from_aws_auth: true,
        }),
        Entry::Account(a) => translate(Source {
            arn: None,
            account: Some(a),
            username: None,
            groups: &[],
            access_entry: None,
            from_aws_auth: true,
        }),
    }
}

pub fn translate(source: Source<'_>) -> Translation {
    use NotMigratableReason as R;
    let Some(arn_text) = source.arn else {
        let account = source.account.unwrap_or_default();
        return Err(NotMigratable::new(
            R::AccountMapping,
            format!(
                "account {account} is mapped as a whole (mapAccounts); an access entry names one IAM role or user: write one IamIdentityMapping per role or user of account {account} that needs access. This mapping stays in aws-auth"
            ),
        ));
    };
    let arn =
        IamArn::parse(arn_text).map_err(|e| NotMigratable::new(R::InvalidArn, e.to_string()))?;
    if arn.is_service_linked() {
        return Err(NotMigratable::new(
            R::ServiceLinkedRole,
            format!(
                "{arn_text} is a service-linked role (role/aws-service-role/...): EKS does not accept service-linked roles in access entries. This mapping stays in aws-auth"
            ),
        ));
    }
    if arn.kind == PrincipalKind::Role && arn.name.starts_with(SSO_ROLE_PREFIX) && !arn.has_path() {
        let hint = match crate::principals::sso::permission_set_of(&arn.name) {
            _ if source.from_aws_auth => "aws-auth holds it path-stripped".to_string(),
            Some(set) => format!(
                "map it by its permission set instead, spec.ssoPermissionSet: {{name: {set}}}: the operator then finds the role, path included, and follows it when the permission set is re-provisioned"
            ),
            None => "set spec.arn to the real ARN (the operator still writes it path-stripped into aws-auth)".to_string(),
        };
        return Err(NotMigratable::new(
            R::SsoRoleWithoutPath,
            format!(
                "{arn_text} is an IAM Identity Center role given without its path: EKS needs the real ARN, arn:{}:iam::{}:role/aws-reserved/sso.amazonaws.com/[REGION/]{} (`aws iam get-role --role-name {}` shows it); {hint}",
                arn.partition, arn.account, arn.name, arn.name
            ),
        ));
    }
    let mut notes = Vec::new();
    if source.from_aws_auth && arn.kind == PrincipalKind::Role && !arn.has_path() {
        notes.push(format!(
            "aws-auth holds role ARNs without their IAM path: if role {} has a path, the access entry needs the real ARN (`aws iam get-role --role-name {}`)",
            arn.name, arn.name
        ));
    }
    let principal_arn = arn.full_arn();
    let explicit = source.access_entry;

    // A type given explicitly wins; otherwise the node patterns decide.
    let (type_, rule) = match explicit.and_then(|ae| ae.type_) {
        Some(t) => (t, Rule::Explicit),
        None => match detect_node_type(source.username, source.groups)? {
            Some((t, rule)) => (t, rule),
            None => (AccessEntryType::Standard, Rule::Standard),
        },
    };
    if !type_.is_standard() {
        if arn.kind != PrincipalKind::Role {
            return Err(NotMigratable::new(
                R::NodeTypeNeedsRole,
                format!(
                    "a {type_} access entry needs an IAM role, and {arn_text} is a user: remove spec.accessEntry.type (STANDARD) or map the node role"
                ),
            ));
        }
        if let Some(ae) = explicit
            && (ae.username.is_some()
                || ae.kubernetes_groups.as_ref().is_some_and(|g| !g.is_empty())
                || !ae.policies.is_empty())
        {
            return Err(NotMigratable::new(
                R::FieldsOnNodeType,
                format!(
                    "a {type_} access entry takes no username, kubernetesGroups or policies (EKS sets them): remove them from spec.accessEntry"
                ),
            ));
        }
        return Ok(DesiredEntry {
            principal_arn,
            type_,
            username: None,
            kubernetes_groups: Vec::new(),
            policies: Vec::new(),
            rule,
            notes,
        });
    }

    // STANDARD: username, groups and policies.
    let explicit_username = explicit.and_then(|ae| ae.username.as_deref());
    let username = match explicit_username {
        Some(u) => translate_username(u, &arn, true)?,
        None => match source.username {
            Some(u) => translate_username(u, &arn, false)?,
            None => None,
        },
    };
    let mut policies: BTreeMap<String, PolicyScope> = BTreeMap::new();
    let groups: BTreeSet<String> = match explicit.and_then(|ae| ae.kubernetes_groups.as_ref()) {
        Some(groups) => {
            let mut out = BTreeSet::new();
            for g in groups {
                if g.starts_with("system:") {
                    return Err(NotMigratable::new(
                        R::ReservedGroup,
                        format!(
                            "spec.accessEntry.kubernetesGroups has `{g}`: EKS rejects groups starting with system:; remove it (for cluster-admin rights use policies: [{{policy: {CLUSTER_ADMIN_POLICY}}}])"
                        ),
                    ));
                }
                out.insert(translate_group(g, &arn, true)?);
            }
            out
        }
        None => {
            let mut out = BTreeSet::new();
            for g in source.groups {
                if g == GROUP_MASTERS {
                    policies.insert(
                        policy_arn(arn.partition, CLUSTER_ADMIN_POLICY),
                        PolicyScope::Cluster,
                    );
                } else if g.starts_with("system:") {
                    return Err(NotMigratable::new(
                        R::ReservedGroup,
                        format!(
                            "group `{g}` cannot be carried into an access entry (EKS rejects groups starting with system:, and only system:masters has an access-policy equivalent): set spec.accessEntry.kubernetesGroups to the groups to keep, plus policies if needed; or set spec.accessEntry.type if this is a node role"
                        ),
                    ));
                } else {
                    out.insert(translate_group(g, &arn, false)?);
                }
            }
            out
        }
    };
    if let Some(ae) = explicit {
        let mut seen = BTreeSet::new();
        for p in &ae.policies {
            let full = resolve_policy(&p.policy, arn.partition)?;
            if !seen.insert(full.clone()) {
                return Err(NotMigratable::new(
                    R::DuplicatePolicy,
                    format!(
                        "spec.accessEntry.policies lists {} twice: list each policy once, with all its namespaces",
                        p.policy
                    ),
                ));
            }
            // An explicit scope replaces a derived one.
            policies.insert(full, scope_of(p));
        }
    }
    if groups.is_empty() && policies.is_empty() {
        notes.push(
            "no groups and no access policies: the principal can authenticate but is authorised for nothing beyond API discovery".to_string(),
        );
    }
    Ok(DesiredEntry {
        principal_arn,
        type_: AccessEntryType::Standard,
        username,
        kubernetes_groups: groups.into_iter().collect(),
        policies: policies
            .into_iter()
            .map(|(policy_arn, scope)| DesiredPolicy { policy_arn, scope })
            .collect(),
        rule,
        notes,
    })
}

fn scope_of(p: &AccessPolicySpec) -> PolicyScope {
    PolicyScope::from_namespaces(&p.namespaces)
}

/// `arn:P:eks::aws:cluster-access-policy/NAME`.
pub fn policy_arn(partition: Partition, name: &str) -> String {
    format!("arn:{partition}:eks::aws:cluster-access-policy/{name}")
}

/// A short policy name or a full access-policy ARN -> the full ARN.
pub fn resolve_policy(policy: &str, partition: Partition) -> Result<String, NotMigratable> {
    let valid_name =
        |n: &str| !n.is_empty() && n.len() <= 128 && n.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid_name(policy) {
        return Ok(policy_arn(partition, policy));
    }
    if let Some(rest) = policy.strip_prefix("arn:")
        && let Some((p, name)) = rest.split_once(":eks::aws:cluster-access-policy/")
        && Partition::parse(p).is_some()
        && valid_name(name)
    {
        return Ok(policy.to_string());
    }
    Err(NotMigratable::new(
        NotMigratableReason::InvalidPolicy,
        format!(
            "`{policy}` is not an access policy: write a short name such as AmazonEKSViewPolicy or arn:{partition}:eks::aws:cluster-access-policy/NAME"
        ),
    ))
}

/// eksctl's node patterns: Some(type) for a node or Fargate mapping, None for anything else.
fn detect_node_type(
    username: Option<&str>,
    groups: &[String],
) -> Result<Option<(AccessEntryType, Rule)>, NotMigratable> {
    use NotMigratableReason as R;
    let set: BTreeSet<&str> = groups.iter().map(String::as_str).collect();
    match username {
        Some(NODE_USERNAME) => {
            let extra: Vec<&str> = set
                .iter()
                .copied()
                .filter(|g| {
                    ![GROUP_BOOTSTRAPPERS, GROUP_NODES, GROUP_KUBE_PROXY_WINDOWS].contains(g)
                })
                .collect();
            if !extra.is_empty() {
                return Err(NotMigratable::new(
                    R::NodeRoleExtraGroups,
                    format!(
                        "a node role mapping with extra groups ({}): a node access entry (EC2_LINUX/EC2_WINDOWS) carries no groups. Drop them from spec.groups, or set spec.accessEntry (type: EC2_LINUX to accept losing them, or type: STANDARD with kubernetesGroups)",
                        extra.join(", ")
                    ),
                ));
            }
            let type_ = if set.contains(GROUP_KUBE_PROXY_WINDOWS) {
                AccessEntryType::Ec2Windows
            } else {
                AccessEntryType::Ec2Linux
            };
            Ok(Some((type_, Rule::Ec2Node)))
        }
        Some(SESSION_NODE_USERNAME) => {
            let extra: Vec<&str> = set
                .iter()
                .copied()
                .filter(|g| ![GROUP_BOOTSTRAPPERS, GROUP_NODES, GROUP_NODE_PROXIER].contains(g))
                .collect();
            if !extra.is_empty() {
                return Err(NotMigratable::new(
                    R::NodeRoleExtraGroups,
                    format!(
                        "a Fargate/hybrid node mapping with extra groups ({}): such access entries carry no groups. Drop them from spec.groups, or set spec.accessEntry.type explicitly",
                        extra.join(", ")
                    ),
                ));
            }
            if set.contains(GROUP_NODE_PROXIER) {
                Ok(Some((
                    AccessEntryType::FargateLinux,
                    Rule::FargatePodExecutionRole,
                )))
            } else {
                Err(NotMigratable::new(
                    R::AmbiguousNodeType,
                    "system:node:{{SessionName}} without system:node-proxier: a hybrid node role or a Fargate pod execution role? Set spec.accessEntry.type to HYBRID_LINUX or FARGATE_LINUX",
                ))
            }
        }
        _ => Ok(None),
    }
}

/// A username for a STANDARD entry: None lets EKS generate one.
fn translate_username(
    username: &str,
    arn: &IamArn,
    explicit: bool,
) -> Result<Option<String>, NotMigratable> {
    use NotMigratableReason as R;
    if username.is_empty() {
        return Ok(None);
    }
    let field = if explicit {
        "spec.accessEntry.username"
    } else {
        "username"
    };
    let fix = if explicit {
        "change spec.accessEntry.username"
    } else {
        "set spec.accessEntry.username to the name to use in EKS (\"\" lets EKS generate one; RoleBindings on the old name must follow)"
    };
    if let Some(prefix) = RESERVED_USERNAME_PREFIXES
        .iter()
        .find(|p| username.starts_with(*p))
    {
        return Err(NotMigratable::new(
            R::ReservedUsername,
            format!("{field} `{username}` starts with `{prefix}`, which EKS reserves: {fix}"),
        ));
    }
    let mut session_at = None;
    for use_ in template_variables(username) {
        match use_.variable {
            "AccountID" => {}
            "SessionName" | "SessionNameRaw" => {
                if arn.kind != PrincipalKind::Role {
                    return Err(NotMigratable::new(
                        R::SessionNameOnUser,
                        format!(
                            "{field} `{username}` uses {{{{{}}}}}, but an IAM user has no session: {fix}",
                            use_.variable
                        ),
                    ));
                }
                session_at.get_or_insert(use_.variable);
            }
            other => {
                let why = match other {
                    "AccessKeyID" => "EKS access entries do not substitute {{AccessKeyID}}".to_string(),
                    "EC2PrivateDNSName" => "only node entries (EC2_LINUX/EC2_WINDOWS) get {{EC2PrivateDNSName}}, and EKS sets their username itself".to_string(),
                    _ => format!("`{{{{{other}}}}}` is not a template variable"),
                };
                return Err(NotMigratable::new(
                    R::UnsupportedTemplate,
                    format!(
                        "{field} `{username}`: {why}; {fix} (use {{{{SessionName}}}} after a colon to tell sessions apart)"
                    ),
                ));
            }
        }
    }
    if let Some(variable) = session_at {
        // The first `{{SessionName` (or `{{SessionNameRaw`) needs a colon before it.
        let before = username
            .find("{{SessionName")
            .map_or(username, |i| &username[..i]);
        if !before.contains(':') {
            return Err(NotMigratable::new(
                R::SessionNameWithoutColon,
                format!(
                    "{field} `{username}`: EKS requires a colon before {{{{{variable}}}}} (e.g. `{}:{{{{{variable}}}}}`): {fix}",
                    before.trim_end_matches(['-', '.', '_', '@'])
                ),
            ));
        }
    }
    Ok(Some(username.replace("{{AccountID}}", &arn.account)))
}

/// A group: `{{AccountID}}` is replaced, other templates are refused.
fn translate_group(group: &str, arn: &IamArn, explicit: bool) -> Result<String, NotMigratable> {
    if let Some(use_) = template_variables(group).find(|u| u.variable != "AccountID") {
        let field = if explicit {
            "spec.accessEntry.kubernetesGroups"
        } else {
            "groups"
        };
        return Err(NotMigratable::new(
            NotMigratableReason::UnsupportedTemplate,
            format!(
                "{field} has `{group}`: EKS substitutes no {{{{{}}}}} in access-entry groups; set spec.accessEntry.kubernetesGroups to fixed group names",
                use_.variable
            ),
        ));
    }
    Ok(group.replace("{{AccountID}}", &arn.account))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awsauth::ArnMapping;

    const ACCT: &str = "111122223333";

    fn spec(arn: &str, username: &str, groups: &[&str]) -> IamIdentityMappingSpec {
        IamIdentityMappingSpec {
            arn: Some(arn.to_string()),
            username: Some(username.to_string()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    fn with(mut s: IamIdentityMappingSpec, ae: AccessEntrySpec) -> IamIdentityMappingSpec {
        s.access_entry = Some(ae);
        s
    }

    fn ok(s: &IamIdentityMappingSpec) -> DesiredEntry {
        translate_mapping(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn refused(s: &IamIdentityMappingSpec) -> NotMigratable {
        match translate_mapping(s) {
            Ok(e) => panic!("{s:?} should not migrate, got {e:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_permission_set_becomes_an_access_entry_of_its_role_with_the_path() {
        let mut s = spec("unused", "sso:{{SessionName}}", &["devs"]);
        s.arn = None;
        s.sso_permission_set = Some(crate::api::SsoPermissionSetRef {
            name: "Admin".into(),
        });
        let role = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef";
        let e = translate_resolved(&s, Some(role)).expect("migratable");
        assert_eq!(e.principal_arn, role);
        assert_eq!(e.kubernetes_groups, ["devs"]);
        let unresolved = translate_resolved(&s, None).unwrap_err();
        assert_eq!(
            unresolved.reason,
            NotMigratableReason::PermissionSetUnresolved
        );
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn admin() -> DesiredPolicy {
        DesiredPolicy {
            policy_arn: "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy".into(),
            scope: PolicyScope::Cluster,
        }
    }

    /// (username, groups) -> (type, username, groups, policies, rule).
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        AccessEntryType,
        Option<&'a str>,
        &'a [&'a str],
        Vec<DesiredPolicy>,
        Rule,
    );

    #[test]
    fn eksctl_rules_table() {
        let role = format!("arn:aws:iam::{ACCT}:role/team/dev/NodeRole");
        let cases: Vec<Case> = vec![
            (
                NODE_USERNAME,
                &[GROUP_BOOTSTRAPPERS, GROUP_NODES],
                AccessEntryType::Ec2Linux,
                None,
                &[],
                vec![],
                Rule::Ec2Node,
            ),
            (
                NODE_USERNAME,
                &[GROUP_NODES],
                AccessEntryType::Ec2Linux,
                None,
                &[],
                vec![],
                Rule::Ec2Node,
            ),
            (
                NODE_USERNAME,
                &[GROUP_BOOTSTRAPPERS, GROUP_NODES, GROUP_KUBE_PROXY_WINDOWS],
                AccessEntryType::Ec2Windows,
                None,
                &[],
                vec![],
                Rule::Ec2Node,
            ),
            (
                SESSION_NODE_USERNAME,
                &[GROUP_BOOTSTRAPPERS, GROUP_NODES, GROUP_NODE_PROXIER],
                AccessEntryType::FargateLinux,
                None,
                &[],
                vec![],
                Rule::FargatePodExecutionRole,
            ),
            (
                "admin:{{SessionName}}",
                &[GROUP_MASTERS],
                AccessEntryType::Standard,
                Some("admin:{{SessionName}}"),
                &[],
                vec![admin()],
                Rule::Standard,
            ),
            (
                "admin",
                &[GROUP_MASTERS, "ops", "devs", "ops"],
                AccessEntryType::Standard,
                Some("admin"),
                &["devs", "ops"],
                vec![admin()],
                Rule::Standard,
            ),
            (
                "dev:{{SessionName}}",
                &["devs"],
                AccessEntryType::Standard,
                Some("dev:{{SessionName}}"),
                &["devs"],
                vec![],
                Rule::Standard,
            ),
            (
                "dev:{{SessionNameRaw}}",
                &["devs"],
                AccessEntryType::Standard,
                Some("dev:{{SessionNameRaw}}"),
                &["devs"],
                vec![],
                Rule::Standard,
            ),
            (
                "acct-{{AccountID}}:{{SessionName}}",
                &["g-{{AccountID}}"],
                AccessEntryType::Standard,
                Some("acct-111122223333:{{SessionName}}"),
                &["g-111122223333"],
                vec![],
                Rule::Standard,
            ),
            (
                "",
                &["viewers"],
                AccessEntryType::Standard,
                None,
                &["viewers"],
                vec![],
                Rule::Standard,
            ),
        ];
        for (username, groups, type_, want_user, want_groups, want_policies, rule) in cases {
            let got = ok(&spec(&role, username, groups));
            assert_eq!(got.principal_arn, role, "path kept");
            assert_eq!(got.type_, type_, "{username} {groups:?}");
            assert_eq!(got.username.as_deref(), want_user, "{username}");
            assert_eq!(got.kubernetes_groups, strings(want_groups), "{username}");
            assert_eq!(got.policies, want_policies, "{username}");
            assert_eq!(got.rule, rule, "{username}");
        }
    }

    /// Every refusal, with the reason and a hint of what to write.
    #[test]
    fn refusals_table() {
        let role = format!("arn:aws:iam::{ACCT}:role/dev");
        let user = format!("arn:aws:iam::{ACCT}:user/ops/alice");
        let cases: Vec<(IamIdentityMappingSpec, NotMigratableReason, &str)> = vec![
            (
                IamIdentityMappingSpec {
                    account: Some(ACCT.into()),
                    ..Default::default()
                },
                NotMigratableReason::AccountMapping,
                "one IamIdentityMapping per role or user",
            ),
            (
                spec(
                    "arn:aws:iam::111122223333:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
                    "x",
                    &[],
                ),
                NotMigratableReason::ServiceLinkedRole,
                "stays in aws-auth",
            ),
            (
                spec(
                    "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef",
                    "sso:{{SessionName}}",
                    &[],
                ),
                NotMigratableReason::SsoRoleWithoutPath,
                "role/aws-reserved/sso.amazonaws.com/[REGION/]AWSReservedSSO_Admin_0123456789abcdef",
            ),
            (
                spec(
                    "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef",
                    "sso:{{SessionName}}",
                    &[],
                ),
                NotMigratableReason::SsoRoleWithoutPath,
                "spec.ssoPermissionSet: {name: Admin}",
            ),
            (
                spec("arn:aws:sts::111122223333:assumed-role/dev/s", "x", &[]),
                NotMigratableReason::InvalidArn,
                "map the role itself",
            ),
            (
                spec(&role, "dev", &["system:authenticated"]),
                NotMigratableReason::ReservedGroup,
                "spec.accessEntry.kubernetesGroups",
            ),
            (
                spec(&role, "dev", &[GROUP_BOOTSTRAPPERS]),
                NotMigratableReason::ReservedGroup,
                "spec.accessEntry.type",
            ),
            (
                spec(&role, "system:admin", &["devs"]),
                NotMigratableReason::ReservedUsername,
                "spec.accessEntry.username",
            ),
            (
                spec(&role, "eks:thing", &["devs"]),
                NotMigratableReason::ReservedUsername,
                "`eks:`",
            ),
            (
                spec(
                    &role,
                    "aws:{{AccountID}}:instance:{{SessionName}}",
                    &["devs"],
                ),
                NotMigratableReason::ReservedUsername,
                "`aws:`",
            ),
            (
                spec(&role, "amazon:x", &[]),
                NotMigratableReason::ReservedUsername,
                "`amazon:`",
            ),
            (
                spec(&role, "iam:x", &[]),
                NotMigratableReason::ReservedUsername,
                "`iam:`",
            ),
            (
                spec(&role, "key-{{AccessKeyID}}", &[]),
                NotMigratableReason::UnsupportedTemplate,
                "{{AccessKeyID}}",
            ),
            (
                spec(&role, "n:{{EC2PrivateDNSName}}", &[]),
                NotMigratableReason::UnsupportedTemplate,
                "node entries",
            ),
            (
                spec(&role, "x:{{Nope}}", &[]),
                NotMigratableReason::UnsupportedTemplate,
                "not a template variable",
            ),
            (
                spec(&role, "dev", &["team-{{SessionName}}"]),
                NotMigratableReason::UnsupportedTemplate,
                "fixed group names",
            ),
            (
                spec(&role, "dev-{{SessionName}}", &[]),
                NotMigratableReason::SessionNameWithoutColon,
                "`dev:{{SessionName}}`",
            ),
            (
                spec(&role, "{{SessionNameRaw}}", &[]),
                NotMigratableReason::SessionNameWithoutColon,
                "colon",
            ),
            (
                spec(&user, "alice:{{SessionName}}", &[]),
                NotMigratableReason::SessionNameOnUser,
                "no session",
            ),
            (
                spec(&role, NODE_USERNAME, &[GROUP_NODES, "extra"]),
                NotMigratableReason::NodeRoleExtraGroups,
                "extra",
            ),
            (
                spec(
                    &role,
                    SESSION_NODE_USERNAME,
                    &[GROUP_BOOTSTRAPPERS, GROUP_NODES],
                ),
                NotMigratableReason::AmbiguousNodeType,
                "HYBRID_LINUX or FARGATE_LINUX",
            ),
            (
                spec(&role, SESSION_NODE_USERNAME, &[GROUP_NODE_PROXIER, "x"]),
                NotMigratableReason::NodeRoleExtraGroups,
                "x",
            ),
            (
                spec(&user, NODE_USERNAME, &[GROUP_NODES]),
                NotMigratableReason::NodeTypeNeedsRole,
                "is a user",
            ),
            (
                with(
                    spec(&role, "x", &[]),
                    AccessEntrySpec {
                        type_: Some(AccessEntryType::HybridLinux),
                        username: Some("u".into()),
                        ..Default::default()
                    },
                ),
                NotMigratableReason::FieldsOnNodeType,
                "remove them",
            ),
            (
                with(
                    spec(&role, "x", &[]),
                    AccessEntrySpec {
                        kubernetes_groups: Some(strings(&["system:masters"])),
                        ..Default::default()
                    },
                ),
                NotMigratableReason::ReservedGroup,
                "AmazonEKSClusterAdminPolicy",
            ),
            (
                with(
                    spec(&role, "x", &[]),
                    AccessEntrySpec {
                        username: Some("system:x".into()),
                        ..Default::default()
                    },
                ),
                NotMigratableReason::ReservedUsername,
                "change spec.accessEntry.username",
            ),
            (
                with(
                    spec(&role, "x", &[]),
                    AccessEntrySpec {
                        policies: vec![AccessPolicySpec {
                            policy: "not a policy".into(),
                            namespaces: vec![],
                        }],
                        ..Default::default()
                    },
                ),
                NotMigratableReason::InvalidPolicy,
                "short name",
            ),
            (
                with(
                    spec(&role, "x", &[]),
                    AccessEntrySpec {
                        policies: vec![
                            AccessPolicySpec {
                                policy: "AmazonEKSViewPolicy".into(),
                                namespaces: vec![],
                            },
                            AccessPolicySpec {
                                policy:
                                    "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
                                        .into(),
                                namespaces: strings(&["a"]),
                            },
                        ],
                        ..Default::default()
                    },
                ),
                NotMigratableReason::DuplicatePolicy,
                "once",
            ),
        ];
        for (s, reason, hint) in cases {
            let e = refused(&s);
            assert_eq!(e.reason, reason, "{s:?}: {e}");
            assert!(
                e.message.contains(hint),
                "{s:?}: `{}` lacks `{hint}`",
                e.message
            );
        }
    }

    #[test]
    fn explicit_overrides() {
        let role = format!("arn:aws-cn:iam::{ACCT}:role/platform/admin");
        // Explicit groups replace spec.groups and the policies derived from them.
        let e = ok(&with(
            spec(&role, "admin", &[GROUP_MASTERS, "ops"]),
            AccessEntrySpec {
                kubernetes_groups: Some(strings(&["platform"])),
                username: Some("".into()),
                ..Default::default()
            },
        ));
        assert_eq!(e.kubernetes_groups, strings(&["platform"]));
        assert!(e.policies.is_empty());
        assert_eq!(e.username, None, "\"\" lets EKS choose");
        // Explicit policies are added to derived ones; an explicit scope for the same policy wins.
        let e = ok(&with(
            spec(&role, "admin:{{SessionName}}", &[GROUP_MASTERS, "ops"]),
            AccessEntrySpec {
                policies: vec![
                    AccessPolicySpec {
                        policy: "AmazonEKSViewPolicy".into(),
                        namespaces: strings(&["b", "a", "b"]),
                    },
                    AccessPolicySpec {
                        policy: CLUSTER_ADMIN_POLICY.into(),
                        namespaces: strings(&["kube-system"]),
                    },
                ],
                ..Default::default()
            },
        ));
        assert_eq!(e.kubernetes_groups, strings(&["ops"]));
        assert_eq!(
            e.policies,
            vec![
                DesiredPolicy {
                    policy_arn:
                        "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
                            .into(),
                    scope: PolicyScope::Namespace(strings(&["kube-system"])),
                },
                DesiredPolicy {
                    policy_arn: "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSViewPolicy"
                        .into(),
                    scope: PolicyScope::Namespace(strings(&["a", "b"])),
                },
            ]
        );
        // An explicit type makes any role a node entry, and a node mapping can be made STANDARD.
        let e = ok(&with(
            spec(
                &role,
                SESSION_NODE_USERNAME,
                &[GROUP_BOOTSTRAPPERS, GROUP_NODES],
            ),
            AccessEntrySpec {
                type_: Some(AccessEntryType::HybridLinux),
                ..Default::default()
            },
        ));
        assert_eq!(
            (e.type_, e.rule, e.username),
            (AccessEntryType::HybridLinux, Rule::Explicit, None)
        );
        let e = ok(&with(
            spec(&role, NODE_USERNAME, &[GROUP_NODES, "extra"]),
            AccessEntrySpec {
                type_: Some(AccessEntryType::Ec2Linux),
                ..Default::default()
            },
        ));
        assert_eq!(e.type_, AccessEntryType::Ec2Linux);
        // A reserved username can be replaced explicitly.
        let e = ok(&with(
            spec(&role, "system:admin", &["ops"]),
            AccessEntrySpec {
                username: Some("admin:{{SessionName}}".into()),
                ..Default::default()
            },
        ));
        assert_eq!(e.username.as_deref(), Some("admin:{{SessionName}}"));
        // Full policy ARNs are kept as given.
        let full = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy";
        assert_eq!(resolve_policy(full, Partition::Aws).unwrap(), full);
        assert!(resolve_policy("arn:aws:eks::aws:cluster-access-policy/", Partition::Aws).is_err());
        assert!(
            resolve_policy("arn:nope:eks::aws:cluster-access-policy/X", Partition::Aws).is_err()
        );
    }

    #[test]
    fn sso_role_with_its_path_migrates() {
        let arn = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Dev_0123456789abcdef";
        let e = ok(&spec(arn, "sso:{{SessionNameRaw}}", &["devs"]));
        assert_eq!(e.principal_arn, arn);
        assert_eq!(e.username.as_deref(), Some("sso:{{SessionNameRaw}}"));
    }

    #[test]
    fn no_groups_no_policies_is_noted() {
        let e = ok(&spec("arn:aws:iam::111122223333:user/bob", "bob", &[]));
        assert!(
            e.notes.iter().any(|n| n.contains("authorised for nothing")),
            "{e:?}"
        );
    }

    #[test]
    fn live_entries() {
        let node = Entry::Role(ArnMapping {
            arn: "arn:aws:iam::111122223333:role/eks-node".into(),
            username: NODE_USERNAME.into(),
            groups: strings(&[GROUP_BOOTSTRAPPERS, GROUP_NODES]),
            ..Default::default()
        });
        let e = translate_live_entry(&node).unwrap();
        assert_eq!(e.type_, AccessEntryType::Ec2Linux);
        assert!(
            e.notes.iter().any(|n| n.contains("without their IAM path")),
            "{e:?}"
        );
        let user = Entry::User(ArnMapping {
            arn: "arn:aws:iam::111122223333:user/ops/alice".into(),
            username: "alice".into(),
            groups: strings(&[GROUP_MASTERS]),
            ..Default::default()
        });
        let e = translate_live_entry(&user).unwrap();
        assert_eq!(e.principal_arn, "arn:aws:iam::111122223333:user/ops/alice");
        assert_eq!(e.policies, vec![admin()]);
        assert!(e.notes.is_empty());
        let sso = Entry::Role(ArnMapping {
            arn: "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef".into(),
            username: "a:{{SessionName}}".into(),
            ..Default::default()
        });
        let e = translate_live_entry(&sso).unwrap_err();
        assert_eq!(e.reason, NotMigratableReason::SsoRoleWithoutPath);
        assert!(e.message.contains("path-stripped"));
        let account = Entry::Account(ACCT.into());
        assert_eq!(
            translate_live_entry(&account).unwrap_err().reason,
            NotMigratableReason::AccountMapping
        );
    }
}
