//! A plan outcome -> the mapping's status: kstatus conditions (`Ready`, and `Stalled` only while
//! true), domain conditions (`Valid`, `Conflict`, `Drifted`) and the rendered entry. There is no
//! `Reconciling`: a status is written once its outcome is known, and an `observedGeneration`
//! behind `metadata.generation` says the operator has not caught up. Pure, so that "patch status
//! only when it changed" is a plain comparison.

pub mod events;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::accessentries::{AccessEntryReport, SyncReason, access_side_ready};
use crate::api::{IamIdentityMappingSpec, IamIdentityMappingStatus, RenderedEntry};
use crate::plan::Outcome;
use crate::principals::{PRINCIPAL_FOUND, PRINCIPAL_RESOLVED, PrincipalReport};

pub const READY: &str = "Ready";
pub const STALLED: &str = "Stalled";
pub const VALID: &str = "Valid";
pub const CONFLICT: &str = "Conflict";
pub const DRIFTED: &str = "Drifted";
pub const ACCESS_ENTRY_SYNCED: &str = crate::accessentries::report::CONDITION_TYPE;

/// The status a mapping should have after `outcome` was applied. `previous` supplies the
/// transition times of conditions whose status did not change, so that an unchanged outcome gives
/// an identical status (and no write).
pub fn status_for(
    outcome: &Outcome,
    generation: Option<i64>,
    previous: Option<&IamIdentityMappingStatus>,
    now: &Time,
) -> IamIdentityMappingStatus {
    let mut conditions = Vec::new();
    let mut push = |type_: &str, status: bool, reason: &str, message: String| {
        conditions.push(Condition {
            type_: type_.to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        });
    };
    let reason = outcome.reason();
    let message = outcome.message();
    // Exactly what aws-auth holds for this mapping because of the operator (empty lists
    // included); `None` when nothing is.
    let rendered = match outcome {
        // Nothing was written: aws-auth still holds what was rendered before.
        Outcome::Blocked { .. } => previous.and_then(|p| p.rendered.clone()),
        other => other.written_entry().map(RenderedEntry::from),
    };
    let mut last_drift_repair = previous.and_then(|p| p.last_drift_repair.clone());
    let valid = || "the spec is valid".to_string();
    // Conditions a blocked plan leaves as they were.
    let mut carried = Vec::new();
    match outcome {
        Outcome::Rendered {
            drift, contenders, ..
        } => {
            push(VALID, true, "Valid", valid());
            if contenders.is_empty() {
                push(
                    CONFLICT,
                    false,
                    "NoConflict",
                    "no other mapping claims this principal".to_string(),
                );
            } else {
                let names: Vec<String> = contenders.iter().map(|n| format!("`{n}`")).collect();
                let message = match names.as_slice() {
                    [one] => format!(
                        "IamIdentityMapping {one} also maps this principal; this mapping is the older and wins, the other is Stalled"
                    ),
                    many => format!(
                        "IamIdentityMappings {} also map this principal; this mapping is the oldest and wins, the others are Stalled",
                        many.join(", ")
                    ),
                };
                push(CONFLICT, false, "OldestWins", message);
            }
            match drift {
                Some(drift) if !drift.repaired => {
                    let live: Vec<String> = drift.live.iter().map(describe_entry).collect();
                    let message = format!(
                        "aws-auth was edited by hand: live {} vs desired {}; left in place (--drift=report)",
                        if live.is_empty() {
                            "(none)".to_string()
                        } else {
                            live.join(", ")
                        },
                        describe_entry(&drift.desired)
                    );
                    push(DRIFTED, true, "HandEdited", message.clone());
                    push(READY, false, "Drifted", message);
                }
                Some(drift) => {
                    last_drift_repair = Some(now.clone());
                    let message = format!(
                        "a hand edit of this entry was repaired (was {})",
                        drift
                            .live
                            .first()
                            .map(describe_entry)
                            .unwrap_or_else(|| "deleted".to_string())
                    );
                    push(DRIFTED, false, "Repaired", message);
                    push(READY, true, "Rendered", outcome.message());
                }
                None => {
                    // After a repair, the condition keeps saying so (with lastDriftRepair):
                    // switching it back to InSync would be one more write for no news.
                    let repaired_before = previous
                        .and_then(|p| condition(p, DRIFTED))
                        .filter(|c| c.status == "False" && c.reason == "Repaired");
                    match repaired_before {
                        Some(c) => push(DRIFTED, false, "Repaired", c.message.clone()),
                        None => push(
                            DRIFTED,
                            false,
                            "InSync",
                            "aws-auth holds exactly the rendered entry".to_string(),
                        ),
                    }
                    push(READY, true, "Rendered", message);
                }
            }
        }
        Outcome::Invalid { problems, .. } => {
            let reason = problems.first().map(|p| p.reason).unwrap_or("Invalid");
            push(VALID, false, reason, message.clone());
            push(READY, false, "Invalid", message.clone());
            push(STALLED, true, reason, message);
        }
        Outcome::Conflict { .. } | Outcome::Protected { .. } => {
            push(VALID, true, "Valid", valid());
            push(CONFLICT, true, reason, message.clone());
            push(READY, false, reason, message.clone());
            push(STALLED, true, reason, message);
        }
        Outcome::ServedByAccessEntry { .. } => {
            push(VALID, true, "Valid", valid());
            push(READY, true, reason, message);
        }
        Outcome::Unresolved { .. } => {
            // Stalled or not is the resolver's to say (see `with_principal`).
            push(VALID, true, "Valid", valid());
            push(READY, false, reason, message);
        }
        Outcome::PolicyViolation { .. } | Outcome::DoesNotFit { .. } => {
            push(VALID, true, "Valid", valid());
            push(READY, false, reason, message.clone());
            push(STALLED, true, reason, message);
        }
        Outcome::Blocked { .. } => {
            // Nothing was decided about the mapping itself: what the other conditions said
            // still holds.
            carried.extend(
                previous
                    .map(|p| p.conditions.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| [VALID, CONFLICT, DRIFTED].contains(&c.type_.as_str()))
                    .cloned(),
            );
            push(READY, false, reason, message.clone());
            push(STALLED, true, reason, message);
        }
    }
    conditions.extend(carried);
    keep_transition_times(&mut conditions, previous);
    IamIdentityMappingStatus {
        access_entry: None,
        observed_generation: generation,
        conditions,
        rendered,
        last_drift_repair,
        resolved_arn: None,
    }
}

/// Adds the access-entry side (`--access-entries=mirror|only`) to a mapping's status: the
/// `AccessEntrySynced` condition and `status.accessEntry` from the access-entry loop's report
/// (a report of another generation is pending), and `Ready` only when both sides are in place.
/// A mapping that cannot migrate is served by aws-auth and can be Ready; one blocked by
/// something a person must fix (a foreign entry, a cluster in CONFIG_MAP mode, a conflict, the
/// operator's policy) is Stalled; one still in progress (pending, an EKS error) is not Ready, without Stalled.
pub fn with_access_entry(
    status: &mut IamIdentityMappingStatus,
    report: Option<&AccessEntryReport>,
    generation: Option<i64>,
    previous: Option<&IamIdentityMappingStatus>,
    now: &Time,
) {
    let current = report
        .filter(|r| r.generation == generation)
        .cloned()
        .unwrap_or_else(|| AccessEntryReport::pending(generation));
    let mut conditions = vec![current.condition(now)];
    keep_transition_times(&mut conditions, previous);
    status.conditions.retain(|c| c.type_ != ACCESS_ENTRY_SYNCED);
    status.conditions.extend(conditions);
    status.access_entry = current.status.clone();
    let aws_auth_ready = condition(status, READY).is_some_and(|c| c.status == "True");
    if !aws_auth_ready || access_side_ready(Some(&current), generation) {
        return;
    }
    let reason = current.reason.as_str();
    let message = format!(
        "the EKS access entry is not in place yet: {}",
        current.message
    );
    let stalled = matches!(
        current.reason,
        SyncReason::ForeignEntry
            | SyncReason::ClusterInConfigMapMode
            | SyncReason::Conflict
            | SyncReason::PolicyViolation
            | SyncReason::ProtectedPrincipal
    );
    status
        .conditions
        .retain(|c| c.type_ != READY && c.type_ != STALLED);
    let mut replaced = vec![Condition {
        type_: READY.to_string(),
        status: "False".to_string(),
        reason: reason.to_string(),
        message: message.clone(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }];
    if stalled {
        replaced.push(Condition {
            type_: STALLED.to_string(),
            status: "True".to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        });
    }
    keep_transition_times(&mut replaced, previous);
    status.conditions.extend(replaced);
}

/// `--access-entries=off` with the loop running (the cluster is known): the `AccessEntrySynced`
/// condition (`NotManaged`, or why EKS could not be read) and `status.accessEntry` as EKS holds
/// it, from the loop's report. `Ready` is aws-auth's alone: the operator does not manage the
/// access entry.
pub fn with_unmanaged_access_entry(
    status: &mut IamIdentityMappingStatus,
    report: Option<&AccessEntryReport>,
    generation: Option<i64>,
    previous: Option<&IamIdentityMappingStatus>,
    now: &Time,
) {
    let Some(report) = report.filter(|r| r.generation == generation) else {
        // Not handled yet: what was known stays, rather than a Pending nobody waits for.
        without_access_entry(status, generation, previous, now, NOT_MANAGED_WAITING);
        return;
    };
    let mut conditions = vec![report.condition(now)];
    keep_transition_times(&mut conditions, previous);
    status.conditions.retain(|c| c.type_ != ACCESS_ENTRY_SYNCED);
    status.conditions.extend(conditions);
    status.access_entry = report.status.clone();
}

const NOT_MANAGED_WAITING: &str = "--access-entries=off: the access entry of this mapping, if any, is not kept in sync; the access-entry loop has not read it yet";

/// What `AccessEntrySynced` says with `--access-entries=off` and no cluster (`--cluster-name`):
/// the operator cannot see or delete an access entry.
pub const NOT_MANAGED_UNKNOWN_CLUSTER: &str = "--access-entries=off without --cluster-name: the operator neither reads nor deletes access entries; an access entry it created for this mapping earlier stays in EKS, granting what it says, also after the mapping is deleted. Run with --cluster-name (and --region) so that the operator deletes its entries of deleted mappings, or delete them in EKS";

/// `--access-entries=off`, no EKS client: a mapping whose status still shows an access entry
/// (from `mirror` or `only` mode) gets `AccessEntrySynced` `NotManaged` with `message`, and no
/// `status.accessEntry` (nobody reads it any more: a stale copy would mislead). A mapping that
/// never had one gets nothing, so a cluster that never used access entries sees no change.
pub fn without_access_entry(
    status: &mut IamIdentityMappingStatus,
    generation: Option<i64>,
    previous: Option<&IamIdentityMappingStatus>,
    now: &Time,
    message: &str,
) {
    let had = previous
        .is_some_and(|p| p.access_entry.is_some() || condition(p, ACCESS_ENTRY_SYNCED).is_some());
    status.access_entry = None;
    status.conditions.retain(|c| c.type_ != ACCESS_ENTRY_SYNCED);
    if !had {
        return;
    }
    let mut conditions = vec![Condition {
        type_: ACCESS_ENTRY_SYNCED.to_string(),
        status: "False".to_string(),
        reason: SyncReason::NotManaged.as_str().to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }];
    keep_transition_times(&mut conditions, previous);
    status.conditions.extend(conditions);
}

/// Adds what the principal resolver found (`report`) to a mapping's status: for a
/// `spec.ssoPermissionSet` mapping, `status.resolvedArn` (`resolved`: the role the plan used)
/// and the `PrincipalResolved` condition, and `Ready` False and `Stalled` when no role or several
/// serve the permission set (a person must act; the role resolved before stays mapped); with
/// `--verify-principals`, the `PrincipalFound` condition (a warning: `Ready` is left alone).
pub fn with_principal(
    status: &mut IamIdentityMappingStatus,
    spec: &IamIdentityMappingSpec,
    resolved: Option<&str>,
    report: Option<&PrincipalReport>,
    generation: Option<i64>,
    previous: Option<&IamIdentityMappingStatus>,
    now: &Time,
) {
    let condition = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: now.clone(),
    };
    let mut added = Vec::new();
    if let Some(set) = &spec.sso_permission_set {
        status.resolved_arn = resolved.map(str::to_string);
        let resolution = report
            .and_then(|r| r.sso.as_ref())
            .filter(|r| r.permission_set == set.name);
        match resolution {
            Some(resolution) => {
                added.push(condition(
                    PRINCIPAL_RESOLVED,
                    resolution.condition_status(),
                    resolution.reason(),
                    resolution.to_string(),
                ));
                if resolution.needs_attention() {
                    let message = resolution.to_string();
                    status
                        .conditions
                        .retain(|c| c.type_ != READY && c.type_ != STALLED);
                    added.push(condition(
                        READY,
                        "False",
                        resolution.reason(),
                        message.clone(),
                    ));
                    added.push(condition(STALLED, "True", resolution.reason(), message));
                }
            }
            None => added.push(condition(
                PRINCIPAL_RESOLVED,
                "Unknown",
                "Resolving",
                format!(
                    "waiting for the operator to ask IAM which role serves permission set {}",
                    set.name
                ),
            )),
        }
    }
    if let Some(check) = report.and_then(|r| r.check.as_ref()) {
        added.push(condition(
            PRINCIPAL_FOUND,
            check.verdict.condition_status(),
            check.verdict.reason(),
            check.to_string(),
        ));
    }
    keep_transition_times(&mut added, previous);
    status.conditions.extend(added);
}

/// A condition keeps its lastTransitionTime while its status stays the same.
fn keep_transition_times(
    conditions: &mut [Condition],
    previous: Option<&IamIdentityMappingStatus>,
) {
    let Some(previous) = previous else { return };
    for condition in conditions {
        if let Some(old) = previous
            .conditions
            .iter()
            .find(|c| c.type_ == condition.type_ && c.status == condition.status)
        {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// The condition of a given type, if present.
pub fn condition<'a>(status: &'a IamIdentityMappingStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Ready for its current generation: what `kubectl wait --for=condition=Ready` and a GitOps
/// health check wait for (a Ready of an older generation does not count).
pub fn is_ready(mapping: &crate::api::IamIdentityMapping) -> bool {
    mapping.status.as_ref().is_some_and(|status| {
        status.observed_generation == mapping.metadata.generation
            && condition(status, READY).is_some_and(|c| c.status == "True")
    })
}

fn describe_entry(entry: &crate::awsauth::Entry) -> String {
    match entry.username() {
        Some(username) => format!(
            "{} -> {} [{}]",
            entry.principal(),
            username,
            entry.groups().join(", ")
        ),
        None => entry.principal().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::awsauth::{ArnMapping, Entry};
    use crate::plan::Drift;
    use crate::validate::validate;

    fn time(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn entry(groups: &[&str]) -> Entry {
        Entry::Role(ArnMapping {
            arn: "arn:aws:iam::111122223333:role/admin".into(),
            username: "admin".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: Default::default(),
        })
    }

    fn get<'a>(s: &'a IamIdentityMappingStatus, t: &str) -> Option<(&'a str, &'a str)> {
        condition(s, t).map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    mod principals {
        use super::*;
        use crate::api::SsoPermissionSetRef;
        use crate::principals::{PrincipalCheck, SsoResolution, SsoState, Verdict};

        const ROLE: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef";

        fn spec() -> IamIdentityMappingSpec {
            IamIdentityMappingSpec {
                sso_permission_set: Some(SsoPermissionSetRef {
                    name: "Admin".into(),
                }),
                username: Some("sso".into()),
                ..Default::default()
            }
        }

        fn rendered() -> IamIdentityMappingStatus {
            let outcome = Outcome::Rendered {
                entry: entry(&[]),
                took_over: Vec::new(),
                contenders: Vec::new(),
                gives_back_on_delete: false,
                drift: None,
            };
            status_for(&outcome, Some(1), None, &time(10))
        }

        fn report(arn: Option<&str>, state: SsoState) -> PrincipalReport {
            PrincipalReport {
                sso: Some(SsoResolution {
                    permission_set: "Admin".into(),
                    arn: arn.map(str::to_string),
                    state,
                }),
                check: None,
            }
        }

        fn with(
            report: Option<&PrincipalReport>,
            previous: Option<&IamIdentityMappingStatus>,
            now: i64,
        ) -> IamIdentityMappingStatus {
            let mut status = rendered();
            let resolved = report
                .and_then(|r| r.sso.as_ref())
                .and_then(|s| s.arn.as_deref());
            with_principal(
                &mut status,
                &spec(),
                resolved,
                report,
                Some(1),
                previous,
                &time(now),
            );
            status
        }

        #[test]
        fn a_resolved_permission_set_shows_its_role_and_stays_ready() {
            let s = with(Some(&report(Some(ROLE), SsoState::Resolved)), None, 10);
            assert_eq!(s.resolved_arn.as_deref(), Some(ROLE));
            assert_eq!(get(&s, PRINCIPAL_RESOLVED), Some(("True", "Resolved")));
            assert_eq!(get(&s, READY), Some(("True", "Rendered")));
            assert_eq!(get(&s, STALLED), None);
        }

        #[test]
        fn none_or_several_roles_stall_the_mapping_but_keep_the_role() {
            for state in [
                SsoState::NotFound { similar: vec![] },
                SsoState::Ambiguous {
                    candidates: vec![ROLE.into(), "other".into()],
                },
            ] {
                let s = with(Some(&report(Some(ROLE), state.clone())), None, 10);
                assert_eq!(s.resolved_arn.as_deref(), Some(ROLE), "{state:?}");
                assert_eq!(get(&s, PRINCIPAL_RESOLVED).map(|c| c.0), Some("False"));
                assert_eq!(get(&s, READY).map(|c| c.0), Some("False"));
                assert_eq!(get(&s, STALLED).map(|c| c.0), Some("True"));
                assert_eq!(s.conditions.iter().filter(|c| c.type_ == READY).count(), 1);
            }
        }

        #[test]
        fn iam_unavailable_is_unknown_and_leaves_ready_alone() {
            let down = report(
                Some(ROLE),
                SsoState::Unavailable {
                    error: "timeout".into(),
                },
            );
            let s = with(Some(&down), None, 10);
            assert_eq!(
                get(&s, PRINCIPAL_RESOLVED),
                Some(("Unknown", "IamUnavailable"))
            );
            assert_eq!(get(&s, READY), Some(("True", "Rendered")));
        }

        #[test]
        fn before_the_first_answer_it_is_resolving() {
            let s = with(None, None, 10);
            assert_eq!(get(&s, PRINCIPAL_RESOLVED), Some(("Unknown", "Resolving")));
        }

        #[test]
        fn a_missing_principal_is_a_warning_only_and_keeps_its_transition_time() {
            let check = PrincipalReport {
                sso: None,
                check: Some(PrincipalCheck {
                    arn: "arn:aws:iam::111122223333:role/admn".into(),
                    verdict: Verdict::Missing {
                        similar: vec!["admin".into()],
                    },
                }),
            };
            let mut first = rendered();
            let by_arn = IamIdentityMappingSpec {
                arn: Some("arn:aws:iam::111122223333:role/admn".into()),
                ..Default::default()
            };
            with_principal(
                &mut first,
                &by_arn,
                None,
                Some(&check),
                Some(1),
                None,
                &time(10),
            );
            assert_eq!(get(&first, PRINCIPAL_FOUND), Some(("False", "NotFound")));
            assert_eq!(get(&first, READY), Some(("True", "Rendered")));
            assert_eq!(get(&first, PRINCIPAL_RESOLVED), None);
            assert_eq!(first.resolved_arn, None);
            let mut again = rendered();
            with_principal(
                &mut again,
                &by_arn,
                None,
                Some(&check),
                Some(1),
                Some(&first),
                &time(20),
            );
            assert_eq!(
                condition(&again, PRINCIPAL_FOUND)
                    .unwrap()
                    .last_transition_time,
                time(10)
            );
        }
    }

    #[test]
    fn rendered_is_ready_without_abnormal_conditions() {
        let outcome = Outcome::Rendered {
            entry: entry(&["g"]),
            took_over: Vec::new(),
            contenders: Vec::new(),
            gives_back_on_delete: false,
            drift: None,
        };
        let s = status_for(&outcome, Some(3), None, &time(10));
        assert_eq!(get(&s, READY), Some(("True", "Rendered")));
        assert_eq!(get(&s, STALLED), None);
        assert_eq!(
            get(&s, "Reconciling"),
            None,
            "no Reconciling condition any more"
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            s.rendered.as_ref().unwrap().principal,
            "arn:aws:iam::111122223333:role/admin"
        );
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn unchanged_outcome_gives_an_identical_status() {
        let outcome = Outcome::Rendered {
            entry: entry(&["g"]),
            took_over: Vec::new(),
            contenders: Vec::new(),
            gives_back_on_delete: false,
            drift: None,
        };
        let first = status_for(&outcome, Some(1), None, &time(10));
        let second = status_for(&outcome, Some(1), Some(&first), &time(99));
        assert_eq!(first, second, "no idle status writes");
    }

    #[test]
    fn invalid_is_stalled_with_the_problem_reason() {
        let spec = crate::api::IamIdentityMappingSpec {
            arn: Some("arn:aws:iam::111122223333:group/admins".into()),
            username: Some("u".into()),
            ..Default::default()
        };
        let problems = validate(&spec).unwrap_err();
        let s = status_for(
            &Outcome::Invalid {
                problems,
                kept: None,
            },
            Some(2),
            None,
            &time(1),
        );
        assert_eq!(get(&s, VALID), Some(("False", "ArnIsGroup")));
        assert_eq!(get(&s, STALLED), Some(("True", "ArnIsGroup")));
        assert_eq!(get(&s, READY), Some(("False", "Invalid")));
        assert!(condition(&s, READY).unwrap().message.contains("group ARN"));
        assert!(s.rendered.is_none());
    }

    #[test]
    fn conflict_names_the_winner() {
        let outcome = Outcome::Conflict {
            winner: "older".into(),
            principal: "arn:x".into(),
        };
        let s = status_for(&outcome, Some(1), None, &time(1));
        assert_eq!(get(&s, CONFLICT), Some(("True", "Conflict")));
        assert!(condition(&s, CONFLICT).unwrap().message.contains("`older`"));
        assert_eq!(get(&s, STALLED), Some(("True", "Conflict")));
    }

    #[test]
    fn drift_reported_and_repaired() {
        let drift = Drift {
            live: vec![entry(&["x"])],
            desired: entry(&["g"]),
            repaired: false,
        };
        let outcome = Outcome::Rendered {
            entry: entry(&["g"]),
            took_over: Vec::new(),
            contenders: Vec::new(),
            gives_back_on_delete: false,
            drift: Some(Box::new(drift.clone())),
        };
        let s = status_for(&outcome, Some(1), None, &time(5));
        assert_eq!(get(&s, DRIFTED), Some(("True", "HandEdited")));
        assert_eq!(get(&s, READY), Some(("False", "Drifted")));
        let message = &condition(&s, DRIFTED).unwrap().message;
        assert!(
            message.contains("[x]") && message.contains("[g]"),
            "{message}"
        );

        let repaired = Outcome::Rendered {
            entry: entry(&["g"]),
            took_over: Vec::new(),
            contenders: Vec::new(),
            gives_back_on_delete: false,
            drift: Some(Box::new(Drift {
                repaired: true,
                ..drift
            })),
        };
        let s = status_for(&repaired, Some(1), Some(&s), &time(7));
        assert_eq!(get(&s, DRIFTED), Some(("False", "Repaired")));
        assert_eq!(get(&s, READY), Some(("True", "Rendered")));
        assert_eq!(s.last_drift_repair, Some(time(7)));
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let ok = Outcome::Rendered {
            entry: entry(&["g"]),
            took_over: Vec::new(),
            contenders: Vec::new(),
            gives_back_on_delete: false,
            drift: None,
        };
        let first = status_for(&ok, Some(1), None, &time(10));
        let blocked = Outcome::Blocked {
            reason: "AwsAuthTooLarge",
            message: "too big".into(),
        };
        let second = status_for(&blocked, Some(1), Some(&first), &time(20));
        assert_eq!(
            condition(&second, READY).unwrap().last_transition_time,
            time(20)
        );
        assert_eq!(get(&second, STALLED), Some(("True", "AwsAuthTooLarge")));
    }
}
