//! Revisions of aws-auth kept in the `kube-system/aws-auth-operator-history` ConfigMap.
//!
//! The history is the sequence of distinct states aws-auth had, as the operator saw them: every
//! state it wrote, and every state another writer (a person, eksctl, EKS) left that the operator
//! read. A burst of the operator's own writes (a GitOps sync creating or deleting mappings one by
//! one) is coalesced into its last state, so the state before the burst is never pushed out by
//! it. `aws-auth-operator rollback` restores a revision; recovery of a malformed key (or a deleted
//! aws-auth) restores unmanaged entries from the newest revision that parses cleanly.
//!
//! Each revision is one `binaryData` key, `revision-<10-digit zero-padded number>`, holding the
//! [`Revision`] as gzip-compressed JSON (aws-auth compresses about tenfold, so the requested
//! number of revisions fits even for a large aws-auth). Revisions written by older versions as
//! plain JSON under `data` are still read, and re-encoded at the next write. The newest
//! `keep` revisions are kept, and fewer when they would not fit in a ConfigMap (then the
//! `awsauth.dev/history` annotation and the log say how many).
//!
//! Everything here is pure ([`decode`], [`with_state`], [`with_settings`], [`last_good`],
//! [`recovery_source`], [`find`]); `store::writer` moves the ConfigMap to and from the API
//! server, with compare-and-swap writes.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, warn};

use super::describe_kube_error;
use crate::accessentries::AccessEntriesMode;
use crate::awsauth::{
    CONFIGMAP_NAMESPACE, ConfigMapData, MAX_CONFIGMAP_DATA_BYTES, Section, data_size, parse_data,
};
use crate::plan::{DriftPolicy, ManagedSet, RecoverySource, Settings, SettingsError};

pub const HISTORY_CONFIGMAP: &str = "aws-auth-operator-history";
pub const DEFAULT_HISTORY_LIMIT: usize = 10;
/// Room left for metadata (labels, annotations, managedFields) under the 1 MiB object limit.
pub const SIZE_MARGIN_BYTES: usize = 16 * 1024;
/// The most the data of the history ConfigMap may hold.
pub const MAX_HISTORY_DATA_BYTES: usize = MAX_CONFIGMAP_DATA_BYTES - SIZE_MARGIN_BYTES;
/// The operator's own writes less than this far apart are one burst: each replaces the
/// revision of the previous one.
pub const COALESCE_SECONDS: i64 = 60;
/// Annotation on the history ConfigMap: how many revisions are kept, of how many requested.
pub const HISTORY_ANNOTATION: &str = "awsauth.dev/history";

/// Annotation on the history ConfigMap: the settings of the operator that reconciles aws-auth
/// (JSON, [`RecordedSettings`]), written by the operator when they differ. `rollback` plans
/// with them, so that its preview is what the running operator keeps.
pub const SETTINGS_ANNOTATION: &str = "awsauth.dev/operator-settings";

pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "aws-auth-operator";

const KEY_PREFIX: &str = "revision-";

/// Who left a recorded state in aws-auth.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written by the operator's reconcile (revisions of older versions, which saved the state
    /// before each write, read as this too).
    #[default]
    Operator,
    /// Left by another writer and read by the operator.
    Observed,
    /// Written by `aws-auth-operator rollback`.
    Rollback,
}

/// One saved state of aws-auth.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Revision {
    pub revision: u64,
    /// When it was saved (whole seconds, as Kubernetes timestamps are).
    pub time: Time,
    /// What happened, e.g. `aws-auth-operator rewrote mapRoles`.
    pub reason: String,
    /// The aws-auth data at that time.
    pub data: ConfigMapData,
    /// The managed-principals annotation at that time, if aws-auth had one.
    #[serde(default)]
    pub managed_annotation: Option<String>,
    #[serde(default)]
    pub origin: Origin,
}

impl Revision {
    /// Whether it records exactly this state of aws-auth.
    pub fn is_state(&self, state: &State) -> bool {
        self.data == *state.data && self.managed_annotation.as_deref() == state.managed_annotation
    }

    /// The managed set recorded with it (empty when it has none or it is unreadable).
    pub fn managed(&self) -> ManagedSet {
        self.managed_annotation
            .as_deref()
            .and_then(|text| ManagedSet::decode(text).ok())
            .unwrap_or_default()
    }
}

/// A state of aws-auth: its data and managed annotation.
#[derive(Clone, Copy, Debug)]
pub struct State<'a> {
    pub data: &'a ConfigMapData,
    pub managed_annotation: Option<&'a str>,
}

#[derive(Debug, Error)]
pub enum HistoryError {
    #[error("{HISTORY_CONFIGMAP}: key `{key}` is not a readable revision: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(
        "revision {revision} would take {bytes} bytes compressed, more than the {limit} bytes a history ConfigMap can hold; it was not recorded"
    )]
    RevisionTooLarge {
        revision: u64,
        bytes: usize,
        limit: usize,
    },
    #[error("serialising revision {revision}: {source}")]
    Serialize {
        revision: u64,
        source: std::io::Error,
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

/// A revision as stored: gzip-compressed JSON.
pub fn compress(revision: &Revision) -> Result<Vec<u8>, HistoryError> {
    let serialize = |source| HistoryError::Serialize {
        revision: revision.revision,
        source,
    };
    let json = serde_json::to_vec(revision).map_err(|e| serialize(e.into()))?;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&json).map_err(serialize)?;
    encoder.finish().map_err(serialize)
}

fn decode_value(key: &str, json: &[u8]) -> Result<Revision, HistoryError> {
    let corrupt = |reason: String| HistoryError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let number = parse_revision_key(key).ok_or_else(|| {
        corrupt(format!(
            "not a revision key (expected {KEY_PREFIX} and 10 digits)"
        ))
    })?;
    let revision: Revision = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    if revision.revision != number {
        return Err(corrupt(format!(
            "its value says revision {}",
            revision.revision
        )));
    }
    Ok(revision)
}

fn decode_compressed(key: &str, bytes: &[u8]) -> Result<Revision, HistoryError> {
    let mut json = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|e| HistoryError::Corrupt {
            key: key.to_string(),
            reason: format!("not gzip-compressed JSON: {e}"),
        })?;
    decode_value(key, &json)
}

/// Every stored revision (compressed under binaryData, or plain JSON under data from older
/// versions), decoded or with its error.
fn decode_all(cm: &ConfigMap) -> Vec<Result<Revision, HistoryError>> {
    let plain = cm
        .data
        .iter()
        .flatten()
        .map(|(key, value)| decode_value(key, value.as_bytes()));
    let compressed = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(key, value)| decode_compressed(key, &value.0));
    plain.chain(compressed).collect()
}

/// Every revision in the history ConfigMap, oldest first. Any key that is not a readable
/// revision is an error naming that key.
pub fn decode(cm: &ConfigMap) -> Result<Vec<Revision>, HistoryError> {
    let mut revisions = decode_all(cm).into_iter().collect::<Result<Vec<_>, _>>()?;
    revisions.sort_by_key(|r| r.revision);
    Ok(revisions)
}

/// Like [`decode`], but keeps going past unreadable keys: the readable revisions (oldest first)
/// and an error for each key that is not.
pub fn decode_lossy(cm: &ConfigMap) -> (Vec<Revision>, Vec<HistoryError>) {
    let mut revisions = Vec::new();
    let mut errors = Vec::new();
    for result in decode_all(cm) {
        match result {
            Ok(revision) => revisions.push(revision),
            Err(err) => errors.push(err),
        }
    }
    revisions.sort_by_key(|r| r.revision);
    (revisions, errors)
}

/// An empty history ConfigMap, to create.
pub fn new_history_configmap() -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(HISTORY_CONFIGMAP.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

/// What recording a state did.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// The revision that holds the state.
    pub revision: u64,
    /// The state was already the newest revision: nothing to write.
    pub unchanged: bool,
    /// The previous revision, the operator's own write of the same burst, was replaced.
    pub coalesced: bool,
    /// Revisions kept after this one was added, and how many were asked for.
    pub kept: usize,
    pub requested: usize,
    /// Fewer than `requested` are kept because no more fit in the ConfigMap.
    pub limited_by_size: bool,
}

/// The history ConfigMap with `state` recorded, and what that did.
///
/// Nothing changes when the newest revision already holds `state`. A write of the operator's
/// own (`Origin::Operator`) less than [`COALESCE_SECONDS`] after the newest revision, also its
/// own, replaces it. The new revision is numbered one more than the highest revision key
/// present. The newest revisions are kept: at most `keep` (at least 1, the new one), and only
/// as many as fit in [`MAX_HISTORY_DATA_BYTES`]; one that does not fit on its own is an error.
/// Keys that are not readable revisions are dropped. Everything else of `cm` is kept, its
/// resourceVersion in particular, so that writing the result is a compare-and-swap.
pub fn with_state(
    cm: Option<ConfigMap>,
    state: State,
    origin: Origin,
    reason: &str,
    time: Time,
    keep: usize,
) -> Result<(ConfigMap, Recorded), HistoryError> {
    let keep = keep.max(1);
    let mut cm = cm.unwrap_or_else(new_history_configmap);
    let mut highest = 0;
    for key in cm
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(cm.binary_data.iter().flatten().map(|(k, _)| k))
    {
        if let Some(number) = parse_revision_key(key) {
            highest = highest.max(number);
        }
    }
    let (mut revisions, errors) = decode_lossy(&cm);
    for err in &errors {
        warn!(error = %err, "dropping an unreadable history entry");
    }
    if let Some(newest) = revisions.last()
        && newest.is_state(&state)
    {
        let recorded = Recorded {
            revision: newest.revision,
            unchanged: true,
            coalesced: false,
            kept: revisions.len(),
            requested: keep,
            limited_by_size: false,
        };
        return Ok((cm, recorded));
    }
    let coalesced = origin == Origin::Operator
        && revisions.last().is_some_and(|newest| {
            newest.origin == Origin::Operator
                && time.0.as_second() - newest.time.0.as_second() < COALESCE_SECONDS
                // Never coalesce away the only revision.
                && revisions.len() > 1
        });
    if coalesced {
        revisions.pop();
    }

    let revision = highest.saturating_add(1);
    let new = Revision {
        revision,
        time,
        reason: reason.to_string(),
        data: state.data.clone(),
        managed_annotation: state.managed_annotation.map(str::to_string),
        origin,
    };
    let key = revision_key(revision);
    let value = compress(&new)?;
    let mut total = key.len() + value.len();
    if total > MAX_HISTORY_DATA_BYTES {
        return Err(HistoryError::RevisionTooLarge {
            revision,
            bytes: total,
            limit: MAX_HISTORY_DATA_BYTES,
        });
    }
    let mut kept = BTreeMap::from([(key, ByteString(value))]);
    let mut limited_by_size = false;
    for older in revisions.iter().rev() {
        if kept.len() >= keep {
            break;
        }
        let key = revision_key(older.revision);
        let value = compress(older)?;
        let size = key.len() + value.len();
        if total + size > MAX_HISTORY_DATA_BYTES {
            // This one and everything older goes: the kept revisions are always the newest.
            limited_by_size = true;
            break;
        }
        total += size;
        kept.insert(key, ByteString(value));
    }
    let recorded = Recorded {
        revision,
        unchanged: false,
        coalesced,
        kept: kept.len(),
        requested: keep,
        limited_by_size,
    };
    debug!(
        revision,
        kept = kept.len(),
        bytes = total,
        "history revisions"
    );
    cm.data = None;
    cm.binary_data = Some(kept);
    cm.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    let summary = if limited_by_size {
        format!(
            "{} of {keep} requested revisions kept: no more fit in the ConfigMap's {MAX_HISTORY_DATA_BYTES} bytes",
            recorded.kept
        )
    } else {
        format!("up to {keep} revisions kept")
    };
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(HISTORY_ANNOTATION.to_string(), summary);
    Ok((cm, recorded))
}

/// The newest revision whose every section the authenticator can read (nothing `malformed`).
pub fn last_good(revisions: &[Revision]) -> Option<&Revision> {
    revisions
        .iter()
        .filter(|r| parse_data(&r.data).malformed.is_empty())
        .max_by_key(|r| r.revision)
}

/// What to restore unmanaged entries from: the newest good revision, with every principal the
/// operator managed in it or any newer revision (those never come back as unmanaged).
pub fn recovery_source(revisions: &[Revision]) -> Option<RecoverySource> {
    let good = last_good(revisions)?;
    let ever_managed = revisions
        .iter()
        .filter(|r| r.revision >= good.revision)
        .fold(ManagedSet::default(), |all, r| all.union(&r.managed()));
    Some(RecoverySource {
        revision: good.revision,
        data: good.data.clone(),
        managed: good.managed(),
        ever_managed,
    })
}

pub fn find(revisions: &[Revision], revision: u64) -> Option<&Revision> {
    revisions.iter().find(|r| r.revision == revision)
}

/// One line of `history`: a revision summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionSummary {
    pub revision: u64,
    pub time: Time,
    pub reason: String,
    pub map_roles: usize,
    pub map_users: usize,
    pub map_accounts: usize,
    /// Sections the authenticator could not read at all in this revision.
    pub malformed: Vec<Section>,
    /// Size of the saved aws-auth data (keys + values).
    pub bytes: usize,
    pub has_managed_annotation: bool,
}

impl RevisionSummary {
    pub fn of(revision: &Revision) -> RevisionSummary {
        let parsed = parse_data(&revision.data);
        RevisionSummary {
            revision: revision.revision,
            time: revision.time.clone(),
            reason: revision.reason.clone(),
            map_roles: parsed.entries.roles.len(),
            map_users: parsed.entries.users.len(),
            map_accounts: parsed.entries.accounts.len(),
            malformed: parsed.malformed.into_iter().collect(),
            bytes: data_size(&revision.data),
            has_managed_annotation: revision.managed_annotation.is_some(),
        }
    }
}

/// The operator's settings that shape what it keeps in aws-auth, as recorded on the history
/// ConfigMap ([`SETTINGS_ANNOTATION`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RecordedSettings {
    /// `--access-entries`: in `only` mode a mapping whose access entry is confirmed has no
    /// aws-auth entry.
    pub access_entries: AccessEntriesMode,
    /// `--protected-arn`, as the principal keys the plan compares (role ARNs path-stripped,
    /// lowercased).
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    #[serde(default)]
    pub denied_groups: Vec<String>,
    #[serde(default)]
    pub enforce_group_policy: bool,
    #[serde(default)]
    pub drift: DriftPolicy,
    #[serde(default = "default_true")]
    pub recover_malformed: bool,
}

fn default_true() -> bool {
    true
}

impl RecordedSettings {
    pub fn of(settings: &Settings, access_entries: AccessEntriesMode) -> RecordedSettings {
        RecordedSettings {
            access_entries,
            protected: settings
                .protected
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            allowed_groups: settings
                .allowed_groups
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
            denied_groups: settings
                .denied_groups
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
            enforce_group_policy: settings.enforce_group_policy,
            drift: settings.drift,
            recover_malformed: settings.recover_malformed,
        }
    }

    /// The plan's settings again.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        let mut settings =
            Settings::default().with_group_policy(&self.allowed_groups, &self.denied_groups)?;
        for key in &self.protected {
            settings.protect(key)?;
        }
        settings.enforce_group_policy = self.enforce_group_policy;
        settings.drift = self.drift;
        settings.recover_malformed = self.recover_malformed;
        Ok(settings)
    }

    /// As the operator's flags, for a person.
    pub fn describe(&self) -> String {
        let mut flags = vec![format!("--access-entries={}", self.access_entries.as_str())];
        flags.extend(
            self.protected
                .iter()
                .map(|p| format!("--protected-arn={p}")),
        );
        flags.extend(
            self.allowed_groups
                .iter()
                .map(|g| format!("--allowed-groups={g}")),
        );
        flags.extend(
            self.denied_groups
                .iter()
                .map(|g| format!("--denied-groups={g}")),
        );
        if self.enforce_group_policy {
            flags.push("--enforce-group-policy".to_string());
        }
        flags.push(format!(
            "--drift={}",
            match self.drift {
                DriftPolicy::Repair => "repair",
                DriftPolicy::Report => "report",
            }
        ));
        flags.join(" ")
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The settings recorded on the history ConfigMap: None when there are none (an operator older
/// than this annotation, or none ran yet), an error when they cannot be read.
pub fn recorded_settings(history: &ConfigMap) -> Option<Result<RecordedSettings, String>> {
    let text = history
        .metadata
        .annotations
        .as_ref()?
        .get(SETTINGS_ANNOTATION)?;
    Some(
        serde_json::from_str(text)
            .map_err(|e| format!("the {SETTINGS_ANNOTATION} annotation is not readable: {e}")),
    )
}

/// The history ConfigMap carrying `settings` (created when `cm` is None), or None when it
/// already does. Everything else of `cm` is kept, its resourceVersion in particular.
pub fn with_settings(cm: Option<ConfigMap>, settings: &RecordedSettings) -> Option<ConfigMap> {
    let text = settings.encode();
    let mut cm = cm.unwrap_or_else(new_history_configmap);
    let annotations = cm.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if annotations.get(SETTINGS_ANNOTATION) == Some(&text) {
        return None;
    }
    annotations.insert(SETTINGS_ANNOTATION.to_string(), text);
    cm.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string());
    Some(cm)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::arn::PrincipalKey;
    use k8s_openapi::jiff::Timestamp;

    pub(crate) fn at(second: i64) -> Time {
        Time(Timestamp::from_second(1_790_000_000 + second).unwrap())
    }

    pub(crate) fn data(roles: &str) -> ConfigMapData {
        ConfigMapData::from([("mapRoles".to_string(), roles.to_string())])
    }

    fn role(i: usize) -> String {
        format!(
            "- rolearn: \"arn:aws:iam::111122223333:role/role-{i}\"\n  username: \"user-{i}\"\n  groups:\n    - \"view\"\n"
        )
    }

    const GOOD: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin\"\n  groups:\n    - \"system:masters\"\n";
    pub(crate) const MALFORMED: &str =
        "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n username: broken\n   groups: [\n";

    pub(crate) fn state(data: &ConfigMapData) -> State<'_> {
        State {
            data,
            managed_annotation: None,
        }
    }

    /// A history of `n` distinct states, observed an hour apart (nothing coalesces).
    fn history(n: u64, keep: usize) -> ConfigMap {
        let mut cm = None;
        for i in 1..=n {
            let d = data(&role(i as usize));
            let (next, recorded) = with_state(
                cm,
                state(&d),
                Origin::Observed,
                &i.to_string(),
                at(i as i64 * 3600),
                keep,
            )
            .unwrap();
            assert_eq!(recorded.revision, i);
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
    fn first_revision_creates_the_configmap_compressed() {
        let d = data(GOOD);
        let (cm, recorded) = with_state(
            None,
            State {
                data: &d,
                managed_annotation: Some("{\"version\":2}"),
            },
            Origin::Operator,
            "first",
            at(0),
            10,
        )
        .unwrap();
        assert_eq!(recorded.revision, 1);
        assert!(!recorded.unchanged && !recorded.coalesced);
        assert_eq!(cm.metadata.name.as_deref(), Some(HISTORY_CONFIGMAP));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            cm.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .map(String::as_str),
            Some("aws-auth-operator")
        );
        assert!(cm.data.is_none());
        let keys: Vec<&String> = cm.binary_data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["revision-0000000001"]);
        assert_eq!(
            decode(&cm).unwrap(),
            vec![Revision {
                revision: 1,
                time: at(0),
                reason: "first".to_string(),
                data: d,
                managed_annotation: Some("{\"version\":2}".to_string()),
                origin: Origin::Operator,
            }]
        );
    }

    #[test]
    fn the_same_state_twice_is_one_revision() {
        let cm = history(2, 10);
        let d = data(&role(2));
        let (again, recorded) = with_state(
            Some(cm.clone()),
            state(&d),
            Origin::Observed,
            "x",
            at(99_999),
            10,
        )
        .unwrap();
        assert!(recorded.unchanged);
        assert_eq!(recorded.revision, 2);
        assert_eq!(again, cm, "nothing to write");
        // The same data with another annotation is another state.
        let (_, recorded) = with_state(
            Some(cm),
            State {
                data: &d,
                managed_annotation: Some("{}"),
            },
            Origin::Observed,
            "x",
            at(99_999),
            10,
        )
        .unwrap();
        assert_eq!(recorded.revision, 3);
    }

    /// A burst of the operator's own writes leaves one revision (its last state), and the state
    /// before the burst is kept; a foreign edit in between is never coalesced away.
    #[test]
    fn a_burst_of_own_writes_is_coalesced() {
        let before = data("before");
        let (mut cm, _) = with_state(
            None,
            state(&before),
            Origin::Observed,
            "observed",
            at(0),
            10,
        )
        .unwrap();
        for i in 1..=300 {
            let d = data(&role(i));
            let (next, recorded) = with_state(
                Some(cm),
                state(&d),
                Origin::Operator,
                "write",
                at(100 + i as i64),
                10,
            )
            .unwrap();
            assert_eq!(recorded.coalesced, i > 1, "write {i}");
            cm = next;
        }
        let revisions = decode(&cm).unwrap();
        assert_eq!(revisions.len(), 2);
        assert_eq!(revisions[0].data, before);
        assert_eq!(revisions[1].data, data(&role(300)));
        assert_eq!(revisions[1].revision, 301, "numbers are never reused");
        // A foreign edit, then the operator again: three states.
        let foreign = data("foreign");
        let (cm, _) = with_state(
            Some(cm),
            state(&foreign),
            Origin::Observed,
            "edit",
            at(500),
            10,
        )
        .unwrap();
        let (cm, recorded) = with_state(
            Some(cm),
            state(&before),
            Origin::Operator,
            "write",
            at(501),
            10,
        )
        .unwrap();
        assert!(!recorded.coalesced);
        assert_eq!(decode(&cm).unwrap().len(), 4);
        // After a quiet minute, the operator's next write is a revision of its own.
        let (cm, recorded) = with_state(
            Some(cm),
            state(&foreign),
            Origin::Operator,
            "write",
            at(501 + COALESCE_SECONDS),
            10,
        )
        .unwrap();
        assert!(!recorded.coalesced);
        assert_eq!(decode(&cm).unwrap().len(), 5);
    }

    #[test]
    fn trims_the_oldest_beyond_keep() {
        let cm = history(12, 10);
        assert_eq!(numbers(&cm), (3..=12).collect::<Vec<_>>());
        // A smaller limit trims the existing history down at the next write.
        let d = data("x");
        let (cm, recorded) =
            with_state(Some(cm), state(&d), Origin::Observed, "x", at(99_999), 2).unwrap();
        assert_eq!(numbers(&cm), [12, 13]);
        assert_eq!((recorded.kept, recorded.requested), (2, 2));
        assert!(!recorded.limited_by_size);
    }

    /// Random text does not compress: a few large revisions fill the ConfigMap, and the
    /// annotation and the result say how many of the requested revisions were kept.
    #[test]
    fn trims_by_size_and_says_so() {
        let noise = |seed: u64, bytes: usize| {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            (0..bytes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'!' + (x % 90) as u8)
                })
                .collect::<String>()
        };
        let mut cm = None;
        let mut last = None;
        for i in 1..=4 {
            let d = data(&noise(i, 350 * 1024));
            let (next, recorded) = with_state(
                cm,
                state(&d),
                Origin::Observed,
                "big",
                at(i as i64 * 3600),
                10,
            )
            .unwrap();
            cm = Some(next);
            last = Some(recorded);
        }
        let cm = cm.unwrap();
        let recorded = last.unwrap();
        assert_eq!(numbers(&cm), [2, 3, 4]);
        assert!(recorded.limited_by_size);
        assert_eq!((recorded.kept, recorded.requested), (3, 10));
        let note = &cm.metadata.annotations.as_ref().unwrap()[HISTORY_ANNOTATION];
        assert!(
            note.starts_with("3 of 10 requested revisions kept"),
            "{note}"
        );
        // A revision that cannot fit at all is refused.
        let d = data(&noise(9, MAX_HISTORY_DATA_BYTES * 2));
        let Err(err) = with_state(Some(cm), state(&d), Origin::Observed, "huge", at(0), 10) else {
            panic!("a revision larger than a ConfigMap was accepted");
        };
        assert!(
            matches!(err, HistoryError::RevisionTooLarge { revision: 5, .. }),
            "{err}"
        );
    }

    /// aws-auth compresses well: ten revisions of a 600 KB aws-auth fit in one ConfigMap.
    #[test]
    fn ten_revisions_of_a_large_aws_auth_fit() {
        let mut cm = None;
        for i in 0..10 {
            let roles: String = (0..5_000).map(|r| role(r + i * 13)).collect();
            assert!(roles.len() > 500_000);
            let d = data(&roles);
            let (next, recorded) = with_state(
                cm,
                state(&d),
                Origin::Observed,
                "large",
                at(i as i64 * 3600),
                10,
            )
            .unwrap();
            assert!(!recorded.limited_by_size, "revision {}", i + 1);
            cm = Some(next);
        }
        assert_eq!(decode(&cm.unwrap()).unwrap().len(), 10);
    }

    #[test]
    fn revisions_of_older_versions_are_read_and_re_encoded() {
        let json = r#"{"revision":3,"time":"2026-01-02T03:04:05Z","reason":"before aws-auth-operator rewrote mapRoles","data":{"mapRoles":"x"}}"#;
        let cm = ConfigMap {
            data: Some(BTreeMap::from([(revision_key(3), json.to_string())])),
            ..new_history_configmap()
        };
        let revisions = decode(&cm).unwrap();
        assert_eq!(revisions[0].managed_annotation, None);
        assert_eq!(revisions[0].origin, Origin::Operator);
        assert_eq!(revisions[0].time.0.to_string(), "2026-01-02T03:04:05Z");
        let d = data("new");
        let (cm, recorded) =
            with_state(Some(cm), state(&d), Origin::Observed, "x", at(0), 10).unwrap();
        assert_eq!(recorded.revision, 4);
        assert!(cm.data.is_none(), "old plain entries move to binaryData");
        assert_eq!(numbers(&cm), [3, 4]);
    }

    #[test]
    fn unreadable_keys_are_named_and_dropped_at_the_next_write() {
        let mut cm = history(2, 10);
        cm.binary_data
            .as_mut()
            .unwrap()
            .insert(revision_key(9), ByteString(b"not gzip".to_vec()));
        cm.data = Some(BTreeMap::from([("notes".to_string(), "hello".to_string())]));
        let err = decode(&cm).unwrap_err().to_string();
        assert!(
            err.contains("notes") || err.contains("revision-0000000009"),
            "{err}"
        );
        let (readable, errors) = decode_lossy(&cm);
        assert_eq!((readable.len(), errors.len()), (2, 2));
        let d = data("x");
        let (cm, recorded) =
            with_state(Some(cm), state(&d), Origin::Observed, "x", at(0), 10).unwrap();
        // Numbering continues past the unreadable key's number.
        assert_eq!(recorded.revision, 10);
        assert_eq!(numbers(&cm), [1, 2, 10]);
    }

    fn revision(number: u64, roles: &str, managed: &[&str]) -> Revision {
        let set = ManagedSet::new(
            managed
                .iter()
                .map(|n| PrincipalKey::role(&format!("arn:aws:iam::111122223333:role/{n}"))),
        );
        Revision {
            revision: number,
            time: at(number as i64),
            reason: String::new(),
            data: data(roles),
            managed_annotation: Some(set.encode()),
            origin: Origin::Operator,
        }
    }

    #[test]
    fn last_good_skips_malformed_revisions() {
        assert!(!parse_data(&data(MALFORMED)).malformed.is_empty());
        let revisions = vec![
            revision(1, GOOD, &[]),
            revision(2, GOOD, &[]),
            revision(3, MALFORMED, &[]),
            revision(4, MALFORMED, &[]),
        ];
        assert_eq!(last_good(&revisions).map(|r| r.revision), Some(2));
        assert_eq!(last_good(&revisions[2..]), None);
        assert_eq!(last_good(&[]), None);
    }

    /// A principal managed in the good revision or any later one is in `ever_managed`: recovery
    /// never brings it back as an unmanaged entry.
    #[test]
    fn the_recovery_source_knows_every_principal_managed_since() {
        let revisions = vec![
            revision(1, GOOD, &["old"]),
            revision(2, GOOD, &["contractor"]),
            revision(3, MALFORMED, &["admin"]),
        ];
        let source = recovery_source(&revisions).unwrap();
        assert_eq!(source.revision, 2);
        let key = |n: &str| PrincipalKey::role(&format!("arn:aws:iam::111122223333:role/{n}"));
        assert!(source.managed.contains(&key("contractor")));
        assert!(source.ever_managed.contains(&key("contractor")));
        assert!(source.ever_managed.contains(&key("admin")));
        assert!(
            !source.ever_managed.contains(&key("old")),
            "older than the source"
        );
        assert_eq!(recovery_source(&revisions[2..]), None);
    }

    #[test]
    fn find_by_number() {
        let revisions = vec![revision(3, GOOD, &[]), revision(4, MALFORMED, &[])];
        assert_eq!(find(&revisions, 4).map(|r| r.revision), Some(4));
        assert_eq!(find(&revisions, 5), None);
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
