//! Load test of a running aws-auth-operator on a real cluster (the current kubeconfig).
//!
//! ```sh
//! cargo run --release --example load -- --count 1000 [--prefix load-] [--idle-seconds 60] \
//!     [--timeout-seconds 120] [--concurrency 64] [--keep]
//! ```
//!
//! 1. Starts two watchers and waits until both have listed: one on kube-system/aws-auth counts
//!    its writes (resourceVersion changes), one on the run's IamIdentityMappings counts status
//!    writes (resourceVersion changes at an unchanged metadata.generation).
//! 2. Creates `--count` mappings `<prefix><i>` for `arn:aws:iam::111122223333:role/<prefix><i>`
//!    with at most `--concurrency` creates in flight; the counters start at zero here.
//! 3. Waits (at most `--timeout-seconds` from the first create) until aws-auth holds every entry
//!    (read with the operator's own parser) and every mapping is Ready for its generation, and
//!    prints the time to converge after the last create. Then waits until no write was seen for
//!    5 s (the operator's follow-up reconcile, woken by its own writes, is part of converging)
//!    and prints the writes counted so far.
//! 4. Stays idle for `--idle-seconds` and prints the writes seen meanwhile.
//! 5. Unless `--keep`, deletes the mappings and waits until aws-auth has dropped their entries.
//!
//! The last line is a `load: summary ...` line. Exit status: 0 when aws-auth converged (targets
//! missed or not), 1 when creating or converging failed or timed out, 2 when no cluster is
//! reachable or it is not ready for the test (no CRD, mappings named `<prefix>*` or aws-auth
//! entries for the run's roles left by an earlier run).
//!
//! Targets for N = 1000 on a local control plane (kind, k3d): converged in < 3 s after the last
//! create, with <= 10 aws-auth writes (a burst of changes coalesces into few compare-and-swap
//! writes) and one status write per mapping; 0 writes of either kind while idle.
//!
//! Mappings left behind by `--keep` or an interrupted run:
//! `kubectl delete iim -l app.kubernetes.io/created-by=aws-auth-operator-load`.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec};
use aws_auth_operator::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, parse_data};
use aws_auth_operator::status::{READY, condition};
use clap::Parser;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const ACCOUNT: &str = "111122223333";
const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
const CREATED_BY: &str = "aws-auth-operator-load";
const FIELD_MANAGER: &str = "aws-auth-operator-load";
/// How long connecting, and the watchers' first list, may take before the tool gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const TARGET_CONVERGE: Duration = Duration::from_secs(3);
/// No write for this long ends convergence: longer than the operator's settle (1 s) plus a
/// reconcile, so its follow-up reconcile is not counted as idle.
const QUIET: Duration = Duration::from_secs(5);
const TARGET_AWS_AUTH_WRITES: u64 = 10;

/// Load test of a running aws-auth-operator: creates many IamIdentityMappings at once and
/// measures how fast and with how many writes aws-auth converges.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct Args {
    /// Number of IamIdentityMappings to create.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Prefix of the mapping names and role names (lowercase letters, digits, `-`, `.`).
    #[arg(long, default_value = "load-")]
    prefix: String,
    /// Idle time measured after convergence (writes during it should be 0).
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Time allowed for convergence, from the first create (and again for the deletion).
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
    /// Creates (and deletes) in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Leave the mappings in the cluster.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(report) => {
            println!("{}", report.summary(&args));
            report.exit_code()
        }
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::from(2)
        }
    }
}

/// What the run measured.
#[derive(Debug, Default)]
struct Report {
    created: u32,
    create_failures: u32,
    /// From the last create to convergence; `None` when it timed out.
    converged_after: Option<Duration>,
    writes_to_converge: Counters,
    /// `None` when idle was not measured (`--idle-seconds 0` or no convergence).
    idle_writes: Option<Counters>,
    /// `Some(true)` when the entries left aws-auth after the deletion, `None` with `--keep`.
    deleted: Option<bool>,
    delete_after: Option<Duration>,
}

impl Report {
    fn converged(&self) -> bool {
        self.converged_after.is_some() && self.create_failures == 0
    }

    fn exit_code(&self) -> ExitCode {
        if self.converged() && self.deleted != Some(false) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    fn summary(&self, args: &Args) -> String {
        let mut line = format!(
            "load: summary count={} created={} converged={}",
            args.count,
            self.created,
            self.converged()
        );
        if let Some(after) = self.converged_after {
            line.push_str(&format!(
                " converge_after_last_create={:.3}s ({} < {}s)",
                after.as_secs_f64(),
                verdict(after < TARGET_CONVERGE),
                TARGET_CONVERGE.as_secs()
            ));
        }
        let writes = self.writes_to_converge;
        line.push_str(&format!(
            " aws_auth_writes={} ({} <= {TARGET_AWS_AUTH_WRITES}) status_writes={} ({} <= {})",
            writes.aws_auth,
            verdict(writes.aws_auth <= TARGET_AWS_AUTH_WRITES),
            writes.status,
            verdict(writes.status <= u64::from(self.created)),
            self.created
        ));
        if let Some(idle) = self.idle_writes {
            line.push_str(&format!(
                " idle_seconds={} idle_aws_auth_writes={} idle_status_writes={} ({} 0)",
                args.idle_seconds,
                idle.aws_auth,
                idle.status,
                verdict(idle.aws_auth == 0 && idle.status == 0)
            ));
        }
        match (self.deleted, self.delete_after) {
            (None, _) => line.push_str(" cleanup=kept"),
            (Some(true), Some(after)) => {
                line.push_str(&format!(" cleanup=deleted({:.3}s)", after.as_secs_f64()))
            }
            (Some(_), _) => line.push_str(" cleanup=incomplete"),
        }
        line
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "target met:" } else { "TARGET MISSED:" }
}

async fn run(args: &Args) -> Result<Report, String> {
    check_prefix(&args.prefix)?;
    let client = connect().await?;
    refuse_leftovers(&client, &args.prefix).await?;
    let shared = Arc::new(Shared::default());
    let expected = Arc::new(expected_role_arns(&args.prefix, args.count));
    let watchers = [
        tokio::spawn(watch_aws_auth(client.clone(), expected, shared.clone())),
        tokio::spawn(watch_mappings(
            client.clone(),
            args.prefix.clone(),
            shared.clone(),
        )),
    ];
    let outcome = measure(args, &client, &shared).await;
    watchers.iter().for_each(JoinHandle::abort);
    outcome
}

async fn measure(args: &Args, client: &Client, shared: &Shared) -> Result<Report, String> {
    let synced = wait_until(shared, Instant::now() + SYNC_TIMEOUT, |s| s.synced()).await;
    if !synced {
        return Err(format!(
            "the watches on aws-auth and IamIdentityMappings did not list within {SYNC_TIMEOUT:?}"
        ));
    }
    let n = args.count as usize;
    let present = shared.lock().entries_present;
    if present > 0 {
        return Err(format!(
            "aws-auth already holds {present} entries for the run's roles `arn:aws:iam::{ACCOUNT}:role/{}*` (an earlier run that was interrupted?): the counts would be wrong; remove them or use another --prefix",
            args.prefix
        ));
    }
    let timeout = Duration::from_secs(args.timeout_seconds);
    let mut report = Report::default();

    shared.lock().counters = Counters::default();
    let started = Instant::now();
    eprintln!(
        "load: creating {n} mappings `{}0`..`{}{}` ({} in flight)",
        args.prefix,
        args.prefix,
        n - 1,
        args.concurrency
    );
    let failures = create_all(client, args).await;
    let last_create = Instant::now();
    report.create_failures = failures.len() as u32;
    report.created = args.count - report.create_failures;
    let create_time = last_create - started;
    eprintln!(
        "load: created {} in {:.3}s ({:.0}/s)",
        report.created,
        create_time.as_secs_f64(),
        f64::from(report.created) / create_time.as_secs_f64().max(1e-9)
    );
    if let Some(first) = failures.first() {
        report.writes_to_converge = shared.lock().counters;
        eprintln!(
            "load: {} creates failed, the first: {first}",
            failures.len()
        );
    } else if wait_until(shared, started + timeout, |s| s.converged(n)).await {
        let converged = Instant::now();
        report.converged_after = Some(converged.saturating_duration_since(last_create));
        eprintln!(
            "load: converged {:.3}s after the last create ({:.3}s after the first)",
            converged
                .saturating_duration_since(last_create)
                .as_secs_f64(),
            (converged - started).as_secs_f64(),
        );
        // Writes still in flight (the follow-up reconcile) belong to converging, not to idle.
        if !wait_for_quiet(shared, converged + timeout).await {
            eprintln!(
                "load: the operator kept writing for {timeout:?} after converging; the idle count shows it"
            );
        }
        report.writes_to_converge = shared.lock().counters;
        eprintln!(
            "load: writes until quiet: aws-auth {}, status {}",
            report.writes_to_converge.aws_auth, report.writes_to_converge.status
        );
        report.idle_writes = measure_idle(shared, args.idle_seconds).await;
    } else {
        report.writes_to_converge = shared.lock().counters;
        eprintln!(
            "load: NOT converged within {timeout:?} of the first create: {} (is the operator running?)",
            shared.lock().progress(n)
        );
        explain_not_ready(client, &args.prefix).await;
    }

    if !args.keep {
        let (deleted, after) = delete_all(client, args, shared, timeout).await;
        report.deleted = Some(deleted);
        report.delete_after = after;
    }
    Ok(report)
}

/// Waits until no write has been seen for [`QUIET`], at most until `deadline`; returns whether
/// it got quiet.
async fn wait_for_quiet(shared: &Shared, deadline: Instant) -> bool {
    loop {
        let quiet_for = shared.lock().last_write.map_or(QUIET, |at| at.elapsed());
        if quiet_for >= QUIET {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep((QUIET - quiet_for).min(deadline - now)).await;
    }
}

/// Counts the writes of `seconds` of idle.
async fn measure_idle(shared: &Shared, seconds: u64) -> Option<Counters> {
    if seconds == 0 {
        return None;
    }
    eprintln!("load: idle for {seconds}s");
    let before = shared.lock().counters;
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let idle = shared.lock().counters.since(before);
    eprintln!(
        "load: during idle: aws-auth writes {}, status writes {} (target 0)",
        idle.aws_auth, idle.status
    );
    Some(idle)
}

// ---- cluster access ----------------------------------------------------------------------------

async fn connect() -> Result<Client, String> {
    let config = tokio::time::timeout(CONNECT_TIMEOUT, Config::infer())
        .await
        .map_err(|_| format!("loading the Kubernetes configuration took over {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| {
            format!(
                "no Kubernetes cluster configured (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
            )
        })?;
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).map_err(|e| format!("cluster {url}: {e}"))?;
    let version = tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| format!("cluster {url} did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cluster {url} is not reachable: {e}"))?;
    eprintln!("load: cluster {url} ({})", version.git_version);
    Ok(client)
}

/// Fails when the CRD is missing or mappings named `<prefix>*` exist. Every mapping counts, not
/// only the labelled ones: a create collides with any mapping of the same name.
async fn refuse_leftovers(client: &Client, prefix: &str) -> Result<(), String> {
    let list = tokio::time::timeout(
        CONNECT_TIMEOUT,
        mappings(client).list(&ListParams::default()),
    )
    .await
    .map_err(|_| format!("listing IamIdentityMappings took over {CONNECT_TIMEOUT:?}"))?;
    let existing = match list {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            return Err(
                "the IamIdentityMapping CRD is not installed (kubectl apply -f crds/)".into(),
            );
        }
        Err(e) => return Err(format!("listing IamIdentityMappings: {e}")),
    };
    let leftovers = existing
        .iter()
        .filter(|m| m.name_any().starts_with(prefix))
        .count();
    if leftovers > 0 {
        return Err(format!(
            "{leftovers} IamIdentityMappings named `{prefix}*` already exist (an earlier --keep run?): delete them (those of this tool: kubectl delete iim -l {}) or use another --prefix",
            created_by_selector()
        ));
    }
    Ok(())
}

async fn create_all(client: &Client, args: &Args) -> Vec<String> {
    let api = mappings(client);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    stream::iter(0..args.count)
        .map(|i| {
            let (api, params) = (&api, &params);
            let mapping = load_mapping(&args.prefix, i);
            async move {
                match api.create(params, &mapping).await {
                    // kube retries a create after a 503/504 that may have hidden a success; no
                    // mapping of this name existed before (refuse_leftovers), so it is ours.
                    Err(kube::Error::Api(status)) if status.is_already_exists() => None,
                    result => result.err(),
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .filter_map(|error| async move { error.map(|e| e.to_string()) })
        .collect()
        .await
}

/// Deletes the run's mappings and waits until aws-auth holds none of their entries.
async fn delete_all(
    client: &Client,
    args: &Args,
    shared: &Shared,
    timeout: Duration,
) -> (bool, Option<Duration>) {
    eprintln!("load: deleting the mappings");
    let before = shared.lock().counters;
    let api = mappings(client);
    let started = Instant::now();
    let failures: Vec<String> = stream::iter(0..args.count)
        .map(|i| {
            let api = &api;
            let name = format!("{}{i}", args.prefix);
            async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Err(e) if !is_not_found(&e) => Some(format!("{name}: {e}")),
                    _ => None,
                }
            }
        })
        .buffer_unordered(usize::from(args.concurrency))
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    let last_delete = Instant::now();
    if let Some(first) = failures.first() {
        eprintln!(
            "load: {} deletes failed, the first: {first}",
            failures.len()
        );
    }
    let emptied = wait_until(shared, started + timeout, State::emptied).await;
    let after = last_delete.elapsed();
    let writes = shared.lock().counters.since(before);
    if emptied {
        eprintln!(
            "load: aws-auth dropped the entries {:.3}s after the last delete (aws-auth writes {})",
            after.as_secs_f64(),
            writes.aws_auth
        );
    } else {
        eprintln!(
            "load: aws-auth still holds {} of the run's entries after {timeout:?}; remove the rest with kubectl delete iim -l {}",
            shared.lock().entries_present,
            created_by_selector()
        );
    }
    (emptied && failures.is_empty(), emptied.then_some(after))
}

/// Prints why a few mappings are not Ready.
async fn explain_not_ready(client: &Client, prefix: &str) {
    let Ok(list) = mappings(client)
        .list(&ListParams::default().labels(&created_by_selector()))
        .await
    else {
        return;
    };
    let not_ready = list
        .items
        .iter()
        .filter(|m| m.name_any().starts_with(prefix) && !is_ready(m));
    for mapping in not_ready.take(5) {
        let ready = mapping
            .status
            .as_ref()
            .and_then(|s| condition(s, READY))
            .map(|c| format!("Ready={} {}: {}", c.status, c.reason, c.message))
            .unwrap_or_else(|| "no Ready condition".to_string());
        eprintln!("load:   {}: {ready}", mapping.name_any());
    }
}

fn load_mapping(prefix: &str, i: u32) -> IamIdentityMapping {
    let name = format!("{prefix}{i}");
    let mut mapping = IamIdentityMapping::new(
        &name,
        IamIdentityMappingSpec {
            arn: Some(role_arn(prefix, i)),
            username: Some(name.clone()),
            groups: vec!["load-test".to_string()],
            ..Default::default()
        },
    );
    mapping
        .labels_mut()
        .insert(CREATED_BY_LABEL.to_string(), CREATED_BY.to_string());
    mapping
}

fn role_arn(prefix: &str, i: u32) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{prefix}{i}")
}

/// The run's role ARNs as aws-auth keys them (lowercased).
fn expected_role_arns(prefix: &str, count: u32) -> HashSet<String> {
    (0..count)
        .map(|i| role_arn(prefix, i).to_lowercase())
        .collect()
}

/// Mapping names (DNS subdomains: dot-separated labels that start and end with a letter or
/// digit) and role names must both accept `<prefix><i>`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !prefix.is_empty()
        && prefix.len() <= 50
        && format!("{prefix}0").split('.').all(|label| {
            label.starts_with(alphanumeric)
                && label.ends_with(alphanumeric)
                && label.chars().all(|c| alphanumeric(c) || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--prefix `{prefix}`: use 1 to 50 lowercase letters, digits, `-` or `.`, starting with a letter or digit, with a letter or digit on both sides of every `.`"
        ))
    }
}

fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.is_not_found())
}

fn is_ready(mapping: &IamIdentityMapping) -> bool {
    mapping.status.as_ref().is_some_and(|status| {
        status.observed_generation.is_some()
            && status.observed_generation == mapping.metadata.generation
            && condition(status, READY).is_some_and(|c| c.status == "True")
    })
}

fn created_by_selector() -> String {
    format!("{CREATED_BY_LABEL}={CREATED_BY}")
}

fn mappings(client: &Client) -> Api<IamIdentityMapping> {
    Api::all(client.clone())
}

// ---- watchers and what they observed -----------------------------------------------------------

/// Writes counted since the counters were last reset.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    aws_auth: u64,
    /// Mapping writes at an unchanged generation.
    status: u64,
    /// Mapping writes that changed the generation (the tool makes none).
    spec: u64,
}

impl Counters {
    fn since(self, earlier: Counters) -> Counters {
        Counters {
            aws_auth: self.aws_auth - earlier.aws_auth,
            status: self.status - earlier.status,
            spec: self.spec - earlier.spec,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    counters: Counters,
    aws_auth_synced: bool,
    mappings_synced: bool,
    aws_auth_version: Option<String>,
    /// Whether the current (re-)list of aws-auth has returned it.
    aws_auth_listed: bool,
    /// How many of the run's principals aws-auth holds.
    entries_present: usize,
    /// When the last counted write was seen.
    last_write: Option<Instant>,
    /// The run's mappings: name -> (resourceVersion, generation).
    mappings: HashMap<String, (String, Option<i64>)>,
    /// The mappings returned by the current (re-)list, to forget those deleted meanwhile.
    mappings_listed: HashSet<String>,
    ready: HashSet<String>,
}

impl State {
    fn synced(&self) -> bool {
        self.aws_auth_synced && self.mappings_synced
    }

    fn converged(&self, n: usize) -> bool {
        self.entries_present == n && self.ready.len() == n
    }

    fn emptied(&self) -> bool {
        self.entries_present == 0 && self.mappings.is_empty()
    }

    fn progress(&self, n: usize) -> String {
        format!(
            "aws-auth holds {}/{n} entries, {}/{n} mappings Ready",
            self.entries_present,
            self.ready.len()
        )
    }

    fn aws_auth_seen(&mut self, version: Option<String>, present: usize) {
        if self.aws_auth_synced && version != self.aws_auth_version {
            self.counters.aws_auth += 1;
            self.last_write = Some(Instant::now());
        }
        self.aws_auth_version = version;
        self.entries_present = present;
    }

    fn mapping_seen(&mut self, mapping: &IamIdentityMapping) {
        let name = mapping.name_any();
        let version = mapping.resource_version().unwrap_or_default();
        let generation = mapping.metadata.generation;
        let previous = self
            .mappings
            .insert(name.clone(), (version.clone(), generation));
        if let Some((old_version, old_generation)) = previous
            && self.mappings_synced
            && old_version != version
        {
            if old_generation == generation {
                self.counters.status += 1;
            } else {
                self.counters.spec += 1;
            }
            self.last_write = Some(Instant::now());
        }
        if is_ready(mapping) {
            self.ready.insert(name);
        } else {
            self.ready.remove(&name);
        }
    }

    /// After a (re-)list: mappings it did not return were deleted meanwhile.
    fn mappings_relisted(&mut self) {
        let listed = std::mem::take(&mut self.mappings_listed);
        self.mappings.retain(|name, _| listed.contains(name));
        self.ready.retain(|name| listed.contains(name));
        self.mappings_synced = true;
    }

    fn mapping_deleted(&mut self, name: &str) {
        self.mappings.remove(name);
        self.ready.remove(name);
    }
}

/// The watchers' shared observations, and a signal for every change.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.lock());
        self.changed.notify_one();
    }
}

/// Waits until `done` holds or `deadline` passes; returns whether it holds.
async fn wait_until(
    shared: &Shared,
    deadline: Instant,
    mut done: impl FnMut(&State) -> bool,
) -> bool {
    loop {
        let changed = shared.changed.notified();
        if done(&shared.lock()) {
            return true;
        }
        if tokio::time::timeout_at(deadline.into(), changed)
            .await
            .is_err()
        {
            return done(&shared.lock());
        }
    }
}

async fn watch_aws_auth(client: Client, expected: Arc<HashSet<String>>, shared: Arc<Shared>) {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => shared.update(|s| s.aws_auth_listed = false),
            Ok(watcher::Event::InitApply(cm) | watcher::Event::Apply(cm)) => {
                let present = entries_present(&cm, &expected);
                shared.update(|s| {
                    s.aws_auth_listed = true;
                    s.aws_auth_seen(cm.resource_version(), present);
                });
            }
            Ok(watcher::Event::Delete(_)) => shared.update(|s| s.aws_auth_seen(None, 0)),
            Ok(watcher::Event::InitDone) => shared.update(|s| {
                if !s.aws_auth_listed {
                    s.aws_auth_seen(None, 0);
                }
                s.aws_auth_synced = true;
            }),
            Err(e) => eprintln!("load: watch of aws-auth: {e}"),
        }
    }
}

async fn watch_mappings(client: Client, prefix: String, shared: Arc<Shared>) {
    let config = watcher::Config::default().labels(&created_by_selector());
    let mut events = watcher(mappings(&client), config).default_backoff().boxed();
    let ours = |m: &IamIdentityMapping| m.name_any().starts_with(&prefix);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => shared.update(|s| s.mappings_listed.clear()),
            Ok(watcher::Event::InitApply(m)) if ours(&m) => shared.update(|s| {
                s.mappings_listed.insert(m.name_any());
                s.mapping_seen(&m);
            }),
            Ok(watcher::Event::Apply(m)) if ours(&m) => shared.update(|s| s.mapping_seen(&m)),
            Ok(watcher::Event::Delete(m)) => shared.update(|s| s.mapping_deleted(&m.name_any())),
            Ok(watcher::Event::InitDone) => shared.update(State::mappings_relisted),
            Ok(_) => {}
            Err(e) => eprintln!("load: watch of IamIdentityMappings: {e}"),
        }
    }
}

/// How many of the run's role ARNs aws-auth holds, read as the authenticator reads it.
fn entries_present(cm: &ConfigMap, expected: &HashSet<String>) -> usize {
    let parsed = parse_data(&cm.data.clone().unwrap_or_default());
    parsed
        .entries
        .roles
        .iter()
        .map(|role| role.arn.to_lowercase())
        .filter(|arn| expected.contains(arn))
        .collect::<HashSet<_>>()
        .len()
}
