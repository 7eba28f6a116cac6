"""Schema curation and anomaly formatting on hand-made protos; the curated schema's invariants."""

from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from components.validation import validation
from modules import features as F
from pipeline import configs


def _curated() -> schema_pb2.Schema:
    return text_format.Parse(configs.CURATED_SCHEMA_PATH.read_text(), schema_pb2.Schema())


def test_curated_schema_lists_every_fixed_export_column():
    names = [f.name for f in _curated().feature]
    assert sorted(names) == sorted(F.interaction_columns([]))  # no num_ column: data-dependent
    event = next(f for f in _curated().feature if f.name == F.EVENT)
    domain = next(d for d in _curated().string_domain if d.name == event.domain)
    assert list(domain.value) == list(F.EVENT_TYPES)


def test_curate_adds_numeric_properties_and_drops_unknown_columns():
    inferred = schema_pb2.Schema()
    for name, kind in [("num_790", schema_pb2.FLOAT), ("surprise", schema_pb2.BYTES)]:
        feature = inferred.feature.add()
        feature.name, feature.type = name, kind
        feature.presence.min_fraction = 1.0
    curated = _curated()
    result = validation.curate(curated, inferred)
    names = [f.name for f in result.feature]
    assert "num_790" in names and "surprise" not in names
    added = next(f for f in result.feature if f.name == "num_790")
    assert added.type == schema_pb2.FLOAT and added.presence.min_count == 0
    assert not added.presence.min_fraction  # optional: only items that have the property
    assert len(curated.feature) == len(result.feature) - 1  # the input is not modified


def test_anomaly_lines_name_split_feature_and_reason():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["timestamp"]
    reason = info.reason.add()
    reason.description = "Unexpectedly small value: 1430000000."
    assert validation.anomaly_lines(anomalies, "train") == [
        "train: timestamp: Unexpectedly small value: 1430000000."
    ]
    assert validation.anomaly_lines(anomalies_pb2.Anomalies(), "eval") == []


def _event_stats(counts: dict[str, int]) -> statistics_pb2.DatasetFeatureStatisticsList:
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add()
    dataset.num_examples = sum(counts.values())
    feature = dataset.features.add()
    feature.path.step.append(F.EVENT)
    feature.type = statistics_pb2.FeatureNameStatistics.STRING
    feature.string_stats.common_stats.num_non_missing = dataset.num_examples
    feature.string_stats.common_stats.min_num_values = 1
    feature.string_stats.common_stats.max_num_values = 1
    feature.string_stats.unique = len(counts)
    for value, count in counts.items():
        bucket = feature.string_stats.rank_histogram.buckets.add()
        bucket.label, bucket.sample_count = value, count
    return stats


def test_drift_of_the_event_mix_is_caught():
    schema = schema_pb2.Schema()
    schema.CopyFrom(_curated())
    keep = [f for f in schema.feature if f.name == F.EVENT]
    del schema.feature[:]
    schema.feature.extend(keep)
    train = _event_stats({"view": 96, "addtocart": 3, "transaction": 1})
    same = _event_stats({"view": 95, "addtocart": 4, "transaction": 1})
    only_buys = _event_stats({"view": 10, "addtocart": 10, "transaction": 80})
    assert validation.drift_lines(schema, train, same) == []
    (line,) = validation.drift_lines(schema, train, only_buys)
    assert line.startswith("eval vs train: event:")
