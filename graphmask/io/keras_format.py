"""Keras 3 files: the ``.keras`` archive and ``.weights.h5``, read and written without Keras.

A ``.keras`` file is a zip of ``metadata.json`` (``keras_version``), ``config.json`` (the
model: ``Functional`` or ``Sequential``, its layers' configs and calls, and the compile
config) and ``model.weights.h5`` (see :mod:`graphmask.io.keras_h5`). Reading never runs
code from the file: classes come from graphmask's allow-list, ``Lambda`` and subclassed
models are refused, and nothing is unpickled. Members are read with the same size limits
as graphmask's own archive (:data:`graphmask.io.saving.MAX_MEMBER_BYTES`).

Entry points (``graphmask.saving.load_model`` and friends dispatch here by suffix):
:func:`load_keras_model`, :func:`save_keras_model`, :func:`load_keras_weights`,
:func:`save_keras_weights`.
"""
from __future__ import annotations

import datetime
import io
import json
import os
import zipfile
import zlib

from graphmask.errors import ConfigError, FileFormatError, GraphmaskError
from graphmask.io import keras_config as kc
from graphmask.io import keras_graph, keras_h5, keras_optimizer
from graphmask.io.saving import (
    ModelFileExistsError,
    _check_declared_sizes,
    _read_member,
    _restore_optimizer,
    _write_atomic,
)
from graphmask.utils import rng

#: The newest Keras major version whose format graphmask reads.
KERAS_MAJOR = 3
#: What graphmask writes as ``keras_version``: the Keras release its format follows.
WRITES_KERAS_VERSION = "3.5.0"
#: Keras optimizer config keys graphmask drops when they hold Keras's default.
_OPTIMIZER_NEUTRAL = {"weight_decay": None, "use_ema": False, "ema_momentum": 0.99,
                      "ema_overwrite_frequency": None, "loss_scale_factor": None,
                      "gradient_accumulation_steps": None}


def _name(filepath) -> str:
    try:
        return os.fsdecode(os.fspath(filepath))
    except TypeError:
        raise ConfigError(f"filepath must be a str or os.PathLike, got "
                          f"{type(filepath).__name__}") from None


# ---- reading ------------------------------------------------------------------------------
def read_archive(filepath) -> tuple[dict, bytes]:
    """``(config, weights bytes)`` of a ``.keras`` file, every member checked."""
    path = _name(filepath)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such Keras file: {path!r}")
    try:
        zf = zipfile.ZipFile(path, "r")
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as e:
        raise FileFormatError(f"{path!r} is not a Keras 3 '.keras' file: not a zip archive "
                              f"({e}); a legacy HDF5 model (Keras 2) is not supported") from None
    with zf:
        _check_declared_sizes(zf, path)
        names = set(zf.namelist())
        for member in ("metadata.json", "config.json"):
            if member not in names:
                raise FileFormatError(f"{path!r} is not a Keras 3 '.keras' file: it has no "
                                      f"{member}")
        meta = _json(zf, "metadata.json", path)
        version = meta.get("keras_version") if isinstance(meta, dict) else None
        major = str(version).split(".")[0]
        if not major.isdigit():
            raise FileFormatError(f"{path!r}: metadata.json has no valid keras_version "
                                  f"({version!r})")
        if int(major) > KERAS_MAJOR:
            raise FileFormatError(f"{path!r} was written by Keras {version}, a newer format "
                                  f"than graphmask reads (Keras {KERAS_MAJOR}.x)")
        if int(major) < KERAS_MAJOR:
            raise FileFormatError(f"{path!r} was written by Keras {version}; graphmask "
                                  f"reads Keras {KERAS_MAJOR} files only")
        config = _json(zf, "config.json", path)
        if "model.weights.h5" not in names:
            other = sorted(n for n in names if n.startswith("model.weights"))
            found = f" (found {other}: only the HDF5 layout is read)" if other else ""
            raise FileFormatError(f"{path!r}: the weights member model.weights.h5 is "
                                  f"missing{found}")
        weights = _read_member(zf, "model.weights.h5", path)
    if not isinstance(config, dict):
        raise FileFormatError(f"{path!r}: config.json must hold an object")
    return config, weights


def _json(zf, member, path):
    try:
        return json.loads(_read_member(zf, member, path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FileFormatError(f"{path!r}: {member} is not valid JSON ({e})") from None


def model_from_config(config: dict, path, call=None):
    """A graphmask model from a Keras model config; loading draws no random numbers from
    the user's stream (building layers draws initial weights)."""
    saved = rng().bit_generator.state
    try:
        return keras_graph.build_model(config, path, call)
    finally:
        rng().bit_generator.state = saved


def load_keras_model(filepath, compile: bool = True):
    """Read a Keras 3 ``.keras`` file: the model, its weights and (``compile=True``) its
    losses, metrics and optimizer settings, and the optimizer's state (step count,
    learning rate, moments), so training resumes where it stopped.

    Raises
    ------
    FileFormatError
        Not a zip, a newer or older Keras format, a missing member or weight, an HDF5
        layout that does not match the config, or layers graphmask does not have
        (:class:`~graphmask.io.keras_config.UnsupportedLayers`, listing each).
    ImportError
        h5py is not installed (the message says what to install).
    """
    keras_h5.h5py()
    path = _name(filepath)
    config, data = read_archive(path)
    model = model_from_config(config, path)
    weights = keras_h5.read(model, io.BytesIO(data), f"{path!r}")
    model.set_weights(weights)
    ccfg = config.get("compile_config")
    if compile and isinstance(ccfg, dict) and ccfg.get("loss") is not None:
        compile_from_keras(model, ccfg, path)
        saved = keras_h5.read_optimizer(io.BytesIO(data), f"{path!r}")
        state = None if saved is None else keras_optimizer.from_keras(model, saved,
                                                                       f"{path!r}")
        if state is not None:
            _restore_optimizer(model, state, path)
    return model


def load_keras_weights(model, filepath) -> None:
    """Set ``model``'s weights from a Keras ``.weights.h5`` file (or a ``.keras`` file),
    matched by Keras's layout; nothing changes unless every array fits."""
    keras_h5.h5py()
    path = _name(filepath)
    if path.lower().endswith(".keras"):
        _, data = read_archive(path)
        source = io.BytesIO(data)
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no such weights file: {path!r}")
        source = path
    model.set_weights(keras_h5.read(model, source, f"{path!r}"))


# ---- compile config ------------------------------------------------------------------------
def _plain(value, what: str, path):
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        return {"class_name": value["class_name"], "config": kc.strip_ids(value.get("config")
                                                                            or {})}
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{path!r}: compile config: {what} {value!r} is not supported; load "
                      f"with compile=False")


def _metric_names(value, what: str):
    """A compile config's metrics as given (names: a list, a list per output, or a dict
    by output name); metric objects' configs are refused (only names are read)."""
    def names(v):
        return v is None or isinstance(v, str) or (
            isinstance(v, list) and all(isinstance(m, str) for m in v))
    if value is None or names(value):
        return value
    if isinstance(value, list) and all(names(v) for v in value):
        return value
    if isinstance(value, dict) and "class_name" not in value and all(
            names(v) for v in value.values()):
        return value
    raise ConfigError(f"{what} {value!r} (only metric names are read)")


def compile_from_keras(model, ccfg: dict, path) -> None:
    from graphmask.training import losses as losses_mod
    from graphmask.training import optimizers as optimizers_mod
    opt = _plain(ccfg.get("optimizer"), "optimizer", path) or "rmsprop"
    try:
        if isinstance(opt, dict):
            cfg = dict(opt["config"])
            for key, neutral in _OPTIMIZER_NEUTRAL.items():
                if key in cfg and cfg[key] == neutral:
                    cfg.pop(key)
            opt = optimizers_mod.deserialize({"class_name": opt["class_name"], "config": cfg})
        loss = ccfg.get("loss")
        n = len(model.outputs)
        if isinstance(loss, dict) and "class_name" not in loss:
            losses = [loss.get(name) for name in model.output_names]
        else:
            losses = loss if isinstance(loss, list) else [loss] * n
        if len(losses) != n:
            raise ConfigError(f"loss {loss!r} does not give one loss per output")
        losses = [lo if isinstance(lo, str) or lo is None else
                  losses_mod.deserialize(_plain(lo, "loss", path)) for lo in losses]
        metrics = _metric_names(ccfg.get("metrics"), "metrics")
        weighted = _metric_names(ccfg.get("weighted_metrics"), "weighted_metrics")
        model.compile(optimizer=opt, loss=losses[0] if n == 1 else losses,
                      metrics=metrics, weighted_metrics=weighted,
                      loss_weights=ccfg.get("loss_weights"))
    except (GraphmaskError, TypeError, ValueError, KeyError) as e:
        raise ConfigError(f"{path!r}: compile config: {e}; load with compile=False to get "
                          f"the model uncompiled") from None


def compile_to_keras(model) -> dict | None:
    """Keras's compile config for a compiled graphmask model (None when uncompiled)."""
    if not model.compiled:
        return None
    from graphmask.training import losses as losses_mod
    from graphmask.training import optimizers as optimizers_mod

    def keras_obj(cfg, module):
        return {"module": module, "class_name": cfg["class_name"], "config": cfg["config"],
                "registered_name": None}
    args = getattr(model, "_compile_args", {})
    if _string_tree(args.get("loss")):  # as given, like Keras ("mse", a list or a dict)
        loss = args["loss"]
    else:
        losses = [None if lo is None else keras_obj(losses_mod.serialize(lo), "keras.losses")
                  for lo in model.loss_objects]
        loss = losses[0] if len(losses) == 1 else losses

    def names(kind):
        per = [[m for m in out if isinstance(m, str)] for out in model.compiled_metrics[kind]]
        return (per[0] or None) if len(per) == 1 else (per if any(per) else None)
    return {"optimizer": keras_obj(optimizers_mod.serialize(model.optimizer),
                                   "keras.optimizers"),
            "loss": loss,
            "loss_weights": _plain_numbers(args.get("loss_weights")),
            "metrics": names("metrics"),
            "weighted_metrics": names("weighted_metrics"), "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


def _plain_numbers(v):
    """``loss_weights`` as JSON numbers (a float, a list or a dict of them, or None)."""
    if v is None:
        return None
    if isinstance(v, dict):
        return {k: float(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [float(x) for x in v]
    return float(v)


def _string_tree(v) -> bool:
    """A loss argument made only of names (a string, or a list / dict of them or None)."""
    if isinstance(v, str):
        return True
    if isinstance(v, list):
        return bool(v) and all(x is None or isinstance(x, str) for x in v)
    if isinstance(v, dict):
        return bool(v) and all(x is None or isinstance(x, str) for x in v.values())
    return False


# ---- writing ------------------------------------------------------------------------------
def keras_config(model) -> dict:
    """The ``config.json`` object Keras 3 reads for ``model``."""
    config = kc.model_config(model)
    ccfg = compile_to_keras(model)
    config["compile_config"] = ccfg if ccfg is not None else None
    if ccfg is None:
        config.pop("compile_config")
    return config


def save_keras_model(model, filepath, overwrite: bool = True) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file that ``keras.saving.load_model``
    reads (config, weights, compile config and, for a compiled model, the optimizer's
    state in Keras's order, so Keras resumes training where graphmask stopped).

    Raises
    ------
    ConfigError
        A layer Keras cannot rebuild from a file (``Lambda``, a custom layer); nothing is
        written.
    ImportError
        h5py is not installed.
    """
    keras_h5.h5py()
    path = _name(filepath)
    if not overwrite and os.path.exists(path):
        raise ModelFileExistsError(f"save: {path!r} exists and overwrite=False")
    config = keras_config(model)
    optimizer = keras_optimizer.to_keras(model) if model.compiled else None
    meta = {"keras_version": WRITES_KERAS_VERSION,
            "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    members = {"metadata.json": json.dumps(meta).encode(),
               "config.json": json.dumps(config).encode(),
               "model.weights.h5": keras_h5.to_bytes(model, optimizer)}
    _write_atomic(path, members, overwrite)


def save_keras_weights(model, filepath, overwrite: bool = True) -> None:
    """Write ``model``'s weights as a Keras ``.weights.h5`` file (Keras's layout)."""
    keras_h5.h5py()
    path = _name(filepath)
    if not overwrite and os.path.exists(path):
        raise ModelFileExistsError(f"save_weights: {path!r} exists and overwrite=False")
    folder = os.path.dirname(os.path.abspath(path))
    data = keras_h5.to_bytes(model)
    import tempfile
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["KERAS_MAJOR", "keras_config", "load_keras_model", "load_keras_weights",
           "model_from_config", "read_archive", "save_keras_model", "save_keras_weights"]
