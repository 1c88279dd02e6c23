use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::{CliError, OutputFormat, exit, print_stdout, read_file};
use crate::awsauth::{CONFIGMAP_NAME, Diagnostic, Section, parse_data};
use crate::manifest::{ConfigMapDoc, parse_configmaps};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// aws-auth ConfigMap manifests (single or multi-document, `kubectl get -o yaml` output).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `text` for people, `json` (one document) for scripts and CI.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Serialize)]
struct Report {
    file: String,
    configmap: String,
    roles: usize,
    users: usize,
    accounts: usize,
    diagnostics: Vec<Diagnostic>,
}

pub fn run(args: ValidateArgs) -> Result<u8, CliError> {
    let mut reports = Vec::new();
    for path in &args.files {
        let source = path.display().to_string();
        let configmaps = parse_configmaps(&read_file(path)?, &source)?;
        let targets = aws_auth_configmaps(configmaps);
        if targets.is_empty() {
            return Err(CliError::Input(format!(
                "{source}: no aws-auth ConfigMap (no ConfigMap named aws-auth or holding mapRoles/mapUsers/mapAccounts)"
            )));
        }
        for cm in targets {
            let parsed = parse_data(&cm.data);
            reports.push(Report {
                file: source.clone(),
                configmap: match &cm.namespace {
                    Some(ns) => format!("{ns}/{}", cm.name),
                    None => cm.name.clone(),
                },
                roles: parsed.entries.roles.len(),
                users: parsed.entries.users.len(),
                accounts: parsed.entries.accounts.len(),
                diagnostics: parsed.diagnostics,
            });
        }
    }
    let problems = reports.iter().any(|r| !r.diagnostics.is_empty());
    match args.output {
        OutputFormat::Json => print_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        ))?,
        OutputFormat::Text => print_stdout(&text_report(&reports))?,
    }
    Ok(if problems { exit::PROBLEMS } else { exit::OK })
}

fn text_report(reports: &[Report]) -> String {
    let mut out = String::new();
    for r in reports {
        let counts = format!(
            "{} roles, {} users, {} accounts",
            r.roles, r.users, r.accounts
        );
        if r.diagnostics.is_empty() {
            out.push_str(&format!(
                "{}: ConfigMap {}: ok ({counts})\n",
                r.file, r.configmap
            ));
            continue;
        }
        out.push_str(&format!(
            "{}: ConfigMap {}: {} problem(s) ({counts} as the authenticator reads them)\n",
            r.file,
            r.configmap,
            r.diagnostics.len()
        ));
        for d in &r.diagnostics {
            out.push_str(&format!("  {d}\n"));
        }
    }
    out
}

/// ConfigMaps named aws-auth; failing that, any ConfigMap holding one of the keys (any casing).
fn aws_auth_configmaps(configmaps: Vec<ConfigMapDoc>) -> Vec<ConfigMapDoc> {
    if configmaps.iter().any(|c| c.name == CONFIGMAP_NAME) {
        return configmaps
            .into_iter()
            .filter(|c| c.name == CONFIGMAP_NAME)
            .collect();
    }
    configmaps
        .into_iter()
        .filter(|c| {
            c.data.keys().any(|k| {
                Section::ALL
                    .iter()
                    .any(|s| s.key().eq_ignore_ascii_case(k.trim()))
            })
        })
        .collect()
}
