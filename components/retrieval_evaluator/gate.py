"""The push decision, as plain logic: thresholds and intervals in, a verdict with its reasons out.

The rules (README, "The gate"):

* Recall@50 at least ``min_recall`` (a floor that catches a broken model).
* Against the latest blessed model, scored on the same eval queries: refused only when the new
  model is worse beyond noise, i.e. the paired bootstrap interval of the difference (new - old)
  lies entirely below ``-regression_tolerance``. A retrain on unchanged data, which differs from
  the blessed model by noise alone, passes; a clearly worse model does not.
* Against the best baseline: the strict rule, the point estimate at least the baseline's; the
  interval of the ratio is printed beside it.
* Any extra check (e.g. the ScaNN index's fidelity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

RECALL = "recall@50"


@dataclass
class Decision:
    """Whether the candidate is blessed, and every check with its outcome."""

    blessed: bool
    reasons: list[str] = field(default_factory=list)


def _ci(values: list[float] | None, fmt: str = ".4f", suffix: str = "") -> str:
    if not values:
        return ""
    low, high = values
    return f", 95% CI [{low:{fmt}}{suffix}, {high:{fmt}}{suffix}]"


def decide(
    candidate: dict[str, float],
    *,
    min_recall: float,
    previous: dict[str, float] | None = None,
    previous_comparison: dict | None = None,
    regression_tolerance: float = 0.0,
    best_baseline: tuple[str, float] | None = None,
    baseline_comparison: dict | None = None,
    extra_checks: list[tuple[bool, str]] | None = None,
) -> Decision:
    """Blesses the candidate only when every check passes (fail closed).

    Args:
      candidate: the candidate model's metrics (needs ``recall@50``).
      min_recall: absolute floor of Recall@50.
      previous: the latest blessed model's metrics on the same eval data (None: first model).
      previous_comparison: ``modules.metrics.compare`` of the candidate against ``previous``
        (``diff``, ``diff_ci``); without it the point estimates are compared.
      regression_tolerance: how far below 0 the difference's interval may lie entirely and
        still pass (default 0: refuse only a model worse beyond noise).
      best_baseline: (name, Recall@50) of the best baseline on the same split, when measured.
      baseline_comparison: ``compare`` of the candidate against that baseline (for the ratio's
        interval in the reason; the rule is the point estimate).
      extra_checks: further (passed, reason) pairs, e.g. the ANN index fidelity.

    Returns:
      The decision; ``reasons`` has one line per check, starting with PASS or FAIL, each with the
      numbers it used.
    """
    recall = candidate.get(RECALL)
    checks: list[tuple[bool, str]] = []
    if recall is None or recall != recall:  # missing or NaN: never bless
        return Decision(False, [f"FAIL {RECALL} of the candidate is missing or NaN"])
    checks.append((recall >= min_recall, f"{RECALL} {recall:.4f} >= threshold {min_recall:.4f}"))
    if previous is not None and previous.get(RECALL) is not None:
        old = previous[RECALL]
        if previous_comparison and previous_comparison.get("diff_ci"):
            low, high = previous_comparison["diff_ci"]
            bar = -regression_tolerance
            checks.append(
                (
                    high >= bar,
                    f"{RECALL} {recall:.4f} vs latest blessed model's {old:.4f}: difference "
                    f"{recall - old:+.4f}{_ci([low, high], '+.4f')}; refused only when the whole "
                    f"interval is below {bar:+.4f}",
                )
            )
        else:
            bar = old - regression_tolerance
            checks.append(
                (
                    recall >= bar,
                    f"{RECALL} {recall:.4f} >= latest blessed model's {old:.4f}"
                    + (f" - {regression_tolerance}" if regression_tolerance else ""),
                )
            )
    if best_baseline is not None:
        name, value = best_baseline
        ratio = ""
        if value > 0:
            interval = (baseline_comparison or {}).get("ratio_ci")
            ratio = f" ({recall / value:.2f}x{_ci(interval, '.2f', 'x')})"
        checks.append(
            (recall >= value, f"{RECALL} {recall:.4f} >= best baseline {name} {value:.4f}{ratio}")
        )
    checks.extend(extra_checks or [])
    reasons = [("PASS " if ok else "FAIL ") + text for ok, text in checks]
    return Decision(all(ok for ok, _ in checks), reasons)
