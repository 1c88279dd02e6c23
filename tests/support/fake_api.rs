//! An in-memory Kubernetes API for controller tests, served through `tower_test::mock`.
//!
//! It knows just what the controller uses:
//! - ConfigMaps in kube-system: GET, POST (409 AlreadyExists), PUT (409 Conflict when
//!   metadata.resourceVersion differs), PATCH (merge patch, or server-side apply treated as a merge
//!   that may create);
//! - cluster-scoped IamIdentityMappings: GET, PATCH of /status (JSON merge patch, 404 if missing);
//! - core/v1 events in any namespace: POST and PATCH (merge), recorded as the events.k8s.io/v1
//!   view the API server gives of them (`count` is `deprecatedCount`, and so on), with the
//!   core/v1 legacy validation of an event that has an `eventTime`.
//!
//! Every write bumps a global resourceVersion. Every request is logged. Errors are `Status` bodies
//! like the real API server's, so kube's error handling sees what it would see in a cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use aws_auth_operator::api::IamIdentityMapping;
use aws_auth_operator::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData};
use aws_auth_operator::plan::MANAGED_ANNOTATION;
use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::client::Body;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const CONFIGMAPS: &str = "/api/v1/namespaces/kube-system/configmaps";
const MAPPINGS: &str = "/apis/awsauth.dev/v1alpha1/iamidentitymappings";
const EVENTS_PREFIX: &str = "/api/v1/namespaces/";
const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";

/// What the fake says of the IamIdentityMapping CRD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Crd {
    #[default]
    Installed,
    /// Being deleted: it has a deletionTimestamp.
    Deleting,
    Missing,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The URL path, without the query.
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// For a POST, `metadata.name` of the object in the body.
    pub created_name: Option<String>,
}

impl Call {
    fn is_write(&self) -> bool {
        self.method != Method::GET
    }

    /// Whether this call writes the ConfigMap kube-system/`name`.
    pub fn writes_configmap(&self, name: &str) -> bool {
        self.is_write()
            && match self.method {
                Method::POST => {
                    self.path == CONFIGMAPS && self.created_name.as_deref() == Some(name)
                }
                _ => self.path == format!("{CONFIGMAPS}/{name}"),
            }
    }

    /// Whether this call writes the status of an IamIdentityMapping.
    pub fn writes_mapping_status(&self) -> bool {
        self.is_write() && self.path.starts_with(MAPPINGS) && self.path.ends_with("/status")
    }
}

type Hook = Box<dyn FnOnce(&mut State) + Send>;

/// Everything the fake API server holds.
#[derive(Default)]
pub struct State {
    /// ConfigMaps of kube-system by name.
    pub configmaps: BTreeMap<String, ConfigMap>,
    /// IamIdentityMappings by name.
    pub mappings: BTreeMap<String, IamIdentityMapping>,
    pub events: Vec<Event>,
    pub calls: Vec<Call>,
    resource_version: u64,
    conflicts_to_inject: usize,
    /// The next this many ConfigMap requests are answered 500 (an API server having trouble).
    pub configmap_failures_to_inject: usize,
    before_replace: Vec<Hook>,
    before_create: Vec<Hook>,
    /// The state of the IamIdentityMapping CRD.
    pub crd: Crd,
    /// Leases of kube-system by name, as JSON.
    pub leases: BTreeMap<String, Value>,
    /// Requests answered 403 Forbidden, by `METHOD path-prefix`.
    pub forbidden: Vec<(Method, String)>,
    /// Status patches in flight now, and the most seen at once (with a latency).
    pub status_patches_in_flight: usize,
    pub status_patches_in_flight_max: usize,
}

impl State {
    fn next_resource_version(&mut self) -> String {
        self.resource_version += 1;
        (1000 + self.resource_version).to_string()
    }

    /// Creates or overwrites a ConfigMap of kube-system, as another client would (bumps
    /// resourceVersion, does not log a call).
    pub fn put_configmap(&mut self, mut cm: ConfigMap) {
        let name = cm.metadata.name.clone().expect("ConfigMap without a name");
        cm.metadata.namespace = Some(CONFIGMAP_NAMESPACE.to_string());
        cm.metadata.resource_version = Some(self.next_resource_version());
        self.configmaps.insert(name, cm);
    }

    /// Creates or overwrites aws-auth with `data` and, when given, the managed-principals
    /// annotation.
    pub fn seed_aws_auth(&mut self, data: &[(&str, &str)], managed: Option<&str>) {
        let annotations =
            managed.map(|m| BTreeMap::from([(MANAGED_ANNOTATION.to_string(), m.to_string())]));
        self.put_configmap(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP_NAME.to_string()),
                annotations,
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        });
    }

    /// Edits the data of aws-auth in place, as EKS or a person with kubectl would.
    pub fn edit_aws_auth_data(&mut self, edit: impl FnOnce(&mut ConfigMapData)) {
        let mut cm = self
            .configmaps
            .get(CONFIGMAP_NAME)
            .cloned()
            .expect("aws-auth does not exist");
        edit(cm.data.get_or_insert_with(BTreeMap::new));
        self.put_configmap(cm);
    }

    fn handle(&mut self, method: Method, path: &str, content_type: &str, body: &[u8]) -> Reply {
        if self
            .forbidden
            .iter()
            .any(|(m, prefix)| *m == method && path.starts_with(prefix.as_str()))
        {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &format!("{method} {path} is forbidden: the RBAC of this test does not allow it"),
            );
        }
        if let Some(name) = path.strip_prefix(CRDS) {
            let name = name.trim_start_matches('/');
            return match (method, self.crd) {
                (Method::GET, Crd::Missing) => {
                    not_found("customresourcedefinitions.apiextensions.k8s.io", name)
                }
                (Method::GET, crd) => {
                    let mut object = json!({
                        "apiVersion": "apiextensions.k8s.io/v1",
                        "kind": "CustomResourceDefinition",
                        "metadata": {"name": name, "resourceVersion": "1"},
                        "spec": {"group": "awsauth.dev", "names": {"plural": "iamidentitymappings", "kind": "IamIdentityMapping"}, "scope": "Cluster", "versions": []}
                    });
                    if crd == Crd::Deleting {
                        object["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
                    }
                    (StatusCode::OK, object)
                }
                _ => unsupported(path),
            };
        }
        if let Some(rest) = path.strip_prefix(LEASES) {
            return self.lease(method, rest.trim_start_matches('/'), body);
        }
        if let Some(rest) = path.strip_prefix(CONFIGMAPS) {
            if self.configmap_failures_to_inject > 0 {
                self.configmap_failures_to_inject -= 1;
                return status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "injected failure",
                );
            }
            let name = rest.strip_prefix('/').filter(|n| !n.is_empty());
            return self.configmap(method, name, content_type, body);
        }
        if let Some(rest) = path.strip_prefix(MAPPINGS) {
            let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
            return match (method, parts.as_slice()) {
                // A plain list (what `rollback` reads; the controller watches through its own
                // reflector in these tests).
                (Method::GET, []) => ok(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": "awsauth.dev/v1alpha1",
                        "kind": "IamIdentityMappingList",
                        "metadata": {"resourceVersion": "1"},
                        "items": self.mappings.values().collect::<Vec<_>>(),
                    }),
                ),
                (Method::GET, [name]) => match self.mappings.get(*name) {
                    Some(m) => ok(StatusCode::OK, m),
                    None => not_found("iamidentitymappings.awsauth.dev", name),
                },
                (Method::PATCH, [name, "status"]) => self.patch_status(name, content_type, body),
                _ => unsupported(path),
            };
        }
        if let Some(rest) = path.strip_prefix(EVENTS_PREFIX)
            && rest.split('/').nth(1) == Some("events")
        {
            let parts: Vec<&str> = rest.split('/').collect();
            return match (method, parts.as_slice()) {
                (Method::POST, [_namespace, "events"]) => self.create_event(body),
                (Method::PATCH, [_namespace, "events", name]) => {
                    self.patch_event(name, content_type, body)
                }
                _ => unsupported(path),
            };
        }
        unsupported(path)
    }

    fn configmap(
        &mut self,
        method: Method,
        name: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Reply {
        const WHAT: &str = "configmaps";
        match (method, name) {
            (Method::GET, Some(name)) => match self.configmaps.get(name) {
                Some(cm) => ok(StatusCode::OK, cm),
                None => not_found(WHAT, name),
            },
            (Method::POST, None) => {
                let cm: ConfigMap = match parse(body) {
                    Ok(cm) => cm,
                    Err(reply) => return reply,
                };
                let name = cm.metadata.name.clone().unwrap_or_default();
                if name == CONFIGMAP_NAME {
                    for hook in std::mem::take(&mut self.before_create) {
                        hook(self);
                    }
                }
                if self.configmaps.contains_key(&name) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("{WHAT} \"{name}\" already exists"),
                    );
                }
                self.store_configmap(cm, StatusCode::CREATED)
            }
            (Method::PUT, Some(name)) => {
                if name == CONFIGMAP_NAME {
                    for hook in std::mem::take(&mut self.before_replace) {
                        hook(self);
                    }
                    if self.conflicts_to_inject > 0 {
                        self.conflicts_to_inject -= 1;
                        return modified(name);
                    }
                }
                let cm: ConfigMap = match parse(body) {
                    Ok(cm) => cm,
                    Err(reply) => return reply,
                };
                let Some(stored) = self.configmaps.get(name) else {
                    return not_found(WHAT, name);
                };
                if cm.metadata.name.as_deref() != Some(name) {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        "the name of the object does not match the name on the URL",
                    );
                }
                if cm.metadata.resource_version.is_some()
                    && cm.metadata.resource_version != stored.metadata.resource_version
                {
                    return modified(name);
                }
                self.store_configmap(cm, StatusCode::OK)
            }
            (Method::PATCH, Some(name)) => {
                let apply = content_type.starts_with("application/apply-patch");
                if !apply && !content_type.starts_with("application/merge-patch+json") {
                    return unsupported_patch(content_type);
                }
                let patch: Value = match parse(body) {
                    Ok(patch) => patch,
                    Err(reply) => return reply,
                };
                let mut target = match self.configmaps.get(name) {
                    Some(cm) => to_value(cm),
                    None if apply => json!({ "metadata": { "name": name } }),
                    None => return not_found(WHAT, name),
                };
                merge(&mut target, &patch);
                match serde_json::from_value::<ConfigMap>(target) {
                    Ok(cm) => self.store_configmap(cm, StatusCode::OK),
                    Err(err) => invalid(&err.to_string()),
                }
            }
            (_, name) => unsupported(&format!("configmaps {name:?}")),
        }
    }

    /// Leases: GET, POST, and PATCH of any kind applied as a merge patch (enough for
    /// kube-lease-manager's apply and strategic patches of `spec`).
    fn lease(&mut self, method: Method, name: &str, body: &[u8]) -> Reply {
        const WHAT: &str = "leases.coordination.k8s.io";
        let resource_version = self.next_resource_version();
        match method {
            Method::GET => match self.leases.get(name) {
                Some(lease) => (StatusCode::OK, lease.clone()),
                None => not_found(WHAT, name),
            },
            Method::POST => {
                let mut lease: Value = match parse(body) {
                    Ok(lease) => lease,
                    Err(reply) => return reply,
                };
                let name = lease["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if self.leases.contains_key(&name) {
                    return status(StatusCode::CONFLICT, "AlreadyExists", "lease exists");
                }
                lease["metadata"]["resourceVersion"] = json!(resource_version);
                lease["metadata"]["namespace"] = json!("kube-system");
                self.leases.insert(name, lease.clone());
                (StatusCode::CREATED, lease)
            }
            Method::PATCH => {
                let patch: Value = match parse(body) {
                    Ok(patch) => patch,
                    Err(reply) => return reply,
                };
                let Some(lease) = self.leases.get_mut(name) else {
                    return not_found(WHAT, name);
                };
                merge(lease, &patch);
                lease["metadata"]["resourceVersion"] = json!(resource_version);
                (StatusCode::OK, lease.clone())
            }
            _ => unsupported("leases"),
        }
    }

    fn store_configmap(&mut self, mut cm: ConfigMap, code: StatusCode) -> Reply {
        cm.metadata.managed_fields = None;
        self.put_configmap(cm.clone());
        let name = cm.metadata.name.unwrap_or_default();
        ok(code, &self.configmaps[&name])
    }

    fn patch_status(&mut self, name: &str, content_type: &str, body: &[u8]) -> Reply {
        if !content_type.starts_with("application/merge-patch+json") {
            return unsupported_patch(content_type);
        }
        let patch: Value = match parse(body) {
            Ok(patch) => patch,
            Err(reply) => return reply,
        };
        let Some(stored) = self.mappings.get(name) else {
            return not_found("iamidentitymappings.awsauth.dev", name);
        };
        // The status subresource ignores everything but the status.
        let mut target = to_value(stored);
        let status_only = json!({ "status": patch.get("status").cloned().unwrap_or(Value::Null) });
        if patch.get("status").is_some() {
            merge(&mut target, &status_only);
        }
        let mut mapping: IamIdentityMapping = match serde_json::from_value(target) {
            Ok(m) => m,
            Err(err) => return invalid(&err.to_string()),
        };
        mapping.metadata.resource_version = Some(self.next_resource_version());
        self.mappings.insert(name.to_string(), mapping);
        ok(StatusCode::OK, &self.mappings[name])
    }

    fn create_event(&mut self, body: &[u8]) -> Reply {
        let core: Value = match parse(body) {
            Ok(event) => event,
            Err(reply) => return reply,
        };
        // The legacy validation of an event with an eventTime (pkg/apis/core/validation).
        for field in [
            "reportingComponent",
            "reportingInstance",
            "action",
            "reason",
        ] {
            if core[field].as_str().is_none_or(str::is_empty) {
                return invalid(&format!("{field}: Required value"));
            }
        }
        let mut event: Event = match serde_json::from_value(events_v1_view(core)) {
            Ok(event) => event,
            Err(err) => return invalid(&err.to_string()),
        };
        event.metadata.resource_version = Some(self.next_resource_version());
        self.events.push(event.clone());
        ok(StatusCode::CREATED, &core_v1_reply(&event))
    }

    fn patch_event(&mut self, name: &str, content_type: &str, body: &[u8]) -> Reply {
        if !content_type.starts_with("application/merge-patch+json") {
            return unsupported_patch(content_type);
        }
        let patch: Value = match parse(body) {
            Ok(patch) => patch,
            Err(reply) => return reply,
        };
        let resource_version = self.next_resource_version();
        let Some(event) = self
            .events
            .iter_mut()
            .find(|e| e.metadata.name.as_deref() == Some(name))
        else {
            return not_found("events.events.k8s.io", name);
        };
        let mut target = core_v1_view(to_value(&*event));
        merge(&mut target, &patch);
        match serde_json::from_value::<Event>(events_v1_view(target)) {
            Ok(mut patched) => {
                patched.metadata.resource_version = Some(resource_version);
                *event = patched;
                ok(StatusCode::OK, &core_v1_reply(event))
            }
            Err(err) => invalid(&err.to_string()),
        }
    }
}

/// The fields core/v1 and events.k8s.io/v1 name differently, as the API server converts them.
const EVENT_FIELDS: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("count", "deprecatedCount"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("source", "deprecatedSource"),
];

fn rename_fields(mut event: Value, from_core: bool) -> Value {
    if let Some(object) = event.as_object_mut() {
        for (core, v1) in EVENT_FIELDS {
            let (from, to) = if from_core { (core, v1) } else { (v1, core) };
            if let Some(value) = object.remove(from) {
                object.insert(to.to_string(), value);
            }
        }
        object.remove("apiVersion");
        object.remove("kind");
    }
    event
}

/// A core/v1 event as events.k8s.io/v1 shows it.
fn events_v1_view(core: Value) -> Value {
    rename_fields(core, true)
}

/// An events.k8s.io/v1 event as core/v1 shows it.
fn core_v1_view(v1: Value) -> Value {
    rename_fields(v1, false)
}

/// What the core/v1 API answers with for a stored event.
fn core_v1_reply(event: &Event) -> Value {
    let mut core = core_v1_view(to_value(event));
    core["apiVersion"] = json!("v1");
    core["kind"] = json!("Event");
    core
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(target) = target else {
        unreachable!()
    };
    for (key, value) in fields {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

type Reply = (StatusCode, Value);

fn to_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("serializable object")
}

fn ok(code: StatusCode, object: &impl Serialize) -> Reply {
    (code, to_value(object))
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|err| {
        status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("cannot decode the request body: {err}"),
        )
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Reply {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, body)
}

fn not_found(what: &str, name: &str) -> Reply {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{what} \"{name}\" not found"),
    )
}

fn modified(name: &str) -> Reply {
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on configmaps \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
        ),
    )
}

fn invalid(message: &str) -> Reply {
    status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
}

fn unsupported(what: &str) -> Reply {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the fake API does not serve {what}"),
    )
}

fn unsupported_patch(content_type: &str) -> Reply {
    status(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        &format!("the fake API does not support patch type {content_type}"),
    )
}

/// The fake API server and a `kube::Client` talking to it.
pub struct FakeApi {
    pub client: Client,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeApi {
    /// Starts the server task (needs a tokio runtime). Requests are answered one at a time,
    /// at once.
    pub fn start() -> FakeApi {
        FakeApi::serve(None)
    }

    /// Like a real API server under load: every request takes `latency`, and many are served
    /// at once. `State::status_patches_in_flight_max` records the most status patches seen in
    /// flight together.
    pub fn start_with_latency(latency: std::time::Duration) -> FakeApi {
        FakeApi::serve(Some(latency))
    }

    fn serve(latency: Option<std::time::Duration>) -> FakeApi {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = tokio::spawn(async move {
            while let Some((request, respond)) = handle.next_request().await {
                let shared = shared.clone();
                let answer = async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect_bytes().await.expect("request body");
                    let content_type = parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    let created_name = (parts.method == Method::POST)
                        .then(|| serde_json::from_slice::<Value>(&body).ok())
                        .flatten()
                        .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string));
                    let path = parts.uri.path().to_string();
                    let call = Call {
                        method: parts.method.clone(),
                        path: path.clone(),
                        query: parts.uri.query().unwrap_or_default().to_string(),
                        content_type: content_type.clone(),
                        created_name,
                    };
                    let status_patch = call.writes_mapping_status();
                    if let Some(latency) = latency {
                        {
                            let mut state = shared.lock().expect("fake API state");
                            if status_patch {
                                state.status_patches_in_flight += 1;
                                state.status_patches_in_flight_max = state
                                    .status_patches_in_flight_max
                                    .max(state.status_patches_in_flight);
                            }
                        }
                        tokio::time::sleep(latency).await;
                    }
                    let (code, value) = {
                        let mut state = shared.lock().expect("fake API state");
                        if latency.is_some() && status_patch {
                            state.status_patches_in_flight -= 1;
                        }
                        state.calls.push(call);
                        state.handle(parts.method, &path, &content_type, &body)
                    };
                    let response = Response::builder()
                        .status(code)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(&value).expect("JSON")))
                        .expect("response");
                    respond.send_response(response);
                };
                match latency {
                    Some(_) => {
                        tokio::spawn(answer);
                    }
                    None => answer.await,
                }
            }
        });
        FakeApi {
            client: Client::new(service, "default"),
            state,
            server,
        }
    }

    /// The server state, to inspect or change directly.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake API state")
    }

    /// Creates aws-auth with `data` and, when given, the managed-principals annotation.
    pub fn seed_aws_auth(&self, data: &[(&str, &str)], managed: Option<&str>) {
        self.state().seed_aws_auth(data, managed);
    }

    pub fn configmap(&self, name: &str) -> Option<ConfigMap> {
        self.state().configmaps.get(name).cloned()
    }

    pub fn aws_auth(&self) -> Option<ConfigMap> {
        self.configmap(CONFIGMAP_NAME)
    }

    /// The data of aws-auth (panics when it does not exist).
    pub fn aws_auth_data(&self) -> ConfigMapData {
        self.aws_auth()
            .expect("aws-auth exists")
            .data
            .unwrap_or_default()
    }

    /// The `awsauth.dev/managed` annotation of aws-auth.
    pub fn managed_annotation(&self) -> Option<String> {
        self.aws_auth()?
            .metadata
            .annotations?
            .get(MANAGED_ANNOTATION)
            .cloned()
    }

    pub fn add_mapping(&self, mut mapping: IamIdentityMapping) {
        let mut state = self.state();
        mapping.metadata.resource_version = Some(state.next_resource_version());
        let name = mapping
            .metadata
            .name
            .clone()
            .expect("mapping without a name");
        state.mappings.insert(name, mapping);
    }

    /// The mappings as stored (with the statuses written so far), by name: what the reflector
    /// store would hand the next reconcile.
    pub fn mappings(&self) -> Vec<Arc<IamIdentityMapping>> {
        self.state()
            .mappings
            .values()
            .cloned()
            .map(Arc::new)
            .collect()
    }

    pub fn mapping(&self, name: &str) -> IamIdentityMapping {
        self.state()
            .mappings
            .get(name)
            .cloned()
            .expect("mapping exists")
    }

    pub fn events(&self) -> Vec<Event> {
        self.state().events.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Writes (create, replace, patch) of aws-auth, including the refused ones.
    pub fn aws_auth_writes(&self) -> usize {
        self.count(|c| c.writes_configmap(CONFIGMAP_NAME))
    }

    /// Status patches of mappings, including the refused ones.
    pub fn status_writes(&self) -> usize {
        self.count(Call::writes_mapping_status)
    }

    pub fn count(&self, filter: impl Fn(&Call) -> bool) -> usize {
        self.state().calls.iter().filter(|c| filter(c)).count()
    }

    /// The next replace (PUT) of aws-auth is answered 409 Conflict and not applied.
    pub fn fail_next_replace_with_conflict(&self) {
        self.state().conflicts_to_inject += 1;
    }

    /// Runs `hook` on the state when the next replace (PUT) of aws-auth arrives, before it is
    /// checked: a foreign write landing between the controller's read and its write.
    pub fn on_before_replace(&self, hook: impl FnOnce(&mut State) + Send + 'static) {
        self.state().before_replace.push(Box::new(hook));
    }

    /// Drops the hooks that have not run.
    pub fn clear_hooks(&self) {
        let mut state = self.state();
        state.before_replace.clear();
        state.before_create.clear();
    }

    /// Like [`FakeApi::on_before_replace`], for the next create (POST) of aws-auth.
    pub fn on_before_create(&self, hook: impl FnOnce(&mut State) + Send + 'static) {
        self.state().before_create.push(Box::new(hook));
    }
}
