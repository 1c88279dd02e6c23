"""The Grafana dashboard of the operator, built with Grafana's own typed models
(grafana-foundation-sdk: generated from Grafana's dashboard schema), so that what is shipped is a
dashboard Grafana's schema accepts rather than hand-written JSON.

tests/chart/generate.py writes it to charts/aws-auth-operator/dashboards/aws-auth-operator.json
(the chart's dashboard ConfigMap carries that file; it can also be imported as it is), and
tests/observability.rs checks that every expression parses (promtool) and names only metrics the
operator exports.
"""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.table import Panel as Table
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_foundation_sdk.models.dashboard import DataSourceRef

UID = "aws-auth-operator"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every query is scoped to the chosen namespaces; state gauges to the leader (standbys keep the
# values of the last reconcile they led).
NS = 'namespace=~"$namespace"'
LEADER = f"(aws_auth_operator_leader{{{NS}}} == 1)"


def query(expr: str, legend: str, ref: str) -> Dataquery:
    return Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


def timeseries(title: str, description: str, unit: str, *queries: Dataquery) -> Timeseries:
    panel = (
        Timeseries()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(12)
    )
    for q in queries:
        panel = panel.with_target(q)
    return panel


def stat(title: str, description: str, unit: str, expr: str) -> Stat:
    return (
        Stat()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(4)
        .span(4)
        .with_target(query(expr, "", "A"))
    )


def dashboard() -> dict:
    board = (
        Dashboard("aws-auth-operator")
        .uid(UID)
        .description(
            "Who can log into the cluster: IamIdentityMappings, the aws-auth ConfigMap and EKS "
            "access entries as aws-auth-operator sees them. Runbooks: docs/runbooks.md."
        )
        .tags(["aws-auth-operator", "eks", "kubernetes"])
        .refresh("1m")
        .time("now-6h", "now")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("namespace")
            .label("Namespace")
            .datasource(DATASOURCE)
            .query("label_values(aws_auth_operator_build_info, namespace)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_row(Row("Overview"))
        .with_panel(
            stat(
                "Leader",
                "Replicas that write aws-auth: 1 is right, 0 means nobody does.",
                "none",
                f"sum(aws_auth_operator_leader{{{NS}}})",
            )
        )
        .with_panel(
            stat(
                "Since the last successful reconcile",
                "Time since the leader last reconciled aws-auth without an error (at least every resync period, 300 s by default).",
                "s",
                f"time() - max(aws_auth_operator_reconcile_last_success_timestamp_seconds{{{NS}}} and on(namespace, pod) {LEADER})",
            )
        )
        .with_panel(
            stat(
                "aws-auth frozen",
                "1 while aws-auth carries awsauth.dev/frozen: no managed entry is removed.",
                "none",
                f"max(aws_auth_operator_aws_auth_frozen{{{NS}}} and on(namespace, pod) {LEADER})",
            )
        )
        .with_row(Row("Mappings"))
        .with_panel(
            timeseries(
                "Mappings by state",
                "IamIdentityMappings by their Ready condition and its reason.",
                "none",
                query(
                    f"sum by (ready, reason) (aws_auth_operator_mappings{{{NS}}} and on(namespace, pod) {LEADER})",
                    "ready={{ready}} {{reason}}",
                    "A",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Access entries by state",
                "Mappings by the state of their EKS access entry (none with access entries off).",
                "none",
                query(
                    f"sum by (synced, reason) (aws_auth_operator_access_entries{{{NS}}} and on(namespace, pod) {LEADER})",
                    "synced={{synced}} {{reason}}",
                    "A",
                ),
            )
        )
        .with_row(Row("aws-auth"))
        .with_panel(
            timeseries(
                "aws-auth size vs limit",
                "Bytes of aws-auth data and the most the operator writes (1 MiB).",
                "bytes",
                query(
                    f"max(aws_auth_operator_aws_auth_data_bytes{{{NS}}} and on(namespace, pod) {LEADER})",
                    "size",
                    "A",
                ),
                query(
                    f"max(aws_auth_operator_aws_auth_data_limit_bytes{{{NS}}})",
                    "limit",
                    "B",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Writes and repairs",
                "Writes of aws-auth, status patches, and managed entries edited by hand and restored.",
                "ops",
                query(
                    f"sum(rate(aws_auth_operator_aws_auth_writes_total{{{NS}}}[$__rate_interval]))",
                    "aws-auth writes",
                    "A",
                ),
                query(
                    f"sum(rate(aws_auth_operator_status_writes_total{{{NS}}}[$__rate_interval]))",
                    "status patches",
                    "B",
                ),
                query(
                    f"sum(rate(aws_auth_operator_drift_repairs_total{{{NS}}}[$__rate_interval]))",
                    "hand edits repaired",
                    "C",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Entries",
                "aws-auth entries the operator owns, and the ones it keeps but does not own.",
                "none",
                query(
                    f"max(aws_auth_operator_managed_entries{{{NS}}} and on(namespace, pod) {LEADER})",
                    "managed",
                    "A",
                ),
                query(
                    f"max(aws_auth_operator_unmanaged_entries{{{NS}}} and on(namespace, pod) {LEADER})",
                    "unmanaged",
                    "B",
                ),
            )
        )
        .with_row(Row("Reconciles"))
        .with_panel(
            timeseries(
                "Reconcile latency",
                "Quantiles of the duration of one reconcile of aws-auth.",
                "s",
                query(
                    f"histogram_quantile(0.5, sum by (le) (rate(aws_auth_operator_reconcile_duration_seconds_bucket{{{NS}}}[$__rate_interval])))",
                    "p50",
                    "A",
                ),
                query(
                    f"histogram_quantile(0.99, sum by (le) (rate(aws_auth_operator_reconcile_duration_seconds_bucket{{{NS}}}[$__rate_interval])))",
                    "p99",
                    "B",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Reconciles and errors",
                "Reconciles by result, and failed ones by reason.",
                "ops",
                query(
                    f"sum by (result) (rate(aws_auth_operator_reconciles_total{{{NS}}}[$__rate_interval]))",
                    "{{result}}",
                    "A",
                ),
                query(
                    f"sum by (reason) (rate(aws_auth_operator_reconcile_errors_total{{{NS}}}[$__rate_interval]))",
                    "error: {{reason}}",
                    "B",
                ),
            )
        )
        .with_panel(
            timeseries(
                "EKS and IAM errors",
                "Failed EKS, IAM and STS calls by operation and error code (Unreachable: no answer).",
                "ops",
                query(
                    f"sum by (service, operation, code) (rate(aws_auth_operator_aws_api_errors_total{{{NS}}}[$__rate_interval]))",
                    "{{service}} {{operation}} {{code}}",
                    "A",
                ),
            )
        )
        .with_panel(
            timeseries(
                "Leader, caches and watches",
                "Leader per replica, whether its IamIdentityMapping cache is current, and whether its watches deliver.",
                "none",
                query(f"aws_auth_operator_leader{{{NS}}}", "leader {{pod}}", "A"),
                query(
                    f"aws_auth_operator_mapping_cache_current{{{NS}}}",
                    "cache current {{pod}}",
                    "B",
                ),
                query(
                    f"aws_auth_operator_watch_up{{{NS}}}",
                    "watch {{watch}} {{pod}}",
                    "C",
                ),
            )
        )
        .with_panel(
            Table()
            .title("Builds")
            .description("Which version runs where.")
            .datasource(DATASOURCE)
            .height(6)
            .span(24)
            .with_target(
                query(f"aws_auth_operator_build_info{{{NS}}}", "", "A").instant()
            )
        )
        .build()
    )
    data = json.loads(json.dumps(board, cls=JSONEncoder))
    # Unique panel ids (links and "view panel" use them); the builders leave them at 0.
    for number, panel in enumerate(data["panels"], start=1):
        panel["id"] = number
    # What Grafana reads back: the SDK's own model must load it.
    DashboardModel.from_json(data)
    return data


def dashboard_json() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(dashboard_json(), end="")
