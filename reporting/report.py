"""``OUTPUT/report.html``: one self-contained page that says what a run found and decided.

Written for an ML engineer to read and forward: a headline (blessed or not, by how much against
the best baseline, with its interval), every model's metrics with interval bars, the paired
comparisons, Recall by slice, the Recall@K curves, the ANN trade-off, the data, a model card
(intended use, data, metrics, settings, limits), the row counts, timings in DAG order and the
lineage. Plots are PNG images embedded in the page (base64), so it opens with no network.
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
    # Lines that coincide (two_tower and its ScaNN variant) stay readable: dashed over solid.
    styles = {"two_tower": ("-", 3.0), "two_tower_scann": ("--", 1.6)}
    for name in sorted(models, key=lambda n: -models[n].get("recall@50", 0.0)):
        style, width = styles.get(name, ("-", 1.3))
        label = f"{name} ({models[name].get('recall@50', float('nan')):.3f})"
        if name in curves and curves[name]:
            ks = list(range(1, len(curves[name]) + 1))
            ax.plot(ks, curves[name], style, label=label, linewidth=width)
        else:
            ks = sorted(
                int(key.split("@")[1])
                for key in models[name]
                if key.startswith("recall@") and key.split("@")[1].isdigit()
            )
            ax.plot(ks, [models[name][f"recall@{k}"] for k in ks], "o-", label=label)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K")
    ax.set_xlim(1, ranking.LIST_LENGTH)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Recall@K on the eval split (legend: Recall@50)")
    url = _png(fig)
    plt.close(fig)
    return url


def ann_plot(curve: list[dict[str, Any]]) -> str:
    """Recall against exact search vs the machine-independent cost of every configuration tried.

    The cost (``components.scann_index.index.cost``: distance computations per query) is what
    the index is chosen by; measured queries/s of the chosen one are in the table above.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ax.scatter([c["cost"] for c in curve], [c["recall_vs_exact"] for c in curve], s=18)
    for c in curve:
        if c.get("chosen"):
            ax.scatter(
                [c["cost"]], [c["recall_vs_exact"]], s=140, facecolors="none", edgecolors="r"
            )
    ax.set_xscale("log")
    ax.set_xlabel("cost: distance computations per query (log)")
    ax.set_ylabel("Recall@50 vs exact")
    ax.grid(alpha=0.3)
    ax.set_title("ScaNN configurations tried (red: chosen, the cheapest at the target)")
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


def tuning_section(tuning: dict | None) -> str:
    """The Tuner's trials (settings, validation-window Recall@50, epochs, seconds) and its choice,
    or, without a Tuner, where the Trainer's settings came from."""
    if not tuning:
        return ""
    if tuning["source"] != "tuner":
        if tuning["source"] == "defaults":
            text = "No Tuner in this run (<code>--no-tune</code>) and no earlier run's choice: "
            text += "the Trainer used the default settings."
        else:
            chosen = ", ".join(
                f"{html.escape(str(k))}={_fmt(v)}" for k, v in tuning["chosen"].items()
            )
            text = (
                "No Tuner in this run (<code>--no-tune</code>): the Trainer used the settings an "
                f"earlier run's Tuner chose: <code>{chosen}</code> "
                f"<span class='muted'>({html.escape(str(tuning.get('artifact')))})</span>."
            )
        return f"<section><h2>Tuning</h2><p>{text}</p></section>"
    names = list(tuning.get("space") or {})
    for trial in tuning["trials"]:
        names += [n for n in trial["hyperparameters"] if n not in names]
    defaults = tuning.get("defaults") or {}
    rows = []
    for trial in tuning["trials"]:
        chosen = trial["trial"] == tuning.get("best_trial")
        cells = []
        for name in names:
            value = trial["hyperparameters"].get(name)
            cell = _fmt(value, 4 if isinstance(value, float) and value < 1 else 1)
            cells.append(cell if value == defaults.get(name) else f"<b>{cell}</b>")
        recall = trial.get("validation_recall@50")
        rows.append(
            [
                f"{trial['trial']}" + (" (defaults)" if trial["trial"] == 1 else ""),
                *cells,
                "no window" if recall is None else _fmt(recall),
                _fmt(trial.get("epochs")),
                _fmt(trial.get("seconds"), 1),
                "<span class='ok'>chosen</span>" if chosen else "",
            ]
        )
    return (
        "<section><h2>Tuning</h2><p>The Tuner (KerasTuner random search, trial 1 the defaults) "
        f"compared {len(tuning['trials'])} setting(s) on the "
        f"{html.escape(str(tuning.get('objective')))} (the Trainer's window inside train, never "
        "the eval split); the Trainer trained the chosen one. Bold: not the default.</p>"
        + _table(
            rows,
            ["trial", *names, "validation Recall@50", "epochs", "seconds", ""],
        )
        + "</section>"
    )


_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 3em}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.15em;margin:1.6em 0 .4em;color:#234}
section{background:#fff;border-radius:8px;padding:.6em 1.2em 1em;margin:1em 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
table{border-collapse:collapse;margin:.6em 0}
td,th{border-bottom:1px solid #e3e6ea;padding:4px 10px;font-size:13px;text-align:right}
th{background:#f0f2f5;font-weight:600}td:first-child,th:first-child{text-align:left}
.headline{font-size:1.25em;padding:.8em 1.2em;border-radius:8px;margin:.6em 0}
.headline.ok{background:#e6f4ea;border-left:6px solid #188038}
.headline.bad{background:#fce8e6;border-left:6px solid #c5221f}
.ok{color:#188038;font-weight:600}.bad{color:#c5221f;font-weight:600}
.muted{color:#666;font-size:.9em}code{font-size:12px}
.bar{display:inline-block;height:10px;background:#4a7bb7;border-radius:2px}
dl.card{display:grid;grid-template-columns:11em 1fr;gap:.3em 1em}dl.card dt{font-weight:600}
dl.card dd{margin:0}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    """A number at its precision: ints with separators, floats with ``digits`` decimals."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "–"
        return f"{value:,.{digits}f}"
    return html.escape(str(value))


def headline(payload: dict) -> str:
    """One sentence: blessed or not, the two-tower's Recall@50 and its ratio to the best baseline."""
    models = payload.get("models", {})
    two_tower = models.get("two_tower")
    best = payload.get("best_baseline")
    if not two_tower:
        return "<div class='headline bad'>No two-tower evaluation in this run.</div>"
    ci = two_tower.get("recall@50_ci")
    text = f"two_tower Recall@50 <b>{two_tower['recall@50']:.4f}</b>"
    if ci:
        text += f" <span class='muted'>(95% CI {ci[0]:.4f}–{ci[1]:.4f})</span>"
    comparison = (payload.get("comparisons") or {}).get(f"two_tower_vs_{best}")
    if best in models:
        text += f" vs best baseline {html.escape(best)} {models[best]['recall@50']:.4f}"
        if comparison and comparison.get("ratio") is not None:
            text += f": <b>{comparison['ratio']:.2f}x</b>"
            if comparison.get("ratio_ci"):
                low, high = comparison["ratio_ci"]
                text += f" <span class='muted'>(95% CI {low:.2f}x–{high:.2f}x)</span>"
    if payload.get("blessed"):
        where = payload.get("pushed_to")
        state = (
            "BLESSED; TF Serving already serves this model"
            if payload.get("pushed_new_version") is False
            else "BLESSED and pushed"
        )
        pushed = f" to <code>{html.escape(str(where))}</code>" if where else ""
        return f"<div class='headline ok'><b>{state}</b>{pushed}.<br>{text}.</div>"
    return f"<div class='headline bad'><b>NOT blessed</b>: nothing was pushed.<br>{text}.</div>"


def model_card(payload: dict, export_summary: dict, training: dict | None) -> str:
    """What a model card says: intended use, data, metrics, training settings, limits."""
    split = export_summary.get("split", {})
    protocol = payload.get("protocol", {})
    settings = (training or {}).get("settings", {})
    validation = (training or {}).get("validation") or {}
    shown = ", ".join(f"{html.escape(str(k))}={html.escape(str(v))}" for k, v in settings.items())
    validation_text = (
        ", ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in validation.items())
        if validation
        else "not recorded"
    )
    return f"""<dl class="card">
<dt>Intended use</dt><dd>Candidate retrieval: the 50 catalogue items a visitor is most likely to
interact with next, from the visitor's history and counters at request time (TF Serving
signature <code>serving_default</code>). Meant to feed a ranking stage or business rules, not to
be shown unfiltered.</dd>
<dt>Data</dt><dd>The shop's events up to the cutoff {html.escape(str(protocol.get("cutoff")))}:
{_fmt(split.get("n_train"))} train events of {_fmt(split.get("train_visitors"))} visitors
over {_fmt(split.get("train_items"))} items; catalogue of {_fmt(split.get("n_items"))} items.</dd>
<dt>Evaluation</dt><dd>Every eval event after the cutoff of a visitor seen in train is one query
({_fmt(protocol.get("n_eval_queries"))} queries); the visitor's state is frozen at the cutoff;
Recall@K over the whole catalogue, ties by ascending item id; exclude_seen
{_fmt(protocol.get("exclude_seen"))}. Intervals: paired bootstrap over visitors.</dd>
<dt>Training settings</dt><dd><code>{shown or "not recorded"}</code></dd>
<dt>Choices</dt><dd>The settings above come from the Tuner (see Tuning) and the epoch count
and the repeat boost from the Trainer, all chosen on a validation window inside train (never on
the eval split): {validation_text}.</dd>
<dt>Limits</dt><dd>One offline split of one shop: a guide to an A/B test, not a substitute.
Visitors unseen in train are not evaluated; items without train events are reached through their
content features only (see the <code>target_cold</code> slice). Offline Recall does not measure
novelty or business value.</dd>
</dl>"""


def build_html(run: Any, export_summary: dict, output_dir: str = "") -> str:
    """The page, from what the run recorded (``reporting.results.RunResults``).

    Artifact paths in the lineage are shown relative to ``output_dir`` when inside it.
    """
    payload, curves, lineage = run.metrics, run.curves, run.lineage
    names = M.metric_names()
    models = payload.get("models", {})
    ordered = sorted(models, key=lambda n: -models[n].get("recall@50", 0.0))
    scale = max([models[n].get("recall@50_ci", [0, 0])[1] for n in ordered] + [0.01]) * 1.05
    table = _table(
        [
            [f"<b>{html.escape(n)}</b>" if n == "two_tower" else html.escape(n)]
            + [_fmt(models[n].get(m, float("nan"))) for m in names]
            + (
                [
                    f"{models[n]['recall@50_ci'][0]:.4f}–{models[n]['recall@50_ci'][1]:.4f}",
                    _interval_bar(*models[n]["recall@50_ci"], models[n]["recall@50"], scale),
                ]
                if models[n].get("recall@50_ci")
                else ["", ""]
            )
            for n in ordered
        ],
        ["model", *names, "recall@50 95% CI", "interval"],
    )
    reasons = (
        "".join(
            f"<li class='{'ok' if r.startswith('PASS') else 'bad'}'>{html.escape(r)}</li>"
            for r in run.gate_reasons
        )
        or "<li>(no gate in this run)</li>"
    )
    split = export_summary.get("split", {})
    events = export_summary.get("events", {})
    props = export_summary.get("properties", {})
    data_rows = [
        ["events read", _fmt(events.get("rows_read", 0))],
        ["duplicates dropped", _fmt(events.get("dropped_duplicates", 0))],
        ["cutoff", html.escape(str(split.get("cutoff")))],
        [
            "train events / visitors / items",
            f"{_fmt(split.get('n_train', 0))} / {_fmt(split.get('train_visitors', 0))} / "
            f"{_fmt(split.get('train_items', 0))}",
        ],
        [
            "eval queries / visitors",
            f"{_fmt(split.get('n_eval_queries', 0))} / {_fmt(split.get('eval_visitors', 0))}",
        ],
        [
            "eval events of visitors unseen in train (dropped)",
            _fmt(split.get("dropped_eval_events_of_visitors_unseen_in_train", 0)),
        ],
        [
            "eval targets seen by the visitor in train",
            _fmt(split.get("eval_targets_seen_by_visitor_in_train", 0)),
        ],
        [
            "eval targets never seen in train (misses for all)",
            _fmt(split.get("eval_targets_not_in_train", 0)),
        ],
        [
            "catalogue items (cold: no train event)",
            f"{_fmt(split.get('n_items', 0))} "
            f"({_fmt(split.get('catalogue_items_without_train_events', 0))})",
        ],
        [
            "properties kept",
            html.escape(f"numeric {props.get('numeric')}, text {props.get('text')}"),
        ],
    ]
    timings = payload.get("timings_s", {})
    longest = max(list(timings.values()) + [1e-9])
    order = [n for n in run.order if n in timings] + sorted(set(timings) - set(run.order))
    cached = set(payload.get("cached", []))
    timing_rows = [
        [
            html.escape(node) + (" <span class='muted'>(cached)</span>" if node in cached else ""),
            f"{timings[node]:,.1f}",
            f"<span class='bar' style='width:{max(1, int(300 * timings[node] / longest))}px'></span>",
        ]
        for node in order
    ]
    lineage_rows = [
        [
            html.escape(node),
            html.escape(key),
            "<br>".join(f"<code>{html.escape(_relative(u, output_dir))}</code>" for u in uris),
        ]
        for node in order + sorted(set(lineage) - set(order))
        if node in lineage
        for key, uris in sorted(lineage[node].items())
    ]
    counts = payload.get("counts") or {}
    count_rows = [
        [
            html.escape(c["component"]),
            html.escape(c["split"]),
            html.escape(c["what"]),
            _fmt(c["expected"]),
            _fmt(c["found"]),
            "<span class='ok'>equal</span>"
            if c["expected"] == c["found"]
            else "<span class='bad'>MISMATCH</span>",
        ]
        for c in counts.get("checks", [])
    ]
    counts_html = (
        "<section><h2>Row counts</h2><p>Every component that reads examples checks what it read "
        "against the export's rows (a mismatch stops the run).</p>"
        + _table(count_rows, ["component", "split", "what", "expected", "found", ""])
        + "</section>"
        if count_rows
        else ""
    )
    ann = ""
    if payload.get("ann"):
        ann_rows = [
            [html.escape(k), _fmt(v, 4 if isinstance(v, float) and v < 10 else 1)]
            for k, v in sorted(payload["ann"].items())
        ]
        ann = "<section><h2>Approximate nearest neighbours (ScaNN)</h2>" + _table(
            ann_rows, ["figure", "value"]
        )
        if run.ann_curve:
            ann += f"<img alt='ANN recall vs speed' src='{ann_plot(run.ann_curve)}'>"
        ann += "</section>"
    best = payload.get("best_baseline")
    comparisons = comparison_table(payload.get("comparisons") or {})
    slices = slice_table(models)
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>retailrec run report</title>
<style>{_CSS}</style></head><body><main>
<h1>retailrec run report</h1>
{headline(payload)}
<section><h2>Gate decision</h2><ul id="reasons">{reasons}</ul></section>
<section><h2>Models (best baseline: {html.escape(str(best))})</h2>{table}
<img alt="Recall@K for every model" src="{recall_plot(models, curves)}"></section>
{f"<section>{comparisons}</section>" if comparisons else ""}
{f"<section>{slices}</section>" if slices else ""}
{ann}
{tuning_section(run.tuning)}
<section><h2>Model card</h2>{model_card(payload, export_summary, run.training)}</section>
<section><h2>Data</h2>{_table(data_rows, ["", "value"])}</section>
{counts_html}
<section><h2>Timings (s, in the order the steps started)</h2>
{_table(timing_rows, ["component", "seconds", ""])}</section>
<section><h2>Lineage</h2><details><summary>The artifacts of every step
({sum(len(v) for v in lineage.values())} outputs)</summary>
{_table(lineage_rows, ["component", "output", "artifact URI"])}</details></section>
</main></body></html>"""


def _relative(uri: str, base: str) -> str:
    """A local artifact path relative to the run's output folder (URIs of other stores as is)."""
    if "://" in uri or not base:
        return uri
    try:
        rel = os.path.relpath(uri, base)
    except ValueError:
        return uri
    return uri if rel.startswith("..") else rel


def write(path: str, page: str) -> str:
    """Writes the page through a temporary file and a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(page)
    os.replace(tmp, path)
    return path
