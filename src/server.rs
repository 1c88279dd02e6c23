//! `/healthz`, `/readyz` and Prometheus `/metrics` over HTTP/1.1 (axum).
//!
//! [`Metrics`] and [`Health`] are shared with the controller through `Arc`s; every method takes
//! `&self` and is lock-free or uses the metric's own short lock, so the reconcile loop can update
//! them without coordinating with scrapes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;
use tokio::net::TcpListener;
use tracing::{error, info};

/// Prefix of every metric name.
pub const METRICS_PREFIX: &str = "aws_auth_operator";

/// Content type of the OpenMetrics text exposition served on `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the reconcile duration histogram: 1 ms .. 10 s in 1-2.5-5 steps,
/// round numbers so dashboards can quote them.
const DURATION_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Error reasons longer than this, or not plain ASCII alphanumerics, are reported as
/// [`UNKNOWN_REASON`] so a bad caller cannot blow up label cardinality.
const MAX_REASON_LEN: usize = 64;
const UNKNOWN_REASON: &str = "Unknown";

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("binding the metrics/health listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving metrics/health: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// A mapping's Ready condition: `ready` is `true`, `false` or `unknown`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct MappingStateLabels {
    ready: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct AccessEntryStateLabels {
    synced: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsApiErrorLabels {
    service: &'static str,
    operation: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    watch: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    git_commit: &'static str,
}

/// The version of this build, and the git commit it was built from when the build set
/// `AWS_AUTH_OPERATOR_GIT_COMMIT` (the Dockerfile and the Makefile do), else `unknown`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_COMMIT: &str = match option_env!("AWS_AUTH_OPERATOR_GIT_COMMIT") {
    Some(commit) if !commit.is_empty() => commit,
    _ => "unknown",
};

/// Failed EKS, IAM and STS calls. Process-wide rather than a field of [`Metrics`]: the failures
/// are seen where the SDK answers, deep inside the clients, which hold no handle on the
/// metrics; every [`Metrics`] of the process exposes this one family.
static AWS_API_ERRORS: LazyLock<Family<AwsApiErrorLabels, Counter>> =
    LazyLock::new(Family::default);

/// Counts one failed call to an AWS API. `service` is `eks`, `iam` or `sts`; `operation` the
/// API operation (`CreateAccessEntry`); `code` the error code the service answered
/// (`AccessDeniedException`), or `Unreachable` when no answer came. Answers that only say a
/// thing does not exist are not failures and are not counted by the callers.
pub fn aws_api_error(service: &'static str, operation: &'static str, code: &str) {
    let code = sanitize_reason(code).to_string();
    AWS_API_ERRORS
        .get_or_create(&AwsApiErrorLabels {
            service,
            operation,
            code,
        })
        .inc();
}

/// The operator's Prometheus metrics. All names carry the `aws_auth_operator_` prefix.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    reconcile_errors: Family<ReasonLabels, Counter>,
    managed_entries: Gauge,
    unmanaged_entries: Gauge,
    aws_auth_writes: Counter,
    status_writes: Counter,
    drift_repairs: Counter,
    conflicts: Gauge,
    leader: Gauge,
    history_revisions: Gauge,
    aws_auth_frozen: Gauge,
    mapping_cache_synced: Gauge,
    mapping_cache_current: Gauge,
    mappings: Family<MappingStateLabels, Gauge>,
    /// Every label set of `mappings` ever set, so that a state no mapping is in any more
    /// reads 0 instead of keeping its last count.
    mappings_seen: Mutex<BTreeSet<MappingStateLabels>>,
    access_entries: Family<AccessEntryStateLabels, Gauge>,
    access_entries_seen: Mutex<BTreeSet<AccessEntryStateLabels>>,
    aws_auth_data_bytes: Gauge,
    aws_auth_data_limit_bytes: Gauge,
    last_success: Gauge<f64, AtomicU64>,
    watch_up: Family<WatchLabels, Gauge>,
    eks_unavailable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix(METRICS_PREFIX),
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(DURATION_BUCKETS),
            reconcile_errors: Family::default(),
            managed_entries: Gauge::default(),
            unmanaged_entries: Gauge::default(),
            aws_auth_writes: Counter::default(),
            status_writes: Counter::default(),
            drift_repairs: Counter::default(),
            conflicts: Gauge::default(),
            leader: Gauge::default(),
            history_revisions: Gauge::default(),
            aws_auth_frozen: Gauge::default(),
            mapping_cache_synced: Gauge::default(),
            mapping_cache_current: Gauge::default(),
            mappings: Family::default(),
            mappings_seen: Mutex::new(BTreeSet::new()),
            access_entries: Family::default(),
            access_entries_seen: Mutex::new(BTreeSet::new()),
            aws_auth_data_bytes: Gauge::default(),
            aws_auth_data_limit_bytes: Gauge::default(),
            last_success: Gauge::default(),
            watch_up: Family::default(),
            eks_unavailable: Gauge::default(),
        };
        // Out of the struct while each family registers clones of its metrics into it.
        let mut registry = std::mem::take(&mut metrics.registry);
        metrics.register_reconciles(&mut registry);
        metrics.register_aws_auth(&mut registry);
        metrics.register_mapping_cache(&mut registry);
        metrics.register_mappings(&mut registry);
        metrics.register_access_entries(&mut registry);
        register_build_info(&mut registry);
        metrics.registry = registry;
        metrics
    }

    // Counters get their `_total` suffix and the histogram its `_seconds` unit from the
    // registry; the names below must not repeat them.

    fn register_reconciles(&self, registry: &mut Registry) {
        registry.register(
            "reconciles",
            "Reconciles of aws-auth, by result (success or error)",
            self.reconciles.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Wall-clock duration of one reconcile of aws-auth",
            Unit::Seconds,
            self.reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by machine-readable reason",
            self.reconcile_errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_last_success_timestamp",
            "Unix time of the end of the last successful reconcile of aws-auth, 0 before the first",
            Unit::Seconds,
            self.last_success.clone(),
        );
        // Both result series exist from the start so `rate()` over them is defined before the
        // first error.
        for result in ["success", "error"] {
            let _ = self.reconciles.get_or_create(&ResultLabels { result });
        }
    }

    fn register_aws_auth(&self, registry: &mut Registry) {
        registry.register(
            "managed_entries",
            "aws-auth entries owned by the operator (rendered from IamIdentityMapping resources)",
            self.managed_entries.clone(),
        );
        registry.register(
            "unmanaged_entries",
            "aws-auth entries the operator preserves but does not own",
            self.unmanaged_entries.clone(),
        );
        registry.register(
            "aws_auth_writes",
            "Writes of the aws-auth ConfigMap",
            self.aws_auth_writes.clone(),
        );
        registry.register(
            "drift_repairs",
            "Managed aws-auth entries changed outside the operator and restored",
            self.drift_repairs.clone(),
        );
        registry.register(
            "leader",
            "1 when this replica writes aws-auth (it holds the leader lease, or leader election is off), else 0",
            self.leader.clone(),
        );
        registry.register(
            "history_revisions",
            "Revisions of aws-auth kept in kube-system/aws-auth-operator-history after the last one recorded",
            self.history_revisions.clone(),
        );
        registry.register(
            "aws_auth_frozen",
            "1 while aws-auth is frozen (annotation awsauth.dev/frozen: no managed entry is removed until a person lifts it), else 0",
            self.aws_auth_frozen.clone(),
        );
        registry.register_with_unit(
            "aws_auth_data",
            "Size of the data of the aws-auth ConfigMap as of the last reconcile (what the operator wrote or found)",
            Unit::Bytes,
            self.aws_auth_data_bytes.clone(),
        );
        self.aws_auth_data_limit_bytes
            .set(to_i64(crate::awsauth::MAX_CONFIGMAP_DATA_BYTES));
        registry.register_with_unit(
            "aws_auth_data_limit",
            "Most data the operator writes into aws-auth (Kubernetes refuses a ConfigMap over 1 MiB)",
            Unit::Bytes,
            self.aws_auth_data_limit_bytes.clone(),
        );
    }

    fn register_mapping_cache(&self, registry: &mut Registry) {
        registry.register(
            "mapping_cache_synced",
            "1 once the IamIdentityMapping cache has been listed completely (the operator reconciles only then), else 0",
            self.mapping_cache_synced.clone(),
        );
        registry.register(
            "mapping_cache_current",
            "1 while the IamIdentityMapping cache is current (listed, and no watch error since its last event): managed entries are removed only then, else 0",
            self.mapping_cache_current.clone(),
        );
        registry.register(
            "watch_up",
            "1 while a watch delivers events (IamIdentityMappings, kube-system/aws-auth), 0 before its first event and after an error until it delivers again",
            self.watch_up.clone(),
        );
    }

    fn register_mappings(&self, registry: &mut Registry) {
        registry.register(
            "mappings",
            "IamIdentityMapping resources by their Ready condition (ready: true, false or unknown) and its reason, as of the last reconcile",
            self.mappings.clone(),
        );
        registry.register(
            "status_writes",
            "IamIdentityMapping status patches",
            self.status_writes.clone(),
        );
        registry.register(
            "conflicts",
            "IamIdentityMapping resources currently in conflict with an older mapping",
            self.conflicts.clone(),
        );
    }

    fn register_access_entries(&self, registry: &mut Registry) {
        registry.register(
            "access_entries",
            "IamIdentityMapping resources by the state of their EKS access entry (AccessEntrySynced condition and reason), as of the last reconcile; absent with --access-entries=off",
            self.access_entries.clone(),
        );
        registry.register(
            "eks_unavailable",
            "1 while the EKS API does not answer the access-entry loop (timeouts, refused connections) or refuses its calls (the /readyz body says why), else 0; always 0 without an EKS client",
            self.eks_unavailable.clone(),
        );
        registry.register(
            "aws_api_errors",
            "Failed EKS, IAM and STS calls (after the SDK's retries), by service, operation and error code (Unreachable: no answer)",
            AWS_API_ERRORS.clone(),
        );
    }

    /// Records one finished reconcile; `error_reason` is `None` on success, else a short
    /// CamelCase reason such as `Conflict` or `ApiError`.
    pub fn reconciled(&self, duration: Duration, error_reason: Option<&str>) {
        self.reconcile_duration.observe(duration.as_secs_f64());
        let result = if error_reason.is_some() {
            "error"
        } else {
            "success"
        };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
        if error_reason.is_none() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success.set(now.as_secs_f64());
        }
        if let Some(reason) = error_reason {
            let reason = sanitize_reason(reason).to_string();
            self.reconcile_errors
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }

    pub fn set_entries(&self, managed: usize, unmanaged: usize) {
        self.managed_entries.set(to_i64(managed));
        self.unmanaged_entries.set(to_i64(unmanaged));
    }

    pub fn set_conflicts(&self, n: usize) {
        self.conflicts.set(to_i64(n));
    }

    pub fn aws_auth_written(&self) {
        self.aws_auth_writes.inc();
    }

    pub fn status_written(&self) {
        self.status_writes.inc();
    }

    pub fn drift_repaired(&self, n: usize) {
        self.drift_repairs
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn set_history_revisions(&self, kept: usize) {
        self.history_revisions.set(to_i64(kept));
    }

    pub fn set_frozen(&self, frozen: bool) {
        self.aws_auth_frozen.set(i64::from(frozen));
    }

    pub fn set_mapping_cache(&self, synced: bool, current: bool) {
        self.mapping_cache_synced.set(i64::from(synced));
        self.mapping_cache_current.set(i64::from(current));
    }

    /// Mappings by the status (`True`, `False`, anything else) and reason of their Ready
    /// condition, as of the last reconcile. States no mapping is in any more read 0.
    pub fn set_mapping_states(&self, states: &BTreeMap<(String, String), usize>) {
        let states = states.iter().map(|((status, reason), n)| {
            let ready = match status.as_str() {
                "True" => "true",
                "False" => "false",
                _ => "unknown",
            };
            let reason = sanitize_reason(reason).to_string();
            (MappingStateLabels { ready, reason }, *n)
        });
        set_states(&self.mappings, &self.mappings_seen, states);
    }

    /// Mappings by whether their access entry is in sync, and the reason.
    pub fn set_access_entry_states(&self, states: &BTreeMap<(bool, String), usize>) {
        let states = states.iter().map(|((synced, reason), n)| {
            let synced = if *synced { "true" } else { "false" };
            let reason = sanitize_reason(reason).to_string();
            (AccessEntryStateLabels { synced, reason }, *n)
        });
        set_states(&self.access_entries, &self.access_entries_seen, states);
    }

    /// Whether a watch delivers events.
    pub fn set_watch_up(&self, watch: &'static str, up: bool) {
        self.watch_up
            .get_or_create(&WatchLabels { watch })
            .set(i64::from(up));
    }

    /// The size of aws-auth's data and the most the operator writes.
    pub fn set_aws_auth_size(&self, bytes: usize, limit: usize) {
        self.aws_auth_data_bytes.set(to_i64(bytes));
        self.aws_auth_data_limit_bytes.set(to_i64(limit));
    }

    pub fn set_eks_unavailable(&self, unavailable: bool) {
        self.eks_unavailable.set(i64::from(unavailable));
    }

    /// The OpenMetrics text exposition, ending in `# EOF`.
    pub fn try_encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Like [`Metrics::try_encode`]; encoding into a `String` only fails on a bug in a metric
    /// type, in which case an empty (but valid) exposition is returned and the error logged.
    pub fn encode(&self) -> String {
        self.try_encode().unwrap_or_else(|err| {
            error!(error = %err, "encoding metrics failed");
            "# EOF\n".to_string()
        })
    }
}

/// Always 1: its labels say which build runs.
fn register_build_info(registry: &mut Registry) {
    let build_info = Family::<BuildLabels, Gauge>::default();
    build_info
        .get_or_create(&BuildLabels {
            version: VERSION,
            git_commit: GIT_COMMIT,
        })
        .set(1);
    registry.register(
        "build_info",
        "Always 1; the labels say which build runs (version, git commit)",
        build_info,
    );
}

/// Sets one gauge per label set; label sets set before and absent now are set to 0 (they stay
/// exposed: the label values are a small closed set, and a 0 is easier to alert on than a
/// series that vanished). Sums over labels sanitised into the same set.
fn set_states<L>(
    family: &Family<L, Gauge>,
    seen: &Mutex<BTreeSet<L>>,
    states: impl Iterator<Item = (L, usize)>,
) where
    L: Clone + std::hash::Hash + Eq + Ord + EncodeLabelSet + std::fmt::Debug,
{
    let mut now: BTreeMap<L, usize> = BTreeMap::new();
    for (labels, n) in states {
        *now.entry(labels).or_default() += n;
    }
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    for labels in seen.iter() {
        if !now.contains_key(labels) {
            family.get_or_create(labels).set(0);
        }
    }
    for (labels, n) in now {
        family.get_or_create(&labels).set(to_i64(n));
        seen.insert(labels);
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn sanitize_reason(reason: &str) -> &str {
    let ok = !reason.is_empty()
        && reason.len() <= MAX_REASON_LEN
        && reason.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok { reason } else { UNKNOWN_REASON }
}

/// Liveness and readiness, set by the controller and read by the probes.
///
/// Ready means the operator can do its job: the caches have synced and no component reports a
/// problem (a watch that is down, an API call the RBAC forbids, a frozen aws-auth, a failing
/// lease renewal). It deliberately does not depend on holding the leader lease: a standby
/// replica is healthy and must stay Ready, or a rollout would never finish and a
/// PodDisruptionBudget would count it as down. Live is false only when the main loop is wedged,
/// since a failing liveness probe restarts the pod.
#[derive(Debug)]
pub struct Health {
    synced: AtomicBool,
    live: AtomicBool,
    /// What keeps the operator from doing its job, by component.
    problems: Mutex<BTreeMap<&'static str, String>>,
    /// What is wrong beside the operator's job, by component: shown in the body of `/readyz`
    /// without making it fail (see [`Health::set_warning`]).
    warnings: Mutex<BTreeMap<&'static str, String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready (caches not synced yet), live.
    pub fn new() -> Health {
        Health {
            synced: AtomicBool::new(false),
            live: AtomicBool::new(true),
            problems: Mutex::new(BTreeMap::new()),
            warnings: Mutex::new(BTreeMap::new()),
        }
    }

    /// The caches have synced (or not).
    pub fn set_ready(&self, ready: bool) {
        self.synced.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.synced.load(Ordering::Relaxed) && self.problems().is_empty()
    }

    /// Reports (`Some`) or clears (`None`) a problem of one component.
    pub fn set_problem(&self, component: &'static str, problem: Option<String>) {
        let mut problems = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        match problem {
            Some(problem) => problems.insert(component, problem),
            None => problems.remove(component),
        };
    }

    /// The current problems, as `component: problem`.
    pub fn problems(&self) -> Vec<String> {
        let problems = self.problems.lock().unwrap_or_else(|p| p.into_inner());
        problems.iter().map(|(c, p)| format!("{c}: {p}")).collect()
    }

    /// Reports (`Some`) or clears (`None`) a warning of one component: something a person should
    /// see in `/readyz` that does not keep the operator from its main job, so readiness stays.
    /// An EKS API that does not answer is one: aws-auth is still managed, a failing probe would
    /// only stall rollouts and restarts cannot fix EKS.
    pub fn set_warning(&self, component: &'static str, warning: Option<String>) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        match warning {
            Some(warning) => warnings.insert(component, warning),
            None => warnings.remove(component),
        };
    }

    /// The current warnings, as `component: warning`.
    pub fn warnings(&self) -> Vec<String> {
        let warnings = self.warnings.lock().unwrap_or_else(|p| p.into_inner());
        warnings.iter().map(|(c, w)| format!("{c}: {w}")).collect()
    }

    /// Why the operator is not ready, for the /readyz body.
    pub fn not_ready_reason(&self) -> String {
        let mut reasons = self.problems();
        if !self.synced.load(Ordering::Relaxed) {
            reasons.insert(0, "caches not synced yet".to_string());
        }
        reasons.join("; ")
    }

    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Relaxed);
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The HTTP routes, without a socket: `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(AppState { metrics, health })
}

async fn healthz(State(state): State<AppState>) -> Response {
    probe(state.health.is_live(), "not live")
}

async fn readyz(State(state): State<AppState>) -> Response {
    let warnings: String = state
        .health
        .warnings()
        .iter()
        .map(|w| format!("warning: {w}\n"))
        .collect();
    if state.health.is_ready() {
        (StatusCode::OK, format!("ok\n{warnings}")).into_response()
    } else {
        let reason = state.health.not_ready_reason();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n{warnings}"),
        )
            .into_response()
    }
}

fn probe(ok: bool, failure: &'static str) -> Response {
    if ok {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{failure}\n")).into_response()
    }
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics.try_encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(err) => {
            error!(error = %err, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Binds `addr` and serves until `shutdown` resolves; see [`serve_on`].
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve_on(listener, metrics, health, shutdown).await
}

/// Serves on an already bound listener until `shutdown` resolves, then stops accepting and waits
/// for in-flight requests. Taking a listener lets tests bind port 0 and learn the port without
/// a race, and lets the caller fail fast on a bad address before starting anything else.
pub async fn serve_on(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving /healthz, /readyz and /metrics");
    }
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn fixtures() -> (Arc<Metrics>, Arc<Health>) {
        (Arc::new(Metrics::new()), Arc::new(Health::new()))
    }

    async fn get_path(app: Router, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[test]
    fn fresh_metrics_expose_every_family() {
        let text = Metrics::new().encode();
        for name in [
            "# TYPE aws_auth_operator_reconciles counter",
            "aws_auth_operator_reconciles_total{result=\"success\"} 0",
            "aws_auth_operator_reconciles_total{result=\"error\"} 0",
            "# TYPE aws_auth_operator_reconcile_duration_seconds histogram",
            "# UNIT aws_auth_operator_reconcile_duration_seconds seconds",
            "aws_auth_operator_managed_entries 0",
            "aws_auth_operator_unmanaged_entries 0",
            "aws_auth_operator_aws_auth_writes_total 0",
            "aws_auth_operator_status_writes_total 0",
            "aws_auth_operator_drift_repairs_total 0",
            "aws_auth_operator_conflicts 0",
            "aws_auth_operator_leader 0",
            "aws_auth_operator_aws_auth_frozen 0",
            "aws_auth_operator_eks_unavailable 0",
        ] {
            assert!(text.contains(name), "missing {name:?} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // The reason set is open, so no series exists before the first error (and
        // prometheus-client omits empty families altogether).
        assert!(!text.contains("reconcile_errors"), "{text}");
    }

    #[test]
    fn recorded_values_appear_in_the_exposition() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(3), None);
        m.reconciled(Duration::from_millis(20), None);
        m.reconciled(Duration::from_secs(2), Some("ApiError"));
        m.reconciled(Duration::from_millis(1), Some("Conflict"));
        m.reconciled(Duration::from_millis(1), Some("Conflict"));
        m.set_entries(7, 3);
        m.set_conflicts(2);
        m.aws_auth_written();
        m.status_written();
        m.status_written();
        m.drift_repaired(4);
        m.set_leader(true);
        m.set_frozen(true);
        let text = m.encode();
        for line in [
            "# TYPE aws_auth_operator_reconcile_errors counter",
            "aws_auth_operator_reconciles_total{result=\"success\"} 2",
            "aws_auth_operator_reconciles_total{result=\"error\"} 3",
            "aws_auth_operator_reconcile_errors_total{reason=\"ApiError\"} 1",
            "aws_auth_operator_reconcile_errors_total{reason=\"Conflict\"} 2",
            "aws_auth_operator_reconcile_duration_seconds_count 5",
            "aws_auth_operator_reconcile_duration_seconds_bucket{le=\"0.001\"} 2",
            "aws_auth_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 3",
            "aws_auth_operator_reconcile_duration_seconds_bucket{le=\"10.0\"} 5",
            "aws_auth_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 5",
            "aws_auth_operator_managed_entries 7",
            "aws_auth_operator_unmanaged_entries 3",
            "aws_auth_operator_conflicts 2",
            "aws_auth_operator_aws_auth_writes_total 1",
            "aws_auth_operator_status_writes_total 2",
            "aws_auth_operator_drift_repairs_total 4",
            "aws_auth_operator_leader 1",
            "aws_auth_operator_aws_auth_frozen 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        m.set_leader(false);
        assert!(m.encode().contains("aws_auth_operator_leader 0"));
    }

    #[test]
    fn mapping_and_access_entry_states_are_counted_and_zeroed_when_gone() {
        let m = Metrics::new();
        let states = BTreeMap::from([
            (("True".to_string(), "Rendered".to_string()), 3),
            (("False".to_string(), "Conflict".to_string()), 1),
            (("Unknown".to_string(), "bad reason!".to_string()), 2),
        ]);
        m.set_mapping_states(&states);
        m.set_access_entry_states(&BTreeMap::from([((false, "EksError".to_string()), 2)]));
        let text = m.encode();
        for line in [
            "aws_auth_operator_mappings{ready=\"true\",reason=\"Rendered\"} 3",
            "aws_auth_operator_mappings{ready=\"false\",reason=\"Conflict\"} 1",
            "aws_auth_operator_mappings{ready=\"unknown\",reason=\"Unknown\"} 2",
            "aws_auth_operator_access_entries{synced=\"false\",reason=\"EksError\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // The conflict is resolved: its series reads 0 rather than keeping its count.
        m.set_mapping_states(&BTreeMap::from([(
            ("True".to_string(), "Rendered".to_string()),
            4,
        )]));
        m.set_access_entry_states(&BTreeMap::new());
        let text = m.encode();
        for line in [
            "aws_auth_operator_mappings{ready=\"true\",reason=\"Rendered\"} 4",
            "aws_auth_operator_mappings{ready=\"false\",reason=\"Conflict\"} 0",
            "aws_auth_operator_access_entries{synced=\"false\",reason=\"EksError\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn size_build_info_last_success_and_api_errors_are_exposed() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(
            text.contains("aws_auth_operator_aws_auth_data_limit_bytes 1048576"),
            "{text}"
        );
        assert!(
            text.contains("aws_auth_operator_reconcile_last_success_timestamp_seconds 0.0"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "aws_auth_operator_build_info{{version=\"{VERSION}\",git_commit=\"{GIT_COMMIT}\"}} 1"
            )),
            "{text}"
        );
        m.set_aws_auth_size(900_000, 1_000_000);
        m.set_watch_up("IamIdentityMappings", false);
        assert!(
            m.encode()
                .contains("aws_auth_operator_watch_up{watch=\"IamIdentityMappings\"} 0")
        );
        m.set_watch_up("IamIdentityMappings", true);
        m.reconciled(Duration::ZERO, Some("ApiError"));
        assert!(m.encode().contains("_last_success_timestamp_seconds 0.0"));
        m.reconciled(Duration::ZERO, None);
        aws_api_error("eks", "CreateAccessEntry", "AccessDeniedException");
        aws_api_error("eks", "CreateAccessEntry", "AccessDeniedException");
        let text = m.encode();
        assert!(
            text.contains("aws_auth_operator_aws_auth_data_bytes 900000"),
            "{text}"
        );
        assert!(
            text.contains("aws_auth_operator_aws_auth_data_limit_bytes 1000000"),
            "{text}"
        );
        let stamp: f64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("aws_auth_operator_reconcile_last_success_timestamp_seconds ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - stamp).abs() < 60.0, "{stamp} vs {now}");
        // The family is process-wide (other tests count too): at least the two here.
        let errors: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("aws_auth_operator_aws_api_errors_total{service=\"eks\",operation=\"CreateAccessEntry\",code=\"AccessDeniedException\"} ")
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!(errors >= 2, "{text}");
    }

    #[test]
    fn odd_error_reasons_are_bucketed() {
        let m = Metrics::new();
        m.reconciled(Duration::ZERO, Some("has spaces\"and quotes"));
        m.reconciled(Duration::ZERO, Some(""));
        m.reconciled(Duration::ZERO, Some(&"A".repeat(MAX_REASON_LEN + 1)));
        let text = m.encode();
        assert!(
            text.contains("aws_auth_operator_reconcile_errors_total{reason=\"Unknown\"} 3"),
            "{text}"
        );
        assert!(!text.contains("has spaces"));
    }

    #[test]
    fn health_defaults_and_toggles() {
        let h = Health::new();
        assert!(!h.is_ready());
        assert!(h.is_live());
        h.set_ready(true);
        h.set_live(false);
        assert!(h.is_ready());
        assert!(!h.is_live());
    }

    #[tokio::test]
    async fn probes_follow_health() {
        let (metrics, health) = fixtures();
        let app = router(metrics, health.clone());

        let (status, _, body) = get_path(app.clone(), "/healthz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        let (status, _, _) = get_path(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        health.set_ready(true);
        let (status, _, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));

        health.set_live(false);
        let (status, _, _) = get_path(app.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        // Readiness is independent of liveness.
        let (status, _, _) = get_path(app, "/readyz").await;
        assert_eq!(status, StatusCode::OK);
    }

    /// A warning (EKS not answering) shows in the body of /readyz and leaves it 200; a problem
    /// still makes it 503, with the warnings after the reasons.
    #[tokio::test]
    async fn warnings_show_in_readyz_without_failing_it() {
        let (metrics, health) = fixtures();
        let app = router(metrics.clone(), health.clone());
        health.set_ready(true);
        health.set_warning("EKS access entries", Some("EKS is not answering".into()));
        let (status, _, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ok\nwarning: EKS access entries: EKS is not answering\n"
        );
        health.set_problem("reconcile", Some("forbidden".into()));
        let (status, _, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.ends_with("warning: EKS access entries: EKS is not answering\n"),
            "{body}"
        );
        health.set_problem("reconcile", None);
        health.set_warning("EKS access entries", None);
        let (_, _, body) = get_path(app.clone(), "/readyz").await;
        assert_eq!(body, "ok\n");
        metrics.set_eks_unavailable(true);
        let (_, _, body) = get_path(app, "/metrics").await;
        assert!(
            body.contains("aws_auth_operator_eks_unavailable 1"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn metrics_endpoint_serves_openmetrics() {
        let (metrics, health) = fixtures();
        metrics.aws_auth_written();
        let app = router(metrics, health);
        let (status, content_type, body) = get_path(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(body.contains("aws_auth_operator_aws_auth_writes_total 1"));
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_rejected() {
        let (metrics, health) = fixtures();
        let app = router(metrics, health);
        let (status, _, _) = get_path(app.clone(), "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let request = Request::builder()
            .method("POST")
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// A minimal HTTP/1.1 GET. tokio's `io-util` feature is off in this crate, so this drives the
    /// socket with readiness + `try_read`/`try_write` instead of `AsyncReadExt`.
    async fn raw_get(addr: SocketAddr, path: &str) -> String {
        use std::io::ErrorKind::WouldBlock;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let mut pending = request.as_bytes();
        while !pending.is_empty() {
            stream.writable().await.unwrap();
            match stream.try_write(pending) {
                Ok(n) => pending = &pending[n..],
                Err(e) if e.kind() == WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            stream.readable().await.unwrap();
            match stream.try_read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        String::from_utf8(response).unwrap()
    }

    #[tokio::test]
    async fn serve_on_answers_http_and_stops_on_shutdown() {
        let (metrics, health) = fixtures();
        health.set_ready(true);
        metrics.set_leader(true);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics, health, async move {
            let _ = stop_rx.await;
        }));

        let response = raw_get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response
                .to_ascii_lowercase()
                .contains(&format!("content-type: {OPENMETRICS_CONTENT_TYPE}")),
            "{response}"
        );
        assert!(
            response.contains("aws_auth_operator_leader 1"),
            "{response}"
        );
        let response = raw_get(addr, "/readyz").await;
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");

        stop_tx.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("server did not stop after shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn serve_binds_the_address_and_reports_bind_errors() {
        let (metrics, health) = fixtures();
        // Hold a port so that binding it again fails.
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let err = serve(addr, metrics.clone(), health.clone(), async {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServerError::Bind { addr: a, .. } if a == addr),
            "{err}"
        );
        drop(taken);

        // With a free address and an already-resolved shutdown, serve starts and returns Ok.
        let free: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            serve(free, metrics, health, async {}),
        )
        .await
        .expect("serve did not return");
        assert!(result.is_ok(), "{result:?}");
    }
}
