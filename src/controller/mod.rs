//! The kube-runtime shell: gathers inputs, calls `plan()`, applies the result.
//!
//! One reconcile key, kube-system/aws-auth. Every IamIdentityMapping event and every aws-auth
//! event only wakes the loop; while a reconcile runs, further events collapse into one pending
//! wake-up, so a burst of a thousand changes costs a handful of reconciles.

pub mod events;
pub mod leader;
pub mod reconcile;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::accessentries::{self, AccessEntriesConfig, ReportBoard, client::EksClient};
use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use crate::cache::{CacheTracker, CacheWatch, MappingCache};
use crate::loops::wait_until_synced;
use crate::plan::Settings;
use crate::principals::{self, PrincipalBoard, PrincipalsConfig, iam::IamClient};
use crate::server::{Health, Metrics};
use events::EventPublisher;
use reconcile::{AccessEntriesView, Context, ReconcileReport, reconcile_snapshot};

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("connecting to Kubernetes: {0}")]
    Client(#[source] kube::Error),
    #[error("leader election: {0}")]
    Leader(#[from] leader::LeaderError),
    #[error("metrics server: {0}")]
    Server(#[from] crate::server::ServerError),
}

/// Everything `run` needs, already validated.
pub struct RunConfig {
    pub settings: Settings,
    pub history_limit: usize,
    pub leader_election: bool,
    pub lease_namespace: String,
    pub metrics_addr: SocketAddr,
    /// A full reconcile at least this often, even without events.
    pub resync: Duration,
    /// Status patches in flight at once.
    pub status_concurrency: usize,
    /// Requests per second the client may send (0: unlimited).
    pub kube_qps: u32,
    /// `None` with `--access-entries=off`: then no EKS client is built.
    pub access_entries: Option<AccessEntriesConfig>,
    /// The principal resolver; its IAM client is built only once a mapping needs it.
    pub principals: PrincipalsConfig,
}

/// The default of `--kube-qps`. What bounds the operator's load on the API server is
/// `--status-concurrency` (requests in flight); this cap stops a runaway loop. It lets a burst
/// of 5,000 status patches finish in under 3 s (the target is 4 s), and the API
/// server's priority and fairness still queue the operator behind other clients.
pub const DEFAULT_KUBE_QPS: u32 = 2000;

/// A client from the kubeconfig or the in-cluster config, sending at most `qps` requests a
/// second (see [`client_for`]).
pub async fn client(qps: u32) -> Result<Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    client_for(config, qps)
}

/// A client for `config`, sending at most `qps` requests a second (counted in tenths of a
/// second, so a burst is a tenth of `qps` at once).
pub fn client_for(config: kube::Config, qps: u32) -> Result<Client, kube::Error> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(if qps == 0 {
        builder.build()
    } else {
        let per_tenth = u64::from(qps.div_ceil(10));
        builder
            .with_layer(&tower::limit::RateLimitLayer::new(
                per_tenth,
                Duration::from_millis(100),
            ))
            .build()
    })
}

/// How long a reconcile in flight may take to finish after the operator is asked to stop.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The reporting controller name of events and the field manager of writes.
pub const CONTROLLER_NAME: &str = "aws-auth-operator";

/// Backoff of a failed watch: quick, so that the operator converges within seconds of the API
/// server's return (kube's default grows to 30 s, and a reconcile waited for it): 250 ms
/// doubling to 4 s, each with up to a quarter of random jitter, reset by the first event.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
    jitter: std::collections::hash_map::RandomState,
    attempt: u64,
}

const WATCH_BACKOFF_MIN: Duration = Duration::from_millis(250);
const WATCH_BACKOFF_MAX: Duration = Duration::from_secs(4);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_BACKOFF_MIN,
            jitter: std::collections::hash_map::RandomState::new(),
            attempt: 0,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        use std::hash::BuildHasher;
        let delay = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_MAX);
        self.attempt += 1;
        let quarter = delay.as_millis() as u64 / 4;
        let jitter = self.jitter.hash_one(self.attempt) % (quarter + 1);
        Some(delay + Duration::from_millis(jitter))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_MIN;
    }
}

fn watch_backoff() -> WatchBackoff {
    WatchBackoff::default()
}

/// The longest wait after a failed reconcile.
const MAX_RECONCILE_BACKOFF: Duration = Duration::from_secs(4);

/// Drops what the operator never reads from cached mappings: managedFields and kubectl's
/// last-applied-configuration can be larger than the mapping itself.
fn slim(mapping: &mut IamIdentityMapping) {
    mapping.managed_fields_mut().clear();
    mapping
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(config: RunConfig) -> Result<(), ControllerError> {
    let client = client(config.kube_qps)
        .await
        .map_err(ControllerError::Client)?;
    run_until(client, config, shutdown_signal()).await
}

/// How often start-up says what it still waits for.
pub const START_UP_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// Runs the controller with `client` until `stop` resolves: the tasks below, then the
/// reconcile loop once the mapping cache has synced.
pub async fn run_until(
    client: Client,
    config: RunConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let process = Process::default();
    let server = serve_metrics(config.metrics_addr, &process).await?;
    let wakes = Wakes::default();
    let mapping_changed = Arc::new(Notify::new());
    let (mappings, mapping_watch) = watch_mappings(&client, &process, mapping_changed.clone());
    let aws_auth_watch = watch_aws_auth(&client, &process, wakes.reconcile.clone());
    tokio::spawn(report_cache(
        mappings.watch.clone(),
        process.health.clone(),
        process.metrics.clone(),
        START_UP_REPORT_INTERVAL,
    ));
    let identity = leader::default_identity();
    let mut leadership = elect_leader(&client, &config, &identity, &process).await?;
    let leading = || leadership.as_ref().map(leader::Leadership::subscribe);
    let principal_board = start_principals(&config, &mappings, &wakes, &process, leading());
    let access_entries = start_access_entries(
        &config,
        &mappings,
        &wakes,
        &process,
        &principal_board,
        leading(),
    )
    .await;
    // A change of a mapping wakes every loop.
    forward_wakes(
        mapping_changed,
        [&wakes.reconcile, &wakes.access_entries, &wakes.principals],
    );

    let ctx = Context {
        access_entries,
        principals: Some(principal_board),
        ..reconcile_context(client, &config, &identity)
    };
    let stop = tokio::spawn(stop);
    tokio::pin!(stop);
    info!(identity = %identity, "waiting for the IamIdentityMapping cache to sync");
    if !wait_until_synced(&mappings.watch, stop.as_mut(), "reconcile loop").await {
        return finish(process.shutdown, server, leadership).await;
    }
    info!("cache synced; reconciling");
    reconcile_loop(
        &ctx,
        &mappings,
        &wakes.reconcile,
        config.resync,
        &process.metrics,
        &process.health,
        leadership.as_mut(),
        &mut stop,
    )
    .await;
    mapping_watch.abort();
    aws_auth_watch.abort();
    finish(process.shutdown, server, leadership).await
}

/// What the reconcile works with, before the loops that feed it are added.
fn reconcile_context(client: Client, config: &RunConfig, identity: &str) -> Context {
    Context {
        events: Some(EventPublisher::new(
            client.clone(),
            CONTROLLER_NAME,
            identity,
        )),
        status_concurrency: config.status_concurrency,
        ..Context::new(client, config.settings.clone(), config.history_limit)
    }
}

/// What every task of the process reports to, and the signal that stops them.
#[derive(Default)]
struct Process {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Arc<Notify>,
}

impl Process {
    /// Resolves once the process stops.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let shutdown = self.shutdown.clone();
        async move { shutdown.notified().await }
    }
}

/// The wake-up of each loop.
#[derive(Default)]
struct Wakes {
    reconcile: Arc<Notify>,
    access_entries: Arc<Notify>,
    principals: Arc<Notify>,
}

type ServerTask = tokio::task::JoinHandle<Result<(), crate::server::ServerError>>;

/// Serves /healthz, /readyz and /metrics until the process stops.
async fn serve_metrics(addr: SocketAddr, process: &Process) -> Result<ServerTask, ControllerError> {
    // Bound before anything else starts, so that a taken port fails at once.
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::server::ServerError::Bind { addr, source })?;
    Ok(tokio::spawn(crate::server::serve_on(
        listener,
        process.metrics.clone(),
        process.health.clone(),
        process.stopped(),
    )))
}

/// The mapping watch, feeding the store and the cache's state. Its task is the only one that
/// learns when the cache is synced, and tells everyone else through the cache's watch.
fn watch_mappings(
    client: &Client,
    process: &Process,
    changed: Arc<Notify>,
) -> (MappingCache, tokio::task::JoinHandle<()>) {
    let (store, writer) = reflector::store::<IamIdentityMapping>();
    let (tracker, cache_watch) = CacheTracker::new();
    let events = reflector(
        writer,
        watcher(Api::all(client.clone()), watcher::Config::default()).modify(slim),
    )
    .backoff(watch_backoff())
    .inspect(move |event| tracker.observe(event));
    let task = tokio::spawn(follow_watch(
        events,
        changed,
        process.health.clone(),
        process.metrics.clone(),
        "watch of IamIdentityMappings",
        spec_changes(),
    ));
    let cache = MappingCache {
        store,
        watch: cache_watch,
    };
    (cache, task)
}

/// The watch of aws-auth itself: every change of it wakes the reconcile loop.
fn watch_aws_auth(
    client: &Client,
    process: &Process,
    wake: Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    let events = watcher(
        configmaps,
        watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}")),
    )
    .backoff(watch_backoff());
    tokio::spawn(follow_watch(
        events,
        wake,
        process.health.clone(),
        process.metrics.clone(),
        "watch of kube-system/aws-auth",
        |_: &watcher::Event<ConfigMap>| true,
    ))
}

/// With `--leader-election`, takes part in the election on the Lease; `None` without, and
/// then this replica always writes.
async fn elect_leader(
    client: &Client,
    config: &RunConfig,
    identity: &str,
    process: &Process,
) -> Result<Option<leader::Leadership>, ControllerError> {
    if !config.leader_election {
        process.metrics.set_leader(true);
        return Ok(None);
    }
    let leadership = leader::elect(
        client.clone(),
        leader::LeaderConfig::new(config.lease_namespace.clone(), identity.to_string()),
    )
    .await?;
    tokio::spawn(follow_leader_problems(
        leadership.problems(),
        process.health.clone(),
    ));
    Ok(Some(leadership))
}

/// The principal resolver; its IAM client is built only once a mapping needs it. Returns the
/// board it publishes on.
fn start_principals(
    config: &RunConfig,
    mappings: &MappingCache,
    wakes: &Wakes,
    process: &Process,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
) -> PrincipalBoard {
    let board = PrincipalBoard::new();
    let principals_config = config.principals.clone();
    tokio::spawn(principals::resolver::run_loop(
        move || {
            let config = principals_config.clone();
            async move { IamClient::from_config(&config).await }
        },
        config.principals.clone(),
        mappings.clone(),
        wakes.principals.clone(),
        board.clone(),
        leading,
        process.stopped(),
    ));
    // A resolution changes what aws-auth and the access entries hold.
    forward_wakes(board.changed(), [&wakes.reconcile, &wakes.access_entries]);
    board
}

/// The access-entry loop, when EKS is known (`None` with `--access-entries=off` and no
/// cluster: then no EKS client is built).
async fn start_access_entries(
    config: &RunConfig,
    mappings: &MappingCache,
    wakes: &Wakes,
    process: &Process,
    principals: &PrincipalBoard,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
) -> Option<AccessEntriesView> {
    let access_config = config.access_entries.as_ref()?;
    let board = ReportBoard::new();
    let eks = Arc::new(EksClient::from_config(access_config).await);
    info!(cluster = %access_config.cluster_name, region = %access_config.region, mode = ?access_config.mode, "EKS access entries on");
    tokio::spawn(accessentries::runner::run_loop(
        eks,
        access_config.clone(),
        // The same policy as aws-auth's: an access entry overrides aws-auth, so a mapping
        // refused there must not get one.
        config.settings.clone(),
        mappings.clone(),
        wakes.access_entries.clone(),
        board.clone(),
        principals.clone(),
        leading,
        process.stopped(),
    ));
    tokio::spawn(follow_eks_problems(
        board.eks_problem(),
        process.health.clone(),
        process.metrics.clone(),
    ));
    // A new report (an entry created, confirmed, failed) may change a status, or let `only`
    // mode remove an aws-auth entry.
    forward_wakes(board.changed(), [&wakes.reconcile]);
    Some(AccessEntriesView {
        mode: access_config.mode,
        board,
    })
}

/// Wakes every loop of `to` whenever `from` is notified, for as long as the process runs.
fn forward_wakes<const N: usize>(from: Arc<Notify>, to: [&Arc<Notify>; N]) {
    let to = to.map(Arc::clone);
    tokio::spawn(async move {
        loop {
            from.notified().await;
            for wake in &to {
                wake.notify_one();
            }
        }
    });
}

/// Keeps readiness and the cache metrics in step with the mapping cache. While it has not
/// synced, says what it still waits for at the first error and then every `interval`: a
/// start-up hang is never silent.
pub async fn report_cache(
    mut cache: CacheWatch,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    interval: Duration,
) {
    const COMPONENT: &str = "IamIdentityMapping cache";
    let started = Instant::now();
    let mut next_report = tokio::time::Instant::now() + interval;
    let mut reported_error = false;
    loop {
        let state = cache.state();
        metrics.set_mapping_cache(state.synced, state.current);
        health.set_ready(state.synced);
        // Once synced, a failing watch is reported by the watch itself.
        let waiting = (!state.synced).then(|| state.missing()).flatten();
        health.set_problem(COMPONENT, waiting.clone());
        if let Some(missing) = &waiting
            && state.errors > 0
            && !reported_error
        {
            reported_error = true;
            warn!(
                missing,
                "the IamIdentityMapping cache cannot sync yet; not reconciling"
            );
        }
        tokio::select! {
            changed = cache.changed() => {
                if !changed {
                    return;
                }
            }
            _ = tokio::time::sleep_until(next_report), if waiting.is_some() => {
                warn!(
                    waited_seconds = started.elapsed().as_secs(),
                    missing = waiting.as_deref().unwrap_or_default(),
                    "the IamIdentityMapping cache has not synced yet; not reconciling"
                );
                next_report += interval;
            }
        }
    }
}

/// The reconcile loop: waits for a wake-up (or the resync period), lets a burst settle,
/// reconciles with the mappings in the cache, and backs off after a failure. While another
/// replica leads, it waits. Returns when `stop` resolves.
#[allow(clippy::too_many_arguments)]
pub async fn reconcile_loop<F: Future + Unpin>(
    ctx: &Context,
    mappings: &MappingCache,
    wake: &Notify,
    resync: Duration,
    metrics: &Metrics,
    health: &Health,
    mut leadership: Option<&mut leader::Leadership>,
    mut stop: F,
) {
    let mut backoff = Duration::from_millis(500);
    let mut failures = 0u32;
    wake.notify_one();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(resync) => {}
            _ = &mut stop => break,
        }
        if !lead(leadership.as_deref_mut(), metrics, &mut stop).await {
            break;
        }
        settle(wake).await;
        let started = Instant::now();
        let snapshot = mappings.snapshot();
        let now = Time(Timestamp::now());
        // Stop writing the moment leadership is lost (compare-and-swap keeps even a late
        // write safe, but a former leader should not keep going).
        let subscription = leadership.as_deref().map(leader::Leadership::subscribe);
        let reconciling = reconcile_snapshot(ctx, &snapshot, now);
        tokio::pin!(reconciling);
        let result = tokio::select! {
            result = &mut reconciling => result,
            _ = leadership_lost(subscription) => {
                warn!("leadership lost during a reconcile; standing by");
                metrics.set_leader(false);
                continue;
            }
            // Asked to stop mid-reconcile (SIGTERM): let it finish its few calls, so that what
            // it wrote is recorded in history, but do not outlive the pod's grace period.
            _ = &mut stop => {
                match tokio::time::timeout(STOP_GRACE, &mut reconciling).await {
                    Ok(_) => info!("finished the reconcile in flight; stopping"),
                    Err(_) => warn!(grace = ?STOP_GRACE, "stopping during a reconcile (every write is compare-and-swap; the next leader picks up)"),
                }
                break;
            }
        };
        match result {
            Ok(report) => {
                metrics.reconciled(started.elapsed(), None);
                record(&report, metrics, health);
                backoff = Duration::from_millis(500);
                failures = 0;
            }
            Err(err) => {
                metrics.reconciled(started.elapsed(), Some(err.reason()));
                failures += 1;
                error!(error = %err, reason = err.reason(), retry_in = ?backoff, "reconcile failed");
                // Not ready while the operator cannot do its job: forbidden by RBAC, or
                // failing again and again.
                let persistent = err.is_forbidden() || failures >= 3;
                if persistent {
                    health.set_problem("reconcile", Some(err.to_string()));
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => break,
                }
                backoff = (backoff * 2).min(MAX_RECONCILE_BACKOFF);
                wake.notify_one();
            }
        }
    }
}

/// Waits until this replica leads (at once without leader election); false when `stop`
/// resolves first.
async fn lead<F: Future + Unpin>(
    leadership: Option<&mut leader::Leadership>,
    metrics: &Metrics,
    stop: &mut F,
) -> bool {
    let Some(leadership) = leadership else {
        return true;
    };
    metrics.set_leader(leadership.is_leader());
    if leadership.is_leader() {
        return true;
    }
    tokio::select! {
        _ = leadership.wait_until_leader() => {
            metrics.set_leader(true);
            true
        }
        _ = stop => false,
    }
}

/// What a reconcile that went through reports: into the metrics and readiness.
fn record(report: &ReconcileReport, metrics: &Metrics, health: &Health) {
    metrics.set_entries(report.managed_entries, report.unmanaged_entries);
    metrics.set_conflicts(report.mappings_in_conflict);
    metrics.set_mapping_states(&report.mapping_states);
    metrics.set_access_entry_states(&report.access_entry_states);
    metrics.set_aws_auth_size(report.aws_auth_data_bytes, report.aws_auth_data_limit_bytes);
    for _ in 0..report.aws_auth_writes {
        metrics.aws_auth_written();
    }
    for _ in 0..report.status_writes {
        metrics.status_written();
    }
    metrics.drift_repaired(report.drift_repairs);
    if let Some((kept, _)) = report.history_kept {
        metrics.set_history_revisions(kept);
    }
    health.set_problem("reconcile", None);
    health.set_problem("aws-auth", report.frozen.clone());
    metrics.set_frozen(report.frozen.is_some());
}

/// Which mapping events are worth a reconcile: a mapping created, deleted, or whose spec
/// changed (a new generation), and the end of a (re-)list. Status patches, the operator's own
/// included, come back as events too; they change nothing the plan reads but the last rendered
/// entry, which the operator itself wrote.
pub fn spec_changes() -> impl FnMut(&watcher::Event<IamIdentityMapping>) -> bool {
    let mut generations: std::collections::HashMap<String, Option<i64>> =
        std::collections::HashMap::new();
    move |event| {
        let key = |m: &IamIdentityMapping| m.metadata.uid.clone().unwrap_or_else(|| m.name_any());
        match event {
            watcher::Event::Apply(m) | watcher::Event::InitApply(m) => {
                generations.insert(key(m), m.metadata.generation) != Some(m.metadata.generation)
            }
            watcher::Event::Delete(m) => {
                generations.remove(&key(m));
                true
            }
            watcher::Event::Init => false,
            watcher::Event::InitDone => true,
        }
    }
}

/// Consumes a watch stream: every event `wakes` says matters wakes the reconcile loop; an error
/// marks the operator not ready (its view of the cluster is stale) until the watch delivers
/// events again, and the first event after an error wakes the loop at once (the watcher re-lists
/// after a restart of the API server, "too old resource version" included).
pub async fn follow_watch<S, K>(
    events: S,
    wake: Arc<Notify>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    what: &'static str,
    mut wakes: impl FnMut(&watcher::Event<K>) -> bool,
) where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    futures::pin_mut!(events);
    // The metric's label: what is watched.
    let watch = what.strip_prefix("watch of ").unwrap_or(what);
    metrics.set_watch_up(watch, false);
    let mut down = false;
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                metrics.set_watch_up(watch, true);
                let back = down;
                if down {
                    info!(watch = what, "watch is back");
                    health.set_problem(what, None);
                    down = false;
                }
                if wakes(&event) || back {
                    wake.notify_one();
                }
            }
            Err(err) => {
                warn!(watch = what, error = %err, "watch error; retrying");
                health.set_problem(what, Some(format!("down: {err}")));
                metrics.set_watch_up(watch, false);
                down = true;
            }
        }
    }
}

/// Mirrors the leader election's problems (a Lease the RBAC forbids) into readiness.
async fn follow_leader_problems(
    mut problems: tokio::sync::watch::Receiver<Option<String>>,
    health: Arc<Health>,
) {
    loop {
        let problem = problems.borrow_and_update().clone();
        health.set_problem("leader election", problem);
        if problems.changed().await.is_err() {
            return;
        }
    }
}

/// The component name of EKS problems in `/readyz`.
pub const EKS_HEALTH_COMPONENT: &str = "EKS access entries";

/// Mirrors what the access-entry loop says about EKS (not answering, refusing its calls) into
/// the body of `/readyz` and the `eks_unavailable` metric. A warning, not a readiness problem:
/// aws-auth is still managed, and neither a stalled rollout nor a restart helps EKS.
pub async fn follow_eks_problems(
    mut problems: tokio::sync::watch::Receiver<Option<String>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) {
    loop {
        let problem = problems.borrow_and_update().clone();
        metrics.set_eks_unavailable(problem.is_some());
        health.set_warning(EKS_HEALTH_COMPONENT, problem);
        if problems.changed().await.is_err() {
            return;
        }
    }
}

/// Waits until events stop arriving for a moment (at most `MAX_SETTLE`), so that a burst of
/// changes (a GitOps sync creating hundreds of mappings) is planned and written once.
async fn settle(wake: &Notify) {
    const QUIET: Duration = Duration::from_millis(100);
    const MAX_SETTLE: Duration = Duration::from_secs(1);
    let deadline = Instant::now() + MAX_SETTLE;
    while Instant::now() < deadline {
        if tokio::time::timeout(QUIET, wake.notified()).await.is_err() {
            return;
        }
    }
}

/// Resolves when leadership is lost; never without leader election.
async fn leadership_lost(subscription: Option<tokio::sync::watch::Receiver<bool>>) {
    let Some(mut rx) = subscription else {
        return futures::future::pending().await;
    };
    while *rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn finish(
    shutdown: Arc<Notify>,
    server: ServerTask,
    leadership: Option<leader::Leadership>,
) -> Result<(), ControllerError> {
    info!("shutting down");
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    // Every task waiting on it (the metrics server, the access-entry loop).
    shutdown.notify_waiters();
    shutdown.notify_one();
    match server.await {
        Ok(result) => result?,
        Err(err) => warn!(error = %err, "metrics server task failed"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(err) => {
                warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone() -> watcher::Error {
        watcher::Error::WatchError(Box::new(kube::core::Status::failure(
            "too old resource version: 1 (100)",
            "Expired",
        )))
    }

    /// A watch that fails marks the operator not ready, and its first event after
    /// the error (the re-list once the API server is back) makes it ready and wakes the loop.
    #[tokio::test]
    async fn a_failing_watch_is_reported_until_it_delivers_again() {
        let health = Arc::new(Health::new());
        health.set_ready(true);
        let wake = Arc::new(Notify::new());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let metrics = Arc::new(Metrics::new());
        let task = tokio::spawn(follow_watch(
            tokio_stream_from(rx),
            wake.clone(),
            health.clone(),
            metrics.clone(),
            "watch of test objects",
            |_: &watcher::Event<ConfigMap>| false,
        ));
        tx.send(Err(gone())).unwrap();
        tx.send(Err(gone())).unwrap();
        wait(|| !health.is_ready()).await;
        assert!(
            health
                .not_ready_reason()
                .contains("watch of test objects: down")
        );
        let up = "aws_auth_operator_watch_up{watch=\"test objects\"}";
        assert!(metrics.encode().contains(&format!("{up} 0")));
        tx.send(Ok(watcher::Event::<ConfigMap>::Init)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), wake.notified())
            .await
            .expect("woken once the watch is back");
        wait(|| health.is_ready()).await;
        assert!(metrics.encode().contains(&format!("{up} 1")));
        drop(tx);
        task.await.unwrap();
    }

    /// What the access-entry loop says about EKS shows in /readyz's body and the metric, and
    /// goes when EKS answers again; readiness stays.
    #[tokio::test]
    async fn eks_problems_are_warnings_and_a_metric() {
        let health = Arc::new(Health::new());
        health.set_ready(true);
        let metrics = Arc::new(Metrics::new());
        let board = ReportBoard::new();
        let task = tokio::spawn(follow_eks_problems(
            board.eks_problem(),
            health.clone(),
            metrics.clone(),
        ));
        board.set_cluster(accessentries::ClusterReport {
            eks_problem: Some("EKS is not answering: DescribeCluster: timeout".into()),
            ..Default::default()
        });
        wait(|| !health.warnings().is_empty()).await;
        assert_eq!(
            health.warnings(),
            ["EKS access entries: EKS is not answering: DescribeCluster: timeout"]
        );
        assert!(health.is_ready());
        assert!(
            metrics
                .encode()
                .contains("aws_auth_operator_eks_unavailable 1")
        );
        board.set_cluster(Default::default());
        wait(|| health.warnings().is_empty()).await;
        assert!(
            metrics
                .encode()
                .contains("aws_auth_operator_eks_unavailable 0")
        );
        task.abort();
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
    ) -> impl Stream<Item = T> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    async fn wait(condition: impl Fn() -> bool) {
        for _ in 0..200 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    /// The watch backoff never waits more than 5 s (4 s and a quarter of jitter), and a reset
    /// starts again at 250 ms.
    #[test]
    fn watch_backoff_is_short() {
        use kube::runtime::utils::Backoff;
        let mut backoff = watch_backoff();
        let delays: Vec<Duration> = backoff.by_ref().take(12).collect();
        assert!(delays[0] >= WATCH_BACKOFF_MIN && delays[0] <= WATCH_BACKOFF_MIN * 5 / 4);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(5)),
            "{delays:?}"
        );
        assert!(delays[11] >= WATCH_BACKOFF_MAX);
        backoff.reset();
        assert!(backoff.next().unwrap() <= WATCH_BACKOFF_MIN * 5 / 4);
        assert!(MAX_RECONCILE_BACKOFF <= Duration::from_secs(5));
    }

    /// Status patches (the operator's own) do not wake the loop; a new mapping, a spec change
    /// and a deletion do.
    #[test]
    fn only_spec_changes_wake_the_loop() {
        let mut wakes = spec_changes();
        let mut mapping = IamIdentityMapping::new("m", Default::default());
        mapping.metadata.uid = Some("uid-m".to_string());
        mapping.metadata.generation = Some(1);
        assert!(!wakes(&watcher::Event::Init));
        assert!(wakes(&watcher::Event::InitApply(mapping.clone())));
        assert!(wakes(&watcher::Event::InitDone));
        mapping.status = Some(Default::default());
        assert!(
            !wakes(&watcher::Event::Apply(mapping.clone())),
            "a status patch"
        );
        mapping.metadata.generation = Some(2);
        assert!(
            wakes(&watcher::Event::Apply(mapping.clone())),
            "a spec change"
        );
        assert!(wakes(&watcher::Event::Delete(mapping.clone())));
        assert!(wakes(&watcher::Event::Apply(mapping)), "created again");
    }

    #[test]
    fn slim_drops_what_the_operator_never_reads() {
        let mut mapping = IamIdentityMapping::new("m", Default::default());
        mapping.metadata.managed_fields = Some(vec![Default::default()]);
        mapping.metadata.annotations = Some(
            [
                (
                    "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                    "{}".to_string(),
                ),
                ("team".to_string(), "a".to_string()),
            ]
            .into(),
        );
        slim(&mut mapping);
        assert!(
            mapping
                .metadata
                .managed_fields
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(
            mapping
                .metadata
                .annotations
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["team"]
        );
    }
}
