"""Executor of the RetrievalEvaluator: artifact plumbing around ``components.scoring`` and ``gate``.

It scores the candidate (and the latest blessed model) on the eval split, pairs its per-query
hits with the baselines' (``per_query.npz`` of the Baselines artifact) for bootstrap intervals of
the differences and ratios (``modules.metrics``), and lets ``gate`` decide.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components import artifacts, scoring
from components.artifacts import verified_counts
from components.retrieval_evaluator import gate
from modules import memory, metrics, progress, row_counts

CANDIDATE = "two_tower"
PREVIOUS = "latest_blessed"


def _score(model: types.Artifact, examples: types.Artifact, props: dict[str, Any]):
    return scoring.score_model(
        path_utils.serving_model_path(model.uri),
        examples.uri,
        exclude_seen=bool(props["exclude_seen"]),
        train_split=props["train_split"],
        eval_split=props["eval_split"],
        exact_vectors=True,  # the Trainer's models are brute force: same scores, 3x faster
    )


def comparisons(
    scored: scoring.Scored, baseline: dict | None, baseline_ranks: dict | None, previous=None
) -> tuple[dict, dict | None]:
    """Paired intervals of the candidate against every baseline and the latest blessed model.

    Returns:
      (``{"two_tower_vs_<baseline>": compare(...)}``, the comparison with the previous model or
      None).
    """
    ranks = {CANDIDATE: scored.ranks, **(baseline_ranks or {})}
    if previous is not None:
        ranks[PREVIOUS] = previous.ranks
    samples = metrics.bootstrap_recalls(ranks, scored.queries.visitors)
    recall = scored.metrics["recall@50"]
    out = {}
    for name in baseline_ranks or {}:
        other = baseline["models"][name]["recall@50"]
        out[f"{CANDIDATE}_vs_{name}"] = metrics.compare(
            recall, samples[CANDIDATE], other, samples[name]
        )
    against_previous = None
    if previous is not None:
        against_previous = metrics.compare(
            recall, samples[CANDIDATE], previous.metrics["recall@50"], samples[PREVIOUS]
        )
    return out, against_previous


def _baseline_ranks(uri: str, scored: scoring.Scored) -> dict | None:
    """The baselines' per-query ranks, checked to be for the very queries scored here."""
    stored = artifacts.read_per_query(uri)
    if stored is None:
        return None
    visitors, targets, ranks = stored
    if not (
        np.array_equal(visitors, scored.queries.visitors)
        and np.array_equal(targets, scored.queries.targets)
    ):
        raise ValueError(
            f"{uri}: the baselines' per-query ranks are for other eval queries than the model's"
        )
    return ranks


class Executor(base_executor.BaseExecutor):
    """Evaluates the candidate and the latest blessed model; writes the evaluation and blessing."""

    def Do(  # noqa: N802 (the TFX executor interface)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])

        scored = _score(model, examples, exec_properties)
        logging.info("Candidate model %s: %s", model.uri, scored.metrics)
        progress.report(
            "two_tower Recall@50 %.4f on %d queries", scored.metrics["recall@50"], scored.ranks.size
        )
        checks = read_checks(input_dict, exec_properties, model, scored.read)

        previous = previous_model = None
        if input_dict.get("baseline_model"):
            previous_model = artifact_utils.get_single_instance(input_dict["baseline_model"])
            if previous_model.id != model.id:
                previous = _score(previous_model, examples, exec_properties)
        best = baseline = baseline_ranks = None
        if input_dict.get("baseline_metrics"):
            uri = artifact_utils.get_single_instance(input_dict["baseline_metrics"]).uri
            baseline = artifacts.read_baselines(uri)
            baseline_ranks = _baseline_ranks(uri, scored)
            best = (baseline["best_baseline"], float(baseline["best_recall@50"]))
        against, against_previous = comparisons(scored, baseline, baseline_ranks, previous)

        extra = []
        if input_dict.get("index_metrics"):
            index = artifact_utils.get_single_instance(input_dict["index_metrics"])
            ann = artifacts.read_ann(index.uri)
            extra.append(
                (
                    bool(ann["meets_target"]),
                    f"ScaNN Recall@{ann['k']} vs exact {ann[artifacts.FIDELITY_KEY]:.4f} >= "
                    f"target {ann['target_recall']:.2f} ({ann['config_name']})",
                )
            )
        decision = gate.decide(
            scored.metrics,
            min_recall=float(exec_properties["min_recall"]),
            previous=None if previous is None else previous.metrics,
            previous_comparison=against_previous,
            regression_tolerance=float(exec_properties["regression_tolerance"]),
            best_baseline=best,
            baseline_comparison=against.get(f"{CANDIDATE}_vs_{best[0]}") if best else None,
            extra_checks=extra,
        )
        for line in decision.reasons:
            logging.info("Gate: %s", line)
        payload = {
            "metrics": scored.metrics,
            "recall_curve": [float(x) for x in scored.curve],
            "previous_blessed_model": None if previous is None else previous.metrics,
            "previous_comparison": against_previous,
            "comparisons": against,
            "blessed": decision.blessed,
            "reasons": decision.reasons,
            row_counts.CHECKS_KEY: list(checks),
        }
        artifacts.write_evaluation(evaluation.uri, payload)
        write_blessing(blessing, model, previous_model, decision)
        memory.release()


COMPONENT = "RetrievalEvaluator"


def read_checks(input_dict, exec_properties, model: types.Artifact, read: dict) -> list[dict]:
    """Rows scored here and read by the Trainer and Transform, against the gate's counts."""
    expected = verified_counts(input_dict)
    if expected is None:
        return []
    checks = row_counts.check_reads(
        COMPONENT,
        expected,
        [
            (exec_properties["eval_split"], scoring.EVAL_QUERIES, read[scoring.EVAL_QUERIES]),
            (exec_properties["train_split"], scoring.TRAIN_EVENTS, read[scoring.TRAIN_EVENTS]),
        ],
    )
    # What the Trainer wrote beside its model (modules/trainer.py): its reads and Transform's.
    for done in row_counts.read(model.uri)[row_counts.CHECKS_KEY]:
        checks += row_counts.check_reads(
            done["component"], expected, [(done["split"], done["what"], done["found"])]
        )
    return checks


def write_blessing(blessing, model, previous_model, decision: gate.Decision) -> None:
    """Writes a standard ModelBlessing (what the Pusher and the resolver read)."""
    name = constants.BLESSED_FILE_NAME if decision.blessed else constants.NOT_BLESSED_FILE_NAME
    io_utils.write_string_file(os.path.join(blessing.uri, name), "\n".join(decision.reasons))
    blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        constants.BLESSED_VALUE if decision.blessed else constants.NOT_BLESSED_VALUE,
    )
    blessing.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri
    )
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if previous_model is not None:
        blessing.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, previous_model.uri
        )
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, previous_model.id
        )
    blessing.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, "; ".join(decision.reasons)
    )
