use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;

use super::{CliError, PolicyArgs, exit, expand_paths, print_stdout, read_file};
use crate::awsauth::CONFIGMAP_NAME;
use crate::manifest::{
    ConfigMapDoc, aws_auth_configmap, configmap_yaml, parse_configmaps, parse_mappings,
};
use crate::plan::{LiveAwsAuth, MANAGED_ANNOTATION, ManagedSet, MappingInput, Outcome, Plan, plan};

/// The examples shipped in `examples/`, rendered when no path is given (not `examples/aws/`,
/// which need AWS: a permission set is resolved through IAM by the running operator only).
pub(super) const EMBEDDED_EXAMPLES: &[(&str, &str)] = &[
    (
        "examples/account.yaml",
        include_str!("../../examples/account.yaml"),
    ),
    (
        "examples/iam-user.yaml",
        include_str!("../../examples/iam-user.yaml"),
    ),
    (
        "examples/node-role.yaml",
        include_str!("../../examples/node-role.yaml"),
    ),
    (
        "examples/platform-admin.yaml",
        include_str!("../../examples/platform-admin.yaml"),
    ),
    (
        "examples/read-only.yaml",
        include_str!("../../examples/read-only.yaml"),
    ),
    (
        "examples/sso-developers.yaml",
        include_str!("../../examples/sso-developers.yaml"),
    ),
];

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// IamIdentityMapping files or directories (multi-document files are fine). Without any,
    /// the built-in examples are rendered.
    pub paths: Vec<PathBuf>,
    /// The live aws-auth ConfigMap (`kubectl get cm -n kube-system aws-auth -o yaml`): its
    /// unmanaged entries are kept, as the controller would.
    #[arg(long)]
    pub live: Option<PathBuf>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

pub fn run(args: RenderArgs) -> Result<u8, CliError> {
    let inputs = mapping_inputs(&read_sources(&args.paths)?)?;
    let settings = args.policy.settings()?;
    let live = match &args.live {
        Some(path) => live_from_file(path)?,
        None => LiveAwsAuth::default(),
    };

    let plan = plan(&inputs, &live, &settings);
    if let Some(blocked) = &plan.blocked {
        eprintln!("error: {blocked}");
        return Ok(exit::PROBLEMS);
    }
    let tally = report_outcomes(&plan);
    let cm = aws_auth_configmap(plan.data.clone(), &plan.managed_annotation);
    print_stdout(&configmap_yaml(&cm)?)?;
    print_summary(&plan, inputs.len(), &tally);
    // What a CI gate relies on: exit 0 means every mapping would be rendered by the operator,
    // or waits only for the role of its permission set, which needs IAM (its spec is checked
    // like any other). An invalid, conflicting, refused or oversized mapping is exit 1.
    Ok(if tally.failed > 0 {
        exit::PROBLEMS
    } else {
        exit::OK
    })
}

/// `(source name, text)` of each file given, or of the built-in examples without any.
fn read_sources(paths: &[PathBuf]) -> Result<Vec<(String, String)>, CliError> {
    if paths.is_empty() {
        eprintln!("no paths given: rendering the built-in examples");
        return Ok(EMBEDDED_EXAMPLES
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect());
    }
    expand_paths(paths)?
        .into_iter()
        .map(|path| Ok((path.display().to_string(), read_file(&path)?)))
        .collect()
}

/// The planner's input for every IamIdentityMapping in the sources; a name given twice is an
/// error, as the API server would refuse it.
fn mapping_inputs(sources: &[(String, String)]) -> Result<Vec<MappingInput>, CliError> {
    let mut inputs = Vec::new();
    let mut names = BTreeSet::new();
    for (source, text) in sources {
        let docs = parse_mappings(text, source)?;
        for skipped in docs.skipped {
            eprintln!("{source}: skipped {skipped} (not an IamIdentityMapping)");
        }
        for mapping in docs.mappings {
            let name = mapping.metadata.name.clone().unwrap_or_default();
            if !names.insert(name.clone()) {
                return Err(CliError::Input(format!(
                    "{source}: IamIdentityMapping `{name}` is defined twice; names are unique in a cluster"
                )));
            }
            // Offline there is no IAM: a permission set keeps the role its status shows, if any.
            // Nothing was rendered for a file: no drift is told from a spec change.
            inputs.push(MappingInput {
                name,
                last_rendered: None,
                ..MappingInput::from_mapping(&mapping)
            });
        }
    }
    Ok(inputs)
}

/// Mappings the plan did not render: failed ones, and those left to the running operator.
#[derive(Default)]
struct Tally {
    failed: usize,
    unresolved: usize,
}

/// Prints the live diagnostics, the notes and why each mapping not rendered was left out.
fn report_outcomes(plan: &Plan) -> Tally {
    for diagnostic in &plan.live_diagnostics {
        eprintln!("live aws-auth: {diagnostic}");
    }
    for note in &plan.notes {
        eprintln!("{note}");
    }
    let mut tally = Tally::default();
    for (name, outcome) in &plan.outcomes {
        match outcome {
            Outcome::Rendered { .. } => {}
            // Not a mistake: only the running operator can ask IAM for the role.
            Outcome::Unresolved { permission_set, .. } => {
                tally.unresolved += 1;
                eprintln!(
                    "{name}: permission set {permission_set} is resolved to its IAM role by the running operator; not rendered offline"
                );
            }
            _ => {
                tally.failed += 1;
                eprintln!("{name}: {}: {}", outcome.reason(), outcome.message());
            }
        }
    }
    tally
}

fn print_summary(plan: &Plan, mappings: usize, tally: &Tally) {
    let left = if tally.unresolved > 0 {
        format!(
            "; {} left to the running operator, which resolves permission sets through IAM",
            tally.unresolved
        )
    } else {
        String::new()
    };
    eprintln!(
        "rendered {} of {} mappings ({} managed entries, {} unmanaged kept{left})",
        mappings - tally.failed - tally.unresolved,
        mappings,
        plan.managed_entries,
        plan.unmanaged_entries
    );
}

fn live_from_file(path: &Path) -> Result<LiveAwsAuth, CliError> {
    let source = path.display().to_string();
    let configmaps = parse_configmaps(&read_file(path)?, &source)?;
    let cm = pick_aws_auth(configmaps)
        .ok_or_else(|| CliError::Input(format!("{source}: no aws-auth ConfigMap found")))?;
    let managed = match cm.annotations.get(MANAGED_ANNOTATION) {
        None => ManagedSet::default(),
        Some(text) => ManagedSet::decode(text).unwrap_or_else(|err| {
            eprintln!("{source}: {err}; treating every live entry as unmanaged");
            ManagedSet::default()
        }),
    };
    Ok(LiveAwsAuth {
        data: Some(cm.data),
        managed,
        recovery: None,
        frozen: false,
        mappings_incomplete: false,
    })
}

/// The ConfigMap named aws-auth, or the only ConfigMap of the file.
pub(super) fn pick_aws_auth(configmaps: Vec<ConfigMapDoc>) -> Option<ConfigMapDoc> {
    named_or_only(configmaps, |c| c.name == CONFIGMAP_NAME)
}

/// The document named aws-auth (`is_named`); failing that, the only one. Several unnamed
/// candidates are ambiguous: none is picked.
pub(super) fn named_or_only<T>(mut docs: Vec<T>, is_named: impl Fn(&T) -> bool) -> Option<T> {
    if let Some(i) = docs.iter().position(is_named) {
        return Some(docs.swap_remove(i));
    }
    (docs.len() == 1).then(|| docs.remove(0))
}
