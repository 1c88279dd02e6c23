//! Load test of aws-auth-operator: how fast, with how many writes and in how much memory a burst
//! of IamIdentityMappings converges. Against the cluster of the current kubeconfig (the operator
//! already running there), or, with `--simulate`, against a simulated API server that the tool
//! starts itself, with the operator binary it spawns. docs/load.md has the commands, the
//! simulation's latency model and what it serves, and the baseline figures.
//!
//! ```sh
//! # a real cluster (kind, k3d, EKS); RSS only when the operator runs on this machine
//! cargo run --release --locked --example load -- --count 1000 [--operator-pid PID]
//! # no cluster: the simulated API server and target/release/aws-auth-operator
//! cargo build --release --locked --bin aws-auth-operator --example load
//! target/release/examples/load --simulate --count 5000 [--idle-seconds 60] \
//!     [--sim-write-latency-ms 3] [--sim-read-latency-ms 1] [--sim-ms-per-mib 10] \
//!     [--sim-max-inflight 64] [--operator-arg=--status-concurrency=64 ...]
//! ```
//!
//! 1. Starts watchers and waits until they have listed: kube-system/aws-auth (its writes are
//!    resourceVersion changes; its entries are read with the operator's own parser), the run's
//!    IamIdentityMappings (status writes are resourceVersion changes at an unchanged
//!    metadata.generation), and the other writes the operator makes: its events (core/v1,
//!    reportingComponent `aws-auth-operator`), its history ConfigMap and its leader Lease.
//!    Everything is measured from watch events, nothing by polling.
//! 2. With `--simulate`: starts the simulated API server (see `src/testserver.rs`: per-request latency,
//!    a concurrency limit, what it serves), seeds the CRD and an EKS-like aws-auth holding one node
//!    role, writes a temporary kubeconfig, spawns `--operator-bin` (default
//!    `target/release/aws-auth-operator`) with `run --metrics-addr 127.0.0.1:0` plus every
//!    `--operator-arg`, and waits until it has reconciled once and is quiet.
//! 3. Creates `--count` mappings `<prefix><i>` for `arn:aws:iam::111122223333:role/<prefix><i>`,
//!    `--concurrency` creates in flight (like one `kubectl create` of a List, but concurrent); the
//!    counters start at zero here, times are measured from the moment the last create returned.
//! 4. Waits (at most `--timeout-seconds` from the first create) until aws-auth holds every entry
//!    and every mapping is Ready with `status.observedGeneration == metadata.generation`, and
//!    reports both times. Then waits until no write was seen for 5 s (the operator's follow-up
//!    reconcile belongs to the burst) and reports the writes counted so far.
//! 5. Stays idle for `--idle-seconds` and reports the writes seen meanwhile (Lease renewals of
//!    `--leader-election` are reported apart: they are expected).
//! 6. Memory of the operator from /proc/<pid>/status: VmRSS before the burst, after it (once
//!    quiet) and after the idle period, and VmHWM (the peak) at the end of the idle period; with
//!    the CPU time it used. The tool knows the pid with `--simulate`; against a cluster, pass
//!    `--operator-pid` when the operator runs on this machine, otherwise RSS is not measured.
//! 7. Unless `--keep`, deletes the mappings and waits until aws-auth has dropped their entries.
//!    With `--simulate`, stops the operator (SIGTERM) and reports how it exited.
//!
//! The figures go to stderr as a table; the last line on stdout is one `load: summary ...` line
//! of `key=value` pairs. Exit status: 0 when aws-auth converged and every mapping became Ready
//! (targets missed or not), 1 when creating or converging failed or timed out (or the spawned
//! operator died), 2 when the environment is not ready: no cluster reachable, no CRD, mappings
//! named `<prefix>*` or aws-auth entries for the run's roles left by an earlier run, no operator
//! binary.
//!
//! Targets: every mapping Ready within 1 s of the last create at 1,000 mappings and
//! within 4 s at 5,000; at most 10 aws-auth writes per 1,000 mappings; at most one status write
//! per mapping; no write of any kind while idle; operator RSS at most 64 MiB with 5,000 mappings,
//! after the burst and at idle.
//!
//! Mappings left behind by `--keep` or an interrupted run on a cluster:
//! `kubectl delete iim -l app.kubernetes.io/created-by=aws-auth-operator-load`.

mod operator;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_auth_operator::api::{IamIdentityMapping, IamIdentityMappingSpec};
use aws_auth_operator::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, parse_data};
use aws_auth_operator::controller::CONTROLLER_NAME;
use aws_auth_operator::controller::leader::DEFAULT_LEASE_NAME;
use aws_auth_operator::status::{READY, condition};
use aws_auth_operator::store::revisions::HISTORY_CONFIGMAP;
use clap::{ArgAction, Parser};
use futures::{StreamExt, stream};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, CustomResourceExt, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Notify;

use aws_auth_operator::testserver::{LOAD_TOOL_HEADER, SimConfig, SimServer, Stats};
use operator::{Memory, Operator};

const ACCOUNT: &str = "111122223333";
const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
const CREATED_BY: &str = "aws-auth-operator-load";
const FIELD_MANAGER: &str = "aws-auth-operator-load";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The node role of an EKS managed node group, as EKS writes it into aws-auth.
const NODE_ROLE_ENTRY: &str = "- groups:\n  - system:bootstrappers\n  - system:nodes\n  rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-default-NodeInstanceRole\n  username: system:node:{{EC2PrivateDNSName}}\n";
/// How long connecting, and the watchers' first list, may take before the tool gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the spawned operator may take to start and reconcile once.
const OPERATOR_START_TIMEOUT: Duration = Duration::from_secs(60);
/// No write for this long after the spawned operator's first reconcile: it is idle.
const OPERATOR_SETTLED: Duration = Duration::from_secs(2);
/// No write for this long ends convergence: longer than the operator's settle (1 s) plus a
/// reconcile, so its follow-up reconcile is not counted as idle.
const QUIET: Duration = Duration::from_secs(5);
const TARGET_RSS_MIB: f64 = 64.0;

/// Load test of aws-auth-operator: creates many IamIdentityMappings at once and measures how fast,
/// with how many writes and in how much memory it converges.
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
    /// Create the mappings as `kubectl apply` would: with kubectl's last-applied-configuration
    /// annotation (which the operator should not keep in memory).
    #[arg(long)]
    last_applied: bool,
    /// PID of the operator when it runs on this machine (against a cluster): its RSS is then
    /// measured.
    #[arg(long, conflicts_with = "simulate")]
    operator_pid: Option<u32>,

    /// Run against a simulated API server started by the tool, with the operator binary spawned
    /// by the tool, instead of the current kubeconfig's cluster.
    #[arg(long)]
    simulate: bool,
    /// Simulated API server: latency of a GET or list, in ms.
    #[arg(long, default_value_t = 1.0, requires = "simulate")]
    sim_read_latency_ms: f64,
    /// Simulated API server: latency of a create, update, patch or delete, in ms.
    #[arg(long, default_value_t = 3.0, requires = "simulate")]
    sim_write_latency_ms: f64,
    /// Simulated API server: extra latency per MiB of request body and of response body, in ms.
    #[arg(long, default_value_t = 10.0, requires = "simulate")]
    sim_ms_per_mib: f64,
    /// Simulated API server: requests served at once (watches excepted); the others queue.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), requires = "simulate")]
    sim_max_inflight: u32,
    /// Simulated API server: keep metadata.managedFields like a real API server.
    #[arg(long, default_value_t = true, action = ArgAction::Set, requires = "simulate")]
    sim_managed_fields: bool,
    /// The operator binary to spawn with `--simulate` [default: target/release/aws-auth-operator,
    /// else the aws-auth-operator next to this tool's directory].
    #[arg(long, requires = "simulate")]
    operator_bin: Option<PathBuf>,
    /// An argument appended to the spawned operator's `run --metrics-addr 127.0.0.1:0`
    /// (repeatable; give `--metrics-addr` here to replace the default one).
    #[arg(
        long = "operator-arg",
        allow_hyphen_values = true,
        requires = "simulate"
    )]
    operator_args: Vec<String>,
    /// Where the spawned operator's log goes (default: a file in the temporary directory).
    #[arg(long, requires = "simulate")]
    operator_log: Option<PathBuf>,
}

impl Args {
    fn operator_command(&self) -> Vec<String> {
        let mut command = vec!["run".to_string()];
        if !self
            .operator_args
            .iter()
            .any(|a| a.starts_with("--metrics-addr"))
        {
            command.extend(["--metrics-addr".to_string(), "127.0.0.1:0".to_string()]);
        }
        command.extend(self.operator_args.iter().cloned());
        command
    }

    /// `--operator-bin`, or `target/release/aws-auth-operator` when it exists, or the binary in
    /// the parent of this tool's directory (`target/release/examples/load` ->
    /// `target/release/aws-auth-operator`).
    fn operator_bin(&self) -> PathBuf {
        if let Some(bin) = &self.operator_bin {
            return bin.clone();
        }
        let default = PathBuf::from("target/release/aws-auth-operator");
        if default.is_file() {
            return default;
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("aws-auth-operator")))
            .filter(|bin| bin.is_file())
            .unwrap_or(default)
    }

    fn sim_config(&self) -> SimConfig {
        let ms = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1000.0);
        SimConfig {
            read_latency: ms(self.sim_read_latency_ms),
            write_latency: ms(self.sim_write_latency_ms),
            per_mib: ms(self.sim_ms_per_mib),
            max_inflight: self.sim_max_inflight as usize,
            managed_fields: self.sim_managed_fields,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = if args.simulate {
        simulate(&args).await
    } else {
        against_cluster(&args).await
    };
    match outcome {
        Ok(report) => {
            eprint!("{}", report.table(&args));
            println!("{}", report.summary(&args));
            report.exit_code()
        }
        Err(error) => {
            eprintln!("load: {error}");
            ExitCode::from(2)
        }
    }
}

// ---- the report --------------------------------------------------------------------------------

/// Writes counted since the counters were last reset.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    aws_auth: u64,
    /// Mapping writes at an unchanged generation.
    status: u64,
    /// Mapping writes that changed the generation (the tool makes none).
    spec: u64,
    /// Events created or updated by the operator.
    events: u64,
    history: u64,
    leases: u64,
}

impl Counters {
    fn since(self, earlier: Counters) -> Counters {
        Counters {
            aws_auth: self.aws_auth - earlier.aws_auth,
            status: self.status - earlier.status,
            spec: self.spec - earlier.spec,
            events: self.events - earlier.events,
            history: self.history - earlier.history,
            leases: self.leases - earlier.leases,
        }
    }

    /// Writes other than aws-auth and status (Lease renewals excepted).
    fn other(self) -> u64 {
        self.spec + self.events + self.history
    }

    /// Every write but Lease renewals.
    fn all_but_leases(self) -> u64 {
        self.aws_auth + self.status + self.other()
    }
}

/// The operator's memory and CPU at one moment.
#[derive(Debug, Clone, Copy)]
struct Sample {
    memory: Memory,
    cpu: Option<Duration>,
}

fn sample(pid: Option<u32>) -> Option<Sample> {
    let pid = pid?;
    match operator::memory(pid) {
        Ok(memory) => Some(Sample {
            memory,
            cpu: operator::cpu_time(pid),
        }),
        Err(error) => {
            eprintln!("load: operator memory: {error}");
            None
        }
    }
}

/// What the run measured.
#[derive(Debug, Default)]
struct Report {
    created: u32,
    create_failures: u32,
    create_time: Duration,
    /// From the last create to the first moment aws-auth held every entry (negative when it
    /// did before the last create returned); `None` when it never did.
    aws_auth_complete_after: Option<f64>,
    /// From the last create to the first moment every mapping was Ready for its generation.
    all_ready_after: Option<f64>,
    converged: bool,
    /// Writes from the first create until quiet.
    writes_to_converge: Counters,
    /// `None` when idle was not measured (`--idle-seconds 0` or no convergence).
    idle_writes: Option<Counters>,
    /// Entries of aws-auth not of this run (e.g. the node role), before and after.
    foreign_entries: (usize, usize),
    /// `Some(true)` when the entries left aws-auth after the deletion, `None` with `--keep`.
    deleted: Option<bool>,
    delete_after: Option<Duration>,
    delete_writes: Option<Counters>,
    /// Why memory was not measured, when it was not.
    memory_unmeasured: Option<String>,
    before: Option<Sample>,
    after_burst: Option<Sample>,
    after_idle: Option<Sample>,
    /// The simulated API server's request counts during the burst and during idle.
    api_burst: Option<Stats>,
    api_idle: Option<Stats>,
    /// How the spawned operator ended; `Some` with `--simulate`.
    operator_exit: Option<String>,
    operator_died: bool,
    operator_log: Option<PathBuf>,
    /// The environment (API server, operator command).
    environment: String,
    /// CPU time of this process (the simulated API server and the watchers) during the burst.
    tool_cpu_burst: Option<Duration>,
    /// /proc/loadavg before the burst and once quiet: the machine may be shared.
    load_average: (String, String),
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ready_target(n: u32) -> Option<Duration> {
    match n {
        0..=1000 => Some(Duration::from_secs(1)),
        1001..=5000 => Some(Duration::from_secs(4)),
        _ => None,
    }
}

fn aws_auth_write_target(n: u32) -> u64 {
    u64::from(n.div_ceil(1000)) * 10
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

impl Report {
    fn exit_code(&self) -> ExitCode {
        if self.converged
            && self.create_failures == 0
            && self.deleted != Some(false)
            && !self.operator_died
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }

    /// Targets and whether they were met; the RSS target only when measured and at most 5,000.
    fn targets(&self, n: u32) -> Vec<(String, bool)> {
        let mut targets = Vec::new();
        if let (Some(target), Some(after)) = (ready_target(n), self.all_ready_after) {
            targets.push((
                format!("all Ready < {}s", target.as_secs()),
                after < target.as_secs_f64(),
            ));
        }
        let writes = self.writes_to_converge;
        targets.push((
            format!("aws-auth writes <= {}", aws_auth_write_target(n)),
            writes.aws_auth <= aws_auth_write_target(n),
        ));
        targets.push((
            format!("status writes <= {}", self.created),
            writes.status <= u64::from(self.created),
        ));
        if let Some(idle) = self.idle_writes {
            targets.push(("idle writes = 0".into(), idle.all_but_leases() == 0));
        }
        if n <= 5000 {
            for (what, sample) in [("after burst", self.after_burst), ("idle", self.after_idle)] {
                if let Some(sample) = sample {
                    let rss = mib(sample.memory.rss_kib);
                    targets.push((format!("RSS {what} <= 64 MiB"), rss <= TARGET_RSS_MIB));
                }
            }
        }
        targets
    }

    fn table(&self, args: &Args) -> String {
        let n = args.count;
        let mut t = String::new();
        let mut row = |label: &str, value: String| {
            t.push_str(&format!("  {label:<36} {value}\n"));
        };
        let secs = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.3} s"));
        let target_note = |met: bool, what: String| format!("   (target {what}: {})", verdict(met));
        let mut out = format!("\nload: results, {}\n", self.environment);
        row(
            "mappings created",
            format!(
                "{} of {n} in {:.3} s ({:.0}/s, {} in flight){}",
                self.created,
                self.create_time.as_secs_f64(),
                f64::from(self.created) / self.create_time.as_secs_f64().max(1e-9),
                args.concurrency,
                if self.create_failures > 0 {
                    format!(", {} FAILED", self.create_failures)
                } else {
                    String::new()
                }
            ),
        );
        row(
            "aws-auth complete after last create",
            secs(self.aws_auth_complete_after),
        );
        let mut ready = secs(self.all_ready_after);
        if let (Some(target), Some(after)) = (ready_target(n), self.all_ready_after) {
            ready.push_str(&target_note(
                after < target.as_secs_f64(),
                format!("< {} s", target.as_secs()),
            ));
        }
        row("all Ready after last create", ready);
        let w = self.writes_to_converge;
        row(
            "aws-auth writes (burst)",
            format!(
                "{}{}",
                w.aws_auth,
                target_note(
                    w.aws_auth <= aws_auth_write_target(n),
                    format!("<= {}", aws_auth_write_target(n))
                )
            ),
        );
        row(
            "status writes (burst)",
            format!(
                "{}{}",
                w.status,
                target_note(
                    w.status <= u64::from(self.created),
                    format!("<= {}", self.created)
                )
            ),
        );
        row(
            "other writes (burst)",
            format!(
                "{} (events {}, history {}, spec {}); Lease {}",
                w.other(),
                w.events,
                w.history,
                w.spec,
                w.leases
            ),
        );
        match self.idle_writes {
            Some(i) => row(
                &format!("writes while idle {} s", args.idle_seconds),
                format!(
                    "{} (aws-auth {}, status {}, events {}, history {}, spec {}); Lease {}{}",
                    i.all_but_leases(),
                    i.aws_auth,
                    i.status,
                    i.events,
                    i.history,
                    i.spec,
                    i.leases,
                    target_note(i.all_but_leases() == 0, "0".into())
                ),
            ),
            None => row("writes while idle", "not measured".into()),
        }
        match (
            &self.memory_unmeasured,
            self.after_idle.or(self.after_burst),
        ) {
            (Some(why), _) => row("operator RSS", format!("not measured: {why}")),
            (None, last) => {
                let rss = |s: Option<Sample>| {
                    s.map_or("-".to_string(), |s| {
                        format!("{:.1} MiB", mib(s.memory.rss_kib))
                    })
                };
                let rss_target = |s: Option<Sample>| match s {
                    Some(s) if n <= 5000 => {
                        target_note(mib(s.memory.rss_kib) <= TARGET_RSS_MIB, "<= 64 MiB".into())
                    }
                    _ => String::new(),
                };
                row(
                    "operator peak RSS (VmHWM)",
                    last.map_or("-".into(), |s| format!("{:.1} MiB", mib(s.memory.hwm_kib))),
                );
                row("operator RSS before the burst", rss(self.before));
                row(
                    "operator RSS after the burst",
                    format!("{}{}", rss(self.after_burst), rss_target(self.after_burst)),
                );
                row(
                    "operator RSS after idle",
                    format!("{}{}", rss(self.after_idle), rss_target(self.after_idle)),
                );
                let cpu = |a: Option<Sample>, b: Option<Sample>| match (
                    a.and_then(|s| s.cpu),
                    b.and_then(|s| s.cpu),
                ) {
                    (Some(a), Some(b)) => format!("{:.2} s", b.saturating_sub(a).as_secs_f64()),
                    _ => "-".into(),
                };
                row(
                    "operator CPU (burst; idle)",
                    format!(
                        "{}; {}",
                        cpu(self.before, self.after_burst),
                        cpu(self.after_burst, self.after_idle)
                    ),
                );
            }
        }
        row(
            "aws-auth entries not of this run",
            format!(
                "{} before, {} after the burst{}",
                self.foreign_entries.0,
                self.foreign_entries.1,
                if self.foreign_entries.0 == self.foreign_entries.1 {
                    ""
                } else {
                    "   (CHANGED)"
                }
            ),
        );
        match (self.deleted, self.delete_after) {
            (None, _) => row("cleanup", "kept (--keep)".into()),
            (Some(true), Some(after)) => row(
                "cleanup",
                format!(
                    "aws-auth dropped the entries {:.3} s after the last delete ({} aws-auth writes)",
                    after.as_secs_f64(),
                    self.delete_writes.map_or(0, |w| w.aws_auth)
                ),
            ),
            (Some(_), _) => row("cleanup", "INCOMPLETE".into()),
        }
        if let Some(cpu) = self.tool_cpu_burst {
            row(
                "load tool CPU (burst)",
                format!(
                    "{:.2} s (its watchers{})",
                    cpu.as_secs_f64(),
                    if args.simulate {
                        " and the simulated API server"
                    } else {
                        ""
                    }
                ),
            );
        }
        row(
            "load average (before; quiet)",
            format!("{}; {}", self.load_average.0, self.load_average.1),
        );
        if let Some(exit) = &self.operator_exit {
            row("operator exit", exit.clone());
        }
        if let Some(log) = &self.operator_log {
            row("operator log", log.display().to_string());
        }
        out.push_str(&t);
        for (title, stats) in [("burst", &self.api_burst), ("idle", &self.api_idle)] {
            if let Some(stats) = stats {
                out.push_str(&api_table(title, stats));
            }
        }
        out
    }

    fn summary(&self, args: &Args) -> String {
        let opt = |v: Option<f64>| v.map_or("never".to_string(), |s| format!("{s:.3}s"));
        let w = self.writes_to_converge;
        let mut line = format!(
            "load: summary mode={} count={} created={} converged={} create_seconds={:.3} aws_auth_complete_after={} all_ready_after={} aws_auth_writes={} status_writes={} other_writes={} event_writes={} history_writes={} spec_writes={} lease_writes={}",
            if args.simulate {
                "simulated"
            } else {
                "cluster"
            },
            args.count,
            self.created,
            self.converged,
            self.create_time.as_secs_f64(),
            opt(self.aws_auth_complete_after),
            opt(self.all_ready_after),
            w.aws_auth,
            w.status,
            w.other(),
            w.events,
            w.history,
            w.spec,
            w.leases,
        );
        if let Some(idle) = self.idle_writes {
            line.push_str(&format!(
                " idle_seconds={} idle_writes={} idle_aws_auth_writes={} idle_status_writes={} idle_other_writes={} idle_lease_writes={}",
                args.idle_seconds,
                idle.all_but_leases(),
                idle.aws_auth,
                idle.status,
                idle.other(),
                idle.leases
            ));
        }
        match (
            &self.memory_unmeasured,
            self.after_idle.or(self.after_burst),
        ) {
            (Some(_), _) | (None, None) => line.push_str(" rss=not_measured"),
            (None, Some(last)) => {
                line.push_str(&format!(" rss_peak_mib={:.1}", mib(last.memory.hwm_kib)));
                for (key, sample) in [
                    ("rss_before_mib", self.before),
                    ("rss_after_burst_mib", self.after_burst),
                    ("rss_idle_mib", self.after_idle),
                ] {
                    if let Some(sample) = sample {
                        line.push_str(&format!(" {key}={:.1}", mib(sample.memory.rss_kib)));
                    }
                }
                if let (Some(a), Some(b)) = (
                    self.before.and_then(|s| s.cpu),
                    self.after_burst.and_then(|s| s.cpu),
                ) {
                    line.push_str(&format!(
                        " operator_cpu_burst_seconds={:.2}",
                        b.saturating_sub(a).as_secs_f64()
                    ));
                }
            }
        }
        if args.simulate {
            line.push_str(&format!(
                " sim_read_ms={} sim_write_ms={} sim_ms_per_mib={} sim_max_inflight={} sim_managed_fields={}",
                args.sim_read_latency_ms,
                args.sim_write_latency_ms,
                args.sim_ms_per_mib,
                args.sim_max_inflight,
                args.sim_managed_fields
            ));
        }
        if let Some(stats) = &self.api_burst {
            let (requests, writes, noop, errors) = stats.operator_totals();
            line.push_str(&format!(
                " api_requests={requests} api_writes={writes} api_noop_writes={noop} api_errors={errors}"
            ));
        }
        match (self.deleted, self.delete_after) {
            (None, _) => line.push_str(" cleanup=kept"),
            (Some(true), Some(after)) => {
                line.push_str(&format!(" cleanup=deleted({:.3}s)", after.as_secs_f64()))
            }
            (Some(_), _) => line.push_str(" cleanup=incomplete"),
        }
        if self.operator_died {
            line.push_str(" operator=died");
        }
        let missed: Vec<String> = self
            .targets(args.count)
            .into_iter()
            .filter(|(_, met)| !met)
            .map(|(what, _)| what.replace(' ', "_"))
            .collect();
        if missed.is_empty() {
            line.push_str(" targets=met");
        } else {
            line.push_str(&format!(" targets_missed={}", missed.join(",")));
        }
        line
    }
}

fn api_table(title: &str, stats: &Stats) -> String {
    let (requests, writes, noop, errors) = stats.operator_totals();
    let mut out = format!(
        "  operator's API requests ({title}): {requests}, of which writes {writes} (no-op {noop}), errors {errors}; {} requests (of all clients) waited for a slot, at most {} at once, {:.2} s in all\n",
        stats.requests_queued,
        stats.max_queued,
        stats.queued_for.as_secs_f64()
    );
    for (key, (operator, _)) in &stats.by_request {
        if operator.requests == 0 {
            continue;
        }
        let mut notes = Vec::new();
        if operator.noop > 0 {
            notes.push(format!("no-op {}", operator.noop));
        }
        for (code, count) in &operator.errors {
            notes.push(format!("{code}: {count}"));
        }
        let average = if key.starts_with("watch ") {
            String::new()
        } else {
            format!(
                "  {:>6.2} ms each, at most {:>3} at once",
                operator.time.as_secs_f64() * 1000.0 / operator.requests as f64,
                operator.max_in_flight
            )
        };
        out.push_str(&format!(
            "    {key:<44} {:>7}{average}{}\n",
            operator.requests,
            if notes.is_empty() {
                String::new()
            } else {
                format!("  ({})", notes.join(", "))
            }
        ));
    }
    out
}

// ---- the two modes -----------------------------------------------------------------------------

async fn against_cluster(args: &Args) -> Result<Report, String> {
    check_prefix(&args.prefix)?;
    let (client, url) = connect(None).await?;
    refuse_leftovers(&client, &args.prefix).await?;
    let (memory_pid, memory_unmeasured) = match args.operator_pid {
        Some(pid) => {
            operator::memory(pid).map_err(|e| format!("--operator-pid {pid}: {e}"))?;
            (Some(pid), None)
        }
        None => (
            None,
            Some("the operator runs in the cluster (give --operator-pid when it runs here)".into()),
        ),
    };
    let shared = Arc::new(Shared::default());
    let watchers = start_watchers(&client, args, &shared);
    let run = Run {
        args,
        client: &client,
        shared: &shared,
        pid: memory_pid,
        sim: None,
    };
    let outcome = run.measure().await;
    watchers.iter().for_each(|w| w.abort());
    let mut report = outcome?;
    report.memory_unmeasured = memory_unmeasured;
    report.environment = format!("cluster {url} (the current kubeconfig's)");
    Ok(report)
}

async fn simulate(args: &Args) -> Result<Report, String> {
    check_prefix(&args.prefix)?;
    let operator_bin = args.operator_bin();
    if !operator_bin.is_file() {
        return Err(format!(
            "operator binary {} not found: build it first (cargo build --release --locked --bin aws-auth-operator) or pass --operator-bin",
            operator_bin.display()
        ));
    }
    let sim = SimServer::start(args.sim_config())
        .map_err(|e| format!("starting the simulated API server: {e}"))?;
    seed(&sim)?;
    let dir = tempfile::Builder::new()
        .prefix("aws-auth-operator-load-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)
        .map_err(|e| format!("writing {}: {e}", kubeconfig.display()))?;
    let (client, _) = connect(Some(&kubeconfig)).await?;
    let shared = Arc::new(Shared::default());
    let watchers = start_watchers(&client, args, &shared);
    let synced = wait_until(&shared, Instant::now() + SYNC_TIMEOUT, |s| {
        s.synced() && s.optional_synced()
    })
    .await;
    if !synced {
        return Err("the watches of the simulated API server did not list".into());
    }

    let log = args.operator_log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "aws-auth-operator-load-{}-operator.log",
            std::process::id()
        ))
    });
    let command = args.operator_command();
    let mut operator = Operator::spawn(&operator_bin, &command, &kubeconfig, log)?;
    let environment = format!(
        "simulated API server {} (read {} ms, write {} ms, +{} ms/MiB, {} in flight, managedFields {}); operator {} {}",
        sim.url(),
        args.sim_read_latency_ms,
        args.sim_write_latency_ms,
        args.sim_ms_per_mib,
        args.sim_max_inflight,
        if args.sim_managed_fields { "on" } else { "off" },
        operator_bin.display(),
        command.join(" ")
    );
    eprintln!("load: {environment}");
    eprintln!(
        "load: operator pid {}, log {}",
        operator.pid(),
        operator.log.display()
    );
    if let Err(error) = wait_for_operator(&sim, &shared, &mut operator).await {
        let tail = operator.log_tail(20);
        operator.stop(Duration::from_secs(5)).await;
        return Err(format!(
            "{error}\n--- last lines of {} ---\n{tail}",
            operator.log.display()
        ));
    }
    let pid = operator.pid();
    let operator = Arc::new(Mutex::new(operator));
    let watchdog = tokio::spawn(watch_operator(operator.clone(), shared.clone()));
    let run = Run {
        args,
        client: &client,
        shared: &shared,
        pid: Some(pid),
        sim: Some(&sim),
    };
    let outcome = run.measure().await;
    watchdog.abort();
    let _ = watchdog.await;
    drop(watchers);
    let mut operator = Arc::try_unwrap(operator)
        .map_err(|_| "the operator process is still shared".to_string())?
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let died = operator.exited();
    let exit = operator.stop(Duration::from_secs(10)).await;
    let mut report = outcome?;
    if let Some(status) = died.filter(|_| shared.lock().operator_died) {
        report.operator_died = true;
        report.operator_exit = Some(format!("DIED during the run: {status}"));
        eprintln!(
            "load: the operator died; last lines of its log:\n{}",
            operator.log_tail(20)
        );
    } else {
        report.operator_exit = Some(exit);
    }
    report.operator_log = Some(operator.log.clone());
    report.environment = environment;
    Ok(report)
}

/// Marks the run when the spawned operator exits, so that nothing waits for it in vain.
async fn watch_operator(operator: Arc<Mutex<Operator>>, shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let exited = operator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .exited();
        if let Some(status) = exited {
            eprintln!("load: the operator exited: {status}");
            shared.update(|s| s.operator_died = true);
            return;
        }
    }
}

/// The CRD (Established) and an EKS-like aws-auth holding one node role.
fn seed(sim: &SimServer) -> Result<(), String> {
    let crd = serde_json::to_value(IamIdentityMapping::crd()).map_err(|e| e.to_string())?;
    sim.seed_crd(crd)?;
    sim.seed(
        "configmaps",
        CONFIGMAP_NAMESPACE,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE },
            "data": { "mapRoles": NODE_ROLE_ENTRY }
        }),
    )
}

/// Waits until the spawned operator watches, has read aws-auth once (its first reconcile), and
/// nothing has been written for [`OPERATOR_SETTLED`].
async fn wait_for_operator(
    sim: &SimServer,
    shared: &Shared,
    operator: &mut Operator,
) -> Result<(), String> {
    let deadline = Instant::now() + OPERATOR_START_TIMEOUT;
    let mut last_rv = sim.stats().resource_version;
    let mut still_since = Instant::now();
    loop {
        if let Some(status) = operator.exited() {
            return Err(format!("the operator exited at start: {status}"));
        }
        let stats = sim.stats();
        let reconciled = stats.operator("get configmaps/aws-auth").requests > 0
            && stats.operator("watch iamidentitymappings").requests > 0;
        if stats.resource_version != last_rv {
            last_rv = stats.resource_version;
            still_since = Instant::now();
        }
        if reconciled && still_since.elapsed() >= OPERATOR_SETTLED {
            let s = shared.lock();
            eprintln!(
                "load: the operator is up and idle (start-up writes: aws-auth {}, history {}, events {})",
                s.counters.aws_auth, s.counters.history, s.counters.events
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the operator did not reconcile and settle within {OPERATOR_START_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the measured flow -------------------------------------------------------------------------

struct Run<'a> {
    args: &'a Args,
    client: &'a Client,
    shared: &'a Shared,
    /// The operator's pid, when its memory can be read.
    pid: Option<u32>,
    sim: Option<&'a SimServer>,
}

impl Run<'_> {
    fn operator_alive(&self) -> bool {
        !self.shared.lock().operator_died
    }

    fn api_stats(&self) -> Option<Stats> {
        self.sim.map(SimServer::stats)
    }

    async fn measure(&self) -> Result<Report, String> {
        let (args, shared) = (self.args, self.shared);
        let synced = wait_until(shared, Instant::now() + SYNC_TIMEOUT, |s| s.synced()).await;
        if !synced {
            return Err(format!(
                "the watches on aws-auth and IamIdentityMappings did not list within {SYNC_TIMEOUT:?}"
            ));
        }
        {
            let s = shared.lock();
            let missing = s.optional_unsynced();
            if !missing.is_empty() {
                eprintln!(
                    "load: not counted (their watch did not list): {}",
                    missing.join(", ")
                );
            }
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
        let mut report = Report {
            before: sample(self.pid),
            ..Report::default()
        };
        report.foreign_entries.0 = shared.lock().foreign_entries;
        if let Some(sim) = self.sim {
            sim.reset_peaks();
        }
        let api_before = self.api_stats();
        let tool_cpu_before = operator::cpu_time(std::process::id());
        report.load_average.0 = load_average();

        shared.update(|s| {
            s.counters = Counters::default();
            s.target = Some(n);
            s.aws_auth_complete_at = None;
            s.all_ready_at = None;
        });
        let started = Instant::now();
        eprintln!(
            "load: creating {n} mappings `{}0`..`{}{}` ({} in flight)",
            args.prefix,
            args.prefix,
            n - 1,
            args.concurrency
        );
        let failures = create_all(self.client, args).await;
        let last_create = Instant::now();
        report.create_failures = failures.len() as u32;
        report.created = args.count - report.create_failures;
        report.create_time = last_create - started;
        eprintln!(
            "load: created {} in {:.3}s ({:.0}/s)",
            report.created,
            report.create_time.as_secs_f64(),
            f64::from(report.created) / report.create_time.as_secs_f64().max(1e-9)
        );
        let converged = if let Some(first) = failures.first() {
            eprintln!(
                "load: {} creates failed, the first: {first}",
                failures.len()
            );
            false
        } else {
            wait_until(shared, started + timeout, |s| {
                s.converged(n) || s.operator_died
            })
            .await;
            let s = shared.lock();
            let converged = s.converged(n);
            let since_last = |at: Option<Instant>| {
                at.map(|at| match at.checked_duration_since(last_create) {
                    Some(after) => after.as_secs_f64(),
                    None => -(last_create - at).as_secs_f64(),
                })
            };
            report.aws_auth_complete_after = since_last(s.aws_auth_complete_at);
            report.all_ready_after = since_last(s.all_ready_at);
            if !converged {
                eprintln!(
                    "load: NOT converged within {timeout:?} of the first create: {}{}",
                    s.progress(n),
                    if self.operator_alive() {
                        " (is the operator running?)"
                    } else {
                        " (the operator died)"
                    }
                );
            }
            converged
        };
        report.converged = converged;
        if converged {
            eprintln!(
                "load: aws-auth complete {:.3}s and all Ready {:.3}s after the last create",
                report.aws_auth_complete_after.unwrap_or_default(),
                report.all_ready_after.unwrap_or_default()
            );
            // Writes still in flight (the follow-up reconcile) belong to the burst, not to idle.
            if !wait_for_quiet(shared, Instant::now() + timeout).await {
                eprintln!(
                    "load: the operator kept writing for {timeout:?} after converging; the idle count shows it"
                );
            }
            report.writes_to_converge = shared.lock().counters;
            report.foreign_entries.1 = shared.lock().foreign_entries;
            report.after_burst = sample(self.pid);
            report.load_average.1 = load_average();
            report.tool_cpu_burst = operator::cpu_time(std::process::id())
                .zip(tool_cpu_before)
                .map(|(now, before)| now.saturating_sub(before));
            let api_quiet = self.api_stats();
            if let (Some(before), Some(now)) = (&api_before, &api_quiet) {
                report.api_burst = Some(now.since(before));
            }
            let w = report.writes_to_converge;
            eprintln!(
                "load: writes until quiet: aws-auth {}, status {}, events {}, history {}",
                w.aws_auth, w.status, w.events, w.history
            );
            if let Some(sim) = self.sim {
                sim.reset_peaks();
            }
            report.idle_writes = self.measure_idle().await;
            if report.idle_writes.is_some() {
                report.after_idle = sample(self.pid);
                if let (Some(before), Some(now)) = (&api_quiet, &self.api_stats()) {
                    report.api_idle = Some(now.since(before));
                }
            }
        } else {
            report.writes_to_converge = shared.lock().counters;
            report.foreign_entries.1 = shared.lock().foreign_entries;
            report.after_burst = sample(self.pid);
            if let (Some(before), Some(now)) = (&api_before, &self.api_stats()) {
                report.api_burst = Some(now.since(before));
            }
            explain_not_ready(self.client, &args.prefix).await;
        }

        if !args.keep {
            let before = shared.lock().counters;
            let (deleted, after) = delete_all(self.client, args, shared, timeout).await;
            report.deleted = Some(deleted);
            report.delete_after = after;
            report.delete_writes = Some(shared.lock().counters.since(before));
        }
        Ok(report)
    }

    /// Counts the writes of `--idle-seconds` of idle.
    async fn measure_idle(&self) -> Option<Counters> {
        let seconds = self.args.idle_seconds;
        if seconds == 0 {
            return None;
        }
        eprintln!("load: idle for {seconds}s");
        let before = self.shared.lock().counters;
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let idle = self.shared.lock().counters.since(before);
        eprintln!(
            "load: during idle: aws-auth writes {}, status writes {}, other writes {}, Lease writes {} (target 0 but Lease)",
            idle.aws_auth,
            idle.status,
            idle.other(),
            idle.leases
        );
        Some(idle)
    }
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

// ---- cluster access ----------------------------------------------------------------------------

/// A client of the current kubeconfig's cluster, or of `kubeconfig`; its requests carry the
/// header that tells the simulated API server they are the tool's.
async fn connect(kubeconfig: Option<&Path>) -> Result<(Client, String), String> {
    let config = match kubeconfig {
        None => tokio::time::timeout(CONNECT_TIMEOUT, Config::infer())
            .await
            .map_err(|_| {
                format!("loading the Kubernetes configuration took over {CONNECT_TIMEOUT:?}")
            })?
            .map_err(|e| {
                format!(
                    "no Kubernetes cluster configured (KUBECONFIG, ~/.kube/config or in-cluster): {e}"
                )
            })?,
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    let mut config = config;
    config.headers.push((
        http::HeaderName::from_static(LOAD_TOOL_HEADER),
        http::HeaderValue::from_static("1"),
    ));
    let url = config.cluster_url.clone();
    let client = Client::try_from(config).map_err(|e| format!("cluster {url}: {e}"))?;
    let version = tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| format!("cluster {url} did not answer within {CONNECT_TIMEOUT:?}"))?
        .map_err(|e| format!("cluster {url} is not reachable: {e}"))?;
    eprintln!("load: cluster {url} ({})", version.git_version);
    Ok((client, url.to_string()))
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
            let mapping = load_mapping(&args.prefix, i, args.last_applied);
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
    wait_until(shared, started + timeout, |s| {
        s.emptied() || s.operator_died
    })
    .await;
    let emptied = shared.lock().emptied();
    let after = last_delete.elapsed();
    if emptied {
        eprintln!(
            "load: aws-auth dropped the entries {:.3}s after the last delete",
            after.as_secs_f64(),
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

fn load_mapping(prefix: &str, i: u32, last_applied: bool) -> IamIdentityMapping {
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
    if last_applied {
        // What `kubectl apply` records: the object as given, as JSON.
        let applied = serde_json::to_string(&mapping).unwrap_or_default();
        mapping
            .annotations_mut()
            .insert(LAST_APPLIED.to_string(), format!("{applied}\n"));
    }
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

/// The other writes the tool counts, each from a watch of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    Events,
    History,
    Leases,
}

impl Other {
    const ALL: [Other; 3] = [Other::Events, Other::History, Other::Leases];

    fn name(self) -> &'static str {
        match self {
            Other::Events => "events",
            Other::History => "history ConfigMap",
            Other::Leases => "leader Lease",
        }
    }

    fn count(self, counters: &mut Counters) {
        match self {
            Other::Events => counters.events += 1,
            Other::History => counters.history += 1,
            Other::Leases => counters.leases += 1,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    counters: Counters,
    aws_auth_synced: bool,
    mappings_synced: bool,
    others_synced: Vec<Other>,
    aws_auth_version: Option<String>,
    /// Whether the current (re-)list of aws-auth has returned it.
    aws_auth_listed: bool,
    /// How many of the run's principals aws-auth holds.
    entries_present: usize,
    /// How many entries aws-auth holds that are not the run's.
    foreign_entries: usize,
    /// When the last counted write (Lease renewals excepted) was seen.
    last_write: Option<Instant>,
    /// The run's mappings: name -> (resourceVersion, generation).
    mappings: HashMap<String, (String, Option<i64>)>,
    /// The mappings returned by the current (re-)list, to forget those deleted meanwhile.
    mappings_listed: HashSet<String>,
    ready: HashSet<String>,
    /// The run's size, once the creates start; the first moments aws-auth held all of their
    /// entries and all of them were Ready.
    target: Option<usize>,
    aws_auth_complete_at: Option<Instant>,
    all_ready_at: Option<Instant>,
    /// The spawned operator exited.
    operator_died: bool,
}

impl State {
    fn synced(&self) -> bool {
        self.aws_auth_synced && self.mappings_synced
    }

    fn optional_synced(&self) -> bool {
        self.optional_unsynced().is_empty()
    }

    fn optional_unsynced(&self) -> Vec<&'static str> {
        Other::ALL
            .into_iter()
            .filter(|o| !self.others_synced.contains(o))
            .map(Other::name)
            .collect()
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

    fn wrote(&mut self) {
        self.last_write = Some(Instant::now());
    }

    fn check_targets(&mut self) {
        let Some(n) = self.target else {
            return;
        };
        if self.aws_auth_complete_at.is_none() && self.entries_present == n {
            self.aws_auth_complete_at = Some(Instant::now());
        }
        if self.all_ready_at.is_none() && self.ready.len() == n {
            self.all_ready_at = Some(Instant::now());
        }
    }

    fn aws_auth_seen(&mut self, version: Option<String>, present: usize, foreign: usize) {
        if self.aws_auth_synced && version != self.aws_auth_version {
            self.counters.aws_auth += 1;
            self.wrote();
        }
        self.aws_auth_version = version;
        self.entries_present = present;
        self.foreign_entries = foreign;
        self.check_targets();
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
            self.wrote();
        }
        if is_ready(mapping) {
            self.ready.insert(name);
        } else {
            self.ready.remove(&name);
        }
        self.check_targets();
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

/// Aborts the watcher tasks when dropped.
struct Watchers(Vec<tokio::task::JoinHandle<()>>);

impl Watchers {
    fn iter(&self) -> impl Iterator<Item = &tokio::task::JoinHandle<()>> {
        self.0.iter()
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.0.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

fn start_watchers(client: &Client, args: &Args, shared: &Arc<Shared>) -> Watchers {
    let expected = Arc::new(expected_role_arns(&args.prefix, args.count));
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    Watchers(vec![
        tokio::spawn(watch_aws_auth(client.clone(), expected, shared.clone())),
        tokio::spawn(watch_mappings(
            client.clone(),
            args.prefix.clone(),
            shared.clone(),
        )),
        tokio::spawn(watch_writes(
            Api::<Event>::all(client.clone()),
            watcher::Config::default(),
            Other::Events,
            shared.clone(),
            |event: &Event| event.reporting_component.as_deref() == Some(CONTROLLER_NAME),
        )),
        tokio::spawn(watch_writes(
            Api::<ConfigMap>::namespaced(client.clone(), CONFIGMAP_NAMESPACE),
            by_name(HISTORY_CONFIGMAP),
            Other::History,
            shared.clone(),
            |_: &ConfigMap| true,
        )),
        tokio::spawn(watch_writes(
            Api::<Lease>::all(client.clone()),
            by_name(DEFAULT_LEASE_NAME),
            Other::Leases,
            shared.clone(),
            |_: &Lease| true,
        )),
    ])
}

async fn watch_aws_auth(client: Client, expected: Arc<HashSet<String>>, shared: Arc<Shared>) {
    let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
    let mut events = watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => shared.update(|s| s.aws_auth_listed = false),
            Ok(watcher::Event::InitApply(cm) | watcher::Event::Apply(cm)) => {
                let (present, foreign) = entries_present(&cm, &expected);
                shared.update(|s| {
                    s.aws_auth_listed = true;
                    s.aws_auth_seen(cm.resource_version(), present, foreign);
                });
            }
            Ok(watcher::Event::Delete(_)) => shared.update(|s| s.aws_auth_seen(None, 0, 0)),
            Ok(watcher::Event::InitDone) => shared.update(|s| {
                if !s.aws_auth_listed {
                    s.aws_auth_seen(None, 0, 0);
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

/// Counts the writes (resourceVersion changes, creations included) of the objects `keep`
/// accepts, once the watch has listed.
async fn watch_writes<K>(
    api: Api<K>,
    config: watcher::Config,
    what: Other,
    shared: Arc<Shared>,
    keep: fn(&K) -> bool,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut versions: HashMap<(Option<String>, String), String> = HashMap::new();
    let mut synced = false;
    let mut reported = false;
    let key = |o: &K| (o.namespace(), o.name_any());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitApply(o) | watcher::Event::Apply(o)) if keep(&o) => {
                let version = o.resource_version().unwrap_or_default();
                let previous = versions.insert(key(&o), version.clone());
                if synced && previous.as_ref() != Some(&version) {
                    shared.update(|s| {
                        what.count(&mut s.counters);
                        if what != Other::Leases {
                            s.wrote();
                        }
                    });
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                versions.remove(&key(&o));
            }
            Ok(watcher::Event::InitDone) => {
                synced = true;
                shared.update(|s| {
                    if !s.others_synced.contains(&what) {
                        s.others_synced.push(what);
                    }
                });
            }
            Ok(_) => {}
            Err(e) => {
                if !reported {
                    eprintln!("load: watch of {}: {e} (retrying)", what.name());
                    reported = true;
                }
            }
        }
    }
}

/// How many of the run's role ARNs aws-auth holds, read as the authenticator reads it, and how
/// many other entries it holds.
fn entries_present(cm: &ConfigMap, expected: &HashSet<String>) -> (usize, usize) {
    let parsed = parse_data(&cm.data.clone().unwrap_or_default());
    let entries = &parsed.entries;
    let ours: HashSet<String> = entries
        .roles
        .iter()
        .map(|role| role.arn.to_lowercase())
        .filter(|arn| expected.contains(arn))
        .collect();
    let all = entries.len();
    let ours_with_duplicates = entries
        .roles
        .iter()
        .filter(|role| expected.contains(&role.arn.to_lowercase()))
        .count();
    (ours.len(), all - ours_with_duplicates)
}
