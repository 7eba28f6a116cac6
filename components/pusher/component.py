"""Pusher: TFX's Pusher with a push that writes one copy, atomically, and only when needed.

TFX's stock Pusher (filesystem destination) copies the blessed model twice on every push: to
``<base>/<unix time>/`` for TF Serving and into its own ``pushed_model`` artifact "for archiving",
although the Trainer's Model artifact already keeps those bytes. A re-run whose model did not
change (the latest blessed model is the candidate again) pushes the same bytes as a new version.
This executor keeps the stock contract (the blessing check, TF Serving's ``<base>/<version>/``
layout, the ``pushed``/``pushed_destination``/``pushed_version`` properties the results and ML
Metadata lineage read) and changes three things:

* the same SavedModel as the version TF Serving serves now (the highest) is not pushed again: the
  push records that version;
* a local push is copied to a hidden temporary folder and renamed into place, so TF Serving (which
  ignores non-numeric folder names) never sees a half-copied version and a killed push leaves no
  version behind; remote filesystems keep TFX's order (``saved_model.pb`` copied last);
* the ``pushed_model`` artifact holds ``push.json`` (source, destination, version, digest) instead
  of a third copy of the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

PUSH_RECORD = "push.json"
_TEMP_PREFIX = ".incoming-"  # TF Serving only loads numeric version folders


def model_digest(model_dir: str) -> str:
    """SHA-256 over every file's relative path and bytes: equal digests, equal SavedModels."""
    files = sorted(
        (os.path.relpath(os.path.join(root, name), model_dir), os.path.join(root, name))
        for root, _, names in fileio.walk(model_dir)
        for name in names
    )
    digest = hashlib.sha256()
    for relative, path in files:
        digest.update(relative.encode() + b"\0")
        with fileio.open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def serving_versions(base_dir: str) -> list[int]:
    """The version folders TF Serving would load under ``base_dir``, ascending."""
    if not fileio.exists(base_dir):
        return []
    names = (n.rstrip("/") for n in fileio.listdir(base_dir))
    return sorted(int(n) for n in names if n.isdigit())


def _copy_saved_model(source: str, destination: str) -> None:
    # TF Serving and TensorFlow take saved_model.pb as "the model is there": it goes last.
    io_utils.copy_dir(source, destination, deny_regex_patterns=[r"saved_model\.pb"])
    if fileio.exists(os.path.join(source, "saved_model.pb")):
        io_utils.copy_file(
            os.path.join(source, "saved_model.pb"), os.path.join(destination, "saved_model.pb")
        )


def push(model_dir: str, base_dir: str) -> tuple[str, str, bool, str]:
    """Pushes ``model_dir`` as a new version under ``base_dir`` unless it is the served one.

    Returns:
      (version, serving path, whether a new version was written, the model's digest).
    """
    digest = model_digest(model_dir)
    versions = serving_versions(base_dir)
    if versions:
        served = os.path.join(base_dir, str(versions[-1]))
        if model_digest(served) == digest:
            return str(versions[-1]), served, False, digest
    # Unix time like TFX's versions, and always above the served one.
    version = str(max(int(time.time()), versions[-1] + 1 if versions else 0))
    serving_path = os.path.join(base_dir, version)
    if "://" in base_dir:
        _copy_saved_model(model_dir, serving_path)
    else:
        for name in fileio.listdir(base_dir) if fileio.exists(base_dir) else []:
            if name.startswith(_TEMP_PREFIX):  # left by a push that was killed
                fileio.rmtree(os.path.join(base_dir, name))
        temp = os.path.join(base_dir, f"{_TEMP_PREFIX}{version}")
        _copy_saved_model(model_dir, temp)
        os.replace(temp, serving_path)
    return version, serving_path, True, digest


class Executor(tfx_pusher_executor.Executor):
    """Pushes a blessed model once (see the module docstring)."""

    def Do(  # noqa: N802 (the TFX executor interface)
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY]
        )
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination
        )
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("retailrec's Pusher pushes to a filesystem destination")
        model_dir = self.GetModelPath(input_dict)
        version, serving_path, written, digest = push(
            model_dir, destination.filesystem.base_directory
        )
        if written:
            logging.info("Model %s pushed to %s", model_dir, serving_path)
        else:
            logging.info("Model %s is already served as %s: not pushed again", model_dir, version)
        fileio.makedirs(model_push.uri)
        record = {
            "source": model_dir,
            "destination": serving_path,
            "version": version,
            "new_version": written,
            "digest": digest,
        }
        io_utils.write_string_file(
            os.path.join(model_push.uri, PUSH_RECORD), json.dumps(record, indent=2)
        )
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class Pusher(tfx.components.Pusher):
    """TFX's Pusher (same spec and properties) with the executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
