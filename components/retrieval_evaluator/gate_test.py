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
