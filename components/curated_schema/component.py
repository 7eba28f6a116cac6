"""The curated schema as a pipeline step, read where the pipeline's code is installed.

TFX's ImportSchemaGen takes an absolute path, which a compiled spec then carries: a path of the
machine that compiled it. ``ImportCuratedSchema`` takes a path relative to the project's root and
resolves it when it runs, beside the code that runs it: ``/retailrec/schema/schema.pbtxt`` in the
pipeline image (the Dockerfile copies the project there), this checkout's ``schema/`` locally. An
absolute local path or a ``gs://`` URI is read as it is (a schema curated elsewhere).
"""

import os
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx
from tfx.utils import io_utils

from modules.errors import RetailrecError

NODE_ID = "CuratedSchemaImporter"  # the id ML Metadata, the report and the tests know
# The curated schema, relative to the project root (the folder that holds components/).
SCHEMA_FILE = "schema/schema.pbtxt"
OUTPUT_FILE = "schema.pbtxt"  # the name SchemaGen and ImportSchemaGen write
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve(schema_file: str) -> str:
    """The path to read: a relative ``schema_file`` is taken under the running project's root."""
    if "://" in schema_file or os.path.isabs(schema_file):
        return schema_file
    return str(PROJECT_ROOT / schema_file)


@tfx.dsl.components.component
def ImportCuratedSchema(  # noqa: N802 (component names are PascalCase)
    schema: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Schema],
    schema_file: tfx.dsl.components.Parameter[str] = SCHEMA_FILE,
) -> None:
    """Writes the curated schema (``resolve(schema_file)``) into the ``schema`` artifact.

    Raises:
      RetailrecError: the file is missing or is not a Schema in text format.
    """
    path = resolve(schema_file)
    if not tfx.dsl.io.fileio.exists(path):
        raise RetailrecError(
            f"{path}: curated schema not found (schema_file {schema_file!r}; a relative path is "
            f"read under the project root {PROJECT_ROOT})"
        )
    try:
        proto = io_utils.parse_pbtxt_file(path, schema_pb2.Schema())
    except text_format.ParseError as err:
        raise RetailrecError(f"{path}: not a Schema in text format: {err}") from err
    io_utils.write_pbtxt_file(os.path.join(schema.uri, OUTPUT_FILE), proto)
