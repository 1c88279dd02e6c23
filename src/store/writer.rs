//! The store's I/O. Every write of aws-auth and of its history goes through one
//! compare-and-swap loop, [`compare_and_swap`]: read the object, let a [`Decide`] say what to
//! write over it, create it when it is absent or replace it carrying the resourceVersion that
//! was read, and on a 409 (changed or created in between) or a 404 on replace (deleted in
//! between) read again and decide again. Always with the operator's field manager; never a
//! forced write, which would drop what another writer added between our read and our write.

use std::future::{Future, ready};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{ListParams, PostParams};
use thiserror::Error;
use tracing::{debug, info, warn};

use super::revisions::{
    HISTORY_CONFIGMAP, HistoryError, Origin, Recorded, RecordedSettings, Revision, RevisionSummary,
    State, decode_lossy, find, with_settings, with_state,
};
use super::rollback::{
    Planning, RollbackError, RollbackReport, RollbackTarget, compare, mapping_inputs, planning,
    rollback_target,
};
use super::{
    FIELD_MANAGER, MAX_WRITE_ATTEMPTS, aws_auth_with, describe_kube_error, is_status,
    managed_annotation,
};
use crate::accessentries::AccessEntriesMode;
use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use crate::plan::Settings;

/// A read or write of the compare-and-swap loop that failed, or too many conflicts.
#[derive(Debug, Error)]
pub enum SwapError {
    #[error("reading {CONFIGMAP_NAMESPACE}/{name}: {}", describe_kube_error(.source))]
    Read { name: String, source: kube::Error },
    #[error("{action} {CONFIGMAP_NAMESPACE}/{name}: {}", describe_kube_error(.source))]
    Write {
        action: &'static str,
        name: String,
        source: kube::Error,
    },
    #[error("{CONFIGMAP_NAMESPACE}/{name} changed under {attempts} consecutive writes")]
    TooManyConflicts { name: String, attempts: u32 },
}

impl From<SwapError> for HistoryError {
    fn from(err: SwapError) -> Self {
        match err {
            SwapError::Read { name, source } => HistoryError::Kube {
                action: "reading",
                name,
                source,
            },
            SwapError::Write {
                action,
                name,
                source,
            } => HistoryError::Kube {
                action,
                name,
                source,
            },
            SwapError::TooManyConflicts { name, attempts } => {
                HistoryError::TooManyConflicts { name, attempts }
            }
        }
    }
}

/// What to do with the object as read: write `write` over it (created when nothing was read,
/// else replaced: it carries the resourceVersion that was read), or nothing; and what the
/// decision found, for the caller.
pub struct Decision<T> {
    pub write: Option<ConfigMap>,
    pub value: T,
}

impl<T> Decision<T> {
    pub fn write(object: ConfigMap, value: T) -> Decision<T> {
        Decision {
            write: Some(object),
            value,
        }
    }

    pub fn keep(value: T) -> Decision<T> {
        Decision { write: None, value }
    }
}

/// Decides what to write over the object as read (`None`: it does not exist), once per
/// attempt. A closure that decides without I/O is one.
pub trait Decide {
    type Value;
    type Error: From<SwapError>;
    fn decide(
        &mut self,
        current: Option<ConfigMap>,
        attempt: u32,
    ) -> impl Future<Output = Result<Decision<Self::Value>, Self::Error>> + Send;
}

impl<T, E, F> Decide for F
where
    F: FnMut(Option<ConfigMap>) -> Result<Decision<T>, E>,
    T: Send,
    E: From<SwapError> + Send,
{
    type Value = T;
    type Error = E;
    fn decide(
        &mut self,
        current: Option<ConfigMap>,
        _attempt: u32,
    ) -> impl Future<Output = Result<Decision<T>, E>> + Send {
        ready(self(current))
    }
}

/// What a compare-and-swap did: the last decision's value, what the API server returned for
/// the write (`None`: nothing was written), and how many reads it took.
#[derive(Debug)]
pub struct Swapped<T> {
    pub value: T,
    pub written: Option<ConfigMap>,
    pub attempts: u32,
}

/// Reads `name`, asks `decide` what to write over it, and writes it with a precondition on
/// what was read; when the object changed in between, reads and decides again, up to
/// [`MAX_WRITE_ATTEMPTS`] times.
pub async fn compare_and_swap<D: Decide>(
    api: &Api<ConfigMap>,
    name: &str,
    decide: &mut D,
) -> Result<Swapped<D::Value>, D::Error> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    for attempt in 1..=MAX_WRITE_ATTEMPTS {
        let current = read(api, name).await?;
        let existed = current.is_some();
        let Decision { write, value } = decide.decide(current, attempt).await?;
        let Some(mut object) = write else {
            return Ok(Swapped {
                value,
                written: None,
                attempts: attempt,
            });
        };
        // Server-managed fields that must not be sent back.
        object.metadata.managed_fields = None;
        let result = if existed {
            api.replace(name, &params, &object).await
        } else {
            api.create(&params, &object).await
        };
        match result {
            Ok(written) => {
                return Ok(Swapped {
                    value,
                    written: Some(written),
                    attempts: attempt,
                });
            }
            // 409: someone (EKS adding a node role, a person, another replica) wrote or created
            // it in between; 404 on replace: it was deleted in between. Read again.
            Err(err) if is_status(&err, 409) || (existed && is_status(&err, 404)) => {
                info!(
                    configmap = name,
                    attempt,
                    error = %describe_kube_error(&err),
                    "changed since it was read; reading again"
                );
            }
            Err(source) => {
                return Err(SwapError::Write {
                    action: if existed { "updating" } else { "creating" },
                    name: name.to_string(),
                    source,
                }
                .into());
            }
        }
    }
    Err(SwapError::TooManyConflicts {
        name: name.to_string(),
        attempts: MAX_WRITE_ATTEMPTS,
    }
    .into())
}

/// The ConfigMap `name`, `None` when it does not exist.
async fn read(api: &Api<ConfigMap>, name: &str) -> Result<Option<ConfigMap>, SwapError> {
    api.get_opt(name).await.map_err(|source| SwapError::Read {
        name: name.to_string(),
        source,
    })
}

/// kube-system/aws-auth, `None` when it does not exist.
pub async fn get_aws_auth(api: &Api<ConfigMap>) -> Result<Option<ConfigMap>, HistoryError> {
    Ok(read(api, CONFIGMAP_NAME).await?)
}

/// The history ConfigMap and its revisions, oldest first; `(None, [])` when it does not exist.
///
/// Unreadable keys are skipped with a warning rather than failing: a damaged entry must not stop
/// recovery from the revisions that are fine (the next [`record`] drops it).
pub async fn load(
    api: &Api<ConfigMap>,
) -> Result<(Option<ConfigMap>, Vec<Revision>), HistoryError> {
    let Some(cm) = read(api, HISTORY_CONFIGMAP).await? else {
        return Ok((None, Vec::new()));
    };
    let (revisions, errors) = decode_lossy(&cm);
    for err in &errors {
        warn!(configmap = HISTORY_CONFIGMAP, error = %err, "skipping an unreadable revision");
    }
    Ok((Some(cm), revisions))
}

/// The revisions, newest first.
pub async fn list(client: kube::Client) -> Result<Vec<RevisionSummary>, HistoryError> {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let (_, revisions) = load(&api).await?;
    Ok(revisions.iter().rev().map(RevisionSummary::of).collect())
}

/// Records `state` in the history ConfigMap (see [`with_state`]) and returns what that did;
/// writes nothing when the state is already the newest revision.
pub async fn record(
    api: &Api<ConfigMap>,
    state: State<'_>,
    origin: Origin,
    reason: &str,
    time: Time,
    keep: usize,
) -> Result<Recorded, HistoryError> {
    let mut decide = |current: Option<ConfigMap>| {
        let (cm, recorded) = with_state(current, state, origin, reason, time.clone(), keep)?;
        Ok::<_, HistoryError>(if recorded.unchanged {
            Decision::keep(recorded)
        } else {
            Decision::write(cm, recorded)
        })
    };
    let swapped = compare_and_swap(api, HISTORY_CONFIGMAP, &mut decide).await?;
    let recorded = swapped.value;
    if swapped.written.is_none() {
        debug!(
            revision = recorded.revision,
            "this aws-auth is already the newest revision"
        );
        return Ok(recorded);
    }
    info!(
        configmap = HISTORY_CONFIGMAP,
        revision = recorded.revision,
        coalesced = recorded.coalesced,
        kept = recorded.kept,
        reason,
        attempt = swapped.attempts,
        "recorded an aws-auth revision"
    );
    if recorded.limited_by_size {
        warn!(
            configmap = HISTORY_CONFIGMAP,
            kept = recorded.kept,
            requested = recorded.requested,
            "fewer revisions than --history-limit are kept: no more fit in a ConfigMap"
        );
    }
    Ok(recorded)
}

/// Records the operator's settings on the history ConfigMap (created when missing), unless it
/// already carries them. Returns whether it wrote.
pub async fn record_settings(
    api: &Api<ConfigMap>,
    settings: &RecordedSettings,
) -> Result<bool, HistoryError> {
    let mut decide = |current: Option<ConfigMap>| {
        let write = with_settings(current, settings);
        Ok::<_, HistoryError>(Decision {
            value: write.is_some(),
            write,
        })
    };
    let written = compare_and_swap(api, HISTORY_CONFIGMAP, &mut decide)
        .await?
        .value;
    if written {
        info!(configmap = HISTORY_CONFIGMAP, settings = %settings.describe(), "recorded the operator's settings for rollback");
    }
    Ok(written)
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

/// What to restore and how: the revision, the target the operator keeps, and the settings used.
async fn prepare(
    client: &kube::Client,
    api: &Api<ConfigMap>,
    revision: u64,
    flags: Settings,
) -> Result<(Revision, RollbackTarget, Planning), RollbackError> {
    let (history, revisions) = load(api).await?;
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

/// One attempt of a rollback: compare what is live with the target; when they differ, save
/// what is live in history (a state already saved is not saved again, so a retried or failed
/// rollback never pushes real revisions out), then write the target.
struct Restore<'a> {
    api: &'a Api<ConfigMap>,
    source: &'a Revision,
    target: &'a RollbackTarget,
    planning: &'a Planning,
    time: &'a Time,
    keep: usize,
}

impl Decide for Restore<'_> {
    type Value = RollbackReport;
    type Error = HistoryError;

    async fn decide(
        &mut self,
        current: Option<ConfigMap>,
        attempt: u32,
    ) -> Result<Decision<RollbackReport>, HistoryError> {
        let revision = self.source.revision;
        let mut report = compare(current.as_ref(), self.source, self.target);
        report.attempts = attempt;
        report.planned_with = self.planning.description.clone();
        report.settings_recorded = self.planning.recorded;
        if !report.changes_anything() {
            info!(
                revision,
                "aws-auth already matches the revision; nothing to write"
            );
            return Ok(Decision::keep(report));
        }
        if let Some(cm) = &current {
            let data = cm.data.clone().unwrap_or_default();
            let state = State {
                data: &data,
                managed_annotation: managed_annotation(cm),
            };
            let reason = format!("before rollback to revision {revision}");
            let recorded = record(
                self.api,
                state,
                Origin::Observed,
                &reason,
                self.time.clone(),
                self.keep,
            )
            .await?;
            report.backup_revision = Some(recorded.revision);
        }
        let desired = aws_auth_with(
            current.as_ref(),
            &self.target.data,
            &self.target.managed_annotation,
        );
        Ok(Decision::write(desired, report))
    }
}

/// Rolls aws-auth back to `revision` ([`Restore`] in the compare-and-swap loop), and records
/// the result in history.
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
    let mut restore = Restore {
        api: &api,
        source: &source,
        target: &target,
        planning: &planning,
        time: &time,
        keep,
    };
    let swapped = compare_and_swap(&api, CONFIGMAP_NAME, &mut restore).await?;
    let mut report = swapped.value;
    let Some(written) = swapped.written else {
        return Ok(report);
    };
    report.written = true;
    info!(
        revision,
        backup_revision = report.backup_revision,
        attempt = swapped.attempts,
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
    let reason = format!("rollback to revision {revision}");
    if let Err(err) = record(&api, state, Origin::Rollback, &reason, time, keep).await {
        warn!(error = %err, "rolled back, but could not record the result in history");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::awsauth::ConfigMapData;
    use crate::plan::{MANAGED_ANNOTATION, ManagedSet};
    use crate::store::mock;
    use crate::store::revisions::last_good;
    use crate::store::revisions::tests::{MALFORMED, at, data as roles, state};
    use crate::store::rollback::tests::{ADMIN, NODE, aws_auth, data};

    fn api(client: kube::Client) -> Api<ConfigMap> {
        Api::namespaced(client, "kube-system")
    }

    #[tokio::test]
    async fn load_of_a_missing_history_is_empty() {
        let (client, _) = mock::start();
        let (cm, revisions) = load(&api(client)).await.unwrap();
        assert!(cm.is_none());
        assert!(revisions.is_empty());
    }

    #[tokio::test]
    async fn record_creates_then_replaces_and_skips_the_same_state() {
        let (client, state_) = mock::start();
        let api = api(client);
        let (good, bad) = (roles(ADMIN), roles(MALFORMED));
        let first = record(&api, state(&good), Origin::Observed, "one", at(1), 10)
            .await
            .unwrap();
        let second = record(&api, state(&bad), Origin::Observed, "two", at(2), 10)
            .await
            .unwrap();
        let again = record(&api, state(&bad), Origin::Observed, "three", at(3), 10)
            .await
            .unwrap();
        assert_eq!((first.revision, second.revision), (1, 2));
        assert!(again.unchanged);
        assert_eq!(
            state_.lock().unwrap().calls,
            [
                "GET aws-auth-operator-history",
                "POST aws-auth-operator-history",
                "GET aws-auth-operator-history",
                "PUT aws-auth-operator-history",
                "GET aws-auth-operator-history",
            ]
        );
        let (_, revisions) = load(&api).await.unwrap();
        assert_eq!(revisions.len(), 2);
        assert_eq!(last_good(&revisions).map(|r| r.revision), Some(1));
    }

    #[tokio::test]
    async fn record_retries_on_conflict_without_losing_the_other_write() {
        let (client, state_) = mock::start();
        let api = api(client);
        let one = roles("one");
        record(&api, state(&one), Origin::Observed, "one", at(1), 10)
            .await
            .unwrap();
        // Another replica records a revision between our read and our write.
        state_.lock().unwrap().edits_before_put.push((
            HISTORY_CONFIGMAP.to_string(),
            Box::new(|cm: &mut ConfigMap| {
                let other = roles("other");
                let (next, _) = with_state(
                    Some(cm.clone()),
                    state(&other),
                    Origin::Observed,
                    "other",
                    at(2),
                    10,
                )
                .unwrap();
                *cm = next;
            }),
        ));
        let mine = roles("mine");
        let recorded = record(&api, state(&mine), Origin::Observed, "mine", at(3), 10)
            .await
            .unwrap();
        assert_eq!(recorded.revision, 3);
        let (_, revisions) = load(&api).await.unwrap();
        let reasons: Vec<&str> = revisions.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons, ["one", "other", "mine"]);
    }

    #[tokio::test]
    async fn record_gives_up_after_repeated_conflicts() {
        let (client, state_) = mock::start();
        let api = api(client);
        let one = roles("one");
        record(&api, state(&one), Origin::Observed, "one", at(1), 10)
            .await
            .unwrap();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            state_.lock().unwrap().edits_before_put.push((
                HISTORY_CONFIGMAP.to_string(),
                Box::new(|cm: &mut ConfigMap| {
                    cm.metadata.labels = Some(BTreeMap::new());
                }),
            ));
        }
        let mine = roles("mine");
        let err = record(&api, state(&mine), Origin::Observed, "mine", at(3), 10)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            HistoryError::TooManyConflicts { attempts, .. } if attempts == MAX_WRITE_ATTEMPTS
        ));
    }

    #[tokio::test]
    async fn api_errors_name_the_object() {
        let (client, state_) = mock::start();
        state_
            .lock()
            .unwrap()
            .fail
            .insert(HISTORY_CONFIGMAP.to_string(), 500);
        let err = load(&api(client)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "reading kube-system/aws-auth-operator-history: injected failure (InternalError, HTTP 500)"
        );
    }

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
            let (cm, _) = with_state(history, state, Origin::Operator, "seeded", time, 10).unwrap();
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
            // The backup, the rollback and its record: all with the operator's field manager.
            assert_eq!(state.write_queries.len(), 3);
            assert!(
                state
                    .write_queries
                    .iter()
                    .all(|q| q.contains("fieldManager="))
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

    /// Every write carries the operator's field manager; a ConfigMap deleted between the read
    /// and the replace is read again and created.
    #[tokio::test]
    async fn writes_carry_the_field_manager_and_survive_a_delete_in_between() {
        let (client, state_) = mock::start();
        let api = api(client);
        let one = roles("one");
        record(&api, state(&one), Origin::Observed, "one", at(1), 10)
            .await
            .unwrap();
        state_
            .lock()
            .unwrap()
            .deletes_before_put
            .push(HISTORY_CONFIGMAP.to_string());
        let two = roles("two");
        let recorded = record(&api, state(&two), Origin::Observed, "two", at(2), 10)
            .await
            .unwrap();
        assert_eq!(
            recorded.revision, 1,
            "the history was deleted: numbering starts again"
        );
        let state_ = state_.lock().unwrap();
        assert_eq!(
            state_.calls,
            [
                "GET aws-auth-operator-history",
                "POST aws-auth-operator-history",
                "GET aws-auth-operator-history",
                "PUT aws-auth-operator-history",
                "GET aws-auth-operator-history",
                "POST aws-auth-operator-history",
            ]
        );
        assert_eq!(state_.write_queries.len(), 3);
        assert!(
            state_
                .write_queries
                .iter()
                .all(|q| q.contains(&format!("fieldManager={FIELD_MANAGER}"))),
            "{:?}",
            state_.write_queries
        );
    }
}
