//! `migrate plan` end to end: what each mapping and live aws-auth entry becomes, exit codes,
//! JSON output.

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MAPPINGS: &str = "tests/fixtures/access-entries/mappings.yaml";
const EKS: &str = "tests/fixtures/aws-auth-eks.yaml";

fn cmd() -> Command {
    let mut cmd = Command::cargo_bin("aws-auth-operator").expect("binary");
    cmd.current_dir(ROOT);
    cmd
}

#[test]
fn text_plan_of_mappings() {
    cmd()
        .args(["migrate", "plan", MAPPINGS])
        .assert()
        .code(1)
        .stdout(contains(
            "mapping platform-admin (arn:aws:iam::111122223333:role/platform/eks-admin)",
        ))
        .stdout(contains(
            "-> STANDARD access entry for arn:aws:iam::111122223333:role/platform/eks-admin",
        ))
        .stdout(contains("policies: AmazonEKSClusterAdminPolicy (cluster)"))
        .stdout(contains("groups: platform"))
        .stdout(contains(
            "-> EC2_WINDOWS access entry for arn:aws:iam::111122223333:role/eks-windows-nodes",
        ))
        .stdout(contains(
            "policies: AmazonEKSViewPolicy (namespaces team-a,team-b)",
        ))
        .stdout(contains("cannot move (AmbiguousNodeType)"))
        .stdout(contains("HYBRID_LINUX or FARGATE_LINUX"))
        .stdout(contains("cannot move (UnsupportedTemplate)"))
        .stdout(contains(
            "3 can move to access entries, 2 cannot (they stay in aws-auth)",
        ));
}

#[test]
fn live_entries_are_planned_and_matched_to_mappings() {
    cmd()
        .args(["migrate", "plan", "--live", EKS])
        .assert()
        .code(1)
        .stdout(contains("mapRoles[0]"))
        .stdout(contains("-> EC2_LINUX access entry"))
        .stdout(contains("-> FARGATE_LINUX access entry for arn:aws:iam::111122223333:role/AmazonEKSFargatePodExecutionRole"))
        .stdout(contains("cannot move (SsoRoleWithoutPath)"))
        .stdout(contains("cannot move (AccountMapping)"))
        .stdout(contains("note: aws-auth holds role ARNs without their IAM path"));
    // With the mappings that manage them, live entries point at those.
    let dir = tempfile::tempdir().unwrap();
    let alice = dir.path().join("alice.yaml");
    std::fs::write(
        &alice,
        "apiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMapping\nmetadata: {name: alice}\nspec:\n  arn: arn:aws:iam::111122223333:user/ops/alice\n  username: alice\n  groups: [ops]\n",
    )
    .unwrap();
    cmd()
        .args(["migrate", "plan", "--live", EKS])
        .arg(&alice)
        .assert()
        .stdout(contains(
            "mapUsers[0] (arn:aws:iam::111122223333:user/ops/alice)\n    managed by mapping alice",
        ));
}

#[test]
fn json_plan() {
    let out = cmd()
        .args([
            "migrate", "plan", "--output", "json", "--live", EKS, MAPPINGS,
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    let admin = &v["mappings"][0];
    assert_eq!(admin["source"], "mapping platform-admin");
    assert_eq!(admin["accessEntry"]["type"], "STANDARD");
    assert_eq!(admin["accessEntry"]["username"], "admin:{{SessionName}}");
    assert_eq!(
        admin["accessEntry"]["kubernetesGroups"],
        serde_json::json!(["platform"])
    );
    assert_eq!(
        admin["accessEntry"]["policies"][0]["policyArn"],
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    );
    assert_eq!(
        admin["accessEntry"]["policies"][0]["scope"]["type"],
        "cluster"
    );
    let viewers = &v["mappings"][2];
    assert_eq!(
        viewers["accessEntry"]["policies"][0]["scope"]["namespaces"],
        serde_json::json!(["team-a", "team-b"])
    );
    let ci = &v["mappings"][4];
    assert_eq!(ci["notMigratable"]["reason"], "UnsupportedTemplate");
    assert!(
        ci["notMigratable"]["message"]
            .as_str()
            .unwrap()
            .contains("{{AccessKeyID}}")
    );
    assert_eq!(v["live"].as_array().unwrap().len(), 5);
    assert_eq!(v["notMigratable"], 4);
    assert_eq!(v["migratable"], 6);
}

#[test]
fn all_migratable_exits_zero_and_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.yaml");
    std::fs::write(
        &ok,
        "apiVersion: awsauth.dev/v1alpha1\nkind: IamIdentityMapping\nmetadata: {name: dev}\nspec:\n  arn: arn:aws:iam::111122223333:role/dev\n  username: \"dev:{{SessionName}}\"\n  groups: [devs]\n",
    )
    .unwrap();
    cmd()
        .args(["migrate", "plan"])
        .arg(&ok)
        .assert()
        .code(0)
        .stdout(contains("1 can move to access entries, 0 cannot"));
    cmd()
        .args(["migrate", "plan"])
        .assert()
        .code(2)
        .stderr(contains("nothing to plan"));
    cmd()
        .args(["migrate", "plan", "tests/fixtures/does-not-exist.yaml"])
        .assert()
        .code(2);
}
