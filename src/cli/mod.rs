//! The command line: one file per subcommand. Each subcommand reads files, calls the pure core
//! and prints; the exit code says what happened.

mod crd;
mod demo;
pub mod history;
mod import;
mod migrate;
mod render;
mod run;
mod validate;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use thiserror::Error;

pub use crd::crd_yaml;

#[derive(Debug, Parser)]
#[command(
    name = "aws-auth-operator",
    version,
    about = "Declarative, validated management of the EKS aws-auth ConfigMap"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "AWS_AUTH_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the IamIdentityMapping CustomResourceDefinition.
    #[command(after_help = "Example:\n  aws-auth-operator crd | kubectl apply --server-side -f -")]
    Crd,
    /// Render IamIdentityMapping files into the aws-auth ConfigMap the operator would write.
    #[command(
        after_help = "Example:\n  kubectl get cm -n kube-system aws-auth -o yaml > aws-auth.yaml\n  aws-auth-operator render --live aws-auth.yaml --denied-groups 'system:masters' mappings/"
    )]
    Render(render::RenderArgs),
    /// Lint aws-auth ConfigMaps, patches of its data and IamIdentityMappings: every problem the authenticator would hit.
    Validate(validate::ValidateArgs),
    /// Turn an existing aws-auth ConfigMap into IamIdentityMapping documents.
    Import(import::ImportArgs),
    /// List the revisions of aws-auth saved in kube-system/aws-auth-operator-history, newest first.
    #[command(after_help = "Example:\n  aws-auth-operator history --output json | jq '.[0]'")]
    History(history::HistoryArgs),
    /// Restore aws-auth from a saved revision (prints the change; writes only with --yes).
    #[command(
        after_help = "Example:\n  aws-auth-operator rollback 12          # print what restoring revision 12 changes\n  aws-auth-operator rollback 12 --yes    # write it"
    )]
    Rollback(history::RollbackArgs),
    /// Run the controller (kubeconfig or in-cluster).
    #[command(
        after_help = "Example:\n  aws-auth-operator run --drift repair --protected-arn arn:aws:iam::111122223333:role/break-glass"
    )]
    Run(run::RunArgs),
    /// Run the operator against the built-in test API server (in memory, no cluster) on the example mappings, and print what it did.
    #[command(after_help = "Example:\n  aws-auth-operator demo")]
    Demo(demo::DemoArgs),
    /// Plan the move from aws-auth to EKS access entries (`migrate plan`).
    #[command(
        after_help = "Example:\n  aws-auth-operator migrate plan --live aws-auth.yaml mappings/"
    )]
    Migrate(migrate::MigrateArgs),
}

/// The settings that decide what a mapping may render, shared by `run`, `render` and
/// `rollback` (which must predict what the operator will do).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
    /// A principal (role/user ARN or account id) the operator never changes or removes, e.g. a
    /// break-glass admin or a node role. Repeatable.
    #[arg(long = "protected-arn")]
    pub protected: Vec<String>,
    /// Regex every group must fully match (repeatable; any one suffices).
    #[arg(long = "allowed-groups")]
    pub allowed_groups: Vec<String>,
    /// Regex no group may fully match (repeatable), e.g. `system:masters`.
    #[arg(long = "denied-groups")]
    pub denied_groups: Vec<String>,
    /// Regex every username must fully match (repeatable; any one suffices). Reserved
    /// usernames stay refused unless --allowed-reserved-usernames allows them.
    #[arg(long = "allowed-usernames")]
    pub allowed_usernames: Vec<String>,
    /// Regex no username may fully match (repeatable), on top of the reserved prefixes
    /// (system:, eks:, aws:, amazon:, iam:), which are always refused.
    #[arg(long = "denied-usernames")]
    pub denied_usernames: Vec<String>,
    /// Regex of reserved usernames (system:, eks:, aws:, amazon:, iam:) a mapping may use after
    /// all (repeatable), e.g. `system:node:\{\{SessionName\}\}` with other groups than the
    /// node groups. EKS's node mappings with the node groups only are always allowed.
    #[arg(long = "allowed-reserved-usernames")]
    pub allowed_reserved_usernames: Vec<String>,
    /// Remove the entry of a mapping that violates the group or username policy. Without it
    /// the last rendered entry stays and the mapping is Stalled (PolicyViolation): a policy
    /// change never locks anyone out silently.
    #[arg(long, env = "AWS_AUTH_OPERATOR_ENFORCE_GROUP_POLICY")]
    pub enforce_group_policy: bool,
}

impl PolicyArgs {
    pub fn settings(&self) -> Result<crate::plan::Settings, CliError> {
        let mut settings = crate::plan::Settings::default()
            .with_group_policy(&self.allowed_groups, &self.denied_groups)
            .and_then(|s| {
                s.with_username_policy(
                    &self.allowed_usernames,
                    &self.denied_usernames,
                    &self.allowed_reserved_usernames,
                )
            })
            .map_err(|e| CliError::Input(e.to_string()))?;
        for value in &self.protected {
            settings
                .protect(value)
                .map_err(|e| CliError::Input(e.to_string()))?;
        }
        settings.enforce_group_policy = self.enforce_group_policy;
        Ok(settings)
    }
}

/// Exit codes shared by the subcommands.
pub mod exit {
    pub const OK: u8 = 0;
    /// The input was read but has problems (invalid mappings, lint findings, skipped entries).
    pub const PROBLEMS: u8 = 1;
    /// The input could not be read or parsed at all.
    pub const UNREADABLE: u8 = 2;
}

#[derive(Debug, Error)]
pub enum CliError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("{0}")]
    Input(String),
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    #[error("serialising YAML: {0}")]
    Yaml(#[from] serde_saphyr::SerializeError),
}

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Crd => crd::run(),
        Command::Render(args) => render::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Import(args) => import::run(args),
        Command::History(args) => history::run_history(args),
        Command::Rollback(args) => history::run_rollback(args),
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Migrate(args) => migrate::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(exit::UNREADABLE)
        }
    }
}

fn read_file(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Files named by `paths`: files as given, directories expanded to their `*.yaml`/`*.yml`/`*.json`
/// files (recursively, sorted, so the output is deterministic).
fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            collect_dir(path, &mut files)?;
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CliError> {
    let read_err = |source| CliError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_dir(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
