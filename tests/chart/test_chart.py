"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk, Helm 4).

Run: `make chart-test`, or `cargo test --test packaging` (CI).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
import unittest
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402
import support  # noqa: E402
from support import args, container, find, one, render  # noqa: E402


def nested(path: str, value: Any) -> dict[str, Any]:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}"""
    out: Any = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def get(values: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


class Flag:
    """How one operator flag is set through the chart.

    `path`: the value that sets it; `sample`: a non-default value of it; `expect`: the container
    arguments that `sample` must produce; `chart_default`: the flag's value (as `--help` prints
    defaults) that the chart's default values give, or None when the chart renders nothing by
    default; `extra`: other values needed for `sample` to take effect.
    """

    def __init__(
        self,
        path: str,
        sample: Any,
        expect: list[str],
        chart_default: Callable[[dict[str, Any]], str | None],
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path, self.sample, self.expect = path, sample, expect
        self.chart_default, self.extra = chart_default, extra or {}

    def values(self) -> dict[str, Any]:
        merged = copy.deepcopy(self.extra)
        _merge(merged, nested(self.path, self.sample))
        return merged


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


ARN_1 = "arn:aws:iam::111122223333:role/break-glass"
ARN_2 = "arn:aws:iam::111122223333:user/ops/alice"
# Regexes with YAML- and shell-significant characters: they must reach the binary verbatim.
GROUP_RE_1 = r"^team-[a-z]+: #\d{2,}$"
GROUP_RE_2 = "system:(masters|nodes)"
USERNAME_RE = r"team-[a-z]+:\{\{SessionName\}\}"
RESERVED_RE = r"system:node:\{\{SessionName\}\}"

# Every flag of `aws-auth-operator run --help` (global flags included) and its chart value.
# A flag the binary has and this table lacks fails test_every_flag_of_the_binary_has_a_value.
FLAGS: dict[str, Flag] = {
    "--log-format": Flag(
        "operator.logFormat", "text", ["--log-format=text"], lambda v: v["operator"]["logFormat"]
    ),
    "--drift": Flag("operator.drift", "report", ["--drift=report"], lambda v: v["operator"]["drift"]),
    "--recover-malformed": Flag(
        "operator.recoverMalformed",
        False,
        ["--recover-malformed=false"],
        lambda v: str(v["operator"]["recoverMalformed"]).lower(),
    ),
    "--protected-arn": Flag(
        "operator.protectedArns",
        [ARN_1, ARN_2],
        [f"--protected-arn={ARN_1}", f"--protected-arn={ARN_2}"],
        lambda v: None if not v["operator"]["protectedArns"] else "set",
    ),
    "--allowed-groups": Flag(
        "operator.allowedGroups",
        [GROUP_RE_1, "dev-.*"],
        [f"--allowed-groups={GROUP_RE_1}", "--allowed-groups=dev-.*"],
        lambda v: None if not v["operator"]["allowedGroups"] else "set",
    ),
    "--denied-groups": Flag(
        "operator.deniedGroups",
        [GROUP_RE_2],
        [f"--denied-groups={GROUP_RE_2}"],
        lambda v: None if not v["operator"]["deniedGroups"] else "set",
    ),
    "--allowed-usernames": Flag(
        "operator.allowedUsernames",
        [USERNAME_RE, "dev-.*"],
        [f"--allowed-usernames={USERNAME_RE}", "--allowed-usernames=dev-.*"],
        lambda v: None if not v["operator"]["allowedUsernames"] else "set",
    ),
    "--denied-usernames": Flag(
        "operator.deniedUsernames",
        ["root", "admin:.*"],
        ["--denied-usernames=root", "--denied-usernames=admin:.*"],
        lambda v: None if not v["operator"]["deniedUsernames"] else "set",
    ),
    "--allowed-reserved-usernames": Flag(
        "operator.allowedReservedUsernames",
        [RESERVED_RE],
        [f"--allowed-reserved-usernames={RESERVED_RE}"],
        lambda v: None if not v["operator"]["allowedReservedUsernames"] else "set",
    ),
    "--enforce-group-policy": Flag(
        "operator.enforceGroupPolicy",
        True,
        ["--enforce-group-policy"],
        lambda v: "true" if v["operator"]["enforceGroupPolicy"] else None,
    ),
    "--history-limit": Flag(
        "operator.historyLimit", 25, ["--history-limit=25"], lambda v: str(v["operator"]["historyLimit"])
    ),
    "--resync-seconds": Flag(
        "operator.resyncSeconds",
        60,
        ["--resync-seconds=60"],
        lambda v: str(v["operator"]["resyncSeconds"]),
    ),
    "--status-concurrency": Flag(
        "operator.statusConcurrency",
        8,
        ["--status-concurrency=8"],
        lambda v: str(v["operator"]["statusConcurrency"]),
    ),
    "--kube-qps": Flag(
        "operator.kubeQps",
        0,
        ["--kube-qps=0"],
        lambda v: str(v["operator"]["kubeQps"]),
    ),
    "--leader-election": Flag(
        "leaderElection.enabled",
        False,
        [],  # a switch: false renders nothing (checked in test_leader_election_switch)
        lambda v: "true" if v["leaderElection"]["enabled"] else None,
        extra={"replicaCount": 1},
    ),
    "--lease-namespace": Flag(
        "leaderElection.namespace",
        "aws-auth-system",
        ["--lease-namespace=aws-auth-system"],
        lambda v: v["leaderElection"]["namespace"] or "<release namespace>",
    ),
    "--metrics-addr": Flag(
        "metrics.port",
        9090,
        ["--metrics-addr=0.0.0.0:9090"],
        lambda v: f"{v['metrics']['bindAddress']}:{v['metrics']['port']}",
    ),
    "--access-entries": Flag(
        "accessEntries.mode",
        "mirror",
        ["--access-entries=mirror", "--cluster-name=prod-eu"],
        lambda v: v["accessEntries"]["mode"],
        extra={"accessEntries": {"clusterName": "prod-eu"}},
    ),
    "--cluster-name": Flag(
        "accessEntries.clusterName",
        "prod-eu",
        ["--cluster-name=prod-eu"],
        lambda v: v["accessEntries"]["clusterName"] or None,
        extra={"accessEntries": {"mode": "only"}},
    ),
    "--region": Flag(
        "accessEntries.region",
        "eu-west-1",
        ["--region=eu-west-1"],
        lambda v: v["accessEntries"]["region"] or None,
        extra={"accessEntries": {"mode": "mirror", "clusterName": "prod-eu"}},
    ),
    "--eks-endpoint": Flag(
        "accessEntries.endpoint",
        "https://eks.eu-west-1.amazonaws.com",
        ["--eks-endpoint=https://eks.eu-west-1.amazonaws.com"],
        lambda v: v["accessEntries"]["endpoint"] or None,
        extra={"accessEntries": {"mode": "mirror", "clusterName": "prod-eu"}},
    ),
    "--access-entries-concurrency": Flag(
        "accessEntries.concurrency",
        8,
        ["--access-entries-concurrency=8"],
        lambda v: str(v["accessEntries"]["concurrency"]),
    ),
    "--access-entries-resync-seconds": Flag(
        "accessEntries.resyncSeconds",
        120,
        ["--access-entries-resync-seconds=120"],
        lambda v: str(v["accessEntries"]["resyncSeconds"]),
    ),
    "--verify-principals": Flag(
        "principals.verify",
        True,
        ["--verify-principals"],
        lambda v: "true" if v["principals"]["verify"] else None,
    ),
    "--principal-cache-seconds": Flag(
        "principals.cacheSeconds",
        1800,
        ["--principal-cache-seconds=1800"],
        lambda v: str(v["principals"]["cacheSeconds"]),
    ),
    "--iam-concurrency": Flag(
        "principals.concurrency",
        8,
        ["--iam-concurrency=8"],
        lambda v: str(v["principals"]["concurrency"]),
    ),
    "--principals-resync-seconds": Flag(
        "principals.resyncSeconds",
        600,
        ["--principals-resync-seconds=600"],
        lambda v: str(v["principals"]["resyncSeconds"]),
    ),
    "--iam-endpoint": Flag(
        "principals.iamEndpoint",
        "http://127.0.0.1:4566",
        ["--iam-endpoint=http://127.0.0.1:4566"],
        lambda v: v["principals"]["iamEndpoint"] or None,
    ),
}

# Flags the chart renders although the binary does not have them yet (a flag the operator is
# gaining). Keep this set short and explicit; a flag leaves it as soon as the binary has it (the
# test then says so). Empty: every flag the chart renders exists.
NOT_YET_IN_BINARY: set[str] = set()

# Where the chart's default deliberately differs from the binary's.
DEFAULT_DIFFERS = {
    "--log-format": "JSON logs in a cluster",
    "--leader-election": "two replicas by default",
    "--lease-namespace": "the release namespace, not kube-system",
}


def flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


class ChartBasics(unittest.TestCase):
    def test_lint_strict(self) -> None:
        for values in (None, {"metrics": {"serviceMonitor": {"enabled": True}},
                              "networkPolicy": {"enabled": True},
                              "accessEntries": {"mode": "mirror", "clusterName": "prod"}}):
            report = helm.lint(str(support.CHART), values, strict=True, kube_version="v1.33.0")
            problems = [m for m in report["messages"] if m["severity"] >= 2]
            self.assertEqual(report["errors"], [], report)
            self.assertEqual(problems, [], report)

    def test_chart_version_metadata(self) -> None:
        cargo = tomllib.loads((support.ROOT / "Cargo.toml").read_text())["package"]
        meta = support.chart().metadata
        self.assertEqual(meta["appVersion"], cargo["version"], "Chart.yaml appVersion != Cargo.toml version")
        self.assertEqual(meta["name"], cargo["name"])
        self.assertEqual(support.run_binary("--version").split()[-1], cargo["version"])

    def test_crd_is_an_identical_copy(self) -> None:
        chart_crd = support.CHART / "crds" / support.CRD_FILE.name
        self.assertEqual(
            chart_crd.read_bytes(),
            support.CRD_FILE.read_bytes(),
            "charts/aws-auth-operator/crds/ differs from crds/: run `make crds`",
        )
        self.assertEqual(
            sorted(c["name"] for c in support.chart().crds),
            [f"crds/{support.CRD_FILE.name}"],
            "the chart's crds/ must hold exactly the IamIdentityMapping CRD",
        )
        self.assertEqual(support.run_binary("crd"), support.CRD_FILE.read_text())

    def test_generated_files_are_fresh(self) -> None:
        self.assertEqual(
            support.INSTALL_FILE.read_text(),
            generate.install_yaml(),
            "deploy/install.yaml is stale: run `make chart-docs`",
        )
        readme = generate.README.read_text()
        self.assertEqual(readme, generate.readme_with_table(readme),
                         "the chart README's values table is stale: run `make chart-docs`")
        self.assertEqual(generate.RULES_FILE.read_text(), generate.prometheus_rules(),
                         "deploy/prometheus/aws-auth-operator.rules.yaml is stale: run `make chart-docs`")
        self.assertEqual(generate.DASHBOARD_FILE.read_text(), generate.dashboard_json(),
                         "the chart's dashboard JSON is stale: run `make chart-docs`")

    def test_prometheus_rule_and_dashboard_values(self) -> None:
        self.assertEqual(support.find(support.render(), "PrometheusRule"), [])
        self.assertEqual(support.find(support.render(), "ConfigMap", f"{support.RELEASE}-dashboard"), [])
        objects = support.render({"metrics": {
            "dashboard": {"enabled": True, "namespace": "monitoring",
                          "labels": {"grafana_dashboard": "yes"}},
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kube-prometheus-stack"},
                "alertLabels": {"team": "platform"},
                "runbookBaseUrl": "https://runbooks.example/aws-auth.md",
                "alerts": {
                    "noLeader": {"enabled": False, "for": "5m", "severity": "critical"},
                    "awsAuthNearSizeLimit": {"enabled": True, "for": "1h", "severity": "info",
                                             "ratio": 0.9},
                },
            },
        }})
        dashboard = support.one(objects, "ConfigMap", f"{support.RELEASE}-dashboard")
        self.assertEqual(dashboard["metadata"]["namespace"], "monitoring")
        self.assertEqual(dashboard["metadata"]["labels"]["grafana_dashboard"], "yes")
        self.assertEqual(json.loads(dashboard["data"]["aws-auth-operator.json"]),
                         json.loads(generate.DASHBOARD_FILE.read_text()))
        rule = support.one(objects, "PrometheusRule")
        self.assertEqual(rule["metadata"]["labels"]["release"], "kube-prometheus-stack")
        rules = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
        self.assertNotIn("AwsAuthOperatorNoLeader", rules)
        near = rules["AwsAuthOperatorAwsAuthNearSizeLimit"]
        self.assertEqual((near["for"], near["labels"]), ("1h", {"severity": "info", "team": "platform"}))
        self.assertIn("> 0.9)", near["expr"])
        self.assertEqual(near["annotations"]["runbook_url"],
                         "https://runbooks.example/aws-auth.md#awsauthoperatorawsauthnearsizelimit")
        # Every alert links a section of docs/runbooks.md that exists.
        runbooks = (support.ROOT / "docs" / "runbooks.md").read_text()
        for name in rules:
            self.assertIn(f'<a id="{name.lower()}"></a>', runbooks, name)

    def test_every_value_is_documented(self) -> None:
        self.assertEqual(generate.undocumented_leaves(), [],
                         "values without a `# --` comment in values.yaml")
        schema = support.chart().schema
        assert schema is not None
        for path, _, _ in generate.documented_values():
            node = schema
            for part in path.split("."):
                self.assertIn(part, node.get("properties", {}), f"{path} is not in values.schema.json")
                node = node["properties"][part]

    def test_install_yaml_holds_crd_and_default_objects(self) -> None:
        docs = support.yaml_docs(support.INSTALL_FILE)
        kinds = sorted(d["kind"] for d in docs)
        self.assertIn("CustomResourceDefinition", kinds)
        self.assertEqual(sorted([d["kind"] for d in render()] + ["CustomResourceDefinition"]), kinds)
        crd = one(docs, "CustomResourceDefinition")
        self.assertEqual(crd, yaml.safe_load(support.CRD_FILE.read_text()))

    def test_readme_names_the_create_gap(self) -> None:
        readme = (support.CHART / "README.md").read_text()
        self.assertIn("Kubernetes cannot limit `create` by resource name", readme)


class Deployment(unittest.TestCase):
    def setUp(self) -> None:
        self.objects = render()
        self.deployment = one(self.objects, "Deployment")
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.container = container(self.objects)

    def test_defaults(self) -> None:
        self.assertEqual(self.deployment["spec"]["replicas"], 2)
        self.assertIn("--leader-election", self.container["args"])
        self.assertEqual(self.container["args"][0], "run")
        self.assertEqual(self.container["image"], f"ghcr.io/aws-auth-operator/aws-auth-operator:{support.chart().metadata['appVersion']}")
        self.assertEqual(self.pod["serviceAccountName"], "aws-auth-operator")

    def test_restricted_security_context(self) -> None:
        pod_sc, sc = self.pod["securityContext"], self.container["securityContext"]
        self.assertIs(pod_sc["runAsNonRoot"], True)
        self.assertNotEqual(pod_sc["runAsUser"], 0)
        self.assertEqual(pod_sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertIs(sc["runAsNonRoot"], True)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertNotIn("hostNetwork", self.pod)
        self.assertNotIn("volumes", self.pod)

    def test_probes_and_port(self) -> None:
        port = self.container["ports"]
        self.assertEqual(port, [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
        self.assertEqual(self.container["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        self.assertEqual(self.container["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        c = container(render({"metrics": {"port": 9100, "bindAddress": "::"}}))
        self.assertEqual(c["ports"][0]["containerPort"], 9100)
        self.assertIn("--metrics-addr=[::]:9100", c["args"])
        svc = one(render({"metrics": {"port": 9100}}), "Service")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 9100)

    def test_downward_api_env(self) -> None:
        env = {e["name"]: e for e in self.container["env"]}
        self.assertEqual(env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name")
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.namespace")
        self.assertEqual(env["RUST_LOG"]["value"], "info")
        self.assertNotIn("AWS_REGION", env)

    def test_resources_and_scheduling(self) -> None:
        self.assertIn("requests", self.container["resources"])
        self.assertIn("memory", self.container["resources"]["limits"])
        anti = self.pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertEqual(anti[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
        custom = {
            "priorityClassName": "system-cluster-critical",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "role", "operator": "In", "values": ["system"]}]}]}}},
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "ScheduleAnyway",
                                           "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "aws-auth-operator"}}}],
            "podAnnotations": {"example.com/a": "b"},
            "podLabels": {"team": "platform"},
            "imagePullSecrets": [{"name": "regcred"}],
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        }
        objects = render(custom)
        pod = one(objects, "Deployment")["spec"]["template"]
        spec = pod["spec"]
        for key in ("priorityClassName", "nodeSelector", "tolerations", "affinity",
                    "topologySpreadConstraints", "imagePullSecrets"):
            self.assertEqual(spec[key], custom[key], key)
        self.assertEqual(pod["metadata"]["annotations"], custom["podAnnotations"])
        self.assertEqual(pod["metadata"]["labels"]["team"], "platform")
        c = spec["containers"][0]
        self.assertIn(custom["extraEnv"][0], c["env"])
        self.assertEqual(c["resources"], custom["resources"])

    def test_image_tag_and_digest(self) -> None:
        c = container(render({"image": {"tag": "v9.9.9"}}))
        self.assertTrue(c["image"].endswith(":v9.9.9"))
        digest = "sha256:" + "a" * 64
        c = container(render({"image": {"repository": "example.com/aao", "digest": digest}}))
        self.assertEqual(c["image"], f"example.com/aao@{digest}")

    def test_leader_election_switch(self) -> None:
        self.assertNotIn("--leader-election", args({"replicaCount": 1, "leaderElection": {"enabled": False}}))
        objects = render({"replicaCount": 1, "leaderElection": {"enabled": False}})
        self.assertEqual(find(objects, "Role", "aws-auth-operator-leader"), [])
        self.assertEqual(find(objects, "PodDisruptionBudget"), [], "no PDB with one replica")
        with self.assertRaisesRegex(helm.HelmRenderError, "needs leaderElection.enabled"):
            render({"replicaCount": 2, "leaderElection": {"enabled": False}})

    def test_lease_namespace_follows_the_release(self) -> None:
        objects = render(name="aao", namespace="platform")
        self.assertIn("--lease-namespace=platform", container(objects)["args"])
        self.assertEqual(one(objects, "Role", "aao-aws-auth-operator-leader")["metadata"]["namespace"], "platform")


class Flags(unittest.TestCase):
    """Every flag of the binary is a chart value that reaches the container's arguments."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.binary_flags = support.help_flags("run")
        cls.defaults = support.chart().values

    def test_every_flag_of_the_binary_has_a_value(self) -> None:
        missing = sorted(set(self.binary_flags) - set(FLAGS))
        self.assertEqual(
            missing,
            [],
            "flags of `aws-auth-operator run` without a chart value: add each to values.yaml, "
            "values.schema.json, templates/_helpers.tpl (args) and FLAGS in tests/chart/test_chart.py",
        )

    def test_chart_renders_no_unknown_flag(self) -> None:
        for name in sorted(set(FLAGS) - set(self.binary_flags)):
            self.assertIn(name, NOT_YET_IN_BINARY, f"the chart renders {name}, which the binary does not have")
        arrived = sorted(NOT_YET_IN_BINARY & set(self.binary_flags))
        self.assertEqual(arrived, [], "these flags exist in the binary now: remove them from NOT_YET_IN_BINARY")

    def test_each_value_reaches_the_args(self) -> None:
        default_args = args()
        for name, flag in FLAGS.items():
            with self.subTest(flag=name):
                got = args(flag.values())
                for expected in flag.expect:
                    self.assertIn(expected, got, f"{flag.path}={flag.sample!r} must render {expected}")
                if flag.expect:
                    self.assertNotEqual(got, default_args)
                # Repeatable flags keep their order.
                mine = [a for a in got if flag_name(a) == name]
                self.assertEqual(mine, [e for e in flag.expect if flag_name(e) == name])

    def test_all_values_at_once_are_accepted_by_the_binary(self) -> None:
        values: dict[str, Any] = {}
        for flag in FLAGS.values():
            if flag.path != "leaderElection.enabled":
                _merge(values, flag.values())
        values["operator"]["extraArgs"] = ["--protected-arn=444455556666"]
        rendered = args(values)
        self.assertEqual(rendered[-1], "--protected-arn=444455556666", "extraArgs come last")
        self.assert_binary_accepts(rendered)
        self.assert_binary_accepts(args())
        # And the check is real: a value the binary rejects is caught.
        result = self.parse(["run", "--drift=sideways"])
        self.assertNotEqual(result.returncode, 0)

    def parse(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        # clap validates every argument before it acts on --help; nothing is started.
        return subprocess.run([str(support.binary()), *argv, "--help"],
                              capture_output=True, text=True, timeout=60, check=False)

    def assert_binary_accepts(self, argv: list[str]) -> None:
        known = [a for a in argv if flag_name(a) not in NOT_YET_IN_BINARY - set(self.binary_flags)]
        result = self.parse(known)
        self.assertEqual(result.returncode, 0, f"the binary rejects {known}: {result.stderr}")

    def test_defaults_match_the_binary(self) -> None:
        for name, info in sorted(self.binary_flags.items()):
            if name not in FLAGS or name in DEFAULT_DIFFERS:
                continue
            with self.subTest(flag=name):
                chart_default = FLAGS[name].chart_default(self.defaults)
                self.assertEqual(chart_default, info.get("default"),
                                 f"chart default of {name} differs from the binary's")

    def test_enums_match_possible_values(self) -> None:
        schema = support.chart().schema
        assert schema is not None
        for name, info in sorted(self.binary_flags.items()):
            if "possible_values" not in info or name not in FLAGS:
                continue
            with self.subTest(flag=name):
                node = schema
                for part in FLAGS[name].path.split("."):
                    node = node["properties"][part]
                enum = node.get("enum") or (node.get("items") or {}).get("enum")
                if node.get("type") == "boolean":
                    self.assertEqual(sorted(info["possible_values"]), ["false", "true"])
                else:
                    self.assertEqual(sorted(enum or []), sorted(info["possible_values"]),
                                     f"values.schema.json enum of {FLAGS[name].path}")

    def test_access_entries_flags(self) -> None:
        # Off by default: the mode and the loop's settings are rendered like every other flag,
        # the cluster, region and endpoint only when set.
        default = args()
        self.assertIn("--access-entries=off", default)
        self.assertIn("--access-entries-concurrency=4", default)
        self.assertIn("--access-entries-resync-seconds=300", default)
        for name in ("--cluster-name", "--region", "--eks-endpoint"):
            self.assertFalse([a for a in default if flag_name(a) == name], name)
        # The region is a flag, not an environment variable of the chart's own.
        objects = render({"accessEntries": {"mode": "only", "clusterName": "prod", "region": "eu-west-1"}})
        on = container(objects)["args"]
        for expected in ("--access-entries=only", "--cluster-name=prod", "--region=eu-west-1"):
            self.assertIn(expected, on)
        self.assertNotIn("AWS_REGION", {e["name"] for e in container(objects)["env"]})
        self.assert_binary_accepts(on)
        # Settings given while off reach the binary too (it ignores them until a mode is set).
        off = args({"accessEntries": {"mode": "off", "clusterName": "prod", "endpoint": "https://x"}})
        self.assertIn("--cluster-name=prod", off)
        self.assertIn("--eks-endpoint=https://x", off)
        self.assert_binary_accepts(off)
        # The binary refuses mirror without a cluster at start; the chart refuses it at install.
        with self.assertRaises(helm.HelmValuesError):
            render({"accessEntries": {"mode": "mirror"}})

    def test_principals_flags(self) -> None:
        # Off by default: the settings are rendered like every other flag, the switch and the
        # endpoint only when set.
        default = args()
        for expected in ("--principal-cache-seconds=600", "--iam-concurrency=4",
                         "--principals-resync-seconds=300"):
            self.assertIn(expected, default)
        for name in ("--verify-principals", "--iam-endpoint"):
            self.assertFalse([a for a in default if flag_name(a) == name], name)
        # IAM requests are signed for --region: it is passed whenever set, access entries off
        # included (permission sets and --verify-principals need it too).
        off = args({"accessEntries": {"mode": "off", "region": "eu-west-1"},
                    "principals": {"verify": True}})
        self.assertIn("--region=eu-west-1", off)
        self.assertIn("--verify-principals", off)
        self.assert_binary_accepts(off)

    def test_irsa_and_pod_identity(self) -> None:
        arn = "arn:aws:iam::111122223333:role/aws-auth-operator"
        values = {"accessEntries": {"mode": "mirror", "clusterName": "prod", "region": "eu-west-1"},
                  "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}}
        objects = render(values)
        sa = one(objects, "ServiceAccount")
        self.assertEqual(sa["metadata"]["annotations"], {"eks.amazonaws.com/role-arn": arn})
        self.assertEqual(one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"],
                         sa["metadata"]["name"])
        # The RBAC does not change: access entries need AWS IAM, no Kubernetes rights.
        key = lambda o: (o["kind"], o["metadata"]["name"], json.dumps(o.get("rules")))  # noqa: E731
        kinds = ("Role", "ClusterRole")
        self.assertEqual(sorted(key(o) for o in render() if o["kind"] in kinds),
                         sorted(key(o) for o in objects if o["kind"] in kinds))


class Schema(unittest.TestCase):
    """values.schema.json, enforced by the real Helm engine: a bad value fails the render."""

    BAD: list[tuple[dict[str, Any], str]] = [
        ({"replicaCont": 2}, "replicaCont"),
        ({"operator": {"drfit": "repair"}}, "drfit"),
        ({"operator": {"drift": "fix"}}, "/operator/drift"),
        ({"operator": {"historyLimit": 0}}, "/operator/historyLimit"),
        ({"operator": {"historyLimit": "10"}}, "/operator/historyLimit"),
        ({"operator": {"recoverMalformed": "yes"}}, "/operator/recoverMalformed"),
        ({"operator": {"enforceGroupPolicy": "true"}}, "/operator/enforceGroupPolicy"),
        ({"operator": {"statusConcurrency": 0}}, "/operator/statusConcurrency"),
        ({"operator": {"kubeQps": -1}}, "/operator/kubeQps"),
        ({"operator": {"protectedArns": ["arn:aws:iam::1234:role/x"]}}, "/operator/protectedArns/0"),
        ({"operator": {"deniedGroups": "system:masters"}}, "/operator/deniedGroups"),
        ({"operator": {"logFormat": "yaml"}}, "/operator/logFormat"),
        ({"accessEntries": {"mode": "mirror"}}, "/accessEntries"),
        ({"accessEntries": {"mode": "on", "clusterName": "x"}}, "/accessEntries/mode"),
        ({"accessEntries": {"region": "Ireland"}}, "/accessEntries/region"),
        ({"accessEntries": {"concurrency": 0}}, "/accessEntries/concurrency"),
        ({"accessEntries": {"concurrency": 65}}, "/accessEntries/concurrency"),
        ({"accessEntries": {"resyncSeconds": 5}}, "/accessEntries/resyncSeconds"),
        ({"accessEntries": {"endpoint": "eks.eu-west-1.amazonaws.com"}}, "/accessEntries/endpoint"),
        ({"principals": {"verify": "true"}}, "/principals/verify"),
        ({"principals": {"verfy": True}}, "verfy"),
        ({"principals": {"cacheSeconds": -1}}, "/principals/cacheSeconds"),
        ({"principals": {"concurrency": 0}}, "/principals/concurrency"),
        ({"principals": {"concurrency": 65}}, "/principals/concurrency"),
        ({"principals": {"resyncSeconds": 5}}, "/principals/resyncSeconds"),
        ({"principals": {"iamEndpoint": "iam.amazonaws.com"}}, "/principals/iamEndpoint"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"digest": "sha256:123"}}, "/image/digest"),
        ({"metrics": {"port": 70000}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval"),
        ({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": 5}}}, "/serviceAccount/annotations"),
        ({"leaderElection": {"namespace": "Kube_System"}}, "/leaderElection/namespace"),
        ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
        ({"livenessProbe": {"exec": {"command": ["true"]}}}, "exec"),
        ({"replicaCount": -1}, "/replicaCount"),
    ]

    def test_bad_values_fail_the_render(self) -> None:
        for values, where in self.BAD:
            with self.subTest(values=values):
                with self.assertRaises(helm.HelmValuesError) as err:
                    render(values)
                self.assertIn(where, str(err.exception))

    def test_bad_values_fail_lint(self) -> None:
        report = helm.lint(str(support.CHART), {"replicaCont": 2})
        self.assertTrue(any("replicaCont" in e for e in report["errors"]), report)

    def test_good_values_pass(self) -> None:
        render({"podDisruptionBudget": {"minAvailable": "50%"},
                "operator": {"protectedArns": ["111122223333", "arn:aws-cn:iam::111122223333:role/a/b"]},
                "accessEntries": {"mode": "mirror", "clusterName": "prod", "region": "us-gov-west-1"}})


def rbac_objects(objects: list[dict[str, Any]], sa: str, sa_namespace: str) -> list[dict[str, Any]]:
    """The roles bound to the operator's ServiceAccount, with their bindings."""
    bindings = [
        o for o in objects
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and {"kind": "ServiceAccount", "name": sa, "namespace": sa_namespace} in o["subjects"]
    ]
    roles = []
    for b in bindings:
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace")
        matches = [o for o in objects if o["kind"] == ref["kind"] and o["metadata"]["name"] == ref["name"]
                   and o["metadata"].get("namespace") == (ns if ref["kind"] == "Role" else None)]
        assert len(matches) == 1, f"{b['kind']} {b['metadata']['name']} refers to a missing {ref}"
        roles.append(matches[0])
    return roles + bindings


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    """An RBAC object without its labels (the chart adds Helm's)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("labels", None)
    return obj


class Rbac(unittest.TestCase):
    def test_same_as_deploy_rbac_yaml(self) -> None:
        canonical = support.yaml_docs(support.RBAC_FILE)
        sa = one(canonical, "ServiceAccount")["metadata"]
        expected = rbac_objects(canonical, sa["name"], sa["namespace"])
        self.assertEqual(len(expected), 8)
        objects = render()
        got = rbac_objects(objects, sa["name"], sa["namespace"])
        key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
        self.assertEqual(sorted(map(key, got)), sorted(map(key, expected)))
        for want, have in zip(sorted(expected, key=key), sorted(map(strip, got), key=key)):
            self.assertEqual(have, want, f"{key(want)} differs from deploy/rbac.yaml")
        self.assertEqual(strip(one(objects, "ServiceAccount")) | {"automountServiceAccountToken": True},
                         one(canonical, "ServiceAccount") | {"automountServiceAccountToken": True})

    def test_rules_hold_in_another_namespace(self) -> None:
        canonical = support.yaml_docs(support.RBAC_FILE)
        rules = {(o["kind"], o["metadata"]["name"].removeprefix("aws-auth-operator")): o["rules"]
                 for o in canonical if o["kind"] in ("Role", "ClusterRole")}
        objects = render({"leaderElection": {"namespace": "leases"}, "serviceAccount": {"name": "aao-sa"}},
                         name="aao", namespace="platform")
        got = rbac_objects(objects, "aao-sa", "platform")
        got_rules = {(o["kind"], o["metadata"]["name"].removeprefix("aao-aws-auth-operator")): o["rules"]
                     for o in got if o["kind"] in ("Role", "ClusterRole")}
        self.assertEqual(got_rules, rules)
        namespaces = {o["metadata"]["name"]: o["metadata"].get("namespace") for o in got if o["kind"] == "Role"}
        self.assertEqual(namespaces, {
            "aao-aws-auth-operator": "kube-system",          # aws-auth is always there
            "aao-aws-auth-operator-leader": "leases",        # --lease-namespace
            "aao-aws-auth-operator-events": "default",       # events of cluster-scoped objects
        })
        self.assertIn("--lease-namespace=leases", container(objects)["args"])

    def test_user_roles(self) -> None:
        objects = render()
        editor = one(objects, "ClusterRole", "aws-auth-operator-editor")
        viewer = one(objects, "ClusterRole", "aws-auth-operator-viewer")
        self.assertFalse([k for k in editor["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate")],
                         "the editor role must never be aggregated")
        self.assertEqual(viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"], "true")
        for rule in viewer["rules"]:
            self.assertEqual(rule["verbs"], ["get", "list", "watch"])
        objects = render({"rbac": {"userRoles": {"create": False}}})
        self.assertEqual(find(objects, "ClusterRole", "aws-auth-operator-editor"), [])
        objects = render({"rbac": {"create": False, "userRoles": {"create": False}}})
        for kind in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"):
            self.assertEqual(find(objects, kind), [])


class OptionalObjects(unittest.TestCase):
    def test_service_account(self) -> None:
        arn = "arn:aws:iam::111122223333:role/aws-auth-operator"
        sa = one(render({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}}}), "ServiceAccount")
        self.assertEqual(sa["metadata"]["annotations"], {"eks.amazonaws.com/role-arn": arn})
        objects = render({"serviceAccount": {"create": False, "name": "existing"}})
        self.assertEqual(find(objects, "ServiceAccount"), [])
        self.assertEqual(one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"], "existing")
        with self.assertRaisesRegex(helm.HelmRenderError, "serviceAccount.name is required"):
            render({"serviceAccount": {"create": False}})

    def test_pod_disruption_budget(self) -> None:
        pdb = one(render(), "PodDisruptionBudget")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                         one(render(), "Deployment")["spec"]["selector"]["matchLabels"])
        self.assertEqual(find(render({"podDisruptionBudget": {"enabled": False}}), "PodDisruptionBudget"), [])

    def test_service_monitor(self) -> None:
        self.assertEqual(find(render(), "ServiceMonitor"), [])
        objects = render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}})
        sm = one(objects, "ServiceMonitor")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kps")
        self.assertEqual(sm["spec"]["endpoints"][0]["port"], "metrics")
        self.assertEqual(sm["spec"]["endpoints"][0]["path"], "/metrics")
        svc = one(objects, "Service")
        for k, v in sm["spec"]["selector"]["matchLabels"].items():
            self.assertEqual(svc["metadata"]["labels"][k], v)
        with self.assertRaisesRegex(helm.HelmRenderError, "metrics.service.enabled"):
            render({"metrics": {"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}})

    def test_network_policy(self) -> None:
        self.assertEqual(find(render(), "NetworkPolicy"), [])
        peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        np = one(render({"networkPolicy": {"enabled": True, "metricsFrom": [peer]}}), "NetworkPolicy")
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress", "Egress"])
        self.assertEqual(np["spec"]["ingress"], [{"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [peer]}])
        api = np["spec"]["egress"][0]
        self.assertEqual(sorted(p["port"] for p in api["ports"]), [443, 6443])
        self.assertEqual(len(np["spec"]["egress"]), 3, "API server, EKS Pod Identity Agent and DNS")
        np = one(render({"networkPolicy": {"enabled": True, "allowDNS": False}}), "NetworkPolicy")
        self.assertEqual(len(np["spec"]["egress"]), 2)
        # The EKS Pod Identity Agent (the AWS APIs are HTTPS: rule 1), whatever the values: a
        # mapping by permission set makes the operator call IAM even with access entries off.
        for values in ({}, {"accessEntries": {"mode": "mirror", "clusterName": "prod"}},
                       {"principals": {"verify": True}}):
            np = one(render({"networkPolicy": {"enabled": True}, **values}), "NetworkPolicy")
            self.assertEqual(len(np["spec"]["egress"]), 3)
            agent = np["spec"]["egress"][1]
            self.assertEqual(agent["ports"], [{"port": 80, "protocol": "TCP"}])
            self.assertEqual([p["ipBlock"]["cidr"] for p in agent["to"]], ["169.254.170.23/32", "fd00:ec2::23/128"])

    def test_notes_warn_without_group_policy(self) -> None:
        notes = support.render_files()["aws-auth-operator/templates/NOTES.txt"]
        self.assertIn("No group policy is set", notes)
        notes = support.render_files({"operator": {"deniedGroups": ["system:masters"]}})[
            "aws-auth-operator/templates/NOTES.txt"]
        self.assertNotIn("No group policy is set", notes)

    def test_notes_on_access_entries(self) -> None:
        notes = support.render_files()["aws-auth-operator/templates/NOTES.txt"]
        self.assertNotIn("EKS access entries", notes)
        self.assertIn("awsauth.dev/frozen", notes)
        notes = support.render_files({"accessEntries": {"mode": "mirror", "clusterName": "prod"}})[
            "aws-auth-operator/templates/NOTES.txt"]
        self.assertIn("EKS access entries (mirror) for the cluster prod.", notes)
        self.assertIn("not set", notes)
        self.assertIn("accessEntries.region is empty", notes)
        arn = "arn:aws:iam::111122223333:role/aws-auth-operator"
        notes = support.render_files({
            "accessEntries": {"mode": "only", "clusterName": "prod", "region": "eu-west-1"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}},
        })["aws-auth-operator/templates/NOTES.txt"]
        self.assertIn("for the cluster prod in eu-west-1.", notes)
        self.assertIn(f"IRSA: {arn}", notes)
        self.assertNotIn("accessEntries.region is empty", notes)

    def test_notes_on_iam(self) -> None:
        path = "aws-auth-operator/templates/NOTES.txt"
        notes = support.render_files()[path]
        self.assertIn("spec.ssoPermissionSet", notes)
        self.assertIn("iam:ListRoles", notes)
        self.assertNotIn("principals.verify", notes)
        self.assertIn("not set", notes)
        self.assertIn("permission sets stay unresolved (IamUnavailable)", notes)
        arn = "arn:aws:iam::111122223333:role/aws-auth-operator"
        notes = support.render_files({
            "principals": {"verify": True},
            "accessEntries": {"region": "eu-west-1"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": arn}},
        })[path]
        self.assertIn("principals.verify: iam:GetRole, iam:GetUser", notes)
        self.assertIn(f"IRSA: {arn}", notes)
        self.assertNotIn("accessEntries.region is empty", notes)
        # With access entries on, their paragraph already names the credentials: said once.
        notes = support.render_files({"accessEntries": {"mode": "mirror", "clusterName": "prod"}})[path]
        self.assertEqual(notes.count("eks.amazonaws.com/role-arn"), 1)


if __name__ == "__main__":
    unittest.main()
