//! The access-entry loop: a shell around [`plan_sync`]. EKS has no watch, so it runs on its own,
//! woken by mapping changes (a `Notify`) and by a periodic resync with jitter. It never writes a
//! mapping status: it publishes reports into a [`ReportBoard`], and the aws-auth reconcile (the
//! single status writer) picks them up. It shares nothing with the aws-auth loop but the board,
//! so an EKS outage never slows or touches aws-auth.
//!
//! Cost of an idle resync, in EKS calls, with N access entries in the cluster and R of them
//! relevant (wanted by a mapping or tagged as the operator's):
//! 1 DescribeCluster + ceil(N/100) ListAccessEntries pages + about 2*ceil(R/12) re-reads
//! (DescribeAccessEntry + ListAssociatedAccessPolicies of the least recently read entries), so
//! that every relevant entry is re-read every 12 resyncs (an hour at the default 300 s).
//! A wake after a mapping change costs the list pages plus the calls of the change and its
//! read-back. After a restart, the first pass describes every listed entry once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::cache::MappingCache;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::client::{CallCounts, CreateEntry, EksApi, EksError};
use super::report::{AccessEntryReport, ClusterReport, ReportBoard, SyncReason};
use super::sync::{
    AuthenticationMode, CachedEntry, DesiredMapping, Observed, ObservedEntry, ObservedPolicy,
    PrincipalWork, Read, Step, SyncPlan, WorkKind, finalize_outcome, plan_sync, principal_key,
    refused_outcome, select_reads, still_confirmed, verify_budget, wanted_principals,
};
use super::translate::translate_resolved;
use super::{AccessEntriesConfig, AccessEntriesMode};
use crate::api::IamIdentityMapping;
use crate::loops::{PassSchedule, wait_until_synced};
use crate::plan::{Settings, spec_refusal};
use crate::principals::{PrincipalBoard, resolved_arn_of};

/// What a pass learnt before it plans: the principals EKS lists, the principals the mappings
/// want (and whether their policies matter), and the entries that could not be read.
struct Listed {
    keys: BTreeSet<String>,
    wanted: BTreeMap<String, bool>,
    unreadable: BTreeSet<String>,
}

/// What one [`Read`] of an entry got back.
struct EntryRead {
    principal_arn: String,
    described: bool,
    /// DescribeAccessEntry (`Ok(None)` also when not asked).
    entry: Result<Option<ObservedEntry>, EksError>,
    /// ListAssociatedAccessPolicies, when asked.
    policies: Option<Result<Option<Vec<ObservedPolicy>>, EksError>>,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassSummary {
    /// Pieces of work (one principal each) run.
    pub work: usize,
    /// Pieces of work that failed.
    pub failed: usize,
    /// EKS calls of the pass.
    pub calls: CallCounts,
    /// The pass failed as a whole (DescribeCluster or ListAccessEntries).
    pub error: Option<String>,
}

/// The first call of a pass that got no answer from EKS (a timeout, a refused connection).
/// The calls of the pass that have not started yet fail at once with that error instead of
/// each waiting for its own timeout: a hung EKS API costs one call's timeout per pass, not one
/// per entry, and is reported within seconds.
#[derive(Debug, Clone, Default)]
struct NoAnswer(Arc<Mutex<Option<EksError>>>);

impl NoAnswer {
    fn get(&self) -> Option<EksError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn reset(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Runs `call` unless EKS already did not answer in this pass, and remembers it if it does
    /// not answer now.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, EksError>>,
    ) -> Result<T, EksError> {
        if let Some(err) = self.get() {
            return Err(err);
        }
        let result = call.await;
        if let Err(err) = &result
            && err.is_unreachable()
        {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| err.clone());
        }
        result
    }
}

/// The state kept between passes.
pub struct Runner<E: EksApi> {
    eks: Arc<E>,
    cluster: String,
    concurrency: usize,
    board: ReportBoard,
    /// The operator's policy, the same `Settings` the aws-auth plan gets.
    settings: Settings,
    cache: BTreeMap<String, CachedEntry>,
    pass: u64,
    mode: Option<AuthenticationMode>,
    reports: BTreeMap<String, AccessEntryReport>,
    /// The roles permission-set mappings resolved to.
    principals: Option<PrincipalBoard>,
    no_answer: NoAnswer,
    /// `--access-entries`: in `off` mode the loop only deletes (see [`Runner::with_mode`]).
    mode_flag: AccessEntriesMode,
}

impl<E: EksApi> Runner<E> {
    /// `settings`: the operator's settings, for its policy (`--protected-arn`, the group
    /// policy), which access entries obey as aws-auth does.
    pub fn new(
        eks: Arc<E>,
        cluster: &str,
        concurrency: usize,
        board: ReportBoard,
        settings: Settings,
    ) -> Runner<E> {
        Runner {
            eks,
            cluster: cluster.to_string(),
            concurrency: concurrency.max(1),
            board,
            settings,
            cache: BTreeMap::new(),
            pass: 0,
            mode: None,
            reports: BTreeMap::new(),
            principals: None,
            no_answer: NoAnswer::default(),
            mode_flag: AccessEntriesMode::Mirror,
        }
    }

    /// Where to find the role of a `spec.ssoPermissionSet` mapping.
    pub fn with_principals(mut self, principals: PrincipalBoard) -> Runner<E> {
        self.principals = Some(principals);
        self
    }

    /// `--access-entries`. In `off` mode nothing is created, changed or adopted: the only calls
    /// that change EKS delete the operator's tagged entries that no mapping wants (the mapping
    /// was deleted, names another principal now, or the operator's policy refuses it), and every
    /// other mapping is reported `NotManaged`.
    pub fn with_mode(mut self, mode: AccessEntriesMode) -> Runner<E> {
        self.mode_flag = mode;
        self
    }

    pub fn board(&self) -> &ReportBoard {
        &self.board
    }

    /// One pass over every mapping. `resync`: re-read the authentication mode and a slice of the
    /// known entries; otherwise only what changed is read.
    pub async fn pass(
        &mut self,
        mappings: &[Arc<IamIdentityMapping>],
        resync: bool,
    ) -> PassSummary {
        self.pass += 1;
        let calls_before = self.eks.calls();
        let mut desired: Vec<DesiredMapping> = mappings
            .iter()
            .map(|m| {
                let resolved = resolved_arn_of(m, self.principals.as_ref());
                desired_mapping(m, resolved.as_deref(), &self.settings)
            })
            .collect();
        for m in &mut desired {
            m.confirmed_before = still_confirmed(self.reports.get(&m.name), m);
        }
        let now = now();
        let mut summary = PassSummary::default();
        self.no_answer.reset();
        let result = self.run_pass(&desired, resync, &mut summary).await;
        summary.calls = self.eks.calls().since(&calls_before);
        let mut cluster = self.board.cluster();
        cluster.passes = self.pass;
        cluster.eks_calls = self.eks.calls().total();
        cluster.authentication_mode = self.mode.as_ref().map(|m| m.as_str().to_string());
        let result = match self.mode_flag {
            AccessEntriesMode::Off => result.map(|reports| not_managed(&desired, reports)),
            _ => result,
        };
        match result {
            Ok(reports) => {
                cluster.last_pass = Some(now.clone());
                cluster.last_error = None;
                // Some calls got no answer although the pass went through: EKS is not well.
                cluster.eks_problem = self.no_answer.get().map(|err| eks_problem(&err));
                self.publish(reports, cluster, &now);
            }
            Err(err) => {
                warn!(cluster = %self.cluster, error = %err, "access-entry pass failed; aws-auth is not affected");
                summary.error = Some(err.to_string());
                cluster.last_error = Some(err.to_string());
                cluster.eks_problem = Some(eks_problem(&err));
                let reports = desired
                    .iter()
                    .map(|m| (m.name.clone(), self.failed_report(m, &err)))
                    .collect();
                self.publish(reports, cluster, &now);
            }
        }
        debug!(
            pass = self.pass,
            work = summary.work,
            failed = summary.failed,
            calls = summary.calls.total(),
            "access-entry pass done"
        );
        summary
    }

    /// The report of a mapping when EKS could not be asked at all. An access entry confirmed
    /// for this generation and principal stays confirmed: an outage of the EKS API does not
    /// remove entries, and it must not make `only` mode rewrite aws-auth. A newer generation is
    /// not confirmed.
    fn failed_report(&self, m: &DesiredMapping, err: &EksError) -> AccessEntryReport {
        let previous = self.reports.get(&m.name);
        if let Some(refusal) = &m.refusal {
            // The policy's verdict needs no EKS: an outage must not hide it behind EksError.
            return AccessEntryReport {
                status: previous.and_then(|p| p.status.clone()),
                ..refused_outcome(m, refusal, None, false)
            };
        }
        let confirmed = m.confirmed_before;
        let what = if err.is_unreachable() {
            "EKS is not answering"
        } else {
            "cannot read access entries from EKS"
        };
        AccessEntryReport {
            generation: m.generation,
            synced: false,
            reason: SyncReason::EksError,
            message: format!(
                "{what} ({err}); retrying. aws-auth is not affected{}",
                if confirmed {
                    "; the access entry was last confirmed in place"
                } else {
                    ""
                }
            ),
            status: previous.and_then(|p| p.status.clone()),
            confirmed_in_place: confirmed,
            migratable: m.translation.is_ok(),
        }
    }

    fn publish(
        &mut self,
        mut reports: BTreeMap<String, AccessEntryReport>,
        cluster: ClusterReport,
        now: &Time,
    ) {
        // lastSyncTime moves only when the entry changes, so an idle pass changes no report.
        for (name, report) in reports.iter_mut() {
            let Some(status) = report.status.as_mut() else {
                continue;
            };
            let previous = self
                .reports
                .get(name)
                .and_then(|p| p.status.as_ref())
                .filter(|p| {
                    let mut p = (*p).clone();
                    p.last_sync_time = None;
                    p == *status
                })
                .and_then(|p| p.last_sync_time.clone());
            status.last_sync_time = Some(previous.unwrap_or_else(|| now.clone()));
        }
        self.board.publish(reports.clone(), cluster);
        self.reports = reports;
    }

    /// Asks EKS what it holds, plans, runs the work and reads back what it touched.
    async fn run_pass(
        &mut self,
        desired: &[DesiredMapping],
        resync: bool,
        summary: &mut PassSummary,
    ) -> Result<BTreeMap<String, AccessEntryReport>, EksError> {
        let mode = self.authentication_mode(resync).await?;
        if !mode.uses_access_entries() {
            let observed = Observed {
                mode,
                entries: Vec::new(),
                unreadable: BTreeSet::new(),
            };
            return Ok(plan_sync(desired, &observed).outcomes);
        }
        let listed = self.list(desired, resync).await?;
        let observed = self.observed(mode.clone(), &listed.keys, &listed.unreadable);
        let mut plan = plan_sync(desired, &observed);
        if self.mode_flag == AccessEntriesMode::Off {
            // Revocations only: what the operator granted goes with its mapping.
            plan.work.retain(|w| w.kind == WorkKind::Delete);
        }
        if plan.work.is_empty() {
            return Ok(plan.outcomes);
        }
        summary.work = plan.work.len();
        let errors = self.run_work(&plan.work).await;
        summary.failed = errors.len();
        let after = self.read_back(desired, mode, &plan.work, listed).await;
        Ok(final_outcomes(desired, &plan, &errors, &after))
    }

    /// The cluster's authentication mode: asked at a resync and at the first pass, else the
    /// one known.
    async fn authentication_mode(&mut self, resync: bool) -> Result<AuthenticationMode, EksError> {
        if resync || self.mode.is_none() {
            let mode = self
                .no_answer
                .call(self.eks.authentication_mode(&self.cluster))
                .await?;
            if self.mode.as_ref() != Some(&mode) {
                info!(cluster = %self.cluster, mode = mode.as_str(), "cluster authentication mode");
            }
            self.mode = Some(mode);
        }
        Ok(self.mode.clone().unwrap_or(AuthenticationMode::ConfigMap))
    }

    /// Lists the access entries and reads the ones the cache cannot answer for (and, at a
    /// resync, a slice of the known ones).
    async fn list(&mut self, desired: &[DesiredMapping], resync: bool) -> Result<Listed, EksError> {
        let listed = self
            .no_answer
            .call(self.eks.list_access_entries(&self.cluster))
            .await?;
        let keys: BTreeSet<String> = listed.iter().map(|a| principal_key(a)).collect();
        self.cache.retain(|k, _| keys.contains(k));
        let wanted = wanted_principals(desired);
        let budget = if resync {
            let relevant = self
                .cache
                .iter()
                .filter(|(k, c)| wanted.contains_key(*k) || c.entry.is_managed())
                .count();
            verify_budget(relevant)
        } else {
            0
        };
        let reads = select_reads(&listed, &self.cache, &wanted, budget);
        let mut unreadable = BTreeSet::new();
        self.read_entries(reads, &mut unreadable).await;
        Ok(Listed {
            keys,
            wanted,
            unreadable,
        })
    }

    /// Runs the work, a principal's steps in order, principals concurrently. Returns the
    /// error of each piece of work that failed, by its index.
    async fn run_work(&self, work: &[PrincipalWork]) -> BTreeMap<usize, String> {
        for w in work.iter().filter(|w| w.kind == WorkKind::Delete) {
            if let Some(mapping) = &w.mapping {
                // Worth its own line: the operator takes away access here, not a deleted mapping.
                warn!(principal = %w.principal_arn, mapping = %mapping, "deleting the access entry of a mapping the operator's policy refuses");
            }
        }
        let pending: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(i, w)| async move { (i, self.apply(w).await) })
            .collect();
        let results: Vec<(usize, Result<(), EksError>)> = futures::stream::iter(pending)
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut errors = BTreeMap::new();
        for (i, result) in results {
            let w = &work[i];
            let mapping = w.mapping.as_deref().unwrap_or("-");
            match result {
                Ok(()) => {
                    info!(principal = %w.principal_arn, mapping, kind = ?w.kind, "access entry changed")
                }
                Err(err) => {
                    warn!(principal = %w.principal_arn, mapping, kind = ?w.kind, error = %err, "access entry change failed");
                    errors.insert(i, err.to_string());
                }
            }
        }
        errors
    }

    /// Reads back everything the work touched, then plans again on what EKS now holds.
    async fn read_back(
        &mut self,
        desired: &[DesiredMapping],
        mode: AuthenticationMode,
        work: &[PrincipalWork],
        listed: Listed,
    ) -> SyncPlan {
        let Listed {
            mut keys,
            wanted,
            unreadable,
        } = listed;
        let touched: Vec<Read> = work
            .iter()
            .map(|w| Read {
                principal_arn: w.principal_arn.clone(),
                describe: true,
                policies: w.kind != WorkKind::Delete
                    && wanted.get(&principal_key(&w.principal_arn)) == Some(&true),
            })
            .collect();
        let touched_keys: BTreeSet<String> = touched
            .iter()
            .map(|r| principal_key(&r.principal_arn))
            .collect();
        keys.extend(touched_keys.iter().cloned());
        let mut unreadable_after = BTreeSet::new();
        self.read_entries(touched, &mut unreadable_after).await;
        // What could not be read before and was not read again is still unknown: the cache
        // holds an older read of it (or nothing), which must not pass for the current state.
        unreadable_after.extend(unreadable.into_iter().filter(|k| !touched_keys.contains(k)));
        plan_sync(desired, &self.observed(mode, &keys, &unreadable_after))
    }

    /// The observed state from the cache: the listed entries (and entries read back since).
    fn observed(
        &self,
        mode: AuthenticationMode,
        keys: &BTreeSet<String>,
        unreadable: &BTreeSet<String>,
    ) -> Observed {
        Observed {
            mode,
            entries: self
                .cache
                .iter()
                .filter(|(k, _)| keys.contains(*k))
                .map(|(_, c)| c.entry.clone())
                .collect(),
            unreadable: unreadable.clone(),
        }
    }

    /// Reads entries into the cache. An entry that is gone leaves the cache; a failed read
    /// marks it unreadable for this pass.
    async fn read_entries(&mut self, reads: Vec<Read>, unreadable: &mut BTreeSet<String>) {
        let this = &*self;
        let results: Vec<EntryRead> = futures::stream::iter(reads)
            .map(|read| this.read(read))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for read in results {
            self.remember(read, unreadable);
        }
    }

    /// One read: DescribeAccessEntry, then ListAssociatedAccessPolicies when asked (and the
    /// entry, if described, exists).
    async fn read(&self, read: Read) -> EntryRead {
        let (cluster, arn) = (self.cluster.as_str(), read.principal_arn.as_str());
        let entry = if read.describe {
            let described = self.eks.describe_access_entry(cluster, arn);
            self.no_answer.call(described).await
        } else {
            Ok(None)
        };
        let policies = if read.policies && (!read.describe || matches!(entry, Ok(Some(_)))) {
            let listed = self.eks.list_associated_policies(cluster, arn);
            Some(self.no_answer.call(listed).await)
        } else {
            None
        };
        EntryRead {
            principal_arn: read.principal_arn,
            described: read.describe,
            entry,
            policies,
        }
    }

    /// Puts what a read got into the cache.
    fn remember(&mut self, read: EntryRead, unreadable: &mut BTreeSet<String>) {
        let arn = &read.principal_arn;
        let key = principal_key(arn);
        let previous = self.cache.get(&key).map(|c| c.entry.clone());
        let mut entry = match (read.described, read.entry) {
            (true, Ok(Some(mut e))) => {
                // Policies not re-read: keep what was known.
                e.policies = previous.and_then(|p| p.policies);
                e
            }
            (true, Ok(None)) => {
                self.cache.remove(&key);
                return;
            }
            (true, Err(err)) => {
                debug!(principal = %arn, error = %err, "cannot describe access entry");
                unreadable.insert(key);
                return;
            }
            (false, _) => match previous {
                Some(p) => p,
                None => return,
            },
        };
        match read.policies {
            Some(Ok(Some(p))) => entry.policies = Some(p),
            Some(Ok(None)) => {
                self.cache.remove(&key);
                return;
            }
            Some(Err(err)) => {
                debug!(principal = %arn, error = %err, "cannot list associated access policies");
                unreadable.insert(key.clone());
            }
            None => {}
        }
        let read_at_pass = self.pass;
        self.cache.insert(
            key,
            CachedEntry {
                entry,
                read_at_pass,
            },
        );
    }

    /// One principal's steps, in order; the first failure stops them.
    async fn apply(&self, work: &PrincipalWork) -> Result<(), EksError> {
        let principal = work.principal_arn.as_str();
        for step in &work.steps {
            self.no_answer.call(self.step(principal, step)).await?;
        }
        Ok(())
    }

    /// One EKS call of a piece of work.
    async fn step(&self, principal: &str, step: &Step) -> Result<(), EksError> {
        let cluster = self.cluster.as_str();
        match step {
            Step::Create {
                type_,
                username,
                kubernetes_groups,
                tags,
            } => {
                let entry = CreateEntry {
                    principal_arn: principal.to_string(),
                    type_: *type_,
                    username: username.clone(),
                    kubernetes_groups: kubernetes_groups.clone(),
                    tags: tags.clone(),
                };
                self.eks.create_access_entry(cluster, &entry).await
            }
            Step::Update {
                username,
                kubernetes_groups,
            } => {
                self.eks
                    .update_access_entry(cluster, principal, username.as_deref(), kubernetes_groups)
                    .await
            }
            Step::Delete => self.eks.delete_access_entry(cluster, principal).await,
            Step::Associate(policy) => {
                self.eks
                    .associate_access_policy(cluster, principal, policy)
                    .await
            }
            Step::Disassociate { policy_arn } => {
                self.eks
                    .disassociate_access_policy(cluster, principal, policy_arn)
                    .await
            }
            Step::Tag {
                access_entry_arn,
                tags,
            } => self.eks.tag_resource(access_entry_arn, tags).await,
        }
    }
}

/// Each mapping's outcome once its work ran: the planned outcome, what the work did (`errors`
/// by the work's index) and what EKS held after it (`after`).
fn final_outcomes(
    desired: &[DesiredMapping],
    plan: &SyncPlan,
    errors: &BTreeMap<usize, String>,
    after: &SyncPlan,
) -> BTreeMap<String, AccessEntryReport> {
    let confirmed_before: BTreeMap<&str, bool> = desired
        .iter()
        .map(|m| (m.name.as_str(), m.confirmed_before))
        .collect();
    let mut outcomes = BTreeMap::new();
    for (name, planned) in &plan.outcomes {
        let index = plan
            .work
            .iter()
            .position(|w| w.mapping.as_deref() == Some(name.as_str()));
        let work = index.map(|i| &plan.work[i]);
        let error = index.and_then(|i| errors.get(&i)).map(String::as_str);
        let later = after.outcomes.get(name).unwrap_or(planned);
        let before = confirmed_before
            .get(name.as_str())
            .copied()
            .unwrap_or(false);
        outcomes.insert(
            name.clone(),
            finalize_outcome(planned, work, error, later, before),
        );
    }
    outcomes
}

/// The reports of `off` mode: a refused mapping says so (its entry is deleted), every other
/// mapping that its access entry, if any, is not kept in sync.
fn not_managed(
    desired: &[DesiredMapping],
    mut reports: BTreeMap<String, AccessEntryReport>,
) -> BTreeMap<String, AccessEntryReport> {
    for m in desired.iter().filter(|m| m.refusal.is_none()) {
        let Some(report) = reports.get_mut(&m.name) else {
            continue;
        };
        if report.reason == SyncReason::EksError {
            continue;
        }
        report.synced = false;
        report.confirmed_in_place = false;
        report.reason = SyncReason::NotManaged;
        report.message = match &report.status {
            Some(entry) => format!(
                "--access-entries=off: the access entry EKS holds for {} is not kept in sync with this mapping and still grants what it says; the operator deletes the entries it created when their mapping is deleted. Delete it in EKS, or run with --access-entries=mirror again",
                entry.principal_arn
            ),
            None => "--access-entries=off: this mapping has no access entry, and the operator creates none".to_string(),
        };
    }
    reports
}

/// What `/readyz` and the metric say about EKS after a pass that failed with `err`.
fn eks_problem(err: &EksError) -> String {
    if err.is_unreachable() {
        format!("EKS is not answering: {err}")
    } else {
        format!("EKS refused the access-entry loop's calls: {err}")
    }
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A mapping as the planner sees it, with the verdict of the operator's policy on it (the one
/// aws-auth gets, plus the groups of `spec.accessEntry.kubernetesGroups`, which only the access
/// entry grants). `confirmed_before` is left false: only the runner knows earlier passes.
pub fn desired_mapping(
    m: &IamIdentityMapping,
    resolved_arn: Option<&str>,
    settings: &Settings,
) -> DesiredMapping {
    let access_entry_groups = m
        .spec
        .access_entry
        .iter()
        .flat_map(|a| a.kubernetes_groups.iter().flatten());
    DesiredMapping {
        name: m.name_any(),
        generation: m.metadata.generation,
        created: m
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second()),
        translation: translate_resolved(&m.spec, resolved_arn),
        adopt: m.spec.access_entry.as_ref().is_some_and(|a| a.adopt),
        refusal: spec_refusal(
            &m.spec,
            resolved_arn,
            access_entry_groups,
            m.spec
                .access_entry
                .as_ref()
                .and_then(|a| a.username.as_deref()),
            settings,
        ),
        confirmed_before: false,
    }
}

/// The loop: waits for the mapping store, then runs a pass on every wake (after a short
/// debounce) and at every resync, until `shutdown` completes.
///
/// `settings` are the operator's settings, the same the aws-auth reconcile plans with: access
/// entries obey its policy as aws-auth does. `wake` is the `Notify` the aws-auth side signals
/// on every IamIdentityMapping event (`notify_one`, so that a change during a pass is not
/// lost). Reports go to `board`. With leader election, `leading` says whether this replica
/// leads: only the leader calls EKS.
// Each argument is one of the loop's independent inputs; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn run_loop<E: EksApi>(
    eks: Arc<E>,
    config: AccessEntriesConfig,
    settings: Settings,
    mappings: MappingCache,
    wake: Arc<Notify>,
    board: ReportBoard,
    principals: PrincipalBoard,
    leading: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if !wait_until_synced(&mappings.watch, shutdown.as_mut(), "access-entry loop").await {
        return;
    }
    info!(cluster = %config.cluster_name, mode = ?config.mode, resync_seconds = config.resync.as_secs(), "access-entry loop started");
    let mut runner = Runner::new(
        eks,
        &config.cluster_name,
        config.concurrency,
        board,
        settings,
    )
    .with_principals(principals)
    .with_mode(config.mode);
    let mut schedule = PassSchedule::new(config.resync, leading);
    while let Some(resync) = schedule.next(&wake, shutdown.as_mut()).await {
        // A mapping missing from a cache that is re-listing may exist: its access entry must
        // not be deleted. The watch's return wakes this loop again.
        let snapshot = mappings.snapshot();
        if !snapshot.complete {
            debug!("the IamIdentityMapping watch is re-listing; access-entry pass deferred");
            continue;
        }
        runner.pass(&snapshot.mappings, resync).await;
    }
    info!("access-entry loop stopped");
}

#[cfg(test)]
mod tests {
    //! Passes of the loop against an in-memory EKS whose calls can be made to fail one by one.

    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::accessentries::client::CallCounts;
    use crate::accessentries::sync::MANAGED_BY_TAG;
    use crate::accessentries::translate::{DesiredPolicy, PolicyScope};
    use crate::api::IamIdentityMappingSpec;

    const DEV: &str = "arn:aws:iam::111122223333:role/team/dev";
    const OPS: &str = "arn:aws:iam::111122223333:role/ops";
    const ADMIN_POLICY: &str = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";

    #[derive(Default)]
    struct State {
        entries: BTreeMap<String, ObservedEntry>,
        /// Calls (operation, principal key) that fail, throttled.
        failing: BTreeSet<(&'static str, String)>,
        calls: CallCounts,
        changes: Vec<(&'static str, String)>,
    }

    #[derive(Default)]
    struct FakeEks(Mutex<State>);

    fn throttled(operation: &'static str) -> EksError {
        EksError::Service {
            operation,
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
        }
    }

    impl FakeEks {
        fn call<T>(
            &self,
            operation: &'static str,
            principal: &str,
            f: impl FnOnce(&mut State) -> T,
        ) -> Result<T, EksError> {
            let mut state = self.0.lock().unwrap();
            *state.calls.0.entry(operation).or_default() += 1;
            if state
                .failing
                .contains(&(operation, principal_key(principal)))
            {
                return Err(throttled(operation));
            }
            Ok(f(&mut state))
        }

        fn fail(&self, operation: &'static str, principal: &str) {
            let mut state = self.0.lock().unwrap();
            state.failing.insert((operation, principal_key(principal)));
        }

        fn heal(&self) {
            self.0.lock().unwrap().failing.clear();
        }

        fn changes(&self) -> Vec<(&'static str, String)> {
            std::mem::take(&mut self.0.lock().unwrap().changes)
        }

        fn put(&self, entry: ObservedEntry) {
            let mut state = self.0.lock().unwrap();
            state
                .entries
                .insert(principal_key(&entry.principal_arn), entry);
        }

        fn edit(&self, principal: &str, f: impl FnOnce(&mut ObservedEntry)) {
            let mut state = self.0.lock().unwrap();
            if let Some(e) = state.entries.get_mut(&principal_key(principal)) {
                f(e);
            }
        }

        fn has(&self, principal: &str) -> bool {
            self.0
                .lock()
                .unwrap()
                .entries
                .contains_key(&principal_key(principal))
        }
    }

    impl EksApi for FakeEks {
        async fn authentication_mode(&self, _: &str) -> Result<AuthenticationMode, EksError> {
            self.call("DescribeCluster", "", |_| {
                AuthenticationMode::ApiAndConfigMap
            })
        }

        async fn list_access_entries(&self, _: &str) -> Result<Vec<String>, EksError> {
            self.call("ListAccessEntries", "", |s| {
                s.entries
                    .values()
                    .map(|e| e.principal_arn.clone())
                    .collect()
            })
        }

        async fn describe_access_entry(
            &self,
            _: &str,
            principal: &str,
        ) -> Result<Option<ObservedEntry>, EksError> {
            self.call("DescribeAccessEntry", principal, |s| {
                s.entries
                    .get(&principal_key(principal))
                    .map(|e| ObservedEntry {
                        policies: None,
                        ..e.clone()
                    })
            })
        }

        async fn list_associated_policies(
            &self,
            _: &str,
            principal: &str,
        ) -> Result<Option<Vec<ObservedPolicy>>, EksError> {
            self.call("ListAssociatedAccessPolicies", principal, |s| {
                s.entries
                    .get(&principal_key(principal))
                    .map(|e| e.policies.clone().unwrap_or_default())
            })
        }

        async fn create_access_entry(&self, _: &str, entry: &CreateEntry) -> Result<(), EksError> {
            self.call("CreateAccessEntry", &entry.principal_arn, |s| {
                s.changes.push(("create", entry.principal_arn.clone()));
                s.entries.insert(
                    principal_key(&entry.principal_arn),
                    ObservedEntry {
                        principal_arn: entry.principal_arn.clone(),
                        access_entry_arn: Some(format!("ae/{}", entry.principal_arn)),
                        type_: entry.type_.as_str().to_string(),
                        username: entry.username.clone(),
                        kubernetes_groups: entry.kubernetes_groups.clone(),
                        tags: entry.tags.clone(),
                        policies: Some(Vec::new()),
                    },
                );
            })
        }

        async fn update_access_entry(
            &self,
            _: &str,
            principal: &str,
            username: Option<&str>,
            groups: &[String],
        ) -> Result<(), EksError> {
            self.call("UpdateAccessEntry", principal, |s| {
                s.changes.push(("update", principal.to_string()));
                if let Some(e) = s.entries.get_mut(&principal_key(principal)) {
                    if let Some(u) = username {
                        e.username = Some(u.to_string());
                    }
                    e.kubernetes_groups = groups.to_vec();
                }
            })
        }

        async fn delete_access_entry(&self, _: &str, principal: &str) -> Result<(), EksError> {
            self.call("DeleteAccessEntry", principal, |s| {
                s.changes.push(("delete", principal.to_string()));
                s.entries.remove(&principal_key(principal));
            })
        }

        async fn associate_access_policy(
            &self,
            _: &str,
            principal: &str,
            policy: &DesiredPolicy,
        ) -> Result<(), EksError> {
            self.call("AssociateAccessPolicy", principal, |s| {
                s.changes.push(("associate", principal.to_string()));
                if let Some(e) = s.entries.get_mut(&principal_key(principal)) {
                    let policies = e.policies.get_or_insert_with(Vec::new);
                    policies.retain(|p| p.policy_arn != policy.policy_arn);
                    policies.push(ObservedPolicy {
                        policy_arn: policy.policy_arn.clone(),
                        scope: policy.scope.clone(),
                    });
                }
            })
        }

        async fn disassociate_access_policy(
            &self,
            _: &str,
            principal: &str,
            policy_arn: &str,
        ) -> Result<(), EksError> {
            self.call("DisassociateAccessPolicy", principal, |s| {
                s.changes.push(("disassociate", principal.to_string()));
                if let Some(e) = s.entries.get_mut(&principal_key(principal)) {
                    e.policies
                        .get_or_insert_with(Vec::new)
                        .retain(|p| p.policy_arn != policy_arn);
                }
            })
        }

        async fn tag_resource(
            &self,
            resource_arn: &str,
            tags: &BTreeMap<String, String>,
        ) -> Result<(), EksError> {
            let principal = resource_arn.trim_start_matches("ae/").to_string();
            self.call("TagResource", &principal, |s| {
                s.changes.push(("tag", principal.clone()));
                if let Some(e) = s.entries.get_mut(&principal_key(&principal)) {
                    e.tags.extend(tags.clone());
                }
            })
        }

        fn calls(&self) -> CallCounts {
            self.0.lock().unwrap().calls.clone()
        }
    }

    fn mapping(name: &str, arn: &str, groups: &[&str], generation: i64) -> Arc<IamIdentityMapping> {
        let mut m = IamIdentityMapping::new(
            name,
            IamIdentityMappingSpec {
                arn: Some(arn.into()),
                username: Some(format!("{name}:{{{{SessionName}}}}")),
                groups: groups.iter().map(|g| g.to_string()).collect(),
                ..Default::default()
            },
        );
        m.metadata.generation = Some(generation);
        Arc::new(m)
    }

    fn new_runner(eks: &Arc<FakeEks>, settings: Settings) -> Runner<FakeEks> {
        Runner::new(eks.clone(), "prod", 2, ReportBoard::new(), settings)
    }

    fn state(runner: &Runner<FakeEks>, name: &str) -> (SyncReason, bool) {
        let report = runner.board().get(name).expect("a report");
        (report.reason, report.confirmed_in_place)
    }

    /// Throttling of one entry must not un-confirm it: in `only` mode that would write the
    /// mapping back into aws-auth until the next pass, and remove it again after.
    #[tokio::test]
    async fn throttling_of_one_entry_keeps_its_confirmation() {
        let eks = Arc::new(FakeEks::default());
        let mut runner = new_runner(&eks, Settings::default());
        let dev = mapping("dev", DEV, &["devs"], 1);
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::Created, true));
        assert_eq!(eks.changes(), vec![("create", DEV.to_string())]);

        // A resync re-reads it, and DescribeAccessEntry is throttled.
        eks.fail("DescribeAccessEntry", DEV);
        let summary = runner.pass(std::slice::from_ref(&dev), true).await;
        assert!(summary.error.is_none(), "one entry, not the pass");
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, true));
        let report = runner.board().get("dev").unwrap();
        assert!(report.confirms(Some(1)));
        assert!(
            report.message.contains("last confirmed in place"),
            "{}",
            report.message
        );
        assert!(
            report.status.is_some(),
            "the last known entry is still shown"
        );

        // ListAssociatedAccessPolicies throttled instead.
        eks.heal();
        eks.fail("ListAssociatedAccessPolicies", DEV);
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, true));

        // Throttled while another mapping has work in the same pass.
        eks.heal();
        eks.fail("DescribeAccessEntry", DEV);
        let ops = mapping("ops", OPS, &["ops"], 1);
        runner.pass(&[dev.clone(), ops.clone()], true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, true));
        assert_eq!(state(&runner, "ops"), (SyncReason::Created, true));
        assert_eq!(
            eks.changes(),
            vec![("create", OPS.to_string())],
            "nothing done to dev"
        );

        // Healthy again: confirmed and in sync, and an idle pass changes nothing.
        eks.heal();
        runner.pass(&[dev.clone(), ops.clone()], true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::InSync, true));
        let version = runner.board().version();
        runner.pass(&[dev.clone(), ops.clone()], false).await;
        assert_eq!(runner.board().version(), version);
    }

    #[tokio::test]
    async fn a_confirmation_goes_when_the_spec_changes_or_the_entry_is_found_different() {
        let eks = Arc::new(FakeEks::default());
        let mut runner = new_runner(&eks, Settings::default());
        let dev = mapping("dev", DEV, &["devs"], 1);
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::Created, true));

        // A new generation while the entry cannot be read: not confirmed.
        eks.fail("DescribeAccessEntry", DEV);
        let edited = mapping("dev", DEV, &["devs", "qa"], 2);
        runner.pass(std::slice::from_ref(&edited), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, false));
        eks.heal();
        runner.pass(std::slice::from_ref(&edited), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::Updated, true));
        let dev = edited;

        // Deleted and re-created under the same name for another principal, at the same
        // generation: the confirmation was for the other principal.
        eks.fail("DescribeAccessEntry", OPS);
        eks.put(ObservedEntry {
            principal_arn: OPS.into(),
            access_entry_arn: None,
            type_: "STANDARD".into(),
            username: None,
            kubernetes_groups: Vec::new(),
            tags: BTreeMap::new(),
            policies: Some(Vec::new()),
        });
        let moved = mapping("dev", OPS, &["devs", "qa"], 2);
        runner.pass(std::slice::from_ref(&moved), true).await;
        let (reason, confirmed) = state(&runner, "dev");
        assert!(!confirmed, "{reason}: another principal is not confirmed");
        // (The entry of the first principal went with the move.)
        eks.heal();
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::Created, true));

        // Changed in EKS by someone, and the update that would fix it is throttled: read back
        // different is not transient.
        eks.edit(DEV, |e| e.kubernetes_groups = vec!["other".into()]);
        eks.fail("UpdateAccessEntry", DEV);
        let summary = runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(summary.failed, 1);
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, false));

        // Deleted in EKS and the create is throttled: absent, not confirmed.
        eks.heal();
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::Updated, true));
        eks.0.lock().unwrap().entries.clear();
        eks.fail("CreateAccessEntry", DEV);
        runner.pass(std::slice::from_ref(&dev), true).await;
        assert_eq!(state(&runner, "dev"), (SyncReason::EksError, false));
    }

    /// A listed entry that cannot be described is unknown, also in a pass where another
    /// mapping has work: nothing is planned on it from what is not known.
    #[tokio::test]
    async fn an_entry_not_read_is_not_taken_for_absent() {
        let eks = Arc::new(FakeEks::default());
        eks.put(ObservedEntry {
            principal_arn: DEV.into(),
            access_entry_arn: Some(format!("ae/{DEV}")),
            type_: "STANDARD".into(),
            username: Some("dev:{{SessionName}}".into()),
            kubernetes_groups: vec!["devs".into()],
            tags: BTreeMap::new(),
            policies: Some(Vec::new()),
        });
        eks.fail("DescribeAccessEntry", DEV);
        let mut runner = new_runner(&eks, Settings::default());
        let dev = mapping("dev", DEV, &["devs"], 1);
        let ops = mapping("ops", OPS, &["ops"], 1);
        runner.pass(&[dev, ops], true).await;
        let report = runner.board().get("dev").unwrap();
        assert_eq!(
            (report.reason, report.confirmed_in_place),
            (SyncReason::EksError, false),
            "{}",
            report.message
        );
        assert!(
            report.message.contains("could not be read"),
            "{}",
            report.message
        );
        assert_eq!(eks.changes(), vec![("create", OPS.to_string())]);
    }

    /// The policy of the aws-auth side holds for access entries: no entry for a refused
    /// mapping, and the operator's entry of a mapping that became refused is deleted.
    #[tokio::test]
    async fn the_group_policy_and_protected_principals_hold_for_access_entries() {
        let policy = Settings::default()
            .with_group_policy(&[], &["system:masters".to_string()])
            .unwrap();
        let eks = Arc::new(FakeEks::default());
        let mut runner = new_runner(&eks, policy);
        let admin = mapping("admin", DEV, &["system:masters"], 1);
        runner.pass(std::slice::from_ref(&admin), true).await;
        assert!(eks.changes().is_empty(), "no CreateAccessEntry");
        assert!(!eks.has(DEV));
        assert_eq!(
            state(&runner, "admin"),
            (SyncReason::PolicyViolation, false)
        );

        // A cluster-admin entry the operator created before the policy (or before this fix):
        // deleted, while the creator's untagged entry stays.
        let tags = BTreeMap::from([
            (MANAGED_BY_TAG.to_string(), "aws-auth-operator".to_string()),
            ("awsauth.dev/mapping".to_string(), "admin".to_string()),
        ]);
        eks.put(ObservedEntry {
            principal_arn: DEV.into(),
            access_entry_arn: Some(format!("ae/{DEV}")),
            type_: "STANDARD".into(),
            username: Some("admin:{{SessionName}}".into()),
            kubernetes_groups: Vec::new(),
            tags,
            policies: Some(vec![ObservedPolicy {
                policy_arn: ADMIN_POLICY.into(),
                scope: PolicyScope::Cluster,
            }]),
        });
        let creator = "arn:aws:iam::111122223333:role/creator";
        eks.put(ObservedEntry {
            principal_arn: creator.into(),
            access_entry_arn: None,
            type_: "STANDARD".into(),
            username: None,
            kubernetes_groups: Vec::new(),
            tags: BTreeMap::new(),
            policies: Some(Vec::new()),
        });
        runner.pass(std::slice::from_ref(&admin), true).await;
        assert_eq!(eks.changes(), vec![("delete", DEV.to_string())]);
        assert!(!eks.has(DEV) && eks.has(creator));
        let report = runner.board().get("admin").unwrap();
        assert_eq!(report.reason, SyncReason::PolicyViolation);
        assert!(report.status.is_none(), "gone, read back");
        runner.pass(std::slice::from_ref(&admin), true).await;
        assert!(eks.changes().is_empty(), "stable");
        // EKS cannot be listed: the refusal is still what the mapping says.
        eks.fail("ListAccessEntries", "");
        let summary = runner.pass(std::slice::from_ref(&admin), true).await;
        assert!(summary.error.is_some());
        assert_eq!(
            state(&runner, "admin"),
            (SyncReason::PolicyViolation, false)
        );
        eks.heal();

        // A protected principal: nothing created.
        let mut protected = Settings::default();
        protected.protect(OPS).unwrap();
        let mut runner = new_runner(&eks, protected);
        runner.pass(&[mapping("ops", OPS, &["ops"], 1)], true).await;
        assert!(eks.changes().is_empty());
        assert_eq!(
            state(&runner, "ops"),
            (SyncReason::ProtectedPrincipal, false)
        );
    }

    /// `--access-entries=off` with the cluster known: deleting a mapping (an admin) revokes the
    /// access entry the operator created for it; nothing else is created, changed or adopted,
    /// and the mappings that remain say their entry is not managed.
    #[tokio::test]
    async fn off_mode_only_revokes_the_entries_of_deleted_mappings() {
        let eks = Arc::new(FakeEks::default());
        let mut runner = new_runner(&eks, Settings::default());
        let admin = mapping("admin", DEV, &["system:masters"], 1);
        let ops = mapping("ops", OPS, &["ops"], 1);
        runner.pass(&[admin.clone(), ops.clone()], true).await;
        assert!(eks.has(DEV) && eks.has(OPS));
        eks.changes();

        // Off (a new process): an edit of ops is not mirrored, a new mapping gets no entry.
        let mut runner = new_runner(&eks, Settings::default()).with_mode(AccessEntriesMode::Off);
        let edited = mapping("ops", OPS, &["ops", "more"], 2);
        let new = mapping("new", "arn:aws:iam::111122223333:role/new", &["x"], 1);
        runner
            .pass(&[admin.clone(), edited.clone(), new.clone()], true)
            .await;
        assert!(eks.changes().is_empty(), "nothing created or changed");
        let report = runner.board().get("ops").unwrap();
        assert_eq!(report.reason, SyncReason::NotManaged);
        assert!(!report.synced && !report.confirmed_in_place);
        assert!(
            report.message.contains("not kept in sync"),
            "{}",
            report.message
        );
        assert_eq!(
            report.status.as_ref().map(|s| s.kubernetes_groups.clone()),
            Some(vec!["ops".to_string()]),
            "what EKS holds"
        );
        assert_eq!(
            runner.board().get("new").unwrap().reason,
            SyncReason::NotManaged
        );

        // The admin mapping is deleted: its cluster-admin entry goes.
        runner.pass(&[edited.clone(), new.clone()], true).await;
        assert_eq!(eks.changes(), vec![("delete", DEV.to_string())]);
        assert!(!eks.has(DEV) && eks.has(OPS));
        runner.pass(&[edited, new], true).await;
        assert!(eks.changes().is_empty(), "stable");
    }
}
