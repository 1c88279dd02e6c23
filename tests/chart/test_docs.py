"""docs/ against the code: links resolve, and the tables of reasons, events, metrics, fields and
validate diagnostics list everything the source defines. When the operator gains a reason, a
metric or a field, these tests name it and the document to extend.
"""

from __future__ import annotations

import re
import sys
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # noqa: E402
import support  # noqa: E402

ROOT = support.ROOT
DOCS = ROOT / "docs"
SRC = ROOT / "src"


def source(path: str) -> str:
    """The text of src/PATH; for a module (`plan.rs`) that became a directory (`plan/mod.rs`,
    `plan/*.rs`), every file of the directory."""
    file = SRC / path
    if file.is_file():
        return file.read_text()
    directory = file.with_suffix("")
    if not directory.is_dir():
        raise FileNotFoundError(f"neither src/{path} nor src/{directory.name}/ exists")
    return "\n".join(p.read_text() for p in sorted(directory.rglob("*.rs")))


def balanced_body(text: str, start: int, opening: str, closing: str) -> str:
    """The text from `start` (just after an opening bracket) to its matching closing bracket,
    nested brackets balanced, string literals skipped over."""
    depth, i, in_string = 1, start, False
    while i < len(text) and depth:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
        i += 1
    return text[start:i - 1]


def call_arguments(text: str, function: str) -> list[str]:
    """The argument text of every call `function(...)` in Rust source (not its definition),
    parentheses balanced, string literals skipped over."""
    out = []
    for match in re.finditer(rf"(?<![\w.:]){re.escape(function)}\(", text):
        if text[max(0, match.start() - 3):match.start()] == "fn ":
            continue
        out.append(balanced_body(text, match.end(), "(", ")"))
    return out


def found(pattern: str, text: str) -> set[str]:
    return set(re.findall(pattern, text))


def documented(doc: Path, begin: str, end: str) -> set[str]:
    """The `Reason` names in the first column of the table between the markers."""
    text = doc.read_text()
    start, stop = text.index(begin), text.index(end)
    names: set[str] = set()
    for line in text[start:stop].splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    return names


def str_consts(text: str) -> dict[str, str]:
    """`const NAME: &str = "value";` of Rust source, by name."""
    return dict(re.findall(r'const (\w+): &str = "(\w+)";', text))


def status_reasons() -> set[str]:
    validate = source("validate.rs")
    reasons = found(r'Problem::new\(\s*"(\w+)"', validate)
    # A reason given by a constant (`Problem::new(UNRESOLVED, ...)`).
    consts = str_consts(validate)
    reasons |= {consts[n] for n in found(r'Problem::new\(\s*([A-Z][A-Z0-9_]*),', validate) if n in consts}
    reasons |= found(r'ArnError::\w+ \{ \.\. \} => "(\w+)"', source("arn.rs"))
    reasons |= outcome_reasons()
    status = source("status.rs")
    reasons |= found(r'push\(\s*\w+,\s*(?:true|false),\s*"(\w+)"', status)
    # Conditions built with a literal reason (`condition(TYPE, "Unknown", "Resolving", ...)`).
    reasons |= found(r'condition\(\s*\w+,\s*"(?:True|False|Unknown)",\s*"(\w+)"', status)
    # The AccessEntrySynced condition's reasons (which Ready carries too while they hold it back).
    reasons |= access_entry_reasons()
    # PrincipalResolved and PrincipalFound (Ready and Stalled carry NoRoleFound and
    # SeveralRolesFound): every `fn reason(&self)` of src/principals/.
    reasons |= principal_reasons()
    return reasons


def outcome_reasons() -> set[str]:
    """The reasons of `Outcome::reason()` (plan.rs): literals, and constants of validate.rs
    (`Outcome::Unresolved { .. } => crate::validate::UNRESOLVED`)."""
    plan = source("plan.rs")
    reasons = found(r'(?:Outcome|Blocked)::\w+ \{ \.\. \} => "(\w+)"', plan)
    consts = str_consts(source("validate.rs"))
    named = found(r'Outcome::\w+ \{ \.\. \} => crate::validate::([A-Z][A-Z0-9_]*)', plan)
    return reasons | {consts[n] for n in named if n in consts}


def principal_reasons() -> set[str]:
    """Every `fn reason(&self)` of src/principals/: literals, and constants of the same source
    (`SsoState::NotFound { .. } => NO_ROLE_FOUND`)."""
    text = source("principals.rs")
    consts = str_consts(text)
    reasons: set[str] = set()
    for match in re.finditer(r"fn reason\(&self\) -> &'static str \{", text):
        body = balanced_body(text, match.end(), "{", "}")
        reasons |= found(r'=> "(\w+)"', body)
        reasons |= {consts[n] for n in found(r'=> ([A-Z][A-Z0-9_]*),', body) if n in consts}
    return reasons


def access_entry_reasons() -> set[str]:
    return found(r'SyncReason::\w+ => "(\w+)"', source("accessentries/report.rs"))


def condition_types() -> set[str]:
    """The condition types the operator writes (status.rs), without the one it never sets."""
    types = found(r'pub const \w+: &str = "(\w+)";', source("status.rs"))
    types |= found(r'pub const CONDITION_TYPE: &str = "(\w+)";', source("accessentries/report.rs"))
    # Types of the principal resolver (`pub const PRINCIPAL_RESOLVED: &str = "PrincipalResolved"`),
    # those that status.rs builds conditions of.
    principals = str_consts(source("principals/mod.rs"))
    used = found(r'condition\(\s*([A-Z][A-Z0-9_]*),', source("status.rs"))
    types |= {principals[n] for n in used if n in principals}
    return types - {"Reconciling"}


def struct_literals(text: str, name: str) -> list[str]:
    """The body of every struct literal `name { ... }` in Rust source, braces balanced, string
    literals skipped over."""
    out = []
    for match in re.finditer(rf"(?<![\w:]){re.escape(name)} \{{", text):
        out.append(balanced_body(text, match.end(), "{", "}"))
    return out


def event_reasons() -> set[str]:
    """Reasons the controller publishes (controller/reconcile.rs): `EventType::X, "Reason"` pairs, every reason-like
    string literal among the arguments of a `publish(...)` call (a reason chosen by an `if`),
    and the `reason:` of every `PendingEvent { ... }`; and those decided in status/events.rs."""
    text = source("controller/reconcile.rs")
    reasons = found(r'EventType::\w+,\s*"(\w+)"', text)
    for arguments in call_arguments(text, "publish"):
        reasons |= found(r'"([A-Z][A-Za-z0-9]+)"', arguments)
    for body in struct_literals(text, "PendingEvent"):
        field = re.search(r"\breason:(.*?)(?:,\s*\n\s*message\b|$)", body, flags=re.S)
        if field:
            reasons |= found(r'"([A-Z][A-Za-z0-9]+)"', field.group(1))
    # The events decided from the plan's notes and from status changes (pure, status/events.rs):
    # `EventType::X, "Reason"` pairs and the literals of a reason chosen by an `if`.
    decided = source("status/events.rs")
    reasons |= found(r'EventType::\w+,\s*"(\w+)"', decided)
    for choice in re.finditer(r"let reason = if .*?;\n", decided, flags=re.S):
        reasons |= found(r'"([A-Z][A-Za-z0-9]+)"', choice.group(0))
    return reasons


class Docs(unittest.TestCase):
    def test_reasons_table_covers_the_code(self) -> None:
        reasons = status_reasons()
        # The extraction must keep working when the code moves: known reasons of each source.
        for known in ("ArnAndAccount", "ArnIsGroup", "Rendered", "ProtectedPrincipal",
                      "LiveAwsAuthMalformed", "NoConflict", "HandEdited"):
            self.assertIn(known, reasons, "tests/chart/test_docs.py no longer finds the reasons in src/")
        for known in ("ServedByAccessEntry", "Pending", "ForeignEntry", "NotMigratable"):
            self.assertIn(known, reasons, "tests/chart/test_docs.py no longer finds the reasons in src/")
        for known in ("PermissionSetUnresolved", "InvalidPermissionSetName", "Resolving", "Reprovisioned",
                      "NoRoleFound", "SeveralRolesFound", "IamUnavailable", "NotFound", "PathOrNameDiffers",
                      "OtherAccount"):
            self.assertIn(known, reasons, "tests/chart/test_docs.py no longer finds the reasons in src/")
        table = documented(DOCS / "crd-reference.md", "<!-- reasons:begin -->", "<!-- reasons:end -->")
        missing = sorted(reasons - table)
        self.assertEqual(missing, [], "reasons missing from the table in docs/crd-reference.md")

    def test_conditions_table_covers_the_code(self) -> None:
        types = condition_types()
        self.assertIn("AccessEntrySynced", types)
        self.assertIn("PrincipalResolved", types)
        self.assertIn("PrincipalFound", types)
        text = (DOCS / "crd-reference.md").read_text()
        start = text.index("| condition | True means |")
        section = text[start:text.index("\n\n", start)]
        rows = {line.split("|")[1].strip().strip("`") for line in section.splitlines() if line.startswith("| `")}
        self.assertEqual(sorted(types - rows), [], "condition types missing from docs/crd-reference.md")
        self.assertNotIn("Reconciling", rows, "the operator never sets Reconciling")

    def test_frozen_annotation_is_documented(self) -> None:
        (annotation,) = found(r'FROZEN_ANNOTATION: &str = "([^"]+)"', source("controller/reconcile.rs"))
        for doc in ("operations.md", "troubleshooting.md", "crd-reference.md"):
            self.assertIn(f"kubectl annotate configmap -n kube-system aws-auth {annotation}-",
                          (DOCS / doc).read_text(), doc)

    def test_events_table_covers_the_code(self) -> None:
        reasons = event_reasons()
        for known in ("TookOver", "EntryRemoved", "DriftRepaired", "RecoveredMalformedAwsAuth",
                      "RecoveredDeletedAwsAuth", "LiveAwsAuthMalformed", "OriginalEntryRestored",
                      "PolicyEnforced", "MovedToAccessEntry", "AwsAuthFrozen", "AwsAuthRecreated",
                      "PermissionSetReprovisioned", "PrincipalNotFound"):
            self.assertIn(known, reasons)
        table = documented(DOCS / "crd-reference.md", "<!-- events:begin -->", "<!-- events:end -->")
        # Warning events about a mapping carry its outcome's reason; the two Ready outcomes
        # publish none of their own (a recovery is the Normal event `Rendered`).
        outcome = outcome_reasons() - {"Rendered", "ServedByAccessEntry"}
        self.assertIn("PermissionSetUnresolved", outcome)
        self.assertEqual(sorted((reasons | outcome) - table), [],
                         "event reasons missing from the events table in docs/crd-reference.md")

    def test_validate_diagnostics_table_covers_the_parser(self) -> None:
        reasons = found(r'DiagnosticKind::\w+ => "(\w+)"', source("awsauth/parse.rs"))
        self.assertIn("RoleArnHasPath", reasons)
        table = documented(DOCS / "troubleshooting.md", "<!-- diagnostics:begin -->", "<!-- diagnostics:end -->")
        self.assertEqual(sorted(reasons - table), [],
                         "validate reasons missing from docs/troubleshooting.md")

    def test_metrics_are_documented(self) -> None:
        names = found(r'register(?:_with_unit)?\(\s*"(\w+)"', source("server.rs"))
        prefix = found(r'METRICS_PREFIX: &str = "(\w+)"', source("server.rs"))
        self.assertEqual(prefix, {"aws_auth_operator"})
        self.assertGreaterEqual(len(names), 8)
        text = (DOCS / "operations.md").read_text()
        missing = sorted(n for n in names if f"aws_auth_operator_{n}" not in text)
        self.assertEqual(missing, [], "metrics missing from docs/operations.md")
        errors = found(r'ReconcileError::\w+(?:\(_\)| \{ \.\. \})? => "(\w+)"', source("controller/reconcile.rs"))
        self.assertIn("WriteFailed", errors)
        self.assertEqual(sorted(e for e in errors if f"`{e}`" not in text), [],
                         "reconcile error reasons missing from docs/operations.md")

    def test_every_crd_field_is_documented(self) -> None:
        crd = yaml.safe_load(support.CRD_FILE.read_text())
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
        text = (DOCS / "crd-reference.md").read_text()
        for part in ("spec", "status"):
            for field in schema[part]["properties"]:
                self.assertIn(f"`{part}.{field}", text, f"{part}.{field} is not in docs/crd-reference.md")
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            self.assertIn(column["name"].upper(), text)

    def test_every_run_flag_is_in_the_cli_reference(self) -> None:
        text = (DOCS / "cli.md").read_text()
        self.assertEqual(text, generate.cli_doc_with_reference(text), "docs/cli.md is stale: run `make chart-docs`")
        for command in generate.commands():
            self.assertIn(f'<a id="{generate.cli_anchor(command)}"></a>', text)
        self.assertIn(["migrate", "plan"], generate.commands())

    def test_links_resolve(self) -> None:
        files = [*DOCS.glob("*.md"), ROOT / "README.md", support.CHART / "README.md"]
        for doc in files:
            text = doc.read_text()
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                if re.match(r"^[a-z]+:", target):
                    continue
                path, _, anchor = target.partition("#")
                resolved = (doc.parent / path).resolve() if path else doc
                with self.subTest(doc=doc.name, link=target):
                    self.assertTrue(resolved.exists(), f"{doc.relative_to(ROOT)}: {target} does not exist")
                    if anchor and resolved.suffix == ".md":
                        self.assertIn(anchor, anchors(resolved), f"{doc.relative_to(ROOT)}: no #{anchor} in {path or doc.name}")

    def test_readme_keeps_its_quick_start_and_links_the_docs(self) -> None:
        readme = (ROOT / "README.md").read_text()
        blocks = re.findall(r"```sh\n(.*?)```", readme, flags=re.S)
        self.assertEqual(blocks[0].strip(), "cargo run -- render examples/")
        self.assertEqual(blocks[1].strip(), "cargo test --locked")
        self.assertEqual(blocks[2].strip(), "cargo run -- demo")
        self.assertTrue("(docs/install.md)" in readme, "README.md must link docs/install.md")


def anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors, plus explicit `<a id="...">`."""
    text = doc.read_text()
    out = set(re.findall(r'<a id="([^"]+)"', text))
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


if __name__ == "__main__":
    unittest.main()
