"""Sample images: shipped with matplotlib, or generated here; nothing downloaded."""

import numpy as np
import pytest

from kernelfit import data


def test_portrait_grey_and_colour():
    grey, colour = data.portrait(), data.portrait(color=True)
    assert grey.shape == (600, 512) and grey.dtype == np.uint8
    assert colour.shape == (600, 512, 3) and colour.dtype == np.uint8
    # Textured enough to fit a kernel from: far from constant.
    assert grey.std() > 30
    luma = colour @ np.array([0.299, 0.587, 0.114])
    assert np.abs(luma - grey).max() <= 1.0


@pytest.mark.parametrize("make", [data.noise, data.smooth_field])
def test_random_images_are_seeded_and_take_channels(make):
    a = make((16, 12), rng=5)
    np.testing.assert_array_equal(a, make((16, 12), rng=5))
    assert a.shape == (16, 12)
    assert make((16, 12), channels=3, rng=5).shape == (16, 12, 3)
    assert make(10, rng=0).shape == (10,)


def test_smooth_field_is_smooth_and_scaled():
    field = data.smooth_field((64, 64), correlation_length=4.0, rng=1)
    assert field.min() == 0.0 and field.max() == 1.0
    white = data.noise((64, 64), rng=1)
    roughness = np.abs(np.diff(field, axis=1)).mean() / field.std()
    assert roughness < 0.3 * np.abs(np.diff(white, axis=1)).mean() / white.std()


def test_checkerboard_and_sinusoid():
    board = data.checkerboard((6, 6), square=3)
    assert board[0, 0] == 0 and board[0, 3] == 1 and board[3, 3] == 0
    assert data.checkerboard((4, 4, 4), square=2).shape == (4, 4, 4)
    wave = data.sinusoid((16, 16), period=8, angle=90)
    np.testing.assert_allclose(wave[:, 0], wave[:, 5])  # vertical wave: constant along rows
    np.testing.assert_allclose(wave[0], wave[8])


@pytest.mark.parametrize("call,message", [
    (lambda: data.noise((0, 3)), r"shape must be at least 1 along every axis"),
    (lambda: data.smooth_field((4, 4), channels=0), r"channels must be at least 1"),
    (lambda: data.checkerboard((4, 4), square=0), r"square must be at least 1"),
    (lambda: data.sinusoid((4, 4, 4)), r"shape must be an integer or a sequence of 2"),
])
def test_data_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
