"""Settings of the wiring: paths, default data and outputs, local Beam. No logic lives here.

Protocol, export, model, gate and index constants live in ``modules/constants.py`` (the lowest
layer, imported by modules, components and the pipeline alike).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CURATED_SCHEMA_PATH = REPO_ROOT / "schema" / "schema.pbtxt"

PIPELINE_NAME = "retailrec"

# ---------------------------------------------------------------- default data and outputs
DEFAULT_RAW_DIR = "data/generated/default"
DEFAULT_OUTPUT_DIR = "output/default"
DEFAULT_GENERATOR_PRESET = "default"

# ---------------------------------------------------------------- pipeline
# Beam's DirectRunner on a laptop (pipeline/local_runner.py::beam_args); Dataflow arguments come
# from the Vertex runner's flags. benchmarks/bench_beam.py chose the modes (docs/benchmarks.md):
# in_memory is faster on small exports (no worker start-up), multi_processing on large ones.
LOCAL_BEAM_MODES = ("auto", "in_memory", "multi_processing", "multi_threading")
LOCAL_BEAM_MODE = "auto"  # auto: by the export's train rows (below)
LOCAL_BEAM_MULTI_PROCESSING_MIN_TRAIN_ROWS = 300_000
LOCAL_BEAM_WORKERS = 2  # worker processes/threads of multi_processing/multi_threading
