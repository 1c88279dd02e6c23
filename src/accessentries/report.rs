//! What the access-entry loop publishes for the aws-auth reconcile, the single writer of mapping
//! statuses: one [`AccessEntryReport`] per mapping in a [`ReportBoard`], cheap to clone and read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use tokio::sync::Notify;

use super::spec::AccessEntryStatus;
use crate::loops::Board;

/// The condition type the report feeds.
pub const CONDITION_TYPE: &str = "AccessEntrySynced";

/// The reason of the `AccessEntrySynced` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SyncReason {
    /// The operator created the access entry and read it back.
    Created,
    /// The access entry matches the mapping.
    InSync,
    /// The operator changed (or re-created) the access entry and read it back.
    Updated,
    /// The mapping cannot become an access entry; it stays in aws-auth.
    NotMigratable,
    /// An access entry the operator did not create exists for the principal.
    ForeignEntry,
    /// The cluster authenticates from aws-auth only.
    ClusterInConfigMapMode,
    /// Another mapping, older, mirrors the same principal.
    Conflict,
    /// A group of the mapping is outside the group policy (`--allowed-groups`,
    /// `--denied-groups`): no access entry, and the operator's entry for it is deleted.
    PolicyViolation,
    /// The principal is protected (`--protected-arn`): no access entry, and the operator's
    /// entry for it is deleted.
    ProtectedPrincipal,
    /// EKS could not be reached or refused a call.
    EksError,
    /// The access-entry loop has not handled this generation yet.
    Pending,
    /// `--access-entries=off`: the operator does not keep this mapping's access entry in sync
    /// (it only deletes its entries of deleted mappings, when it knows the cluster).
    NotManaged,
}

impl SyncReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncReason::Created => "Created",
            SyncReason::InSync => "InSync",
            SyncReason::Updated => "Updated",
            SyncReason::NotMigratable => "NotMigratable",
            SyncReason::ForeignEntry => "ForeignEntry",
            SyncReason::ClusterInConfigMapMode => "ClusterInConfigMapMode",
            SyncReason::Conflict => "Conflict",
            SyncReason::PolicyViolation => "PolicyViolation",
            SyncReason::ProtectedPrincipal => "ProtectedPrincipal",
            SyncReason::EksError => "EksError",
            SyncReason::Pending => "Pending",
            SyncReason::NotManaged => "NotManaged",
        }
    }
}

impl fmt::Display for SyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access-entry side of one mapping, as the loop last saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntryReport {
    /// The metadata.generation of the mapping this report describes. A report for an older
    /// generation says nothing about the current spec.
    pub generation: Option<i64>,
    /// Status of the `AccessEntrySynced` condition.
    pub synced: bool,
    pub reason: SyncReason,
    /// What happened and what the user should do.
    pub message: String,
    /// The access entry EKS holds for the mapping's principal (ours or not), as read back.
    pub status: Option<AccessEntryStatus>,
    /// The access entry exists, is the operator's (tagged or adopted) and matches this
    /// generation of the mapping, as read back from EKS, in a cluster that uses access entries.
    /// `only` mode removes the mapping's aws-auth entry only while this is true. While the EKS
    /// API cannot be reached it keeps its last value for the same generation (entries do not
    /// vanish with the API, and an outage must not rewrite aws-auth), and so it does through a
    /// transient failure of one entry (not read this pass, a call on it throttled); it is
    /// dropped once the entry is read back absent or different.
    pub confirmed_in_place: bool,
    /// False when the mapping cannot become an access entry at all: in `only` mode it stays in
    /// aws-auth.
    pub migratable: bool,
}

impl AccessEntryReport {
    /// Whether this report confirms the access entry of `generation` of the mapping.
    pub fn confirms(&self, generation: Option<i64>) -> bool {
        self.confirmed_in_place && self.generation == generation
    }

    /// The `AccessEntrySynced` condition, for the status writer.
    pub fn condition(&self, now: &Time) -> Condition {
        Condition {
            type_: CONDITION_TYPE.to_string(),
            status: if self.synced { "True" } else { "False" }.to_string(),
            reason: self.reason.as_str().to_string(),
            message: self.message.clone(),
            observed_generation: self.generation,
            last_transition_time: now.clone(),
        }
    }

    /// What to report for a mapping the loop has not handled yet (a new generation).
    pub fn pending(generation: Option<i64>) -> AccessEntryReport {
        AccessEntryReport {
            generation,
            synced: false,
            reason: SyncReason::Pending,
            message: "waiting for the access-entry loop to handle this generation".to_string(),
            status: None,
            confirmed_in_place: false,
            migratable: true,
        }
    }
}

/// Whether a mapping's managed aws-auth entry must stay in aws-auth: always, except in `only`
/// mode once the access entry of this generation is confirmed in place (read back from EKS).
/// A mapping that cannot migrate, or whose access entry is not (or no longer) confirmed, keeps
/// its aws-auth entry (or gets it back).
pub fn keep_in_aws_auth(
    mode: super::AccessEntriesMode,
    report: Option<&AccessEntryReport>,
    generation: Option<i64>,
) -> bool {
    mode != super::AccessEntriesMode::Only || !report.is_some_and(|r| r.confirms(generation))
}

/// Whether the access-entry side of a mapping is done for this generation, for `Ready` in
/// `mirror` and `only` modes: the entry is confirmed in place, or the mapping cannot migrate
/// (it is served by aws-auth, and its condition says why).
pub fn access_side_ready(report: Option<&AccessEntryReport>, generation: Option<i64>) -> bool {
    report.is_some_and(|r| {
        r.generation == generation
            && (r.confirmed_in_place || r.reason == SyncReason::NotMigratable)
    })
}

/// Cluster-wide facts of the last pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    /// CONFIG_MAP, API_AND_CONFIG_MAP or API, from DescribeCluster.
    pub authentication_mode: Option<String>,
    /// The end of the last pass that reached EKS.
    pub last_pass: Option<Time>,
    /// Why the last pass failed as a whole (DescribeCluster or ListAccessEntries), if it did.
    pub last_error: Option<String>,
    /// Passes done since start.
    pub passes: u64,
    /// EKS API calls made since start.
    pub eks_calls: u64,
    /// Why the last pass could not work with EKS, if it could not: the API did not answer (a
    /// timeout, a refused connection) or refused the pass (DescribeCluster, ListAccessEntries).
    /// Shown in the body of `/readyz` and as the `eks_unavailable` metric.
    pub eks_problem: Option<String>,
}

/// The access-entry loop's reports by mapping name (a [`Board`]), with the cluster-wide facts
/// of its last pass beside them.
#[derive(Debug, Clone, Default)]
pub struct ReportBoard {
    reports: Board<AccessEntryReport>,
    cluster: Arc<RwLock<ClusterReport>>,
    /// `ClusterReport::eks_problem`, for whoever reports health.
    eks_problem: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl ReportBoard {
    pub fn new() -> ReportBoard {
        ReportBoard::default()
    }

    /// The report of one mapping.
    pub fn get(&self, name: &str) -> Option<AccessEntryReport> {
        self.reports.get(name)
    }

    /// Every report.
    pub fn snapshot(&self) -> BTreeMap<String, AccessEntryReport> {
        self.reports.snapshot()
    }

    pub fn cluster(&self) -> ClusterReport {
        self.cluster
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A number that changes whenever a report changes (cheap change detection).
    pub fn version(&self) -> u64 {
        self.reports.version()
    }

    /// Notified after every change of a report.
    pub fn changed(&self) -> Arc<Notify> {
        self.reports.changed()
    }

    /// Follows `ClusterReport::eks_problem` (EKS not answering, or refusing the loop's calls).
    pub fn eks_problem(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.eks_problem.subscribe()
    }

    /// Replaces every report (mappings that are gone disappear) and the cluster facts. Notifies
    /// only when a report changed, so that an idle pass wakes nobody. Returns whether it did.
    pub fn publish(
        &self,
        reports: BTreeMap<String, AccessEntryReport>,
        cluster: ClusterReport,
    ) -> bool {
        // The facts first: whoever a changed report wakes reads the cluster of the same pass.
        self.set_cluster(cluster);
        self.reports.publish(reports)
    }

    /// Updates the cluster facts only.
    pub fn set_cluster(&self, cluster: ClusterReport) {
        self.eks_problem.send_if_modified(|current| {
            let changed = *current != cluster.eks_problem;
            if changed {
                current.clone_from(&cluster.eks_problem);
            }
            changed
        });
        *self.cluster.write().unwrap_or_else(|e| e.into_inner()) = cluster;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(reason: SyncReason) -> AccessEntryReport {
        AccessEntryReport {
            generation: Some(2),
            synced: reason == SyncReason::InSync,
            reason,
            message: "m".into(),
            status: None,
            confirmed_in_place: reason == SyncReason::InSync,
            migratable: true,
        }
    }

    #[tokio::test]
    async fn publish_notifies_only_on_change() {
        let board = ReportBoard::new();
        let notify = board.changed();
        let reports = BTreeMap::from([("a".to_string(), report(SyncReason::InSync))]);
        assert!(board.publish(reports.clone(), ClusterReport::default()));
        // The permit stored by notify_one is there for a waiter that comes late.
        tokio::time::timeout(std::time::Duration::from_secs(1), notify.notified())
            .await
            .expect("notified");
        let version = board.version();
        assert!(!board.publish(
            reports,
            ClusterReport {
                passes: 2,
                ..Default::default()
            }
        ));
        assert_eq!(board.version(), version);
        assert_eq!(board.cluster().passes, 2);
        assert!(board.get("a").unwrap().confirms(Some(2)));
        assert!(
            !board.get("a").unwrap().confirms(Some(3)),
            "older generation"
        );
        assert!(board.publish(BTreeMap::new(), ClusterReport::default()));
        assert!(board.get("a").is_none(), "gone mappings disappear");
    }

    #[test]
    fn only_mode_removes_from_aws_auth_only_what_is_confirmed() {
        use crate::accessentries::AccessEntriesMode::{Mirror, Off, Only};
        let confirmed = report(SyncReason::InSync);
        let failed = report(SyncReason::EksError);
        let not_migratable = AccessEntryReport {
            migratable: false,
            ..report(SyncReason::NotMigratable)
        };
        for mode in [Off, Mirror] {
            assert!(keep_in_aws_auth(mode, Some(&confirmed), Some(2)));
        }
        assert!(!keep_in_aws_auth(Only, Some(&confirmed), Some(2)));
        assert!(
            keep_in_aws_auth(Only, Some(&confirmed), Some(3)),
            "a newer spec"
        );
        assert!(keep_in_aws_auth(Only, Some(&failed), Some(2)));
        assert!(keep_in_aws_auth(Only, Some(&not_migratable), Some(2)));
        assert!(keep_in_aws_auth(Only, None, Some(2)));
        assert!(access_side_ready(Some(&confirmed), Some(2)));
        assert!(access_side_ready(Some(&not_migratable), Some(2)));
        assert!(!access_side_ready(Some(&failed), Some(2)));
        assert!(!access_side_ready(Some(&confirmed), Some(3)));
        assert!(!access_side_ready(None, Some(2)));
    }

    #[test]
    fn condition_shape() {
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(1_790_000_000).unwrap());
        let c = report(SyncReason::ForeignEntry).condition(&now);
        assert_eq!(c.type_, CONDITION_TYPE);
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "ForeignEntry");
        assert_eq!(c.observed_generation, Some(2));
        assert!(AccessEntryReport::pending(Some(1)).condition(&now).status == "False");
    }
}
