//! The reconcile loop (`controller::reconcile_loop`) against the in-memory API: watch events wake
//! it, bursts coalesce, resyncs of an unchanged cluster write nothing, failures back off.
//!
//! The fake API has no watch endpoint, so a small task plays the two watchers: it polls the
//! fake's objects every few milliseconds and, for each mapping or aws-auth whose
//! resourceVersion changed, applies the change to a reflector store and wakes the loop, which is
//! exactly what `run` wires the real watchers to do. Counts are asserted; times are only
//! printed (speed is measured by the load tool against a real cluster, not here).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_auth_operator::api::IamIdentityMapping;
use aws_auth_operator::awsauth::parse_data;
use aws_auth_operator::cache::CacheFeed;
use aws_auth_operator::controller::reconcile_loop;
use aws_auth_operator::plan::Settings;
use aws_auth_operator::server::{Health, METRICS_PREFIX, Metrics};
use aws_auth_operator::status::READY;
use kube::runtime::watcher;
use support::*;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

/// Plays the watchers: mirrors the fake's mappings into `writer` and wakes the loop on every
/// change of a mapping or of aws-auth.
fn simulated_watch(fake: Arc<FakeApi>, mut writer: CacheFeed, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen: BTreeMap<String, IamIdentityMapping> = BTreeMap::new();
        let mut aws_auth_version = None;
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitDone);
        loop {
            let current: BTreeMap<String, IamIdentityMapping> = fake
                .mappings()
                .into_iter()
                .map(|m| (m.metadata.name.clone().unwrap_or_default(), (*m).clone()))
                .collect();
            for (name, mapping) in &current {
                let version = &mapping.metadata.resource_version;
                if seen.get(name).map(|m| &m.metadata.resource_version) != Some(version) {
                    writer.apply(&watcher::Event::Apply(mapping.clone()));
                    wake.notify_one();
                }
            }
            for (name, gone) in &seen {
                if !current.contains_key(name) {
                    writer.apply(&watcher::Event::Delete(gone.clone()));
                    wake.notify_one();
                }
            }
            seen = current;
            let version = fake.aws_auth().and_then(|cm| cm.metadata.resource_version);
            if version != aws_auth_version {
                aws_auth_version = version;
                wake.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

struct Running {
    fake: Arc<FakeApi>,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    controller: JoinHandle<()>,
    watch: JoinHandle<()>,
}

impl Running {
    fn start(fake: FakeApi, resync: Duration) -> Running {
        let fake = Arc::new(fake);
        let (store, writer) = aws_auth_operator::cache::mapping_cache();
        let wake = Arc::new(Notify::new());
        let metrics = Arc::new(Metrics::new());
        let (stop, stopped) = oneshot::channel::<()>();
        let watch = simulated_watch(fake.clone(), writer, wake.clone());
        let controller = {
            let (fake, metrics, wake) = (fake.clone(), metrics.clone(), wake.clone());
            tokio::spawn(async move {
                let ctx = context(&fake, Settings::default());
                let health = Health::new();
                reconcile_loop(
                    &ctx, &store, &wake, resync, &metrics, &health, None, stopped,
                )
                .await;
            })
        };
        Running {
            fake,
            metrics,
            stop: Some(stop),
            controller,
            watch,
        }
    }

    /// Stops the loop and waits for it to return.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.controller)
            .await
            .expect("the loop returns once stopped")
            .expect("the loop did not panic");
        self.watch.abort();
    }
}

fn load_mapping(i: usize) -> IamIdentityMapping {
    role_mapping(
        &format!("load-{i:04}"),
        &format!("arn:aws:iam::{ACCOUNT}:role/load-{i:04}"),
        &format!("load-{i}:{{{{SessionName}}}}"),
        &["view"],
        i as i64,
    )
}

/// The sum of a metric's samples (all label sets), read from the Prometheus text.
fn metric(metrics: &Metrics, name: &str) -> f64 {
    let name = format!("{METRICS_PREFIX}_{name}");
    metrics
        .encode()
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            let series = line.split(['{', ' ']).next().unwrap_or_default();
            series == name || series == format!("{name}_total")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// aws-auth holds `count` role entries plus `unmanaged` others, and every mapping is Ready for
/// its generation.
fn converged(fake: &FakeApi, count: usize) -> bool {
    converged_with(fake, count, 0)
}

fn converged_with(fake: &FakeApi, count: usize, unmanaged: usize) -> bool {
    let Some(cm) = fake.aws_auth() else {
        return false;
    };
    let roles = parse_data(&cm.data.unwrap_or_default()).entries.roles.len();
    let mappings = fake.mappings();
    roles == count + unmanaged
        && mappings.len() == count
        && mappings.iter().all(|m| {
            let status = m.status.as_ref();
            status.and_then(|s| s.observed_generation) == m.metadata.generation
                && status.is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == READY && c.status == "True")
                })
        })
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_a_thousand_mappings_coalesces_into_a_few_writes() {
    const COUNT: usize = 1000;
    let running = Running::start(FakeApi::start(), Duration::from_secs(300));
    // The loop's first reconcile (nothing to do yet) creates nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.fake.clear_calls();

    // A GitOps sync: a thousand creates arriving over about half a second.
    for i in 0..COUNT {
        running.fake.add_mapping(load_mapping(i));
        if i % 2 == 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let took = wait_until(
        "aws-auth holds every mapping",
        Duration::from_secs(120),
        || converged(&running.fake, COUNT),
    )
    .await;

    let aws_auth_writes = running.fake.aws_auth_writes();
    let status_writes = running.fake.status_writes();
    println!(
        "{COUNT} mappings: converged {took:?} after the last create, {aws_auth_writes} aws-auth writes, {status_writes} status writes (debug build, in-memory API)"
    );
    assert!(
        aws_auth_writes <= 10,
        "a burst must coalesce: {aws_auth_writes} aws-auth writes for {COUNT} creates"
    );
    assert!(
        (COUNT..=2 * COUNT).contains(&status_writes),
        "about one status write per mapping, got {status_writes}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_cluster_sees_no_writes_across_resyncs() {
    let fake = FakeApi::start();
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    for i in 0..20 {
        fake.add_mapping(load_mapping(i));
    }
    let running = Running::start(fake, Duration::from_millis(200));
    // 20 mappings plus the node role EKS added.
    wait_until("converged", Duration::from_secs(30), || {
        converged_with(&running.fake, 20, 1)
    })
    .await;
    // Let the follow-up reconcile (woken by our own writes) run, then watch several resyncs.
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.fake.clear_calls();
    let reconciles_before = metric(&running.metrics, "reconciles");
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let reconciles = metric(&running.metrics, "reconciles") - reconciles_before;
    assert!(reconciles >= 3.0, "resyncs ran ({reconciles} reconciles)");
    assert_eq!(
        running.fake.aws_auth_writes(),
        0,
        "{:?}",
        running.fake.calls()
    );
    assert_eq!(
        running.fake.status_writes(),
        0,
        "{:?}",
        running.fake.calls()
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_wakes_the_loop_and_is_repaired() {
    let fake = FakeApi::start();
    fake.add_mapping(admin_mapping());
    let running = Running::start(fake, Duration::from_secs(300));
    wait_until("converged", Duration::from_secs(30), || {
        converged(&running.fake, 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Someone gives the admin role an extra group by hand; only the aws-auth watch sees it.
    running.fake.state().edit_aws_auth_data(|data| {
        let roles = data.get_mut("mapRoles").expect("mapRoles");
        *roles = roles.replace(
            "\"system:masters\"",
            "\"system:masters\"\n    - \"hand-added\"",
        );
    });
    wait_until("the drift is repaired", Duration::from_secs(30), || {
        let data = running.fake.aws_auth_data();
        !data["mapRoles"].contains("hand-added")
    })
    .await;
    // The status patch follows the write of aws-auth.
    wait_until(
        "the repair is in the status",
        Duration::from_secs(30),
        || status(&running.fake, "admin").last_drift_repair.is_some(),
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reconcile_is_retried() {
    let fake = FakeApi::start();
    fake.add_mapping(admin_mapping());
    // aws-auth reads fail at first: the loop must back off and try again, not give up.
    fake.state().configmap_failures_to_inject = 3;
    let running = Running::start(fake, Duration::from_secs(300));
    wait_until("a reconcile failed", Duration::from_secs(10), || {
        metric(&running.metrics, "reconcile_errors") > 0.0
    })
    .await;
    wait_until(
        "converged after the failure",
        Duration::from_secs(30),
        || converged(&running.fake, 1),
    )
    .await;
    running.stop().await;
}
