"""Local Beam arguments: the DirectRunner mode by export size, and no TFX sdist per Beam component."""

from __future__ import annotations

import pytest
from tfx.utils import dependency_utils

from pipeline import configs, local_runner


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing", "multi_threading"])
def test_beam_args_need_no_tfx_sdist(mode):
    # With any Beam argument and no dependency flag, TFX copies its package into a new /tmp folder
    # and builds an sdist in every Beam component, and never deletes it (48 MB a component).
    args = local_runner.beam_args(mode, workers=2)
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert f"--direct_running_mode={mode}" in args


def test_in_memory_runs_one_worker():
    assert "--direct_num_workers=1" in local_runner.beam_args("in_memory", workers=4)


def test_auto_mode_picks_by_export_size():
    threshold = configs.LOCAL_BEAM_MULTI_PROCESSING_MIN_TRAIN_ROWS
    assert local_runner.beam_mode("auto", 173_119) == "in_memory"
    assert local_runner.beam_mode("auto", threshold - 1) == "in_memory"
    assert local_runner.beam_mode("auto", threshold) == "multi_processing"
    assert local_runner.beam_mode("multi_threading", 10) == "multi_threading"
    with pytest.raises(ValueError, match="unknown Beam mode 'fast'"):
        local_runner.beam_mode("fast", 10)


def test_the_pipeline_gets_the_beam_args(tmp_path):
    assert local_runner.build(tmp_path).beam_pipeline_args == local_runner.beam_args("in_memory")
    args = local_runner.beam_args("multi_processing", 2)
    assert local_runner.build(tmp_path, beam_pipeline_args=args).beam_pipeline_args == args
    assert local_runner.SETUP_FILE.is_file()
