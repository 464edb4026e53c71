"""Solve in TensorFlow: a trainable kernel, TF's convolution ops, a loss and an optimizer.

tensorflow is imported here only, on first use. The model is the fit's operator written in TF:
the design's blocks (inputs already extended by the edge rule) in 'valid' geometry. The default
optimizer is conjugate gradients with the exact line search a quadratic loss allows; Keras'
Adam, SGD and momentum are options.
"""

import contextlib
import os
import re
import sys
import tempfile

import numpy as np

from ._solve import (
    EstimateBuilder,
    Factorization,
    Moments,
    centred_covariance,
    standard_errors,
    system_indices,
    variance_factor,
)

OPTIMIZERS = ("cg", "adam", "sgd", "momentum")
# TensorFlow's routine C++ log lines at start-up: information and warnings, and the CUDA
# probe's error on machines without a GPU.
_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} "
                    r"|E\d{4} .*(cuInit|cuda_platform|cuda_diagnostics))")


def import_tensorflow():
    """Import tensorflow with its start-up log noise kept out of the user's way.

    TensorFlow writes C++ log lines to file descriptor 2 before its own log level applies,
    during the import and when it first looks for devices. Both happen here with that
    descriptor captured; only lines that are not routine noise are passed on.
    """
    if "tensorflow" in sys.modules and getattr(import_tensorflow, "ready", False):
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    captured = ""
    try:
        with tempfile.TemporaryFile(mode="w+b") as sink, _stderr_to(sink):
            try:
                import tensorflow as tf
                tf.config.list_logical_devices()
            finally:
                sink.seek(0)
                captured = sink.read().decode(errors="replace")
    except ImportError as exc:
        raise ImportError(
            'method="tf" needs TensorFlow, an optional extra of kernelfit: install it with '
            '`pip install "kernelfit[tf]"` (or `pip install tensorflow`)') from exc
    for line in captured.splitlines():
        if line.strip() and not _NOISE.match(line):
            print(line, file=sys.stderr)
    tf.get_logger().setLevel("ERROR")
    import_tensorflow.ready = True
    return tf


@contextlib.contextmanager
def _stderr_to(sink):
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_options(optimizer, learning_rate, max_steps, rtol, gtol, dtype, rng, batch_size,
                  verbose, callback):
    """Validate the TF path's options (fit_kernel's `options`); return them filled in."""
    from ._validation import check_choice, check_scalar

    optimizer = check_choice("cg" if optimizer is None else optimizer,
                             "options['optimizer']", OPTIMIZERS)
    if learning_rate is not None:
        learning_rate = check_scalar(learning_rate, "options['learning_rate']",
                                     complex_ok=False)
        if learning_rate <= 0:
            raise ValueError(f"options['learning_rate'] must be positive; got "
                             f"{learning_rate!r}")
        if optimizer == "cg":
            raise ValueError("options['learning_rate'] is not used by optimizer='cg', whose "
                             "exact line search chooses every step")
    dtype = check_choice("float64" if dtype is None else np.dtype(dtype).name
                         if not isinstance(dtype, str) else dtype, "options['dtype']",
                         ("float32", "float64"))
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"options[{name!r}] must be a positive integer; got {value!r}")
    if batch_size is not None and optimizer == "cg":
        raise ValueError("options['batch_size'] needs a stochastic optimizer ('adam', 'sgd' "
                         "or 'momentum'); optimizer='cg' uses every pair at every step")
    if rng is not None and not isinstance(rng, (int, np.integer, np.random.Generator)) or \
            isinstance(rng, bool):
        raise TypeError(f"options['rng'] must be None, an integer seed or a "
                        f"numpy.random.Generator; got {rng!r}")
    eps = np.finfo(dtype).eps
    tolerances = {}
    gtol_default = 1e-10 if dtype == "float64" else 1e-5
    for name, value, default in (("rtol", rtol, 10 * eps), ("gtol", gtol, gtol_default)):
        if value is None:
            value = default
        value = check_scalar(value, f"options[{name!r}]", complex_ok=False)
        if value < 0:
            raise ValueError(f"options[{name!r}] must be non-negative; got {value!r}")
        tolerances[name] = float(value)
    if callback is not None and not callable(callback):
        raise TypeError(f"options['callback'] must be callable; got {callback!r}")
    if verbose not in (None, True, False):
        raise TypeError(f"options['verbose'] must be None, True or False; got {verbose!r}")
    return dict(optimizer=optimizer, learning_rate=learning_rate,
                max_steps=max_steps or (2000 if optimizer == "cg" else 5000),
                dtype=dtype, rng=rng, batch_size=batch_size, verbose=verbose,
                callback=callback, **tolerances)


def solve(problem, design, first=None, *, optimizer="cg", learning_rate=None, max_steps=2000,
          rtol=None, gtol=None, dtype="float64", rng=None, batch_size=None, verbose=None,
          callback=None):
    """Fit the design by gradient descent in TensorFlow; return an Estimate.

    The options are fit_kernel's, already validated by check_options; `callback` sees the
    kernel in the problem's convention.
    """
    tf = import_tensorflow()
    model = _Model(tf, problem, design, dtype)
    rng = np.random.default_rng(rng)
    with tf.device(model.device):
        history, steps, reason = _OPTIMIZE[optimizer](
            tf, model, optimizer=optimizer, learning_rate=learning_rate, max_steps=max_steps,
            rtol=rtol, gtol=gtol, rng=rng, batch_size=batch_size,
            progress=_progress(tf, max_steps, verbose),
            callback=None if callback is None else _callback(model, callback,
                                                             problem.convention))
        return model.estimate(loss_history=np.array(history), n_steps=steps,
                              stop_reason=reason, device=model.device)


class _Model:
    """The fit's operator in TensorFlow: predictions, loss, gradient, Gram matrix.

    Unknowns are real tensors: the kernel (in correlation orientation, as TF's convolution
    computes it) and the bias, each split into real and imaginary parts for complex data.
    """

    def __init__(self, tf, problem, design, dtype):
        self.tf, self.problem, self.design = tf, problem, design
        self.size = design.support.shape
        self.kernel_shape = problem.kernel_shape(self.size)
        self.bias_shape = (problem.n_in,) if problem.layout == "shared" else (problem.n_out,)
        self.dtype = tf.float64 if dtype == "float64" else tf.float32
        self.complex = np.dtype(problem.dtype).kind == "c"
        gpus = tf.config.list_logical_devices("GPU")
        self.device = (gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0]).name
        parts = 2 if self.complex else 1
        self.shapes = [self.kernel_shape] * parts
        if problem.bias:
            self.shapes += [self.bias_shape] * parts
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        # one block per pair: its input extended by the design's edge rule
        self.blocks = [pair.block(design.support, box, design.pad_mode, problem.fillvalue,
                                  problem.dtype)
                       for pair, box in zip(problem.pairs, design.boxes) if not box.empty]
        with tf.device(self.device):
            self.variables = [tf.Variable(tf.zeros(s, self.dtype)) for s in self.shapes]
            self.batches = [self._batch(block) for block in self.blocks]
        # Compiled once per distinct pair shape; eager TensorFlow is many times slower.
        self._compiled_loss = tf.function(self._batch_loss, reduce_retracing=True)
        self.directional = tf.function(self.predict, reduce_retracing=True)
        self.n_used = float(sum(int(b.usable.sum()) for b in self.blocks))

    def _batch(self, block):
        """(inputs, targets, weights) in TF's (batch, *spatial, channels) layout."""
        arrays = (block.extended[0], block.target[0], block.usable[0].astype(float)
                  if block.weight is None else block.weight[0])
        if self.problem.layout == "shared":  # channels become the batch: one kernel for all
            arrays = [np.moveaxis(a, -1, 0)[..., np.newaxis] for a in arrays]
        else:
            arrays = [a[np.newaxis] for a in arrays]
        x, y, w = arrays
        parts = [np.real, np.imag] if self.complex else [np.real]
        constant = self.tf.constant
        return ([constant(part(x), self.dtype) for part in parts],
                [constant(part(y), self.dtype) for part in parts], constant(w, self.dtype))

    def _filter(self, kernel):
        tf, layout = self.tf, self.problem.layout
        if layout == "shared":
            return kernel[..., tf.newaxis, tf.newaxis]
        if layout == "separate":  # a diagonal (*size, C, C) filter: channel c -> channel c
            return kernel[..., tf.newaxis] * tf.eye(self.problem.n_out, dtype=self.dtype)
        return kernel

    def predict(self, params, batch):
        """Predictions (real part, and imaginary part for complex data) for one batch."""
        tf = self.tf

        def conv(x, kernel):
            return tf.nn.convolution(x, self._filter(kernel), padding="VALID")

        n = 2 if self.complex else 1
        (kernels, biases), xs = (params[:n], params[n:]), batch[0]
        if self.complex:
            (xr, xi), (kr, ki) = xs, kernels
            out = [conv(xr, kr) - conv(xi, ki), conv(xr, ki) + conv(xi, kr)]
        else:
            out = [conv(xs[0], kernels[0])]
        if self.problem.layout == "shared":  # one bias per channel, channels on the batch
            biases = [tf.reshape(b, [-1] + [1] * (len(self.size) + 1)) for b in biases]
        return [o + b for o, b in zip(out, biases)] if biases else out

    def loss_and_gradient(self, params, batches=None):
        """Mean squared error over the usable samples, its gradient, and the predictions."""
        total, gradient, predictions = 0.0, None, []
        for batch in self.batches if batches is None else batches:
            part, part_gradient, predicted = self._compiled_loss(list(params), *batch)
            total += part
            gradient = part_gradient if gradient is None else [
                g + h for g, h in zip(gradient, part_gradient)]
            predictions.append(predicted)
        return total / self.n_used, [g / self.n_used for g in gradient], predictions

    def _batch_loss(self, params, xs, ys, weights):
        """Sum of squared residuals of one batch, its gradient, and the predictions."""
        tf = self.tf
        with tf.GradientTape() as tape:
            tape.watch(params)
            predicted = self.predict(params, (xs, ys, weights))
            total = tf.add_n([tf.reduce_sum(weights * tf.square(y - p))
                              for p, y in zip(predicted, ys)])
        return total, tape.gradient(total, params), predicted

    def flat(self, tensors):
        return np.concatenate([np.asarray(t).ravel() for t in tensors])

    def unflat(self, vector):
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(self.tf.constant(vector[start:start + size].reshape(shape), self.dtype))
            start += size
        return out

    def _complex(self, values):
        return values[0] + 1j * values[1] if self.complex else values[0]

    def kernel(self):
        return self._complex([v.numpy() for v in self.variables[:2 if self.complex else 1]])

    def estimate(self, **extra):
        """Kernel and bias, with every diagnostic computed as the other paths define it."""
        problem = self.problem
        n = 2 if self.complex else 1
        bias = self._complex([v.numpy() for v in self.variables[n:]]) if problem.bias else None
        gram = self._gram()
        n_kernel = int(np.prod(self.kernel_shape))
        builder = EstimateBuilder(self.kernel_shape, self.bias_shape, problem.bias,
                                  problem.dtype)
        from ._normal import standardised

        kernel = self.kernel()
        residuals = list(self._residuals())
        samples = np.concatenate([target for target, _, _ in residuals])
        moments = Moments(float(np.real(samples.mean())), float(np.std(samples)))
        moments.threshold = problem.outlier_threshold
        for (coef, bias_index), (target, predicted, weight) in zip(self._systems(),
                                                                   residuals):
            index = np.concatenate([coef, n_kernel + bias_index]) if problem.bias else coef
            raw = target - predicted
            residual = np.sqrt(weight) * raw  # (weighted: one variance)
            moments.add(predicted, residual, raw=standardised(problem, raw, predicted))
            ss_res = float(np.sum(np.abs(residual) ** 2))
            mean = (weight @ target) / weight.sum()
            factor = Factorization(gram[np.ix_(index, index)], coef.size, target.size,
                                   problem.bias)
            rank, coef_se, bias_se = standard_errors(factor, ss_res, problem.absolute)
            if builder.wants_covariance:
                builder.add_covariance(coef, bias_index if problem.bias else None,
                                       variance_factor(factor, ss_res, problem.absolute)
                                       * centred_covariance(factor, problem.bias))
            builder.add(coef, kernel.flat[coef].astype(problem.dtype), coef_se, bias_index,
                        None if bias is None else bias.flat[bias_index], bias_se,
                        ss_res=ss_res,
                        ss_tot=float(weight @ np.abs(target - mean) ** 2),
                        n_equations=target.size, n_unknowns=index.size, rank=rank,
                        extremes=factor.singular_extremes(), full_rank=factor.full_rank)
        # The result has the data's dtype, whatever precision the optimisation used.
        return builder.estimate("tf", moments=moments, **extra)

    def _systems(self):
        """Unknowns of each independent system: (kernel flat indices, bias flat indices).

        One per output channel for a channel-mixing kernel (the Gram matrix is
        block-diagonal across them).
        """
        problem = self.problem
        count = 1 if problem.layout == "shared" else problem.n_out
        return [tuple(index[:, 0] for index in system_indices(
            problem.layout, False, self.size, problem.n_in, problem.n_out, s))
            for s in range(count)]

    def _residuals(self):
        """(targets, predictions, weights) over the usable samples of each system."""
        problem = self.problem
        params = [self.tf.constant(v) for v in self.variables]
        per_pair = []
        for block, batch in zip(self.blocks, self.batches):
            predicted = self._complex([p.numpy() for p in self.predict(params, batch)])
            predicted = (np.moveaxis(predicted[..., 0], 0, -1) if problem.layout == "shared"
                         else predicted[0])
            weight = (block.usable[0].astype(float) if block.weight is None
                      else block.weight[0])
            per_pair.append((block.target[0], predicted, weight, block.usable[0]))
        channel_sets = ([slice(None)] if problem.layout == "shared"
                        else [j for j in range(problem.n_out)])
        for channels in channel_sets:
            yield tuple(np.concatenate([arrays[k][..., channels][used[..., channels]]
                                        for *arrays, used in per_pair])
                        for k in range(3))

    def zero_targets(self):
        """The batches with zero targets: the loss is then ``|J v|^2 / n``, its gradient
        ``H v`` (a Hessian-vector product, as the Gram matrix and power iteration need)."""
        return [(b[0], [self.tf.zeros_like(t) for t in b[1]], b[2]) for b in self.batches]

    def _gram(self):
        """The Gram matrix ``J^H W J`` over every unknown, one gradient per unknown.

        The loss is quadratic with no constant term at a zero target, so its gradient at a
        unit vector is ``2 / n`` times a column of the Gram matrix.
        """
        zero = self.zero_targets()
        n_real = sum(self.sizes)
        columns = []
        for j in range(n_real):
            unit = np.zeros(n_real)
            unit[j] = 1.0
            _, gradient, _ = self.loss_and_gradient(self.unflat(unit), zero)
            columns.append(self.flat(gradient) * self.n_used / 2)
        real = np.stack(columns, axis=1)
        if not self.complex:
            return real
        # Real coordinates (re k, im k[, re b, im b]) -> the complex Gram matrix, whose
        # real part is the (re, re) block and imaginary part the (im, re) block.
        k = self.sizes[0]
        b = self.sizes[2] if self.problem.bias else 0
        re = np.r_[0:k, 2 * k:2 * k + b]
        im = np.r_[k:2 * k, 2 * k + b:2 * k + 2 * b]
        return real[np.ix_(re, re)] + 1j * real[np.ix_(im, re)]


def _progress(tf, max_steps, verbose):
    if verbose is False or (verbose is None and not sys.stdout.isatty()):  # Progbar: stdout
        return None
    return tf.keras.utils.Progbar(max_steps, stateful_metrics=["loss"], unit_name="step")


def _callback(model, callback, convention):
    spatial = tuple(range(len(model.size)))

    def call(step, loss, params):
        n = 2 if model.complex else 1
        kernel = model._complex([np.asarray(p) for p in params[:n]])
        if convention == "convolution":
            kernel = np.flip(kernel, axis=spatial)
        return callback(step, loss, kernel)
    return call


def _converged(history, gradient_norm, first_norm, rtol, gtol):
    if gradient_norm <= gtol * first_norm or history[-1] == 0:
        return True
    return len(history) >= 2 and abs(history[-2] - history[-1]) <= rtol * history[-2]


def _report(progress, callback, step, loss, params):
    if progress is not None:
        progress.update(step, values=[("loss", loss)])
    return callback is not None and bool(callback(step, loss, params))


def _conjugate_gradient(tf, model, *, max_steps, rtol, gtol, progress, callback, **_):
    """Conjugate gradients with exact line search (the loss is quadratic), PR+ with restarts.

    Along a direction d the predictions change by ``J d`` (the model is linear), so the best
    step is ``<J d, r> / |J d|^2``: one forward pass of d on top of the gradient's.
    """
    params = [tf.constant(v) for v in model.variables]
    loss, gradient, predictions = model.loss_and_gradient(params)
    g = model.flat(gradient)
    first_norm = np.linalg.norm(g) or 1.0
    direction = -g
    history = [float(loss)]
    reason, step = "max_steps", 0
    for step in range(1, max_steps + 1):
        d = model.unflat(direction)
        numerator = denominator = 0.0
        for batch, predicted in zip(model.batches, predictions):
            for target, p, change in zip(batch[1], predicted, model.directional(d, batch)):
                numerator += float(tf.reduce_sum(batch[2] * (target - p) * change))
                denominator += float(tf.reduce_sum(batch[2] * change * change))
        if denominator <= 0:  # the gradient is zero on every usable sample
            reason = "converged"
            break
        params = [p + (numerator / denominator) * dd for p, dd in zip(params, d)]
        loss, gradient, predictions = model.loss_and_gradient(params)
        g_new = model.flat(gradient)
        history.append(float(loss))
        if _report(progress, callback, step, history[-1], params):
            reason = "callback"
            break
        if _converged(history, np.linalg.norm(g_new), first_norm, rtol, gtol):
            reason = "converged"
            break
        # Polak-Ribiere, restarted when negative and every n steps (CG's finite horizon).
        beta = max(0.0, g_new @ (g_new - g) / (g @ g)) if step % g.size else 0.0
        direction = -g_new + beta * direction
        g = g_new
    for variable, value in zip(model.variables, params):
        variable.assign(value)
    return history, step, reason


def _keras(tf, model, *, optimizer, learning_rate, max_steps, rtol, gtol, rng, batch_size,
           progress, callback):
    """Adam, SGD or momentum from tf.keras on the same loss (mini-batches of pairs if asked)."""
    if learning_rate is None:
        learning_rate = 0.01 if optimizer == "adam" else 1.0 / _lipschitz(tf, model, rng)
    keras_optimizer = {
        "adam": lambda: tf.keras.optimizers.Adam(learning_rate),
        "sgd": lambda: tf.keras.optimizers.SGD(learning_rate),
        "momentum": lambda: tf.keras.optimizers.SGD(learning_rate, momentum=0.9),
    }[optimizer]()
    variables = model.variables
    history, first_norm = [], None
    reason, step = "max_steps", 0
    # One gradient per step: the loss and gradient at the current kernel both decide
    # whether to stop and drive the update (of the chosen pairs, with mini-batches).
    for step in range(0, max_steps + 1):
        batches = None
        if batch_size is not None and batch_size < len(model.batches):
            chosen = rng.choice(len(model.batches), size=batch_size, replace=False)
            batches = [model.batches[i] for i in chosen]
        loss, gradient, _ = model.loss_and_gradient(list(variables), batches)
        history.append(float(loss))
        norm = np.linalg.norm(model.flat(gradient))
        first_norm = first_norm or norm or 1.0
        if not np.isfinite(history[-1]):
            reason = "diverged"
            break
        if step and _report(progress, callback, step, history[-1], variables):
            reason = "callback"
            break
        if step and _converged(history, norm, first_norm, rtol, gtol):
            reason = "converged"
            break
        if step == max_steps:
            break
        keras_optimizer.apply_gradients(zip(gradient, variables))
    return history, step, reason


def _lipschitz(tf, model, rng, iterations=30):
    """Largest eigenvalue of the loss's Hessian, by power iteration (SGD's step is 1 / L).

    At a zero target the loss is ``|J v|^2 / n`` and its gradient is ``H v``.
    """
    zero = model.zero_targets()
    v = rng.standard_normal(sum(model.sizes))
    value = 1.0
    for _ in range(iterations):
        v /= np.linalg.norm(v)
        _, gradient, _ = model.loss_and_gradient(model.unflat(v), zero)
        hv = model.flat(gradient)
        value = float(v @ hv)
        v = hv
    return max(value, np.finfo(float).tiny)


_OPTIMIZE = {"cg": _conjugate_gradient, "adam": _keras, "sgd": _keras, "momentum": _keras}
