//! The shipped observability, checked with the real tools:
//! - `promtool check rules` on deploy/prometheus/aws-auth-operator.rules.yaml (generated from the
//!   chart's PrometheusRule), and `promtool test rules` on tests/prometheus/, which must make every
//!   alert fire and also hold a case where it stays silent;
//! - every expression of the Grafana dashboard and every alert parses (promtool, through a
//!   throwaway recording-rules file) and names only metrics the operator exports;
//! - end to end: the shipped binary against the test API server, scraped by a real Prometheus
//!   server (127.0.0.1, 1 s scrape and evaluation, the shipped rules with `for: 0s`); nothing fires
//!   while all is well, and deleting the CRD (which freezes aws-auth) fires
//!   AwsAuthOperatorAwsAuthFrozen in Prometheus' `/api/v1/alerts`.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`.ci/run` installs it).
//! Without them the tests are skipped with a notice, except with `CI=true`, where they fail.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_auth_operator::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use aws_auth_operator::server::Metrics;
use aws_auth_operator::testserver::{SimConfig, SimServer};
use serde_json::{Value, json};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = env!("CARGO_BIN_EXE_aws-auth-operator");
const RULES: &str = "deploy/prometheus/aws-auth-operator.rules.yaml";
const RULE_TESTS: &str = "tests/prometheus/aws-auth-operator.test.yaml";
const DASHBOARD: &str = "charts/aws-auth-operator/dashboards/aws-auth-operator.json";
/// How long the end-to-end test waits for each thing it expects.
const PATIENCE: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    Path::new(ROOT)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The tool on PATH; `None` (after a notice) when it is missing, a failure under CI.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !in_ci(),
            "CI=true but {name} is missing (apt-get install prometheus)"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install prometheus)");
    }
    found
}

fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).expect("file reads");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path} is YAML: {e}"))
}

/// (alert name, expression) of every rule of the shipped rules file.
fn shipped_alerts() -> Vec<(String, String)> {
    let rules = yaml_file(RULES);
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name").to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            )
        })
        .collect()
}

/// Every `expr` of the dashboard, with Grafana's variables replaced by what they stand for.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(root().join(DASHBOARD)).expect("dashboard reads");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut out = Vec::new();
    walk(&dashboard, &mut out);
    out.iter()
        .map(|e| {
            e.replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
        })
        .collect()
}

/// The metric names the operator exports, with every family holding a series (families without
/// one are left out of the exposition): histogram and counter suffixes included.
fn exported_names() -> BTreeSet<String> {
    let metrics = Metrics::new();
    metrics.reconciled(Duration::ZERO, Some("ApiError"));
    metrics.set_mapping_states(&[(("False".to_string(), "Conflict".to_string()), 1)].into());
    metrics.set_access_entry_states(&[((false, "EksError".to_string()), 1)].into());
    metrics.set_watch_up("IamIdentityMappings", true);
    aws_auth_operator::server::aws_api_error("eks", "DescribeCluster", "Unreachable");
    metrics
        .encode()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every `aws_auth_operator_*` name an expression uses.
fn names_used(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"aws_auth_operator_[a-z_]+").expect("regex");
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

#[test]
fn shipped_rules_pass_promtool_check() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (ok, out) = run(&promtool, &["check", "rules", RULES]);
    assert!(ok, "promtool check rules {RULES}:\n{out}");
    let alerts = shipped_alerts();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", alerts.len())),
        "{out}"
    );
}

#[test]
fn every_alert_fires_and_stays_silent_in_promtool_unit_tests() {
    // Every alert has a case where it fires and one where it must not.
    let tests = yaml_file(RULE_TESTS);
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in tests["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            match case["exp_alerts"].as_array() {
                Some(alerts) if !alerts.is_empty() => fires.insert(name),
                _ => silent.insert(name),
            };
        }
    }
    for (alert, _) in shipped_alerts() {
        assert!(fires.contains(&alert), "no test makes {alert} fire");
        assert!(silent.contains(&alert), "no test keeps {alert} silent");
    }
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let (ok, out) = run(&promtool, &["test", "rules", RULE_TESTS]);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{out}");
}

#[test]
fn dashboard_and_alert_expressions_parse_and_name_exported_metrics() {
    let exported = exported_names();
    let dashboard = dashboard_exprs();
    assert!(dashboard.len() >= 10, "{dashboard:?}");
    let alerts = shipped_alerts();
    let exprs: Vec<&String> = dashboard
        .iter()
        .chain(alerts.iter().map(|(_, e)| e))
        .collect();
    for expr in &exprs {
        let unknown: Vec<String> = names_used(expr)
            .into_iter()
            .filter(|n| !exported.contains(n))
            .collect();
        assert!(
            unknown.is_empty(),
            "{expr}\nnames metrics the operator does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
    // The dashboard covers what on call asks about.
    let used: BTreeSet<String> = dashboard.iter().flat_map(|e| names_used(e)).collect();
    for needed in [
        "aws_auth_operator_mappings",
        "aws_auth_operator_aws_auth_data_bytes",
        "aws_auth_operator_aws_auth_data_limit_bytes",
        "aws_auth_operator_aws_auth_writes_total",
        "aws_auth_operator_drift_repairs_total",
        "aws_auth_operator_reconcile_duration_seconds_bucket",
        "aws_auth_operator_aws_api_errors_total",
        "aws_auth_operator_leader",
    ] {
        assert!(used.contains(needed), "the dashboard shows no {needed}");
    }

    // promtool parses each expression as a recording rule.
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rules: Vec<Value> = dashboard
        .iter()
        .enumerate()
        .map(|(i, expr)| json!({"record": format!("dashboard:expr_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard.rules.json");
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .expect("rules file written");
    let (ok, out) = run(
        &promtool,
        &["check", "rules", file.to_str().expect("utf-8")],
    );
    assert!(ok, "dashboard expressions:\n{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", dashboard.len())),
        "{out}"
    );
    // A broken expression does fail the same check (the check can fail).
    std::fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": [
            {"record": "dashboard:broken", "expr": "sum by (le (aws_auth_operator_leader)"}
        ]}]})
        .to_string(),
    )
    .expect("rules file written");
    let (ok, _) = run(
        &promtool,
        &["check", "rules", file.to_str().expect("utf-8")],
    );
    assert!(!ok, "promtool accepted a broken expression");
}

// ---- end to end: the binary, scraped by a real Prometheus ---------------------------------------

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET path` on 127.0.0.1:port: the body, or `None` when nothing answers with 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| {
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_string()
        }
    })
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant query's first series, if any.
fn query(port: u16, expr: &str) -> Option<f64> {
    let body = http_get(
        port,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )?;
    let answer: Value = serde_json::from_str(&body).ok()?;
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// The names of the alerts Prometheus has firing; `None` when it does not answer.
fn firing(port: u16) -> Option<BTreeSet<String>> {
    let body = http_get(port, "/api/v1/alerts")?;
    let answer: Value = serde_json::from_str(&body).ok()?;
    let alerts = answer["data"]["alerts"].as_array()?;
    Some(
        alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Waits until Prometheus has `alert` firing; how long that took.
fn wait_firing(port: u16, alert: &str, logs: &[&Path]) -> Duration {
    let started = Instant::now();
    wait_for(&format!("{alert} firing"), logs, || match firing(port) {
        Some(now) if now.contains(alert) => Ok(()),
        now => Err(format!("firing: {now:?}")),
    });
    started.elapsed()
}

fn wait_for(what: &str, logs: &[&Path], mut check: impl FnMut() -> Result<(), String>) {
    let started = Instant::now();
    loop {
        let why = match check() {
            Ok(()) => return,
            Err(why) => why,
        };
        if started.elapsed() > PATIENCE {
            let logs: Vec<String> = logs
                .iter()
                .map(|p| {
                    format!(
                        "--- {}\n{}",
                        p.display(),
                        std::fs::read_to_string(p).unwrap_or_default()
                    )
                })
                .collect();
            panic!("{what}: {why}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn spawn(program: &Path, args: &[String], env: &[(&str, &Path)], log: &Path) -> Process {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    Process(child)
}

fn crd() -> Value {
    let text = aws_auth_operator::cli::crd_yaml().expect("the CRD renders");
    serde_saphyr::from_str(&text).expect("the CRD is YAML")
}

#[test]
fn alerts_fire_in_a_real_prometheus_scraping_the_binary() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let server = SimServer::start(SimConfig::instant()).expect("the test API server starts");
    server.seed_crd(crd()).expect("CRD seeded");
    server
        .seed(
            "configmaps",
            CONFIGMAP_NAMESPACE,
            json!({"metadata": {"name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE}}),
        )
        .expect("aws-auth seeded");
    server
        .seed(
            "iamidentitymappings",
            "",
            json!({
                "apiVersion": "awsauth.dev/v1alpha1",
                "kind": "IamIdentityMapping",
                "metadata": {"name": "platform-admins"},
                "spec": {
                    "arn": "arn:aws:iam::111122223333:role/platform-admins",
                    "username": "platform-admin:{{SessionName}}",
                    "groups": ["platform:admins"]
                }
            }),
        )
        .expect("mapping seeded");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");

    let metrics_port = free_port();
    let operator_log = dir.path().join("operator.log");
    let _operator = spawn(
        Path::new(BIN),
        &[
            "run".to_string(),
            format!("--metrics-addr=127.0.0.1:{metrics_port}"),
        ],
        &[("KUBECONFIG", &kubeconfig)],
        &operator_log,
    );

    // The shipped rules, each firing as soon as its condition holds.
    let rules = std::fs::read_to_string(root().join(RULES)).expect("rules read");
    let for_clause = regex::Regex::new(r"(?m)^(\s+)for: \S+$").expect("regex");
    let rules = for_clause.replace_all(&rules, "${1}for: 0s");
    let rules_file = dir.path().join("rules.yaml");
    std::fs::write(&rules_file, rules.as_bytes()).expect("rules written");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: aws-auth-operator\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n",
            rules = rules_file.display()
        ),
    )
    .expect("config written");
    let prometheus_port = free_port();
    let prometheus_log = dir.path().join("prometheus.log");
    let _prometheus = spawn(
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        &[],
        &prometheus_log,
    );
    let logs = [operator_log.as_path(), prometheus_log.as_path()];

    // All well: the operator has reconciled, Prometheus has it, and then nothing fires.
    wait_for(
        "Prometheus sees a successful reconcile",
        &logs,
        || match query(
            prometheus_port,
            "aws_auth_operator_reconcile_last_success_timestamp_seconds",
        ) {
            Some(stamp) if stamp > 0.0 => Ok(()),
            other => Err(format!("last success: {other:?}")),
        },
    );
    wait_for("Prometheus sees the mapping Ready", &logs, || {
        match query(
            prometheus_port,
            r#"aws_auth_operator_mappings{ready="true",reason="Rendered"}"#,
        ) {
            Some(n) if (n - 1.0).abs() < f64::EPSILON => Ok(()),
            other => Err(format!("Ready mappings: {other:?}")),
        }
    });
    // The size gauge is fed from the reconcile: aws-auth now holds the mapping's entry.
    match query(prometheus_port, "aws_auth_operator_aws_auth_data_bytes") {
        Some(bytes) if bytes > 50.0 => {}
        other => panic!("aws-auth size in Prometheus: {other:?}"),
    }
    // A few evaluations with the healthy series.
    std::thread::sleep(Duration::from_secs(4));
    let healthy = firing(prometheus_port).expect("Prometheus answers /api/v1/alerts");
    assert!(
        healthy.is_empty(),
        "alerts fire while all is well: {healthy:?}"
    );

    // The CRD goes, every mapping with it: the operator freezes aws-auth.
    server
        .remove(
            "customresourcedefinitions",
            "",
            "iamidentitymappings.awsauth.dev",
        )
        .expect("CRD deleted");
    let frozen = wait_firing(prometheus_port, "AwsAuthOperatorAwsAuthFrozen", &logs);
    // The mapping cache cannot list without its CRD either.
    let cache = wait_firing(prometheus_port, "AwsAuthOperatorCacheNotSynced", &logs);
    eprintln!(
        "observability: after the CRD deletion, AwsAuthOperatorAwsAuthFrozen firing in {} ms, AwsAuthOperatorCacheNotSynced in {} ms more",
        frozen.as_millis(),
        cache.as_millis()
    );
}
