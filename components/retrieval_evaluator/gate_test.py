"""The push decision on hand-made cases: every bar, fail closed."""

from components.retrieval_evaluator import gate


def test_blessed_when_every_check_passes():
    decision = gate.decide(
        {"recall@50": 0.30},
        min_recall=0.05,
        previous={"recall@50": 0.28},
        best_baseline=("item_item_cf", 0.25),
    )
    assert decision.blessed
    assert [r.split()[0] for r in decision.reasons] == ["PASS", "PASS", "PASS"]
    assert "1.20x" in decision.reasons[2]  # 0.30 / 0.25


def test_below_the_best_baseline_is_not_blessed():
    decision = gate.decide(
        {"recall@50": 0.20}, min_recall=0.05, best_baseline=("item_item_cf", 0.259)
    )
    assert not decision.blessed
    assert decision.reasons[-1].startswith("FAIL recall@50 0.2000 >= best baseline item_item_cf")


def test_regression_against_the_latest_blessed_model_is_not_blessed():
    assert not gate.decide(
        {"recall@50": 0.27}, min_recall=0.0, previous={"recall@50": 0.28}
    ).blessed
    # Within the tolerance it passes: 0.27 >= 0.28 - 0.02.
    assert gate.decide(
        {"recall@50": 0.27}, min_recall=0.0, previous={"recall@50": 0.28}, regression_tolerance=0.02
    ).blessed


def test_threshold_missing_metric_and_extra_checks_fail_closed():
    assert not gate.decide({"recall@50": 0.01}, min_recall=0.05).blessed
    assert not gate.decide({}, min_recall=0.0).blessed
    assert not gate.decide({"recall@50": float("nan")}, min_recall=0.0).blessed
    decision = gate.decide(
        {"recall@50": 0.3}, min_recall=0.0, extra_checks=[(False, "ANN recall 0.90 >= 0.95")]
    )
    assert not decision.blessed and decision.reasons[-1] == "FAIL ANN recall 0.90 >= 0.95"


def _paired(seed_shift: int, crippled: bool = False):
    """Hit ranks of an old model and a new one on 3,000 queries of 600 visitors."""
    import numpy as np

    from modules import metrics

    rng = np.random.default_rng(0)
    visitors = np.repeat(np.arange(600), 5)
    old = np.where(rng.random(3000) < 0.38, rng.integers(1, 51, 3000), 0)
    # A retrain on the same data: the same skill, different queries hit (noise).
    new = np.where(np.random.default_rng(seed_shift).random(3000) < 0.37, 7, 0)
    if crippled:
        new = np.where(np.random.default_rng(seed_shift).random(3000) < 0.25, 7, 0)
    samples = metrics.bootstrap_recalls({"new": new, "old": old}, visitors)
    r_new, r_old = float((new > 0).mean()), float((old > 0).mean())
    comparison = metrics.compare(r_new, samples["new"], r_old, samples["old"])
    return {"recall@50": r_new}, {"recall@50": r_old}, comparison


def test_a_retrain_worse_only_by_noise_is_blessed():
    candidate, previous, comparison = _paired(1)
    assert candidate["recall@50"] < previous["recall@50"]  # a plain comparison would refuse
    decision = gate.decide(
        candidate, min_recall=0.0, previous=previous, previous_comparison=comparison
    )
    assert decision.blessed, decision.reasons
    assert "95% CI" in decision.reasons[1] and "difference" in decision.reasons[1]


def test_a_crippled_model_is_refused_against_the_blessed_one():
    candidate, previous, comparison = _paired(1, crippled=True)
    assert comparison["diff_ci"][1] < 0
    decision = gate.decide(
        candidate, min_recall=0.0, previous=previous, previous_comparison=comparison
    )
    assert not decision.blessed and decision.reasons[1].startswith("FAIL")


def test_baseline_rule_is_strict_and_prints_the_ratio_interval():
    decision = gate.decide(
        {"recall@50": 0.30},
        min_recall=0.0,
        best_baseline=("item_item_cf", 0.25),
        baseline_comparison={"ratio_ci": [1.1, 1.3]},
    )
    assert decision.reasons[-1].endswith("(1.20x, 95% CI [1.10x, 1.30x])")
    assert not gate.decide(
        {"recall@50": 0.249},
        min_recall=0.0,
        best_baseline=("item_item_cf", 0.25),
        baseline_comparison={"ratio_ci": [0.9, 1.1]},
    ).blessed
