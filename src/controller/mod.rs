//! The kube-runtime shell: gathers inputs, calls `plan()`, applies the result.
//!
//! One reconcile key, kube-system/aws-auth. Every IamIdentityMapping event and every aws-auth
//! event only wakes the loop; while a reconcile runs, further events collapse into one pending
//! wake-up, so a burst of a thousand changes costs a handful of reconciles.

pub mod history;
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
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use thiserror::Error;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use crate::plan::Settings;
use crate::server::{Health, Metrics};
use reconcile::{Context, reconcile};

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("connecting to Kubernetes: {0}")]
    Client(#[source] kube::Error),
    #[error(
        "the IamIdentityMapping CRD is not installed or not readable ({0}); install it with `aws-auth-operator crd | kubectl apply -f -`"
    )]
    CrdMissing(#[source] kube::Error),
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
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(config: RunConfig) -> Result<(), ControllerError> {
    let client = Client::try_default()
        .await
        .map_err(ControllerError::Client)?;
    let mappings_api: Api<IamIdentityMapping> = Api::all(client.clone());
    mappings_api
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(ControllerError::CrdMissing)?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let shutdown = Arc::new(Notify::new());
    let server = {
        let (metrics, health, shutdown) = (metrics.clone(), health.clone(), shutdown.clone());
        let addr = config.metrics_addr;
        tokio::spawn(async move {
            crate::server::serve(
                addr,
                metrics,
                health,
                async move { shutdown.notified().await },
            )
            .await
        })
    };

    let wake = Arc::new(Notify::new());
    let (store, writer) = reflector::store::<IamIdentityMapping>();
    let mapping_events = reflector(writer, watcher(mappings_api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    let aws_auth_events = watcher(
        configmaps,
        watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}")),
    )
    .default_backoff()
    .touched_objects();
    let mapping_watch = tokio::spawn(wake_on(mapping_events, wake.clone(), "IamIdentityMapping"));
    let aws_auth_watch = tokio::spawn(wake_on(aws_auth_events, wake.clone(), "aws-auth"));

    let mut leadership = if config.leader_election {
        let identity = leader::default_identity();
        Some(
            leader::elect(
                client.clone(),
                leader::LeaderConfig::new(config.lease_namespace.clone(), identity),
            )
            .await?,
        )
    } else {
        None
    };

    let ctx = Context {
        client: client.clone(),
        settings: config.settings,
        history_limit: config.history_limit,
        recorder: Some(Recorder::new(
            client.clone(),
            Reporter {
                controller: "aws-auth-operator".to_string(),
                instance: std::env::var("POD_NAME").ok(),
            },
        )),
    };

    let stop = tokio::spawn(async {
        shutdown_signal().await;
    });
    tokio::pin!(stop);

    info!("waiting for the IamIdentityMapping cache to sync");
    tokio::select! {
        _ = store.wait_until_ready() => {}
        _ = &mut stop => return finish(shutdown, server, leadership).await,
    }
    health.set_ready(true);
    info!("cache synced; reconciling");

    reconcile_loop(
        &ctx,
        &store,
        &wake,
        config.resync,
        &metrics,
        leadership.as_mut(),
        &mut stop,
    )
    .await;
    mapping_watch.abort();
    aws_auth_watch.abort();
    finish(shutdown, server, leadership).await
}

/// The reconcile loop: waits for a wake-up (or the resync period), lets a burst settle,
/// reconciles with the mappings in `store`, and backs off after a failure. While another
/// replica leads, it waits. Returns when `stop` resolves.
pub async fn reconcile_loop<F: Future + Unpin>(
    ctx: &Context,
    store: &reflector::Store<IamIdentityMapping>,
    wake: &Notify,
    resync: Duration,
    metrics: &Metrics,
    mut leadership: Option<&mut leader::Leadership>,
    mut stop: F,
) {
    let mut backoff = Duration::from_secs(1);
    wake.notify_one();
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(resync) => {}
            _ = &mut stop => break,
        }
        if let Some(leadership) = leadership.as_mut() {
            metrics.set_leader(leadership.is_leader());
            if !leadership.is_leader() {
                tokio::select! {
                    _ = leadership.wait_until_leader() => { metrics.set_leader(true); }
                    _ = &mut stop => break,
                }
            }
        }
        settle(wake).await;
        let started = Instant::now();
        let mappings = store.state();
        let now = Time(Timestamp::now());
        // Stop writing the moment leadership is lost (compare-and-swap keeps even a late
        // write safe, but a former leader should not keep going).
        let subscription = leadership.as_deref().map(leader::Leadership::subscribe);
        let result = tokio::select! {
            result = reconcile(ctx, &mappings, now) => result,
            _ = leadership_lost(subscription) => {
                warn!("leadership lost during a reconcile; standing by");
                metrics.set_leader(false);
                continue;
            }
        };
        match result {
            Ok(report) => {
                metrics.reconciled(started.elapsed(), None);
                metrics.set_entries(report.managed_entries, report.unmanaged_entries);
                metrics.set_conflicts(report.mappings_in_conflict);
                for _ in 0..report.aws_auth_writes {
                    metrics.aws_auth_written();
                }
                for _ in 0..report.status_writes {
                    metrics.status_written();
                }
                metrics.drift_repaired(report.drift_repairs);
                backoff = Duration::from_secs(1);
            }
            Err(err) => {
                metrics.reconciled(started.elapsed(), Some(err.reason()));
                error!(error = %err, reason = err.reason(), retry_in = ?backoff, "reconcile failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                wake.notify_one();
            }
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

/// Consumes a watch stream; every event only wakes the reconcile loop.
async fn wake_on<S, K, E>(events: S, wake: Arc<Notify>, what: &'static str)
where
    S: Stream<Item = Result<K, E>>,
    E: std::fmt::Display,
{
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(_) => wake.notify_one(),
            Err(err) => warn!(watch = what, error = %err, "watch error; retrying"),
        }
    }
}

async fn finish(
    shutdown: Arc<Notify>,
    server: tokio::task::JoinHandle<Result<(), crate::server::ServerError>>,
    leadership: Option<leader::Leadership>,
) -> Result<(), ControllerError> {
    info!("shutting down");
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
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
