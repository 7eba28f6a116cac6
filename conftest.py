"""Test-wide setup: Keras 2 for TFRS/TFMA/TFX, set before any test imports TensorFlow."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
