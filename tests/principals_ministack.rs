//! Principals as people name them, against the local IAM API of `ministack` and the
//! in-memory Kubernetes API: the principal resolver's passes feed the aws-auth reconcile (and
//! the access-entry loop) exactly as in the operator.
//!
//! - a permission set resolves to its role; aws-auth gets it path-stripped, the access entry
//!   with its path, `status.resolvedArn` shows it;
//! - re-provisioning (the role replaced by one with a new suffix) updates aws-auth in one write,
//!   with an event;
//! - none found, several found, IAM unavailable: nothing in aws-auth changes because of it;
//! - `--verify-principals`: a missing principal gets PrincipalFound=False with a hint, another
//!   account is not checkable, and Ready is untouched.
//!
//! ministack keeps IAM per account and takes a 12-digit access key as the account id: each
//! test uses the access key `111122223333`, the account of the test mappings.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_auth_operator::accessentries::ReportBoard;
use aws_auth_operator::accessentries::client::EksApi;
use aws_auth_operator::accessentries::runner::Runner;
use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec, SsoPermissionSetRef};
use aws_auth_operator::controller::reconcile::{Context, reconcile};
use aws_auth_operator::plan::Settings;
use aws_auth_operator::principals::iam::{IamApi, IamClient};
use aws_auth_operator::principals::resolver::Resolver;
use aws_auth_operator::principals::{
    PRINCIPAL_FOUND, PRINCIPAL_RESOLVED, PrincipalBoard, PrincipalsConfig,
};
use aws_auth_operator::status::{READY, STALLED};
use support::ministack::{Ministack, REGION};
use support::*;

const SSO_PATH: &str = "/aws-reserved/sso.amazonaws.com/eu-west-1/";
const ADMIN_V1: &str = "AWSReservedSSO_AdministratorAccess_0123456789abcdef";
const ADMIN_V2: &str = "AWSReservedSSO_AdministratorAccess_fedcba9876543210";

fn full_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role{SSO_PATH}{name}")
}

fn aws_auth_arn(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

fn iam(stack: &Ministack) -> IamClient {
    IamClient::for_endpoint(&stack.endpoint, REGION, ACCOUNT, "secret")
}

async fn create_role(iam: &IamClient, path: &str, name: &str) {
    iam.sdk()
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateRole {name}: {e:?}"));
}

async fn delete_role(iam: &IamClient, name: &str) {
    iam.sdk()
        .delete_role()
        .role_name(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DeleteRole {name}: {e:?}"));
}

fn config(verify: bool) -> PrincipalsConfig {
    PrincipalsConfig {
        verify,
        cache_ttl: Duration::from_secs(600),
        concurrency: 4,
        resync: Duration::from_secs(300),
        region: Some(REGION.into()),
        iam_endpoint: None,
    }
}

fn sso_mapping(name: &str, permission_set: &str) -> IamIdentityMapping {
    let mut m = IamIdentityMapping::new(
        name,
        IamIdentityMappingSpec {
            sso_permission_set: Some(SsoPermissionSetRef {
                name: permission_set.into(),
            }),
            username: Some("sso-admin:{{SessionName}}".into()),
            groups: vec!["platform-admins".into()],
            ..Default::default()
        },
    );
    m.metadata.creation_timestamp = Some(time(1));
    m.metadata.generation = Some(1);
    m.metadata.uid = Some(format!("uid-{name}"));
    m
}

fn with_principals(fake: &FakeApi, board: &PrincipalBoard) -> Context {
    Context {
        principals: Some(board.clone()),
        ..context_with_events(fake, Settings::default())
    }
}

async fn reconcile_at(fake: &FakeApi, ctx: &Context, second: i64) {
    reconcile(ctx, &fake.mappings(), time(second))
        .await
        .expect("reconcile");
}

fn aws_auth_writes(fake: &FakeApi) -> usize {
    fake.count(|c| c.writes_configmap("aws-auth"))
}

fn has_event(fake: &FakeApi, reason: &str) -> bool {
    fake.events()
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason))
}

#[tokio::test]
async fn a_permission_set_resolves_and_follows_reprovisioning_in_one_write() {
    let Some(stack) = Ministack::start("a_permission_set_resolves_and_follows_reprovisioning")
    else {
        return;
    };
    let iam = iam(&stack);
    create_role(&iam, SSO_PATH, ADMIN_V1).await;
    // Neither a role elsewhere nor another permission set is mistaken for it.
    create_role(&iam, "/", "AdministratorAccess").await;
    create_role(
        &iam,
        SSO_PATH,
        "AWSReservedSSO_AdministratorAccessReadOnly_1111111111111111",
    )
    .await;
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    store(
        &fake,
        vec![sso_mapping("sso-admins", "AdministratorAccess")],
    );
    let board = PrincipalBoard::new();
    let ctx = with_principals(&fake, &board);
    let mut resolver = Resolver::new(config(false), board.clone());

    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    reconcile_at(&fake, &ctx, 2).await;
    let live = entries(&fake.aws_auth_data());
    let entry = role(&live, &aws_auth_arn(ADMIN_V1)).expect("the role, path-stripped");
    assert_eq!(entry.username, "sso-admin:{{SessionName}}");
    assert!(role(&live, NODE_ROLE_ARN).is_some(), "unmanaged entry kept");
    let resolved_status = status(&fake, "sso-admins");
    assert_eq!(
        resolved_status.resolved_arn.as_deref(),
        Some(full_arn(ADMIN_V1).as_str())
    );
    assert_eq!(
        cond2(&fake, "sso-admins", PRINCIPAL_RESOLVED),
        is("True", "Resolved")
    );
    assert_eq!(cond2(&fake, "sso-admins", READY), is("True", "Rendered"));

    // The access entry (ministack's EKS, the real access-entry loop) gets the real ARN, path
    // included.
    stack.create_cluster("sso", "API_AND_CONFIG_MAP").await;
    let eks = stack.client();
    let mut access_entries = Runner::new(
        Arc::new(eks.clone()),
        "sso",
        2,
        ReportBoard::new(),
        Settings::default(),
    )
    .with_principals(board.clone());
    access_entries.pass(&fake.mappings(), true).await;
    let principals = eks
        .list_access_entries("sso")
        .await
        .expect("ListAccessEntries");
    assert!(principals.contains(&full_arn(ADMIN_V1)), "{principals:?}");

    // Re-provisioned: IAM Identity Center replaces the role by one with a new suffix.
    delete_role(&iam, ADMIN_V1).await;
    create_role(&iam, SSO_PATH, ADMIN_V2).await;
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 3).await;
    assert_eq!(aws_auth_writes(&fake), 1, "{:?}", fake.calls());
    let live = entries(&fake.aws_auth_data());
    assert!(role(&live, &aws_auth_arn(ADMIN_V2)).is_some());
    assert!(
        role(&live, &aws_auth_arn(ADMIN_V1)).is_none(),
        "the old role is gone"
    );
    assert!(role(&live, NODE_ROLE_ARN).is_some());
    assert_eq!(
        status(&fake, "sso-admins").resolved_arn.as_deref(),
        Some(full_arn(ADMIN_V2).as_str())
    );
    assert_eq!(
        cond2(&fake, "sso-admins", PRINCIPAL_RESOLVED),
        is("True", "Reprovisioned")
    );
    assert!(
        has_event(&fake, "PermissionSetReprovisioned"),
        "{:?}",
        fake.events()
    );
    // The access entry follows: the new role's is created, the old one's deleted.
    access_entries.pass(&fake.mappings(), true).await;
    let principals = eks
        .list_access_entries("sso")
        .await
        .expect("ListAccessEntries");
    assert!(principals.contains(&full_arn(ADMIN_V2)), "{principals:?}");
    assert!(!principals.contains(&full_arn(ADMIN_V1)), "{principals:?}");

    // The next pass finds the same role: plainly Resolved again (one status patch, no aws-auth
    // write), and from then on nothing is written.
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 4).await;
    assert_eq!(aws_auth_writes(&fake), 0);
    assert_eq!(
        cond2(&fake, "sso-admins", PRINCIPAL_RESOLVED),
        is("True", "Resolved")
    );
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 5).await;
    assert_eq!(fake.count(|c| c.method != http::Method::GET), 0);
}

#[tokio::test]
async fn iam_unavailable_none_or_several_found_change_nothing_in_aws_auth() {
    let Some(stack) = Ministack::start("iam_unavailable_none_or_several_found_change_nothing")
    else {
        return;
    };
    let iam = iam(&stack);
    create_role(&iam, SSO_PATH, ADMIN_V1).await;
    let fake = FakeApi::start();
    store(
        &fake,
        vec![sso_mapping("sso-admins", "AdministratorAccess")],
    );
    let board = PrincipalBoard::new();
    let ctx = with_principals(&fake, &board);
    Resolver::new(config(false), board.clone())
        .pass(Ok(&iam), &fake.mappings(), true)
        .await;
    reconcile_at(&fake, &ctx, 2).await;
    let resolved = fake.aws_auth_data();
    assert!(role(&entries(&resolved), &aws_auth_arn(ADMIN_V1)).is_some());

    // The operator restarts while IAM cannot be reached: the role in status stays mapped.
    let unreachable = IamClient::for_endpoint("http://127.0.0.1:9", REGION, ACCOUNT, "secret");
    let board = PrincipalBoard::new();
    let ctx = with_principals(&fake, &board);
    let mut resolver = Resolver::new(config(false), board.clone());
    resolver
        .pass(Ok(&unreachable), &fake.mappings(), true)
        .await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 3).await;
    assert_eq!(aws_auth_writes(&fake), 0);
    assert_eq!(fake.aws_auth_data(), resolved);
    let (status_, reason, message) = cond(&fake, "sso-admins", PRINCIPAL_RESOLVED);
    assert_eq!(
        (status_.as_str(), reason.as_str()),
        ("Unknown", "IamUnavailable")
    );
    assert!(message.contains(&full_arn(ADMIN_V1)), "{message}");
    assert_eq!(cond2(&fake, "sso-admins", READY), is("True", "Rendered"));

    // Several roles serve it (e.g. two region paths): the role mapped before stays, and a
    // person must choose.
    create_role(&iam, "/aws-reserved/sso.amazonaws.com/", ADMIN_V2).await;
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 4).await;
    assert_eq!(aws_auth_writes(&fake), 0);
    let (_, reason, message) = cond(&fake, "sso-admins", PRINCIPAL_RESOLVED);
    assert_eq!(reason, "SeveralRolesFound");
    assert!(
        message.contains(&full_arn(ADMIN_V1)) && message.contains(ADMIN_V2),
        "{message}"
    );
    assert_eq!(
        cond2(&fake, "sso-admins", STALLED),
        is("True", "SeveralRolesFound")
    );
    assert!(has_event(&fake, "SeveralRolesFound"), "{:?}", fake.events());

    // None any more (the permission set was removed from the account): the entry stays.
    delete_role(&iam, ADMIN_V1).await;
    delete_role(&iam, ADMIN_V2).await;
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 5).await;
    assert_eq!(aws_auth_writes(&fake), 0);
    assert_eq!(fake.aws_auth_data(), resolved);
    assert_eq!(
        cond2(&fake, "sso-admins", READY),
        is("False", "NoRoleFound")
    );
    assert_eq!(
        cond2(&fake, "sso-admins", STALLED),
        is("True", "NoRoleFound")
    );
    assert!(has_event(&fake, "NoRoleFound"), "{:?}", fake.events());

    // A permission set never resolved renders nothing, and says why.
    store(&fake, vec![sso_mapping("sso-billing", "Billing")]);
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    reconcile_at(&fake, &ctx, 6).await;
    assert_eq!(
        cond2(&fake, "sso-billing", READY),
        is("False", "NoRoleFound")
    );
    assert!(status(&fake, "sso-billing").rendered.is_none());
    assert_eq!(fake.aws_auth_data(), resolved);
}

#[tokio::test]
async fn verify_principals_reports_missing_ones_with_a_hint_and_never_blocks() {
    let Some(stack) = Ministack::start("verify_principals_reports_missing_ones") else {
        return;
    };
    let iam = iam(&stack);
    create_role(&iam, "/team/", "platform-admin").await;
    create_role(&iam, "/readers/", "viewer").await;
    iam.sdk()
        .create_user()
        .user_name("alice")
        .path("/people/")
        .send()
        .await
        .expect("CreateUser");
    assert_eq!(iam.own_account().await.expect("STS"), ACCOUNT);
    let fake = FakeApi::start();
    let arn = |tail: &str| format!("arn:aws:iam::{ACCOUNT}:{tail}");
    store(
        &fake,
        vec![
            role_mapping("ok", &arn("role/team/platform-admin"), "admin", &[], 1),
            role_mapping("typo", &arn("role/team/platform-admn"), "admin", &[], 2),
            role_mapping("no-path", &arn("role/viewer"), "viewer", &[], 3),
            role_mapping("alice", &arn("user/people/alice"), "alice", &[], 4),
            role_mapping(
                "partner",
                "arn:aws:iam::444455556666:role/partner-admin",
                "partner",
                &[],
                5,
            ),
        ],
    );
    let board = PrincipalBoard::new();
    let ctx = with_principals(&fake, &board);
    let mut resolver = Resolver::new(config(true), board.clone());
    resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    reconcile_at(&fake, &ctx, 2).await;

    assert_eq!(cond2(&fake, "ok", PRINCIPAL_FOUND), is("True", "Found"));
    assert_eq!(cond2(&fake, "alice", PRINCIPAL_FOUND), is("True", "Found"));
    let (status_, reason, message) = cond(&fake, "typo", PRINCIPAL_FOUND);
    assert_eq!((status_.as_str(), reason.as_str()), ("False", "NotFound"));
    assert!(message.contains("platform-admin"), "the hint: {message}");
    let (_, reason, message) = cond(&fake, "no-path", PRINCIPAL_FOUND);
    assert_eq!(reason, "PathOrNameDiffers");
    assert!(message.contains(&arn("role/readers/viewer")), "{message}");
    assert_eq!(
        cond2(&fake, "partner", PRINCIPAL_FOUND),
        is("Unknown", "OtherAccount")
    );
    // A warning, not a block: every mapping is rendered and Ready.
    let live = entries(&fake.aws_auth_data());
    for name in ["ok", "typo", "no-path", "alice", "partner"] {
        assert_eq!(cond2(&fake, name, READY), is("True", "Rendered"), "{name}");
    }
    assert!(role(&live, &arn("role/platform-admn")).is_some());
    assert!(has_event(&fake, "PrincipalNotFound"), "{:?}", fake.events());

    // Answers are cached: a second pass asks IAM nothing.
    let calls = iam.calls().total();
    let summary = resolver.pass(Ok(&iam), &fake.mappings(), true).await;
    assert_eq!(summary.iam_calls, 0);
    assert_eq!(iam.calls().total(), calls);
    // And an unchanged status is not written again.
    fake.clear_calls();
    reconcile_at(&fake, &ctx, 3).await;
    assert_eq!(fake.count(|c| c.method != http::Method::GET), 0);
}

/// The loop builds no IAM client while nothing needs one, and builds it once a mapping names a
/// permission set.
#[tokio::test]
async fn the_iam_client_is_built_only_when_needed() {
    use kube::runtime::watcher;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(stack) = Ministack::start("the_iam_client_is_built_only_when_needed") else {
        return;
    };
    create_role(&iam(&stack), SSO_PATH, ADMIN_V1).await;
    let (store, mut writer) = aws_auth_operator::cache::mapping_cache();
    writer.apply(&watcher::Event::Init);
    writer.apply(&watcher::Event::InitApply(admin_mapping()));
    writer.apply(&watcher::Event::InitDone);
    let built = Arc::new(AtomicUsize::new(0));
    let board = PrincipalBoard::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = stack.endpoint.clone();
    let handle = tokio::spawn(aws_auth_operator::principals::resolver::run_loop(
        {
            let built = built.clone();
            move || {
                built.fetch_add(1, Ordering::SeqCst);
                let client = IamClient::for_endpoint(&endpoint, REGION, ACCOUNT, "secret");
                async move { Ok(client) }
            }
        },
        config(false),
        store,
        wake.clone(),
        board.clone(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(built.load(Ordering::SeqCst), 0);
    assert!(board.snapshot().is_empty());

    writer.apply(&watcher::Event::Apply(sso_mapping(
        "sso-admins",
        "AdministratorAccess",
    )));
    let changed = board.changed();
    wake.notify_one();
    tokio::time::timeout(Duration::from_secs(30), async {
        while board.get("sso-admins").and_then(|r| r.sso?.arn).is_none() {
            changed.notified().await;
        }
    })
    .await
    .expect("resolved within 30 s");
    assert_eq!(built.load(Ordering::SeqCst), 1);
    let _ = stop.send(());
    handle.await.expect("the loop stops");
}
