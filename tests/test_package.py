"""The package as a whole: a light import, and a public API that matches its __all__."""

import subprocess
import sys

import kernelfit

HEAVY = ("tensorflow", "matplotlib", "PIL", "dask", "distributed", "zarr")


def test_import_is_light():
    code = ("import sys, kernelfit; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []


def test_public_names_exist_and_are_documented():
    for name in kernelfit.__all__:
        obj = getattr(kernelfit, name)
        if name != "__version__":
            assert obj.__doc__, name
    for module in (kernelfit.kernels, kernelfit.synth, kernelfit.data, kernelfit.plot):
        for name in module.__all__:
            assert getattr(module, name).__doc__, f"{module.__name__}.{name}"


def test_version():
    from importlib.metadata import version
    assert kernelfit.__version__ == version("kernelfit")
