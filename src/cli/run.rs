use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use super::{CliError, PolicyArgs, exit};
use crate::accessentries::AccessEntriesArgs;
use crate::controller::reconcile::DEFAULT_STATUS_CONCURRENCY;
use crate::controller::{DEFAULT_KUBE_QPS, RunConfig, run as run_controller};
use crate::plan::DriftPolicy;
use crate::principals::PrincipalsArgs;
use crate::store::revisions::DEFAULT_HISTORY_LIMIT;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to do with a hand edit of a managed entry.
    #[arg(long, value_enum, default_value_t = DriftPolicy::Repair, env = "AWS_AUTH_OPERATOR_DRIFT")]
    pub drift: DriftPolicy,
    /// Restore the unmanaged entries of an unparseable aws-auth key from the last good revision.
    /// With false, nothing is written and every mapping is Stalled until a person fixes it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "AWS_AUTH_OPERATOR_RECOVER_MALFORMED")]
    pub recover_malformed: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Revisions of aws-auth kept in kube-system/aws-auth-operator-history.
    #[arg(long, default_value_t = DEFAULT_HISTORY_LIMIT)]
    pub history_limit: usize,
    /// Elect a leader on a Lease so that only one replica writes.
    #[arg(long, env = "AWS_AUTH_OPERATOR_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, default_value = "kube-system", env = "POD_NAMESPACE")]
    pub lease_namespace: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Full reconcile at least this often, even without events.
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// IamIdentityMapping status patches in flight at once.
    #[arg(long, default_value_t = DEFAULT_STATUS_CONCURRENCY)]
    pub status_concurrency: usize,
    /// Requests per second the operator sends to the API server at most (0: no limit).
    #[arg(long, default_value_t = DEFAULT_KUBE_QPS)]
    pub kube_qps: u32,
    #[command(flatten)]
    pub access_entries: AccessEntriesArgs,
    #[command(flatten)]
    pub principals: PrincipalsArgs,
}

pub fn run(args: RunArgs) -> Result<u8, CliError> {
    let config = run_config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Write)?;
    match runtime.block_on(run_controller(config)) {
        Ok(()) => Ok(exit::OK),
        Err(err) => Err(CliError::Input(err.to_string())),
    }
}

/// `run`'s defaults (and the `AWS_AUTH_OPERATOR_*` environment), as `run` with no flags has them.
pub(super) fn default_run_config() -> Result<RunConfig, CliError> {
    #[derive(clap::Parser)]
    struct NoFlags {
        #[command(flatten)]
        run: RunArgs,
    }
    let parsed = <NoFlags as clap::Parser>::try_parse_from(["run"])
        .map_err(|e| CliError::Input(e.to_string()))?;
    run_config(parsed.run)
}

fn run_config(args: RunArgs) -> Result<RunConfig, CliError> {
    let mut settings = args.policy.settings()?;
    settings.drift = args.drift;
    settings.recover_malformed = args.recover_malformed;
    let config = RunConfig {
        settings,
        history_limit: args.history_limit.max(1),
        leader_election: args.leader_election,
        lease_namespace: args.lease_namespace,
        metrics_addr: args.metrics_addr,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        status_concurrency: args.status_concurrency.max(1),
        kube_qps: args.kube_qps,
        access_entries: args
            .access_entries
            .config()
            .map_err(|e| CliError::Input(e.to_string()))?,
        principals: args.principals.config(args.access_entries.region.clone()),
    };
    Ok(config)
}
