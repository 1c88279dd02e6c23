//! `history` and `rollback`: look at and restore the revisions of aws-auth the operator saved in
//! `kube-system/aws-auth-operator-history`, through the current kubeconfig.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use tracing::{info, warn};

use super::{CliError, OutputFormat, PolicyArgs, exit, print_stdout};
use crate::accessentries::AccessEntriesMode;
use crate::api::IamIdentityMapping;
use crate::arn::PrincipalKey;
use crate::awsauth::{
    AwsAuthEntries, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData, Entry, Section, data_size,
    parse_data,
};
use crate::controller::history::{
    DEFAULT_HISTORY_LIMIT, HISTORY_CONFIGMAP, HistoryError, MAX_WRITE_ATTEMPTS, Origin,
    RecordedSettings, Revision, SETTINGS_ANNOTATION, State, describe_kube_error, find, is_status,
    record, recorded_settings,
};
use crate::controller::reconcile::mapping_input;
use crate::plan::{
    LiveAwsAuth, MANAGED_ANNOTATION, ManagedSet, MappingInput, Outcome, Settings, plan,
};
use crate::validate::validate_resolved;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// `json` prints every revision's summary as a JSON array (newest first).
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The revision to restore (see `aws-auth-operator history`).
    pub revision: u64,
    /// Write the change. Without it, only print what would change.
    #[arg(long)]
    pub yes: bool,
    /// Revisions to keep in the history when saving the current aws-auth before the rollback
    /// (use the operator's --history-limit).
    #[arg(long, default_value_t = DEFAULT_HISTORY_LIMIT)]
    pub keep: usize,
    /// Used only when the operator has recorded no settings on the history ConfigMap (an
    /// operator older than this version): the operator's own policy flags, so that the result is
    /// what its next reconcile keeps. Otherwise the recorded settings are used (ignoring these).
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// One line of `history`.
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

/// What a rollback changes in one section, entries as the authenticator reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SectionDiff {
    pub section: Section,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl SectionDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// What `rollback` found and did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackReport {
    pub revision: u64,
    pub revision_time: Time,
    pub revision_reason: String,
    /// Whether kube-system/aws-auth existed (when it did not, a rollback creates it).
    pub aws_auth_existed: bool,
    /// Per section: the entries the rollback adds and removes.
    pub sections: Vec<SectionDiff>,
    /// The data differs (also true for changes that do not show as entries, such as formatting
    /// or keys the authenticator ignores).
    pub data_changed: bool,
    /// The revision carries a managed-principals annotation that differs from the live one.
    pub annotation_changed: bool,
    /// Sections of the revision the authenticator cannot read at all.
    pub revision_malformed: Vec<Section>,
    /// What the operator's rules do to the revision: managed entries that follow their
    /// mappings, mappings that are not rendered.
    pub notes: Vec<String>,
    /// The operator settings the result was planned with, and where they come from.
    pub planned_with: String,
    /// The settings are the ones the operator recorded on the history ConfigMap (not the
    /// command's flags).
    pub settings_recorded: bool,
    /// The revision the current aws-auth was saved as before it was overwritten.
    pub backup_revision: Option<u64>,
    /// Whether aws-auth was written.
    pub written: bool,
    /// Reads of aws-auth it took (more than 1 after write conflicts).
    pub attempts: u32,
}

impl RollbackReport {
    pub fn changes_anything(&self) -> bool {
        self.data_changed || self.annotation_changed
    }
}

/// A readable, unambiguous form of an entry: two entries are the same exactly when their
/// descriptions are.
pub fn describe_entry(entry: &Entry) -> String {
    match entry {
        Entry::Role(m) | Entry::User(m) => {
            let mut text = format!(
                "{} -> username {:?}, groups {:?}",
                m.arn, m.username, m.groups
            );
            if !m.extra.is_empty() {
                let extra = serde_json::to_string(&m.extra).unwrap_or_default();
                text.push_str(&format!(", extra {extra}"));
            }
            text
        }
        Entry::Account(account) => format!("account {account:?}"),
    }
}

fn section_entries(entries: &AwsAuthEntries, section: Section) -> Vec<String> {
    entries
        .iter()
        .map(|(_, entry)| entry)
        .filter(|entry| entry.section() == section)
        .map(|entry| describe_entry(&entry))
        .collect()
}

/// Items of `a` that are not in `b`, counting duplicates, in `a`'s order.
fn multiset_minus(a: &[String], b: &[String]) -> Vec<String> {
    let mut available: BTreeMap<&str, usize> = BTreeMap::new();
    for item in b {
        *available.entry(item).or_default() += 1;
    }
    a.iter()
        .filter(|item| match available.get_mut(item.as_str()) {
            Some(count) if *count > 0 => {
                *count -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// Per section, the entries that replacing `current` by `target` adds and removes, as the
/// authenticator would read them (a malformed section has no entries).
pub fn diff(current: &ConfigMapData, target: &ConfigMapData) -> Vec<SectionDiff> {
    let now = parse_data(current).entries;
    let then = parse_data(target).entries;
    Section::ALL
        .into_iter()
        .map(|section| {
            let now = section_entries(&now, section);
            let then = section_entries(&then, section);
            SectionDiff {
                section,
                added: multiset_minus(&then, &now),
                removed: multiset_minus(&now, &then),
            }
        })
        .collect()
}

fn managed_annotation(cm: &ConfigMap) -> Option<&str> {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANAGED_ANNOTATION))
        .map(String::as_str)
}

/// The report for replacing `current` (None: aws-auth does not exist) by `target`.
/// What a rollback writes: the revision with the current mappings' rules applied, which is
/// exactly what the operator's next reconcile keeps. Unmanaged entries come back as they were;
/// a managed entry whose mapping still exists follows its mapping; an entry the revision marks
/// managed but whose mapping is gone comes back as an unmanaged entry (it would otherwise be
/// removed again by the next reconcile).
#[derive(Debug, Clone, PartialEq)]
pub struct RollbackTarget {
    pub data: ConfigMapData,
    pub managed_annotation: String,
    pub notes: Vec<String>,
}

/// The rollback of `revision` under the current `mappings` and operator `settings`.
pub fn rollback_target(
    revision: &Revision,
    mappings: &[MappingInput],
    settings: &Settings,
) -> Result<RollbackTarget, String> {
    let rendered: BTreeSet<PrincipalKey> = mappings
        .iter()
        .filter_map(|m| validate_resolved(&m.spec, m.resolved_arn.as_deref()).ok())
        .map(|entry| entry.key())
        .collect();
    let recorded = revision.managed();
    let managed = ManagedSet::new(rendered.iter().filter(|k| recorded.contains(k)).cloned())
        .with_originals(
            recorded
                .originals()
                .iter()
                .filter(|(k, _)| rendered.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
    let live = LiveAwsAuth {
        data: Some(revision.data.clone()),
        managed,
        recovery: None,
        frozen: false,
        mappings_incomplete: false,
    };
    let plan = plan(mappings, &live, settings);
    if let Some(blocked) = &plan.blocked {
        return Err(format!(
            "revision {} cannot be restored: {blocked}",
            revision.revision
        ));
    }
    let mut notes: Vec<String> = plan.notes.iter().map(ToString::to_string).collect();
    for (name, outcome) in &plan.outcomes {
        match outcome {
            Outcome::Rendered { .. } => {}
            other => notes.push(format!("{name}: {}: {}", other.reason(), other.message())),
        }
    }
    Ok(RollbackTarget {
        data: plan.data,
        managed_annotation: plan.managed_annotation,
        notes,
    })
}

/// The report for replacing `current` (None: aws-auth does not exist) by `target`.
pub fn compare(
    current: Option<&ConfigMap>,
    revision: &Revision,
    target: &RollbackTarget,
) -> RollbackReport {
    let empty = ConfigMapData::new();
    let current_data = current.and_then(|cm| cm.data.as_ref()).unwrap_or(&empty);
    let annotation_changed =
        current.and_then(managed_annotation) != Some(target.managed_annotation.as_str());
    RollbackReport {
        revision: revision.revision,
        revision_time: revision.time.clone(),
        revision_reason: revision.reason.clone(),
        aws_auth_existed: current.is_some(),
        sections: diff(current_data, &target.data),
        data_changed: current.is_none() || *current_data != target.data,
        annotation_changed,
        revision_malformed: parse_data(&revision.data).malformed.into_iter().collect(),
        notes: target.notes.clone(),
        planned_with: String::new(),
        settings_recorded: false,
        backup_revision: None,
        written: false,
        attempts: 0,
    }
}

/// aws-auth as it is after the rollback: the target's data and managed annotation, and
/// everything else (resourceVersion included) as read.
pub fn rolled_back(current: Option<&ConfigMap>, target: &RollbackTarget) -> ConfigMap {
    let mut cm = current.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    cm.data = Some(target.data.clone());
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(
            MANAGED_ANNOTATION.to_string(),
            target.managed_annotation.clone(),
        );
    cm.metadata.managed_fields = None;
    cm
}

async fn get_aws_auth(api: &Api<ConfigMap>) -> Result<Option<ConfigMap>, HistoryError> {
    match api.get(CONFIGMAP_NAME).await {
        Ok(cm) => Ok(Some(cm)),
        Err(err) if is_status(&err, 404) => Ok(None),
        Err(source) => Err(HistoryError::Kube {
            action: "reading",
            name: CONFIGMAP_NAME.to_string(),
            source,
        }),
    }
}

/// The IamIdentityMappings of the cluster (none when the CRD is not installed).
async fn list_mappings(client: &kube::Client) -> Result<Vec<IamIdentityMapping>, HistoryError> {
    let api: Api<IamIdentityMapping> = Api::all(client.clone());
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(err) if is_status(&err, 404) => Ok(Vec::new()),
        Err(source) => Err(HistoryError::Kube {
            action: "listing IamIdentityMappings for",
            name: CONFIGMAP_NAME.to_string(),
            source,
        }),
    }
}

/// The `Ready` reason of a mapping served by its access entry
/// (`Outcome::ServedByAccessEntry`).
const SERVED_BY_ACCESS_ENTRY: &str = "ServedByAccessEntry";

/// Whether the operator's last status of `mapping` says its access entry serves it (the
/// `Ready` reason `ServedByAccessEntry`, for its current generation): in `only` mode its
/// aws-auth entry stays out.
fn served_by_access_entry(mapping: &IamIdentityMapping) -> bool {
    let Some(status) = &mapping.status else {
        return false;
    };
    status.observed_generation == mapping.metadata.generation
        && crate::status::condition(status, crate::status::READY)
            .is_some_and(|c| c.status == "True" && c.reason == SERVED_BY_ACCESS_ENTRY)
}

/// The plan's inputs, as the operator in `mode` sees them: in `only` mode, a mapping its access
/// entry serves (as its status says) has no aws-auth entry. Returns how many are served.
pub fn mapping_inputs(
    mappings: &[IamIdentityMapping],
    mode: AccessEntriesMode,
) -> (Vec<MappingInput>, usize) {
    let mut served = 0;
    let inputs = mappings
        .iter()
        .map(|m| {
            let mut input = mapping_input(m);
            if mode == AccessEntriesMode::Only && served_by_access_entry(m) {
                input.served_by_access_entry = true;
                served += 1;
            }
            input
        })
        .collect();
    (inputs, served)
}

/// The settings a rollback plans with: those the operator recorded on the history ConfigMap,
/// else (an operator older than the record) the command's flags, with `--access-entries` taken
/// as off.
#[derive(Debug, Clone)]
pub struct Planning {
    pub settings: Settings,
    pub mode: AccessEntriesMode,
    pub recorded: bool,
    pub description: String,
}

pub fn planning(history: Option<&ConfigMap>, flags: Settings) -> Result<Planning, String> {
    match history.and_then(recorded_settings) {
        Some(Ok(recorded)) => Ok(Planning {
            settings: recorded.settings().map_err(|e| {
                format!("the operator's settings recorded on {CONFIGMAP_NAMESPACE}/{HISTORY_CONFIGMAP} cannot be used: {e}")
            })?,
            mode: recorded.access_entries,
            recorded: true,
            description: format!(
                "the running operator's settings, recorded on {CONFIGMAP_NAMESPACE}/{HISTORY_CONFIGMAP}: {}",
                recorded.describe()
            ),
        }),
        Some(Err(err)) => Err(err),
        None => Ok(Planning {
            description: format!(
                "this command's flags ({}): the operator recorded no settings on {CONFIGMAP_NAMESPACE}/{HISTORY_CONFIGMAP} (the {SETTINGS_ANNOTATION} annotation; an older operator, or none ran yet), so --access-entries is taken as off: with only, mappings served by their access entries would leave aws-auth again at the next reconcile",
                RecordedSettings::of(&flags, AccessEntriesMode::Off).describe()
            ),
            settings: flags,
            mode: AccessEntriesMode::Off,
            recorded: false,
        }),
    }
}

/// What to restore and how: the revision, the target the operator keeps, and the settings used.
async fn prepare(
    client: &kube::Client,
    api: &Api<ConfigMap>,
    revision: u64,
    flags: Settings,
) -> Result<(Revision, RollbackTarget, Planning), RollbackError> {
    let (history, revisions) = crate::controller::history::load(api).await?;
    let source =
        find(&revisions, revision)
            .cloned()
            .ok_or_else(|| HistoryError::RevisionNotFound {
                revision,
                available: revisions.iter().map(|r| r.revision).collect(),
            })?;
    let planning = planning(history.as_ref(), flags).map_err(RollbackError::Refused)?;
    let mappings = list_mappings(client).await?;
    let (inputs, served) = mapping_inputs(&mappings, planning.mode);
    let mut target =
        rollback_target(&source, &inputs, &planning.settings).map_err(RollbackError::Refused)?;
    if planning.mode == AccessEntriesMode::Only {
        target.notes.push(format!(
            "--access-entries=only: {served} mappings served by their EKS access entries (Ready reason ServedByAccessEntry in their status) get no aws-auth entry; the others follow their mappings, and leave aws-auth when their access entry is confirmed"
        ));
    }
    Ok((source, target, planning))
}

/// Every readable revision, oldest first. Unreadable keys are reported on stderr and skipped, so
/// that one damaged entry never stands in the way of restoring another.
async fn load_revisions(api: &Api<ConfigMap>) -> Result<Vec<Revision>, HistoryError> {
    let (_, revisions) = crate::controller::history::load(api).await?;
    Ok(revisions)
}

/// The revisions, newest first.
pub async fn list(client: kube::Client) -> Result<Vec<RevisionSummary>, HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let revisions = load_revisions(&api).await?;
    Ok(revisions.iter().rev().map(RevisionSummary::of).collect())
}

/// Why a rollback cannot happen, or the API error.
#[derive(Debug)]
pub enum RollbackError {
    History(HistoryError),
    /// The revision cannot be restored (its keys cannot be parsed, ...).
    Refused(String),
}

impl From<HistoryError> for RollbackError {
    fn from(err: HistoryError) -> Self {
        RollbackError::History(err)
    }
}

impl std::fmt::Display for RollbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RollbackError::History(err) => err.fmt(f),
            RollbackError::Refused(message) => f.write_str(message),
        }
    }
}

/// What rolling back to `revision` would change, exactly as the operator's next reconcile
/// keeps it (with the settings the operator recorded; `flags` only when it recorded none);
/// writes nothing.
pub async fn preview(
    client: kube::Client,
    revision: u64,
    flags: Settings,
) -> Result<RollbackReport, RollbackError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    let (source, target, planning) = prepare(&client, &api, revision, flags).await?;
    let current = get_aws_auth(&api).await?;
    let mut report = compare(current.as_ref(), &source, &target);
    report.attempts = 1;
    report.planned_with = planning.description;
    report.settings_recorded = planning.recorded;
    Ok(report)
}

/// Rolls aws-auth back to `revision`: makes sure the current aws-auth is in history (a retry
/// or a failed rollback never adds a second copy, so it cannot push real revisions out), then
/// writes the target with a compare-and-swap replace (create when aws-auth does not exist) and
/// records it. On a conflict it re-reads and retries, up to [`MAX_WRITE_ATTEMPTS`] times; it
/// never forces a write.
pub async fn rollback(
    client: kube::Client,
    revision: u64,
    time: Time,
    keep: usize,
    settings: Settings,
) -> Result<RollbackReport, RollbackError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    // Read before the backup: saving the backup may trim the target revision out of history.
    let (source, target, planning) = prepare(&client, &api, revision, settings).await?;

    for attempt in 1..=MAX_WRITE_ATTEMPTS {
        let current = get_aws_auth(&api).await?;
        let mut report = compare(current.as_ref(), &source, &target);
        report.attempts = attempt;
        report.planned_with = planning.description.clone();
        report.settings_recorded = planning.recorded;
        if !report.changes_anything() {
            info!(
                revision,
                "aws-auth already matches the revision; nothing to write"
            );
            return Ok(report);
        }

        if let Some(cm) = &current {
            let data = cm.data.clone().unwrap_or_default();
            let state = State {
                data: &data,
                managed_annotation: managed_annotation(cm),
            };
            let recorded = record(
                &api,
                state,
                Origin::Observed,
                &format!("before rollback to revision {revision}"),
                time.clone(),
                keep,
            )
            .await?;
            report.backup_revision = Some(recorded.revision);
        }

        let desired = rolled_back(current.as_ref(), &target);
        let result = if current.is_some() {
            api.replace(CONFIGMAP_NAME, &PostParams::default(), &desired)
                .await
        } else {
            api.create(&PostParams::default(), &desired).await
        };
        match result {
            Ok(written) => {
                report.written = true;
                info!(
                    revision,
                    backup_revision = report.backup_revision,
                    attempt,
                    resource_version = written
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap_or_default(),
                    "rolled aws-auth back"
                );
                let state = State {
                    data: &target.data,
                    managed_annotation: Some(&target.managed_annotation),
                };
                if let Err(err) = record(
                    &api,
                    state,
                    Origin::Rollback,
                    &format!("rollback to revision {revision}"),
                    time.clone(),
                    keep,
                )
                .await
                {
                    warn!(error = %err, "rolled back, but could not record the result in history");
                }
                return Ok(report);
            }
            Err(err) if is_status(&err, 409) => {
                warn!(
                    revision,
                    attempt,
                    error = %describe_kube_error(&err),
                    "aws-auth changed since it was read; re-reading"
                );
            }
            Err(source) => {
                return Err(HistoryError::Kube {
                    action: if current.is_some() {
                        "updating"
                    } else {
                        "creating"
                    },
                    name: CONFIGMAP_NAME.to_string(),
                    source,
                }
                .into());
            }
        }
    }
    Err(HistoryError::TooManyConflicts {
        name: CONFIGMAP_NAME.to_string(),
        attempts: MAX_WRITE_ATTEMPTS,
    }
    .into())
}

/// Runs `work` with a client from the current kubeconfig on a single-threaded runtime. The outer
/// error: no runtime or no client.
fn with_client<T, E, F, Fut>(work: F) -> Result<Result<T, E>, String>
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        let client = kube::Client::try_default().await.map_err(|e| {
            format!("cannot connect to the cluster with the current kubeconfig: {e}")
        })?;
        Ok(work(client).await)
    })
}

pub fn run_history(args: HistoryArgs) -> Result<u8, CliError> {
    let rows = match with_client(list) {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => {
            eprintln!("error: {err}");
            return Ok(exit::UNREADABLE);
        }
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(exit::UNREADABLE);
        }
    };
    match args.output {
        OutputFormat::Json => print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        ))?,
        OutputFormat::Text if rows.is_empty() => eprintln!(
            "no revisions recorded in {CONFIGMAP_NAMESPACE}/{HISTORY_CONFIGMAP} (the operator saves one before each write of aws-auth)"
        ),
        OutputFormat::Text => print_stdout(&history_table(&rows))?,
    }
    Ok(exit::OK)
}

fn time_text(time: &Time) -> String {
    time.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The revisions as an aligned table, in the order given.
pub fn history_table(rows: &[RevisionSummary]) -> String {
    let header = [
        "REVISION", "TIME", "ROLES", "USERS", "ACCOUNTS", "BYTES", "REASON",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let mut reason = r.reason.clone();
            if !r.malformed.is_empty() {
                let sections: Vec<&str> = r.malformed.iter().map(|s| s.key()).collect();
                reason.push_str(&format!(" [malformed: {}]", sections.join(", ")));
            }
            [
                r.revision.to_string(),
                time_text(&r.time),
                r.map_roles.to_string(),
                r.map_users.to_string(),
                r.map_accounts.to_string(),
                r.bytes.to_string(),
                reason,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |row: [&str; 7]| {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                text.push_str(cell);
            } else if (2..=5).contains(&i) {
                text.push_str(&format!("{cell:>w$}  ", w = widths[i]));
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &cells {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// The human-readable account of a rollback (or of what it would do).
pub fn rollback_text(report: &RollbackReport) -> String {
    let mut out = format!(
        "{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}{} -> revision {} (saved {}, {}):\n",
        if report.aws_auth_existed {
            ""
        } else {
            " (missing)"
        },
        report.revision,
        time_text(&report.revision_time),
        report.revision_reason,
    );
    for section in &report.sections {
        if section.is_empty() {
            out.push_str(&format!("  {}: no entry changes\n", section.section));
            continue;
        }
        out.push_str(&format!(
            "  {}: {} added, {} removed\n",
            section.section,
            section.added.len(),
            section.removed.len()
        ));
        for entry in &section.added {
            out.push_str(&format!("    + {entry}\n"));
        }
        for entry in &section.removed {
            out.push_str(&format!("    - {entry}\n"));
        }
    }
    if report.data_changed && report.sections.iter().all(SectionDiff::is_empty) {
        out.push_str("  the data differs only in ways the authenticator does not see (formatting, other keys)\n");
    }
    if report.annotation_changed {
        out.push_str(&format!(
            "  the {MANAGED_ANNOTATION} annotation (which entries the operator manages) follows: only principals of existing mappings stay managed\n"
        ));
    }
    for note in &report.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    if !report.planned_with.is_empty() {
        out.push_str(&format!("  planned with {}\n", report.planned_with));
    }
    out
}

/// The sections whose text the authenticator cannot read, as a warning, if any.
fn malformed_warning(report: &RollbackReport) -> Option<String> {
    if report.revision_malformed.is_empty() {
        return None;
    }
    let sections: Vec<&str> = report.revision_malformed.iter().map(|s| s.key()).collect();
    Some(format!(
        "warning: revision {} has malformed {}: the authenticator drops every entry of {}",
        report.revision,
        sections.join(", "),
        if sections.len() == 1 { "it" } else { "them" }
    ))
}

const CONTROLLER_NOTE: &str = "note: this is what the operator's next reconcile keeps: unmanaged entries come back as they were, entries of existing IamIdentityMappings follow their mappings (in --access-entries=only mode, those served by their access entries stay out), and entries whose mapping is gone come back unmanaged.\n";

pub fn run_rollback(args: RollbackArgs) -> Result<u8, CliError> {
    let revision = args.revision;
    let settings = args.policy.settings()?;
    let flags_given = !args.policy.protected.is_empty()
        || !args.policy.allowed_groups.is_empty()
        || !args.policy.denied_groups.is_empty()
        || args.policy.enforce_group_policy;
    let result = if args.yes {
        let time = Time(k8s_openapi::jiff::Timestamp::now());
        let keep = args.keep;
        with_client(move |client| rollback(client, revision, time, keep, settings))
    } else {
        with_client(move |client| preview(client, revision, settings))
    };
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(
            err @ (RollbackError::History(HistoryError::RevisionNotFound { .. })
            | RollbackError::Refused(_)),
        )) => {
            eprintln!("error: {err}");
            return Ok(exit::PROBLEMS);
        }
        Ok(Err(err)) => {
            eprintln!("error: {err}");
            return Ok(exit::UNREADABLE);
        }
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(exit::UNREADABLE);
        }
    };

    if let Some(warning) = malformed_warning(&report) {
        eprintln!("{warning}");
    }
    if flags_given && report.settings_recorded {
        eprintln!(
            "warning: the policy flags given here are ignored: the result is planned with the settings the running operator recorded (see `planned with` below)"
        );
    }
    let mut out = rollback_text(&report);
    if !report.changes_anything() {
        out.push_str(&format!(
            "{CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} already matches revision {revision}; nothing to do.\n"
        ));
    } else if !args.yes {
        out.push_str("nothing was written; run again with --yes to roll back.\n");
        out.push_str(CONTROLLER_NOTE);
    } else {
        if let Some(backup) = report.backup_revision {
            out.push_str(&format!(
                "saved the previous aws-auth as revision {backup} (`aws-auth-operator rollback {backup} --yes` undoes this).\n"
            ));
        }
        out.push_str(&format!(
            "{} {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} with revision {revision}.\n",
            if report.aws_auth_existed {
                "rolled back"
            } else {
                "created"
            }
        ));
        out.push_str(CONTROLLER_NOTE);
    }
    print_stdout(&out)?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IamIdentityMappingSpec;
    use k8s_openapi::jiff::Timestamp;

    const ADMIN: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin\"\n  groups:\n    - \"system:masters\"\n";
    const NODE: &str = "- rolearn: \"arn:aws:iam::111122223333:role/node\"\n  username: \"system:node:{{EC2PrivateDNSName}}\"\n  groups:\n    - \"system:bootstrappers\"\n    - \"system:nodes\"\n";
    const BREAKGLASS: &str = "- userarn: \"arn:aws:iam::111122223333:user/breakglass\"\n  username: \"breakglass\"\n  groups:\n    - \"system:masters\"\n";
    const ADMIN_ARN: &str = "arn:aws:iam::111122223333:role/admin";
    const BREAKGLASS_ARN: &str = "arn:aws:iam::111122223333:user/breakglass";

    fn data(pairs: &[(&str, &str)]) -> ConfigMapData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn managed(arns: &[&str]) -> String {
        ManagedSet::new(arns.iter().map(|a| {
            if a.contains(":user/") {
                PrincipalKey::user(a)
            } else {
                PrincipalKey::role(a)
            }
        }))
        .encode()
    }

    fn revision(n: u64, data: ConfigMapData, annotation: Option<&str>) -> Revision {
        Revision {
            revision: n,
            time: Time(Timestamp::from_second(1_790_000_000).unwrap()),
            reason: "aws-auth-operator rewrote mapRoles".to_string(),
            data,
            managed_annotation: annotation.map(str::to_string),
            origin: Origin::Operator,
        }
    }

    fn aws_auth(data: ConfigMapData, annotation: Option<&str>) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIGMAP_NAME.to_string()),
                namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
                resource_version: Some("77".to_string()),
                annotations: annotation
                    .map(|a| BTreeMap::from([(MANAGED_ANNOTATION.to_string(), a.to_string())])),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    fn admin_mapping(username: &str) -> MappingInput {
        MappingInput {
            name: "admin".to_string(),
            creation_timestamp: None,
            generation: Some(1),
            spec: IamIdentityMappingSpec {
                arn: Some(ADMIN_ARN.to_string()),
                username: Some(username.to_string()),
                groups: vec!["system:masters".to_string()],
                ..Default::default()
            },
            last_rendered: None,
            served_by_access_entry: false,
            access_entry_unknown: false,
            resolved_arn: None,
        }
    }

    fn target(rev: &Revision, mappings: &[MappingInput]) -> RollbackTarget {
        rollback_target(rev, mappings, &Settings::default()).unwrap()
    }

    /// What the operator's next reconcile does to the rolled-back aws-auth.
    fn next_reconcile(target: &RollbackTarget, mappings: &[MappingInput]) -> crate::plan::Plan {
        let live = LiveAwsAuth {
            data: Some(target.data.clone()),
            managed: ManagedSet::decode(&target.managed_annotation).unwrap(),
            recovery: None,
            frozen: false,
            mappings_incomplete: false,
        };
        plan(mappings, &live, &Settings::default())
    }

    #[test]
    fn diff_by_section() {
        let both = format!("{ADMIN}{NODE}");
        let current = data(&[("mapRoles", ADMIN), ("mapAccounts", "- \"111122223333\"\n")]);
        let target = data(&[("mapRoles", &both)]);
        let diff = diff(&current, &target);
        assert_eq!(diff.len(), 3);
        assert_eq!(diff[0].section, Section::MapRoles);
        assert_eq!(diff[0].removed, Vec::<String>::new());
        assert_eq!(
            diff[0].added,
            [
                "arn:aws:iam::111122223333:role/node -> username \"system:node:{{EC2PrivateDNSName}}\", groups [\"system:bootstrappers\", \"system:nodes\"]"
            ]
        );
        assert!(diff[1].is_empty());
        assert_eq!(diff[2].removed, ["account \"111122223333\""]);
        assert!(diff[2].added.is_empty());
    }

    #[test]
    fn diff_counts_duplicates_and_changed_entries() {
        let twice = format!("{ADMIN}{ADMIN}");
        let diff_dup = diff(
            &data(&[("mapRoles", &twice)]),
            &data(&[("mapRoles", ADMIN)]),
        );
        assert_eq!(diff_dup[0].removed.len(), 1);
        assert!(diff_dup[0].added.is_empty());
        let renamed = ADMIN.replace("username: \"admin\"", "username: \"root\"");
        let diff_changed = diff(
            &data(&[("mapRoles", ADMIN)]),
            &data(&[("mapRoles", &renamed)]),
        );
        assert_eq!(diff_changed[0].added.len(), 1);
        assert_eq!(diff_changed[0].removed.len(), 1);
        assert!(diff_changed[0].added[0].contains("\"root\""));
    }

    /// The break-glass trap: a revision marks break-glass managed, but its mapping is gone.
    /// The rollback brings it back unmanaged, so the next reconcile keeps it (the dry run says
    /// exactly what stays).
    #[test]
    fn an_entry_whose_mapping_is_gone_comes_back_unmanaged_and_stays() {
        let rev = revision(
            3,
            data(&[("mapRoles", NODE), ("mapUsers", BREAKGLASS)]),
            Some(&managed(&[BREAKGLASS_ARN])),
        );
        let target = target(&rev, &[]);
        let report = compare(
            Some(&aws_auth(data(&[("mapRoles", NODE)]), Some(&managed(&[])))),
            &rev,
            &target,
        );
        assert_eq!(report.sections[1].added.len(), 1, "{report:?}");
        assert!(report.sections[1].added[0].starts_with(BREAKGLASS_ARN));
        let next = next_reconcile(&target, &[]);
        assert!(
            !next.changed,
            "the next reconcile must keep what the rollback restored"
        );
        assert!(next.notes.is_empty());
    }

    /// A managed entry of an existing mapping follows the mapping, so the next reconcile has
    /// nothing to repair (no DriftRepaired after a rollback).
    #[test]
    fn entries_of_existing_mappings_follow_their_mappings() {
        let old = ADMIN.replace("\"admin\"", "\"old-admin\"");
        let rev = revision(
            2,
            data(&[("mapRoles", &format!("{old}{NODE}"))]),
            Some(&managed(&[ADMIN_ARN])),
        );
        let mappings = [admin_mapping("admin")];
        let target = target(&rev, &mappings);
        let roles = parse_data(&target.data).entries.roles;
        assert_eq!(roles.len(), 2);
        assert!(roles.iter().any(|r| r.username == "admin"));
        assert!(roles.iter().all(|r| r.username != "old-admin"));
        let next = next_reconcile(&target, &mappings);
        assert!(!next.changed);
        assert!(
            next.outcomes
                .values()
                .all(|o| matches!(o, Outcome::Rendered { drift: None, .. }))
        );
    }

    #[test]
    fn a_revision_that_cannot_be_parsed_is_refused() {
        let rev = revision(3, data(&[("mapRoles", "- rolearn: [\n")]), None);
        let err = rollback_target(&rev, &[], &Settings::default()).unwrap_err();
        assert!(err.starts_with("revision 3 cannot be restored"), "{err}");
    }

    #[test]
    fn compare_detects_data_and_annotation_changes() {
        let rev = revision(1, data(&[("mapRoles", ADMIN)]), None);
        let target = target(&rev, &[]);
        let live = aws_auth(
            data(&[("mapRoles", ADMIN)]),
            Some(&target.managed_annotation),
        );
        assert!(!compare(Some(&live), &rev, &target).changes_anything());
        let other_annotation = aws_auth(data(&[("mapRoles", ADMIN)]), Some("{}"));
        let report = compare(Some(&other_annotation), &rev, &target);
        assert!(report.annotation_changed && !report.data_changed);
        // Formatting only: the data changes but no entry does.
        let reformatted = ADMIN.replace(
            "  groups:\n    - \"system:masters\"\n",
            "  groups: [\"system:masters\"]\n",
        );
        let live = aws_auth(
            data(&[("mapRoles", &reformatted)]),
            Some(&target.managed_annotation),
        );
        let format_only = compare(Some(&live), &rev, &target);
        assert!(format_only.data_changed);
        assert!(format_only.sections.iter().all(SectionDiff::is_empty));
        assert!(rollback_text(&format_only).contains("only in ways"));
        // No aws-auth at all: restoring creates it.
        let missing = compare(None, &rev, &target);
        assert!(missing.data_changed && !missing.aws_auth_existed);
    }

    #[test]
    fn rolled_back_keeps_resource_version_and_sets_annotation() {
        let mut live = aws_auth(data(&[("mapRoles", ADMIN)]), Some("old"));
        live.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
        let target = RollbackTarget {
            data: data(&[("mapRoles", NODE)]),
            managed_annotation: "new".to_string(),
            notes: Vec::new(),
        };
        let cm = rolled_back(Some(&live), &target);
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(cm.data, Some(data(&[("mapRoles", NODE)])));
        assert_eq!(managed_annotation(&cm), Some("new"));
        assert_eq!(cm.metadata.labels, live.metadata.labels);
        let cm = rolled_back(None, &target);
        assert_eq!(cm.metadata.name.as_deref(), Some("aws-auth"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cm.metadata.resource_version, None);
    }

    #[test]
    fn rollback_text_lists_changes_per_section_and_notes() {
        let live = aws_auth(data(&[("mapRoles", NODE)]), None);
        let rev = revision(4, data(&[("mapRoles", ADMIN)]), None);
        let mut target = target(&rev, &[]);
        target.notes.push("something to know".to_string());
        let report = compare(Some(&live), &rev, &target);
        let text = rollback_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kube-system/aws-auth -> revision 4 (saved 2026-09-21T14:13:20Z, aws-auth-operator rewrote mapRoles):"
        );
        assert_eq!(lines[1], "  mapRoles: 1 added, 1 removed");
        assert!(lines[2].starts_with("    + arn:aws:iam::111122223333:role/admin -> "));
        assert!(lines[3].starts_with("    - arn:aws:iam::111122223333:role/node -> "));
        assert_eq!(lines[4], "  mapUsers: no entry changes");
        assert_eq!(lines[5], "  mapAccounts: no entry changes");
        assert!(lines[6].contains("annotation"));
        assert_eq!(lines[7], "  note: something to know");
    }

    #[test]
    fn table_is_aligned_and_marks_malformed_revisions() {
        let rows = vec![
            RevisionSummary::of(&revision(12, data(&[("mapRoles", ADMIN)]), None)),
            RevisionSummary::of(&revision(3, data(&[("mapRoles", "- [\n")]), None)),
        ];
        assert_eq!(rows[0].map_roles, 1);
        assert_eq!(rows[0].bytes, "mapRoles".len() + ADMIN.len());
        let table = history_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("REVISION  TIME"));
        assert!(lines[1].starts_with("12        2026-09-21T"));
        assert!(lines[2].ends_with("[malformed: mapRoles]"));
        let reason_at = lines[0].find("REASON").unwrap();
        assert_eq!(lines[1].find("aws-auth-operator"), Some(reason_at));
    }

    #[test]
    fn revision_summary_serialises_in_camel_case() {
        let row = RevisionSummary::of(&revision(1, data(&[("mapRoles", ADMIN)]), Some("a")));
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(json["mapRoles"], 1);
        assert_eq!(json["hasManagedAnnotation"], true);
        assert_eq!(json["time"], "2026-09-21T14:13:20Z");
    }

    mod io {
        use super::*;
        use crate::controller::history::{load, mock, with_state};

        fn seed(
            state: &mut mock::State,
            live: ConfigMapData,
            revisions: &[(ConfigMapData, Option<&str>)],
        ) {
            state.put(aws_auth(live, Some("live-annotation")));
            let mut history = None;
            for (i, (data, annotation)) in revisions.iter().enumerate() {
                let time = Time(Timestamp::from_second(1_790_000_000 + i as i64 * 3600).unwrap());
                let state = State {
                    data,
                    managed_annotation: *annotation,
                };
                let (cm, _) =
                    with_state(history, state, Origin::Operator, "seeded", time, 10).unwrap();
                history = Some(cm);
            }
            if let Some(cm) = history {
                state.put(cm);
            }
        }

        fn now() -> Time {
            Time(Timestamp::from_second(1_800_000_000).unwrap())
        }

        fn live(state: &mock::State) -> ConfigMap {
            state.configmaps[CONFIGMAP_NAME].clone()
        }

        fn settings() -> Settings {
            Settings::default()
        }

        #[tokio::test]
        async fn preview_writes_nothing() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            let report = preview(client, 1, settings()).await.unwrap();
            assert!(!report.written);
            assert_eq!(report.sections[0].added.len(), 1);
            assert_eq!(report.sections[0].removed.len(), 1);
            let state = state.lock().unwrap();
            assert!(state.calls.iter().all(|c| c.starts_with("GET ")));
        }

        #[tokio::test]
        async fn rollback_saves_the_current_data_then_restores_the_revision() {
            let (client, state) = mock::start();
            let target = format!("{ADMIN}{NODE}");
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[(data(&[("mapRoles", &target)]), None)],
            );
            let report = rollback(client.clone(), 1, now(), 10, settings())
                .await
                .unwrap();
            assert!(report.written);
            assert_eq!(report.backup_revision, Some(2));
            assert_eq!(report.attempts, 1);
            assert_eq!(report.sections[0].added.len(), 1);
            assert!(report.sections[0].removed.is_empty());
            {
                let state = state.lock().unwrap();
                let cm = live(&state);
                assert_eq!(cm.data, Some(data(&[("mapRoles", &target)])));
            }
            let (_, revisions) = load(&Api::namespaced(client, "kube-system")).await.unwrap();
            let backup = find(&revisions, 2).unwrap();
            assert_eq!(backup.reason, "before rollback to revision 1");
            assert_eq!(backup.data, data(&[("mapRoles", NODE)]));
            assert_eq!(
                backup.managed_annotation.as_deref(),
                Some("live-annotation")
            );
            let result = find(&revisions, 3).unwrap();
            assert_eq!(result.origin, Origin::Rollback);
            assert_eq!(result.reason, "rollback to revision 1");
        }

        #[tokio::test]
        async fn rollback_rereads_on_conflict_and_saves_what_it_overwrites() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            // EKS adds something between our read and our write.
            state.lock().unwrap().edits_before_put.push((
                CONFIGMAP_NAME.to_string(),
                Box::new(|cm: &mut ConfigMap| {
                    cm.data.get_or_insert_with(BTreeMap::new).insert(
                        "mapAccounts".to_string(),
                        "- \"111122223333\"\n".to_string(),
                    );
                }),
            ));
            let report = rollback(client.clone(), 1, now(), 10, settings())
                .await
                .unwrap();
            assert!(report.written);
            assert_eq!(report.attempts, 2);
            // The report is computed against what was actually overwritten.
            assert_eq!(report.sections[2].removed, ["account \"111122223333\""]);
            assert_eq!(report.backup_revision, Some(3));
            let (_, revisions) = load(&Api::namespaced(client, "kube-system")).await.unwrap();
            assert_eq!(
                find(&revisions, 3)
                    .unwrap()
                    .data
                    .get("mapAccounts")
                    .map(String::as_str),
                Some("- \"111122223333\"\n")
            );
            assert_eq!(
                live(&state.lock().unwrap()).data,
                Some(data(&[("mapRoles", ADMIN)]))
            );
        }

        /// Rollbacks that fail again and again save the state they would overwrite once, so
        /// they never push the real revisions out of the history.
        #[tokio::test]
        async fn failed_rollbacks_do_not_flush_the_history() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[
                    (data(&[("mapRoles", ADMIN)]), None),
                    (data(&[("mapRoles", &format!("{ADMIN}{NODE}"))]), None),
                ],
            );
            for _ in 0..3 {
                for _ in 0..MAX_WRITE_ATTEMPTS {
                    state.lock().unwrap().edits_before_put.push((
                        CONFIGMAP_NAME.to_string(),
                        Box::new(|cm: &mut ConfigMap| {
                            cm.metadata.labels = Some(BTreeMap::new());
                        }),
                    ));
                }
                let err = rollback(client.clone(), 1, now(), 3, settings())
                    .await
                    .unwrap_err();
                assert!(err.to_string().contains("kept changing"), "{err}");
            }
            let (_, revisions) = load(&Api::namespaced(client, "kube-system")).await.unwrap();
            let numbers: Vec<u64> = revisions.iter().map(|r| r.revision).collect();
            assert_eq!(numbers, [1, 2, 3], "one backup, the real revisions kept");
        }

        #[tokio::test]
        async fn rollback_to_the_current_state_writes_nothing() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", ADMIN)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            // The live annotation already says what the rollback would.
            {
                let mut state = state.lock().unwrap();
                let mut cm = live(&state);
                cm.metadata.annotations = Some(BTreeMap::from([(
                    MANAGED_ANNOTATION.to_string(),
                    ManagedSet::default().encode(),
                )]));
                state.put(cm);
            }
            let report = rollback(client, 1, now(), 10, settings()).await.unwrap();
            assert!(!report.written && !report.changes_anything(), "{report:?}");
            assert!(
                state
                    .lock()
                    .unwrap()
                    .calls
                    .iter()
                    .all(|c| c.starts_with("GET "))
            );
        }

        #[tokio::test]
        async fn rollback_creates_a_missing_aws_auth() {
            let (client, state) = mock::start();
            {
                let mut state = state.lock().unwrap();
                seed(
                    &mut state,
                    ConfigMapData::new(),
                    &[(data(&[("mapRoles", ADMIN)]), None)],
                );
                state.configmaps.remove(CONFIGMAP_NAME);
            }
            let report = rollback(client, 1, now(), 10, settings()).await.unwrap();
            assert!(report.written && !report.aws_auth_existed);
            assert_eq!(report.backup_revision, None);
            let state = state.lock().unwrap();
            assert_eq!(live(&state).data, Some(data(&[("mapRoles", ADMIN)])));
            assert!(state.calls.iter().any(|c| c == "POST aws-auth"));
        }

        #[tokio::test]
        async fn unknown_revision_and_api_errors() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", ADMIN)]),
                &[(data(&[("mapRoles", NODE)]), None)],
            );
            let err = rollback(client.clone(), 9, now(), 10, settings())
                .await
                .unwrap_err();
            assert!(matches!(
                &err,
                RollbackError::History(HistoryError::RevisionNotFound { revision: 9, available }) if available == &[1]
            ));
            assert!(
                state
                    .lock()
                    .unwrap()
                    .calls
                    .iter()
                    .all(|c| c.starts_with("GET "))
            );
            state
                .lock()
                .unwrap()
                .fail
                .insert(CONFIGMAP_NAME.to_string(), 403);
            let err = rollback(client.clone(), 1, now(), 10, settings())
                .await
                .unwrap_err();
            assert!(matches!(
                err,
                RollbackError::History(HistoryError::Kube {
                    action: "reading",
                    ..
                })
            ));
            assert_eq!(list(client).await.unwrap().len(), 1);
        }
    }
}
