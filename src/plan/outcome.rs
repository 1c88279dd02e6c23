//! What `plan()` decides, as its callers read it: the [`Plan`], every mapping's [`Outcome`],
//! why nothing may be written ([`Blocked`]) and what is worth an event ([`Note`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::{MANAGED_ANNOTATION, ManagedSet, PolicySubject};
use crate::awsauth::{ConfigMapData, Diagnostic, Entry, Section, describe_entries};
use crate::validate::Problem;

/// A live entry that differs from what the operator last wrote for its mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    /// The live entries for the principal (empty when the entry was deleted by hand).
    pub live: Vec<Entry>,
    pub desired: Entry,
    /// Whether this plan rewrites it (`DriftPolicy::Repair`).
    pub repaired: bool,
}

/// What happens to one mapping.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome")]
pub enum Outcome {
    /// Rendered into aws-auth.
    Rendered {
        entry: Entry,
        /// Unmanaged live entries for the same principal that this plan replaces.
        took_over: Vec<Entry>,
        drift: Option<Box<Drift>>,
        /// Younger mappings for the same principal, which are in Conflict.
        contenders: Vec<String>,
        /// The entry this mapping replaced is kept, and comes back if the mapping is deleted.
        gives_back_on_delete: bool,
    },
    /// The spec is invalid; nothing new is rendered. `kept` is the entry this mapping rendered
    /// before, which stays in aws-auth so that a bad edit never locks its users out.
    Invalid {
        problems: Vec<Problem>,
        kept: Option<Entry>,
    },
    /// Another, older mapping owns the same principal.
    Conflict { winner: String, principal: String },
    /// The principal is protected by `--protected-arn`: the operator never touches it.
    Protected { principal: String },
    /// A group or the username is outside the policy. The last rendered entry stays (`kept`),
    /// unless `--enforce-group-policy` removed it (`removed`).
    PolicyViolation {
        subject: PolicySubject,
        rule: String,
        kept: Option<Entry>,
        removed: Option<Entry>,
    },
    /// The mapping's new entry does not fit in aws-auth; its previous entry (`kept`) stays.
    DoesNotFit {
        entry: Entry,
        kept: Option<Entry>,
        /// The data size with every change applied, and the limit it exceeds.
        bytes: usize,
        limit: usize,
        what: &'static str,
    },
    /// `--access-entries=only`: the mapping's EKS access entry is confirmed in place, so it has
    /// no aws-auth entry (its managed entry, if any, is removed). `entry` is what it would
    /// render into aws-auth.
    ServedByAccessEntry { entry: Entry, removed: Vec<Entry> },
    /// `spec.ssoPermissionSet` is not resolved to a role (yet): nothing new is rendered; `kept`
    /// is the entry of the role it resolved to before, which stays.
    Unresolved {
        permission_set: String,
        kept: Option<Entry>,
    },
    /// Nothing is written this time (see `Plan::blocked`).
    Blocked {
        reason: &'static str,
        message: String,
    },
}

impl Outcome {
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Rendered { .. } => "Rendered",
            Outcome::Invalid { .. } => "Invalid",
            Outcome::Conflict { .. } => "Conflict",
            Outcome::Protected { .. } => "ProtectedPrincipal",
            Outcome::PolicyViolation { .. } => "PolicyViolation",
            Outcome::DoesNotFit { .. } => "DoesNotFit",
            Outcome::ServedByAccessEntry { .. } => "ServedByAccessEntry",
            Outcome::Unresolved { .. } => crate::validate::UNRESOLVED,
            Outcome::Blocked { reason, .. } => reason,
        }
    }

    /// The entry the operator wrote (or keeps) for this mapping, for `status.rendered`. With a
    /// hand edit left in place (`--drift=report`) it is still the mapping's own entry: that is
    /// what the operator wrote, and what tells the hand edit apart next time.
    pub fn written_entry(&self) -> Option<&Entry> {
        match self {
            Outcome::Rendered { entry, .. } => Some(entry),
            Outcome::Invalid { kept, .. }
            | Outcome::PolicyViolation { kept, .. }
            | Outcome::DoesNotFit { kept, .. }
            | Outcome::Unresolved { kept, .. } => kept.as_ref(),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Rendered {
                entry,
                gives_back_on_delete,
                ..
            } => rendered_message(entry, *gives_back_on_delete),
            Outcome::Invalid { problems, kept } => invalid_message(problems, kept.as_ref()),
            Outcome::Conflict { winner, principal } => format!(
                "IamIdentityMapping `{winner}` already maps {principal} (the oldest mapping wins); delete one of the two"
            ),
            Outcome::Protected { principal } => format!(
                "{principal} is a protected principal (--protected-arn): the operator never changes or removes its aws-auth entry"
            ),
            Outcome::PolicyViolation {
                subject,
                rule,
                kept,
                removed,
            } => policy_violation_message(subject, rule, kept.as_ref(), removed.as_ref()),
            Outcome::DoesNotFit {
                entry,
                kept,
                bytes,
                limit,
                what,
            } => does_not_fit_message(entry, kept.as_ref(), *bytes, *limit, what),
            Outcome::ServedByAccessEntry { entry, removed } => {
                served_message(entry, !removed.is_empty())
            }
            Outcome::Unresolved {
                permission_set,
                kept,
            } => unresolved_message(permission_set, kept.as_ref()),
            Outcome::Blocked { message, .. } => message.clone(),
        }
    }
}

/// The clause of a message that says an earlier entry stays.
fn stays(what: &str, entry: &Entry) -> String {
    format!("; {what} ({}) stays in aws-auth", entry.principal())
}

fn rendered_message(entry: &Entry, gives_back_on_delete: bool) -> String {
    let mut message = format!("rendered into {} as {}", entry.section(), entry.principal());
    if gives_back_on_delete {
        message.push_str(
            "; it replaced an existing entry, which comes back if this mapping is deleted (set spec.adoptExistingEntry: true to adopt that entry for good)",
        );
    }
    message
}

fn invalid_message(problems: &[Problem], kept: Option<&Entry>) -> String {
    let list: Vec<_> = problems.iter().map(Problem::to_string).collect();
    let mut message = list.join("; ");
    if let Some(kept) = kept {
        message.push_str(&stays("the entry of the last valid spec", kept));
    }
    message
}

fn policy_violation_message(
    subject: &PolicySubject,
    rule: &str,
    kept: Option<&Entry>,
    removed: Option<&Entry>,
) -> String {
    let mut message = format!("{subject} is not allowed: it {rule}");
    match (kept, removed) {
        (Some(kept), _) => {
            message.push_str(&stays("the last rendered entry", kept));
            message
                .push_str(" until the mapping is fixed (--enforce-group-policy would remove it)");
        }
        (None, Some(removed)) => message.push_str(&format!(
            "; its entry ({}) was removed from aws-auth (--enforce-group-policy)",
            removed.principal()
        )),
        (None, None) => message.push_str("; nothing is rendered"),
    }
    message
}

fn does_not_fit_message(
    entry: &Entry,
    kept: Option<&Entry>,
    bytes: usize,
    limit: usize,
    what: &str,
) -> String {
    let mut message = format!(
        "the entry for {} does not fit: with every change applied, {what} would take {bytes} bytes, over its {limit}-byte limit. Older mappings keep their place",
        entry.principal()
    );
    match kept {
        Some(kept) => message.push_str(&stays("the previous entry", kept)),
        None => message.push_str("; nothing is rendered for this mapping"),
    }
    message.push_str(
        ". Remove mappings or entries you no longer need, or move principals to EKS access entries",
    );
    message
}

fn served_message(entry: &Entry, removed: bool) -> String {
    let mut message = format!(
        "served by its EKS access entry (--access-entries=only); aws-auth holds no entry for {}",
        entry.principal()
    );
    if removed {
        message.push_str("; its aws-auth entry was removed now that the access entry is confirmed");
    }
    message
}

fn unresolved_message(permission_set: &str, kept: Option<&Entry>) -> String {
    let mut message = format!(
        "permission set {permission_set} is not resolved to an IAM role (see the PrincipalResolved condition)"
    );
    match kept {
        Some(kept) => message.push_str(&stays("the entry of the role it resolved to before", kept)),
        None => message.push_str("; nothing is rendered for it yet"),
    }
    message
}

/// Why a malformed key cannot be recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unrecoverable {
    /// `--recover-malformed=false`.
    RecoveryDisabled,
    /// No revision in history parses cleanly.
    NoGoodRevision,
}

/// Why nothing may be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason")]
pub enum Blocked {
    /// A key of the live aws-auth cannot be parsed and is not recovered.
    LiveAwsAuthMalformed {
        diagnostics: Vec<Diagnostic>,
        why: Unrecoverable,
    },
    /// The data would exceed the ConfigMap size limit even without any change of a mapping.
    TooLarge { bytes: usize, limit: usize },
    /// The managed-principals annotation would exceed its size budget.
    AnnotationTooLarge { bytes: usize, limit: usize },
    /// Re-parsing the rendered text did not give back the intended entries (a renderer bug).
    RoundTripMismatch { section: Section },
}

impl Blocked {
    pub fn reason(&self) -> &'static str {
        match self {
            Blocked::LiveAwsAuthMalformed { .. } => "LiveAwsAuthMalformed",
            Blocked::TooLarge { .. } => "AwsAuthTooLarge",
            Blocked::AnnotationTooLarge { .. } => "AnnotationTooLarge",
            Blocked::RoundTripMismatch { .. } => "RoundTripMismatch",
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocked::LiveAwsAuthMalformed { diagnostics, why } => {
                match why {
                    Unrecoverable::RecoveryDisabled => f.write_str(
                        "the live aws-auth cannot be parsed and --recover-malformed=false: nothing is written until the key is fixed by hand (`aws-auth-operator validate` shows where): ",
                    )?,
                    Unrecoverable::NoGoodRevision => f.write_str(
                        "the live aws-auth cannot be parsed and no revision in history parses cleanly to restore its unmanaged entries from: nothing is written until the key is fixed by hand: ",
                    )?,
                }
                let list: Vec<_> = diagnostics.iter().map(Diagnostic::to_string).collect();
                f.write_str(&list.join("; "))
            }
            Blocked::TooLarge { bytes, limit } => write!(
                f,
                "aws-auth would hold {bytes} bytes of data even without any mapping's change, over the {limit}-byte ConfigMap limit; nothing was written"
            ),
            Blocked::AnnotationTooLarge { bytes, limit } => write!(
                f,
                "the {MANAGED_ANNOTATION} annotation would be {bytes} bytes, over its {limit}-byte budget; nothing was written"
            ),
            Blocked::RoundTripMismatch { section } => write!(
                f,
                "re-parsing the rendered {section} did not give back the intended entries; the write was refused (please report this bug)"
            ),
        }
    }
}

/// Something worth an event or a log line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Note {
    /// A mapping replaced unmanaged entries for its principal.
    TookOver {
        mapping: String,
        previous: Vec<Entry>,
        /// The previous entries are kept, to come back when the mapping is deleted.
        kept_to_give_back: bool,
    },
    /// Unmanaged entries restored from a revision: of a malformed key (`section`), or of a
    /// deleted aws-auth (`section: None`).
    Recovered {
        section: Option<Section>,
        restored: Vec<Entry>,
        revision: u64,
        error: String,
    },
    /// aws-auth was deleted and its unmanaged entries are not restored.
    NotRecovered { reason: String },
    /// A managed entry that no mapping renders any more was removed.
    Removed { entry: Entry },
    /// Entries a deleted mapping had taken over are back (unmanaged again).
    GaveBack { entries: Vec<Entry> },
    /// `--enforce-group-policy` removed the entry of a mapping that violates the group policy.
    PolicyEnforced { mapping: String, entry: Entry },
    /// Managed entries no mapping renders any more, kept because aws-auth is frozen.
    KeptFrozen { entries: Vec<Entry> },
    /// Managed entries no mapping in the cache renders, kept because the cache was not current.
    KeptCacheNotCurrent { entries: Vec<Entry> },
    /// `--access-entries=only`: a mapping's aws-auth entry was removed, its access entry being
    /// confirmed in place.
    MovedToAccessEntry {
        mapping: String,
        entries: Vec<Entry>,
    },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::TookOver {
                mapping,
                previous,
                kept_to_give_back,
            } => {
                write!(
                    f,
                    "{mapping}: takes over the unmanaged entry of {}",
                    describe_entries(previous)
                )?;
                if *kept_to_give_back {
                    f.write_str(" (kept: it comes back if the mapping is deleted)")?;
                }
                Ok(())
            }
            Note::Recovered {
                section,
                restored,
                revision,
                error,
            } => {
                match section {
                    Some(section) => write!(f, "{section} cannot be parsed ({error})")?,
                    None => f.write_str("aws-auth was deleted")?,
                }
                write!(
                    f,
                    "; restored {} unmanaged entries from revision {revision}: {}",
                    restored.len(),
                    describe_entries(restored)
                )
            }
            Note::NotRecovered { reason } => write!(
                f,
                "aws-auth was deleted and is recreated with the managed entries only: {reason}"
            ),
            Note::Removed { entry } => write!(
                f,
                "removed {} from {}: no mapping renders it any more",
                entry.principal(),
                entry.section()
            ),
            Note::GaveBack { entries } => write!(
                f,
                "gives back the entry a deleted mapping had taken over: {}",
                describe_entries(entries)
            ),
            Note::PolicyEnforced { mapping, entry } => write!(
                f,
                "{mapping}: removed {} from {} (--enforce-group-policy)",
                entry.principal(),
                entry.section()
            ),
            Note::MovedToAccessEntry { mapping, entries } => write!(
                f,
                "{mapping}: removed {} from aws-auth: its EKS access entry is confirmed in place",
                describe_entries(entries)
            ),
            Note::KeptFrozen { entries } => write!(
                f,
                "aws-auth is frozen: kept {} entries no mapping renders any more: {}",
                entries.len(),
                describe_entries(entries)
            ),
            Note::KeptCacheNotCurrent { entries } => write!(
                f,
                "the IamIdentityMapping watch is re-listing or reconnecting: kept {} entries no mapping in the cache renders ({}); they go only once the watch shows their mappings deleted",
                entries.len(),
                describe_entries(entries)
            ),
        }
    }
}

/// The decision: what aws-auth must hold and what happened to each mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The complete new data of aws-auth (keys other than the three sections are kept as they are).
    pub data: ConfigMapData,
    pub managed: ManagedSet,
    /// `managed` encoded for the annotation.
    pub managed_annotation: String,
    /// Whether data or annotation differ from the live ConfigMap (or it does not exist).
    pub changed: bool,
    /// Sections whose text is rewritten.
    pub rewritten: BTreeSet<Section>,
    /// Outcome per mapping name.
    pub outcomes: BTreeMap<String, Outcome>,
    pub notes: Vec<Note>,
    /// Set when nothing may be written; `data` then equals the live data.
    pub blocked: Option<Blocked>,
    /// Diagnostics of the live aws-auth (problems in entries the operator does not own).
    pub live_diagnostics: Vec<Diagnostic>,
    pub managed_entries: usize,
    pub unmanaged_entries: usize,
}
