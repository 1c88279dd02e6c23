"""The admission guard of the chart (templates/admission-policies.yaml), rendered and linted by
the real Helm engine: which objects the values create, what the params ConfigMap holds, and the
values the schema refuses. Its CEL expressions are evaluated in tests/admission_policy.rs.

Run: `make chart-test`, or `cargo test --test packaging` (CI).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path
from typing import Any

import helm_python as helm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support  # noqa: E402
from support import find, one, render  # noqa: E402

POLICY = "ValidatingAdmissionPolicy"
BINDING = "ValidatingAdmissionPolicyBinding"
ON = {"admissionGuard": {"awsAuth": {"enabled": True}}}


def params(objects: list[dict[str, Any]]) -> dict[str, str]:
    return one(objects, "ConfigMap", "aws-auth-operator-admission")["data"]


class Objects(unittest.TestCase):
    def test_defaults_guard_mappings_only(self) -> None:
        objects = render()
        self.assertEqual([o["metadata"]["name"] for o in find(objects, POLICY)],
                         ["aws-auth-operator-privileged-mappings"])
        binding = one(objects, BINDING)
        self.assertEqual(binding["spec"]["validationActions"], ["Deny"])
        self.assertEqual(binding["spec"]["paramRef"], {
            "name": "aws-auth-operator-admission", "namespace": "kube-system",
            "parameterNotFoundAction": "Deny"})
        self.assertEqual(one(objects, POLICY)["spec"]["failurePolicy"], "Fail")

    def test_both_guards_off_render_nothing(self) -> None:
        objects = render({"admissionGuard": {"mappings": {"enabled": False}}})
        for kind in (POLICY, BINDING, "ConfigMap"):
            self.assertEqual(find(objects, kind), [], kind)

    def test_aws_auth_guard(self) -> None:
        objects = render({"admissionGuard": {"mappings": {"enabled": False}, "awsAuth": {"enabled": True}}})
        policy = one(objects, POLICY, "aws-auth-operator-aws-auth")
        self.assertEqual(policy["spec"]["failurePolicy"], "Ignore")
        rule = policy["spec"]["matchConstraints"]["resourceRules"][0]
        self.assertEqual((rule["resources"], rule["resourceNames"], rule["operations"]),
                         (["configmaps"], ["aws-auth"], ["UPDATE", "DELETE"]))
        binding = one(objects, BINDING, "aws-auth-operator-aws-auth")
        self.assertEqual(binding["spec"]["validationActions"], ["Warn"], "Warn first")
        self.assertEqual(binding["spec"]["paramRef"]["parameterNotFoundAction"], "Allow")
        self.assertEqual(params(objects)["operatorUsernames"],
                         "system:serviceaccount:kube-system:aws-auth-operator")

    def test_params_hold_the_lists(self) -> None:
        data = params(render({"admissionGuard": {"mappings": {
            "privilegedGroups": ["system:masters", "cluster-admin(s)?"],
            "privilegedUsernames": [],
            "grantingGroups": ["system:masters", "platform-admins"],
            "grantingUsernames": ["alice"],
            "grantingServiceAccounts": ["argocd/argocd-application-controller"],
        }}}))
        self.assertEqual(data["privilegedGroups"], "^(?:(?:system:masters)|(?:cluster-admin(s)?))$")
        self.assertEqual(data["privilegedUsernames"], "", "an empty list: nothing is privileged")
        self.assertEqual(data["grantingGroups"], "system:masters,platform-admins")
        self.assertEqual(data["grantingUsernames"], "alice,system:serviceaccount:argocd:argocd-application-controller")
        self.assertEqual(params(render({"serviceAccount": {"create": False, "name": "existing"}}))["operatorUsernames"],
                         "system:serviceaccount:kube-system:existing")

    def test_a_list_change_changes_only_the_params(self) -> None:
        changed = {"admissionGuard": {"mappings": {"grantingGroups": ["x"]}, "awsAuth": {"enabled": True, "breakGlassGroups": ["y"]}}}
        for kind in (POLICY, BINDING):
            self.assertEqual(find(render(ON), kind), find(render(changed), kind), kind)
        self.assertNotEqual(params(render(ON)), params(render(changed)))

    def test_lint_strict_with_both_guards(self) -> None:
        report = helm.lint(str(support.CHART), ON, strict=True, kube_version="v1.33.0")
        self.assertEqual(report["errors"], [], report)
        self.assertEqual([m for m in report["messages"] if m["severity"] >= 2], [], report)

    def test_install_yaml_holds_the_mappings_guard(self) -> None:
        kinds = [d["kind"] for d in support.yaml_docs(support.INSTALL_FILE)]
        self.assertEqual(kinds.count(POLICY), 1)
        self.assertEqual(kinds.count(BINDING), 1)
        self.assertGreater(kinds.index(BINDING), kinds.index(POLICY))
        self.assertLess(kinds.index("ConfigMap"), kinds.index(BINDING), "the params before the binding")


class Schema(unittest.TestCase):
    BAD: list[tuple[dict[str, Any], str]] = [
        ({"admissionGuard": {"mappings": {"grantingGroups": ["a,b"]}}}, "/admissionGuard/mappings/grantingGroups/0"),
        ({"admissionGuard": {"mappings": {"grantingUsernames": [""]}}}, "/admissionGuard/mappings/grantingUsernames/0"),
        ({"admissionGuard": {"mappings": {"grantingServiceAccounts": ["argocd-application-controller"]}}},
         "/admissionGuard/mappings/grantingServiceAccounts/0"),
        ({"admissionGuard": {"mappings": {"validationActions": ["Deny", "Warn"]}}}, "/admissionGuard/mappings/validationActions"),
        ({"admissionGuard": {"mappings": {"validationActions": []}}}, "/admissionGuard/mappings/validationActions"),
        ({"admissionGuard": {"awsAuth": {"validationActions": ["Block"]}}}, "/admissionGuard/awsAuth/validationActions/0"),
        ({"admissionGuard": {"awsAuth": {"breakGlassGroups": "admins"}}}, "/admissionGuard/awsAuth/breakGlassGroups"),
        ({"admissionGuard": {"awsAuth": {"eksUsernames": ["eks:a,eks:b"]}}}, "/admissionGuard/awsAuth/eksUsernames/0"),
        ({"admissionGuard": {"awsAuth": {"enable": True}}}, "enable"),
    ]

    def test_bad_values_fail_the_render(self) -> None:
        for values, where in self.BAD:
            with self.subTest(values=values):
                with self.assertRaises(helm.HelmValuesError) as err:
                    render(values)
                self.assertIn(where, str(err.exception))

    def test_good_values_pass(self) -> None:
        render({"admissionGuard": {
            "mappings": {"validationActions": ["Warn", "Audit"],
                         "grantingServiceAccounts": ["flux-system/kustomize-controller"]},
            "awsAuth": {"enabled": True, "validationActions": ["Deny", "Audit"]}}})


class Notes(unittest.TestCase):
    PATH = "aws-auth-operator/templates/NOTES.txt"

    def test_notes_name_the_guards(self) -> None:
        notes = support.render_files()[self.PATH]
        self.assertIn("aws-auth-operator-privileged-mappings", notes)
        self.assertIn("admissionGuard.mappings.grantingGroups", notes)
        self.assertNotIn("aws-auth-operator-aws-auth", notes)
        notes = support.render_files(ON)[self.PATH]
        self.assertIn("kubectl delete validatingadmissionpolicybinding aws-auth-operator-aws-auth", notes)
        self.assertIn("(Warn)", notes)
        notes = support.render_files({"admissionGuard": {"mappings": {"enabled": False}}})[self.PATH]
        self.assertNotIn("privileged-mappings", notes)


if __name__ == "__main__":
    unittest.main()
