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
    )
)]
#[x_kube(
    validation = Rule::new("has(self.arn) != has(self.account)").message("set exactly one of spec.arn or spec.account"),
    validation = Rule::new("!has(self.arn) || has(self.username)").message("spec.username is required with spec.arn"),
    validation = Rule::new("!has(self.account) || (!has(self.username) && (!has(self.groups) || size(self.groups) == 0))").message("an account mapping (mapAccounts) takes no username or groups: the authenticator uses the caller's ARN as username")
)]
#[serde(rename_all = "camelCase")]
pub struct IamIdentityMappingSpec {
    /// IAM role or IAM user ARN, e.g. arn:aws:iam::111122223333:role/platform/admin. Give the
    /// role's real ARN, path included: the operator writes it path-stripped into aws-auth, as the
    /// authenticator requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^arn:aws(-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?:iam::[0-9]{12}:(role|user)/([\x21-\x7E]+/)?[A-Za-z0-9+=,.@_-]{1,64}$"
    ))]
    #[schemars(length(max = 2048))]
    pub arn: Option<String>,

    /// 12-digit AWS account id whose every principal is mapped (mapAccounts): the username is the
    /// caller's ARN and there are no groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{12}$"))]
    pub account: Option<String>,

    /// Kubernetes username. May use {{AccountID}}, {{SessionName}}, {{SessionNameRaw}},
    /// {{AccessKeyID}} and, for node roles, {{EC2PrivateDNSName}}.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub username: Option<String>,

    /// Kubernetes groups (non-empty, no whitespace; may use the same template variables).
    #[serde(default)]
    #[schemars(length(max = 64), inner(regex(pattern = r"^\S+$"), length(max = 256)))]
    pub groups: Vec<String>,

    /// How this mapping is mirrored into an EKS access entry (--access-entries=mirror|only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_entry: Option<crate::accessentries::AccessEntrySpec>,
}

impl IamIdentityMappingSpec {
    /// What the PRINCIPAL column shows: the ARN or the account id.
    pub fn principal(&self) -> &str {
        self.arn
            .as_deref()
            .or(self.account.as_deref())
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
    /// Ready, Reconciling, Stalled (kstatus) and domain conditions: Valid, Conflict, Drifted.
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
