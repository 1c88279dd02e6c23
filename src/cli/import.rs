use std::path::PathBuf;

use clap::Args;

use super::{CliError, exit, print_stdout, read_file};
use crate::awsauth::CONFIGMAP_NAME;
use crate::import::{IMPORTED_FROM_ANNOTATION, import};
use crate::lint::{AwsAuthDoc, AwsAuthOrigin, read_contents};
use crate::manifest::to_yaml;

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  kubectl get cm -n kube-system aws-auth -o yaml > aws-auth.yaml\n  aws-auth-operator import --access-entries aws-auth.yaml > mappings.yaml"
)]
pub struct ImportArgs {
    /// The aws-auth ConfigMap manifest (`kubectl get cm -n kube-system aws-auth -o yaml`), or a
    /// data-only patch fragment of it (YAML or JSON, as for `kubectl patch --patch-file`).
    pub file: PathBuf,
    /// Also say, for every mapping that cannot become an EKS access entry as it is, why and
    /// what to choose: a commented `spec.accessEntry` block to fill in (for a move to
    /// `--access-entries`; the operator derives the access entry of every other mapping).
    #[arg(long)]
    pub access_entries: bool,
}

/// A commented `spec.accessEntry` block for a mapping whose access entry needs a choice, or
/// nothing when the translation needs none (or no block can help).
fn access_entry_hint(spec: &crate::api::IamIdentityMappingSpec) -> Option<String> {
    use crate::accessentries::translate::{NotMigratableReason as R, translate_mapping};
    let refusal = translate_mapping(spec).err()?;
    let template = match refusal.reason {
        R::AmbiguousNodeType => "#   accessEntry:\n#     type: FARGATE_LINUX   # or HYBRID_LINUX\n",
        R::NodeRoleExtraGroups => {
            "#   accessEntry:\n#     type: EC2_LINUX   # the extra groups are dropped; or type: STANDARD with kubernetesGroups\n"
        }
        R::ReservedGroup
        | R::ReservedUsername
        | R::UnsupportedTemplate
        | R::SessionNameWithoutColon => {
            "#   accessEntry:\n#     username: \"...\"             # EKS rules for usernames\n#     kubernetesGroups: [...]      # no system: groups\n#     policies:\n#       - policy: AmazonEKSViewPolicy   # or AmazonEKSEditPolicy, AmazonEKSAdminPolicy, ...\n#         namespaces: [...]             # omit for the whole cluster\n"
        }
        // An account mapping, a service-linked role, ...: no block makes it an access entry;
        // it stays in aws-auth and its status says why.
        _ => {
            return Some(format!(
                "# access entry: not migratable ({}): {}\n",
                refusal.reason, refusal.message
            ));
        }
    };
    Some(format!(
        "# access entry: needs a choice ({}): {}\n# spec:\n{template}",
        refusal.reason, refusal.message
    ))
}

pub fn run(args: ImportArgs) -> Result<u8, CliError> {
    let source = args.file.display().to_string();
    let contents = read_contents(&read_file(&args.file)?, &source)?;
    let doc = pick_aws_auth(contents.aws_auth).ok_or_else(|| {
        CliError::Input(format!(
            "{source}: no aws-auth ConfigMap found (nor a data-only patch fragment of one)"
        ))
    })?;
    if !matches!(doc.origin, AwsAuthOrigin::ConfigMap { .. }) {
        eprintln!("note: {source}: {}", doc.origin);
    }
    let result = import(&doc.data);
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
        if args.access_entries
            && let Some(hint) = access_entry_hint(&mapping.spec)
        {
            out.push_str(&hint);
        }
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

/// The ConfigMap named aws-auth; failing that, the only aws-auth data of the file.
fn pick_aws_auth(docs: Vec<AwsAuthDoc>) -> Option<AwsAuthDoc> {
    super::render::named_or_only(
        docs,
        |d| matches!(&d.origin, AwsAuthOrigin::ConfigMap { name, .. } if name == CONFIGMAP_NAME),
    )
}
