"""Artifact types shared by several components (each component's own types stay beside it)."""

from tfx.types import artifact


class RowCounts(artifact.Artifact):
    """The ValidationGate's verified rows per split (``modules.row_counts``: ``row_counts.json``).

    ``{"splits": {"train": n, "eval": n, "items": n, "eval_visitors": n}, "count_checks": [...]}``;
    the Baselines, ScannIndex and RetrievalEvaluator check what they read against it.
    """

    TYPE_NAME = "retailrec.RowCounts"
