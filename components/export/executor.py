"""Executor of the pipeline's Export step: a raw RetailRocket folder -> the export ExampleGen reads.

The export itself is ``export.export`` (DuckDB on local files). This module only moves files
between the pipeline's storage and a local working folder, through TFX's filesystem layer
(``tfx.dsl.io.fileio``: local paths and ``gs://`` alike):

- a raw folder on ``gs://`` is staged into a temporary local folder (only the RetailRocket files);
- an export folder on ``gs://`` is written locally, then uploaded: the CSVs first, the summary
  last, after the old summary was removed, so that a folder with a summary is always complete;
- an identical export (same input bytes and parameters: ``export.export``'s fingerprint) is reused
  and not uploaded again, so its files, and the fingerprint ExampleGen computes over them, stay
  the same and the components downstream are served from the cache.

The pipeline owns its export folder: a different export there is replaced (``force``).
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components.export import export
from modules import features as F

RAW_KEY = "raw"
EXPORT_DIR_KEY = "export_dir"  # the exec property: where to write the export
OUTPUT_KEY = "export"  # the output: a String artifact holding the export folder's URI
# Exec properties passed on to export.export as they are.
EXPORT_PARAMS = ("cutoff", "sample_items", "sample_seed", "history_length", "min_coverage")
_EXPORT_SPLITS = (F.TRAIN_SPLIT, F.EVAL_SPLIT, F.ITEMS_SPLIT)


def is_local(path: str) -> bool:
    """True for a path of this machine's filesystem (no ``scheme://``)."""
    return "://" not in str(path)


def _raw_files(raw_dir: str) -> list[str]:
    """The RetailRocket files of a raw folder on any filesystem fileio knows.

    Raises:
      export.ExportError: a file is missing (the message names the remote path).
    """
    if not fileio.isdir(raw_dir):
        raise export.ExportError(f"{raw_dir}: raw data folder does not exist")
    files = []
    for name in (F.RAW_EVENTS_FILE, F.RAW_CATEGORY_TREE_FILE):
        path = posixpath.join(raw_dir, name)
        if not fileio.exists(path):
            raise export.ExportError(
                f"{path}: file missing (expected the RetailRocket layout in {raw_dir})"
            )
        files.append(path)
    properties = sorted(fileio.glob(posixpath.join(raw_dir, F.RAW_PROPERTIES_GLOB)))
    if not properties:
        raise export.ExportError(
            f"{posixpath.join(raw_dir, F.RAW_PROPERTIES_GLOB)}: no item property file found "
            "(expected item_properties_part1.csv, item_properties_part2.csv, ...)"
        )
    return files + properties


def stage_raw(raw_dir: str, local_dir: str) -> str:
    """Copies the RetailRocket files of ``raw_dir`` into ``local_dir`` and returns it."""
    os.makedirs(local_dir, exist_ok=True)
    for path in _raw_files(raw_dir):
        fileio.copy(path, os.path.join(local_dir, posixpath.basename(path)), overwrite=True)
    return local_dir


def upload_export(local_dir: str, export_dir: str) -> None:
    """Replaces the export in ``export_dir`` with ``local_dir``'s, the summary written last."""
    summary = posixpath.join(export_dir, F.EXPORT_SUMMARY_FILE)
    if fileio.exists(summary):
        fileio.remove(summary)  # from here on the folder is not a complete export
    for split in _EXPORT_SPLITS:
        remote = posixpath.join(export_dir, split)
        if fileio.exists(remote):
            fileio.rmtree(remote)
        fileio.makedirs(remote)
        for name in sorted(os.listdir(os.path.join(local_dir, split))):
            fileio.copy(os.path.join(local_dir, split, name), posixpath.join(remote, name))
    fileio.copy(os.path.join(local_dir, F.EXPORT_SUMMARY_FILE), summary, overwrite=True)


def export_to(raw_dir: str, export_dir: str, **params: Any) -> dict[str, Any]:
    """Exports ``raw_dir`` into ``export_dir`` (either may be local or ``gs://``).

    Args:
      raw_dir: the RetailRocket raw folder.
      export_dir: the export folder the pipeline owns (a different export there is replaced).
      **params: ``export.export`` keyword arguments (cutoff, sample_items, ...).

    Returns:
      The export summary, with ``"reused": True`` when ``export_dir`` already held this export.

    Raises:
      export.ExportError: bad input; the message names the file, column and value.
    """
    if is_local(raw_dir) and is_local(export_dir):
        return export.export(raw_dir, export_dir, force=True, **params)
    with tempfile.TemporaryDirectory(prefix="retailrec-export-") as work:
        local_raw = raw_dir if is_local(raw_dir) else stage_raw(raw_dir, f"{work}/raw")
        local_out = export_dir if is_local(export_dir) else f"{work}/export"
        previous = posixpath.join(export_dir, F.EXPORT_SUMMARY_FILE)
        if not is_local(export_dir) and fileio.exists(previous):
            # The summary alone lets export.export recognise an identical export (fingerprint).
            os.makedirs(local_out)
            fileio.copy(previous, os.path.join(local_out, F.EXPORT_SUMMARY_FILE))
        summary = export.export(local_raw, local_out, force=True, **params)
        if summary["reused"]:
            return summary
        if local_raw != raw_dir:  # the summary names the raw folder the user gave, not the copy
            summary["raw_dir"] = raw_dir
            path = os.path.join(local_out, F.EXPORT_SUMMARY_FILE)
            with open(path) as fh:
                written = json.load(fh)
            written["raw_dir"] = raw_dir
            with open(path, "w") as fh:
                fh.write(json.dumps(written, indent=2) + "\n")
        if local_out != export_dir:
            upload_export(local_out, export_dir)
        return summary


class Executor(base_executor.BaseExecutor):
    """Runs the export of the ``raw`` artifact's folder into the ``export_dir`` exec property."""

    def Do(  # noqa: N802 (TFX's name)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        """Exports, then publishes where the export lies and its split sizes.

        Args:
          input_dict: ``raw``: the raw folder (an Importer's RawData artifact).
          output_dict: ``export``: a String artifact, set to the export folder's URI.
          exec_properties: ``export_dir`` and the export parameters (``EXPORT_PARAMS``).
        """
        raw_dir = artifact_utils.get_single_uri(input_dict[RAW_KEY])
        export_dir = exec_properties[EXPORT_DIR_KEY]
        params = {
            k: exec_properties[k] for k in EXPORT_PARAMS if exec_properties.get(k) is not None
        }
        summary = export_to(raw_dir, export_dir, **params)
        output = artifact_utils.get_single_instance(output_dict[OUTPUT_KEY])
        output.value = export_dir
        split = summary["split"]
        output.set_int_custom_property("n_train", split["n_train"])
        output.set_int_custom_property("n_eval_queries", split["n_eval_queries"])
        output.set_int_custom_property("n_items", split["n_items"])
        output.set_string_custom_property("fingerprint", summary["fingerprint"])
        output.set_int_custom_property("reused", int(bool(summary["reused"])))
