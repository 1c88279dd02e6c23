//! Criterion benchmarks of the pure core at the scale of a large, long-lived cluster:
//! rendering 5,000 entries, parsing a 1 MiB aws-auth with hand-written entries among generated
//! ones, and planning 5,000 mappings (steady state and first render).
//!
//! Targets: `render_5000_entries` < 5 ms, `parse_1mib_aws_auth` < 50 ms,
//! `plan_5000_mappings/*` < 75 ms. `plan()` is single-threaded: wall time is CPU time. These
//! are guards against a slow core, not what users wait for: that is measured end to end by the
//! load tool (docs/load.md).
//!
//! Data is generated deterministically (a fixed-seed SplitMix64), so runs are comparable. Setup
//! asserts what each case is meant to be (sizes, diagnostics present, steady state unchanged).
//! Run with `cargo bench --bench core`; the whole run takes well under two minutes.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

/// The allocator the operator binary ships with, so the figures match what it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aws_auth_operator::api::{IamIdentityMappingSpec, RenderedEntry};
use aws_auth_operator::awsauth::{
    AwsAuthEntries, ConfigMapData, Entry, MAX_CONFIGMAP_DATA_BYTES, data_size, parse_data,
    render_data,
};
use aws_auth_operator::plan::{LiveAwsAuth, ManagedSet, MappingInput, Outcome, Settings, plan};
use aws_auth_operator::validate::validate;
use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

// ---------------------------------------------------------------------------------------------
// Deterministic data generation
// ---------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, good enough to vary test data; no dependency needed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// SplitMix64's finaliser: a bijection on u64, so distinct inputs give distinct suffixes.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const TEAMS: &[&str] = &[
    "payments",
    "checkout",
    "search",
    "platform",
    "data",
    "ml",
    "identity",
    "growth",
    "infra",
    "mobile",
    "ledger",
    "risk",
    "support",
    "observability",
    "security",
];
const PURPOSES: &[&str] = &[
    "admin",
    "developer",
    "readonly",
    "deployer",
    "oncall",
    "operator",
    "auditor",
    "breakglass",
];
const ROLE_PATHS: &[&str] = &[
    "/",
    "/",
    "/",
    "/team/dev/",
    "/platform/",
    "/eks/access/",
    "/org/engineering/prod/",
];
const USER_PATHS: &[&str] = &[
    "/",
    "/",
    "/engineering/",
    "/engineering/platform/",
    "/contractors/acme/",
    "/break-glass/",
];
const PERMISSION_SETS: &[&str] = &[
    "AdministratorAccess",
    "PowerUserAccess",
    "ReadOnlyAccess",
    "EKSClusterAdmin",
    "EKSDeveloper",
    "ViewOnlyAccess",
    "DataScientist",
];
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-2",
];
const CLUSTERS: &[&str] = &["prod", "staging", "dev", "batch", "gpu", "edge"];
const FIRST: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe",
];
const LAST: &[&str] = &[
    "smith", "jones", "garcia", "miller", "davis", "martinez", "lopez", "wilson", "anderson",
    "thomas", "moore", "jackson", "martin", "lee", "thompson", "white",
];
const GROUPS: &[&str] = &[
    "system:masters",
    "platform:admins",
    "view",
    "edit",
    "eks-console-dashboard-full-access-group",
    "eks-console-dashboard-restricted-access-group",
    "ci:deployers",
    "security:auditors",
    "data:analysts",
    "oncall:responders",
];
const CI_REPOS: &[&str] = &[
    "api-gateway",
    "billing-service",
    "web-frontend",
    "infra-live",
    "ml-pipelines",
];

/// 12-digit account ids, distinct.
fn account_ids(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut ids = BTreeSet::new();
    while ids.len() < n {
        ids.insert(format!(
            "{:012}",
            100_000_000_000 + rng.next_u64() % 899_999_999_999
        ));
    }
    let mut ids: Vec<String> = ids.into_iter().collect();
    // Shuffle so that the order is not the sorted one.
    for i in (1..ids.len()).rev() {
        let j = rng.below(i + 1);
        ids.swap(i, j);
    }
    ids
}

fn partition(rng: &mut Rng) -> &'static str {
    match rng.below(100) {
        0..=89 => "aws",
        90..=95 => "aws-us-gov",
        _ => "aws-cn",
    }
}

/// 1 to 3 distinct groups, optionally with a team group.
fn groups(rng: &mut Rng, team: &str) -> Vec<String> {
    let n = 1 + rng.below(3);
    let mut out: Vec<String> = Vec::with_capacity(n);
    while out.len() < n {
        let group = if rng.chance(30) {
            format!(
                "team-{team}:{}",
                rng.pick(&["developers", "viewers", "admins"])
            )
        } else {
            rng.pick(GROUPS).to_string()
        };
        if !out.contains(&group) {
            out.push(group);
        }
    }
    out
}

fn role_spec(rng: &mut Rng, i: usize, accounts: &[String]) -> IamIdentityMappingSpec {
    let account = rng.pick(accounts);
    let partition = partition(rng);
    let team = *rng.pick(TEAMS);
    let (resource, username, groups) = match rng.below(100) {
        // Team roles, with and without a path.
        0..=39 => {
            let purpose = *rng.pick(PURPOSES);
            let path = *rng.pick(ROLE_PATHS);
            let username = match rng.below(4) {
                0 => format!("{team}-{purpose}:{{{{SessionName}}}}"),
                1 => "admin:{{SessionName}}".to_string(),
                2 => format!("{team}:{{{{AccountID}}}}:{{{{SessionNameRaw}}}}"),
                _ => format!("{team}-{purpose}"),
            };
            (
                format!("role{path}{team}-{purpose}-{i}"),
                username,
                groups(rng, team),
            )
        }
        // IAM Identity Center (SSO) permission-set roles.
        40..=69 => {
            let set = *rng.pick(PERMISSION_SETS);
            let region = *rng.pick(REGIONS);
            (
                format!(
                    "role/aws-reserved/sso.amazonaws.com/{region}/AWSReservedSSO_{set}_{:016x}",
                    mix(i as u64)
                ),
                format!("sso-{}:{{{{SessionName}}}}", set.to_lowercase()),
                groups(rng, team),
            )
        }
        // Self-managed node groups.
        70..=89 => {
            let cluster = *rng.pick(CLUSTERS);
            (
                format!(
                    "role/eks-nodegroup-{cluster}-NodeInstanceRole-{:012X}",
                    mix(i as u64) & 0xFFFF_FFFF_FFFF
                ),
                "system:node:{{EC2PrivateDNSName}}".to_string(),
                vec![
                    "system:bootstrappers".to_string(),
                    "system:nodes".to_string(),
                ],
            )
        }
        // CI deploy roles.
        _ => {
            let repo = *rng.pick(CI_REPOS);
            (
                format!("role/ci/github-actions/deploy-{repo}-{i}"),
                format!("ci:{repo}:{{{{SessionName}}}}"),
                vec!["ci:deployers".to_string()],
            )
        }
    };
    IamIdentityMappingSpec {
        access_entry: None,
        arn: Some(format!("arn:{partition}:iam::{account}:{resource}")),
        account: None,
        username: Some(username),
        groups,
        adopt_existing_entry: false,
        sso_permission_set: None,
    }
}

fn user_spec(rng: &mut Rng, i: usize, accounts: &[String]) -> IamIdentityMappingSpec {
    let account = rng.pick(accounts);
    let partition = partition(rng);
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let path = *rng.pick(USER_PATHS);
    let team = *rng.pick(TEAMS);
    let username = match rng.below(3) {
        0 => format!("{first}.{last}{i}"),
        // Not `iam:`: that prefix is reserved for EKS's own identities and the policy refuses it.
        1 => format!("user:{{{{AccountID}}}}:{first}.{last}{i}"),
        _ => format!("{first}.{last}{i}:{{{{AccessKeyID}}}}"),
    };
    IamIdentityMappingSpec {
        access_entry: None,
        arn: Some(format!(
            "arn:{partition}:iam::{account}:user{path}{first}.{last}{i}"
        )),
        account: None,
        username: Some(username),
        groups: groups(rng, team),
        adopt_existing_entry: false,
        sso_permission_set: None,
    }
}

fn account_spec(account: &str) -> IamIdentityMappingSpec {
    IamIdentityMappingSpec {
        access_entry: None,
        arn: None,
        account: Some(account.to_string()),
        username: None,
        groups: Vec::new(),
        adopt_existing_entry: false,
        sso_permission_set: None,
    }
}

/// `roles` role, `users` user and `accounts` account mappings, shuffled (the order they were
/// created in, not sorted). Principals are spread over 100 accounts.
fn workload(seed: u64, roles: usize, users: usize, accounts: usize) -> Vec<IamIdentityMappingSpec> {
    // The same pool whatever the counts, so that workloads of one seed share their first roles.
    const POOL: usize = 100;
    assert!(accounts <= POOL, "at most {POOL} account mappings");
    let mut rng = Rng::new(seed);
    let pool = account_ids(&mut rng, POOL);
    let mut specs = Vec::with_capacity(roles + users + accounts);
    specs.extend((0..roles).map(|i| role_spec(&mut rng, i, &pool)));
    specs.extend((0..users).map(|i| user_spec(&mut rng, i, &pool)));
    specs.extend(pool.iter().take(accounts).map(|a| account_spec(a)));
    for i in (1..specs.len()).rev() {
        let j = rng.below(i + 1);
        specs.swap(i, j);
    }
    specs
}

fn entry_of(spec: &IamIdentityMappingSpec) -> Entry {
    validate(spec).unwrap_or_else(|p| panic!("generated spec {spec:?} is invalid: {p:?}"))
}

fn entries_of(specs: &[IamIdentityMappingSpec]) -> AwsAuthEntries {
    let mut entries = AwsAuthEntries::default();
    for spec in specs {
        entries.push(entry_of(spec));
    }
    entries
}

/// Node roles EKS added by itself (managed node groups): unmanaged by the operator.
fn eks_node_roles(seed: u64, n: usize) -> Vec<Entry> {
    let mut rng = Rng::new(seed);
    let pool = account_ids(&mut rng, 5);
    (0..n)
        .map(|i| {
            let account = rng.pick(&pool);
            let cluster = *rng.pick(CLUSTERS);
            Entry::Role(aws_auth_operator::awsauth::ArnMapping {
                arn: format!(
                    "arn:aws:iam::{account}:role/eksctl-{cluster}-nodegroup-ng-{i}-NodeInstanceRole-{:010X}",
                    mix(seed ^ i as u64) & 0xFF_FFFF_FFFF
                ),
                username: "system:node:{{EC2PrivateDNSName}}".to_string(),
                groups: vec![
                    "system:bootstrappers".to_string(),
                    "system:nodes".to_string(),
                ],
                extra: Default::default(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Hand-written entries (unquoted, eksctl / console style), some with mistakes
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct HandWritten {
    roles: String,
    users: String,
    accounts: String,
}

/// `n` hand-written entries; about half carry a mistake the parser reports. `taken` holds
/// generated role ARNs, some of which are mapped again by hand (DuplicatePrincipal).
fn hand_written(seed: u64, n: usize, taken: &[String]) -> HandWritten {
    let mut rng = Rng::new(seed);
    let pool = account_ids(&mut rng, 8);
    let mut out = HandWritten::default();
    for i in 0..n {
        let account = rng.pick(&pool).clone();
        let team = *rng.pick(TEAMS);
        let r = &mut out.roles;
        let u = &mut out.users;
        // `groups:` items either indented (kubectl edit) or compact (eksctl).
        let item = if rng.chance(50) { "  - " } else { "    - " };
        let _ = match rng.below(20) {
            // Clean, unquoted node role (eksctl).
            0..=5 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:role/eksctl-{team}-nodegroup-NodeInstanceRole-{:X}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n  groups:\n{item}system:bootstrappers\n{item}system:nodes\n",
                mix(i as u64 + 7) & 0xFFFF_FFFF
            ),
            // Clean, unquoted admin role.
            6..=8 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:role/{team}-admin-hand-{i}\n  username: {team}-admin:{{{{SessionName}}}}\n  groups:\n{item}system:masters\n"
            ),
            // Role ARN with its path: never matches.
            9..=10 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:role/team/{team}/{team}-dev-hand-{i}\n  username: {team}-dev\n  groups:\n{item}team-{team}:developers\n"
            ),
            // The Norway problem: an unquoted `no` is boolean false in YAML 1.1.
            11 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:role/{team}-nordics-{i}\n  username: nordics\n  groups:\n{item}no\n{item}view\n"
            ),
            // Mis-cased field name.
            12 => write!(
                r,
                "- roleARN: arn:aws:iam::{account}:role/{team}-ops-hand-{i}\n  username: {team}-ops\n  groups:\n{item}edit\n"
            ),
            // A generated role mapped again by hand: last one wins.
            13 => write!(
                r,
                "- rolearn: {}\n  username: override-{i}\n  groups:\n{item}view\n",
                rng.pick(taken)
            ),
            // A user ARN in mapRoles.
            14 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:user/{team}-bot-{i}\n  username: {team}-bot\n  groups:\n{item}view\n"
            ),
            // Field the authenticator ignores.
            15 => write!(
                r,
                "- rolearn: arn:aws:iam::{account}:role/{team}-sso-hand-{i}\n  username: {team}-sso:{{{{SessionName}}}}\n  groups:\n{item}view\n  description: added by hand during incident {i}\n"
            ),
            // Clean, unquoted user.
            16..=17 => write!(
                u,
                "- userarn: arn:aws:iam::{account}:user/{}.{}{i}\n  username: {}.{}{i}\n  groups:\n{item}view\n{item}edit\n",
                rng.pick(FIRST),
                rng.pick(LAST),
                rng.pick(FIRST),
                rng.pick(LAST)
            ),
            // A session template on a user: only role sessions have one.
            18 => write!(
                u,
                "- userarn: arn:aws:iam::{account}:user/ops/{team}-ops-{i}\n  username: {team}-ops:{{{{SessionName}}}}\n  groups:\n{item}edit\n"
            ),
            // Unquoted account id: an integer in YAML 1.1.
            _ => writeln!(out.accounts, "- {}", rng.pick(&pool)),
        };
    }
    out
}

fn append(data: &mut ConfigMapData, key: &str, text: &str) {
    if !text.is_empty() {
        data.entry(key.to_string()).or_default().push_str(text);
    }
}

/// About 1 MiB of aws-auth data: generated (rendered) entries followed by hand-written ones.
fn one_mib_data() -> ConfigMapData {
    const TARGET: usize = MAX_CONFIGMAP_DATA_BYTES;
    // The operator's own section: 80% roles, 18% users, 2% accounts.
    let generated = |n: usize| {
        let specs = workload(7, n * 80 / 100, n * 18 / 100, (n * 2 / 100).min(100));
        render_data(&entries_of(&specs))
    };
    let taken: Vec<String> = entries_of(&workload(7, 400, 0, 0))
        .roles
        .into_iter()
        .map(|m| m.arn)
        .collect();
    let hand = hand_written(11, 600, &taken);
    let hand_bytes = hand.roles.len() + hand.users.len() + hand.accounts.len();
    // Estimate the bytes per generated entry, then size the generated part to fill the rest.
    let trial = 1000;
    let per_entry = data_size(&generated(trial)) as f64 / trial as f64;
    let n = ((TARGET - hand_bytes) as f64 / per_entry) as usize;
    let mut data = generated(n);
    append(&mut data, "mapRoles", &hand.roles);
    append(&mut data, "mapUsers", &hand.users);
    append(&mut data, "mapAccounts", &hand.accounts);
    let size = data_size(&data);
    assert!(
        size.abs_diff(TARGET) * 20 <= TARGET,
        "data is {size} bytes, not within 5% of {TARGET}"
    );
    data
}

// ---------------------------------------------------------------------------------------------
// plan() inputs
// ---------------------------------------------------------------------------------------------

fn mapping_inputs(specs: &[IamIdentityMappingSpec], with_status: bool) -> Vec<MappingInput> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let kind = match (&spec.arn, &spec.account) {
                (Some(arn), _) if arn.contains(":role/") => "role",
                (Some(_), _) => "user",
                _ => "account",
            };
            let created =
                Timestamp::from_second(1_700_000_000 + i as i64 * 37).expect("timestamp in range");
            MappingInput {
                name: format!("{kind}-{i:05}"),
                creation_timestamp: Some(Time(created)),
                generation: Some(1 + (i % 3) as i64),
                spec: spec.clone(),
                last_rendered: with_status.then(|| RenderedEntry::from(&entry_of(spec))),
                served_by_access_entry: false,
                access_entry_unknown: false,
                resolved_arn: None,
            }
        })
        .collect()
}

struct PlanCase {
    mappings: Vec<MappingInput>,
    live: LiveAwsAuth,
}

/// 5,000 mappings whose entries aws-auth already holds, plus 50 node roles EKS added.
fn steady_state() -> PlanCase {
    let specs = workload(23, 4000, 900, 100);
    let mut all = entries_of(&specs);
    let managed = ManagedSet::new(all.iter().map(|(_, e)| e.key()));
    for node in eks_node_roles(29, 50) {
        all.push(node);
    }
    PlanCase {
        mappings: mapping_inputs(&specs, true),
        live: LiveAwsAuth {
            data: Some(render_data(&all)),
            managed,
            recovery: None,
            frozen: false,
            mappings_incomplete: false,
        },
    }
}

/// The same 5,000 mappings against a cluster without aws-auth.
fn first_render() -> PlanCase {
    let specs = workload(23, 4000, 900, 100);
    PlanCase {
        mappings: mapping_inputs(&specs, false),
        live: LiveAwsAuth::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Benchmarks
// ---------------------------------------------------------------------------------------------

fn bench_render(c: &mut Criterion) {
    let entries = entries_of(&workload(3, 4000, 900, 100));
    assert_eq!(
        (
            entries.roles.len(),
            entries.users.len(),
            entries.accounts.len()
        ),
        (4000, 900, 100)
    );
    let data = render_data(&entries);
    assert_eq!(parse_data(&data).diagnostics, Vec::new());
    c.bench_function("render_5000_entries", |b| {
        b.iter(|| render_data(black_box(&entries)))
    });
}

fn bench_parse(c: &mut Criterion) {
    let data = one_mib_data();
    let parsed = parse_data(&data);
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    assert!(
        parsed.diagnostics.len() >= 100,
        "expected diagnostics from the hand-written entries, got {}",
        parsed.diagnostics.len()
    );
    c.bench_function("parse_1mib_aws_auth", |b| {
        b.iter(|| parse_data(black_box(&data)))
    });
}

fn bench_plan(c: &mut Criterion) {
    let settings = Settings::default();
    let steady = steady_state();
    let first = first_render();

    let p = plan(&steady.mappings, &steady.live, &settings);
    assert!(p.blocked.is_none(), "{:?}", p.blocked);
    assert!(!p.changed && p.rewritten.is_empty(), "steady state changed");
    assert_eq!((p.managed_entries, p.unmanaged_entries), (5000, 50));
    assert!(p.outcomes.values().all(|o| matches!(
        o,
        Outcome::Rendered {
            drift: None,
            took_over,
            ..
        } if took_over.is_empty()
    )));
    let p = plan(&first.mappings, &first.live, &settings);
    assert!(p.blocked.is_none(), "{:?}", p.blocked);
    assert!(p.changed && p.rewritten.len() == 3);
    assert_eq!(p.managed_entries, 5000);

    let mut group = c.benchmark_group("plan_5000_mappings");
    group.bench_function("steady_state", |b| {
        b.iter(|| {
            plan(
                black_box(&steady.mappings),
                black_box(&steady.live),
                &settings,
            )
        })
    });
    group.bench_function("first_render", |b| {
        b.iter(|| {
            plan(
                black_box(&first.mappings),
                black_box(&first.live),
                &settings,
            )
        })
    });
    group.finish();
}

fn config() -> Criterion {
    // Four benchmarks, ~6-8 s apiece on a 2-core machine (setup included). Benchmarks slower than
    // ~10 ms per iteration switch to flat sampling automatically and still take ~6 s.
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_render, bench_parse, bench_plan
}
criterion_main!(benches);
