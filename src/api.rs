//! The `IamIdentityMapping` custom resource: one per IAM principal (or AWS account).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::awsauth::{Entry, Section};

pub const GROUP: &str = "awsauth.dev";
pub const VERSION: &str = "v1alpha1";
pub const CRD_NAME: &str = "iamidentitymappings.awsauth.dev";

/// Maps one IAM role, IAM user or AWS account to a Kubernetes identity through the
/// kube-system/aws-auth ConfigMap.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "awsauth.dev",
    version = "v1alpha1",
    kind = "IamIdentityMapping",
    plural = "iamidentitymappings",
    shortname = "iim",
    category = "aws-auth",
    status = "IamIdentityMappingStatus",
    derive = "PartialEq",
    doc = "Maps one IAM role, IAM user or AWS account to a Kubernetes username and groups through kube-system/aws-auth.",
    printcolumn(
        name = "Principal",
        type_ = "string",
        json_path = ".spec['arn','account']",
        description = "IAM ARN or AWS account id"
    ),
    printcolumn(
        name = "PermissionSet",
        type_ = "string",
        json_path = ".spec.ssoPermissionSet.name",
        description = "IAM Identity Center permission set (spec.ssoPermissionSet)"
    ),
    printcolumn(name = "Username", type_ = "string", json_path = ".spec.username"),
    printcolumn(name = "Groups", type_ = "string", json_path = ".spec.groups"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    printcolumn(
        name = "AccessEntry",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"AccessEntrySynced\")].reason",
        description = "The AccessEntrySynced condition's reason (with --access-entries=mirror|only)",
        priority = "1"
    ),
    printcolumn(
        name = "Resolved",
        type_ = "string",
        json_path = ".status.resolvedArn",
        description = "The IAM role ARN spec.ssoPermissionSet resolved to",
        priority = "1"
    )
)]
#[x_kube(
    validation = Rule::new("(has(self.arn) ? 1 : 0) + (has(self.account) ? 1 : 0) + (has(self.ssoPermissionSet) ? 1 : 0) == 1").message("set exactly one of spec.arn (an IAM role or user), spec.account (a 12-digit account id) or spec.ssoPermissionSet (an IAM Identity Center permission set)"),
    validation = Rule::new("!has(self.arn) || has(self.username)").message("spec.username is required with spec.arn, e.g. `admin:{{SessionName}}`"),
    validation = Rule::new("!has(self.ssoPermissionSet) || has(self.username)").message("spec.username is required with spec.ssoPermissionSet, e.g. `sso:{{SessionName}}`"),
    validation = Rule::new("!has(self.account) || (!has(self.username) && (!has(self.groups) || size(self.groups) == 0))").message("an account mapping (mapAccounts) takes no username or groups: the authenticator uses the caller's ARN as username"),
    validation = Rule::new("!has(self.arn) || !self.arn.matches(':user/') || !has(self.username) || !self.username.matches('[{][{](SessionName|SessionNameRaw|EC2PrivateDNSName)[}][}]')").message("{{SessionName}}, {{SessionNameRaw}} and {{EC2PrivateDNSName}} exist only for role sessions, and spec.arn is an IAM user"),
    validation = Rule::new("!has(self.arn) || !self.arn.matches(':user/') || !has(self.groups) || self.groups.all(g, !g.matches('[{][{](SessionName|SessionNameRaw|EC2PrivateDNSName)[}][}]'))").message("{{SessionName}}, {{SessionNameRaw}} and {{EC2PrivateDNSName}} exist only for role sessions, and spec.arn is an IAM user")
)]
#[serde(rename_all = "camelCase")]
pub struct IamIdentityMappingSpec {
    /// IAM role or IAM user ARN, e.g. arn:aws:iam::111122223333:role/platform/admin. Give the
    /// role's real ARN, path included: the operator writes it path-stripped into aws-auth, as the
    /// authenticator requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(
        validation = Rule::new("!self.contains('*') && !self.contains('?')").message("spec.arn must name one IAM role or user: aws-auth has no wildcards. Create one mapping per principal, or map a whole account with spec.account"),
        validation = Rule::new("!self.matches('[{}<>]')").message("spec.arn still holds a placeholder ({...} or <...>): write the real ARN"),
        validation = Rule::new("!self.matches('^arn:[^:]*:sts:')").message("spec.arn is an STS (assumed-role session) ARN: give the role's IAM ARN instead, arn:PARTITION:iam::ACCOUNT:role/NAME; the authenticator maps every session of the role to it"),
        validation = Rule::new("!self.matches(':root$')").message("spec.arn is an account root ARN: to map every principal of an account, set spec.account to the 12-digit account id instead"),
        validation = Rule::new("!self.matches('^arn:[^:]*:iam::[^:]*:group/')").message("spec.arn is an IAM group ARN: aws-auth cannot map IAM groups. Map the role the group's members assume, or each user"),
        validation = Rule::new("!self.matches('^arn:[^:]*:iam::[^:]*:instance-profile/')").message("spec.arn is an instance profile ARN: give the ARN of the role in the instance profile"),
        validation = Rule::new(concat!(
            "self.matches('[*?{}<>]') || self.matches('^arn:[^:]*:sts:') || self.matches(':root$') ",
            "|| self.matches('^arn:[^:]*:iam::[^:]*:(group|instance-profile)/') ",
            "|| self.matches('^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::[0-9]{12}:(role|user)/([!-~]*/)?[A-Za-z0-9+=,.@_-]{1,64}$')"
        )).message("spec.arn must be an IAM role or user ARN: arn:PARTITION:iam::ACCOUNT:role/NAME or arn:PARTITION:iam::ACCOUNT:user/PATH/NAME, with a partition of aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, aws-iso-e, aws-iso-f or aws-eusc, a 12-digit account, no region, and a name of letters, digits and +=,.@_-")
    )]
    pub arn: Option<String>,

    /// 12-digit AWS account id whose every principal is mapped (mapAccounts): the username is the
    /// caller's ARN and there are no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{12}$')").message("spec.account must be a 12-digit AWS account id, e.g. \"111122223333\" (quoted in YAML)"))]
    pub account: Option<String>,

    /// An IAM Identity Center (SSO) permission set, mapped through the role IAM Identity Center
    /// provisions for it in the cluster's account (`AWSReservedSSO_<name>_<suffix>`). The
    /// operator finds that role through IAM on every resync, so a re-provisioned permission set
    /// (a new suffix) is followed by itself; `status.resolvedArn` shows the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_permission_set: Option<SsoPermissionSetRef>,

    /// Kubernetes username. May use {{AccountID}}, {{SessionName}}, {{SessionNameRaw}},
    /// {{AccessKeyID}} and, for node roles, {{EC2PrivateDNSName}}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(
        validation = Rule::new("!self.matches('^\\\\s|\\\\s$')").message("spec.username must not be blank or start or end with whitespace"),
        validation = Rule::new(TEMPLATES_ONLY_KNOWN).message("spec.username may use only the template variables {{AccountID}}, {{SessionName}}, {{SessionNameRaw}}, {{AccessKeyID}} and {{EC2PrivateDNSName}}, spelled exactly so with no spaces inside the braces; the authenticator leaves anything else verbatim in the username")
    )]
    pub username: Option<String>,

    /// Kubernetes groups (each listed once, non-empty, no whitespace; may use the same template
    /// variables).
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    #[x_kube(
        validation = Rule::new("self.all(g, g != '')").message("spec.groups must not hold an empty group name"),
        validation = Rule::new("self.all(g, !g.matches('\\\\s'))").message("a group in spec.groups contains whitespace: Kubernetes group names have none"),
        validation = Rule::new(TEMPLATES_ONLY_KNOWN_IN_GROUPS).message("spec.groups may use only the template variables {{AccountID}}, {{SessionName}}, {{SessionNameRaw}}, {{AccessKeyID}} and {{EC2PrivateDNSName}}, spelled exactly so; the authenticator leaves anything else verbatim")
    )]
    pub groups: Vec<String>,

    /// When aws-auth already holds an entry for this principal that the operator does not
    /// manage, the mapping takes it over. By default the operator keeps the entry it replaced and
    /// puts it back when this mapping is deleted; with true, the mapping adopts the entry for good
    /// and deleting the mapping removes it (what `aws-auth-operator import` writes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing_entry: bool,

    /// How this mapping is mirrored into an EKS access entry (--access-entries=mirror|only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_entry: Option<crate::accessentries::AccessEntrySpec>,
}

/// Every `{{` in the string starts one of the authenticator's template variables (a full match
/// of text made of: any character but `{`, a `{` not followed by `{`, or a known variable).
const TEMPLATES_ONLY_KNOWN: &str = "self.matches('^([^{]|[{][^{]|[{]$|[{][{](AccountID|SessionName|SessionNameRaw|AccessKeyID|EC2PrivateDNSName)[}][}])*$')";
const TEMPLATES_ONLY_KNOWN_IN_GROUPS: &str = "self.all(g, g.matches('^([^{]|[{][^{]|[{]$|[{][{](AccountID|SessionName|SessionNameRaw|AccessKeyID|EC2PrivateDNSName)[}][}])*$'))";

/// `spec.ssoPermissionSet`: a permission set of the cluster's account's IAM Identity Center.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SsoPermissionSetRef {
    /// The permission set's name, e.g. AdministratorAccess (as IAM Identity Center shows it,
    /// without the AWSReservedSSO_ prefix or the suffix).
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_+=,.@-]{1,32}$')").message("spec.ssoPermissionSet.name must be a permission set name: 1 to 32 letters, digits and _+=,.@- (e.g. AdministratorAccess, without AWSReservedSSO_ or the role's suffix)"))]
    pub name: String,
}

impl IamIdentityMappingSpec {
    /// What the PRINCIPAL column shows: the ARN, the account id or the permission set.
    pub fn principal(&self) -> &str {
        self.arn
            .as_deref()
            .or(self.account.as_deref())
            .or(self.sso_permission_set.as_ref().map(|p| p.name.as_str()))
            .unwrap_or_default()
    }
}

/// Observed state, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IamIdentityMappingStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready and, while true, Stalled (kstatus), and domain conditions: Valid, Conflict, Drifted.
    /// The status is written once the outcome is known, so there is no Reconciling condition:
    /// an observedGeneration below metadata.generation means the operator has not caught up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The aws-auth entry this mapping is rendered to, exactly as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendered: Option<RenderedEntry>,
    /// When the controller last rewrote a hand-edited (drifted) entry of this mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drift_repair: Option<Time>,
    /// The EKS access entry of this mapping, as last read back (--access-entries=mirror|only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_entry: Option<crate::accessentries::AccessEntryStatus>,
    /// The IAM role spec.ssoPermissionSet resolved to, with its path (access entries use it as
    /// it is, aws-auth path-stripped). Kept while IAM cannot be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_arn: Option<String>,
}

/// An aws-auth entry as written: its section, principal, username and groups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderedEntry {
    /// mapRoles, mapUsers or mapAccounts.
    pub section: String,
    /// The ARN as written into aws-auth (roles path-stripped) or the account id.
    pub principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Always present, `[]` included: status says exactly what was written.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl From<&Entry> for RenderedEntry {
    fn from(entry: &Entry) -> Self {
        RenderedEntry {
            section: entry.section().key().to_string(),
            principal: entry.principal().to_string(),
            username: entry.username().map(str::to_string),
            groups: entry.groups().to_vec(),
        }
    }
}

impl RenderedEntry {
    pub fn section(&self) -> Option<Section> {
        Section::from_key(&self.section)
    }
}
