"""TF against lstsq: loss curves per optimizer, steps and time to tolerance.

The same noiseless pair (a crop of the sample portrait, a 5x5 kernel) is fitted with
method='tf' and each optimizer; a callback records the kernel's error against the lstsq
solution at every step. Conjugate gradients (the default) reaches lstsq; Adam, SGD and
momentum stall on the badly conditioned photograph.

Run: python experiments/tf_convergence.py [--quick] [--seed 0]
Writes tf_convergence.png/.csv/.md to experiments/results/ (or --out).
"""

import time

import numpy as np

import kernelfit
from kernelfit import data, kernels

try:
    from ._common import arguments, figure, save, stem, write_table
except ImportError:  # run as a script
    from _common import arguments, figure, save, stem, write_table

OPTIMIZERS = ["cg", "adam", "sgd", "momentum"]
TOLERANCE = 1e-4


def run(args):
    side = 48 if args.quick else 128
    steps = 100 if args.quick else 2000
    image = data.portrait()[200:200 + side, 180:180 + side].astype(float)
    kernel = kernels.random((5, 5), rng=args.seed)
    output = kernelfit.convolve(image, kernel)
    reference = kernelfit.fit_kernel(image, output, 5, checks=False).kernel
    scale = np.abs(reference).max()
    kernelfit.fit_kernel(image[:16, :16], output[:16, :16], 3, method="tf",
                         options={"max_steps": 2, "verbose": False}, checks=False)  # TensorFlow's start-up, once
    curves, rows = {}, []
    for optimizer in OPTIMIZERS:
        errors, times = [], []
        start = time.perf_counter()

        def record(step, loss, found):
            errors.append(np.abs(found - reference).max() / scale)
            times.append(time.perf_counter() - start)

        fit = kernelfit.fit_kernel(image, output, 5, method="tf", checks=False, options={
            "optimizer": optimizer, "max_steps": steps, "verbose": False, "callback": record,
            "rng": args.seed})
        elapsed = time.perf_counter() - start
        reached = [i for i, e in enumerate(errors) if e < TOLERANCE]
        curves[optimizer] = (fit.loss_history, errors)
        rows.append(dict(optimizer=optimizer, steps=fit.n_steps, stopped=fit.stop_reason,
                         final_error=f"{errors[-1]:.2g}",
                         steps_to_1e_4=reached[0] + 1 if reached else "never",
                         seconds_to_1e_4=f"{times[reached[0]]:.2f}" if reached else "never",
                         seconds=f"{elapsed:.2f}", device=fit.device))
    return rows, curves, side


def draw(curves, side):
    fig = figure(12, 4.6)
    loss_ax, error_ax = fig.subplots(1, 2)
    for optimizer, (loss, errors) in curves.items():
        loss_ax.semilogy(np.arange(len(loss)), np.maximum(loss, 1e-32), label=optimizer)
        error_ax.semilogy(np.arange(1, len(errors) + 1), errors, label=optimizer)
    error_ax.axhline(TOLERANCE, color="k", ls="--", lw=1)
    error_ax.text(1, TOLERANCE * 1.5, "tolerance 1e-4", fontsize=8)
    for ax, label in ((loss_ax, "loss (mean squared error)"),
                      (error_ax, "max |kernel - lstsq kernel| / max |lstsq kernel|")):
        ax.set_xscale("log")
        ax.set_xlabel("step (log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=9)
    loss_ax.set_title("Loss per step", fontsize=10)
    error_ax.set_title("Kernel error against the least-squares solution", fontsize=10)
    fig.suptitle(f"method='tf' on a {side}x{side} crop of the portrait, 5x5 kernel, noiseless: "
                 f"conjugate gradients converge; Adam and SGD stall", fontsize=11)
    return fig


def main(argv=None):
    args = arguments(__doc__.splitlines()[0], argv)
    rows, curves, side = run(args)
    write_table(rows, args.out, stem("tf_convergence", args))
    save(draw(curves, side), args.out, stem("tf_convergence", args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
