//! Shared helpers for the controller tests: the fake API server, mapping builders, readers.

// Each test binary uses its own subset of the helpers.
#![allow(dead_code)]

pub mod fake_api;
pub mod ministack;

use std::sync::Arc;

use aws_auth_operator::api::{
    IamIdentityMapping, IamIdentityMappingSpec, IamIdentityMappingStatus,
};
use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::awsauth::{ArnMapping, AwsAuthEntries, ConfigMapData, parse_data};
use aws_auth_operator::controller::events::EventPublisher;
use aws_auth_operator::controller::reconcile::Context;
use aws_auth_operator::plan::{ManagedSet, Settings};
use aws_auth_operator::status::condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub use fake_api::FakeApi;

pub const ACCOUNT: &str = "111122223333";
/// A managed node group role, as EKS writes it into aws-auth.
pub const NODE_ROLE_ARN: &str =
    "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC";
pub const NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";
/// A second node group role, for EKS adding one while the operator works.
pub const NEW_NODE_ROLE_ARN: &str =
    "arn:aws:iam::111122223333:role/eks-nodegroup-2-NodeInstanceRole-9XYZ";
pub const NEW_NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-2-NodeInstanceRole-9XYZ\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";
/// An IAM user somebody added with kubectl.
pub const HAND_USER_ARN: &str = "arn:aws:iam::111122223333:user/ops/alice";
pub const HAND_USER: &str =
    "- userarn: arn:aws:iam::111122223333:user/ops/alice\n  username: alice\n  groups:\n  - ops\n";

pub const ADMIN_ARN: &str = "arn:aws:iam::111122223333:role/admin";
pub const DEV_ARN: &str = "arn:aws:iam::111122223333:role/developer";

/// A Kubernetes time, whole seconds (as the API server stores them).
pub fn time(second: i64) -> Time {
    Time(Timestamp::from_second(1_790_000_000 + second).expect("valid time"))
}

/// The `now` every reconcile in these tests uses unless it says otherwise.
pub fn now() -> Time {
    time(1_000)
}

/// A role mapping created at `time(created)`, generation 1, without status.
pub fn role_mapping(
    name: &str,
    arn: &str,
    username: &str,
    groups: &[&str],
    created: i64,
) -> IamIdentityMapping {
    let mut mapping = IamIdentityMapping::new(
        name,
        IamIdentityMappingSpec {
            access_entry: None,
            arn: Some(arn.to_string()),
            account: None,
            username: Some(username.to_string()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            adopt_existing_entry: false,
            sso_permission_set: None,
        },
    );
    mapping.metadata.creation_timestamp = Some(time(created));
    mapping.metadata.generation = Some(1);
    mapping.metadata.uid = Some(format!("uid-{name}"));
    mapping
}

/// An account mapping (mapAccounts) created at `time(created)`, generation 1.
pub fn account_mapping(name: &str, account: &str, created: i64) -> IamIdentityMapping {
    let mut mapping = role_mapping(name, "", "", &[], created);
    mapping.spec = IamIdentityMappingSpec {
        account: Some(account.to_string()),
        ..Default::default()
    };
    mapping
}

pub fn admin_mapping() -> IamIdentityMapping {
    role_mapping(
        "admin",
        ADMIN_ARN,
        "admin:{{SessionName}}",
        &["system:masters"],
        0,
    )
}

pub fn dev_mapping() -> IamIdentityMapping {
    role_mapping(
        "developer",
        DEV_ARN,
        "dev:{{SessionName}}",
        &["developers"],
        10,
    )
}

pub fn context(fake: &FakeApi, settings: Settings) -> Context {
    Context::new(fake.client.clone(), settings, 10)
}

pub fn context_with_events(fake: &FakeApi, settings: Settings) -> Context {
    Context {
        events: Some(EventPublisher::new(
            fake.client.clone(),
            "aws-auth-operator",
            "test-instance",
        )),
        ..context(fake, settings)
    }
}

/// Adds every mapping to the fake and returns them as the reflector store would.
pub fn store(fake: &FakeApi, mappings: Vec<IamIdentityMapping>) -> Vec<Arc<IamIdentityMapping>> {
    for mapping in mappings {
        fake.add_mapping(mapping);
    }
    fake.mappings()
}

/// The managed-principals annotation for these role ARNs.
pub fn managed_roles(arns: &[&str]) -> String {
    ManagedSet::new(arns.iter().map(|a| PrincipalKey::role(a))).encode()
}

/// The parsed entries of aws-auth data; fails the test on any malformed section.
pub fn entries(data: &ConfigMapData) -> AwsAuthEntries {
    let parsed = parse_data(data);
    assert!(
        parsed.malformed.is_empty(),
        "aws-auth has malformed sections {:?}: {:?}",
        parsed.malformed,
        parsed.diagnostics
    );
    parsed.entries
}

pub fn role<'a>(entries: &'a AwsAuthEntries, arn: &str) -> Option<&'a ArnMapping> {
    entries.roles.iter().find(|m| m.arn == arn)
}

pub fn role_arns(entries: &AwsAuthEntries) -> Vec<&str> {
    entries.roles.iter().map(|m| m.arn.as_str()).collect()
}

pub fn user_arns(entries: &AwsAuthEntries) -> Vec<&str> {
    entries.users.iter().map(|m| m.arn.as_str()).collect()
}

/// The principals of the `awsauth.dev/managed` annotation of aws-auth.
pub fn managed_set(fake: &FakeApi) -> ManagedSet {
    let text = fake
        .managed_annotation()
        .expect("aws-auth has the managed annotation");
    ManagedSet::decode(&text).expect("readable managed annotation")
}

pub fn status(fake: &FakeApi, name: &str) -> IamIdentityMappingStatus {
    fake.mapping(name)
        .status
        .unwrap_or_else(|| panic!("mapping {name} has no status"))
}

/// (status, reason, message) of a condition of a stored mapping.
pub fn cond(fake: &FakeApi, name: &str, type_: &str) -> (String, String, String) {
    let status = status(fake, name);
    let c = condition(&status, type_)
        .unwrap_or_else(|| panic!("mapping {name} has no {type_} condition: {status:?}"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

/// (status, reason) of a condition of a stored mapping.
pub fn cond2(fake: &FakeApi, name: &str, type_: &str) -> (String, String) {
    let (status, reason, _) = cond(fake, name, type_);
    (status, reason)
}

/// Shorthand for expected `(status, reason)` pairs.
pub fn is(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}
