//! `migrate plan`: offline, what every mapping and every live aws-auth entry becomes as an EKS
//! access entry, or why it cannot move. The dry run to review before `--access-entries=mirror`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;

use super::render::pick_aws_auth;
use super::{CliError, OutputFormat, exit, expand_paths, print_stdout, read_file};
use crate::accessentries::translate::{
    DesiredEntry, NotMigratable, Translation, translate_live_entry, translate_resolved,
};
use crate::arn::{IamArn, PrincipalKey};
use crate::awsauth::parse_data;
use crate::manifest::{parse_configmaps, parse_mappings};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Show what each mapping and each live aws-auth entry becomes as an EKS access entry, or
    /// why it cannot move (offline).
    #[command(
        after_help = "Example:\n  kubectl get cm -n kube-system aws-auth -o yaml > aws-auth.yaml\n  aws-auth-operator migrate plan --live aws-auth.yaml --output json mappings/"
    )]
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// IamIdentityMapping files or directories.
    pub paths: Vec<PathBuf>,
    /// The live aws-auth ConfigMap (`kubectl get cm -n kube-system aws-auth -o yaml`): each of
    /// its entries is translated too.
    #[arg(long)]
    pub live: Option<PathBuf>,
    /// `text` for people, `json` (one document) for scripts and CI.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// One translated item in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    /// `mapping NAME` or `mapRoles[3]`.
    source: String,
    principal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_entry: Option<DesiredEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_migratable: Option<NotMigratable>,
    /// For a live entry: the mapping given on the command line that manages the same principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    covered_by: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    mappings: Vec<Item>,
    live: Vec<Item>,
    migratable: usize,
    not_migratable: usize,
}

pub fn run(args: MigrateArgs) -> Result<u8, CliError> {
    match args.command {
        MigrateCommand::Plan(args) => plan(args),
    }
}

fn item(source: String, principal: String, translation: Translation) -> Item {
    let (access_entry, not_migratable) = match translation {
        Ok(entry) => (Some(entry), None),
        Err(refusal) => (None, Some(refusal)),
    };
    Item {
        source,
        principal,
        access_entry,
        not_migratable,
        covered_by: None,
    }
}

fn plan(args: PlanArgs) -> Result<u8, CliError> {
    if args.paths.is_empty() && args.live.is_none() {
        return Err(CliError::Input(
            "nothing to plan: give IamIdentityMapping files or directories, and/or --live aws-auth.yaml".to_string(),
        ));
    }
    let (mappings, keys) = mapping_items(&args.paths)?;
    let live = match &args.live {
        Some(path) => live_items(path, &keys)?,
        None => Vec::new(),
    };
    let report = Report::new(mappings, live);
    print_report(&report, args.output)?;
    Ok(if report.not_migratable > 0 {
        exit::PROBLEMS
    } else {
        exit::OK
    })
}

/// The translation of every mapping in `paths`, and the mapping name per aws-auth key (as the
/// authenticator looks principals up), to tell which live entries the mappings manage.
fn mapping_items(
    paths: &[PathBuf],
) -> Result<(Vec<Item>, BTreeMap<PrincipalKey, String>), CliError> {
    let mut mappings = Vec::new();
    let mut keys = BTreeMap::new();
    for path in expand_paths(paths)? {
        let source = path.display().to_string();
        let docs = parse_mappings(&read_file(&path)?, &source)?;
        for mapping in docs.mappings {
            let name = mapping.metadata.name.clone().unwrap_or_default();
            if let Some(key) = mapping
                .spec
                .arn
                .as_deref()
                .and_then(|a| IamArn::parse(a).ok())
            {
                keys.insert(key.principal_key(), name.clone());
            } else if let Some(account) = &mapping.spec.account {
                keys.insert(PrincipalKey::account(account), name.clone());
            }
            mappings.push(item(
                format!("mapping {name}"),
                mapping.spec.principal().to_string(),
                // Offline: a permission set maps the role its status shows, if any.
                translate_resolved(
                    &mapping.spec,
                    crate::principals::resolved_arn(&mapping.spec, mapping.status.as_ref(), None)
                        .as_deref(),
                ),
            ));
        }
    }
    Ok((mappings, keys))
}

/// The translation of every entry of the live aws-auth in `path`, each marked with the mapping
/// that manages its principal, if any.
fn live_items(path: &Path, keys: &BTreeMap<PrincipalKey, String>) -> Result<Vec<Item>, CliError> {
    let source = path.display().to_string();
    let cm = pick_aws_auth(parse_configmaps(&read_file(path)?, &source)?)
        .ok_or_else(|| CliError::Input(format!("{source}: no aws-auth ConfigMap found")))?;
    let parsed = parse_data(&cm.data);
    let mut live = Vec::new();
    for (index, entry) in parsed.entries.iter() {
        let mut it = item(
            format!("{}[{index}]", entry.section()),
            entry.principal().to_string(),
            translate_live_entry(&entry),
        );
        it.covered_by = keys.get(&entry.key()).cloned();
        live.push(it);
    }
    for section in &parsed.malformed {
        eprintln!(
            "{source}: {section} cannot be read at all (run `aws-auth-operator validate`); its entries are not in this plan"
        );
    }
    Ok(live)
}

impl Report {
    /// A live entry managed by a mapping is counted once, as that mapping.
    fn new(mappings: Vec<Item>, live: Vec<Item>) -> Self {
        let counted = mappings
            .iter()
            .chain(live.iter().filter(|i| i.covered_by.is_none()));
        let (mut migratable, mut not_migratable) = (0, 0);
        for i in counted {
            if i.access_entry.is_some() {
                migratable += 1;
            } else {
                not_migratable += 1;
            }
        }
        Report {
            mappings,
            live,
            migratable,
            not_migratable,
        }
    }
}

fn print_report(report: &Report, output: OutputFormat) -> Result<(), CliError> {
    match output {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(report)
                .map_err(|e| CliError::Input(format!("serialising JSON: {e}")))?;
            text.push('\n');
            print_stdout(&text)
        }
        OutputFormat::Text => print_stdout(&text_report(report)),
    }
}

fn text_report(report: &Report) -> String {
    let mut out = String::new();
    for (title, items) in [
        ("Mappings", &report.mappings),
        ("Live aws-auth entries", &report.live),
    ] {
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for i in items.iter() {
            let _ = writeln!(out, "  {} ({})", i.source, i.principal);
            if let Some(name) = &i.covered_by {
                let _ = writeln!(out, "    managed by mapping {name}: see above");
                continue;
            }
            match (&i.access_entry, &i.not_migratable) {
                (Some(e), _) => {
                    let _ = writeln!(
                        out,
                        "    -> {} access entry for {}",
                        e.type_, e.principal_arn
                    );
                    if e.type_.is_standard() {
                        let _ = writeln!(
                            out,
                            "       username: {}",
                            e.username.as_deref().unwrap_or("(generated by EKS)")
                        );
                        let groups = if e.kubernetes_groups.is_empty() {
                            "(none)".to_string()
                        } else {
                            e.kubernetes_groups.join(", ")
                        };
                        let _ = writeln!(out, "       groups: {groups}");
                        let policies = if e.policies.is_empty() {
                            "(none)".to_string()
                        } else {
                            e.policies
                                .iter()
                                .map(|p| format!("{} ({})", p.name(), p.scope))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let _ = writeln!(out, "       policies: {policies}");
                    }
                    let _ = writeln!(out, "       rule: {}", e.rule.describe());
                    for note in &e.notes {
                        let _ = writeln!(out, "       note: {note}");
                    }
                }
                (None, Some(refusal)) => {
                    let _ = writeln!(
                        out,
                        "    cannot move ({}): {}",
                        refusal.reason, refusal.message
                    );
                }
                (None, None) => {}
            }
        }
    }
    let _ = writeln!(
        out,
        "{} can move to access entries, {} cannot (they stay in aws-auth)",
        report.migratable, report.not_migratable
    );
    out
}
