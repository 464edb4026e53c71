"""Hostile inputs to the options of issue 14, found by a sweep: each once a bare traceback or
a wrong result, now the working call or an error that names the argument."""

import json
import warnings

import numpy as np
import pytest

import kernelfit
from kernelfit import kernels


@pytest.fixture
def pair(rng):
    x = rng.standard_normal((24, 24))
    y = kernelfit.convolve(x, kernels.gaussian(3, 1.0), boundary="edge")
    return x, y + 0.01 * rng.standard_normal(y.shape)


def test_noise_auto_with_a_robust_loss_on_constant_noise(pair):
    x, y = pair
    fit = kernelfit.fit_kernel(x, y, 3, noise="auto", loss="huber", checks=False)
    assert not fit.noise["level_dependent"] and fit.robust["loss"] == "huber"


@pytest.mark.parametrize("options", [dict(loss="huber"), dict(errors="sandwich"),
                                     dict(noise="poisson", gain=100.0, loss="cauchy")])
def test_nan_in_masked_samples_with_residual_weights(pair, options):
    x, y = pair
    y = y + 5.0
    y[4:7, 4:7] = np.nan
    fit = kernelfit.fit_kernel(x, y, 3, mask=~np.isnan(y), checks=False, **options)
    assert np.all(np.isfinite(fit.kernel))


def test_a_per_channel_prior_writes_its_kernel_file(rng, tmp_path):
    from kernelfit._io import read_fit, write_kernel

    x = rng.standard_normal((24, 24, 2))
    y = kernelfit.convolve(x, kernels.gaussian(3, 1.0), channel_axis=-1)
    y = y + 0.05 * rng.standard_normal(x.shape)
    fit = kernelfit.fit_kernel(x, y, 3, channel_axis=-1, channels="separate",
                               prior={"laplacian": "gcv"}, checks=False)
    write_kernel(tmp_path / "k.json", fit)
    json.loads((tmp_path / "k.json").read_text())  # valid JSON
    assert np.shape(read_fit(tmp_path / "k.json")[0].prior["laplacian"]) in ((), (2,))


def test_weights_for_some_pairs_only_are_refused(pair):
    x, y = pair
    with pytest.raises(ValueError, match=r"weights\[1\] is None: give every pair"):
        kernelfit.fit_kernel([x, x], [y, y], 3, weights=[np.ones(y.shape), None])


def test_huge_weights_are_not_an_index_error(pair):
    x, y = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            kernelfit.fit_kernel(x, y, 3, weights=np.full(y.shape, 1e306))
        except (ValueError, ArithmeticError) as error:  # (named, not an IndexError)
            assert not isinstance(error, IndexError)


@pytest.mark.parametrize("prior", [[], "gcv", 1])
def test_a_kernel_file_whose_prior_is_not_an_object(tmp_path, prior):
    from kernelfit._io import FileError, read_fit

    path = tmp_path / "k.json"
    path.write_text(json.dumps({"format": "kernelfit-kernel", "format_version": 1,
                                "kernel": [[0, 1, 0]], "prior": prior}))
    with pytest.raises((ValueError, FileError), match="'prior' must be an object"):
        read_fit(path)


@pytest.mark.parametrize("call", [dict(constraints={"sum": 1.0}),
                                  dict(prior={"laplacian": 1.0}),
                                  dict(method="ridge", options={"reg": 1.0})])
def test_the_sandwich_is_refused_where_it_does_not_apply(pair, call):
    x, y = pair
    with pytest.raises(ValueError, match="errors='sandwich' is for least squares as it is"):
        kernelfit.fit_kernel(x, y, 3, errors="sandwich", **call)


def test_constraints_refuse_complex_data(pair):
    x, y = pair
    with pytest.raises(ValueError, match="constraints need real data"):
        kernelfit.fit_kernel(x + 1j * x, y, 3, constraints={"symmetry": "point"})
