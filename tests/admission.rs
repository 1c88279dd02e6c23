//! What the CRD refuses at admission, and in which words. The CEL rules of the
//! generated CRD are evaluated here with a CEL interpreter (the `cel` crate, standard CEL, which
//! is all the rules use) the way the API server does: spec rules on the spec, field rules on a
//! field that is present; plus the structural checks the rules rely on (a set of groups).
//!
//! Checked: every rule compiles; each common mistake is refused with its own plain message
//! (never a regex dump); admission never refuses a spec the operator would accept; and every
//! example mapping passes.

use aws_auth_operator::api::IamIdentityMappingSpec;
use aws_auth_operator::cli::crd_yaml;
use aws_auth_operator::validate::problems;
use cel::{Context, Program, Value as CelValue};
use serde_json::{Value, json};

/// A CEL rule of the CRD: where it applies (`None`: the spec) and its message.
struct Rule {
    field: Option<String>,
    program: Program,
    source: String,
    message: String,
}

fn crd_spec_schema() -> Value {
    let text = crd_yaml().expect("the CRD renders");
    let crd: Value = serde_saphyr::from_str(&text).expect("the CRD is YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

/// The rules, compiled once.
fn rules() -> &'static [Rule] {
    static RULES: std::sync::OnceLock<Vec<Rule>> = std::sync::OnceLock::new();
    RULES.get_or_init(compile_rules)
}

fn compile_rules() -> Vec<Rule> {
    let spec = crd_spec_schema();
    let mut rules = Vec::new();
    let mut collect = |field: Option<String>, schema: &Value| {
        for rule in schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let source = rule["rule"].as_str().expect("rule").to_string();
            let program = Program::compile(&source)
                .unwrap_or_else(|e| panic!("rule does not compile: {source}: {e:?}"));
            let message = rule["message"]
                .as_str()
                .unwrap_or_else(|| panic!("rule without a message: {source}"))
                .to_string();
            rules.push(Rule {
                field: field.clone(),
                program,
                source,
                message,
            });
        }
    };
    collect(None, &spec);
    for (name, schema) in spec["properties"].as_object().expect("properties") {
        collect(Some(name.clone()), schema);
        // Rules of an object's own fields (spec.ssoPermissionSet.name).
        for (inner, schema) in schema["properties"].as_object().into_iter().flatten() {
            collect(Some(format!("{name}.{inner}")), schema);
        }
    }
    rules
}

/// The messages of every rule `spec` breaks; empty when admission accepts it.
fn admission(spec: &Value) -> Vec<String> {
    let mut refused = Vec::new();
    if let Some(groups) = spec["groups"].as_array() {
        let mut seen = std::collections::BTreeSet::new();
        for group in groups {
            if !seen.insert(group.to_string()) {
                refused.push(format!("spec.groups: Duplicate value: {group}"));
            }
        }
    }
    for rule in rules() {
        let target = match &rule.field {
            None => spec.clone(),
            Some(field) => match spec.pointer(&format!("/{}", field.replace('.', "/"))) {
                Some(value) => value.clone(),
                None => continue,
            },
        };
        let mut context = Context::default();
        context
            .add_variable("self", cel::to_value(&target).expect("a CEL value"))
            .expect("variable");
        match rule.program.execute(&context) {
            Ok(CelValue::Bool(true)) => {}
            Ok(CelValue::Bool(false)) => refused.push(rule.message.clone()),
            other => panic!("rule `{}` on {target}: {other:?}", rule.source),
        }
    }
    refused
}

fn role_spec(arn: &str, username: &str, groups: &[&str]) -> Value {
    json!({"arn": arn, "username": username, "groups": groups})
}

#[test]
fn every_rule_compiles_and_has_a_message() {
    let rules = rules();
    assert!(rules.len() >= 15, "{}", rules.len());
    for rule in rules {
        assert!(
            !rule.message.contains('^'),
            "regex in a message: {}",
            rule.message
        );
    }
}

/// Each common mistake is refused at admission with a message that names it.
#[test]
fn common_mistakes_are_refused_in_plain_words() {
    let cases: Vec<(Value, &str)> = vec![
        (
            role_spec("arn:aws:iam::111122223333:role/team*/x", "u", &[]),
            "wildcards",
        ),
        (
            role_spec("arn:aws:iam::*:role/admin", "u", &[]),
            "wildcards",
        ),
        (
            role_spec(
                "arn:aws:sts::111122223333:assumed-role/Admin/alice",
                "u",
                &[],
            ),
            "STS (assumed-role session)",
        ),
        (
            role_spec("arn:aws:iam::111122223333:root", "u", &[]),
            "account root ARN",
        ),
        (
            role_spec("arn:aws:iam::111122223333:group/admins", "u", &[]),
            "IAM group ARN",
        ),
        (
            role_spec("arn:aws:iam::111122223333:instance-profile/web", "u", &[]),
            "instance profile",
        ),
        (
            role_spec("arn:aws:iam::{{AccountID}}:role/ci", "u", &[]),
            "placeholder",
        ),
        (
            role_spec("arn:aws:iam::<ACCOUNT_ID>:role/ci", "u", &[]),
            "placeholder",
        ),
        (
            role_spec("arn:aws-mars:iam::111122223333:role/x", "u", &[]),
            "partition",
        ),
        (
            role_spec("arn:aws:iam:us-east-1:111122223333:role/x", "u", &[]),
            "no region",
        ),
        (
            role_spec("arn:aws:iam::1234:role/x", "u", &[]),
            "12-digit account",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/a b", "u", &[]),
            "letters, digits",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "x:{{SessionNme}}", &[]),
            "template variables",
        ),
        (
            role_spec(
                "arn:aws:iam::111122223333:role/x",
                "x:{{ SessionName }}",
                &[],
            ),
            "no spaces inside the braces",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", " ", &[]),
            "blank",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "admin ", &[]),
            "whitespace",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "u", &["devs", "devs"]),
            "Duplicate value",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "u", &["a b"]),
            "whitespace",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "u", &[""]),
            "empty group",
        ),
        (
            role_spec("arn:aws:iam::111122223333:role/x", "u", &["{{Foo}}"]),
            "template variables",
        ),
        (
            role_spec(
                "arn:aws:iam::111122223333:user/bob",
                "bob:{{SessionName}}",
                &[],
            ),
            "only for role sessions",
        ),
        (json!({"account": "12345"}), "12-digit AWS account id"),
        (
            json!({"account": "111122223333", "username": "x"}),
            "takes no username",
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x"}),
            "username is required",
        ),
        (json!({}), "exactly one of spec.arn"),
        (
            json!({"ssoPermissionSet": {"name": "Admin"}, "arn": "arn:aws:iam::111122223333:role/x", "username": "u"}),
            "exactly one of spec.arn",
        ),
        (
            json!({"ssoPermissionSet": {"name": "Admin"}}),
            "username is required with spec.ssoPermissionSet",
        ),
        (
            json!({"ssoPermissionSet": {"name": "AWSReservedSSO_AdministratorAccess_0123456789abcdef"}, "username": "u"}),
            "without AWSReservedSSO_",
        ),
        (
            json!({"ssoPermissionSet": {"name": "Admin Access"}, "username": "u"}),
            "must be a permission set name",
        ),
    ];
    for (spec, says) in cases {
        let refused = admission(&spec);
        assert!(
            refused.iter().any(|m| m.contains(says)),
            "{spec}: expected a message with `{says}`, got {refused:#?}"
        );
        // One mistake, one message (no pile of generic ones on top).
        assert!(refused.len() <= 2, "{spec}: {refused:#?}");
        // What admission refuses, the operator refuses too.
        if let Ok(parsed) = serde_json::from_value::<IamIdentityMappingSpec>(spec.clone()) {
            assert!(
                !problems(&parsed).is_empty(),
                "{spec}: admission refuses, validate accepts"
            );
        }
    }
}

/// Admission accepts `spec` if the operator does.
fn assert_not_stricter(spec: &Value) {
    let parsed: IamIdentityMappingSpec = serde_json::from_value(spec.clone()).expect("spec");
    let refused = admission(spec);
    if problems(&parsed).is_empty() {
        assert!(
            refused.is_empty(),
            "{spec}: the operator accepts it, admission refuses: {refused:#?}"
        );
    }
}

/// Admission never refuses what the operator accepts: a corpus of specs, good and bad, across
/// partitions, paths, templates and groups.
#[test]
fn admission_is_never_stricter_than_the_operator() {
    let arns = [
        "arn:aws:iam::111122223333:role/admin",
        "arn:aws-cn:iam::111122223333:role/team/dev/admin",
        "arn:aws-us-gov:iam::111122223333:user/ops/alice",
        "arn:aws-iso-b:iam::111122223333:user/a+b=c,d.e@f_g-h",
        "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef",
        "arn:aws:iam::111122223333:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS",
        "arn:aws-eusc:iam::111122223333:role/x",
        "arn:aws:iam::111122223333:role/",
        "arn:aws:iam::111122223333:role/a/",
        "arn:aws:iam::111122223333:role//x",
        "arn:aws:iam::111122223333:role/é",
        "arn:aws:s3:::bucket",
    ];
    let usernames = [
        "admin",
        "admin:{{SessionName}}",
        "{{AccountID}}:{{SessionNameRaw}}",
        "system:node:{{EC2PrivateDNSName}}",
        "a{b}",
        "{",
        "x{{AccessKeyID}}}",
        "{{{SessionName}}",
        "tab\there",
    ];
    let groups: [&[&str]; 5] = [
        &[],
        &["system:masters"],
        &["team-{{AccountID}}", "view"],
        &["{x}"],
        &["a", "b", "c"],
    ];
    let mut checked = 0;
    for arn in arns {
        for username in usernames {
            for groups in groups {
                let spec = role_spec(arn, username, groups);
                assert_not_stricter(&spec);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, arns.len() * usernames.len() * groups.len());

    // Permission sets, named well and badly.
    let long = "x".repeat(32);
    let too_long = "x".repeat(33);
    let names = [
        "Admin",
        "AdministratorAccess",
        "a+b=c,d.e@f_g-h",
        long.as_str(),
        too_long.as_str(),
        "",
        "AWSReservedSSO_Admin",
        "Admin Access",
    ];
    for name in names {
        for username in usernames {
            for groups in groups {
                let spec = json!({"ssoPermissionSet": {"name": name}, "username": username, "groups": groups});
                assert_not_stricter(&spec);
            }
        }
    }
}

#[test]
fn every_example_passes_admission() {
    let examples = std::fs::read_dir("examples").expect("examples/");
    let need_aws = std::fs::read_dir("examples/aws").expect("examples/aws/");
    for entry in examples.chain(need_aws) {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML");
        for doc in docs.iter().filter(|d| d["kind"] == "IamIdentityMapping") {
            let refused = admission(&doc["spec"]);
            assert!(refused.is_empty(), "{}: {refused:#?}", path.display());
        }
    }
}
