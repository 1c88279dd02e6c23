//! The aws-auth reconcile with EKS access entries on, against the in-memory
//! Kubernetes API: the access-entry side comes from the loop's report board (fed by hand here,
//! and by the real loop against the local EKS API in the last test).
//!
//! - `mirror`: Ready means both sides in place; the status shows the access entry.
//! - `only`: a managed aws-auth entry is removed only once its access entry is confirmed in
//!   place; a mapping that cannot migrate stays in aws-auth and says so; unmanaged entries are
//!   never removed.
//! - an EKS outage never touches aws-auth, and aws-auth keeps converging.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_auth_operator::accessentries::{
    AccessEntriesConfig, AccessEntriesMode, AccessEntryReport, AccessEntryStatus, ClusterReport,
    ReportBoard, SyncReason,
};
use aws_auth_operator::controller::reconcile::{AccessEntriesView, Context, reconcile};
use aws_auth_operator::plan::Settings;
use aws_auth_operator::status::{ACCESS_ENTRY_SYNCED, READY, STALLED};
use support::*;

fn with_access_entries(fake: &FakeApi, mode: AccessEntriesMode, board: &ReportBoard) -> Context {
    Context {
        access_entries: Some(AccessEntriesView {
            mode,
            board: board.clone(),
        }),
        ..context_with_events(fake, Settings::default())
    }
}

fn report(generation: i64, reason: SyncReason, confirmed: bool) -> AccessEntryReport {
    AccessEntryReport {
        generation: Some(generation),
        synced: matches!(
            reason,
            SyncReason::Created | SyncReason::InSync | SyncReason::Updated
        ),
        reason,
        message: format!("{reason} (test)"),
        status: confirmed.then(|| AccessEntryStatus {
            principal_arn: ADMIN_ARN.to_string(),
            ..Default::default()
        }),
        confirmed_in_place: confirmed,
        migratable: reason != SyncReason::NotMigratable,
    }
}

/// Publishes reports of a loop that has reached EKS since the start.
fn publish(board: &ReportBoard, reports: &[(&str, AccessEntryReport)]) {
    board.publish(
        reports
            .iter()
            .map(|(name, r)| (name.to_string(), r.clone()))
            .collect::<BTreeMap<_, _>>(),
        ClusterReport {
            last_pass: Some(time(0)),
            ..ClusterReport::default()
        },
    );
}

/// A restart in `only` mode: until the access-entry loop has reached EKS, the entries its
/// access entries served stay out of aws-auth (they were written back, then removed again a
/// moment later, with a DriftRepaired and a MovedToAccessEntry event each); the other mappings'
/// changes still flow. Once the loop reports, only what it does not confirm comes back.
#[tokio::test]
async fn a_restart_in_only_mode_keeps_aws_auth_until_the_access_side_is_known() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    store(&fake, vec![admin_mapping()]);
    publish(&board, &[("admin", report(1, SyncReason::Created, true))]);
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());

    // The restart: a new process, an empty board, EKS not reached yet (or not answering).
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    fake.clear_calls();
    fake.state().events.clear();
    reconcile_at(&fake, &ctx, 2).await;
    assert!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none(),
        "not written back before the access side is known"
    );
    assert_eq!(fake.aws_auth_writes(), 0);
    // The first pass fails as a whole: still not known.
    board.publish(
        BTreeMap::from([("admin".to_string(), report(1, SyncReason::EksError, false))]),
        ClusterReport {
            last_error: Some("DescribeCluster: timeout".into()),
            ..ClusterReport::default()
        },
    );
    // Meanwhile another mapping is created: it is written at once.
    fake.add_mapping(dev_mapping());
    reconcile_at(&fake, &ctx, 3).await;
    let during = entries(&fake.aws_auth_data());
    assert!(role(&during, ADMIN_ARN).is_none());
    assert!(role(&during, DEV_ARN).is_some(), "other changes flow");

    // EKS answers and confirms it: nothing moves.
    publish(
        &board,
        &[
            ("admin", report(1, SyncReason::InSync, true)),
            ("developer", report(1, SyncReason::Pending, false)),
        ],
    );
    reconcile_at(&fake, &ctx, 4).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());
    let noisy: Vec<_> = fake
        .events()
        .into_iter()
        .filter(|e| {
            matches!(
                e.reason.as_deref(),
                Some("DriftRepaired" | "MovedToAccessEntry")
            )
        })
        .collect();
    assert!(noisy.is_empty(), "{noisy:?}");

    // Known and not in place (deleted in EKS, read back absent): it comes back.
    publish(
        &board,
        &[
            ("admin", report(1, SyncReason::Created, false)),
            ("developer", report(1, SyncReason::Pending, false)),
        ],
    );
    reconcile_at(&fake, &ctx, 5).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some());
}

/// Switching from `only` back to `mirror` writes the served entries back into aws-auth: the
/// operator's own change, not the repair of a hand edit (no DriftRepaired event, no count in
/// the drift metric the hand-edit alert reads). A hand edit afterwards still is one.
#[tokio::test]
async fn a_mode_switch_is_not_drift() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    store(&fake, vec![admin_mapping()]);
    publish(&board, &[("admin", report(1, SyncReason::Created, true))]);
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());

    let ctx = with_access_entries(&fake, AccessEntriesMode::Mirror, &board);
    fake.state().events.clear();
    let report = reconcile(&ctx, &fake.mappings(), time(2)).await.unwrap();
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some());
    assert_eq!(report.drift_repairs, 0);
    assert!(
        !fake
            .events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("DriftRepaired")),
        "{:?}",
        fake.events()
    );
    assert_eq!(
        cond2(&fake, "admin", aws_auth_operator::status::DRIFTED).1,
        "InSync"
    );

    // A hand edit is drift.
    fake.state().edit_aws_auth_data(|data| {
        let roles = data.get("mapRoles").cloned().unwrap_or_default();
        let edited = roles.replace("system:masters", "edited");
        assert_ne!(edited, roles);
        data.insert("mapRoles".to_string(), edited);
    });
    let report = reconcile(&ctx, &fake.mappings(), time(3)).await.unwrap();
    assert_eq!(report.drift_repairs, 1);
}

async fn reconcile_at(fake: &FakeApi, ctx: &Context, second: i64) {
    reconcile(ctx, &fake.mappings(), time(second))
        .await
        .expect("reconcile");
}

#[tokio::test]
async fn mirror_mode_is_ready_when_both_sides_are_in_place() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Mirror, &board);
    store(&fake, vec![admin_mapping()]);

    // The loop has not handled it yet: rendered in aws-auth, not Ready (not Stalled either).
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some());
    assert_eq!(cond2(&fake, "admin", READY), is("False", "Pending"));
    assert_eq!(
        cond2(&fake, "admin", ACCESS_ENTRY_SYNCED),
        is("False", "Pending")
    );
    assert!(aws_auth_operator::status::condition(&status(&fake, "admin"), STALLED).is_none());

    publish(&board, &[("admin", report(1, SyncReason::Created, true))]);
    reconcile_at(&fake, &ctx, 2).await;
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert_eq!(
        cond2(&fake, "admin", ACCESS_ENTRY_SYNCED),
        is("True", "Created")
    );
    let access = status(&fake, "admin")
        .access_entry
        .expect("status.accessEntry");
    assert_eq!(access.principal_arn, ADMIN_ARN);
    assert!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some(),
        "mirror keeps aws-auth"
    );

    // A foreign entry for the principal: a person must act (Stalled).
    publish(
        &board,
        &[("admin", report(1, SyncReason::ForeignEntry, false))],
    );
    reconcile_at(&fake, &ctx, 3).await;
    assert_eq!(cond2(&fake, "admin", STALLED), is("True", "ForeignEntry"));
    assert_eq!(cond2(&fake, "admin", READY), is("False", "ForeignEntry"));

    // Idle: no writes.
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 4).await;
    assert_eq!(fake.count(|c| c.method != http::Method::GET), 0);
}

#[tokio::test]
async fn only_mode_removes_an_aws_auth_entry_only_once_its_access_entry_is_confirmed() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE), ("mapUsers", HAND_USER)], None);
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    let account = account_mapping("acct", "444455556666", 5);
    store(&fake, vec![admin_mapping(), account]);

    // Nothing confirmed: both stay in aws-auth.
    publish(
        &board,
        &[
            ("admin", report(1, SyncReason::Pending, false)),
            ("acct", report(1, SyncReason::NotMigratable, false)),
        ],
    );
    reconcile_at(&fake, &ctx, 1).await;
    let before = entries(&fake.aws_auth_data());
    assert!(role(&before, ADMIN_ARN).is_some());
    assert_eq!(before.accounts, ["444455556666"]);

    // Confirmed in place (read back from EKS): the aws-auth entry goes; the account mapping,
    // which cannot migrate, stays and is Ready; the unmanaged entries stay.
    publish(
        &board,
        &[
            ("admin", report(1, SyncReason::Created, true)),
            ("acct", report(1, SyncReason::NotMigratable, false)),
        ],
    );
    reconcile_at(&fake, &ctx, 2).await;
    let after = entries(&fake.aws_auth_data());
    assert!(
        role(&after, ADMIN_ARN).is_none(),
        "moved to its access entry"
    );
    assert!(role(&after, NODE_ROLE_ARN).is_some(), "unmanaged, kept");
    assert_eq!(user_arns(&after), [HAND_USER_ARN], "unmanaged, kept");
    assert_eq!(after.accounts, ["444455556666"], "not migratable, kept");
    assert_eq!(
        cond2(&fake, "admin", READY),
        is("True", "ServedByAccessEntry")
    );
    assert!(status(&fake, "admin").rendered.is_none());
    assert_eq!(cond2(&fake, "acct", READY), is("True", "Rendered"));
    assert_eq!(
        cond2(&fake, "acct", ACCESS_ENTRY_SYNCED),
        is("False", "NotMigratable")
    );
    assert!(
        fake.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("MovedToAccessEntry")),
        "{:?}",
        fake.events()
    );

    // A new generation is not confirmed yet: the entry comes back to aws-auth meanwhile.
    let mut edited = fake.mapping("admin");
    edited.spec.groups = vec!["platform".to_string()];
    edited.metadata.generation = Some(2);
    fake.add_mapping(edited);
    reconcile_at(&fake, &ctx, 3).await;
    let entry = role(&entries(&fake.aws_auth_data()), ADMIN_ARN)
        .cloned()
        .expect("back in aws-auth until generation 2 is confirmed");
    assert_eq!(entry.groups, ["platform"]);
}

/// EKS unreachable: the loop reports EksError (keeping a confirmation of the same generation),
/// aws-auth keeps converging and no aws-auth entry moves because of the outage.
#[tokio::test]
async fn an_eks_outage_never_touches_aws_auth() {
    let fake = FakeApi::start();
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    store(&fake, vec![admin_mapping()]);
    publish(&board, &[("admin", report(1, SyncReason::Created, true))]);
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());

    let mut outage = report(1, SyncReason::EksError, true);
    outage.message = "EKS cannot be reached: connection refused".to_string();
    let mut dev_outage = report(1, SyncReason::EksError, false);
    dev_outage.message = outage.message.clone();
    publish(&board, &[("admin", outage), ("developer", dev_outage)]);
    store(&fake, vec![dev_mapping()]);
    reconcile_at(&fake, &ctx, 2).await;
    let after = entries(&fake.aws_auth_data());
    assert!(
        role(&after, ADMIN_ARN).is_none(),
        "the outage does not bring it back"
    );
    assert!(role(&after, DEV_ARN).is_some(), "aws-auth keeps converging");
    assert_eq!(cond2(&fake, "developer", READY), is("False", "EksError"));
    assert!(aws_auth_operator::status::condition(&status(&fake, "developer"), STALLED).is_none());
}

/// The real loop against the local EKS API (ministack), and the aws-auth reconcile in `only`
/// mode: the mapping is mirrored, confirmed, and then leaves aws-auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_the_local_eks_api() {
    use kube::runtime::watcher;
    use support::ministack::{Ministack, REGION};
    let Some(stack) = Ministack::start("end_to_end_with_the_local_eks_api") else {
        return;
    };
    const CLUSTER: &str = "e2e";
    stack.create_cluster(CLUSTER, "API_AND_CONFIG_MAP").await;
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let admin = admin_mapping();
    store(&fake, vec![admin.clone()]);

    let (store, mut writer) = aws_auth_operator::cache::mapping_cache();
    writer.apply(&watcher::Event::Init);
    writer.apply(&watcher::Event::InitApply(admin));
    writer.apply(&watcher::Event::InitDone);
    let board = ReportBoard::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = AccessEntriesConfig {
        mode: AccessEntriesMode::Only,
        cluster_name: CLUSTER.to_string(),
        region: REGION.to_string(),
        endpoint: Some(stack.endpoint.clone()),
        concurrency: 2,
        resync: Duration::from_secs(3600),
    };
    let loop_task = tokio::spawn(aws_auth_operator::accessentries::runner::run_loop(
        Arc::new(stack.client()),
        config,
        Settings::default(),
        store,
        Arc::new(tokio::sync::Notify::new()),
        board.clone(),
        aws_auth_operator::principals::PrincipalBoard::new(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    let changed = board.changed();
    tokio::time::timeout(Duration::from_secs(60), async {
        while board.get("admin").is_none_or(|r| !r.confirmed_in_place) {
            changed.notified().await;
        }
    })
    .await
    .expect("the admin mapping is mirrored and confirmed");

    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    reconcile_at(&fake, &ctx, 1).await;
    let after = entries(&fake.aws_auth_data());
    assert!(
        role(&after, ADMIN_ARN).is_none(),
        "served by its access entry now"
    );
    assert!(role(&after, NODE_ROLE_ARN).is_some());
    assert_eq!(
        cond2(&fake, "admin", READY),
        is("True", "ServedByAccessEntry")
    );
    assert_eq!(cond2(&fake, "admin", ACCESS_ENTRY_SYNCED).0, "True");
    let access = status(&fake, "admin")
        .access_entry
        .expect("status.accessEntry");
    assert_eq!(access.principal_arn, ADMIN_ARN);

    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(10), loop_task)
        .await
        .expect("the loop stops")
        .unwrap();
}

/// The access side refuses what the operator's policy refuses, and the status says so: a
/// person must act (Stalled), also when the aws-auth side renders the mapping (a group only the
/// access entry grants).
#[tokio::test]
async fn a_refusal_of_the_access_side_stalls_the_mapping() {
    let fake = FakeApi::start();
    let board = ReportBoard::new();
    let ctx = with_access_entries(&fake, AccessEntriesMode::Mirror, &board);
    store(&fake, vec![dev_mapping()]);
    let mut refused = report(1, SyncReason::PolicyViolation, false);
    refused.message =
        "group `admins` is not allowed: it matches --denied-groups `admins`: the operator's policy refuses this mapping, so it gets no EKS access entry".to_string();
    publish(&board, &[("developer", refused)]);
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), DEV_ARN).is_some());
    assert_eq!(
        cond2(&fake, "developer", ACCESS_ENTRY_SYNCED),
        is("False", "PolicyViolation")
    );
    assert_eq!(
        cond2(&fake, "developer", READY),
        is("False", "PolicyViolation")
    );
    assert_eq!(
        cond2(&fake, "developer", STALLED),
        is("True", "PolicyViolation")
    );
}

/// The real loop against the local EKS API: an operator without a group policy made a mapping
/// with `system:masters` cluster admin through an access entry, and `only` mode took it out of
/// aws-auth. With `--denied-groups system:masters` the access entry is deleted, no new one is
/// made, and the mapping is refused on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_policy_removes_an_access_entry_it_forbids() {
    use aws_auth_operator::accessentries::client::EksApi;
    use aws_auth_operator::accessentries::runner::Runner;
    use support::ministack::Ministack;
    let Some(stack) = Ministack::start("the_group_policy_removes_an_access_entry_it_forbids")
    else {
        return;
    };
    const CLUSTER: &str = "policy";
    stack.create_cluster(CLUSTER, "API_AND_CONFIG_MAP").await;
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let mappings = store(&fake, vec![admin_mapping(), dev_mapping()]);
    let eks = Arc::new(stack.client());

    // Before: no policy.
    let board = ReportBoard::new();
    let mut runner = Runner::new(eks.clone(), CLUSTER, 2, board.clone(), Settings::default());
    runner.pass(&mappings, true).await;
    assert!(board.get("admin").unwrap().confirmed_in_place);
    let ctx = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    reconcile_at(&fake, &ctx, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());

    // After: the same settings for both sides, as `run` builds them.
    let policy = Settings::default()
        .with_group_policy(&[], &["system:masters".to_string()])
        .unwrap();
    let mut runner = Runner::new(eks.clone(), CLUSTER, 2, board.clone(), policy.clone());
    runner.pass(&mappings, true).await;
    assert!(
        eks.describe_access_entry(CLUSTER, ADMIN_ARN)
            .await
            .unwrap()
            .is_none(),
        "the cluster-admin access entry is deleted"
    );
    assert!(
        eks.describe_access_entry(CLUSTER, DEV_ARN)
            .await
            .unwrap()
            .is_some(),
        "the allowed mapping keeps its entry"
    );
    let report = board.get("admin").unwrap();
    assert_eq!(
        (report.reason, report.confirmed_in_place),
        (SyncReason::PolicyViolation, false)
    );
    runner.pass(&mappings, true).await;
    assert!(
        eks.describe_access_entry(CLUSTER, ADMIN_ARN)
            .await
            .unwrap()
            .is_none(),
        "and not created again"
    );

    let ctx = Context {
        access_entries: Some(AccessEntriesView {
            mode: AccessEntriesMode::Only,
            board: board.clone(),
        }),
        ..context_with_events(&fake, policy)
    };
    reconcile_at(&fake, &ctx, 2).await;
    assert!(
        role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none(),
        "refused in aws-auth too"
    );
    assert_eq!(cond2(&fake, "admin", READY), is("False", "PolicyViolation"));
    assert_eq!(
        cond2(&fake, "admin", STALLED),
        is("True", "PolicyViolation")
    );
    assert_eq!(
        cond2(&fake, "admin", ACCESS_ENTRY_SYNCED),
        is("False", "PolicyViolation")
    );
    assert_eq!(
        cond2(&fake, "developer", READY),
        is("True", "ServedByAccessEntry")
    );
}

/// `rollback` previews what the running operator keeps: the operator records its settings on
/// the history ConfigMap, and the preview of a revision written in `mirror` mode, with the
/// operator now in `only` mode, does not add back the entries access entries serve (it
/// printed `mapRoles: 1 added`, and the operator removed it again within the second).
#[tokio::test]
async fn rollback_previews_with_the_running_operators_settings() {
    use aws_auth_operator::store::revisions::{
        HISTORY_CONFIGMAP, RecordedSettings, SETTINGS_ANNOTATION, recorded_settings,
    };
    use aws_auth_operator::store::writer::{preview, rollback};
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    let board = ReportBoard::new();
    store(&fake, vec![admin_mapping()]);
    // Mirror: the admin entry is in aws-auth (revision 2).
    let mirror = with_access_entries(&fake, AccessEntriesMode::Mirror, &board);
    publish(&board, &[("admin", report(1, SyncReason::Created, true))]);
    reconcile_at(&fake, &mirror, 1).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_some());
    // Only, 2 minutes later: served by its access entry, out of aws-auth (revision 3).
    let only = with_access_entries(&fake, AccessEntriesMode::Only, &board);
    reconcile_at(&fake, &only, 120).await;
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());
    let history = fake.configmap(HISTORY_CONFIGMAP).expect("history");
    let recorded = recorded_settings(&history).expect("recorded").unwrap();
    assert_eq!(recorded.access_entries, AccessEntriesMode::Only);
    assert_eq!(
        recorded,
        RecordedSettings::of(&Settings::default(), AccessEntriesMode::Only)
    );
    let revisions = aws_auth_operator::store::writer::load(&kube::Api::namespaced(
        fake.client.clone(),
        "kube-system",
    ))
    .await
    .unwrap()
    .1;
    let mirrored = revisions
        .iter()
        .find(|r| {
            r.data
                .get("mapRoles")
                .is_some_and(|t| t.contains("role/admin"))
        })
        .expect("the revision written in mirror mode")
        .revision;

    // Even with flags that say otherwise, the recorded settings are used.
    let report = preview(fake.client.clone(), mirrored, Settings::default())
        .await
        .unwrap();
    assert!(report.settings_recorded);
    assert!(
        report.planned_with.contains("--access-entries=only"),
        "{}",
        report.planned_with
    );
    assert!(
        report.sections[0].added.is_empty(),
        "nothing the operator would remove again: {report:?}"
    );
    assert!(
        report.notes.iter().any(|n| n.contains("1 mappings served")),
        "{:?}",
        report.notes
    );
    // Written, it is what the operator keeps: its next reconcile writes nothing.
    rollback(
        fake.client.clone(),
        mirrored,
        time(200),
        10,
        Settings::default(),
    )
    .await
    .unwrap();
    let writes = fake.aws_auth_writes();
    reconcile_at(&fake, &only, 201).await;
    assert_eq!(fake.aws_auth_writes(), writes);
    assert!(role(&entries(&fake.aws_auth_data()), ADMIN_ARN).is_none());

    // No recorded settings (an older operator): the flags, with access entries taken as off,
    // and the report says so.
    fake.state()
        .configmaps
        .get_mut(HISTORY_CONFIGMAP)
        .unwrap()
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove(SETTINGS_ANNOTATION);
    let report = preview(fake.client.clone(), mirrored, Settings::default())
        .await
        .unwrap();
    assert!(!report.settings_recorded);
    assert!(
        report.planned_with.contains("taken as off"),
        "{}",
        report.planned_with
    );
    assert_eq!(report.sections[0].added.len(), 1);
}

/// Mirror, then off. With the cluster known the loop reports `NotManaged` (Ready is aws-auth's
/// alone, status.accessEntry shows what EKS holds); without it, the stale status.accessEntry
/// goes and the condition says the operator cannot see or delete the entry. Either way the
/// status settles: an idle reconcile writes nothing.
#[tokio::test]
async fn turning_access_entries_off_says_the_entry_is_not_managed() {
    let fake = FakeApi::start();
    let board = ReportBoard::new();
    store(&fake, vec![admin_mapping()]);
    let mirror = with_access_entries(&fake, AccessEntriesMode::Mirror, &board);
    publish(&board, &[("admin", report(1, SyncReason::InSync, true))]);
    reconcile_at(&fake, &mirror, 1).await;
    assert!(status(&fake, "admin").access_entry.is_some());

    // Off, cluster known: the loop (in off mode) reports NotManaged with the entry EKS holds.
    let off = with_access_entries(&fake, AccessEntriesMode::Off, &board);
    let mut not_managed = report(1, SyncReason::NotManaged, true);
    not_managed.confirmed_in_place = false;
    publish(&board, &[("admin", not_managed)]);
    reconcile_at(&fake, &off, 2).await;
    assert_eq!(
        cond2(&fake, "admin", ACCESS_ENTRY_SYNCED),
        is("False", "NotManaged")
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    assert!(status(&fake, "admin").access_entry.is_some());
    fake.clear_calls();
    reconcile_at(&fake, &off, 3).await;
    assert_eq!(fake.status_writes(), 0, "settled");

    // Off without a cluster: no loop, no board.
    let blind = context_with_events(&fake, Settings::default());
    reconcile_at(&fake, &blind, 4).await;
    let after = status(&fake, "admin");
    assert!(after.access_entry.is_none(), "no stale copy: {after:?}");
    let condition = aws_auth_operator::status::condition(&after, ACCESS_ENTRY_SYNCED)
        .expect("the condition says why")
        .clone();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "NotManaged")
    );
    assert!(
        condition.message.contains("--cluster-name"),
        "{}",
        condition.message
    );
    assert_eq!(cond2(&fake, "admin", READY), is("True", "Rendered"));
    fake.clear_calls();
    reconcile_at(&fake, &blind, 5).await;
    reconcile_at(&fake, &blind, 6).await;
    assert_eq!(fake.status_writes(), 0, "settled");

    // A mapping that never had an access entry gets no such condition.
    fake.add_mapping(dev_mapping());
    reconcile_at(&fake, &blind, 7).await;
    assert!(
        aws_auth_operator::status::condition(&status(&fake, "developer"), ACCESS_ENTRY_SYNCED)
            .is_none()
    );
}
