//! A minimal in-memory API server for ConfigMaps in kube-system (GET, POST, PUT with
//! resourceVersion preconditions) and a list of IamIdentityMappings, for the I/O tests of the
//! store.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::client::Body;
use serde_json::{Value, json};

use crate::api::IamIdentityMapping;

const PREFIX: &str = "/api/v1/namespaces/kube-system/configmaps";
const MAPPINGS: &str = "/apis/awsauth.dev/v1alpha1/iamidentitymappings";

type Edit = Box<dyn FnOnce(&mut ConfigMap) + Send>;

#[derive(Default)]
pub struct State {
    pub configmaps: BTreeMap<String, ConfigMap>,
    /// What a list of IamIdentityMappings returns.
    pub mappings: Vec<IamIdentityMapping>,
    /// Requests as `METHOD name`.
    pub calls: Vec<String>,
    /// Edits applied by "someone else" right before our PUTs of that ConfigMap, one per PUT.
    pub edits_before_put: Vec<(String, Edit)>,
    /// ConfigMaps "someone else" deletes right before our next PUT of them, one per PUT.
    pub deletes_before_put: Vec<String>,
    /// The query of every POST and PUT (where the field manager goes).
    pub write_queries: Vec<String>,
    /// Status code returned for every request to this name.
    pub fail: BTreeMap<String, u16>,
    version: u64,
}

impl State {
    pub fn put(&mut self, mut cm: ConfigMap) {
        self.version += 1;
        cm.metadata.resource_version = Some(self.version.to_string());
        let name = cm.metadata.name.clone().unwrap_or_default();
        self.configmaps.insert(name, cm);
    }

    fn handle(&mut self, method: &Method, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        if path == MAPPINGS {
            self.calls.push(format!("{method} iamidentitymappings"));
            return (
                200,
                json!({"apiVersion": "awsauth.dev/v1alpha1", "kind": "IamIdentityMappingList",
                       "metadata": {"resourceVersion": "1"}, "items": self.mappings}),
            );
        }
        let name = path.strip_prefix(PREFIX).unwrap_or_default();
        let name = name.trim_start_matches('/').to_string();
        let parsed: Option<ConfigMap> = serde_json::from_slice(body).ok();
        let target = match (&parsed, name.is_empty()) {
            (Some(cm), true) => cm.metadata.name.clone().unwrap_or_default(),
            _ => name.clone(),
        };
        self.calls.push(format!("{method} {target}"));
        if let Some(code) = self.fail.get(&target) {
            return (*code, status(*code, "InternalError", "injected failure"));
        }
        if method == Method::POST || method == Method::PUT {
            self.write_queries.push(query.to_string());
        }
        match (method.as_str(), parsed) {
            ("GET", _) => match self.configmaps.get(&name) {
                Some(cm) => (200, json!(cm)),
                None => (404, status(404, "NotFound", "not found")),
            },
            ("POST", Some(cm)) => {
                if self.configmaps.contains_key(&target) {
                    return (409, status(409, "AlreadyExists", "already exists"));
                }
                self.put(cm);
                (201, json!(self.configmaps[&target]))
            }
            ("PUT", Some(cm)) => {
                if let Some(i) = self.deletes_before_put.iter().position(|n| *n == name) {
                    self.deletes_before_put.remove(i);
                    self.configmaps.remove(&name);
                }
                // One pending edit per PUT: each makes exactly one write conflict.
                if let Some(i) = self.edits_before_put.iter().position(|(n, _)| *n == name) {
                    let (_, edit) = self.edits_before_put.remove(i);
                    if let Some(mut live) = self.configmaps.get(&name).cloned() {
                        edit(&mut live);
                        self.put(live);
                    }
                }
                let Some(live) = self.configmaps.get(&name) else {
                    return (404, status(404, "NotFound", "not found"));
                };
                if live.metadata.resource_version != cm.metadata.resource_version {
                    return (409, status(409, "Conflict", "the object has been modified"));
                }
                self.put(cm);
                (200, json!(self.configmaps[&name]))
            }
            _ => (400, status(400, "BadRequest", "unsupported")),
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "code": code, "reason": reason, "message": message})
}

/// A client served by the mock (needs a tokio runtime), and its state.
pub fn start() -> (kube::Client, Arc<Mutex<State>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap();
            let (code, value) = shared.lock().unwrap().handle(
                &parts.method,
                parts.uri.path(),
                parts.uri.query().unwrap_or_default(),
                &body,
            );
            let response = Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), state)
}
