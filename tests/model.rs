//! A model-based randomized test of the operator against the in-memory API.
//!
//! Random sequences of steps: creates, updates (empty lists included), deletes, bursts, foreign
//! writers adding and removing entries (also between the operator's read and its
//! compare-and-swap write, as EKS does), hand edits of managed entries, invalid edits, a
//! malformed mapRoles, a deleted aws-auth, and operator restarts. After every step the operator
//! reconciles, and the test checks that:
//! - what the authenticator reads from aws-auth is exactly what a small model says: each
//!   mapping's entry (the oldest valid mapping of a principal wins; an invalid mapping keeps the
//!   entry it had), each foreign entry, the entries taken over and given back, nothing else;
//! - every status says what was written for its mapping;
//! - a reconcile with nothing new writes nothing at all.
//!
//! proptest shrinks a failure to a minimal sequence. `MODEL_CASES` sets the number of
//! sequences (default 48; CI runs the default).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_auth_operator::arn::PrincipalKey;
use aws_auth_operator::awsauth::{Entry, parse_data};
use aws_auth_operator::controller::reconcile::{Context, reconcile};
use aws_auth_operator::plan::Settings;
use aws_auth_operator::status::{CONFLICT, READY, STALLED, condition};
use aws_auth_operator::validate::validate;
use proptest::prelude::*;
use support::*;

/// Principals, with case variants and a path: index -> ARN.
const PRINCIPALS: [&str; 6] = [
    "arn:aws:iam::111122223333:role/admin",
    "arn:aws:iam::111122223333:role/team/ci",
    "arn:aws:iam::111122223333:user/Bob",
    "arn:aws:iam::111122223333:user/bob",
    "arn:aws:iam::111122223333:user/ops/alice",
    "arn:aws:iam::111122223333:role/nodes",
];
/// Usernames; `{{SessionName}}` is invalid for users.
const USERNAMES: [&str; 4] = ["u1", "u2:{{SessionName}}", "on", "x y"];
const GROUPS: [&str; 4] = ["system:masters", "view", "on", "team-{{AccountID}}"];
const NAMES: [&str; 5] = ["m0", "m1", "m2", "m3", "m4"];

#[derive(Debug, Clone)]
struct Spec {
    principal: usize,
    username: usize,
    groups: Vec<usize>,
    adopt: bool,
}

#[derive(Debug, Clone)]
enum Step {
    Create {
        name: usize,
        spec: Spec,
    },
    Update {
        name: usize,
        username: usize,
        groups: Vec<usize>,
    },
    Delete {
        name: usize,
    },
    /// Several changes, one reconcile.
    Burst(Vec<Step>),
    /// A foreign writer adds an entry for a principal the operator does not manage.
    ForeignAdd {
        principal: usize,
        username: usize,
        racing: bool,
    },
    /// A foreign writer removes its entry again.
    ForeignRemove {
        principal: usize,
    },
    /// A person edits a mapping's entry in aws-auth.
    HandEdit {
        name: usize,
    },
    /// An edit of the mapping that the operator must refuse (unknown template variable).
    InvalidEdit {
        name: usize,
    },
    /// A person breaks the indentation of mapRoles.
    BreakMapRoles,
    DeleteAwsAuth,
    Restart,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..PRINCIPALS.len(),
        0..USERNAMES.len(),
        prop::collection::vec(0..GROUPS.len(), 0..3),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(principal, username, groups, adopt)| Spec {
            principal,
            username,
            groups,
            adopt,
        })
}

fn simple_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..NAMES.len(), spec()).prop_map(|(name, spec)| Step::Create { name, spec }),
        3 => (0..NAMES.len(), 0..USERNAMES.len(), prop::collection::vec(0..GROUPS.len(), 0..3))
            .prop_map(|(name, username, groups)| Step::Update { name, username, groups }),
        2 => (0..NAMES.len()).prop_map(|name| Step::Delete { name }),
        2 => (0..PRINCIPALS.len(), 0..USERNAMES.len(), any::<bool>())
            .prop_map(|(principal, username, racing)| Step::ForeignAdd { principal, username, racing }),
        1 => (0..PRINCIPALS.len()).prop_map(|principal| Step::ForeignRemove { principal }),
        1 => (0..NAMES.len()).prop_map(|name| Step::HandEdit { name }),
        1 => (0..NAMES.len()).prop_map(|name| Step::InvalidEdit { name }),
        1 => Just(Step::BreakMapRoles),
        1 => Just(Step::DeleteAwsAuth),
        1 => Just(Step::Restart),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => simple_step(),
        1 => prop::collection::vec(
            prop_oneof![
                (0..NAMES.len(), spec()).prop_map(|(name, spec)| Step::Create { name, spec }),
                (0..NAMES.len()).prop_map(|name| Step::Delete { name }),
                (0..NAMES.len(), 0..USERNAMES.len(), prop::collection::vec(0..GROUPS.len(), 0..3))
                    .prop_map(|(name, username, groups)| Step::Update { name, username, groups }),
            ],
            2..6
        )
        .prop_map(Step::Burst),
    ]
}

/// A mapping as the model knows it.
#[derive(Debug, Clone)]
struct ModelMapping {
    spec: Spec,
    /// Created at this second (the creation time decides conflicts).
    created: i64,
    /// The entry the operator wrote (or keeps) for it; the model's `status.rendered`.
    current: Option<Entry>,
    /// An invalid spec was applied (the entry of the last valid spec is kept).
    invalid: bool,
}

/// What aws-auth must mean.
#[derive(Debug, Default)]
struct Model {
    mappings: BTreeMap<String, ModelMapping>,
    /// Entries of foreign writers (and given-back originals), by principal.
    foreign: BTreeMap<PrincipalKey, Vec<Entry>>,
    /// Principals the operator manages.
    managed: BTreeSet<PrincipalKey>,
    /// Entries taken over, to give back.
    originals: BTreeMap<PrincipalKey, Vec<Entry>>,
}

fn spec_of(spec: &Spec, invalid: bool) -> aws_auth_operator::api::IamIdentityMappingSpec {
    aws_auth_operator::api::IamIdentityMappingSpec {
        arn: Some(PRINCIPALS[spec.principal].to_string()),
        account: None,
        username: Some(if invalid {
            "x:{{Foo}}".to_string()
        } else {
            USERNAMES[spec.username].to_string()
        }),
        groups: {
            let mut groups: Vec<String> =
                spec.groups.iter().map(|g| GROUPS[*g].to_string()).collect();
            groups.dedup();
            groups.sort();
            groups.dedup();
            groups
        },
        adopt_existing_entry: spec.adopt,
        access_entry: None,
        sso_permission_set: None,
    }
}

impl Model {
    /// The entry a valid mapping renders, or None when its spec is invalid.
    fn rendered(m: &ModelMapping) -> Option<Entry> {
        validate(&spec_of(&m.spec, m.invalid)).ok()
    }

    /// What a reconcile does, in the simplest terms.
    fn reconcile(&mut self) {
        // Valid claims per principal, oldest (then by name) first.
        let mut claims: BTreeMap<PrincipalKey, Vec<(i64, String, Entry)>> = BTreeMap::new();
        for (name, m) in &self.mappings {
            if let Some(entry) = Model::rendered(m) {
                claims
                    .entry(entry.key())
                    .or_default()
                    .push((m.created, name.clone(), entry));
            }
        }
        let mut managed_after = BTreeSet::new();
        let mut current: BTreeMap<String, Option<Entry>> = BTreeMap::new();
        for (key, mut contenders) in claims.clone() {
            contenders.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            let (_, winner, entry) = contenders[0].clone();
            if !self.managed.contains(&key)
                && let Some(taken) = self.foreign.remove(&key)
            {
                if !self.mappings[&winner].spec.adopt {
                    self.originals.insert(key.clone(), taken);
                }
            } else if self.mappings[&winner].spec.adopt {
                self.originals.remove(&key);
            }
            managed_after.insert(key);
            current.insert(winner, Some(entry));
        }
        // An invalid mapping keeps the entry it had, if nobody else renders the principal.
        for (name, m) in &self.mappings {
            if current.contains_key(name) || Model::rendered(m).is_some() {
                continue;
            }
            let kept = m.current.clone().filter(|entry| {
                let key = entry.key();
                !claims.contains_key(&key)
                    && self.managed.contains(&key)
                    && !managed_after.contains(&key)
            });
            if let Some(entry) = &kept {
                managed_after.insert(entry.key());
            }
            current.insert(name.clone(), kept);
        }
        for (name, m) in self.mappings.iter_mut() {
            m.current = current.get(name).cloned().flatten();
        }
        // Managed principals nothing renders: removed, or their original given back.
        for key in self.managed.difference(&managed_after) {
            if let Some(original) = self.originals.remove(key) {
                self.foreign.insert(key.clone(), original);
            }
        }
        self.originals.retain(|key, _| managed_after.contains(key));
        self.managed = managed_after;
    }

    /// What the authenticator must read: principal -> entry.
    fn expected(&self) -> BTreeMap<PrincipalKey, Vec<Entry>> {
        let mut expected: BTreeMap<PrincipalKey, Vec<Entry>> = self.foreign.clone();
        for m in self.mappings.values() {
            if let Some(entry) = &m.current {
                expected.insert(entry.key(), vec![entry.clone()]);
            }
        }
        expected
    }
}

/// What the authenticator reads: principal -> its entries, in order.
fn actual(fake: &FakeApi) -> BTreeMap<PrincipalKey, Vec<Entry>> {
    let parsed = parse_data(&fake.aws_auth_data());
    assert!(
        parsed.malformed.is_empty(),
        "the operator left a malformed aws-auth: {:?}",
        parsed.diagnostics
    );
    let mut by_key: BTreeMap<PrincipalKey, Vec<Entry>> = BTreeMap::new();
    for (_, entry) in parsed.entries.iter() {
        by_key.entry(entry.key()).or_default().push(entry);
    }
    by_key
}

fn foreign_entry(principal: usize, username: usize) -> (String, String) {
    let arn = PRINCIPALS[principal];
    let (key, field) = if arn.contains(":user/") {
        ("mapUsers", "userarn")
    } else {
        ("mapRoles", "rolearn")
    };
    // Path-stripped as a person would (must) write a role.
    let arn = arn.replace("role/team/", "role/");
    (
        key.to_string(),
        format!(
            "- {field}: {arn}\n  username: \"foreign-{}\"\n  groups:\n  - foreign\n",
            USERNAMES[username].replace(['{', '}'], "")
        ),
    )
}

fn parse_one(key: &str, text: &str) -> Entry {
    let data = [(key.to_string(), text.to_string())].into();
    parse_data(&data)
        .entries
        .iter()
        .map(|(_, e)| e)
        .next()
        .expect("one entry")
}

struct Harness {
    fake: FakeApi,
    ctx: Context,
    model: Model,
    now: i64,
}

impl Harness {
    fn new() -> Harness {
        let fake = FakeApi::start();
        fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
        let node = parse_one("mapRoles", NODE_ROLE);
        let ctx = context(&fake, Settings::default());
        let mut model = Model::default();
        model.foreign.insert(node.key(), vec![node]);
        Harness {
            fake,
            ctx,
            model,
            now: 0,
        }
    }

    fn tick(&mut self) -> i64 {
        self.now += 100;
        self.now
    }

    /// Applies one change to the cluster and the model. Returns whether it changed anything.
    async fn apply(&mut self, step: &Step) -> bool {
        match step {
            Step::Create { name, spec } => {
                let name = NAMES[*name].to_string();
                if self.model.mappings.contains_key(&name) {
                    return false;
                }
                let created = self.tick();
                let mut mapping = role_mapping(&name, "", "", &[], created);
                mapping.spec = spec_of(spec, false);
                self.fake.add_mapping(mapping);
                self.model.mappings.insert(
                    name,
                    ModelMapping {
                        spec: spec.clone(),
                        created,
                        current: None,
                        invalid: false,
                    },
                );
                true
            }
            Step::Update {
                name,
                username,
                groups,
            } => {
                let name = NAMES[*name];
                let Some(m) = self.model.mappings.get_mut(name) else {
                    return false;
                };
                m.spec.username = *username;
                m.spec.groups = groups.clone();
                m.invalid = false;
                let mut mapping = self.fake.mapping(name);
                mapping.spec = spec_of(&m.spec, false);
                mapping.metadata.generation = Some(mapping.metadata.generation.unwrap_or(1) + 1);
                self.fake.add_mapping(mapping);
                true
            }
            Step::InvalidEdit { name } => {
                let name = NAMES[*name];
                let Some(m) = self.model.mappings.get_mut(name) else {
                    return false;
                };
                m.invalid = true;
                let mut mapping = self.fake.mapping(name);
                mapping.spec = spec_of(&m.spec, true);
                mapping.metadata.generation = Some(mapping.metadata.generation.unwrap_or(1) + 1);
                self.fake.add_mapping(mapping);
                true
            }
            Step::Delete { name } => {
                let name = NAMES[*name];
                if self.model.mappings.remove(name).is_none() {
                    return false;
                }
                self.fake.state().mappings.remove(name);
                true
            }
            Step::Burst(steps) => {
                let mut changed = false;
                for step in steps {
                    changed |= Box::pin(self.apply(step)).await;
                }
                changed
            }
            Step::ForeignAdd {
                principal,
                username,
                racing,
            } => {
                let (key, text) = foreign_entry(*principal, *username);
                let entry = parse_one(&key, &text);
                let principal_key = entry.key();
                // Foreign writers only add principals nobody manages and nobody has yet.
                if self.model.managed.contains(&principal_key)
                    || self.model.foreign.contains_key(&principal_key)
                    || self.fake.aws_auth().is_none()
                {
                    return false;
                }
                self.model.foreign.insert(principal_key, vec![entry]);
                let add = move |state: &mut support::fake_api::State| {
                    state.edit_aws_auth_data(|data| {
                        data.entry(key).or_default().push_str(&text);
                    })
                };
                if *racing {
                    // Between the operator's read and its write, when it writes; else now.
                    let fired = Arc::new(AtomicBool::new(false));
                    let flag = fired.clone();
                    let add_racing = add.clone();
                    self.fake.on_before_replace(move |state| {
                        flag.store(true, Ordering::SeqCst);
                        add_racing(state);
                    });
                    self.reconcile_only().await;
                    self.fake.clear_hooks();
                    if !fired.load(Ordering::SeqCst) {
                        add(&mut self.fake.state());
                    }
                } else {
                    add(&mut self.fake.state());
                }
                true
            }
            Step::ForeignRemove { principal } => {
                let (key, text) = foreign_entry(*principal, 0);
                let principal_key = parse_one(&key, &text).key();
                if self.model.managed.contains(&principal_key)
                    || !self.model.foreign.contains_key(&principal_key)
                {
                    return false;
                }
                let remove = self
                    .model
                    .foreign
                    .remove(&principal_key)
                    .unwrap_or_default();
                self.fake.state().edit_aws_auth_data(|data| {
                    let parsed = parse_data(data);
                    let mut entries = parsed.entries.clone();
                    entries
                        .roles
                        .retain(|r| !remove.contains(&Entry::Role(r.clone())));
                    entries
                        .users
                        .retain(|u| !remove.contains(&Entry::User(u.clone())));
                    let rendered = aws_auth_operator::awsauth::render_data(&entries);
                    for section in ["mapRoles", "mapUsers"] {
                        match rendered.get(section) {
                            Some(text) => data.insert(section.to_string(), text.clone()),
                            None => data.remove(section),
                        };
                    }
                });
                true
            }
            Step::HandEdit { name } => {
                let name = NAMES[*name];
                let Some(entry) = self
                    .model
                    .mappings
                    .get(name)
                    .and_then(|m| m.current.clone())
                else {
                    return false;
                };
                if Model::rendered(&self.model.mappings[name]).is_none() {
                    return false;
                }
                let needle = format!("\"{}\"", entry.principal());
                self.fake.state().edit_aws_auth_data(|data| {
                    for text in data.values_mut() {
                        if let Some(at) = text.find(&needle) {
                            let username = text[at..].find("username: ").map(|u| at + u + 10);
                            if let Some(u) = username {
                                text.insert_str(u, "\"edited-by-hand\"  # ");
                            }
                        }
                    }
                });
                true
            }
            Step::BreakMapRoles => {
                if self.fake.aws_auth().is_none() {
                    return false;
                }
                let mut broke = false;
                self.fake.state().edit_aws_auth_data(|data| {
                    if let Some(roles) = data.get_mut("mapRoles")
                        && let Some(at) = roles.find("\n  username:")
                    {
                        roles.insert(at + 1, ' ');
                        broke = true;
                    }
                });
                broke
            }
            Step::DeleteAwsAuth => self.fake.state().configmaps.remove("aws-auth").is_some(),
            Step::Restart => {
                self.ctx = context(&self.fake, Settings::default());
                true
            }
        }
    }

    async fn reconcile_only(&mut self) {
        let now = self.tick();
        reconcile(&self.ctx, &self.fake.mappings(), time(now))
            .await
            .expect("reconcile");
    }

    fn check(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let expected = self.model.expected();
        let actual = actual(&self.fake);
        prop_assert_eq!(&actual, &expected, "after {:?}", step);
        for (name, m) in &self.model.mappings {
            let mapping = self.fake.mapping(name);
            let status = mapping.status.clone().unwrap_or_default();
            prop_assert_eq!(
                status.observed_generation,
                mapping.metadata.generation,
                "{}: observedGeneration",
                name
            );
            let rendered = status
                .rendered
                .as_ref()
                .and_then(aws_auth_operator::plan::entry_from_rendered);
            prop_assert_eq!(&rendered, &m.current, "{}: status.rendered", name);
            let ready = condition(&status, READY).map(|c| c.status.as_str());
            let winner = Model::rendered(m).is_some() && m.current.is_some();
            prop_assert_eq!(
                ready,
                Some(if winner { "True" } else { "False" }),
                "{}",
                name
            );
            if !winner {
                prop_assert!(
                    condition(&status, STALLED).is_some(),
                    "{}: not Stalled",
                    name
                );
            }
            if Model::rendered(m).is_some() && m.current.is_none() {
                let conflict = condition(&status, CONFLICT).map(|c| c.status.as_str());
                prop_assert_eq!(conflict, Some("True"), "{}: not in Conflict", name);
            }
        }
        Ok(())
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run_steps(steps))
}

async fn run_steps(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new();
    harness.reconcile_only().await;
    harness.model.reconcile();
    harness.check(&Step::Restart)?;
    for step in steps {
        if !harness.apply(step).await {
            continue;
        }
        harness.reconcile_only().await;
        harness.model.reconcile();
        harness.check(step)?;
        // Once converged, a reconcile with nothing new writes nothing at all.
        harness.fake.clear_calls();
        harness.reconcile_only().await;
        let writes: Vec<String> = harness
            .fake
            .calls()
            .iter()
            .filter(|c| c.method != http::Method::GET)
            .map(|c| format!("{} {}", c.method, c.path))
            .collect();
        prop_assert!(
            writes.is_empty(),
            "after {:?}, an idle reconcile wrote {:?}",
            step,
            writes
        );
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_authenticator_reads_exactly_what_the_model_says(
        steps in prop::collection::vec(step(), 1..30)
    ) {
        run(&steps)?;
    }
}
