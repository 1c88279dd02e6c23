//! The shipped binary, started the way a user starts it, against the test API server
//! (`aws_auth_operator::testserver`: real HTTP on 127.0.0.1, in memory).
//!
//! Each configuration is run twice: with the mappings already there when the operator starts,
//! and with none there (they are created once it runs). Every run must reach, within
//! [`CONVERGE`] of the binary's start:
//! - every mapping Ready for its current generation;
//! - aws-auth holding what the authenticator should read: each mapping's entry exactly as
//!   written here (role ARNs path-stripped, user ARNs with their path), parsed with the
//!   authenticator's rules without an error, and the node role EKS wrote (unmanaged) kept;
//! - `/readyz` answering 200;
//!
//! and SIGTERM must end it with exit code 0 within [`STOP`]. Each run prints one line
//! `shipped-binary: <configuration>: first aws-auth write <ms>, all Ready <ms>, stop <ms>`.
//!
//! Configurations: no flags at all (the README's `run`); the chart's default values, rendered by
//! the real Helm engine (its container args and env, without a ServiceAccount: the kubeconfig
//! stands in); `--leader-election` with two replicas; `--access-entries mirror` and `only`
//! against ministack; a permission set with `--verify-principals` against ministack's IAM; and a
//! start before the CRD exists.
//!
//! The two runs that use the operator's default metrics port (8080) hold a lock, so that they
//! never run at once.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_auth_operator::api::IamIdentityMapping;
use aws_auth_operator::awsauth::{
    ArnMapping, AwsAuthEntries, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, parse_data,
};
use aws_auth_operator::status::is_ready;
use aws_auth_operator::testserver::{SimConfig, SimServer};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use support::ministack::Ministack;

const BIN: &str = env!("CARGO_BIN_EXE_aws-auth-operator");
/// The bound of every configuration: binary start to every mapping Ready.
const CONVERGE: Duration = Duration::from_secs(30);
/// SIGTERM to exit.
const STOP: Duration = Duration::from_secs(10);
const DEFAULT_METRICS_PORT: u16 = 8080;
/// A node role EKS wrote into aws-auth before the operator came: never the operator's.
const EKS_NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-managed-NodeInstanceRole\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";

static DEFAULT_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the mappings exist before the operator starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    WithMappings,
    Empty,
}

const STARTS: [Start; 2] = [Start::WithMappings, Start::Empty];

// ---- the cluster --------------------------------------------------------------------------------

struct Cluster {
    server: SimServer,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    client: Client,
}

impl Cluster {
    async fn start(with_crd: bool) -> Cluster {
        let server = SimServer::start(SimConfig::instant()).expect("the test API server starts");
        if with_crd {
            server.seed_crd(crd()).expect("CRD seeded");
        }
        server
            .seed(
                "configmaps",
                CONFIGMAP_NAMESPACE,
                json!({
                    "metadata": {"name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE},
                    "data": {"mapRoles": EKS_NODE_ROLE}
                }),
            )
            .expect("aws-auth seeded");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&kubeconfig).expect("kubeconfig reads"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("kubeconfig loads");
        let client = Client::try_from(config).expect("client");
        Cluster {
            server,
            dir,
            kubeconfig,
            client,
        }
    }

    fn mappings(&self) -> Api<IamIdentityMapping> {
        Api::all(self.client.clone())
    }

    async fn create(&self, mappings: &[Value]) {
        for mapping in mappings {
            let mapping: IamIdentityMapping =
                serde_json::from_value(mapping.clone()).expect("a mapping");
            self.mappings()
                .create(&PostParams::default(), &mapping)
                .await
                .unwrap_or_else(|e| panic!("creating {:?}: {e}", mapping.metadata.name));
        }
    }

    async fn aws_auth(&self) -> Option<ConfigMap> {
        Api::<ConfigMap>::namespaced(self.client.clone(), CONFIGMAP_NAMESPACE)
            .get_opt(CONFIGMAP_NAME)
            .await
            .ok()
            .flatten()
    }

    /// Whether the operator has written aws-auth (it carries the managed-principals annotation).
    async fn written(&self) -> bool {
        self.aws_auth().await.is_some_and(|cm| {
            cm.metadata
                .annotations
                .is_some_and(|a| a.contains_key(aws_auth_operator::plan::MANAGED_ANNOTATION))
        })
    }

    /// The names of the mappings not Ready for their generation yet.
    async fn not_ready(&self, names: &BTreeSet<String>) -> BTreeSet<String> {
        let Ok(list) = self.mappings().list(&Default::default()).await else {
            return names.clone();
        };
        let ready: BTreeSet<String> = list
            .items
            .iter()
            .filter(|m| is_ready(m))
            .filter_map(|m| m.metadata.name.clone())
            .collect();
        names.difference(&ready).cloned().collect()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}

fn crd() -> Value {
    let text = aws_auth_operator::cli::crd_yaml().expect("the CRD renders");
    serde_saphyr::from_str(&text).expect("the CRD is YAML")
}

// ---- the mappings -------------------------------------------------------------------------------

fn mapping(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "awsauth.dev/v1alpha1",
        "kind": "IamIdentityMapping",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// A mapping of each kind (a role with a path, a user with a path, a node role, an account),
/// with the entry the authenticator must read for each.
fn mappings(account: &str) -> (Vec<Value>, AwsAuthEntries) {
    let objects = vec![
        mapping(
            "platform-admin",
            json!({"arn": format!("arn:aws:iam::{account}:role/platform/eks-admin"), "username": "admin:{{SessionName}}", "groups": ["system:masters"]}),
        ),
        mapping(
            "ci-deployer",
            json!({"arn": format!("arn:aws:iam::{account}:user/ci/deployer"), "username": "ci-deployer", "groups": ["deployers"]}),
        ),
        mapping(
            "workers",
            json!({"arn": format!("arn:aws:iam::{account}:role/eks-workers"), "username": "system:node:{{EC2PrivateDNSName}}", "groups": ["system:bootstrappers", "system:nodes"]}),
        ),
        mapping("partner", json!({"account": "444455556666"})),
    ];
    let entry = |arn: String, username: &str, groups: &[&str]| ArnMapping {
        arn,
        username: username.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: Default::default(),
    };
    let expected = AwsAuthEntries {
        roles: vec![
            entry(
                format!("arn:aws:iam::{account}:role/eks-admin"),
                "admin:{{SessionName}}",
                &["system:masters"],
            ),
            entry(
                format!("arn:aws:iam::{account}:role/eks-workers"),
                "system:node:{{EC2PrivateDNSName}}",
                &["system:bootstrappers", "system:nodes"],
            ),
        ],
        users: vec![entry(
            format!("arn:aws:iam::{account}:user/ci/deployer"),
            "ci-deployer",
            &["deployers"],
        )],
        accounts: vec!["444455556666".to_string()],
    };
    (objects, expected)
}

fn names(objects: &[Value]) -> BTreeSet<String> {
    objects
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// The node role EKS wrote, as the authenticator reads it.
fn eks_node_role() -> ArnMapping {
    ArnMapping {
        arn: "arn:aws:iam::111122223333:role/eks-managed-NodeInstanceRole".to_string(),
        username: "system:node:{{EC2PrivateDNSName}}".to_string(),
        groups: vec![
            "system:bootstrappers".to_string(),
            "system:nodes".to_string(),
        ],
        extra: Default::default(),
    }
}

/// aws-auth as the authenticator reads it: every `expected` entry and the EKS node role, nothing
/// the operator should not have written, and no section it would drop.
fn check_aws_auth(cm: &ConfigMap, expected: &AwsAuthEntries) -> Result<(), String> {
    let parsed = parse_data(&cm.data.clone().unwrap_or_default());
    if parsed.has_errors() {
        return Err(format!(
            "aws-auth has errors the authenticator would hit: {:?}",
            parsed.diagnostics
        ));
    }
    let mut want = expected.clone();
    want.roles.push(eks_node_role());
    let sorted = |mut v: Vec<ArnMapping>| {
        v.sort_by(|a, b| a.arn.cmp(&b.arn));
        v
    };
    let got = &parsed.entries;
    if sorted(got.roles.clone()) != sorted(want.roles.clone())
        || sorted(got.users.clone()) != sorted(want.users.clone())
        || got.accounts.iter().collect::<BTreeSet<_>>()
            != want.accounts.iter().collect::<BTreeSet<_>>()
    {
        return Err(format!(
            "aws-auth reads as\n{got:#?}\nexpected\n{want:#?}\n(data: {:#?})",
            cm.data
        ));
    }
    Ok(())
}

// ---- the operator process -----------------------------------------------------------------------

struct Operator {
    child: Child,
    log: PathBuf,
    metrics_port: u16,
    started: Instant,
}

impl Operator {
    fn spawn(
        cluster: &Cluster,
        name: &str,
        args: &[String],
        env: &[(String, String)],
        metrics_port: u16,
    ) -> Operator {
        let log = cluster.log(name);
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let started = Instant::now();
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        Operator {
            child,
            log,
            metrics_port,
            started,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM; how it ended and how long it took, or a failure after [`STOP`].
    async fn stop(&mut self) -> Result<(ExitStatus, Duration), String> {
        let asked = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        if !matches!(sent, Ok(s) if s.success()) {
            return Err("could not send SIGTERM".to_string());
        }
        while asked.elapsed() < STOP {
            if let Some(status) = self.exited() {
                return Ok((status, asked.elapsed()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        Err(format!("did not exit within {STOP:?} of SIGTERM"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` on 127.0.0.1:port: (status code, body); (0, error) when nothing answers.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let answer = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })();
    match answer {
        Ok(text) => {
            let code = text
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let body = text
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_string();
            (code, body)
        }
        Err(e) => (0, e.to_string()),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn metrics_args(port: u16) -> Vec<String> {
    vec![format!("--metrics-addr=127.0.0.1:{port}")]
}

// ---- the checks ---------------------------------------------------------------------------------

/// What one run measured.
struct Figures {
    first_write: Duration,
    all_ready: Duration,
}

/// Waits until `check` passes, failing with the operator's log after [`CONVERGE`] from its start.
async fn wait_until<F, Fut>(operator: &mut Operator, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    while operator.started.elapsed() < CONVERGE {
        if let Some(status) = operator.exited() {
            panic!(
                "the operator exited ({status}) while waiting for {what}; log:\n{}",
                operator.log_text()
            );
        }
        match check().await {
            Ok(()) => return operator.started.elapsed(),
            Err(why) => last = why,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{what}: not within {CONVERGE:?} of the start: {last}\noperator log:\n{}",
        operator.log_text()
    );
}

/// Creates the mappings if the run starts empty, then waits for: aws-auth written, every mapping
/// Ready, aws-auth as the authenticator should read it, /readyz 200.
async fn converge(
    cluster: &Cluster,
    operator: &mut Operator,
    start: Start,
    objects: &[Value],
    expected: &AwsAuthEntries,
) -> Figures {
    if start == Start::Empty {
        // Running and ready with nothing to do, before any mapping exists.
        wait_readyz(operator, "/readyz 200 with no mapping").await;
        cluster.create(objects).await;
    }
    let first_write = wait_until(operator, "the first aws-auth write", || async {
        if cluster.written().await {
            Ok(())
        } else {
            Err("aws-auth not written by the operator".to_string())
        }
    })
    .await;
    let all_ready = wait_all_ready(cluster, operator, objects, "every mapping Ready").await;
    wait_until(
        operator,
        "aws-auth as the authenticator should read it",
        || async {
            match cluster.aws_auth().await {
                Some(cm) => check_aws_auth(&cm, expected),
                None => Err("aws-auth is missing".to_string()),
            }
        },
    )
    .await;
    wait_readyz(operator, "/readyz 200").await;
    Figures {
        first_write,
        all_ready,
    }
}

/// Waits until every mapping of `objects` is Ready for its generation; the time since the start.
async fn wait_all_ready(
    cluster: &Cluster,
    operator: &mut Operator,
    objects: &[Value],
    what: &str,
) -> Duration {
    let wanted = names(objects);
    wait_until(operator, what, || async {
        let missing = cluster.not_ready(&wanted).await;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not Ready: {missing:?}"))
        }
    })
    .await
}

fn operator_readyz(port: u16) -> (u16, String) {
    http_get(port, "/readyz")
}

async fn wait_readyz(operator: &mut Operator, what: &str) {
    let port = operator.metrics_port;
    wait_until(operator, what, || async move {
        match operator_readyz(port) {
            (200, _) => Ok(()),
            (code, body) => Err(format!("/readyz {code}: {body}")),
        }
    })
    .await;
}

/// SIGTERM ends the operator with 0 within [`STOP`]; prints the run's figures.
async fn stop_and_report(operator: &mut Operator, what: &str, figures: &Figures) {
    let (status, took) = operator
        .stop()
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}; log:\n{}", operator.log_text()));
    assert!(
        status.success(),
        "{what}: exited {status} after SIGTERM; log:\n{}",
        operator.log_text()
    );
    println!(
        "shipped-binary: {what}: first aws-auth write {} ms, all Ready {} ms, stop {} ms",
        figures.first_write.as_millis(),
        figures.all_ready.as_millis(),
        took.as_millis()
    );
}

/// One run of a configuration: a fresh cluster, the binary with `args` and `env`.
async fn run_configuration(
    what: &str,
    start: Start,
    args: Vec<String>,
    env: Vec<(String, String)>,
    metrics_port: u16,
) {
    let what = format!("{what} ({start:?})");
    let cluster = Cluster::start(true).await;
    let (objects, expected) = mappings("111122223333");
    if start == Start::WithMappings {
        cluster.create(&objects).await;
    }
    let mut operator = Operator::spawn(&cluster, "operator", &args, &env, metrics_port);
    let figures = converge(&cluster, &mut operator, start, &objects, &expected).await;
    stop_and_report(&mut operator, &what, &figures).await;
}

// ---- the configurations -------------------------------------------------------------------------

/// `aws-auth-operator run`, nothing else: the README's command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flags() {
    let _port = DEFAULT_PORT.lock().await;
    for start in STARTS {
        run_configuration(
            "run, no flags",
            start,
            vec!["run".into()],
            Vec::new(),
            DEFAULT_METRICS_PORT,
        )
        .await;
    }
}

/// The container the chart's default values describe: its args and env exactly, rendered by
/// the real Helm engine; the kubeconfig stands in for the ServiceAccount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_default_values() {
    let Some(container) = chart_container() else {
        return;
    };
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("a string arg").to_string())
        .collect();
    assert!(
        container["command"].is_null(),
        "the chart overrides the image's entrypoint: {container}"
    );
    let namespace = container["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = match (
                &e["value"],
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Value::String(v), _) => v.clone(),
                (_, Some("metadata.name")) => "aws-auth-operator-5d8f9c7b6-x2x7q".to_string(),
                (_, Some("metadata.namespace")) => namespace.clone(),
                other => panic!("an env entry this test cannot resolve: {e} ({other:?})"),
            };
            (name, value)
        })
        .collect();
    let port = metrics_port_of(&args);
    let _port = if port == DEFAULT_METRICS_PORT {
        Some(DEFAULT_PORT.lock().await)
    } else {
        None
    };
    for start in STARTS {
        run_configuration(
            "the chart's default values",
            start,
            args.clone(),
            env.clone(),
            port,
        )
        .await;
    }
}

/// The port of `--metrics-addr=HOST:PORT` (`:PORT` too) in `args`.
fn metrics_port_of(args: &[String]) -> u16 {
    args.iter()
        .find_map(|a| a.strip_prefix("--metrics-addr="))
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_METRICS_PORT)
}

/// The chart's container as tests/chart/container.py prints it; `None` (skipped) without the
/// Python tools, except under CI=true.
fn chart_container() -> Option<Value> {
    let python = std::env::var_os("AWS_AUTH_OPERATOR_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            local.is_file().then_some(local)
        });
    let Some(python) = python else {
        let message = "the chart's container needs the Helm engine: set AWS_AUTH_OPERATOR_PYTHON (see .ci/run) or run `make venv`";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("SKIPPED chart_default_values: {message}");
        return None;
    };
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart/container.py"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/chart"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "tests/chart/container.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("container.py prints JSON"))
}

/// Two replicas with `--leader-election`: one writes; after SIGTERM the other takes over and
/// serves a change made after the first one stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_election_with_two_replicas() {
    for start in STARTS {
        let what = format!("--leader-election, two replicas ({start:?})");
        let cluster = Cluster::start(true).await;
        let (objects, expected) = mappings("111122223333");
        if start == Start::WithMappings {
            cluster.create(&objects).await;
        }
        let replica = |name: &str| {
            let port = free_port();
            let mut args = vec!["run".to_string(), "--leader-election".to_string()];
            args.extend(metrics_args(port));
            Operator::spawn(
                &cluster,
                name,
                &args,
                &[("POD_NAME".to_string(), name.to_string())],
                port,
            )
        };
        let mut first = replica("replica-a");
        let mut second = replica("replica-b");
        let figures = converge(&cluster, &mut first, start, &objects, &expected).await;
        // Both replicas are ready (a standby is healthy); exactly one leads.
        wait_readyz(&mut second, "the standby's /readyz 200").await;
        let leads = |op: &Operator| {
            http_get(op.metrics_port, "/metrics")
                .1
                .lines()
                .any(|l| l.trim() == "aws_auth_operator_leader 1")
        };
        let (mut leader, mut standby) = match (leads(&first), leads(&second)) {
            (true, false) => (first, second),
            (false, true) => (second, first),
            other => panic!("{what}: expected exactly one leader, got {other:?}"),
        };
        stop_and_report(&mut leader, &what, &figures).await;

        // The standby takes over: a new mapping reaches aws-auth.
        let late = mapping(
            "late-viewer",
            json!({"arn": "arn:aws:iam::111122223333:role/late-viewer", "username": "late-viewer", "groups": ["viewers"]}),
        );
        cluster.create(std::slice::from_ref(&late)).await;
        let mut expected = expected.clone();
        expected.roles.push(ArnMapping {
            arn: "arn:aws:iam::111122223333:role/late-viewer".to_string(),
            username: "late-viewer".to_string(),
            groups: vec!["viewers".to_string()],
            extra: Default::default(),
        });
        let took_over_at = Instant::now();
        standby.started = Instant::now();
        let mut all = objects.clone();
        all.push(late);
        let wanted = names(&all);
        wait_until(&mut standby, "the standby takes over", || async {
            let missing = cluster.not_ready(&wanted).await;
            let cm = cluster.aws_auth().await.ok_or("aws-auth is missing")?;
            check_aws_auth(&cm, &expected)?;
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("not Ready: {missing:?}"))
            }
        })
        .await;
        let takeover = took_over_at.elapsed();
        let (status, _) = standby
            .stop()
            .await
            .unwrap_or_else(|e| panic!("{what}: standby: {e}"));
        assert!(status.success(), "{what}: the standby exited {status}");
        println!(
            "shipped-binary: {what}: the standby served a new mapping {} ms after the leader stopped",
            takeover.as_millis()
        );
    }
}

/// Started before the CRD exists: it says what is missing (log, /readyz), does not exit, and
/// proceeds once the CRD is installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_before_the_crd_exists() {
    for start in STARTS {
        let what = format!("run before the CRD exists ({start:?})");
        let cluster = Cluster::start(false).await;
        let port = free_port();
        let mut args = vec!["run".to_string()];
        args.extend(metrics_args(port));
        let mut operator = Operator::spawn(&cluster, "operator", &args, &[], port);
        wait_until(
            &mut operator,
            "/readyz saying the CRD is missing",
            || async move {
                match operator_readyz(port) {
                    (503, body)
                        if body.contains("CRD") && body.contains("aws-auth-operator crd") =>
                    {
                        Ok(())
                    }
                    (code, body) => Err(format!("/readyz {code}: {body}")),
                }
            },
        )
        .await;
        assert!(
            operator.log_text().contains("is not installed"),
            "the log says the CRD is missing:\n{}",
            operator.log_text()
        );
        if start == Start::WithMappings {
            // Wait long enough for the periodic start-up report once.
            let report_due =
                aws_auth_operator::controller::START_UP_REPORT_INTERVAL + Duration::from_secs(2);
            tokio::time::sleep(report_due.saturating_sub(operator.started.elapsed())).await;
            let log = operator.log_text();
            assert!(
                log.contains("the IamIdentityMapping cache has not synced yet")
                    && log.contains("waited_seconds"),
                "a periodic report of what start-up waits for:\n{log}"
            );
        }
        assert!(
            operator.exited().is_none(),
            "it waits for the CRD, it does not exit"
        );
        cluster.server.seed_crd(crd()).expect("CRD installed");
        let (objects, expected) = mappings("111122223333");
        if start == Start::WithMappings {
            cluster.create(&objects).await;
        }
        // The bound counts from the CRD's arrival.
        operator.started = Instant::now();
        let figures = converge(&cluster, &mut operator, start, &objects, &expected).await;
        stop_and_report(&mut operator, &what, &figures).await;
    }
}

// ---- against ministack (EKS access entries, IAM) ------------------------------------------------

const CLUSTER: &str = "shipped";

fn ministack_env() -> Vec<(String, String)> {
    vec![
        (
            "AWS_ACCESS_KEY_ID".into(),
            support::ministack::ACCESS_KEY.into(),
        ),
        ("AWS_SECRET_ACCESS_KEY".into(), "secret".into()),
        ("AWS_REGION".into(), support::ministack::REGION.into()),
    ]
}

/// `--access-entries mirror` and `only`: every mapping Ready; in mirror mode aws-auth holds
/// every entry and EKS an access entry for each mapping that can have one; in only mode the
/// entries served by an access entry leave aws-auth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_entries_mirror_and_only() {
    let Some(stack) = Ministack::start("access_entries_mirror_and_only") else {
        return;
    };
    let account = support::ministack::ACCOUNT;
    let mut cluster_index = 0;
    for mode in ["mirror", "only"] {
        for start in STARTS {
            let what = format!("--access-entries {mode} ({start:?})");
            // A cluster of its own per run: access entries outlive the operator.
            cluster_index += 1;
            let eks_cluster = format!("{CLUSTER}-{cluster_index}");
            stack
                .create_cluster(&eks_cluster, "API_AND_CONFIG_MAP")
                .await;
            let cluster = Cluster::start(true).await;
            let (objects, mirrored) = mappings(account);
            if start == Start::WithMappings {
                cluster.create(&objects).await;
            }
            let port = free_port();
            let mut args = vec![
                "run".to_string(),
                format!("--access-entries={mode}"),
                format!("--cluster-name={eks_cluster}"),
                format!("--eks-endpoint={}", stack.endpoint),
            ];
            args.extend(metrics_args(port));
            let mut operator = Operator::spawn(&cluster, "operator", &args, &ministack_env(), port);
            // In only mode, what stays in aws-auth is what cannot move (the account).
            let expected = if mode == "only" {
                AwsAuthEntries {
                    accounts: mirrored.accounts.clone(),
                    ..Default::default()
                }
            } else {
                mirrored.clone()
            };
            let figures = converge(&cluster, &mut operator, start, &objects, &expected).await;
            let entries: BTreeSet<String> = stack
                .client()
                .sdk()
                .list_access_entries()
                .cluster_name(&eks_cluster)
                .send()
                .await
                .expect("ListAccessEntries")
                .access_entries()
                .iter()
                .cloned()
                .collect();
            for principal in [
                format!("arn:aws:iam::{account}:role/platform/eks-admin"),
                format!("arn:aws:iam::{account}:user/ci/deployer"),
                format!("arn:aws:iam::{account}:role/eks-workers"),
            ] {
                assert!(
                    entries.contains(&principal),
                    "{what}: no access entry for {principal}: {entries:?}"
                );
            }
            stop_and_report(&mut operator, &what, &figures).await;
        }
    }
}

/// A permission set resolved through IAM, with `--verify-principals`: aws-auth maps the role IAM
/// holds for it (path-stripped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_set_with_verify_principals() {
    let Some(stack) = Ministack::start("permission_set_with_verify_principals") else {
        return;
    };
    let account = support::ministack::ACCOUNT;
    let role = "AWSReservedSSO_Developers_0123456789abcdef";
    let iam = aws_auth_operator::principals::iam::IamClient::for_endpoint(
        &stack.endpoint,
        support::ministack::REGION,
        support::ministack::ACCESS_KEY,
        "secret",
    );
    iam.sdk()
        .create_role()
        .role_name(role)
        .path("/aws-reserved/sso.amazonaws.com/eu-west-1/")
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[]}"#)
        .send()
        .await
        .expect("CreateRole");
    for start in STARTS {
        let what = format!("a permission set with --verify-principals ({start:?})");
        let cluster = Cluster::start(true).await;
        let (mut objects, mut expected) = mappings(account);
        objects.push(mapping(
            "developers",
            json!({"ssoPermissionSet": {"name": "Developers"}, "username": "dev:{{SessionName}}", "groups": ["developers"]}),
        ));
        expected.roles.push(ArnMapping {
            arn: format!("arn:aws:iam::{account}:role/{role}"),
            username: "dev:{{SessionName}}".to_string(),
            groups: vec!["developers".to_string()],
            extra: Default::default(),
        });
        if start == Start::WithMappings {
            cluster.create(&objects).await;
        }
        let port = free_port();
        let mut args = vec![
            "run".to_string(),
            "--verify-principals".to_string(),
            format!("--iam-endpoint={}", stack.endpoint),
        ];
        args.extend(metrics_args(port));
        let mut operator = Operator::spawn(&cluster, "operator", &args, &ministack_env(), port);
        let figures = converge(&cluster, &mut operator, start, &objects, &expected).await;
        stop_and_report(&mut operator, &what, &figures).await;
    }
}

// ---- reliability of the running binary ----------------------------------------------------------

/// The lockout while lifting a freeze: the CRD is deleted (aws-auth freezes, every entry kept),
/// installed again, the mappings re-applied while the mapping watch is re-listing (its
/// resourceVersion expired, the list slow), and the freeze lifted before that list completes.
/// No managed entry may leave aws-auth at any moment: the operator removes an entry only for a
/// deletion it has seen on a current cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifting_a_freeze_during_a_relist_removes_nothing() {
    use aws_auth_operator::controller::reconcile::FROZEN_ANNOTATION;
    use kube::api::{Patch, PatchParams};

    const RELIST: Duration = Duration::from_secs(3);
    let cluster = Cluster::start(true).await;
    let (objects, expected) = mappings("111122223333");
    cluster.create(&objects).await;
    let port = free_port();
    let mut args = vec!["run".to_string()];
    args.extend(metrics_args(port));
    let mut operator = Operator::spawn(&cluster, "operator", &args, &[], port);
    converge(
        &cluster,
        &mut operator,
        Start::WithMappings,
        &objects,
        &expected,
    )
    .await;

    // The CRD goes: every mapping with it. aws-auth is frozen, nothing removed.
    cluster
        .server
        .remove(
            "customresourcedefinitions",
            "",
            "iamidentitymappings.awsauth.dev",
        )
        .expect("CRD deleted");
    operator.started = Instant::now();
    wait_until(&mut operator, "aws-auth frozen", || async {
        let cm = cluster.aws_auth().await.ok_or("aws-auth is missing")?;
        check_aws_auth(&cm, &expected)?;
        let frozen = cm
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key(FROZEN_ANNOTATION));
        if frozen {
            Ok(())
        } else {
            Err("not frozen".to_string())
        }
    })
    .await;

    // The CRD is back; the operator watches again.
    let watches = || {
        cluster
            .server
            .stats()
            .operator("watch iamidentitymappings")
            .requests
    };
    let before = watches();
    cluster.server.seed_crd(crd()).expect("CRD installed again");
    wait_until(&mut operator, "the mapping watch back", || async {
        if watches() > before {
            Ok(())
        } else {
            Err("no new watch".to_string())
        }
    })
    .await;

    // The watch's resourceVersion expires and its re-list is slow; meanwhile the mappings are
    // applied again and the freeze is lifted.
    cluster
        .server
        .delay_lists("iamidentitymappings", Some(RELIST))
        .expect("slow lists");
    cluster
        .server
        .expire_watches("iamidentitymappings")
        .expect("watches expired");
    cluster.create(&objects).await;
    Api::<ConfigMap>::namespaced(cluster.client.clone(), CONFIGMAP_NAMESPACE)
        .patch(
            CONFIGMAP_NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {FROZEN_ANNOTATION: null}}})),
        )
        .await
        .expect("freeze lifted");
    let lifted = Instant::now();

    // Through the re-list and after it, every entry stays.
    let watch_until = lifted + RELIST + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let cm = cluster.aws_auth().await.expect("aws-auth exists");
        if let Err(why) = check_aws_auth(&cm, &expected) {
            panic!(
                "{} ms after the freeze was lifted: {why}\noperator log:\n{}",
                lifted.elapsed().as_millis(),
                operator.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster
        .server
        .delay_lists("iamidentitymappings", None)
        .expect("lists fast again");
    operator.started = Instant::now();
    wait_all_ready(
        &cluster,
        &mut operator,
        &objects,
        "every mapping Ready again",
    )
    .await;
    let (status, _) = operator.stop().await.expect("stops");
    assert!(status.success());
}

/// `demo`: the README's no-cluster step. The operator runs against the test API server, every
/// example becomes Ready, and the printed aws-auth holds the examples next to the node role EKS
/// wrote.
#[test]
fn demo_shows_the_examples_ready_and_the_aws_auth_written() {
    let out = Command::new(BIN)
        .arg("demo")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("KUBECONFIG")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo exited {}: {stderr}", out.status);
    assert!(
        stderr.contains("TEST API server"),
        "it says what it runs against: {stderr}"
    );
    assert!(stdout.contains("6 of 6 Ready"), "{stdout}");
    let cm: ConfigMap =
        serde_saphyr::from_str(&stdout).expect("the printed aws-auth is a ConfigMap");
    let parsed = parse_data(&cm.data.unwrap_or_default());
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    assert_eq!(
        parsed.entries.len(),
        7,
        "six examples and the EKS node role: {stdout}"
    );
    assert!(
        parsed
            .entries
            .roles
            .iter()
            .any(|r| r.arn.ends_with("eks-nodegroup-NodeInstanceRole-1ABC")),
        "the node role EKS wrote is kept"
    );
}
