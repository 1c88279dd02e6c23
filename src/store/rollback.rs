//! What restoring a revision of aws-auth writes, and what it changes (pure): the revision with
//! the current mappings' rules applied, exactly what the operator's next reconcile keeps.
//! `store::writer::{preview, rollback}` read the cluster and write it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use thiserror::Error;

use super::managed_annotation;
use super::revisions::{
    HISTORY_CONFIGMAP, HistoryError, RecordedSettings, Revision, SETTINGS_ANNOTATION,
    recorded_settings,
};
use crate::accessentries::AccessEntriesMode;
use crate::api::IamIdentityMapping;
use crate::arn::PrincipalKey;
use crate::awsauth::{
    AwsAuthEntries, CONFIGMAP_NAMESPACE, ConfigMapData, Entry, Section, parse_data,
};
use crate::plan::{LiveAwsAuth, ManagedSet, MappingInput, Outcome, Settings, plan};
use crate::validate::validate_resolved;

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
            let mut input = MappingInput::from_mapping(m);
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

/// Why a rollback cannot happen, or the API error.
#[derive(Debug, Error)]
pub enum RollbackError {
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The revision cannot be restored (its keys cannot be parsed, ...).
    #[error("{0}")]
    Refused(String),
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::api::IamIdentityMappingSpec;
    use crate::awsauth::CONFIGMAP_NAME;
    use crate::plan::MANAGED_ANNOTATION;
    use crate::store::aws_auth_with;
    use crate::store::revisions::Origin;

    pub(crate) const ADMIN: &str = "- rolearn: \"arn:aws:iam::111122223333:role/admin\"\n  username: \"admin\"\n  groups:\n    - \"system:masters\"\n";
    pub(crate) const NODE: &str = "- rolearn: \"arn:aws:iam::111122223333:role/node\"\n  username: \"system:node:{{EC2PrivateDNSName}}\"\n  groups:\n    - \"system:bootstrappers\"\n    - \"system:nodes\"\n";
    pub(crate) const BREAKGLASS: &str = "- userarn: \"arn:aws:iam::111122223333:user/breakglass\"\n  username: \"breakglass\"\n  groups:\n    - \"system:masters\"\n";
    pub(crate) const ADMIN_ARN: &str = "arn:aws:iam::111122223333:role/admin";
    pub(crate) const BREAKGLASS_ARN: &str = "arn:aws:iam::111122223333:user/breakglass";

    pub(crate) fn data(pairs: &[(&str, &str)]) -> ConfigMapData {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn managed(arns: &[&str]) -> String {
        ManagedSet::new(arns.iter().map(|a| {
            if a.contains(":user/") {
                PrincipalKey::user(a)
            } else {
                PrincipalKey::role(a)
            }
        }))
        .encode()
    }

    pub(crate) fn revision(n: u64, data: ConfigMapData, annotation: Option<&str>) -> Revision {
        Revision {
            revision: n,
            time: Time(Timestamp::from_second(1_790_000_000).unwrap()),
            reason: "aws-auth-operator rewrote mapRoles".to_string(),
            data,
            managed_annotation: annotation.map(str::to_string),
            origin: Origin::Operator,
        }
    }

    pub(crate) fn aws_auth(data: ConfigMapData, annotation: Option<&str>) -> ConfigMap {
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

    pub(crate) fn admin_mapping(username: &str) -> MappingInput {
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

    pub(crate) fn target(rev: &Revision, mappings: &[MappingInput]) -> RollbackTarget {
        rollback_target(rev, mappings, &Settings::default()).unwrap()
    }

    /// What the operator's next reconcile does to the rolled-back aws-auth.
    pub(crate) fn next_reconcile(
        target: &RollbackTarget,
        mappings: &[MappingInput],
    ) -> crate::plan::Plan {
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
        // No aws-auth at all: restoring creates it.
        let missing = compare(None, &rev, &target);
        assert!(missing.data_changed && !missing.aws_auth_existed);
    }

    #[test]
    fn the_restored_aws_auth_keeps_its_resource_version_and_takes_the_annotation() {
        let mut live = aws_auth(data(&[("mapRoles", ADMIN)]), Some("old"));
        live.metadata.labels = Some(BTreeMap::from([("x".to_string(), "y".to_string())]));
        let target = RollbackTarget {
            data: data(&[("mapRoles", NODE)]),
            managed_annotation: "new".to_string(),
            notes: Vec::new(),
        };
        let cm = aws_auth_with(Some(&live), &target.data, &target.managed_annotation);
        assert_eq!(cm.metadata.resource_version.as_deref(), Some("77"));
        assert_eq!(cm.data, Some(data(&[("mapRoles", NODE)])));
        assert_eq!(managed_annotation(&cm), Some("new"));
        assert_eq!(cm.metadata.labels, live.metadata.labels);
        let cm = aws_auth_with(None, &target.data, &target.managed_annotation);
        assert_eq!(cm.metadata.name.as_deref(), Some("aws-auth"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(cm.metadata.resource_version, None);
    }
}
