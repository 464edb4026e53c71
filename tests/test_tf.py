"""method='tf': the same problem by gradient descent in TensorFlow, checked against lstsq."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import kernelfit
from kernelfit import data, fit_kernel, kernels

# In CI the tf extra is installed by the test command: a missing TensorFlow must fail there.
tf = pytest.importorskip("tensorflow") if not os.environ.get("CI") else __import__("tensorflow")
pytestmark = pytest.mark.tf


def _agree(tf_fit, reference, rtol):
    scale = np.abs(reference.kernel).max()
    assert np.abs(tf_fit.kernel - reference.kernel).max() <= rtol * scale
    if reference.bias is not None:
        np.testing.assert_allclose(tf_fit.bias, reference.bias, rtol=0,
                                   atol=rtol * max(1.0, np.abs(reference.bias).max()))


@pytest.mark.parametrize("source", ["noise", "portrait"])
def test_matches_lstsq_on_noiseless_128x128(source):
    x = data.noise((128, 128), rng=0) if source == "noise" else data.portrait()[200:328, 150:278]
    k = kernels.random((5, 5), rng=1)
    y = kernelfit.convolve(x, k)
    fit = fit_kernel(x, y, 5, method="tf")
    reference = fit_kernel(x, y, 5)
    _agree(fit, reference, 1e-4)
    assert fit.stop_reason == "converged" and fit.n_steps < 2000
    assert fit.loss_history[-1] < 1e-12 * fit.loss_history[0]
    assert fit.device.endswith(("CPU:0", "GPU:0"))
    # The diagnostics mean what they mean for lstsq.
    assert (fit.rank, fit.n_unknowns, fit.n_equations) == (
        reference.rank, reference.n_unknowns, reference.n_equations)
    np.testing.assert_allclose(fit.condition_number, reference.condition_number, rtol=1e-6)


def test_noisy_data_agree_within_the_reported_stderr():
    x = data.portrait()[100:196, 100:196]
    y = kernelfit.synth.synthesize(x, kernels.gaussian(5, 1.2), noise=2.0, rng=0) + 10.0
    reference = fit_kernel(x, y, 5, bias=True)
    fit = fit_kernel(x, y, 5, bias=True, method="tf")
    assert np.all(np.abs(fit.kernel - reference.kernel) < 0.01 * reference.stderr)
    np.testing.assert_allclose(fit.stderr, reference.stderr, rtol=1e-4)
    np.testing.assert_allclose(fit.bias_stderr, reference.bias_stderr, rtol=1e-4)
    np.testing.assert_allclose([fit.residual_rms, fit.r2], [reference.residual_rms,
                                                            reference.r2], rtol=1e-8)


@pytest.mark.parametrize("convention", ["convolution", "correlation"])
@pytest.mark.parametrize("shape,size,boundary,mode", [
    ((200,), (7,), None, "same"), ((60,), (4,), "reflect", "full"),
    ((14, 12, 10), (3, 2, 3), "wrap", "same"), ((40, 30), (4, 3), "edge", "valid")])
def test_geometries_orientation_and_bias(convention, shape, size, boundary, mode):
    rng = np.random.default_rng(2)
    x, k = rng.standard_normal(shape), rng.standard_normal(size)
    y = kernelfit.convolve(x, k, mode=mode, boundary=boundary or "fill",
                           convention=convention) - 3.0
    fit = fit_kernel(x, y, size, boundary=boundary, convention=convention, bias=True,
                     method="tf")
    _agree(fit, fit_kernel(x, y, size, boundary=boundary, convention=convention, bias=True),
           1e-8)
    np.testing.assert_allclose(fit.kernel, k, atol=1e-8)


def test_origin_mask_saturation_and_several_pairs():
    rng = np.random.default_rng(3)
    k = kernels.sharpen(1.5)
    inputs = [data.portrait()[i:i + 48, 200:248] for i in (100, 300)]
    outputs = [kernelfit.synth.synthesize(x, k, dtype=np.uint8, origin=(1, 0)) for x in inputs]
    masks = [rng.random(x.shape) > 0.1 for x in inputs]
    fit = fit_kernel(inputs, outputs, 3, origin=(1, 0), mask=masks, method="tf")
    reference = fit_kernel(inputs, outputs, 3, origin=(1, 0), mask=masks)
    assert fit.n_masked == reference.n_masked > 0
    _agree(fit, reference, 1e-6)


def test_channel_layouts():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((20, 18, 3))
    cases = [
        (kernelfit.convolve(image, kernels.box(3), channel_axis=-1) + [1.0, 2, 3], "shared"),
        (np.stack([kernelfit.convolve(image[..., c], kernels.random((3, 3), rng=c))
                   for c in range(3)], axis=-1), "separate"),
        (kernelfit.convolve(image, rng.standard_normal((3, 3, 3, 2)), channel_axis=-1), "full"),
        (kernelfit.convolve(image, rng.standard_normal((3, 3, 3)), channel_axis=-1), "shared"),
    ]
    for y, channels in cases:
        fit = fit_kernel(image, y, 3, channel_axis=-1, channels=channels, bias=True,
                         method="tf")
        reference = fit_kernel(image, y, 3, channel_axis=-1, channels=channels, bias=True)
        assert fit.kernel.shape == reference.kernel.shape
        _agree(fit, reference, 1e-7)
        assert fit.rank == reference.rank and fit.n_unknowns == reference.n_unknowns


def test_complex_data():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 30)) + 1j * rng.standard_normal((30, 30))
    k = kernels.scharr("x") + 1j * kernels.scharr("y")  # the complex Scharr gradient
    y = kernelfit.convolve(x, k) + (2 - 1j) + 0.1 * rng.standard_normal((30, 30))
    fit = fit_kernel(x, y, 3, bias=True, method="tf")
    reference = fit_kernel(x, y, 3, bias=True)
    _agree(fit, reference, 1e-7)
    np.testing.assert_allclose(fit.stderr, reference.stderr, rtol=1e-5)
    assert fit.rank == reference.rank == 10


def test_keras_conv2d_layer_weights_and_bias_come_back():
    from experiments.keras_conv2d import recover_conv2d
    kernel, bias, fit = recover_conv2d(seed=0)
    np.testing.assert_allclose(fit.kernel, kernel, atol=1e-4)
    np.testing.assert_allclose(fit.bias, bias, atol=1e-4)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "momentum"])
def test_keras_optimizers_descend(optimizer):
    x = data.noise((40, 40), rng=6)
    y = kernelfit.convolve(x, kernels.gaussian(3, 1.0))
    fit = fit_kernel(x, y, 3, method="tf", options={"optimizer": optimizer, "max_steps": 300})
    assert fit.n_steps <= 300 and len(fit.loss_history) == fit.n_steps + 1
    assert fit.loss_history[-1] < 1e-2 * fit.loss_history[0]
    assert fit.stop_reason in ("converged", "max_steps")


def test_mini_batches_of_pairs_with_adam():
    rng = np.random.default_rng(7)
    k = kernels.box(3)
    inputs = [rng.standard_normal((16, 16)) for _ in range(4)]
    fit = fit_kernel(inputs, [kernelfit.convolve(x, k) for x in inputs], 3, method="tf",
                     options={"optimizer": "adam", "learning_rate": 0.05, "batch_size": 2,
                              "rng": 1, "max_steps": 400})
    assert np.abs(fit.kernel - k).max() < 0.05


def test_callback_sees_every_step_and_can_stop(capsys):
    x = data.noise((32, 32), rng=8)
    y = kernelfit.convolve(x, kernels.shift((1, 0)))
    seen = []

    def callback(step, loss, kernel):
        seen.append((step, loss, kernel.shape))
        return step == 3

    fit = fit_kernel(x, y, 3, method="tf", options={"callback": callback, "verbose": False})
    assert [s for s, _, _ in seen] == [1, 2, 3] and fit.stop_reason == "callback"
    assert seen[0][2] == (3, 3) and fit.n_steps == 3
    assert capsys.readouterr().out == ""
    fit_kernel(x, y, 3, method="tf", options={"verbose": True, "max_steps": 5})
    assert "step" in capsys.readouterr().out  # Keras' progress bar


@pytest.mark.parametrize("options,error,message", [
    (dict(optimizer="lbfgs"), ValueError,
     r"options\['optimizer'\] must be one of 'cg', 'adam', 'sgd', 'momentum'; got 'lbfgs'"),
    (dict(learning_rate=0.1), ValueError,
     r"options\['learning_rate'\] is not used by optimizer='cg'"),
    (dict(optimizer="adam", learning_rate=-1.0), ValueError,
     r"options\['learning_rate'\] must be positive"),
    (dict(max_steps=0), ValueError, r"options\['max_steps'\] must be a positive integer"),
    (dict(batch_size=2), ValueError, r"options\['batch_size'\] needs a stochastic optimizer"),
    (dict(dtype="float16"), ValueError,
     r"options\['dtype'\] must be one of 'float32', 'float64'"),
    (dict(rtol=-1.0), ValueError, r"options\['rtol'\] must be non-negative"),
    (dict(callback=3), TypeError, r"options\['callback'\] must be callable"),
    (dict(verbose="yes"), TypeError, r"options\['verbose'\] must be None, True or False"),
    (dict(rng="seed"), TypeError, r"options\['rng'\] must be None, an integer seed or a "
                                  r"numpy.random.Generator"),
    (dict(seed=1), ValueError, r"options has 'seed', which method='tf' does not take "
                               r"\(no method takes it\); method='tf' takes 'optimizer'"),
])
def test_tf_option_errors(options, error, message):
    x = np.ones((8, 8))
    with pytest.raises(error, match=message):
        fit_kernel(x, x, 3, method="tf", options=options)


def test_tf_options_belong_to_method_tf():
    x = np.random.default_rng(0).standard_normal((8, 8))
    with pytest.raises(ValueError, match=r"options has 'max_steps', which method='lstsq' does "
                                         r"not take \(it is an option of method='tf'\)"):
        fit_kernel(x, x, 3, options={"max_steps": 10})


def test_float32_is_close():
    x = data.noise((64, 64), rng=9)
    y = kernelfit.convolve(x, kernels.gaussian(5, 1.0))
    fit = fit_kernel(x, y, 5, method="tf", options={"dtype": "float32"})
    assert fit.stop_reason == "converged" and fit.kernel.dtype == np.float64
    assert np.abs(fit.kernel - kernels.gaussian(5, 1.0)).max() < 1e-5


def test_missing_tensorflow_says_how_to_install(monkeypatch):
    from kernelfit import _tf
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(_tf.import_tensorflow, "ready", False, raising=False)
    with pytest.raises(ImportError, match=r'pip install "kernelfit\[tf\]"'):
        fit_kernel(np.ones((6, 6)), np.ones((6, 6)), 3, method="tf")


def test_tensorflow_start_up_noise_stays_out_of_the_way():
    code = ("import numpy as np, kernelfit; x = np.random.default_rng(0).standard_normal((16, 16));"
            "kernelfit.fit_kernel(x, kernelfit.convolve(x, np.ones((3, 3))), 3, method='tf')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stderr == "" and result.stdout == ""


def test_not_identifiable_warns_on_the_tf_path_too():
    x = data.checkerboard((16, 16), square=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = fit_kernel(x, kernelfit.convolve(x, kernels.box(3)), 3, method="tf")
    assert not fit.identifiable
    assert any(issubclass(w.category, kernelfit.IdentifiabilityWarning) for w in caught)


def test_benchmark_script_quick(tmp_path, capsys):
    from experiments import tf_benchmark
    assert tf_benchmark.main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "tf_benchmark_quick.md").read_text()
    assert table.count("| converged |") == 4 and "device" in table
    assert (tmp_path / "tf_benchmark_quick.csv").exists()
