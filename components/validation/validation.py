"""Schema curation and the anomaly gate, on plain protos (no TFX): tested on hand-made cases."""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from modules import features as F


def curate(curated: schema_pb2.Schema, inferred: schema_pb2.Schema) -> schema_pb2.Schema:
    """The curated schema plus the data-dependent numeric property columns of the inferred one.

    Every column the curated schema lists keeps its curated constraints; a ``num_<property>``
    column found by SchemaGen is added as an optional FLOAT of any length (present only when the
    item had the property); any other inferred column is left out, so ExampleValidator reports it as
    a new column instead of the pipeline training on something unexpected.

    Args:
      curated: the hand-curated schema (``schema/schema.pbtxt``).
      inferred: SchemaGen's schema of this run's statistics.

    Returns:
      A new schema.
    """
    result = schema_pb2.Schema()
    result.CopyFrom(curated)
    known = {f.name for f in curated.feature}
    for feature in sorted(inferred.feature, key=lambda f: f.name):
        if feature.name in known or not feature.name.startswith(F.NUMERIC_PREFIX):
            continue
        added = result.feature.add()
        added.name = feature.name
        added.type = schema_pb2.FLOAT
        added.presence.min_count = 0
    return result


def anomaly_lines(anomalies: anomalies_pb2.Anomalies, split: str) -> list[str]:
    """One readable line per anomaly: ``split: feature: description``."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        reasons = "; ".join(r.description or r.short_description for r in info.reason)
        lines.append(f"{split}: {feature}: {reasons or info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        reasons = "; ".join(r.description or r.short_description for r in info.reason)
        lines.append(f"{split}: (dataset): {reasons or info.description}")
    return lines


def drift_lines(
    schema: schema_pb2.Schema,
    train: statistics_pb2.DatasetFeatureStatisticsList,
    eval_: statistics_pb2.DatasetFeatureStatisticsList,
) -> list[str]:
    """Anomalies of the schema's drift comparators between the train and the eval statistics."""
    import tensorflow_data_validation as tfdv

    anomalies = tfdv.validate_statistics(eval_, schema, previous_statistics=train)
    drifted = anomalies_pb2.Anomalies()
    for feature, info in anomalies.anomaly_info.items():
        if any(r.type == anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH for r in info.reason):
            drifted.anomaly_info[feature].CopyFrom(info)
    return anomaly_lines(drifted, "eval vs train")
