"""Every experiment script runs with --quick and writes its outputs (as CI does)."""

import importlib

import pytest

SCRIPTS = {
    "noise_robustness": ["noise_robustness_quick.png", "noise_robustness_quick.csv",
                         "noise_robustness_quick.md"],
    "identifiability": ["identifiability_quick.png", "identifiability_quick.md"],
    "method_comparison": ["method_comparison_quick.png", "method_comparison_quick.md"],
    "tf_convergence": ["tf_convergence_quick.png", "tf_convergence_quick.md"],
    "real_filters": ["real_filters_quick.png", "real_filters_quick.md"],
    "convolution_explained": ["convolution_1d_quick.png", "convolution_5x5_quick.gif",
                              "convolution_portrait_quick.gif"],
    "one_pass_benchmark": ["one_pass_benchmark_quick.md", "one_pass_benchmark_quick.csv"],
    "dask_benchmark": ["dask_benchmark_quick.md", "dask_benchmark_quick.csv"],
    "constrained_fits": ["constrained_fits_quick.png", "constrained_fits_quick.md",
                         "constrained_fits_quick.csv"],
    "noise_models": ["noise_models_quick.png", "noise_models_quick.md",
                     "noise_models_quick.csv", "noise_models_outliers_quick.png"],
    "jpeg_outputs": ["jpeg_outputs_quick.png", "jpeg_outputs_quick.md",
                     "jpeg_outputs_quick.csv"],
}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_experiment_runs_quick_and_writes_its_outputs(name, tmp_path):
    if name in ("method_comparison", "tf_convergence"):
        pytest.importorskip("tensorflow")
    if name == "dask_benchmark":
        pytest.importorskip("distributed")
    script = importlib.import_module(f"experiments.{name}")
    extra = ["--data", str(tmp_path / "data")] if name == "dask_benchmark" else []
    assert script.main(["--quick", "--out", str(tmp_path)] + extra) == 0
    for output in SCRIPTS[name]:
        assert (tmp_path / output).stat().st_size > 0, output
