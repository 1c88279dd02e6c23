//! Load: N mappings resolved and checked by the principal resolver against a local IAM
//! (ministack), as `--verify-principals` does it.
//!
//! ```sh
//! bash .ci/run            # once: creates .venv-ci with ministack
//! cargo run --release --example load_principals -- --count 5000
//! ```
//!
//! A tenth of the mappings name an IAM Identity Center permission set, the others a role (one in
//! twenty of those does not exist, one in fifty is in another account). Reports
//! the time and IAM calls of the first pass (every answer asked), of passes while the answers
//! are cached (what every mapping change and resync costs), and of the pass after a
//! re-provisioning of one permission set.

#[path = "support/ministack.rs"]
mod ministack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec, SsoPermissionSetRef};
use aws_auth_operator::principals::iam::{IamApi, IamClient};
use aws_auth_operator::principals::resolver::Resolver;
use aws_auth_operator::principals::{PrincipalBoard, PrincipalsConfig, SsoState, Verdict};
use ministack::start_ministack;

const ACCOUNT: &str = "111122223333";
const SSO_PATH: &str = "/aws-reserved/sso.amazonaws.com/eu-west-1/";
const PERMISSION_SETS: usize = 20;

struct Args {
    count: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut out = Args {
        count: 5000,
        concurrency: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--count", Some(v)) => out.count = v,
            ("--concurrency", Some(v)) => out.concurrency = v,
            _ => {
                eprintln!("usage: load_principals [--count N] [--concurrency N]");
                std::process::exit(2);
            }
        }
    }
    out
}

fn suffix(version: usize, set: usize) -> String {
    format!("{:016x}", (version << 32) | set)
}

fn mapping(i: usize) -> IamIdentityMapping {
    let mut spec = IamIdentityMappingSpec {
        username: Some("user:{{SessionName}}".into()),
        groups: vec!["developers".into()],
        ..Default::default()
    };
    match i % 10 {
        0 => {
            spec.sso_permission_set = Some(SsoPermissionSetRef {
                name: format!("Set{}", i / 10 % PERMISSION_SETS),
            })
        }
        _ if i % 50 == 1 => spec.arn = Some(format!("arn:aws:iam::444455556666:role/partner-{i}")),
        _ if i % 20 == 3 => {
            spec.arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/team/missing-{i}"))
        }
        _ => spec.arn = Some(format!("arn:aws:iam::{ACCOUNT}:role/team/dev-{i}")),
    }
    IamIdentityMapping::new(&format!("mapping-{i:05}"), spec)
}

async fn create_role(iam: &IamClient, path: &str, name: &str) -> Result<(), String> {
    iam.sdk()
        .create_role()
        .role_name(name)
        .path(path)
        .assume_role_policy_document("{}")
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("CreateRole {name}: {e:?}"))
}

fn tally(board: &PrincipalBoard) -> (usize, usize, usize, usize) {
    let (mut resolved, mut found, mut missing, mut unknown) = (0, 0, 0, 0);
    for report in board.snapshot().values() {
        if let Some(sso) = &report.sso
            && matches!(sso.state, SsoState::Resolved | SsoState::Replaced { .. })
        {
            resolved += 1;
        }
        match report.check.as_ref().map(|c| &c.verdict) {
            Some(Verdict::Found) => found += 1,
            Some(Verdict::Missing { .. } | Verdict::Differs { .. }) => missing += 1,
            Some(_) => unknown += 1,
            None => {}
        }
    }
    (resolved, found, missing, unknown)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_stack, endpoint) = start_ministack(dir.path())?;
    let iam = IamClient::for_endpoint(&endpoint, "eu-west-1", ACCOUNT, "secret");
    let setup = Instant::now();
    for set in 0..PERMISSION_SETS {
        create_role(
            &iam,
            SSO_PATH,
            &format!("AWSReservedSSO_Set{set}_{}", suffix(1, set)),
        )
        .await?;
    }
    for i in 0..args.count {
        if i % 10 != 0 && i % 20 != 3 && i % 50 != 1 {
            create_role(&iam, "/team/", &format!("dev-{i}")).await?;
        }
    }
    let mappings: Vec<Arc<IamIdentityMapping>> =
        (0..args.count).map(|i| Arc::new(mapping(i))).collect();
    println!(
        "{} mappings ({} permission sets among them), roles created in {:.1} s",
        args.count,
        args.count.div_ceil(10),
        setup.elapsed().as_secs_f64()
    );

    let config = PrincipalsConfig {
        verify: true,
        cache_ttl: Duration::from_secs(600),
        concurrency: args.concurrency,
        resync: Duration::from_secs(300),
        region: Some("eu-west-1".into()),
        iam_endpoint: None,
    };
    let board = PrincipalBoard::new();
    let mut resolver = Resolver::new(config, board.clone());
    let calls = |label: &str, started: Instant, before: u64| {
        let counts = iam.calls();
        println!(
            "{label}: {:.2} s, {} IAM calls ({:?})",
            started.elapsed().as_secs_f64(),
            counts.total() - before,
            counts.0
        );
    };

    let started = Instant::now();
    resolver.pass(Ok(&iam), &mappings, true).await;
    calls("first pass (every answer asked)", started, 0);
    let (resolved, found, missing, unknown) = tally(&board);
    println!(
        "  resolved {resolved} permission-set mappings; found {found}, missing {missing}, not checkable {unknown}"
    );

    for label in ["a mapping change (cached)", "a resync (cached)"] {
        let before = iam.calls().total();
        let started = Instant::now();
        resolver
            .pass(Ok(&iam), &mappings, label.contains("resync"))
            .await;
        calls(label, started, before);
    }

    // Re-provision one permission set: its role is replaced by one with a new suffix.
    iam.sdk()
        .delete_role()
        .role_name(format!("AWSReservedSSO_Set0_{}", suffix(1, 0)))
        .send()
        .await
        .map_err(|e| format!("DeleteRole: {e:?}"))?;
    create_role(
        &iam,
        SSO_PATH,
        &format!("AWSReservedSSO_Set0_{}", suffix(2, 0)),
    )
    .await?;
    let before = iam.calls().total();
    let started = Instant::now();
    resolver.pass(Ok(&iam), &mappings, true).await;
    calls("resync after a re-provisioning", started, before);
    let replaced = board
        .snapshot()
        .values()
        .filter(|r| {
            matches!(
                r.sso.as_ref().map(|s| &s.state),
                Some(SsoState::Replaced { .. })
            )
        })
        .count();
    println!("  {replaced} mappings follow the new role");
    Ok(())
}
