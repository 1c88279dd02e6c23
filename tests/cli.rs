//! The command line end to end: exit codes, stdout, and the key parts of every message.
//!
//! Exit codes: 0 = fine, 1 = the input was read but has problems, 2 = the input could not be read.
//! Fixtures live in `tests/fixtures/`; commands run from the crate root so that file names in
//! messages are the relative paths given on the command line.

use std::collections::BTreeSet;
use std::io::Write;

use assert_cmd::Command;
use aws_auth_operator::api::IamIdentityMapping;
use aws_auth_operator::awsauth::{
    AwsAuthEntries, ConfigMapData, parse_data, render_data, sort_entries,
};
use aws_auth_operator::manifest::{parse_configmaps, parse_mappings};
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const CRD_FILE: &str = "crds/iamidentitymappings.awsauth.dev.yaml";

const EKS: &str = "tests/fixtures/aws-auth-eks.yaml";
const PROBLEMS: &str = "tests/fixtures/aws-auth-problems.yaml";
const MULTIDOC: &str = "tests/fixtures/aws-auth-multidoc.yaml";
const LIST: &str = "tests/fixtures/kube-system-configmaps-list.yaml";
const COLLISIONS: &str = "tests/fixtures/aws-auth-name-collisions.yaml";
const NOT_A_CONFIGMAP: &str = "tests/fixtures/not-a-configmap.yaml";
const INVALID: &str = "tests/fixtures/mappings/invalid.yaml";
const CONFLICT_TIMESTAMPS: &str = "tests/fixtures/mappings/conflict-timestamps.yaml";
const CONFLICT_NAMES: &str = "tests/fixtures/mappings/conflict-names.yaml";
const TEAM: &str = "tests/fixtures/mappings/team.yaml";
const BAD_YAML: &str = "tests/fixtures/mappings/bad-yaml.yaml";
const WRONG_KIND: &str = "tests/fixtures/mappings/wrong-kind.yaml";

const SSO_ADMIN: &str =
    "arn:aws:iam::111122223333:role/AWSReservedSSO_AdministratorAccess_53b82e109c5e2cac";
const SSO_ADMIN_WITH_PATH: &str = "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_AdministratorAccess_53b82e109c5e2cac";
const NODE_ROLE: &str =
    "arn:aws:iam::111122223333:role/eks-prod-managed-ng-NodeInstanceRole-1A2B3C4D5E6F";
const FARGATE_ROLE: &str = "arn:aws:iam::111122223333:role/AmazonEKSFargatePodExecutionRole";

fn cli() -> Command {
    let mut cmd = Command::cargo_bin("aws-auth-operator").expect("the binary is built by cargo");
    cmd.current_dir(ROOT)
        .env_remove("RUST_LOG")
        .env_remove("AWS_AUTH_OPERATOR_LOG_FORMAT");
    cmd
}

/// Output of a finished command, checked for its exit code.
struct Run {
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], code: i32) -> Run {
    let output = cli().args(args).output().expect("the binary runs");
    let run = Run {
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    };
    assert_eq!(
        output.status.code(),
        Some(code),
        "aws-auth-operator {}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run
}

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).expect("fixture is readable")
}

fn temp_yaml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".yaml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file.flush().expect("flush temp file");
    file
}

fn read_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn path_of(file: &tempfile::NamedTempFile) -> &str {
    file.path().to_str().expect("temp path is UTF-8")
}

/// The data of the aws-auth ConfigMap in a manifest, after checking that it is kube-system/aws-auth.
fn aws_auth_data(manifest: &str) -> ConfigMapData {
    let configmaps = parse_configmaps(manifest, "manifest").expect("a ConfigMap manifest");
    let cm = configmaps
        .into_iter()
        .find(|c| c.name == "aws-auth")
        .expect("an aws-auth ConfigMap");
    assert_eq!(cm.namespace.as_deref(), Some("kube-system"));
    cm.data
}

/// The entries the authenticator reads from a manifest, in the renderer's order.
fn sorted_entries(manifest: &str) -> AwsAuthEntries {
    let parsed = parse_data(&aws_auth_data(manifest));
    assert!(
        parsed.diagnostics.is_empty(),
        "unexpected diagnostics: {:?}",
        parsed.diagnostics
    );
    let mut entries = parsed.entries;
    sort_entries(&mut entries);
    entries
}

fn imported_mappings(stdout: &str) -> Vec<IamIdentityMapping> {
    parse_mappings(stdout, "import output")
        .expect("import prints IamIdentityMapping documents")
        .mappings
}

fn name_of(mapping: &IamIdentityMapping) -> &str {
    mapping.metadata.name.as_deref().unwrap_or_default()
}

/// Kubernetes' IsDNS1123Subdomain: what a custom resource's metadata.name must be.
fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn role<'a>(
    entries: &'a AwsAuthEntries,
    arn: &str,
) -> Vec<&'a aws_auth_operator::awsauth::ArnMapping> {
    entries
        .roles
        .iter()
        .filter(|r| r.arn.eq_ignore_ascii_case(arn))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// crd
// ---------------------------------------------------------------------------------------------

#[test]
fn crd_output_matches_committed_crd_file_byte_for_byte() {
    let out = run(&["crd"], 0);
    let committed = read(CRD_FILE);
    assert!(
        out.stdout == committed,
        "{CRD_FILE} is stale: it differs from `aws-auth-operator crd`. Run `make crd` and commit the result."
    );
    assert!(out.stdout.contains("kind: CustomResourceDefinition"));
    assert!(out.stdout.contains("name: iamidentitymappings.awsauth.dev"));
}

// ---------------------------------------------------------------------------------------------
// render: the built-in examples
// ---------------------------------------------------------------------------------------------

#[test]
fn render_without_paths_renders_builtin_examples_into_kube_system_aws_auth() {
    let out = run(&["render"], 0);
    assert!(
        out.stderr
            .contains("no paths given: rendering the built-in examples")
    );
    assert!(
        out.stderr.contains("rendered 6 of 6 mappings"),
        "{}",
        out.stderr
    );
    let stdout = &out.stdout;
    assert!(stdout.starts_with("apiVersion: v1\n"), "{stdout}");
    assert!(stdout.contains("\nkind: ConfigMap\n"), "{stdout}");
    assert!(stdout.contains("  name: aws-auth\n"), "{stdout}");
    assert!(stdout.contains("  namespace: kube-system\n"), "{stdout}");
    // Like the controller, render claims no label on the shared aws-auth.
    assert!(!stdout.contains("app.kubernetes.io/managed-by"), "{stdout}");
    assert!(stdout.contains("awsauth.dev/managed: "));

    let data = aws_auth_data(stdout);
    let roles = &data["mapRoles"];
    // Role ARNs are written path-stripped: the authenticator never matches a path.
    assert!(
        roles.contains("- rolearn: \"arn:aws:iam::111122223333:role/eks-admin\"\n"),
        "{roles}"
    );
    assert!(!roles.contains("role/platform/"), "{roles}");
    assert!(
        roles.contains(
            "- rolearn: \"arn:aws:iam::111122223333:role/AWSReservedSSO_Developer_0123456789abcdef\"\n"
        ),
        "{roles}"
    );
    assert!(!roles.contains("aws-reserved"), "{roles}");
    assert!(
        roles.contains("  username: \"system:node:{{EC2PrivateDNSName}}\"\n"),
        "{roles}"
    );
    // User ARNs keep their path.
    assert!(
        data["mapUsers"].contains("- userarn: \"arn:aws:iam::111122223333:user/ops/alice\"\n"),
        "{}",
        data["mapUsers"]
    );
    // Account ids are quoted, or YAML 1.1 reads them as integers.
    assert_eq!(data["mapAccounts"], "- \"444455556666\"\n");
    // The rendered data is clean by the authenticator's rules.
    let parsed = parse_data(&data);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.entries.roles.len(), 4);
}

#[test]
fn render_examples_directory_equals_builtin_examples() {
    let builtin = run(&["render"], 0);
    let directory = run(&["render", "examples/"], 0);
    assert_eq!(directory.stdout, builtin.stdout);
    assert!(
        directory.stderr.contains(
            "examples/read-only.yaml: skipped rbac.authorization.k8s.io/v1 ClusterRoleBinding/read-only-view (not an IamIdentityMapping)"
        ),
        "{}",
        directory.stderr
    );
    assert!(!directory.stderr.contains("no paths given"));
}

/// A permission set waits for the running operator (IAM): `render` says so and exits 0, since
/// the file is correct; a permission set spec that is wrong is exit 1 like any invalid mapping.
#[test]
fn render_leaves_permission_sets_to_the_operator_and_exits_0() {
    let out = run(&["render", "examples/aws/sso-permission-set.yaml"], 0);
    assert!(
        out.stderr.contains(
            "sso-administrators: permission set AdministratorAccess is resolved to its IAM role by the running operator; not rendered offline"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "rendered 0 of 1 mappings (0 managed entries, 0 unmanaged kept; 1 left to the running operator, which resolves permission sets through IAM)"
        ),
        "{}",
        out.stderr
    );
    let text = std::fs::read_to_string("examples/aws/sso-permission-set.yaml").unwrap();
    let bad = text.replace(
        "username: \"sso-admin:{{SessionName}}\"",
        "username: \" x\"",
    );
    assert_ne!(bad, text);
    let file = temp_yaml(&bad);
    let out = run(&["render", path_of(&file)], 1);
    assert!(
        out.stderr.contains("sso-administrators: Invalid"),
        "{}",
        out.stderr
    );
}

/// `kubectl apply -f examples/` is not recursive: every example it applies must be able to
/// become Ready without AWS; the ones that need AWS live in examples/aws/.
#[test]
fn examples_that_need_aws_are_apart() {
    for entry in std::fs::read_dir("examples").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("ssoPermissionSet"),
                "{}: a permission set needs IAM; move it to examples/aws/",
                path.display()
            );
        }
    }
    let out = run(&["render", "examples/aws/"], 0);
    assert!(
        out.stderr.contains("rendered 0 of 1 mappings"),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// render: invalid mappings and conflicts
// ---------------------------------------------------------------------------------------------

#[test]
fn render_reports_each_invalid_mapping_and_still_renders_the_valid_one() {
    let out = run(&["render", INVALID], 1);
    let stderr = &out.stderr;
    assert!(stderr.contains("ci-session: Invalid: spec.arn: `arn:aws:sts::111122223333:assumed-role/GitHubActions/deploy-1234` is an STS assumed-role session ARN"), "{stderr}");
    assert!(
        stderr.contains(
            "map the role itself, `arn:aws:iam::111122223333:role/GitHubActions` (ArnIsAssumedRole)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "no-username: Invalid: spec.username: spec.username is required with spec.arn"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("(UsernameRequired)"), "{stderr}");
    assert!(
        stderr.contains("spaced-group: Invalid: spec.groups[0]: group `qa team` contains whitespace (GroupHasWhitespace)"),
        "{stderr}"
    );
    assert!(stderr.contains("rendered 1 of 4 mappings"), "{stderr}");

    let data = aws_auth_data(&out.stdout);
    let roles = &data["mapRoles"];
    assert!(roles.contains(
        "- rolearn: \"arn:aws:iam::111122223333:role/AWSReservedSSO_Developer_0123456789abcdef\"\n"
    ));
    for absent in ["GitHubActions", "data-engineers", "role/qa", "qa team"] {
        assert!(!roles.contains(absent), "{absent} rendered:\n{roles}");
    }
    assert_eq!(data.len(), 1, "only mapRoles: {data:?}");
}

#[test]
fn render_conflict_oldest_creation_timestamp_wins_over_name_order() {
    let out = run(&["render", CONFLICT_TIMESTAMPS], 1);
    assert!(
        out.stderr.contains(
            "platform-admins-v2: Conflict: IamIdentityMapping `platform-admins` already maps arn:aws:iam::111122223333:role/eks-admin (the oldest mapping wins)"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("rendered 1 of 2 mappings"));
    let roles = &aws_auth_data(&out.stdout)["mapRoles"];
    assert!(
        roles.contains("username: \"platform:{{SessionName}}\""),
        "{roles}"
    );
    assert!(!roles.contains("platform-v2"), "{roles}");
}

#[test]
fn render_conflict_without_timestamps_first_name_wins() {
    let out = run(&["render", CONFLICT_NAMES], 1);
    assert!(
        out.stderr.contains(
            "zz-ops-alice: Conflict: IamIdentityMapping `alice` already maps arn:aws:iam::111122223333:user/ops/alice"
        ),
        "{}",
        out.stderr
    );
    let users = &aws_auth_data(&out.stdout)["mapUsers"];
    assert!(users.contains("username: \"alice\"\n"), "{users}");
    assert!(!users.contains("alice-admin"), "{users}");
    assert!(!users.contains("system:masters"), "{users}");
}

#[test]
fn render_conflict_mapping_with_timestamp_beats_one_without() {
    // `a-from-file` sorts first by name but has no creationTimestamp (never applied): the
    // mapping that exists in the cluster wins.
    let file = temp_yaml(
        "apiVersion: awsauth.dev/v1alpha1
kind: IamIdentityMapping
metadata:
  name: a-from-file
spec:
  arn: arn:aws:iam::111122223333:role/auditor
  username: \"file:{{SessionName}}\"
---
apiVersion: awsauth.dev/v1alpha1
kind: IamIdentityMapping
metadata:
  name: z-in-cluster
  creationTimestamp: \"2024-05-01T00:00:00Z\"
spec:
  arn: arn:aws:iam::111122223333:role/auditor
  username: \"cluster:{{SessionName}}\"
",
    );
    let out = run(&["render", path_of(&file)], 1);
    assert!(
        out.stderr
            .contains("a-from-file: Conflict: IamIdentityMapping `z-in-cluster` already maps"),
        "{}",
        out.stderr
    );
    assert!(aws_auth_data(&out.stdout)["mapRoles"].contains("cluster:{{SessionName}}"));
}

#[test]
fn render_same_mapping_name_twice_is_unreadable_input() {
    let out = run(&["render", "examples/", "examples/platform-admin.yaml"], 2);
    assert!(
        out.stderr.contains(
            "error: examples/platform-admin.yaml: IamIdentityMapping `platform-admin` is defined twice"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// render --live
// ---------------------------------------------------------------------------------------------

#[test]
fn render_live_keeps_unmanaged_entries_and_takes_over_existing_principal() {
    let out = run(&["render", "--live", EKS, TEAM], 0);
    assert!(
        out.stderr.contains(&format!(
            "sso-admins: takes over the unmanaged entry of {SSO_ADMIN} (mapRoles) (kept: it comes back if the mapping is deleted)"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("rendered 2 of 2 mappings (2 managed entries, 4 unmanaged kept)"),
        "{}",
        out.stderr
    );

    let entries = sorted_entries(&out.stdout);
    // EKS-managed node group and Fargate roles are preserved exactly.
    let node = role(&entries, NODE_ROLE);
    assert_eq!(node.len(), 1);
    assert_eq!(node[0].username, "system:node:{{EC2PrivateDNSName}}");
    assert_eq!(node[0].groups, ["system:bootstrappers", "system:nodes"]);
    let fargate = role(&entries, FARGATE_ROLE);
    assert_eq!(fargate.len(), 1);
    assert_eq!(fargate[0].username, "system:node:{{SessionName}}");
    assert_eq!(
        fargate[0].groups,
        [
            "system:bootstrappers",
            "system:nodes",
            "system:node-proxier"
        ]
    );
    assert_eq!(entries.accounts, ["444455556666"]);
    // The taken-over entry now says what the mapping says, once.
    let admin = role(&entries, SSO_ADMIN);
    assert_eq!(admin.len(), 1);
    assert_eq!(admin[0].username, "admin:{{SessionName}}");
    assert_eq!(admin[0].groups, ["system:masters"]);
    assert_eq!(
        role(
            &entries,
            "arn:aws:iam::111122223333:role/AWSReservedSSO_Developer_0123456789abcdef"
        )
        .len(),
        1
    );

    // Sections the plan does not change keep their text byte for byte.
    let live = aws_auth_data(&read(EKS));
    let rendered = aws_auth_data(&out.stdout);
    assert_eq!(rendered["mapUsers"], live["mapUsers"]);
    assert_eq!(rendered["mapAccounts"], live["mapAccounts"]);
    assert!(out.stdout.contains("awsauth.dev/managed: "));
}

#[test]
fn render_live_is_idempotent_on_its_own_output() {
    let first = run(&["render", "--live", EKS, TEAM], 0);
    let live = temp_yaml(&first.stdout);
    let second = run(&["render", "--live", path_of(&live), TEAM], 0);
    assert_eq!(second.stdout, first.stdout);
    assert!(!second.stderr.contains("takes over"), "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("rendered 2 of 2 mappings (2 managed entries, 4 unmanaged kept)"),
        "{}",
        second.stderr
    );
}

/// The first render took over the hand-written SSO admin entry: deleting its mapping gives
/// that entry back, unmanaged, while an entry the operator created is removed.
#[test]
fn render_live_gives_back_a_taken_over_entry_when_its_mapping_is_gone() {
    let first = run(&["render", "--live", EKS, TEAM], 0);
    let live = temp_yaml(&first.stdout);
    let original = role(&sorted_entries(&read_file(EKS)), SSO_ADMIN)[0].clone();
    let only_developers = temp_yaml(
        "apiVersion: awsauth.dev/v1alpha1
kind: IamIdentityMapping
metadata:
  name: developers
spec:
  arn: arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Developer_0123456789abcdef
  username: \"developer:{{SessionName}}\"
  groups: [developers]
",
    );
    let out = run(
        &[
            "render",
            "--live",
            path_of(&live),
            path_of(&only_developers),
        ],
        0,
    );
    assert!(
        out.stderr.contains(&format!(
            "gives back the entry a deleted mapping had taken over: {SSO_ADMIN} (mapRoles)"
        )),
        "{}",
        out.stderr
    );
    let entries = sorted_entries(&out.stdout);
    assert_eq!(role(&entries, SSO_ADMIN), [&original]);
    // Unmanaged entries are never removed.
    assert_eq!(role(&entries, NODE_ROLE).len(), 1);
    assert_eq!(role(&entries, FARGATE_ROLE).len(), 1);

    // With nothing left to render, the developers entry the operator created is removed, and
    // the given-back admin entry is now unmanaged: it stays.
    let second_live = temp_yaml(&out.stdout);
    let none = temp_yaml("");
    let out = run(
        &["render", "--live", path_of(&second_live), path_of(&none)],
        0,
    );
    assert!(out.stderr.contains("removed arn:aws:iam::111122223333:role/AWSReservedSSO_Developer_0123456789abcdef from mapRoles"), "{}", out.stderr);
    let entries = sorted_entries(&out.stdout);
    assert_eq!(role(&entries, SSO_ADMIN).len(), 1);
}

/// `spec.adoptExistingEntry: true` (what `import` writes) adopts the entry for good: deleting
/// the mapping removes it.
#[test]
fn render_live_removes_an_adopted_entry_when_its_mapping_is_gone() {
    let adopting = temp_yaml(&read_file(TEAM).replace(
        "name: sso-admins\nspec:\n",
        "name: sso-admins\nspec:\n  adoptExistingEntry: true\n",
    ));
    assert!(read_file(path_of(&adopting)).contains("adoptExistingEntry"));
    let first = run(&["render", "--live", EKS, path_of(&adopting)], 0);
    assert!(
        first
            .stderr
            .contains("sso-admins: takes over the unmanaged entry")
            && !first.stderr.contains("(kept:"),
        "{}",
        first.stderr
    );
    let live = temp_yaml(&first.stdout);
    let none = temp_yaml("");
    let out = run(&["render", "--live", path_of(&live), path_of(&none)], 0);
    assert!(
        out.stderr
            .contains(&format!("removed {SSO_ADMIN} from mapRoles")),
        "{}",
        out.stderr
    );
    assert!(role(&sorted_entries(&out.stdout), SSO_ADMIN).is_empty());
}

#[test]
fn render_protected_arn_refuses_mapping_and_leaves_live_entry_unchanged() {
    // The protected principal may be given path-stripped (as in aws-auth) or with its path.
    for protected in [SSO_ADMIN, SSO_ADMIN_WITH_PATH] {
        let out = run(
            &["render", "--live", EKS, "--protected-arn", protected, TEAM],
            1,
        );
        assert!(
            out.stderr.contains(&format!(
                "sso-admins: ProtectedPrincipal: {SSO_ADMIN} is a protected principal (--protected-arn)"
            )),
            "--protected-arn {protected}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("takes over"), "{}", out.stderr);
        let entries = sorted_entries(&out.stdout);
        let admin = role(&entries, SSO_ADMIN);
        assert_eq!(admin.len(), 1);
        assert_eq!(admin[0].username, "sso-admin:{{SessionName}}");
        assert_eq!(admin[0].groups, ["system:masters"]);
        // The other mapping is still rendered.
        assert_eq!(
            role(
                &entries,
                "arn:aws:iam::111122223333:role/AWSReservedSSO_Developer_0123456789abcdef"
            )
            .len(),
            1
        );
    }
}

#[test]
fn render_denied_groups_rejects_mapping_with_group_not_allowed() {
    let out = run(
        &[
            "render",
            "--live",
            EKS,
            "--denied-groups",
            "system:masters",
            TEAM,
        ],
        1,
    );
    assert!(
        out.stderr.contains(
            "sso-admins: PolicyViolation: group `system:masters` is not allowed: it matches --denied-groups `system:masters`"
        ),
        "{}",
        out.stderr
    );
    let admin_entries = sorted_entries(&out.stdout);
    let admin = role(&admin_entries, SSO_ADMIN);
    assert_eq!(admin.len(), 1);
    assert_eq!(admin[0].username, "sso-admin:{{SessionName}}");
}

#[test]
fn render_allowed_groups_rejects_mapping_with_group_outside_the_list() {
    let out = run(&["render", "--allowed-groups", "developers", TEAM], 1);
    assert!(
        out.stderr.contains(
            "sso-admins: PolicyViolation: group `system:masters` is not allowed: it matches none of --allowed-groups `developers`"
        ),
        "{}",
        out.stderr
    );
    let roles = &aws_auth_data(&out.stdout)["mapRoles"];
    assert!(
        roles.contains("AWSReservedSSO_Developer_0123456789abcdef"),
        "{roles}"
    );
    assert!(!roles.contains("AdministratorAccess"), "{roles}");
}

#[test]
fn render_invalid_settings_are_unreadable_input() {
    cli()
        .args(["render", "--denied-groups", "(", "examples/"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(
            "error: --denied-groups `(` is not a valid regular expression",
        ));
    cli()
        .args([
            "render",
            "--protected-arn",
            "arn:aws:sts::111122223333:assumed-role/eks-admin/alice",
            "examples/",
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(
            "error: --protected-arn `arn:aws:sts::111122223333:assumed-role/eks-admin/alice` is neither an IAM role/user ARN nor a 12-digit account id",
        ));
}

#[test]
fn render_live_with_malformed_key_writes_nothing() {
    let out = run(&["render", "--live", PROBLEMS, TEAM], 1);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    for part in [
        "error: the live aws-auth cannot be parsed and no revision in history parses cleanly to restore its unmanaged entries from: nothing is written until the key is fixed by hand: mapUsers (",
        "line 3, column 2): error YamlError",
        "drops every entry of mapUsers",
    ] {
        assert!(
            out.stderr.contains(part),
            "`{part}` missing:\n{}",
            out.stderr
        );
    }
}

#[test]
fn render_live_file_without_aws_auth_is_unreadable_input() {
    let out = run(&["render", "--live", NOT_A_CONFIGMAP, TEAM], 2);
    assert!(
        out.stderr.contains(&format!(
            "error: {NOT_A_CONFIGMAP}: no aws-auth ConfigMap found"
        )),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// render: unreadable input
// ---------------------------------------------------------------------------------------------

#[test]
fn render_malformed_yaml_exits_2_naming_the_file() {
    cli()
        .args(["render", BAD_YAML])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(format!("error: {BAD_YAML}: not valid YAML")))
        .stderr(contains("line 8"));
}

#[test]
fn render_misspelled_kind_exits_2_instead_of_skipping_the_mapping() {
    cli()
        .args(["render", "examples/platform-admin.yaml", WRONG_KIND])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(format!(
            "error: {WRONG_KIND}: document 1: expected apiVersion awsauth.dev/v1alpha1, kind IamIdentityMapping; found apiVersion `awsauth.dev/v1alpha1`, kind `IamIdentityMaping`"
        )));
}

#[test]
fn render_nonexistent_path_exits_2_naming_the_path() {
    cli()
        .args(["render", "tests/fixtures/mappings/does-not-exist.yaml"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(
            "error: tests/fixtures/mappings/does-not-exist.yaml: ",
        ));
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

/// `validate` of the fixture with every classic mistake: exit 1, the text report.
fn validate_problems() -> String {
    run(&["validate", PROBLEMS], 1).stdout
}

/// The report line for the diagnostic at `location` (`mapRoles[2]`, `maproles`) with `reason`
/// holds every one of `parts`. Lines read `file:line:col: severity REASON: location...: message`.
fn assert_reported(report: &str, location: &str, reason: &str, parts: &[&str]) {
    let line = report
        .lines()
        .find(|l| {
            l.contains(&format!(" {reason}: {location}:"))
                || l.contains(&format!(" {reason}: {location} ("))
        })
        .unwrap_or_else(|| panic!("no {reason} at {location} in:\n{report}"));
    for part in parts {
        assert!(line.contains(part), "`{part}` missing from `{line}`");
    }
}

#[test]
fn validate_clean_kubectl_output_is_ok() {
    // kubectl metadata (resourceVersion, uid, the last-applied-configuration JSON copy) is ignored.
    let out = run(&["validate", EKS], 0);
    assert_eq!(
        out.stdout,
        format!("{EKS}: ConfigMap kube-system/aws-auth: ok (3 roles, 1 users, 1 accounts)\n")
    );
}

#[test]
fn validate_counts_problems_and_entries_the_authenticator_still_reads() {
    let report = validate_problems();
    // mapUsers is dropped whole by its YAML error; mapRoles still counts.
    let header = report.lines().next().unwrap_or_default();
    assert!(
        header.starts_with(&format!("{PROBLEMS}: ConfigMap kube-system/aws-auth: ")),
        "{report}"
    );
    assert!(
        header.ends_with(
            " problem(s) (7 roles, 0 users, 1 accounts as the authenticator reads them)"
        ),
        "{report}"
    );
    // One `file:line:col: error ...` line per problem, and the header counts them.
    let problems = report
        .lines()
        .filter(|l| l.starts_with(&format!("{PROBLEMS}:")) && l.contains(": error "))
        .count();
    assert_eq!(problems, 7, "{report}");
    assert!(
        header.contains(&format!(": {problems} problem(s) ")),
        "{report}"
    );
}

#[test]
fn validate_reports_unquoted_on_group_as_yaml11_coercion() {
    let report = validate_problems();
    assert_reported(
        &report,
        "mapRoles[2]",
        "Yaml11Coercion",
        &[
            "line 13, column 7",
            "error Yaml11Coercion",
            "group #1 `on` is unquoted",
            "boolean",
            "turns this group into an empty string (the other groups still apply)",
            "Quote it: \"on\"",
        ],
    );
    // The blanked group is reported once, as the coercion, not again as an empty group.
    assert!(!report.contains("EmptyGroup"), "{report}");
}

#[test]
/// mapAccounts is decoded straight into strings: an unquoted 12-digit id is read as exactly
/// that text, so it is no problem at all and it counts as an account.
fn validate_accepts_an_unquoted_account_id_as_the_authenticator_reads_it() {
    let report = validate_problems();
    assert!(!report.contains("mapAccounts"), "{report}");
    assert!(
        report
            .lines()
            .next()
            .unwrap_or_default()
            .contains("1 accounts"),
        "{report}"
    );
}

#[test]
fn validate_reports_role_arn_with_path_and_suggests_stripped_arn() {
    assert_reported(
        &validate_problems(),
        "mapRoles[1]",
        "RoleArnHasPath",
        &[
            "line 6, column 3",
            "error RoleArnHasPath",
            "`arn:aws:iam::111122223333:role/platform/eks-admin` has the path `/platform/`",
            "Write `arn:aws:iam::111122223333:role/eks-admin`",
        ],
    );
}

#[test]
fn validate_reports_mis_cased_key() {
    assert_reported(
        &validate_problems(),
        "maproles",
        "MisCasedKey",
        &[
            "error MisCasedKey",
            "ignores `maproles`",
            "rename the key to `mapRoles`",
        ],
    );
}

#[test]
fn validate_reports_yaml_error_with_position_and_dropped_key() {
    assert_reported(
        &validate_problems(),
        "mapUsers",
        "YamlError",
        &[
            "line 3, column 2",
            "error YamlError",
            "invalid YAML",
            "the authenticator drops every entry of mapUsers",
        ],
    );
}

#[test]
fn validate_reports_role_arns_differing_only_in_case_as_duplicates() {
    assert_reported(
        &validate_problems(),
        "mapRoles[3]",
        "DuplicatePrincipal",
        &[
            "error DuplicatePrincipal",
            "`arn:aws:iam::111122223333:role/Deployer` is overridden by mapRoles[4] (`arn:aws:iam::111122223333:role/deployer`)",
        ],
    );
}

#[test]
fn validate_reports_placeholder_in_arn() {
    assert_reported(
        &validate_problems(),
        "mapRoles[5]",
        "PlaceholderInArn",
        &[
            "line 22, column 3",
            "error PlaceholderInArn",
            "`arn:aws:iam::<ACCOUNT_ID>:role/ci` still holds the placeholder `<ACCOUNT_ID>`",
        ],
    );
}

#[test]
fn validate_reports_unknown_template_variable() {
    assert_reported(
        &validate_problems(),
        "mapRoles[6]",
        "UnknownTemplateVariable",
        &[
            "line 26, column 3",
            "error UnknownTemplateVariable",
            "username `reader:{{Foo}}` uses `{{Foo}}`",
            "does not substitute",
        ],
    );
}

#[test]
fn validate_multi_document_file_checks_only_aws_auth() {
    let out = run(&["validate", MULTIDOC], 0);
    assert_eq!(
        out.stdout,
        format!("{MULTIDOC}: ConfigMap kube-system/aws-auth: ok (2 roles, 1 users, 0 accounts)\n")
    );
}

#[test]
fn validate_kubectl_list_output_checks_aws_auth_item() {
    let out = run(&["validate", LIST], 1);
    assert!(
        out.stdout.starts_with(&format!(
            "{LIST}: ConfigMap kube-system/aws-auth: 1 problem(s) (3 roles, 0 users, 0 accounts"
        )),
        "{}",
        out.stdout
    );
    assert_reported(
        &out.stdout,
        "mapRoles[2]",
        "RoleArnHasPath",
        &[
            "has the path `/aws-reserved/sso.amazonaws.com/eu-west-1/`",
            &format!("Write `{SSO_ADMIN}`"),
        ],
    );
    assert!(!out.stdout.contains("coredns"), "{}", out.stdout);
}

#[test]
fn validate_several_files_reports_each_and_fails_if_any_has_problems() {
    let out = run(&["validate", EKS, PROBLEMS], 1);
    assert!(
        out.stdout
            .contains(&format!("{EKS}: ConfigMap kube-system/aws-auth: ok"))
    );
    assert!(out.stdout.contains(&format!(
        "{PROBLEMS}: ConfigMap kube-system/aws-auth: 7 problem(s)"
    )));
}

#[test]
fn validate_json_output_is_parseable_with_reason_severity_key_line_message() {
    let out = run(&["validate", "--output", "json", PROBLEMS], 1);
    let reports: Value = serde_json::from_str(&out.stdout).expect("validate -o json prints JSON");
    let reports = reports.as_array().expect("a JSON array of reports");
    assert_eq!(reports.len(), 1);
    let report = &reports[0];
    assert_eq!(report["file"], PROBLEMS);
    assert_eq!(report["configmap"], "kube-system/aws-auth");
    assert_eq!(report["roles"], 7);
    assert_eq!(report["users"], 0);
    assert_eq!(report["accounts"], 1);
    let diagnostics = report["diagnostics"].as_array().expect("diagnostics array");
    assert_eq!(diagnostics.len(), 7);
    for d in diagnostics {
        for field in ["reason", "severity", "key", "message"] {
            assert!(d[field].is_string(), "{field} missing in {d}");
        }
        assert!(
            matches!(d["severity"].as_str(), Some("error" | "warning")),
            "{d}"
        );
    }
    let reasons: BTreeSet<&str> = diagnostics
        .iter()
        .filter_map(|d| d["reason"].as_str())
        .collect();
    let expected: BTreeSet<&str> = [
        "Yaml11Coercion",
        "RoleArnHasPath",
        "PlaceholderInArn",
        "UnknownTemplateVariable",
        "YamlError",
        "MisCasedKey",
        "DuplicatePrincipal",
    ]
    .into();
    assert_eq!(reasons, expected);

    let find = |reason: &str| {
        diagnostics
            .iter()
            .find(|d| d["reason"] == reason)
            .unwrap_or_else(|| panic!("no {reason}"))
    };
    let path = find("RoleArnHasPath");
    assert_eq!(path["severity"], "error");
    assert_eq!(path["key"], "mapRoles");
    assert_eq!(path["entry"], 1);
    assert_eq!(path["line"], 6);
    assert_eq!(path["column"], 3);
    assert!(
        path["message"]
            .as_str()
            .is_some_and(|m| m.contains("Write `arn:aws:iam::111122223333:role/eks-admin`"))
    );
    let yaml = find("YamlError");
    assert_eq!(yaml["key"], "mapUsers");
    assert_eq!(yaml["line"], 3);
    assert_eq!(yaml["column"], 2);
    assert!(yaml.get("entry").is_none_or(Value::is_null));
    assert_eq!(find("MisCasedKey")["key"], "maproles");
    let coercions: Vec<&Value> = diagnostics
        .iter()
        .filter(|d| d["reason"] == "Yaml11Coercion")
        .collect();
    assert_eq!(coercions.len(), 1);
    assert!(
        coercions
            .iter()
            .all(|d| d["line"].is_u64() && d["column"].is_u64())
    );
}

#[test]
fn validate_json_output_of_clean_input_has_no_diagnostics() {
    let out = run(&["validate", "-o", "json", EKS], 0);
    let reports: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(reports[0]["diagnostics"], Value::Array(vec![]));
    assert_eq!(reports[0]["roles"], 3);
}

#[test]
fn validate_missing_file_exits_2() {
    cli()
        .args(["validate", "tests/fixtures/no-such-aws-auth.yaml"])
        .assert()
        .code(2)
        .stderr(contains("error: tests/fixtures/no-such-aws-auth.yaml: "));
}

#[test]
fn validate_file_that_is_not_yaml_exits_2() {
    cli()
        .args(["validate", BAD_YAML])
        .assert()
        .code(2)
        .stderr(contains(format!("error: {BAD_YAML}: not valid YAML")));
}

#[test]
fn validate_file_without_configmap_exits_2() {
    cli()
        .args(["validate", NOT_A_CONFIGMAP])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains(format!(
            "error: {NOT_A_CONFIGMAP}: no aws-auth data (no ConfigMap named aws-auth"
        )));
}

#[test]
fn validate_without_files_is_a_usage_error() {
    cli()
        .arg("validate")
        .assert()
        .code(2)
        .stderr(contains("<FILES>"));
}

const FRAGMENT: &str = "tests/fixtures/validate/fragment.yaml";
const MERGE_PATCH: &str = "tests/fixtures/validate/merge-patch.json";
const JSON_PATCH: &str = "tests/fixtures/validate/json-patch.json";
const MAPPINGS_DIR: &str = "tests/fixtures/validate/mappings";

/// The inputs of the golden files: every input shape in one run.
const GOLDEN_INPUTS: [&str; 6] = [
    PROBLEMS,
    LIST,
    FRAGMENT,
    MERGE_PATCH,
    JSON_PATCH,
    MAPPINGS_DIR,
];

#[test]
fn validate_reads_a_data_only_patch_fragment_and_says_so() {
    let out = run(&["validate", FRAGMENT], 1);
    assert!(
        out.stdout.starts_with(&format!(
            "{FRAGMENT}: read as a data-only patch fragment: 2 problem(s) (2 roles, 1 users, 0 accounts"
        )),
        "{}",
        out.stdout
    );
    // `mapRoles[1]` is line 6 of the key's text, line 9 of the file; `off` is line 17.
    assert!(
        out.stdout.contains(&format!(
            "\n{FRAGMENT}:9:7: error RoleArnHasPath: mapRoles[1] (mapRoles line 6, column 3): "
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "\n{FRAGMENT}:17:11: error Yaml11Coercion: mapUsers[0] (mapUsers line 4, column 7): "
        )),
        "{}",
        out.stdout
    );
}

#[test]
fn validate_reads_json_merge_and_json_patches() {
    let out = run(&["validate", MERGE_PATCH], 1);
    assert!(
        out.stdout.starts_with(&format!(
            "{MERGE_PATCH}: read as a data-only patch fragment: 1 problem(s)"
        )),
        "{}",
        out.stdout
    );
    // A JSON string has no exact mapping: the line of the key, the key-relative position kept.
    assert!(
        out.stdout.contains(&format!(
            "{MERGE_PATCH}:3:6: error PlaceholderInArn: mapRoles[0] (mapRoles line 1, column 3): "
        )),
        "{}",
        out.stdout
    );
    let out = run(&["validate", JSON_PATCH], 0);
    assert_eq!(
        out.stdout,
        format!("{JSON_PATCH}: read as a JSON patch of data: ok (0 roles, 1 users, 0 accounts)\n")
    );
}

#[test]
fn validate_checks_mappings_in_a_directory_with_the_controller_rules_and_duplicates_across_files() {
    let out = run(&["validate", MAPPINGS_DIR], 1);
    let team = format!("{MAPPINGS_DIR}/10-team.yaml");
    let ci = format!("{MAPPINGS_DIR}/20-ci.yaml");
    assert!(
        out.stdout
            .contains(&format!("{team}: 2 IamIdentityMapping(s): ok\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("{ci}: 2 IamIdentityMapping(s): 3 problem(s)\n")),
        "{}",
        out.stdout
    );
    // A field the CRD does not define: the API server would refuse or drop it.
    assert!(
        out.stdout.contains(&format!(
            "{ci}:9: error UnknownField: IamIdentityMapping ci: spec.adoptExisting: `adoptExisting` is not a field"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "{ci}:7: error ArnIsAssumedRole: IamIdentityMapping ci: spec.arn: "
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "{ci}:21: error DuplicatePrincipal: IamIdentityMapping platform-admins-copy: spec.arn: maps the same principal (role arn:aws:iam::111122223333:role/platform-admins) as IamIdentityMapping `platform-admins` ({team}:2)"
        )),
        "{}",
        out.stdout
    );
    // The unrelated ConfigMap and the text file of the directory are skipped.
    assert!(!out.stdout.contains("30-unrelated"), "{}", out.stdout);
    assert!(!out.stdout.contains("notes.txt"), "{}", out.stdout);
}

#[test]
fn validate_same_mapping_name_in_two_files_is_a_duplicate_name_not_a_duplicate_principal() {
    let mapping = "apiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMapping\nmetadata:\n  name: ops\nspec:\n  account: \"111122223333\"\n";
    let (a, b) = (temp_yaml(mapping), temp_yaml(mapping));
    let out = run(&["validate", path_of(&a), path_of(&b)], 1);
    let expected = format!(
        "{}:1: error DuplicateName: IamIdentityMapping ops: metadata.name: IamIdentityMapping `ops` is also defined at {}:1: names are unique in a cluster",
        path_of(&b),
        path_of(&a)
    );
    assert!(out.stdout.contains(&expected), "{}", out.stdout);
    assert!(!out.stdout.contains("DuplicatePrincipal"), "{}", out.stdout);
}

#[test]
fn validate_mixed_file_checks_configmap_and_mappings() {
    let text = format!("{}---\n{}", read(EKS), read(INVALID));
    let file = temp_yaml(&text);
    let out = run(&["validate", path_of(&file)], 1);
    assert!(
        out.stdout
            .contains(": ConfigMap kube-system/aws-auth: ok (3 roles, 1 users, 1 accounts)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("IamIdentityMapping(s): "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("error ArnIsAssumedRole: IamIdentityMapping ci-session: spec.arn: "),
        "{}",
        out.stdout
    );
}

#[test]
fn validate_unrelated_named_file_exits_2_unless_ignored() {
    run(&["validate", NOT_A_CONFIGMAP], 2);
    let out = run(&["validate", "--ignore-unrelated", NOT_A_CONFIGMAP, EKS], 0);
    assert_eq!(
        out.stdout,
        format!("{EKS}: ConfigMap kube-system/aws-auth: ok (3 roles, 1 users, 1 accounts)\n")
    );
    let out = run(&["validate", "--ignore-unrelated", NOT_A_CONFIGMAP], 0);
    assert_eq!(out.stdout, "");
}

/// Compares `actual` with the golden file, or writes it when `UPDATE_GOLDEN` is set.
fn assert_golden(path: &str, actual: &str) {
    let full = format!("{ROOT}/{path}");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&full, actual).expect("write golden file");
    }
    let expected = std::fs::read_to_string(&full)
        .unwrap_or_else(|e| panic!("{path}: {e} (run with UPDATE_GOLDEN=1)"));
    assert_eq!(
        actual, expected,
        "{path} differs (run with UPDATE_GOLDEN=1 and review the diff)"
    );
}

#[test]
fn validate_output_formats_match_golden_files() {
    for (format, golden) in [
        ("text", "tests/fixtures/validate/expected.txt"),
        ("json", "tests/fixtures/validate/expected.json"),
        ("github", "tests/fixtures/validate/expected.github"),
        ("sarif", "tests/fixtures/validate/expected.sarif"),
    ] {
        let mut args = vec!["validate", "--output", format];
        args.extend(GOLDEN_INPUTS);
        assert_golden(golden, &run(&args, 1).stdout);
    }
}

/// The key-relative text line `line` of `key` in the aws-auth data of `file`.
fn key_text_line(file: &str, key: &str, line: usize) -> String {
    let text = read(file);
    let configmaps = parse_configmaps(&text, file).expect("a manifest");
    let data = match configmaps.iter().find(|c| c.name == "aws-auth") {
        Some(cm) => cm.data.clone(),
        // A patch fragment: its `data` as it is.
        None => {
            let value: Value =
                serde_json::to_value(serde_saphyr::from_str::<Value>(&text).expect("YAML or JSON"))
                    .expect("JSON");
            serde_json::from_value(value["data"].clone()).expect("string data")
        }
    };
    data[key]
        .lines()
        .nth(line - 1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn validate_file_positions_point_at_the_offending_text_of_the_file() {
    let mut args = vec!["validate", "--output", "json"];
    args.extend(GOLDEN_INPUTS);
    let reports: Value = serde_json::from_str(&run(&args, 1).stdout).expect("JSON");
    let mut exact = 0;
    for report in reports.as_array().expect("reports") {
        let file = report["file"].as_str().expect("file");
        let lines: Vec<String> = read(file).lines().map(str::to_string).collect();
        for d in report["diagnostics"].as_array().into_iter().flatten() {
            let file_line = d["file_line"]
                .as_u64()
                .expect("every diagnostic has a file line") as usize;
            let at = &lines[file_line - 1];
            let key = d["key"].as_str().expect("key");
            let file_column = d["file_column"].as_u64().expect("file column") as usize;
            if d["file_position_exact"] == true && d["line"].is_null() {
                // A diagnostic of a whole entry points at the entry's `- `, and the entry
                // it names is that one.
                let item = at.get(file_column - 1..).unwrap_or_default();
                assert!(item.starts_with("- "), "{file}:{file_line}: `{at}`: {d}");
                let arn = item.rsplit(' ').next().unwrap_or_default();
                assert!(
                    d["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&format!("`{arn}`"))),
                    "{file}:{file_line}: `{at}`: {d}"
                );
                exact += 1;
            } else if d["file_position_exact"] == true {
                // The file from the column on is the key's text from its column on.
                let (line, column) = (
                    d["line"].as_u64().unwrap_or(0) as usize,
                    d["column"].as_u64().unwrap_or(0) as usize,
                );
                let expected = key_text_line(file, key, line);
                assert_eq!(
                    at.get(file_column - 1..),
                    expected.get(column - 1..),
                    "{file}:{file_line}: {d}"
                );
                exact += 1;
            } else {
                // Only the key's position is known: it points at the key.
                assert!(
                    at.get(file_column - 1..)
                        .is_some_and(|rest| rest.starts_with(key)),
                    "{file}:{file_line}:{file_column} `{at}` is not the key {key}: {d}"
                );
            }
        }
        for p in report["problems"].as_array().into_iter().flatten() {
            let file_line = p["file_line"].as_u64().expect("file line") as usize;
            let field = p["field"].as_str().expect("field");
            let name = field.trim_start_matches("spec.");
            assert!(
                lines[file_line - 1]
                    .trim_start()
                    .starts_with(&format!("{name}:")),
                "{file}:{file_line}: {p}"
            );
        }
    }
    assert!(exact >= 6, "most positions are exact: {exact}");
}

#[test]
fn every_subcommand_help_shows_an_example() {
    for command in [
        "crd", "render", "validate", "import", "history", "rollback", "run", "migrate",
    ] {
        let out = run(&[command, "--help"], 0);
        assert!(
            out.stdout.contains("Example"),
            "{command} --help:\n{}",
            out.stdout
        );
    }
    let out = run(&["migrate", "plan", "--help"], 0);
    assert!(out.stdout.contains("Example:\n  "), "{}", out.stdout);
    let out = run(&["validate", "--help"], 0);
    assert!(
        out.stdout
            .contains("Examples:\n  aws-auth-operator validate "),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("github"), "{}", out.stdout);
}

#[test]
fn pre_commit_hook_names_the_validate_command() {
    let hooks: Value = serde_saphyr::from_str(&read(".pre-commit-hooks.yaml")).expect("hooks YAML");
    let hook = hooks
        .as_array()
        .and_then(|h| h.iter().find(|h| h["id"] == "aws-auth-validate"))
        .expect("an aws-auth-validate hook");
    let entry = hook["entry"].as_str().expect("entry");
    let mut words = entry.split_whitespace();
    assert_eq!(words.next(), Some("aws-auth-operator"), "{entry}");
    let rest: Vec<&str> = words.collect();
    assert_eq!(rest.first(), Some(&"validate"), "{entry}");
    // The command exists: the binary accepts the entry's arguments.
    let mut args = rest.clone();
    args.push("--help");
    run(&args, 0);
    // pre-commit matches `files` with Python's re.search; this pattern is plain enough for Rust's.
    let files = regex::Regex::new(hook["files"].as_str().expect("files pattern")).expect("regex");
    for name in ["aws-auth.yaml", "k8s/patch.yml", "patch.json"] {
        assert!(files.is_match(name), "{name} not selected");
    }
    assert!(!files.is_match("README.md"));
    assert!(
        matches!(hook["language"].as_str(), Some("rust" | "system")),
        "{hook}"
    );
}

#[test]
fn import_reads_a_data_only_patch_fragment_and_says_so() {
    let out = run(&["import", FRAGMENT], 1);
    assert!(
        out.stderr.contains(&format!(
            "note: {FRAGMENT}: read as a data-only patch fragment"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(imported_mappings(&out.stdout).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// import
// ---------------------------------------------------------------------------------------------

#[test]
fn import_clean_aws_auth_gives_one_mapping_per_entry() {
    let out = run(&["import", EKS], 0);
    assert!(
        out.stderr.contains("imported 5 entries, 0 not imported"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not imported:"), "{}", out.stderr);
    // EKS-managed node roles are imported, with a hint to leave them alone.
    for (index, node_role) in [NODE_ROLE, FARGATE_ROLE].into_iter().enumerate() {
        assert!(
            out.stderr.contains(&format!(
                "warning: mapRoles[{index}]: {node_role} is a node role"
            )),
            "{}",
            out.stderr
        );
    }

    let mappings = imported_mappings(&out.stdout);
    let names: Vec<&str> = mappings.iter().map(name_of).collect();
    assert_eq!(
        names,
        [
            "role-111122223333-eks-prod-managed-ng-nodeinstancerole-1a2b3c4d5e6f",
            "role-111122223333-amazoneksfargatepodexecutionrole",
            "role-111122223333-awsreservedsso-administratoraccess-53b82e109c5e2cac",
            "user-111122223333-ops-alice",
            "account-444455556666",
        ]
    );
    let sources: Vec<&str> = mappings
        .iter()
        .map(|m| {
            m.metadata.annotations.as_ref().expect("annotations")["awsauth.dev/imported-from"]
                .as_str()
        })
        .collect();
    assert_eq!(
        sources,
        [
            "mapRoles[0]",
            "mapRoles[1]",
            "mapRoles[2]",
            "mapUsers[0]",
            "mapAccounts[0]"
        ]
    );
    assert_eq!(out.stdout.matches("\n# imported from ").count(), 5);
    let fargate = &mappings[1].spec;
    assert_eq!(fargate.arn.as_deref(), Some(FARGATE_ROLE));
    assert_eq!(
        fargate.username.as_deref(),
        Some("system:node:{{SessionName}}")
    );
    assert_eq!(
        fargate.groups,
        [
            "system:bootstrappers",
            "system:nodes",
            "system:node-proxier"
        ]
    );
    assert_eq!(mappings[4].spec.account.as_deref(), Some("444455556666"));
    assert!(names.iter().all(|n| is_dns1123_subdomain(n)), "{names:?}");
}

#[test]
fn import_is_deterministic() {
    for input in [EKS, COLLISIONS, PROBLEMS] {
        let code = if input == PROBLEMS { 1 } else { 0 };
        let first = run(&["import", input], code);
        let second = run(&["import", input], code);
        assert_eq!(first.stdout, second.stdout, "{input}");
        assert_eq!(first.stderr, second.stderr, "{input}");
    }
}

#[test]
fn import_names_are_unique_when_sanitised_names_collide() {
    let out = run(&["import", COLLISIONS], 0);
    assert!(
        out.stderr.contains("imported 5 entries, 0 not imported"),
        "{}",
        out.stderr
    );
    let mappings = imported_mappings(&out.stdout);
    let names: Vec<&str> = mappings.iter().map(name_of).collect();
    assert_eq!(names.len(), 5);
    assert_eq!(
        names.iter().collect::<BTreeSet<_>>().len(),
        5,
        "duplicate names: {names:?}"
    );
    assert!(names.iter().all(|n| is_dns1123_subdomain(n)), "{names:?}");
    assert!(
        names[..3]
            .iter()
            .all(|n| n.starts_with("role-111122223333-admin-role-"))
    );
    assert!(
        names[3..]
            .iter()
            .all(|n| n.starts_with("user-111122223333-ops-alice-"))
    );
}

#[test]
fn import_names_stay_unique_for_long_iam_paths() {
    // IAM paths may be 512 characters long: two users under the same long path.
    let path = ["department-of-platform-engineering"; 8].join("/");
    let file = temp_yaml(&format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: aws-auth, namespace: kube-system}}
data:
  mapUsers: |
    - userarn: \"arn:aws:iam::111122223333:user/{path}/alice\"
      username: \"alice\"
    - userarn: \"arn:aws:iam::111122223333:user/{path}/bob\"
      username: \"bob\"
"
    ));
    let out = run(&["import", path_of(&file)], 0);
    let mappings = imported_mappings(&out.stdout);
    let names: BTreeSet<&str> = mappings.iter().map(name_of).collect();
    assert_eq!(names.len(), 2, "duplicate names: {names:?}");
    assert!(names.iter().all(|n| is_dns1123_subdomain(n)), "{names:?}");
}

#[test]
fn import_reports_entries_it_cannot_import_and_exits_1() {
    let out = run(&["import", PROBLEMS], 1);
    let stderr = &out.stderr;
    for expected in [
        // A role ARN with a path never matches: importing it would grant access it never gave.
        "not imported: mapRoles[1] (arn:aws:iam::111122223333:role/platform/eks-admin): role ARN `arn:aws:iam::111122223333:role/platform/eks-admin` has the path `/platform/`",
        // Coerced fields.
        "not imported: mapRoles[2] (arn:aws:iam::111122223333:role/feature-flags): group #1 `on` is unquoted",
        // A key the authenticator cannot parse, and a key it does not read.
        "not imported: mapUsers: invalid YAML",
        "not imported: maproles: the authenticator reads `mapRoles` (case-sensitive) and ignores `maproles`",
        // An entry overridden by a later duplicate.
        "not imported: mapRoles[3] (arn:aws:iam::111122223333:role/Deployer): `arn:aws:iam::111122223333:role/Deployer` is overridden by mapRoles[4]",
        "not imported: mapRoles[5] (arn:aws:iam::<ACCOUNT_ID>:role/ci): ",
        "not imported: mapRoles[6] (arn:aws:iam::111122223333:role/readers): ",
        "imported 3 entries, 7 not imported",
    ] {
        assert!(stderr.contains(expected), "`{expected}` missing:\n{stderr}");
    }
    assert!(stderr.contains("drops every entry of mapUsers"), "{stderr}");

    // What the authenticator actually uses is still imported: the node role and the winning
    // duplicate.
    let mappings = imported_mappings(&out.stdout);
    let arns: Vec<&str> = mappings
        .iter()
        .filter_map(|m| m.spec.arn.as_deref())
        .collect();
    assert_eq!(arns, [NODE_ROLE, "arn:aws:iam::111122223333:role/deployer"]);
    assert_eq!(mappings[1].spec.username.as_deref(), Some("deployer-ci"));
}

#[test]
fn import_skips_user_arns_that_differ_only_by_case() {
    let file = temp_yaml(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: aws-auth, namespace: kube-system}
data:
  mapUsers: |
    - userarn: \"arn:aws:iam::111122223333:user/Alice\"
      username: \"alice\"
    - userarn: \"arn:aws:iam::111122223333:user/alice\"
      username: \"alice-2\"
",
    );
    let out = run(&["import", path_of(&file)], 1);
    for entry in [
        "mapUsers[0] (arn:aws:iam::111122223333:user/Alice)",
        "mapUsers[1] (arn:aws:iam::111122223333:user/alice)",
    ] {
        assert!(
            out.stderr.contains(&format!("not imported: {entry}: ")),
            "{}",
            out.stderr
        );
    }
    assert!(out.stderr.contains("differs from it only by case"));
    assert!(imported_mappings(&out.stdout).is_empty());
}

#[test]
fn import_unreadable_input_exits_2() {
    cli()
        .args(["import", "tests/fixtures/no-such-aws-auth.yaml"])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(contains("error: tests/fixtures/no-such-aws-auth.yaml: "));
    cli()
        .args(["import", NOT_A_CONFIGMAP])
        .assert()
        .code(2)
        .stderr(contains(format!(
            "error: {NOT_A_CONFIGMAP}: no aws-auth ConfigMap found"
        )));
    cli()
        .args(["import", BAD_YAML])
        .assert()
        .code(2)
        .stderr(contains(format!("error: {BAD_YAML}: not valid YAML")));
}

#[test]
fn import_then_render_reproduces_the_original_entries() {
    for input in [EKS, COLLISIONS] {
        let imported = run(&["import", input], 0);
        let file = temp_yaml(&imported.stdout);
        let rendered = run(&["render", path_of(&file)], 0);

        let original = parse_data(&aws_auth_data(&read(input)));
        assert!(
            original.diagnostics.is_empty(),
            "{:?}",
            original.diagnostics
        );
        let mut expected = original.entries;
        sort_entries(&mut expected);
        assert_eq!(sorted_entries(&rendered.stdout), expected, "{input}");

        // Byte for byte: the rendered keys are what the renderer makes of the original entries.
        let rendered_data = aws_auth_data(&rendered.stdout);
        assert_eq!(rendered_data, render_data(&expected), "{input}");
    }
}

#[test]
fn import_then_render_with_live_original_changes_no_entry() {
    // Adopting a cluster: the imported mappings take over every entry and nothing changes meaning.
    let imported = run(&["import", EKS], 0);
    let file = temp_yaml(&imported.stdout);
    let rendered = run(&["render", "--live", EKS, path_of(&file)], 0);
    assert!(
        rendered
            .stderr
            .contains("rendered 5 of 5 mappings (5 managed entries, 0 unmanaged kept)"),
        "{}",
        rendered.stderr
    );
    assert_eq!(
        rendered
            .stderr
            .matches("takes over the unmanaged entry")
            .count(),
        5
    );
    assert_eq!(sorted_entries(&rendered.stdout), sorted_entries(&read(EKS)));
}

/// `import --access-entries` says, for each mapping whose access entry needs a choice, why and
/// what to fill in; mappings the operator can translate by itself get nothing.
#[test]
fn import_with_access_entries_marks_the_mappings_that_need_a_choice() {
    let file = temp_yaml(
        "apiVersion: v1
kind: ConfigMap
metadata: {name: aws-auth, namespace: kube-system}
data:
  mapRoles: |
    - rolearn: arn:aws:iam::111122223333:role/fargate
      username: system:node:{{SessionName}}
      groups: [system:bootstrappers, system:nodes]
    - rolearn: arn:aws:iam::111122223333:role/admin
      username: admin
      groups: [system:masters]
",
    );
    let out = run(&["import", "--access-entries", path_of(&file)], 0);
    let docs: Vec<&str> = out
        .stdout
        .split("---\n")
        .filter(|d| !d.is_empty())
        .collect();
    assert_eq!(docs.len(), 2, "{}", out.stdout);
    assert!(
        docs[0].contains("# access entry: needs a choice (AmbiguousNodeType)")
            && docs[0].contains("#     type: FARGATE_LINUX   # or HYBRID_LINUX"),
        "{}",
        docs[0]
    );
    assert!(!docs[1].contains("# access entry"), "{}", docs[1]);
    // Still valid mappings, comments aside.
    assert_eq!(imported_mappings(&out.stdout).len(), 2);
    // Without the flag, no hints.
    let plain = run(&["import", path_of(&file)], 0);
    assert!(!plain.stdout.contains("# access entry"));
}
