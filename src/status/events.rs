//! Which events a reconcile is worth: pure decisions from the plan's notes (what changed in
//! aws-auth itself) and from a mapping's status change. The controller publishes them and logs
//! them; nothing here does I/O.
//!
//! Events are for people watching `kubectl get events`: a status already says the steady state,
//! so an event marks a change worth noticing (a problem that is new or changed, a drift, a
//! recovery, a take-over), and a burst of a thousand new or deleted mappings costs one event, not
//! a thousand.

use kube::runtime::events::EventType;

use crate::accessentries::SyncReason;
use crate::api::IamIdentityMappingStatus;
use crate::awsauth::{Entry, describe_at_most, describe_entries};
use crate::plan::{Note, Outcome};
use crate::principals::sso::{NO_ROLE_FOUND, SEVERAL_ROLES_FOUND};
use crate::principals::{PRINCIPAL_FOUND, PRINCIPAL_RESOLVED};
use crate::status::{READY, condition};

/// How many entries an aggregated event names before it says "and N more": an event note is
/// limited to 1 KiB by the API server.
pub const EVENT_ENTRY_LIMIT: usize = 5;

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The IamIdentityMapping of this name.
    Mapping(String),
    /// kube-system/aws-auth.
    AwsAuth,
}

/// One event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: Subject,
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Notice {
    fn on_mapping(
        mapping: &str,
        type_: EventType,
        reason: &'static str,
        message: String,
    ) -> Notice {
        Notice {
            subject: Subject::Mapping(mapping.to_string()),
            type_,
            reason,
            message,
        }
    }

    fn on_aws_auth(type_: EventType, reason: &'static str, message: String) -> Notice {
        Notice {
            subject: Subject::AwsAuth,
            type_,
            reason,
            message,
        }
    }
}

/// The events for what a written plan changed in aws-auth. Removals and give-backs are summed
/// up in one event each; `KeptFrozen` and `KeptCacheNotCurrent` are reported by the reconcile
/// once per pass, not here.
pub fn note_events(notes: &[Note]) -> Vec<Notice> {
    let mut events = Vec::new();
    let mut removed: Vec<Entry> = Vec::new();
    let mut given_back: Vec<Entry> = Vec::new();
    for note in notes {
        match note {
            Note::TookOver {
                mapping,
                previous,
                kept_to_give_back,
            } => {
                let mut message = format!(
                    "took over the existing unmanaged entry of {} (recorded in history first)",
                    describe_entries(previous)
                );
                if *kept_to_give_back {
                    message.push_str("; it comes back if this mapping is deleted");
                }
                events.push(Notice::on_mapping(
                    mapping,
                    EventType::Normal,
                    "TookOver",
                    message,
                ));
            }
            Note::Recovered {
                section,
                restored,
                revision,
                error,
            } => {
                let what = match section {
                    Some(section) => format!("{section} could not be parsed ({error})"),
                    None => "aws-auth was deleted".to_string(),
                };
                let reason = if section.is_some() {
                    "RecoveredMalformedAwsAuth"
                } else {
                    "RecoveredDeletedAwsAuth"
                };
                let message = format!(
                    "{what}; restored {} unmanaged entries from revision {revision}: {}",
                    restored.len(),
                    describe_at_most(restored, EVENT_ENTRY_LIMIT)
                );
                events.push(Notice::on_aws_auth(EventType::Warning, reason, message));
            }
            Note::NotRecovered { reason } => {
                let message = format!(
                    "aws-auth was deleted and recreated with the managed entries only: {reason}"
                );
                events.push(Notice::on_aws_auth(
                    EventType::Warning,
                    "AwsAuthRecreated",
                    message,
                ));
            }
            Note::Removed { entry } => removed.push(entry.clone()),
            Note::GaveBack { entries } => given_back.extend(entries.iter().cloned()),
            Note::KeptFrozen { .. } | Note::KeptCacheNotCurrent { .. } => {}
            Note::MovedToAccessEntry { mapping, entries } => {
                let message = format!(
                    "removed {} from aws-auth: the EKS access entry of this mapping is confirmed in place (--access-entries=only)",
                    describe_entries(entries)
                );
                events.push(Notice::on_mapping(
                    mapping,
                    EventType::Normal,
                    "MovedToAccessEntry",
                    message,
                ));
            }
            Note::PolicyEnforced { mapping, entry } => {
                let message = format!(
                    "removed {} from {}: mapping `{mapping}` violates the group policy (--enforce-group-policy)",
                    entry.principal(),
                    entry.section()
                );
                events.push(Notice::on_mapping(
                    mapping,
                    EventType::Warning,
                    "PolicyEnforced",
                    message.clone(),
                ));
                events.push(Notice::on_aws_auth(
                    EventType::Warning,
                    "PolicyEnforced",
                    message,
                ));
            }
        }
    }
    if !removed.is_empty() {
        events.push(Notice::on_aws_auth(
            EventType::Normal,
            "EntryRemoved",
            format!(
                "removed {} entries no mapping renders any more: {}",
                removed.len(),
                describe_at_most(&removed, EVENT_ENTRY_LIMIT)
            ),
        ));
    }
    if !given_back.is_empty() {
        events.push(Notice::on_aws_auth(
            EventType::Normal,
            "OriginalEntryRestored",
            format!(
                "gave back {} entries that deleted mappings had taken over, unmanaged again: {}",
                given_back.len(),
                describe_at_most(&given_back, EVENT_ENTRY_LIMIT)
            ),
        ));
    }
    events
}

/// The event a status change is worth, if any: a problem that is new or changed (its Ready
/// reason or message differs from the known status), a drift, or a mapping that is Ready again
/// after a problem. A mapping rendered for the first time gets none, nor one whose access entry
/// was pending: its status says so, and a burst of a thousand new mappings must not cost a
/// thousand more writes. A mapping served by its access entry gets `MovedToAccessEntry` when
/// its aws-auth entry is removed (see [`note_events`]).
pub fn outcome_event(
    outcome: &Outcome,
    known: Option<&IamIdentityMappingStatus>,
    desired: &IamIdentityMappingStatus,
) -> Option<(EventType, &'static str, String)> {
    permission_set_event(outcome, known, desired)
        .or_else(|| outcome_change_event(outcome, known, desired))
        .or_else(|| principal_not_found_event(known, desired))
}

/// A permission set whose role was replaced, or that stops resolving (or never did), in its own
/// reason and words.
fn permission_set_event(
    outcome: &Outcome,
    known: Option<&IamIdentityMappingStatus>,
    desired: &IamIdentityMappingStatus,
) -> Option<(EventType, &'static str, String)> {
    let written = matches!(
        outcome,
        Outcome::Rendered { .. } | Outcome::ServedByAccessEntry { .. }
    );
    let resolved_before = known.and_then(|k| k.resolved_arn.as_deref());
    if written
        && let (Some(before), Some(after)) = (resolved_before, desired.resolved_arn.as_deref())
        && before != after
    {
        let message = condition(desired, PRINCIPAL_RESOLVED)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| format!("{after} replaces {before}"));
        return Some((
            EventType::Normal,
            "PermissionSetReprovisioned",
            format!("{message}; its entries now name the new role"),
        ));
    }
    let unresolved = |s: &IamIdentityMappingStatus| {
        condition(s, PRINCIPAL_RESOLVED)
            .filter(|c| c.status == "False")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (reason, message) = unresolved(desired)?;
    if known.and_then(unresolved).map(|(r, _)| r) == Some(reason.clone()) {
        return None;
    }
    let reason = [NO_ROLE_FOUND, SEVERAL_ROLES_FOUND]
        .into_iter()
        .find(|r| *r == reason)?;
    Some((EventType::Warning, reason, message))
}

/// The event for a change of the mapping's outcome (Ready), if any.
fn outcome_change_event(
    outcome: &Outcome,
    known: Option<&IamIdentityMappingStatus>,
    desired: &IamIdentityMappingStatus,
) -> Option<(EventType, &'static str, String)> {
    let ready = |s: &IamIdentityMappingStatus| {
        condition(s, READY).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let before = known.and_then(ready);
    let after = ready(desired);
    let ready_changed = before != after;
    let recovered = before.as_ref().is_some_and(|(status, reason, _)| {
        status != "True" && reason != SyncReason::Pending.as_str()
    });
    let (type_, reason) = match outcome {
        Outcome::Rendered { drift: Some(d), .. } if d.repaired => {
            (EventType::Normal, "DriftRepaired")
        }
        Outcome::Rendered { drift: Some(_), .. } => (EventType::Warning, "DriftDetected"),
        Outcome::Rendered { .. } | Outcome::ServedByAccessEntry { .. } => {
            let ready_again = after
                .as_ref()
                .is_some_and(|(status, _, _)| status == "True");
            if !(recovered && ready_again) {
                return None;
            }
            (EventType::Normal, "Rendered")
        }
        other if ready_changed => (EventType::Warning, other.reason()),
        _ => return None,
    };
    Some((type_, reason, outcome.message()))
}

/// `--verify-principals`: a warning when IAM starts saying the principal does not exist.
fn principal_not_found_event(
    known: Option<&IamIdentityMappingStatus>,
    desired: &IamIdentityMappingStatus,
) -> Option<(EventType, &'static str, String)> {
    let found = |s: &IamIdentityMappingStatus| {
        condition(s, PRINCIPAL_FOUND).map(|c| (c.status.clone(), c.message.clone()))
    };
    match (known.and_then(found), found(desired)) {
        (before, Some((status, message)))
            if status == "False" && before.as_ref().is_none_or(|(s, _)| s != "False") =>
        {
            Some((EventType::Warning, "PrincipalNotFound", message))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;
    use crate::accessentries::AccessEntryReport;
    use crate::awsauth::ArnMapping;
    use crate::status::{status_for, with_access_entry};

    fn time(s: i64) -> Time {
        Time(Timestamp::from_second(s).expect("valid time"))
    }

    fn role(name: &str) -> Entry {
        Entry::Role(ArnMapping {
            arn: format!("arn:aws:iam::111122223333:role/{name}"),
            username: name.into(),
            groups: vec!["view".into()],
            extra: Default::default(),
        })
    }

    fn entry() -> Entry {
        role("admin")
    }

    fn rendered() -> Outcome {
        Outcome::Rendered {
            entry: entry(),
            took_over: Vec::new(),
            drift: None,
            contenders: Vec::new(),
            gives_back_on_delete: false,
        }
    }

    fn conflict(winner: &str) -> Outcome {
        Outcome::Conflict {
            winner: winner.into(),
            principal: "arn:aws:iam::111122223333:role/admin".into(),
        }
    }

    fn status(outcome: &Outcome, report: Option<AccessEntryReport>) -> IamIdentityMappingStatus {
        let mut status = status_for(outcome, Some(1), None, &time(1));
        if let Some(report) = report {
            with_access_entry(&mut status, Some(&report), Some(1), None, &time(1));
        }
        status
    }

    fn in_sync() -> AccessEntryReport {
        AccessEntryReport {
            synced: true,
            reason: SyncReason::InSync,
            message: "in sync".into(),
            confirmed_in_place: true,
            ..AccessEntryReport::pending(Some(1))
        }
    }

    fn reason_of(event: Option<(EventType, &'static str, String)>) -> Option<&'static str> {
        event.map(|(_, reason, _)| reason)
    }

    #[test]
    fn a_first_render_and_a_first_access_entry_are_worth_no_event() {
        let ready = status(&rendered(), None);
        assert_eq!(reason_of(outcome_event(&rendered(), None, &ready)), None);
        // Mirror mode: Ready waits for the access entry (Pending), then turns True.
        let pending = status(&rendered(), Some(AccessEntryReport::pending(Some(1))));
        let synced = status(&rendered(), Some(in_sync()));
        assert_eq!(
            reason_of(outcome_event(&rendered(), Some(&pending), &synced)),
            None
        );
    }

    #[test]
    fn ready_again_after_a_problem_is_an_event() {
        let problem = status(&conflict("older"), None);
        let ready = status(&rendered(), None);
        let event = outcome_event(&rendered(), Some(&problem), &ready);
        assert_eq!(
            event.as_ref().map(|(t, r, _)| (*t, *r)),
            Some((EventType::Normal, "Rendered"))
        );
    }

    #[test]
    fn a_problem_is_an_event_once_until_it_changes() {
        let ready = status(&rendered(), None);
        let problem = status(&conflict("older"), None);
        let event = outcome_event(&conflict("older"), Some(&ready), &problem);
        assert_eq!(
            event.as_ref().map(|(t, r, _)| (*t, *r)),
            Some((EventType::Warning, "Conflict"))
        );
        // The same problem again (the access-entry side of the status changed): no event.
        assert_eq!(
            reason_of(outcome_event(&conflict("older"), Some(&problem), &problem)),
            None
        );
        // Another winner: a new message, a new event.
        let other = status(&conflict("oldest"), None);
        assert_eq!(
            reason_of(outcome_event(&conflict("oldest"), Some(&problem), &other)),
            Some("Conflict")
        );
    }

    #[test]
    fn served_by_access_entry_is_no_warning() {
        let served = Outcome::ServedByAccessEntry {
            entry: entry(),
            removed: vec![entry()],
        };
        let before = status(&rendered(), Some(in_sync()));
        let after = status(&served, Some(in_sync()));
        assert_eq!(
            reason_of(outcome_event(&served, Some(&before), &after)),
            None
        );
        assert_eq!(
            reason_of(outcome_event(&served, Some(&after), &after)),
            None
        );
    }

    #[test]
    fn removals_and_give_backs_are_one_event_each_naming_at_most_five_entries() {
        let mut notes: Vec<Note> = (0..7)
            .map(|i| Note::Removed {
                entry: role(&format!("gone-{i}")),
            })
            .collect();
        notes.push(Note::GaveBack {
            entries: vec![role("original")],
        });
        let events = note_events(&notes);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(events[0].subject, Subject::AwsAuth);
        assert_eq!(events[0].reason, "EntryRemoved");
        assert!(
            events[0]
                .message
                .starts_with("removed 7 entries no mapping renders any more: ")
        );
        assert!(
            events[0].message.ends_with(" and 2 more"),
            "{}",
            events[0].message
        );
        assert!(!events[0].message.contains("gone-5"));
        assert_eq!(events[1].reason, "OriginalEntryRestored");
        assert!(events[1].message.contains("role/original (mapRoles)"));
    }

    #[test]
    fn a_take_over_is_told_on_the_mapping_and_says_whether_the_entry_comes_back() {
        let notes = [
            Note::TookOver {
                mapping: "admins".into(),
                previous: vec![role("admin")],
                kept_to_give_back: true,
            },
            Note::TookOver {
                mapping: "others".into(),
                previous: vec![role("other")],
                kept_to_give_back: false,
            },
        ];
        let events = note_events(&notes);
        assert_eq!(events[0].subject, Subject::Mapping("admins".into()));
        assert_eq!(
            (events[0].type_, events[0].reason),
            (EventType::Normal, "TookOver")
        );
        assert!(
            events[0]
                .message
                .ends_with("comes back if this mapping is deleted")
        );
        assert!(!events[1].message.contains("comes back"));
    }

    #[test]
    fn a_policy_enforcement_is_a_warning_on_the_mapping_and_on_aws_auth() {
        let events = note_events(&[Note::PolicyEnforced {
            mapping: "rogue".into(),
            entry: entry(),
        }]);
        let subjects: Vec<_> = events
            .iter()
            .map(|e| (&e.subject, e.type_, e.reason))
            .collect();
        assert_eq!(
            subjects,
            [
                (
                    &Subject::Mapping("rogue".into()),
                    EventType::Warning,
                    "PolicyEnforced"
                ),
                (&Subject::AwsAuth, EventType::Warning, "PolicyEnforced"),
            ]
        );
    }

    #[test]
    fn a_recovery_is_a_warning_on_aws_auth_that_names_its_cause() {
        let events = note_events(&[
            Note::Recovered {
                section: Some(crate::awsauth::Section::MapRoles),
                restored: vec![role("node")],
                revision: 4,
                error: "bad indentation".into(),
            },
            Note::Recovered {
                section: None,
                restored: vec![],
                revision: 5,
                error: String::new(),
            },
            Note::NotRecovered {
                reason: "no revision".into(),
            },
        ]);
        let reasons: Vec<_> = events.iter().map(|e| (e.type_, e.reason)).collect();
        assert_eq!(
            reasons,
            [
                (EventType::Warning, "RecoveredMalformedAwsAuth"),
                (EventType::Warning, "RecoveredDeletedAwsAuth"),
                (EventType::Warning, "AwsAuthRecreated"),
            ]
        );
        assert!(events[0].message.contains("(bad indentation)"));
        assert!(events[0].message.contains("from revision 4"));
        assert!(events.iter().all(|e| e.subject == Subject::AwsAuth));
    }

    #[test]
    fn what_a_frozen_or_re_listing_reconcile_kept_is_no_event_here() {
        assert!(
            note_events(&[
                Note::KeptFrozen {
                    entries: vec![entry()]
                },
                Note::KeptCacheNotCurrent {
                    entries: vec![entry()]
                },
            ])
            .is_empty()
        );
    }
}
