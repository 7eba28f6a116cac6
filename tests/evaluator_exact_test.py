"""The RetrievalEvaluator's fast exact path lists what the model's evaluator signature lists."""

from pathlib import Path

import numpy as np

from components import examples_io, scoring


def test_exact_vectors_lists_are_the_evaluator_signatures(tiny_run):
    """The fast path scores what the SavedModel's evaluator signature scores."""
    [model] = Path(tiny_run.where["pipeline_root"], "Trainer", "model").iterdir()
    [examples] = Path(tiny_run.where["pipeline_root"], "CsvExampleGen", "examples").iterdir()
    files = examples_io.split_files(str(examples), "eval")
    signature = scoring.recommend(str(model / "Format-Serving"), files)
    exact = scoring.recommend_exact(str(model / "Format-Serving"), files)
    assert np.array_equal(signature[0], exact[0]) and np.array_equal(signature[1], exact[1])
    # Float sums in another order may swap two near-equal scores; nothing more.
    same = (signature[2] == exact[2]).mean()
    assert same > 0.999, same
