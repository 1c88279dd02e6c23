//! Revisions of aws-auth kept in the `kube-system/aws-auth-operator-history` ConfigMap.
//!
//! Before every write of aws-auth the controller saves the data it is about to replace (and the
//! managed-principals annotation) as a revision; `aws-auth-operator rollback` restores one. Each
//! revision is one data key, `revision-<10-digit zero-padded number>`, whose value is the
//! [`Revision`] as JSON. The newest `keep` revisions are kept, and fewer when they would not fit
//! in a ConfigMap.
//!
//! The functions that build and read the ConfigMap are pure ([`decode`], [`with_revision`],
//! [`last_good`], [`find`]); [`load`] and [`record`] move them to and from the API server, with
//! compare-and-swap writes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, info, warn};

use crate::awsauth::{CONFIGMAP_NAMESPACE, ConfigMapData, MAX_CONFIGMAP_DATA_BYTES, parse_data};

pub const HISTORY_CONFIGMAP: &str = "aws-auth-operator-history";
pub const DEFAULT_HISTORY_LIMIT: usize = 10;
/// Room left for metadata (labels, annotations, managedFields) under the 1 MiB object limit.
pub const SIZE_MARGIN_BYTES: usize = 16 * 1024;
/// The most the data of the history ConfigMap may hold.
pub const MAX_HISTORY_DATA_BYTES: usize = MAX_CONFIGMAP_DATA_BYTES - SIZE_MARGIN_BYTES;
/// Compare-and-swap writes give up after this many conflicts in a row.
pub const MAX_WRITE_ATTEMPTS: u32 = 5;

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "aws-auth-operator";

const KEY_PREFIX: &str = "revision-";

/// One saved state of aws-auth.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Revision {
    pub revision: u64,
    /// When it was saved (whole seconds, as Kubernetes timestamps are).
    pub time: Time,
    /// Why it was saved, e.g. `before aws-auth-operator rewrote mapRoles`.
    pub reason: String,
    /// The aws-auth data at that time.
    pub data: ConfigMapData,
    /// The managed-principals annotation at that time, if aws-auth had one.
    #[serde(default)]
    pub managed_annotation: Option<String>,
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("{HISTORY_CONFIGMAP}: key `{key}` is not a readable revision: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "revision {revision} would take {bytes} bytes, more than the {limit} bytes a history ConfigMap can hold; it was not recorded"
    )]
    RevisionTooLarge {
        revision: u64,
        bytes: usize,
        limit: usize,
    },
    #[error("serialising revision {revision}: {source}")]
    Serialize {
        revision: u64,
        source: serde_json::Error,
    },
    #[error("revision {revision} is not in {CONFIGMAP_NAMESPACE}/{HISTORY_CONFIGMAP}{}", available_list(.available))]
    RevisionNotFound { revision: u64, available: Vec<u64> },
    #[error("{action} {CONFIGMAP_NAMESPACE}/{name}: {}", describe_kube_error(.source))]
    Kube {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error(
        "{CONFIGMAP_NAMESPACE}/{name} kept changing between read and write ({attempts} attempts); nothing more was written, try again"
    )]
    TooManyConflicts { name: String, attempts: u32 },
}

fn available_list(available: &[u64]) -> String {
    if available.is_empty() {
        " (no revisions are recorded)".to_string()
    } else {
        let list: Vec<String> = available.iter().map(u64::to_string).collect();
        format!(" (available: {})", list.join(", "))
    }
}

/// A kube error for a person: the API server's message, without the Debug dump.
pub fn describe_kube_error(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => {
            let mut text = if status.message.is_empty() {
                "request failed".to_string()
            } else {
                status.message.clone()
            };
            match (status.reason.is_empty(), status.code) {
                (false, code) => text.push_str(&format!(" ({}, HTTP {code})", status.reason)),
                (true, code) if code != 0 => text.push_str(&format!(" (HTTP {code})")),
                _ => {}
            }
            text
        }
        other => other.to_string(),
    }
}

/// Whether `err` is an API error with this HTTP status code.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

/// The data key of a revision: `revision-0000000042`.
pub fn revision_key(revision: u64) -> String {
    format!("{KEY_PREFIX}{revision:010}")
}

/// The revision number of a data key, when it is in the canonical form [`revision_key`] writes.
pub fn parse_revision_key(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(KEY_PREFIX)?;
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let revision: u64 = digits.parse().ok()?;
    (revision_key(revision) == key).then_some(revision)
}

fn decode_entry(key: &str, value: &str) -> Result<Revision, HistoryError> {
    let corrupt = |reason: String| HistoryError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let number = parse_revision_key(key).ok_or_else(|| {
        corrupt(format!(
            "not a revision key (expected {KEY_PREFIX} and 10 digits)"
        ))
    })?;
    let revision: Revision = serde_json::from_str(value).map_err(|e| corrupt(e.to_string()))?;
    if revision.revision != number {
        return Err(corrupt(format!(
            "its value says revision {}",
            revision.revision
        )));
    }
    Ok(revision)
}

/// Every revision in the history ConfigMap, oldest first. Any key that is not a readable
/// revision is an error naming that key.
pub fn decode(cm: &ConfigMap) -> Result<Vec<Revision>, HistoryError> {
    let mut revisions = cm
        .data
        .iter()
        .flatten()
        .map(|(key, value)| decode_entry(key, value))
        .collect::<Result<Vec<_>, _>>()?;
    revisions.sort_by_key(|r| r.revision);
    Ok(revisions)
}

/// Like [`decode`], but keeps going past unreadable keys: the readable revisions (oldest first)
/// and an error for each key that is not.
pub fn decode_lossy(cm: &ConfigMap) -> (Vec<Revision>, Vec<HistoryError>) {
    let mut revisions = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in cm.data.iter().flatten() {
        match decode_entry(key, value) {
            Ok(revision) => revisions.push(revision),
            Err(err) => errors.push(err),
        }
    }
    revisions.sort_by_key(|r| r.revision);
    (revisions, errors)
}

fn new_history_configmap() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(HISTORY_CONFIGMAP.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// The history ConfigMap with one more revision, and that revision's number.
///
/// The new revision is numbered one more than the highest revision key present. The newest
/// revisions are kept: at most `keep` (at least 1, the new one), and only as many as fit in
/// [`MAX_HISTORY_DATA_BYTES`]. A new revision that does not fit on its own is an error. Keys that
/// are not readable revisions are dropped (a corrupt history never blocks recording). Everything
/// else of `cm` is kept, its resourceVersion in particular, so that writing the result is a
/// compare-and-swap.
pub fn with_revision(
    cm: Option<ConfigMap>,
    data: &ConfigMapData,
    managed_annotation: Option<&str>,
    reason: &str,
    time: Time,
    keep: usize,
) -> Result<(ConfigMap, u64), HistoryError> {
    let mut cm = cm.unwrap_or_else(new_history_configmap);
    let old = cm.data.take().unwrap_or_default();

    let mut highest = 0;
    let mut readable: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for (key, value) in old {
        if let Some(number) = parse_revision_key(&key) {
            highest = highest.max(number);
        }
        match decode_entry(&key, &value) {
            Ok(revision) => {
                readable.insert(revision.revision, (key, value));
            }
            Err(err) => warn!(key = %key, error = %err, "dropping an unreadable history entry"),
        }
    }

    let revision = highest.saturating_add(1);
    let new = Revision {
        revision,
        time,
        reason: reason.to_string(),
        data: data.clone(),
        managed_annotation: managed_annotation.map(str::to_string),
    };
    let value = serde_json::to_string(&new)
        .map_err(|source| HistoryError::Serialize { revision, source })?;
    let key = revision_key(revision);
    let mut total = key.len() + value.len();
    if total > MAX_HISTORY_DATA_BYTES {
        return Err(HistoryError::RevisionTooLarge {
            revision,
            bytes: total,
            limit: MAX_HISTORY_DATA_BYTES,
        });
    }

    let keep = keep.max(1);
    let mut kept = BTreeMap::from([(key, value)]);
    let mut dropped = 0usize;
    let mut older = readable.into_values().rev();
    for (key, value) in older.by_ref() {
        let size = key.len() + value.len();
        if kept.len() >= keep || total + size > MAX_HISTORY_DATA_BYTES {
            // This one and everything older goes: the kept revisions are always the newest.
            dropped += 1;
            break;
        }
        total += size;
        kept.insert(key, value);
    }
    dropped += older.count();
    if dropped > 0 {
        debug!(
            revision,
            dropped,
            kept = kept.len(),
            bytes = total,
            "dropped the oldest revisions"
        );
    }

    cm.data = Some(kept);
    cm.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    Ok((cm, revision))
}

/// The newest revision whose every section the authenticator can read (nothing `malformed`).
pub fn last_good(revisions: &[Revision]) -> Option<&Revision> {
    revisions
        .iter()
        .filter(|r| parse_data(&r.data).malformed.is_empty())
        .max_by_key(|r| r.revision)
}

pub fn find(revisions: &[Revision], revision: u64) -> Option<&Revision> {
    revisions.iter().find(|r| r.revision == revision)
}

/// The history ConfigMap and its revisions, oldest first; `(None, [])` when it does not exist.
///
/// Unreadable keys are skipped with a warning rather than failing: a damaged entry must not stop
/// recovery from the revisions that are fine (the next [`record`] drops it).
pub async fn load(
    api: &Api<ConfigMap>,
) -> Result<(Option<ConfigMap>, Vec<Revision>), HistoryError> {
    let Some(cm) = get_history(api).await? else {
        return Ok((None, Vec::new()));
    };
    let (revisions, errors) = decode_lossy(&cm);
    for err in &errors {
        warn!(configmap = HISTORY_CONFIGMAP, error = %err, "skipping an unreadable revision");
    }
    Ok((Some(cm), revisions))
}

async fn get_history(api: &Api<ConfigMap>) -> Result<Option<ConfigMap>, HistoryError> {
    match api.get(HISTORY_CONFIGMAP).await {
        Ok(cm) => Ok(Some(cm)),
        Err(err) if is_status(&err, 404) => Ok(None),
        Err(source) => Err(HistoryError::Kube {
            action: "reading",
            name: HISTORY_CONFIGMAP.to_string(),
            source,
        }),
    }
}

/// Saves `data` (and the managed annotation) as a new revision and returns its number.
///
/// Creates the history ConfigMap when it is missing, otherwise replaces it with the
/// resourceVersion that was read; when someone else wrote in between (409), re-reads and tries
/// again, up to [`MAX_WRITE_ATTEMPTS`] times.
pub async fn record(
    api: &Api<ConfigMap>,
    data: &ConfigMapData,
    managed_annotation: Option<&str>,
    reason: &str,
    time: Time,
    keep: usize,
) -> Result<u64, HistoryError> {
    for attempt in 1..=MAX_WRITE_ATTEMPTS {
        let current = get_history(api).await?;
        // A retry after aws-auth's own 409 saves the same previous data again: one revision is
        // enough, and a conflict storm must not push the older revisions out.
        if let Some(newest) = current.as_ref().and_then(|cm| decode_lossy(cm).0.pop())
            && newest.data == *data
            && newest.managed_annotation.as_deref() == managed_annotation
            && newest.reason == reason
        {
            debug!(
                revision = newest.revision,
                "the previous aws-auth is already the newest revision"
            );
            return Ok(newest.revision);
        }
        let exists = current.is_some();
        let (cm, revision) = with_revision(
            current,
            data,
            managed_annotation,
            reason,
            time.clone(),
            keep,
        )?;
        let result = if exists {
            api.replace(HISTORY_CONFIGMAP, &PostParams::default(), &cm)
                .await
        } else {
            api.create(&PostParams::default(), &cm).await
        };
        match result {
            Ok(_) => {
                info!(
                    configmap = HISTORY_CONFIGMAP,
                    revision, reason, attempt, "recorded an aws-auth revision"
                );
                return Ok(revision);
            }
            // 409: Conflict on replace, AlreadyExists on create. Either way: re-read and retry.
            Err(err) if is_status(&err, 409) => {
                debug!(
                    configmap = HISTORY_CONFIGMAP,
                    attempt,
                    error = %describe_kube_error(&err),
                    "history changed since it was read; retrying"
                );
            }
            Err(source) => {
                return Err(HistoryError::Kube {
                    action: if exists { "updating" } else { "creating" },
                    name: HISTORY_CONFIGMAP.to_string(),
                    source,
                });
            }
        }
    }
    Err(HistoryError::TooManyConflicts {
        name: HISTORY_CONFIGMAP.to_string(),
        attempts: MAX_WRITE_ATTEMPTS,
    })
}

/// A minimal in-memory API server for ConfigMaps in kube-system (GET, POST, PUT with
/// resourceVersion preconditions), for the I/O tests of this module and of `cli::history`.
#[cfg(test)]
pub(crate) mod mock {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use http::{Method, Request, Response, StatusCode};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::client::Body;
    use serde_json::{Value, json};

    const PREFIX: &str = "/api/v1/namespaces/kube-system/configmaps";

    type Edit = Box<dyn FnOnce(&mut ConfigMap) + Send>;

    #[derive(Default)]
    pub struct State {
        pub configmaps: BTreeMap<String, ConfigMap>,
        /// Requests as `METHOD name`.
        pub calls: Vec<String>,
        /// Edits applied by "someone else" right before our PUTs of that ConfigMap, one per PUT.
        pub edits_before_put: Vec<(String, Edit)>,
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

        fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
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
                let (code, value) =
                    shared
                        .lock()
                        .unwrap()
                        .handle(&parts.method, parts.uri.path(), &body);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_790_000_000 + second).unwrap())
    }

    fn data(roles: &str) -> ConfigMapData {
        ConfigMapData::from([("mapRoles".to_string(), roles.to_string())])
    }

    const GOOD: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin\"\n  groups:\n    - \"system:masters\"\n";
    const MALFORMED: &str =
        "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n username: broken\n   groups: [\n";

    /// A history with revisions 1..=n, each with `n` as its reason.
    fn history(n: u64, keep: usize) -> ConfigMap {
        let mut cm = None;
        for i in 1..=n {
            let (next, revision) =
                with_revision(cm, &data(GOOD), None, &i.to_string(), at(i as i64), keep).unwrap();
            assert_eq!(revision, i);
            cm = Some(next);
        }
        cm.unwrap()
    }

    fn numbers(cm: &ConfigMap) -> Vec<u64> {
        decode(cm).unwrap().iter().map(|r| r.revision).collect()
    }

    #[test]
    fn keys_are_zero_padded_and_parse_back() {
        assert_eq!(revision_key(42), "revision-0000000042");
        assert_eq!(parse_revision_key("revision-0000000042"), Some(42));
        assert_eq!(parse_revision_key("revision-42"), None);
        assert_eq!(parse_revision_key("revision-00000000042"), None);
        assert_eq!(parse_revision_key("revision-00000000x2"), None);
        assert_eq!(parse_revision_key("other"), None);
        assert_eq!(
            parse_revision_key("revision-12345678901"),
            Some(12_345_678_901)
        );
    }

    #[test]
    fn first_revision_creates_the_configmap() {
        let (cm, revision) = with_revision(
            None,
            &data(GOOD),
            Some("{\"version\":1}"),
            "first",
            at(0),
            10,
        )
        .unwrap();
        assert_eq!(revision, 1);
        assert_eq!(cm.metadata.name.as_deref(), Some(HISTORY_CONFIGMAP));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cm.metadata.resource_version, None);
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str),
            Some("aws-auth-operator")
        );
        let keys: Vec<&String> = cm.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["revision-0000000001"]);
        let revisions = decode(&cm).unwrap();
        assert_eq!(
            revisions,
            vec![Revision {
                revision: 1,
                time: at(0),
                reason: "first".to_string(),
                data: data(GOOD),
                managed_annotation: Some("{\"version\":1}".to_string()),
            }]
        );
    }

    #[test]
    fn numbering_continues_from_the_highest_revision() {
        let cm = history(3, 10);
        assert_eq!(numbers(&cm), [1, 2, 3]);
        // Even after the oldest were trimmed, numbers are never reused.
        let cm = history(15, 4);
        assert_eq!(numbers(&cm), [12, 13, 14, 15]);
        let (_, next) = with_revision(Some(cm), &data(GOOD), None, "x", at(99), 4).unwrap();
        assert_eq!(next, 16);
    }

    #[test]
    fn decode_is_ascending_whatever_the_key_order() {
        let mut cm = history(3, 10);
        // Keys past 10 digits sort before shorter ones as strings; decode sorts by number.
        let big = Revision {
            revision: 12_345_678_901,
            time: at(5),
            reason: "big".to_string(),
            data: ConfigMapData::new(),
            managed_annotation: None,
        };
        cm.data.as_mut().unwrap().insert(
            revision_key(big.revision),
            serde_json::to_string(&big).unwrap(),
        );
        assert_eq!(numbers(&cm), [1, 2, 3, 12_345_678_901]);
        let (_, next) = with_revision(Some(cm), &data(GOOD), None, "x", at(6), 10).unwrap();
        assert_eq!(next, 12_345_678_902);
    }

    #[test]
    fn trims_the_oldest_beyond_keep() {
        let cm = history(12, 10);
        assert_eq!(numbers(&cm), (3..=12).collect::<Vec<_>>());
        let reasons: Vec<String> = decode(&cm).unwrap().into_iter().map(|r| r.reason).collect();
        assert_eq!(reasons.first().map(String::as_str), Some("3"));
        assert_eq!(reasons.last().map(String::as_str), Some("12"));
        // A smaller limit trims the existing history down at the next write.
        let (cm, _) = with_revision(Some(cm), &data(GOOD), None, "x", at(13), 2).unwrap();
        assert_eq!(numbers(&cm), [12, 13]);
        // keep 0 still records the new revision.
        let (cm, _) = with_revision(Some(cm), &data(GOOD), None, "x", at(14), 0).unwrap();
        assert_eq!(numbers(&cm), [14]);
    }

    fn big_data(bytes: usize) -> ConfigMapData {
        data(&"x".repeat(bytes))
    }

    fn total_bytes(cm: &ConfigMap) -> usize {
        crate::awsauth::data_size(cm.data.as_ref().unwrap())
    }

    #[test]
    fn trims_the_oldest_while_over_the_size_limit() {
        let mut cm = None;
        for i in 1..=4 {
            let (next, _) =
                with_revision(cm, &big_data(300 * 1024), None, "big", at(i), 10).unwrap();
            cm = Some(next);
        }
        let cm = cm.unwrap();
        // Three 300 KiB revisions fit under 1 MiB - 16 KiB; four do not.
        assert_eq!(numbers(&cm), [2, 3, 4]);
        assert!(total_bytes(&cm) <= MAX_HISTORY_DATA_BYTES);
        // A large one pushes out as many old ones as it needs to, oldest first.
        let (cm, revision) =
            with_revision(Some(cm), &big_data(700 * 1024), None, "bigger", at(5), 10).unwrap();
        assert_eq!(revision, 5);
        assert_eq!(numbers(&cm), [4, 5]);
        assert!(total_bytes(&cm) <= MAX_HISTORY_DATA_BYTES);
        // A small one after that keeps everything that still fits.
        let (cm, _) = with_revision(Some(cm), &data(GOOD), None, "small", at(6), 10).unwrap();
        assert_eq!(numbers(&cm), [4, 5, 6]);
    }

    #[test]
    fn trimming_by_size_never_keeps_an_older_revision_over_a_newer_one() {
        // 2 is too big to stay next to 4, 1 would fit: the history must stay contiguous.
        let mut cm = history(1, 10);
        for (bytes, i) in [(500 * 1024, 2), (10, 3)] {
            let (next, _) =
                with_revision(Some(cm), &big_data(bytes), None, "x", at(i), 10).unwrap();
            cm = next;
        }
        let (cm, _) = with_revision(Some(cm), &big_data(600 * 1024), None, "x", at(4), 10).unwrap();
        assert_eq!(numbers(&cm), [3, 4]);
    }

    #[test]
    fn a_revision_that_cannot_fit_is_refused() {
        let existing = history(2, 10);
        let err = with_revision(
            Some(existing),
            &big_data(MAX_HISTORY_DATA_BYTES),
            None,
            "huge",
            at(3),
            10,
        )
        .unwrap_err();
        match err {
            HistoryError::RevisionTooLarge {
                revision,
                bytes,
                limit,
            } => {
                assert_eq!(revision, 3);
                assert!(bytes > limit);
                assert_eq!(limit, 1024 * 1024 - 16 * 1024);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Exactly at the limit is fine.
        let overhead = {
            let (cm, _) = with_revision(None, &big_data(0), None, "edge", at(0), 10).unwrap();
            total_bytes(&cm)
        };
        let (cm, _) = with_revision(
            None,
            &big_data(MAX_HISTORY_DATA_BYTES - overhead),
            None,
            "edge",
            at(0),
            10,
        )
        .unwrap();
        assert_eq!(total_bytes(&cm), MAX_HISTORY_DATA_BYTES);
    }

    #[test]
    fn resource_version_and_other_metadata_are_kept() {
        let mut cm = history(2, 10);
        cm.metadata.resource_version = Some("4711".to_string());
        cm.metadata.uid = Some("uid-1".to_string());
        cm.metadata.labels = Some(BTreeMap::from([(
            "team".to_string(),
            "platform".to_string(),
        )]));
        let (next, _) = with_revision(Some(cm), &data(GOOD), None, "x", at(3), 10).unwrap();
        assert_eq!(next.metadata.resource_version.as_deref(), Some("4711"));
        assert_eq!(next.metadata.uid.as_deref(), Some("uid-1"));
        let labels = next.metadata.labels.unwrap();
        assert_eq!(labels.get("team").map(String::as_str), Some("platform"));
        assert_eq!(
            labels.get(MANAGED_BY_LABEL).map(String::as_str),
            Some(MANAGED_BY_VALUE)
        );
    }

    #[test]
    fn decode_names_a_corrupt_key() {
        let mut cm = history(2, 10);
        cm.data
            .as_mut()
            .unwrap()
            .insert(revision_key(7), "{not json".to_string());
        match decode(&cm).unwrap_err() {
            HistoryError::Corrupt { key, .. } => assert_eq!(key, "revision-0000000007"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            decode(&cm)
                .unwrap_err()
                .to_string()
                .contains("revision-0000000007")
        );

        let (readable, errors) = decode_lossy(&cm);
        assert_eq!(readable.len(), 2);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn decode_rejects_foreign_keys_and_mismatched_numbers() {
        let mut cm = history(1, 10);
        cm.data
            .as_mut()
            .unwrap()
            .insert("notes".to_string(), "hello".to_string());
        assert!(matches!(
            decode(&cm).unwrap_err(),
            HistoryError::Corrupt { key, .. } if key == "notes"
        ));

        let mut cm = history(1, 10);
        let value = cm.data.as_ref().unwrap()[&revision_key(1)].clone();
        cm.data.as_mut().unwrap().insert(revision_key(5), value);
        assert!(matches!(
            decode(&cm).unwrap_err(),
            HistoryError::Corrupt { key, reason } if key == revision_key(5) && reason.contains("revision 1")
        ));
    }

    #[test]
    fn decode_of_an_empty_configmap_is_empty() {
        assert_eq!(decode(&ConfigMap::default()).unwrap(), Vec::new());
    }

    #[test]
    fn recording_drops_corrupt_entries_but_not_their_numbers() {
        let mut cm = history(2, 10);
        let entries = cm.data.as_mut().unwrap();
        entries.insert(revision_key(9), "{not json".to_string());
        entries.insert("notes".to_string(), "hello".to_string());
        let (cm, revision) = with_revision(Some(cm), &data(GOOD), None, "x", at(3), 10).unwrap();
        assert_eq!(revision, 10);
        assert_eq!(numbers(&cm), [1, 2, 10]);
    }

    #[test]
    fn managed_annotation_defaults_to_none() {
        let json = r#"{"revision":3,"time":"2026-01-02T03:04:05Z","reason":"r","data":{}}"#;
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(revision_key(3), json.to_string())])),
            ..ConfigMap::default()
        };
        let revisions = decode(&cm).unwrap();
        assert_eq!(revisions[0].managed_annotation, None);
        assert_eq!(revisions[0].time.0.to_string(), "2026-01-02T03:04:05Z");
    }

    fn revision(number: u64, roles: &str) -> Revision {
        Revision {
            revision: number,
            time: at(number as i64),
            reason: String::new(),
            data: data(roles),
            managed_annotation: None,
        }
    }

    #[test]
    fn last_good_skips_malformed_revisions() {
        assert!(!parse_data(&data(MALFORMED)).malformed.is_empty());
        let revisions = vec![
            revision(1, GOOD),
            revision(2, GOOD),
            revision(3, MALFORMED),
            revision(4, MALFORMED),
        ];
        assert_eq!(last_good(&revisions).map(|r| r.revision), Some(2));
        assert_eq!(last_good(&revisions[..2]).map(|r| r.revision), Some(2));
        assert_eq!(last_good(&revisions[2..]), None);
        assert_eq!(last_good(&[]), None);
        // An empty aws-auth is readable.
        assert_eq!(
            last_good(&[Revision {
                data: ConfigMapData::new(),
                ..revision(5, GOOD)
            }])
            .map(|r| r.revision),
            Some(5)
        );
    }

    #[test]
    fn find_by_number() {
        let revisions = vec![revision(3, GOOD), revision(4, MALFORMED)];
        assert_eq!(find(&revisions, 4).map(|r| r.revision), Some(4));
        assert_eq!(find(&revisions, 5), None);
    }

    fn api(client: kube::Client) -> Api<ConfigMap> {
        Api::namespaced(client, "kube-system")
    }

    #[tokio::test]
    async fn load_of_a_missing_history_is_empty() {
        let (client, _) = mock::start();
        let (cm, revisions) = load(&api(client)).await.unwrap();
        assert!(cm.is_none());
        assert!(revisions.is_empty());
    }

    #[tokio::test]
    async fn record_creates_then_replaces() {
        let (client, state) = mock::start();
        let api = api(client);
        let first = record(&api, &data(GOOD), Some("a"), "one", at(1), 10)
            .await
            .unwrap();
        let second = record(&api, &data(MALFORMED), None, "two", at(2), 10)
            .await
            .unwrap();
        assert_eq!((first, second), (1, 2));
        assert_eq!(
            state.lock().unwrap().calls,
            [
                "GET aws-auth-operator-history",
                "POST aws-auth-operator-history",
                "GET aws-auth-operator-history",
                "PUT aws-auth-operator-history",
            ]
        );
        let (cm, revisions) = load(&api).await.unwrap();
        assert!(cm.is_some());
        assert_eq!(revisions.len(), 2);
        assert_eq!(revisions[0].managed_annotation.as_deref(), Some("a"));
        assert_eq!(last_good(&revisions).map(|r| r.revision), Some(1));
    }

    #[tokio::test]
    async fn record_retries_on_conflict_without_losing_the_other_write() {
        let (client, state) = mock::start();
        let api = api(client);
        record(&api, &data(GOOD), None, "one", at(1), 10)
            .await
            .unwrap();
        // Another replica records a revision between our read and our write.
        state.lock().unwrap().edits_before_put.push((
            HISTORY_CONFIGMAP.to_string(),
            Box::new(|cm: &mut ConfigMap| {
                let (next, _) =
                    with_revision(Some(cm.clone()), &data(GOOD), None, "other", at(2), 10).unwrap();
                *cm = next;
            }),
        ));
        let revision = record(&api, &data(GOOD), None, "mine", at(3), 10)
            .await
            .unwrap();
        assert_eq!(revision, 3);
        let (_, revisions) = load(&api).await.unwrap();
        let reasons: Vec<&str> = revisions.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["one", "other", "mine"]);
    }

    #[tokio::test]
    async fn recording_the_same_state_twice_keeps_one_revision() {
        let (client, state) = mock::start();
        let api = api(client);
        let first = record(&api, &data(GOOD), Some("a"), "write", at(1), 10)
            .await
            .unwrap();
        // What a reconcile retrying after aws-auth's 409 does: the same previous data again.
        let again = record(&api, &data(GOOD), Some("a"), "write", at(2), 10)
            .await
            .unwrap();
        assert_eq!((first, again), (1, 1));
        // A different state, or the same state for another reason, is a new revision.
        let other = record(&api, &data(GOOD), Some("b"), "write", at(3), 10)
            .await
            .unwrap();
        let rollback = record(&api, &data(GOOD), Some("b"), "rollback", at(4), 10)
            .await
            .unwrap();
        assert_eq!((other, rollback), (2, 3));
        let puts = state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| !c.starts_with("GET"))
            .count();
        assert_eq!(puts, 3, "the repeated state is not written");
    }

    #[tokio::test]
    async fn record_gives_up_after_repeated_conflicts() {
        let (client, state) = mock::start();
        let api = api(client);
        record(&api, &data(GOOD), None, "one", at(1), 10)
            .await
            .unwrap();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            state.lock().unwrap().edits_before_put.push((
                HISTORY_CONFIGMAP.to_string(),
                Box::new(|cm: &mut ConfigMap| {
                    cm.metadata.labels = Some(BTreeMap::new());
                }),
            ));
        }
        let err = record(&api, &data(GOOD), None, "mine", at(3), 10)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            HistoryError::TooManyConflicts { attempts, .. } if attempts == MAX_WRITE_ATTEMPTS
        ));
    }

    #[tokio::test]
    async fn api_errors_name_the_object() {
        let (client, state) = mock::start();
        state
            .lock()
            .unwrap()
            .fail
            .insert(HISTORY_CONFIGMAP.to_string(), 500);
        let err = load(&api(client)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading kube-system/aws-auth-operator-history: injected failure (InternalError, HTTP 500)"
        );
    }

    #[test]
    fn errors_read_well() {
        let err = HistoryError::RevisionNotFound {
            revision: 9,
            available: vec![3, 4],
        };
        assert_eq!(
            err.to_string(),
            "revision 9 is not in kube-system/aws-auth-operator-history (available: 3, 4)"
        );
    }
}
