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


def test_signature_lists_come_back_in_file_order(tiny_run):
    """`recommend` runs the signature on queries ordered by profile length, in windows of 16
    batches, and returns the lists of the queries in file order: batch by batch in file order
    gives the same lists."""
    import tensorflow as tf

    [model] = Path(tiny_run.where["pipeline_root"], "Trainer", "model").iterdir()
    [examples] = Path(tiny_run.where["pipeline_root"], "CsvExampleGen", "examples").iterdir()
    files = examples_io.split_files(str(examples), "eval")
    signature = tf.saved_model.load(str(model / "Format-Serving")).signatures["serve_tf_examples"]
    batches = list(scoring._eval_batches(files, 8))
    in_file_order = np.concatenate(
        [signature(examples=r)["classes"].numpy() for r, _, _ in batches]
    )
    records = tf.concat([r for r, _, _ in batches], 0)
    lengths = [
        len(tf.train.Example.FromString(r).features.feature["profile"].bytes_list.value[0].split())
        for r in records.numpy()
    ]
    assert len(set(lengths)) > 3  # the order does change
    visitors, targets, lists = scoring.recommend(str(model / "Format-Serving"), files, batch_size=8)
    np.testing.assert_array_equal(lists, in_file_order)
    np.testing.assert_array_equal(visitors, np.concatenate([v for _, v, _ in batches]))
    np.testing.assert_array_equal(targets, np.concatenate([t for _, _, t in batches]))


def test_the_scorers_read_of_the_ids_is_handed_to_the_next_scorer(tiny_run):
    """The ScannIndex's read of the train and eval ids goes to the RetrievalEvaluator, read-only,
    once; another split (other files) is read from its own files."""
    from modules import columns

    [examples] = Path(tiny_run.where["pipeline_root"], "CsvExampleGen", "examples").iterdir()
    columns.hand_over((), None)  # nothing kept from an earlier test
    first = scoring.read_ids(str(examples), "train", "eval")
    second = scoring.read_ids(str(examples), "train", "eval")
    assert all(second[0][name] is column for name, column in first[0].items())
    assert all(second[1][name] is column for name, column in first[1].items())
    assert not second[0]["visitorid"].flags.writeable
    assert second[1]["visitorid"].size == len(
        examples_io.read_columns(str(examples), "eval", {"visitorid": "int64"})["visitorid"]
    )
    other = scoring.read_ids(str(examples), "eval", "eval")
    assert other[0]["visitorid"] is not first[0]["visitorid"]
    np.testing.assert_array_equal(other[0]["itemid"], first[1]["itemid"])
