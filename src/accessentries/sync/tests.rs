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
        refusal: None,
        confirmed_before: false,
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
        refusal: None,
        confirmed_before: false,
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
        false,
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
        false,
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
        false,
    );
    assert_eq!(stale.reason, SyncReason::EksError);
    assert!(stale.message.contains("does not confirm"));
    // No work: the later outcome as it is.
    let idle = finalize_outcome(
        &after.outcomes["dev"],
        None,
        None,
        &after.outcomes["dev"],
        false,
    );
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
            false,
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

// --- The operator's policy (--protected-arn, --allowed-groups, --denied-groups) ---

fn settings(denied: &[&str], allowed: &[&str], protected: &[&str]) -> crate::plan::Settings {
    let mut settings = crate::plan::Settings::default()
        .with_group_policy(&s(allowed), &s(denied))
        .unwrap();
    for arn in protected {
        settings.protect(arn).unwrap();
    }
    settings
}

/// A mapping as the runner builds it: through `desired_mapping`, with the operator's settings.
fn policed(
    name: &str,
    arn: &str,
    groups: &[&str],
    ae: Option<AccessEntrySpec>,
    settings: &crate::plan::Settings,
) -> DesiredMapping {
    let mut m = crate::api::IamIdentityMapping::new(
        name,
        IamIdentityMappingSpec {
            arn: Some(arn.into()),
            username: Some("admin:{{SessionName}}".into()),
            groups: s(groups),
            access_entry: ae,
            ..Default::default()
        },
    );
    m.metadata.generation = Some(1);
    crate::accessentries::runner::desired_mapping(&m, None, settings)
}

fn admin_entry(tag: Option<&str>) -> ObservedEntry {
    policies(
        entry(DEV, "STANDARD", Some("admin:{{SessionName}}"), &[], tag),
        &[(ADMIN, PolicyScope::Cluster)],
    )
}

#[test]
fn a_mapping_outside_the_group_policy_gets_no_entry() {
    let deny_masters = settings(&["system:masters"], &[], &[]);
    let m = policed(
        "admin",
        DEV,
        &["system:masters", "ops"],
        None,
        &deny_masters,
    );
    assert!(m.translation.is_ok(), "it would migrate, as cluster admin");
    let plan = plan_sync(&[m], &observed(vec![creator()]));
    assert!(
        plan.work.is_empty(),
        "no CreateAccessEntry: {:?}",
        plan.work
    );
    let o = &plan.outcomes["admin"];
    assert_eq!(
        (o.reason, o.synced, o.confirmed_in_place),
        (SyncReason::PolicyViolation, false, false)
    );
    assert!(
        o.message.contains(
            "group `system:masters` is not allowed: it matches --denied-groups `system:masters`"
        ),
        "{}",
        o.message
    );
    assert!(o.message.contains("no EKS access entry"), "{}", o.message);
    assert!(
        !wanted_principals(&[policed(
            "admin",
            DEV,
            &["system:masters"],
            None,
            &deny_masters
        )])
        .contains_key(&principal_key(DEV))
    );

    // --allowed-groups as well.
    let only_devs = settings(&[], &["devs"], &[]);
    let plan = plan_sync(
        &[policed("ops", DEV, &["devs", "ops"], None, &only_devs)],
        &observed(vec![]),
    );
    assert!(plan.work.is_empty());
    let o = &plan.outcomes["ops"];
    assert_eq!(o.reason, SyncReason::PolicyViolation);
    assert!(
        o.message
            .contains("`ops` is not allowed: it matches none of --allowed-groups `devs`"),
        "{}",
        o.message
    );

    // Groups only the access entry grants obey the policy too.
    let deny_admins = settings(&["admins"], &[], &[]);
    let ae = AccessEntrySpec {
        kubernetes_groups: Some(s(&["admins"])),
        ..Default::default()
    };
    let plan = plan_sync(
        &[policed("dev", DEV, &["devs"], Some(ae), &deny_admins)],
        &observed(vec![]),
    );
    assert!(plan.work.is_empty());
    assert_eq!(plan.outcomes["dev"].reason, SyncReason::PolicyViolation);

    // An invalid spec (a repeated group: not in aws-auth at all) that still translates.
    let m = policed(
        "admin",
        DEV,
        &["system:masters", "system:masters"],
        None,
        &deny_masters,
    );
    assert!(m.translation.is_ok());
    let plan = plan_sync(&[m], &observed(vec![]));
    assert!(plan.work.is_empty(), "{:?}", plan.work);
    assert_eq!(plan.outcomes["admin"].reason, SyncReason::PolicyViolation);

    // Without a policy nothing changes: created as cluster admin.
    let plan = plan_sync(
        &[policed(
            "admin",
            DEV,
            &["system:masters"],
            None,
            &crate::plan::Settings::default(),
        )],
        &observed(vec![]),
    );
    assert_eq!(plan.work_for("admin").unwrap().kind, WorkKind::Create);
}

#[test]
fn the_managed_entry_of_a_mapping_now_outside_the_policy_is_deleted() {
    let deny_masters = settings(&["system:masters"], &[], &[]);
    let m = policed("admin", DEV, &["system:masters"], None, &deny_masters);
    // Created before the policy (or by an operator without the fix): ours, so it goes.
    let plan = plan_sync(
        std::slice::from_ref(&m),
        &observed(vec![admin_entry(Some("admin")), creator()]),
    );
    assert_eq!(
        plan.work,
        vec![PrincipalWork {
            principal_arn: DEV.into(),
            mapping: Some("admin".into()),
            kind: WorkKind::Delete,
            steps: vec![Step::Delete],
        }],
        "only our entry, never the creator's"
    );
    let o = &plan.outcomes["admin"];
    assert_eq!(
        (o.reason, o.confirmed_in_place),
        (SyncReason::PolicyViolation, false)
    );
    assert!(
        o.message.contains(&format!(
            "the access entry the operator created for {DEV} is being deleted"
        )),
        "{}",
        o.message
    );
    assert_eq!(o.status.as_ref().unwrap().principal_arn, DEV);

    // Once deleted the outcome stays the refusal; a failed deletion says so and retries.
    let after = plan_sync(std::slice::from_ref(&m), &observed(vec![creator()]));
    let done = finalize_outcome(o, plan.work.first(), None, &after.outcomes["admin"], true);
    assert_eq!(done, after.outcomes["admin"]);
    assert!(done.status.is_none() && !done.confirmed_in_place);
    let failed = finalize_outcome(
        o,
        plan.work.first(),
        Some("DeleteAccessEntry: ThrottlingException: Rate exceeded"),
        o,
        true,
    );
    assert_eq!(
        (failed.reason, failed.confirmed_in_place),
        (SyncReason::PolicyViolation, false)
    );
    assert!(
        failed.message.contains("deleting it failed"),
        "{}",
        failed.message
    );

    // An entry the operator did not create is never touched, refused mapping or not.
    let plan = plan_sync(std::slice::from_ref(&m), &observed(vec![admin_entry(None)]));
    assert!(plan.work.is_empty());
    assert!(
        plan.outcomes["admin"].message.contains("left alone"),
        "{}",
        plan.outcomes["admin"].message
    );

    // Refused and also not migratable: the refusal wins, and the entry still goes (a mapping
    // that cannot migrate keeps its entry; one the policy refuses does not).
    let mut both = m.clone();
    both.translation = refused("admin").translation;
    let plan = plan_sync(&[both], &observed(vec![admin_entry(Some("admin"))]));
    assert_eq!(plan.work.len(), 1);
    assert_eq!(plan.work[0].kind, WorkKind::Delete);
    assert_eq!(plan.outcomes["admin"].reason, SyncReason::PolicyViolation);

    // Another mapping the policy allows wants the principal: it wins it, nothing is deleted.
    let mut allowed = policed("b-allowed", DEV, &["ops"], None, &deny_masters);
    allowed.created = Some(500);
    let plan = plan_sync(
        &[m.clone(), allowed],
        &observed(vec![policies(
            entry(
                DEV,
                "STANDARD",
                Some("admin:{{SessionName}}"),
                &["ops"],
                Some("admin"),
            ),
            &[],
        )]),
    );
    assert!(plan.work.is_empty(), "{:?}", plan.work);
    assert_eq!(plan.outcomes["b-allowed"].reason, SyncReason::InSync);
    assert_eq!(plan.outcomes["admin"].reason, SyncReason::PolicyViolation);

    // In CONFIG_MAP mode nothing is changed, and the refusal is still what the mapping says.
    let obs = Observed {
        mode: AuthenticationMode::ConfigMap,
        entries: vec![admin_entry(Some("admin"))],
        unreadable: BTreeSet::new(),
    };
    let plan = plan_sync(std::slice::from_ref(&m), &obs);
    assert!(plan.work.is_empty());
    assert_eq!(plan.outcomes["admin"].reason, SyncReason::PolicyViolation);
}

#[test]
fn a_protected_principal_gets_no_entry() {
    // Protected as aws-auth keys it: the role without its path.
    let protected = settings(&[], &[], &["arn:aws:iam::111122223333:role/dev"]);
    let m = policed("dev", DEV, &["devs"], None, &protected);
    let plan = plan_sync(std::slice::from_ref(&m), &observed(vec![]));
    assert!(
        plan.work.is_empty(),
        "no CreateAccessEntry: {:?}",
        plan.work
    );
    let o = &plan.outcomes["dev"];
    assert_eq!(
        (o.reason, o.synced, o.confirmed_in_place),
        (SyncReason::ProtectedPrincipal, false, false)
    );
    assert!(
        o.message
            .contains("is a protected principal (--protected-arn)"),
        "{}",
        o.message
    );
    // An entry the operator created for it earlier is deleted; aws-auth's entry serves it.
    let plan = plan_sync(
        std::slice::from_ref(&m),
        &observed(vec![policies(dev_entry(), &[])]),
    );
    assert_eq!(plan.work.len(), 1);
    assert_eq!(
        (plan.work[0].kind, plan.work[0].mapping.as_deref()),
        (WorkKind::Delete, Some("dev"))
    );
}

/// The access-entry side asks the same question as `plan()`, and gets the same answer.
#[test]
fn the_refusal_is_the_one_aws_auth_gets() {
    use crate::plan::{LiveAwsAuth, MappingInput, plan};
    let settings = settings(
        &["system:masters"],
        &["devs", "ops", "system:.*"],
        &[
            "arn:aws:iam::111122223333:role/ops",
            "arn:aws:iam::111122223333:user/x",
        ],
    );
    let cases: [(&str, &[&str]); 9] = [
        (DEV, &["devs"]),
        (DEV, &["system:masters"]),
        (DEV, &["qa"]),
        (DEV, &["devs", "qa"]),
        (DEV, &["system:nodes"]),
        (OPS, &["devs"]),
        ("arn:aws:iam::111122223333:role/some/path/ops", &["devs"]),
        ("arn:aws:iam::111122223333:user/x", &["devs"]),
        ("arn:aws:iam::111122223333:user/path/x", &["devs"]),
    ];
    for (arn, groups) in cases {
        let spec = IamIdentityMappingSpec {
            arn: Some(arn.into()),
            username: Some("someone".into()),
            groups: s(groups),
            ..Default::default()
        };
        let input = MappingInput {
            name: "m".into(),
            creation_timestamp: None,
            generation: Some(1),
            spec: spec.clone(),
            last_rendered: None,
            served_by_access_entry: false,
            access_entry_unknown: false,
            resolved_arn: None,
        };
        let aws_auth = plan(&[input], &LiveAwsAuth::default(), &settings).outcomes["m"].reason();
        let access = policed("m", arn, groups, None, &settings);
        let reason = access.refusal.as_ref().map(|r| r.reason());
        assert_eq!(reason.unwrap_or("Rendered"), aws_auth, "{arn} {groups:?}");
        // And the access side's condition carries the same reason.
        let plan = plan_sync(std::slice::from_ref(&access), &observed(vec![]));
        if let Some(reason) = reason {
            assert_eq!(plan.outcomes["m"].reason.as_str(), reason);
        }
    }
}

// --- Transient failures keep an earlier confirmation ---

#[test]
fn a_transient_failure_keeps_an_earlier_confirmation() {
    let mut confirmed = dev();
    confirmed.confirmed_before = true;
    // The entry could not be read this pass (DescribeAccessEntry throttled).
    let mut obs = observed(vec![dev_entry()]);
    obs.unreadable.insert(principal_key(DEV));
    for (m, kept) in [(confirmed.clone(), true), (dev(), false)] {
        let plan = plan_sync(std::slice::from_ref(&m), &obs);
        assert!(plan.work.is_empty());
        let o = &plan.outcomes["dev"];
        assert_eq!(
            (o.reason, o.synced, o.confirmed_in_place),
            (SyncReason::EksError, false, kept)
        );
        assert_eq!(
            o.message.contains("last confirmed in place"),
            kept,
            "{}",
            o.message
        );
    }
    // Its policies could not be listed.
    let mut e = dev_entry();
    e.policies = None;
    let plan = plan_sync(std::slice::from_ref(&confirmed), &observed(vec![e]));
    assert_eq!(
        (
            plan.outcomes["dev"].reason,
            plan.outcomes["dev"].confirmed_in_place
        ),
        (SyncReason::EksError, true)
    );
    // Read back absent or different is not transient: the confirmation goes.
    let plan = plan_sync(std::slice::from_ref(&confirmed), &observed(vec![]));
    assert_eq!(
        (
            plan.outcomes["dev"].reason,
            plan.outcomes["dev"].confirmed_in_place
        ),
        (SyncReason::Created, false)
    );
    let different = entry(
        DEV,
        "STANDARD",
        Some("dev:{{SessionName}}"),
        &["x"],
        Some("dev"),
    );
    let plan = plan_sync(std::slice::from_ref(&confirmed), &observed(vec![different]));
    assert_eq!(
        (
            plan.outcomes["dev"].reason,
            plan.outcomes["dev"].confirmed_in_place
        ),
        (SyncReason::Updated, false)
    );
    // The call that would fix it fails: still not confirmed.
    let failed = finalize_outcome(
        &plan.outcomes["dev"],
        plan.work_for("dev"),
        Some("UpdateAccessEntry: ThrottlingException: Rate exceeded"),
        &plan.outcomes["dev"],
        true,
    );
    assert_eq!(
        (failed.reason, failed.confirmed_in_place),
        (SyncReason::EksError, false)
    );
}

#[test]
fn a_failed_call_on_an_entry_found_in_place_keeps_an_earlier_confirmation() {
    // Adopted and matching: only the tag is missing, and TagResource is throttled.
    let ae = AccessEntrySpec {
        adopt: true,
        ..Default::default()
    };
    let mut m = mapping_with("dev", DEV, "dev:{{SessionName}}", &["devs"], Some(ae));
    let foreign = entry(
        DEV,
        "STANDARD",
        Some("dev:{{SessionName}}"),
        &["devs"],
        None,
    );
    let plan = plan_sync(std::slice::from_ref(&m), &observed(vec![foreign]));
    let planned = &plan.outcomes["dev"];
    let work = plan.work_for("dev");
    let error = Some("TagResource: ThrottlingException: Rate exceeded");
    for (before, kept) in [(true, true), (false, false)] {
        m.confirmed_before = before;
        let o = finalize_outcome(planned, work, error, planned, m.confirmed_before);
        assert_eq!(
            (o.reason, o.confirmed_in_place),
            (SyncReason::EksError, kept)
        );
        assert!(o.message.contains("Rate exceeded"), "{}", o.message);
    }
    // A failed create (the entry was absent) never keeps one.
    let plan = plan_sync(&[dev()], &observed(vec![]));
    let o = finalize_outcome(
        &plan.outcomes["dev"],
        plan.work_for("dev"),
        error,
        &plan.outcomes["dev"],
        true,
    );
    assert!(!o.confirmed_in_place);
}

#[test]
fn a_confirmation_is_still_valid_only_for_the_same_generation_and_principal() {
    let confirmed = AccessEntryReport {
        generation: Some(1),
        synced: true,
        reason: SyncReason::InSync,
        message: String::new(),
        status: Some(dev_entry().status(None)),
        confirmed_in_place: true,
        migratable: true,
    };
    assert!(still_confirmed(Some(&confirmed), &dev()));
    let mut newer = dev();
    newer.generation = Some(2);
    assert!(!still_confirmed(Some(&confirmed), &newer), "a new spec");
    // Deleted and re-created under the same name for another principal: generation 1 again.
    let moved = mapping("dev", OPS, "dev:{{SessionName}}", &["devs"]);
    assert!(
        !still_confirmed(Some(&confirmed), &moved),
        "another principal"
    );
    let unconfirmed = AccessEntryReport {
        confirmed_in_place: false,
        ..confirmed.clone()
    };
    assert!(!still_confirmed(Some(&unconfirmed), &dev()));
    assert!(!still_confirmed(None, &dev()));
    let mut refused_now = dev();
    refused_now.refusal = Some(crate::plan::PolicyRefusal::Forbidden {
        subject: crate::plan::PolicySubject::Group("devs".into()),
        rule: "matches --denied-groups `devs`".into(),
    });
    assert!(!still_confirmed(Some(&confirmed), &refused_now));
}
