"""Executor of the RetrievalEvaluator: artifact plumbing around ``evaluate`` and ``gate``."""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from components.artifacts import verified_counts
from components.baselines import executor as baselines_executor
from components.retrieval_evaluator import evaluate, gate
from components.scann_index import executor as scann_executor
from modules import memory, row_counts

EVALUATION_FILE = "metrics.json"


def _evaluate(model: types.Artifact, examples: types.Artifact, props: dict[str, Any]):
    return evaluate.evaluate_model(
        path_utils.serving_model_path(model.uri),
        examples.uri,
        exclude_seen=bool(props["exclude_seen"]),
        train_split=props["train_split"],
        eval_split=props["eval_split"],
        exact_vectors=True,  # the Trainer's models are brute force: same scores, 3x faster
    )


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

        metrics, curve, read = _evaluate(model, examples, exec_properties)
        logging.info("Candidate model %s: %s", model.uri, metrics)
        checks = read_checks(input_dict, exec_properties, model, read)

        previous = previous_model = None
        if input_dict.get("baseline_model"):
            previous_model = artifact_utils.get_single_instance(input_dict["baseline_model"])
            if previous_model.id != model.id:
                previous, _, _ = _evaluate(previous_model, examples, exec_properties)
        best = None
        if input_dict.get("baseline_metrics"):
            baseline = artifact_utils.get_single_instance(input_dict["baseline_metrics"])
            result = baselines_executor.read_metrics(baseline.uri)
            best = (result["best_baseline"], float(result["best_recall@50"]))

        extra = []
        if input_dict.get("index_metrics"):
            index = artifact_utils.get_single_instance(input_dict["index_metrics"])
            ann = scann_executor.read_metrics(index.uri)
            extra.append(
                (
                    bool(ann["meets_target"]),
                    f"ScaNN Recall@{ann['k']} vs exact {ann['recall_vs_exact@50']:.4f} >= target "
                    f"{ann['target_recall']:.2f} ({ann['config_name']})",
                )
            )
        decision = gate.decide(
            metrics,
            min_recall=float(exec_properties["min_recall"]),
            previous=previous,
            regression_tolerance=float(exec_properties["regression_tolerance"]),
            best_baseline=best,
            extra_checks=extra,
        )
        for line in decision.reasons:
            logging.info("Gate: %s", line)
        write_outputs(
            evaluation, blessing, model, previous_model, metrics, curve, previous, decision, checks
        )
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
            (exec_properties["eval_split"], evaluate.EVAL_QUERIES, read[evaluate.EVAL_QUERIES]),
            (exec_properties["train_split"], evaluate.TRAIN_EVENTS, read[evaluate.TRAIN_EVENTS]),
        ],
    )
    # What the Trainer wrote beside its model (modules/trainer.py): its reads and Transform's.
    for done in row_counts.read(model.uri)[row_counts.CHECKS_KEY]:
        checks += row_counts.check_reads(
            done["component"], expected, [(done["split"], done["what"], done["found"])]
        )
    return checks


def write_outputs(
    evaluation, blessing, model, previous_model, metrics, curve, previous, decision, checks=()
):
    """Writes ``metrics.json`` and a standard ModelBlessing (what the Pusher and resolver read)."""
    payload = {
        "metrics": metrics,
        "recall_curve": [float(x) for x in curve],
        "previous_blessed_model": previous,
        "blessed": decision.blessed,
        "reasons": decision.reasons,
        row_counts.CHECKS_KEY: list(checks),
    }
    os.makedirs(evaluation.uri, exist_ok=True)
    with open(os.path.join(evaluation.uri, EVALUATION_FILE), "w") as fh:
        json.dump(payload, fh, indent=2)

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


def read_evaluation(uri: str) -> dict:
    """Reads the ``metrics.json`` of a ModelEvaluation written by this component."""
    with open(os.path.join(uri, EVALUATION_FILE)) as fh:
        return json.load(fh)
