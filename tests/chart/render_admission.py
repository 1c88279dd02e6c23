"""The admission guard's objects as the real Helm engine renders them, as JSON, for
tests/admission_policy.rs (which evaluates their CEL expressions): the chart is rendered with the
values given as a JSON argument (release and namespace optional), and the ConfigMaps,
ValidatingAdmissionPolicies and ValidatingAdmissionPolicyBindings are printed as one JSON list.

    python tests/chart/render_admission.py '{"admissionGuard": {"awsAuth": {"enabled": true}}}' [RELEASE NAMESPACE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import support  # noqa: E402

KINDS = ("ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def main(argv: list[str]) -> int:
    values = json.loads(argv[0]) if argv else None
    name, namespace = (argv[1], argv[2]) if len(argv) >= 3 else (support.RELEASE, support.NAMESPACE)
    objects = [o for o in support.render(values, name=name, namespace=namespace) if o["kind"] in KINDS]
    json.dump(objects, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
