//! The access-entry loop against a local EKS API (ministack): create, update, policy change,
//! type change, mapping deleted, foreign entry left alone, adopt, CONFIG_MAP cluster, EKS down,
//! the cluster creator's entry never touched, and the cost of an idle resync.
//!
//! Skipped (visibly) without ministack; `.ci/run` installs it and runs them under CI=true.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_auth_operator::accessentries::client::{CreateEntry, EksApi, EksClient};
use aws_auth_operator::accessentries::report::{ReportBoard, SyncReason};
use aws_auth_operator::accessentries::runner::{Runner, run_loop};
use aws_auth_operator::accessentries::spec::{AccessEntrySpec, AccessEntryType, AccessPolicySpec};
use aws_auth_operator::accessentries::sync::{MANAGED_BY_TAG, MANAGED_BY_VALUE, MAPPING_TAG};
use aws_auth_operator::accessentries::translate::PolicyScope;
use aws_auth_operator::accessentries::{AccessEntriesConfig, AccessEntriesMode};
use aws_auth_operator::api::IamIdentityMapping;
use aws_auth_operator::plan::Settings;
use kube::runtime::watcher;
use support::ministack::{CREATOR_ARN, Ministack};
use support::role_mapping;

const CLUSTER: &str = "prod";
const DEV: &str = "arn:aws:iam::000000000000:role/team/dev";
const NODE: &str = "arn:aws:iam::000000000000:role/nodes/eks-node";
const VIEW: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy";
const ADMIN: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

fn m(mapping: IamIdentityMapping) -> Arc<IamIdentityMapping> {
    Arc::new(mapping)
}

fn with_access_entry(mut mapping: IamIdentityMapping, ae: AccessEntrySpec) -> IamIdentityMapping {
    mapping.spec.access_entry = Some(ae);
    mapping.metadata.generation = Some(mapping.metadata.generation.unwrap_or(1) + 1);
    mapping
}

async fn started(test: &str, mode: &str) -> Option<(Ministack, Runner<EksClient>, EksClient)> {
    let stack = Ministack::start(test)?;
    stack.create_cluster(CLUSTER, mode).await;
    let client = stack.client();
    let runner = Runner::new(
        Arc::new(client.clone()),
        CLUSTER,
        4,
        ReportBoard::new(),
        Settings::default(),
    );
    Some((stack, runner, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_create_update_policies_type_change_and_delete() {
    let Some((_stack, mut runner, eks)) = started("lifecycle", "API_AND_CONFIG_MAP").await else {
        return;
    };
    let board = runner.board().clone();
    let creator_before = eks
        .describe_access_entry(CLUSTER, CREATOR_ARN)
        .await
        .unwrap()
        .expect("creator entry");

    // Create: the path stays in the principal ARN, system:masters becomes the admin policy.
    let dev = role_mapping(
        "dev",
        DEV,
        "dev:{{SessionName}}",
        &["system:masters", "devs"],
        0,
    );
    let node = role_mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &["system:bootstrappers", "system:nodes"],
        1,
    );
    let summary = runner.pass(&[m(dev.clone()), m(node.clone())], true).await;
    assert_eq!(summary.failed, 0, "{summary:?}");
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.synced, report.confirmed_in_place),
        (SyncReason::Created, true, true),
        "{report:?}"
    );
    let status = report.status.clone().unwrap();
    assert_eq!(status.principal_arn, DEV);
    assert_eq!(status.kubernetes_groups, vec!["devs"]);
    assert_eq!(status.username.as_deref(), Some("dev:{{SessionName}}"));
    assert_eq!(status.policies.len(), 1);
    assert_eq!(status.policies[0].policy_arn, ADMIN);
    assert!(status.last_sync_time.is_some());
    let entry = eks
        .describe_access_entry(CLUSTER, DEV)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        entry.tags.get(MANAGED_BY_TAG).map(String::as_str),
        Some(MANAGED_BY_VALUE)
    );
    assert_eq!(entry.tags.get(MAPPING_TAG).map(String::as_str), Some("dev"));
    let node_entry = eks
        .describe_access_entry(CLUSTER, NODE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node_entry.type_, "EC2_LINUX");
    assert_eq!(board.get("node").unwrap().reason, SyncReason::Created);

    // Idle: nothing changes, no report changes, and the pass is cheap.
    let version = board.version();
    let idle = runner.pass(&[m(dev.clone()), m(node.clone())], true).await;
    assert_eq!(idle.work, 0);
    assert_eq!(board.get("dev").unwrap().reason, SyncReason::InSync);
    let idle2 = runner.pass(&[m(dev.clone()), m(node.clone())], true).await;
    assert_eq!(
        board.version(),
        version + 1,
        "Created -> InSync once, then nothing"
    );
    assert!(
        idle2.calls.total() <= 4,
        "idle resync calls: {:?}",
        idle2.calls
    );
    let wake = runner.pass(&[m(dev.clone()), m(node.clone())], false).await;
    assert_eq!(
        wake.calls.total(),
        1,
        "a wake with nothing new lists once: {:?}",
        wake.calls
    );

    // Update groups and username, and change policies (admin -> view in two namespaces).
    let dev2 = with_access_entry(
        role_mapping("dev", DEV, "dev2:{{SessionName}}", &["devs", "qa"], 0),
        AccessEntrySpec {
            policies: vec![AccessPolicySpec {
                policy: "AmazonEKSViewPolicy".into(),
                namespaces: vec!["b".into(), "a".into()],
            }],
            ..Default::default()
        },
    );
    runner
        .pass(&[m(dev2.clone()), m(node.clone())], false)
        .await;
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.confirmed_in_place),
        (SyncReason::Updated, true),
        "{report:?}"
    );
    assert_eq!(report.generation, Some(2));
    let policies = eks
        .list_associated_policies(CLUSTER, DEV)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].policy_arn, VIEW);
    assert_eq!(
        policies[0].scope,
        PolicyScope::Namespace(vec!["a".into(), "b".into()])
    );
    let entry = eks
        .describe_access_entry(CLUSTER, DEV)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.username.as_deref(), Some("dev2:{{SessionName}}"));
    let mut groups = entry.kubernetes_groups.clone();
    groups.sort();
    assert_eq!(groups, vec!["devs", "qa"]);

    // Type change: delete + create.
    let windows = role_mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &[
            "system:bootstrappers",
            "system:nodes",
            "eks:kube-proxy-windows",
        ],
        1,
    );
    runner
        .pass(&[m(dev2.clone()), m(windows.clone())], false)
        .await;
    let report = board.get("node").unwrap();
    assert_eq!(
        (report.reason, report.confirmed_in_place),
        (SyncReason::Updated, true),
        "{report:?}"
    );
    assert!(report.message.contains("re-created"), "{}", report.message);
    assert_eq!(
        eks.describe_access_entry(CLUSTER, NODE)
            .await
            .unwrap()
            .unwrap()
            .type_,
        "EC2_WINDOWS"
    );

    // Mapping deleted: its entry goes; the creator's entry is untouched throughout.
    runner.pass(&[m(dev2.clone())], false).await;
    assert!(
        eks.describe_access_entry(CLUSTER, NODE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(board.get("node").is_none());
    assert!(
        eks.describe_access_entry(CLUSTER, DEV)
            .await
            .unwrap()
            .is_some()
    );
    runner.pass(&[], false).await;
    assert!(
        eks.describe_access_entry(CLUSTER, DEV)
            .await
            .unwrap()
            .is_none()
    );
    let creator_after = eks
        .describe_access_entry(CLUSTER, CREATOR_ARN)
        .await
        .unwrap()
        .expect("creator entry kept");
    assert_eq!(creator_before, creator_after);
    let listed = eks.list_access_entries(CLUSTER).await.unwrap();
    assert_eq!(listed, vec![CREATOR_ARN.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_entry_left_alone_until_adopted() {
    let Some((_stack, mut runner, eks)) = started("foreign", "API_AND_CONFIG_MAP").await else {
        return;
    };
    let board = runner.board().clone();
    eks.create_access_entry(
        CLUSTER,
        &CreateEntry {
            principal_arn: DEV.into(),
            type_: AccessEntryType::Standard,
            username: Some("someone".into()),
            kubernetes_groups: vec!["theirs".into()],
            tags: BTreeMap::from([("owner".to_string(), "terraform".to_string())]),
        },
    )
    .await
    .unwrap();
    let foreign_before = eks.describe_access_entry(CLUSTER, DEV).await.unwrap();
    let dev = role_mapping("dev", DEV, "dev:{{SessionName}}", &["devs"], 0);
    for _ in 0..2 {
        let summary = runner.pass(&[m(dev.clone())], true).await;
        assert_eq!(summary.work, 0);
    }
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.synced, report.confirmed_in_place),
        (SyncReason::ForeignEntry, false, false)
    );
    assert!(
        report
            .message
            .contains("username someone (wants dev:{{SessionName}})"),
        "{}",
        report.message
    );
    assert_eq!(
        eks.describe_access_entry(CLUSTER, DEV).await.unwrap(),
        foreign_before,
        "never changed"
    );
    // Deleting the mapping does not delete an entry the operator did not create.
    runner.pass(&[], true).await;
    assert_eq!(
        eks.describe_access_entry(CLUSTER, DEV).await.unwrap(),
        foreign_before
    );

    // adopt: true takes it over: tagged and updated.
    let adopting = with_access_entry(
        dev,
        AccessEntrySpec {
            adopt: true,
            ..Default::default()
        },
    );
    runner.pass(&[m(adopting.clone())], false).await;
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.confirmed_in_place),
        (SyncReason::Updated, true),
        "{report:?}"
    );
    assert!(report.message.contains("adopted"), "{}", report.message);
    let entry = eks
        .describe_access_entry(CLUSTER, DEV)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.username.as_deref(), Some("dev:{{SessionName}}"));
    assert_eq!(entry.kubernetes_groups, vec!["devs"]);
    // ministack keeps TagResource tags apart from DescribeAccessEntry's, so check them there.
    let tags = eks
        .sdk()
        .list_tags_for_resource()
        .resource_arn(entry.access_entry_arn.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        tags.tags()
            .and_then(|t| t.get(MANAGED_BY_TAG))
            .map(String::as_str),
        Some(MANAGED_BY_VALUE)
    );
    // Adopted and matching: in sync on the next pass.
    runner.pass(&[m(adopting)], true).await;
    assert_eq!(board.get("dev").unwrap().reason, SyncReason::InSync);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_cluster_is_reported_and_left_alone() {
    let Some((_stack, mut runner, eks)) = started("config_map", "CONFIG_MAP").await else {
        return;
    };
    let board = runner.board().clone();
    let before = eks.list_access_entries(CLUSTER).await.unwrap();
    let dev = role_mapping("dev", DEV, "dev:{{SessionName}}", &["devs"], 0);
    let summary = runner.pass(&[m(dev)], true).await;
    assert_eq!(summary.work, 0);
    assert_eq!(
        summary.calls.total(),
        1,
        "DescribeCluster only: {:?}",
        summary.calls
    );
    let report = board.get("dev").unwrap();
    assert_eq!(report.reason, SyncReason::ClusterInConfigMapMode);
    assert!(report.message.contains("API_AND_CONFIG_MAP"));
    assert_eq!(eks.list_access_entries(CLUSTER).await.unwrap(), before);
    assert_eq!(
        board.cluster().authentication_mode.as_deref(),
        Some("CONFIG_MAP")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eks_down_is_reported_without_panics() {
    // Nothing listens on this port: connection refused, retried, then reported.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let eks = EksClient::for_endpoint(
        &format!("http://127.0.0.1:{port}"),
        "eu-west-1",
        "test",
        "secret",
    );
    let board = ReportBoard::new();
    let mut runner = Runner::new(
        Arc::new(eks),
        CLUSTER,
        2,
        board.clone(),
        Settings::default(),
    );
    let dev = role_mapping("dev", DEV, "dev:{{SessionName}}", &["devs"], 0);
    let summary = runner.pass(&[m(dev)], true).await;
    let error = summary.error.expect("the pass fails as a whole");
    assert!(error.contains("cannot reach the EKS API"), "{error}");
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.synced, report.confirmed_in_place),
        (SyncReason::EksError, false, false)
    );
    assert!(
        report.message.contains("aws-auth is not affected"),
        "{}",
        report.message
    );
    assert!(board.cluster().last_error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_keeps_the_last_confirmation_of_the_same_generation() {
    let Some((stack, mut runner, _eks)) = started("outage", "API_AND_CONFIG_MAP").await else {
        return;
    };
    let board = runner.board().clone();
    let dev = role_mapping("dev", DEV, "dev:{{SessionName}}", &["devs"], 0);
    runner.pass(&[m(dev.clone())], true).await;
    assert!(board.get("dev").unwrap().confirms(Some(1)));
    drop(stack);
    let summary = runner.pass(&[m(dev.clone())], true).await;
    assert!(summary.error.is_some());
    let report = board.get("dev").unwrap();
    assert_eq!(
        (report.reason, report.synced),
        (SyncReason::EksError, false)
    );
    assert!(
        report.confirms(Some(1)),
        "an outage does not un-confirm: {report:?}"
    );
    assert!(
        report.message.contains("last confirmed in place"),
        "{}",
        report.message
    );
    assert!(
        report.status.is_some(),
        "the last known entry is still shown"
    );
    // A new generation during the outage is not confirmed: aws-auth must keep serving it.
    let mut edited = dev.clone();
    edited.metadata.generation = Some(2);
    runner.pass(&[m(edited)], true).await;
    let report = board.get("dev").unwrap();
    assert!(!report.confirmed_in_place);
    assert_eq!(report.generation, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_waits_for_the_store_and_follows_wakes() {
    let Some(stack) = Ministack::start("loop") else {
        return;
    };
    stack.create_cluster(CLUSTER, "API_AND_CONFIG_MAP").await;
    let eks = stack.client();
    let (store, mut writer) = aws_auth_operator::cache::mapping_cache();
    let wake = Arc::new(tokio::sync::Notify::new());
    let board = ReportBoard::new();
    let changed = board.changed();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = AccessEntriesConfig {
        mode: AccessEntriesMode::Mirror,
        cluster_name: CLUSTER.into(),
        region: "eu-west-1".into(),
        endpoint: Some(stack.endpoint.clone()),
        concurrency: 2,
        resync: Duration::from_secs(3600),
    };
    let handle = tokio::spawn(run_loop(
        Arc::new(eks.clone()),
        config,
        Settings::default(),
        store,
        wake.clone(),
        board.clone(),
        aws_auth_operator::principals::PrincipalBoard::new(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    // Before the store is ready nothing is read, let alone deleted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(board.cluster().passes, 0);
    let dev = role_mapping("dev", DEV, "dev:{{SessionName}}", &["devs"], 0);
    writer.apply(&watcher::Event::Init);
    writer.apply(&watcher::Event::InitApply(dev));
    writer.apply(&watcher::Event::InitDone);
    tokio::time::timeout(Duration::from_secs(30), async {
        while board.get("dev").is_none_or(|r| !r.confirmed_in_place) {
            changed.notified().await;
        }
    })
    .await
    .expect("dev mirrored");
    // A new mapping and a wake: mirrored without waiting for the resync.
    let node = role_mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &["system:nodes"],
        1,
    );
    writer.apply(&watcher::Event::Apply(node));
    wake.notify_one();
    tokio::time::timeout(Duration::from_secs(30), async {
        while board.get("node").is_none_or(|r| !r.confirmed_in_place) {
            changed.notified().await;
        }
    })
    .await
    .expect("node mirrored after the wake");
    assert_eq!(
        eks.describe_access_entry(CLUSTER, NODE)
            .await
            .unwrap()
            .unwrap()
            .type_,
        "EC2_LINUX"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops")
        .unwrap();
}

/// Mirror, then `--access-entries=off` with the cluster known: deleting an admin mapping
/// deletes the cluster-admin entry the operator created for it (before, it stayed until mirror
/// ran again); the creator's entry and the other mapping's entry stay, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_still_revokes_the_entry_of_a_deleted_mapping() {
    let Some((_stack, mut runner, eks)) = started("off_revokes", "API_AND_CONFIG_MAP").await else {
        return;
    };
    let admin = role_mapping(
        "admin",
        DEV,
        "admin:{{SessionName}}",
        &["system:masters"],
        0,
    );
    let node = role_mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &["system:bootstrappers", "system:nodes"],
        1,
    );
    let summary = runner
        .pass(&[m(admin.clone()), m(node.clone())], true)
        .await;
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert!(
        eks.describe_access_entry(CLUSTER, DEV)
            .await
            .unwrap()
            .is_some()
    );

    let mut off = Runner::new(
        Arc::new(eks.clone()),
        CLUSTER,
        4,
        ReportBoard::new(),
        Settings::default(),
    )
    .with_mode(AccessEntriesMode::Off);
    let summary = off.pass(&[m(admin), m(node.clone())], true).await;
    assert_eq!(summary.work, 0, "off changes nothing of existing mappings");
    assert_eq!(
        off.board().get("admin").unwrap().reason,
        SyncReason::NotManaged
    );

    let summary = off.pass(&[m(node)], true).await;
    assert_eq!(summary.work, 1, "{summary:?}");
    assert!(
        eks.describe_access_entry(CLUSTER, DEV)
            .await
            .unwrap()
            .is_none(),
        "the admin's entry is revoked"
    );
    assert!(
        eks.describe_access_entry(CLUSTER, NODE)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        eks.describe_access_entry(CLUSTER, CREATOR_ARN)
            .await
            .unwrap()
            .is_some()
    );
}
