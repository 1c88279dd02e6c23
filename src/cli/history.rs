//! `history` and `rollback`: look at and restore the revisions of aws-auth the operator saved in
//! `kube-system/aws-auth-operator-history`, through the current kubeconfig.

use std::collections::BTreeMap;
use std::future::Future;

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use tracing::{info, warn};

use super::{CliError, OutputFormat, exit, print_stdout};
use crate::awsauth::{
    AwsAuthEntries, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData, Entry, Section, data_size,
    parse_data,
};
use crate::controller::history::{
    DEFAULT_HISTORY_LIMIT, HISTORY_CONFIGMAP, HistoryError, MAX_WRITE_ATTEMPTS, Revision,
    decode_lossy, describe_kube_error, find, is_status, record,
};
use crate::plan::MANAGED_ANNOTATION;

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
pub fn compare(current: Option<&ConfigMap>, target: &Revision) -> RollbackReport {
    let empty = ConfigMapData::new();
    let current_data = current.and_then(|cm| cm.data.as_ref()).unwrap_or(&empty);
    let annotation_changed = match (&target.managed_annotation, current) {
        (None, _) => false,
        (Some(wanted), Some(cm)) => managed_annotation(cm) != Some(wanted.as_str()),
        (Some(_), None) => true,
    };
    RollbackReport {
        revision: target.revision,
        revision_time: target.time.clone(),
        revision_reason: target.reason.clone(),
        aws_auth_existed: current.is_some(),
        sections: diff(current_data, &target.data),
        data_changed: current.is_none() || *current_data != target.data,
        annotation_changed,
        revision_malformed: parse_data(&target.data).malformed.into_iter().collect(),
        backup_revision: None,
        written: false,
        attempts: 0,
    }
}

/// aws-auth as it is after rolling back `current` to `target`: the revision's data, its managed
/// annotation when it has one, and everything else (resourceVersion included) as read.
pub fn rolled_back(current: Option<&ConfigMap>, target: &Revision) -> ConfigMap {
    let mut cm = current.cloned().unwrap_or_else(|| ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIGMAP_NAME.to_string()),
            namespace: Some(CONFIGMAP_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    });
    cm.data = Some(target.data.clone());
    if let Some(annotation) = &target.managed_annotation {
        cm.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(MANAGED_ANNOTATION.to_string(), annotation.clone());
    }
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

/// Every readable revision, oldest first. Unreadable keys are reported on stderr and skipped, so
/// that one damaged entry never stands in the way of restoring another.
async fn load_revisions(api: &Api<ConfigMap>) -> Result<Vec<Revision>, HistoryError> {
    let cm = match api.get(HISTORY_CONFIGMAP).await {
        Ok(cm) => cm,
        Err(err) if is_status(&err, 404) => return Ok(Vec::new()),
        Err(source) => {
            return Err(HistoryError::Kube {
                action: "reading",
                name: HISTORY_CONFIGMAP.to_string(),
                source,
            });
        }
    };
    let (revisions, errors) = decode_lossy(&cm);
    for err in errors {
        warn!(configmap = HISTORY_CONFIGMAP, error = %err, "skipping an unreadable revision");
    }
    Ok(revisions)
}

async fn fetch_revision(api: &Api<ConfigMap>, revision: u64) -> Result<Revision, HistoryError> {
    let revisions = load_revisions(api).await?;
    find(&revisions, revision)
        .cloned()
        .ok_or_else(|| HistoryError::RevisionNotFound {
            revision,
            available: revisions.iter().map(|r| r.revision).collect(),
        })
}

/// The revisions, newest first.
pub async fn list(client: kube::Client) -> Result<Vec<RevisionSummary>, HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let revisions = load_revisions(&api).await?;
    Ok(revisions.iter().rev().map(RevisionSummary::of).collect())
}

/// What rolling back to `revision` would change; writes nothing.
pub async fn preview(client: kube::Client, revision: u64) -> Result<RollbackReport, HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let target = fetch_revision(&api, revision).await?;
    let current = get_aws_auth(&api).await?;
    let mut report = compare(current.as_ref(), &target);
    report.attempts = 1;
    Ok(report)
}

/// Rolls aws-auth back to `revision`: saves the current aws-auth as a new revision (keeping
/// `keep`), then writes the revision's data and managed annotation with a compare-and-swap
/// replace (create when aws-auth does not exist). On a conflict it re-reads and retries, up to
/// [`MAX_WRITE_ATTEMPTS`] times; it never forces a write.
pub async fn rollback(
    client: kube::Client,
    revision: u64,
    time: Time,
    keep: usize,
) -> Result<RollbackReport, HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    // Read before the backup: saving the backup may trim the target revision out of history.
    let target = fetch_revision(&api, revision).await?;
    let reason = format!("before rollback to revision {revision}");
    // What was saved last, so that a retry saves again only when aws-auth changed meanwhile.
    let mut saved: Option<(ConfigMapData, Option<String>, u64)> = None;

    for attempt in 1..=MAX_WRITE_ATTEMPTS {
        let current = get_aws_auth(&api).await?;
        let mut report = compare(current.as_ref(), &target);
        report.attempts = attempt;
        if !report.changes_anything() {
            info!(
                revision,
                "aws-auth already matches the revision; nothing to write"
            );
            report.backup_revision = saved.as_ref().map(|(_, _, n)| *n);
            return Ok(report);
        }

        if let Some(cm) = &current {
            let data = cm.data.clone().unwrap_or_default();
            let annotation = managed_annotation(cm).map(str::to_string);
            let backup = match &saved {
                Some((d, a, n)) if *d == data && *a == annotation => *n,
                _ => {
                    let n = record(
                        &api,
                        &data,
                        annotation.as_deref(),
                        &reason,
                        time.clone(),
                        keep,
                    )
                    .await?;
                    saved = Some((data, annotation, n));
                    n
                }
            };
            report.backup_revision = Some(backup);
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
                });
            }
        }
    }
    Err(HistoryError::TooManyConflicts {
        name: CONFIGMAP_NAME.to_string(),
        attempts: MAX_WRITE_ATTEMPTS,
    })
}

/// Runs `work` with a client from the current kubeconfig on a single-threaded runtime. The outer
/// error: no runtime or no client.
fn with_client<T, F, Fut>(work: F) -> Result<Result<T, HistoryError>, String>
where
    F: FnOnce(kube::Client) -> Fut,
    Fut: Future<Output = Result<T, HistoryError>>,
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
            "  the {MANAGED_ANNOTATION} annotation (which entries the operator manages) is restored from the revision\n"
        ));
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

const CONTROLLER_NOTE: &str = "note: the controller re-applies the entries managed by IamIdentityMapping resources on its next reconcile (managed entries always follow their mappings); a rollback mainly restores unmanaged entries.\n";

pub fn run_rollback(args: RollbackArgs) -> Result<u8, CliError> {
    let revision = args.revision;
    let result = if args.yes {
        let time = Time(k8s_openapi::jiff::Timestamp::now());
        let keep = args.keep;
        with_client(move |client| rollback(client, revision, time, keep))
    } else {
        with_client(move |client| preview(client, revision))
    };
    let report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(err @ HistoryError::RevisionNotFound { .. })) => {
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
    use k8s_openapi::jiff::Timestamp;

    const ADMIN: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin\"\n  groups:\n    - \"system:masters\"\n";
    const NODE: &str = "- rolearn: \"arn:aws:iam::111122223333:role/node\"\n  username: \"system:node:{{EC2PrivateDNSName}}\"\n  groups:\n    - \"system:bootstrappers\"\n    - \"system:nodes\"\n";

    fn data(pairs: &[(&str, &str)]) -> ConfigMapData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn revision(n: u64, data: ConfigMapData, annotation: Option<&str>) -> Revision {
        Revision {
            revision: n,
            time: Time(Timestamp::from_second(1_790_000_000).unwrap()),
            reason: "before aws-auth-operator rewrote mapRoles".to_string(),
            data,
            managed_annotation: annotation.map(str::to_string),
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

    #[test]
    fn diff_of_a_malformed_section_removes_everything() {
        let broken = data(&[("mapRoles", "- rolearn: [\n")]);
        let d = diff(&data(&[("mapRoles", ADMIN)]), &broken);
        assert_eq!(d[0].removed.len(), 1);
        let report = compare(
            Some(&aws_auth(data(&[("mapRoles", ADMIN)]), None)),
            &revision(3, broken, None),
        );
        assert_eq!(report.revision_malformed, [Section::MapRoles]);
        assert!(malformed_warning(&report).is_some());
    }

    #[test]
    fn compare_detects_data_and_annotation_changes() {
        let live = aws_auth(data(&[("mapRoles", ADMIN)]), Some("{\"version\":1}"));
        let same = compare(
            Some(&live),
            &revision(1, data(&[("mapRoles", ADMIN)]), None),
        );
        assert!(!same.changes_anything());
        let same_annotation = compare(
            Some(&live),
            &revision(1, data(&[("mapRoles", ADMIN)]), Some("{\"version\":1}")),
        );
        assert!(!same_annotation.changes_anything());
        let other_annotation = compare(
            Some(&live),
            &revision(
                1,
                data(&[("mapRoles", ADMIN)]),
                Some("{\"version\":1,\"accounts\":[]}"),
            ),
        );
        assert!(other_annotation.annotation_changed && !other_annotation.data_changed);
        // Formatting only: the data changes but no entry does.
        let reformatted = ADMIN.replace(
            "  groups:\n    - \"system:masters\"\n",
            "  groups: [\"system:masters\"]\n",
        );
        let format_only = compare(
            Some(&live),
            &revision(1, data(&[("mapRoles", &reformatted)]), None),
        );
        assert!(format_only.data_changed);
        assert!(format_only.sections.iter().all(SectionDiff::is_empty));
        assert!(rollback_text(&format_only).contains("only in ways"));
        // No aws-auth at all: restoring creates it.
        let missing = compare(None, &revision(1, ConfigMapData::new(), None));
        assert!(missing.data_changed && !missing.aws_auth_existed);
    }

    #[test]
    fn rolled_back_keeps_resource_version_and_sets_annotation() {
        let mut live = aws_auth(data(&[("mapRoles", ADMIN)]), Some("old"));
        live.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
        let target = revision(2, data(&[("mapRoles", NODE)]), Some("new"));
        let cm = rolled_back(Some(&live), &target);
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(cm.data, Some(data(&[("mapRoles", NODE)])));
        assert_eq!(managed_annotation(&cm), Some("new"));
        assert_eq!(cm.metadata.labels, live.metadata.labels);
        // Without an annotation in the revision, the live one stays.
        let cm = rolled_back(Some(&live), &revision(2, data(&[]), None));
        assert_eq!(managed_annotation(&cm), Some("old"));
        assert_eq!(cm.data, Some(ConfigMapData::new()));
        // No live aws-auth: a fresh object without resourceVersion.
        let cm = rolled_back(None, &target);
        assert_eq!(cm.metadata.name.as_deref(), Some("aws-auth"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cm.metadata.resource_version, None);
    }

    #[test]
    fn rollback_text_lists_changes_per_section() {
        let live = aws_auth(data(&[("mapRoles", NODE)]), None);
        let report = compare(
            Some(&live),
            &revision(4, data(&[("mapRoles", ADMIN)]), Some("a")),
        );
        let text = rollback_text(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kube-system/aws-auth -> revision 4 (saved 2026-09-21T14:13:20Z, before aws-auth-operator rewrote mapRoles):"
        );
        assert_eq!(lines[1], "  mapRoles: 1 added, 1 removed");
        assert!(lines[2].starts_with("    + arn:aws:iam::111122223333:role/admin -> "));
        assert!(lines[3].starts_with("    - arn:aws:iam::111122223333:role/node -> "));
        assert_eq!(lines[4], "  mapUsers: no entry changes");
        assert_eq!(lines[5], "  mapAccounts: no entry changes");
        assert!(lines[6].contains("annotation"));
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
        assert_eq!(lines[1].find("before"), Some(reason_at));
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
        use crate::controller::history::{load, mock, with_revision};

        fn seed(
            state: &mut mock::State,
            live: ConfigMapData,
            revisions: &[(ConfigMapData, Option<&str>)],
        ) {
            state.put(aws_auth(live, Some("live-annotation")));
            let mut history = None;
            for (i, (data, annotation)) in revisions.iter().enumerate() {
                let time = Time(Timestamp::from_second(1_790_000_000 + i as i64).unwrap());
                let (cm, _) =
                    with_revision(history, data, *annotation, "seeded", time, 10).unwrap();
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

        #[tokio::test]
        async fn preview_writes_nothing() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            let report = preview(client, 1).await.unwrap();
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
                &[(data(&[("mapRoles", &target)]), Some("old-annotation"))],
            );
            let report = rollback(client.clone(), 1, now(), 10).await.unwrap();
            assert!(report.written);
            assert_eq!(report.backup_revision, Some(2));
            assert_eq!(report.attempts, 1);
            assert_eq!(report.sections[0].added.len(), 1);
            assert!(report.sections[0].removed.is_empty());
            {
                let state = state.lock().unwrap();
                let cm = live(&state);
                assert_eq!(cm.data, Some(data(&[("mapRoles", &target)])));
                assert_eq!(managed_annotation(&cm), Some("old-annotation"));
                assert_eq!(
                    state.calls.last().map(String::as_str),
                    Some("PUT aws-auth"),
                    "{:?}",
                    state.calls
                );
            }
            let (_, revisions) = load(&Api::namespaced(client, "kube-system")).await.unwrap();
            let backup = find(&revisions, 2).unwrap();
            assert_eq!(backup.reason, "before rollback to revision 1");
            assert_eq!(backup.data, data(&[("mapRoles", NODE)]));
            assert_eq!(
                backup.managed_annotation.as_deref(),
                Some("live-annotation")
            );
            assert_eq!(backup.time, now());
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
            let report = rollback(client.clone(), 1, now(), 10).await.unwrap();
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

        #[tokio::test]
        async fn rollback_survives_its_target_being_trimmed_by_the_backup() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", NODE)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            let report = rollback(client, 1, now(), 1).await.unwrap();
            assert!(report.written);
            let state = state.lock().unwrap();
            assert_eq!(live(&state).data, Some(data(&[("mapRoles", ADMIN)])));
            let history =
                crate::controller::history::decode(&state.configmaps[HISTORY_CONFIGMAP]).unwrap();
            assert_eq!(history.iter().map(|r| r.revision).collect::<Vec<_>>(), [2]);
        }

        #[tokio::test]
        async fn rollback_to_the_current_state_writes_nothing() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", ADMIN)]),
                &[(data(&[("mapRoles", ADMIN)]), None)],
            );
            let report = rollback(client, 1, now(), 10).await.unwrap();
            assert!(!report.written && !report.changes_anything());
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
            let report = rollback(client, 1, now(), 10).await.unwrap();
            assert!(report.written && !report.aws_auth_existed);
            assert_eq!(report.backup_revision, None);
            let state = state.lock().unwrap();
            assert_eq!(live(&state).data, Some(data(&[("mapRoles", ADMIN)])));
            assert_eq!(
                state.calls.last().map(String::as_str),
                Some("POST aws-auth")
            );
        }

        #[tokio::test]
        async fn unknown_revision_and_api_errors() {
            let (client, state) = mock::start();
            seed(
                &mut state.lock().unwrap(),
                data(&[("mapRoles", ADMIN)]),
                &[(data(&[("mapRoles", NODE)]), None)],
            );
            let err = rollback(client.clone(), 9, now(), 10).await.unwrap_err();
            assert!(matches!(
                &err,
                HistoryError::RevisionNotFound { revision: 9, available } if available == &[1]
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
            let err = rollback(client.clone(), 1, now(), 10).await.unwrap_err();
            assert!(matches!(
                err,
                HistoryError::Kube {
                    action: "reading",
                    ..
                }
            ));
            let err = list(client).await;
            assert_eq!(err.unwrap().len(), 1);
        }
    }
}
