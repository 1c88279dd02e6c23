//! `demo`: the operator itself, against the built-in test API server, with no cluster. It seeds
//! an aws-auth as EKS leaves it (one node role) and the built-in example mappings, runs the
//! controller until every mapping is Ready, prints their status and the aws-auth it wrote, and
//! stops. The test server is in memory and says so: it is not a Kubernetes cluster.

use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::render::EMBEDDED_EXAMPLES;
use super::{CliError, exit, print_stdout};
use crate::api::IamIdentityMapping;
use crate::awsauth::{CONFIGMAP_NAME, CONFIGMAP_NAMESPACE};
use crate::controller::{DEFAULT_KUBE_QPS, RunConfig, client_for, run_until};
use crate::manifest::{configmap_yaml, parse_mappings};
use crate::status::{READY, condition, is_ready};
use crate::testserver::{SimConfig, SimServer};

/// A node role as EKS writes it into aws-auth for a managed node group: not the operator's.
const EKS_NODE_ROLE: &str = "- rolearn: arn:aws:iam::111122223333:role/eks-nodegroup-NodeInstanceRole-1ABC\n  username: system:node:{{EC2PrivateDNSName}}\n  groups:\n  - system:bootstrappers\n  - system:nodes\n";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to wait for every mapping to be Ready.
    #[arg(long, default_value_t = 30)]
    pub timeout_seconds: u64,
}

pub fn run(args: DemoArgs) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Write)?;
    runtime.block_on(demo(Duration::from_secs(args.timeout_seconds)))
}

async fn demo(timeout: Duration) -> Result<u8, CliError> {
    let fail =
        |what: &str, e: &dyn std::fmt::Display| CliError::Input(format!("demo: {what}: {e}"));
    let server = SimServer::start(SimConfig::instant()).map_err(|e| fail("test API server", &e))?;
    eprintln!(
        "demo: the built-in TEST API server at {} (in memory, not a Kubernetes cluster): aws-auth as EKS leaves it, and the example mappings",
        server.url()
    );
    seed(&server).map_err(|e| fail("seeding", &e))?;
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::from_yaml(&server.kubeconfig()).map_err(|e| fail("kubeconfig", &e))?,
        &KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| fail("kubeconfig", &e))?;
    let client = client_for(config, DEFAULT_KUBE_QPS).map_err(|e| fail("client", &e))?;
    let names = create_examples(&client).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run_until(client.clone(), run_config()?, async {
        let _ = stop_rx.await;
    }));
    let started = Instant::now();
    let ready = wait_until_ready(&client, &names, timeout).await;
    let mappings: Api<IamIdentityMapping> = Api::all(client.clone());
    let listed = mappings
        .list(&Default::default())
        .await
        .map_err(|e| fail("listing", &e))?;
    let aws_auth = Api::<ConfigMap>::namespaced(client.clone(), CONFIGMAP_NAMESPACE)
        .get_opt(CONFIGMAP_NAME)
        .await
        .map_err(|e| fail("reading aws-auth", &e))?;
    let _ = stop_tx.send(());
    match controller.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(fail("the operator", &e)),
        Err(e) => return Err(fail("the operator task", &e)),
    }

    let mut out = String::from("# IamIdentityMappings, as the operator left them\n");
    for mapping in &listed.items {
        let ready = mapping
            .status
            .as_ref()
            .and_then(|s| condition(s, READY))
            .map(|c| format!("Ready={} ({}): {}", c.status, c.reason, c.message))
            .unwrap_or_else(|| "no status".to_string());
        out.push_str(&format!(
            "#   {}: {ready}\n",
            mapping.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "# {} of {} Ready after {} ms; the aws-auth ConfigMap the operator wrote:\n",
        ready,
        names.len(),
        started.elapsed().as_millis()
    ));
    if let Some(mut cm) = aws_auth {
        // What a person reads: the data and the operator's annotation, not server bookkeeping.
        cm.metadata.managed_fields = None;
        cm.metadata.uid = None;
        cm.metadata.resource_version = None;
        cm.metadata.creation_timestamp = None;
        out.push_str(&configmap_yaml(&cm).map_err(|e| fail("printing aws-auth", &e))?);
    }
    print_stdout(&out)?;
    Ok(if ready == names.len() {
        exit::OK
    } else {
        eprintln!(
            "demo: only {ready} of {} mappings Ready within {timeout:?}",
            names.len()
        );
        exit::PROBLEMS
    })
}

fn seed(server: &SimServer) -> Result<(), String> {
    let crd_text = super::crd_yaml().map_err(|e| e.to_string())?;
    let crd: serde_json::Value =
        serde_saphyr::from_str(&crd_text).map_err(|e| format!("the CRD: {e}"))?;
    server.seed_crd(crd)?;
    server.seed(
        "configmaps",
        CONFIGMAP_NAMESPACE,
        serde_json::json!({
            "metadata": {"name": CONFIGMAP_NAME, "namespace": CONFIGMAP_NAMESPACE},
            "data": {"mapRoles": EKS_NODE_ROLE}
        }),
    )
}

/// Creates the built-in examples through the API, as `kubectl apply` would.
async fn create_examples(client: &kube::Client) -> Result<Vec<String>, CliError> {
    let api: Api<IamIdentityMapping> = Api::all(client.clone());
    let mut names = Vec::new();
    for (source, text) in EMBEDDED_EXAMPLES {
        for mut mapping in parse_mappings(text, source)?.mappings {
            mapping.metadata.resource_version = None;
            api.create(&PostParams::default(), &mapping)
                .await
                .map_err(|e| CliError::Input(format!("demo: creating {source}: {e}")))?;
            names.push(mapping.metadata.name.unwrap_or_default());
        }
    }
    Ok(names)
}

/// How many of `names` are Ready for their generation, once all are or `timeout` passed.
async fn wait_until_ready(client: &kube::Client, names: &[String], timeout: Duration) -> usize {
    let api: Api<IamIdentityMapping> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let ready = match api.list(&Default::default()).await {
            Ok(list) => list.items.iter().filter(|m| is_ready(m)).count(),
            Err(_) => 0,
        };
        if ready >= names.len() || Instant::now() >= deadline {
            return ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `run`'s defaults, with the metrics server on a free port of 127.0.0.1 (a demo must not take
/// the operator's port).
fn run_config() -> Result<RunConfig, CliError> {
    Ok(RunConfig {
        metrics_addr: ([127, 0, 0, 1], 0).into(),
        ..super::run::default_run_config()?
    })
}
