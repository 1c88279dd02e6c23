"""Shared helpers of the packaging tests: the repository's paths, the real Helm engine
(helm-python-sdk: Helm 4 as a shared library), the freshly built operator binary.

Run through `cargo test --test packaging` (which builds the binary and sets
AWS_AUTH_OPERATOR_BIN), or `make chart-test`.
"""

from __future__ import annotations

import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aws-auth-operator"
CRD_FILE = ROOT / "crds" / "iamidentitymappings.awsauth.dev.yaml"
RBAC_FILE = ROOT / "deploy" / "rbac.yaml"
INSTALL_FILE = ROOT / "deploy" / "install.yaml"

# The release name and namespace that give exactly the object names of deploy/rbac.yaml.
RELEASE = "aws-auth-operator"
NAMESPACE = "kube-system"


def binary() -> Path:
    """The operator binary that `cargo test` just built."""
    value = os.environ.get("AWS_AUTH_OPERATOR_BIN")
    if not value:
        raise RuntimeError(
            "AWS_AUTH_OPERATOR_BIN is not set: run these tests through "
            "`cargo test --test packaging` or `make chart-test`"
        )
    path = Path(value)
    if not path.is_file():
        raise RuntimeError(f"AWS_AUTH_OPERATOR_BIN={value} does not exist")
    return path


def run_binary(*args: str) -> str:
    result = subprocess.run(
        [str(binary()), *args], capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"aws-auth-operator {' '.join(args)} exited {result.returncode}: {result.stderr}"
        )
    return result.stdout


@lru_cache(maxsize=1)
def chart() -> helm.Chart:
    return helm.Chart.load(str(CHART))


def render_files(
    values: dict[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` renders them (schema checked)."""
    return chart().render(values, name=name, namespace=namespace)


def render(
    values: dict[str, Any] | None = None,
    *,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects (NOTES.txt left out)."""
    objects = []
    for path, text in sorted(render_files(values, name=name, namespace=namespace).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(objects, kind, name)
    if len(found) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    if len(containers) != 1:
        raise AssertionError(f"expected one container, found {len(containers)}")
    return containers[0]


def args(values: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    return container(render(values, **kwargs))["args"]


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


# ---- `--help` of the binary -------------------------------------------------------------------

_FLAG_LINE = re.compile(r"^\s{2,}(?:-\w, )?(--[a-z0-9][a-z0-9-]*)(?:[ =]<([A-Z0-9_]+)>)?")
_BRACKET = re.compile(r"\[(default|possible values|env): ([^\]]*)\]")


def help_flags(*subcommand: str) -> dict[str, dict[str, Any]]:
    """The long flags of `aws-auth-operator SUBCOMMAND --help`, with what clap says of each:
    `takes_value`, `default`, `possible_values`, `env`. `--help`/`--version` are left out."""
    text = run_binary(*subcommand, "--help")
    flags: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        match = _FLAG_LINE.match(line)
        if match:
            name = match.group(1)
            current = {"takes_value": match.group(2) is not None}
            if name not in ("--help", "--version"):
                flags[name] = current
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped == "Possible values:":
            current["possible_values"] = []
            continue
        item = re.match(r"^- ([^:\s]+)(?::|$)", stripped)
        if item and "possible_values" in current and not current.get("_closed"):
            current["possible_values"].append(item.group(1))
            continue
        if "possible_values" in current:
            current["_closed"] = True
        for key, value in _BRACKET.findall(line):
            if key == "default":
                current["default"] = value
            elif key == "possible values":
                current["possible_values"] = [v.strip() for v in value.split(",")]
            else:
                current["env"] = value.rstrip("=")
    for info in flags.values():
        info.pop("_closed", None)
    if not flags:
        raise AssertionError(f"no flags found in `{' '.join(subcommand)} --help`:\n{text}")
    return flags


def subcommands(*parent: str) -> list[str]:
    """The subcommands listed by `aws-auth-operator [PARENT...] --help` (none: an empty list)."""
    text = run_binary(*parent, "--help")
    names, in_commands = [], False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            in_commands = True
            continue
        if in_commands:
            if not line.startswith("  "):
                break
            name = line.split()[0]
            if name != "help":
                names.append(name)
    return names
