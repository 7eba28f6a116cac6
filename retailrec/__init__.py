"""The project's artifact types under the names a Kubeflow v2 / Vertex AI task imports them by.

TFX compiles a custom artifact type into the spec by its ``TYPE_NAME``, which must read
``<namespace>.<Class>`` (``retailrec.RowCounts``), and a task's entry point
(``kubeflow_v2_run_executor``) turns the name back into the class with ``import_class_by_path``:
module ``retailrec``, attribute ``RowCounts``. Without this module every task that reads or writes
one of these artifacts fails on Vertex before its executor starts (``pipeline/vertex_check.py``
found it). Nothing else imports it; the classes live in their layers.
"""

from components.artifacts import AnnMetrics, BaselineMetrics, RowCounts
from components.export.component import RawData

__all__ = ["AnnMetrics", "BaselineMetrics", "RawData", "RowCounts"]
