"""``retailrec stats``: a standalone HTML page of a run's TFDV statistics (train vs eval) and anomalies.

The page holds TFDV's own renderings: the Facets Overview of train vs eval (``get_statistics_html``;
Facets loads its scripts from the web when the page is opened, and a notice on the page says so
until they have loaded), the anomalies of each split and the curated schema
(``get_anomalies_dataframe``, ``get_schema_dataframe``), and the train -> eval drift of the schema's
comparators. An offline table of each feature's key figures is included, so the page says something
useful without a network too; token features (the history, the item text) show a few top values cut
short and the distribution of their token counts instead of whole values.
"""

from __future__ import annotations

import html
import os

import duckdb
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components.validation import validation
from components.validation.component import ANOMALIES_FILE, SCHEMA_FILE
from modules import features as F
from modules.errors import RetailrecError
from pipeline import configs, local_runner
from reporting import results

# String features that hold space-separated tokens (item ids, "<property>:<token>" pairs): their
# values are long and nearly all distinct, so the table shows a few, cut short, and how many tokens
# a value has (computed from the export's CSV, which StatisticsGen read).
TOKEN_FEATURES = (F.HISTORY, F.ITEM_TEXT)
_TOP_VALUES = 3
_TOKENS_SHOWN = 4
_MAX_VALUE_CHARS = 40


def short_value(value: str) -> str:
    """A top value as the table shows it: its first few whole tokens, then how many there are.

    ``short_value("1 2 3 4 5 6") == "1 2 3 4 … (6 tokens)"``; a single over-long token is cut
    to ``_MAX_VALUE_CHARS`` characters and an ellipsis.
    """
    tokens = value.split()
    if len(tokens) <= 1:
        return value if len(value) <= _MAX_VALUE_CHARS else value[: _MAX_VALUE_CHARS - 1] + "…"
    shown: list[str] = []
    for token in tokens[:_TOKENS_SHOWN]:
        if len(" ".join([*shown, token])) > _MAX_VALUE_CHARS:
            break
        shown.append(token)
    if len(shown) == len(tokens):
        return value
    if not shown:
        shown = [tokens[0][: _MAX_VALUE_CHARS - 1] + "…"]
    return f"{' '.join(shown)} … ({len(tokens)} tokens)"


def token_counts(csv_file: str, column: str) -> dict[str, float] | None:
    """How many space-separated tokens the present (non-empty) values of ``column`` hold.

    Returns:
      ``{"values", "mean", "min", "p50", "p90", "max"}``, or None when the file or column is absent.
    """
    if not os.path.isfile(csv_file):
        return None
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        names = [
            r[0]
            for r in con.execute(
                "DESCRIBE SELECT * FROM read_csv(?, header = true, all_varchar = true)", [csv_file]
            ).fetchall()
        ]
        if column not in names:
            return None
        row = con.execute(
            "SELECT count(*), avg(n), min(n), quantile_disc(n, 0.5), quantile_disc(n, 0.9), max(n) "
            f"FROM (SELECT len(string_split(trim(\"{column}\"), ' ')) AS n FROM "
            "read_csv(?, header = true, all_varchar = true) "
            f"WHERE trim(\"{column}\") <> '')",
            [csv_file],
        ).fetchone()
    finally:
        con.close()
    if not row[0]:
        return {"values": 0}
    return dict(zip(("values", "mean", "min", "p50", "p90", "max"), row, strict=True))


def _format_tokens(counts: dict[str, float] | None) -> str:
    if counts is None:
        return "tokens per value: (export CSV not found)"
    if not counts["values"]:
        return "tokens per value: no value"
    return (
        f"tokens per value: mean {counts['mean']:.1f} · min {counts['min']} · "
        f"median {counts['p50']} · p90 {counts['p90']} · max {counts['max']}"
    )


def _feature_rows(
    stats: statistics_pb2.DatasetFeatureStatistics, tokens: dict[str, dict | None] | None = None
) -> dict[str, list[str]]:
    """Per feature: present count, missing share, key figures (HTML-escaped).

    Args:
      stats: one split's statistics.
      tokens: token counts of the ``TOKEN_FEATURES`` (``token_counts``) of this split.
    """
    tokens = tokens or {}
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
            top = ", ".join(
                f"{short_value(v.value)} ({v.frequency:.0f})" for v in s.top_values[:_TOP_VALUES]
            )
            figures = f"{s.unique:,} unique" + (f" · top: {top}" if top else "")
            if name in TOKEN_FEATURES:
                figures += f" · {_format_tokens(tokens.get(name))}"
            figures = html.escape(figures)
        missing = 100.0 * (1 - common.num_non_missing / n)
        rows[name] = [f"{common.num_non_missing:,}", f"{missing:.1f}%", figures]
    return rows


def _offline_table(train, eval_, tokens: dict[str, dict[str, dict | None]] | None = None) -> str:
    tokens = tokens or {}
    left = _feature_rows(train, tokens.get(F.TRAIN_SPLIT))
    right = _feature_rows(eval_, tokens.get(F.EVAL_SPLIT))
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


# Shown until the Facets element has loaded from the web; it stays when the page is opened offline.
FACETS_NOTICE_ID = "facets-offline"
_FACETS_NOTICE = (
    f"<p id='{FACETS_NOTICE_ID}' class='notice'>The Facets Overview below loads its scripts from "
    "the web (cdnjs.cloudflare.com, raw.githubusercontent.com); until they load it stays empty, and "
    "without a network it cannot load at all. The table <a href='#offline'>Key figures per feature "
    "(offline)</a> holds the same key figures without the network.</p>"
    "<script>(function () {"
    f"var note = document.getElementById('{FACETS_NOTICE_ID}'), tries = 0;"
    "var poll = setInterval(function () {"
    "if (window.customElements && customElements.get('facets-overview')) {"
    "note.style.display = 'none'; clearInterval(poll);"
    "} else if (++tries > 60) { clearInterval(poll); }"
    "}, 500);"
    "})();</script>"
)


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

    tokens = {
        split: {
            name: token_counts(os.path.join(where["export"], split, F.INTERACTIONS_FILE), name)
            for name in TOKEN_FEATURES
        }
        for split in (F.TRAIN_SPLIT, F.EVAL_SPLIT)
    }
    sections = [
        "<h2>Train vs eval (TFDV Facets Overview)</h2>",
        _FACETS_NOTICE,
        tfdv.utils.display_util.get_statistics_html(
            lhs_statistics=train, rhs_statistics=eval_, lhs_name="train", rhs_name="eval"
        ),
        "<h2 id='offline'>Key figures per feature (offline)</h2>",
        _offline_table(train.datasets[0], eval_.datasets[0], tokens),
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
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}"
        ".notice{background:#fff4d6;border:1px solid #e0b84c;padding:6px 10px}</style></head><body>"
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
