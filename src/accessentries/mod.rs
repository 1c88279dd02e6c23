//! EKS Access Entries: mirror every IamIdentityMapping into an access entry, so that a cluster
//! can move off aws-auth without a lockout.
//!
//! - [`spec`]: `spec.accessEntry` / `status.accessEntry` of the CRD.
//! - [`translate`] (pure): a mapping or live aws-auth entry -> the access entry it becomes.
//! - [`sync`] (pure): desired entries + what EKS holds -> the calls to make, and outcomes.
//! - [`report`]: what the loop publishes for the aws-auth reconcile (the single status writer).
//! - [`client`]: the EKS API (aws-sdk-eks) behind a small trait.
//! - [`runner`]: the loop of its own (EKS has no watch): woken by mapping changes and a resync.

pub mod client;
pub mod report;
pub mod runner;
pub mod spec;
pub mod sync;
pub mod translate;

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use report::{
    AccessEntryReport, ClusterReport, ReportBoard, SyncReason, access_side_ready, keep_in_aws_auth,
};
pub use spec::{AccessEntrySpec, AccessEntryStatus, AccessEntryType, AccessPolicySpec};

/// `--access-entries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessEntriesMode {
    /// aws-auth only. Without `--cluster-name` no EKS client is built; with it, the loop only
    /// deletes the operator's access entries of deleted mappings.
    #[default]
    Off,
    /// Every mapping also becomes an access entry; aws-auth is kept as it is.
    Mirror,
    /// As mirror, and a mapping's aws-auth entry is removed once its access entry is confirmed
    /// in place (mappings that cannot migrate stay in aws-auth).
    Only,
}

impl AccessEntriesMode {
    /// The flag's value: `off`, `mirror` or `only`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessEntriesMode::Off => "off",
            AccessEntriesMode::Mirror => "mirror",
            AccessEntriesMode::Only => "only",
        }
    }
}

/// The flags of the access-entry loop, to flatten into `run`'s arguments.
#[derive(Debug, Clone, Args)]
pub struct AccessEntriesArgs {
    /// Mirror mappings into EKS access entries: off, mirror (both) or only (access entries,
    /// aws-auth keeps only what cannot migrate).
    #[arg(long = "access-entries", value_enum, default_value_t = AccessEntriesMode::Off, env = "AWS_AUTH_OPERATOR_ACCESS_ENTRIES")]
    pub access_entries: AccessEntriesMode,
    /// The EKS cluster's name (required unless --access-entries=off; with off, and a region, the
    /// operator still deletes the access entries it created for mappings that are deleted).
    #[arg(long, env = "AWS_AUTH_OPERATOR_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// AWS region of the cluster (else AWS_REGION / AWS_DEFAULT_REGION). Never looked up from
    /// instance metadata.
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// EKS API endpoint URL (tests and private endpoints); default: the region's.
    #[arg(long, env = "AWS_AUTH_OPERATOR_EKS_ENDPOINT")]
    pub eks_endpoint: Option<String>,
    /// EKS calls in flight at once.
    #[arg(long, default_value_t = 4)]
    pub access_entries_concurrency: usize,
    /// Full access-entry resync at least this often (with up to 10% jitter).
    #[arg(long, default_value_t = 300)]
    pub access_entries_resync_seconds: u64,
}

impl Default for AccessEntriesArgs {
    fn default() -> AccessEntriesArgs {
        AccessEntriesArgs {
            access_entries: AccessEntriesMode::Off,
            cluster_name: None,
            region: None,
            eks_endpoint: None,
            access_entries_concurrency: 4,
            access_entries_resync_seconds: 300,
        }
    }
}

/// A flag combination that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error(
        "--access-entries={mode} needs --cluster-name (or AWS_AUTH_OPERATOR_CLUSTER_NAME): the EKS cluster whose access entries to manage"
    )]
    MissingClusterName { mode: String },
    #[error(
        "--access-entries={mode} needs the cluster's AWS region: pass --region or set AWS_REGION (the operator does not ask the instance metadata service)"
    )]
    MissingRegion { mode: String },
    #[error("--eks-endpoint `{0}` is not an http(s) URL")]
    BadEndpoint(String),
}

/// Validated settings of the access-entry loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntriesConfig {
    pub mode: AccessEntriesMode,
    pub cluster_name: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub concurrency: usize,
    pub resync: Duration,
}

impl AccessEntriesArgs {
    /// None when off without a cluster (nothing AWS is needed then); an error when a needed
    /// flag is missing. Off with `--cluster-name` and a region still runs the loop, which then
    /// only deletes the operator's tagged entries of deleted (or refused) mappings: deleting a
    /// mapping revokes what the operator granted, whatever the mode.
    pub fn config(&self) -> Result<Option<AccessEntriesConfig>, ConfigError> {
        if self.access_entries == AccessEntriesMode::Off {
            let known = self.cluster_name.as_deref().is_some_and(|c| !c.is_empty())
                && self
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .is_some_and(|r| !r.is_empty());
            if !known {
                return Ok(None);
            }
        }
        let mode = format!("{:?}", self.access_entries).to_lowercase();
        let cluster_name = self
            .cluster_name
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ConfigError::MissingClusterName { mode: mode.clone() })?;
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .ok_or(ConfigError::MissingRegion { mode })?;
        if let Some(endpoint) = &self.eks_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::BadEndpoint(endpoint.clone()));
        }
        Ok(Some(AccessEntriesConfig {
            mode: self.access_entries,
            cluster_name,
            region,
            endpoint: self.eks_endpoint.clone(),
            concurrency: self.access_entries_concurrency.clamp(1, 64),
            resync: Duration::from_secs(self.access_entries_resync_seconds.max(10)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Run {
        #[command(flatten)]
        access_entries: AccessEntriesArgs,
    }

    #[test]
    fn off_needs_nothing() {
        let run = Run::try_parse_from(["run"]).unwrap();
        assert_eq!(run.access_entries.access_entries, AccessEntriesMode::Off);
        assert_eq!(run.access_entries.config(), Ok(None));
    }

    /// Off with a known cluster still runs the loop (to revoke the entries of deleted mappings).
    #[test]
    fn off_with_a_cluster_runs_the_revoking_loop() {
        let run =
            Run::try_parse_from(["run", "--cluster-name=prod", "--region=eu-west-1"]).unwrap();
        let config = run.access_entries.config().unwrap().expect("a loop");
        assert_eq!(config.mode, AccessEntriesMode::Off);
        assert_eq!(config.cluster_name, "prod");
    }

    #[test]
    fn mirror_needs_a_cluster_and_a_region() {
        let run =
            Run::try_parse_from(["run", "--access-entries", "mirror", "--region", "eu-west-1"])
                .unwrap();
        assert!(matches!(
            run.access_entries.config(),
            Err(ConfigError::MissingClusterName { .. })
        ));
        let run = Run::try_parse_from([
            "run",
            "--access-entries=only",
            "--cluster-name=prod",
            "--region=eu-west-1",
            "--eks-endpoint=http://127.0.0.1:4566",
            "--access-entries-concurrency=0",
            "--access-entries-resync-seconds=60",
        ])
        .unwrap();
        let config = run.access_entries.config().unwrap().unwrap();
        assert_eq!(config.mode, AccessEntriesMode::Only);
        assert_eq!(config.cluster_name, "prod");
        assert_eq!(config.concurrency, 1);
        assert_eq!(config.resync, Duration::from_secs(60));
        let bad = Run::try_parse_from([
            "run",
            "--access-entries=mirror",
            "--cluster-name=prod",
            "--region=eu-west-1",
            "--eks-endpoint=localhost:1",
        ])
        .unwrap();
        assert_eq!(
            bad.access_entries.config(),
            Err(ConfigError::BadEndpoint("localhost:1".into()))
        );
    }
}
