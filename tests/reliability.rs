//! Regression tests for the findings of the fault and misuse trial, one per finding,
//! against the in-memory API: each replays what was seen on a real API server and checks what
//! the authenticator would read afterwards, the statuses and the events.

mod support;

use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::awsauth::parse_data;
use aws_auth_operator::controller::reconcile::{Context, reconcile};
use aws_auth_operator::plan::Settings;
use aws_auth_operator::status::{CONFLICT, READY, STALLED};
use support::fake_api::Crd;
use support::*;

const CONTRACTOR_ARN: &str = "arn:aws:iam::111122223333:role/contractor";
const BREAKGLASS_ARN: &str = "arn:aws:iam::111122223333:user/breakglass";
const BREAKGLASS: &str = "- userarn: arn:aws:iam::111122223333:user/breakglass\n  username: breakglass\n  groups:\n  - system:masters\n";

fn contractor() -> aws_auth_operator::api::IamIdentityMapping {
    role_mapping(
        "contractor",
        CONTRACTOR_ARN,
        "contractor",
        &["system:masters"],
        5,
    )
}

/// Reconciles the stored mappings at `time(second)`.
async fn reconcile_at(fake: &FakeApi, ctx: &Context, second: i64) {
    reconcile(ctx, &fake.mappings(), time(second))
        .await
        .expect("reconcile");
}

fn events_with(fake: &FakeApi, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    fake.events()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// A mapping created and deleted, then a hand edit breaks mapRoles. Recovery
/// restores the unmanaged entries, never the deleted mapping's (system:masters) entry.
#[tokio::test]
async fn recovery_never_brings_back_a_removed_entry() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", HAND_USER)], None);
    let ctx = context_with_events(&fake, Settings::default());
    store(&fake, vec![admin_mapping(), contractor()]);
    reconcile_at(&fake, &ctx, 1).await;
    fake.state().mappings.remove("contractor");
    reconcile_at(&fake, &ctx, 2).await;
    assert!(role(&entries(&fake.aws_auth_data()), CONTRACTOR_ARN).is_none());

    // One mapRoles item indented by hand: the key no longer parses.
    fake.state().edit_aws_auth_data(|data| {
        let roles = data.get_mut("mapRoles").unwrap();
        *roles = roles.replacen("  username:", "   username:", 1);
    });
    assert!(!parse_data(&fake.aws_auth_data()).malformed.is_empty());
    reconcile_at(&fake, &ctx, 3).await;

    let after = entries(&fake.aws_auth_data());
    assert!(
        role(&after, CONTRACTOR_ARN).is_none(),
        "the removed entry came back"
    );
    assert!(
        role(&after, NODE_ROLE_ARN).is_some(),
        "the node role is restored"
    );
    assert!(role(&after, ADMIN_ARN).is_some());
    assert_eq!(user_arns(&after), [HAND_USER_ARN]);
    let recovered = events_with(&fake, "RecoveredMalformedAwsAuth");
    assert_eq!(recovered.len(), 1, "{:?}", fake.events());
    let note = recovered[0].note.as_deref().unwrap_or_default();
    assert!(note.contains("restored 1 unmanaged entries"), "{note}");
    assert!(
        note.contains(NODE_ROLE_ARN) && !note.contains("contractor"),
        "{note}"
    );
}

/// Unquoted account ids in mapAccounts are their literal text to the authenticator;
/// adding an account mapping keeps every one of them.
#[tokio::test]
async fn unquoted_account_ids_are_kept() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(
        &[(
            "mapAccounts",
            "- \"444455556666\"\n- 777788889999\n- 012345678901\n",
        )],
        None,
    );
    store(&fake, vec![account_mapping("acct", "121212121212", 0)]);
    reconcile_at(&fake, &context(&fake, Settings::default()), 1).await;
    let accounts = entries(&fake.aws_auth_data()).accounts;
    assert_eq!(
        accounts,
        [
            "012345678901",
            "121212121212",
            "444455556666",
            "777788889999"
        ]
    );
}

/// An aws-auth deleted by hand comes back with its unmanaged entries (from history),
/// and a Warning event names what was restored.
#[tokio::test]
async fn a_deleted_aws_auth_comes_back_whole() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", BREAKGLASS)], None);
    let ctx = context_with_events(&fake, Settings::default());
    store(&fake, vec![admin_mapping(), contractor()]);
    reconcile_at(&fake, &ctx, 1).await;
    // The contractor mapping is deleted: its entry goes, and must stay gone.
    fake.state().mappings.remove("contractor");
    reconcile_at(&fake, &ctx, 200).await;

    fake.state().configmaps.remove("aws-auth");
    reconcile_at(&fake, &ctx, 400).await;

    let after = entries(&fake.aws_auth_data());
    assert!(role(&after, NODE_ROLE_ARN).is_some(), "node role restored");
    assert_eq!(user_arns(&after), [BREAKGLASS_ARN], "break-glass restored");
    assert!(
        role(&after, ADMIN_ARN).is_some(),
        "managed entry re-rendered"
    );
    assert!(role(&after, CONTRACTOR_ARN).is_none());
    // Unmanaged again, managed again.
    let managed = managed_set(&fake);
    assert!(managed.contains(&PrincipalKey::role(ADMIN_ARN)));
    assert!(!managed.contains(&PrincipalKey::role(NODE_ROLE_ARN)));
    let restored = events_with(&fake, "RecoveredDeletedAwsAuth");
    assert_eq!(restored.len(), 1, "{:?}", fake.events());
    assert_eq!(restored[0].type_.as_deref(), Some("Warning"));
    let note = restored[0].note.as_deref().unwrap_or_default();
    assert!(
        note.contains(NODE_ROLE_ARN) && note.contains(BREAKGLASS_ARN),
        "{note}"
    );
}

/// `groups: []` is what status says after the change (the merge patch clears the
/// old list), the status is not patched again, and a later bad edit keeps the entry.
#[tokio::test]
async fn empty_groups_in_status_and_a_bad_edit_keeps_the_entry() {
    let fake = FakeApi::start();
    let ctx = context_with_events(&fake, Settings::default());
    store(
        &fake,
        vec![role_mapping("r1", ADMIN_ARN, "r1", &["team-a"], 0)],
    );
    reconcile_at(&fake, &ctx, 1).await;
    assert_eq!(status(&fake, "r1").rendered.unwrap().groups, ["team-a"]);

    let mut edited = fake.mapping("r1");
    edited.spec.groups.clear();
    edited.metadata.generation = Some(2);
    fake.add_mapping(edited);
    reconcile_at(&fake, &ctx, 2).await;
    assert_eq!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN)
            .unwrap()
            .groups,
        Vec::<String>::new()
    );
    let rendered = status(&fake, "r1").rendered.unwrap();
    assert_eq!(
        rendered.groups,
        Vec::<String>::new(),
        "status says exactly what was written"
    );
    assert_eq!(status(&fake, "r1").observed_generation, Some(2));

    // Idle: no status patch, no event.
    fake.clear_calls();
    let events = fake.events().len();
    reconcile_at(&fake, &ctx, 3).await;
    assert_eq!(fake.status_writes(), 0);
    assert_eq!(fake.events().len(), events);

    // A bad edit: the entry of the last valid spec stays.
    let mut bad = fake.mapping("r1");
    bad.spec.username = Some("r1:{{Foo}}".to_string());
    bad.metadata.generation = Some(3);
    fake.add_mapping(bad);
    reconcile_at(&fake, &ctx, 4).await;
    let entry = role(&entries(&fake.aws_auth_data()), ADMIN_ARN)
        .cloned()
        .expect("the entry stays");
    assert_eq!(entry.username, "r1");
    assert_eq!(
        cond2(&fake, "r1", STALLED),
        is("True", "UnknownTemplateVariable")
    );
}

/// Two user ARNs differing only in case are one principal; the younger mapping is
/// in Conflict.
#[tokio::test]
async fn user_arns_differing_in_case_conflict() {
    let fake = FakeApi::start();
    store(
        &fake,
        vec![
            role_mapping(
                "bob-upper",
                "arn:aws:iam::111122223333:user/Bob",
                "bob",
                &[],
                0,
            ),
            role_mapping(
                "bob-lower",
                "arn:aws:iam::111122223333:user/bob",
                "bob",
                &[],
                10,
            ),
        ],
    );
    reconcile_at(&fake, &context(&fake, Settings::default()), 1).await;
    assert_eq!(cond2(&fake, "bob-upper", READY), is("True", "Rendered"));
    assert_eq!(cond2(&fake, "bob-lower", CONFLICT), is("True", "Conflict"));
    assert_eq!(entries(&fake.aws_auth_data()).users.len(), 1);
}

/// Adding `--denied-groups system:masters` to a running cluster keeps the admin
/// entry, marks the mapping Stalled (PolicyViolation) and says so in an event; only
/// `--enforce-group-policy` removes it, with a Warning event.
#[tokio::test]
async fn a_policy_change_never_locks_anyone_out_silently() {
    let fake = FakeApi::start();
    store(&fake, vec![admin_mapping()]);
    reconcile_at(&fake, &context(&fake, Settings::default()), 1).await;
    let written = fake.aws_auth_data();

    let denied = Settings::default()
        .with_group_policy(&[], &["system:masters".to_string()])
        .unwrap();
    let ctx = context_with_events(&fake, denied.clone());
    reconcile_at(&fake, &ctx, 2).await;
    assert_eq!(fake.aws_auth_data(), written, "the admin entry stays");
    assert_eq!(
        cond2(&fake, "admin", STALLED),
        is("True", "PolicyViolation")
    );
    let (_, _, message) = cond(&fake, "admin", READY);
    assert!(message.contains("stays in aws-auth"), "{message}");
    assert_eq!(
        status(&fake, "admin").rendered.unwrap().principal,
        ADMIN_ARN,
        "status still says what aws-auth holds for it"
    );
    let violation = events_with(&fake, "PolicyViolation");
    assert_eq!(violation.len(), 1);
    assert_eq!(violation[0].type_.as_deref(), Some("Warning"));

    let enforce = Settings {
        enforce_group_policy: true,
        ..denied
    };
    let ctx = context_with_events(&fake, enforce);
    reconcile_at(&fake, &ctx, 3).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());
    let enforced = events_with(&fake, "PolicyEnforced");
    assert!(!enforced.is_empty(), "{:?}", fake.events());
    assert!(
        enforced
            .iter()
            .all(|e| e.type_.as_deref() == Some("Warning"))
    );
}

/// A mapping that took over break-glass gives it back when deleted; the takeover
/// emits TookOver, never DriftRepaired.
#[tokio::test]
async fn deleting_a_takeover_gives_the_original_back() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", BREAKGLASS)], None);
    let ctx = context_with_events(&fake, Settings::default());
    store(
        &fake,
        vec![role_mapping(
            "bg",
            BREAKGLASS_ARN,
            "breakglass-managed",
            &["admins"],
            0,
        )],
    );
    reconcile_at(&fake, &ctx, 1).await;
    reconcile_at(&fake, &ctx, 2).await;
    let users = entries(&fake.aws_auth_data()).users;
    assert_eq!(users[0].username, "breakglass-managed");
    assert_eq!(events_with(&fake, "TookOver").len(), 1);
    assert!(
        events_with(&fake, "DriftRepaired").is_empty(),
        "{:?}",
        fake.events()
    );
    assert!(
        cond(&fake, "bg", READY)
            .2
            .contains("comes back if this mapping is deleted")
    );

    fake.state().mappings.remove("bg");
    reconcile_at(&fake, &ctx, 3).await;
    let users = entries(&fake.aws_auth_data()).users;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].username, "breakglass");
    assert_eq!(users[0].groups, ["system:masters"]);
    assert!(!managed_set(&fake).contains(&PrincipalKey::user(BREAKGLASS_ARN)));
    assert_eq!(events_with(&fake, "OriginalEntryRestored").len(), 1);
}

/// The CRD deleted (or being deleted) takes every mapping with it; the operator
/// must not remove their entries. It freezes aws-auth (an annotation, so a restart or the CRD
/// coming back with no mappings yet changes nothing), says so (event, readiness), keeps
/// writing new entries, and removes nothing until a person lifts the freeze.
#[tokio::test]
async fn aws_auth_is_frozen_while_the_crd_is_gone() {
    use aws_auth_operator::controller::reconcile::FROZEN_ANNOTATION;
    for crd in [Crd::Deleting, Crd::Missing] {
        let fake = FakeApi::start();
        fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
        let ctx = context_with_events(&fake, Settings::default());
        store(&fake, vec![admin_mapping(), dev_mapping()]);
        reconcile_at(&fake, &ctx, 1).await;
        let written = entries(&fake.aws_auth_data());

        fake.state().crd = crd;
        fake.state().mappings.clear();
        let report = reconcile(&ctx, &fake.mappings(), time(2)).await.unwrap();
        assert!(report.frozen.is_some(), "{crd:?}: {report:?}");
        assert_eq!(
            entries(&fake.aws_auth_data()),
            written,
            "{crd:?}: nothing removed"
        );
        let annotations = fake.aws_auth().unwrap().metadata.annotations.unwrap();
        let mark = &annotations[FROZEN_ANNOTATION];
        assert!(mark.contains("CRD"), "{mark}");
        assert_eq!(events_with(&fake, "AwsAuthFrozen").len(), 1);

        // The CRD is back, the mappings not yet (a restarted operator, an empty cache): still
        // frozen. A re-applied mapping is written; nothing is removed.
        fake.state().crd = Crd::Installed;
        let restarted = context(&fake, Settings::default());
        store(&fake, vec![admin_mapping()]);
        let report = reconcile(&restarted, &fake.mappings(), time(3))
            .await
            .unwrap();
        assert!(report.frozen.is_some());
        assert_eq!(
            role_arns(&entries(&fake.aws_auth_data())),
            [ADMIN_ARN, DEV_ARN, NODE_ROLE_ARN]
        );
        assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));

        // A person lifts the freeze: the entry of the mapping that is really gone goes.
        fake.state()
            .configmaps
            .get_mut("aws-auth")
            .unwrap()
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(FROZEN_ANNOTATION);
        let report = reconcile(&restarted, &fake.mappings(), time(4))
            .await
            .unwrap();
        assert!(report.frozen.is_none());
        assert_eq!(
            role_arns(&entries(&fake.aws_auth_data())),
            [ADMIN_ARN, NODE_ROLE_ARN]
        );
    }
}

/// An event series keeps each message: the same reason with another message is a
/// new event, the same message again joins the series.
#[tokio::test]
async fn an_event_series_is_per_message() {
    let fake = FakeApi::start();
    let publisher = aws_auth_operator::controller::events::EventPublisher::new(
        fake.client.clone(),
        "aws-auth-operator",
        "test",
    );
    let object = k8s_openapi::api::core::v1::ObjectReference {
        kind: Some("IamIdentityMapping".to_string()),
        name: Some("m".to_string()),
        ..Default::default()
    };
    use kube::runtime::events::EventType::Warning;
    for note in ["first", "second", "second"] {
        publisher
            .publish(&object, Warning, "Invalid", note)
            .await
            .unwrap();
    }
    let events = fake.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].note.as_deref(), Some("first"));
    assert_eq!(events[1].note.as_deref(), Some("second"));
    assert_eq!(events[1].series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(events[0].metadata.namespace.as_deref(), Some("default"));
    // What `kubectl get events` (core/v1) reads and sorts by: the count and the timestamps.
    assert_eq!(events[0].deprecated_count, Some(1));
    assert_eq!(events[1].deprecated_count, Some(2));
    let first = events[1]
        .deprecated_first_timestamp
        .as_ref()
        .expect("first");
    let last = events[1].deprecated_last_timestamp.as_ref().expect("last");
    assert!(last.0 >= first.0, "{first:?} {last:?}");
    assert!(
        events[0]
            .deprecated_source
            .as_ref()
            .and_then(|s| s.component.as_deref())
            .is_some_and(|c| !c.is_empty())
    );
}
