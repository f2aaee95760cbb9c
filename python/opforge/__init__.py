"""opforge in Python: the operators on NumPy arrays, datagen datasets and
on-the-fly pairs for training.

Images are NumPy arrays, H×W (grey) or H×W×3 (RGB): float32 in [0, 1], or
uint8/uint16 (scaled by 1/255 or 1/65535, as the image readers scale PNG
samples). Results are new float32 arrays. Bad input raises ValueError with
the same one-line message as the `opforge` command line.

Every operator is a function named after it, with its parameters as keyword
arguments (a parameter that is a Python keyword takes a trailing underscore:
``lambda_``)::

    import opforge
    img = opforge.read_image("photo.png")
    smooth = opforge.l0_smooth(img, lambda_=0.02)
    same = opforge.apply("l0_smooth", img, lambda_=0.02)

``help(opforge.l0_smooth)`` shows each parameter's default, valid range and
the paper it follows.
"""

from __future__ import annotations

import inspect
import json
import keyword
import math
from typing import Any, Callable, Optional

from . import _opforge

__all__ = ["operators", "apply", "read_image", "write_image", "metrics", "Dataset", "generate", "Sampler",
           "set_threads", "Model"]

_REGISTRY = json.loads(_opforge.registry_json())["operators"]


def operators() -> list[dict]:
    """The operator registry: each operator's name, summary, citation, kind,
    version and parameters (type, default, valid range, sampling scale, doc),
    the same data as ``opforge list --json``."""
    return json.loads(_opforge.registry_json())["operators"]


def _python_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


def _text(value: Any) -> str:
    """A parameter value as the command line would spell it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return repr(value)  # the shortest text that reads back as the same double
    return str(value)


def _params_text(name: str, params: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in params.items():
        # `lambda_` is `lambda`: Python keywords take a trailing underscore.
        registry_key = key[:-1] if key.endswith("_") and keyword.iskeyword(key[:-1]) else key
        if registry_key in out:
            raise ValueError(f"{name}: parameter '{registry_key}' is given more than once")
        out[registry_key] = _text(value)
    return out


def apply(name: str, image, *, seed: int = 0, **params):
    """Runs operator `name` on `image` with `params` (defaults for the rest).

    `seed` drives operators that draw random numbers (gaussian_noise). Raises
    ValueError for an unknown operator or parameter, a value out of range, or
    an image the operator refuses."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0 or seed >= 2**64:
        raise ValueError(f"seed {seed!r} is invalid; valid: an integer in 0..18446744073709551615")
    return _opforge.apply(name, image, _params_text(name, params), seed)


def set_threads(threads: Optional[int]) -> None:
    """Limits opforge's worker threads in this process to 1..1024 (None:
    every core), as ``--threads`` does. Results never depend on it."""
    _opforge.set_threads(threads)


def read_image(path) -> "numpy.ndarray":
    """Reads a PNG (8/16-bit), JPEG or .npy image as the CLI does: float32,
    H×W or H×W×3, RGB."""
    return _opforge.read_image(path)


def write_image(path, image, depth: int = 8) -> None:
    """Writes by extension as the CLI does: .png (clipped, rounded to `depth`
    8 or 16 bits), .jpg, or .npy (float32, unclipped). The file appears
    whole or not at all."""
    _opforge.write_image(path, image, depth)


def metrics(a, b, y_channel: bool = False, shave: int = 0) -> dict[str, float]:
    """PSNR (dB, peak 1), SSIM (MATLAB's) and the largest absolute difference
    of two images; `y_channel` compares MATLAB rgb2ycbcr luma only, `shave`
    drops that many border pixels first (the SR protocol)."""
    return _opforge.metrics(a, b, y_channel, shave)


def generate(recipe, out, *, sources: Optional[str] = None, threads: Optional[int] = None, resume: bool = False,
             progress: Optional[Callable[[int, int, int, float], None]] = None) -> dict:
    """Runs `opforge datagen RECIPE --out OUT`: the same dataset, byte for
    byte. `sources` replaces the recipe's sources (a directory, glob or list
    file); `progress(done, planned, failed, seconds)` is called as pairs
    finish. Returns the run's counts."""
    return _opforge.generate(recipe, sources, out, threads, resume, progress)


class Dataset:
    """The rows of a finished datagen dataset (its metadata.jsonl), read by
    opforge's own dataset reader. ``ds[i]`` is a dict with ``input`` and
    ``output`` (float32 arrays) and the row's provenance (``key``,
    ``operator``, ``params``, ``seed``, ``source``, …).

    `split` is None (every row), "train" or "validation": a split by source
    image (every pair of one photo on one side), `validation_sources` of them
    held out, chosen by `seed` and the sources' content.

    With torch installed it is a ``torch.utils.data.Dataset`` as it is (it
    has ``__len__`` and ``__getitem__``); opforge does not import torch."""

    def __init__(self, dir, split: Optional[str] = None, *, validation_sources: int = 1, seed: int = 0):
        self._args = (str(dir), split, validation_sources, seed)
        self._files = _opforge.DatasetFiles(dir)
        if split is None:
            self._rows = list(range(len(self._files)))
        elif split in ("train", "validation"):
            self._rows = self._files.split(validation_sources, seed, split == "validation")
        else:
            raise ValueError(f"split '{split}' is invalid; valid: None, 'train', 'validation'")

    # Pickled as its arguments, so DataLoader workers started by "spawn" read it again.
    def __getstate__(self):
        return self._args

    def __setstate__(self, args):
        dir, split, validation_sources, seed = args
        self.__init__(dir, split, validation_sources=validation_sources, seed=seed)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i: int) -> dict:
        if i < 0:
            i += len(self._rows)
        if not 0 <= i < len(self._rows):
            raise IndexError(f"row {i} of a dataset of {len(self._rows)}")
        row = self._rows[i]
        item = json.loads(self._files.row_json(row))
        item["input"], item["output"] = self._files.images(row)
        return item


class Sampler:
    """Fresh (input, output, info) triples for on-the-fly training, made as
    datagen makes them: item k is the pair datagen writes under the same key
    (source k // pairs_per_source, pair k % pairs_per_source), with the same
    seed, parameters and crop, so the same key gives the same values.
    ``info`` holds the key, operator, seed, source and params.

    Indexable (a torch ``Dataset`` as it is) and iterable; `sources`
    replaces the recipe's sources."""

    def __init__(self, recipe, sources: Optional[str] = None):
        self._args = (str(recipe), sources)
        self._maker = _opforge.PairMaker(recipe, sources)

    # Pickled as its recipe and sources, so DataLoader workers started by
    # "spawn" (or "forkserver") make their own.
    def __getstate__(self):
        return self._args

    def __setstate__(self, args):
        self._args = args
        self._maker = _opforge.PairMaker(*args)

    def __len__(self) -> int:
        return len(self._maker)

    def __getitem__(self, k: int):
        if k < 0:
            k += len(self._maker)
        made, output, info = self._maker.pair(k)
        info["params"] = json.loads(info.pop("params_json"))  # as the metadata row records them
        return made, output, info

    def __iter__(self):
        for k in range(len(self._maker)):
            yield self[k]

    def key(self, k: int) -> str:
        return self._maker.key(k)


class Model:
    """A learned network (an opforge .safetensors file: the published CAN
    models or one the trainer wrote), run as ``opforge infer`` runs it."""

    def __init__(self, path):
        self._file = _opforge.ModelFile(path)

    @property
    def metadata(self) -> dict[str, str]:
        """The file's network spec and provenance (licence, source, …)."""
        return self._file.metadata()

    def run(self, image, *, planes=None, operator: Optional[str] = None, params: Optional[dict] = None,
            device: str = "cpu", device_index: Optional[int] = None, fp16: bool = False):
        """The network's raw output (float32, unclipped) for an RGB image.

        The constant input planes of a parameterized or combined model come
        from one of: `planes` (one value per plane), `operator` (a combined
        model's one-hot planes, by name) or `params` (operator parameters
        mapped as the network was trained). `device` is "cpu" (the reference
        executor) or "vulkan" (`device_index` as ``opforge infer
        --list-devices`` numbers them; `fp16` stores activations in half
        precision)."""
        if planes is not None:
            planes = [float(v) for v in planes]
        if params is not None:
            params = {k: float(v) for k, v in params.items()}
        return self._file.run(image, planes, operator, params, device, device_index, fp16)


def _operator_function(op: dict) -> Callable:
    name = op["name"]
    specs = op["params"]

    def run(image, *, seed: int = 0, **params):
        return apply(name, image, seed=seed, **params)

    parameters = [inspect.Parameter("image", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    lines = [op["summary"] + ".", ""]
    for p in specs:
        py_name = _python_name(p["name"])
        default = inspect.Parameter.empty if p.get("required") else p["default"]
        annotation = {"real": float, "integer": int, "boolean": bool}.get(p["type"], str)
        parameters.append(inspect.Parameter(py_name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                            annotation=annotation))
        shown = "required" if p.get("required") else f"default {_text(p['default'])}"
        lines.append(f"{py_name} ({p['type']}, {shown}; valid {p['range']}): {p['doc']}")
    parameters.append(inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=int))
    lines += ["seed: for operators that draw random numbers", "", f"{op['kind']}, version {op['version']}.",
              "", op["citation"]]
    run.__name__ = run.__qualname__ = name
    run.__doc__ = "\n".join(lines)
    run.__signature__ = inspect.Signature(parameters)
    return run


for _op in _REGISTRY:
    globals()[_op["name"]] = _operator_function(_op)
    __all__.append(_op["name"])
del _op
