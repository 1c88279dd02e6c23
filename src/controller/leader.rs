//! Leader election on a coordination.k8s.io/v1 Lease, so two replicas never write aws-auth at
//! once.
//!
//! Built on kube-lease-manager's manual API (`changed()` / `release()`) in a background task
//! rather than its `watch()`: `watch()` hides renewal errors and keeps reporting "leader" while
//! the lease may be expiring, and it only releases the lease once every receiver is dropped,
//! which callers that handed out [`Leadership::subscribe`] receivers cannot guarantee. Here, a
//! failed renewal steps down at once (the reconcile loop stops writing), and [`Leadership::release`]
//! frees the lease without waiting for subscribers.

use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError, LeaseParams};
use thiserror::Error;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

/// Name of the Lease when none is configured.
pub const DEFAULT_LEASE_NAME: &str = "aws-auth-operator-leader";
/// A leader that stops renewing is replaced after at most this long.
pub const DEFAULT_LEASE_DURATION_SECS: u64 = 15;
/// The leader renews this long before the lease expires; also the clock skew tolerated between
/// nodes.
pub const DEFAULT_GRACE_SECS: u64 = 5;

/// kube-lease-manager names its server-side-apply field manager `kube-lease-manager-<identity>`
/// and the API server rejects field managers longer than 128 characters.
const FIELD_MANAGER_PREFIX_LEN: usize = "kube-lease-manager-".len();
const MAX_FIELD_MANAGER_LEN: usize = 128;
pub const MAX_IDENTITY_LEN: usize = MAX_FIELD_MANAGER_LEN - FIELD_MANAGER_PREFIX_LEN;

const MIN_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum LeaderError {
    #[error("invalid leader election config: {0}")]
    InvalidConfig(String),
    #[error("setting up Lease {namespace}/{lease}: {source}")]
    Lease {
        namespace: String,
        lease: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// Where and as whom to take part in the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique among replicas; written to the Lease as `holderIdentity`.
    pub identity: String,
    pub lease_duration_secs: u64,
    /// Must be smaller than `lease_duration_secs`.
    pub grace_secs: u64,
}

impl LeaderConfig {
    /// Lease `aws-auth-operator-leader` in `namespace`, 15 s duration, 5 s grace.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> LeaderConfig {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: identity.into(),
            lease_duration_secs: DEFAULT_LEASE_DURATION_SECS,
            grace_secs: DEFAULT_GRACE_SECS,
        }
    }

    /// Checks what kube-lease-manager would otherwise panic on (zero or inverted durations) or
    /// the API server would reject.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let invalid = |msg: String| Err(LeaderError::InvalidConfig(msg));
        if self.namespace.is_empty() {
            return invalid("namespace is empty".into());
        }
        if self.lease_name.is_empty() {
            return invalid("lease name is empty".into());
        }
        if self.identity.is_empty() {
            return invalid("identity is empty".into());
        }
        if self.identity.len() > MAX_IDENTITY_LEN {
            return invalid(format!(
                "identity {:?} is longer than {MAX_IDENTITY_LEN} characters",
                self.identity
            ));
        }
        if self.lease_duration_secs == 0 || self.grace_secs == 0 {
            return invalid("lease duration and grace must be at least 1 second".into());
        }
        if self.grace_secs >= self.lease_duration_secs {
            return invalid(format!(
                "grace ({} s) must be shorter than the lease duration ({} s)",
                self.grace_secs, self.lease_duration_secs
            ));
        }
        if i32::try_from(self.lease_duration_secs).is_err() {
            return invalid("lease duration does not fit the Lease's 32-bit field".into());
        }
        Ok(())
    }
}

/// This process's identity: `POD_NAME` (set from the downward API), else the host name, plus a
/// random suffix. Unique per process without any configuration: two replicas on one host (or a
/// restarted container that finds its own old lease) never believe they are the same holder.
pub fn default_identity() -> String {
    let from_env = |name: &str| std::env::var(name).ok();
    let from_file = |path: &str| std::fs::read_to_string(path).ok();
    let base = resolve_identity([
        from_env("POD_NAME"),
        from_env("HOSTNAME"),
        from_file("/proc/sys/kernel/hostname"),
        from_file("/etc/hostname"),
    ])
    .unwrap_or_else(|| "aws-auth-operator".to_string());
    unique_identity(&base)
}

/// `base` (shortened to fit) and a random 16-hex-digit suffix.
fn unique_identity(base: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // `RandomState` is seeded from the OS's randomness, per process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(nanos);
    let suffix = format!("{:016x}", hasher.finish());
    let room = MAX_IDENTITY_LEN - suffix.len() - 1;
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{suffix}", &base[..end])
}

/// The first candidate that is non-empty after trimming.
fn resolve_identity(candidates: impl IntoIterator<Item = Option<String>>) -> Option<String> {
    candidates
        .into_iter()
        .flatten()
        .map(|c| c.trim().to_string())
        .find(|c| !c.is_empty())
}

/// A running election. Dropping it without [`Leadership::release`] stops the election in the
/// background, but a held lease is then only freed on a best-effort basis.
#[derive(Debug)]
pub struct Leadership {
    identity: String,
    lease: String,
    state: watch::Receiver<bool>,
    /// The last error of the election (a lease the RBAC forbids, an unreachable API server),
    /// cleared once the lease can be read and renewed again.
    problem: watch::Receiver<Option<String>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Joins the election: creates the Lease if missing and starts a background task that acquires,
/// renews and, on release, frees it. Returns at once; the replica starts as a standby.
pub async fn elect(client: kube::Client, config: LeaderConfig) -> Result<Leadership, LeaderError> {
    config.validate()?;
    let manager = build_manager(&client, &config).await?;
    let (tx, rx) = watch::channel(false);
    let (problem_tx, problem_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = oneshot::channel();
    info!(
        identity = %config.identity,
        lease = %lease_ref(&config),
        "joined leader election; standing by until the lease is acquired"
    );
    let identity = config.identity.clone();
    let lease = lease_ref(&config);
    let task = tokio::spawn(run(client, config, manager, tx, problem_tx, stop_rx));
    Ok(Leadership {
        identity,
        lease,
        state: rx,
        problem: problem_rx,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

impl Leadership {
    /// Whether this replica holds the lease right now.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Follows the election's problems (`None` while it works).
    pub fn problems(&self) -> watch::Receiver<Option<String>> {
        self.problem.clone()
    }

    /// Resolves once this replica holds the lease (at once if it already does).
    pub async fn wait_until_leader(&mut self) {
        if self.state.wait_for(|leading| *leading).await.is_err() {
            // The election task has ended, so leadership can never come; never resolving is
            // the honest answer, and callers select on it against their shutdown signal.
            error!(identity = %self.identity, lease = %self.lease, "leader election task has stopped");
            std::future::pending::<()>().await;
        }
    }

    /// A receiver that flips to `false` the moment leadership is lost (or released), so the
    /// reconcile loop can stop writing. It stays `false` once the election has ended.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Steps down (subscribers see `false` first) and frees the lease, so another replica takes
    /// over at once instead of after the lease expires. Stop writing before calling this.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            error!(identity = %self.identity, lease = %self.lease, error = %err, "leader election task failed");
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Dropping `stop` ends the task, which releases the lease if the runtime lets it.
        if self.task.is_some() {
            debug!(identity = %self.identity, lease = %self.lease, "leadership dropped without release");
        }
    }
}

fn lease_ref(config: &LeaderConfig) -> String {
    format!("{}/{}", config.namespace, config.lease_name)
}

async fn build_manager(
    client: &kube::Client,
    config: &LeaderConfig,
) -> Result<LeaseManager, LeaderError> {
    // `validate` has ruled out the inputs `LeaseParams::new` panics on.
    let params = LeaseParams::new(
        config.identity.clone(),
        config.lease_duration_secs,
        config.grace_secs,
    );
    LeaseManagerBuilder::new(client.clone(), config.lease_name.clone())
        .with_namespace(config.namespace.clone())
        .with_parameters(params)
        .build()
        .await
        .map_err(|source| LeaderError::Lease {
            namespace: config.namespace.clone(),
            lease: config.lease_name.clone(),
            source,
        })
}

/// Why the election loop stopped.
enum Exit {
    Stop,
    Retry,
    /// Leadership changed; keep going with the same manager.
    Changed,
}

/// The background task's side of an election.
struct Election {
    client: kube::Client,
    config: LeaderConfig,
    lease: String,
    manager: LeaseManager,
    tx: watch::Sender<bool>,
    problem: watch::Sender<Option<String>>,
    stop: oneshot::Receiver<()>,
    retry: Duration,
    /// A problem is cleared once the election has run a whole lease duration without an error.
    quiet: Duration,
}

async fn run(
    client: kube::Client,
    config: LeaderConfig,
    manager: LeaseManager,
    tx: watch::Sender<bool>,
    problem: watch::Sender<Option<String>>,
    stop: oneshot::Receiver<()>,
) {
    let mut election = Election {
        client,
        lease: lease_ref(&config),
        quiet: Duration::from_secs(config.lease_duration_secs),
        config,
        manager,
        tx,
        problem,
        stop,
        retry: MIN_RETRY,
    };
    loop {
        match election.next_change().await {
            Exit::Changed => continue,
            Exit::Stop => break,
            Exit::Retry => {
                if !election.replace_manager().await {
                    return;
                }
            }
        }
    }
    election.release().await;
}

impl Election {
    /// Waits for the manager to report a change of leadership or an error, or for the stop
    /// signal, and clears a problem that has stayed quiet meanwhile.
    async fn next_change(&mut self) -> Exit {
        // Polled to completion, never dropped half-way: clearing a problem must not cancel a
        // lease update in flight.
        let result = {
            let changed = self.manager.changed();
            tokio::pin!(changed);
            loop {
                tokio::select! {
                    biased;
                    // Ok (release) and Err (Leadership dropped) both mean stop.
                    _ = &mut self.stop => return Exit::Stop,
                    _ = tokio::time::sleep(self.quiet), if self.problem.borrow().is_some() => {
                        self.problem.send_replace(None);
                    }
                    result = &mut changed => break result,
                }
            }
        };
        match result {
            Ok(leading) => self.changed(leading),
            Err(err) => self.failed(err),
        }
    }

    /// Publishes a change of leadership reported by the manager.
    fn changed(&mut self, leading: bool) -> Exit {
        let identity = self.config.identity.as_str();
        let lease = &self.lease;
        self.tx.send_replace(leading);
        self.problem.send_replace(None);
        if leading {
            info!(identity, lease = %lease, "acquired leadership");
        } else {
            warn!(identity, lease = %lease, "lost leadership; standing by");
        }
        self.retry = MIN_RETRY;
        Exit::Changed
    }

    /// Steps down after the manager failed to read or renew the lease.
    fn failed(&mut self, err: LeaseManagerError) -> Exit {
        let identity = self.config.identity.as_str();
        let lease = &self.lease;
        let retry = self.retry;
        self.problem
            .send_replace(Some(format!("lease {lease}: {err}")));
        // Whether a renewal or a read failed, we can no longer prove we hold
        // the lease: step down before it could expire under us.
        if self.tx.send_replace(false) {
            warn!(identity, lease = %lease, error = %err, retry_in = ?retry, "lease renewal failed; stepping down");
        } else {
            warn!(identity, lease = %lease, error = %err, retry_in = ?retry, "leader election error");
        }
        Exit::Retry
    }

    /// Retries with backoff until a fresh manager reads the Lease; false once stopped instead.
    ///
    /// The failed manager still believes its old state and would never report a successful
    /// retry as a change (and cannot recreate a deleted Lease), so start from a fresh one
    /// that reads the Lease again.
    async fn replace_manager(&mut self) -> bool {
        let identity = self.config.identity.as_str();
        let lease = &self.lease;
        loop {
            tokio::select! {
                biased;
                _ = &mut self.stop => {
                    // Not leading any more; the lease, if still ours, expires on its own.
                    info!(identity, lease = %lease, "left leader election");
                    return false;
                }
                _ = tokio::time::sleep(self.retry) => {}
            }
            self.retry = (self.retry * 2).min(MAX_RETRY);
            let retry = self.retry;
            match build_manager(&self.client, &self.config).await {
                Ok(fresh) => {
                    self.manager = fresh;
                    return true;
                }
                Err(err) => {
                    self.problem
                        .send_replace(Some(format!("lease {lease}: {err}")));
                    warn!(identity, lease = %lease, error = %err, retry_in = ?retry, "cannot read the lease")
                }
            }
        }
    }

    /// Steps down and frees the lease once the election is stopped.
    async fn release(self) {
        let identity = self.config.identity.as_str();
        let lease = &self.lease;
        // Subscribers must see the step-down before another replica can take the lease.
        let was_leader = self.tx.send_replace(false);
        // Past the lease duration the lease has expired anyway; don't hold up shutdown longer.
        let timeout = Duration::from_secs(self.config.lease_duration_secs);
        match tokio::time::timeout(timeout, self.manager.release()).await {
            Ok(Ok(())) if was_leader => info!(identity, lease = %lease, "released leadership"),
            Ok(Ok(())) => info!(identity, lease = %lease, "left leader election"),
            Ok(Err(err)) => {
                warn!(identity, lease = %lease, error = %err, "releasing the lease failed; it will expire")
            }
            Err(_) => {
                warn!(identity, lease = %lease, "releasing the lease timed out; it will expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn config_defaults() {
        let c = LeaderConfig::new("aws-auth-operator", "pod-1");
        assert_eq!(c.namespace, "aws-auth-operator");
        assert_eq!(c.lease_name, "aws-auth-operator-leader");
        assert_eq!(c.identity, "pod-1");
        assert_eq!(c.lease_duration_secs, 15);
        assert_eq!(c.grace_secs, 5);
        c.validate().unwrap();
    }

    #[test]
    fn config_validation_rejects_what_would_panic_or_be_refused() {
        let base = LeaderConfig::new("ns", "pod-1");
        let cases = [
            LeaderConfig {
                namespace: String::new(),
                ..base.clone()
            },
            LeaderConfig {
                lease_name: String::new(),
                ..base.clone()
            },
            LeaderConfig {
                identity: String::new(),
                ..base.clone()
            },
            LeaderConfig {
                identity: "x".repeat(MAX_IDENTITY_LEN + 1),
                ..base.clone()
            },
            LeaderConfig {
                lease_duration_secs: 0,
                ..base.clone()
            },
            LeaderConfig {
                grace_secs: 0,
                ..base.clone()
            },
            LeaderConfig {
                grace_secs: 15,
                ..base.clone()
            },
            LeaderConfig {
                grace_secs: 20,
                ..base.clone()
            },
            LeaderConfig {
                lease_duration_secs: u64::from(u32::MAX),
                ..base.clone()
            },
        ];
        for case in cases {
            assert!(
                matches!(case.validate(), Err(LeaderError::InvalidConfig(_))),
                "{case:?} should be invalid"
            );
        }
        LeaderConfig {
            identity: "x".repeat(MAX_IDENTITY_LEN),
            ..base.clone()
        }
        .validate()
        .unwrap();
        LeaderConfig {
            lease_duration_secs: 2,
            grace_secs: 1,
            ..base
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn identity_prefers_pod_name_then_hostname() {
        assert_eq!(
            resolve_identity([some("op-7d9f-abc"), some("host-a")]).as_deref(),
            Some("op-7d9f-abc")
        );
        assert_eq!(
            resolve_identity([None, some("host-a\n")]).as_deref(),
            Some("host-a")
        );
        assert_eq!(
            resolve_identity([some("  "), some(""), None, some("node-1\n")]).as_deref(),
            Some("node-1")
        );
        assert_eq!(resolve_identity([None, some(" \n")]), None);
        assert_eq!(resolve_identity(Vec::<Option<String>>::new()), None);
    }

    /// Two processes on one host (same POD_NAME or host name) get distinct identities, each
    /// valid for the Lease, however long the base name.
    #[test]
    fn identities_are_unique_per_process_and_valid() {
        let a = unique_identity("op-7d9f-abc");
        let b = unique_identity("op-7d9f-abc");
        assert_ne!(a, b);
        assert!(a.starts_with("op-7d9f-abc-"), "{a}");
        LeaderConfig::new("ns", a).validate().unwrap();
        let long = unique_identity(&"é".repeat(200));
        assert!(long.len() <= MAX_IDENTITY_LEN, "{}", long.len());
        LeaderConfig::new("ns", long).validate().unwrap();
    }

    #[test]
    fn default_identity_is_never_empty() {
        let identity = default_identity();
        assert!(!identity.is_empty());
        assert_eq!(identity, identity.trim());
        assert_ne!(identity, default_identity());
    }

    /// A one-Lease fake API server: GET returns the lease, PATCH merges `spec` (null deletes a
    /// field), and `fail` turns every request into a 500.
    #[derive(Default)]
    struct FakeLease {
        spec: serde_json::Map<String, serde_json::Value>,
        fail: bool,
    }

    type Shared = std::sync::Arc<std::sync::Mutex<FakeLease>>;

    fn fake_client(state: Shared) -> kube::Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let state = state.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect_bytes().await.unwrap();
                let (status, json) = handle(&state, &parts.method, &body);
                let response = http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(bytes::Bytes::from(
                        json.to_string(),
                    )))
                    .unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        kube::Client::new(service, "default")
    }

    fn handle(state: &Shared, method: &http::Method, body: &[u8]) -> (u16, serde_json::Value) {
        let mut lease = state.lock().unwrap();
        if lease.fail {
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "injected failure", "reason": "InternalError", "code": 500,
            });
            return (500, status);
        }
        if method == http::Method::PATCH {
            let patch: serde_json::Value = serde_json::from_slice(body).unwrap();
            if let Some(spec) = patch.get("spec").and_then(|s| s.as_object()) {
                for (key, value) in spec {
                    if value.is_null() {
                        lease.spec.remove(key);
                    } else {
                        lease.spec.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let object = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": DEFAULT_LEASE_NAME, "namespace": "ns", "resourceVersion": "1" },
            "spec": lease.spec,
        });
        (200, object)
    }

    fn holder(state: &Shared) -> Option<String> {
        let lease = state.lock().unwrap();
        lease
            .spec
            .get("holderIdentity")
            .and_then(|h| h.as_str())
            .map(str::to_string)
    }

    /// Short durations so renewals happen within a test: renew after ~1 s.
    fn fast_config(identity: &str) -> LeaderConfig {
        LeaderConfig {
            lease_duration_secs: 2,
            grace_secs: 1,
            ..LeaderConfig::new("ns", identity)
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn elect_rejects_an_invalid_config_before_any_request() {
        let state = Shared::default();
        state.lock().unwrap().fail = true;
        let config = LeaderConfig {
            grace_secs: 15,
            ..LeaderConfig::new("ns", "me")
        };
        let err = elect(fake_client(state), config).await.unwrap_err();
        assert!(matches!(err, LeaderError::InvalidConfig(_)), "{err}");
    }

    #[tokio::test]
    async fn elect_reports_an_unreachable_lease() {
        let state = Shared::default();
        state.lock().unwrap().fail = true;
        let err = elect(fake_client(state), fast_config("me"))
            .await
            .unwrap_err();
        assert!(matches!(err, LeaderError::Lease { .. }), "{err}");
    }

    #[tokio::test]
    async fn acquires_a_free_lease_and_releases_it() {
        let state = Shared::default();
        let mut leadership = elect(fake_client(state.clone()), fast_config("me"))
            .await
            .unwrap();
        assert_eq!(leadership.identity(), "me");
        tokio::time::timeout(WAIT, leadership.wait_until_leader())
            .await
            .unwrap();
        assert!(leadership.is_leader());
        assert_eq!(holder(&state).as_deref(), Some("me"));

        let subscriber = leadership.subscribe();
        assert!(*subscriber.borrow());
        tokio::time::timeout(WAIT, leadership.release())
            .await
            .unwrap();
        assert!(!*subscriber.borrow());
        assert_eq!(
            holder(&state),
            None,
            "release must free the lease for the next replica"
        );
    }

    #[tokio::test]
    async fn stands_by_while_another_replica_holds_the_lease() {
        let state = Shared::default();
        {
            let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::now(),
            );
            let mut lease = state.lock().unwrap();
            lease.spec.insert("holderIdentity".into(), "other".into());
            lease
                .spec
                .insert("renewTime".into(), serde_json::to_value(now).unwrap());
            lease.spec.insert("leaseDurationSeconds".into(), 30.into());
        }
        let mut leadership = elect(fake_client(state.clone()), fast_config("me"))
            .await
            .unwrap();
        let waited =
            tokio::time::timeout(Duration::from_millis(500), leadership.wait_until_leader()).await;
        assert!(
            waited.is_err(),
            "must not lead while another replica's lease is valid"
        );
        assert!(!leadership.is_leader());
        leadership.release().await;
        assert_eq!(
            holder(&state).as_deref(),
            Some("other"),
            "a standby must not free someone else's lease"
        );
    }

    #[tokio::test]
    async fn takes_over_an_expired_lease() {
        let state = Shared::default();
        {
            let stale = k8s_openapi::jiff::Timestamp::now()
                - k8s_openapi::jiff::SignedDuration::from_secs(60);
            let stale = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(stale);
            let mut lease = state.lock().unwrap();
            lease
                .spec
                .insert("holderIdentity".into(), "crashed-replica".into());
            lease
                .spec
                .insert("renewTime".into(), serde_json::to_value(stale).unwrap());
            lease.spec.insert("leaseDurationSeconds".into(), 15.into());
        }
        let mut leadership = elect(fake_client(state.clone()), fast_config("me"))
            .await
            .unwrap();
        tokio::time::timeout(WAIT, leadership.wait_until_leader())
            .await
            .unwrap();
        assert_eq!(holder(&state).as_deref(), Some("me"));
        leadership.release().await;
    }

    #[tokio::test]
    async fn steps_down_when_renewal_fails_and_recovers() {
        let state = Shared::default();
        let mut leadership = elect(fake_client(state.clone()), fast_config("me"))
            .await
            .unwrap();
        tokio::time::timeout(WAIT, leadership.wait_until_leader())
            .await
            .unwrap();
        let mut subscriber = leadership.subscribe();

        // The next renewal (about a second away) fails: the subscriber must see the step-down.
        state.lock().unwrap().fail = true;
        tokio::time::timeout(WAIT, subscriber.wait_for(|leading| !*leading))
            .await
            .unwrap()
            .unwrap();
        assert!(!leadership.is_leader());

        // Once the API answers again the lease (still ours) is picked up again.
        state.lock().unwrap().fail = false;
        tokio::time::timeout(WAIT, leadership.wait_until_leader())
            .await
            .unwrap();
        assert!(*subscriber.borrow_and_update());
        leadership.release().await;
        assert_eq!(holder(&state), None);
    }
}
