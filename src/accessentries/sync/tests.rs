//! Table tests of the planner: every reason, every kind of work, and the ownership rules.

use super::*;
use crate::accessentries::spec::AccessEntrySpec;
use crate::accessentries::translate::{NotMigratable, NotMigratableReason, translate_mapping};
use crate::api::IamIdentityMappingSpec;

const DEV: &str = "arn:aws:iam::111122223333:role/team/dev";
const OPS: &str = "arn:aws:iam::111122223333:role/ops";
const NODE: &str = "arn:aws:iam::111122223333:role/node";
const CREATOR: &str = "arn:aws:iam::111122223333:root";
const VIEW: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy";
const ADMIN: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn mapping(name: &str, arn: &str, username: &str, groups: &[&str]) -> DesiredMapping {
    mapping_with(name, arn, username, groups, None)
}

fn mapping_with(
    name: &str,
    arn: &str,
    username: &str,
    groups: &[&str],
    ae: Option<AccessEntrySpec>,
) -> DesiredMapping {
    let adopt = ae.as_ref().is_some_and(|a| a.adopt);
    let spec = IamIdentityMappingSpec {
        arn: Some(arn.into()),
        username: Some(username.into()),
        groups: s(groups),
        access_entry: ae,
        ..Default::default()
    };
    DesiredMapping {
        name: name.into(),
        generation: Some(1),
        created: Some(100),
        translation: translate_mapping(&spec),
        adopt,
    }
}

fn refused(name: &str) -> DesiredMapping {
    DesiredMapping {
        name: name.into(),
        generation: Some(3),
        created: Some(100),
        translation: Err(NotMigratable {
            reason: NotMigratableReason::ReservedGroup,
            message: "group `system:x` cannot be carried".into(),
        }),
        adopt: false,
    }
}

fn entry(
    arn: &str,
    type_: &str,
    username: Option<&str>,
    groups: &[&str],
    managed: Option<&str>,
) -> ObservedEntry {
    let mut tags = BTreeMap::new();
    if let Some(mapping) = managed {
        tags.insert(MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string());
        tags.insert(MAPPING_TAG.to_string(), mapping.to_string());
    }
    ObservedEntry {
        principal_arn: arn.into(),
        access_entry_arn: Some(format!(
            "arn:aws:eks:eu-west-1:111122223333:access-entry/c/{}",
            arn.len()
        )),
        type_: type_.into(),
        username: username.map(str::to_string),
        kubernetes_groups: s(groups),
        tags,
        policies: Some(Vec::new()),
    }
}

fn policies(mut e: ObservedEntry, p: &[(&str, PolicyScope)]) -> ObservedEntry {
    e.policies = Some(
        p.iter()
            .map(|(arn, scope)| ObservedPolicy {
                policy_arn: arn.to_string(),
                scope: scope.clone(),
            })
            .collect(),
    );
    e
}

fn observed(entries: Vec<ObservedEntry>) -> Observed {
    Observed {
        mode: AuthenticationMode::ApiAndConfigMap,
        entries,
        unreadable: BTreeSet::new(),
    }
}

fn creator() -> ObservedEntry {
    policies(
        entry(CREATOR, "STANDARD", Some(CREATOR), &[], None),
        &[(ADMIN, PolicyScope::Cluster)],
    )
}

fn dev() -> DesiredMapping {
    mapping("dev", DEV, "dev:{{SessionName}}", &["devs"])
}

fn dev_entry() -> ObservedEntry {
    entry(
        DEV,
        "STANDARD",
        Some("dev:{{SessionName}}"),
        &["devs"],
        Some("dev"),
    )
}

#[test]
fn authentication_modes() {
    assert_eq!(
        AuthenticationMode::from_api(None),
        AuthenticationMode::ConfigMap
    );
    for (text, uses) in [
        ("CONFIG_MAP", false),
        ("API_AND_CONFIG_MAP", true),
        ("API", true),
        ("NEW_MODE", false),
    ] {
        let mode = AuthenticationMode::from_api(Some(text));
        assert_eq!(mode.as_str(), text);
        assert_eq!(mode.uses_access_entries(), uses, "{text}");
    }
}

#[test]
fn config_map_mode_plans_nothing_and_reports_every_mapping() {
    for mode in [
        AuthenticationMode::ConfigMap,
        AuthenticationMode::Other("X".into()),
    ] {
        let obs = Observed {
            mode: mode.clone(),
            entries: vec![dev_entry(), creator()],
            unreadable: BTreeSet::new(),
        };
        let plan = plan_sync(&[dev(), refused("bad")], &obs);
        assert!(plan.work.is_empty(), "{mode:?}");
        for (name, o) in &plan.outcomes {
            assert_eq!(o.reason, SyncReason::ClusterInConfigMapMode, "{name}");
            assert!(!o.synced && !o.confirmed_in_place);
        }
        assert!(plan.outcomes["dev"].migratable);
        assert!(!plan.outcomes["bad"].migratable);
        if mode == AuthenticationMode::ConfigMap {
            assert!(plan.outcomes["dev"].message.contains("API_AND_CONFIG_MAP"));
            assert!(
                plan.outcomes["dev"]
                    .message
                    .contains("never changes the mode")
            );
        }
    }
}

#[test]
fn creates_a_missing_entry_with_tags_and_policies() {
    let m = mapping(
        "admin",
        DEV,
        "admin:{{SessionName}}",
        &["system:masters", "ops"],
    );
    let plan = plan_sync(&[m], &observed(vec![creator()]));
    assert_eq!(plan.work.len(), 1, "the creator's entry is never touched");
    let w = &plan.work[0];
    assert_eq!(
        (w.kind, w.principal_arn.as_str(), w.mapping.as_deref()),
        (WorkKind::Create, DEV, Some("admin"))
    );
    assert_eq!(
        w.steps,
        vec![
            Step::Create {
                type_: AccessEntryType::Standard,
                username: Some("admin:{{SessionName}}".into()),
                kubernetes_groups: s(&["ops"]),
                tags: BTreeMap::from([
                    (MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string()),
                    (MAPPING_TAG.to_string(), "admin".to_string()),
                ]),
            },
            Step::Associate(DesiredPolicy {
                policy_arn: ADMIN.into(),
                scope: PolicyScope::Cluster
            }),
        ]
    );
    let o = &plan.outcomes["admin"];
    assert_eq!(o.reason, SyncReason::Created);
    assert!(!o.confirmed_in_place, "not before it is read back");
}

#[test]
fn in_sync_entry_needs_no_call() {
    let plan = plan_sync(&[dev()], &observed(vec![dev_entry(), creator()]));
    assert!(plan.work.is_empty());
    let o = &plan.outcomes["dev"];
    assert_eq!(
        (o.reason, o.synced, o.confirmed_in_place),
        (SyncReason::InSync, true, true)
    );
    let status = o.status.as_ref().unwrap();
    assert_eq!(status.principal_arn, DEV);
    assert_eq!(status.kubernetes_groups, s(&["devs"]));
    // Group order and case of the ARN do not matter.
    let mut e = dev_entry();
    e.principal_arn = DEV.to_uppercase().replace("ARN:AWS:IAM", "arn:aws:iam");
    let m = mapping("dev", DEV, "dev:{{SessionName}}", &["b", "a"]);
    let mut e2 = e.clone();
    e2.kubernetes_groups = s(&["a", "b"]);
    let plan = plan_sync(&[m], &observed(vec![e2]));
    assert!(plan.work.is_empty(), "{:?}", plan.work);
    assert_eq!(plan.outcomes["dev"].reason, SyncReason::InSync);
}

#[test]
fn updates_username_groups_and_policies() {
    let mut ae = AccessEntrySpec::default();
    ae.policies.push(crate::accessentries::AccessPolicySpec {
        policy: "AmazonEKSViewPolicy".into(),
        namespaces: s(&["b", "a"]),
    });
    let m = mapping_with(
        "dev",
        DEV,
        "dev2:{{SessionName}}",
        &["devs", "qa"],
        Some(ae),
    );
    let current = policies(
        entry(
            DEV,
            "STANDARD",
            Some("dev:{{SessionName}}"),
            &["devs"],
            Some("dev"),
        ),
        &[(VIEW, PolicyScope::Cluster), (ADMIN, PolicyScope::Cluster)],
    );
    let plan = plan_sync(&[m], &observed(vec![current]));
    let w = plan.work_for("dev").unwrap();
    assert_eq!(w.kind, WorkKind::Update);
    assert_eq!(
        w.steps,
        vec![
            Step::Update {
                username: Some("dev2:{{SessionName}}".into()),
                kubernetes_groups: s(&["devs", "qa"])
            },
            Step::Associate(DesiredPolicy {
                policy_arn: VIEW.into(),
                scope: PolicyScope::Namespace(s(&["a", "b"]))
            }),
            Step::Disassociate {
                policy_arn: ADMIN.into()
            },
        ]
    );
    let o = &plan.outcomes["dev"];
    assert_eq!(o.reason, SyncReason::Updated);
    assert!(
        o.message
            .contains("username dev:{{SessionName}} (wants dev2:{{SessionName}})"),
        "{}",
        o.message
    );
    assert!(
        o.message.contains("groups devs (wants devs,qa)"),
        "{}",
        o.message
    );
    assert!(
        o.message.contains("AmazonEKSClusterAdminPolicy (cluster)"),
        "{}",
        o.message
    );
}

#[test]
fn groups_only_update_leaves_the_username_alone() {
    let m = mapping("dev", DEV, "dev:{{SessionName}}", &[]);
    let plan = plan_sync(&[m], &observed(vec![dev_entry()]));
    assert_eq!(
        plan.work_for("dev").unwrap().steps,
        vec![Step::Update {
            username: None,
            kubernetes_groups: vec![]
        }]
    );
    // No username wanted: whatever EKS generated is fine.
    let m = mapping("dev", DEV, "", &["devs"]);
    let plan = plan_sync(&[m], &observed(vec![dev_entry()]));
    assert!(plan.work.is_empty());
}

#[test]
fn type_change_is_delete_and_create() {
    let m = mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &[
            "system:bootstrappers",
            "system:nodes",
            "eks:kube-proxy-windows",
        ],
    );
    let current = entry(
        NODE,
        "EC2_LINUX",
        Some("system:node:{{EC2PrivateDNSName}}"),
        &["system:nodes"],
        Some("node"),
    );
    let plan = plan_sync(&[m], &observed(vec![current]));
    let w = plan.work_for("node").unwrap();
    assert_eq!(w.kind, WorkKind::Recreate);
    assert_eq!(w.steps[0], Step::Delete);
    assert!(
        matches!(&w.steps[1], Step::Create { type_: AccessEntryType::Ec2Windows, username: None, kubernetes_groups, .. } if kubernetes_groups.is_empty())
    );
    assert_eq!(w.steps.len(), 2);
    assert!(
        plan.outcomes["node"]
            .message
            .contains("EC2_LINUX -> EC2_WINDOWS")
    );
}

#[test]
fn node_entries_ignore_username_groups_and_policies() {
    let m = mapping(
        "node",
        NODE,
        "system:node:{{EC2PrivateDNSName}}",
        &["system:bootstrappers", "system:nodes"],
    );
    let mut current = entry(
        NODE,
        "EC2_LINUX",
        Some("system:node:{{EC2PrivateDNSName}}"),
        &["system:nodes"],
        Some("node"),
    );
    current.policies = None;
    let plan = plan_sync(&[m], &observed(vec![current]));
    assert!(plan.work.is_empty());
    assert_eq!(plan.outcomes["node"].reason, SyncReason::InSync);
}

#[test]
fn foreign_entry_is_reported_and_left_alone() {
    let same = entry(
        DEV,
        "STANDARD",
        Some("dev:{{SessionName}}"),
        &["devs"],
        None,
    );
    let differs = entry(DEV, "STANDARD", Some("someone"), &[], None);
    for (current, hint) in [
        (same, "it matches this mapping"),
        (differs, "username someone"),
    ] {
        let plan = plan_sync(&[dev()], &observed(vec![current, creator()]));
        assert!(plan.work.is_empty(), "never changed, never deleted");
        let o = &plan.outcomes["dev"];
        assert_eq!(
            (o.reason, o.synced, o.confirmed_in_place),
            (SyncReason::ForeignEntry, false, false)
        );
        assert!(o.message.contains(hint), "{}", o.message);
        assert!(o.message.contains("adopt: true"), "{}", o.message);
        assert_eq!(o.status.as_ref().unwrap().principal_arn, DEV);
    }
    // A foreign entry of another type is not re-created either.
    let node_like = entry(DEV, "EC2_LINUX", None, &[], None);
    let plan = plan_sync(&[dev()], &observed(vec![node_like]));
    assert!(plan.work.is_empty());
    assert!(
        plan.outcomes["dev"]
            .message
            .contains("type EC2_LINUX (wants STANDARD)")
    );
}

#[test]
fn adopt_tags_and_updates_a_foreign_entry() {
    let ae = AccessEntrySpec {
        adopt: true,
        ..Default::default()
    };
    let m = mapping_with(
        "dev",
        DEV,
        "dev:{{SessionName}}",
        &["devs", "qa"],
        Some(ae.clone()),
    );
    let current = entry(
        DEV,
        "STANDARD",
        Some("dev:{{SessionName}}"),
        &["devs"],
        None,
    );
    let plan = plan_sync(&[m], &observed(vec![current.clone()]));
    let w = plan.work_for("dev").unwrap();
    assert_eq!(w.kind, WorkKind::Adopt);
    assert!(
        matches!(&w.steps[0], Step::Tag { tags, .. } if tags[MANAGED_BY_TAG] == MANAGED_BY_VALUE)
    );
    assert_eq!(
        w.steps[1],
        Step::Update {
            username: None,
            kubernetes_groups: s(&["devs", "qa"])
        }
    );
    assert_eq!(plan.outcomes["dev"].reason, SyncReason::Updated);
    // Matching already: only the tag, and it is in sync (and confirmed) right away.
    let m = mapping_with(
        "dev",
        DEV,
        "dev:{{SessionName}}",
        &["devs"],
        Some(ae.clone()),
    );
    let plan = plan_sync(&[m], &observed(vec![current]));
    assert_eq!(plan.work_for("dev").unwrap().steps.len(), 1);
    let o = &plan.outcomes["dev"];
    assert_eq!((o.reason, o.confirmed_in_place), (SyncReason::InSync, true));
    assert!(o.message.contains("(adopted)"));
    // Adopting an entry of another type re-creates it.
    let m = mapping_with("dev", DEV, "dev:{{SessionName}}", &["devs"], Some(ae));
    let plan = plan_sync(
        &[m],
        &observed(vec![entry(DEV, "EC2_LINUX", None, &[], None)]),
    );
    assert_eq!(plan.work_for("dev").unwrap().kind, WorkKind::Recreate);
}

#[test]
fn deletes_only_tagged_entries_whose_mapping_is_gone() {
    let gone = entry(OPS, "STANDARD", Some("ops"), &["ops"], Some("ops"));
    let untagged = entry(
        "arn:aws:iam::111122223333:role/other-tool",
        "STANDARD",
        None,
        &["x"],
        None,
    );
    let eks_node = entry(NODE, "EC2_LINUX", None, &[], None);
    let plan = plan_sync(
        &[dev()],
        &observed(vec![dev_entry(), gone, untagged, eks_node, creator()]),
    );
    assert_eq!(
        plan.work,
        vec![PrincipalWork {
            principal_arn: OPS.into(),
            mapping: None,
            kind: WorkKind::Delete,
            steps: vec![Step::Delete]
        }]
    );
    // The same, with no mapping at all: only the tagged one goes.
    let plan = plan_sync(&[], &observed(vec![dev_entry(), creator()]));
    assert_eq!(plan.work.len(), 1);
    assert_eq!(plan.work[0].principal_arn, DEV);
}

#[test]
fn renamed_or_moved_mapping_keeps_or_frees_the_entry() {
    // Another mapping now wants the principal: the tagged entry is kept and managed.
    let m = mapping("dev-renamed", DEV, "dev:{{SessionName}}", &["devs"]);
    let plan = plan_sync(&[m], &observed(vec![dev_entry()]));
    assert!(plan.work.is_empty());
    assert_eq!(plan.outcomes["dev-renamed"].reason, SyncReason::InSync);
    // The mapping points at another principal now: the old entry is deleted, a new one created.
    let m = mapping("dev", OPS, "dev:{{SessionName}}", &["devs"]);
    let plan = plan_sync(&[m], &observed(vec![dev_entry()]));
    let kinds: Vec<(WorkKind, &str)> = plan
        .work
        .iter()
        .map(|w| (w.kind, w.principal_arn.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![(WorkKind::Create, OPS), (WorkKind::Delete, DEV)]
    );
}

#[test]
fn an_entry_whose_mapping_cannot_migrate_now_is_kept() {
    let plan = plan_sync(&[refused("dev")], &observed(vec![dev_entry()]));
    assert!(plan.work.is_empty(), "{:?}", plan.work);
    let o = &plan.outcomes["dev"];
    assert_eq!(
        (o.reason, o.migratable, o.synced),
        (SyncReason::NotMigratable, false, false)
    );
    assert!(o.message.contains("stays in aws-auth"));
    assert!(o.message.contains("(ReservedGroup)"));
    assert_eq!(o.generation, Some(3));
}

#[test]
fn oldest_mapping_wins_a_principal() {
    let mut young = mapping("a-young", DEV, "young", &["y"]);
    young.created = Some(200);
    let old = mapping("z-old", DEV, "old", &["o"]);
    let mut unknown = mapping("0-unknown", DEV, "x", &[]);
    unknown.created = None;
    let plan = plan_sync(&[young, old, unknown], &observed(vec![]));
    assert_eq!(plan.work.len(), 1);
    assert_eq!(plan.work[0].mapping.as_deref(), Some("z-old"));
    for loser in ["a-young", "0-unknown"] {
        let o = &plan.outcomes[loser];
        assert_eq!(o.reason, SyncReason::Conflict);
        assert!(o.message.contains("mapping z-old"), "{}", o.message);
    }
}

#[test]
fn unreadable_entries_are_reported_not_acted_on() {
    let mut obs = observed(vec![]);
    obs.unreadable.insert(principal_key(DEV));
    let plan = plan_sync(&[dev()], &obs);
    assert!(
        plan.work.is_empty(),
        "no create on a principal that may exist"
    );
    assert_eq!(plan.outcomes["dev"].reason, SyncReason::EksError);
    // Policies not read: nothing decided either.
    let mut e = dev_entry();
    e.policies = None;
    let plan = plan_sync(&[dev()], &observed(vec![e]));
    assert!(plan.work.is_empty());
    assert_eq!(plan.outcomes["dev"].reason, SyncReason::EksError);
}

#[test]
fn finalize_after_work() {
    let planned = plan_sync(&[dev()], &observed(vec![]));
    let work = planned.work_for("dev").cloned();
    let after = plan_sync(&[dev()], &observed(vec![dev_entry()]));
    let done = finalize_outcome(
        &planned.outcomes["dev"],
        work.as_ref(),
        None,
        &after.outcomes["dev"],
    );
    assert_eq!(
        (done.reason, done.synced, done.confirmed_in_place),
        (SyncReason::Created, true, true)
    );
    assert!(
        done.message.starts_with("created and read back"),
        "{}",
        done.message
    );
    assert!(done.status.is_some());
    // A failed call.
    let failed = finalize_outcome(
        &planned.outcomes["dev"],
        work.as_ref(),
        Some("CreateAccessEntry: InvalidParameterException: bad group"),
        &planned.outcomes["dev"],
    );
    assert_eq!(
        (failed.reason, failed.synced, failed.confirmed_in_place),
        (SyncReason::EksError, false, false)
    );
    assert!(failed.message.contains("bad group"));
    // Accepted, but the read-back does not show it yet.
    let stale = finalize_outcome(
        &planned.outcomes["dev"],
        work.as_ref(),
        None,
        &planned.outcomes["dev"],
    );
    assert_eq!(stale.reason, SyncReason::EksError);
    assert!(stale.message.contains("does not confirm"));
    // No work: the later outcome as it is.
    let idle = finalize_outcome(&after.outcomes["dev"], None, None, &after.outcomes["dev"]);
    assert_eq!(idle, after.outcomes["dev"]);
    // Updates and re-creations say Updated.
    for (kind, verb) in [
        (WorkKind::Update, "updated"),
        (WorkKind::Recreate, "re-created"),
    ] {
        let w = PrincipalWork {
            principal_arn: DEV.into(),
            mapping: Some("dev".into()),
            kind,
            steps: vec![Step::Delete],
        };
        let o = finalize_outcome(
            &planned.outcomes["dev"],
            Some(&w),
            None,
            &after.outcomes["dev"],
        );
        assert_eq!(o.reason, SyncReason::Updated);
        assert!(o.message.starts_with(verb), "{}", o.message);
    }
}

#[test]
fn reads_are_few_on_an_idle_resync() {
    let listed = s(&[DEV, OPS, CREATOR, NODE]);
    let wanted: BTreeMap<String, bool> =
        [(principal_key(DEV), true), (principal_key(NODE), false)].into();
    // Cold: everything is described once; policies only where a mapping wants a STANDARD entry.
    let reads = select_reads(&listed, &BTreeMap::new(), &wanted, 0);
    let summary: Vec<(&str, bool, bool)> = reads
        .iter()
        .map(|r| (r.principal_arn.as_str(), r.describe, r.policies))
        .collect();
    assert_eq!(
        summary,
        vec![
            (NODE, true, false),
            (OPS, true, false),
            (DEV, true, true),
            (CREATOR, true, false)
        ]
    );
    // Warm: a wake pass reads nothing; a resync re-reads the least recently read relevant ones.
    let mut cache = BTreeMap::new();
    for (i, e) in [
        dev_entry(),
        entry(OPS, "STANDARD", None, &[], Some("ops")),
        creator(),
        entry(NODE, "EC2_LINUX", None, &[], None),
    ]
    .into_iter()
    .enumerate()
    {
        cache.insert(
            principal_key(&e.principal_arn),
            CachedEntry {
                entry: e,
                read_at_pass: 10 - i as u64,
            },
        );
    }
    assert!(select_reads(&listed, &cache, &wanted, 0).is_empty());
    let reads = select_reads(&listed, &cache, &wanted, 2);
    let summary: Vec<(&str, bool, bool)> = reads
        .iter()
        .map(|r| (r.principal_arn.as_str(), r.describe, r.policies))
        .collect();
    // NODE (read at 7) and OPS (managed, read at 9); never the creator's untagged entry.
    assert_eq!(summary, vec![(NODE, true, false), (OPS, true, false)]);
    // A wanted entry whose policies were never listed gets them listed.
    let mut no_policies = cache.clone();
    if let Some(c) = no_policies.get_mut(&principal_key(DEV)) {
        c.entry.policies = None;
    }
    let reads = select_reads(&listed, &no_policies, &wanted, 0);
    assert_eq!(
        reads,
        vec![Read {
            principal_arn: DEV.into(),
            describe: false,
            policies: true
        }]
    );
    assert_eq!(verify_budget(0), 0);
    assert_eq!(verify_budget(1), 1);
    assert_eq!(verify_budget(1000), 84);
}
