//! `plan()`: every rule it owns, one scenario each.

use aws_auth_operator::api::{IamIdentityMappingSpec, RenderedEntry};
use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::awsauth::{ConfigMapData, Entry, parse_data};
use aws_auth_operator::plan::{
    Blocked, DriftPolicy, LiveAwsAuth, ManagedSet, MappingInput, Note, Outcome, Plan, Settings,
    plan,
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
        },
        last_rendered: None,
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
        last_good: None,
    }
}

/// Status after the operator applied `plan`: `last_rendered` from the outcome.
fn with_status(mut mapping: MappingInput, plan: &Plan) -> MappingInput {
    if let Some(Outcome::Rendered { entry, .. }) = plan.outcomes.get(&mapping.name) {
        mapping.last_rendered = Some(RenderedEntry::from(entry));
    }
    mapping
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
    assert_eq!(
        p.managed.0.iter().collect::<Vec<_>>(),
        vec![&PrincipalKey::role("arn:aws:iam::111122223333:role/admin")]
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

#[test]
fn user_arns_differing_in_case_are_different_principals() {
    let a = role_mapping("a", "arn:aws:iam::111122223333:user/Alice", "a", &[]);
    let b = role_mapping("b", "arn:aws:iam::111122223333:user/alice", "b", &[]);
    let p = plan(&[a, b], &LiveAwsAuth::default(), &Settings::default());
    assert!(
        p.outcomes
            .values()
            .all(|o| matches!(o, Outcome::Rendered { .. }))
    );
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
    managed_live.managed = ManagedSet::new(
        [PrincipalKey::role(
            "arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC",
        )]
        .into(),
    );
    let p = plan(&[], &managed_live, &settings);
    assert_eq!(p.data["mapRoles"], NODE_ROLE);
}

#[test]
fn group_policy() {
    let settings = Settings::default()
        .with_group_policy(&[], &["system:masters".into()])
        .unwrap();
    let p = plan(&[admin()], &LiveAwsAuth::default(), &settings);
    match &p.outcomes["admin"] {
        Outcome::GroupNotAllowed { group, rule } => {
            assert_eq!(group, "system:masters");
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
        matches!(&p.outcomes["no"], Outcome::GroupNotAllowed { group, .. } if group == "xteam-c")
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
            took_over: Some(previous),
            ..
        } => assert_eq!(previous.username(), Some("old")),
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
    assert!(p.managed.0.is_empty());
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
    broken.last_good = Some(first.data.clone());
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
    assert!(matches!(
        &p.notes[..],
        [Note::Recovered { restored: 1, .. }]
    ));
    assert_eq!(parse_data(&p.data).entries, parse_data(&first.data).entries);
    assert!(p.changed);
}

#[test]
fn malformed_live_key_blocks_the_plan_without_recovery() {
    let mut broken = live(&[("mapRoles", "- rolearn: x\n bad: [\n")]);
    broken.last_good = Some(ConfigMapData::from([(
        "mapRoles".to_string(),
        NODE_ROLE.to_string(),
    )]));
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
        }
        other => panic!("{other:?}"),
    }
    // Recovery on, but nothing to recover from.
    broken.last_good = None;
    let p = plan(&[admin()], &broken, &Settings::default());
    assert!(matches!(
        p.blocked,
        Some(Blocked::LiveAwsAuthMalformed { .. })
    ));
}

#[test]
fn the_size_limit_blocks_the_write() {
    let settings = Settings {
        max_data_bytes: 100,
        ..Default::default()
    };
    let p = plan(&[admin()], &LiveAwsAuth::default(), &settings);
    match &p.blocked {
        Some(blocked @ Blocked::TooLarge { bytes, limit: 100 }) => {
            assert!(*bytes > 100);
            assert!(
                blocked
                    .to_string()
                    .contains("over the 100-byte ConfigMap limit")
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
    let set = ManagedSet::new(
        [
            PrincipalKey::role("arn:aws:iam::111122223333:role/Admin"),
            PrincipalKey::role("arn:aws-cn:iam::111122223333:role/x"),
            PrincipalKey::user("arn:aws:iam::111122223333:user/ops/Alice"),
            PrincipalKey::user("arn:aws:iam::444455556666:user/bob"),
            PrincipalKey::account("444455556666"),
        ]
        .into(),
    );
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
            ManagedSet::new(
                names
                    .into_iter()
                    .map(|n| PrincipalKey::role(&role_arn(n)))
                    .collect(),
            )
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
                last_good: None,
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
