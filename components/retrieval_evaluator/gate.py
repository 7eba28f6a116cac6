"""The push decision, as plain logic: thresholds in, a verdict with its reasons out."""

from __future__ import annotations

from dataclasses import dataclass, field

RECALL = "recall@50"


@dataclass
class Decision:
    """Whether the candidate is blessed, and every check with its outcome."""

    blessed: bool
    reasons: list[str] = field(default_factory=list)


def decide(
    candidate: dict[str, float],
    *,
    min_recall: float,
    previous: dict[str, float] | None = None,
    regression_tolerance: float = 0.0,
    best_baseline: tuple[str, float] | None = None,
    extra_checks: list[tuple[bool, str]] | None = None,
) -> Decision:
    """Blesses the candidate only when every check passes (fail closed).

    Args:
      candidate: the candidate model's metrics (needs ``recall@50``).
      min_recall: absolute floor of Recall@50.
      previous: the latest blessed model's metrics on the same eval data (None: first model).
      regression_tolerance: how much Recall@50 may drop against ``previous``.
      best_baseline: (name, Recall@50) of the best baseline on the same split, when measured.
      extra_checks: further (passed, reason) pairs, e.g. the ANN index fidelity.

    Returns:
      The decision; ``reasons`` has one line per check, starting with PASS or FAIL.
    """
    recall = candidate.get(RECALL)
    checks: list[tuple[bool, str]] = []
    if recall is None or recall != recall:  # missing or NaN: never bless
        return Decision(False, [f"FAIL {RECALL} of the candidate is missing or NaN"])
    checks.append((recall >= min_recall, f"{RECALL} {recall:.4f} >= threshold {min_recall:.4f}"))
    if previous is not None and previous.get(RECALL) is not None:
        bar = previous[RECALL] - regression_tolerance
        checks.append(
            (
                recall >= bar,
                f"{RECALL} {recall:.4f} >= latest blessed model's {previous[RECALL]:.4f}"
                + (f" - {regression_tolerance}" if regression_tolerance else ""),
            )
        )
    if best_baseline is not None:
        name, value = best_baseline
        ratio = f" ({recall / value:.2f}x)" if value > 0 else ""
        checks.append(
            (recall >= value, f"{RECALL} {recall:.4f} >= best baseline {name} {value:.4f}{ratio}")
        )
    checks.extend(extra_checks or [])
    reasons = [("PASS " if ok else "FAIL ") + text for ok, text in checks]
    return Decision(all(ok for ok, _ in checks), reasons)
