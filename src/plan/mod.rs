//! `plan()`: mappings + live aws-auth + settings -> the aws-auth to write and every mapping's
//! outcome. The only place where the operator decides anything; the controller and the CLI both
//! call it and only carry out what it says. What it returns lives in `outcome.rs`.
//!
//! How it decides, in order ([`plan_parsed`] calls one step after the other):
//! 1. Read the live aws-auth as the authenticator does; restore the unmanaged entries of a key
//!    it cannot read (or of a deleted aws-auth) from the last good revision (`recover`).
//! 2. `claim`: validate every mapping. Valid mappings claim their principal; protected
//!    principals are never touched; invalid, unresolved and policy-violating mappings are
//!    sidelined.
//! 3. Give every principal a `Fate`. `decide_winners`: of several claims the oldest (then by
//!    name, [`oldest_first`]) wins and the others are in Conflict; the winner's entry is written
//!    (or, with `--drift=report`, a hand edit is left in place) or served by its access entry.
//!    `settle_sidelined`: keep the last entry of a mapping that became invalid or violates the
//!    group policy. `settle_unclaimed`: give back an entry a deleted mapping had taken over,
//!    remove a managed entry nothing renders any more, or leave it untouched (everything the
//!    operator does not own).
//! 4. `fit`: if the result would not fit in the ConfigMap (or the annotation budget), the
//!    newest changes are refused one mapping at a time (`DoesNotFit`) until it does; entries
//!    already served stay.
//! 5. `build`: render the keys whose meaning changed (the others keep their text byte for
//!    byte), re-read them and refuse the write if they do not read back as intended
//!    (`render_checked`).

mod managed;
mod outcome;
mod settings;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{IamIdentityMapping, IamIdentityMappingSpec, RenderedEntry};
use crate::arn::{IamArn, PrincipalKey, is_account_id};
use crate::awsauth::{
    ArnMapping, AwsAuthEntries, ConfigMapData, Diagnostic, Entry, ParsedAwsAuth, Section,
    data_size, parse_data, parse_section_entries, render_section, sort_entries,
};
use crate::principals::resolved_arn;
use crate::validate::{Problem, validate_resolved};

pub use managed::{MANAGED_ANNOTATION, MAX_MANAGED_ANNOTATION_BYTES, ManagedSet, ManagedSetError};
pub use outcome::{Blocked, Drift, Note, Outcome, Plan, Unrecoverable};
pub use settings::{
    DriftPolicy, PolicyRefusal, PolicySubject, RESERVED_USERNAME_PREFIXES, Settings, SettingsError,
};

/// One IamIdentityMapping as `plan()` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingInput {
    pub name: String,
    pub creation_timestamp: Option<Time>,
    pub generation: Option<i64>,
    pub spec: IamIdentityMappingSpec,
    /// `status.rendered`: what the operator wrote for this mapping last time. Lets the plan tell a
    /// hand edit (drift) from a spec change, and keep the last entry of a mapping that became
    /// invalid.
    pub last_rendered: Option<RenderedEntry>,
    /// `--access-entries=only`, and the EKS access entry of this generation is confirmed in
    /// place: the mapping no longer needs its aws-auth entry.
    pub served_by_access_entry: bool,
    /// `--access-entries=only`, and the access-entry side of this mapping is not known yet (the
    /// access-entry loop has not reached EKS since the operator started, or has not reported on
    /// this mapping): aws-auth is kept as it is for it. An entry the operator removed because
    /// the access entry served it (the principal is managed, aws-auth holds nothing for it and
    /// `status.rendered` is empty) is not written back only to be removed again a moment later.
    pub access_entry_unknown: bool,
    /// The role `spec.ssoPermissionSet` resolved to (full ARN, from IAM); `None` for other
    /// mappings and for a permission set not resolved.
    pub resolved_arn: Option<String>,
}

impl MappingInput {
    /// The plan's input for a mapping object, as its own status describes it: the entry last
    /// rendered, the role a permission set resolved to. The access-entry side is unknown here
    /// (not served, not pending); the reconcile fills it in from the access-entry loop.
    pub fn from_mapping(mapping: &IamIdentityMapping) -> MappingInput {
        MappingInput {
            name: mapping.metadata.name.clone().unwrap_or_default(),
            creation_timestamp: mapping.metadata.creation_timestamp.clone(),
            generation: mapping.metadata.generation,
            spec: mapping.spec.clone(),
            last_rendered: mapping.status.as_ref().and_then(|s| s.rendered.clone()),
            served_by_access_entry: false,
            access_entry_unknown: false,
            resolved_arn: resolved_arn(&mapping.spec, mapping.status.as_ref(), None),
        }
    }
}

/// The live aws-auth ConfigMap, as far as the plan needs it.
#[derive(Debug, Clone, Default)]
pub struct LiveAwsAuth {
    /// `None` when aws-auth does not exist.
    pub data: Option<ConfigMapData>,
    /// The principals the operator managed after its last write (the annotation).
    pub managed: ManagedSet,
    /// The newest revision that parses cleanly, for restoring the unmanaged entries of a
    /// malformed key or of a deleted aws-auth. The controller loads it only when needed.
    pub recovery: Option<RecoverySource>,
    /// aws-auth is frozen (the IamIdentityMapping CRD went away): no managed entry is removed or
    /// given back; new and changed entries are still written.
    pub frozen: bool,
    /// The mappings may not be all there are: the mapping cache was not current (its watch was
    /// re-listing or reconnecting) when they were read. A managed entry is removed only for a
    /// mapping whose deletion was seen, so none is removed or given back now; new and changed
    /// entries are still written.
    pub mappings_incomplete: bool,
}

impl LiveAwsAuth {
    /// Its data, empty when aws-auth does not exist.
    fn data_or_empty(&self) -> &ConfigMapData {
        static NO_DATA: ConfigMapData = ConfigMapData::new();
        self.data.as_ref().unwrap_or(&NO_DATA)
    }
}

/// A revision to restore unmanaged entries from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoverySource {
    pub revision: u64,
    pub data: ConfigMapData,
    /// The managed set recorded with that revision.
    pub managed: ManagedSet,
    /// Every principal the operator managed in that revision or any later one. A principal the
    /// operator manages or has removed since must never come back as an unmanaged entry.
    pub ever_managed: ManagedSet,
}

/// What becomes of one principal's entries.
#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// Left exactly as they are: not the operator's (unmanaged, protected), or a change that
    /// did not fit.
    Untouched,
    /// The operator writes this entry in place of the live ones (boxed: most principals are
    /// `Keep` or `Untouched`, and a small table is faster to walk).
    Write(Box<Entry>),
    /// The operator's entry is the one live entry already (the usual case): written as it is,
    /// with no copy and no comparison again.
    Keep,
    /// Gone: a managed entry nothing renders any more.
    Remove,
    /// No aws-auth entry, still managed: its mapping is served by an EKS access entry.
    ServedElsewhere,
    /// The entries a deleted mapping had taken over come back, unmanaged.
    GiveBack(Vec<Entry>),
}

/// Everything the plan learns about one principal.
struct Principal {
    /// Its live entries, in the order the authenticator reads them (roles: it uses the last).
    live: Vec<Entry>,
    /// The operator wrote it last time.
    managed: bool,
    /// `--protected-arn`: never changed or removed.
    protected: bool,
    /// Valid mappings claiming it (index, entry), oldest first once sorted.
    claims: Vec<(usize, Entry)>,
    fate: Fate,
    /// Whether the operator manages it after this plan.
    managed_after: bool,
    /// The entries it replaced and gives back when no mapping renders it any more.
    original: Option<Vec<Entry>>,
    /// Its digest in the managed set, computed once.
    digest: u64,
    /// How many of the last `live` entries were restored from history (not in aws-auth's text).
    restored: usize,
}

/// Every principal the plan deals with. A hash table: ARNs share long prefixes, so an ordered
/// map spent its time comparing them; whatever must come out in principal order is sorted.
type Principals = HashMap<PrincipalKey, Principal>;

impl Principal {
    /// Its entries in aws-auth's text, in the order the authenticator reads them.
    fn text_entries(&self) -> &[Entry] {
        &self.live[..self.live.len() - self.restored]
    }
}

impl Principal {
    /// The entry the operator writes for it, if any.
    fn written(&self) -> Option<&Entry> {
        match &self.fate {
            Fate::Write(entry) => Some(entry),
            Fate::Keep => self.live.first(),
            _ => None,
        }
    }

    /// Whether writing `entry` leaves aws-auth as it is for this principal.
    fn is_live(&self, entry: &Entry) -> bool {
        self.live.len() == 1 && self.live[0] == *entry
    }

    /// Whether its fate leaves its entries in aws-auth's text as they are.
    fn leaves_text_as_is(&self) -> bool {
        match &self.fate {
            Fate::Untouched | Fate::Keep => true,
            Fate::Write(entry) => self.is_live(entry),
            Fate::Remove | Fate::ServedElsewhere => self.live.is_empty(),
            Fate::GiveBack(_) => false,
        }
    }

    /// Whether the entries it took over are still recorded to give back after this build
    /// (`applied`: its change is part of the build).
    fn keeps_original(&self, applied: bool) -> bool {
        match (&self.fate, applied) {
            (Fate::Write(_) | Fate::Keep, true) | (Fate::ServedElsewhere, _) => true,
            (Fate::Untouched, _) | (Fate::Write(_) | Fate::Keep, false) => self.managed,
            _ => false,
        }
    }
}

/// The policy's verdict on a mapping from its spec alone, valid or not (`plan()` decides the
/// same for a valid spec): the protected principal check needs a readable ARN or account, the
/// group and username checks only the groups and usernames. `extra_groups` and
/// `extra_username` are what the mapping grants elsewhere (the access-entry loop passes
/// `spec.accessEntry.kubernetesGroups` and `spec.accessEntry.username`).
pub fn spec_refusal<'g>(
    spec: &'g IamIdentityMappingSpec,
    resolved_arn: Option<&str>,
    extra_groups: impl IntoIterator<Item = &'g String>,
    extra_username: Option<&'g str>,
    settings: &Settings,
) -> Option<PolicyRefusal> {
    // The key aws-auth gives the principal (roles path-stripped), as `validate()` builds it.
    let arn = spec.arn.as_deref().or(resolved_arn);
    let principal = match (arn, &spec.account) {
        (Some(arn), _) => IamArn::parse(arn)
            .ok()
            .map(|arn| (arn.principal_key(), arn.aws_auth_arn())),
        (None, Some(account)) => {
            is_account_id(account).then(|| (PrincipalKey::account(account), account.clone()))
        }
        (None, None) => None,
    };
    settings.refusal(
        principal.as_ref().map(|(key, arn)| (key, arn.as_str())),
        spec.username.as_deref().into_iter().chain(extra_username),
        spec.groups.iter().chain(extra_groups),
    )
}

/// Computes the plan. Pure: no I/O, no clock.
pub fn plan(mappings: &[MappingInput], live: &LiveAwsAuth, settings: &Settings) -> Plan {
    plan_parsed(mappings, live, parse_live(live), settings)
}

/// The live data as the authenticator reads it (none: an empty aws-auth).
pub fn parse_live(live: &LiveAwsAuth) -> ParsedAwsAuth {
    live.data.as_ref().map(parse_data).unwrap_or_default()
}

/// [`plan`] with the live data already parsed by [`parse_live`], for a caller that needed the
/// parse before planning (the controller: whether a key is malformed decides whether it reads
/// the history), so that one reconcile parses aws-auth once.
pub fn plan_parsed(
    mappings: &[MappingInput],
    live: &LiveAwsAuth,
    mut parsed: ParsedAwsAuth,
    settings: &Settings,
) -> Plan {
    let mut notes = Vec::new();
    let (restored_entries, live_managed) = match recover(&parsed, live, settings, &mut notes) {
        Ok(recovered) => recovered,
        Err(blocked) => return blocked_plan(mappings, live, blocked, parsed.diagnostics),
    };
    // The parsed entries move into their principals (nothing of a large aws-auth is copied).
    let text_entries = std::mem::take(&mut parsed.entries);
    let mut principals = principals_of(text_entries, restored_entries, &live_managed, settings);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; mappings.len()];
    let sidelined = claim(
        mappings,
        &live_managed,
        &mut principals,
        &mut outcomes,
        settings,
    );
    decide_winners(mappings, &mut principals, &mut outcomes, settings);
    settle_sidelined(
        mappings,
        sidelined,
        &mut principals,
        &mut outcomes,
        &mut notes,
        settings,
    );
    settle_unclaimed(&mut principals, Hold::of(live), &mut notes);
    let current = Current {
        parsed: &parsed,
        data: live.data_or_empty(),
        // Entries restored from history are not in the live text: the keys must be rewritten.
        restored: notes.iter().any(|n| matches!(n, Note::Recovered { .. })),
    };
    let fitted = match fit(mappings, &mut principals, &current, settings) {
        Ok(fitted) => fitted,
        Err(blocked) => return blocked_plan(mappings, live, blocked, parsed.diagnostics),
    };
    for refused in fitted.refused {
        outcomes[refused.index] = Some(refused.outcome);
    }
    notes.extend(principal_notes(mappings, &principals, &outcomes));
    let outcomes = outcomes_by_name(mappings, outcomes);
    finish(live, fitted.built, outcomes, notes, parsed.diagnostics)
}

/// The mappings that claim no principal, by index: their earlier entry is kept (or removed)
/// once the winners are decided.
#[derive(Default)]
struct Sidelined {
    invalid: Vec<(usize, Vec<Problem>)>,
    /// `spec.ssoPermissionSet` not resolved to a role.
    unresolved: Vec<usize>,
    /// A group or the username outside the policy.
    violations: Vec<(usize, PolicySubject, String)>,
}

impl Sidelined {
    fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.invalid
            .iter()
            .map(|(i, _)| *i)
            .chain(self.unresolved.iter().copied())
            .chain(self.violations.iter().map(|(i, _, _)| *i))
    }
}

/// Validates every mapping against its spec and the policy: a valid mapping claims its
/// principal, a protected one is told so, and the others are sidelined.
fn claim(
    mappings: &[MappingInput],
    live_managed: &ManagedSet,
    principals: &mut Principals,
    outcomes: &mut [Option<Outcome>],
    settings: &Settings,
) -> Sidelined {
    let mut sidelined = Sidelined::default();
    for (index, mapping) in mappings.iter().enumerate() {
        let entry = match validate_resolved(&mapping.spec, mapping.resolved_arn.as_deref()) {
            Ok(entry) => entry,
            Err(problems) if problems.iter().all(Problem::is_unresolved) => {
                sidelined.unresolved.push(index);
                continue;
            }
            Err(problems) => {
                sidelined.invalid.push((index, problems));
                continue;
            }
        };
        let key = entry.key();
        match settings.refusal(
            Some((&key, entry.principal())),
            entry.username(),
            entry.groups(),
        ) {
            Some(PolicyRefusal::Protected { principal }) => {
                outcomes[index] = Some(Outcome::Protected { principal });
            }
            Some(PolicyRefusal::Forbidden { subject, rule }) => {
                sidelined.violations.push((index, subject, rule));
            }
            None => principal_mut(principals, key, settings)
                .claims
                .push((index, entry)),
        }
    }
    track_earlier_entries(mappings, &sidelined, principals, live_managed, settings);
    sidelined
}

/// The principals sidelined mappings wrote before may keep their entry, even when it is no
/// longer live; and a principal first met through a mapping may still be managed (its entry
/// deleted by hand).
fn track_earlier_entries(
    mappings: &[MappingInput],
    sidelined: &Sidelined,
    principals: &mut Principals,
    live_managed: &ManagedSet,
    settings: &Settings,
) {
    for index in sidelined.indices() {
        if let Some(entry) = mappings[index]
            .last_rendered
            .as_ref()
            .and_then(entry_from_rendered)
        {
            principal_mut(principals, entry.key(), settings);
        }
    }
    for principal in principals.values_mut() {
        principal.managed |= live_managed.contains_digest(principal.digest);
    }
}

/// The outcomes of the sidelined mappings: the entry each wrote before stays, so that a bad
/// edit never locks its users out, except that `--enforce-group-policy` removes the entry of
/// a mapping outside the policy.
fn settle_sidelined(
    mappings: &[MappingInput],
    sidelined: Sidelined,
    principals: &mut Principals,
    outcomes: &mut [Option<Outcome>],
    notes: &mut Vec<Note>,
    settings: &Settings,
) {
    for (index, problems) in sidelined.invalid {
        let kept = keep_last_entry(&mappings[index], principals);
        outcomes[index] = Some(Outcome::Invalid { problems, kept });
    }
    for index in sidelined.unresolved {
        let kept = keep_last_entry(&mappings[index], principals);
        let permission_set = mappings[index]
            .spec
            .sso_permission_set
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        outcomes[index] = Some(Outcome::Unresolved {
            permission_set,
            kept,
        });
    }
    for (index, subject, rule) in sidelined.violations {
        let mapping = &mappings[index];
        let (kept, removed) = if settings.enforce_group_policy {
            let removed = remove_last_entry(mapping, principals);
            if let Some(entry) = &removed {
                notes.push(Note::PolicyEnforced {
                    mapping: mapping.name.clone(),
                    entry: entry.clone(),
                });
            }
            (None, removed)
        } else {
            (keep_last_entry(mapping, principals), None)
        };
        outcomes[index] = Some(Outcome::PolicyViolation {
            subject,
            rule,
            kept,
            removed,
        });
    }
}

/// Notes of takeovers, moves to access entries, removals and gives-back, in principal order
/// (usually none: only they are sorted, not every principal).
fn principal_notes(
    mappings: &[MappingInput],
    principals: &Principals,
    outcomes: &[Option<Outcome>],
) -> Vec<Note> {
    let mut notes: Vec<(&PrincipalKey, Note)> = Vec::new();
    for (key, principal) in principals {
        if let Some(note) = winner_note(mappings, principal, outcomes) {
            notes.push((key, note));
        }
        match &principal.fate {
            Fate::Remove => notes.extend(principal.live.iter().map(|entry| {
                (
                    key,
                    Note::Removed {
                        entry: entry.clone(),
                    },
                )
            })),
            Fate::GiveBack(entries) => notes.push((
                key,
                Note::GaveBack {
                    entries: entries.clone(),
                },
            )),
            _ => {}
        }
    }
    // Stable: a principal's notes keep their order.
    notes.sort_by(|a, b| a.0.cmp(b.0));
    notes.into_iter().map(|(_, note)| note).collect()
}

/// What the winner of a principal did that is worth a note: it took over unmanaged entries,
/// or its entry left aws-auth for its access entry.
fn winner_note(
    mappings: &[MappingInput],
    principal: &Principal,
    outcomes: &[Option<Outcome>],
) -> Option<Note> {
    let winner = principal.claims.first()?.0;
    let mapping = mappings[winner].name.clone();
    match outcomes[winner].as_ref()? {
        Outcome::Rendered { took_over, .. } if !took_over.is_empty() => Some(Note::TookOver {
            mapping,
            previous: took_over.clone(),
            kept_to_give_back: principal.original.is_some(),
        }),
        Outcome::ServedByAccessEntry { removed, .. } if !removed.is_empty() => {
            Some(Note::MovedToAccessEntry {
                mapping,
                entries: removed.clone(),
            })
        }
        _ => None,
    }
}

/// The plan, from what aws-auth becomes.
fn finish(
    live: &LiveAwsAuth,
    built: Built,
    outcomes: BTreeMap<String, Outcome>,
    notes: Vec<Note>,
    live_diagnostics: Vec<Diagnostic>,
) -> Plan {
    let Built {
        data,
        managed,
        managed_annotation,
        rewritten,
        managed_entries,
        unmanaged_entries,
    } = built;
    let live_data = live.data_or_empty();
    // Only the rewritten keys can differ from the live ones (no need to compare 1 MiB).
    let changed = rewritten
        .iter()
        .any(|section| data.get(section.key()) != live_data.get(section.key()))
        || managed != live.managed
        || live.data.is_none();
    Plan {
        data,
        managed,
        managed_annotation,
        changed,
        rewritten,
        outcomes,
        notes,
        blocked: None,
        live_diagnostics,
        managed_entries,
        unmanaged_entries,
    }
}

/// The outcomes keyed by mapping name. The indices are sorted, not the (large) outcomes: the
/// map is then built from an already sorted sequence, without moving outcomes around.
fn outcomes_by_name(
    mappings: &[MappingInput],
    mut outcomes: Vec<Option<Outcome>>,
) -> BTreeMap<String, Outcome> {
    let mut order: Vec<usize> = (0..mappings.len()).collect();
    order.sort_unstable_by(|&a, &b| mappings[a].name.cmp(&mappings[b].name));
    order
        .into_iter()
        .filter_map(|index| Some((mappings[index].name.clone(), outcomes[index].take()?)))
        .collect()
}

/// Every live principal with its entries (those of aws-auth's text, then those restored from
/// history), whether it is managed, protected, and what it took over.
fn principals_of(
    text_entries: AwsAuthEntries,
    restored: Vec<Entry>,
    managed: &ManagedSet,
    settings: &Settings,
) -> Principals {
    let mut principals = Principals::with_capacity(text_entries.len() + restored.len());
    let AwsAuthEntries {
        roles,
        users,
        accounts,
    } = text_entries;
    let text = roles
        .into_iter()
        .map(Entry::Role)
        .chain(users.into_iter().map(Entry::User))
        .chain(accounts.into_iter().map(Entry::Account));
    for entry in text {
        principal_mut(&mut principals, entry.key(), settings)
            .live
            .push(entry);
    }
    for entry in restored {
        let principal = principal_mut(&mut principals, entry.key(), settings);
        principal.live.push(entry);
        principal.restored += 1;
    }
    for principal in principals.values_mut() {
        principal.managed = managed.contains_digest(principal.digest);
    }
    // A principal that is managed but has no live entry (deleted by hand) still matters: its
    // mapping restores it, or its original comes back.
    for (key, original) in managed.originals() {
        let principal = principal_mut(&mut principals, key.clone(), settings);
        principal.managed = true;
        principal.original = Some(original.clone());
    }
    principals
}

fn principal_mut<'p>(
    principals: &'p mut Principals,
    key: PrincipalKey,
    settings: &Settings,
) -> &'p mut Principal {
    principals.entry(key).or_insert_with_key(|key| Principal {
        live: Vec::new(),
        managed: false,
        protected: settings.protected.contains(key),
        claims: Vec::new(),
        fate: Fate::Untouched,
        managed_after: false,
        original: None,
        digest: managed::digest(key),
        restored: 0,
    })
}

/// A mapping that claims a principal, as [`oldest_first`] ranks it. aws-auth (`plan()`) and the
/// access entries (`accessentries::sync::plan_sync`) rank their mappings with it, so that both
/// give a contested principal to the same mapping.
pub trait Claimant {
    /// The creation time, in whole seconds since the Unix epoch.
    fn created_second(&self) -> Option<i64>;
    fn claimant_name(&self) -> &str;
}

impl Claimant for MappingInput {
    fn created_second(&self) -> Option<i64> {
        self.creation_timestamp.as_ref().map(|t| t.0.as_second())
    }

    fn claimant_name(&self) -> &str {
        &self.name
    }
}

/// The order in which mappings win a principal (and a place in a full aws-auth): created
/// earlier first (a mapping with no creation time comes last), then by name. Times compare in
/// whole seconds, the precision the API server keeps: a finer difference, which only a
/// mapping that never went through the API server can carry, does not decide.
pub fn oldest_first(a: &impl Claimant, b: &impl Claimant) -> Ordering {
    let key = |m: &dyn Claimant| (m.created_second().is_none(), m.created_second());
    key(a)
        .cmp(&key(b))
        .then_with(|| a.claimant_name().cmp(b.claimant_name()))
}

/// For every claimed principal: the oldest claim wins and is written (a takeover, a drift
/// repair, or left as a hand edit in report mode) or served by its access entry; the others
/// are in Conflict.
fn decide_winners(
    mappings: &[MappingInput],
    principals: &mut Principals,
    outcomes: &mut [Option<Outcome>],
    settings: &Settings,
) {
    for principal in principals.values_mut() {
        if principal.claims.is_empty() {
            continue;
        }
        // Stable: of equals, the first in input order wins.
        principal
            .claims
            .sort_by(|a, b| oldest_first(&mappings[a.0], &mappings[b.0]));
        let (winner, entry, contenders) = settle_conflicts(mappings, principal, outcomes);
        let mapping = &mappings[winner];
        outcomes[winner] = Some(if served_elsewhere(mapping, principal) {
            serve_elsewhere(principal, entry)
        } else {
            render_winner(mapping, principal, entry, contenders, settings.drift)
        });
    }
}

/// The first claim (the oldest) wins; the others are in Conflict. Returns the winner's index,
/// its entry, and the names of the others.
fn settle_conflicts(
    mappings: &[MappingInput],
    principal: &mut Principal,
    outcomes: &mut [Option<Outcome>],
) -> (usize, Entry, Vec<String>) {
    // The winner's entry moves out; nothing reads the entries of the claims afterwards.
    let winner = principal.claims[0].0;
    let entry = std::mem::replace(&mut principal.claims[0].1, Entry::Account(String::new()));
    let mut contenders = Vec::new();
    for &(loser, _) in &principal.claims[1..] {
        outcomes[loser] = Some(Outcome::Conflict {
            winner: mappings[winner].name.clone(),
            principal: entry.principal().to_string(),
        });
        contenders.push(mappings[loser].name.clone());
    }
    (winner, entry, contenders)
}

/// Served by its access entry: its own aws-auth entry goes (an entry the operator does not
/// manage is never removed). Served before and not known yet: stays served.
fn served_elsewhere(winner: &MappingInput, principal: &Principal) -> bool {
    let still_served = winner.access_entry_unknown
        && principal.managed
        && principal.live.is_empty()
        && winner.last_rendered.is_none();
    (winner.served_by_access_entry && (principal.managed || principal.live.is_empty()))
        || still_served
}

fn serve_elsewhere(principal: &mut Principal, entry: Entry) -> Outcome {
    let removed = principal.live.clone();
    principal.fate = Fate::ServedElsewhere;
    principal.managed_after = true;
    Outcome::ServedByAccessEntry { entry, removed }
}

/// The winner's entry is written: it takes over unmanaged entries (kept to give back unless
/// the mapping adopts them), repairs a hand edit, or leaves it in place (`--drift=report`).
fn render_winner(
    winner: &MappingInput,
    principal: &mut Principal,
    entry: Entry,
    contenders: Vec<String>,
    drift_policy: DriftPolicy,
) -> Outcome {
    let took_over = if principal.managed {
        Vec::new()
    } else {
        principal.live.clone()
    };
    let adopt = winner.spec.adopt_existing_entry;
    if !took_over.is_empty() {
        principal.original = (!adopt).then(|| took_over.clone());
    } else if adopt {
        principal.original = None;
    }
    let live = principal.is_live(&entry);
    let drift = if principal.managed && !live {
        detect_drift(winner, &entry, &principal.live, drift_policy)
    } else {
        None
    };
    principal.fate = match &drift {
        _ if live => Fate::Keep,
        Some(d) if !d.repaired => match principal.live.last() {
            Some(live) => Fate::Write(Box::new(live.clone())),
            None => Fate::Write(Box::new(entry.clone())),
        },
        _ => Fate::Write(Box::new(entry.clone())),
    };
    principal.managed_after = true;
    Outcome::Rendered {
        entry,
        took_over,
        drift,
        contenders,
        gives_back_on_delete: principal.original.is_some(),
    }
}

/// Drift: aws-auth no longer holds exactly what the operator last wrote for this mapping.
fn detect_drift(
    mapping: &MappingInput,
    desired: &Entry,
    live: &[Entry],
    policy: DriftPolicy,
) -> Option<Box<Drift>> {
    // A spec change since the last write is not drift, whatever the live text says, unless the
    // live entry also fails to match the new spec.
    let last_written = mapping.last_rendered.as_ref().and_then(entry_from_rendered);
    let reference = last_written.as_ref().unwrap_or(desired);
    if live.len() == 1 && live[0] == *reference {
        return None;
    }
    // Nothing in aws-auth, and nothing written there for this mapping last time: the operator
    // itself left it out (its access entry served it, in `only` mode, and the mode changed or
    // the access entry is no longer confirmed). Writing it is not the repair of a hand edit.
    if live.is_empty() && last_written.is_none() {
        return None;
    }
    let spec_unchanged = last_written.as_ref().is_none_or(|w| w == desired);
    Some(Box::new(Drift {
        live: live.to_vec(),
        desired: desired.clone(),
        repaired: policy == DriftPolicy::Repair || !spec_unchanged || live.is_empty(),
    }))
}

/// The principal whose entry this mapping wrote last time (`status.rendered`), if the operator
/// still manages it and no other mapping renders it now.
fn owned_principal<'p>(
    mapping: &MappingInput,
    principals: &'p mut Principals,
) -> Option<(&'p mut Principal, Entry)> {
    let rendered = mapping.last_rendered.as_ref()?;
    let written = entry_from_rendered(rendered)?;
    let principal = principals.get_mut(&written.key())?;
    let unclaimed = principal.fate == Fate::Untouched && principal.claims.is_empty();
    (principal.managed && !principal.protected && unclaimed).then_some((principal, written))
}

/// Keeps the entry a mapping that became invalid (or violates the group policy) wrote before,
/// exactly as aws-auth holds it, so that a bad edit never locks its users out. When the entry
/// is gone from aws-auth (deleted by hand, or in a key that had to be recovered), the entry
/// the operator last wrote comes back, as a drift repair would.
fn keep_last_entry(mapping: &MappingInput, principals: &mut Principals) -> Option<Entry> {
    let (principal, written) = owned_principal(mapping, principals)?;
    let kept = principal.live.last().cloned().unwrap_or(written);
    principal.fate = Fate::Write(Box::new(kept.clone()));
    principal.managed_after = true;
    Some(kept)
}

/// Removes the entry a mapping wrote before (`--enforce-group-policy`).
fn remove_last_entry(mapping: &MappingInput, principals: &mut Principals) -> Option<Entry> {
    let (principal, _) = owned_principal(mapping, principals)?;
    let removed = principal.live.last()?.clone();
    principal.fate = Fate::Remove;
    principal.original = None;
    Some(removed)
}

/// Why managed entries no mapping renders are kept for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// aws-auth is frozen (the CRD went away).
    Frozen,
    /// The mappings read may not be all there are.
    CacheNotCurrent,
}

impl Hold {
    fn of(live: &LiveAwsAuth) -> Option<Hold> {
        if live.frozen {
            Some(Hold::Frozen)
        } else if live.mappings_incomplete {
            Some(Hold::CacheNotCurrent)
        } else {
            None
        }
    }
}

/// Principals no mapping writes: a managed one is removed, or its original comes back (unless
/// removals are held: then it stays as it is, still managed); everything else stays untouched.
fn settle_unclaimed(principals: &mut Principals, hold: Option<Hold>, notes: &mut Vec<Note>) {
    let mut kept = Vec::new();
    for (key, principal) in principals.iter_mut() {
        if principal.managed_after || principal.fate != Fate::Untouched {
            continue;
        }
        if principal.protected || !principal.managed {
            principal.original = None;
            continue;
        }
        if hold.is_some() {
            kept.push((key, principal.live.clone()));
            continue;
        }
        principal.fate = match principal.original.take() {
            Some(original) => Fate::GiveBack(original),
            None => Fate::Remove,
        };
    }
    if let (false, Some(hold)) = (kept.is_empty(), hold) {
        kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let entries = kept.into_iter().flat_map(|(_, live)| live).collect();
        notes.push(match hold {
            Hold::Frozen => Note::KeptFrozen { entries },
            Hold::CacheNotCurrent => Note::KeptCacheNotCurrent { entries },
        });
    }
}

/// A change refused because it does not fit.
struct Refused {
    index: usize,
    outcome: Outcome,
}

struct Fitted {
    built: Built,
    refused: Vec<Refused>,
}

/// aws-auth as it is, for building what it becomes.
struct Current<'a> {
    parsed: &'a ParsedAwsAuth,
    data: &'a ConfigMapData,
    /// Entries were restored from history: they are not in the text, so the keys are rewritten.
    restored: bool,
}

/// Applies every change if the result fits; otherwise the most changes, oldest mapping first,
/// that fit (entries already in aws-auth are never dropped for lack of room).
fn fit(
    mappings: &[MappingInput],
    principals: &mut Principals,
    current: &Current,
    settings: &Settings,
) -> Result<Fitted, Blocked> {
    let everything = build(principals, current, None)?;
    let Some(too_large) = over_limit(&everything, settings) else {
        return Ok(Fitted {
            built: everything,
            refused: Vec::new(),
        });
    };
    let changes = changes_oldest_first(mappings, principals);
    let (fitting, built) = most_that_fit(&changes, principals, current, settings)?;
    Ok(Fitted {
        built,
        refused: refuse(&changes[fitting..], principals, &too_large),
    })
}

/// The changes a mapping asks for that add to aws-auth (its new or changed entry): the
/// winner's index and the principal, oldest mapping first.
fn changes_oldest_first(
    mappings: &[MappingInput],
    principals: &Principals,
) -> Vec<(usize, PrincipalKey)> {
    let mut changes: Vec<(usize, PrincipalKey)> = principals
        .iter()
        .filter_map(|(key, principal)| match &principal.fate {
            Fate::Write(entry) if !principal.is_live(entry) => {
                let winner = principal.claims.first()?.0;
                Some((winner, key.clone()))
            }
            _ => None,
        })
        .collect();
    changes.sort_by(|a, b| oldest_first(&mappings[a.0], &mappings[b.0]));
    changes
}

/// The largest number of `changes`, from the first, that fits, with the aws-auth they make
/// (bisection: a build renders the whole ConfigMap, and this only runs at the limit).
fn most_that_fit(
    changes: &[(usize, PrincipalKey)],
    principals: &Principals,
    current: &Current,
    settings: &Settings,
) -> Result<(usize, Built), Blocked> {
    let fits = |count: usize| {
        let allowed: BTreeSet<&PrincipalKey> = changes[..count].iter().map(|(_, k)| k).collect();
        build(principals, current, Some(&allowed))
    };
    let base = fits(0)?;
    if let Some(blocked) = over_limit(&base, settings) {
        return Err(blocked);
    }
    let (mut low, mut high) = (0, changes.len());
    let mut best = base;
    while low < high {
        let middle = (low + high).div_ceil(2);
        let built = fits(middle)?;
        if over_limit(&built, settings).is_none() {
            low = middle;
            best = built;
        } else {
            high = middle - 1;
        }
    }
    Ok((low, best))
}

/// Refuses the changes that do not fit: each principal stays as it is, and its mapping is
/// told which limit the full change exceeds (`too_large`).
fn refuse(
    changes: &[(usize, PrincipalKey)],
    principals: &mut Principals,
    too_large: &Blocked,
) -> Vec<Refused> {
    let (bytes, limit, what) = match *too_large {
        Blocked::AnnotationTooLarge { bytes, limit } => (bytes, limit, "the managed annotation"),
        Blocked::TooLarge { bytes, limit } => (bytes, limit, "the aws-auth data"),
        _ => (0, 0, "aws-auth"),
    };
    let mut refused = Vec::new();
    for (index, key) in changes {
        let Some(principal) = principals.get_mut(key) else {
            continue;
        };
        let Fate::Write(entry) = std::mem::replace(&mut principal.fate, Fate::Untouched) else {
            continue;
        };
        principal.managed_after = principal.managed;
        let kept = if principal.managed {
            principal.live.last().cloned()
        } else {
            None
        };
        refused.push(Refused {
            index: *index,
            outcome: Outcome::DoesNotFit {
                entry: *entry,
                kept,
                bytes,
                limit,
                what,
            },
        });
    }
    refused
}

fn over_limit(built: &Built, settings: &Settings) -> Option<Blocked> {
    let bytes = data_size(&built.data);
    if bytes > settings.max_data_bytes {
        return Some(Blocked::TooLarge {
            bytes,
            limit: settings.max_data_bytes,
        });
    }
    if built.managed_annotation.len() > settings.max_annotation_bytes {
        return Some(Blocked::AnnotationTooLarge {
            bytes: built.managed_annotation.len(),
            limit: settings.max_annotation_bytes,
        });
    }
    None
}

/// What aws-auth becomes.
struct Built {
    data: ConfigMapData,
    managed: ManagedSet,
    managed_annotation: String,
    rewritten: BTreeSet<Section>,
    managed_entries: usize,
    unmanaged_entries: usize,
}

/// Builds the new entries from the principals' fates (with `only`: only these changes; the
/// other changed principals stay as they are), renders the keys whose meaning changed, and
/// checks that they read back as intended.
fn build(
    principals: &Principals,
    current: &Current,
    only: Option<&BTreeSet<&PrincipalKey>>,
) -> Result<Built, Blocked> {
    // Usually nothing changes (a resync, a status-only event): then the new entries are the
    // live ones, and nothing is copied, sorted, compared or rendered.
    let unchanged = current.parsed.malformed.is_empty()
        && !current.restored
        && principals.values().all(Principal::leaves_text_as_is);
    let tally = tally(principals, only, !unchanged);
    let managed = ManagedSet::from_digests(tally.managed_digests).with_originals(tally.originals);
    let managed_annotation = managed.encode();
    let (data, rewritten) = if unchanged {
        (current.data.clone(), BTreeSet::new())
    } else {
        render_changed(principals, current, tally.next)?
    };
    Ok(Built {
        data,
        managed,
        managed_annotation,
        rewritten,
        managed_entries: tally.managed_entries,
        unmanaged_entries: tally.unmanaged_entries,
    })
}

/// What the principals' fates make of aws-auth, before it is rendered.
#[derive(Default)]
struct Tally {
    /// The new entries (collected only when something changes).
    next: AwsAuthEntries,
    managed_entries: usize,
    unmanaged_entries: usize,
    managed_digests: Vec<u64>,
    /// What the managed principals took over, to give back.
    originals: BTreeMap<PrincipalKey, Vec<Entry>>,
}

/// Counts (and with `collect`, gathers) the entries every principal leaves in aws-auth.
fn tally(principals: &Principals, only: Option<&BTreeSet<&PrincipalKey>>, collect: bool) -> Tally {
    let mut tally = Tally::default();
    for (key, principal) in principals {
        let applied = match (&principal.fate, only) {
            (Fate::Write(entry), Some(only)) if !principal.is_live(entry) => only.contains(key),
            _ => true,
        };
        tally.add(principal, applied, collect);
        if principal.keeps_original(applied)
            && let Some(original) = &principal.original
        {
            tally.originals.insert(key.clone(), original.clone());
        }
    }
    tally
}

impl Tally {
    /// One principal's entries: written, left as they are (also a change not `applied` in
    /// this build), given back, removed, or served by an access entry.
    fn add(&mut self, principal: &Principal, applied: bool, collect: bool) {
        match (&principal.fate, applied) {
            (Fate::Write(_) | Fate::Keep, true) => {
                if collect && let Some(entry) = principal.written() {
                    self.next.push(entry.clone());
                }
                self.managed_entries += 1;
                self.managed_digests.push(principal.digest);
            }
            (Fate::Untouched, _) | (Fate::Write(_) | Fate::Keep, false) => {
                if collect {
                    for entry in &principal.live {
                        self.next.push(entry.clone());
                    }
                }
                let count = principal.live.len();
                if principal.managed && !principal.protected {
                    self.managed_entries += count;
                    self.managed_digests.push(principal.digest);
                } else {
                    self.unmanaged_entries += count;
                }
            }
            (Fate::GiveBack(entries), _) => {
                for entry in entries {
                    self.next.push(entry.clone());
                }
                self.unmanaged_entries += entries.len();
            }
            (Fate::Remove, _) => {}
            (Fate::ServedElsewhere, _) => self.managed_digests.push(principal.digest),
        }
    }
}

/// Renders the sections whose entries change (and the malformed ones) from `next`; the others
/// keep their text byte for byte. Returns the new data and the sections rewritten.
fn render_changed(
    principals: &Principals,
    current: &Current,
    mut next: AwsAuthEntries,
) -> Result<(ConfigMapData, BTreeSet<Section>), Blocked> {
    // The renderer's order (a stable sort) keeps the entries of one principal in their live
    // order (the authenticator uses the last).
    sort_entries(&mut next);
    let live_sorted = live_text_sorted(principals);
    let mut data = current.data.clone();
    let mut rewritten = BTreeSet::new();
    for section in Section::ALL {
        if same_section(section, &live_sorted, &next)
            && !current.parsed.malformed.contains(&section)
        {
            continue;
        }
        rewritten.insert(section);
        match render_checked(section, &next)? {
            Some(text) => data.insert(section.key().to_string(), text),
            None => data.remove(section.key()),
        };
    }
    Ok((data, rewritten))
}

/// aws-auth's text entries in the renderer's order: a section is rewritten only when its
/// entries change, not because they were written in another order.
fn live_text_sorted(principals: &Principals) -> AwsAuthEntries {
    let mut live_sorted = AwsAuthEntries::default();
    for principal in principals.values() {
        for entry in principal.text_entries() {
            live_sorted.push(entry.clone());
        }
    }
    sort_entries(&mut live_sorted);
    live_sorted
}

/// A section's new text (none: the key goes), refused unless reading it again gives back
/// exactly the intended entries.
fn render_checked(section: Section, next: &AwsAuthEntries) -> Result<Option<String>, Blocked> {
    let text = render_section(section, next);
    let reads_back = match &text {
        Some(text) => {
            let (reread, malformed) = parse_section_entries(section, text);
            !malformed && same_section(section, &reread, next)
        }
        None => same_section(section, &AwsAuthEntries::default(), next),
    };
    if reads_back {
        Ok(text)
    } else {
        Err(Blocked::RoundTripMismatch { section })
    }
}

/// Whether `a` and `b` hold the same entries in `section`, in the same order.
fn same_section(section: Section, a: &AwsAuthEntries, b: &AwsAuthEntries) -> bool {
    match section {
        Section::MapRoles => a.roles == b.roles,
        Section::MapUsers => a.users == b.users,
        Section::MapAccounts => a.accounts == b.accounts,
    }
}

/// The entries to add to the parsed ones, and the managed set that describes them: the
/// unmanaged entries of malformed keys (or of a deleted aws-auth) restored from the last good
/// revision when allowed.
fn recover(
    parsed: &ParsedAwsAuth,
    live: &LiveAwsAuth,
    settings: &Settings,
    notes: &mut Vec<Note>,
) -> Result<(Vec<Entry>, ManagedSet), Blocked> {
    let mut entries = Vec::new();
    if live.data.is_none() {
        // Deleted (or never created). Without a revision it is a first start: nothing to say.
        let Some(source) = &live.recovery else {
            return Ok((entries, live.managed.clone()));
        };
        if !settings.recover_malformed {
            notes.push(Note::NotRecovered {
                reason: format!(
                    "--recover-malformed=false: its unmanaged entries are not restored from revision {}",
                    source.revision
                ),
            });
            return Ok((entries, live.managed.clone()));
        }
        let restored = restorable(source, &live.managed, None);
        notes.push(Note::Recovered {
            section: None,
            restored: restored.clone(),
            revision: source.revision,
            error: "aws-auth was deleted".to_string(),
        });
        entries.extend(restored);
        // The revision's record of what the operator managed (and took over) applies again.
        return Ok((entries, source.managed.clone()));
    }
    if parsed.malformed.is_empty() {
        return Ok((entries, live.managed.clone()));
    }
    let section_errors = |section: Section| -> Vec<Diagnostic> {
        parsed
            .diagnostics
            .iter()
            .filter(|d| d.key == section.key() && d.entry.is_none())
            .cloned()
            .collect()
    };
    let blocked = |why| Blocked::LiveAwsAuthMalformed {
        diagnostics: parsed
            .malformed
            .iter()
            .flat_map(|s| section_errors(*s))
            .collect(),
        why,
    };
    if !settings.recover_malformed {
        return Err(blocked(Unrecoverable::RecoveryDisabled));
    }
    let Some(source) = &live.recovery else {
        return Err(blocked(Unrecoverable::NoGoodRevision));
    };
    for &section in &parsed.malformed {
        let restored = restorable(source, &live.managed, Some(section));
        let error = section_errors(section)
            .first()
            .map(Diagnostic::to_string)
            .unwrap_or_default();
        notes.push(Note::Recovered {
            section: Some(section),
            restored: restored.clone(),
            revision: source.revision,
            error,
        });
        entries.extend(restored);
    }
    Ok((entries, live.managed.clone()))
}

/// The unmanaged entries of the recovery source (of one section, or all): never one whose
/// principal the operator manages now, managed in that revision, or managed at any time since.
fn restorable(
    source: &RecoverySource,
    managed: &ManagedSet,
    section: Option<Section>,
) -> Vec<Entry> {
    parse_data(&source.data)
        .entries
        .iter()
        .map(|(_, entry)| entry)
        .filter(|entry| section.is_none_or(|s| entry.section() == s))
        .filter(|entry| {
            let key = entry.key();
            !managed.contains(&key)
                && !source.managed.contains(&key)
                && !source.ever_managed.contains(&key)
        })
        .collect()
}

/// The entry a `status.rendered` describes.
pub fn entry_from_rendered(rendered: &RenderedEntry) -> Option<Entry> {
    let mapping = || ArnMapping {
        arn: rendered.principal.clone(),
        username: rendered.username.clone().unwrap_or_default(),
        groups: rendered.groups.clone(),
        extra: Default::default(),
    };
    Some(match rendered.section()? {
        Section::MapRoles => Entry::Role(mapping()),
        Section::MapUsers => Entry::User(mapping()),
        Section::MapAccounts => Entry::Account(rendered.principal.clone()),
    })
}

fn blocked_plan(
    mappings: &[MappingInput],
    live: &LiveAwsAuth,
    blocked: Blocked,
    live_diagnostics: Vec<Diagnostic>,
) -> Plan {
    let message = blocked.to_string();
    let outcomes = mappings
        .iter()
        .map(|m| {
            let outcome = Outcome::Blocked {
                reason: blocked.reason(),
                message: message.clone(),
            };
            (m.name.clone(), outcome)
        })
        .collect();
    Plan {
        data: live.data.clone().unwrap_or_default(),
        managed_annotation: live.managed.encode(),
        managed: live.managed.clone(),
        changed: false,
        rewritten: BTreeSet::new(),
        outcomes,
        notes: Vec::new(),
        blocked: Some(blocked),
        live_diagnostics,
        managed_entries: 0,
        unmanaged_entries: 0,
    }
}
