//! `history` and `rollback`: look at and restore the revisions of aws-auth the operator saved in
//! `kube-system/aws-auth-operator-history`, through the current kubeconfig. The arguments and
//! the printing; `store` reads, decides and writes.

use std::future::Future;

use clap::Args;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{CliError, OutputFormat, PolicyArgs, exit, print_stdout};
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use crate::plan::MANAGED_ANNOTATION;
use crate::store::revisions::{
    DEFAULT_HISTORY_LIMIT, HISTORY_CONFIGMAP, HistoryError, RevisionSummary,
};
use crate::store::rollback::{RollbackError, RollbackReport, SectionDiff};
use crate::store::writer::{list, preview, rollback};

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

/// Says what could not be read or reached, and exits with [`exit::UNREADABLE`].
fn unreadable(message: impl std::fmt::Display) -> Result<u8, CliError> {
    eprintln!("error: {message}");
    Ok(exit::UNREADABLE)
}

pub fn run_history(args: HistoryArgs) -> Result<u8, CliError> {
    let rows = match with_client(list) {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => return unreadable(err),
        Err(message) => return unreadable(message),
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
        Ok(Err(err)) => return unreadable(err),
        Err(message) => return unreadable(message),
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
    use crate::store::rollback::compare;
    use crate::store::rollback::tests::{ADMIN, NODE, aws_auth, data, revision, target};

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

    #[test]
    fn a_change_the_authenticator_does_not_see_is_said_so() {
        let rev = revision(1, data(&[("mapRoles", ADMIN)]), None);
        let mut report = compare(None, &rev, &target(&rev, &[]));
        for section in &mut report.sections {
            section.added.clear();
        }
        assert!(report.data_changed);
        assert!(rollback_text(&report).contains("only in ways"));
    }
}
