//! End-to-end suite: the real operator binary against an API server.
//!
//! Without `AWS_AUTH_OPERATOR_E2E_KUBECONFIG` (CI) it runs against the project's test API server
//! (`aws_auth_operator::testserver`: in memory, real HTTP on 127.0.0.1), which has no admission:
//! step 10's refusals are then skipped. With it naming a kubeconfig, it runs against that
//! cluster (its current context). Use a disposable cluster (kind, k3d, a test EKS cluster) where
//! no other aws-auth-operator runs:
//!
//! ```sh
//! kind create cluster --name awsauth-e2e
//! kind get kubeconfig --name awsauth-e2e > /tmp/e2e.kubeconfig
//! AWS_AUTH_OPERATOR_E2E_KUBECONFIG=/tmp/e2e.kubeconfig cargo test --test e2e -- --nocapture
//! ```
//!
//! One sequential test, one function per step:
//! 1. install the CRD (server-side apply of `crds/`) and wait until it is established;
//! 2. refuse to run on a cluster that already has IamIdentityMappings, a managed aws-auth or
//!    aws-auth entries for the principals the suite uses;
//! 3. start `aws-auth-operator run` as a child process (killed on drop), log in
//!    `$CARGO_TARGET_TMPDIR/<run>-operator.log`;
//! 4. create every IamIdentityMapping of `examples/*.yaml` (not `examples/aws/`, which need AWS;
//!    names prefixed with the run id) and
//!    wait until each is Ready and aws-auth holds its rendered entry, marked managed;
//! 5. a hand-added (foreign) entry survives the operator's next write, unmanaged;
//! 6. a hand edit of a managed entry is repaired and recorded in `status.lastDriftRepair`;
//! 7. of two mappings for one principal the newer is Stalled with reason Conflict;
//! 8. deleting a mapping removes its entry;
//! 9. with the operator stopped, a mapping is deleted and another created; after a restart both
//!    changes reach aws-auth;
//! 10. the API server refuses common mistakes with the CRD's plain CEL messages; `groups: []`
//!     reaches status.rendered; unquoted account ids in mapAccounts survive the operator's write;
//! 11. clean-up, also after a failure: delete the run's mappings, stop the operator, remove the
//!     run's principals and the foreign entry from aws-auth, put back each section's original text
//!     where its meaning is unchanged and the original labels and annotations, and delete what did
//!     not exist before (aws-auth, the history ConfigMap, the CRD). Events the operator emitted are left to expire; a CRD that
//!     existed before stays at the version of `crds/`.
//!
//! Every wait polls like `kubectl wait`: every 500 ms, for at most 60 s.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_auth_operator::api::{CRD_NAME, IamIdentityMapping, IamIdentityMappingSpec, RenderedEntry};
use aws_auth_operator::arn::{IamArn, PrincipalKey};
use aws_auth_operator::awsauth::{
    AwsAuthEntries, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, ConfigMapData, Entry, ParsedAwsAuth,
    Section, parse_data, render_section, sort_entries,
};
use aws_auth_operator::manifest::parse_mappings;
use aws_auth_operator::plan::{MANAGED_ANNOTATION, ManagedSet};
use aws_auth_operator::status::{CONFLICT, READY, STALLED, condition};
use aws_auth_operator::store::revisions::HISTORY_CONFIGMAP;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};

const KUBECONFIG_ENV: &str = "AWS_AUTH_OPERATOR_E2E_KUBECONFIG";
const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// One probe's API calls may take this long: kube's client has no read timeout, and a hung
/// request must not stall a wait past its limit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);
const FIELD_MANAGER: &str = "aws-auth-operator-e2e";
/// Label on every mapping the suite creates; its value is the run id.
const RUN_LABEL: &str = "e2e.awsauth.dev/run";
const ACCOUNT: &str = "111122223333";
const HAND_EDITED_GROUP: &str = "e2e-hand-edited";
const LOG_TAIL_LINES: usize = 60;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;
/// A wait probe's answer: `Err` says what is still missing (not an error: poll again).
type Probe<T = ()> = std::result::Result<T, String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_suite() {
    let outcome = match std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) {
        Some(kubeconfig) => run_suite(PathBuf::from(kubeconfig), Admission::Checked).await,
        None => run_on_the_test_server().await,
    };
    if let Err(error) = outcome {
        panic!("e2e suite failed: {error}");
    }
}

/// Whether the API server behind the kubeconfig evaluates the CRD's validation rules.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Admission {
    Checked,
    /// The test server has no admission: the step that expects refusals is skipped (the CRD's
    /// rules are evaluated in tests/admission.rs instead).
    Absent,
}

/// Without a kubeconfig: the whole suite against the project's test API server (in memory,
/// real HTTP on 127.0.0.1).
async fn run_on_the_test_server() -> Result<()> {
    use aws_auth_operator::testserver::{SimConfig, SimServer};
    let server = SimServer::start(SimConfig::instant())?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig)?;
    let _ = writeln!(
        std::io::stderr(),
        "{KUBECONFIG_ENV} is unset: the e2e suite runs against the test API server at {} (set it to run against a real cluster)",
        server.url()
    );
    run_suite(kubeconfig, Admission::Absent).await
}

async fn run_suite(kubeconfig: PathBuf, admission: Admission) -> Result<()> {
    let client = client_from_kubeconfig(&kubeconfig).await?;
    let mut suite = Suite::new(client, kubeconfig).await?;
    suite.admission = admission;
    eprintln!(
        "e2e: run {} (operator log: {})",
        suite.run_id,
        suite.log_path.display()
    );
    let outcome = suite.run_steps().await;
    if outcome.is_err() {
        eprintln!("e2e: a step failed; cleaning up");
    }
    let cleanup = suite.cleanup().await;
    match (outcome, cleanup) {
        (Ok(()), Ok(())) => {
            eprintln!("e2e: all steps passed, cluster restored");
            Ok(())
        }
        (Err(step), Ok(())) => Err(step),
        (Ok(()), Err(cleanup)) => Err(format!("clean-up failed: {cleanup}").into()),
        (Err(step), Err(cleanup)) => {
            Err(format!("{step}\n(clean-up also failed: {cleanup})").into())
        }
    }
}

async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .map_err(|e| format!("{KUBECONFIG_ENV}={}: {e}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let url = config.cluster_url.clone();
    let client = Client::try_from(config)?;
    let version = tokio::time::timeout(Duration::from_secs(15), client.apiserver_version())
        .await
        .map_err(|_| format!("cluster {url} (from {}) does not answer", path.display()))?
        .map_err(|e| {
            format!(
                "cluster {url} (from {}) is not reachable: {e}",
                path.display()
            )
        })?;
    eprintln!(
        "e2e: cluster {}.{} ({})",
        version.major, version.minor, version.git_version
    );
    Ok(client)
}

/// What the suite found before it changed anything, to leave the cluster as found.
struct Before {
    crd_existed: bool,
    aws_auth: Option<ConfigMap>,
    history: Option<ConfigMap>,
}

struct Suite {
    client: Client,
    kubeconfig: PathBuf,
    /// Unique per run: the label value on every created mapping; `{run_id}-` prefixes their names.
    run_id: String,
    log_path: PathBuf,
    operator: Option<Operator>,
    before: Before,
    /// Every principal the suite put into play (mappings and the foreign entry).
    principals: BTreeSet<PrincipalKey>,
    /// Of those, the ones written by hand (unmanaged): the operator keeps them.
    hand_written: BTreeSet<PrincipalKey>,
    admission: Admission,
}

impl Suite {
    async fn new(client: Client, kubeconfig: PathBuf) -> Result<Suite> {
        let run_id = unique_run_id();
        let log_path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{run_id}-operator.log"));
        let crd = crds(&client).get_opt(CRD_NAME).await?;
        // A CRD still being deleted (an earlier run's clean-up) cannot be applied over, and
        // counting it as existing would leave it installed after this run.
        if crd
            .as_ref()
            .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
        {
            return Err(format!(
                "the CRD {CRD_NAME} is being deleted (an earlier run's clean-up?); try again once it is gone"
            )
            .into());
        }
        let before = Before {
            crd_existed: crd.is_some(),
            aws_auth: configmaps(&client).get_opt(CONFIGMAP_NAME).await?,
            history: configmaps(&client).get_opt(HISTORY_CONFIGMAP).await?,
        };
        Ok(Suite {
            client,
            kubeconfig,
            run_id,
            log_path,
            operator: None,
            before,
            principals: BTreeSet::new(),
            hand_written: BTreeSet::new(),
            admission: Admission::Checked,
        })
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.run_id)
    }

    fn role_arn(&self, suffix: &str) -> String {
        format!("arn:aws:iam::{ACCOUNT}:role/{}", self.name(suffix))
    }

    async fn run_steps(&mut self) -> Result<()> {
        self.install_crd().await?;
        let examples = load_examples(&self.run_id)?;
        self.refuse_a_busy_cluster(&examples).await?;
        self.start_operator()?;
        self.examples_converge(&examples).await?;
        self.foreign_entry_is_kept().await?;
        let targets = StepTargets::pick(&examples)?;
        self.drift_is_repaired(&targets.drift).await?;
        self.newer_conflicting_mapping_is_stalled().await?;
        self.deleted_mapping_leaves_aws_auth(&targets.delete)
            .await?;
        self.changes_while_down_converge(&targets.delete_while_down)
            .await?;
        self.admission_refuses_mistakes_in_plain_words().await?;
        self.empty_groups_are_what_status_says().await?;
        self.unquoted_account_ids_survive().await?;
        Ok(())
    }

    // ---- steps -------------------------------------------------------------------------------

    async fn install_crd(&mut self) -> Result<()> {
        step("install the CRD");
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("crds")
            .join(format!("{CRD_NAME}.yaml"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let crd: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        crds(&self.client)
            .patch(
                CRD_NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await?;
        let client = self.client.clone();
        self.wait_for("the CRD to be established", async || {
            crd_established(&client).await
        })
        .await
    }

    async fn refuse_a_busy_cluster(&mut self, examples: &[IamIdentityMapping]) -> Result<()> {
        step("check that the cluster is free for the suite");
        let existing = mappings(&self.client).list(&ListParams::default()).await?;
        if !existing.items.is_empty() {
            let names: Vec<String> = existing.items.iter().map(|m| m.name_any()).collect();
            return Err(format!(
                "the cluster already has IamIdentityMappings ({}): the operator the suite starts would render them; use a cluster without any",
                names.join(", ")
            )
            .into());
        }
        let Some(aws_auth) = &self.before.aws_auth else {
            return Ok(());
        };
        let managed = managed_set(aws_auth)?;
        if !managed.is_empty() {
            return Err(format!(
                "kube-system/aws-auth is already managed by an aws-auth-operator ({MANAGED_ANNOTATION} lists {} principals): use a cluster without one",
                managed.len()
            )
            .into());
        }
        let live: BTreeSet<PrincipalKey> = parse_data(&data_of(aws_auth))
            .entries
            .iter()
            .map(|(_, entry)| entry.key())
            .collect();
        for mapping in examples {
            let key = principal_key(&mapping.spec)?;
            if live.contains(&key) {
                return Err(format!(
                    "aws-auth already has an entry for {key} (used by examples/{}): the suite would take it over; use a cluster without it",
                    mapping.name_any()
                )
                .into());
            }
        }
        Ok(())
    }

    async fn examples_converge(&mut self, examples: &[IamIdentityMapping]) -> Result<()> {
        step("create the example mappings; each becomes Ready and rendered in aws-auth");
        for mapping in examples {
            self.create_mapping(mapping.clone()).await?;
        }
        let names: Vec<String> = examples.iter().map(ResourceExt::name_any).collect();
        let client = self.client.clone();
        self.wait_for(
            "every example mapping to be Ready and in aws-auth",
            async || all_rendered(&client, &names).await,
        )
        .await?;
        for mapping in examples {
            let live = mappings(&self.client).get(&mapping.name_any()).await?;
            let rendered = ready_entry(&live)?;
            let expected = aws_auth_principal(&mapping.spec)?;
            check(
                rendered.principal == expected,
                format!(
                    "{} rendered principal {} instead of {expected}",
                    mapping.name_any(),
                    rendered.principal
                ),
            )?;
        }
        Ok(())
    }

    async fn foreign_entry_is_kept(&mut self) -> Result<()> {
        step("a hand-added entry survives the operator's next write");
        let foreign = RenderedEntry {
            section: Section::MapRoles.key().to_string(),
            principal: self.role_arn("foreign"),
            username: Some("e2e-foreign".to_string()),
            groups: vec!["e2e-foreign".to_string()],
        };
        self.principals.insert(rendered_key(&foreign)?);
        let text = render_one(&foreign)?;
        edit_aws_auth(&self.client, |cm| {
            append_to_section(cm, Section::MapRoles, &text);
            Ok(true)
        })
        .await?;
        // A new mapping forces a write; its compare-and-swap is based on the edited aws-auth.
        let witness = self.name("witness");
        let spec = role_spec(&self.role_arn("witness"), "e2e-witness", &["e2e-witness"]);
        self.create_mapping(self.mapping(&witness, spec)).await?;
        let client = self.client.clone();
        self.wait_for("the witness mapping to be rendered", async || {
            all_rendered(&client, std::slice::from_ref(&witness)).await
        })
        .await?;
        foreign_kept(&self.client, &foreign)
            .await
            .map_err(Error::from)
    }

    async fn drift_is_repaired(&mut self, name: &str) -> Result<()> {
        step("a hand edit of a managed entry is repaired");
        let mapping = mappings(&self.client).get(name).await?;
        let rendered = ready_entry(&mapping)?.clone();
        let previous_repair = mapping
            .status
            .as_ref()
            .and_then(|s| s.last_drift_repair.clone());
        edit_aws_auth(&self.client, |cm| {
            set_groups(cm, &rendered, &[HAND_EDITED_GROUP])
        })
        .await?;
        let client = self.client.clone();
        let name = name.to_string();
        self.wait_for(
            &format!("the hand edit of {name} to be repaired"),
            async || drift_repaired(&client, &name, previous_repair.as_ref()).await,
        )
        .await
    }

    async fn newer_conflicting_mapping_is_stalled(&mut self) -> Result<()> {
        step("of two mappings for one principal, the newer is Stalled (Conflict)");
        let arn = self.role_arn("contested");
        // Names sort in creation order too, so the older one wins even within one second.
        let (older, newer) = (self.name("contested-a"), self.name("contested-b"));
        self.create_mapping(self.mapping(&older, role_spec(&arn, "e2e-older", &["e2e-older"])))
            .await?;
        let client = self.client.clone();
        self.wait_for("the older mapping to be rendered", async || {
            all_rendered(&client, std::slice::from_ref(&older)).await
        })
        .await?;
        self.create_mapping(self.mapping(&newer, role_spec(&arn, "e2e-newer", &["e2e-newer"])))
            .await?;
        self.wait_for(
            "the newer mapping to be Stalled by the conflict",
            async || stalled_by_conflict(&client, &newer, &older).await,
        )
        .await?;
        all_rendered(&self.client, std::slice::from_ref(&older))
            .await
            .map_err(|e| format!("the older mapping lost its entry: {e}").into())
    }

    async fn deleted_mapping_leaves_aws_auth(&mut self, name: &str) -> Result<()> {
        step("deleting a mapping removes its entry");
        let key = self.delete_mapping(name).await?;
        let client = self.client.clone();
        self.wait_for(
            &format!("{name}'s entry ({key}) to leave aws-auth"),
            async || gone_from_aws_auth(&client, &key).await,
        )
        .await
    }

    async fn changes_while_down_converge(&mut self, deleted: &str) -> Result<()> {
        step("changes made while the operator is down converge after a restart");
        self.stop_operator();
        let key = self.delete_mapping(deleted).await?;
        let created = self.name("while-down");
        let spec = role_spec(
            &self.role_arn("while-down"),
            "e2e-while-down",
            &["e2e-while-down"],
        );
        self.create_mapping(self.mapping(&created, spec)).await?;
        self.start_operator()?;
        let client = self.client.clone();
        self.wait_for(
            &format!("{deleted} to leave aws-auth and {created} to be rendered"),
            async || {
                gone_from_aws_auth(&client, &key).await?;
                all_rendered(&client, std::slice::from_ref(&created)).await
            },
        )
        .await
    }

    /// Only the real API server evaluates the CRD's CEL rules (with its cost limits): each
    /// common mistake is refused with the rule's plain message.
    async fn admission_refuses_mistakes_in_plain_words(&mut self) -> Result<()> {
        if self.admission == Admission::Absent {
            step(
                "admission refuses common mistakes: skipped, the test server has no admission (tests/admission.rs evaluates the CRD's rules)",
            );
            return Ok(());
        }
        step("admission refuses common mistakes with plain messages");
        let cases: [(&str, IamIdentityMappingSpec, &str); 4] = [
            (
                "wildcard",
                role_spec(&format!("arn:aws:iam::{ACCOUNT}:role/team*/x"), "x", &[]),
                "aws-auth has no wildcards",
            ),
            (
                "assumed-role",
                role_spec(
                    &format!("arn:aws:sts::{ACCOUNT}:assumed-role/Admin/alice"),
                    "x",
                    &[],
                ),
                "give the role's IAM ARN instead",
            ),
            (
                "template",
                role_spec(&self.role_arn("template"), "x:{{ SessionName }}", &[]),
                "no spaces inside the braces",
            ),
            (
                "duplicate-groups",
                role_spec(&self.role_arn("dup"), "x", &["a", "a"]),
                "Duplicate value",
            ),
        ];
        for (suffix, spec, says) in cases {
            let mapping = self.mapping(&self.name(suffix), spec);
            match mappings(&self.client)
                .create(&post_params(), &mapping)
                .await
            {
                Ok(_) => {
                    delete_ignoring_not_found(&mappings(&self.client), &self.name(suffix)).await?;
                    return Err(format!("admission accepted the {suffix} mistake").into());
                }
                Err(kube::Error::Api(status)) => check(
                    status.code == 422 && status.message.contains(says),
                    format!(
                        "{suffix}: expected 422 with `{says}`, got {}: {}",
                        status.code, status.message
                    ),
                )?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A merge patch keeps what it does not mention: `groups: []` must still reach the status
    /// (and aws-auth), and then stay quiet.
    async fn empty_groups_are_what_status_says(&mut self) -> Result<()> {
        step("setting groups to [] is what status.rendered says");
        let name = self.name("no-groups");
        let spec = role_spec(&self.role_arn("no-groups"), "e2e-no-groups", &["e2e-team"]);
        self.create_mapping(self.mapping(&name, spec)).await?;
        let client = self.client.clone();
        self.wait_for("the mapping to be rendered with its group", async || {
            all_rendered(&client, std::slice::from_ref(&name)).await
        })
        .await?;
        mappings(&self.client)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"groups": []}})),
            )
            .await?;
        self.wait_for("status.rendered.groups to be []", async || {
            let mapping = get_mapping(&client, &name).await?;
            let rendered = ready_entry(&mapping)?;
            check(
                rendered.groups.is_empty(),
                format!("status.rendered.groups is {:?}", rendered.groups),
            )?;
            let aws_auth = get_aws_auth(&client).await?;
            check(
                holds(&parse_data(&data_of(&aws_auth)), rendered),
                "aws-auth does not hold the entry without groups",
            )
        })
        .await?;
        Ok(())
    }

    /// mapAccounts is read as literal text: unquoted ids written by hand must survive the
    /// operator's next write of mapAccounts.
    async fn unquoted_account_ids_survive(&mut self) -> Result<()> {
        step("unquoted account ids in mapAccounts survive the operator's writes");
        let hand = ["777788889999", "012345678901"];
        for id in hand {
            self.principals.insert(PrincipalKey::account(id));
            self.hand_written.insert(PrincipalKey::account(id));
        }
        edit_aws_auth(&self.client, |cm| {
            append_to_section(cm, Section::MapAccounts, "- 777788889999\n- 012345678901\n");
            Ok(true)
        })
        .await?;
        let name = self.name("account");
        let spec = IamIdentityMappingSpec {
            account: Some("121212121212".to_string()),
            ..Default::default()
        };
        self.create_mapping(self.mapping(&name, spec)).await?;
        let client = self.client.clone();
        self.wait_for(
            "the account mapping to be rendered next to the hand-written ids",
            async || {
                all_rendered(&client, std::slice::from_ref(&name)).await?;
                let aws_auth = get_aws_auth(&client).await?;
                let accounts = parse_data(&data_of(&aws_auth)).entries.accounts;
                check(
                    hand.iter().all(|id| accounts.iter().any(|a| a == id)),
                    format!("mapAccounts reads {accounts:?}"),
                )
            },
        )
        .await?;
        Ok(())
    }

    // ---- clean-up ----------------------------------------------------------------------------

    /// Best effort: every part runs even when an earlier one failed; the failures are reported.
    async fn cleanup(&mut self) -> Result<()> {
        step("clean up");
        let mut failures = Vec::new();
        if let Err(e) = self.delete_run_mappings().await {
            failures.push(format!("deleting the run's mappings: {e}"));
        }
        self.stop_operator();
        if let Err(e) = self.restore_aws_auth().await {
            failures.push(format!("restoring aws-auth: {e}"));
        }
        if let Err(e) = self.restore_history().await {
            failures.push(format!("restoring {HISTORY_CONFIGMAP}: {e}"));
        }
        if let Err(e) = self.remove_crd_if_installed().await {
            failures.push(format!("removing the CRD: {e}"));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; ").into())
        }
    }

    /// Deletes the run's mappings and, while the operator still runs, lets it drop their entries.
    async fn delete_run_mappings(&mut self) -> Result<()> {
        if crds(&self.client).get_opt(CRD_NAME).await?.is_none() {
            return Ok(());
        }
        let selector = format!("{RUN_LABEL}={}", self.run_id);
        let ours = mappings(&self.client)
            .list(&ListParams::default().labels(&selector))
            .await?;
        for mapping in &ours.items {
            delete_ignoring_not_found(&mappings(&self.client), &mapping.name_any()).await?;
        }
        if self.operator_running() {
            let client = self.client.clone();
            let keys: BTreeSet<PrincipalKey> = self
                .principals
                .difference(&self.hand_written)
                .cloned()
                .collect();
            let foreign = self.role_arn("foreign");
            self.wait_for("the operator to drop the run's entries", async || {
                only_foreign_left(&client, &keys, &foreign).await
            })
            .await?;
        }
        Ok(())
    }

    /// With the operator stopped: removes the run's principals (and the foreign entry) from
    /// aws-auth, restores each section's original text when its meaning is unchanged and the
    /// original labels and annotations; deletes aws-auth if the suite's operator created it.
    async fn restore_aws_auth(&mut self) -> Result<()> {
        let live = configmaps(&self.client).get_opt(CONFIGMAP_NAME).await?;
        let ours = self.principals.clone();
        let before = self.before.aws_auth.clone();
        let Some(live) = live else {
            return match before {
                Some(_) => Err("it existed before the run and is gone".into()),
                None => Ok(()),
            };
        };
        match before {
            Some(before) => {
                edit_aws_auth(&self.client, |cm| Ok(restore_configmap(cm, &before, &ours))).await
            }
            None => {
                let mut remaining = live.clone();
                restore_configmap(&mut remaining, &ConfigMap::default(), &ours);
                if !parse_data(&data_of(&remaining)).entries.is_empty() {
                    return Err("aws-auth did not exist before the run but now holds entries the suite did not create; left in place".into());
                }
                // Only the version just checked: an entry added since (EKS adding a node role)
                // turns the delete into a 409 instead of losing it.
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: live.resource_version(),
                        uid: live.uid(),
                    }),
                    ..Default::default()
                };
                match configmaps(&self.client)
                    .delete(CONFIGMAP_NAME, &params)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
                    Err(kube::Error::Api(status)) if status.is_conflict() => {
                        Err("aws-auth changed while it was being cleaned up; left in place".into())
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    async fn restore_history(&mut self) -> Result<()> {
        let api = configmaps(&self.client);
        match &self.before.history {
            None => delete_ignoring_not_found(&api, HISTORY_CONFIGMAP).await,
            Some(before) => {
                let Some(mut live) = api.get_opt(HISTORY_CONFIGMAP).await? else {
                    return Err("it existed before the run and is gone".into());
                };
                let original = live.clone();
                live.data = before.data.clone();
                live.binary_data = before.binary_data.clone();
                live.metadata.labels = before.metadata.labels.clone();
                live.metadata.annotations = before.metadata.annotations.clone();
                if live != original {
                    api.replace(HISTORY_CONFIGMAP, &post_params(), &live)
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn remove_crd_if_installed(&mut self) -> Result<()> {
        if self.before.crd_existed {
            return Ok(());
        }
        delete_ignoring_not_found(&crds(&self.client), CRD_NAME).await?;
        // The API server deletes a CRD asynchronously; the next run must not find it terminating.
        let client = self.client.clone();
        self.wait_for("the CRD to be deleted", async || {
            let crd = crds(&client)
                .get_opt(CRD_NAME)
                .await
                .map_err(|e| e.to_string())?;
            check(crd.is_none(), "still terminating")
        })
        .await
    }

    // ---- helpers -----------------------------------------------------------------------------

    fn mapping(&self, name: &str, spec: IamIdentityMappingSpec) -> IamIdentityMapping {
        let mut mapping = IamIdentityMapping::new(name, spec);
        mapping
            .labels_mut()
            .insert(RUN_LABEL.to_string(), self.run_id.clone());
        mapping
    }

    async fn create_mapping(&mut self, mapping: IamIdentityMapping) -> Result<()> {
        self.principals.insert(principal_key(&mapping.spec)?);
        mappings(&self.client)
            .create(&post_params(), &mapping)
            .await?;
        Ok(())
    }

    /// Deletes a mapping and returns the key of the entry it had rendered.
    async fn delete_mapping(&mut self, name: &str) -> Result<PrincipalKey> {
        let mapping = mappings(&self.client).get(name).await?;
        let key = rendered_key(ready_entry(&mapping)?)?;
        mappings(&self.client)
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(key)
    }

    fn start_operator(&mut self) -> Result<()> {
        self.operator = Some(Operator::start(&self.kubeconfig, &self.log_path)?);
        Ok(())
    }

    fn stop_operator(&mut self) {
        if let Some(operator) = self.operator.take() {
            operator.stop();
        }
    }

    fn operator_running(&mut self) -> bool {
        self.operator
            .as_mut()
            .is_some_and(|op| op.exit_status().is_none())
    }

    /// Polls `probe` until it succeeds, like `kubectl wait`; fails at once if the operator died.
    async fn wait_for<T>(
        &mut self,
        what: &str,
        mut probe: impl AsyncFnMut() -> Probe<T>,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            if let Some(operator) = self.operator.as_mut()
                && let Some(status) = operator.exit_status()
            {
                return Err(format!(
                    "the operator exited ({status}) while waiting for {what}\n{}",
                    operator.log_tail()
                )
                .into());
            }
            let answer = tokio::time::timeout(PROBE_TIMEOUT, probe())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")));
            match answer {
                Ok(value) => {
                    eprintln!("e2e:   {what}: ok after {:.1?}", start.elapsed());
                    return Ok(value);
                }
                Err(missing) if start.elapsed() >= WAIT_TIMEOUT => {
                    let log = self
                        .operator
                        .as_ref()
                        .map(Operator::log_tail)
                        .unwrap_or_default();
                    return Err(format!(
                        "timed out after {WAIT_TIMEOUT:?} waiting for {what}: {missing}\n{log}"
                    )
                    .into());
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }
}

/// Which example mappings the later steps edit and delete.
struct StepTargets {
    /// A mapRoles or mapUsers example (one with a username and groups to hand-edit).
    drift: String,
    delete: String,
    delete_while_down: String,
}

impl StepTargets {
    fn pick(examples: &[IamIdentityMapping]) -> Result<StepTargets> {
        let drift = examples
            .iter()
            .find(|m| m.spec.arn.is_some())
            .ok_or("examples/ has no role or user mapping")?
            .name_any();
        let others: Vec<String> = examples
            .iter()
            .map(ResourceExt::name_any)
            .filter(|n| *n != drift)
            .collect();
        match others.as_slice() {
            [delete, delete_while_down, ..] => Ok(StepTargets {
                drift,
                delete: delete.clone(),
                delete_while_down: delete_while_down.clone(),
            }),
            _ => Err("examples/ needs at least three IamIdentityMappings".into()),
        }
    }
}

// ---- the operator process --------------------------------------------------------------------

/// The operator binary as a child process; killed when dropped.
struct Operator {
    child: Child,
    log_path: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &Path, log_path: &Path) -> Result<Operator> {
        let log = File::options().create(true).append(true).open(log_path)?;
        // Every behaviour the steps rely on is a flag (flags override the operator's
        // environment variables); leader election has no "off" flag, so its variable goes.
        // Port 0: the metrics server must not collide with anything on this machine.
        let child = Command::new(env!("CARGO_BIN_EXE_aws-auth-operator"))
            .args([
                "run",
                "--metrics-addr",
                "127.0.0.1:0",
                "--drift",
                "repair",
                "--recover-malformed",
                "true",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("AWS_AUTH_OPERATOR_LEADER_ELECTION")
            // The log is a file: no colour escapes in it.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        eprintln!("e2e:   operator started (pid {})", child.id());
        Ok(Operator {
            child,
            log_path: log_path.to_path_buf(),
        })
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(mut self) {
        self.kill();
        eprintln!("e2e:   operator stopped");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!(
            "--- last {LOG_TAIL_LINES} lines of {} ---\n{tail}",
            self.log_path.display()
        )
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- probes (what a wait polls) --------------------------------------------------------------

async fn crd_established(client: &Client) -> Probe {
    let crd = crds(client)
        .get(CRD_NAME)
        .await
        .map_err(|e| e.to_string())?;
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    check(established, "not established yet")
}

/// Every named mapping is Ready for its generation and aws-auth holds its rendered entry,
/// recorded as managed.
async fn all_rendered(client: &Client, names: &[String]) -> Probe {
    let aws_auth = get_aws_auth(client).await?;
    let parsed = parse_data(&data_of(&aws_auth));
    let managed = managed_set(&aws_auth).map_err(|e| e.to_string())?;
    for name in names {
        let mapping = get_mapping(client, name).await?;
        let rendered = ready_entry(&mapping).map_err(|e| format!("{name}: {e}"))?;
        check(
            holds(&parsed, rendered),
            format!("aws-auth does not hold {name}'s entry {rendered:?}"),
        )?;
        let key = rendered_key(rendered).map_err(|e| e.to_string())?;
        check(
            managed.contains(&key),
            format!("{MANAGED_ANNOTATION} does not list {key}"),
        )?;
    }
    Ok(())
}

async fn foreign_kept(client: &Client, foreign: &RenderedEntry) -> Probe {
    let aws_auth = get_aws_auth(client).await?;
    check(
        holds(&parse_data(&data_of(&aws_auth)), foreign),
        format!("the hand-added entry {} was dropped", foreign.principal),
    )?;
    let key = rendered_key(foreign).map_err(|e| e.to_string())?;
    let managed = managed_set(&aws_auth).map_err(|e| e.to_string())?;
    check(
        !managed.contains(&key),
        format!("the hand-added entry {key} is listed as managed"),
    )
}

async fn drift_repaired(client: &Client, name: &str, previous_repair: Option<&Time>) -> Probe {
    all_rendered(client, &[name.to_string()]).await?;
    let mapping = get_mapping(client, name).await?;
    let repair = mapping
        .status
        .as_ref()
        .and_then(|s| s.last_drift_repair.as_ref());
    check(
        repair.is_some() && repair != previous_repair,
        format!("status.lastDriftRepair is {repair:?} (was {previous_repair:?})"),
    )
}

async fn stalled_by_conflict(client: &Client, name: &str, winner: &str) -> Probe {
    let mapping = get_mapping(client, name).await?;
    observed_current_generation(&mapping)?;
    let status = mapping.status.as_ref().ok_or("no status yet")?;
    let stalled = condition(status, STALLED).ok_or("no Stalled condition")?;
    check(
        stalled.status == "True" && stalled.reason == "Conflict",
        format!("Stalled is {} ({})", stalled.status, stalled.reason),
    )?;
    let conflict = condition(status, CONFLICT).ok_or("no Conflict condition")?;
    check(
        conflict.status == "True" && conflict.message.contains(winner),
        format!(
            "Conflict is {} ({}), expected True naming {winner}",
            conflict.status, conflict.message
        ),
    )?;
    let ready = condition(status, READY).ok_or("no Ready condition")?;
    check(ready.status == "False", "the loser is Ready")
}

async fn gone_from_aws_auth(client: &Client, key: &PrincipalKey) -> Probe {
    absent(&get_aws_auth(client).await?, key)
}

/// Of the run's principals, aws-auth holds only the hand-added (foreign) one, if any.
async fn only_foreign_left(client: &Client, keys: &BTreeSet<PrincipalKey>, foreign: &str) -> Probe {
    let Some(aws_auth) = configmaps(client)
        .get_opt(CONFIGMAP_NAME)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let foreign = PrincipalKey::role(foreign);
    keys.iter()
        .filter(|key| **key != foreign)
        .try_for_each(|key| absent(&aws_auth, key))
}

/// aws-auth neither holds an entry for `key` nor lists it as managed.
fn absent(aws_auth: &ConfigMap, key: &PrincipalKey) -> Probe {
    let parsed = parse_data(&data_of(aws_auth));
    check(
        !parsed.entries.iter().any(|(_, e)| e.key() == *key),
        format!("aws-auth still holds {key}"),
    )?;
    let managed = managed_set(aws_auth).map_err(|e| e.to_string())?;
    check(
        !managed.contains(key),
        format!("{MANAGED_ANNOTATION} still lists {key}"),
    )
}

// ---- aws-auth edits --------------------------------------------------------------------------

/// Read-modify-replace of aws-auth with its resourceVersion (compare-and-swap), retried on
/// conflicts. `edit` returns whether it changed anything; an edit that would make a section
/// unreadable is refused.
async fn edit_aws_auth(
    client: &Client,
    mut edit: impl FnMut(&mut ConfigMap) -> Result<bool>,
) -> Result<()> {
    let api = configmaps(client);
    for _ in 0..10 {
        let mut cm = api.get(CONFIGMAP_NAME).await?;
        let malformed_before = parse_data(&data_of(&cm)).malformed;
        if !edit(&mut cm)? {
            return Ok(());
        }
        let malformed_after = parse_data(&data_of(&cm)).malformed;
        if !malformed_after.is_subset(&malformed_before) {
            return Err(
                format!("refusing to write aws-auth: the edit breaks {malformed_after:?}").into(),
            );
        }
        match api.replace(CONFIGMAP_NAME, &post_params(), &cm).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.is_conflict() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err("aws-auth changed under every one of 10 edit attempts".into())
}

fn append_to_section(cm: &mut ConfigMap, section: Section, text: &str) {
    let data = cm.data.get_or_insert_default();
    let current = data.entry(section.key().to_string()).or_default();
    if !current.is_empty() && !current.ends_with('\n') {
        current.push('\n');
    }
    current.push_str(text);
}

/// Sets the groups of `entry`'s live aws-auth entry (a hand edit).
fn set_groups(cm: &mut ConfigMap, entry: &RenderedEntry, groups: &[&str]) -> Result<bool> {
    let section = entry.section().ok_or("unknown section")?;
    let data = cm.data.get_or_insert_default();
    let text = data.get(section.key()).ok_or("the section is missing")?;
    let mut entries = parse_section(section, text).entries;
    let list = match section {
        Section::MapRoles => &mut entries.roles,
        Section::MapUsers => &mut entries.users,
        Section::MapAccounts => return Err("account entries have no groups".into()),
    };
    let key = rendered_key(entry)?;
    let target = list
        .iter_mut()
        .find(|m| arn_key(section, &m.arn) == key)
        .ok_or_else(|| format!("aws-auth has no entry for {key}"))?;
    target.groups = groups.iter().map(|g| g.to_string()).collect();
    let rendered = render_section(section, &entries).ok_or("nothing to render")?;
    data.insert(section.key().to_string(), rendered);
    Ok(true)
}

/// Brings `cm` back to `before` as far as the run changed it: drops the entries of `ours`,
/// puts back each section's original text where its meaning is unchanged, and restores the
/// operator's annotation and label. Returns whether anything changed.
fn restore_configmap(
    cm: &mut ConfigMap,
    before: &ConfigMap,
    ours: &BTreeSet<PrincipalKey>,
) -> bool {
    let original = cm.clone();
    let before_data = data_of(before);
    let mut data = data_of(cm);
    for section in Section::ALL {
        restore_section(&mut data, before_data.get(section.key()), section, ours);
    }
    if data != data_of(&original) {
        cm.data = Some(data);
    }
    // Only what the operator writes (its annotation; it sets no label on aws-auth): labels and
    // annotations others changed meanwhile stay.
    restore_key(
        &mut cm.metadata.annotations,
        before.metadata.annotations.as_ref(),
        MANAGED_ANNOTATION,
    );
    *cm != original
}

/// Sets `key` of `map` back to its value in `before` (removing it if `before` had none).
fn restore_key(
    map: &mut Option<BTreeMap<String, String>>,
    before: Option<&BTreeMap<String, String>>,
    key: &str,
) {
    let original = before.and_then(|b| b.get(key));
    if map.as_ref().and_then(|m| m.get(key)) == original {
        return;
    }
    let current = map.get_or_insert_default();
    match original {
        Some(value) => current.insert(key.to_string(), value.clone()),
        None => current.remove(key),
    };
    if current.is_empty() {
        *map = None;
    }
}

/// One section of [`restore_configmap`]; a section the authenticator cannot read is left alone.
fn restore_section(
    data: &mut ConfigMapData,
    original: Option<&String>,
    section: Section,
    ours: &BTreeSet<PrincipalKey>,
) {
    let key = section.key();
    let now = match data.get(key) {
        Some(text) => {
            let parsed = parse_section(section, text);
            if parsed.malformed.contains(&section) {
                return;
            }
            parsed.entries
        }
        None => AwsAuthEntries::default(),
    };
    let mut kept = AwsAuthEntries::default();
    for (_, entry) in now.iter() {
        if !ours.contains(&entry.key()) {
            kept.push(entry);
        }
    }
    let original_entries = original
        .map(|text| parse_section(section, text).entries)
        .unwrap_or_default();
    let text = if same_entries(&kept, &original_entries) {
        original.cloned()
    } else if kept != now {
        render_section(section, &kept)
    } else {
        return;
    };
    match text {
        Some(text) => data.insert(key.to_string(), text),
        None => data.remove(key),
    };
}

/// Same entries, in any order (the order only matters between duplicates, which the suite never
/// creates).
fn same_entries(a: &AwsAuthEntries, b: &AwsAuthEntries) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    sort_entries(&mut a);
    sort_entries(&mut b);
    a == b
}

// ---- small helpers ---------------------------------------------------------------------------

fn step(title: &str) {
    eprintln!("e2e: step: {title}");
}

fn check(ok: bool, missing: impl Into<String>) -> Probe {
    if ok { Ok(()) } else { Err(missing.into()) }
}

fn unique_run_id() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("e2e-{seconds:x}-{:x}", std::process::id())
}

fn load_examples(run_id: &str) -> Result<Vec<IamIdentityMapping>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path)?;
        for example in parse_mappings(&text, &path.display().to_string())?.mappings {
            // Examples that need AWS live in examples/aws/; a permission set among these would
            // wait for IAM, which this cluster need not reach (tests/principals_ministack.rs
            // covers them against a local IAM).
            check(
                example.spec.sso_permission_set.is_none(),
                format!(
                    "{}: a permission set needs IAM; it belongs in examples/aws/",
                    path.display()
                ),
            )?;
            out.push(example_for_run(example, run_id));
        }
    }
    check(
        !out.is_empty(),
        format!("no IamIdentityMapping in {}", dir.display()),
    )?;
    Ok(out)
}

fn example_for_run(example: IamIdentityMapping, run_id: &str) -> IamIdentityMapping {
    let mut mapping =
        IamIdentityMapping::new(&format!("{run_id}-{}", example.name_any()), example.spec);
    mapping.metadata.labels = example.metadata.labels;
    mapping
        .labels_mut()
        .insert(RUN_LABEL.to_string(), run_id.to_string());
    mapping
}

fn role_spec(arn: &str, username: &str, groups: &[&str]) -> IamIdentityMappingSpec {
    IamIdentityMappingSpec {
        arn: Some(arn.to_string()),
        username: Some(username.to_string()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

/// The key aws-auth will know the mapping's principal by.
fn principal_key(spec: &IamIdentityMappingSpec) -> Result<PrincipalKey> {
    match (&spec.arn, &spec.account) {
        (Some(arn), _) => Ok(IamArn::parse(arn)
            .map_err(|e| format!("{arn}: {e}"))?
            .principal_key()),
        (None, Some(account)) => Ok(PrincipalKey::account(account)),
        (None, None) => Err("a mapping without arn or account".into()),
    }
}

/// The principal as aws-auth must hold it (roles path-stripped).
fn aws_auth_principal(spec: &IamIdentityMappingSpec) -> Result<String> {
    match (&spec.arn, &spec.account) {
        (Some(arn), _) => Ok(IamArn::parse(arn)
            .map_err(|e| format!("{arn}: {e}"))?
            .aws_auth_arn()),
        (None, Some(account)) => Ok(account.clone()),
        (None, None) => Err("a mapping without arn or account".into()),
    }
}

fn rendered_key(entry: &RenderedEntry) -> Result<PrincipalKey> {
    let section = entry
        .section()
        .ok_or_else(|| format!("unknown section `{}`", entry.section))?;
    Ok(arn_key(section, &entry.principal))
}

/// The authenticator's lookup key of a principal written in `section`.
fn arn_key(section: Section, principal: &str) -> PrincipalKey {
    match section {
        Section::MapRoles => PrincipalKey::role(principal),
        Section::MapUsers => PrincipalKey::user(principal),
        Section::MapAccounts => PrincipalKey::account(principal),
    }
}

/// aws-auth text of one entry, as the operator's renderer writes it.
fn render_one(entry: &RenderedEntry) -> Result<String> {
    let section = entry.section().ok_or("unknown section")?;
    let mut entries = AwsAuthEntries::default();
    let mapping = aws_auth_operator::awsauth::ArnMapping {
        arn: entry.principal.clone(),
        username: entry.username.clone().unwrap_or_default(),
        groups: entry.groups.clone(),
        extra: BTreeMap::new(),
    };
    entries.push(match section {
        Section::MapRoles => Entry::Role(mapping),
        Section::MapUsers => Entry::User(mapping),
        Section::MapAccounts => Entry::Account(entry.principal.clone()),
    });
    Ok(render_section(section, &entries).ok_or("nothing to render")?)
}

fn holds(parsed: &ParsedAwsAuth, entry: &RenderedEntry) -> bool {
    parsed
        .entries
        .iter()
        .any(|(_, e)| RenderedEntry::from(&e) == *entry)
}

fn parse_section(section: Section, text: &str) -> ParsedAwsAuth {
    parse_data(&ConfigMapData::from([(
        section.key().to_string(),
        text.to_string(),
    )]))
}

/// The rendered entry of a mapping that is Ready for its current generation.
fn ready_entry(mapping: &IamIdentityMapping) -> Probe<&RenderedEntry> {
    observed_current_generation(mapping)?;
    let status = mapping.status.as_ref().ok_or("no status yet")?;
    let ready = condition(status, READY).ok_or("no Ready condition yet")?;
    check(
        ready.status == "True",
        format!(
            "Ready is {} ({}: {})",
            ready.status, ready.reason, ready.message
        ),
    )?;
    status
        .rendered
        .as_ref()
        .ok_or_else(|| "Ready without status.rendered".to_string())
}

fn observed_current_generation(mapping: &IamIdentityMapping) -> Probe {
    let observed = mapping.status.as_ref().and_then(|s| s.observed_generation);
    check(
        observed.is_some() && observed == mapping.metadata.generation,
        format!(
            "status.observedGeneration {observed:?} is not metadata.generation {:?}",
            mapping.metadata.generation
        ),
    )
}

fn managed_set(aws_auth: &ConfigMap) -> Result<ManagedSet> {
    match aws_auth.annotations().get(MANAGED_ANNOTATION) {
        Some(text) => Ok(ManagedSet::decode(text)?),
        None => Ok(ManagedSet::default()),
    }
}

fn data_of(cm: &ConfigMap) -> ConfigMapData {
    cm.data.clone().unwrap_or_default()
}

async fn get_aws_auth(client: &Client) -> Probe<ConfigMap> {
    configmaps(client)
        .get_opt(CONFIGMAP_NAME)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "kube-system/aws-auth does not exist".to_string())
}

async fn get_mapping(client: &Client, name: &str) -> Probe<IamIdentityMapping> {
    mappings(client)
        .get(name)
        .await
        .map_err(|e| format!("{name}: {e}"))
}

async fn delete_ignoring_not_found<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

fn configmaps(client: &Client) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE)
}

fn mappings(client: &Client) -> Api<IamIdentityMapping> {
    Api::all(client.clone())
}

fn crds(client: &Client) -> Api<CustomResourceDefinition> {
    Api::all(client.clone())
}
