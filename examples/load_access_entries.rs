//! Load: N mappings mirrored into a local EKS API (ministack) by the access-entry loop.
//!
//! ```sh
//! bash .ci/run            # once: creates .venv-ci with ministack
//! cargo run --release --example load_access_entries -- --count 1000
//! ```
//!
//! Reports the time until every mapping's report (in the shared report board) says the access
//! entry is confirmed in place, the EKS calls that took, and the calls of idle resyncs and of a
//! first pass after a restart. ministack does not paginate ListAccessEntries, so the client asks
//! for one big page here; against EKS (pages of 100) a list costs ceil(entries/100) calls, which
//! the report adds up separately.

#[path = "support/ministack.rs"]
mod ministack;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_auth_operator::accessentries::client::{CallCounts, EksApi, EksClient};
use aws_auth_operator::accessentries::report::ReportBoard;
use aws_auth_operator::accessentries::runner::{Runner, run_loop};
use aws_auth_operator::accessentries::{AccessEntriesConfig, AccessEntriesMode};
use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec};
use aws_auth_operator::plan::Settings;
use kube::runtime::watcher;
use ministack::start_ministack;

struct Args {
    count: usize,
    concurrency: usize,
    resyncs: usize,
}

fn args() -> Args {
    let mut out = Args {
        count: 1000,
        concurrency: 8,
        resyncs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--count", Some(v)) => out.count = v,
            ("--concurrency", Some(v)) => out.concurrency = v,
            ("--resyncs", Some(v)) => out.resyncs = v,
            _ => {
                eprintln!("usage: load_access_entries [--count N] [--concurrency N] [--resyncs N]");
                std::process::exit(2);
            }
        }
    }
    out
}

/// A mix shaped like a real cluster: mostly people and workloads with groups, some admins
/// (an access policy each), some node roles.
fn mapping(i: usize) -> IamIdentityMapping {
    let (arn, username, groups): (String, &str, Vec<&str>) = match i % 10 {
        0 => (
            format!("arn:aws:iam::000000000000:role/nodes/node-{i}"),
            "system:node:{{EC2PrivateDNSName}}",
            vec!["system:bootstrappers", "system:nodes"],
        ),
        1 => (
            format!("arn:aws:iam::000000000000:role/admins/admin-{i}"),
            "admin:{{SessionName}}",
            vec!["system:masters"],
        ),
        _ => (
            format!(
                "arn:aws:iam::000000000000:role/teams/team-{}/dev-{i}",
                i % 37
            ),
            "dev:{{SessionName}}",
            vec!["developers", "readers"],
        ),
    };
    let mut m = IamIdentityMapping::new(
        &format!("mapping-{i:05}"),
        IamIdentityMappingSpec {
            arn: Some(arn),
            username: Some(username.into()),
            groups: groups.into_iter().map(str::to_string).collect(),
            ..Default::default()
        },
    );
    m.metadata.generation = Some(1);
    m
}

fn show(calls: &CallCounts) -> String {
    calls
        .0
        .iter()
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args = args();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (_ministack, endpoint) = start_ministack(dir.path())?;
    let eks =
        EksClient::for_endpoint(&endpoint, "eu-west-1", "test", "secret").with_page_size(100_000);
    eks.sdk()
        .create_cluster()
        .name("load")
        .role_arn("arn:aws:iam::000000000000:role/eks")
        .resources_vpc_config(aws_sdk_eks::types::VpcConfigRequest::builder().build())
        .access_config(
            aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                .authentication_mode(aws_sdk_eks::types::AuthenticationMode::ApiAndConfigMap)
                .build(),
        )
        .send()
        .await
        .map_err(|e| format!("CreateCluster: {e:?}"))?;
    let setup_calls = eks.calls();

    let mappings: Vec<IamIdentityMapping> = (0..args.count).map(mapping).collect();
    let (store, mut writer) = aws_auth_operator::cache::mapping_cache();
    let board = ReportBoard::new();
    let changed = board.changed();
    let wake = Arc::new(tokio::sync::Notify::new());
    let resync = Duration::from_secs(2);
    let config = AccessEntriesConfig {
        mode: AccessEntriesMode::Mirror,
        cluster_name: "load".into(),
        region: "eu-west-1".into(),
        endpoint: Some(endpoint.clone()),
        concurrency: args.concurrency,
        resync,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let handle = tokio::spawn(run_loop(
        Arc::new(eks.clone()),
        config,
        Settings::default(),
        store,
        wake,
        board.clone(),
        aws_auth_operator::principals::PrincipalBoard::new(),
        None,
        async {
            let _ = stopped.await;
        },
    ));
    writer.apply(&watcher::Event::Init);
    for m in &mappings {
        writer.apply(&watcher::Event::InitApply(m.clone()));
    }
    writer.apply(&watcher::Event::InitDone);

    let confirmed = || {
        board
            .snapshot()
            .values()
            .filter(|r| r.confirmed_in_place)
            .count()
    };
    tokio::time::timeout(Duration::from_secs(600), async {
        while confirmed() < args.count {
            changed.notified().await;
        }
    })
    .await
    .map_err(|_| {
        format!(
            "only {} of {} confirmed after 600 s",
            confirmed(),
            args.count
        )
    })?;
    let synced_after = started.elapsed();
    let sync_calls = eks.calls().since(&setup_calls);
    let passes_at_sync = board.cluster().passes;

    // Idle resyncs: nothing changes; count the calls of each pass.
    let mut idle = Vec::new();
    let mut last_calls = eks.calls();
    let mut last_pass = board.cluster().passes;
    while idle.len() < args.resyncs {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let passes = board.cluster().passes;
        if passes > last_pass {
            let calls = eks.calls();
            idle.push(calls.since(&last_calls));
            last_calls = calls;
            last_pass = passes;
        }
    }
    let _ = stop.send(());
    let _ = handle.await;

    // A restart: a new loop state against the same EKS (the cache is cold).
    let cold_eks =
        EksClient::for_endpoint(&endpoint, "eu-west-1", "test", "secret").with_page_size(100_000);
    let mut runner = Runner::new(
        Arc::new(cold_eks.clone()),
        "load",
        args.concurrency,
        ReportBoard::new(),
        Settings::default(),
    );
    let arcs: Vec<Arc<IamIdentityMapping>> = mappings.iter().cloned().map(Arc::new).collect();
    let cold_started = Instant::now();
    let cold = runner.pass(&arcs, true).await;
    let cold_time = cold_started.elapsed();
    let entries = args.count + 1;

    println!(
        "mappings: {}  (access entries in the cluster: {entries}, with the creator's)",
        args.count
    );
    println!("concurrency: {}", args.concurrency);
    println!(
        "time to all AccessEntrySynced (confirmed in place): {:.2} s, {} passes",
        synced_after.as_secs_f64(),
        passes_at_sync
    );
    println!(
        "EKS calls to get there: {} ({})",
        sync_calls.total(),
        show(&sync_calls)
    );
    for (i, calls) in idle.iter().enumerate() {
        println!(
            "idle resync {}: {} calls ({})",
            i + 1,
            calls.total(),
            show(calls)
        );
    }
    println!(
        "  against EKS, ListAccessEntries pages by 100: +{} calls per pass",
        entries.div_ceil(100) - 1
    );
    println!(
        "first pass after a restart: {:.2} s, {} calls ({}), {} changes",
        cold_time.as_secs_f64(),
        cold.calls.total(),
        show(&cold.calls),
        cold.work
    );
    Ok(())
}
