"""Shared helpers for the PyTorch reference benchmarks (bench/torch_*.py).

Importing this module uses only the standard library, so a script can call
ensure_venv() before torch is imported.  ensure_venv() re-executes the script
under a virtual environment that has torch, diffusers, transformers,
safetensors and numpy, creating it with pip when it is missing.

Environment:
  CASCADE_BENCH_VENV     venv folder (default: <repo>/../venv, outside the repo)
  CASCADE_BENCH_UNPINNED set to 1 to install the newest versions instead of PINS
"""
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SHARED = os.path.join(REPO, "..", "shared")
DEFAULT_VENV = os.path.normpath(os.path.join(REPO, "..", "venv"))

# Versions the committed RESULTS-torch.md was measured with.
PINS = ["torch==2.15.0", "diffusers==0.42.1", "transformers==5.24.0",
        "safetensors==0.8.0", "numpy==2.4.6"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
NEEDED = ("torch", "diffusers", "transformers", "safetensors", "numpy")


def _have_modules():
    return all(importlib.util.find_spec(m) is not None for m in NEEDED)


def _pip(py, args):
    cmd = [py, "-m", "pip", "install", "--disable-pip-version-check"] + args
    print("bench: " + " ".join(cmd), file=sys.stderr)
    return subprocess.call(cmd)


def _create_venv(venv):
    subprocess.check_call([sys.executable, "-m", "venv", venv])
    py = os.path.join(venv, "bin", "python")
    pins = PINS if not os.environ.get("CASCADE_BENCH_UNPINNED") else [
        p.split("==")[0] for p in PINS]
    # The CPU-only wheel is ~200 MB instead of several GB of CUDA libraries;
    # fall back to PyPI where that index is unreachable.
    if _pip(py, ["--index-url", CPU_INDEX, "--timeout", "15", "--retries", "0",
                 pins[0]]) != 0:
        if _pip(py, [pins[0]]) != 0:
            raise SystemExit("bench: could not install " + pins[0])
    if _pip(py, pins[1:]) != 0:
        raise SystemExit("bench: could not install " + " ".join(pins[1:]))


def ensure_venv():
    """Run under an interpreter that has the benchmark packages (may exec)."""
    venv = os.path.abspath(os.environ.get("CASCADE_BENCH_VENV", DEFAULT_VENV))
    if os.path.realpath(sys.prefix) == os.path.realpath(venv):
        if not _have_modules():
            _pip(sys.executable, PINS)
        return
    if _have_modules() and "CASCADE_BENCH_VENV" not in os.environ:
        return
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        _create_venv(venv)
    os.execv(py, [py, os.path.abspath(sys.argv[0])] + sys.argv[1:])


def use_wheels(folder):
    """Import packages straight from the wheels in folder (no pip, nothing written).

    A machine without a package index (the GPU machine) gets diffusers this way:
    each DIR/*.whl whose distribution is not installed already goes on sys.path
    as a zip archive (pure-Python wheels import from there, metadata included).
    Returns the wheel file names used."""
    import glob
    import importlib.metadata as im
    used = []
    for whl in sorted(glob.glob(os.path.join(folder, "*.whl")), reverse=True):
        dist = os.path.basename(whl).split("-")[0]
        try:
            im.version(dist)
            continue                     # installed (or an earlier wheel of it)
        except im.PackageNotFoundError:
            pass
        if not whl.endswith("-none-any.whl"):
            print("bench: %s: not a pure-Python wheel, skipped" % whl, file=sys.stderr)
            continue
        sys.path.insert(0, whl)
        importlib.invalidate_caches()
        used.append(os.path.basename(whl))
    return used


def set_threads_env(n):
    """Must run before torch is imported so OpenMP/MKL pools get n threads."""
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[k] = str(n)


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions():
    import torch
    v = {"torch": torch.__version__, "python": platform.python_version()}
    for m in ("diffusers", "transformers", "safetensors", "numpy"):
        try:
            v[m] = __import__(m).__version__
        except ImportError:
            pass
    return v


def emit(rec):
    """One JSON object per line on stdout (the measurement record)."""
    print(json.dumps(rec, sort_keys=False), flush=True)


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def time_runs(fn, warmup, runs, cpu_times=None):
    """Call fn() warmup times untimed, then runs times; returns wall seconds.

    cpu_times, if a list, receives the process CPU seconds of each run: with
    T threads and an idle machine it is about T x wall; much less means other
    processes took the cores (the wall time is then inflated).
    """
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
    return ts


def name_seed(seed, name):
    """Per-tensor seed: the same tensor gets the same values in any order."""
    return (seed * 1000003 ^ zlib.crc32(name.encode())) & 0x7FFFFFFFFFFF


def init_rule(name, is_norm_affine):
    """(kind, std) for one tensor of the official or diffusers layout.

    kind: 'normal' = N(0, std); 'one' = 1 + N(0, std); 'ones'; 'zeros'.
    Stage C/B LayerNorms have no parameters; CLIP's LayerNorm and BatchNorm
    weights start near 1 so activations keep a sane scale.
    """
    if name.endswith("running_var"):
        return ("ones", 0.0)
    if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
        return ("zeros", 0.0)
    if is_norm_affine and name.endswith(".weight"):
        return ("one", 0.02)
    return ("normal", 0.02)


def random_tensor(torch, name, shape, seed, is_norm_affine, dtype=None):
    kind, std = init_rule(name, is_norm_affine)
    dtype = dtype or torch.float32
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if kind == "ones":
        return torch.ones(shape, dtype=dtype)
    if kind == "zeros":
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed(name_seed(seed, name))
    t = torch.randn(shape, generator=g, dtype=torch.float32).mul_(std)
    if kind == "one":
        t.add_(1.0)
    return t.to(dtype)


def randomize_module_(torch, model, seed=1234):
    """Fill every parameter/buffer of a module in place with init_rule values."""
    norm_types = (torch.nn.LayerNorm, torch.nn.BatchNorm2d, torch.nn.GroupNorm)
    norm_prefixes = set()
    for mname, mod in model.named_modules():
        if isinstance(mod, norm_types) and getattr(mod, "weight", None) is not None:
            norm_prefixes.add(mname)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            prefix = name.rsplit(".", 1)[0] if "." in name else ""
            v = random_tensor(torch, name, tuple(t.shape), seed,
                              prefix in norm_prefixes, dtype=t.dtype)
            t.copy_(v)


def build_random(torch, ctor, seed=1234, dtype=None, fill=True):
    """Construct a module on the meta device, materialise it, fill it.

    Avoids the framework's own (slow, full-size) initialisation; fill=False
    leaves the memory uninitialised (weights are loaded afterwards).
    """
    with torch.device("meta"):
        model = ctor()
        if dtype is not None:
            model = model.to(dtype)   # before materialising: no fp32 copy
    model = model.to_empty(device="cpu")
    if fill:
        randomize_module_(torch, model, seed)
    return model.eval()


def flops_of(torch, fn):
    """GEMM/conv/attention FLOPs (2 per multiply-add) of one call of fn()."""
    from torch.utils.flop_counter import FlopCounterMode
    fc = FlopCounterMode(display=False)
    with torch.inference_mode(), fc:
        fn()
    per_op = {str(k): int(v) for k, v in fc.get_flop_counts()["Global"].items()}
    return int(fc.get_total_flops()), per_op


def base_record(torch, threads):
    rec = {"cpu": cpu_model(), "nproc": os.cpu_count(), "threads": threads,
           "loadavg": [round(x, 2) for x in os.getloadavg()],
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    rec.update(versions())
    return rec
