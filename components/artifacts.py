"""Artifact types shared by several components (each component's own types stay beside it)."""

from tfx.types import artifact, artifact_utils

from modules import row_counts


class RowCounts(artifact.Artifact):
    """The ValidationGate's verified rows per split (``modules.row_counts``: ``row_counts.json``).

    ``{"splits": {"train": n, "eval": n, "items": n, "eval_visitors": n}, "count_checks": [...]}``;
    the Baselines, ScannIndex and RetrievalEvaluator check what they read against it.
    """

    TYPE_NAME = "retailrec.RowCounts"


def verified_counts(input_dict: dict, key: str = "row_counts") -> dict[str, int] | None:
    """The RowCounts input of an executor as ``{split: rows, ...}``; None when not wired."""
    if not input_dict.get(key):
        return None
    return row_counts.splits(artifact_utils.get_single_instance(input_dict[key]).uri)
