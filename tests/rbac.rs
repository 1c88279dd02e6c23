//! The RBAC the operator documents (`deploy/rbac.yaml`, which the Helm chart renders
//! too) is exactly what its code calls: every request the controller, the history, the events
//! and the leader election make against the in-memory API is allowed by those rules, and every
//! permission the rules grant is used. And when the API server refuses a call, `/readyz` says so.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_auth_operator::controller::leader::{self, LeaderConfig};
use aws_auth_operator::controller::reconcile::reconcile;
use aws_auth_operator::controller::reconcile_loop;
use aws_auth_operator::plan::Settings;
use aws_auth_operator::server::{Health, Metrics};
use http::Method;
use kube::runtime::watcher;
use serde_json::Value;
use support::fake_api::Call;
use support::*;
use tokio::sync::Notify;

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone)]
struct Rule {
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    verbs: Vec<String>,
}

/// The rules of one Role (in its namespace) or ClusterRole (`namespace: None`).
#[derive(Debug, Clone)]
struct Grant {
    role: String,
    namespace: Option<String>,
    rules: Vec<Rule>,
}

/// What the API server authorises: the verb on a resource (`iamidentitymappings/status`), in a
/// namespace, with a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Request {
    verb: String,
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The Roles and ClusterRoles of deploy/rbac.yaml that are bound to the operator's
/// ServiceAccount.
fn grants() -> Vec<Grant> {
    let text = std::fs::read_to_string("deploy/rbac.yaml").expect("deploy/rbac.yaml");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("valid YAML");
    let bound: BTreeSet<(String, String)> = docs
        .iter()
        .filter(|d| {
            matches!(
                d["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            )
        })
        .filter(|d| {
            d["subjects"].as_array().is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == "aws-auth-operator"
                        && s["namespace"] == "kube-system"
                })
            })
        })
        .map(|d| {
            (
                d["roleRef"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                d["roleRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .map(|d| {
            let kind = d["kind"].as_str().unwrap_or_default().to_string();
            let role = d["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                bound.contains(&(kind.clone(), role.clone())),
                "{kind} {role} is not bound to the operator's ServiceAccount"
            );
            Grant {
                role,
                namespace: d["metadata"]["namespace"].as_str().map(str::to_string),
                rules: d["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| Rule {
                        api_groups: strings(&r["apiGroups"]),
                        resources: strings(&r["resources"]),
                        resource_names: strings(&r["resourceNames"]),
                        verbs: strings(&r["verbs"]),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The request a call is authorised as.
fn request(call: &Call) -> Request {
    let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest),
        other => panic!("unexpected path {other:?}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] => (Some(namespace.to_string()), rest),
        rest => (None, rest),
    };
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), None),
        [resource, name] => (resource.to_string(), Some(name.to_string())),
        [resource, name, subresource] => {
            (format!("{resource}/{subresource}"), Some(name.to_string()))
        }
        other => panic!("unexpected path {other:?}"),
    };
    // A list or watch with a field selector on the name is authorised as that name.
    let selected = call
        .query
        .split('&')
        .find_map(|p| {
            p.strip_prefix("fieldSelector=metadata.name%3D")
                .or_else(|| p.strip_prefix("fieldSelector=metadata.name="))
        })
        .map(str::to_string);
    let verb = match (&call.method, &name) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if call.query.contains("watch=true") => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        (other, _) => panic!("unexpected method {other}"),
    };
    Request {
        verb: verb.to_string(),
        group,
        resource,
        namespace,
        name: name.or(selected),
    }
}

/// The (grant, rule, verb) that allow `request`, if any.
fn allowing(request: &Request, grants: &[Grant]) -> Option<(usize, usize, String)> {
    for (g, grant) in grants.iter().enumerate() {
        if grant.namespace.is_some() && grant.namespace != request.namespace {
            continue;
        }
        for (r, rule) in grant.rules.iter().enumerate() {
            let names_ok = rule.resource_names.is_empty()
                || request
                    .name
                    .as_ref()
                    .is_some_and(|n| rule.resource_names.contains(n));
            if rule.api_groups.contains(&request.group)
                && rule.resources.contains(&request.resource)
                && rule.verbs.contains(&request.verb)
                && names_ok
            {
                return Some((g, r, request.verb.clone()));
            }
        }
    }
    None
}

/// The requests of the two watches `run` starts (the in-memory API serves no watch): every
/// mapping, and aws-auth by a field selector on its name.
fn watch_requests() -> Vec<Request> {
    let mut requests = Vec::new();
    for verb in ["list", "watch"] {
        requests.push(Request {
            verb: verb.to_string(),
            group: "awsauth.dev".to_string(),
            resource: "iamidentitymappings".to_string(),
            namespace: None,
            name: None,
        });
        requests.push(Request {
            verb: verb.to_string(),
            group: String::new(),
            resource: "configmaps".to_string(),
            namespace: Some("kube-system".to_string()),
            name: Some("aws-auth".to_string()),
        });
    }
    requests
}

fn fast_leader_config(identity: &str) -> LeaderConfig {
    LeaderConfig {
        lease_duration_secs: 2,
        grace_secs: 1,
        ..LeaderConfig::new("kube-system", identity)
    }
}

/// Everything the operator does in the tests of this crate, once: create aws-auth and the
/// history, take over, repair drift, recover a malformed key, remove entries (with the CRD
/// check), publish and repeat events, patch statuses, and win, renew and release the lease.
async fn every_kind_of_call(fake: &FakeApi) -> Vec<Request> {
    let ctx = context_with_events(fake, Settings::default());
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    store(fake, vec![admin_mapping(), dev_mapping()]);
    reconcile(&ctx, &fake.mappings(), time(1)).await.unwrap();
    fake.state().mappings.remove("developer");
    reconcile(&ctx, &fake.mappings(), time(2)).await.unwrap();
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapUsers".to_string(), "- [\n".to_string());
    });
    reconcile(&ctx, &fake.mappings(), time(3)).await.unwrap();
    // An event repeated: a series, patched.
    fake.state().edit_aws_auth_data(|data| {
        data.insert("mapUsers".to_string(), "- [\n".to_string());
    });
    let blocked = context_with_events(
        fake,
        Settings {
            recover_malformed: false,
            ..Settings::default()
        },
    );
    for second in [4, 5] {
        reconcile(&blocked, &fake.mappings(), time(second))
            .await
            .unwrap();
    }
    // A mapping that turns invalid, valid again, then invalid the same way: the second
    // Warning joins the first one's series (a patch of the event in `default`).
    fake.state().edit_aws_auth_data(|data| {
        data.remove("mapUsers");
    });
    let flapping = role_mapping("flap", "arn:aws:iam::111122223333:role/flap", "x", &[], 9);
    store(fake, vec![flapping]);
    for (second, username) in [(6, "x"), (7, "x:{{Foo}}"), (8, "x"), (9, "x:{{Foo}}")] {
        let mut mapping = fake.mapping("flap");
        mapping.spec.username = Some(username.to_string());
        mapping.metadata.generation = Some(second);
        fake.add_mapping(mapping);
        reconcile(&ctx, &fake.mappings(), time(second))
            .await
            .unwrap();
    }

    let leadership = leader::elect(fake.client.clone(), fast_leader_config("rbac-test"))
        .await
        .unwrap();
    let mut leadership = leadership;
    tokio::time::timeout(Duration::from_secs(10), leadership.wait_until_leader())
        .await
        .expect("leadership acquired");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    leadership.release().await;

    let mut requests: Vec<Request> = fake.calls().iter().map(request).collect();
    requests.extend(watch_requests());
    requests
}

#[tokio::test]
async fn the_documented_rbac_allows_every_call_and_grants_nothing_unused() {
    let fake = FakeApi::start();
    let grants = grants();
    let requests = every_kind_of_call(&fake).await;

    let mut used = BTreeSet::new();
    let mut refused = BTreeSet::new();
    for request in &requests {
        match allowing(request, &grants) {
            Some(grant) => {
                used.insert(grant);
            }
            None => {
                refused.insert(request.clone());
            }
        }
    }
    assert!(
        refused.is_empty(),
        "deploy/rbac.yaml does not allow: {refused:#?}"
    );
    let mut unused = Vec::new();
    for (g, grant) in grants.iter().enumerate() {
        for (r, rule) in grant.rules.iter().enumerate() {
            for verb in &rule.verbs {
                if !used.contains(&(g, r, verb.clone())) {
                    unused.push(format!("{} {:?} {verb}", grant.role, rule.resources));
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "deploy/rbac.yaml grants what the operator never calls: {unused:#?}"
    );
}

/// A refused write makes the operator not ready, and it becomes ready again once the RBAC
/// is fixed.
#[tokio::test]
async fn readiness_reports_a_forbidden_write_until_it_works_again() {
    let fake = Arc::new(FakeApi::start());
    fake.seed_aws_auth(&[("mapRoles", NODE_ROLE)], None);
    store(&fake, vec![admin_mapping()]);
    fake.state().forbidden.push((
        Method::PUT,
        "/api/v1/namespaces/kube-system/configmaps/aws-auth".into(),
    ));

    let (store, mut writer) = aws_auth_operator::cache::mapping_cache();
    writer.apply(&watcher::Event::Init);
    for mapping in fake.mappings() {
        writer.apply(&watcher::Event::InitApply((*mapping).clone()));
    }
    writer.apply(&watcher::Event::InitDone);
    let health = Arc::new(Health::new());
    health.set_ready(true);
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let loop_task = {
        let (fake, health, wake) = (fake.clone(), health.clone(), wake.clone());
        tokio::spawn(async move {
            let ctx = context(&fake, Settings::default());
            let metrics = Metrics::new();
            reconcile_loop(
                &ctx,
                &store,
                &wake,
                Duration::from_secs(300),
                &metrics,
                &health,
                None,
                stop_rx,
            )
            .await;
        })
    };
    let waited = wait_for(|| !health.is_ready()).await;
    assert!(waited, "not ready while the write is forbidden");
    let reason = health.not_ready_reason();
    assert!(
        reason.contains("reconcile") && reason.contains("forbidden"),
        "{reason}"
    );

    fake.state().forbidden.clear();
    wake.notify_one();
    assert!(
        wait_for(|| health.is_ready()).await,
        "ready again: {}",
        health.not_ready_reason()
    );
    let _ = stop_tx.send(());
    loop_task.await.unwrap();
}

/// A Lease the RBAC forbids to patch: the election reports it, and readiness follows.
#[tokio::test]
async fn leader_election_reports_a_forbidden_lease() {
    let fake = FakeApi::start();
    fake.state().forbidden.push((
        Method::PATCH,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases".into(),
    ));
    let leadership = leader::elect(fake.client.clone(), fast_leader_config("forbidden"))
        .await
        .unwrap();
    let mut problems = leadership.problems();
    let reported =
        tokio::time::timeout(Duration::from_secs(10), problems.wait_for(Option::is_some))
            .await
            .expect("a problem is reported")
            .expect("the election runs")
            .clone();
    let problem = reported.unwrap_or_default();
    assert!(problem.contains("aws-auth-operator-leader"), "{problem}");
    assert!(!leadership.is_leader());
    leadership.release().await;
}

async fn wait_for(condition: impl Fn() -> bool) -> bool {
    for _ in 0..400 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}
