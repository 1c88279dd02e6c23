//! `reconcile()` against an in-memory Kubernetes API (tests/support/fake_api.rs): one scenario
//! per test, each checking the final aws-auth, its managed annotation, the mapping statuses and how
//! many writes reached the API server.

mod support;

use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::controller::reconcile::reconcile;
use aws_auth_operator::plan::{DriftPolicy, ManagedSet, Settings};
use aws_auth_operator::status::{CONFLICT, DRIFTED, READY, STALLED};
use aws_auth_operator::store::revisions::{self as history, HISTORY_CONFIGMAP};
use aws_auth_operator::store::writer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;
use support::*;

/// aws-auth holding the node role, the hand-added user and what the operator wrote for `admin`.
fn seed_with_managed_admin(fake: &FakeApi, admin_roles: &str) {
    let roles = format!("{NODE_ROLE}{admin_roles}");
    fake.seed_aws_auth(
        &[("mapRoles", &roles), ("mapUsers", HAND_USER)],
        Some(&managed_roles(&[ADMIN_ARN])),
    );
}

/// How the renderer writes the admin mapping (checked in `missing_aws_auth_is_created`).
const ADMIN_RENDERED: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin:{{SessionName}}\"\n  groups:\n    - \"system:masters\"\n";

/// Runs a first reconcile over the stored mappings (statuses written) and clears the request log.
async fn reconciled_once(fake: &FakeApi, settings: Settings) {
    let mappings = fake.mappings();
    let report = reconcile(&context(fake, settings), &mappings, time(500))
        .await
        .expect("first reconcile");
    assert_eq!(report.blocked, None);
    fake.clear_calls();
}

#[tokio::test]
async fn missing_aws_auth_is_created() {
    let fake = FakeApi::start();
    let mappings = store(&fake, vec![admin_mapping(), dev_mapping()]);

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    let cm = fake.aws_auth().expect("aws-auth created");
    assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
    let data = cm.data.unwrap();
    let entries = entries(&data);
    assert_eq!(role_arns(&entries), [ADMIN_ARN, DEV_ARN]);
    let admin = role(&entries, ADMIN_ARN).unwrap();
    assert_eq!(admin.username, "admin:{{SessionName}}");
    assert_eq!(admin.groups, ["system:masters"]);
    assert!(entries.users.is_empty() && entries.accounts.is_empty());
    assert_eq!(data.keys().collect::<Vec<_>>(), ["mapRoles"]);
    assert!(
        data["mapRoles"].starts_with(ADMIN_RENDERED),
        "{}",
        data["mapRoles"]
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([
            PrincipalKey::role(ADMIN_ARN),
            PrincipalKey::role(DEV_ARN)
        ]))
    );

    for name in ["admin", "developer"] {
        assert_eq!(cond2(&fake, name, READY), is("True", "Rendered"));
        assert_eq!(cond2(&fake, name, DRIFTED), is("False", "InSync"));
        assert!(aws_auth_operator::status::condition(&status(&fake, name), STALLED).is_none());
        assert_eq!(status(&fake, name).observed_generation, Some(1));
    }
    assert_eq!(
        status(&fake, "admin").rendered.unwrap().principal,
        ADMIN_ARN,
        "status shows what was rendered"
    );

    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(
        fake.count(|c| c.method == http::Method::POST && c.writes_configmap("aws-auth")),
        1
    );
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.writes_configmap("aws-auth"))
            .all(|c| c.query.contains("fieldManager=aws-auth-operator")),
        "writes carry the field manager"
    );
    assert_eq!(fake.status_writes(), 2);
    // Nothing existed before; the history holds what was written.
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    assert_eq!(revisions.len(), 1);
    assert_eq!(revisions[0].data, data);
    assert_eq!(revisions[0].origin, history::Origin::Operator);
    assert_eq!(report.aws_auth_writes, 1);
    assert_eq!(report.status_writes, 2);
    assert_eq!(report.conflicts_retried, 0);
    assert_eq!((report.managed_entries, report.unmanaged_entries), (2, 0));
}

#[tokio::test]
async fn unmanaged_entries_are_preserved() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", HAND_USER)], None);
    let mappings = store(&fake, vec![admin_mapping()]);

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    let data = fake.aws_auth_data();
    let entries = entries(&data);
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    let node = role(&entries, NODE_ROLE_ARN).unwrap();
    assert_eq!(node.username, "system:node:{{EC2PrivateDNSName}}");
    assert_eq!(node.groups, ["system:bootstrappers", "system:nodes"]);
    assert_eq!(user_arns(&entries), [HAND_USER_ARN]);
    assert_eq!(
        data["mapUsers"], HAND_USER,
        "an untouched section keeps its text byte for byte"
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)])),
        "only the mapping's principal is managed"
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(
        fake.count(|c| c.method == http::Method::PUT && c.writes_configmap("aws-auth")),
        1
    );
    assert_eq!(fake.status_writes(), 1);
    assert_eq!((report.managed_entries, report.unmanaged_entries), (1, 2));
}

#[tokio::test]
async fn conflict_on_write_rereads_and_retries() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mappings = store(&fake, vec![admin_mapping()]);
    fake.fail_next_replace_with_conflict();

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    assert_eq!(report.conflicts_retried, 1);
    assert_eq!(report.aws_auth_writes, 1);
    let entries = entries(&fake.aws_auth_data());
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    // The refused replace and the one that landed; aws-auth was read once per attempt.
    assert_eq!(fake.aws_auth_writes(), 2);
    assert_eq!(
        fake.count(|c| c.method == http::Method::GET && c.path.ends_with("/configmaps/aws-auth")),
        2
    );
    assert_eq!(fake.status_writes(), 1);
}

#[tokio::test]
async fn foreign_edit_between_read_and_write_is_kept() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mappings = store(&fake, vec![admin_mapping()]);
    // EKS adds a node group's role after the controller read aws-auth, before it writes.
    fake.on_before_replace(|state| {
        state.edit_aws_auth_data(|data| {
            data.get_mut("mapRoles").unwrap().push_str(NEW_NODE_ROLE);
        })
    });

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    assert_eq!(report.conflicts_retried, 1);
    let entries = entries(&fake.aws_auth_data());
    assert_eq!(
        role_arns(&entries),
        [ADMIN_ARN, NEW_NODE_ROLE_ARN, NODE_ROLE_ARN]
    );
    assert_eq!(
        role(&entries, NEW_NODE_ROLE_ARN).unwrap().groups,
        ["system:bootstrappers", "system:nodes"]
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)])),
        "the new node role stays unmanaged"
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(fake.aws_auth_writes(), 2, "one refused, one landed");
    assert_eq!(report.aws_auth_writes, 1);
    assert_eq!(fake.status_writes(), 1);
    // History: the state found, EKS's version (recorded before it was replaced), what was
    // written.
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    let origins: Vec<history::Origin> = revisions.iter().map(|r| r.origin).collect();
    use history::Origin::{Observed, Operator};
    assert_eq!(origins, [Observed, Observed, Operator]);
    assert_eq!(revisions[0].data["mapRoles"], NODE_ROLE);
    assert_eq!(
        revisions[1].data["mapRoles"],
        format!("{NODE_ROLE}{NEW_NODE_ROLE}")
    );
    assert_eq!(revisions[2].data, fake.aws_auth_data());
}

const BROKEN_ROLES: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC\n username: broken\n   groups: [\n";

/// aws-auth with a broken mapRoles, and a history whose newest good revision holds the node role.
fn seed_malformed_with_history(fake: &FakeApi) {
    let good = [
        ("mapRoles".to_string(), NODE_ROLE.to_string()),
        ("mapUsers".to_string(), HAND_USER.to_string()),
    ]
    .into();
    let state = history::State {
        data: &good,
        managed_annotation: None,
    };
    let (history_cm, recorded) = history::with_state(
        None,
        state,
        history::Origin::Operator,
        "seeded",
        time(0),
        10,
    )
    .unwrap();
    assert_eq!(recorded.revision, 1);
    fake.state().put_configmap(history_cm);
    fake.seed_aws_auth(&[("mapRoles", BROKEN_ROLES), ("mapUsers", HAND_USER)], None);
}

#[tokio::test]
async fn malformed_aws_auth_is_recovered_from_history() {
    let fake = FakeApi::start();
    seed_malformed_with_history(&fake);
    let mappings = store(&fake, vec![admin_mapping()]);

    let report = reconcile(
        &context_with_events(&fake, Settings::default()),
        &mappings,
        now(),
    )
    .await
    .unwrap();

    assert_eq!(report.blocked, None);
    let data = fake.aws_auth_data();
    let entries = entries(&data);
    assert_eq!(
        role_arns(&entries),
        [ADMIN_ARN, NODE_ROLE_ARN],
        "node role restored"
    );
    assert_eq!(user_arns(&entries), [HAND_USER_ARN]);
    assert_eq!(data["mapUsers"], HAND_USER);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(fake.status_writes(), 1);

    let events = fake.events();
    let recovered = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("RecoveredMalformedAwsAuth"))
        .unwrap_or_else(|| panic!("no RecoveredMalformedAwsAuth event in {events:?}"));
    assert_eq!(recovered.type_.as_deref(), Some("Warning"));
    let regarding = recovered.regarding.as_ref().unwrap();
    assert_eq!(regarding.kind.as_deref(), Some("ConfigMap"));
    assert_eq!(regarding.name.as_deref(), Some("aws-auth"));
    assert_eq!(recovered.metadata.namespace.as_deref(), Some("kube-system"));
    let note = recovered.note.as_deref().unwrap();
    assert!(
        note.contains("mapRoles") && note.contains("restored 1 unmanaged"),
        "{note}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("admin")),
        "a mapping rendered for the first time gets no event (its status says it): {events:?}"
    );

    // The broken text was saved before it was overwritten, then what was written.
    let (_, revisions) = writer::load(&kube::Api::namespaced(fake.client.clone(), "kube-system"))
        .await
        .unwrap();
    assert_eq!(revisions.len(), 3);
    assert_eq!(revisions[1].data["mapRoles"], BROKEN_ROLES);
    assert_eq!(revisions[2].data, data);
}

#[tokio::test]
async fn malformed_aws_auth_without_recovery_stalls_every_mapping() {
    let fake = FakeApi::start();
    seed_malformed_with_history(&fake);
    let mappings = store(&fake, vec![admin_mapping(), dev_mapping()]);
    let settings = Settings {
        recover_malformed: false,
        ..Settings::default()
    };

    let report = reconcile(&context_with_events(&fake, settings), &mappings, now())
        .await
        .unwrap();

    assert_eq!(report.blocked, Some("LiveAwsAuthMalformed"));
    assert_eq!(
        fake.aws_auth_data()["mapRoles"],
        BROKEN_ROLES,
        "nothing written"
    );
    assert_eq!(fake.managed_annotation(), None);
    assert_eq!(fake.aws_auth_writes(), 0);
    // Only the broken state is recorded, as the operator found it (the other write records the
    // operator's settings, once per start, for `rollback`).
    assert_eq!(fake.count(|c| c.writes_configmap(HISTORY_CONFIGMAP)), 2);
    let (_, revisions) = writer::load(&kube::Api::namespaced(fake.client.clone(), "kube-system"))
        .await
        .unwrap();
    assert_eq!(
        revisions.len(),
        2,
        "the seeded revision and the broken state"
    );
    let expected_error = aws_auth_operator::awsauth::parse_data(&fake.aws_auth_data())
        .diagnostics
        .iter()
        .find(|d| d.key == "mapRoles" && d.entry.is_none())
        .unwrap()
        .to_string();
    for name in ["admin", "developer"] {
        assert_eq!(
            cond2(&fake, name, STALLED),
            is("True", "LiveAwsAuthMalformed")
        );
        let (ready, reason, message) = cond(&fake, name, READY);
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("False", "LiveAwsAuthMalformed")
        );
        assert!(
            message.contains(&expected_error),
            "{message} lacks {expected_error}"
        );
        assert!(status(&fake, name).rendered.is_none());
    }
    assert_eq!(fake.status_writes(), 2);
    assert!(
        fake.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("LiveAwsAuthMalformed")
                && e.type_.as_deref() == Some("Warning")),
        "{:?}",
        fake.events()
    );
}

/// The admin entry with its groups changed by hand.
const ADMIN_HAND_EDITED: &str = "- rolearn: arn:aws:iam::111122223333:role/admin\n  username: admin:{{SessionName}}\n  groups:\n  - system:masters\n  - extra-by-hand\n";

#[tokio::test]
async fn drift_is_repaired_by_default() {
    let fake = FakeApi::start();
    seed_with_managed_admin(&fake, ADMIN_RENDERED);
    store(&fake, vec![admin_mapping()]);
    reconciled_once(&fake, Settings::default()).await;
    assert_eq!(cond2(&fake, "admin", DRIFTED), is("False", "InSync"));
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapRoles".into(), format!("{NODE_ROLE}{ADMIN_HAND_EDITED}"));
    });

    let report = reconcile(
        &context(&fake, Settings::default()),
        &fake.mappings(),
        now(),
    )
    .await
    .unwrap();

    let entries = entries(&fake.aws_auth_data());
    assert_eq!(
        role(&entries, ADMIN_ARN).unwrap().groups,
        ["system:masters"],
        "repaired"
    );
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    assert_eq!(user_arns(&entries), [HAND_USER_ARN]);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    let (drifted, reason, message) = cond(&fake, "admin", DRIFTED);
    assert_eq!((drifted.as_str(), reason.as_str()), ("False", "Repaired"));
    assert!(message.contains("extra-by-hand"), "{message}");
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(status(&fake, "admin").last_drift_repair, Some(now()));
    assert_eq!(report.drift_repairs, 1);
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(fake.status_writes(), 1);

    // The next resyncs write nothing: the condition keeps saying what was repaired, and when.
    fake.clear_calls();
    let ctx = context(&fake, Settings::default());
    for second in [2_000, 3_000] {
        reconcile(&ctx, &fake.mappings(), time(second))
            .await
            .unwrap();
        assert_eq!(cond2(&fake, "admin", DRIFTED), is("False", "Repaired"));
        assert_eq!(status(&fake, "admin").last_drift_repair, Some(now()));
        assert_eq!((fake.aws_auth_writes(), fake.status_writes()), (0, 0));
    }
}

#[tokio::test]
async fn drift_is_reported_with_drift_policy_report() {
    let fake = FakeApi::start();
    seed_with_managed_admin(&fake, ADMIN_RENDERED);
    store(&fake, vec![admin_mapping()]);
    let report_only = || Settings {
        drift: DriftPolicy::Report,
        ..Settings::default()
    };
    reconciled_once(&fake, report_only()).await;
    let edited = format!("{NODE_ROLE}{ADMIN_HAND_EDITED}");
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapRoles".into(), edited.clone());
    });

    let report = reconcile(&context(&fake, report_only()), &fake.mappings(), now())
        .await
        .unwrap();

    assert_eq!(
        fake.aws_auth_data()["mapRoles"],
        edited,
        "the hand edit is left in place"
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    let (drifted, reason, message) = cond(&fake, "admin", DRIFTED);
    assert_eq!((drifted.as_str(), reason.as_str()), ("True", "HandEdited"));
    assert!(
        message.contains("live arn:aws:iam::111122223333:role/admin -> admin:{{SessionName}} [system:masters, extra-by-hand]")
            && message.contains("desired arn:aws:iam::111122223333:role/admin -> admin:{{SessionName}} [system:masters]"),
        "{message}"
    );
    assert_eq!(cond2(&fake, "admin", READY), is("False", "Drifted"));
    assert_eq!(status(&fake, "admin").last_drift_repair, None);
    assert_eq!(report.drift_repairs, 0);
    assert_eq!(fake.aws_auth_writes(), 0);
    assert_eq!(fake.status_writes(), 1);

    // Reported once: the next resync writes nothing.
    fake.clear_calls();
    reconcile(
        &context(&fake, report_only()),
        &fake.mappings(),
        time(2_000),
    )
    .await
    .unwrap();
    assert_eq!((fake.aws_auth_writes(), fake.status_writes()), (0, 0));
}

#[tokio::test]
async fn deleted_mapping_entry_is_removed() {
    let fake = FakeApi::start();
    // Admin and developer were both managed; the developer mapping has been deleted since.
    let dev_rendered = "- rolearn: \"arn:aws:iam::111122223333:role/developer\"\n  username: \"dev:{{SessionName}}\"\n  groups:\n    - \"developers\"\n";
    let roles = format!("{NODE_ROLE}{ADMIN_RENDERED}{dev_rendered}");
    fake.seed_aws_auth(
        &[("mapRoles", &roles), ("mapUsers", HAND_USER)],
        Some(&managed_roles(&[ADMIN_ARN, DEV_ARN])),
    );
    let mappings = store(&fake, vec![admin_mapping()]);

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    let data = fake.aws_auth_data();
    let entries = entries(&data);
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    assert_eq!(user_arns(&entries), [HAND_USER_ARN]);
    assert_eq!(data["mapUsers"], HAND_USER);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(fake.status_writes(), 1);
    assert_eq!((report.managed_entries, report.unmanaged_entries), (1, 2));
}

#[tokio::test]
async fn older_mapping_wins_a_shared_principal() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    // `a-newer` sorts first by name but was created later: age decides, not name.
    let older = role_mapping("z-older", ADMIN_ARN, "older", &["system:masters"], 0);
    let newer = role_mapping("a-newer", ADMIN_ARN, "newer", &["viewers"], 100);
    let mappings = store(&fake, vec![newer, older]);

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    let entries = entries(&fake.aws_auth_data());
    let admin = role(&entries, ADMIN_ARN).unwrap();
    assert_eq!(
        (admin.username.as_str(), admin.groups.as_slice()),
        ("older", &["system:masters".to_string()][..])
    );
    assert_eq!(
        entries.roles.iter().filter(|r| r.arn == ADMIN_ARN).count(),
        1
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    assert_eq!(cond2(&fake, "z-older", READY), is("True", "Rendered"));
    // The winner says who else claims it.
    let (conflict, reason, message) = cond(&fake, "z-older", CONFLICT);
    assert_eq!(
        (conflict.as_str(), reason.as_str()),
        ("False", "OldestWins")
    );
    assert!(message.contains("`a-newer`"), "{message}");
    let (conflict, reason, message) = cond(&fake, "a-newer", CONFLICT);
    assert_eq!((conflict.as_str(), reason.as_str()), ("True", "Conflict"));
    assert!(message.contains("`z-older`"), "{message}");
    assert_eq!(cond2(&fake, "a-newer", STALLED), is("True", "Conflict"));
    assert_eq!(cond2(&fake, "a-newer", READY), is("False", "Conflict"));
    assert!(status(&fake, "a-newer").rendered.is_none());
    assert_eq!(report.mappings_in_conflict, 1);
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(fake.status_writes(), 2);
}

#[tokio::test]
async fn protected_principal_is_never_touched() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mut settings = Settings::default();
    settings.protect(NODE_ROLE_ARN).unwrap();
    let takeover = role_mapping("nodes", NODE_ROLE_ARN, "hijacked", &["system:masters"], 0);
    let mappings = store(&fake, vec![takeover, admin_mapping()]);

    let report = reconcile(&context(&fake, settings), &mappings, now())
        .await
        .unwrap();

    let data = fake.aws_auth_data();
    let entries = entries(&data);
    let node = role(&entries, NODE_ROLE_ARN).unwrap();
    assert_eq!(node.username, "system:node:{{EC2PrivateDNSName}}");
    assert_eq!(node.groups, ["system:bootstrappers", "system:nodes"]);
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)])),
        "a protected principal is never managed"
    );
    let (conflict, reason, message) = cond(&fake, "nodes", CONFLICT);
    assert_eq!(
        (conflict.as_str(), reason.as_str()),
        ("True", "ProtectedPrincipal")
    );
    assert!(message.contains(NODE_ROLE_ARN), "{message}");
    assert_eq!(
        cond2(&fake, "nodes", STALLED),
        is("True", "ProtectedPrincipal")
    );
    assert_eq!(
        cond2(&fake, "nodes", READY),
        is("False", "ProtectedPrincipal")
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(report.mappings_in_conflict, 1);
    assert_eq!(fake.aws_auth_writes(), 1, "the admin entry is added");
    assert_eq!(fake.status_writes(), 2);
}

#[tokio::test]
async fn denied_group_is_not_rendered() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let settings = Settings::default()
        .with_group_policy(&[], &["system:masters".into()])
        .unwrap();
    let mappings = store(&fake, vec![admin_mapping(), dev_mapping()]);

    let report = reconcile(&context(&fake, settings), &mappings, now())
        .await
        .unwrap();

    let entries = entries(&fake.aws_auth_data());
    assert_eq!(
        role_arns(&entries),
        [DEV_ARN, NODE_ROLE_ARN],
        "admin is not rendered"
    );
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(DEV_ARN)]))
    );
    let (stalled, reason, message) = cond(&fake, "admin", STALLED);
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "PolicyViolation")
    );
    assert!(
        message.contains("system:masters") && message.contains("--denied-groups"),
        "{message}"
    );
    assert_eq!(cond2(&fake, "admin", READY), is("False", "PolicyViolation"));
    assert!(status(&fake, "admin").rendered.is_none());
    assert_eq!(cond2(&fake, "developer", READY), is("True", "Rendered"));
    assert_eq!(report.blocked, None);
    assert_eq!(fake.aws_auth_writes(), 1);
    assert_eq!(fake.status_writes(), 2);
}

/// A mapping that names a Kubernetes identity as its username, with no group at all, passes a
/// group policy that denies every `system:` group; the username policy refuses it: Stalled,
/// with a Warning event that names the username, and nothing rendered.
#[tokio::test]
async fn reserved_username_is_not_rendered() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let settings = Settings::default()
        .with_group_policy(&[], &["system:masters".into(), "system:.*".into()])
        .unwrap();
    let impostor = role_mapping(
        "impostor",
        "arn:aws:iam::111122223333:role/mallory",
        "system:kube-controller-manager",
        &[],
        5,
    );
    let mappings = store(&fake, vec![impostor, dev_mapping()]);

    reconcile(&context_with_events(&fake, settings), &mappings, now())
        .await
        .unwrap();

    let data = fake.aws_auth_data();
    assert_eq!(role_arns(&entries(&data)), [DEV_ARN, NODE_ROLE_ARN]);
    assert!(!data["mapRoles"].contains("kube-controller-manager"));
    let (stalled, reason, message) = cond(&fake, "impostor", STALLED);
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "PolicyViolation")
    );
    assert!(
        message.starts_with(
            "username `system:kube-controller-manager` is not allowed: it starts with `system:`"
        ),
        "{message}"
    );
    assert_eq!(
        cond2(&fake, "impostor", READY),
        is("False", "PolicyViolation")
    );
    let events = fake.events();
    let event = events
        .iter()
        .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("impostor"))
        .unwrap_or_else(|| panic!("no event about the refused mapping in {events:?}"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.reason.as_deref(), Some("PolicyViolation"));
    assert!(
        event
            .note
            .as_deref()
            .is_some_and(|n| n.contains("system:kube-controller-manager")),
        "{event:?}"
    );
}

#[tokio::test]
async fn second_reconcile_writes_nothing() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", HAND_USER)], None);
    let mut settings = Settings::default();
    settings.protect(NODE_ROLE_ARN).unwrap();
    let conflicting = role_mapping("admin-too", ADMIN_ARN, "x", &["viewers"], 50);
    let protected = role_mapping("nodes", NODE_ROLE_ARN, "x", &["viewers"], 60);
    store(
        &fake,
        vec![admin_mapping(), dev_mapping(), conflicting, protected],
    );
    let ctx = context(&fake, settings);

    // The controller's clock has nanoseconds; the API server keeps whole seconds.
    let precise = Time(Timestamp::new(1_790_000_500, 123_456_789).unwrap());
    let first = reconcile(&ctx, &fake.mappings(), precise).await.unwrap();
    assert_eq!((first.aws_auth_writes, first.status_writes), (1, 4));
    let data_after_first = fake.aws_auth_data();
    fake.clear_calls();

    // Later, with the mappings as the reflector now sees them (statuses included).
    let second = reconcile(&ctx, &fake.mappings(), now()).await.unwrap();

    assert_eq!(fake.aws_auth_writes(), 0);
    assert_eq!(fake.status_writes(), 0);
    assert_eq!(
        fake.count(|c| c.method != http::Method::GET),
        0,
        "{:?}",
        fake.calls()
    );
    assert_eq!((second.aws_auth_writes, second.status_writes), (0, 0));
    assert_eq!(fake.aws_auth_data(), data_after_first);
    assert_eq!(second.mappings_in_conflict, 2);
}

/// History keeps distinct states: the state found (a foreign one), a burst of the operator's
/// writes coalesced into its last state, a later write of its own, trimmed to the limit.
#[tokio::test]
async fn history_keeps_distinct_states_and_coalesces_a_burst() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let ctx = aws_auth_operator::controller::reconcile::Context {
        history_limit: 2,
        ..context(&fake, Settings::default())
    };
    let seeded = fake.aws_auth_data();

    // A burst, one second apart: add admin, add developer, remove developer.
    store(&fake, vec![admin_mapping()]);
    reconcile(&ctx, &fake.mappings(), time(1)).await.unwrap();
    store(&fake, vec![dev_mapping()]);
    reconcile(&ctx, &fake.mappings(), time(2)).await.unwrap();
    fake.state().mappings.remove("developer");
    reconcile(&ctx, &fake.mappings(), time(3)).await.unwrap();
    assert_eq!(fake.aws_auth_writes(), 3);
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(
        revisions[0].data, seeded,
        "the state before the burst stays"
    );
    assert_eq!(revisions[0].origin, history::Origin::Observed);
    assert_eq!(revisions[1].data, fake.aws_auth_data());
    assert_eq!(revisions[1].time, time(3));
    assert!(
        revisions[1].reason.contains("mapRoles"),
        "{}",
        revisions[1].reason
    );

    // An idle reconcile reads no history at all.
    fake.clear_calls();
    reconcile(&ctx, &fake.mappings(), time(4)).await.unwrap();
    assert_eq!(fake.count(|c| c.path.ends_with(HISTORY_CONFIGMAP)), 0);

    // Much later, another write: a revision of its own; the limit of 2 drops the oldest.
    store(&fake, vec![dev_mapping()]);
    reconcile(&ctx, &fake.mappings(), time(600)).await.unwrap();
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    let times: Vec<_> = revisions.iter().map(|r| r.time.clone()).collect();
    assert_eq!(times, [time(3), time(600)]);
}

/// A hand edit between the operator's writes is captured even when nothing needs writing.
#[tokio::test]
async fn a_foreign_edit_is_recorded_even_without_a_write() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let ctx = context(&fake, Settings::default());
    store(&fake, vec![admin_mapping()]);
    reconcile(&ctx, &fake.mappings(), time(1)).await.unwrap();
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapUsers".to_string(), HAND_USER.to_string());
    });
    fake.clear_calls();
    reconcile(&ctx, &fake.mappings(), time(2)).await.unwrap();
    assert_eq!(
        fake.aws_auth_writes(),
        0,
        "nothing of the operator's changed"
    );
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    let newest = revisions.last().unwrap();
    assert_eq!(newest.origin, history::Origin::Observed);
    assert_eq!(newest.data["mapUsers"], HAND_USER);
}

// Beyond the list: paths of reconcile() the scenarios above do not reach.

#[tokio::test]
async fn aws_auth_created_by_someone_else_first_is_replaced_not_overwritten() {
    let fake = FakeApi::start();
    let mappings = store(&fake, vec![admin_mapping()]);
    // aws-auth does not exist when read; EKS creates it before the controller's create lands.
    fake.on_before_create(|state| state.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None));

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    assert_eq!(report.conflicts_retried, 1, "AlreadyExists is a 409 too");
    let entries = entries(&fake.aws_auth_data());
    assert_eq!(role_arns(&entries), [ADMIN_ARN, NODE_ROLE_ARN]);
    assert_eq!(
        managed_set(&fake),
        ManagedSet::new(BTreeSet::from([PrincipalKey::role(ADMIN_ARN)]))
    );
    assert_eq!(
        fake.count(|c| c.method == http::Method::POST && c.writes_configmap("aws-auth")),
        1
    );
    assert_eq!(
        fake.count(|c| c.method == http::Method::PUT && c.writes_configmap("aws-auth")),
        1
    );
    // EKS's version was saved before it was replaced, then what was written.
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[0].data["mapRoles"], NODE_ROLE);
    assert_eq!(revisions[1].data, fake.aws_auth_data());
}

#[tokio::test]
async fn gives_up_after_five_conflicts_in_a_row() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mappings = store(&fake, vec![admin_mapping()]);
    for _ in 0..5 {
        fake.fail_next_replace_with_conflict();
    }

    let err = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap_err();

    assert_eq!(err.reason(), "TooManyConflicts");
    assert_eq!(fake.aws_auth_data()["mapRoles"], NODE_ROLE);
    assert_eq!(fake.aws_auth_writes(), 5);
    assert_eq!(
        fake.status_writes(),
        0,
        "no status claims a write that did not happen"
    );
}

#[tokio::test]
async fn mapping_deleted_before_its_status_patch_is_not_an_error() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mut mappings = store(&fake, vec![admin_mapping()]);
    // The reflector store still holds `developer`; the API server no longer does.
    mappings.push(std::sync::Arc::new(dev_mapping()));

    let report = reconcile(&context(&fake, Settings::default()), &mappings, now())
        .await
        .unwrap();

    assert_eq!(fake.status_writes(), 2, "both were tried");
    assert_eq!(report.status_writes, 1, "only the one that landed counts");
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    // Rendered for now; the next reconcile, without it in the store, removes it.
    assert!(role(&entries(&fake.aws_auth_data()), DEV_ARN).is_some());
    reconcile(
        &context(&fake, Settings::default()),
        &fake.mappings(),
        now(),
    )
    .await
    .unwrap();
    assert_eq!(
        role_arns(&entries(&fake.aws_auth_data())),
        [ADMIN_ARN, NODE_ROLE_ARN]
    );
}

#[tokio::test]
async fn takeover_of_an_unmanaged_entry_saves_it_first_and_tells() {
    let fake = FakeApi::start();
    let hand_admin = "- rolearn: arn:aws:iam::111122223333:role/admin\n  username: admin-by-hand\n  groups:\n  - system:masters\n";
    fake.seed_aws_auth(&[("mapRoles", &format!("{NODE_ROLE}{hand_admin}"))], None);
    let mappings = store(&fake, vec![admin_mapping()]);

    reconcile(
        &context_with_events(&fake, Settings::default()),
        &mappings,
        now(),
    )
    .await
    .unwrap();

    let entries = entries(&fake.aws_auth_data());
    assert_eq!(
        role(&entries, ADMIN_ARN).unwrap().username,
        "admin:{{SessionName}}"
    );
    assert_eq!(
        role_arns(&entries),
        [ADMIN_ARN, NODE_ROLE_ARN],
        "replaced, not duplicated"
    );
    // The annotation records the admin as managed, and the entry it replaced, to give back.
    let managed = managed_set(&fake);
    assert!(managed.contains(&PrincipalKey::role(ADMIN_ARN)));
    assert_eq!(managed.len(), 1);
    let original = &managed.originals()[&PrincipalKey::role(ADMIN_ARN)];
    assert_eq!(original[0].username(), Some("admin-by-hand"));
    let revisions = history::decode(&fake.configmap(HISTORY_CONFIGMAP).unwrap()).unwrap();
    assert!(revisions[0].data["mapRoles"].contains("admin-by-hand"));
    let events = fake.events();
    let took_over = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("TookOver"))
        .unwrap_or_else(|| panic!("no TookOver event in {events:?}"));
    assert_eq!(
        took_over.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("admin")
    );
    assert_eq!(
        took_over.metadata.namespace.as_deref(),
        Some("default"),
        "cluster-scoped object, event in default"
    );
    assert!(
        fake.calls().iter().any(
            |c| c.method == http::Method::POST && c.path == "/api/v1/namespaces/default/events"
        )
    );
}

/// Makes the admin mapping invalid (a group with a space), as a new generation.
fn bad_edit_of_admin(fake: &FakeApi) {
    let mut state = fake.state();
    let admin = state.mappings.get_mut("admin").unwrap();
    admin.spec.groups = vec!["system masters".into()];
    admin.metadata.generation = Some(2);
}

#[tokio::test]
async fn a_bad_edit_keeps_the_last_valid_entry_on_later_reconciles_too() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    store(&fake, vec![admin_mapping()]);
    reconciled_once(&fake, Settings::default()).await;

    // A typo: a group with a space. The controller must keep serving the last valid entry.
    bad_edit_of_admin(&fake);
    let ctx = context(&fake, Settings::default());
    reconcile(&ctx, &fake.mappings(), time(600)).await.unwrap();
    assert_eq!(cond2(&fake, "admin", READY).0, "False");
    assert!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some(),
        "kept after one reconcile"
    );

    // Nothing changed since; the periodic resync runs again.
    reconcile(&ctx, &fake.mappings(), now()).await.unwrap();
    assert_eq!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN).map(|r| r.groups.clone()),
        Some(vec!["system:masters".to_string()]),
        "the last valid entry must survive every later reconcile, not only the first"
    );
}

#[tokio::test]
async fn a_bad_edit_during_a_blocked_reconcile_keeps_the_last_valid_entry() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    store(&fake, vec![admin_mapping()]);
    reconciled_once(&fake, Settings::default()).await;
    let good = fake.aws_auth_data();
    let no_recovery = || Settings {
        recover_malformed: false,
        ..Settings::default()
    };

    // Someone breaks mapUsers: nothing may be written, the admin entry stays in aws-auth.
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapUsers".into(), "- userarn: [\n".into());
    });
    reconcile(&context(&fake, no_recovery()), &fake.mappings(), time(600))
        .await
        .unwrap();
    assert_eq!(
        cond2(&fake, "admin", STALLED),
        is("True", "LiveAwsAuthMalformed")
    );
    assert!(role(&parse_roles(&fake), ADMIN_ARN).is_some());
    assert!(
        status(&fake, "admin").rendered.is_some(),
        "aws-auth still holds the entry, so status.rendered must still say so"
    );

    // Meanwhile the admin mapping gets a typo; then aws-auth is fixed.
    bad_edit_of_admin(&fake);
    fake.state().edit_aws_auth_data(|data| *data = good.clone());
    reconcile(&context(&fake, no_recovery()), &fake.mappings(), now())
        .await
        .unwrap();
    assert!(
        role(&parse_roles(&fake), ADMIN_ARN).is_some(),
        "the last valid entry must stay: a typo must not lock the admins out"
    );
}

fn parse_roles(fake: &FakeApi) -> aws_auth_operator::awsauth::AwsAuthEntries {
    aws_auth_operator::awsauth::parse_data(&fake.aws_auth_data()).entries
}

#[tokio::test]
async fn users_and_accounts_round_trip_through_the_annotation() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", HAND_USER)], None);
    let bob = role_mapping(
        "bob",
        "arn:aws:iam::111122223333:user/team/bob",
        "bob",
        &["devs"],
        0,
    );
    let partner = account_mapping("partner", "444455556666", 1);
    let role_with_path = role_mapping(
        "platform",
        "arn:aws:iam::111122223333:role/teams/Platform-Admin",
        "platform",
        &["platform"],
        2,
    );
    store(&fake, vec![bob, partner, role_with_path]);
    let ctx = context(&fake, Settings::default());

    reconcile(&ctx, &fake.mappings(), time(500)).await.unwrap();
    let live = entries(&fake.aws_auth_data());
    assert_eq!(
        user_arns(&live),
        [HAND_USER_ARN, "arn:aws:iam::111122223333:user/team/bob"]
    );
    assert_eq!(live.accounts, ["444455556666"]);
    assert!(
        role(&live, "arn:aws:iam::111122223333:role/Platform-Admin").is_some(),
        "role path stripped: {:?}",
        role_arns(&live)
    );
    assert_eq!(managed_set(&fake).len(), 3);
    for name in ["bob", "partner", "platform"] {
        assert_eq!(cond2(&fake, name, READY), is("True", "Rendered"), "{name}");
    }
    fake.clear_calls();

    let second = reconcile(&ctx, &fake.mappings(), now()).await.unwrap();
    assert_eq!(
        (fake.aws_auth_writes(), fake.status_writes()),
        (0, 0),
        "{second:?}"
    );

    // Deleting them removes exactly their entries.
    fake.state().mappings.clear();
    reconcile(&ctx, &fake.mappings(), now()).await.unwrap();
    let entries = entries(&fake.aws_auth_data());
    assert_eq!(role_arns(&entries), [NODE_ROLE_ARN]);
    assert_eq!(user_arns(&entries), [HAND_USER_ARN]);
    assert!(entries.accounts.is_empty());
    assert_eq!(managed_set(&fake), ManagedSet::default());
}

/// An aws-auth just under the 1 MiB ConfigMap limit fits in the history too: revisions are
/// compressed.
#[tokio::test]
async fn aws_auth_close_to_the_limit_is_recorded_compressed() {
    let fake = FakeApi::start();
    let mut roles = String::new();
    for i in 0.. {
        if roles.len() > 1_040_000 {
            break;
        }
        roles.push_str(&format!(
            "- rolearn: arn:aws:iam::111122223333:role/node-{i:08}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups:\n  - system:nodes\n"
        ));
    }
    fake.seed_aws_auth(&[("mapRoles", &roles)], None);
    assert!(aws_auth_operator::awsauth::data_size(&fake.aws_auth_data()) < 1024 * 1024);
    // A user mapping: only mapUsers is rewritten, so the new data stays under 1 MiB.
    let bob = role_mapping(
        "bob",
        "arn:aws:iam::111122223333:user/bob",
        "bob",
        &["devs"],
        0,
    );
    let mappings = store(&fake, vec![bob]);

    let report = reconcile(
        &context_with_events(&fake, Settings::default()),
        &mappings,
        now(),
    )
    .await
    .unwrap();

    assert_eq!(report.aws_auth_writes, 1);
    assert_eq!(cond2(&fake, "bob", READY).0, "True");
    let history_cm = fake.configmap(HISTORY_CONFIGMAP).unwrap();
    let revisions = history::decode(&history_cm).unwrap();
    assert_eq!(revisions.len(), 2, "the state found and the state written");
    let stored: usize = history_cm
        .binary_data
        .iter()
        .flatten()
        .map(|(_, v)| v.0.len())
        .sum();
    assert!(
        stored < 300 * 1024,
        "{stored} bytes for two ~1 MiB revisions"
    );
    assert!(
        !fake
            .events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("HistoryRevisionTooLarge"))
    );
    let entries = aws_auth_operator::awsauth::parse_data(&fake.aws_auth_data()).entries;
    assert_eq!(entries.users.len(), 1);
    assert!(entries.roles.len() > 8_000);
}
