"""Executor of the Baselines component: artifact plumbing around the pure ``baselines`` module."""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components import artifacts, examples_io
from components.artifacts import verified_counts
from components.baselines import baselines
from modules import features as F
from modules import memory, row_counts


class Executor(base_executor.BaseExecutor):
    """Reads the train and eval splits, runs every baseline, writes ``metrics.json``."""

    def Do(  # noqa: N802 (the TFX executor interface)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        output = artifact_utils.get_single_instance(output_dict["baseline_metrics"])
        names = json.loads(exec_properties["baselines"])
        columns = {F.VISITOR_ID: "int64", F.ITEM_ID: "int64", F.TIMESTAMP: "int64"}
        train = examples_io.read_columns(examples.uri, exec_properties["train_split"], columns)
        queries = examples_io.read_columns(
            examples.uri, exec_properties["eval_split"], {**columns, F.EVENT: "string"}
        )
        result_checks = read_checks(input_dict, exec_properties, train, queries)
        logging.info(
            "Baselines %s on %d train events, %d eval queries",
            names,
            len(train[F.ITEM_ID]),
            len(queries[F.ITEM_ID]),
        )
        result = baselines.evaluate_all(
            train[F.VISITOR_ID],
            train[F.ITEM_ID],
            train[F.TIMESTAMP],
            queries[F.VISITOR_ID],
            queries[F.ITEM_ID],
            exclude_seen=bool(exec_properties["exclude_seen"]),
            names=names,
            query_events=queries[F.EVENT],
        )
        artifacts.write_per_query(
            output.uri, queries[F.VISITOR_ID], queries[F.ITEM_ID], result.pop("per_query")
        )
        artifacts.write_baselines(output, {**result, row_counts.CHECKS_KEY: result_checks})
        memory.release()


COMPONENT = "Baselines"


def read_checks(input_dict, exec_properties, train: dict, queries: dict) -> list[dict]:
    """The rows and eval visitors read, checked against the ValidationGate's counts (if wired)."""
    expected = verified_counts(input_dict)
    if expected is None:
        return []
    train_split, eval_split = exec_properties["train_split"], exec_properties["eval_split"]
    visitors = len(set(queries[F.VISITOR_ID].tolist()))
    return row_counts.check_reads(
        COMPONENT,
        expected,
        [
            (train_split, "train events", len(train[F.ITEM_ID])),
            (eval_split, "eval queries", len(queries[F.ITEM_ID])),
        ],
    ) + [
        row_counts.check(
            COMPONENT, eval_split, "eval visitors", expected["eval_visitors"], visitors
        )
    ]
