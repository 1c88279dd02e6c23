//! `spec.accessEntry` and `status.accessEntry` of an IamIdentityMapping: how the mapping is
//! mirrored into an EKS access entry, and what EKS holds for it.
//!
//! The CEL rules reject at admission what the EKS API would reject anyway (reserved usernames
//! and groups, fields a node entry cannot carry), so a bad edit fails at `kubectl apply` instead
//! of in the status minutes later.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The type of an access entry. Only STANDARD entries carry a username, groups and policies;
/// the node types get them from EKS.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessEntryType {
    /// A person or a workload: username, kubernetesGroups and access policies as given.
    #[default]
    Standard,
    /// Self-managed Linux (or Bottlerocket) EC2 nodes.
    #[serde(rename = "EC2_LINUX")]
    Ec2Linux,
    /// Self-managed Windows EC2 nodes.
    #[serde(rename = "EC2_WINDOWS")]
    Ec2Windows,
    /// The pod execution role of a Fargate profile.
    FargateLinux,
    /// EKS Hybrid Nodes.
    HybridLinux,
    /// Nodes of EKS Auto Mode (custom node classes).
    #[serde(rename = "EC2")]
    Ec2,
}

impl AccessEntryType {
    pub const ALL: [AccessEntryType; 6] = [
        AccessEntryType::Standard,
        AccessEntryType::Ec2Linux,
        AccessEntryType::Ec2Windows,
        AccessEntryType::FargateLinux,
        AccessEntryType::HybridLinux,
        AccessEntryType::Ec2,
    ];

    /// The value of the EKS API's `type` field.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessEntryType::Standard => "STANDARD",
            AccessEntryType::Ec2Linux => "EC2_LINUX",
            AccessEntryType::Ec2Windows => "EC2_WINDOWS",
            AccessEntryType::FargateLinux => "FARGATE_LINUX",
            AccessEntryType::HybridLinux => "HYBRID_LINUX",
            AccessEntryType::Ec2 => "EC2",
        }
    }

    pub fn parse(s: &str) -> Option<AccessEntryType> {
        AccessEntryType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    pub fn is_standard(self) -> bool {
        self == AccessEntryType::Standard
    }
}

impl fmt::Display for AccessEntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How this mapping is mirrored into an EKS access entry (used when the operator runs with
/// --access-entries=mirror or only). Without it, the entry is derived from arn, username and
/// groups with eksctl's rules: node roles become EC2_LINUX/EC2_WINDOWS, Fargate pod execution
/// roles FARGATE_LINUX, system:masters becomes AmazonEKSClusterAdminPolicy at cluster scope,
/// other groups are carried over.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[x_kube(
    validation = Rule::new("!has(self.kubernetesGroups) || self.kubernetesGroups.all(g, !g.startsWith('system:'))").message("spec.accessEntry.kubernetesGroups: EKS rejects groups starting with system:; for cluster-admin rights use policies: [{policy: AmazonEKSClusterAdminPolicy}]"),
    validation = Rule::new("!has(self.username) || !(self.username.startsWith('system:') || self.username.startsWith('eks:') || self.username.startsWith('aws:') || self.username.startsWith('amazon:') || self.username.startsWith('iam:'))").message("spec.accessEntry.username: EKS rejects usernames starting with system:, eks:, aws:, amazon: or iam:; choose another name, or \"\" to let EKS generate one"),
    validation = Rule::new("!has(self.username) || self.username.indexOf('{{SessionName') < 0 || self.username.substring(0, self.username.indexOf('{{SessionName')).contains(':')").message("spec.accessEntry.username: EKS requires a colon somewhere before {{SessionName}}, e.g. dev:{{SessionName}}"),
    validation = Rule::new("!has(self.type) || self.type == 'STANDARD' || (!has(self.username) && (!has(self.kubernetesGroups) || size(self.kubernetesGroups) == 0) && (!has(self.policies) || size(self.policies) == 0))").message("spec.accessEntry: a node or Fargate access entry (type other than STANDARD) takes no username, kubernetesGroups or policies; EKS sets them"),
    validation = Rule::new("!has(self.policies) || self.policies.all(p, self.policies.exists_one(q, q.policy == p.policy))").message("spec.accessEntry.policies: each access policy may be listed once; put all its namespaces in one item")
)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntrySpec {
    /// STANDARD (default) for people and workloads; EC2_LINUX, EC2_WINDOWS, FARGATE_LINUX,
    /// HYBRID_LINUX or EC2 (Auto Mode) for node roles. Cannot be changed in place: a change makes
    /// the operator delete and re-create the access entry.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<AccessEntryType>,

    /// Kubernetes username of the access entry, replacing spec.username. "" lets EKS generate
    /// one. May use {{SessionName}} or {{SessionNameRaw}} (roles only, after a colon) and
    /// {{AccountID}}; may not start with system:, eks:, aws:, amazon: or iam:.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub username: Option<String>,

    /// Kubernetes groups of the access entry, replacing spec.groups (and the policies derived
    /// from system:masters). May not start with system:.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^\S+$"), length(min = 1, max = 256))
    )]
    pub kubernetes_groups: Option<Vec<String>>,

    /// EKS access policies to associate, added to those derived from spec.groups
    /// (system:masters gives AmazonEKSClusterAdminPolicy at cluster scope).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub policies: Vec<AccessPolicySpec>,

    /// Take over an access entry for this principal that the operator did not create (it has
    /// no awsauth.dev/managed-by tag). Without it such an entry is reported (ForeignEntry) and
    /// never changed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
}

/// One EKS access policy and where it applies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicySpec {
    /// Short name such as AmazonEKSViewPolicy, or the full ARN
    /// arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy.
    #[schemars(regex(
        pattern = r"^([A-Za-z0-9]{1,128}|arn:aws(-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?:eks::aws:cluster-access-policy/[A-Za-z0-9]{1,128})$"
    ))]
    #[schemars(length(max = 200))]
    pub policy: String,

    /// Namespaces the policy is limited to; none means the whole cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^\S+$"), length(min = 1, max = 63))
    )]
    pub namespaces: Vec<String>,
}

/// What EKS holds for this mapping's access entry, as last read back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntryStatus {
    /// The principal ARN of the access entry (the real IAM ARN, path included).
    pub principal_arn: String,
    /// STANDARD, EC2_LINUX, ...
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_groups: Vec<String>,
    /// Associated access policies and their scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AssociatedPolicyStatus>,
    /// When the operator last changed the entry, or first saw it as it is now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}

/// An access policy associated with the entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssociatedPolicyStatus {
    pub policy_arn: String,
    /// Namespaces it is limited to; empty means cluster scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_match_the_eks_api() {
        for t in AccessEntryType::ALL {
            let json = serde_json::to_value(t).unwrap();
            assert_eq!(json, serde_json::Value::String(t.as_str().to_string()));
            assert_eq!(AccessEntryType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            AccessEntryType::parse("ec2_linux"),
            Some(AccessEntryType::Ec2Linux)
        );
        assert_eq!(AccessEntryType::parse("HYPERPOD_LINUX"), None);
    }

    #[test]
    fn spec_round_trips_camel_case() {
        let yaml = "type: EC2_LINUX\nadopt: true\n";
        let spec: AccessEntrySpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.type_, Some(AccessEntryType::Ec2Linux));
        assert!(spec.adopt);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "EC2_LINUX", "adopt": true})
        );
        let standard: AccessEntrySpec = serde_json::from_value(serde_json::json!({
            "username": "dev:{{SessionName}}",
            "kubernetesGroups": ["devs"],
            "policies": [{"policy": "AmazonEKSViewPolicy", "namespaces": ["a"]}]
        }))
        .unwrap();
        assert_eq!(standard.kubernetes_groups, Some(vec!["devs".to_string()]));
        assert_eq!(standard.policies[0].namespaces, vec!["a"]);
        assert!(!standard.adopt);
    }
}
