"""Local Beam arguments: the DirectRunner mode of record, and no TFX sdist per Beam component."""

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


def test_the_pipeline_runs_the_configured_mode(tmp_path):
    dag = local_runner.build(tmp_path)
    assert dag.beam_pipeline_args == local_runner.beam_args()
    assert f"--direct_running_mode={configs.LOCAL_BEAM_MODE}" in dag.beam_pipeline_args
    assert local_runner.SETUP_FILE.is_file()
