//! The access-entry planner: desired entries (one per mapping) + what EKS holds + the cluster's
//! authentication mode -> the calls that make EKS match, and one outcome per mapping. Pure.
//!
//! Ownership rules:
//! - every entry the operator creates carries [`MANAGED_BY_TAG`] (and [`MAPPING_TAG`]);
//! - only tagged entries are ever deleted, and only when no mapping wants their principal any
//!   more (an entry whose mapping still exists but cannot migrate is kept);
//! - a mapping the operator's policy refuses (`--protected-arn`, `--allowed-groups`,
//!   `--denied-groups`: the same verdict as in aws-auth) wants nothing: no entry is created or
//!   changed for it, and the tagged entry of its principal is deleted like a deleted mapping's
//!   (an access entry takes precedence over aws-auth, so keeping it would grant what aws-auth
//!   refuses);
//! - an untagged entry for a mapping's principal is reported (`ForeignEntry`) and left alone,
//!   unless the mapping says `adopt: true`; every other untagged entry (the cluster creator's,
//!   EKS's own node entries, other tools') is never touched;
//! - in CONFIG_MAP mode nothing is planned; the operator never changes the mode.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;

use super::report::{AccessEntryReport, SyncReason};
use super::spec::{AccessEntryStatus, AccessEntryType, AssociatedPolicyStatus};
use super::translate::{DesiredEntry, DesiredPolicy, NotMigratable, PolicyScope, Translation};
use crate::plan::{Claimant, PolicyRefusal, oldest_first};

/// Tag on every access entry the operator creates.
pub const MANAGED_BY_TAG: &str = "awsauth.dev/managed-by";
pub const MANAGED_BY_VALUE: &str = "aws-auth-operator";
/// Tag naming the mapping an entry was created for.
pub const MAPPING_TAG: &str = "awsauth.dev/mapping";
/// A full re-read of every relevant entry is spread over this many resyncs.
pub const VERIFY_ROUNDS: usize = 12;

/// The cluster's `accessConfig.authenticationMode`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AuthenticationMode {
    ConfigMap,
    ApiAndConfigMap,
    Api,
    /// A value this operator does not know.
    Other(String),
}

impl AuthenticationMode {
    /// From DescribeCluster; a cluster without accessConfig predates access entries.
    pub fn from_api(mode: Option<&str>) -> AuthenticationMode {
        match mode {
            None | Some("CONFIG_MAP") => AuthenticationMode::ConfigMap,
            Some("API_AND_CONFIG_MAP") => AuthenticationMode::ApiAndConfigMap,
            Some("API") => AuthenticationMode::Api,
            Some(other) => AuthenticationMode::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            AuthenticationMode::ConfigMap => "CONFIG_MAP",
            AuthenticationMode::ApiAndConfigMap => "API_AND_CONFIG_MAP",
            AuthenticationMode::Api => "API",
            AuthenticationMode::Other(s) => s,
        }
    }

    /// Whether access entries authenticate anybody in this mode.
    pub fn uses_access_entries(&self) -> bool {
        matches!(
            self,
            AuthenticationMode::ApiAndConfigMap | AuthenticationMode::Api
        )
    }
}

/// An associated access policy as EKS reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObservedPolicy {
    pub policy_arn: String,
    pub scope: PolicyScope,
}

/// An access entry as EKS reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObservedEntry {
    pub principal_arn: String,
    pub access_entry_arn: Option<String>,
    /// The `type` as EKS gives it.
    pub type_: String,
    pub username: Option<String>,
    pub kubernetes_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    /// None when not read (ListAssociatedAccessPolicies is only called for entries a mapping
    /// wants).
    pub policies: Option<Vec<ObservedPolicy>>,
}

impl ObservedEntry {
    /// Created by this operator.
    pub fn is_managed(&self) -> bool {
        self.tags.get(MANAGED_BY_TAG).map(String::as_str) == Some(MANAGED_BY_VALUE)
    }

    pub fn mapping_tag(&self) -> Option<&str> {
        self.tags.get(MAPPING_TAG).map(String::as_str)
    }

    /// What status.accessEntry shows for it.
    pub fn status(&self, last_sync_time: Option<Time>) -> AccessEntryStatus {
        let mut groups = self.kubernetes_groups.clone();
        groups.sort();
        AccessEntryStatus {
            principal_arn: self.principal_arn.clone(),
            type_: self.type_.clone(),
            username: self.username.clone().filter(|u| !u.is_empty()),
            kubernetes_groups: groups,
            policies: self
                .policies
                .iter()
                .flatten()
                .map(|p| AssociatedPolicyStatus {
                    policy_arn: p.policy_arn.clone(),
                    namespaces: p.scope.namespaces().to_vec(),
                })
                .collect(),
            last_sync_time,
        }
    }
}

/// The key entries are matched by: IAM names are unique case-insensitively, so one principal
/// has one key whatever the case it is written in.
pub fn principal_key(arn: &str) -> String {
    arn.to_ascii_lowercase()
}

/// What EKS holds, as read for this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub mode: AuthenticationMode,
    /// Every listed entry whose details were read.
    pub entries: Vec<ObservedEntry>,
    /// Keys of listed entries whose details could not be read this pass.
    pub unreadable: BTreeSet<String>,
}

/// One mapping, as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredMapping {
    pub name: String,
    pub generation: Option<i64>,
    /// creationTimestamp in seconds: the oldest mapping wins a principal (then the name), in
    /// the order aws-auth gives it ([`oldest_first`]).
    pub created: Option<i64>,
    pub translation: Translation,
    pub adopt: bool,
    /// The operator's policy refuses the mapping (the verdict aws-auth gets too): it gets no
    /// access entry, and the one the operator manages for its principal is deleted.
    pub refusal: Option<PolicyRefusal>,
    /// An earlier pass confirmed the access entry of this generation and principal in place
    /// ([`still_confirmed`]). A transient failure of this pass (an entry that could not be read,
    /// a failed call on an entry found in place) keeps that confirmation, so that throttling
    /// does not make `only` mode write the mapping back into aws-auth.
    pub confirmed_before: bool,
}

impl DesiredMapping {
    /// The access entry the mapping wants: none when it cannot migrate or the policy refuses it.
    pub fn wants(&self) -> Option<&DesiredEntry> {
        self.translation
            .as_ref()
            .ok()
            .filter(|_| self.refusal.is_none())
    }
}

impl Claimant for DesiredMapping {
    fn created_second(&self) -> Option<i64> {
        self.created
    }

    fn claimant_name(&self) -> &str {
        &self.name
    }
}

/// Whether `previous`, the report of an earlier pass, confirmed the access entry `m` wants now:
/// the same generation and the same principal (a mapping deleted and re-created under the same
/// name starts at generation 1 again).
pub fn still_confirmed(previous: Option<&AccessEntryReport>, m: &DesiredMapping) -> bool {
    let (Some(previous), Some(desired)) = (previous, m.wants()) else {
        return false;
    };
    previous.confirms(m.generation)
        && previous.status.as_ref().is_some_and(|s| {
            principal_key(&s.principal_arn) == principal_key(&desired.principal_arn)
        })
}

/// One EKS call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    Create {
        type_: AccessEntryType,
        username: Option<String>,
        kubernetes_groups: Vec<String>,
        tags: BTreeMap<String, String>,
    },
    /// UpdateAccessEntry: groups always, username when Some.
    Update {
        username: Option<String>,
        kubernetes_groups: Vec<String>,
    },
    Delete,
    /// AssociateAccessPolicy (also replaces the scope of an associated policy).
    Associate(DesiredPolicy),
    Disassociate {
        policy_arn: String,
    },
    /// TagResource on an adopted entry.
    Tag {
        access_entry_arn: String,
        tags: BTreeMap<String, String>,
    },
}

/// What a piece of work does, for the outcome once it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WorkKind {
    Create,
    /// Delete and create: the type changed.
    Recreate,
    Update,
    /// Tag an adopted entry (and update it if needed).
    Adopt,
    /// Delete an entry whose mapping is gone, or whose mapping the policy refuses.
    Delete,
}

/// The calls for one principal, run in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrincipalWork {
    pub principal_arn: String,
    /// The mapping it is done for: None for deletions, except the deletion of the entry of a
    /// mapping the policy refuses, which names that mapping.
    pub mapping: Option<String>,
    pub kind: WorkKind,
    pub steps: Vec<Step>,
}

/// The planner's result.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPlan {
    pub work: Vec<PrincipalWork>,
    /// One outcome per mapping. For mappings with work it is provisional until
    /// [`finalize_outcome`] has seen the result and the read-back.
    pub outcomes: BTreeMap<String, AccessEntryReport>,
}

impl SyncPlan {
    pub fn work_for(&self, mapping: &str) -> Option<&PrincipalWork> {
        self.work
            .iter()
            .find(|w| w.mapping.as_deref() == Some(mapping))
    }
}

fn tags_for(mapping: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_TAG.to_string(), MANAGED_BY_VALUE.to_string()),
        (MAPPING_TAG.to_string(), mapping.to_string()),
    ])
}

fn sorted(groups: &[String]) -> Vec<String> {
    let set: BTreeSet<&String> = groups.iter().collect();
    set.into_iter().cloned().collect()
}

fn describe_groups(groups: &[String]) -> String {
    if groups.is_empty() {
        "(none)".to_string()
    } else {
        groups.join(",")
    }
}

fn describe_policies(policies: &[ObservedPolicy]) -> String {
    if policies.is_empty() {
        return "(none)".to_string();
    }
    policies
        .iter()
        .map(|p| {
            let name = p.policy_arn.rsplit('/').next().unwrap_or(&p.policy_arn);
            format!("{name} ({})", p.scope)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The differences between what a mapping wants and an entry, and the steps that remove them.
/// Policies are compared only when they were read.
fn diff(desired: &DesiredEntry, observed: &ObservedEntry) -> (Vec<String>, Vec<Step>) {
    let mut differences = Vec::new();
    let mut steps = Vec::new();
    if !desired.type_.is_standard() {
        // EKS sets username and groups of node entries, and they take no policies.
        return (differences, steps);
    }
    let observed_groups = sorted(&observed.kubernetes_groups);
    let username_differs = desired
        .username
        .as_ref()
        .is_some_and(|u| observed.username.as_ref() != Some(u));
    if username_differs {
        differences.push(format!(
            "username {} (wants {})",
            observed.username.as_deref().unwrap_or("(none)"),
            desired.username.as_deref().unwrap_or_default()
        ));
    }
    if observed_groups != desired.kubernetes_groups {
        differences.push(format!(
            "groups {} (wants {})",
            describe_groups(&observed_groups),
            describe_groups(&desired.kubernetes_groups)
        ));
    }
    if username_differs || observed_groups != desired.kubernetes_groups {
        steps.push(Step::Update {
            username: desired.username.clone().filter(|_| username_differs),
            kubernetes_groups: desired.kubernetes_groups.clone(),
        });
    }
    if let Some(policies) = &observed.policies {
        let have: BTreeMap<&str, &PolicyScope> = policies
            .iter()
            .map(|p| (p.policy_arn.as_str(), &p.scope))
            .collect();
        let want: BTreeMap<&str, &PolicyScope> = desired
            .policies
            .iter()
            .map(|p| (p.policy_arn.as_str(), &p.scope))
            .collect();
        for p in &desired.policies {
            if have.get(p.policy_arn.as_str()) != Some(&&p.scope) {
                steps.push(Step::Associate(p.clone()));
            }
        }
        for p in policies {
            if !want.contains_key(p.policy_arn.as_str()) {
                steps.push(Step::Disassociate {
                    policy_arn: p.policy_arn.clone(),
                });
            }
        }
        let mut observed_sorted = policies.clone();
        observed_sorted.sort();
        let wanted: Vec<ObservedPolicy> = desired
            .policies
            .iter()
            .map(|p| ObservedPolicy {
                policy_arn: p.policy_arn.clone(),
                scope: p.scope.clone(),
            })
            .collect();
        if observed_sorted != wanted {
            differences.push(format!(
                "policies {} (wants {})",
                describe_policies(&observed_sorted),
                describe_policies(&wanted)
            ));
        }
    }
    (differences, steps)
}

fn create_steps(name: &str, desired: &DesiredEntry) -> Vec<Step> {
    let mut steps = vec![Step::Create {
        type_: desired.type_,
        username: desired.username.clone(),
        kubernetes_groups: desired.kubernetes_groups.clone(),
        tags: tags_for(name),
    }];
    steps.extend(desired.policies.iter().cloned().map(Step::Associate));
    steps
}

/// The plan for one pass: the decision on every mapping, then the deletions of the entries no
/// mapping wants any more.
pub fn plan_sync(mappings: &[DesiredMapping], observed: &Observed) -> SyncPlan {
    if !observed.mode.uses_access_entries() {
        return without_access_entries(mappings, &observed.mode);
    }
    let pass = Pass::new(mappings, observed);
    let mut work = Vec::new();
    let mut outcomes = BTreeMap::new();
    for m in mappings {
        let decision = pass.decide(m);
        work.extend(decision.work);
        outcomes.insert(m.name.clone(), decision.outcome);
    }
    work.extend(pass.deletions);
    SyncPlan { work, outcomes }
}

/// A mode in which access entries authenticate nobody: nothing is planned, and every mapping
/// says why (a mapping the policy refuses says that instead).
fn without_access_entries(mappings: &[DesiredMapping], mode: &AuthenticationMode) -> SyncPlan {
    let message = match mode {
        AuthenticationMode::Other(mode) => format!(
            "the cluster's authentication mode is `{mode}`, which this operator does not know: nothing is changed in EKS"
        ),
        _ => "the cluster's authentication mode is CONFIG_MAP: access entries have no effect and none are changed. Switch the cluster to API_AND_CONFIG_MAP (aws eks update-cluster-config --name CLUSTER --access-config authenticationMode=API_AND_CONFIG_MAP; it cannot be switched back); the operator never changes the mode. aws-auth keeps working meanwhile".to_string(),
    };
    let outcomes = mappings
        .iter()
        .map(|m| {
            let report = match &m.refusal {
                Some(refusal) => refused_outcome(m, refusal, None, false),
                None => AccessEntryReport {
                    generation: m.generation,
                    synced: false,
                    reason: SyncReason::ClusterInConfigMapMode,
                    message: message.clone(),
                    status: None,
                    confirmed_in_place: false,
                    migratable: m.translation.is_ok(),
                },
            };
            (m.name.clone(), report)
        })
        .collect();
    SyncPlan {
        work: Vec::new(),
        outcomes,
    }
}

/// What a pass knows before it decides on any one mapping.
struct Pass<'a> {
    observed: &'a Observed,
    /// The entries EKS holds, by principal key.
    by_key: BTreeMap<String, &'a ObservedEntry>,
    /// The mapping whose entry each wanted principal gets.
    winners: BTreeMap<String, &'a str>,
    /// The entries no mapping wants any more.
    deletions: Vec<PrincipalWork>,
}

/// The decision on one mapping: its outcome, and the calls for its principal.
struct Decision {
    outcome: AccessEntryReport,
    work: Option<PrincipalWork>,
}

impl Decision {
    /// An outcome without calls.
    fn report(outcome: AccessEntryReport) -> Decision {
        Decision {
            outcome,
            work: None,
        }
    }
}

impl<'a> Pass<'a> {
    fn new(mappings: &'a [DesiredMapping], observed: &'a Observed) -> Pass<'a> {
        Pass {
            observed,
            by_key: observed
                .entries
                .iter()
                .map(|e| (principal_key(&e.principal_arn), e))
                .collect(),
            winners: winners(mappings),
            deletions: deletions(mappings, observed),
        }
    }

    /// One mapping, its questions in order: does the policy refuse it, can it migrate, does it
    /// win its principal, could the principal's entry be read, is there one already.
    fn decide(&self, m: &DesiredMapping) -> Decision {
        if let Some(refusal) = &m.refusal {
            return Decision::report(self.refused(m, refusal));
        }
        let desired = match &m.translation {
            Ok(desired) => desired,
            Err(why) => return Decision::report(not_migratable(m, why)),
        };
        let key = principal_key(&desired.principal_arn);
        let current = self.by_key.get(&key).copied();
        let status = current.map(|e| e.status(None));
        let winner = self.winners.get(&key).copied().unwrap_or_default();
        if winner != m.name {
            let message = format!(
                "mapping {winner} (older) already mirrors {} into an access entry: keep one mapping per principal",
                desired.principal_arn
            );
            return Decision::report(outcome(m, SyncReason::Conflict, message, status));
        }
        if self.observed.unreadable.contains(&key) {
            // Not read is not absent: an earlier confirmation of this spec stands.
            let message = format!(
                "the access entry of {} could not be read from EKS; retrying at the next pass{}",
                desired.principal_arn,
                last_confirmed(m.confirmed_before)
            );
            return Decision::report(outcome(m, SyncReason::EksError, message, status));
        }
        match current {
            None => create(m, desired),
            Some(current) => existing(m, desired, current, status),
        }
    }

    /// The outcome of a mapping the policy refuses, with the entry EKS holds for its principal
    /// (when read) and whether this pass deletes it.
    fn refused(&self, m: &DesiredMapping, refusal: &PolicyRefusal) -> AccessEntryReport {
        let current = m
            .translation
            .as_ref()
            .ok()
            .map(|e| principal_key(&e.principal_arn))
            .filter(|key| !self.observed.unreadable.contains(key))
            .and_then(|key| self.by_key.get(&key).copied());
        let deleting = current.is_some_and(|c| {
            self.deletions
                .iter()
                .any(|d| d.principal_arn == c.principal_arn)
        });
        refused_outcome(m, refusal, current, deleting)
    }
}

/// The mapping whose entry each wanted principal gets: the one aws-auth gives the principal too
/// ([`oldest_first`]).
fn winners(mappings: &[DesiredMapping]) -> BTreeMap<String, &str> {
    let mut order: Vec<&DesiredMapping> = mappings.iter().collect();
    order.sort_by(|a, b| oldest_first(*a, *b));
    let mut winners = BTreeMap::new();
    for m in order {
        if let Some(entry) = m.wants() {
            winners
                .entry(principal_key(&entry.principal_arn))
                .or_insert(m.name.as_str());
        }
    }
    winners
}

/// The outcome of a mapping that can migrate. Only an entry found as the mapping wants it is
/// synced and confirmed in place; an entry that could not be read keeps an earlier
/// confirmation (see [`DesiredMapping::confirmed_before`]); every other reason confirms nothing.
fn outcome(
    m: &DesiredMapping,
    reason: SyncReason,
    message: String,
    status: Option<AccessEntryStatus>,
) -> AccessEntryReport {
    let confirmed_in_place = match reason {
        SyncReason::InSync => true,
        SyncReason::EksError => m.confirmed_before,
        _ => false,
    };
    AccessEntryReport {
        generation: m.generation,
        synced: reason == SyncReason::InSync,
        reason,
        message,
        status,
        confirmed_in_place,
        migratable: true,
    }
}

fn not_migratable(m: &DesiredMapping, why: &NotMigratable) -> AccessEntryReport {
    let message = format!(
        "{} ({}). The mapping stays in aws-auth",
        why.message, why.reason
    );
    AccessEntryReport {
        migratable: false,
        ..outcome(m, SyncReason::NotMigratable, message, None)
    }
}

/// The calls made for a mapping's principal.
fn mapping_work(
    m: &DesiredMapping,
    principal_arn: &str,
    kind: WorkKind,
    steps: Vec<Step>,
) -> PrincipalWork {
    PrincipalWork {
        principal_arn: principal_arn.to_string(),
        mapping: Some(m.name.clone()),
        kind,
        steps,
    }
}

/// No entry for the principal yet: it is created, tagged, with its policies.
fn create(m: &DesiredMapping, desired: &DesiredEntry) -> Decision {
    let message = format!(
        "creating the {} access entry of {}",
        desired.type_, desired.principal_arn
    );
    Decision {
        outcome: outcome(m, SyncReason::Created, message, None),
        work: Some(mapping_work(
            m,
            &desired.principal_arn,
            WorkKind::Create,
            create_steps(&m.name, desired),
        )),
    }
}

/// The principal has an entry: one the operator did not create is left alone unless the
/// mapping adopts it; one of another type is re-created; otherwise it is brought in line with
/// the mapping (and tagged, when adopted). Nothing is decided without its policies.
fn existing(
    m: &DesiredMapping,
    desired: &DesiredEntry,
    current: &ObservedEntry,
    status: Option<AccessEntryStatus>,
) -> Decision {
    let managed = current.is_managed();
    if AccessEntryType::parse(&current.type_) != Some(desired.type_) {
        if !managed && !m.adopt {
            let difference = format!("type {} (wants {})", current.type_, desired.type_);
            return foreign(current, &[difference], m, status);
        }
        return recreate(m, desired, current, status);
    }
    let (differences, steps) = diff(desired, current);
    if !managed && !m.adopt {
        return foreign(current, &differences, m, status);
    }
    if desired.type_.is_standard() && current.policies.is_none() {
        // The loop reads the policies of every wanted entry; without them nothing is decided.
        let message = format!(
            "the access policies of {} could not be read from EKS; retrying at the next pass{}",
            current.principal_arn,
            last_confirmed(m.confirmed_before)
        );
        return Decision::report(outcome(m, SyncReason::EksError, message, status));
    }
    let (kind, steps, adopted) = if managed {
        (WorkKind::Update, steps, "")
    } else {
        (WorkKind::Adopt, tagged(m, current, steps), " (adopted)")
    };
    let report = if differences.is_empty() {
        let message = format!(
            "the {} access entry of {} matches the mapping{adopted}",
            desired.type_, current.principal_arn
        );
        outcome(m, SyncReason::InSync, message, status)
    } else {
        let message = format!(
            "updating the access entry of {}{adopted}: {}",
            current.principal_arn,
            differences.join("; ")
        );
        outcome(m, SyncReason::Updated, message, status)
    };
    Decision {
        outcome: report,
        work: (!steps.is_empty()).then(|| mapping_work(m, &current.principal_arn, kind, steps)),
    }
}

/// An entry the operator did not create, and the mapping does not adopt it: reported, with how
/// it differs, and left alone.
fn foreign(
    current: &ObservedEntry,
    differences: &[String],
    m: &DesiredMapping,
    status: Option<AccessEntryStatus>,
) -> Decision {
    let what = if differences.is_empty() {
        "it matches this mapping".to_string()
    } else {
        format!("it differs from this mapping: {}", differences.join("; "))
    };
    let message = format!(
        "an access entry for {} exists that the operator did not create (no {MANAGED_BY_TAG} tag) and is left alone; {what}. Set spec.accessEntry.adopt: true to let the operator manage it, or delete it in EKS",
        current.principal_arn
    );
    Decision::report(outcome(m, SyncReason::ForeignEntry, message, status))
}

/// The type of an access entry cannot change: it is deleted and created again.
fn recreate(
    m: &DesiredMapping,
    desired: &DesiredEntry,
    current: &ObservedEntry,
    status: Option<AccessEntryStatus>,
) -> Decision {
    let message = format!(
        "re-creating the access entry of {}: the type of an access entry cannot change ({} -> {})",
        current.principal_arn, current.type_, desired.type_
    );
    let mut steps = vec![Step::Delete];
    steps.extend(create_steps(&m.name, desired));
    Decision {
        outcome: outcome(m, SyncReason::Updated, message, status),
        work: Some(mapping_work(
            m,
            &current.principal_arn,
            WorkKind::Recreate,
            steps,
        )),
    }
}

/// The steps that adopt an entry: tagged as the operator's first, then brought in line.
fn tagged(m: &DesiredMapping, current: &ObservedEntry, mut steps: Vec<Step>) -> Vec<Step> {
    if let Some(arn) = &current.access_entry_arn {
        steps.insert(
            0,
            Step::Tag {
                access_entry_arn: arn.clone(),
                tags: tags_for(&m.name),
            },
        );
    }
    steps
}

/// The deletions of a pass: tagged entries no mapping wants any more (its mapping is gone, or
/// the policy refuses it). An entry whose mapping still exists but cannot migrate right now (an
/// edit in progress) is kept rather than cut its users off. The deletion of the entry of a
/// refused mapping names that mapping, so that its outcome tells how the deletion went.
fn deletions(mappings: &[DesiredMapping], observed: &Observed) -> Vec<PrincipalWork> {
    let wanted: BTreeSet<String> = mappings
        .iter()
        .filter_map(DesiredMapping::wants)
        .map(|e| principal_key(&e.principal_arn))
        .collect();
    let unmigratable: BTreeSet<&str> = mappings
        .iter()
        .filter(|m| m.translation.is_err() && m.refusal.is_none())
        .map(|m| m.name.as_str())
        .collect();
    let refused: Vec<&DesiredMapping> = mappings.iter().filter(|m| m.refusal.is_some()).collect();
    // The refused mapping an entry belongs to: by principal, else by the entry's mapping tag.
    let refused_for = |entry: &ObservedEntry| {
        let key = principal_key(&entry.principal_arn);
        refused
            .iter()
            .find(|m| {
                m.translation
                    .as_ref()
                    .is_ok_and(|e| principal_key(&e.principal_arn) == key)
            })
            .or_else(|| {
                refused
                    .iter()
                    .find(|m| entry.mapping_tag() == Some(&m.name))
            })
            .map(|m| m.name.clone())
    };
    let mut work = Vec::new();
    for entry in &observed.entries {
        let key = principal_key(&entry.principal_arn);
        if !entry.is_managed() || wanted.contains(&key) {
            continue;
        }
        if entry
            .mapping_tag()
            .is_some_and(|m| unmigratable.contains(m))
        {
            continue;
        }
        work.push(PrincipalWork {
            principal_arn: entry.principal_arn.clone(),
            mapping: refused_for(entry),
            kind: WorkKind::Delete,
            steps: vec![Step::Delete],
        });
    }
    work
}

/// The outcome of a mapping the policy refuses. `current`: what EKS holds for its principal;
/// `deleting`: that entry is the operator's and this pass deletes it.
pub fn refused_outcome(
    m: &DesiredMapping,
    refusal: &PolicyRefusal,
    current: Option<&ObservedEntry>,
    deleting: bool,
) -> AccessEntryReport {
    let (reason, hint) = match refusal {
        PolicyRefusal::Protected { .. } => (
            SyncReason::ProtectedPrincipal,
            "remove the mapping, or the protection if you do mean to manage the principal",
        ),
        PolicyRefusal::Forbidden { subject, .. } => (
            SyncReason::PolicyViolation,
            match subject {
                crate::plan::PolicySubject::Group(_) => "change the groups, or the policy",
                crate::plan::PolicySubject::Username(_) => "change the username, or the policy",
            },
        ),
    };
    let mut message = format!(
        "{refusal}: the operator's policy refuses this mapping, so it gets no EKS access entry ({hint})"
    );
    match current {
        Some(c) if deleting => message.push_str(&format!(
            "; the access entry the operator created for {} is being deleted",
            c.principal_arn
        )),
        Some(c) if !c.is_managed() => message.push_str(&format!(
            "; the access entry of {} was not created by the operator and is left alone",
            c.principal_arn
        )),
        _ => {}
    }
    AccessEntryReport {
        generation: m.generation,
        synced: false,
        reason,
        message,
        status: current.map(|c| c.status(None)),
        confirmed_in_place: false,
        migratable: m.translation.is_ok(),
    }
}

fn last_confirmed(confirmed: bool) -> &'static str {
    if confirmed {
        "; the access entry was last confirmed in place, so aws-auth is left as it is"
    } else {
        ""
    }
}

/// The outcome of a mapping once its work ran: `planned` from the plan before the work,
/// `error` the first failed call, `after` the outcome of a plan on what EKS holds afterwards,
/// `confirmed_before` as in [`DesiredMapping`].
pub fn finalize_outcome(
    planned: &AccessEntryReport,
    work: Option<&PrincipalWork>,
    error: Option<&str>,
    after: &AccessEntryReport,
    confirmed_before: bool,
) -> AccessEntryReport {
    let Some(work) = work else {
        return after.clone();
    };
    if work.kind == WorkKind::Delete {
        // The entry of a mapping the policy refuses: the refusal stays the reason.
        return match error {
            Some(error) => AccessEntryReport {
                message: format!(
                    "{}; deleting it failed: {error}; retrying at the next pass",
                    after.message
                ),
                ..after.clone()
            },
            None => after.clone(),
        };
    }
    if let Some(error) = error {
        // A failed call on an entry this pass found in place (only a tag was missing) is
        // transient: an earlier confirmation stands. One that was to create or fix the entry
        // says the entry is absent or different: no confirmation.
        let confirmed = confirmed_before && planned.confirmed_in_place;
        return AccessEntryReport {
            synced: false,
            reason: SyncReason::EksError,
            message: format!(
                "{}: failed: {error}. Retrying at the next pass{}",
                planned.message,
                last_confirmed(confirmed)
            ),
            confirmed_in_place: confirmed,
            ..after.clone()
        };
    }
    if after.reason != SyncReason::InSync {
        // Eventual consistency, or somebody else changed it meanwhile: the next pass retries.
        return AccessEntryReport {
            synced: false,
            reason: SyncReason::EksError,
            message: format!(
                "EKS accepted the calls but reading the entry back does not confirm them yet ({}); retrying at the next pass",
                after.message
            ),
            confirmed_in_place: false,
            ..after.clone()
        };
    }
    let (reason, verb) = match work.kind {
        WorkKind::Create => (SyncReason::Created, "created"),
        WorkKind::Recreate => (SyncReason::Updated, "re-created with its new type"),
        WorkKind::Update => (SyncReason::Updated, "updated"),
        WorkKind::Adopt => (SyncReason::Updated, "adopted"),
        // Handled above.
        WorkKind::Delete => return after.clone(),
    };
    if work.kind == WorkKind::Adopt && work.steps.iter().all(|s| matches!(s, Step::Tag { .. })) {
        // Only the tag was missing: the entry itself already matched.
        return after.clone();
    }
    AccessEntryReport {
        synced: true,
        reason,
        message: format!("{verb} and read back: {}", after.message),
        confirmed_in_place: true,
        ..after.clone()
    }
}

/// What to read about one listed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub principal_arn: String,
    /// DescribeAccessEntry.
    pub describe: bool,
    /// ListAssociatedAccessPolicies.
    pub policies: bool,
}

/// What the loop remembers of an entry between passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEntry {
    pub entry: ObservedEntry,
    /// The pass that last read it.
    pub read_at_pass: u64,
}

/// The principals the mappings want (by key), and whether their policies matter (STANDARD
/// entries only: node entries carry none).
pub fn wanted_principals(mappings: &[DesiredMapping]) -> BTreeMap<String, bool> {
    mappings
        .iter()
        .filter_map(DesiredMapping::wants)
        .map(|e| (principal_key(&e.principal_arn), e.type_.is_standard()))
        .collect()
}

/// Which listed entries to read this pass, so that an idle resync costs few calls:
/// - an entry not seen before is described (its policies listed too when a mapping wants it as a STANDARD entry);
/// - an entry a mapping wants whose policies were never listed gets them listed;
/// - on a resync (`verify_budget` > 0), up to that many of the entries that matter (wanted by a
///   mapping, or tagged as the operator's) are re-read, least recently read first, so every such
///   entry is re-read every [`VERIFY_ROUNDS`] resyncs.
///
/// Everything else comes from the cache; an untagged entry nobody wants is read once.
pub fn select_reads(
    listed: &[String],
    cache: &BTreeMap<String, CachedEntry>,
    wanted: &BTreeMap<String, bool>,
    verify_budget: usize,
) -> Vec<Read> {
    let mut reads: BTreeMap<String, Read> = BTreeMap::new();
    let mut candidates: Vec<(u64, String, &str)> = Vec::new();
    for arn in listed {
        let key = principal_key(arn);
        let wants = wanted.contains_key(&key);
        let wants_policies = wanted.get(&key) == Some(&true);
        match cache.get(&key) {
            None => {
                reads.insert(
                    key,
                    Read {
                        principal_arn: arn.clone(),
                        describe: true,
                        policies: wants_policies,
                    },
                );
            }
            Some(cached) => {
                if wants_policies && cached.entry.policies.is_none() {
                    reads.insert(
                        key.clone(),
                        Read {
                            principal_arn: arn.clone(),
                            describe: false,
                            policies: true,
                        },
                    );
                }
                if wants || cached.entry.is_managed() {
                    candidates.push((cached.read_at_pass, key, arn));
                }
            }
        }
    }
    candidates.sort();
    for (_, key, arn) in candidates.into_iter().take(verify_budget) {
        let policies = wanted.get(&key) == Some(&true);
        let read = reads.entry(key).or_insert_with(|| Read {
            principal_arn: arn.to_string(),
            describe: true,
            policies,
        });
        read.describe = true;
        read.policies |= policies;
    }
    reads.into_values().collect()
}

/// The re-read budget of a resync over `relevant` entries.
pub fn verify_budget(relevant: usize) -> usize {
    relevant.div_ceil(VERIFY_ROUNDS)
}

#[cfg(test)]
mod tests;
