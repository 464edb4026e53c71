"""Recover the weights and bias of a tf.keras Conv2D layer from its input and output.

A Conv2D layer with 3 input channels and 4 filters of 3x3 is a (3, 3, 3, 4) kernel applied by
correlation in 'valid' geometry, plus a bias per filter. Run: python experiments/keras_conv2d.py
"""

import os

import numpy as np

import kernelfit


def recover_conv2d(seed=0, size=(48, 48)):
    """Make a random Conv2D layer, run it on random RGB-like data, fit its weights back.

    Returns the layer's kernel, its bias, and the KernelFit.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    layer = tf.keras.layers.Conv2D(4, 3, padding="valid", bias_initializer="random_normal",
                                   dtype="float64")
    images = np.random.default_rng(seed).standard_normal((2, *size, 3))
    outputs = layer(images).numpy()  # (2, 46, 46, 4): the layer is built on first call
    kernel, bias = (w.numpy() for w in layer.weights)
    fit = kernelfit.fit_kernel(list(images), list(outputs), 3, channel_axis=-1,
                               channels="full", convention="correlation", bias=True,
                               method="tf")
    return kernel, bias, fit


def main():
    kernel, bias, fit = recover_conv2d()
    print(fit)
    print(f"max |kernel error| = {np.abs(fit.kernel - kernel).max():.2e}, "
          f"max |bias error| = {np.abs(fit.bias - bias).max():.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
