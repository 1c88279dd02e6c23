//! The chart's admission guard (charts/aws-auth-operator/templates/admission-policies.yaml): two
//! ValidatingAdmissionPolicies, evaluated here the way the API server evaluates them, against
//! AdmissionReview-shaped requests.
//!
//! The objects are rendered by the real Helm engine (tests/chart/render_admission.py, through
//! the Python named by `AWS_AUTH_OPERATOR_PYTHON`, as tests/packaging.rs does): the expressions
//! evaluated are exactly the ones the chart installs, never a copy. Without that Python these
//! tests are skipped with a notice, except with `CI=true`, where they fail.
//!
//! The evaluator follows the API server's admission of a policy and its binding: the match
//! constraints (resource rules with resource names and subresources), the binding's `paramRef`
//! with its `parameterNotFoundAction`, the match conditions (which may read `params`), the
//! policy's `failurePolicy` for errors, `variables` (in order, each seeing the ones before), `validations` with their
//! `messageExpression` (and its fallback to `message`), and the binding's `validationActions`.
//! The CEL interpreter is the `cel` crate with its standard environment only (no extension
//! library): an expression that needs a Kubernetes-only function fails here. One difference:
//! the API server evaluates variables lazily, this evaluator eagerly, which is stricter (a
//! variable that fails fails here even when no validation reads it).
//!
//! The policy objects are also checked against the `admissionregistration.k8s.io/v1` schema of
//! k8s-openapi: each one deserializes into its type and serializes back to exactly the rendered
//! object, so no field is unknown or misspelt (k8s-openapi skips unknown fields silently).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use cel::{Context, Program, Value as CelValue};
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const PYTHON_ENV: &str = "AWS_AUTH_OPERATOR_PYTHON";

const MAPPINGS_POLICY: &str = "aws-auth-operator-privileged-mappings";
const AWS_AUTH_POLICY: &str = "aws-auth-operator-aws-auth";
const PARAMS: &str = "aws-auth-operator-admission";
const OPERATOR: &str = "system:serviceaccount:kube-system:aws-auth-operator";
const ARGOCD: &str = "system:serviceaccount:argocd:argocd-application-controller";
const FLUX: &str = "system:serviceaccount:flux-system:kustomize-controller";
const BREAK_GLASS: &str = "aws-auth-operator:break-glass";

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn python() -> Option<PathBuf> {
    if let Some(value) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(value));
    }
    let local = Path::new(ROOT).join(".venv/bin/python");
    local.is_file().then_some(local)
}

/// The chart's admission objects for `values`, or None (after a notice) when the Helm engine is
/// not available outside CI.
fn render(values: &Value, release: Option<(&str, &str)>) -> Option<Vec<Value>> {
    let Some(python) = python() else {
        let why = format!("{PYTHON_ENV} is unset and .venv/bin/python does not exist");
        assert!(
            !in_ci(),
            "CI=true but the admission policy tests cannot render the chart: {why}"
        );
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tests/admission_policy.rs: {why}. Run `make venv` (or set {PYTHON_ENV})."
        );
        return None;
    };
    let mut command = Command::new(&python);
    command
        .arg("tests/chart/render_admission.py")
        .arg(values.to_string())
        .current_dir(ROOT)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    if let Some((name, namespace)) = release {
        command.args([name, namespace]);
    }
    let out = command.output().expect("run python");
    assert!(
        out.status.success(),
        "render_admission.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("JSON objects"))
}

/// The rendered objects of one release: the params and the policies with their bindings.
struct Chart {
    objects: Vec<Value>,
}

impl Chart {
    fn new(values: Value) -> Option<Self> {
        render(&values, None).map(|objects| Chart { objects })
    }

    fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    fn policy(&self, name: &str) -> Guard {
        Guard {
            policy: self
                .find("ValidatingAdmissionPolicy", name)
                .unwrap_or_else(|| panic!("no ValidatingAdmissionPolicy {name}"))
                .clone(),
            binding: self
                .find("ValidatingAdmissionPolicyBinding", name)
                .unwrap_or_else(|| panic!("no ValidatingAdmissionPolicyBinding {name}"))
                .clone(),
            configmaps: self
                .objects
                .iter()
                .filter(|o| o["kind"] == "ConfigMap")
                .cloned()
                .collect(),
        }
    }

    fn params(&self) -> &Value {
        self.find("ConfigMap", PARAMS)
            .expect("the params ConfigMap")
    }
}

/// What the API server answers.
#[derive(Debug, PartialEq)]
enum Verdict {
    Allowed { warnings: Vec<String> },
    Denied(String),
}

impl Verdict {
    fn allowed(&self) -> bool {
        matches!(self, Verdict::Allowed { .. })
    }

    fn clean(&self) -> bool {
        matches!(self, Verdict::Allowed { warnings } if warnings.is_empty())
    }

    fn denial(&self) -> &str {
        match self {
            Verdict::Denied(message) => message,
            other => panic!("expected a denial, got {other:?}"),
        }
    }
}

/// One policy, its binding, and the ConfigMaps its `paramRef` may find.
struct Guard {
    policy: Value,
    binding: Value,
    configmaps: Vec<Value>,
}

fn compile(source: &str) -> Program {
    Program::compile(source).unwrap_or_else(|e| panic!("does not compile: {source}: {e:?}"))
}

fn cel_value(value: &Value) -> CelValue {
    cel::to_value(value).expect("a CEL value")
}

fn eval(source: &str, vars: &HashMap<&str, CelValue>) -> Result<CelValue, String> {
    let program = compile(source);
    let mut context = Context::default();
    for (name, value) in vars {
        context.add_variable_from_value(*name, value.clone());
    }
    program
        .execute(&context)
        .map_err(|e| format!("{source}: {e:?}"))
}

fn list<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    value[key]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("a string"))
}

/// A resource rule of the policy's matchConstraints matches the request.
fn rule_matches(rule: &Value, request: &Value) -> bool {
    let any = |key: &str, want: &str| list(rule, key).any(|v| v == "*" || v == want);
    let resource = match request["subResource"].as_str() {
        Some(sub) if !sub.is_empty() => {
            format!(
                "{}/{sub}",
                request["resource"]["resource"].as_str().unwrap()
            )
        }
        _ => request["resource"]["resource"]
            .as_str()
            .unwrap()
            .to_string(),
    };
    let names: Vec<&str> = list(rule, "resourceNames").collect();
    any("apiGroups", request["resource"]["group"].as_str().unwrap())
        && any(
            "apiVersions",
            request["resource"]["version"].as_str().unwrap(),
        )
        && any("operations", request["operation"].as_str().unwrap())
        && list(rule, "resources").any(|r| r == "*" || r == resource)
        && (names.is_empty() || names.contains(&request["name"].as_str().unwrap_or_default()))
}

impl Guard {
    /// The admission of `review` (an AdmissionReview) by this policy and binding.
    fn admit(&self, review: &Value) -> Verdict {
        let request = &review["request"];
        let spec = &self.policy["spec"];
        let binding = &self.binding["spec"];
        assert_eq!(
            binding["policyName"], self.policy["metadata"]["name"],
            "the binding binds its policy"
        );
        assert!(
            binding.get("matchResources").is_none(),
            "extend the evaluator to binding matchResources"
        );
        assert!(
            spec["matchConstraints"].get("namespaceSelector").is_none()
                && spec["matchConstraints"].get("objectSelector").is_none(),
            "extend the evaluator to selectors"
        );
        let rules = spec["matchConstraints"]["resourceRules"]
            .as_array()
            .expect("resourceRules");
        if !rules.iter().any(|r| rule_matches(r, request)) {
            return Verdict::Allowed { warnings: vec![] };
        }
        let fail_closed = spec["failurePolicy"].as_str().unwrap_or("Fail") == "Fail";
        let actions: Vec<&str> = list(binding, "validationActions").collect();
        let failure = |why: String| {
            if fail_closed {
                enforce(&actions, format!("policy failure: {why}"))
            } else {
                Verdict::Allowed { warnings: vec![] }
            }
        };

        // paramRef (a ConfigMap by name and namespace) is resolved first: match conditions may
        // read `params` too.
        let param_ref = &binding["paramRef"];
        let found = self.configmaps.iter().find(|c| {
            c["metadata"]["name"] == param_ref["name"]
                && c["metadata"]["namespace"] == param_ref["namespace"]
        });
        let Some(params) = found else {
            return match param_ref["parameterNotFoundAction"].as_str() {
                Some("Allow") => Verdict::Allowed { warnings: vec![] },
                Some("Deny") => failure("no params found".to_string()),
                other => panic!("parameterNotFoundAction {other:?}"),
            };
        };

        let mut vars: HashMap<&str, CelValue> = HashMap::new();
        vars.insert("object", cel_value(&request["object"]));
        vars.insert("oldObject", cel_value(&request["oldObject"]));
        vars.insert("request", cel_value(request));
        vars.insert("params", cel_value(params));
        for condition in spec["matchConditions"].as_array().into_iter().flatten() {
            match eval(condition["expression"].as_str().unwrap(), &vars) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => return Verdict::Allowed { warnings: vec![] },
                other => return failure(format!("match condition: {other:?}")),
            }
        }

        let mut variables: HashMap<String, CelValue> = HashMap::new();
        for variable in spec["variables"].as_array().into_iter().flatten() {
            vars.insert("variables", CelValue::from(variables.clone()));
            let name = variable["name"].as_str().unwrap();
            match eval(variable["expression"].as_str().unwrap(), &vars) {
                Ok(value) => {
                    variables.insert(name.to_string(), value);
                }
                Err(e) => return failure(format!("variable {name}: {e}")),
            }
        }
        vars.insert("variables", CelValue::from(variables));

        let mut warnings = Vec::new();
        for validation in spec["validations"].as_array().expect("validations") {
            match eval(validation["expression"].as_str().unwrap(), &vars) {
                Ok(CelValue::Bool(true)) => {}
                Ok(CelValue::Bool(false)) => {
                    let message = message(validation, &vars);
                    match enforce(&actions, message) {
                        Verdict::Allowed { warnings: w } => warnings.extend(w),
                        denied => return denied,
                    }
                }
                other => return failure(format!("validation: {other:?}")),
            }
        }
        Verdict::Allowed { warnings }
    }
}

/// The message of a failed validation: `messageExpression` when it gives a usable string (one
/// line, not blank, at most 5000 characters), otherwise `message`.
fn message(validation: &Value, vars: &HashMap<&str, CelValue>) -> String {
    let fallback = validation["message"]
        .as_str()
        .unwrap_or("failed")
        .to_string();
    let Some(source) = validation["messageExpression"].as_str() else {
        return fallback;
    };
    match eval(source, vars) {
        Ok(CelValue::String(s)) if !s.trim().is_empty() && !s.contains('\n') && s.len() <= 5000 => {
            s.to_string()
        }
        other => panic!("messageExpression falls back to `message`: {other:?}"),
    }
}

fn enforce(actions: &[&str], message: String) -> Verdict {
    if actions.contains(&"Deny") {
        Verdict::Denied(message)
    } else if actions.contains(&"Warn") {
        Verdict::Allowed {
            warnings: vec![message],
        }
    } else {
        // Audit only: recorded in the audit log, allowed.
        Verdict::Allowed { warnings: vec![] }
    }
}

// ---- requests -------------------------------------------------------------------------------

struct Requester {
    username: &'static str,
    groups: Vec<&'static str>,
}

fn user(username: &'static str, groups: &[&'static str]) -> Requester {
    let mut groups = groups.to_vec();
    groups.push("system:authenticated");
    Requester { username, groups }
}

/// Someone allowed by RBAC to edit mappings, but not a cluster admin.
fn editor() -> Requester {
    user("alice", &["developers"])
}

fn platform_admin() -> Requester {
    user("bob", &["platform-admins"])
}

fn masters() -> Requester {
    user("kubernetes-admin", &["system:masters"])
}

fn service_account(username: &'static str) -> Requester {
    let namespace = username.split(':').nth(2).unwrap();
    let group: &'static str =
        Box::leak(format!("system:serviceaccounts:{namespace}").into_boxed_str());
    user(username, &["system:serviceaccounts", group])
}

fn review(
    resource: (&str, &str, &str),
    operation: &str,
    namespace: Option<&str>,
    name: &str,
    by: &Requester,
    old: Option<Value>,
    new: Option<Value>,
) -> Value {
    let mut request = json!({
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": resource.0, "version": resource.1, "kind": "Object"},
        "resource": {"group": resource.0, "version": resource.1, "resource": resource.2},
        "requestKind": {"group": resource.0, "version": resource.1, "kind": "Object"},
        "requestResource": {"group": resource.0, "version": resource.1, "resource": resource.2},
        "name": name,
        "operation": operation,
        "userInfo": {"username": by.username, "uid": "u-1", "groups": by.groups},
        "object": new,
        "oldObject": old,
        "dryRun": false,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": format!("{}Options", operation[..1].to_string() + &operation[1..].to_lowercase())},
    });
    if let Some(namespace) = namespace {
        request["namespace"] = json!(namespace);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
}

const MAPPINGS: (&str, &str, &str) = ("awsauth.dev", "v1alpha1", "iamidentitymappings");
const CONFIGMAPS: (&str, &str, &str) = ("", "v1", "configmaps");

fn mapping(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "awsauth.dev/v1alpha1",
        "kind": "IamIdentityMapping",
        "metadata": {"name": name, "generation": 1},
        "spec": spec,
    })
}

fn admin_spec() -> Value {
    json!({"arn": "arn:aws:iam::111122223333:role/eks-admin", "username": "admin:{{SessionName}}", "groups": ["system:masters"]})
}

fn dev_spec() -> Value {
    json!({"arn": "arn:aws:iam::111122223333:role/dev", "username": "dev:{{SessionName}}", "groups": ["developers"]})
}

fn create(by: &Requester, spec: Value) -> Value {
    review(
        MAPPINGS,
        "CREATE",
        None,
        "m",
        by,
        None,
        Some(mapping("m", spec)),
    )
}

fn update(by: &Requester, old: Value, new: Value) -> Value {
    review(
        MAPPINGS,
        "UPDATE",
        None,
        "m",
        by,
        Some(mapping("m", old)),
        Some(mapping("m", new)),
    )
}

fn delete(by: &Requester, spec: Value) -> Value {
    review(
        MAPPINGS,
        "DELETE",
        None,
        "m",
        by,
        Some(mapping("m", spec)),
        None,
    )
}

fn aws_auth(data: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "aws-auth", "namespace": "kube-system"},
           "data": {"mapRoles": data}})
}

fn edit_aws_auth(by: &Requester) -> Value {
    review(
        CONFIGMAPS,
        "UPDATE",
        Some("kube-system"),
        "aws-auth",
        by,
        Some(aws_auth("[]")),
        Some(aws_auth(
            "- rolearn: arn:aws:iam::111122223333:role/x\n  username: x\n",
        )),
    )
}

/// The values most tests use: a platform-admin group and both GitOps controllers may grant.
fn values() -> Value {
    json!({"admissionGuard": {"mappings": {
        "grantingGroups": ["system:masters", "platform-admins"],
        "grantingServiceAccounts": ["argocd/argocd-application-controller", "flux-system/kustomize-controller"],
    }}})
}

fn aws_auth_values(actions: &[&str]) -> Value {
    json!({"admissionGuard": {"awsAuth": {"enabled": true, "validationActions": actions}}})
}

// ---- the objects ------------------------------------------------------------------------------

/// Every policy object is valid `admissionregistration.k8s.io/v1` (k8s-openapi's types), with
/// no field its schema does not have.
#[test]
fn policies_match_the_admissionregistration_v1_schema() {
    let Some(chart) = Chart::new(json!({"admissionGuard": {"awsAuth": {"enabled": true}}})) else {
        return;
    };
    let mut checked = 0;
    for object in &chart.objects {
        let back = match object["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => serde_json::to_value(
                serde_json::from_value::<ValidatingAdmissionPolicy>(object.clone())
                    .expect("a ValidatingAdmissionPolicy"),
            ),
            Some("ValidatingAdmissionPolicyBinding") => serde_json::to_value(
                serde_json::from_value::<ValidatingAdmissionPolicyBinding>(object.clone())
                    .expect("a ValidatingAdmissionPolicyBinding"),
            ),
            _ => continue,
        }
        .expect("JSON");
        assert_eq!(
            &back, object,
            "{} {}: a field k8s-openapi does not know was dropped",
            object["kind"], object["metadata"]["name"]
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "two policies and two bindings");
}

/// The interpreter is standard CEL: a function of the Kubernetes or cel-go extension libraries
/// fails, so the policies cannot depend on one unnoticed.
#[test]
fn the_interpreter_has_no_extension_library() {
    let vars = HashMap::new();
    for source in [
        "'a,b'.split(',') == ['a', 'b']",
        "['a', 'b'].join(',') == 'a,b'",
        "'abc'.lastIndexOf('c') == 2",
    ] {
        assert!(eval(source, &vars).is_err(), "{source} evaluates");
    }
    assert_eq!(
        eval("'a-b'.matches('^a-.$') && 'x'.contains('x')", &vars),
        Ok(CelValue::Bool(true))
    );
}

#[test]
fn defaults_guard_mappings_only() {
    let Some(chart) = Chart::new(json!({})) else {
        return;
    };
    assert!(
        chart
            .find("ValidatingAdmissionPolicy", MAPPINGS_POLICY)
            .is_some()
    );
    assert!(
        chart
            .find("ValidatingAdmissionPolicy", AWS_AUTH_POLICY)
            .is_none()
    );
    let data = &chart.params()["data"];
    assert_eq!(data["grantingGroups"], "system:masters");
    assert_eq!(data["grantingUsernames"], "");
    assert_eq!(data["operatorUsernames"], OPERATOR);
    // With the defaults only system:masters may grant system:masters.
    let guard = chart.policy(MAPPINGS_POLICY);
    assert!(guard.admit(&create(&masters(), admin_spec())).clean());
    assert!(
        !guard
            .admit(&create(&platform_admin(), admin_spec()))
            .allowed()
    );
    assert!(guard.admit(&create(&editor(), dev_spec())).clean());
}

// ---- privileged mappings ------------------------------------------------------------------------

#[test]
fn a_privileged_group_is_granted_only_by_the_listed_requesters() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let refused = guard.admit(&create(&editor(), admin_spec()));
    let message = refused.denial();
    for part in [
        "IamIdentityMapping m grants group system:masters",
        "which alice may not grant",
        "groups [system:masters,platform-admins]",
        ARGOCD,
        FLUX,
        "ConfigMap kube-system/aws-auth-operator-admission",
        "admissionGuard.mappings.grantingGroups",
    ] {
        assert!(message.contains(part), "`{part}` missing in: {message}");
    }
    assert!(
        guard
            .admit(&create(&platform_admin(), admin_spec()))
            .clean()
    );
    assert!(guard.admit(&create(&masters(), admin_spec())).clean());
    // Not privileged: anyone RBAC lets through.
    assert!(guard.admit(&create(&editor(), dev_spec())).clean());
}

#[test]
fn an_update_that_adds_or_removes_a_privileged_group_is_guarded() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let mut promoted = dev_spec();
    promoted["groups"] = json!(["developers", "system:masters"]);
    let adds = guard.admit(&update(&editor(), dev_spec(), promoted.clone()));
    assert!(adds.denial().contains("which alice may not change"));
    let removes = guard.admit(&update(&editor(), promoted.clone(), dev_spec()));
    assert!(removes.denial().contains("group system:masters"));
    assert!(
        guard
            .admit(&update(&platform_admin(), dev_spec(), promoted.clone()))
            .clean()
    );
    assert!(
        guard
            .admit(&update(&platform_admin(), promoted, dev_spec()))
            .clean()
    );
    // An update of a mapping that is privileged neither before nor after.
    let mut renamed = dev_spec();
    renamed["arn"] = json!("arn:aws:iam::111122223333:role/dev2");
    assert!(guard.admit(&update(&editor(), dev_spec(), renamed)).clean());
}

#[test]
fn changing_the_principal_of_a_privileged_mapping_is_guarded() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let mut other_role = admin_spec();
    other_role["arn"] = json!("arn:aws:iam::111122223333:role/attacker");
    assert!(
        !guard
            .admit(&update(&editor(), admin_spec(), other_role.clone()))
            .allowed()
    );
    assert!(
        guard
            .admit(&update(&platform_admin(), admin_spec(), other_role))
            .clean()
    );
    let sso = |name: &str| json!({"ssoPermissionSet": {"name": name}, "username": "sso:{{SessionName}}", "groups": ["system:masters"]});
    assert!(
        !guard
            .admit(&update(
                &editor(),
                sso("AdministratorAccess"),
                sso("ReadOnly")
            ))
            .allowed()
    );
    let mut by_sso = admin_spec();
    by_sso.as_object_mut().unwrap().remove("arn");
    by_sso["ssoPermissionSet"] = json!({"name": "Attackers"});
    assert!(
        !guard
            .admit(&update(&editor(), admin_spec(), by_sso))
            .allowed()
    );
}

#[test]
fn deleting_a_privileged_mapping_is_guarded() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    // A DELETE has object == null: the mapping is in oldObject.
    let refused = guard.admit(&delete(&editor(), admin_spec()));
    assert!(refused.denial().contains("which alice may not revoke"));
    assert!(
        guard
            .admit(&delete(&platform_admin(), admin_spec()))
            .clean()
    );
    assert!(guard.admit(&delete(&editor(), dev_spec())).clean());
}

#[test]
fn gitops_service_accounts_are_requesters_too() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    for controller in [ARGOCD, FLUX] {
        let sa = service_account(controller);
        assert!(
            guard.admit(&create(&sa, admin_spec())).clean(),
            "{controller}"
        );
        assert!(
            guard.admit(&delete(&sa, admin_spec())).clean(),
            "{controller}"
        );
    }
    // Another ServiceAccount of the same namespace is not listed.
    let other = service_account("system:serviceaccount:argocd:argocd-server");
    assert!(!guard.admit(&create(&other, admin_spec())).allowed());
    // Without the GitOps values, Argo CD is refused like anyone.
    let Some(defaults) = Chart::new(json!({})) else {
        return;
    };
    let message = defaults
        .policy(MAPPINGS_POLICY)
        .admit(&create(&service_account(ARGOCD), admin_spec()))
        .denial()
        .to_string();
    assert!(message.contains("the users []"), "{message}");
}

#[test]
fn privileged_usernames_and_access_entry_grants_count_too() {
    let Some(chart) = Chart::new(json!({"admissionGuard": {"mappings": {
        "privilegedGroups": ["system:masters", "cluster-admins"],
    }}})) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let cases = [
        (
            json!({"arn": "arn:aws:iam::111122223333:role/nodes", "username": "system:node:{{EC2PrivateDNSName}}", "groups": ["system:nodes"]}),
            Some("username system:node:{{EC2PrivateDNSName}}"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "system:kube-controller-manager"}),
            Some("username system:kube-controller-manager"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "eks:node-manager"}),
            Some("username eks:node-manager"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "x", "accessEntry": {"username": "system:admin"}}),
            Some("username system:admin"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "x", "accessEntry": {"kubernetesGroups": ["cluster-admins"]}}),
            Some("group cluster-admins"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "x", "accessEntry": {"policies": [{"policy": "AmazonEKSClusterAdminPolicy"}]}}),
            Some("access policy AmazonEKSClusterAdminPolicy"),
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "x", "accessEntry": {"policies": [{"policy": "arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"}]}}),
            Some(
                "access policy arn:aws-cn:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
            ),
        ),
        // Not privileged: a look-alike name, a view policy, a template in an ordinary username.
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "x", "accessEntry": {"policies": [{"policy": "AmazonEKSViewPolicy", "namespaces": ["a"]}]}}),
            None,
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "my-system:masters", "groups": ["system:masters-readonly"]}),
            None,
        ),
        (
            json!({"arn": "arn:aws:iam::111122223333:role/x", "username": "admin:{{SessionName}}", "groups": ["team-a"]}),
            None,
        ),
        (json!({"account": "111122223333"}), None),
    ];
    for (spec, privilege) in cases {
        let verdict = guard.admit(&create(&editor(), spec.clone()));
        match privilege {
            Some(privilege) => {
                let message = verdict.denial();
                assert!(
                    message.contains(&format!("grants {privilege}")),
                    "{spec}: {message}"
                );
                assert!(guard.admit(&create(&masters(), spec)).clean());
            }
            None => assert!(verdict.clean(), "{spec}: {verdict:?}"),
        }
    }
    // Several privileges: the message names the first and counts the others.
    let mut many = admin_spec();
    many["groups"] = json!(["system:masters", "cluster-admins"]);
    let message = guard.admit(&create(&editor(), many)).denial().to_string();
    assert!(
        message.contains("grants group system:masters (and 1 more privilege(s))"),
        "{message}"
    );
}

#[test]
fn names_with_commas_never_match_a_list() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let sneaky = user(
        "mallory",
        &["system:masters,platform-admins", "platform-admins,x"],
    );
    assert!(!guard.admit(&create(&sneaky, admin_spec())).allowed());
    let sneaky = user(
        "x,system:serviceaccount:argocd:argocd-application-controller",
        &[],
    );
    assert!(!guard.admit(&create(&sneaky, admin_spec())).allowed());
    let empty = Requester {
        username: "",
        groups: vec![""],
    };
    assert!(!guard.admit(&create(&empty, admin_spec())).allowed());
}

#[test]
fn status_patches_of_the_operator_are_not_matched() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let guard = chart.policy(MAPPINGS_POLICY);
    let mut patch = update(&service_account(OPERATOR), admin_spec(), admin_spec());
    patch["request"]["subResource"] = json!("status");
    assert!(guard.admit(&patch).clean());
    // The same request on the main resource is guarded: the operator never writes it.
    let main = update(&service_account(OPERATOR), admin_spec(), admin_spec());
    assert!(!guard.admit(&main).allowed());
}

#[test]
fn missing_params_refuse_every_change_of_a_mapping() {
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let mut guard = chart.policy(MAPPINGS_POLICY);
    guard.configmaps.clear();
    for review in [
        create(&masters(), admin_spec()),
        create(&editor(), dev_spec()),
        delete(&platform_admin(), dev_spec()),
    ] {
        assert!(guard.admit(&review).denial().contains("no params found"));
    }
    // A params ConfigMap without data: nothing counts as privileged, nobody is listed.
    let Some(chart) = Chart::new(values()) else {
        return;
    };
    let mut guard = chart.policy(MAPPINGS_POLICY);
    for configmap in &mut guard.configmaps {
        configmap.as_object_mut().unwrap().remove("data");
    }
    assert!(guard.admit(&create(&editor(), admin_spec())).clean());
}

#[test]
fn warn_mode_lets_the_change_through_with_the_message() {
    let Some(chart) = Chart::new(
        json!({"admissionGuard": {"mappings": {"validationActions": ["Warn", "Audit"]}}}),
    ) else {
        return;
    };
    let verdict = chart
        .policy(MAPPINGS_POLICY)
        .admit(&create(&editor(), admin_spec()));
    match verdict {
        Verdict::Allowed { warnings } => {
            assert_eq!(warnings.len(), 1);
            assert!(warnings[0].contains("grants group system:masters"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_guard_follows_the_release_name_and_namespace() {
    let Some(objects) = render(
        &json!({"admissionGuard": {"awsAuth": {"enabled": true}}}),
        Some(("aao", "platform")),
    ) else {
        return;
    };
    let chart = Chart { objects };
    let params = chart
        .find("ConfigMap", "aao-aws-auth-operator-admission")
        .expect("params");
    assert_eq!(params["metadata"]["namespace"], "platform");
    assert_eq!(
        params["data"]["operatorUsernames"],
        "system:serviceaccount:platform:aao-aws-auth-operator"
    );
    let guard = chart.policy("aao-aws-auth-operator-aws-auth");
    assert_eq!(guard.binding["spec"]["paramRef"]["namespace"], "platform");
    let operator = service_account("system:serviceaccount:platform:aao-aws-auth-operator");
    assert!(guard.admit(&edit_aws_auth(&operator)).clean());
    let mappings = chart.policy("aao-aws-auth-operator-privileged-mappings");
    let message = mappings
        .admit(&create(&editor(), admin_spec()))
        .denial()
        .to_string();
    assert!(
        message.contains("ConfigMap platform/aao-aws-auth-operator-admission"),
        "{message}"
    );
}

// ---- aws-auth ---------------------------------------------------------------------------------

#[test]
fn aws_auth_warn_names_the_mapping_way_and_deny_refuses() {
    for (actions, deny) in [(vec!["Warn"], false), (vec!["Deny"], true)] {
        let Some(chart) = Chart::new(aws_auth_values(&actions)) else {
            return;
        };
        let guard = chart.policy(AWS_AUTH_POLICY);
        // kubectl edit by a cluster admin: system:masters is not the break-glass group.
        let verdict = guard.admit(&edit_aws_auth(&masters()));
        let message = match (&verdict, deny) {
            (Verdict::Allowed { warnings }, false) if warnings.len() == 1 => warnings[0].clone(),
            (Verdict::Denied(message), true) => message.clone(),
            other => panic!("{actions:?}: {other:?}"),
        };
        for part in [
            "grant access with an IamIdentityMapping",
            "Changing it is reserved to the operator [system:serviceaccount:kube-system:aws-auth-operator]",
            "EKS [eks:node-manager,eks:fargate-manager,eks:cluster-bootstrap]",
            "break-glass groups [aws-auth-operator:break-glass]",
            "not kubernetes-admin",
            "admissionGuard.awsAuth",
        ] {
            assert!(message.contains(part), "`{part}` missing in: {message}");
        }
        let mut removal = edit_aws_auth(&editor());
        removal["request"]["operation"] = json!("DELETE");
        removal["request"]["object"] = Value::Null;
        let verdict = guard.admit(&removal);
        let message = match verdict {
            Verdict::Allowed { warnings } if !deny => warnings.concat(),
            Verdict::Denied(message) if deny => message,
            other => panic!("{other:?}"),
        };
        assert!(message.contains("Deleting it is reserved"), "{message}");
    }
}

#[test]
fn aws_auth_stays_writable_for_the_operator_eks_and_break_glass() {
    let Some(chart) = Chart::new(aws_auth_values(&["Deny"])) else {
        return;
    };
    let guard = chart.policy(AWS_AUTH_POLICY);
    assert!(
        guard
            .admit(&edit_aws_auth(&service_account(OPERATOR)))
            .clean()
    );
    for eks in [
        "eks:node-manager",
        "eks:fargate-manager",
        "eks:cluster-bootstrap",
    ] {
        assert!(
            guard.admit(&edit_aws_auth(&user(eks, &[]))).clean(),
            "{eks}"
        );
    }
    // Break glass: a cluster admin impersonates the group (kubectl --as-group).
    let break_glass = user("kubernetes-admin", &[BREAK_GLASS]);
    assert!(guard.admit(&edit_aws_auth(&break_glass)).clean());
    let mut removal = edit_aws_auth(&break_glass);
    removal["request"]["operation"] = json!("DELETE");
    removal["request"]["object"] = Value::Null;
    assert!(guard.admit(&removal).clean());
}

#[test]
fn aws_auth_guard_matches_only_kube_system_aws_auth_updates_and_deletes() {
    let Some(chart) = Chart::new(aws_auth_values(&["Deny"])) else {
        return;
    };
    let guard = chart.policy(AWS_AUTH_POLICY);
    let alice = editor();
    let history = review(
        CONFIGMAPS,
        "UPDATE",
        Some("kube-system"),
        "aws-auth-operator-history",
        &alice,
        Some(aws_auth("")),
        Some(aws_auth("")),
    );
    assert!(guard.admit(&history).clean());
    let elsewhere = review(
        CONFIGMAPS,
        "UPDATE",
        Some("team-a"),
        "aws-auth",
        &alice,
        Some(aws_auth("")),
        Some(aws_auth("")),
    );
    assert!(guard.admit(&elsewhere).clean());
    // Creating it (when it is missing) is not guarded: the operator creates it then.
    let created = review(
        CONFIGMAPS,
        "CREATE",
        Some("kube-system"),
        "aws-auth",
        &alice,
        None,
        Some(aws_auth("")),
    );
    assert!(guard.admit(&created).clean());
    assert!(!guard.admit(&edit_aws_auth(&alice)).allowed());
}

#[test]
fn aws_auth_guard_fails_open_without_params() {
    let Some(chart) = Chart::new(aws_auth_values(&["Deny"])) else {
        return;
    };
    let mut guard = chart.policy(AWS_AUTH_POLICY);
    guard.configmaps.clear();
    assert!(guard.admit(&edit_aws_auth(&editor())).clean());
    assert_eq!(guard.policy["spec"]["failurePolicy"], "Ignore");
}

#[test]
fn eks_usernames_and_break_glass_groups_are_values() {
    let Some(chart) = Chart::new(json!({"admissionGuard": {"awsAuth": {
        "enabled": true,
        "validationActions": ["Deny"],
        "eksUsernames": ["eks:node-manager"],
        "breakGlassGroups": ["sre-oncall"],
    }}})) else {
        return;
    };
    let guard = chart.policy(AWS_AUTH_POLICY);
    assert!(
        !guard
            .admit(&edit_aws_auth(&user("eks:fargate-manager", &[])))
            .allowed()
    );
    assert!(
        guard
            .admit(&edit_aws_auth(&user("carol", &["sre-oncall"])))
            .clean()
    );
    assert!(
        !guard
            .admit(&edit_aws_auth(&user("dave", &[BREAK_GLASS])))
            .allowed()
    );
    // The change lives in the params only: the policy is the same object.
    let Some(default) = Chart::new(aws_auth_values(&["Deny"])) else {
        return;
    };
    assert_eq!(guard.policy, default.policy(AWS_AUTH_POLICY).policy);
}
