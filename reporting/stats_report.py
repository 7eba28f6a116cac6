"""``retailrec stats``: a standalone HTML page of a run's TFDV statistics (train vs eval) and anomalies.

The page holds TFDV's own renderings: the Facets Overview of train vs eval (``get_statistics_html``;
Facets loads its scripts from the web when the page is opened), the anomalies of each split and
the curated schema (``get_anomalies_dataframe``, ``get_schema_dataframe``), and the train -> eval
drift of the schema's comparators. An offline table of each feature's key figures is included,
so the page says something useful without a network too.
"""

from __future__ import annotations

import html
import os

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components.validation import validation
from components.validation.component import ANOMALIES_FILE, SCHEMA_FILE
from modules import features as F
from modules.errors import RetailrecError
from pipeline import configs, local_runner
from reporting import results


def _feature_rows(stats: statistics_pb2.DatasetFeatureStatistics) -> dict[str, list[str]]:
    rows = {}
    n = stats.num_examples or 1
    for feature in stats.features:
        name = ".".join(feature.path.step) or feature.name
        if feature.HasField("num_stats"):
            s = feature.num_stats
            common = s.common_stats
            figures = f"mean {s.mean:.4g} · std {s.std_dev:.4g} · min {s.min:.4g} · max {s.max:.4g}"
        else:
            s = feature.string_stats
            common = s.common_stats
            top = ", ".join(f"{v.value} ({v.frequency:.0f})" for v in s.top_values[:3])
            figures = f"{s.unique} unique · top: {html.escape(top)}"
        missing = 100.0 * (1 - common.num_non_missing / n)
        rows[name] = [f"{common.num_non_missing:,}", f"{missing:.1f}%", figures]
    return rows


def _offline_table(train, eval_) -> str:
    left, right = _feature_rows(train), _feature_rows(eval_)
    lines = [
        "<table><tr><th>feature</th><th>train present</th><th>train missing</th><th>train</th>"
        "<th>eval present</th><th>eval missing</th><th>eval</th></tr>"
    ]
    for name in sorted(set(left) | set(right)):
        cells = left.get(name, ["-"] * 3) + right.get(name, ["-"] * 3)
        lines.append(
            f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    return "\n".join(lines + ["</table>"])


def build_html(output_dir: str) -> str:
    """The page for the latest run in ``output_dir``.

    Raises:
      RetailrecError: the folder holds no run with statistics.
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.utils import display_util
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import standard_artifacts
    from tfx.utils import io_utils

    where = local_runner.paths(output_dir)
    try:
        nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
    except FileNotFoundError as err:
        raise RetailrecError(str(err)) from err
    stats_node = nodes.get("StatisticsGen")
    if not stats_node or not stats_node.outputs.get("statistics"):
        raise RetailrecError(f"{output_dir}: the latest run has no StatisticsGen output")
    artifact = standard_artifacts.ExampleStatistics()
    artifact.set_mlmd_artifact(stats_node.outputs["statistics"][0])
    train = stats_artifact_utils.load_statistics(artifact, F.TRAIN_SPLIT).proto()
    eval_ = stats_artifact_utils.load_statistics(artifact, F.EVAL_SPLIT).proto()

    sections = [
        "<h2>Train vs eval (TFDV Facets Overview)</h2>",
        tfdv.utils.display_util.get_statistics_html(
            lhs_statistics=train, rhs_statistics=eval_, lhs_name="train", rhs_name="eval"
        ),
        "<h2>Key figures per feature (offline)</h2>",
        _offline_table(train.datasets[0], eval_.datasets[0]),
    ]
    validator = nodes.get("ExampleValidator")
    if validator and validator.outputs.get("anomalies"):
        uri = validator.outputs["anomalies"][0].uri
        for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT):
            found = anomalies_pb2.Anomalies()
            found.ParseFromString(
                io_utils.read_bytes_file(os.path.join(uri, f"Split-{split}", ANOMALIES_FILE))
            )
            table = display_util.get_anomalies_dataframe(found).to_html()
            sections += [f"<h2>Anomalies: {split}</h2>", table]
    curated = nodes.get("CurateSchema")
    if curated and curated.outputs.get("schema"):
        schema = io_utils.parse_pbtxt_file(
            os.path.join(curated.outputs["schema"][0].uri, SCHEMA_FILE), schema_pb2.Schema()
        )
        drift = validation.drift_lines(schema, train, eval_)
        sections += [
            "<h2>Drift train &rarr; eval (schema comparators)</h2>",
            "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in drift) + "</ul>"
            if drift
            else "<p>No comparator exceeded its threshold.</p>",
            "<h2>Curated schema</h2>",
            display_util.get_schema_dataframe(schema)[0].to_html(),
        ]
    body = "\n".join(sections)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>retailrec TFDV statistics</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}</style></head><body>"
        f"<h1>TFDV statistics of {html.escape(str(where['output']))}</h1>{body}</body></html>"
    )


def write(output_dir: str, html_file: str) -> str:
    """Writes the page (through a temporary file) and returns its path."""
    page = build_html(output_dir)
    tmp = f"{html_file}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(page)
    os.replace(tmp, html_file)
    return html_file
