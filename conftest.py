"""Test-wide setup: Keras 2 for TFRS/TFMA/TFX, set before any test imports TensorFlow."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# As the CLI sets it (pipeline/cli.py): OpenBLAS threads sleep after a product, not spin.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
