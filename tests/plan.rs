//! `plan()`: every rule it owns, one scenario each.

use aws_auth_operator::api::{IamIdentityMappingSpec, RenderedEntry};
use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::awsauth::{ConfigMapData, Entry, parse_data};
use aws_auth_operator::plan::{
    Blocked, DriftPolicy, LiveAwsAuth, ManagedSet, MappingInput, Note, Outcome, Plan,
    PolicySubject, RecoverySource, Settings, Unrecoverable, plan,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

const NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";

fn role_mapping(name: &str, arn: &str, username: &str, groups: &[&str]) -> MappingInput {
    MappingInput {
        name: name.into(),
        creation_timestamp: None,
        generation: Some(1),
        spec: IamIdentityMappingSpec {
            access_entry: None,
            arn: Some(arn.into()),
            account: None,
            username: Some(username.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            adopt_existing_entry: false,
            sso_permission_set: None,
        },
        last_rendered: None,
        served_by_access_entry: false,
        access_entry_unknown: false,
        resolved_arn: None,
    }
}

fn at(seconds: i64) -> Option<Time> {
    Some(Time(Timestamp::from_second(seconds).unwrap()))
}

fn admin() -> MappingInput {
    role_mapping(
        "admin",
        "arn:aws:iam::111122223333:role/platform/admin",
        "admin:{{SessionName}}",
        &["system:masters"],
    )
}

fn live(data: &[(&str, &str)]) -> LiveAwsAuth {
    LiveAwsAuth {
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The live state after the operator applied `plan` (what the next reconcile sees).
fn applied(plan: &Plan) -> LiveAwsAuth {
    LiveAwsAuth {
        data: Some(plan.data.clone()),
        managed: ManagedSet::decode(&plan.managed_annotation).unwrap(),
        recovery: None,
        frozen: false,
        mappings_incomplete: false,
    }
}

/// Status after the operator applied `plan`: `last_rendered` is what it wrote for the mapping.
fn with_status(mut mapping: MappingInput, plan: &Plan) -> MappingInput {
    mapping.last_rendered = plan
        .outcomes
        .get(&mapping.name)
        .and_then(Outcome::written_entry)
        .map(RenderedEntry::from);
    mapping
}

/// The recovery source the controller loads from history: a revision of `data` recorded with
/// `managed`, and every principal managed since.
fn source(revision: u64, plan: &Plan, ever_managed: ManagedSet) -> RecoverySource {
    RecoverySource {
        revision,
        data: plan.data.clone(),
        managed: plan.managed.clone(),
        ever_managed: plan.managed.union(&ever_managed),
    }
}

fn rendered_entry(plan: &Plan, name: &str) -> Entry {
    match &plan.outcomes[name] {
        Outcome::Rendered { entry, .. } => entry.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn first_render_creates_the_data_and_the_managed_set() {
    let p = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
    assert!(p.changed);
    assert!(p.blocked.is_none());
    assert_eq!(
        p.data["mapRoles"],
        "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin:{{SessionName}}\"\n  groups:\n    - \"system:masters\"\n"
    );
    assert_eq!(p.managed.len(), 1);
    assert!(
        p.managed
            .contains(&PrincipalKey::role("arn:aws:iam::111122223333:role/admin"))
    );
    assert_eq!(p.managed_entries, 1);
}

#[test]
fn steady_state_changes_nothing() {
    let mappings = vec![admin()];
    let first = plan(
        &mappings,
        &live(&[("mapRoles", NODE_ROLE)]),
        &Settings::default(),
    );
    let mappings: Vec<_> = mappings
        .into_iter()
        .map(|m| with_status(m, &first))
        .collect();
    let second = plan(&mappings, &applied(&first), &Settings::default());
    assert!(!second.changed);
    assert!(second.rewritten.is_empty());
    assert_eq!(second.data, first.data);
    assert!(second.notes.is_empty());
}

#[test]
fn unmanaged_entries_are_preserved_and_untouched_sections_keep_their_bytes() {
    let users = "- userarn: arn:aws:iam::111122223333:user/bob\n  username: bob   # hand-written\n";
    let live = live(&[
        ("mapRoles", NODE_ROLE),
        ("mapUsers", users),
        ("someOtherKey", "kept"),
    ]);
    let p = plan(&[admin()], &live, &Settings::default());
    assert_eq!(
        p.data["mapUsers"], users,
        "mapUsers did not change in meaning: same bytes"
    );
    assert_eq!(p.data["someOtherKey"], "kept");
    let roles = parse_data(&p.data).entries.roles;
    assert_eq!(roles.len(), 2);
    assert!(
        roles
            .iter()
            .any(|r| r.arn.ends_with("NodeInstanceRole-1ABC")
                && r.groups == ["system:bootstrappers", "system:nodes"])
    );
    assert_eq!(p.unmanaged_entries, 2);
    assert_eq!(p.managed_entries, 1);
}

#[test]
fn the_oldest_mapping_wins_a_principal_then_the_name() {
    let mut newer = role_mapping("a-newer", "arn:aws:iam::111122223333:role/admin", "x", &[]);
    newer.creation_timestamp = at(2_000);
    let mut older = role_mapping(
        "z-older",
        "arn:aws:iam::111122223333:role/path/Admin",
        "y",
        &[],
    );
    older.creation_timestamp = at(1_000);
    let p = plan(
        &[newer, older],
        &LiveAwsAuth::default(),
        &Settings::default(),
    );
    assert_eq!(rendered_entry(&p, "z-older").username(), Some("y"));
    match &p.outcomes["a-newer"] {
        Outcome::Conflict { winner, .. } => assert_eq!(winner, "z-older"),
        other => panic!("{other:?}"),
    }
    assert!(p.outcomes["a-newer"].message().contains("`z-older`"));

    let same_time: Vec<_> = ["b", "a"]
        .iter()
        .map(|n| {
            let mut m = role_mapping(n, "arn:aws:iam::111122223333:role/admin", n, &[]);
            m.creation_timestamp = at(5);
            m
        })
        .collect();
    let p = plan(&same_time, &LiveAwsAuth::default(), &Settings::default());
    assert!(matches!(p.outcomes["a"], Outcome::Rendered { .. }));
    assert!(matches!(p.outcomes["b"], Outcome::Conflict { .. }));
}

/// IAM user names are unique case-insensitively, and the authenticator matches both entries
/// (picking one at random): two mappings for `user/Alice` and `user/alice` are one principal,
/// and the younger one is in Conflict, as for roles.
#[test]
fn user_arns_differing_in_case_are_one_principal() {
    let mut a = role_mapping("a", "arn:aws:iam::111122223333:user/Alice", "a", &[]);
    a.creation_timestamp = at(1);
    let mut b = role_mapping("b", "arn:aws:iam::111122223333:user/alice", "b", &[]);
    b.creation_timestamp = at(2);
    let p = plan(&[a, b], &LiveAwsAuth::default(), &Settings::default());
    assert!(matches!(p.outcomes["a"], Outcome::Rendered { .. }));
    assert!(
        matches!(&p.outcomes["b"], Outcome::Conflict { winner, .. } if winner == "a"),
        "{:?}",
        p.outcomes["b"]
    );
    assert_eq!(parse_data(&p.data).entries.users.len(), 1);
    // The winner's status says who else claims it.
    match &p.outcomes["a"] {
        Outcome::Rendered { contenders, .. } => assert_eq!(contenders, &["b"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_mappings_are_reported_and_not_rendered() {
    let bad = role_mapping(
        "bad",
        "arn:aws:sts::111122223333:assumed-role/Admin/bob",
        "x",
        &[],
    );
    let p = plan(
        &[bad, admin()],
        &LiveAwsAuth::default(),
        &Settings::default(),
    );
    match &p.outcomes["bad"] {
        Outcome::Invalid { problems, kept } => {
            assert_eq!(problems[0].reason, "ArnIsAssumedRole");
            assert!(kept.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(parse_data(&p.data).entries.roles.len(), 1);
}

#[test]
fn a_bad_edit_keeps_serving_the_last_valid_entry() {
    let first = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
    let mut edited = with_status(admin(), &first);
    edited.spec.groups = vec!["has space".into()];
    let p = plan(&[edited], &applied(&first), &Settings::default());
    match &p.outcomes["admin"] {
        Outcome::Invalid {
            kept: Some(kept), ..
        } => assert_eq!(kept.groups(), ["system:masters"]),
        other => panic!("{other:?}"),
    }
    assert!(
        !p.changed,
        "the entry stays: nobody is locked out by a typo"
    );
}

#[test]
fn protected_principals_are_never_changed_or_removed() {
    let mut settings = Settings::default();
    settings
        .protect("arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC")
        .unwrap();
    let hijack = role_mapping(
        "hijack",
        "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC",
        "evil",
        &["system:masters"],
    );
    let live = live(&[("mapRoles", NODE_ROLE)]);
    let p = plan(&[hijack], &live, &settings);
    assert!(matches!(p.outcomes["hijack"], Outcome::Protected { .. }));
    assert_eq!(p.data["mapRoles"], NODE_ROLE);
    assert!(!p.changed);

    // Even when the operator once managed it, a protected entry is not removed.
    let mut managed_live = live.clone();
    managed_live.managed = ManagedSet::new([PrincipalKey::role(
        "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC",
    )]);
    let p = plan(&[], &managed_live, &settings);
    assert_eq!(p.data["mapRoles"], NODE_ROLE);
}

/// RBAC binds usernames as well as groups: a mapping may not take the name of a Kubernetes or
/// EKS identity (a controller, the operator's own ServiceAccount) even with no group at all.
#[test]
fn reserved_usernames_are_refused_like_a_denied_group() {
    let settings = Settings::default()
        .with_group_policy(&[], &["system:masters".into(), "system:.*".into()])
        .unwrap();
    let controller = role_mapping(
        "kcm",
        "arn:aws:iam::111122223333:role/mallory",
        "system:kube-controller-manager",
        &[],
    );
    let operator = role_mapping(
        "operator",
        "arn:aws:iam::111122223333:role/mallory2",
        "system:serviceaccount:aws-auth-operator:aao-aws-auth-operator",
        &[],
    );
    let session = role_mapping(
        "session",
        "arn:aws:iam::111122223333:role/mallory3",
        "{{SessionName}}:kube-scheduler",
        &[],
    );
    let p = plan(
        &[controller, operator, session],
        &LiveAwsAuth::default(),
        &settings,
    );
    for (name, username) in [
        ("kcm", "system:kube-controller-manager"),
        (
            "operator",
            "system:serviceaccount:aws-auth-operator:aao-aws-auth-operator",
        ),
        ("session", "{{SessionName}}:kube-scheduler"),
    ] {
        match &p.outcomes[name] {
            outcome @ Outcome::PolicyViolation {
                subject: PolicySubject::Username(refused),
                kept: None,
                removed: None,
                ..
            } => {
                assert_eq!(refused, username);
                assert_eq!(outcome.reason(), "PolicyViolation");
                let message = outcome.message();
                assert!(
                    message.starts_with(&format!("username `{username}` is not allowed")),
                    "{message}"
                );
                assert!(message.ends_with("; nothing is rendered"), "{message}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(!p.data.contains_key("mapRoles"), "{:?}", p.data);
}

/// An entry rendered before the username became refused stays (and the mapping is Stalled),
/// as with a newly denied group; --enforce-group-policy removes it. An edit to a reserved
/// username keeps the entry of the last allowed spec, never the new one.
#[test]
fn an_entry_rendered_before_a_reserved_username_stays_unless_enforced() {
    let arn = "arn:aws:iam::111122223333:role/ops";
    let first = role_mapping("ops", arn, "ops:{{SessionName}}", &["team-a"]);
    let p1 = plan(
        std::slice::from_ref(&first),
        &LiveAwsAuth::default(),
        &Settings::default(),
    );
    let rendered = rendered_entry(&p1, "ops");
    let mut edited = with_status(first, &p1);
    edited.spec.username = Some("system:kube-controller-manager".into());
    edited.generation = Some(2);

    let p2 = plan(
        std::slice::from_ref(&edited),
        &applied(&p1),
        &Settings::default(),
    );
    match &p2.outcomes["ops"] {
        Outcome::PolicyViolation {
            subject: PolicySubject::Username(_),
            kept: Some(kept),
            removed: None,
            ..
        } => assert_eq!(kept, &rendered),
        other => panic!("{other:?}"),
    }
    assert_eq!(p2.data, p1.data, "the last allowed entry stays as it was");
    assert!(!p2.data["mapRoles"].contains("system:kube-controller-manager"));

    let enforce = Settings {
        enforce_group_policy: true,
        ..Settings::default()
    };
    let p3 = plan(std::slice::from_ref(&edited), &applied(&p1), &enforce);
    match &p3.outcomes["ops"] {
        Outcome::PolicyViolation {
            kept: None,
            removed: Some(removed),
            ..
        } => assert_eq!(removed, &rendered),
        other => panic!("{other:?}"),
    }
    assert!(!p3.data.get("mapRoles").is_some_and(|r| r.contains(arn)));
}

#[test]
fn group_policy() {
    let settings = Settings::default()
        .with_group_policy(&[], &["system:masters".into()])
        .unwrap();
    let p = plan(&[admin()], &LiveAwsAuth::default(), &settings);
    match &p.outcomes["admin"] {
        Outcome::PolicyViolation {
            subject,
            rule,
            kept: None,
            removed: None,
        } => {
            assert_eq!(subject, &PolicySubject::Group("system:masters".into()));
            assert!(rule.contains("--denied-groups `system:masters`"), "{rule}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.data.contains_key("mapRoles"));

    let allow = Settings::default()
        .with_group_policy(&["team-.*".into()], &[])
        .unwrap();
    let ok = role_mapping(
        "ok",
        "arn:aws:iam::111122223333:role/dev",
        "dev",
        &["team-a"],
    );
    let no = role_mapping(
        "no",
        "arn:aws:iam::111122223333:role/ops",
        "ops",
        &["team-b", "xteam-c"],
    );
    let p = plan(&[ok, no], &LiveAwsAuth::default(), &allow);
    assert!(matches!(p.outcomes["ok"], Outcome::Rendered { .. }));
    // Patterns match the whole group name.
    assert!(
        matches!(&p.outcomes["no"], Outcome::PolicyViolation { subject: PolicySubject::Group(group), .. } if group == "xteam-c")
    );
}

#[test]
fn a_mapping_takes_over_an_unmanaged_entry() {
    let live = live(&[(
        "mapRoles",
        "- rolearn: arn:aws:iam::111122223333:role/admin\n  username: old\n",
    )]);
    let p = plan(&[admin()], &live, &Settings::default());
    match &p.outcomes["admin"] {
        Outcome::Rendered {
            took_over,
            gives_back_on_delete: true,
            ..
        } => assert_eq!(took_over[0].username(), Some("old")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&p.notes[..], [Note::TookOver { mapping, .. }] if mapping == "admin"));
    let roles = parse_data(&p.data).entries.roles;
    assert_eq!(roles.len(), 1);
    assert_eq!(roles[0].username, "admin:{{SessionName}}");
}

#[test]
fn deleting_a_mapping_removes_its_entry_but_nothing_else() {
    let first = plan(
        &[admin()],
        &live(&[("mapRoles", NODE_ROLE)]),
        &Settings::default(),
    );
    let p = plan(&[], &applied(&first), &Settings::default());
    assert!(p.changed);
    let roles = parse_data(&p.data).entries.roles;
    assert_eq!(roles.len(), 1);
    assert!(roles[0].arn.ends_with("NodeInstanceRole-1ABC"));
    assert!(matches!(&p.notes[..], [Note::Removed { .. }]));
    assert!(p.managed.is_empty());
}

fn hand_edit(plan: &Plan, from: &str, to: &str) -> LiveAwsAuth {
    let mut state = applied(plan);
    let data = state.data.as_mut().unwrap();
    let roles = data.get_mut("mapRoles").unwrap();
    assert!(roles.contains(from));
    *roles = roles.replace(from, to);
    state
}

#[test]
fn drift_is_repaired_by_default() {
    let first = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
    let mapping = with_status(admin(), &first);
    let edited = hand_edit(&first, "\"system:masters\"", "\"system:nodes\"");
    let p = plan(&[mapping], &edited, &Settings::default());
    match &p.outcomes["admin"] {
        Outcome::Rendered {
            drift: Some(drift), ..
        } => {
            assert!(drift.repaired);
            assert_eq!(drift.live[0].groups(), ["system:nodes"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.data, first.data);
}

#[test]
fn drift_is_left_in_place_in_report_mode() {
    let settings = Settings {
        drift: DriftPolicy::Report,
        ..Default::default()
    };
    let first = plan(&[admin()], &LiveAwsAuth::default(), &settings);
    let mapping = with_status(admin(), &first);
    let edited = hand_edit(&first, "\"system:masters\"", "\"system:nodes\"");
    let p = plan(&[mapping], &edited, &settings);
    match &p.outcomes["admin"] {
        Outcome::Rendered {
            drift: Some(drift), ..
        } => assert!(!drift.repaired),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.data, edited.data.clone().unwrap());
    assert!(!p.changed);
}

#[test]
fn a_spec_change_is_not_drift() {
    let first = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
    let mut mapping = with_status(admin(), &first);
    mapping.spec.groups = vec!["platform-admins".into()];
    let p = plan(
        &[mapping],
        &applied(&first),
        &Settings {
            drift: DriftPolicy::Report,
            ..Default::default()
        },
    );
    assert!(matches!(
        &p.outcomes["admin"],
        Outcome::Rendered { drift: None, .. }
    ));
    assert_eq!(
        parse_data(&p.data).entries.roles[0].groups,
        ["platform-admins"]
    );
}

#[test]
fn a_hand_deleted_managed_entry_is_restored() {
    let first = plan(
        &[admin()],
        &live(&[("mapRoles", NODE_ROLE)]),
        &Settings::default(),
    );
    let mapping = with_status(admin(), &first);
    let mut state = applied(&first);
    state
        .data
        .as_mut()
        .unwrap()
        .insert("mapRoles".into(), NODE_ROLE.into());
    let p = plan(&[mapping], &state, &Settings::default());
    assert!(
        matches!(&p.outcomes["admin"], Outcome::Rendered { drift: Some(d), .. } if d.live.is_empty())
    );
    assert_eq!(parse_data(&p.data).entries.roles.len(), 2);
}

#[test]
fn malformed_live_key_is_recovered_from_the_last_good_revision() {
    let good = live(&[("mapRoles", NODE_ROLE)]);
    let first = plan(&[admin()], &good, &Settings::default());
    let mut broken = applied(&first);
    broken.recovery = Some(source(4, &first, ManagedSet::default()));
    broken
        .data
        .as_mut()
        .unwrap()
        .insert("mapRoles".into(), "- rolearn: x\n bad: [\n".into());
    let p = plan(
        &[with_status(admin(), &first)],
        &broken,
        &Settings::default(),
    );
    assert!(p.blocked.is_none());
    assert!(
        matches!(&p.notes[..], [Note::Recovered { restored, revision: 4, .. }] if restored.len() == 1),
        "{:?}",
        p.notes
    );
    assert_eq!(parse_data(&p.data).entries, parse_data(&first.data).entries);
    assert!(p.changed);
}

#[test]
fn malformed_live_key_blocks_the_plan_without_recovery() {
    let mut broken = live(&[("mapRoles", "- rolearn: x\n bad: [\n")]);
    broken.recovery = Some(RecoverySource {
        revision: 1,
        data: ConfigMapData::from([("mapRoles".to_string(), NODE_ROLE.to_string())]),
        ..Default::default()
    });
    let settings = Settings {
        recover_malformed: false,
        ..Default::default()
    };
    let p = plan(&[admin()], &broken, &settings);
    assert!(matches!(
        p.blocked,
        Some(Blocked::LiveAwsAuthMalformed { .. })
    ));
    assert!(!p.changed);
    assert_eq!(p.data, broken.data.clone().unwrap());
    match &p.outcomes["admin"] {
        Outcome::Blocked { reason, message } => {
            assert_eq!(*reason, "LiveAwsAuthMalformed");
            assert!(message.contains("mapRoles"), "{message}");
            // The message says why, not "no good revision" (there is one).
            assert!(message.contains("--recover-malformed=false"), "{message}");
            assert!(!message.contains("no revision"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // Recovery on, but nothing to recover from.
    broken.recovery = None;
    let p = plan(&[admin()], &broken, &Settings::default());
    assert!(matches!(
        p.blocked,
        Some(Blocked::LiveAwsAuthMalformed {
            why: Unrecoverable::NoGoodRevision,
            ..
        })
    ));
}

/// A mapping whose entry does not fit is refused on its own (DoesNotFit); an aws-auth that is
/// too large even without any change blocks the write.
#[test]
fn the_size_limit_refuses_what_does_not_fit() {
    let settings = Settings {
        max_data_bytes: 100,
        ..Default::default()
    };
    let p = plan(&[admin()], &LiveAwsAuth::default(), &settings);
    assert!(p.blocked.is_none());
    match &p.outcomes["admin"] {
        outcome @ Outcome::DoesNotFit {
            bytes,
            limit: 100,
            kept: None,
            ..
        } => {
            assert!(*bytes > 100);
            let message = outcome.message();
            assert!(message.contains("over its 100-byte limit"), "{message}");
            assert!(message.contains("nothing is rendered"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.data.contains_key("mapRoles"));

    let big = live(&[("mapRoles", NODE_ROLE)]);
    let tiny = Settings {
        max_data_bytes: 10,
        ..Default::default()
    };
    let p = plan(&[admin()], &big, &tiny);
    match &p.blocked {
        Some(blocked @ Blocked::TooLarge { bytes, limit: 10 }) => {
            assert!(*bytes > 10);
            assert!(
                blocked
                    .to_string()
                    .contains("over the 10-byte ConfigMap limit")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.changed);
}

#[test]
fn account_mappings_render_into_map_accounts() {
    let mut account = admin();
    account.name = "acct".into();
    account.spec = IamIdentityMappingSpec {
        account: Some("444455556666".into()),
        ..Default::default()
    };
    let p = plan(&[account], &LiveAwsAuth::default(), &Settings::default());
    assert_eq!(p.data["mapAccounts"], "- \"444455556666\"\n");
}

#[test]
fn managed_set_annotation_round_trips() {
    let set = ManagedSet::new([
        PrincipalKey::role("arn:aws:iam::111122223333:role/Admin"),
        PrincipalKey::role("arn:aws-cn:iam::111122223333:role/x"),
        PrincipalKey::user("arn:aws:iam::111122223333:user/ops/Alice"),
        PrincipalKey::user("arn:aws:iam::444455556666:user/bob"),
        PrincipalKey::account("444455556666"),
    ]);
    let text = set.encode();
    assert_eq!(ManagedSet::decode(&text).unwrap(), set);
    assert!(ManagedSet::decode("not json").is_err());
    assert!(ManagedSet::decode("{\"version\":9}").is_err());
}

#[test]
fn settings_reject_bad_input_with_the_flag_name() {
    let err = Settings::default()
        .protect("admin")
        .unwrap_err()
        .to_string();
    assert!(err.contains("--protected-arn `admin`"), "{err}");
    let err = Settings::default()
        .with_group_policy(&["(".into()], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--allowed-groups `(`"), "{err}");
}

mod properties {
    //! The safety rule as a property: whatever aws-auth holds and whatever the mappings ask for,
    //! an entry the operator does not own is never changed or dropped, and the plan's own output
    //! is stable (planning again on it changes nothing).

    use super::*;
    use aws_auth_operator::awsauth::{ArnMapping, AwsAuthEntries, render_data};
    use proptest::prelude::*;

    /// A small pool, so that live entries, the managed set and mappings collide often.
    const ROLES: [&str; 6] = ["admin", "Admin", "dev", "node", "ci", "audit"];
    const USERS: [&str; 3] = ["alice", "ops/bob", "Alice"];

    fn role_arn(name: &str) -> String {
        format!("arn:aws:iam::111122223333:role/{name}")
    }

    fn user_arn(name: &str) -> String {
        format!("arn:aws:iam::111122223333:user/{name}")
    }

    fn live_mapping(arn: String) -> impl Strategy<Value = ArnMapping> {
        (
            prop::sample::select(vec!["hand", "system:node:{{EC2PrivateDNSName}}", "x"]),
            prop::collection::vec(
                prop::sample::select(vec!["view", "system:masters", "ops"]),
                0..3,
            ),
        )
            .prop_map(move |(username, groups)| ArnMapping {
                arn: arn.clone(),
                username: username.to_string(),
                groups: groups.into_iter().map(str::to_string).collect(),
                extra: Default::default(),
            })
    }

    fn live_entries() -> impl Strategy<Value = AwsAuthEntries> {
        (
            prop::collection::vec(
                prop::sample::select(ROLES.to_vec()).prop_flat_map(|n| live_mapping(role_arn(n))),
                0..6,
            ),
            prop::collection::vec(
                prop::sample::select(USERS.to_vec()).prop_flat_map(|n| live_mapping(user_arn(n))),
                0..3,
            ),
            prop::collection::vec(
                prop::sample::select(vec!["111122223333", "444455556666"]),
                0..2,
            ),
        )
            .prop_map(|(roles, users, accounts)| AwsAuthEntries {
                roles,
                users,
                accounts: accounts.into_iter().map(str::to_string).collect(),
            })
    }

    fn mappings() -> impl Strategy<Value = Vec<MappingInput>> {
        prop::collection::vec(
            (
                prop::sample::select(ROLES.to_vec()),
                prop::sample::select(vec!["mapped", "mapped:{{SessionName}}", ""]),
                0..100i64,
            ),
            0..5,
        )
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (role, username, created))| {
                    let mut m =
                        role_mapping(&format!("m{i}"), &role_arn(role), username, &["view"]);
                    m.creation_timestamp = at(created);
                    m
                })
                .collect()
        })
    }

    fn managed_keys() -> impl Strategy<Value = ManagedSet> {
        prop::collection::btree_set(prop::sample::select(ROLES.to_vec()), 0..4).prop_map(|names| {
            ManagedSet::new(names.into_iter().map(|n| PrincipalKey::role(&role_arn(n))))
        })
    }

    fn entries_of(data: &ConfigMapData) -> Vec<Entry> {
        parse_data(data).entries.iter().map(|(_, e)| e).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn entries_the_operator_does_not_own_are_kept_exactly(
            live_entries in live_entries(),
            managed in managed_keys(),
            mappings in mappings(),
            protect_admin in any::<bool>(),
        ) {
            let mut settings = Settings::default();
            if protect_admin {
                settings.protect(&role_arn("admin")).unwrap();
            }
            let live = LiveAwsAuth {
                data: Some(render_data(&live_entries)),
                managed: managed.clone(),
                recovery: None,
                frozen: false,
                mappings_incomplete: false,
            };
            let result = plan(&mappings, &live, &settings);
            let before = entries_of(live.data.as_ref().unwrap());
            let after = entries_of(&result.data);
            let taken: Vec<PrincipalKey> = result
                .outcomes
                .values()
                .filter_map(|o| match o {
                    Outcome::Rendered { entry, .. } => Some(entry.key()),
                    _ => None,
                })
                .collect();
            for entry in &before {
                let key = entry.key();
                let protected = protect_admin && key == PrincipalKey::role(&role_arn("admin"));
                let owned = managed.contains(&key) || taken.contains(&key);
                if protected || !owned {
                    prop_assert!(
                        after.contains(entry),
                        "lost or changed {:?}\nbefore: {:?}\nafter: {:?}\noutcomes: {:?}",
                        entry, before, after, result.outcomes
                    );
                }
            }
            // Applying the plan and planning again changes nothing (no write loop).
            if result.blocked.is_none() {
                let again = plan(&mappings, &applied(&result), &settings);
                prop_assert!(!again.changed, "second plan still changes: {:?}", again.rewritten);
            }
        }
    }
}

mod recovery {
    //! Recovery from history (findings 1 and 3): what comes back, and what never does.

    use super::*;

    const CONTRACTOR: &str = "- rolearn: arn:aws:iam::111122223333:role/contractor\n  username: contractor\n  groups:\n  - system:masters\n";
    const ALICE: &str =
        "- userarn: arn:aws:iam::111122223333:user/alice\n  username: alice\n  groups: []\n";

    fn revision_with_everything(managed: ManagedSet, ever_managed: ManagedSet) -> RecoverySource {
        RecoverySource {
            revision: 7,
            data: ConfigMapData::from([
                ("mapRoles".to_string(), format!("{NODE_ROLE}{CONTRACTOR}")),
                ("mapUsers".to_string(), ALICE.to_string()),
            ]),
            managed,
            ever_managed,
        }
    }

    fn restored(p: &Plan) -> Vec<String> {
        p.notes
            .iter()
            .flat_map(|n| match n {
                Note::Recovered { restored, .. } => restored.clone(),
                _ => Vec::new(),
            })
            .map(|e| e.principal().to_string())
            .collect()
    }

    /// A principal managed in the revision, or in any later one, never comes back unmanaged.
    #[test]
    fn a_principal_managed_in_or_after_the_revision_is_never_restored() {
        let contractor = ManagedSet::new([PrincipalKey::role(
            "arn:aws:iam::111122223333:role/contractor",
        )]);
        let alice = ManagedSet::new([PrincipalKey::user("arn:aws:iam::111122223333:user/alice")]);
        let mut broken = live(&[
            ("mapRoles", "- rolearn: x\n bad: [\n"),
            ("mapUsers", "- [\n"),
        ]);
        broken.recovery = Some(revision_with_everything(contractor.clone(), alice.clone()));
        let p = plan(&[], &broken, &Settings::default());
        assert!(p.blocked.is_none(), "{:?}", p.blocked);
        assert_eq!(
            restored(&p),
            ["arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC"]
        );
        let entries = parse_data(&p.data).entries;
        assert_eq!(entries.roles.len(), 1);
        assert!(entries.users.is_empty());

        // Without those records, both would be back: the guard is what keeps them out.
        broken.recovery = Some(revision_with_everything(
            ManagedSet::default(),
            ManagedSet::default(),
        ));
        let p = plan(&[], &broken, &Settings::default());
        assert_eq!(restored(&p).len(), 3);
    }

    /// A deleted aws-auth is rebuilt: the revision's unmanaged entries, and the mappings'
    /// entries; the revision's managed record applies again (so an entry it marked managed and
    /// no mapping renders stays gone).
    #[test]
    fn a_deleted_aws_auth_is_rebuilt_from_the_revision() {
        let contractor = ManagedSet::new([PrincipalKey::role(
            "arn:aws:iam::111122223333:role/contractor",
        )]);
        let deleted = LiveAwsAuth {
            data: None,
            managed: ManagedSet::default(),
            recovery: Some(revision_with_everything(contractor.clone(), contractor)),
            frozen: false,
            mappings_incomplete: false,
        };
        let p = plan(&[admin()], &deleted, &Settings::default());
        assert!(p.changed);
        let entries = parse_data(&p.data).entries;
        let roles: Vec<&str> = entries.roles.iter().map(|r| r.arn.as_str()).collect();
        assert_eq!(
            roles,
            [
                "arn:aws:iam::111122223333:role/admin",
                "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC"
            ]
        );
        assert_eq!(entries.users.len(), 1);
        assert!(matches!(
            &p.notes[0],
            Note::Recovered { section: None, revision: 7, restored, .. } if restored.len() == 2
        ));

        // With recovery off, only the managed entries come back, and a note says why.
        let settings = Settings {
            recover_malformed: false,
            ..Default::default()
        };
        let p = plan(&[admin()], &deleted, &settings);
        assert_eq!(parse_data(&p.data).entries.len(), 1);
        assert!(
            matches!(&p.notes[..], [Note::NotRecovered { reason }] if reason.contains("--recover-malformed=false")),
            "{:?}",
            p.notes
        );
        // A first start (no aws-auth, no history) has nothing to say.
        let p = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
        assert!(p.notes.is_empty());
    }
}

/// At the size limit: the oldest changes that fit are written, the younger are refused one by
/// one, and a mapping whose grown entry no longer fits keeps the entry it has.
#[test]
fn changes_that_do_not_fit_are_refused_youngest_first_and_served_entries_stay() {
    let mapping = |i: i64, username: &str| {
        let mut m = role_mapping(
            &format!("m{i}"),
            &format!("arn:aws:iam::111122223333:role/r{i}"),
            username,
            &["view"],
        );
        m.creation_timestamp = at(i);
        m
    };
    let small: Vec<MappingInput> = (0..3).map(|i| mapping(i, "u")).collect();
    let first = plan(&small, &LiveAwsAuth::default(), &Settings::default());
    let limit = data_size_of(&first.data) + 10;
    let settings = Settings {
        max_data_bytes: limit,
        ..Default::default()
    };
    // Two more mappings: neither fits the 10 bytes left.
    let mut five: Vec<MappingInput> = small
        .iter()
        .map(|m| with_status(m.clone(), &first))
        .collect();
    five.push(mapping(3, "u"));
    five.push(mapping(4, "u"));
    let p = plan(&five, &applied(&first), &settings);
    assert!(p.blocked.is_none());
    assert!(matches!(
        p.outcomes["m3"],
        Outcome::DoesNotFit { kept: None, .. }
    ));
    assert!(matches!(
        p.outcomes["m4"],
        Outcome::DoesNotFit { kept: None, .. }
    ));
    assert_eq!(p.data, first.data, "nothing partial is written");

    // With room for one more, the older of the two gets it.
    let roomier = Settings {
        max_data_bytes: limit + 80,
        ..Default::default()
    };
    let p = plan(&five, &applied(&first), &roomier);
    assert!(
        matches!(p.outcomes["m3"], Outcome::Rendered { .. }),
        "{:?}",
        p.outcomes["m3"]
    );
    assert!(matches!(p.outcomes["m4"], Outcome::DoesNotFit { .. }));
    assert!(data_size_of(&p.data) <= limit + 80);

    // m1 grows past the limit: its old entry stays served, and status says so.
    let mut grown = five[..3].to_vec();
    grown[1].spec.username = Some("g".repeat(500));
    let p = plan(&grown, &applied(&first), &settings);
    match &p.outcomes["m1"] {
        Outcome::DoesNotFit {
            kept: Some(kept), ..
        } => assert_eq!(kept.username(), Some("u")),
        other => panic!("{other:?}"),
    }
    assert_eq!(p.data, first.data);
    assert!(!p.changed);
}

fn data_size_of(data: &ConfigMapData) -> usize {
    aws_auth_operator::awsauth::data_size(data)
}

/// The principals are kept in a hash table (a new random order on every call): whatever comes
/// out in principal order (notes, the rendered text) must not depend on it.
#[test]
fn the_plan_does_not_depend_on_the_order_principals_are_visited_in() {
    let mappings: Vec<MappingInput> = (0..40)
        .map(|i| {
            role_mapping(
                &format!("team-{i:02}"),
                &format!("arn:aws:iam::111122223333:role/team-{i:02}"),
                &format!("team-{i:02}"),
                &["view"],
            )
        })
        .collect();
    let empty = live(&[("mapRoles", NODE_ROLE)]);
    let first = plan(&mappings, &empty, &Settings::default());
    let live = applied(&first);
    // Every other mapping deleted: twenty removals, noted in principal order.
    let kept: Vec<MappingInput> = mappings
        .iter()
        .step_by(2)
        .map(|m| with_status(m.clone(), &first))
        .collect();
    let deleting = plan(&kept, &live, &Settings::default());
    let removed: Vec<String> = deleting
        .notes
        .iter()
        .filter_map(|note| match note {
            Note::Removed { entry } => Some(entry.principal().to_string()),
            _ => None,
        })
        .collect();
    let mut sorted = removed.clone();
    sorted.sort();
    assert_eq!(removed.len(), 20);
    assert_eq!(removed, sorted, "removals in principal order");
    for _ in 0..20 {
        assert_eq!(plan(&mappings, &empty, &Settings::default()), first);
        assert_eq!(plan(&kept, &live, &Settings::default()), deleting);
    }
    assert!(!plan(&kept, &applied(&deleting), &Settings::default()).changed);
}

const SSO_V1: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef";
const SSO_V2: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_fedcba9876543210";

fn sso_mapping(resolved: Option<&str>) -> MappingInput {
    MappingInput {
        spec: IamIdentityMappingSpec {
            sso_permission_set: Some(aws_auth_operator::api::SsoPermissionSetRef {
                name: "Admin".into(),
            }),
            username: Some("sso:{{SessionName}}".into()),
            groups: vec!["ops".into()],
            ..Default::default()
        },
        resolved_arn: resolved.map(str::to_string),
        ..role_mapping("sso-admins", "unused", "unused", &[])
    }
}

#[test]
fn a_permission_set_renders_the_role_it_resolved_to_path_stripped() {
    let p = plan(
        &[sso_mapping(Some(SSO_V1))],
        &live(&[]),
        &Settings::default(),
    );
    let entry = rendered_entry(&p, "sso-admins");
    assert_eq!(
        entry.principal(),
        "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef"
    );
    assert_eq!(entry.groups(), ["ops"]);
}

#[test]
fn a_reprovisioned_permission_set_replaces_its_entry_in_one_plan() {
    let settings = Settings::default();
    let node = live(&[("mapRoles", NODE_ROLE)]);
    let first = plan(&[sso_mapping(Some(SSO_V1))], &node, &settings);
    let resolved_again = with_status(sso_mapping(Some(SSO_V2)), &first);
    let second = plan(&[resolved_again], &applied(&first), &settings);
    assert!(second.changed);
    let roles: Vec<String> = parse_data(&second.data)
        .entries
        .roles
        .iter()
        .map(|r| r.arn.clone())
        .collect();
    assert_eq!(
        roles,
        [
            "arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_fedcba9876543210",
            "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC",
        ]
    );
    assert!(matches!(
        second.outcomes["sso-admins"],
        Outcome::Rendered { drift: None, .. }
    ));
}

#[test]
fn an_unresolved_permission_set_keeps_the_entry_it_had_and_renders_nothing_new() {
    let settings = Settings::default();
    let first = plan(&[sso_mapping(Some(SSO_V1))], &live(&[]), &settings);
    let unresolved = with_status(sso_mapping(None), &first);
    let second = plan(
        std::slice::from_ref(&unresolved),
        &applied(&first),
        &settings,
    );
    assert!(!second.changed);
    assert_eq!(second.data, first.data);
    let Outcome::Unresolved {
        permission_set,
        kept,
    } = &second.outcomes["sso-admins"]
    else {
        panic!("{:?}", second.outcomes["sso-admins"]);
    };
    assert_eq!(permission_set, "Admin");
    assert_eq!(kept.as_ref(), Some(&rendered_entry(&first, "sso-admins")));

    // Never resolved: nothing at all.
    let fresh = plan(&[sso_mapping(None)], &live(&[]), &settings);
    assert!(matches!(
        fresh.outcomes["sso-admins"],
        Outcome::Unresolved { kept: None, .. }
    ));
    assert_eq!(fresh.managed_entries, 0);
}

#[test]
fn the_policy_applies_to_the_role_a_permission_set_resolved_to() {
    let mut settings = Settings::default();
    settings
        .protect("arn:aws:iam::111122223333:role/AWSReservedSSO_Admin_0123456789abcdef")
        .unwrap();
    let p = plan(&[sso_mapping(Some(SSO_V1))], &live(&[]), &settings);
    assert!(matches!(
        p.outcomes["sso-admins"],
        Outcome::Protected { .. }
    ));
}

/// While the mapping cache is not current (its watch re-listing), a managed entry whose mapping
/// is missing from the cache is kept, and said so; new entries are still written. Once the
/// cache is current, the missing mapping's entry goes.
#[test]
fn removals_wait_for_a_current_mapping_cache() {
    let viewer = role_mapping(
        "viewer",
        "arn:aws:iam::111122223333:role/viewer",
        "viewer",
        &["viewers"],
    );
    let first = plan(&[admin()], &LiveAwsAuth::default(), &Settings::default());
    let incomplete = LiveAwsAuth {
        mappings_incomplete: true,
        ..applied(&first)
    };
    // The admin mapping is missing from the cache, a new viewer mapping is in it.
    let held = plan(
        std::slice::from_ref(&viewer),
        &incomplete,
        &Settings::default(),
    );
    assert!(held.changed, "the new mapping is still written");
    assert!(
        held.data["mapRoles"].contains("role/admin"),
        "{:?}",
        held.data
    );
    assert!(held.data["mapRoles"].contains("role/viewer"));
    assert!(
        held.managed
            .contains(&PrincipalKey::role("arn:aws:iam::111122223333:role/admin")),
        "still managed"
    );
    let note = held
        .notes
        .iter()
        .find(|n| matches!(n, Note::KeptCacheNotCurrent { .. }))
        .expect("a note says why the entry stays");
    assert!(note.to_string().contains("re-listing"), "{note}");
    assert!(!held.notes.iter().any(|n| matches!(n, Note::Removed { .. })));

    let current = plan(&[viewer], &applied(&held), &Settings::default());
    assert!(!current.data["mapRoles"].contains("role/admin"));
    assert!(
        current
            .notes
            .iter()
            .any(|n| matches!(n, Note::Removed { .. }))
    );
}

/// `only` mode, the access-entry side not known yet (after a restart): an entry the operator
/// left out because the access entry served it stays out; an entry deleted by hand (the
/// mapping's status says what was written) is repaired; an entry in aws-auth stays.
#[test]
fn an_unknown_access_side_keeps_aws_auth_as_it_is() {
    let settings = Settings::default();
    let mut served = admin();
    served.served_by_access_entry = true;
    let first = plan(
        std::slice::from_ref(&served),
        &live(&[("mapRoles", NODE_ROLE)]),
        &settings,
    );
    assert!(matches!(
        first.outcomes["admin"],
        Outcome::ServedByAccessEntry { .. }
    ));
    let after = applied(&first);

    let mut restarted = with_status(admin(), &first);
    assert!(restarted.last_rendered.is_none());
    restarted.access_entry_unknown = true;
    let held = plan(std::slice::from_ref(&restarted), &after, &settings);
    assert!(!held.changed, "{:?}", held.notes);
    assert!(matches!(
        held.outcomes["admin"],
        Outcome::ServedByAccessEntry { .. }
    ));

    // Known and not served (mirror mode, or not confirmed): written back, and not as drift.
    restarted.access_entry_unknown = false;
    let back = plan(std::slice::from_ref(&restarted), &after, &settings);
    assert!(back.changed);
    assert!(matches!(
        back.outcomes["admin"],
        Outcome::Rendered { drift: None, .. }
    ));

    // Deleted by hand while rendered: repaired even while the access side is unknown.
    let rendered = with_status(admin(), &back);
    let mut deleted = applied(&back);
    deleted.data = Some(live(&[("mapRoles", NODE_ROLE)]).data.unwrap());
    let mut unknown = rendered.clone();
    unknown.access_entry_unknown = true;
    let repaired = plan(std::slice::from_ref(&unknown), &deleted, &settings);
    assert!(matches!(
        &repaired.outcomes["admin"],
        Outcome::Rendered { drift: Some(d), .. } if d.repaired
    ));
}

/// aws-auth and the access entries give a contested principal to the same mapping: both
/// planners rank mappings with `plan::oldest_first`, from the same objects
/// (`MappingInput::from_mapping`, the access-entry loop's `desired_mapping`). Creation times compare in whole
/// seconds: two mappings created within one second are ranked by name on both sides.
mod one_winner_on_both_sides {
    use super::*;
    use aws_auth_operator::accessentries::SyncReason;
    use aws_auth_operator::accessentries::runner::desired_mapping;
    use aws_auth_operator::accessentries::sync::{AuthenticationMode, Observed, plan_sync};
    use aws_auth_operator::api::IamIdentityMapping;
    use proptest::prelude::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/admin";

    fn mapping(name: &str, created_millis: Option<i64>) -> IamIdentityMapping {
        let spec = IamIdentityMappingSpec {
            arn: Some(ROLE.into()),
            username: Some(name.into()),
            groups: vec!["view".into()],
            ..Default::default()
        };
        let mut mapping = IamIdentityMapping::new(name, spec);
        mapping.metadata.creation_timestamp =
            created_millis.map(|ms| Time(Timestamp::from_millisecond(ms).unwrap()));
        mapping.metadata.generation = Some(1);
        mapping
    }

    /// The mapping aws-auth renders for the principal.
    fn aws_auth_winner(objects: &[IamIdentityMapping]) -> String {
        let inputs: Vec<MappingInput> = objects.iter().map(MappingInput::from_mapping).collect();
        let p = plan(&inputs, &LiveAwsAuth::default(), &Settings::default());
        let winners: Vec<&String> = p
            .outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Rendered { .. }))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(winners.len(), 1, "{:?}", p.outcomes);
        winners[0].clone()
    }

    /// The mapping the access-entry planner creates the entry for.
    fn access_entry_winner(objects: &[IamIdentityMapping]) -> String {
        let desired: Vec<_> = objects
            .iter()
            .map(|m| desired_mapping(m, None, &Settings::default()))
            .collect();
        let observed = Observed {
            mode: AuthenticationMode::Api,
            entries: Vec::new(),
            unreadable: Default::default(),
        };
        let p = plan_sync(&desired, &observed);
        let winners: Vec<&String> = p
            .outcomes
            .iter()
            .filter(|(_, o)| o.reason != SyncReason::Conflict)
            .map(|(name, _)| name)
            .collect();
        assert_eq!(winners.len(), 1, "{:?}", p.outcomes);
        assert_eq!(p.work.len(), 1);
        assert_eq!(p.work[0].mapping.as_ref(), Some(winners[0]));
        winners[0].clone()
    }

    #[test]
    fn the_same_mapping_wins_in_aws_auth_and_in_eks() {
        // (first, created at, second, created at, the winner); times in milliseconds.
        let cases = [
            ("young", Some(2_000_000), "old", Some(1_000_000), "old"),
            // Within one second: the name, not the milliseconds.
            ("a", Some(1_000_900), "b", Some(1_000_100), "a"),
            ("b", Some(1_000_100), "a", Some(1_000_900), "a"),
            // No creation time (a file never applied) comes last.
            ("a", None, "b", Some(5_000), "b"),
            ("b", None, "a", None, "a"),
        ];
        for (first, first_at, second, second_at, winner) in cases {
            let objects = [mapping(first, first_at), mapping(second, second_at)];
            assert_eq!(aws_auth_winner(&objects), winner, "{objects:?}");
            assert_eq!(access_entry_winner(&objects), winner, "{objects:?}");
        }
    }

    proptest! {
        #[test]
        fn both_planners_pick_the_same_winner(
            first in prop::option::of(0..3_000i64),
            second in prop::option::of(0..3_000i64),
            swap in any::<bool>(),
        ) {
            let mut objects = vec![mapping("m-one", first), mapping("m-two", second)];
            if swap {
                objects.reverse();
            }
            prop_assert_eq!(aws_auth_winner(&objects), access_entry_winner(&objects));
        }
    }
}
