"""GitOps health checks: the Argo CD Lua script under Lua 5.1 (Argo CD runs gopher-lua, a Lua 5.1
implementation) and the Flux health-check CEL expressions, evaluated the way kustomize-controller
evaluates them (fluxcd/pkg runtime/cel StatusEvaluator, RFC 0009).
"""

from __future__ import annotations

import random
import sys
import unittest
from pathlib import Path
from typing import Any

import cel
import lupa.lua51
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402
import support  # noqa: E402

ARGOCD = support.ROOT / "gitops" / "argocd"
FLUX = support.ROOT / "gitops" / "flux"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def run_health(obj: dict[str, Any]) -> dict[str, Any]:
    """Runs health.lua the way Argo CD does: `obj` is a global, the script returns a table.
    The libraries Argo CD does not open (io, os, package, debug, loading code) are removed."""
    lua = lupa.lua51.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
    assert lua.eval("_VERSION") == "Lua 5.1"
    g = lua.globals()
    for name in ("io", "os", "package", "debug", "require", "dofile", "loadfile", "load", "loadstring", "module"):
        g[name] = None
    g.obj = lua.table_from(obj, recursive=True)
    result = lua.execute(generate.HEALTH_LUA.read_text())
    return {k: result[k] for k in ("status", "message") if result[k] is not None}


def cases() -> list[dict[str, Any]]:
    return yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]


def testdata(path: str) -> dict[str, Any]:
    return yaml.safe_load((ARGOCD / path).read_text())


class ArgoCdHealth(unittest.TestCase):
    def test_cases(self) -> None:
        for case in cases():
            with self.subTest(input=case["inputPath"]):
                got = run_health(testdata(case["inputPath"]))
                self.assertEqual(got, case["healthStatus"])

    def test_cases_cover_the_required_states(self) -> None:
        files = {c["inputPath"] for c in cases()}
        on_disk = {f"testdata/{p.name}" for p in (ARGOCD / "testdata").glob("*.yaml")}
        self.assertEqual(files, on_disk, "every testdata file has a case, every case a file")
        conditions = []
        for case in cases():
            obj = testdata(case["inputPath"])
            status = obj.get("status") or {}
            true = {c["type"] for c in status.get("conditions", []) if c["status"] == "True"}
            conditions.append((case["healthStatus"]["status"], true, obj, status))
        self.assertTrue(any(s == "Healthy" and "Ready" in t for s, t, _, _ in conditions))
        ready_reason = lambda st: next((c.get("reason") for c in st.get("conditions", [])  # noqa: E731
                                        if c["type"] == "Ready"), None)
        self.assertTrue(any(s == "Progressing" and ready_reason(st) == "Pending" for s, _, _, st in conditions),
                        "an access entry on its way")
        self.assertTrue(any(s == "Progressing" and ready_reason(st) == "EksError" for s, _, _, st in conditions))
        self.assertTrue(any(s == "Healthy" and ready_reason(st) == "ServedByAccessEntry" for s, _, _, st in conditions))
        self.assertTrue(any(s == "Healthy" and "AccessEntrySynced" not in t and "accessEntry" not in st
                            and any(c["type"] == "AccessEntrySynced" for c in st.get("conditions", []))
                            for s, t, _, st in conditions), "a mapping that cannot migrate is Healthy")
        self.assertTrue(any(s == "Degraded" and ready_reason(st) == "ForeignEntry" and "Stalled" in t
                            for s, t, _, st in conditions))
        self.assertTrue(any(s == "Degraded" and "Stalled" in t for s, t, _, _ in conditions))
        self.assertTrue(any(s == "Degraded" and "Conflict" in t for s, t, _, _ in conditions))
        self.assertTrue(any(s == "Progressing" and not st for s, _, _, st in conditions), "no status yet")
        self.assertTrue(any(
            s == "Progressing" and "Ready" in t and st.get("observedGeneration", 0) < o["metadata"]["generation"]
            for s, t, o, st in conditions), "stale observedGeneration")
        # The operator never sets Reconciling: no sample may pretend it does.
        for _, _, obj, status in conditions:
            self.assertNotIn("Reconciling", {c["type"] for c in status.get("conditions", [])},
                             obj["metadata"]["name"])

    def test_stale_generation_wins_over_ready(self) -> None:
        obj = testdata("testdata/healthy.yaml")
        self.assertEqual(run_health(obj)["status"], "Healthy")
        obj["metadata"]["generation"] += 1
        self.assertEqual(run_health(obj)["status"], "Progressing")
        # A status without observedGeneration says nothing about the current generation.
        del obj["status"]["observedGeneration"]
        self.assertEqual(run_health(obj)["status"], "Progressing")

    def test_any_status_gives_a_valid_verdict(self) -> None:
        rng = random.Random(11)
        types = ["Ready", "Stalled", "Valid", "Conflict", "Drifted", "AccessEntrySynced", "Reconciling", "Other"]
        for _ in range(500):
            generation = rng.randint(1, 3)
            conditions = []
            for t in rng.sample(types, rng.randint(0, len(types))):
                c: dict[str, Any] = {"type": t, "status": rng.choice(["True", "False", "Unknown"])}
                if rng.random() < 0.8:
                    c["reason"] = rng.choice(["R", "Pending", "EksError", "NotMigratable",
                                              "PermissionSetUnresolved", "NoRoleFound"])
                if rng.random() < 0.8:
                    c["message"] = "m"
                if rng.random() < 0.8:
                    c["observedGeneration"] = rng.randint(1, generation)
                conditions.append(c)
            status: dict[str, Any] = {"conditions": conditions}
            if rng.random() < 0.9:
                status["observedGeneration"] = rng.randint(1, generation)
            obj = {"metadata": {"name": "m", "generation": generation}, "status": status}
            got = run_health(obj)
            self.assertIn(got["status"], ARGO_STATUSES, obj)
            by_type = {c["type"]: c["status"] for c in conditions}
            if got["status"] == "Healthy":
                self.assertEqual(by_type.get("Ready"), "True", obj)
                self.assertNotEqual(by_type.get("Stalled"), "True", obj)
                self.assertNotEqual(by_type.get("Conflict"), "True", obj)
                self.assertEqual(status.get("observedGeneration"), generation, obj)
            if got["status"] == "Degraded":
                self.assertTrue(by_type.get("Stalled") == "True" or by_type.get("Conflict") == "True"
                                or by_type.get("Ready") == "False", obj)
            # Reconciling means nothing: the operator never sets it.
            without = {"metadata": obj["metadata"],
                       "status": {**status, "conditions": [c for c in conditions if c["type"] != "Reconciling"]}}
            self.assertEqual(run_health(without)["status"], got["status"], obj)
            # Flux agrees on every status shaped like the operator's: observedGeneration on the
            # status and the same on every condition (a missing one makes kstatus skip its check).
            shaped = "observedGeneration" in status and all(
                c.get("observedGeneration") == status["observedGeneration"] for c in conditions)
            if shaped:
                flux = flux_status(flux_check(), obj)
                self.assertIn(flux, ARGO_TO_FLUX[got["status"]], f"Flux says {flux}, Argo CD {got['status']}: {obj}")

    def test_argocd_cm_snippet_holds_the_script(self) -> None:
        self.assertEqual(generate.ARGOCD_CM.read_text(), generate.argocd_cm(),
                         "gitops/argocd/argocd-cm.yaml is stale: run `make chart-docs`")
        cm = yaml.safe_load(generate.ARGOCD_CM.read_text())
        self.assertEqual((cm["kind"], cm["metadata"]["name"]), ("ConfigMap", "argocd-cm"))
        crd = yaml.safe_load(support.CRD_FILE.read_text())
        key = f"resource.customizations.health.{crd['spec']['group']}_{crd['spec']['names']['kind']}"
        self.assertEqual(list(cm["data"]), [key])
        self.assertEqual(cm["data"][key], generate.HEALTH_LUA.read_text())

    def test_status_fields_exist_in_the_crd(self) -> None:
        crd = yaml.safe_load(support.CRD_FILE.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["served"]]
        self.assertIn("status", version["subresources"])
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
        self.assertIn("observedGeneration", status)
        self.assertIn("conditions", status)
        for case in cases():
            obj = testdata(case["inputPath"])
            self.assertEqual(obj["apiVersion"], f"{crd['spec']['group']}/{version['name']}")
            self.assertEqual(set(obj.get("status", {})) - set(status), set(), case["inputPath"])


ADMIN_ROLE = ("arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/eu-west-1/"
              "AWSReservedSSO_AdministratorAccess_0123456789abcdef")
UNRESOLVED = ("permission set AdministratorAccess is not resolved to an IAM role (see the "
              "PrincipalResolved condition); nothing is rendered for it yet")


def sso_mapping(*conditions: tuple[str, str, str, str], **status: Any) -> dict[str, Any]:
    """A mapping by permission set with the conditions (type, status, reason, message) the
    operator writes for it, at generation 1."""
    return {
        "apiVersion": "awsauth.dev/v1alpha1",
        "kind": "IamIdentityMapping",
        "metadata": {"name": "sso-administrators", "generation": 1},
        "spec": {"ssoPermissionSet": {"name": "AdministratorAccess"},
                 "username": "sso-admin:{{SessionName}}", "groups": ["platform-admins"]},
        "status": {
            "observedGeneration": 1,
            "conditions": [{"type": t, "status": st, "reason": r, "message": m, "observedGeneration": 1,
                            "lastTransitionTime": "2026-11-20T10:00:00Z"} for t, st, r, m in conditions],
            **status,
        },
    }


class PermissionSets(unittest.TestCase):
    """spec.ssoPermissionSet: waiting for IAM is in progress, an answer that needs a person
    (no role, several roles) is Stalled, and IAM's troubles never make a served mapping
    unhealthy. Argo CD and Flux agree on each."""

    def verdicts(self, obj: dict[str, Any]) -> tuple[str, str]:
        return run_health(obj)["status"], flux_status(flux_check(), obj)

    def test_waiting_for_iam_is_progressing(self) -> None:
        for reason, message in (
            ("Resolving", "waiting for the operator to ask IAM which role serves permission set AdministratorAccess"),
            ("IamUnavailable", "IAM could not be asked which role serves permission set AdministratorAccess: "
                               "AccessDenied; nothing is mapped until it resolves"),
        ):
            with self.subTest(reason=reason):
                obj = sso_mapping(("Valid", "True", "Valid", "the spec is valid"),
                                  ("Ready", "False", "PermissionSetUnresolved", UNRESOLVED),
                                  ("PrincipalResolved", "Unknown", reason, message))
                self.assertEqual(self.verdicts(obj), ("Progressing", "InProgress"))
                self.assertEqual(run_health(obj)["message"], f"Ready (PermissionSetUnresolved): {UNRESOLVED}")

    def test_no_role_or_several_is_degraded(self) -> None:
        no_role = ("no IAM role AWSReservedSSO_AdministratorAcess_<suffix> under /aws-reserved/sso.amazonaws.com/: "
                   "permission set AdministratorAcess is not provisioned in this account (assign it to the account "
                   "in IAM Identity Center) or the name is misspelt; permission sets provisioned here that look "
                   "alike: AdministratorAccess; nothing is mapped until it resolves")
        several = (f"several IAM roles serve permission set AdministratorAccess: {ADMIN_ROLE}, "
                   f"{ADMIN_ROLE.replace('eu-west-1', 'us-east-1')}; keeping {ADMIN_ROLE}, resolved before")
        for reason, message, status in (("NoRoleFound", no_role, {}),
                                        ("SeveralRolesFound", several, {"resolvedArn": ADMIN_ROLE})):
            with self.subTest(reason=reason):
                obj = sso_mapping(("Valid", "True", "Valid", "the spec is valid"),
                                  ("Ready", "False", reason, message),
                                  ("Stalled", "True", reason, message),
                                  ("PrincipalResolved", "False", reason, message), **status)
                self.assertEqual(self.verdicts(obj), ("Degraded", "Failed"))
                self.assertEqual(run_health(obj)["message"], f"Stalled ({reason}): {message}")

    def test_served_mappings_stay_healthy(self) -> None:
        rendered = "rendered into mapRoles as arn:aws:iam::111122223333:role/AWSReservedSSO_AdministratorAccess_0123456789abcdef"
        for condition in (
            ("PrincipalResolved", "True", "Resolved", f"permission set AdministratorAccess is served by {ADMIN_ROLE}"),
            ("PrincipalResolved", "Unknown", "IamUnavailable",
             f"IAM could not be asked which role serves permission set AdministratorAccess: timeout; keeping {ADMIN_ROLE}, resolved before"),
            ("PrincipalFound", "False", "NotFound",
             f"{ADMIN_ROLE} does not exist in IAM (yet: it may be created later, e.g. by Terraform; the entry is written anyway)"),
        ):
            with self.subTest(condition=condition[:3]):
                obj = sso_mapping(("Valid", "True", "Valid", "the spec is valid"),
                                  ("Ready", "True", "Rendered", rendered), condition, resolvedArn=ADMIN_ROLE)
                self.assertEqual(self.verdicts(obj), ("Healthy", "Current"))

    def test_sample_fields_exist_in_the_crd(self) -> None:
        crd = yaml.safe_load(support.CRD_FILE.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        obj = sso_mapping(resolvedArn=ADMIN_ROLE)
        self.assertEqual(set(obj["spec"]) - set(schema["spec"]["properties"]), set())
        self.assertEqual(set(obj["status"]) - set(schema["status"]["properties"]), set())


def flux_check() -> dict[str, str]:
    """The healthCheckExprs entry of gitops/flux/kustomization.yaml for IamIdentityMapping."""
    docs = support.yaml_docs(FLUX / "kustomization.yaml")
    (kustomization,) = [d for d in docs if d["kind"] == "Kustomization"]
    crd = yaml.safe_load(support.CRD_FILE.read_text())
    api_version = f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
    (check,) = [c for c in kustomization["spec"]["healthCheckExprs"]
                if c["apiVersion"] == api_version and c["kind"] == crd["spec"]["names"]["kind"]]
    return check


def flux_status(check: dict[str, str], obj: dict[str, Any]) -> str:
    """kustomize-controller's StatusEvaluator: observedGeneration first, then the expressions in
    the order inProgress, failed, current; none true: InProgress. An evaluation error (a field
    that is not there yet) makes kstatus report Unknown, and Flux keeps waiting."""
    observed = obj.get("status", {}).get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "InProgress"
    for key, result in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        expr = check.get(key)
        if not expr:
            continue
        try:
            value = cel.evaluate(expr, obj)
        except Exception:  # noqa: BLE001 - any evaluation error is Unknown, as in kstatus
            return "Unknown"
        if value is not True and value is not False:
            raise AssertionError(f"{key} is not a boolean expression: {value!r}")
        if value:
            return result
    return "InProgress"


# What Flux must conclude for each Argo CD test object.
FLUX_EXPECTED = {
    "testdata/healthy.yaml": "Current",
    "testdata/no-status.yaml": "Unknown",
    "testdata/empty-conditions.yaml": "Unknown",
    "testdata/stale-generation.yaml": "InProgress",
    "testdata/access-entry-pending.yaml": "InProgress",
    "testdata/access-entry-eks-error.yaml": "InProgress",
    "testdata/access-entry-in-sync.yaml": "Current",
    "testdata/access-entry-foreign.yaml": "Failed",
    "testdata/not-migratable.yaml": "Current",
    "testdata/served-by-access-entry.yaml": "Current",
    "testdata/stalled-invalid.yaml": "Failed",
    "testdata/conflict.yaml": "Failed",
    "testdata/drifted-report.yaml": "Failed",
    "testdata/blocked-malformed.yaml": "Failed",
    "testdata/policy-violation.yaml": "Failed",
    "testdata/does-not-fit.yaml": "Failed",
    "testdata/took-over.yaml": "Current",
}
ARGO_TO_FLUX = {"Healthy": {"Current"}, "Degraded": {"Failed"}, "Progressing": {"InProgress", "Unknown"}}


class Flux(unittest.TestCase):
    def setUp(self) -> None:
        docs = support.yaml_docs(FLUX / "kustomization.yaml")
        (self.kustomization,) = [d for d in docs if d["kind"] == "Kustomization"]
        crd = yaml.safe_load(support.CRD_FILE.read_text())
        self.api_version = f"{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
        self.kind = crd["spec"]["names"]["kind"]

    def check(self) -> dict[str, str]:
        (check,) = [c for c in self.kustomization["spec"]["healthCheckExprs"]
                    if c["apiVersion"] == self.api_version and c["kind"] == self.kind]
        self.assertIn("current", check, "Flux requires `current`")
        return check

    def test_kustomization_waits(self) -> None:
        spec = self.kustomization["spec"]
        self.assertIs(spec["wait"], True)
        self.assertIn("timeout", spec)
        self.assertEqual(self.kustomization["apiVersion"], "kustomize.toolkit.fluxcd.io/v1")

    def test_expressions_on_every_test_object(self) -> None:
        check = self.check()
        self.assertEqual(set(FLUX_EXPECTED), {c["inputPath"] for c in cases()})
        for case in cases():
            with self.subTest(input=case["inputPath"]):
                got = flux_status(check, testdata(case["inputPath"]))
                self.assertEqual(got, FLUX_EXPECTED[case["inputPath"]])
                self.assertIn(got, ARGO_TO_FLUX[case["healthStatus"]["status"]],
                              "Flux and Argo CD must agree")

    def test_operator_helmrelease_points_at_the_chart(self) -> None:
        docs = support.yaml_docs(FLUX / "operator.yaml")
        (release,) = [d for d in docs if d["kind"] == "HelmRelease"]
        chart_path = release["spec"]["chart"]["spec"]["chart"]
        self.assertTrue((support.ROOT / chart_path).joinpath("Chart.yaml").is_file(), chart_path)
        self.assertEqual(release["spec"]["install"]["crds"], "CreateReplace")
        # The values it shows are valid chart values.
        support.render(release["spec"]["values"])


if __name__ == "__main__":
    unittest.main()
