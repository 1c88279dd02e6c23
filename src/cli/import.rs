use std::path::PathBuf;

use clap::Args;

use super::render::pick_aws_auth;
use super::{CliError, exit, print_stdout, read_file};
use crate::import::{IMPORTED_FROM_ANNOTATION, import};
use crate::manifest::{parse_configmaps, to_yaml};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The aws-auth ConfigMap manifest (`kubectl get cm -n kube-system aws-auth -o yaml`).
    pub file: PathBuf,
}

pub fn run(args: ImportArgs) -> Result<u8, CliError> {
    let source = args.file.display().to_string();
    let configmaps = parse_configmaps(&read_file(&args.file)?, &source)?;
    let cm = pick_aws_auth(configmaps)
        .ok_or_else(|| CliError::Input(format!("{source}: no aws-auth ConfigMap found")))?;
    let result = import(&cm.data);
    let mut out = String::new();
    for mapping in &result.mappings {
        let from = mapping
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(IMPORTED_FROM_ANNOTATION))
            .cloned()
            .unwrap_or_default();
        out.push_str(&format!("---\n# imported from {from}\n"));
        out.push_str(&to_yaml(mapping)?);
    }
    print_stdout(&out)?;
    for warning in &result.warnings {
        eprintln!("warning: {warning}");
    }
    for skipped in &result.skipped {
        let principal = if skipped.principal.is_empty() {
            String::new()
        } else {
            format!(" ({})", skipped.principal)
        };
        eprintln!(
            "not imported: {}{principal}: {}",
            skipped.entry,
            skipped.reasons.join("; ")
        );
    }
    eprintln!(
        "imported {} entries, {} not imported",
        result.mappings.len(),
        result.skipped.len()
    );
    Ok(if result.skipped.is_empty() {
        exit::OK
    } else {
        exit::PROBLEMS
    })
}
