"""Prints, as JSON, what the chart's Deployment would run with the given values (default: the
chart's defaults): the container's command, args and env, rendered by the real Helm engine.
tests/shipped_binary.rs starts the operator binary exactly so.

Usage: python tests/chart/container.py [VALUES_JSON]
"""

from __future__ import annotations

import json
import sys

from support import NAMESPACE, RELEASE, container, render


def main() -> None:
    values = json.loads(sys.argv[1]) if len(sys.argv) > 1 else None
    found = container(render(values))
    print(
        json.dumps(
            {
                "release": RELEASE,
                "namespace": NAMESPACE,
                "command": found.get("command"),
                "args": found.get("args", []),
                "env": found.get("env", []),
            }
        )
    )


if __name__ == "__main__":
    main()
