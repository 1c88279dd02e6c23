//! The test API server: a Kubernetes API server in memory, real HTTP/1.1 on 127.0.0.1, with a
//! per-request latency and a concurrency limit. It is what the shipped binary runs against in CI
//! (tests/shipped_binary.rs, tests/e2e.rs without a kubeconfig), what `load --simulate` measures
//! and what `aws-auth-operator demo` shows. It is not a Kubernetes API server: no
//! authentication, no authorization, no schema validation and no admission (the CRD's CEL rules
//! are evaluated in tests/admission.rs instead).
//!
//! Latency model. Every request except a watch takes one of `max_inflight` slots (a fair
//! semaphore: requests beyond the limit queue in arrival order, as with API Priority and
//! Fairness), then waits `read_latency` (GET, list) or `write_latency` (POST, PUT, PATCH, DELETE)
//! plus `per_mib` for every MiB of request body, then applies the request, then waits `per_mib`
//! for every MiB of response body, and only then frees its slot and answers. Watches are
//! long-running requests: they cost the read latency once when they start and take no slot. The
//! latencies are kept by a timer thread with the OS's precision (tens of microseconds; tokio's
//! timer would round every one up to the next millisecond tick), measured from the moment the
//! request got its slot, so the server's own work counts toward them.
//!
//! What it serves (the resource types below, generically):
//! - `/version`;
//! - get, list (labelSelector; fieldSelector on metadata.name and metadata.namespace; limit and
//!   continue over a consistent snapshot), watch (`?watch=true`, from a resourceVersion, with
//!   bookmarks, timeoutSeconds and sendInitialEvents), create (uid, creationTimestamp,
//!   resourceVersion, generation 1 where tracked), update (PUT, 409 Conflict on a stale
//!   metadata.resourceVersion), patch (JSON merge patch; strategic merge and server-side apply are
//!   treated as a merge, apply creates a missing object; JSON patch), delete;
//! - the `status` subresource of IamIdentityMappings: writes there change only `.status`, writes
//!   of the main resource never change `.status`, and only a change outside metadata and status
//!   bumps `metadata.generation`;
//! - IamIdentityMappings only while their CustomResourceDefinition exists, as on a real API
//!   server: before it is created every request for them answers 404; a created CRD is
//!   Established at once; deleting it deletes every IamIdentityMapping (a DELETED event each) and
//!   closes their watches;
//! - metadata.managedFields like a real API server keeps them (one entry per manager, operation
//!   and subresource), unless switched off;
//! - a write that changes nothing is a no-op, as on a real API server: no new resourceVersion, no
//!   watch event.
//!
//! Every other path answers a `Status` 404; every error is a `Status` object. Every write takes
//! the next value of one global resourceVersion, and every watcher receives the events of the
//! resource it watches in resourceVersion order (one event per change, status patches included).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::serve::ListenerExt;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc};

/// Requests that carry this header are counted as the load tool's, the others as the operator's.
pub const LOAD_TOOL_HEADER: &str = "x-aws-auth-operator-load";

/// Watchers that asked for bookmarks get one this often.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// The change history that watches resume from: at most this many changes and bytes.
const HISTORY_MAX_CHANGES: usize = 200_000;
const HISTORY_MAX_BYTES: usize = 128 << 20;
/// Paginated list snapshots kept for `continue`.
const MAX_SNAPSHOTS: usize = 64;
const MAX_BODY: usize = 64 << 20;

/// How the simulated API server behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub read_latency: Duration,
    pub write_latency: Duration,
    /// Added per MiB of request and of response body.
    pub per_mib: Duration,
    pub max_inflight: usize,
    pub managed_fields: bool,
}

impl SimConfig {
    /// No added latency and room for every request at once: for tests and `demo`, where the
    /// operator's own behaviour, not the API server's speed, is under test.
    pub fn instant() -> SimConfig {
        SimConfig {
            read_latency: Duration::ZERO,
            write_latency: Duration::ZERO,
            per_mib: Duration::ZERO,
            max_inflight: 1024,
            managed_fields: true,
        }
    }
}

// ---- resource types ----------------------------------------------------------------------------

#[derive(Debug)]
struct ResourceType {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// Has a status subresource.
    status: bool,
    /// Tracks metadata.generation.
    generation: bool,
}

impl ResourceType {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps`, `iamidentitymappings.awsauth.dev`: as error messages name it.
    fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The index of IamIdentityMappings in `TYPES`, and of CustomResourceDefinitions.
const MAPPINGS: usize = 0;
const CRDS: usize = 4;
/// The CRD that makes IamIdentityMappings exist.
const MAPPINGS_CRD: &str = "iamidentitymappings.awsauth.dev";

static TYPES: [ResourceType; 5] = [
    ResourceType {
        group: "awsauth.dev",
        version: "v1alpha1",
        plural: "iamidentitymappings",
        kind: "IamIdentityMapping",
        namespaced: false,
        status: true,
        generation: true,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        status: false,
        generation: false,
    },
    // core/v1 Events: the API the operator writes them through (with count and lastTimestamp).
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        status: false,
        generation: false,
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        status: false,
        generation: false,
    },
    ResourceType {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        kind: "CustomResourceDefinition",
        namespaced: false,
        status: true,
        generation: true,
    },
];

/// The index of the resource type `plural` in `TYPES`.
fn type_index(plural: &str) -> Result<usize, String> {
    TYPES
        .iter()
        .position(|t| t.plural == plural)
        .ok_or_else(|| format!("unknown resource {plural}"))
}

// ---- objects, changes, watchers ----------------------------------------------------------------

/// A stored object and its JSON, serialized once per write.
struct Obj {
    value: Value,
    json: Bytes,
}

impl Obj {
    fn new(value: Value) -> Arc<Obj> {
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        Arc::new(Obj { value, json })
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.value["metadata"]["labels"][key].as_str()
    }

    fn meta_str(&self, field: &str) -> &str {
        self.value["metadata"][field].as_str().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed write.
struct Change {
    rv: u64,
    ty: usize,
    namespace: String,
    kind: EventType,
    /// The object before a modification (to see it leave or enter a selector).
    old: Option<Arc<Obj>>,
    /// The object after the write; for a deletion, its last state at the deletion's version.
    obj: Arc<Obj>,
}

struct Watcher {
    ty: usize,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

impl Watcher {
    fn matches(&self, namespace: &str, obj: &Obj) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace) && self.selector.matches(obj)
    }

    /// The event this watcher gets for `change`, if any.
    fn event_for(&self, change: &Change) -> Option<EventType> {
        if change.ty != self.ty {
            return None;
        }
        let now = self.matches(&change.namespace, &change.obj);
        match change.kind {
            EventType::Added | EventType::Deleted => now.then_some(change.kind),
            EventType::Modified => {
                let before = change
                    .old
                    .as_ref()
                    .is_some_and(|old| self.matches(&change.namespace, old));
                match (before, now) {
                    (true, true) => Some(EventType::Modified),
                    (false, true) => Some(EventType::Added),
                    (true, false) => Some(EventType::Deleted),
                    (false, false) => None,
                }
            }
        }
    }
}

fn event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn bookmark_line(ty: &ResourceType, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": ty.kind, "apiVersion": ty.api_version(), "metadata": metadata });
    event_line("BOOKMARK", object.to_string().as_bytes())
}

// ---- selectors ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Selector {
    labels: Vec<LabelRequirement>,
    fields: Vec<FieldRequirement>,
}

#[derive(Debug, Clone)]
enum LabelRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone)]
struct FieldRequirement {
    field: &'static str,
    value: String,
    equal: bool,
}

impl Selector {
    fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, String> {
        let mut selector = Selector::default();
        for term in split_terms(labels.unwrap_or_default()) {
            selector.labels.push(parse_label_term(&term)?);
        }
        for term in split_terms(fields.unwrap_or_default()) {
            let (key, value, equal) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, true)
            } else {
                return Err(format!("invalid field selector term `{term}`"));
            };
            let field = match key.trim() {
                "metadata.name" => "name",
                "metadata.namespace" => "namespace",
                other => {
                    return Err(format!(
                        "field label not supported by the simulated API server: {other}"
                    ));
                }
            };
            selector.fields.push(FieldRequirement {
                field,
                value: value.trim().to_string(),
                equal,
            });
        }
        Ok(selector)
    }

    fn matches(&self, obj: &Obj) -> bool {
        self.fields
            .iter()
            .all(|f| (obj.meta_str(f.field) == f.value) == f.equal)
            && self.labels.iter().all(|requirement| match requirement {
                LabelRequirement::In(key, values) => obj
                    .label(key)
                    .is_some_and(|v| values.iter().any(|x| x == v)),
                LabelRequirement::NotIn(key, values) => {
                    obj.label(key).is_none_or(|v| values.iter().all(|x| x != v))
                }
                LabelRequirement::Exists(key) => obj.label(key).is_some(),
                LabelRequirement::NotExists(key) => obj.label(key).is_none(),
            })
    }
}

/// Splits a selector on the commas outside parentheses.
fn split_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let (mut depth, mut current) = (0i32, String::new());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    terms.push(current);
    terms
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, String> {
    let set = |text: &str| -> Result<Vec<String>, String> {
        let inner = text
            .trim()
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| format!("invalid label selector term `{term}`"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::NotExists(key.trim().to_string()));
    }
    if let Some((key, values)) = term.split_once(" notin ") {
        return Ok(LabelRequirement::NotIn(
            key.trim().to_string(),
            set(values)?,
        ));
    }
    if let Some((key, values)) = term.split_once(" in ") {
        return Ok(LabelRequirement::In(key.trim().to_string(), set(values)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotIn(
            key.trim().to_string(),
            vec![value.trim().to_string()],
        ));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::In(
            key.trim().to_string(),
            vec![value.trim().to_string()],
        ));
    }
    Ok(LabelRequirement::Exists(term.to_string()))
}

// ---- statistics --------------------------------------------------------------------------------

/// Requests of one client (the operator, or the load tool) for one `verb resource`.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    /// Writes that changed nothing (no new resourceVersion, no event).
    pub noop: u64,
    /// Answers with an error, by HTTP status code.
    pub errors: BTreeMap<u16, u64>,
    /// Time from arrival to answer, queueing included, summed.
    pub time: Duration,
    /// Requests in flight now, and the most at once since [`SimServer::reset_peaks`].
    pub in_flight: u64,
    pub max_in_flight: u64,
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// `verb resource` (e.g. `patch iamidentitymappings/status`, `get configmaps/aws-auth`) ->
    /// (operator, load tool).
    pub by_request: BTreeMap<String, (Counts, Counts)>,
    /// The most requests that waited for a slot at once.
    pub max_queued: usize,
    /// Requests that had to wait for a slot.
    pub requests_queued: u64,
    /// Total time requests waited for a slot.
    pub queued_for: Duration,
    /// The newest resourceVersion.
    pub resource_version: u64,
}

impl Stats {
    /// The operator's requests: (all, writes, of which no-ops, errors).
    pub fn operator_totals(&self) -> (u64, u64, u64, u64) {
        let mut totals = (0, 0, 0, 0);
        for (key, (operator, _)) in &self.by_request {
            totals.0 += operator.requests;
            if is_write_verb(key.split(' ').next().unwrap_or_default()) {
                totals.1 += operator.requests;
                totals.2 += operator.noop;
            }
            totals.3 += operator.errors.values().sum::<u64>();
        }
        totals
    }

    pub fn operator(&self, key: &str) -> Counts {
        self.by_request
            .get(key)
            .map(|(operator, _)| operator.clone())
            .unwrap_or_default()
    }

    /// What changed since `earlier`, per request kind (operator and load tool).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let minus = |now: &Counts, before: Option<&Counts>| -> Counts {
            let Some(before) = before else {
                return now.clone();
            };
            Counts {
                requests: now.requests - before.requests,
                noop: now.noop - before.noop,
                time: now.time.saturating_sub(before.time),
                in_flight: now.in_flight,
                max_in_flight: now.max_in_flight,
                errors: now
                    .errors
                    .iter()
                    .map(|(code, n)| (*code, n - before.errors.get(code).copied().unwrap_or(0)))
                    .filter(|(_, n)| *n > 0)
                    .collect(),
            }
        };
        let by_request = self
            .by_request
            .iter()
            .map(|(key, (operator, tool))| {
                let before = earlier.by_request.get(key);
                (
                    key.clone(),
                    (
                        minus(operator, before.map(|b| &b.0)),
                        minus(tool, before.map(|b| &b.1)),
                    ),
                )
            })
            .filter(|(_, (o, t))| o.requests > 0 || t.requests > 0)
            .collect();
        Stats {
            by_request,
            max_queued: self.max_queued,
            requests_queued: self.requests_queued - earlier.requests_queued,
            queued_for: self.queued_for.saturating_sub(earlier.queued_for),
            resource_version: self.resource_version,
        }
    }
}

fn is_write_verb(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "apply")
}

// ---- the server --------------------------------------------------------------------------------

struct Store {
    rv: u64,
    /// Per resource type: (namespace, name) -> object; namespace "" when cluster-scoped.
    objects: Vec<BTreeMap<(String, String), Arc<Obj>>>,
    history: VecDeque<Arc<Change>>,
    history_bytes: usize,
    /// Changes up to this resourceVersion are no longer in `history`.
    floor: u64,
    watchers: Vec<Watcher>,
    next_uid: u64,
    snapshots: VecDeque<(u64, Snapshot)>,
    next_snapshot: u64,
}

struct Snapshot {
    ty: usize,
    rv: u64,
    items: Vec<Arc<Obj>>,
}

struct Sim {
    config: SimConfig,
    /// An extra delay of every list of one resource type (index into `TYPES`), before the list
    /// is taken: a re-list that takes its time.
    list_delay: Mutex<Option<(usize, Duration)>>,
    slots: Semaphore,
    queued: AtomicUsize,
    store: Mutex<Store>,
    stats: Mutex<Stats>,
    uid_prefix: u32,
    timer: Arc<PreciseTimer>,
}

/// A running simulated API server.
pub struct SimServer {
    pub addr: SocketAddr,
    sim: Arc<Sim>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SimServer {
    /// Starts the server on 127.0.0.1 (a random port) on a runtime of its own, so that the load
    /// tool's own work does not delay its answers.
    pub fn start(config: SimConfig) -> std::io::Result<SimServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sim-apiserver")
            .enable_all()
            .build()?;
        let uid_prefix = {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as u32
        };
        let sim = Arc::new(Sim {
            list_delay: Mutex::new(None),
            slots: Semaphore::new(config.max_inflight.max(1)),
            config,
            queued: AtomicUsize::new(0),
            store: Mutex::new(Store {
                rv: 1,
                objects: TYPES.iter().map(|_| BTreeMap::new()).collect(),
                history: VecDeque::new(),
                history_bytes: 0,
                floor: 1,
                watchers: Vec::new(),
                next_uid: 1,
                snapshots: VecDeque::new(),
                next_snapshot: 1,
            }),
            stats: Mutex::new(Stats::default()),
            uid_prefix,
            timer: PreciseTimer::start(),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new().fallback(handle).with_state(sim.clone());
        runtime.spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("load: simulated API server stopped: {error}");
            }
        });
        runtime.spawn(bookmarks(sim.clone()));
        Ok(SimServer {
            addr,
            sim,
            runtime: Some(runtime),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose current context is this server (plain HTTP, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test-apiserver\n  cluster:\n    server: {}\nusers:\n- name: test-apiserver\n  user: {{}}\ncontexts:\n- name: test-apiserver\n  context:\n    cluster: test-apiserver\n    user: test-apiserver\n    namespace: default\ncurrent-context: test-apiserver\n",
            self.url()
        )
    }

    /// Writes [`SimServer::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Creates an object directly (no latency), as the cluster's own components would have.
    pub fn seed(&self, plural: &str, namespace: &str, object: Value) -> Result<(), String> {
        let ty = type_index(plural)?;
        let mut store = self.sim.lock();
        let (code, body) = self
            .sim
            .create(&mut store, ty, namespace, object, "seed", "Update");
        if code.is_success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&body).into_owned())
        }
    }

    /// Seeds the CRD of IamIdentityMappings (Established at once, as every CRD created here).
    pub fn seed_crd(&self, crd: Value) -> Result<(), String> {
        self.seed("customresourcedefinitions", "", crd)
    }

    /// Deletes an object directly (no latency), as a person with kubectl would; deleting the
    /// IamIdentityMapping CRD deletes every mapping.
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> Result<(), String> {
        let ty = type_index(plural)?;
        let target = Target {
            ty,
            namespace: TYPES[ty].namespaced.then(|| namespace.to_string()),
            name: Some(name.to_string()),
            status: false,
        };
        let op = Op {
            verb: "delete",
            target,
            query: Query(Vec::new()),
            content_type: String::new(),
            body: Bytes::new(),
            manager: "seed".to_string(),
        };
        let (code, body, _) = self.sim.apply(&op);
        if code.is_success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&body).into_owned())
        }
    }

    /// Every list of `plural` waits `delay` more before it is taken (`None`: no more).
    pub fn delay_lists(&self, plural: &str, delay: Option<Duration>) -> Result<(), String> {
        let ty = type_index(plural)?;
        *self
            .sim
            .list_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = delay.map(|d| (ty, d));
        Ok(())
    }

    /// What an API server restart or a compaction does to the watches of `plural`: they end, and
    /// resuming from any resourceVersion seen so far answers 410 Expired, so the clients list
    /// again.
    pub fn expire_watches(&self, plural: &str) -> Result<(), String> {
        let ty = type_index(plural)?;
        let mut store = self.sim.lock();
        store.floor = store.rv;
        store.watchers.retain(|watcher| watcher.ty != ty);
        Ok(())
    }

    /// Starts the peaks (requests in flight, queued) over from now.
    pub fn reset_peaks(&self) {
        let mut stats = self.sim.stats();
        stats.max_queued = 0;
        for (operator, tool) in stats.by_request.values_mut() {
            operator.max_in_flight = operator.in_flight;
            tool.max_in_flight = tool.in_flight;
        }
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.sim.stats().clone();
        stats.resource_version = self.sim.lock().rv;
        stats
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A timer with the precision of the OS (tens of microseconds) rather than tokio's 1 ms ticks,
/// which would add up to 2 ms to every simulated latency: one thread sleeps until the earliest
/// deadline and wakes the request waiting for it.
struct PreciseTimer {
    queue: Mutex<BinaryHeap<Reverse<Deadline>>>,
    wake: Condvar,
}

struct Deadline {
    at: Instant,
    seq: u64,
    done: tokio::sync::oneshot::Sender<()>,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Deadline {}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl PreciseTimer {
    fn start() -> Arc<PreciseTimer> {
        let timer = Arc::new(PreciseTimer {
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
        });
        let worker = timer.clone();
        std::thread::Builder::new()
            .name("sim-timer".into())
            .spawn(move || worker.run())
            .ok();
        timer
    }

    fn run(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while queue.peek().is_some_and(|next| next.0.at <= now) {
                if let Some(Reverse(due)) = queue.pop() {
                    let _ = due.done.send(());
                }
            }
            queue = match queue.peek().map(|next| next.0.at - now) {
                Some(wait) => {
                    self.wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Sleeps until `deadline`, not at all when it has passed.
    async fn sleep_until(&self, deadline: Instant) {
        if deadline <= Instant::now() {
            return;
        }
        let (done, wait) = tokio::sync::oneshot::channel();
        {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u64;
            let earliest = queue.peek().is_none_or(|next| deadline < next.0.at);
            queue.push(Reverse(Deadline {
                at: deadline,
                seq,
                done,
            }));
            if earliest {
                self.wake.notify_one();
            }
        }
        let _ = wait.await;
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn now() -> Value {
    serde_json::to_value(Time(Timestamp::now())).unwrap_or(Value::Null)
}

async fn bookmarks(sim: Arc<Sim>) {
    let mut ticks = tokio::time::interval(BOOKMARK_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let mut store = sim.lock();
        let rv = store.rv;
        store.watchers.retain(|w| !w.tx.is_closed());
        for watcher in store.watchers.iter().filter(|w| w.bookmarks) {
            let _ = watcher
                .tx
                .send(bookmark_line(&TYPES[watcher.ty], rv, false));
        }
    }
}

/// A request, routed.
#[derive(Debug)]
struct Target {
    ty: usize,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    /// `get configmaps/aws-auth`, `patch iamidentitymappings/status`, `list events`.
    fn stats_key(&self, verb: &str) -> String {
        let ty = &TYPES[self.ty];
        let mut key = format!("{verb} {}", ty.plural);
        if self.status {
            key.push_str("/status");
        } else if let Some(name) = &self.name
            && ty.plural != "iamidentitymappings"
            && ty.plural != "events"
        {
            key.push('/');
            key.push_str(name);
        }
        key
    }
}

fn route(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(*namespace), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    let ty = TYPES
        .iter()
        .position(|t| t.group == group && t.version == version && t.plural == plural)?;
    let resource = &TYPES[ty];
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    if resource.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    let status = match sub {
        None => false,
        Some("status") if resource.status => true,
        Some(_) => return None,
    };
    Some(Target {
        ty,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        status,
    })
}

/// The decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Query {
        Query(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or_default();
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A Kubernetes `Status` failure.
fn status_body(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Bytes {
    let mut status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        status["details"] = details;
    }
    Bytes::from(status.to_string())
}

fn failure(code: StatusCode, reason: &str, message: &str) -> (StatusCode, Bytes) {
    (code, status_body(code, reason, message, None))
}

fn not_found(ty: &ResourceType, name: &str) -> (StatusCode, Bytes) {
    let message = format!("{} \"{name}\" not found", ty.resource());
    object_failure(ty, name, StatusCode::NOT_FOUND, "NotFound", &message)
}

fn conflict(ty: &ResourceType, name: &str) -> (StatusCode, Bytes) {
    let message = format!(
        "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
        ty.resource()
    );
    object_failure(ty, name, StatusCode::CONFLICT, "Conflict", &message)
}

fn already_exists(ty: &ResourceType, name: &str) -> (StatusCode, Bytes) {
    let message = format!("{} \"{name}\" already exists", ty.resource());
    object_failure(ty, name, StatusCode::CONFLICT, "AlreadyExists", &message)
}

/// A failure about one object: the Status names it in `details`, as the API server's does.
fn object_failure(
    ty: &ResourceType,
    name: &str,
    code: StatusCode,
    reason: &str,
    message: &str,
) -> (StatusCode, Bytes) {
    let details = json!({ "name": name, "group": ty.group, "kind": ty.plural });
    (code, status_body(code, reason, message, Some(details)))
}

async fn handle(State(sim): State<Arc<Sim>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let from_load_tool = parts.headers.contains_key(LOAD_TOOL_HEADER);
    let query = Query::parse(parts.uri.query().unwrap_or_default());
    let method = &parts.method;
    let path = parts.uri.path();
    if path == "/version" && method == Method::GET {
        return version();
    }
    let Some(target) = route(path) else {
        return sim.unserved(method, path, from_load_tool);
    };
    if target.ty == MAPPINGS && !sim.mappings_served() {
        return sim.mappings_unserved(&target, method, path, from_load_tool);
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(error) => return too_large(&error),
    };
    let manager = field_manager(&query, &parts.headers);
    if method == Method::GET && target.name.is_none() && query.get("watch") == Some("true") {
        return sim.watch(target, &query, from_load_tool).await;
    }
    let Some(verb) = verb_of(method, &target) else {
        return sim.method_not_allowed(&target, method, from_load_tool);
    };
    let request = Op {
        verb,
        target,
        query,
        content_type,
        body,
        manager,
    };
    sim.serve(request, from_load_tool).await
}

fn version() -> Response {
    let version = json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-aws-auth-operator-load-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "none", "compiler": "rustc",
        "platform": "linux/amd64"
    });
    json_response(StatusCode::OK, Bytes::from(version.to_string()))
}

fn too_large(error: &axum::Error) -> Response {
    let (code, body) = failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!("reading the request body: {error}"),
    );
    json_response(code, body)
}

/// The fieldManager parameter, else the client's name from its User-Agent.
fn field_manager(query: &Query, headers: &axum::http::HeaderMap) -> String {
    query
        .get("fieldManager")
        .map(str::to_string)
        .or_else(|| {
            headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|ua| ua.split('/').next().unwrap_or(ua).to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// The verb of a request that is not a watch, if the method is allowed on the target.
fn verb_of(method: &Method, target: &Target) -> Option<&'static str> {
    Some(match (method, &target.name) {
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, None) => "create",
        (&Method::PUT, Some(_)) => "update",
        (&Method::PATCH, Some(_)) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        _ => return None,
    })
}

struct Op {
    verb: &'static str,
    target: Target,
    query: Query,
    content_type: String,
    body: Bytes,
    manager: String,
}

/// What a request to the store comes to: (status code, body, whether it was a no-op write), or
/// the failure to answer.
type Outcome = Result<(StatusCode, Bytes, bool), (StatusCode, Bytes)>;

impl Sim {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// IamIdentityMappings exist only while their CRD does.
    fn mappings_served(&self) -> bool {
        self.lock().objects[CRDS].contains_key(&(String::new(), MAPPINGS_CRD.to_string()))
    }

    /// A path outside the resource types served.
    fn unserved(&self, method: &Method, path: &str, from_load_tool: bool) -> Response {
        let message = format!("the server could not find the requested resource ({method} {path})");
        let stats_key = format!("{method} (unserved) {path}");
        self.not_found(stats_key, from_load_tool, &message)
    }

    /// A request for IamIdentityMappings while their CRD does not exist.
    fn mappings_unserved(
        &self,
        target: &Target,
        method: &Method,
        path: &str,
        from_load_tool: bool,
    ) -> Response {
        let message = format!(
            "the server could not find the requested resource ({method} {path}): the CustomResourceDefinition {MAPPINGS_CRD} does not exist"
        );
        self.not_found(target.stats_key(method.as_str()), from_load_tool, &message)
    }

    fn method_not_allowed(
        &self,
        target: &Target,
        method: &Method,
        from_load_tool: bool,
    ) -> Response {
        let message =
            format!("the server does not allow this method on the requested resource ({method})");
        self.refuse(
            target.stats_key(method.as_str()),
            from_load_tool,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &message,
        )
    }

    fn not_found(&self, stats_key: String, from_load_tool: bool, message: &str) -> Response {
        self.refuse(
            stats_key,
            from_load_tool,
            StatusCode::NOT_FOUND,
            "NotFound",
            message,
        )
    }

    /// Counts a request refused before it reached the store, and answers it.
    fn refuse(
        &self,
        stats_key: String,
        from_load_tool: bool,
        code: StatusCode,
        reason: &str,
        message: &str,
    ) -> Response {
        self.count(stats_key, from_load_tool, Some(code.as_u16()), false);
        let (code, body) = failure(code, reason, message);
        json_response(code, body)
    }

    fn stats(&self) -> MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, key: String, from_load_tool: bool, error: Option<u16>, noop: bool) {
        self.count_timed(key, from_load_tool, error, noop, Duration::ZERO);
    }

    fn count_timed(
        &self,
        key: String,
        from_load_tool: bool,
        error: Option<u16>,
        noop: bool,
        time: Duration,
    ) {
        let mut stats = self.stats();
        let entry = stats.by_request.entry(key).or_default();
        let counts = if from_load_tool {
            &mut entry.1
        } else {
            &mut entry.0
        };
        counts.requests += 1;
        counts.time += time;
        if noop {
            counts.noop += 1;
        }
        if let Some(code) = error {
            *counts.errors.entry(code).or_default() += 1;
        }
    }

    fn in_flight(&self, key: &str, from_load_tool: bool, starts: bool) {
        let mut stats = self.stats();
        let entry = stats.by_request.entry(key.to_string()).or_default();
        let counts = if from_load_tool {
            &mut entry.1
        } else {
            &mut entry.0
        };
        if starts {
            counts.in_flight += 1;
            counts.max_in_flight = counts.max_in_flight.max(counts.in_flight);
        } else {
            counts.in_flight = counts.in_flight.saturating_sub(1);
        }
    }

    fn per_size(&self, bytes: usize) -> Duration {
        self.config
            .per_mib
            .mul_f64(bytes as f64 / f64::from(1u32 << 20))
    }

    async fn serve(&self, op: Op, from_load_tool: bool) -> Response {
        let arrived = Instant::now();
        let key = op.target.stats_key(op.verb);
        self.in_flight(&key, from_load_tool, true);
        // A request that finds no free slot waits in line (the semaphore is fair).
        let permit = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                let queued = self.queued.fetch_add(1, Ordering::Relaxed) + 1;
                let waiting = Instant::now();
                let permit = self.slots.acquire().await;
                self.queued.fetch_sub(1, Ordering::Relaxed);
                let mut stats = self.stats();
                stats.max_queued = stats.max_queued.max(queued);
                stats.queued_for += waiting.elapsed();
                stats.requests_queued += 1;
                match permit {
                    Ok(permit) => permit,
                    Err(_) => {
                        let (code, body) = failure(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "ServiceUnavailable",
                            "shutting down",
                        );
                        return json_response(code, body);
                    }
                }
            }
        };
        let latency = if op.verb == "get" || op.verb == "list" {
            self.config.read_latency
        } else {
            self.config.write_latency
        };
        // Deadlines from the moment the slot was taken, so that the time spent applying the
        // request counts toward the latency, and a response-size share too small for the
        // timer (1 ms) costs nothing rather than a whole tick.
        let served = Instant::now();
        let mut apply_at = served + latency + self.per_size(op.body.len());
        if op.verb == "list"
            && let Some((ty, delay)) = *self
                .list_delay
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
            && ty == op.target.ty
        {
            apply_at += delay;
        }
        self.timer.sleep_until(apply_at).await;
        let (code, body, noop) = self.apply(&op);
        self.timer
            .sleep_until(apply_at + self.per_size(body.len()))
            .await;
        drop(permit);
        let error = (!code.is_success()).then_some(code.as_u16());
        self.in_flight(&key, from_load_tool, false);
        self.count_timed(key, from_load_tool, error, noop, arrived.elapsed());
        json_response(code, body)
    }

    /// Applies one request to the store: (status code, body, whether it was a no-op write).
    fn apply(&self, op: &Op) -> (StatusCode, Bytes, bool) {
        if op.verb == "list" {
            let (code, body) = self.list(&op.target, &op.query);
            return (code, body, false);
        }
        let target = &op.target;
        let namespace = target.namespace.clone().unwrap_or_default();
        let mut store = self.lock();
        let outcome = match op.verb {
            "get" => store.get_object(target, namespace),
            "create" => self.post(&mut store, op, &namespace),
            "update" => self.replace(&mut store, op, &namespace),
            "patch" => self.patch(&mut store, op, &namespace),
            "delete" => store.delete_object(target, namespace),
            _ => Err(failure(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                op.verb,
            )),
        };
        outcome.unwrap_or_else(|(code, body)| (code, body, false))
    }

    /// A POST: creates the object of the body.
    fn post(&self, store: &mut Store, op: &Op, namespace: &str) -> Outcome {
        let body = parse_body(&op.body)?;
        let (code, bytes) =
            self.create(store, op.target.ty, namespace, body, &op.manager, "Update");
        Ok((code, bytes, false))
    }

    /// A PUT: the body must name the object of the URL.
    fn replace(&self, store: &mut Store, op: &Op, namespace: &str) -> Outcome {
        let body = parse_body(&op.body)?;
        let name = op.target.name.clone().unwrap_or_default();
        if body["metadata"]["name"].as_str() != Some(name.as_str()) {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "the name of the object ({}) does not match the name on the URL ({name})",
                    body["metadata"]["name"].as_str().unwrap_or_default()
                ),
            ));
        }
        self.update(
            store,
            &op.target,
            namespace,
            &name,
            body,
            &op.manager,
            "Update",
        )
    }

    /// A PATCH of the object, or server-side apply of a missing one, which creates it.
    fn patch(&self, store: &mut Store, op: &Op, namespace: &str) -> Outcome {
        let patch = parse_body(&op.body)?;
        let target = &op.target;
        let ty = &TYPES[target.ty];
        let name = target.name.clone().unwrap_or_default();
        let kind = op.content_type.split(';').next().unwrap_or_default().trim();
        let key = (namespace.to_string(), name.clone());
        let Some(old) = store.objects[target.ty].get(&key).cloned() else {
            if kind == "application/apply-patch+yaml" && !target.status {
                let mut object = patch;
                object["metadata"]["name"] = json!(name);
                let (code, bytes) =
                    self.create(store, target.ty, namespace, object, &op.manager, "Apply");
                return Ok((code, bytes, false));
            }
            return Err(not_found(ty, &name));
        };
        let mut patched = old.value.clone();
        let operation = patch_as(kind, &mut patched, &patch)?;
        // A merge patch that names a resourceVersion is a precondition.
        if patched["metadata"]["resourceVersion"] != old.value["metadata"]["resourceVersion"] {
            return Err(conflict(ty, &name));
        }
        self.update(
            store,
            target,
            namespace,
            &name,
            patched,
            &op.manager,
            operation,
        )
    }

    /// Creates `object`; `(201, object)` or a failure.
    fn create(
        &self,
        store: &mut Store,
        ty_index: usize,
        namespace: &str,
        object: Value,
        manager: &str,
        operation: &str,
    ) -> (StatusCode, Bytes) {
        let ty = &TYPES[ty_index];
        let (key, mut object) = match admit_new(store, ty_index, namespace, object) {
            Ok(admitted) => admitted,
            Err(failure) => return failure,
        };
        let rv = self.stamp_new(store, ty, &mut object, manager, operation);
        let obj = Obj::new(object);
        let body = obj.json.clone();
        store.objects[ty_index].insert(key.clone(), obj.clone());
        store.commit(Change {
            rv,
            ty: ty_index,
            namespace: key.0,
            kind: EventType::Added,
            old: None,
            obj,
        });
        (StatusCode::CREATED, body)
    }

    /// Gives a new object what the server owns: the next resourceVersion, a uid, its
    /// creationTimestamp, generation 1 and managedFields. Returns the resourceVersion.
    fn stamp_new(
        &self,
        store: &mut Store,
        ty: &ResourceType,
        object: &mut Value,
        manager: &str,
        operation: &str,
    ) -> u64 {
        store.rv += 1;
        let rv = store.rv;
        let uid = store.next_uid;
        store.next_uid += 1;
        let time = now();
        let meta = &mut object["metadata"];
        meta["uid"] = json!(format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            self.uid_prefix,
            (uid >> 48) & 0xffff,
            (uid >> 36) & 0xfff,
            (uid >> 24) & 0xfff,
            uid & 0xffff_ffff_ffff
        ));
        meta["creationTimestamp"] = time.clone();
        meta["resourceVersion"] = json!(rv.to_string());
        if ty.generation {
            meta["generation"] = json!(1);
        }
        if self.config.managed_fields {
            let fields = fieldset_of_object(object, false);
            update_managed_fields(object, manager, operation, ty, None, fields, time);
        }
        rv
    }

    /// Replaces the object with `new` (already patched, or the body of a PUT).
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        store: &mut Store,
        target: &Target,
        namespace: &str,
        name: &str,
        mut new: Value,
        manager: &str,
        operation: &str,
    ) -> Outcome {
        let ty = &TYPES[target.ty];
        let key = (namespace.to_string(), name.to_string());
        let Some(old) = store.objects[target.ty].get(&key).cloned() else {
            return Err(not_found(ty, name));
        };
        check_replacement(ty, name, &new, &old.value)?;
        keep_stored_fields(&mut new, &old.value, target);
        if new == old.value {
            return Ok((StatusCode::OK, old.json.clone(), true));
        }
        if ty.generation && !same_outside(&new, &old.value, &["metadata", "status"]) {
            let generation = old.value["metadata"]["generation"].as_i64().unwrap_or(0);
            new["metadata"]["generation"] = json!(generation + 1);
        }
        store.rv += 1;
        let rv = store.rv;
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        if self.config.managed_fields {
            record_update_fields(&mut new, target, manager, operation);
        }
        let obj = Obj::new(new);
        let body = obj.json.clone();
        store.objects[target.ty].insert(key, obj.clone());
        store.commit(Change {
            rv,
            ty: target.ty,
            namespace: namespace.to_string(),
            kind: EventType::Modified,
            old: Some(old),
            obj,
        });
        Ok((StatusCode::OK, body, false))
    }

    fn list(&self, target: &Target, query: &Query) -> (StatusCode, Bytes) {
        let selector = match Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))
        {
            Ok(selector) => selector,
            Err(message) => return failure(StatusCode::BAD_REQUEST, "BadRequest", &message),
        };
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let mut store = self.lock();
        let token = query.get("continue").filter(|c| !c.is_empty());
        let Some(source) = store.list_source(target, &selector, token) else {
            return failure(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            );
        };
        let end = limit.map_or(source.items.len(), |l| {
            (source.offset + l).min(source.items.len())
        });
        let remaining = source.items.len() - end;
        let continue_token = store.continue_token(target.ty, &source, end, remaining);
        drop(store);
        let mut metadata = json!({ "resourceVersion": source.rv.to_string() });
        if let Some(token) = continue_token {
            metadata["continue"] = json!(token);
            metadata["remainingItemCount"] = json!(remaining);
        }
        let page = &source.items[source.offset.min(end)..end];
        (
            StatusCode::OK,
            list_body(&TYPES[target.ty], &metadata, page),
        )
    }

    async fn watch(&self, target: Target, query: &Query, from_load_tool: bool) -> Response {
        let key = target.stats_key("watch");
        let selector = match Selector::parse(query.get("labelSelector"), query.get("fieldSelector"))
        {
            Ok(selector) => selector,
            Err(message) => {
                self.count(key, from_load_tool, Some(400), false);
                let (code, body) = failure(StatusCode::BAD_REQUEST, "BadRequest", &message);
                return json_response(code, body);
            }
        };
        let timeout = Duration::from_secs(
            query
                .get("timeoutSeconds")
                .and_then(|t| t.parse().ok())
                .unwrap_or(1800),
        );
        let bookmarks = query.get("allowWatchBookmarks") == Some("true");
        let initial_events = query.get("sendInitialEvents") == Some("true");
        let from = query.get("resourceVersion").unwrap_or_default();
        self.timer
            .sleep_until(Instant::now() + self.config.read_latency)
            .await;
        self.count(key, from_load_tool, None, false);
        let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
        let watcher = Watcher {
            ty: target.ty,
            namespace: target.namespace.clone(),
            selector,
            bookmarks,
            tx,
        };
        let started = self.lock().start_watch(watcher, from, initial_events);
        if let Err((code, body)) = started {
            return json_response(code, body);
        }
        watch_response(rx, timeout)
    }
}

impl Store {
    /// What a list reads: the snapshot a continue token names (`None` once it is dropped), or
    /// the objects now matching.
    fn list_source(
        &self,
        target: &Target,
        selector: &Selector,
        token: Option<&str>,
    ) -> Option<ListSource> {
        let Some(token) = token else {
            let items = self.objects[target.ty]
                .iter()
                .filter(|((ns, _), obj)| {
                    target.namespace.as_deref().is_none_or(|n| n == ns) && selector.matches(obj)
                })
                .map(|(_, obj)| obj.clone())
                .collect();
            return Some(ListSource {
                snapshot: 0,
                offset: 0,
                rv: self.rv,
                items,
            });
        };
        let (id, offset) = token.split_once(':').and_then(|(id, offset)| {
            Some((id.parse::<u64>().ok()?, offset.parse::<usize>().ok()?))
        })?;
        self.snapshots
            .iter()
            .find(|(i, s)| *i == id && s.ty == target.ty)
            .map(|(_, s)| ListSource {
                snapshot: id,
                offset,
                rv: s.rv,
                items: s.items.clone(),
            })
    }

    /// The continue token of a page ending at `end` with `remaining` items after it. The items
    /// are kept as a snapshot while pages remain, so that every page is of the same list.
    fn continue_token(
        &mut self,
        ty: usize,
        source: &ListSource,
        end: usize,
        remaining: usize,
    ) -> Option<String> {
        if remaining == 0 {
            if source.snapshot != 0 {
                self.snapshots.retain(|(id, _)| *id != source.snapshot);
            }
            return None;
        }
        let id = if source.snapshot == 0 {
            let id = self.next_snapshot;
            self.next_snapshot += 1;
            self.snapshots.push_back((
                id,
                Snapshot {
                    ty,
                    rv: source.rv,
                    items: source.items.clone(),
                },
            ));
            if self.snapshots.len() > MAX_SNAPSHOTS {
                self.snapshots.pop_front();
            }
            id
        } else {
            source.snapshot
        };
        Some(format!("{id}:{end}"))
    }

    /// Sends a new watcher the events it starts with, then keeps it for the changes to come:
    /// every matching object for a watch from no version, "0" or with initial events (then a
    /// bookmark ends them, if asked), else the changes after `from`. Changes no longer kept end
    /// the watch with an Expired ERROR event.
    fn start_watch(
        &mut self,
        watcher: Watcher,
        from: &str,
        initial_events: bool,
    ) -> Result<(), (StatusCode, Bytes)> {
        if from.is_empty() || from == "0" || initial_events {
            for ((ns, _), obj) in &self.objects[watcher.ty] {
                if watcher.matches(ns, obj) {
                    let _ = watcher.tx.send(event_line("ADDED", &obj.json));
                }
            }
            if initial_events && watcher.bookmarks {
                let _ = watcher
                    .tx
                    .send(bookmark_line(&TYPES[watcher.ty], self.rv, true));
            }
            self.watchers.push(watcher);
            return Ok(());
        }
        let Ok(since) = from.parse::<u64>() else {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("invalid resource version: {from}"),
            ));
        };
        if since < self.floor {
            let status = status_body(
                StatusCode::GONE,
                "Expired",
                &format!("too old resource version: {since} ({})", self.floor + 1),
                None,
            );
            let _ = watcher.tx.send(event_line("ERROR", &status));
            return Ok(());
        }
        let start = self.history.partition_point(|c| c.rv <= since);
        for change in self.history.range(start..) {
            if let Some(kind) = watcher.event_for(change) {
                let _ = watcher.tx.send(event_line(kind.name(), &change.obj.json));
            }
        }
        self.watchers.push(watcher);
        Ok(())
    }

    /// A GET of one object.
    fn get_object(&self, target: &Target, namespace: String) -> Outcome {
        let name = target.name.clone().unwrap_or_default();
        match self.objects[target.ty].get(&(namespace, name.clone())) {
            Some(obj) => Ok((StatusCode::OK, obj.json.clone(), false)),
            None => Err(not_found(&TYPES[target.ty], &name)),
        }
    }

    /// A DELETE: the object's last state, at a new resourceVersion, goes to its watchers.
    fn delete_object(&mut self, target: &Target, namespace: String) -> Outcome {
        let name = target.name.clone().unwrap_or_default();
        let Some(old) = self.objects[target.ty].remove(&(namespace.clone(), name.clone())) else {
            return Err(not_found(&TYPES[target.ty], &name));
        };
        self.rv += 1;
        let rv = self.rv;
        let mut value = old.value.clone();
        value["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Obj::new(value);
        let body = obj.json.clone();
        self.commit(Change {
            rv,
            ty: target.ty,
            namespace,
            kind: EventType::Deleted,
            old: None,
            obj,
        });
        if target.ty == CRDS && name == MAPPINGS_CRD {
            self.delete_every_mapping();
        }
        Ok((StatusCode::OK, body, false))
    }

    /// What a real API server does when the IamIdentityMapping CRD is deleted: every mapping is
    /// deleted (a DELETED event each), then their watches end; watching again answers 404.
    fn delete_every_mapping(&mut self) {
        let mappings = std::mem::take(&mut self.objects[MAPPINGS]);
        for ((namespace, _), old) in mappings {
            self.rv += 1;
            let mut value = old.value.clone();
            value["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            let change = Change {
                rv: self.rv,
                ty: MAPPINGS,
                namespace,
                kind: EventType::Deleted,
                old: None,
                obj: Obj::new(value),
            };
            self.commit(change);
        }
        self.watchers.retain(|watcher| watcher.ty != MAPPINGS);
    }

    /// Records a committed write and sends it to the watchers, in order.
    fn commit(&mut self, change: Change) {
        let change = Arc::new(change);
        let mut lines: [Option<Bytes>; 3] = [None, None, None];
        self.watchers.retain(|watcher| {
            if watcher.tx.is_closed() {
                return false;
            }
            if let Some(kind) = watcher.event_for(&change) {
                let slot = &mut lines[kind as usize];
                let line = slot
                    .get_or_insert_with(|| event_line(kind.name(), &change.obj.json))
                    .clone();
                let _ = watcher.tx.send(line);
            }
            true
        });
        self.history_bytes += change.obj.json.len();
        self.history.push_back(change);
        while self.history.len() > HISTORY_MAX_CHANGES || self.history_bytes > HISTORY_MAX_BYTES {
            let Some(dropped) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= dropped.obj.json.len();
            self.floor = dropped.rv;
        }
    }
}

/// A watch's response: the lines sent to `rx`, streamed until `timeout`.
fn watch_response(rx: mpsc::UnboundedReceiver<Bytes>, timeout: Duration) -> Response {
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<Bytes, Infallible>(line), rx))
    })
    .take_until(tokio::time::sleep(timeout));
    let mut response = Response::new(Body::from_stream(events));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The items a list pages through, and where this page starts.
struct ListSource {
    /// The snapshot a continue token named; 0 for a new list.
    snapshot: u64,
    offset: usize,
    rv: u64,
    items: Vec<Arc<Obj>>,
}

/// A list's JSON, written from each object's stored JSON.
fn list_body(ty: &ResourceType, metadata: &Value, page: &[Arc<Obj>]) -> Bytes {
    let mut body = Vec::with_capacity(page.iter().map(|o| o.json.len() + 1).sum::<usize>() + 256);
    body.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{metadata},\"items\":[",
            ty.kind,
            ty.api_version()
        )
        .as_bytes(),
    );
    for (i, obj) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&obj.json);
    }
    body.extend_from_slice(b"]}");
    Bytes::from(body)
}

fn parse_body(body: &Bytes) -> Result<Value, (StatusCode, Bytes)> {
    serde_json::from_slice::<Value>(body).map_err(|error| {
        failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("the request body is not JSON: {error}"),
        )
    })
}

/// Applies a patch in the media type `kind` to `object`: the managedFields operation it counts
/// as, or the failure to answer.
fn patch_as(
    kind: &str,
    object: &mut Value,
    patch: &Value,
) -> Result<&'static str, (StatusCode, Bytes)> {
    match kind {
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            merge_patch(object, patch);
            Ok("Update")
        }
        "application/apply-patch+yaml" => {
            merge_patch(object, patch);
            Ok("Apply")
        }
        "application/json-patch+json" => {
            json_patch(object, patch).map_err(|message| {
                failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message)
            })?;
            Ok("Update")
        }
        other => Err(failure(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )),
    }
}

// ---- creating an object ------------------------------------------------------------------------

/// Checks a body to create and makes it the object to store, without what the server owns:
/// (store key, object) or the failure to answer.
fn admit_new(
    store: &Store,
    ty_index: usize,
    namespace: &str,
    mut object: Value,
) -> Result<((String, String), Value), (StatusCode, Bytes)> {
    let ty = &TYPES[ty_index];
    if !object.is_object() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not an object",
        ));
    }
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let name = name_new(store, ty, &mut object["metadata"])?;
    place_in_namespace(ty, namespace, &mut object["metadata"])?;
    let key = (
        if ty.namespaced {
            namespace.to_string()
        } else {
            String::new()
        },
        name.clone(),
    );
    if store.objects[ty_index].contains_key(&key) {
        return Err(already_exists(ty, &name));
    }
    strip_server_fields(ty, &mut object);
    object["apiVersion"] = json!(ty.api_version());
    object["kind"] = json!(ty.kind);
    if ty_index == CRDS {
        establish_crd(&mut object);
    }
    Ok((key, object))
}

/// The name of a new object: metadata.name, or one made from metadata.generateName.
fn name_new(
    store: &Store,
    ty: &ResourceType,
    meta: &mut Value,
) -> Result<String, (StatusCode, Bytes)> {
    let mut name = meta["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty()
        && let Some(prefix) = meta["generateName"].as_str()
    {
        name = format!("{prefix}{:05x}", store.next_uid & 0xfffff);
        meta["name"] = json!(name);
    }
    if name.is_empty() {
        return Err(failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "{} is invalid: metadata.name: Required value: name or generateName is required",
                ty.kind
            ),
        ));
    }
    Ok(name)
}

/// A namespaced object takes the namespace of the URL (a different one in the body is refused);
/// a cluster-scoped one has none.
fn place_in_namespace(
    ty: &ResourceType,
    namespace: &str,
    meta: &mut Value,
) -> Result<(), (StatusCode, Bytes)> {
    if ty.namespaced {
        if let Some(ns) = meta["namespace"].as_str()
            && !ns.is_empty()
            && ns != namespace
        {
            return Err(failure(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta["namespace"] = json!(namespace);
    } else if let Some(fields) = meta.as_object_mut() {
        fields.remove("namespace");
    }
    Ok(())
}

/// Refuses a replacement that is not an object, or whose resourceVersion (a PUT that carries one
/// is a compare-and-swap) is not the stored one.
fn check_replacement(
    ty: &ResourceType,
    name: &str,
    new: &Value,
    old: &Value,
) -> Result<(), (StatusCode, Bytes)> {
    if !new.is_object() {
        return Err(failure(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body is not an object",
        ));
    }
    if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
        && !rv.is_empty()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return Err(conflict(ty, name));
    }
    Ok(())
}

/// What an update may not change is taken from the stored object: everything but the status
/// through the status subresource, else the status (of a type with the subresource) and the
/// server's metadata.
fn keep_stored_fields(new: &mut Value, old: &Value, target: &Target) {
    let ty = &TYPES[target.ty];
    if target.status {
        let status = new.get("status").cloned();
        *new = old.clone();
        set_or_remove(new, "status", status);
    } else if ty.status {
        set_or_remove(new, "status", old.get("status").cloned());
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "generation",
        "resourceVersion",
        "managedFields",
    ] {
        let previous = old["metadata"].get(field).cloned();
        set_or_remove(&mut new["metadata"], field, previous);
    }
    new["apiVersion"] = json!(ty.api_version());
    new["kind"] = json!(ty.kind);
}

/// Records the fields `manager` now owns: through the status subresource, the status alone.
fn record_update_fields(new: &mut Value, target: &Target, manager: &str, operation: &str) {
    let fields = if target.status {
        let mut fields = Map::new();
        fields.insert("f:status".into(), fieldset_child(&new["status"]));
        Value::Object(fields)
    } else {
        fieldset_of_object(new, false)
    };
    let subresource = target.status.then_some("status");
    update_managed_fields(
        new,
        manager,
        operation,
        &TYPES[target.ty],
        subresource,
        fields,
        now(),
    );
}

/// Drops what a client may not set on a create: the server's metadata, and the status of a type
/// with a status subresource.
fn strip_server_fields(ty: &ResourceType, object: &mut Value) {
    if let Some(fields) = object["metadata"].as_object_mut() {
        for server_field in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "managedFields",
            "deletionTimestamp",
            "selfLink",
        ] {
            fields.remove(server_field);
        }
    }
    if ty.status
        && let Some(fields) = object.as_object_mut()
    {
        fields.remove("status");
    }
}

/// No controller here names and establishes a CRD: it is served at once.
fn establish_crd(object: &mut Value) {
    object["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()}
        ],
        "acceptedNames": object["spec"]["names"].clone(),
        "storedVersions": ["v1alpha1"]
    });
}

// ---- patches and managed fields ----------------------------------------------------------------

fn set_or_remove(object: &mut Value, key: &str, value: Option<Value>) {
    match (value, object.as_object_mut()) {
        (Some(value), Some(fields)) => {
            fields.insert(key.to_string(), value);
        }
        (None, Some(fields)) => {
            fields.remove(key);
        }
        _ => {}
    }
}

/// Whether `a` and `b` are equal apart from the top-level keys `except`.
fn same_outside(a: &Value, b: &Value, except: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let keys = a
        .keys()
        .chain(b.keys())
        .filter(|k| !except.contains(&k.as_str()));
    keys.into_iter().all(|k| a.get(k) == b.get(k))
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (key, value) in patch {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// RFC 6902 (add, remove, replace, move, copy, test).
fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let operations = patch.as_array().ok_or("a JSON patch is an array")?;
    for operation in operations {
        let op = operation["op"]
            .as_str()
            .ok_or("a JSON patch operation needs `op`")?;
        let path = operation["path"]
            .as_str()
            .ok_or("a JSON patch operation needs `path`")?;
        match op {
            "add" | "replace" => {
                let value = operation
                    .get("value")
                    .cloned()
                    .ok_or("`value` is required")?;
                pointer_set(target, path, value, op == "add")?;
            }
            "remove" => {
                pointer_remove(target, path)?;
            }
            "test" => {
                if target.pointer(path) != operation.get("value") {
                    return Err(format!("the test of {path} failed"));
                }
            }
            "move" | "copy" => {
                let from = operation["from"].as_str().ok_or("`from` is required")?;
                let value = if op == "move" {
                    pointer_remove(target, from)?
                } else {
                    target
                        .pointer(from)
                        .cloned()
                        .ok_or_else(|| format!("{from} does not exist"))?
                };
                pointer_set(target, path, value, true)?;
            }
            other => return Err(format!("unknown JSON patch operation {other}")),
        }
    }
    Ok(())
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid path {path}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn pointer_set(target: &mut Value, path: &str, value: Value, add: bool) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let parent = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("{path}: no parent"))?;
    match parent {
        Value::Object(fields) => {
            if !add && !fields.contains_key(&last) {
                return Err(format!("{path} does not exist"));
            }
            fields.insert(last, value);
        }
        Value::Array(items) => {
            if last == "-" && add {
                items.push(value);
            } else {
                let index: usize = last.parse().map_err(|_| format!("{path}: bad index"))?;
                if add && index <= items.len() {
                    items.insert(index, value);
                } else if !add && index < items.len() {
                    items[index] = value;
                } else {
                    return Err(format!("{path}: index out of range"));
                }
            }
        }
        _ => return Err(format!("{path}: parent is not a container")),
    }
    Ok(())
}

fn pointer_remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match target.pointer_mut(&parent) {
        Some(Value::Object(fields)) => fields.remove(&last),
        Some(Value::Array(items)) => last
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    }
    .ok_or_else(|| format!("{path} does not exist"))
}

/// The fieldsV1 set of an object's fields (apiVersion, kind and server-set metadata left out),
/// status included or not.
fn fieldset_of_object(object: &Value, with_status: bool) -> Value {
    let mut out = Map::new();
    if let Value::Object(fields) = object {
        for (key, value) in fields {
            match key.as_str() {
                "apiVersion" | "kind" => {}
                "status" if !with_status => {}
                "metadata" => {
                    let mut meta = Map::new();
                    for key in ["labels", "annotations", "finalizers", "ownerReferences"] {
                        if let Some(value) = value.get(key) {
                            meta.insert(format!("f:{key}"), fieldset_child(value));
                        }
                    }
                    if !meta.is_empty() {
                        out.insert("f:metadata".into(), Value::Object(meta));
                    }
                }
                _ => {
                    out.insert(format!("f:{key}"), fieldset_child(value));
                }
            }
        }
    }
    Value::Object(out)
}

fn fieldset_child(value: &Value) -> Value {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for (key, value) in fields {
                out.insert(format!("f:{key}"), fieldset_child(value));
            }
            Value::Object(out)
        }
        // A list of objects keyed by `type` (conditions): one `k:` entry per item.
        Value::Array(items) if !items.is_empty() && items.iter().all(|i| i["type"].is_string()) => {
            let mut out = Map::new();
            out.insert(".".into(), json!({}));
            for item in items {
                let key = format!(
                    "k:{{\"type\":\"{}\"}}",
                    item["type"].as_str().unwrap_or_default()
                );
                out.insert(key, fieldset_child(item));
            }
            Value::Object(out)
        }
        _ => json!({}),
    }
}

fn update_managed_fields(
    object: &mut Value,
    manager: &str,
    operation: &str,
    ty: &ResourceType,
    subresource: Option<&str>,
    fields: Value,
    time: Value,
) {
    let mut entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": ty.api_version(),
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    });
    if let Some(subresource) = subresource {
        entry["subresource"] = json!(subresource);
    }
    let list = &mut object["metadata"]["managedFields"];
    if !list.is_array() {
        *list = json!([]);
    }
    let Value::Array(entries) = list else {
        return;
    };
    let same = |e: &Value| {
        e["manager"] == entry["manager"]
            && e["operation"] == entry["operation"]
            && e["subresource"] == entry["subresource"]
    };
    match entries.iter_mut().find(|e| same(e)) {
        Some(existing) => *existing = entry,
        None => entries.push(entry),
    }
}
