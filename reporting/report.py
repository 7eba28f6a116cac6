"""``OUTPUT/report.html``: one self-contained page that says what a run found and decided.

Plots are PNG images embedded in the page (base64), so it opens with no network: Recall@K for
K = 1..50 of every model, the ANN recall/latency curve when an index was tuned, the export's data
summary, the gate decision with its reasons, timings, and the lineage (the URIs of every artifact
the run produced or reused, and where the model was pushed).
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import Any

from modules import metrics as M
from modules import ranking


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def recall_plot(models: dict[str, dict], curves: dict[str, list[float]]) -> str:
    """Recall@K against K for every model; a model without a full curve shows its K points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name in sorted(models, key=lambda n: -models[n].get("recall@50", 0.0)):
        if name in curves and curves[name]:
            ks = list(range(1, len(curves[name]) + 1))
            ax.plot(ks, curves[name], label=name, linewidth=2 if "two_tower" in name else 1.3)
        else:
            ks = [int(key.split("@")[1]) for key in models[name] if key.startswith("recall@")]
            ax.plot(sorted(ks), [models[name][f"recall@{k}"] for k in sorted(ks)], "o-", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_xlim(1, ranking.LIST_LENGTH)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Recall@K on the eval split (every eval event one query)")
    url = _png(fig)
    plt.close(fig)
    return url


def ann_plot(curve: list[dict[str, Any]]) -> str:
    """Recall against exact search vs queries per second for every index configuration tried."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.scatter([c["queries_per_s"] for c in curve], [c["recall_vs_exact"] for c in curve])
    for c in curve:
        if c.get("chosen"):
            ax.scatter(
                [c["queries_per_s"]],
                [c["recall_vs_exact"]],
                s=120,
                facecolors="none",
                edgecolors="r",
            )
    ax.set_xscale("log")
    ax.set_xlabel("queries / s")
    ax.set_ylabel("Recall@50 vs exact")
    ax.grid(alpha=0.3)
    ax.set_title("ScaNN configurations tried (red: chosen)")
    url = _png(fig)
    plt.close(fig)
    return url


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _interval_bar(low: float, high: float, point: float, scale: float) -> str:
    """An inline SVG bar: the interval as a line, the point estimate as a dot (0..scale)."""
    width = 160

    def x(value: float) -> float:
        return 4 + (width - 8) * max(0.0, min(1.0, value / scale if scale else 0.0))

    return (
        f"<svg width='{width}' height='12' role='img' aria-label='{low:.4f} to {high:.4f}'>"
        f"<line x1='{x(low):.1f}' x2='{x(high):.1f}' y1='6' y2='6' stroke='#357' stroke-width='3'/>"
        f"<circle cx='{x(point):.1f}' cy='6' r='3.5' fill='#c33'/></svg>"
    )


def _recall_cell(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def slice_table(models: dict[str, dict]) -> str:
    """Recall@10 / Recall@50 of every model per slice, with the slice's number of queries."""
    order = [n for n in models if models[n].get("slices")]
    order.sort(key=lambda n: -models[n].get("recall@50", 0.0))
    if not order:
        return ""
    first = models[order[0]]["slices"]
    rows = []
    for name in M.slice_names():
        if name not in first:
            continue
        cells = [
            _recall_cell(models[m]["slices"].get(name, {}).get("recall@10"))
            + " / "
            + _recall_cell(models[m]["slices"].get(name, {}).get("recall@50"))
            for m in order
        ]
        rows.append([html.escape(name), f"{first[name]['queries']:,}", *cells])
    return (
        "<h2>Recall by slice</h2><p>Recall@10 / Recall@50 per slice of the eval queries: "
        "<code>target_seen</code>/<code>target_new</code> (the visitor had the target in train "
        "or not), <code>target_cold</code> (the target has no train event), the visitor's "
        "number of train events, and the target event's type.</p>"
        + _table(rows, ["slice", "queries", *order])
    )


def comparison_table(comparisons: dict) -> str:
    """The two-tower against every baseline (and the latest blessed model): paired intervals."""
    if not comparisons:
        return ""
    scale = max([c["ratio_ci"][1] for c in comparisons.values() if c.get("ratio_ci")] + [1.0])
    rows = []
    for name, c in comparisons.items():
        ratio = "–" if c.get("ratio") is None else f"{c['ratio']:.2f}x"
        ratio_ci = (
            f"[{c['ratio_ci'][0]:.2f}x, {c['ratio_ci'][1]:.2f}x]" if c.get("ratio_ci") else "–"
        )
        bar = (
            _interval_bar(c["ratio_ci"][0], c["ratio_ci"][1], c["ratio"], scale * 1.05)
            if c.get("ratio_ci") and c.get("ratio") is not None
            else ""
        )
        rows.append(
            [
                html.escape(name),
                f"{c['diff']:+.4f}",
                f"[{c['diff_ci'][0]:+.4f}, {c['diff_ci'][1]:+.4f}]",
                ratio,
                ratio_ci,
                bar,
            ]
        )
    return (
        "<h2>Two-tower against each model</h2><p>Paired bootstrap over eval visitors (a "
        "visitor's queries stay together, 1,000 resamples, 95% percentile intervals).</p>"
        + _table(rows, ["comparison", "Recall@50 diff", "95% CI", "ratio", "95% CI", ""])
    )


def build_html(
    payload: dict,
    export_summary: dict,
    curves: dict[str, list[float]],
    lineage: dict[str, dict[str, list[str]]],
    gate_reasons: list[str],
    ann_curve: list[dict[str, Any]] | None = None,
) -> str:
    """The page, from what the run recorded."""
    names = M.metric_names()
    models = payload.get("models", {})
    ordered = sorted(models, key=lambda n: -models[n].get("recall@50", 0.0))
    scale = max([models[n].get("recall@50_ci", [0, 0])[1] for n in ordered] + [0.01]) * 1.05
    table = _table(
        [
            [html.escape(n)]
            + [f"{models[n].get(m, float('nan')):.4f}" for m in names]
            + (
                [
                    f"[{models[n]['recall@50_ci'][0]:.4f}, {models[n]['recall@50_ci'][1]:.4f}]",
                    _interval_bar(*models[n]["recall@50_ci"], models[n]["recall@50"], scale),
                ]
                if models[n].get("recall@50_ci")
                else ["", ""]
            )
            for n in ordered
        ],
        ["model", *names, "recall@50 95% CI", ""],
    )
    blessed = payload.get("blessed")
    verdict = (
        f"<p class='ok'>BLESSED and pushed to <code>{html.escape(str(payload.get('pushed_to')))}</code></p>"
        if blessed
        else "<p class='bad'>NOT blessed: nothing was pushed</p>"
    )
    reasons = (
        "".join(f"<li>{html.escape(r)}</li>" for r in gate_reasons)
        or "<li>(no gate in this run)</li>"
    )
    split = export_summary.get("split", {})
    events = export_summary.get("events", {})
    props = export_summary.get("properties", {})
    data_rows = [
        ["events read", f"{events.get('rows_read', 0):,}"],
        ["duplicates dropped", f"{events.get('dropped_duplicates', 0):,}"],
        ["cutoff", html.escape(str(split.get("cutoff")))],
        [
            "train events / visitors / items",
            f"{split.get('n_train', 0):,} / {split.get('train_visitors', 0):,} / {split.get('train_items', 0):,}",
        ],
        [
            "eval queries / visitors",
            f"{split.get('n_eval_queries', 0):,} / {split.get('eval_visitors', 0):,}",
        ],
        [
            "eval events of visitors unseen in train (dropped)",
            f"{split.get('dropped_eval_events_of_visitors_unseen_in_train', 0):,}",
        ],
        [
            "eval targets seen by the visitor in train",
            f"{split.get('eval_targets_seen_by_visitor_in_train', 0):,}",
        ],
        [
            "eval targets never seen in train (misses for all)",
            f"{split.get('eval_targets_not_in_train', 0):,}",
        ],
        [
            "catalogue items (cold: no train event)",
            f"{split.get('n_items', 0):,} ({split.get('catalogue_items_without_train_events', 0):,})",
        ],
        [
            "properties kept",
            html.escape(f"numeric {props.get('numeric')}, text {props.get('text')}"),
        ],
    ]
    timing_rows = [
        [html.escape(k), f"{v:.1f}"] for k, v in sorted(payload.get("timings_s", {}).items())
    ]
    lineage_rows = [
        [
            html.escape(node),
            html.escape(key),
            "<br>".join(f"<code>{html.escape(u)}</code>" for u in uris),
        ]
        for node, outputs in sorted(lineage.items())
        for key, uris in sorted(outputs.items())
    ]
    counts = payload.get("counts") or {}
    count_rows = [
        [
            html.escape(c["component"]),
            html.escape(c["split"]),
            html.escape(c["what"]),
            f"{c['expected']:,}",
            f"{c['found']:,}",
            "<span class='ok'>equal</span>"
            if c["expected"] == c["found"]
            else "<span class='bad'>MISMATCH</span>",
        ]
        for c in counts.get("checks", [])
    ]
    counts_html = (
        "<h2>Row counts</h2><p>Every component that reads examples checks what it read against the "
        "export's rows (a mismatch stops the run).</p>"
        + _table(count_rows, ["component", "split", "what", "expected", "found", ""])
        if count_rows
        else ""
    )
    ann = ""
    if payload.get("ann"):
        ann_rows = [
            [html.escape(k), html.escape(str(v))] for k, v in sorted(payload["ann"].items())
        ]
        ann = "<h2>Approximate nearest neighbours</h2>" + _table(ann_rows, ["figure", "value"])
        if ann_curve:
            ann += f"<img alt='ANN recall vs latency' src='{ann_plot(ann_curve)}'>"
    best = payload.get("best_baseline")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>retailrec run report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}}td:first-child{{text-align:left}}
.ok{{color:#070;font-weight:bold}}.bad{{color:#a00;font-weight:bold}}code{{font-size:12px}}</style></head><body>
<h1>retailrec run report</h1>
<h2>Gate decision</h2>{verdict}<ul id="reasons">{reasons}</ul>
<h2>Models (best baseline: {html.escape(str(best))})</h2>{table}
<img alt="Recall@K for every model" src="{recall_plot(models, curves)}">
{comparison_table(payload.get("comparisons") or {{}})}
{slice_table(models)}
{ann}
<h2>Data</h2>{_table(data_rows, ["", "value"])}
{counts_html}
<h2>Timings (s)</h2>{_table(timing_rows, ["component", "seconds"])}
<h2>Lineage</h2>{_table(lineage_rows, ["component", "output", "artifact URI"])}
</body></html>"""


def write(path: str, page: str) -> str:
    """Writes the page through a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return path
