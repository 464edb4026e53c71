"""The kernelfit command line: fit, apply, demo, animate.

`main(argv)` parses with argparse (usage errors exit 2) and returns the exit status: 0 success,
1 a fit that ran but failed or is not identifiable (with --strict), 2 usage or input errors.
"""

import argparse
import contextlib
import inspect
import os
import sys
import warnings

import numpy as np

from . import __version__, kernels
from ._io import FileError, check_output_path, is_zarr, read_image, read_kernel, read_lazily

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

NAMED_KERNELS = {name: getattr(kernels, name) for name in kernels.__all__}
DEMO_KERNELS = {
    "unsharp": lambda: kernels.unsharp_mask(sigma=1.0, amount=0.6, size=5),
    "gaussian": lambda: kernels.gaussian(5, sigma=1.2),
    "box": lambda: kernels.box(3),
    "motion": lambda: kernels.motion_blur(7, angle=30),
    "sobel": lambda: kernels.sobel("x"),
    "emboss": lambda: kernels.emboss(),
    "sharpen": lambda: kernels.sharpen(),
}

FIT_EXAMPLES = """examples:
  kernelfit fit before.png after.png --size 3
  kernelfit fit before.png after.png --size auto --bias
  kernelfit fit before.png after.png --size 5x3 --boundary edge -o kernel.json --plot fit.png
  kernelfit fit before.png after.png --size 5 --origin auto
  kernelfit fit photo.jpg styled.jpg --size 7 --color separate --bias --strict
  kernelfit fit in.npy out.npy --size 9 --method ridge --reg gcv --mask valid.png
  kernelfit fit in.npy out.npy --size 5 --weights inverse_variance.npy
  kernelfit fit frame.png cosmic_rays.png --size 7 --loss cauchy --plot fit.png
  kernelfit fit sharp.png blurred.png --size 15 --separable --nonneg --sum 1
  kernelfit fit before.zarr after.zarr --size 15 --scheduler tcp://10.0.0.1:8786"""
APPLY_EXAMPLES = """examples:
  kernelfit apply photo.png gaussian:sigma=1.5,size=7 -o blurred.png
  kernelfit apply photo.png sobel:axis=x --boundary symmetric --float -o gradient.npy
  kernelfit apply photo.png kernel.json -o again.png

named kernels (name:key=value,...): """ + ", ".join(NAMED_KERNELS)
IDENTIFY_EXAMPLES = """examples:
  kernelfit identify kernel.json
  kernelfit identify weights.txt --tolerance 0.01"""
DEMO_EXAMPLES = """examples:
  kernelfit demo
  kernelfit demo --kernel motion --noise 1 --out demo/"""
ANIMATE_EXAMPLES = """examples:
  kernelfit animate -o convolution.gif
  kernelfit animate --image portrait --width 40 --stride 3 -o portrait.gif
  kernelfit animate --kernel sobel:axis=y --convention convolution -o sobel.gif"""


class UsageError(Exception):
    """A problem with the user's request; printed as one line, exit status 2."""


class Terminated(Exception):
    """SIGTERM or SIGHUP arrived: unwind (removing temporary files) and exit 128 + signal."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def main(argv=None):
    """Run the kernelfit command line; return the exit status.

    Every failure is one line on stderr, ``kernelfit: error: ...``, with status 2 (an
    unexpected exception too: ``--debug`` shows its traceback); Ctrl-C exits 130, SIGTERM
    and SIGHUP 128 + the signal, a closed pipe 141, each without a traceback and leaving no
    temporary file.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    debug = "--debug" in argv
    restore = _on_signals()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        for name, value in vars(args).items():
            if isinstance(value, list):  # Python < 3.12 reads --flag=-- as [], unconverted
                raise UsageError(f"argument --{name.replace('_', '-')}: expected a value")
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = args.run(args)
        for warning in caught:
            _say(f"kernelfit: warning: {_one_line(warning.message)}", quiet=False)
        return status
    except (UsageError, FileError, ValueError, TypeError, ImportError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _broken_pipe()
        if debug:
            raise
        return _error(exc)
    except KeyboardInterrupt:
        print("kernelfit: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:
        print(f"kernelfit: terminated by signal {exc.signum}", file=sys.stderr)
        return 128 + exc.signum
    except MemoryError as exc:
        if debug:
            raise
        return _error(f"out of memory{': ' + str(exc) if str(exc) else ''}; try smaller "
                      f"inputs or a smaller kernel")
    except Exception as exc:  # a bug: one line, and how to see more
        if debug:
            raise
        return _error(f"internal error ({type(exc).__name__}: {exc}); run again with --debug "
                      f"for the traceback, and please report it")
    finally:
        restore()


def _error(message):
    try:
        print(f"kernelfit: error: {_one_line(message)}", file=sys.stderr)
    except BrokenPipeError:
        pass
    return EXIT_USAGE


def _broken_pipe():
    """The reader of our output went away (``kernelfit demo | head -1``): stop quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit flush does not fail
    except (OSError, ValueError):
        pass
    return 141


def _on_signals():
    """Turn SIGTERM and SIGHUP into `Terminated` while the command runs (the main thread
    only: signal handlers belong to it); returns what puts the old handlers back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise Terminated(signum)

    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.signal(signum, handler) for signum in wanted}

    def restore():
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (`UsageError`)."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _one_line(message):
    return _cli_words(" ".join(str(message).split()))


def _tuple_flag(flag):
    def replace(match):
        values = [v.strip() for v in match.group(1).split(",") if v.strip()]
        return f"{flag} {'x'.join(values)}"
    return replace


# The library's advice in the command line's words: fit_kernel(bias=True) is --bias here.
CLI_WORDS = [
    (r"\(see mask= and saturated=\)", "(see --mask)"),
    (r"\(see mask=, saturated= and weights=\)", "(see --mask and --weights)"),
    (r"\bbias=True\b", "--bias"),
    (r"\bmask=", "--mask"),
    (r"\bweights(\[\d+\])?(?= must| has)", "--weights"),
    (r"\bweights and noise both", "--weights and --noise both"),
    (r"\bloss='(\w+)'", r"--loss \1"),
    (r"\berrors='(\w+)'", r"--errors \1"),
    (r"\bcombine with weights or noise", "combine with --weights or --noise"),
    (r"\b(gain|read_noise) must", r"--noise \1 must"),
    (r"\b(size|origin|boundary|mode|convention)='(\w+)'", r"--\1 \2"),
    (r"\borigin=\(([-\d, ]+)\)", _tuple_flag("--origin")),
    (r"\borigin=(-?\d+)", r"--origin \1"),
    (r"\bchannels='(\w+)'", r"--color \1"),
    (r"\bmax_size\b", "--max-size"),
    (r"\bconstraints\['(nonneg|sum|rank)'\]", r"--\1"),
    (r"\bconstraints\['symmetry'\]", "--symmetric"),
    (r"\bprior and constraints cannot", "--smooth and constraints cannot"),
    (r"\bmethod='lstsq' or 'lstsq-stats'", "--method lstsq"),
    (r"\bmethod='(\w+)'", r"--method \1"),
    (r"\b(mode|boundary)=(?=[\s,;.)]|$)", r"--\1"),
]


def _cli_words(text):
    import re

    for pattern, replacement in CLI_WORDS:
        text = re.sub(pattern, replacement, text)
    return text


def _say(text, quiet):
    if not quiet:
        print(text, file=sys.stderr if text.startswith("kernelfit: warning") else sys.stdout)


def build_parser():
    parser = _Parser(
        prog="kernelfit", description="Recover the convolution kernel of an unknown linear "
        "filter from its input and output.")
    parser.add_argument("--version", action="version", version=f"kernelfit {__version__}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", dest="command")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing but errors and warnings (no progress bars)")
    common.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error")

    def command(name, help, examples, run):
        sub = commands.add_parser(name, help=help, description=help, epilog=examples,
                                  parents=[common],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        return sub

    fit = command("fit", "recover the kernel that turned INPUT into OUTPUT", FIT_EXAMPLES,
                  run_fit)
    fit.add_argument("input", metavar="INPUT", help="image (PNG, JPEG, TIFF, BMP, 8 or 16 bit) "
                     "or array (.npy, .txt, .csv)")
    fit.add_argument("output", metavar="OUTPUT", help="the filtered image or array")
    fit.add_argument("--size", required=True, type=_size_or_auto,
                     help="kernel size: K, KxL (rows x columns), or auto (found from the data)")
    fit.add_argument("--max-size", type=int, default=15,
                     help="with --size auto: the largest support tried (default 15; less "
                          "where the data leave under 10 samples per unknown)")
    _geometry_options(fit, fit=True)
    fit.add_argument("--method", default="lstsq", choices=["lstsq", "pinv", "ridge", "tf"],
                     help="solver (default lstsq)")
    fit.add_argument("--reg", type=_reg, help="ridge parameter, or 'gcv' (with --method ridge)")
    fit.add_argument("--bias", action="store_true", help="also fit an additive offset")
    fit.add_argument("--color", choices=["gray", "shared", "separate", "full"],
                     help="colour images: convert to gray, or one kernel shared by the "
                     "channels (default), one per channel, or a channel-mixing kernel")
    fit.add_argument("--mask", metavar="FILE", help="image or array over OUTPUT: nonzero "
                     "samples are used")
    fit.add_argument("--weights", metavar="FILE", help="array (or image) over OUTPUT: a "
                     "weight >= 0 per sample, e.g. inverse variances (0 leaves it out)")
    fit.add_argument("--loss", choices=["squared", "huber", "cauchy"], default="squared",
                     help="squared (least squares, the default), or a robust loss that "
                     "bounds what wrong samples (outliers) can do to the kernel")
    fit.add_argument("--errors", choices=["model", "sandwich"], default="model",
                     help="standard errors from the model's noise (default), or the sandwich "
                     "that holds whatever the noise's variance does (one more pass)")
    fit.add_argument("--noise", type=_noise, metavar="poisson:gain=G[,read=R]|auto",
                     help="a noise model: photon noise of G photons per output unit plus "
                     "read noise R (output units), or auto (the residual's variance against "
                     "the level, found); the fit is weighted by its variance at the "
                     "predicted output")
    constrain = fit.add_argument_group(
        "constraints", "fit a kernel that is constrained (with --method lstsq; they combine, "
        "except --symmetric with --separable or --rank)")
    constrain.add_argument("--nonneg", action="store_true",
                           help="every coefficient >= 0 (a blur, a PSF)")
    constrain.add_argument("--sum", type=float, metavar="S",
                           help="the coefficients add up to S (1: a blur that keeps the "
                           "mean brightness)")
    constrain.add_argument("--symmetric", choices=["point", "mirror", "radial"],
                           help="a symmetric kernel: point (k[i] = k[-i]), mirror (unchanged "
                           "by flipping either axis) or radial (one value per distance from "
                           "the centre)")
    constrain.add_argument("--separable", action="store_true",
                           help="a separable kernel, column x row (the same as --rank 1)")
    constrain.add_argument("--rank", type=_rank, metavar="R|auto",
                           help="a sum of R separable terms, or auto (the rank found by BIC)")
    fit.add_argument("--smooth", type=_smooth, metavar="WEIGHT|gcv",
                     help="a smoothness prior: the kernel's Laplacian penalised with this "
                     "weight, or the weight chosen by generalised cross-validation (noisy "
                     "data, smooth kernels)")
    fit.add_argument("--strict", action="store_true",
                     help="exit 1 if the kernel is not identifiable or the fit did not converge")
    fit.add_argument("-o", "--output-kernel", metavar="FILE", dest="kernel_file",
                     help="write the kernel: .npy, .txt/.csv, or .json with every diagnostic")
    fit.add_argument("--plot", metavar="FILE.png", help="write a figure of the fit")
    fit.add_argument("--dask", action="store_true",
                     help="read INPUT, OUTPUT and the mask in chunks (zarr stores, .npy, "
                     "TIFF) and fit on Dask, for inputs larger than memory (zarr stores "
                     "always are); needs kernelfit[dask]")
    fit.add_argument("--scheduler", metavar="ADDRESS",
                     help="fit on the Dask cluster whose scheduler is at ADDRESS (e.g. "
                     "tcp://10.0.0.1:8786); implies --dask")

    identify = command("identify", "name a kernel: its family, separability, rational form",
                       IDENTIFY_EXAMPLES, run_identify)
    identify.add_argument("kernel", metavar="KERNEL", help="kernel file (.npy, .txt, .csv, "
                          "or .json from 'kernelfit fit -o', whose stderr then judges the "
                          "match)")
    identify.add_argument("--tolerance", type=float,
                          help="largest deviation that still matches, for plain arrays "
                          "(default 1e-3 of the largest coefficient)")
    identify.add_argument("--convention", choices=["convolution", "correlation"],
                          help="the kernel's orientation (default: the file's, or "
                          "convolution)")

    apply = command("apply", "apply a kernel (file or name) to an image", APPLY_EXAMPLES,
                    run_apply)
    apply.add_argument("image", metavar="IMAGE")
    apply.add_argument("kernel", metavar="KERNEL",
                       help="kernel file (.npy, .txt, .csv, .json) or name:key=value,...")
    apply.add_argument("-o", "--output", required=True, metavar="OUT",
                       help="image file, or .npy for the floating-point result")
    _geometry_options(apply, fit=False)
    apply.add_argument("--float", action="store_true",
                       help="keep the floating-point result (write .npy or .tif)")

    demo = command("demo", "recover a hidden kernel from the sample portrait",
                   DEMO_EXAMPLES, run_demo)
    demo.add_argument("--kernel", choices=list(DEMO_KERNELS), default="unsharp",
                      help="the hidden filter (default unsharp)")
    demo.add_argument("--noise", type=float, default=0.0,
                      help="Gaussian noise before 8-bit rounding, in grey levels")
    demo.add_argument("--method", default="lstsq", choices=["lstsq", "pinv", "ridge", "tf"])
    demo.add_argument("--out", metavar="DIR", help="also write the figure DIR/demo.png")

    animate = command("animate", "draw the sliding window as an animated GIF",
                      ANIMATE_EXAMPLES, run_animate)
    animate.add_argument("--image", metavar="FILE", help="an image file, or 'portrait' "
                         "(default: a 5x5 matrix with a vertical edge)")
    animate.add_argument("--kernel", metavar="KERNEL", help="kernel file or name (default: "
                         "the 3x3 vertical edge detector [[1, 0, -1]] * 3)")
    animate.add_argument("--convention", choices=["convolution", "correlation"],
                         default="correlation")
    animate.add_argument("--width", type=int, default=32,
                         help="resize an image to this width (default 32)")
    animate.add_argument("--stride", type=int, help="output samples per frame step "
                         "(default 1, or 3 for an image)")
    animate.add_argument("--fps", type=float, default=2.0)
    animate.add_argument("-o", "--output", required=True, metavar="OUT.gif")
    return parser


EDGE_RULES = ["fill", "constant", "edge", "wrap", "symmetric", "symm", "reflect"]


def _geometry_options(parser, fit):
    """--mode, --boundary, --convention, --origin: for `fit` (what to find) or for `apply`
    (what to override in a kernel file)."""
    parser.add_argument("--mode", choices=["same", "valid", "full"],
                        help="output geometry (default: " + (
                            "from the shapes)" if fit else "the kernel file's, else same)"))
    if fit:
        parser.add_argument("--boundary", default="auto", choices=EDGE_RULES + ["auto", "none"],
                            help="edge rule (default auto: found from the border, and "
                            "recorded in the kernel file; none: fit only samples that do not "
                            "depend on it)")
    else:
        parser.add_argument("--boundary", choices=EDGE_RULES,
                            help="edge rule (default: the kernel file's, else fill)")
    parser.add_argument("--convention", choices=["convolution", "correlation"],
                        help="kernel orientation (default: " + (
                            "convolution)" if fit else "the kernel file's, else convolution)"))
    parser.add_argument("--origin", type=_size_or_auto if fit else _size,
                        default=(0,) if fit else None,
                        help="anchor shift in 'same' mode: N or NxM" + (
                            ", or auto: every placement of the size (a causal filter, a "
                            "library that anchors kernels elsewhere)" if fit else
                            " (default: the kernel file's, else 0)"))


def _size_or_auto(text):
    return "auto" if text == "auto" else _size(text)


def _size(text):
    try:
        values = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or KxL, got {text!r}") from None
    return values


def _reg(text):
    if text == "gcv":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'gcv', got {text!r}") from None


# --- fit ------------------------------------------------------------------------------------

def run_fit(args):
    from ._io import KERNEL_SUFFIXES

    inputs = (args.input, args.output, args.mask)
    if args.kernel_file:
        check_output_path(args.kernel_file, inputs, KERNEL_SUFFIXES, "kernel")
    if args.plot:
        check_output_path(args.plot, inputs, (".png",), "figure (PNG)")
    if args.kernel_file and args.plot and os.path.abspath(args.kernel_file) == \
            os.path.abspath(args.plot):
        raise UsageError(f"-o and --plot name the same file {args.plot}")
    lazy = args.dask or args.scheduler is not None or is_zarr(args.input) or \
        is_zarr(args.output)
    with _cluster(args.scheduler), contextlib.ExitStack() as resources:
        return _fit_files(args, lazy, resources)


# How long `--scheduler` tries to reach the scheduler before it gives up.
SCHEDULER_TIMEOUT = "10s"


def _noise(text):
    """'poisson:gain=G[,read=R]' or 'auto' as fit_kernel's noise, gain and read_noise."""
    if text == "auto":
        return {"noise": "auto"}
    model, _, rest = text.partition(":")
    if model != "poisson":
        raise argparse.ArgumentTypeError(f"expected poisson:gain=G[,read=R] or auto, got "
                                         f"{text!r}")
    found = {"noise": model}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, _, value = part.partition("=")
        name = {"gain": "gain", "read": "read_noise"}.get(key.strip())
        try:
            number = float(value)
        except ValueError:
            number = None
        if name is None or number is None:
            raise argparse.ArgumentTypeError(f"expected poisson:gain=G[,read=R] with numbers "
                                             f"G and R, got {text!r}")
        found[name] = number
    if "gain" not in found:
        raise argparse.ArgumentTypeError(f"poisson needs gain=G (photons per output unit), "
                                         f"got {text!r}")
    return found


def _smooth(text):
    if text == "gcv":
        return text
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a weight >= 0 or gcv, got {text!r}")
    return value


def _rank(text):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got "
                                         f"{text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {text!r}")
    return value


def _constraints(args):
    """The constraint flags as fit_kernel's `constraints` (None when there are none)."""
    if args.separable and args.rank not in (None, 1):
        raise UsageError(f"--separable is --rank 1; got --rank {args.rank} too")
    constraints = {}
    if args.nonneg:
        constraints["nonneg"] = True
    if args.sum is not None:
        constraints["sum"] = args.sum
    if args.symmetric:
        constraints["symmetry"] = args.symmetric
    if args.separable or args.rank is not None:
        constraints["rank"] = 1 if args.separable else args.rank
    if constraints and args.method != "lstsq":
        raise UsageError(f"constraints (--nonneg, --sum, --symmetric, --separable, --rank) "
                         f"are fitted with --method lstsq; got --method {args.method}")
    if "rank" in constraints and "symmetry" in constraints:
        raise UsageError("--symmetric does not combine with --separable or --rank")
    return constraints or None


@contextlib.contextmanager
def _cluster(address):
    """A Dask client of the scheduler at `address` for the fit (None: Dask's default, the
    local threads)."""
    if address is None:
        yield None
        return
    try:
        import distributed
    except ImportError:
        raise UsageError("--scheduler needs Dask's distributed scheduler: pip install "
                         "'kernelfit[dask]'") from None
    try:
        client = distributed.Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"--scheduler {address}: cannot connect ({_one_line(exc)})") \
            from None
    with client:
        yield client


def _fit_files(args, lazy, resources):
    from . import fit_kernel

    def read(path, what="image"):
        return read_lazily(path, resources, what) if lazy else read_image(path)

    image, input_notes = read(args.input)
    target, output_notes = read(args.output)
    for note in input_notes + output_notes:
        _say(f"note: {note}", args.quiet)
    channel_axis, channels = None, "shared"
    if args.color == "gray":
        image, target = _gray(image), _gray(target)
    elif image.ndim == 3 and image.shape[-1] in (3, 4) and target.ndim >= 2:
        channel_axis, channels = -1, args.color or "shared"
    elif args.color is not None:
        raise UsageError(f"--color {args.color} needs a colour INPUT; {args.input} is grey")
    mask = None
    if args.mask:
        mask_values, _ = read(args.mask, "mask")
        mask = (mask_values if lazy else np.asarray(mask_values)) != 0
        if mask.ndim == 3 and target.ndim == 2:
            mask = mask.any(axis=-1)
    weights = None
    if args.weights:
        weights, _ = read(args.weights, "weights")
        if weights.ndim == 3 and target.ndim == 2:
            raise UsageError(f"--weights {args.weights} has channels; OUTPUT "
                             f"{args.output} is grey: give one weight per sample")
    size = args.size if args.size == "auto" or len(args.size) > 1 else args.size[0]
    origin = args.origin if args.origin == "auto" or len(args.origin) > 1 else args.origin[0]
    if args.reg is not None and args.method != "ridge":
        raise UsageError(f"--reg is used only with --method ridge; got --method {args.method}")
    if args.method == "ridge" and args.reg is None:
        raise UsageError("--method ridge needs --reg: a non-negative number, or gcv")
    boundary = None if args.boundary == "none" else args.boundary
    if boundary == "auto" and args.mode == "valid":
        boundary = None  # 'valid' outputs never depend on an edge rule
    fit = fit_kernel(image, target, size, mode=args.mode, boundary=boundary,
                     convention=args.convention or "convolution", method=args.method,
                     options=_method_options(args.method, args.reg), bias=args.bias,
                     channel_axis=channel_axis, channels=channels, mask=mask, origin=origin,
                     max_size=args.max_size, progress=_progress(args),
                     constraints=_constraints(args), weights=weights, loss=args.loss,
                     errors=args.errors,
                     prior=None if args.smooth is None else {"laplacian": args.smooth},
                     **(args.noise or {}))
    peak = _peak(target)
    # (a weighted residual RMS is on the weights' scale: no PSNR of the image from it)
    psnr = (np.nan if fit.weighted else
            10 * np.log10(peak ** 2 / fit.residual_rms ** 2) if fit.residual_rms > 0
            else np.inf)
    identification, problem = _identify_fit(fit)
    if args.kernel_file:
        # written before the report: naming the kernel is extra, never a reason to lose it
        from ._io import write_kernel
        extra = {"psnr_db": round(float(psnr), 3) if np.isfinite(psnr) else None,
                 "input": args.input, "output": args.output,
                 "output_dtype": str(target.dtype)}
        if identification is not None:
            extra.update(identification=identification.description,
                         identified=identification.matches,
                         rational=identification.rational_text())
        write_kernel(args.kernel_file, fit, extra=extra)
    if not args.quiet:
        print(report(fit, args.input, args.output, image, target, psnr, identification))
    if problem is not None:
        _say(f"kernelfit: warning: could not identify the kernel ({problem}); the fit and "
             f"the kernel file stand", quiet=False)
    if args.kernel_file:
        _say(f"wrote {args.kernel_file}", args.quiet)
    if args.plot:
        from ._plot import fit_figure
        crop = ""
        if lazy:  # a crop at the centre: what a figure can show of a large image
            image, target, crop = _centre_crop(image, target, PLOT_CROP)
        fit_figure(args.plot, image, target, fit.predict(image), fit,
                   titles=(f"input: {os.path.basename(args.input)}{crop}",
                           f"output: {os.path.basename(args.output)}{crop}"))
        _say(f"wrote {args.plot}", args.quiet)
    failed = not fit.identifiable or fit.stop_reason not in (None, "converged")
    return EXIT_FAILED if args.strict and failed else EXIT_OK


# Inputs read in chunks are drawn as a crop of at most this many samples per axis.
PLOT_CROP = 1024


def _centre_crop(image, target, side):
    """The centre of both images, at most `side` samples per spatial axis, in memory; and
    the words that say so (empty when nothing was cut)."""
    spatial = min(image.ndim, target.ndim, 2)
    starts = [max(0, (n - side) // 2) for n in target.shape[:spatial]]
    index = tuple(slice(a, a + side) for a in starts)
    cut = any(n > side for n in target.shape[:spatial])
    words = (f" (centre {'x'.join(str(min(n, side)) for n in target.shape[:spatial])})"
             if cut else "")
    return np.asarray(image[index]), np.asarray(target[index]), words


def _identify_fit(fit):
    """(Identification or None, None or why not): a failure to name the kernel is reported,
    not raised, so that it cannot cost the user the fit."""
    if fit.kernel.ndim != len(fit.size):
        return None, None
    from ._identify import identify
    try:
        return identify(fit), None
    except Exception as error:  # any failure here must not lose the fit
        return None, _one_line(f"{type(error).__name__}: {error}")


def _progress(args):
    """Progress bars on stderr, on a terminal only, unless -q."""
    return not args.quiet and sys.stderr.isatty()


def _method_options(method, reg):
    """fit_kernel's options for a method chosen on the command line."""
    if method == "ridge":
        return {"reg": reg}
    if method == "tf":
        return {"verbose": False}  # the command line prints its own report
    return None


def _gray(array):
    array = array if hasattr(array, "dask") else np.asarray(array)  # a dask array stays lazy
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        return array[..., :3] @ np.array([0.299, 0.587, 0.114])
    return array


def _peak(target):
    if np.issubdtype(target.dtype, np.integer):
        return float(np.iinfo(target.dtype).max)
    if hasattr(target, "dask"):  # one pass, both ends
        import dask

        low, high = dask.compute(target.min(), target.max())
        return float(high - low) or 1.0
    return float(np.ptp(target)) or 1.0


def _describe(path, array):
    shape = "x".join(map(str, array.shape[:2])) if array.ndim >= 2 else f"{array.shape[0]}"
    kind = ("colour" if array.ndim == 3 else "grey" if array.ndim == 2 else "signal")
    return f"{path} ({shape} {kind} {array.dtype})"


# kernelfit's edge rules in scipy.ndimage's and OpenCV's names (filter2D has no wrap)
NDIMAGE_MODES = {"fill": "constant", "edge": "nearest", "wrap": "grid-wrap",
                 "symmetric": "reflect", "reflect": "mirror"}
OPENCV_BORDERS = {"fill": "cv2.BORDER_CONSTANT", "edge": "cv2.BORDER_REPLICATE",
                  "symmetric": "cv2.BORDER_REFLECT", "reflect": "cv2.BORDER_REFLECT_101"}


def recipes(fit):
    """How to re-apply the fitted filter exactly, as (library, Python expression) pairs: the
    expressions use `image`, `K` (fit.kernel), `bias`, `np`, and the library's module
    (`kernelfit`, `scipy`, `cv2`, `ImageFilter`), and give the fitted output (Pillow's:
    rounded to 8 bits). Other libraries are listed only where they do exactly that: a 2-D
    odd kernel at origin 0, one kernel for every channel, an edge rule they have."""
    from ._validation import BOUNDARIES

    boundary = None if fit.boundary is None else BOUNDARIES[fit.boundary]
    boundary = {"constant": "fill"}.get(boundary, boundary)
    plus_bias = "" if fit.bias is None else " + bias"
    shared = fit.channels in (None, "shared")
    found = [("kernelfit", "fit.predict(image)  or  kernelfit apply IMAGE KERNEL.json")]
    options = [f"convention={fit.convention!r}"] if fit.convention != "convolution" else []
    if fit.mode != "same":
        options.append(f"mode={fit.mode!r}")
    if boundary not in (None, "fill"):
        options.append(f"boundary={boundary!r}")
    if fit.fillvalue != 0 and boundary == "fill":
        options.append(f"fillvalue={fit.fillvalue!r}")
    if any(fit.origin):
        options.append(f"origin={tuple(fit.origin)!r}")
    if fit.channel_axis is not None:
        options.append(f"channel_axis={fit.channel_axis}, channels={fit.channels!r}")
    if fit.mode != "same" or boundary is not None:
        found.append(("kernelfit", "kernelfit.convolve(image, K" + "".join(
            f", {option}" for option in options) + ")" + plus_bias))
    simple = (len(fit.size) == 2 and shared and fit.mode == "same" and not any(fit.origin)
              and all(k % 2 for k in fit.size) and not np.iscomplexobj(fit.kernel))
    if not simple:
        return found
    flip = fit.convention == "convolution"
    if boundary is not None and fit.channel_axis is None:  # (ndimage: no channel axis)
        function = "convolve" if flip else "correlate"
        cval = f", cval={fit.fillvalue!r}" if boundary == "fill" and fit.fillvalue else ""
        found.append(("scipy", f"scipy.ndimage.{function}(image.astype(float), K, "
                      f"mode={NDIMAGE_MODES[boundary]!r}{cval}){plus_bias}"))
    if boundary in OPENCV_BORDERS and not (boundary == "fill" and fit.fillvalue):
        kernel = "K[::-1, ::-1]" if flip else "K"
        found.append(("OpenCV", f"cv2.filter2D(image.astype(np.float64), -1, {kernel}, "
                      f"borderType={OPENCV_BORDERS[boundary]}){plus_bias}"
                      + ("  (filter2D correlates)" if flip else "")))
    if fit.frame is not None and fit.size in ((3, 3), (5, 5)) and all(
            before == after == k // 2 for (before, after), k in zip(fit.frame, fit.size)) \
            and np.ndim(fit.bias) == 0:
        weights = "K[:, ::-1]" if flip else "K[::-1, :]"
        offset = "" if fit.bias is None else ", offset=bias"
        found.append(("Pillow", f"Image.fromarray(image).filter(ImageFilter.Kernel(K.shape, "
                      f"{weights}.ravel().tolist(), scale=1{offset}))  (8-bit)"))
    return found


def usage_note(fit):
    """The `recipes`, as lines of the report."""
    return "to re-apply it:\n" + "\n".join(f"  {library + ':':10} {expression}"
                                           for library, expression in recipes(fit))


def _edge_text(fit):
    if fit.boundary is not None:
        return fit.boundary
    if fit.frame is not None:
        widths = sorted({w for pair in fit.frame for w in pair})
        width = (f"{widths[0]}-sample" if len(widths) == 1 else
                 "(" + ", ".join(f"{a}/{b}" for a, b in fit.frame) + ")-sample")
        return f"none (the filter left a {width} frame as it was; predict and apply copy it)"
    return "none (interior samples only)"


def report(fit, input_path, output_path, image, target, psnr, identification=None):
    with np.printoptions(precision=4, suppress=True, linewidth=100, threshold=2000):
        shown = np.where(np.abs(fit.kernel) > 1e-12 * np.abs(fit.kernel).max(), fit.kernel, 0)
        kernel_text = np.array2string(shown, prefix="    ")
    finite = np.asarray(fit.stderr)[np.isfinite(fit.stderr)]
    lines = [
        f"input:  {_describe(input_path, image)}",
        f"output: {_describe(output_path, target)}",
        f"geometry: mode={fit.mode}, boundary={_edge_text(fit)}"
        + (f", origin={fit.origin}" if any(fit.origin) else "")
        + (f", channels={fit.channels}" if fit.channels else ""),
        "",
        f"kernel K, {'x'.join(map(str, fit.kernel.shape))}, {fit.convention} orientation:",
        "    " + kernel_text,
    ]
    if fit.bias is not None:
        lines.append(f"bias: {np.array2string(np.asarray(fit.bias), precision=4)}")
    lines.append(usage_note(fit))
    lines.append("")
    if finite.size:
        lines.append(f"stderr{' (sandwich)' if fit.errors == 'sandwich' else ''}: largest "
                     f"{finite.max():.3g}, median {np.median(finite):.3g}")
    lines.append(f"fit: {'weighted ' if fit.weighted else ''}residual RMS "
                 f"{fit.residual_rms:.4g}, R^2 {fit.r2:.6f}, "
                 + ("" if np.isnan(psnr) else
                    f"PSNR {psnr:.1f} dB (re-synthesised vs actual), ")
                 + f"{fit.n_equations} samples"
                 + (f", {fit.n_masked} masked or saturated" if fit.n_masked else ""))
    lines.append(f"identifiable: {'yes' if fit.identifiable else 'NO'} (rank {fit.rank} of "
                 f"{fit.n_unknowns} unknowns, condition number {fit.condition_number:.3g})")
    if fit.compression:
        c = fit.compression
        lines.append(f"compression: {c['format']} after the filter ({c['block']}x{c['block']} "
                     f"blocks in the residual: edge jumps {c['jumps'][0]:.2f}x and "
                     f"{c['jumps'][1]:.2f}x the median)"
                     + (f"; --size auto kept the smallest support within the compression "
                        f"error (the search alone found {'x'.join(map(str, c['searched']))})"
                        if c.get("searched") else ""))
    if fit.robust:
        lines.append(f"robust fit: {fit.robust['loss']} loss, residual scale "
                     f"{fit.robust['scale']:.3g} (median |residual| / 0.6745 of least "
                     f"squares), {fit.robust['outliers']} outliers beyond 3 scales"
                     + (" (black x on the --plot residual panel)" if fit.robust['outliers']
                        else ""))
    if fit.noise:
        from ._result import noise_text
        lines.append("noise model: " + noise_text(fit.noise)
                     + (": weighted by its variance at the prediction (chi^2/dof about 1 "
                        "when the model holds)" if "refits" in fit.noise else ""))
    if fit.constraints:
        lines.append("constraints: " + _constraints_text(fit))
    if fit.prior:
        weight = np.array2string(np.asarray(fit.prior["laplacian"]), precision=3)
        lines.append(f"smoothness prior: the kernel's Laplacian penalised with weight {weight}"
                     + (" (chosen by generalised cross-validation)"
                        if fit.prior["chosen_by"] == "gcv" else ""))
    if fit.size_scores:
        lines.append(f"size found: {'x'.join(map(str, fit.size))}, origin {fit.origin} "
                     f"(lowest BIC of {len(fit.size_scores)} candidate supports"
                     + (f"; the data allow a search up to {'x'.join(map(str, fit.size_limit))} "
                        f"only, whatever --max-size" if fit.size_limit else "") + ")")
    if fit.boundary_scores:
        ranked = sorted(fit.boundary_scores.items(), key=lambda item: item[1])
        best, value = ranked[0]
        ties = [rule for rule, v in ranked[1:] if abs(v - value) <= 1e-9 * max(value, 1e-300)]
        verdict = ("the border was left unchanged (no edge rule: fitted without that frame)"
                   if best == "unchanged" and fit.boundary is None else
                   f"{fit.boundary}" + (f" (indistinguishable here from {', '.join(ties)})"
                                        if ties else "")
                   if fit.boundary is not None else "none reproduces the border")
        lines.append(f"edge rule found: {verdict}; border residual RMS by rule: "
                     + ", ".join(f"{rule} {v:.3g}" for rule, v in ranked))
    if identification is not None:
        lines.append(("identified: " if identification.matches else "closest family: ")
                     + identification.description)
        if identification.rational is not None:
            lines.append(f"rational form: {identification.rational_text()}")
    if fit.n_steps is not None:
        lines.append(f"optimisation: {fit.n_steps} steps, {fit.stop_reason}, on {fit.device}")
    return "\n".join(lines)


def _constraints_text(fit):
    """The constraints a kernel was fitted under, in the flags' words."""
    c = fit.constraints
    parts = []
    if c.get("nonneg"):
        parts.append("non-negative")
    if "sum" in c:
        parts.append(f"sum {c['sum']:g}")
    if "symmetry" in c:
        parts.append(f"{c['symmetry']} symmetric")
    if "rank" in c:
        rank = c["rank"]
        parts.append(("separable (rank 1)" if rank == 1 else f"rank {rank}")
                     + (f", found by BIC over ranks {min(fit.rank_scores)}-"
                        f"{max(fit.rank_scores)}" if fit.rank_scores else ""))
    return "; ".join(parts)


# --- identify -------------------------------------------------------------------------------

def run_identify(args):
    from ._identify import identify
    from ._io import read_fit

    stderr = origin = None
    if args.kernel.lower().endswith(".json"):  # judged against the fit's standard errors
        fit, content = read_fit(args.kernel)
        kernel, recorded = np.asarray(fit.kernel), fit.convention
        if content.get("stderr") is not None and kernel.ndim == len(fit.size):
            stderr = np.asarray(fit.stderr)  # NaN where not determined
            origin = fit.origin
    else:
        kernel, recorded = read_kernel(args.kernel)
    result = identify(kernel, tolerance=args.tolerance, stderr=stderr, origin=origin,
                      convention=args.convention or recorded or "convolution")
    if not args.quiet:
        print(result)
    return EXIT_OK if result.matches else EXIT_FAILED


# --- apply ----------------------------------------------------------------------------------

def parse_kernel_spec(text, convention):
    """`name:key=value,...` -> the named kernel, oriented for `convention`."""
    name, _, params = text.partition(":")
    if name not in NAMED_KERNELS:
        raise UsageError(f"{text}: no such file, and {name!r} is not a kernel name (one of "
                         f"{', '.join(NAMED_KERNELS)})")
    function = NAMED_KERNELS[name]
    accepted = inspect.signature(function).parameters
    kwargs = {}
    for item in filter(None, params.split(",")):
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"{text}: expected key=value, got {item!r}")
        if key not in accepted or key == "rng":
            options = ", ".join(p for p in accepted if p not in ("convention", "rng"))
            raise UsageError(f"{text}: {name} takes {options or 'no parameters'}; got {key!r}")
        if key in kwargs:
            raise UsageError(f"{text}: {key!r} is given twice")
        kwargs[key] = _value(value)
    if "convention" in accepted:
        kwargs["convention"] = convention
    try:
        return np.asarray(function(**kwargs), dtype=float)
    except TypeError as exc:
        raise UsageError(f"{text}: {exc}") from None


def _value(text):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if "x" in text and all(part.lstrip("-").isdigit() for part in text.split("x")):
        return tuple(int(part) for part in text.split("x"))
    return text


def load_kernel(text, convention):
    """A kernel from a file or a name; returns (kernel, convention to apply it with)."""
    if os.path.exists(text):
        kernel, recorded = read_kernel(text)
        return kernel, convention or recorded or "convolution"
    if os.path.splitext(text)[1].lower() in (".npy", ".txt", ".csv", ".json"):
        raise FileError(f"{text}: no such file")
    convention = convention or "convolution"
    return parse_kernel_spec(text, convention), convention


def run_apply(args):
    from ._io import write_image

    from ._io import IMAGE_SUFFIXES

    check_output_path(args.output, (args.image, args.kernel), IMAGE_SUFFIXES + (".npy",))
    image, notes = read_image(args.image)
    for note in notes:
        _say(f"note: {note}", args.quiet)
    if args.kernel.lower().endswith(".json") and os.path.exists(args.kernel):
        result, dtype = _apply_fit(args, image)
    else:
        kernel, convention = load_kernel(args.kernel, args.convention)
        colour = image.ndim == 3 and image.shape[-1] in (3, 4)
        origin = 0 if args.origin is None else (
            args.origin if len(args.origin) > 1 else args.origin[0])
        from . import convolve
        result = convolve(image, kernel, mode=args.mode or "same",
                          boundary=args.boundary or "fill", convention=convention,
                          channel_axis=-1 if colour else None, origin=origin)
        dtype = image.dtype
    result = _output_values(result, dtype, args)
    write_image(args.output, result)
    _say(f"wrote {args.output} ({'x'.join(map(str, result.shape))} {result.dtype})",
         args.quiet)
    return EXIT_OK


def _apply_fit(args, image):
    """A kernel file from `kernelfit fit -o`, applied as fitted: kernel, bias, mode, edge
    rule (or the frame the filter left unchanged), origin, channels and convention, each
    overridden by its option when given. Returns the result and the dtype to round to."""
    import dataclasses

    from ._io import read_fit

    fit, content = read_fit(args.kernel)
    changes = {name: value for name, value in (
        ("mode", args.mode), ("boundary", args.boundary), ("convention", args.convention),
        ("origin", None if args.origin is None else tuple(args.origin) * (
            len(fit.size) if len(args.origin) == 1 else 1))) if value is not None}
    if "origin" in changes and len(changes["origin"]) != len(fit.size):
        raise UsageError(f"--origin needs {len(fit.size)} values for {args.kernel}'s "
                         f"{len(fit.size)}-D kernel")
    if "boundary" in changes:
        changes["frame"] = None
    colour = image.ndim == len(fit.size) + 1
    if fit.channel_axis is not None and not colour:
        raise UsageError(f"{args.kernel} was fitted to images with channels; {args.image} "
                         f"has shape {image.shape}")
    if fit.channel_axis is None and colour:  # a grey fit: every channel alike
        if np.ndim(fit.bias) > 0:
            raise UsageError(f"{args.kernel} has one bias per channel but no channel axis")
        changes.update(channel_axis=-1, channels="shared")
    if image.ndim not in (len(fit.size), len(fit.size) + 1):
        raise UsageError(f"{args.kernel} holds a {len(fit.size)}-D kernel; {args.image} has "
                         f"shape {image.shape}")
    fit = dataclasses.replace(fit, **changes)
    boundary = None
    if fit.mode == "same" and fit.boundary is None and fit.frame is None:
        boundary = "fill"
        _say(f"note: {args.kernel} records no edge rule (the fit found none that reproduces "
             f"the border); the border samples use --boundary fill", args.quiet)
    result = fit.predict(image, boundary=boundary)
    recorded = content.get("output_dtype")
    try:
        dtype = np.dtype(recorded) if isinstance(recorded, str) else image.dtype
    except TypeError:
        dtype = image.dtype
    return result, dtype


def _output_values(result, dtype, args):
    """The result as written: rounded to an integer `dtype` unless --float."""
    from .synth import quantize

    if not args.float and np.issubdtype(dtype, np.integer):
        return quantize(result, dtype)
    if args.output.lower().endswith((".tif", ".tiff")):
        return result.astype(np.float32)
    return result


# --- demo -----------------------------------------------------------------------------------

def run_demo(args):
    import time

    from . import fit_kernel
    from .data import portrait
    from .synth import synthesize

    path = None
    if args.out:
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            raise UsageError(f"--out {args.out}: is a file, not a directory")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "demo.png")
        check_output_path(path)
    image = portrait()
    hidden = DEMO_KERNELS[args.kernel]()
    output = synthesize(image, hidden, boundary="edge", noise=args.noise, dtype=np.uint8,
                        rng=0)
    start = time.perf_counter()
    fit = fit_kernel(image, output, hidden.shape, method=args.method,
                     options=_method_options(args.method, "gcv"))
    elapsed = time.perf_counter() - start
    if not args.quiet:
        print(f"kernelfit demo: the portrait ({image.shape[0]}x{image.shape[1]}, from "
              f"matplotlib's sample data) filtered by a hidden {args.kernel} kernel, "
              f"{'noise ' + format(args.noise, 'g') + ' and ' if args.noise else ''}"
              f"rounded to 8 bits; recovered by {args.method} in {elapsed:.2f} s.\n")
        print(side_by_side([("true", hidden), ("recovered", fit.kernel),
                            ("error", fit.kernel - hidden)]))
        error = np.abs(fit.kernel - hidden).max()
        print(f"\nmax |error| {error:.2g} (largest stderr {np.nanmax(fit.stderr):.2g}); "
              f"residual RMS {fit.residual_rms:.3g} grey levels (8-bit rounding alone gives "
              f"{1 / np.sqrt(12):.3g}); identifiable: {'yes' if fit.identifiable else 'NO'}, "
              f"condition number {fit.condition_number:.3g}")
    if path:
        from ._plot import fit_figure
        fit_figure(path, image, output, fit.predict(image, boundary="edge"), fit,
                   titles=("input: portrait", f"output: hidden {args.kernel}, 8-bit"))
        _say(f"wrote {path}", args.quiet)
    return EXIT_OK


def side_by_side(named):
    """Matrices printed next to each other under their names."""
    blocks = []
    for name, matrix in named:
        matrix = np.atleast_2d(matrix)
        cells = [[f"{v: .4f}" for v in row] for row in matrix]
        width = max(len(" ".join(row)) for row in cells)
        blocks.append([name.center(width)] + [" ".join(row) for row in cells])
    return "\n".join("   ".join(block[i] if i < len(block) else "" for block in blocks)
                     for i in range(max(len(b) for b in blocks)))


# --- animate --------------------------------------------------------------------------------

def run_animate(args):
    from ._plot import sliding_window_gif

    check_output_path(args.output, (args.image, args.kernel), (".gif",), "animation")

    if args.image is None:
        image = np.array([[10.0, 10, 10, 0, 0]] * 5)
        stride = args.stride or 1
    else:
        if args.image == "portrait":
            from .data import portrait
            image = portrait()
        else:
            image, _ = read_image(args.image)
        image = _resize(_gray(image), args.width)
        stride = args.stride or 3
    if args.kernel is None:
        kernel = np.array([[1.0, 0, -1]] * 3)
        convention = args.convention
    else:
        kernel, convention = load_kernel(args.kernel, args.convention)
    if kernel.ndim != 2 or any(k > n for k, n in zip(kernel.shape, image.shape)):
        raise UsageError(f"the kernel must be 2-D and no larger than the image {image.shape}; "
                         f"got {kernel.shape}")
    if args.stride is not None and args.stride < 1 or args.fps <= 0:
        raise UsageError("--stride and --fps must be positive")
    frames = int(np.prod([-(-(n - k + 1) // stride) for n, k in zip(image.shape,
                                                                    kernel.shape)]))
    if frames > MAX_FRAMES:
        raise UsageError(f"{frames} frames (an image {image.shape[1]} wide, stride {stride}); "
                         f"at most {MAX_FRAMES}: use a smaller --width or a larger --stride")
    frames = sliding_window_gif(args.output, image, kernel, convention=convention,
                                stride=stride, fps=args.fps, progress=_progress(args))
    _say(f"wrote {args.output} ({frames} frames)", args.quiet)
    return EXIT_OK


# An animation draws every frame in memory before writing the GIF: a few minutes at most.
MAX_FRAMES = 2000
MAX_WIDTH = 400


def _resize(image, width):
    from PIL import Image

    if not 3 <= width <= MAX_WIDTH:
        raise UsageError(f"--width must be from 3 to {MAX_WIDTH}; got {width}")
    height = max(3, round(image.shape[0] * width / image.shape[1]))
    picture = Image.fromarray(np.asarray(image, dtype=np.float32))
    return np.asarray(picture.resize((width, height), Image.Resampling.LANCZOS), dtype=float)
