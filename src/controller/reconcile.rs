//! One reconcile of the single key, kube-system/aws-auth, as steps: read the mappings and what
//! the loops beside it reported ([`Sides`]); then, in the store's compare-and-swap loop, observe
//! aws-auth (record a foreign edit in history), `plan()`, and write or freeze
//! ([`write_or_freeze`]); record the write in history; report a blocked or held plan; patch the
//! statuses that changed; publish events. Decides nothing `plan()` could decide.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Client, Resource};
use serde_json::Value;
use thiserror::Error;
use tracing::{debug, error, info, warn};

use super::events::EventPublisher;
use crate::accessentries::report::SyncReason;
use crate::accessentries::{AccessEntriesMode, AccessEntryReport, ReportBoard, keep_in_aws_auth};
use crate::api::{CRD_NAME, IamIdentityMapping, IamIdentityMappingStatus};
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData, ParsedAwsAuth};
use crate::cache::MappingSnapshot;
use crate::plan::{
    Blocked, LiveAwsAuth, ManagedSet, MappingInput, Note, Outcome, Plan, Settings, parse_live,
    plan_parsed,
};
use crate::principals::{PrincipalBoard, PrincipalReport, resolved_arn};
use crate::status::events::{Notice, Subject, note_events, outcome_event};
use crate::status::{status_for, with_access_entry, with_principal};
use crate::store::revisions::{
    HistoryError, Origin, RecordedSettings, Revision, State, recovery_source,
};
use crate::store::writer::{self, Decide, Decision, SwapError, Swapped, compare_and_swap};
use crate::store::{
    MAX_WRITE_ATTEMPTS, aws_auth_with, describe_kube_error, is_status, managed_annotation,
};

/// Status patches in flight at once, unless configured otherwise.
pub const DEFAULT_STATUS_CONCURRENCY: usize = 32;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("reading aws-auth: {}", describe_kube_error(.0))]
    Read(#[source] kube::Error),
    #[error("writing aws-auth: {}", describe_kube_error(.0))]
    Write(#[source] kube::Error),
    #[error("aws-auth changed under {MAX_WRITE_ATTEMPTS} consecutive writes; will retry")]
    TooManyConflicts,
    #[error("history: {0}")]
    History(#[from] HistoryError),
    #[error("patching status of {name}: {}", describe_kube_error(.source))]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("checking the IamIdentityMapping CRD: {}", describe_kube_error(.0))]
    CrdCheck(#[source] kube::Error),
}

impl From<SwapError> for ReconcileError {
    fn from(err: SwapError) -> Self {
        match err {
            SwapError::Read { source, .. } => ReconcileError::Read(source),
            SwapError::Write { source, .. } => ReconcileError::Write(source),
            SwapError::TooManyConflicts { .. } => ReconcileError::TooManyConflicts,
        }
    }
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
            ReconcileError::CrdCheck(_) => "CrdCheckFailed",
        }
    }

    /// The API server refused a call (401/403): the operator cannot do its job until its RBAC
    /// is fixed, which readiness reports.
    pub fn is_forbidden(&self) -> bool {
        let kube_error = match self {
            ReconcileError::Read(e)
            | ReconcileError::Write(e)
            | ReconcileError::CrdCheck(e)
            | ReconcileError::Status { source: e, .. } => Some(e),
            ReconcileError::History(HistoryError::Kube { source, .. }) => Some(source),
            _ => None,
        };
        kube_error.is_some_and(|e| is_status(e, 403) || is_status(e, 401))
    }
}
/// What the controller needs besides the mappings.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub history_limit: usize,
    /// `None` disables events (the CLI's one-shot uses).
    pub events: Option<EventPublisher>,
    /// `None` with `--access-entries=off`.
    pub access_entries: Option<AccessEntriesView>,
    /// What the principal resolver found (`None`: no resolver, e.g. the CLI's one-shot uses;
    /// permission sets then keep `status.resolvedArn`).
    pub principals: Option<PrincipalBoard>,
    /// Status patches in flight at once.
    pub status_concurrency: usize,
    /// A digest of the aws-auth state last recorded in history: while aws-auth still holds it,
    /// a reconcile does not read the history at all.
    pub recorded: Mutex<Option<u64>>,
    /// The status last patched per mapping (by uid), until the watch cache shows it: a
    /// reconcile that runs before its own patch came back through the watch must not patch
    /// the same status again.
    pub written: Mutex<HashMap<String, IamIdentityMappingStatus>>,
    /// The settings are recorded on the history ConfigMap (for `rollback`).
    pub settings_recorded: std::sync::atomic::AtomicBool,
}

impl Context {
    pub fn new(client: Client, settings: Settings, history_limit: usize) -> Context {
        Context {
            client,
            settings,
            history_limit,
            events: None,
            access_entries: None,
            principals: None,
            status_concurrency: DEFAULT_STATUS_CONCURRENCY,
            recorded: Mutex::new(None),
            written: Mutex::new(HashMap::new()),
            settings_recorded: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn recorded(&self) -> Option<u64> {
        *self.recorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_recorded(&self, digest: u64) {
        *self.recorded.lock().unwrap_or_else(|p| p.into_inner()) = Some(digest);
    }
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
    /// Revisions kept in history after this reconcile recorded one, and how many were asked for.
    pub history_kept: Option<(usize, usize)>,
    /// Set while aws-auth is frozen: what to do about it.
    pub frozen: Option<String>,
    /// Mappings by the status and reason of their Ready condition (for the metrics).
    pub mapping_states: BTreeMap<(String, String), usize>,
    /// Mappings by whether their access entry is in sync and why (empty with access entries off).
    pub access_entry_states: BTreeMap<(bool, String), usize>,
    /// Size of aws-auth's data as planned (what was written, or what is live when nothing was),
    /// and the most the operator writes.
    pub aws_auth_data_bytes: usize,
    pub aws_auth_data_limit_bytes: usize,
}

impl ReconcileReport {
    /// The entries and the size of aws-auth as planned (what was written, or what is live when
    /// nothing was).
    fn count_plan(&mut self, plan: &Plan, settings: &Settings) {
        self.managed_entries = plan.managed_entries;
        self.unmanaged_entries = plan.unmanaged_entries;
        self.aws_auth_data_bytes = crate::awsauth::data_size(&plan.data);
        self.aws_auth_data_limit_bytes = settings.max_data_bytes;
    }
}

/// The access-entry side of the operator, as the aws-auth reconcile sees it.
#[derive(Debug, Clone)]
pub struct AccessEntriesView {
    pub mode: AccessEntriesMode,
    /// What the access-entry loop last published.
    pub board: ReportBoard,
}

/// The value of the frozen annotation, if aws-auth carries it.
fn frozen_since(cm: &ConfigMap) -> Option<&str> {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FROZEN_ANNOTATION))
        .map(String::as_str)
}

/// An in-process digest of an aws-auth state (data and managed annotation).
fn state_digest(data: &ConfigMapData, annotation: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    data.hash(&mut hasher);
    annotation.hash(&mut hasher);
    hasher.finish()
}

/// Reconciles aws-auth with `mappings`, taken to be every mapping there is.
pub async fn reconcile(
    ctx: &Context,
    mappings: &[Arc<IamIdentityMapping>],
    now: Time,
) -> Result<ReconcileReport, ReconcileError> {
    reconcile_mappings(ctx, mappings, true, now).await
}

/// Reconciles aws-auth with a snapshot of the mapping cache: while the cache is not current, no
/// managed entry is removed.
pub async fn reconcile_snapshot(
    ctx: &Context,
    snapshot: &MappingSnapshot,
    now: Time,
) -> Result<ReconcileReport, ReconcileError> {
    reconcile_mappings(ctx, &snapshot.mappings, snapshot.complete, now).await
}

async fn reconcile_mappings(
    ctx: &Context,
    mappings: &[Arc<IamIdentityMapping>],
    complete: bool,
    now: Time,
) -> Result<ReconcileReport, ReconcileError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), CONFIGMAP_NAMESPACE);
    record_settings_once(ctx, &configmaps).await;
    let sides = Sides::read(ctx, mappings);
    let mut report = ReconcileReport::default();
    let swapped = write_or_freeze(ctx, &configmaps, &sides, complete, &now, &mut report).await?;
    let Attempted { plan, live, .. } = &swapped.value;
    report.count_plan(plan, &ctx.settings);
    if let Some(written) = &swapped.written {
        record_write(ctx, &configmaps, plan, written, &now, &mut report).await;
        publish_notes(ctx, plan, written, mappings).await;
    }
    report_blocked(ctx, plan, live.as_ref(), &mut report).await;
    report_held(ctx, &swapped.value, &mut report).await;
    apply_statuses(ctx, &sides, plan, &now, &mut report).await?;
    Ok(report)
}

/// What one reconcile plans from: the mappings, their plan inputs (one per mapping, in the
/// same order), and what the loops beside the aws-auth reconcile reported, read once for the
/// whole reconcile.
struct Sides<'a> {
    mappings: &'a [Arc<IamIdentityMapping>],
    inputs: Vec<MappingInput>,
    /// `None` with `--access-entries=off` and no cluster.
    access_entries: Option<(AccessEntriesMode, BTreeMap<String, AccessEntryReport>)>,
    /// `None` without a principal resolver.
    principals: Option<BTreeMap<String, PrincipalReport>>,
}

impl<'a> Sides<'a> {
    fn read(ctx: &Context, mappings: &'a [Arc<IamIdentityMapping>]) -> Sides<'a> {
        let access_entries = ctx
            .access_entries
            .as_ref()
            .map(|view| (view.mode, view.board.snapshot()));
        // Whether the access-entry loop has reached EKS since the operator started.
        let access_entries_known = ctx
            .access_entries
            .as_ref()
            .is_some_and(|view| view.board.cluster().last_pass.is_some());
        let principals = ctx.principals.as_ref().map(PrincipalBoard::snapshot);
        let inputs = mappings
            .iter()
            .map(|m| {
                let name = m.metadata.name.as_deref().unwrap_or_default();
                let mut input = MappingInput::from_mapping(m);
                if let Some(principals) = &principals {
                    input.resolved_arn =
                        resolved_arn(&m.spec, m.status.as_ref(), principals.get(name));
                }
                if let Some((mode, reports)) = &access_entries {
                    input.served_by_access_entry =
                        !keep_in_aws_auth(*mode, reports.get(name), m.metadata.generation);
                    input.access_entry_unknown = *mode == AccessEntriesMode::Only
                        && (!access_entries_known || !reports.contains_key(name));
                }
                input
            })
            .collect();
        Sides {
            mappings,
            inputs,
            access_entries,
            principals,
        }
    }
}

/// What one attempt planned, against which aws-auth.
struct Attempted {
    plan: Plan,
    /// aws-auth as read (`None`: it does not exist).
    live: Option<ConfigMap>,
    /// It carries the frozen annotation.
    frozen: bool,
    /// Why this attempt froze aws-auth instead of writing the plan.
    freezing: Option<String>,
}

/// One attempt of the reconcile's write, in the store's compare-and-swap loop: observe aws-auth
/// as read, plan, and decide: nothing (blocked, or nothing changed), the freeze annotation, or
/// the plan.
struct PlanAttempt<'a> {
    ctx: &'a Context,
    configmaps: &'a Api<ConfigMap>,
    inputs: &'a [MappingInput],
    complete: bool,
    now: &'a Time,
    report: &'a mut ReconcileReport,
}

impl Decide for PlanAttempt<'_> {
    type Value = Attempted;
    type Error = ReconcileError;

    async fn decide(
        &mut self,
        current: Option<ConfigMap>,
        _attempt: u32,
    ) -> Result<Decision<Attempted>, ReconcileError> {
        let ctx = self.ctx;
        if let Some(cm) = &current {
            observe(ctx, self.configmaps, cm, self.now, self.report).await?;
        }
        let (mut live, parsed) = live_state(ctx, self.configmaps, current.as_ref()).await?;
        live.mappings_incomplete = !self.complete;
        let plan = plan_parsed(self.inputs, &live, parsed, &ctx.settings);
        // Mappings that disappeared with their CRD were not deleted on purpose: freeze aws-auth
        // (persistently, in an annotation), then plan again. Also while the removals are held
        // for a cache that cannot list (the CRD is gone): once the CRD is back, a complete but
        // still empty list must not remove them either.
        let freezing = if plan.blocked.is_none()
            && !live.frozen
            && (removes_managed_entries(&plan) || holds_removals(&plan))
        {
            // A missing aws-auth has no annotation to carry the freeze; the plan then writes.
            crd_gone(ctx).await?.filter(|_| current.is_some())
        } else {
            None
        };
        let write = match (&freezing, &current) {
            (Some(why), Some(cm)) => Some(frozen(cm, why, self.now)),
            _ if plan.blocked.is_none() && plan.changed => Some(aws_auth_with(
                current.as_ref(),
                &plan.data,
                &plan.managed_annotation,
            )),
            _ => None,
        };
        let attempted = Attempted {
            plan,
            live: current,
            frozen: live.frozen,
            freezing,
        };
        Ok(Decision {
            write,
            value: attempted,
        })
    }
}

/// Writes what the plan says, through the store's compare-and-swap loop (re-read and re-plan
/// when aws-auth changed in between). When the attempt froze aws-auth instead, plans again
/// against the frozen aws-auth.
async fn write_or_freeze(
    ctx: &Context,
    configmaps: &Api<ConfigMap>,
    sides: &Sides<'_>,
    complete: bool,
    now: &Time,
    report: &mut ReconcileReport,
) -> Result<Swapped<Attempted>, ReconcileError> {
    for _ in 0..MAX_WRITE_ATTEMPTS {
        let mut attempt = PlanAttempt {
            ctx,
            configmaps,
            inputs: &sides.inputs,
            complete,
            now,
            report: &mut *report,
        };
        let swapped = compare_and_swap(configmaps, CONFIGMAP_NAME, &mut attempt).await?;
        report.conflicts_retried += swapped.attempts.saturating_sub(1) as usize;
        match (&swapped.value.freezing, &swapped.written) {
            (Some(why), Some(_)) => error!(
                why,
                "froze aws-auth: no managed entry is removed until {FROZEN_ANNOTATION} is removed"
            ),
            _ => return Ok(swapped),
        }
    }
    Err(ReconcileError::TooManyConflicts)
}

/// Records the operator's settings on the history ConfigMap, once per process (again after a
/// failure), so that `rollback` previews what this operator keeps. Never fails the reconcile.
async fn record_settings_once(ctx: &Context, configmaps: &Api<ConfigMap>) {
    use std::sync::atomic::Ordering;
    if ctx.settings_recorded.load(Ordering::Relaxed) {
        return;
    }
    let mode = ctx
        .access_entries
        .as_ref()
        .map_or(AccessEntriesMode::Off, |view| view.mode);
    let settings = RecordedSettings::of(&ctx.settings, mode);
    match writer::record_settings(configmaps, &settings).await {
        Ok(_) => ctx.settings_recorded.store(true, Ordering::Relaxed),
        Err(err) => warn!(error = %err, "could not record the operator's settings for rollback"),
    }
}

/// Records the live aws-auth in history when the operator has not recorded it yet: an edit by
/// another writer (or the state found at start). A state the operator wrote or already saw costs
/// nothing: its digest is remembered.
async fn observe(
    ctx: &Context,
    configmaps: &Api<ConfigMap>,
    cm: &ConfigMap,
    now: &Time,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let data = cm.data.clone().unwrap_or_default();
    let annotation = managed_annotation(cm);
    let digest = state_digest(&data, annotation);
    if ctx.recorded() == Some(digest) {
        return Ok(());
    }
    let state = State {
        data: &data,
        managed_annotation: annotation,
    };
    let reason = "observed: aws-auth as another writer left it";
    match writer::record(
        configmaps,
        state,
        Origin::Observed,
        reason,
        now.clone(),
        ctx.history_limit,
    )
    .await
    {
        Ok(recorded) => report.history_kept = Some((recorded.kept, recorded.requested)),
        // An aws-auth close to 1 MiB of random text cannot fit: say so loudly rather than stop
        // managing aws-auth (the plan still preserves every unmanaged entry).
        Err(err @ HistoryError::RevisionTooLarge { .. }) => {
            warn!(error = %err, "aws-auth is not recorded in history");
            publish(
                ctx,
                &cm.object_ref(&()),
                EventType::Warning,
                "HistoryRevisionTooLarge",
                &err.to_string(),
            )
            .await;
        }
        Err(err) => return Err(err.into()),
    }
    ctx.set_recorded(digest);
    Ok(())
}

/// Records what the operator just wrote. The write has happened: a failure here is logged, not
/// fatal (the next reconcile records the state as observed).
async fn record_write(
    ctx: &Context,
    configmaps: &Api<ConfigMap>,
    plan: &Plan,
    written: &ConfigMap,
    now: &Time,
    report: &mut ReconcileReport,
) {
    report.aws_auth_writes += 1;
    info!(
        sections = ?plan.rewritten,
        managed = plan.managed_entries,
        unmanaged = plan.unmanaged_entries,
        resource_version = written.metadata.resource_version.as_deref().unwrap_or_default(),
        "wrote aws-auth"
    );
    let state = State {
        data: &plan.data,
        managed_annotation: Some(&plan.managed_annotation),
    };
    let reason = revision_reason(plan);
    match writer::record(
        configmaps,
        state,
        Origin::Operator,
        &reason,
        now.clone(),
        ctx.history_limit,
    )
    .await
    {
        Ok(recorded) => {
            report.history_kept = Some((recorded.kept, recorded.requested));
            ctx.set_recorded(state_digest(&plan.data, Some(&plan.managed_annotation)));
        }
        Err(err) => warn!(error = %err, "could not record the written aws-auth in history"),
    }
}

/// Says why the plan wrote nothing, if it refused to: in the log, and for a malformed aws-auth
/// in an event on it.
async fn report_blocked(
    ctx: &Context,
    plan: &Plan,
    live: Option<&ConfigMap>,
    report: &mut ReconcileReport,
) {
    let Some(blocked) = &plan.blocked else {
        return;
    };
    warn!(reason = blocked.reason(), "not writing aws-auth: {blocked}");
    report.blocked = Some(blocked.reason());
    if let (Blocked::LiveAwsAuthMalformed { .. }, Some(cm)) = (blocked, live) {
        publish(
            ctx,
            &cm.object_ref(&()),
            EventType::Warning,
            "LiveAwsAuthMalformed",
            &blocked.to_string(),
        )
        .await;
    }
}

/// Says which entries the plan kept that it would have removed: for a mapping cache that is
/// not current (passing), or while aws-auth is frozen (until a person lifts it).
async fn report_held(ctx: &Context, attempted: &Attempted, report: &mut ReconcileReport) {
    let notes = &attempted.plan.notes;
    if let Some(held @ Note::KeptCacheNotCurrent { entries }) = notes
        .iter()
        .find(|n| matches!(n, Note::KeptCacheNotCurrent { .. }))
    {
        // Passing: the watch is back within seconds, and the next reconcile settles it.
        warn!(kept = entries.len(), "{held}");
    }
    if let Some(Note::KeptFrozen { entries }) =
        notes.iter().find(|n| matches!(n, Note::KeptFrozen { .. }))
        && let Some(cm) = &attempted.live
    {
        let since = frozen_since(cm).unwrap_or_default();
        let message = format!(
            "aws-auth is frozen ({since}); the {} entries of mappings that are gone are kept. Once every IamIdentityMapping is back, remove the annotation: kubectl annotate configmap -n {CONFIGMAP_NAMESPACE} {CONFIGMAP_NAME} {FROZEN_ANNOTATION}-",
            entries.len()
        );
        publish(
            ctx,
            &cm.object_ref(&()),
            EventType::Warning,
            "AwsAuthFrozen",
            &message,
        )
        .await;
        report.frozen = Some(message);
    } else if attempted.frozen {
        report.frozen = Some(format!(
            "aws-auth carries the {FROZEN_ANNOTATION} annotation; remove it once every IamIdentityMapping is back"
        ));
    }
}

/// The live aws-auth, parsed once (the plan takes the parse), and, only when a key is
/// malformed or aws-auth is missing (and recovery is on), the revision to restore unmanaged
/// entries from.
async fn live_state(
    ctx: &Context,
    configmaps: &Api<ConfigMap>,
    live_cm: Option<&ConfigMap>,
) -> Result<(LiveAwsAuth, ParsedAwsAuth), ReconcileError> {
    let data = live_cm.map(|cm| cm.data.clone().unwrap_or_default());
    let annotation = live_cm.and_then(managed_annotation);
    let mut live = LiveAwsAuth {
        frozen: live_cm.and_then(frozen_since).is_some(),
        data,
        ..Default::default()
    };
    let parsed = parse_live(&live);
    let needs_history = live.data.is_none() || !parsed.malformed.is_empty();
    let unreadable_annotation = annotation.and_then(|text| ManagedSet::decode(text).err());
    let revisions = if needs_history || unreadable_annotation.is_some() {
        writer::load(configmaps).await?.1
    } else {
        Vec::new()
    };
    let managed = match (annotation, unreadable_annotation) {
        (None, _) => ManagedSet::default(),
        (Some(_), Some(err)) => {
            // Treating everything as unmanaged would make every mapping "take over" its own
            // entry; the newest revision's record is the best knowledge left.
            let fallback = revisions.last().map(Revision::managed);
            warn!(error = %err, from_revision = revisions.last().map(|r| r.revision), "using the newest revision's record of managed principals");
            fallback.unwrap_or_default()
        }
        (Some(text), None) => ManagedSet::decode(text).unwrap_or_default(),
    };
    live.recovery = if needs_history && ctx.settings.recover_malformed || live.data.is_none() {
        recovery_source(&revisions)
    } else {
        None
    };
    live.managed = managed;
    Ok((live, parsed))
}

fn revision_reason(plan: &Plan) -> String {
    let sections: Vec<&str> = plan.rewritten.iter().map(|s| s.key()).collect();
    if sections.is_empty() {
        "aws-auth-operator updated the managed-principals annotation".to_string()
    } else {
        format!("aws-auth-operator rewrote {}", sections.join(", "))
    }
}

/// Whether the plan takes an entry away from what the operator manages.
fn removes_managed_entries(plan: &Plan) -> bool {
    plan.notes.iter().any(|note| {
        matches!(
            note,
            Note::Removed { .. } | Note::GaveBack { .. } | Note::PolicyEnforced { .. }
        )
    })
}

/// Whether the plan keeps entries it would have removed, the mapping cache not being current.
fn holds_removals(plan: &Plan) -> bool {
    plan.notes
        .iter()
        .any(|note| matches!(note, Note::KeptCacheNotCurrent { .. }))
}

/// Annotation on aws-auth while it is frozen: the IamIdentityMapping CRD went away, and with
/// it every mapping. Until a person removes it (once the mappings are back), no managed entry
/// is removed; new and changed entries are still written.
pub const FROZEN_ANNOTATION: &str = "awsauth.dev/frozen";

/// aws-auth marked frozen: as read, with the frozen annotation (written compare-and-swap: if it
/// changed meanwhile, the reconcile re-reads and re-plans).
fn frozen(cm: &ConfigMap, why: &str, now: &Time) -> ConfigMap {
    let mut marked = cm.clone();
    marked
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            FROZEN_ANNOTATION.to_string(),
            format!("since {}: {why}", now.0),
        );
    marked
}

/// Why the IamIdentityMapping CRD is not usable (gone, or being deleted), if it is not.
async fn crd_gone(ctx: &Context) -> Result<Option<String>, ReconcileError> {
    let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(crd)) if crd.metadata.deletion_timestamp.is_some() => {
            Ok(Some(format!("the CRD {CRD_NAME} is being deleted")))
        }
        Ok(Some(_)) => Ok(None),
        Ok(None) => Ok(Some(format!("the CRD {CRD_NAME} does not exist"))),
        Err(err) => Err(ReconcileError::CrdCheck(err)),
    }
}

/// Patches the status of every mapping whose status differs from what its outcome implies,
/// a bounded number at a time, and publishes the event each change is worth.
async fn apply_statuses(
    ctx: &Context,
    sides: &Sides<'_>,
    plan: &Plan,
    now: &Time,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let changes = status_changes(ctx, sides, plan, now, report);
    report.status_writes += patch_statuses(ctx, changes).await?;
    Ok(())
}

/// A status to patch, and the event its change is worth.
struct StatusChange {
    name: String,
    uid: String,
    event: Option<PendingEvent>,
    desired: IamIdentityMappingStatus,
}

/// The statuses that differ from what the plan's outcomes imply, counted in the report. A
/// status this operator already patched, which the watch cache does not show yet, is not
/// patched again.
fn status_changes(
    ctx: &Context,
    sides: &Sides<'_>,
    plan: &Plan,
    now: &Time,
    report: &mut ReconcileReport,
) -> Vec<StatusChange> {
    let mut written = ctx.written.lock().unwrap_or_else(|p| p.into_inner());
    let mut live_uids = HashSet::with_capacity(sides.mappings.len());
    let mut changes = Vec::new();
    for (mapping, input) in sides.mappings.iter().zip(&sides.inputs) {
        let name = mapping.metadata.name.clone().unwrap_or_default();
        let uid = mapping.metadata.uid.clone().unwrap_or_else(|| name.clone());
        live_uids.insert(uid.clone());
        let Some(outcome) = plan.outcomes.get(&name) else {
            continue;
        };
        if matches!(
            outcome,
            Outcome::Conflict { .. } | Outcome::Protected { .. }
        ) {
            report.mappings_in_conflict += 1;
        }
        // The newest status known: what the watch cache shows, or what was patched since.
        let cached = mapping.status.as_ref();
        if written.get(&uid).is_some_and(|w| Some(w) == cached) {
            written.remove(&uid);
        }
        let known = written.get(&uid).or(cached);
        let desired = desired_status(mapping, input, outcome, known, sides, now);
        count_states(report, sides, &name, &desired);
        if known == Some(&desired) {
            continue;
        }
        if matches!(outcome, Outcome::Rendered { drift: Some(d), .. } if d.repaired) {
            report.drift_repairs += 1;
        }
        // A named type, not a tuple holding a `&'static str`: a closure over such a tuple
        // is inferred for every lifetime, and the future is then not Send (rustc#64552).
        let event =
            outcome_event(outcome, known, &desired).map(|(type_, reason, message)| PendingEvent {
                object: mapping.object_ref(&()),
                type_,
                reason,
                message,
            });
        changes.push(StatusChange {
            name,
            uid,
            event,
            desired,
        });
    }
    written.retain(|uid, _| live_uids.contains(uid));
    changes
}

/// The status a mapping's outcome implies, with its principal and its access entry as the
/// loops beside the reconcile reported them.
fn desired_status(
    mapping: &IamIdentityMapping,
    input: &MappingInput,
    outcome: &Outcome,
    known: Option<&IamIdentityMappingStatus>,
    sides: &Sides<'_>,
    now: &Time,
) -> IamIdentityMappingStatus {
    let name = input.name.as_str();
    let generation = mapping.metadata.generation;
    let mut desired = status_for(outcome, generation, known, now);
    with_principal(
        &mut desired,
        &mapping.spec,
        input.resolved_arn.as_deref(),
        sides.principals.as_ref().and_then(|r| r.get(name)),
        generation,
        known,
        now,
    );
    match &sides.access_entries {
        Some((AccessEntriesMode::Off, reports)) => crate::status::with_unmanaged_access_entry(
            &mut desired,
            reports.get(name),
            generation,
            known,
            now,
        ),
        Some((_, reports)) => {
            with_access_entry(&mut desired, reports.get(name), generation, known, now)
        }
        None => crate::status::without_access_entry(
            &mut desired,
            generation,
            known,
            now,
            crate::status::NOT_MANAGED_UNKNOWN_CLUSTER,
        ),
    }
    desired
}

/// Counts a mapping by its Ready condition, and by its access entry's state when the operator
/// manages access entries (for the metrics).
fn count_states(
    report: &mut ReconcileReport,
    sides: &Sides<'_>,
    name: &str,
    desired: &IamIdentityMappingStatus,
) {
    if let Some((mode, reports)) = &sides.access_entries
        && *mode != AccessEntriesMode::Off
    {
        let (synced, reason) = reports
            .get(name)
            .map_or((false, SyncReason::Pending), |r| (r.synced, r.reason));
        *report
            .access_entry_states
            .entry((synced, reason.as_str().to_string()))
            .or_default() += 1;
    }
    let ready = crate::status::condition(desired, crate::status::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_else(|| ("Unknown".to_string(), "NoReadyCondition".to_string()));
    *report.mapping_states.entry(ready).or_default() += 1;
}

/// Patches the statuses, a bounded number at a time, each with its event once it is written.
/// Returns how many were written (a mapping deleted since the store was read is not).
async fn patch_statuses(
    ctx: &Context,
    changes: Vec<StatusChange>,
) -> Result<usize, ReconcileError> {
    let api: Api<IamIdentityMapping> = Api::all(ctx.client.clone());
    let results: Vec<Result<bool, ReconcileError>> = stream::iter(changes)
        .map(|change| {
            let api = api.clone();
            async move {
                let StatusChange {
                    name,
                    uid,
                    event,
                    desired,
                } = change;
                let patch = Patch::Merge(status_patch(&desired));
                match api
                    .patch_status(&name, &PatchParams::default(), &patch)
                    .await
                {
                    Ok(_) => {
                        debug!(mapping = %name, "status updated");
                        ctx.written
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(uid, desired);
                        if let Some(event) = event {
                            event.publish(ctx).await;
                        }
                        Ok(true)
                    }
                    // Deleted since the store was read: the next reconcile drops its entry.
                    Err(err) if is_status(&err, 404) => Ok(false),
                    Err(source) => Err(ReconcileError::Status { name, source }),
                }
            }
        })
        .buffer_unordered(ctx.status_concurrency.max(1))
        .collect()
        .await;
    let mut written = 0;
    for result in results {
        if result? {
            written += 1;
        }
    }
    Ok(written)
}

/// A JSON merge patch that sets the whole status: every field the new status leaves out is set
/// to null, at every level, so that nothing of an older status survives (a merge patch keeps
/// what it does not mention).
pub fn status_patch(status: &IamIdentityMappingStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        for key in [
            "observedGeneration",
            "conditions",
            "rendered",
            "lastDriftRepair",
            "accessEntry",
            "resolvedArn",
        ] {
            fields.entry(key).or_insert(Value::Null);
        }
        if let Some(Value::Object(rendered)) = fields.get_mut("rendered") {
            for key in ["username", "groups"] {
                rendered.entry(key).or_insert(Value::Null);
            }
        }
    }
    serde_json::json!({ "status": value })
}

/// One event to publish: what it is about, its type, reason and message.
struct PendingEvent {
    object: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
}

impl PendingEvent {
    async fn publish(&self, ctx: &Context) {
        publish(ctx, &self.object, self.type_, self.reason, &self.message).await;
    }
}

/// Publishes the events for what changed in aws-auth itself (`status::events::note_events`),
/// concurrently, bounded like the status patches.
async fn publish_notes(
    ctx: &Context,
    plan: &Plan,
    aws_auth: &ConfigMap,
    mappings: &[Arc<IamIdentityMapping>],
) {
    let by_name: BTreeMap<&str, &Arc<IamIdentityMapping>> = mappings
        .iter()
        .map(|m| (m.metadata.name.as_deref().unwrap_or_default(), m))
        .collect();
    let pending: Vec<PendingEvent> = note_events(&plan.notes)
        .into_iter()
        .filter_map(|notice| {
            log_notice(&notice);
            let object = match &notice.subject {
                Subject::AwsAuth => aws_auth.object_ref(&()),
                Subject::Mapping(name) => by_name.get(name.as_str())?.object_ref(&()),
            };
            Some(PendingEvent {
                object,
                type_: notice.type_,
                reason: notice.reason,
                message: notice.message,
            })
        })
        .collect();
    stream::iter(pending)
        .map(|event| async move { event.publish(ctx).await })
        .buffer_unordered(ctx.status_concurrency.max(1))
        .collect::<Vec<()>>()
        .await;
}

fn log_notice(notice: &Notice) {
    let mapping = match &notice.subject {
        Subject::Mapping(name) => Some(name.as_str()),
        Subject::AwsAuth => None,
    };
    match notice.type_ {
        EventType::Warning => warn!(mapping, reason = notice.reason, "{}", notice.message),
        EventType::Normal => info!(mapping, reason = notice.reason, "{}", notice.message),
    }
}

async fn publish(
    ctx: &Context,
    object: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
) {
    let Some(events) = &ctx.events else {
        return;
    };
    if let Err(err) = events.publish(object, type_, reason, message).await {
        if is_status(&err, 403) {
            error!(error = %describe_kube_error(&err), reason, "events are forbidden: check the RBAC for core/v1 events (create, patch)");
        } else {
            warn!(error = %describe_kube_error(&err), reason, "could not publish event");
        }
    }
}
