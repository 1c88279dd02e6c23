//! `plan()`: mappings + live aws-auth + settings -> the aws-auth to write and every mapping's
//! outcome. The only place where the operator decides anything; the controller and the CLI both
//! call it and only carry out what it says.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use regex::Regex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::api::{IamIdentityMappingSpec, RenderedEntry};
use crate::arn::{IamArn, PrincipalKey, is_account_id};
use crate::awsauth::{
    AwsAuthEntries, ConfigMapData, Diagnostic, Entry, EntryRef, MAX_CONFIGMAP_DATA_BYTES,
    ParsedAwsAuth, Section, data_size, duplicate_diagnostics, is_sorted, parse_data,
    parse_data_but_duplicates, parse_section_entries, render_section, sort_entries,
};
use crate::validate::{Problem, validate};

/// Annotation on aws-auth that records the principals the operator manages.
pub const MANAGED_ANNOTATION: &str = "awsauth.dev/managed";
/// Kubernetes limits the total size of an object's annotations to 256 KiB; leave room for others.
pub const MAX_MANAGED_ANNOTATION_BYTES: usize = 200 * 1024;

/// One IamIdentityMapping as `plan()` needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingInput {
    pub name: String,
    pub creation_timestamp: Option<Time>,
    pub generation: Option<i64>,
    pub spec: IamIdentityMappingSpec,
    /// `status.rendered`: what the operator wrote for this mapping last time. Lets the plan tell a
    /// hand edit (drift) from a spec change.
    pub last_rendered: Option<RenderedEntry>,
}

/// What to do when a managed entry was edited by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Rewrite the entry from its mapping.
    #[default]
    Repair,
    /// Leave the hand edit in place and report it.
    Report,
}

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error(
        "--protected-arn `{value}` is neither an IAM role/user ARN nor a 12-digit account id: {reason}"
    )]
    Protected { value: String, reason: String },
    #[error("--{flag} `{pattern}` is not a valid regular expression: {source}")]
    Regex {
        flag: &'static str,
        pattern: String,
        source: regex::Error,
    },
}

/// Operator settings that shape the plan.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Principals never changed or removed (break-glass admins, node roles).
    pub protected: BTreeSet<PrincipalKey>,
    /// When non-empty, every group must fully match one of these.
    pub allowed_groups: Vec<Regex>,
    /// No group may fully match any of these.
    pub denied_groups: Vec<Regex>,
    pub drift: DriftPolicy,
    /// Restore unmanaged entries of an unparseable key from the last good revision.
    pub recover_malformed: bool,
    pub max_data_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            protected: BTreeSet::new(),
            allowed_groups: Vec::new(),
            denied_groups: Vec::new(),
            drift: DriftPolicy::Repair,
            recover_malformed: true,
            max_data_bytes: MAX_CONFIGMAP_DATA_BYTES,
        }
    }
}

impl Settings {
    pub fn protect(&mut self, value: &str) -> Result<(), SettingsError> {
        let key = if is_account_id(value) {
            PrincipalKey::account(value)
        } else {
            IamArn::parse(value)
                .map_err(|e| SettingsError::Protected {
                    value: value.to_string(),
                    reason: e.to_string(),
                })?
                .principal_key()
        };
        self.protected.insert(key);
        Ok(())
    }

    pub fn with_group_policy(
        mut self,
        allowed: &[String],
        denied: &[String],
    ) -> Result<Self, SettingsError> {
        self.allowed_groups = compile_all("allowed-groups", allowed)?;
        self.denied_groups = compile_all("denied-groups", denied)?;
        Ok(self)
    }

    /// The first group the policy forbids, with the rule that forbids it.
    fn forbidden_group<'g>(&self, groups: &'g [String]) -> Option<(&'g str, String)> {
        groups.iter().find_map(|group| {
            if let Some(rule) = self.denied_groups.iter().find(|r| r.is_match(group)) {
                return Some((
                    group.as_str(),
                    format!("matches --denied-groups `{}`", unanchor(rule)),
                ));
            }
            if !self.allowed_groups.is_empty()
                && !self.allowed_groups.iter().any(|r| r.is_match(group))
            {
                let rules: Vec<_> = self
                    .allowed_groups
                    .iter()
                    .map(|r| format!("`{}`", unanchor(r)))
                    .collect();
                return Some((
                    group.as_str(),
                    format!("matches none of --allowed-groups {}", rules.join(", ")),
                ));
            }
            None
        })
    }
}

fn compile_all(flag: &'static str, patterns: &[String]) -> Result<Vec<Regex>, SettingsError> {
    patterns
        .iter()
        .map(|p| {
            let error = |source| SettingsError::Regex {
                flag,
                pattern: p.clone(),
                source,
            };
            // Check the pattern as written first, so the error quotes the user's text.
            Regex::new(p).map_err(error)?;
            Regex::new(&format!("^(?:{p})$")).map_err(error)
        })
        .collect()
}

fn unanchor(rule: &Regex) -> &str {
    let s = rule.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

/// The principals the operator manages, as recorded in the aws-auth annotation.
///
/// Shared (`Arc`): a plan that writes the same principals as last time hands back the live set,
/// and copying thousands of keys for that is wasted work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedSet(pub Arc<BTreeSet<PrincipalKey>>);

/// Compact, readable annotation form: names grouped by partition and account (as written by
/// `ManagedSet::encode`).
#[derive(Debug, Default, Deserialize)]
struct ManagedAnnotation {
    version: u32,
    #[serde(default)]
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    users: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    accounts: Vec<String>,
}

#[derive(Debug, Error)]
#[error("annotation {MANAGED_ANNOTATION} is unreadable: {0}")]
pub struct ManagedSetError(String);

impl ManagedSet {
    pub fn new(keys: BTreeSet<PrincipalKey>) -> ManagedSet {
        ManagedSet(Arc::new(keys))
    }

    pub fn contains(&self, key: &PrincipalKey) -> bool {
        self.0.contains(key)
    }

    pub fn encode(&self) -> String {
        // Borrowed names, one scope string per (partition, account) run: the keys are sorted
        // by ARN, so a scope's names come together. Same JSON as `ManagedAnnotation`.
        #[derive(Serialize)]
        struct Encoded<'k> {
            version: u32,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            roles: BTreeMap<String, Vec<&'k str>>,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            users: BTreeMap<String, Vec<&'k str>>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            accounts: Vec<&'k str>,
        }
        let mut encoded = Encoded {
            version: 1,
            roles: BTreeMap::new(),
            users: BTreeMap::new(),
            accounts: Vec::new(),
        };
        type Run<'k> = (bool, Option<(&'k str, &'k str)>, Vec<&'k str>);
        fn flush<'k>(run: Option<Run<'k>>, encoded: &mut Encoded<'k>) {
            if let Some((is_role, scope, names)) = run {
                let scope = match scope {
                    Some((partition, account)) => format!("{partition}:{account}"),
                    None => "raw".to_string(),
                };
                let target = if is_role {
                    &mut encoded.roles
                } else {
                    &mut encoded.users
                };
                target.entry(scope).or_default().extend(names);
            }
        }
        let mut run: Option<Run<'_>> = None;
        for key in self.0.iter() {
            let (is_role, arn) = match key {
                PrincipalKey::Account(id) => {
                    encoded.accounts.push(id);
                    continue;
                }
                PrincipalKey::Role(arn) => (true, arn),
                PrincipalKey::User(arn) => (false, arn),
            };
            // Keys not in ARN shape are kept whole under scope `raw`.
            let (scope, name) = match split_arn(arn) {
                Some((scope, name)) => (Some(scope), name),
                None => (None, arn.as_str()),
            };
            match &mut run {
                Some((run_is_role, run_scope, names))
                    if *run_is_role == is_role && *run_scope == scope =>
                {
                    names.push(name)
                }
                _ => {
                    let finished = run.replace((is_role, scope, vec![name]));
                    flush(finished, &mut encoded);
                }
            }
        }
        flush(run, &mut encoded);
        serde_json::to_string(&encoded).unwrap_or_default()
    }

    pub fn decode(text: &str) -> Result<ManagedSet, ManagedSetError> {
        let annotation: ManagedAnnotation =
            serde_json::from_str(text).map_err(|e| ManagedSetError(e.to_string()))?;
        if annotation.version != 1 {
            return Err(ManagedSetError(format!(
                "unknown version {}",
                annotation.version
            )));
        }
        let mut set = BTreeSet::new();
        for (scope, names) in &annotation.roles {
            for name in names {
                set.insert(PrincipalKey::Role(join_arn(scope, "role/", name)?));
            }
        }
        for (scope, names) in &annotation.users {
            for name in names {
                set.insert(PrincipalKey::User(join_arn(scope, "user", name)?));
            }
        }
        set.extend(annotation.accounts.iter().map(|a| PrincipalKey::account(a)));
        Ok(ManagedSet::new(set))
    }
}

/// Splits `arn:P:iam::A:role/NAME` into ((`P`, `A`), `NAME`) and `arn:P:iam::A:user/PATH/NAME`
/// into ((`P`, `A`), `/PATH/NAME`). `None` for keys not in this shape (kept whole under scope
/// `raw`).
fn split_arn(arn: &str) -> Option<((&str, &str), &str)> {
    // The first five colons, by bytes: `str::splitn` sets up a searcher for each key, and this
    // runs for every key of a large managed set.
    let mut colons = memchr::memchr_iter(b':', arn.as_bytes());
    let (Some(first), Some(after_partition), Some(_), Some(after_region), Some(after_account)) = (
        colons.next(),
        colons.next(),
        colons.next(),
        colons.next(),
        colons.next(),
    ) else {
        return None;
    };
    let partition = &arn[first + 1..after_partition];
    let account = &arn[after_region + 1..after_account];
    let resource = &arn[after_account + 1..];
    let name = resource
        .strip_prefix("role/")
        .or_else(|| resource.strip_prefix("user"))?;
    Some(((partition, account), name))
}

fn join_arn(scope: &str, kind: &str, name: &str) -> Result<String, ManagedSetError> {
    if scope == "raw" {
        return Ok(name.to_string());
    }
    let (partition, account) = scope
        .split_once(':')
        .ok_or_else(|| ManagedSetError(format!("bad scope `{scope}`")))?;
    Ok(format!("arn:{partition}:iam::{account}:{kind}{name}"))
}

/// The live aws-auth ConfigMap, as far as the plan needs it.
#[derive(Debug, Clone, Default)]
pub struct LiveAwsAuth {
    /// `None` when aws-auth does not exist.
    pub data: Option<ConfigMapData>,
    /// The principals the operator managed after its last write.
    pub managed: ManagedSet,
    /// Data of the newest revision that parsed cleanly, for recovering a malformed key.
    pub last_good: Option<ConfigMapData>,
}

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
        /// An unmanaged live entry for the same principal was replaced.
        /// Boxed: rare, and it would double the size of every outcome.
        took_over: Option<Box<Entry>>,
        drift: Option<Box<Drift>>,
    },
    /// The spec is invalid; nothing new is rendered. `kept` is the entry rendered for its last
    /// valid spec, which stays in aws-auth so that a bad edit never locks its users out.
    Invalid {
        problems: Vec<Problem>,
        kept: Option<Entry>,
    },
    /// Another, older mapping owns the same principal.
    Conflict { winner: String, principal: String },
    /// The principal is protected by `--protected-arn`: the operator never touches it.
    Protected { principal: String },
    /// A group is outside the group policy.
    GroupNotAllowed { group: String, rule: String },
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
            Outcome::GroupNotAllowed { .. } => "GroupNotAllowed",
            Outcome::Blocked { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Outcome::Rendered { entry, .. } => {
                format!("rendered into {} as {}", entry.section(), entry.principal())
            }
            Outcome::Invalid { problems, kept } => {
                let list: Vec<_> = problems.iter().map(Problem::to_string).collect();
                let mut message = list.join("; ");
                if let Some(kept) = kept {
                    message.push_str(&format!(
                        "; the entry of the last valid spec ({}) stays in aws-auth",
                        kept.principal()
                    ));
                }
                message
            }
            Outcome::Conflict { winner, principal } => format!(
                "IamIdentityMapping `{winner}` already maps {principal} (the oldest mapping wins); delete one of the two"
            ),
            Outcome::Protected { principal } => format!(
                "{principal} is a protected principal (--protected-arn): the operator never changes or removes its aws-auth entry"
            ),
            Outcome::GroupNotAllowed { group, rule } => {
                format!("group `{group}` is not allowed: it {rule}")
            }
            Outcome::Blocked { message, .. } => message.clone(),
        }
    }
}

/// Why nothing may be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason")]
pub enum Blocked {
    /// A key of the live aws-auth cannot be parsed and cannot be recovered.
    LiveAwsAuthMalformed { diagnostics: Vec<Diagnostic> },
    /// The rendered data would exceed the ConfigMap size limit.
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
            Blocked::LiveAwsAuthMalformed { diagnostics } => {
                write!(
                    f,
                    "the live aws-auth cannot be parsed and no good revision can restore it: "
                )?;
                let list: Vec<_> = diagnostics.iter().map(Diagnostic::to_string).collect();
                f.write_str(&list.join("; "))
            }
            Blocked::TooLarge { bytes, limit } => write!(
                f,
                "the rendered aws-auth would hold {bytes} bytes of data, over the {limit}-byte ConfigMap limit; nothing was written"
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
    /// A mapping replaced an unmanaged entry for its principal.
    TookOver { mapping: String, previous: Entry },
    /// Unmanaged entries of a malformed key were restored from the last good revision.
    Recovered {
        section: Section,
        restored: usize,
        error: String,
    },
    /// A managed entry that no mapping renders any more was removed.
    Removed { entry: Entry },
}

/// The decision: what aws-auth must hold and what happened to each mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The complete new data of aws-auth (keys other than the three sections are kept as they are).
    pub data: ConfigMapData,
    pub managed: ManagedSet,
    /// `managed` encoded for the annotation.
    pub managed_annotation: String,
    /// Whether data or annotation differ from the live ConfigMap.
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

/// Everything the plan learns about one principal.
#[derive(Default)]
struct Principal<'a> {
    /// Its live entries, in the order the authenticator reads them (it uses the last).
    live: LiveEntries<'a>,
    /// The operator wrote it last time (`LiveAwsAuth::managed`).
    managed: bool,
    /// `--protected-arn`: never changed or removed.
    protected: bool,
    /// The index of the valid mapping for it that wins: the oldest, then by name.
    winner: Option<usize>,
    /// The entry the operator writes for it, until it is placed in the new entry set.
    desired: Option<Desired<'a>>,
    /// It has exactly one live entry, and that is the winner's entry.
    rendered_is_live: bool,
    /// Its desired entry was placed in the new entry set.
    placed: bool,
}

/// The live entries of one principal. Nearly always one: it is held inline, so that most
/// principals need no allocation of their own.
#[derive(Default)]
struct LiveEntries<'a> {
    first: Option<EntryRef<'a>>,
    rest: Vec<EntryRef<'a>>,
}

impl<'a> LiveEntries<'a> {
    fn push(&mut self, entry: EntryRef<'a>) {
        match self.first {
            None => self.first = Some(entry),
            Some(_) => self.rest.push(entry),
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The entry the authenticator uses.
    fn last(&self) -> Option<EntryRef<'a>> {
        self.rest.last().copied().or(self.first)
    }

    /// The only entry, if there is exactly one.
    fn only(&self) -> Option<EntryRef<'a>> {
        self.first.filter(|_| self.rest.is_empty())
    }

    fn iter(&self) -> impl Iterator<Item = EntryRef<'a>> + '_ {
        self.first.iter().chain(&self.rest).copied()
    }
}

/// Where a principal's new entry comes from. Not copied until the new entry set is built,
/// which a steady state skips.
enum Desired<'a> {
    /// The entry in the winning mapping's outcome (`Outcome::Rendered` at this mapping index).
    Rendered(usize),
    /// Its live entry, left in place (a hand edit in report mode).
    Live(EntryRef<'a>),
    /// The last valid entry of an invalid mapping.
    Kept(Entry),
}

impl Desired<'_> {
    fn entry<'x>(&'x self, outcomes: &'x [Option<Outcome>]) -> Option<EntryRef<'x>> {
        match self {
            Desired::Rendered(index) => match outcomes.get(*index) {
                Some(Some(Outcome::Rendered { entry, .. })) => Some(entry.into()),
                _ => None,
            },
            Desired::Live(entry) => Some(*entry),
            Desired::Kept(entry) => Some(entry.into()),
        }
    }
}

impl Principal<'_> {
    /// The operator writes an entry for this principal.
    fn is_written(&self) -> bool {
        self.desired.is_some() || self.placed
    }

    /// Whether its desired entry is `live`, one of its live entries.
    fn desired_is(&self, live: EntryRef) -> bool {
        match &self.desired {
            // Worked out once, when the winner was chosen (only ever true with exactly one live
            // entry; with any other number the new set differs from the live one anyway).
            Some(Desired::Rendered(_)) => self.rendered_is_live,
            Some(Desired::Live(entry)) => *entry == live,
            Some(Desired::Kept(entry)) => live == *entry,
            None => false,
        }
    }
}

/// The principals of one plan, each looked up once by its key. Keys are long ARNs sharing long
/// prefixes: hashing them once beats comparing them in ordered maps at every step.
#[derive(Default)]
struct Principals<'a> {
    /// Seeded per process (foldhash's `RandomState`), so keys cannot be chosen to collide.
    index: foldhash::HashMap<PrincipalKey, usize>,
    slots: Vec<Principal<'a>>,
}

impl<'a> Principals<'a> {
    fn with_capacity(capacity: usize) -> Principals<'a> {
        Principals {
            index: foldhash::HashMap::with_capacity_and_hasher(capacity, Default::default()),
            slots: Vec::with_capacity(capacity),
        }
    }

    fn slot(&mut self, key: PrincipalKey, settings: &Settings) -> usize {
        if let Some(&slot) = self.index.get(&key) {
            return slot;
        }
        let slot = self.slots.len();
        self.slots.push(Principal {
            protected: settings.protected.contains(&key),
            ..Principal::default()
        });
        self.index.insert(key, slot);
        slot
    }

    fn get(&self, key: &PrincipalKey) -> Option<&Principal<'a>> {
        self.index.get(key).map(|&slot| &self.slots[slot])
    }
}

/// Computes the plan. Pure: no I/O, no clock.
pub fn plan(mappings: &[MappingInput], live: &LiveAwsAuth, settings: &Settings) -> Plan {
    plan_with(
        mappings,
        live,
        settings,
        mappings.len() >= PARALLEL_MIN_MAPPINGS,
    )
}

/// `plan()`, with the helper thread for large plans (`parallel`) or without. The result is the
/// same either way.
fn plan_with(
    mappings: &[MappingInput],
    live: &LiveAwsAuth,
    settings: &Settings,
    parallel: bool,
) -> Plan {
    let no_data = ConfigMapData::new();
    let live_data = live.data.as_ref().unwrap_or(&no_data);
    let Prepared {
        parsed,
        candidates,
        last_managed,
    } = prepare(live_data, mappings, &live.managed, settings, parallel);
    let Candidates {
        mut principals,
        mut outcomes,
        entries,
        losers,
        invalid,
        name_order,
    } = candidates;

    let mut notes = Vec::new();
    let live_entries = match recover(&parsed, live, settings, &mut notes) {
        Ok(entries) => entries,
        Err(blocked) => {
            let mut live_diagnostics = parsed.diagnostics.clone();
            live_diagnostics.extend(duplicate_diagnostics(&parsed.entries));
            return blocked_plan(mappings, live, live_data.clone(), blocked, live_diagnostics);
        }
    };
    // The checks across a large live aws-auth need nothing decided here: the helper does them
    // meanwhile.
    let ((duplicates, live_is_sorted), live_list) = side_by_side(
        parallel && data_size(live_data) >= PARALLEL_MIN_LIVE_BYTES,
        || {
            (
                duplicate_diagnostics(&parsed.entries),
                is_sorted(&parsed.entries),
            )
        },
        || {
            decide(
                mappings,
                live,
                settings,
                &live_entries,
                &mut principals,
                &mut outcomes,
                Decisions {
                    entries,
                    losers,
                    invalid,
                },
                &mut notes,
            )
        },
    );
    let mut live_diagnostics = parsed.diagnostics.clone();
    live_diagnostics.extend(duplicates);

    // Usually the live entries are what the operator wrote, sorted, and nothing changes: then
    // the new entry set is the live one, and it is neither built nor sorted nor compared.
    let steady_counts = if parsed.malformed.is_empty() && live_is_sorted {
        new_set_is_live(&live_list, &principals)
    } else {
        None
    };
    finish(FinishInput {
        mappings,
        live,
        live_data,
        settings,
        parsed: &parsed,
        live_is_sorted,
        live_list,
        principals,
        outcomes,
        name_order,
        last_managed,
        notes,
        live_diagnostics,
        steady_counts,
        parallel,
    })
}

/// What `plan()` decides from the candidates once the live entries are known.
struct Decisions {
    entries: Vec<Option<Entry>>,
    losers: Vec<(usize, usize)>,
    invalid: Vec<(usize, Vec<Problem>)>,
}

/// Gives every live entry its principal, and decides every mapping's outcome and every
/// principal's desired entry. Returns every live entry with its principal, in the order the
/// authenticator reads them.
#[allow(clippy::too_many_arguments)]
fn decide<'p>(
    mappings: &'p [MappingInput],
    live: &LiveAwsAuth,
    settings: &Settings,
    live_entries: &'p AwsAuthEntries,
    principals: &mut Principals<'p>,
    outcomes: &mut [Option<Outcome>],
    decisions: Decisions,
    notes: &mut Vec<Note>,
) -> Vec<(usize, EntryRef<'p>)> {
    let Decisions {
        mut entries,
        losers,
        invalid,
    } = decisions;
    let live_list: Vec<(usize, EntryRef)> = live_entries
        .entries()
        .map(|entry| (principals.slot(entry.key(), settings), entry))
        .collect();
    for &(slot, entry) in &live_list {
        principals.slots[slot].live.push(entry);
    }
    // Only principals already known (live or mapped) can be affected by having been managed.
    for key in live.managed.0.iter() {
        if let Some(&slot) = principals.index.get(key) {
            principals.slots[slot].managed = true;
        }
    }
    for (index, problems) in invalid {
        let kept = last_valid_entry(&mappings[index], principals);
        outcomes[index] = Some(Outcome::Invalid { problems, kept });
    }

    // One desired entry per principal: the oldest mapping (then name) won.
    for (slot, loser_index) in losers {
        if let Some(winner_index) = principals.slots[slot].winner
            && let Some(entry) = &entries[winner_index]
        {
            outcomes[loser_index] = Some(Outcome::Conflict {
                winner: mappings[winner_index].name.clone(),
                principal: entry.principal().to_string(),
            });
        }
    }
    let mut took_over_notes: Vec<(PrincipalKey, Note)> = Vec::new();
    for principal in &mut principals.slots {
        let Some(winner_index) = principal.winner else {
            continue;
        };
        let Some(entry) = entries[winner_index].take() else {
            continue;
        };
        let winner = &mappings[winner_index];
        let live_for_key = &principal.live;
        principal.rendered_is_live = live_for_key.only().is_some_and(|live| live == entry);
        let took_over = (!principal.managed)
            .then(|| live_for_key.last().map(|e| Box::new(e.to_entry())))
            .flatten();
        if let Some(previous) = &took_over {
            let note = Note::TookOver {
                mapping: winner.name.clone(),
                previous: Entry::clone(previous),
            };
            took_over_notes.push((entry.key(), note));
        }
        let drift = if principal.managed && !principal.rendered_is_live {
            detect_drift(winner, &entry, live_for_key, settings.drift)
        } else {
            None
        };
        // Report mode leaves a hand edit of an unchanged spec in place.
        let written = match (&drift, live_for_key.last()) {
            (Some(d), Some(live_entry)) if !d.repaired => Desired::Live(live_entry),
            _ => Desired::Rendered(winner_index),
        };
        principal.desired = Some(written);
        outcomes[winner_index] = Some(Outcome::Rendered {
            entry,
            took_over,
            drift,
        });
    }
    // Ordered by principal, whatever order the mappings came in.
    took_over_notes.sort_by(|a, b| a.0.cmp(&b.0));
    notes.extend(took_over_notes.into_iter().map(|(_, note)| note));

    // Invalid mappings keep serving their last valid entry.
    for outcome in outcomes.iter().flatten() {
        if let Outcome::Invalid {
            kept: Some(entry), ..
        } = outcome
        {
            let slot = principals.slot(entry.key(), settings);
            let principal = &mut principals.slots[slot];
            if !principal.protected && principal.desired.is_none() {
                principal.desired = Some(Desired::Kept(entry.clone()));
            }
        }
    }

    live_list
}

/// Everything `finish` works from.
struct FinishInput<'a> {
    mappings: &'a [MappingInput],
    live: &'a LiveAwsAuth,
    live_data: &'a ConfigMapData,
    settings: &'a Settings,
    parsed: &'a ParsedAwsAuth,
    live_is_sorted: bool,
    live_list: Vec<(usize, EntryRef<'a>)>,
    principals: Principals<'a>,
    outcomes: Vec<Option<Outcome>>,
    name_order: Vec<usize>,
    last_managed: Option<(ManagedSet, String)>,
    notes: Vec<Note>,
    live_diagnostics: Vec<Diagnostic>,
    steady_counts: Option<(usize, usize)>,
    parallel: bool,
}

/// Builds the new entry set (unless it is the live one), renders and checks what changed, and
/// assembles the plan.
fn finish(input: FinishInput) -> Plan {
    let FinishInput {
        mappings,
        live,
        live_data,
        settings,
        parsed,
        live_is_sorted,
        live_list,
        mut principals,
        outcomes,
        name_order,
        last_managed,
        mut notes,
        live_diagnostics,
        steady_counts,
        parallel,
    } = input;
    let steady = steady_counts.is_some();
    let mut next = AwsAuthEntries::default();
    let (managed_entries, unmanaged_entries) = match steady_counts {
        Some(counts) => {
            for principal in &mut principals.slots {
                principal.placed |= principal.desired.take().is_some();
            }
            counts
        }
        None => build_new_set(
            &mut next,
            &live_list,
            &mut principals,
            &outcomes,
            &mut notes,
        ),
    };
    let live_sorted = if live_is_sorted {
        Cow::Borrowed(&parsed.entries)
    } else {
        let mut sorted = parsed.entries.clone();
        sort_entries(&mut sorted);
        Cow::Owned(sorted)
    };
    // A section whose meaning is unchanged keeps its text byte for byte.
    let rewritten: BTreeSet<Section> = Section::ALL
        .into_iter()
        .filter(|&section| {
            let unchanged = steady || section_entries_equal(section, &live_sorted, &next);
            !unchanged || parsed.malformed.contains(&section)
        })
        .collect();
    let mut data = live_data.clone();
    let same_principals = same_as_last_time(live, &principals, managed_entries);
    // The outcomes are final. Rendering and re-reading is the long part of a write: this
    // thread does mapRoles, usually the largest key, while the helper does the other keys,
    // puts the outcomes in name order, and builds and encodes a new managed set. In a steady
    // state there is too little to do here to be worth a second thread.
    let ((new_managed, outcomes, others), roles) = side_by_side(
        parallel && !rewritten.is_empty(),
        || {
            let managed = (!same_principals).then(|| new_managed_set(&principals));
            let others: Vec<_> = rewritten
                .iter()
                .filter(|&&section| section != Section::MapRoles)
                .map(|&section| (section, render_and_check(section, &next)))
                .collect();
            (
                managed,
                into_name_order(mappings, &name_order, outcomes),
                others,
            )
        },
        || {
            rewritten.contains(&Section::MapRoles).then(|| {
                (
                    Section::MapRoles,
                    render_and_check(Section::MapRoles, &next),
                )
            })
        },
    );
    // In key order: the new texts go into the data, and the first that does not read back as
    // intended blocks the write.
    let mut round_trip = None;
    for (section, (text, reads_back)) in roles.into_iter().chain(others) {
        match text {
            Some(text) => data.insert(section.key().to_string(), text),
            None => data.remove(section.key()),
        };
        if !reads_back && round_trip.is_none() {
            round_trip = Some(Blocked::RoundTripMismatch { section });
        }
    }
    let (managed, managed_annotation) = new_managed.unwrap_or_else(|| {
        last_managed.unwrap_or_else(|| (live.managed.clone(), live.managed.encode()))
    });
    let blocked = round_trip.or_else(|| check_sizes(&data, &managed_annotation, settings));
    if let Some(blocked) = blocked {
        return blocked_plan(mappings, live, live_data.clone(), blocked, live_diagnostics);
    }

    let mut plan = Plan {
        data,
        managed_annotation,
        managed,
        changed: false,
        rewritten,
        outcomes,
        notes,
        blocked: None,
        live_diagnostics,
        managed_entries,
        unmanaged_entries,
    };
    plan.changed = plan.data != *live_data || live.managed != plan.managed || live.data.is_none();
    plan
}

/// Whether the new entry set would be the live one, entry for entry: every live entry either
/// kept or replaced by an identical desired entry, nothing removed or added. Returns the
/// (managed, unmanaged) entry counts if so.
fn new_set_is_live(
    live_list: &[(usize, EntryRef)],
    principals: &Principals,
) -> Option<(usize, usize)> {
    let mut placed = vec![false; principals.slots.len()];
    let (mut managed, mut unmanaged) = (0, 0);
    for &(slot, entry) in live_list {
        let principal = &principals.slots[slot];
        if principal.protected || (!principal.managed && !principal.is_written()) {
            unmanaged += 1;
            continue;
        }
        match &principal.desired {
            Some(_) if !placed[slot] && principal.desired_is(entry) => {
                placed[slot] = true;
                managed += 1;
            }
            // Replaced by something else, a second entry dropped, or removed.
            _ => return None,
        }
    }
    let all_placed = principals
        .slots
        .iter()
        .zip(&placed)
        .all(|(principal, &placed)| principal.desired.is_none() || placed);
    all_placed.then_some((managed, unmanaged))
}

/// Builds the new entry set: unmanaged (and protected) live entries, and each desired entry
/// where its principal's live entry was (then the new ones); sorted. Returns the (managed,
/// unmanaged) entry counts.
fn build_new_set(
    next: &mut AwsAuthEntries,
    live_list: &[(usize, EntryRef)],
    principals: &mut Principals,
    outcomes: &[Option<Outcome>],
    notes: &mut Vec<Note>,
) -> (usize, usize) {
    // Sized up front: growing vectors of thousands of entries costs copies and fresh pages.
    let mut per_section = [0usize; 3];
    for &(_, entry) in live_list {
        per_section[entry.section() as usize] += 1;
    }
    for desired in principals.slots.iter().filter_map(|p| p.desired.as_ref()) {
        if let Some(entry) = desired.entry(outcomes) {
            per_section[entry.section() as usize] += 1;
        }
    }
    next.roles.reserve(per_section[Section::MapRoles as usize]);
    next.users.reserve(per_section[Section::MapUsers as usize]);
    next.accounts
        .reserve(per_section[Section::MapAccounts as usize]);
    let (mut managed, mut unmanaged) = (0, 0);
    for &(slot, entry) in live_list {
        let principal = &mut principals.slots[slot];
        if principal.protected || (!principal.managed && !principal.is_written()) {
            unmanaged += 1;
            next.push(entry.to_entry());
        } else if let Some(desired) = principal.desired.take() {
            principal.placed = true;
            if let Some(entry) = desired.entry(outcomes) {
                managed += 1;
                next.push(entry.to_entry());
            }
        } else if !principal.placed {
            notes.push(Note::Removed {
                entry: entry.to_entry(),
            });
        }
        // Otherwise a second live entry of a principal whose new entry is already placed.
    }
    for principal in &mut principals.slots {
        if let Some(desired) = principal.desired.take() {
            principal.placed = true;
            if let Some(entry) = desired.entry(outcomes) {
                managed += 1;
                next.push(entry.to_entry());
            }
        }
    }
    if !is_sorted(next) {
        sort_entries(next);
    }
    (managed, unmanaged)
}

/// A mapping's entry and its principal, or what is wrong with it.
type Validated = Result<(PrincipalKey, Entry), Vec<Problem>>;

fn validate_all(mappings: &[MappingInput]) -> Vec<Validated> {
    mappings
        .iter()
        .map(|mapping| validate(&mapping.spec).map(|entry| (entry.key(), entry)))
        .collect()
}

/// Below these sizes a second thread costs more than it saves.
const PARALLEL_MIN_MAPPINGS: usize = 512;
const PARALLEL_MIN_LIVE_BYTES: usize = 64 * 1024;

/// Valid mappings grouped by principal, the outcomes decided without the live data, and the
/// order of the mappings by name.
struct Candidates<'m> {
    /// Principals with their winning mapping (live entries are added later).
    principals: Principals<'m>,
    /// One outcome per mapping, by index: set here for protected principals and groups outside
    /// the policy, later for the rest.
    outcomes: Vec<Option<Outcome>>,
    /// The entry of each mapping that contends for its principal, by index.
    entries: Vec<Option<Entry>>,
    /// Mappings that lost their principal to an older mapping: (principal slot, index).
    losers: Vec<(usize, usize)>,
    /// Invalid mappings (by index) and their problems.
    invalid: Vec<(usize, Vec<Problem>)>,
    /// Mapping indexes sorted by name, for the outcome map.
    name_order: Vec<usize>,
}

fn candidates<'m>(
    mappings: &'m [MappingInput],
    validated: Vec<Validated>,
    settings: &Settings,
) -> Candidates<'m> {
    // Room for the live-only principals too, which usually are few.
    let mut principals = Principals::with_capacity(mappings.len() + mappings.len() / 8);
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(mappings.len());
    outcomes.resize_with(mappings.len(), || None);
    let mut entries: Vec<Option<Entry>> = Vec::with_capacity(mappings.len());
    entries.resize_with(mappings.len(), || None);
    let mut losers = Vec::new();
    let mut invalid = Vec::new();
    for (index, (mapping, validated)) in mappings.iter().zip(validated).enumerate() {
        match validated {
            Err(problems) => invalid.push((index, problems)),
            Ok((key, entry)) => {
                if settings.protected.contains(&key) {
                    let principal = entry.principal().to_string();
                    outcomes[index] = Some(Outcome::Protected { principal });
                } else if let Some((group, rule)) = settings.forbidden_group(entry.groups()) {
                    let group = group.to_string();
                    outcomes[index] = Some(Outcome::GroupNotAllowed { group, rule });
                } else {
                    let slot = principals.slot(key, settings);
                    let principal = &mut principals.slots[slot];
                    // A stable choice: of equals, the first in input order wins.
                    match principal.winner {
                        Some(current) if !is_older(mapping, &mappings[current]) => {
                            losers.push((slot, index));
                        }
                        previous => {
                            losers.extend(previous.map(|current| (slot, current)));
                            principal.winner = Some(index);
                        }
                    }
                    entries[index] = Some(entry);
                }
            }
        }
    }
    let mut name_order: Vec<usize> = (0..mappings.len()).collect();
    name_order.sort_by(|&a, &b| mappings[a].name.cmp(&mappings[b].name));
    Candidates {
        principals,
        outcomes,
        entries,
        losers,
        invalid,
        name_order,
    }
}

/// Whether `a` beats `b` for a principal: created earlier (a mapping with no creation time comes
/// last), then by name.
fn is_older(a: &MappingInput, b: &MappingInput) -> bool {
    (
        a.creation_timestamp.is_none(),
        &a.creation_timestamp,
        &a.name,
    ) < (
        b.creation_timestamp.is_none(),
        &b.creation_timestamp,
        &b.name,
    )
}

/// What `plan()` works from: the live data parsed, the candidates, and (when worked out ahead)
/// last time's managed set and its encoding, for a steady state to reuse.
struct Prepared<'m> {
    parsed: ParsedAwsAuth,
    candidates: Candidates<'m>,
    last_managed: Option<(ManagedSet, String)>,
}

/// Parses the live data (all but the duplicate check, see `plan_with`), and validates and groups
/// every mapping. The two are independent, so when `parallel` the helper does the mappings
/// meanwhile: all of their work when there is a large live aws-auth to parse here (and then it
/// also encodes last time's managed set, which a steady state reuses), else it validates the
/// first half while this thread validates the second. The result is the same either way.
fn prepare<'m>(
    live_data: &ConfigMapData,
    mappings: &'m [MappingInput],
    managed: &ManagedSet,
    settings: &Settings,
    parallel: bool,
) -> Prepared<'m> {
    if !parallel {
        return Prepared {
            parsed: parse_data_but_duplicates(live_data),
            candidates: candidates(mappings, validate_all(mappings), settings),
            last_managed: None,
        };
    }
    if data_size(live_data) >= PARALLEL_MIN_LIVE_BYTES {
        let ((candidates, last_managed), parsed) = side_by_side(
            true,
            || {
                let candidates = candidates(mappings, validate_all(mappings), settings);
                (candidates, (managed.clone(), managed.encode()))
            },
            || parse_data_but_duplicates(live_data),
        );
        return Prepared {
            parsed,
            candidates,
            last_managed: Some(last_managed),
        };
    }
    let (first_half, second_half) = mappings.split_at(mappings.len() / 2);
    let (mut validated, (parsed, validated_here)) = side_by_side(
        true,
        || validate_all(first_half),
        || {
            (
                parse_data_but_duplicates(live_data),
                validate_all(second_half),
            )
        },
    );
    validated.extend(validated_here);
    Prepared {
        parsed,
        candidates: candidates(mappings, validated, settings),
        last_managed: None,
    }
}

/// The outcomes as a map by name, built in name order (`from_iter` then only checks the
/// order). Every mapping has exactly one outcome; a repeated name (which neither the API
/// server nor the CLI lets through) keeps the outcome of its last mapping.
fn into_name_order(
    mappings: &[MappingInput],
    name_order: &[usize],
    mut outcomes: Vec<Option<Outcome>>,
) -> BTreeMap<String, Outcome> {
    let mut in_order = Vec::with_capacity(name_order.len());
    in_order.extend(
        name_order
            .iter()
            .filter_map(|&i| Some((mappings[i].name.clone(), outcomes[i].take()?))),
    );
    in_order.into_iter().collect()
}

/// Whether the principals written this time are exactly last time's (then the recorded set
/// is reused instead of sorting thousands of keys again).
fn same_as_last_time(live: &LiveAwsAuth, principals: &Principals, written: usize) -> bool {
    written == live.managed.0.len()
        && principals
            .slots
            .iter()
            .all(|principal| !principal.placed || principal.managed)
}

/// The principals written this time, and their annotation.
fn new_managed_set(principals: &Principals) -> (ManagedSet, String) {
    let managed = ManagedSet::new(
        principals
            .index
            .iter()
            .filter(|&(_, &slot)| principals.slots[slot].placed)
            .map(|(key, _)| key.clone())
            .collect(),
    );
    let encoded = managed.encode();
    (managed, encoded)
}

/// Runs `theirs` on the helper thread while `ours` runs on this one, if `parallel` (below some
/// size a second thread costs more than it saves). Otherwise, or when there is no helper,
/// `theirs` runs here afterwards; the results are the same either way. A panic in either is
/// passed on once both are done.
fn side_by_side<T: Send, U>(
    parallel: bool,
    theirs: impl FnOnce() -> T + Send,
    ours: impl FnOnce() -> U,
) -> (T, U) {
    let Some(pool) = helper().filter(|_| parallel) else {
        let ours = ours();
        return (theirs(), ours);
    };
    let mut result = None;
    let ours = pool.in_place_scope(|scope| {
        scope.spawn(|_| result = Some(theirs()));
        ours()
    });
    match result {
        Some(theirs) => (theirs, ours),
        // Only if `theirs` panicked, and `in_place_scope` then passes that panic on first.
        None => std::panic::resume_unwind(Box::new("the helper's work did not finish")),
    }
}

/// One long-lived helper thread for large plans. Long-lived, because a new thread per plan
/// starts with a cold heap (fresh pages, faulted in) and leaves its allocations to be freed
/// across threads. `None` if the thread cannot be started.
fn helper() -> Option<&'static rayon_core::ThreadPool> {
    static HELPER: std::sync::OnceLock<Option<rayon_core::ThreadPool>> = std::sync::OnceLock::new();
    HELPER
        .get_or_init(|| {
            rayon_core::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(|_| "plan-helper".to_string())
                .build()
                .map_err(|err| tracing::warn!(error = %err, "no helper thread for plan(); large plans run on one thread"))
                .ok()
        })
        .as_ref()
}

/// Live entries to build on: the parsed ones, with the unmanaged entries of malformed keys
/// restored from the last good revision when allowed.
fn recover<'p>(
    parsed: &'p ParsedAwsAuth,
    live: &LiveAwsAuth,
    settings: &Settings,
    notes: &mut Vec<Note>,
) -> Result<Cow<'p, AwsAuthEntries>, Blocked> {
    if parsed.malformed.is_empty() {
        return Ok(Cow::Borrowed(&parsed.entries));
    }
    let section_errors = |section: Section| -> Vec<Diagnostic> {
        parsed
            .diagnostics
            .iter()
            .filter(|d| d.key == section.key() && d.entry.is_none())
            .cloned()
            .collect()
    };
    let all_errors = || {
        parsed
            .malformed
            .iter()
            .flat_map(|s| section_errors(*s))
            .collect()
    };
    let good = match (&live.last_good, settings.recover_malformed) {
        (Some(good), true) => parse_data(good),
        _ => {
            return Err(Blocked::LiveAwsAuthMalformed {
                diagnostics: all_errors(),
            });
        }
    };
    if parsed.malformed.iter().any(|s| good.malformed.contains(s)) {
        return Err(Blocked::LiveAwsAuthMalformed {
            diagnostics: all_errors(),
        });
    }
    let mut entries = parsed.entries.clone();
    for &section in &parsed.malformed {
        let restored: Vec<Entry> = good
            .entries
            .iter()
            .map(|(_, e)| e)
            .filter(|e| e.section() == section && !live.managed.contains(&e.key()))
            .collect();
        let error = section_errors(section)
            .first()
            .map(Diagnostic::to_string)
            .unwrap_or_default();
        notes.push(Note::Recovered {
            section,
            restored: restored.len(),
            error,
        });
        for entry in restored {
            entries.push(entry);
        }
    }
    Ok(Cow::Owned(entries))
}

/// The entry of the mapping's last valid spec, if it is still what aws-auth holds for it.
fn last_valid_entry(mapping: &MappingInput, principals: &Principals) -> Option<Entry> {
    let rendered = mapping.last_rendered.as_ref()?;
    let entry = entry_from_rendered(rendered)?;
    let principal = principals.get(&entry.key())?;
    let still_live = principal.live.last().is_some_and(|live| live == entry);
    (principal.managed && still_live).then_some(entry)
}

fn entry_from_rendered(rendered: &RenderedEntry) -> Option<Entry> {
    let mapping = || crate::awsauth::ArnMapping {
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

/// Drift: aws-auth no longer holds exactly what the operator last wrote for this mapping.
/// The caller has checked the steady state first: the only live entry is the desired one.
fn detect_drift(
    mapping: &MappingInput,
    desired: &Entry,
    live: &LiveEntries,
    policy: DriftPolicy,
) -> Option<Box<Drift>> {
    // A spec change since the last write is not drift, whatever the live text says, unless the
    // live entry also fails to match the new spec.
    let last_written = mapping.last_rendered.as_ref().and_then(entry_from_rendered);
    let reference = last_written.as_ref().unwrap_or(desired);
    if live.only().is_some_and(|only| only == *reference) {
        return None;
    }
    let spec_unchanged = last_written.as_ref().is_none_or(|w| w == desired);
    Some(Box::new(Drift {
        live: live.iter().map(|e| e.to_entry()).collect(),
        desired: desired.clone(),
        repaired: policy == DriftPolicy::Repair || !spec_unchanged || live.is_empty(),
    }))
}

fn section_entries_equal(section: Section, a: &AwsAuthEntries, b: &AwsAuthEntries) -> bool {
    match section {
        Section::MapRoles => a.roles == b.roles,
        Section::MapUsers => a.users == b.users,
        Section::MapAccounts => a.accounts == b.accounts,
    }
}

/// A rewritten key's new text (`None`: the key goes), and the first check before anything is
/// written: whether re-reading that text gives back exactly the intended entries. Only
/// rewritten keys can have changed meaning; the others keep their text byte for byte.
fn render_and_check(section: Section, intended: &AwsAuthEntries) -> (Option<String>, bool) {
    let text = render_section(section, intended);
    let reads_back = match &text {
        Some(text) => {
            let (reread, malformed) = parse_section_entries(section, text);
            !malformed && section_entries_equal(section, &reread, intended)
        }
        None => section_entries_equal(section, &AwsAuthEntries::default(), intended),
    };
    (text, reads_back)
}

/// The other checks before anything is written: the data size and the annotation budget.
fn check_sizes(data: &ConfigMapData, annotation: &str, settings: &Settings) -> Option<Blocked> {
    let bytes = data_size(data);
    if bytes > settings.max_data_bytes {
        return Some(Blocked::TooLarge {
            bytes,
            limit: settings.max_data_bytes,
        });
    }
    if annotation.len() > MAX_MANAGED_ANNOTATION_BYTES {
        return Some(Blocked::AnnotationTooLarge {
            bytes: annotation.len(),
            limit: MAX_MANAGED_ANNOTATION_BYTES,
        });
    }
    None
}

fn blocked_plan(
    mappings: &[MappingInput],
    live: &LiveAwsAuth,
    live_data: ConfigMapData,
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
        data: live_data,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::awsauth::{ArnMapping, DiagnosticKind, render_data};
    use k8s_openapi::jiff::Timestamp;

    type CandidatesSummary = (
        BTreeMap<PrincipalKey, (Option<usize>, Vec<usize>)>,
        Vec<Option<Outcome>>,
        Vec<Option<Entry>>,
        Vec<(usize, Vec<Problem>)>,
        Vec<usize>,
    );

    /// What the candidates say, by principal key (slots are numbered in the order principals
    /// are first met, which is the same either way, but keys say more when a test fails).
    fn summary(candidates: &Candidates) -> CandidatesSummary {
        let principals = candidates
            .principals
            .index
            .iter()
            .map(|(key, &slot)| {
                let mut losers: Vec<usize> = candidates
                    .losers
                    .iter()
                    .filter(|&&(loser_slot, _)| loser_slot == slot)
                    .map(|&(_, index)| index)
                    .collect();
                losers.sort_unstable();
                let winner = candidates.principals.slots[slot].winner;
                (key.clone(), (winner, losers))
            })
            .collect();
        (
            principals,
            candidates.outcomes.clone(),
            candidates.entries.clone(),
            candidates.invalid.clone(),
            candidates.name_order.clone(),
        )
    }

    /// Large plans, where the helper thread takes part in every step, come out exactly as
    /// without it: a first render, a steady state, and a write with changes, drift, a takeover,
    /// a removal and principals listed twice.
    #[test]
    fn a_large_plan_is_the_same_with_and_without_the_helper() {
        let mapping = |i: usize, username: &str| MappingInput {
            name: format!("m{:04}", (i * 7919) % 2000),
            creation_timestamp: None,
            generation: Some(1),
            spec: IamIdentityMappingSpec {
                access_entry: None,
                arn: Some(format!("arn:aws:iam::111122223333:role/team/role-{i}")),
                account: None,
                username: Some(username.to_string()),
                groups: vec!["view".to_string()],
            },
            last_rendered: None,
        };
        let mut mappings: Vec<MappingInput> = (0..PARALLEL_MIN_MAPPINGS + 200)
            .map(|i| mapping(i, "dev:{{SessionName}}"))
            .collect();
        let settings = Settings::default();
        let same = |mappings: &[MappingInput], live: &LiveAwsAuth| {
            let with_helper = plan_with(mappings, live, &settings, true);
            assert_eq!(with_helper, plan_with(mappings, live, &settings, false));
            with_helper
        };

        let first = same(&mappings, &LiveAwsAuth::default());
        assert!(first.changed && first.blocked.is_none());

        // Hand-written entries, one principal listed twice, enough to parse on two threads.
        let mut data = first.data.clone();
        let roles = data.entry("mapRoles".to_string()).or_default();
        for i in 0..600 {
            roles.push_str(&format!(
                "- rolearn: arn:aws:iam::444455556666:role/hand-{}\n  username: hand\n",
                i % 599
            ));
        }
        assert!(data_size(&data) >= PARALLEL_MIN_LIVE_BYTES);
        let mut live = LiveAwsAuth {
            data: Some(data),
            managed: first.managed.clone(),
            last_good: None,
        };
        let steady = same(&mappings, &live);
        assert!(steady.rewritten.is_empty());
        assert!(
            steady
                .live_diagnostics
                .iter()
                .any(|d| d.reason == DiagnosticKind::DuplicatePrincipal)
        );

        // A changed spec, a removed mapping, a hand edit of a managed entry, a takeover.
        mappings[3] = mapping(3, "changed");
        mappings.remove(10);
        mappings.push(MappingInput {
            spec: IamIdentityMappingSpec {
                arn: Some("arn:aws:iam::444455556666:role/hand-7".to_string()),
                ..mappings[0].spec.clone()
            },
            name: "takes-over".to_string(),
            ..mappings[0].clone()
        });
        let text = live
            .data
            .as_mut()
            .and_then(|d| d.get_mut("mapRoles"))
            .expect("mapRoles");
        *text = text.replacen("dev:{{SessionName}}", "edited-by-hand", 1);
        let changed = same(&mappings, &live);
        assert!(changed.changed && changed.blocked.is_none());
        assert!(
            changed
                .notes
                .iter()
                .any(|n| matches!(n, Note::Removed { .. }))
        );
        assert!(
            changed
                .notes
                .iter()
                .any(|n| matches!(n, Note::TookOver { .. }))
        );
        assert!(
            changed
                .outcomes
                .values()
                .any(|o| matches!(o, Outcome::Rendered { drift: Some(_), .. }))
        );
    }

    /// The byte-wise split gives what `splitn(6, ':')` gives, on keys of every shape.
    #[test]
    fn split_arn_is_splitn() {
        fn by_splitn(arn: &str) -> Option<((&str, &str), &str)> {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            let [_, partition, _, _, account, resource] = parts.as_slice() else {
                return None;
            };
            let name = resource
                .strip_prefix("role/")
                .or_else(|| resource.strip_prefix("user"))?;
            Some(((*partition, *account), name))
        }
        for arn in [
            "arn:aws:iam::111122223333:role/admin",
            "arn:aws-cn:iam::111122223333:user/ops/alice",
            "arn:aws:iam::111122223333:user/a:b:c",
            "arn:aws:iam::111122223333:group/x",
            "arn:aws:iam::111122223333:role",
            "arn:aws:iam::111122223333",
            "arn:aws:iam:",
            ":::::role/x",
            "",
            "111122223333",
            "arn:é:iam::ü:role/ß",
        ] {
            assert_eq!(split_arn(arn), by_splitn(arn), "{arn}");
        }
    }

    /// However the contenders for one principal arrive, the winner is the first by (has a
    /// creation time, creation time, name), as a stable sort would put it, and every other
    /// contender is a loser.
    #[test]
    fn the_winner_does_not_depend_on_input_order() {
        let at = |second: i64| {
            Some(Time(
                Timestamp::from_second(1_700_000_000 + second).expect("a valid time"),
            ))
        };
        // Two share the oldest time (the name decides), one has none, one repeats a name.
        let contenders = [
            ("b", at(5)),
            ("a", at(5)),
            ("c", at(9)),
            ("0-no-time", None),
            ("a", at(5)),
        ];
        let arn = "arn:aws:iam::111122223333:role/shared";
        let mut order: Vec<usize> = (0..contenders.len()).collect();
        // All 120 orders, by Heap's algorithm.
        let mut counters = vec![0; order.len()];
        let mut checked = 0;
        let mut i = 0;
        loop {
            let mappings: Vec<MappingInput> = order
                .iter()
                .map(|&c| MappingInput {
                    name: contenders[c].0.to_string(),
                    creation_timestamp: contenders[c].1.clone(),
                    generation: Some(1),
                    spec: IamIdentityMappingSpec {
                        access_entry: None,
                        arn: Some(arn.to_string()),
                        account: None,
                        username: Some(format!("u{c}")),
                        groups: vec![],
                    },
                    last_rendered: None,
                })
                .collect();
            let mut by_sort: Vec<usize> = (0..mappings.len()).collect();
            by_sort.sort_by_key(|&m| {
                let m = &mappings[m];
                (
                    m.creation_timestamp.is_none(),
                    m.creation_timestamp.clone(),
                    m.name.clone(),
                )
            });
            let found = candidates(&mappings, validate_all(&mappings), &Settings::default());
            let slot = found.principals.index[&PrincipalKey::role(arn)];
            assert_eq!(
                found.principals.slots[slot].winner,
                Some(by_sort[0]),
                "{order:?}"
            );
            let mut losers: Vec<usize> = found.losers.iter().map(|&(_, l)| l).collect();
            losers.sort_unstable();
            let mut expected = by_sort[1..].to_vec();
            expected.sort_unstable();
            assert_eq!(losers, expected, "{order:?}");
            checked += 1;
            // Next permutation.
            while i < order.len() && counters[i] >= i {
                counters[i] = 0;
                i += 1;
            }
            if i == order.len() {
                break;
            }
            let swap_with = if i % 2 == 0 { 0 } else { counters[i] };
            order.swap(swap_with, i);
            counters[i] += 1;
            i = 0;
        }
        assert_eq!(checked, 120);
    }

    /// Enough mappings for a second thread: with a large live aws-auth (it does all the
    /// mapping work) and without one (it validates half), the result is what doing everything
    /// in turn gives.
    #[test]
    fn preparing_on_two_threads_gives_what_doing_it_in_turn_gives() {
        let role = |i: usize| format!("arn:aws:iam::111122223333:role/team/role-{i}");
        let mappings: Vec<MappingInput> = (0..PARALLEL_MIN_MAPPINGS + 100)
            .map(|i| MappingInput {
                // Out of name order, and a few mappings share a principal.
                name: format!("m{}", (i * 7919) % 1000),
                creation_timestamp: None,
                generation: Some(1),
                spec: IamIdentityMappingSpec {
                    access_entry: None,
                    // Every seventh one invalid, so both outcomes cross the thread.
                    arn: Some(if i % 7 == 0 {
                        format!("{}*", role(i))
                    } else {
                        role(i % 500)
                    }),
                    account: None,
                    username: Some(format!("user-{i}:{{{{SessionName}}}}")),
                    groups: vec![if i % 11 == 0 { "denied" } else { "view" }.to_string()],
                },
                last_rendered: None,
            })
            .collect();
        let mut live = AwsAuthEntries::default();
        for i in 0..2_000 {
            live.roles.push(ArnMapping {
                arn: format!("arn:aws:iam::111122223333:role/role-{i}"),
                username: format!("user-{i}"),
                groups: vec!["system:masters".to_string()],
                extra: Default::default(),
            });
        }
        let large = render_data(&live);
        assert!(data_size(&large) >= PARALLEL_MIN_LIVE_BYTES);
        let mut settings = Settings::default()
            .with_group_policy(&[], &["denied".to_string()])
            .expect("valid policy");
        settings.protect(&role(3)).expect("a valid ARN to protect");
        let managed = ManagedSet::new(
            mappings
                .iter()
                .take(3)
                .map(|m| PrincipalKey::role(m.spec.arn.as_deref().unwrap_or_default()))
                .collect(),
        );
        for data in [large, ConfigMapData::new()] {
            let prepared = prepare(&data, &mappings, &managed, &settings, true);
            let in_turn = candidates(&mappings, validate_all(&mappings), &settings);
            assert_eq!(prepared.parsed, parse_data_but_duplicates(&data));
            assert_eq!(summary(&prepared.candidates), summary(&in_turn));
            let reuses = data_size(&data) >= PARALLEL_MIN_LIVE_BYTES;
            let expected_last = reuses.then(|| (managed.clone(), managed.encode()));
            assert_eq!(prepared.last_managed, expected_last);
            let outcomes = &prepared.candidates.outcomes;
            assert_eq!(prepared.candidates.invalid.len(), 88);
            assert!(
                outcomes
                    .iter()
                    .flatten()
                    .any(|o| matches!(o, Outcome::Protected { .. }))
            );
            assert!(
                outcomes
                    .iter()
                    .flatten()
                    .any(|o| matches!(o, Outcome::GroupNotAllowed { .. }))
            );
        }
    }
}
