//! One reconcile of the single key, kube-system/aws-auth: read, `plan()`, write (compare-and-swap),
//! patch the statuses that changed, publish events. Decides nothing `plan()` could decide.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde_json::Value;
use thiserror::Error;
use tracing::{debug, info, warn};

use super::history;
use crate::api::{IamIdentityMapping, IamIdentityMappingStatus};
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, parse_data};
use crate::plan::{
    Blocked, LiveAwsAuth, MANAGED_ANNOTATION, ManagedSet, MappingInput, Note, Outcome, Plan,
    Settings, plan,
};
use crate::status::status_for;

/// Field manager for every write.
pub const FIELD_MANAGER: &str = "aws-auth-operator";
/// Re-read and re-plan at most this often when aws-auth changes under a write.
const MAX_ATTEMPTS: usize = 5;
/// Status patches in flight at once (a burst of new mappings must not be patched one by one).
const STATUS_CONCURRENCY: usize = 32;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reading aws-auth: {0}")]
    Read(#[source] kube::Error),
    #[error("writing aws-auth: {0}")]
    Write(#[source] kube::Error),
    #[error("aws-auth changed under {MAX_ATTEMPTS} consecutive writes; will retry")]
    TooManyConflicts,
    #[error("history: {0}")]
    History(#[from] history::HistoryError),
    #[error("patching status of {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl ReconcileError {
    /// Short reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReconcileError::Read(_) => "ReadFailed",
            ReconcileError::Write(_) => "WriteFailed",
            ReconcileError::TooManyConflicts => "TooManyConflicts",
            ReconcileError::History(_) => "HistoryFailed",
            ReconcileError::Status { .. } => "StatusPatchFailed",
        }
    }
}

/// What the controller needs besides the mappings.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub history_limit: usize,
    /// `None` disables events (the CLI's one-shot uses).
    pub recorder: Option<Recorder>,
}

/// What one reconcile did, for metrics and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ReconcileReport {
    pub aws_auth_writes: usize,
    pub conflicts_retried: usize,
    pub status_writes: usize,
    pub drift_repairs: usize,
    pub mappings_in_conflict: usize,
    pub managed_entries: usize,
    pub unmanaged_entries: usize,
    /// Set when the plan refused to write.
    pub blocked: Option<&'static str>,
}

fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

pub fn mapping_input(mapping: &IamIdentityMapping) -> MappingInput {
    MappingInput {
        name: mapping.metadata.name.clone().unwrap_or_default(),
        creation_timestamp: mapping.metadata.creation_timestamp.clone(),
        generation: mapping.metadata.generation,
        spec: mapping.spec.clone(),
        last_rendered: mapping.status.as_ref().and_then(|s| s.rendered.clone()),
    }
}

/// Reconciles aws-auth with `mappings` (read from the reflector store).
pub async fn reconcile(
    ctx: &Context,
    mappings: &[Arc<IamIdentityMapping>],
    now: Time,
) -> Result<ReconcileReport, ReconcileError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), CONFIGMAP_NAMESPACE);
    let inputs: Vec<MappingInput> = mappings.iter().map(|m| mapping_input(m)).collect();
    let mut report = ReconcileReport::default();

    for attempt in 1..=MAX_ATTEMPTS {
        let live_cm = configmaps
            .get_opt(CONFIGMAP_NAME)
            .await
            .map_err(ReconcileError::Read)?;
        let live = live_state(&configmaps, live_cm.as_ref(), &ctx.settings).await?;
        let plan = plan(&inputs, &live, &ctx.settings);
        report.managed_entries = plan.managed_entries;
        report.unmanaged_entries = plan.unmanaged_entries;

        if let Some(blocked) = &plan.blocked {
            warn!(reason = blocked.reason(), "not writing aws-auth: {blocked}");
            report.blocked = Some(blocked.reason());
            if let (Blocked::LiveAwsAuthMalformed { .. }, Some(cm)) = (blocked, &live_cm) {
                publish(
                    ctx,
                    cm,
                    EventType::Warning,
                    "LiveAwsAuthMalformed",
                    &blocked.to_string(),
                )
                .await;
            }
        } else if plan.changed {
            if let Some(cm) = &live_cm {
                let reason = revision_reason(&plan);
                let annotation = cm
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(MANAGED_ANNOTATION));
                let recorded = history::record(
                    &configmaps,
                    &cm.data.clone().unwrap_or_default(),
                    annotation.map(String::as_str),
                    &reason,
                    now.clone(),
                    ctx.history_limit,
                )
                .await;
                match recorded {
                    Ok(revision) => debug!(revision, "saved the previous aws-auth in history"),
                    // The plan already preserves every unmanaged entry; history is the second
                    // safety net, and an aws-auth close to 1 MiB cannot fit in it. Say so loudly
                    // rather than stop managing aws-auth.
                    Err(err @ history::HistoryError::RevisionTooLarge { .. }) => {
                        warn!(error = %err, "writing aws-auth without a history revision");
                        publish(
                            ctx,
                            cm,
                            EventType::Warning,
                            "HistoryRevisionTooLarge",
                            &err.to_string(),
                        )
                        .await;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            match write_aws_auth(&configmaps, live_cm.clone(), &plan).await {
                Ok(written) => {
                    report.aws_auth_writes += 1;
                    info!(
                        attempt,
                        sections = ?plan.rewritten,
                        managed = plan.managed_entries,
                        unmanaged = plan.unmanaged_entries,
                        resource_version = written.metadata.resource_version.as_deref().unwrap_or_default(),
                        "wrote aws-auth"
                    );
                }
                // 409: someone (EKS adding a node role, a person) wrote in between; 404: it was
                // deleted in between. Either way: re-read, re-plan.
                Err(err) if is_status(&err, 409) || is_status(&err, 404) => {
                    info!(attempt, "aws-auth changed since it was read; re-planning");
                    report.conflicts_retried += 1;
                    continue;
                }
                Err(err) => return Err(ReconcileError::Write(err)),
            }
            publish_notes(ctx, &plan, live_cm.as_ref(), mappings).await;
        }

        apply_statuses(ctx, mappings, &plan, &now, &mut report).await?;
        return Ok(report);
    }
    Err(ReconcileError::TooManyConflicts)
}

/// The live aws-auth and, only when one of its keys is malformed and recovery is on, the last
/// good revision from history.
async fn live_state(
    configmaps: &Api<ConfigMap>,
    live_cm: Option<&ConfigMap>,
    settings: &Settings,
) -> Result<LiveAwsAuth, ReconcileError> {
    let data = live_cm.map(|cm| cm.data.clone().unwrap_or_default());
    let managed = match live_cm
        .and_then(|cm| cm.metadata.annotations.as_ref())
        .and_then(|a| a.get(MANAGED_ANNOTATION))
    {
        None => ManagedSet::default(),
        Some(text) => ManagedSet::decode(text).unwrap_or_else(|err| {
            warn!(error = %err, "treating every aws-auth entry as unmanaged");
            ManagedSet::default()
        }),
    };
    let malformed = data
        .as_ref()
        .is_some_and(|d| !parse_data(d).malformed.is_empty());
    let last_good = if malformed && settings.recover_malformed {
        let (_, revisions) = history::load(configmaps).await?;
        history::last_good(&revisions).map(|r| r.data.clone())
    } else {
        None
    };
    Ok(LiveAwsAuth {
        data,
        managed,
        last_good,
    })
}

fn revision_reason(plan: &Plan) -> String {
    let sections: Vec<&str> = plan.rewritten.iter().map(|s| s.key()).collect();
    if sections.is_empty() {
        "before aws-auth-operator updated the managed-principals annotation".to_string()
    } else {
        format!("before aws-auth-operator rewrote {}", sections.join(", "))
    }
}

/// Creates aws-auth, or replaces it carrying the resourceVersion that was read
/// (compare-and-swap: a 409 means it changed in between and nothing was written).
async fn write_aws_auth(
    api: &Api<ConfigMap>,
    live: Option<ConfigMap>,
    plan: &Plan,
) -> Result<ConfigMap, kube::Error> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let mut cm = live.unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..Default::default()
        },
        ..Default::default()
    });
    cm.data = Some(plan.data.clone());
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            MANAGED_ANNOTATION.to_string(),
            plan.managed_annotation.clone(),
        );
    // Server-managed fields that must not be sent back.
    cm.metadata.managed_fields = None;
    match cm.metadata.resource_version {
        None => api.create(&params, &cm).await,
        Some(_) => api.replace(CONFIGMAP_NAME, &params, &cm).await,
    }
}

/// Patches the status of every mapping whose status differs from what its outcome implies.
async fn apply_statuses(
    ctx: &Context,
    mappings: &[Arc<IamIdentityMapping>],
    plan: &Plan,
    now: &Time,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let api: Api<IamIdentityMapping> = Api::all(ctx.client.clone());
    let mut changes = Vec::new();
    for mapping in mappings {
        let name = mapping.metadata.name.clone().unwrap_or_default();
        let Some(outcome) = plan.outcomes.get(&name) else {
            continue;
        };
        if matches!(
            outcome,
            Outcome::Conflict { .. } | Outcome::Protected { .. }
        ) {
            report.mappings_in_conflict += 1;
        }
        let desired = status_for(
            outcome,
            mapping.metadata.generation,
            mapping.status.as_ref(),
            now,
        );
        if mapping.status.as_ref() == Some(&desired) {
            continue;
        }
        if matches!(outcome, Outcome::Rendered { drift: Some(d), .. } if d.repaired) {
            report.drift_repairs += 1;
        }
        changes.push((mapping.clone(), name, outcome.clone(), desired));
    }
    let results: Vec<Result<bool, ReconcileError>> = stream::iter(changes)
        .map(|(mapping, name, outcome, desired)| {
            let api = api.clone();
            async move {
                match api
                    .patch_status(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(status_patch(&desired)),
                    )
                    .await
                {
                    Ok(_) => {
                        debug!(mapping = %name, reason = outcome.reason(), "status updated");
                        publish_outcome(ctx, &mapping, &outcome).await;
                        Ok(true)
                    }
                    // Deleted since the store was read: the next reconcile drops its entry.
                    Err(err) if is_status(&err, 404) => Ok(false),
                    Err(source) => Err(ReconcileError::Status { name, source }),
                }
            }
        })
        .buffer_unordered(STATUS_CONCURRENCY)
        .collect()
        .await;
    for result in results {
        if result? {
            report.status_writes += 1;
        }
    }
    Ok(())
}

/// A JSON merge patch that also clears the status fields the new status leaves out.
fn status_patch(status: &IamIdentityMappingStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        for key in [
            "observedGeneration",
            "conditions",
            "rendered",
            "lastDriftRepair",
        ] {
            fields.entry(key).or_insert(Value::Null);
        }
    }
    serde_json::json!({ "status": value })
}

/// Events for what changed in aws-auth itself.
async fn publish_notes(
    ctx: &Context,
    plan: &Plan,
    live_cm: Option<&ConfigMap>,
    mappings: &[Arc<IamIdentityMapping>],
) {
    let by_name: BTreeMap<&str, &Arc<IamIdentityMapping>> = mappings
        .iter()
        .map(|m| (m.metadata.name.as_deref().unwrap_or_default(), m))
        .collect();
    for note in &plan.notes {
        match note {
            Note::TookOver { mapping, previous } => {
                let message = format!(
                    "took over the existing unmanaged {} entry for {} (saved in history first)",
                    previous.section(),
                    previous.principal()
                );
                if let Some(m) = by_name.get(mapping.as_str()) {
                    publish(ctx, m.as_ref(), EventType::Normal, "TookOver", &message).await;
                }
            }
            Note::Recovered {
                section,
                restored,
                error,
            } => {
                let message = format!(
                    "{section} could not be parsed ({error}); restored {restored} unmanaged entries from the last good revision"
                );
                if let Some(cm) = live_cm {
                    publish(
                        ctx,
                        cm,
                        EventType::Warning,
                        "RecoveredMalformedAwsAuth",
                        &message,
                    )
                    .await;
                }
            }
            Note::Removed { entry } => {
                let message = format!(
                    "removed {} from {}: no mapping renders it",
                    entry.principal(),
                    entry.section()
                );
                if let Some(cm) = live_cm {
                    publish(ctx, cm, EventType::Normal, "EntryRemoved", &message).await;
                }
            }
        }
    }
}

/// An event on the mapping when its outcome changed.
async fn publish_outcome(ctx: &Context, mapping: &IamIdentityMapping, outcome: &Outcome) {
    let (type_, reason) = match outcome {
        Outcome::Rendered { drift: Some(d), .. } if d.repaired => {
            (EventType::Normal, "DriftRepaired")
        }
        Outcome::Rendered { drift: Some(_), .. } => (EventType::Warning, "DriftDetected"),
        Outcome::Rendered { .. } => (EventType::Normal, "Rendered"),
        other => (EventType::Warning, other.reason()),
    };
    publish(ctx, mapping, type_, reason, &outcome.message()).await;
}

async fn publish<K>(ctx: &Context, object: &K, type_: EventType, reason: &str, message: &str)
where
    K: Resource<DynamicType = ()>,
{
    let Some(recorder) = &ctx.recorder else {
        return;
    };
    let event = Event {
        type_,
        reason: reason.to_string(),
        // The events API caps the note at 1 kB.
        note: Some(truncate(message, 1000)),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, &object.object_ref(&())).await {
        warn!(error = %err, reason, "could not publish event");
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
