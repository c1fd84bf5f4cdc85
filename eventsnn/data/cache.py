"""A disk cache of encoded samples whose key covers everything that shapes them.

Tonic's ``DiskCachedDataset`` keys its files by a folder name the user picks, so a changed transform
silently serves stale frames (tonic issue #160). Here the folder name is a hash of the dataset's
name, version and split and of a canonical description of every transform parameter: changing any
of them selects a new folder. One compressed ``.npz`` per sample, written atomically, so DataLoader
workers can fill the cache in parallel and an interrupted run leaves no half-written sample.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from eventsnn.atomic import written_atomically

CACHE_FORMAT = 1
"""Bump when the cached file layout or the encoding of a description changes."""


def describe(obj: Any) -> Any:
    """A JSON-able description of ``obj`` with all its parameters (for a transform: class + fields).

    Dataclasses (tonic's and our transforms) give their fields, other objects their public
    attributes, functions their import path plus a digest of their code, defaults and closure
    (two lambdas differ; the globals a function reads are not followed), arrays a digest of
    their bytes.
    """
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)  # 0 and 0.0 (YAML vs. a parser's cast) configure a transform alike
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()
        return {"array": digest, "dtype": str(obj.dtype), "shape": list(obj.shape)}
    if isinstance(obj, list | tuple):
        return [describe(item) for item in obj]
    if isinstance(obj, dict):
        return {str(key): describe(value) for key, value in sorted(obj.items(), key=str)}
    if isinstance(obj, functools.partial):
        return {"partial": describe([obj.func, obj.args, obj.keywords])}
    if isinstance(obj, types.MethodType):
        return {"method": describe(obj.__func__), "of": describe(obj.__self__)}
    if isinstance(obj, types.FunctionType):
        closure = [cell.cell_contents for cell in obj.__closure__ or ()]
        return {
            "callable": f"{obj.__module__}.{obj.__qualname__}",
            "code": code_digest(obj.__code__),
            "defaults": describe([obj.__defaults__, obj.__kwdefaults__, closure]),
        }
    if isinstance(obj, types.ModuleType):
        return {"module": obj.__name__}
    qualname = getattr(obj, "__qualname__", None)  # classes, builtins, wrapped functions
    if callable(obj) and isinstance(qualname, str) and not dataclasses.is_dataclass(obj):
        return {"callable": f"{getattr(obj, '__module__', None)}.{qualname}"}
    if dataclasses.is_dataclass(obj):
        params = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    else:
        params = {k: v for k, v in getattr(obj, "__dict__", {}).items() if not k.startswith("_")}
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    return {"class": kind, "params": describe(params)}


def code_digest(code: types.CodeType) -> str:
    """A digest of what a code object does: its bytecode, names and constants (nested code
    included), not where it sits in which file."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        parts.append(
            code_digest(const).encode()
            if isinstance(const, types.CodeType)
            else repr(const).encode()
        )
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def cache_key(description: Any) -> str:
    """A short stable hash of a description (see `describe`)."""
    text = json.dumps({"cache_format": CACHE_FORMAT, "what": description}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DiskCachedDataset(Dataset):
    """``dataset``'s samples, computed once and then read from ``folder/<index>.npz``.

    ``folder`` should come from `cache_key`; the description that made the key is kept beside the
    samples in ``key.json`` so a person can see what a cache folder holds.
    """

    def __init__(self, dataset: Any, folder: str | os.PathLike, description: Any) -> None:
        self.dataset = dataset
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.exists():
            text = json.dumps(description, indent=1, sort_keys=True)
            with written_atomically(key_file, durable=False) as tmp:
                tmp.write_text(text)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any]:
        path = self.folder / f"{index}.npz"
        try:
            with np.load(path) as stored:
                return stored["data"], stored["target"][()]
        except (FileNotFoundError, zipfile.BadZipFile, KeyError, ValueError, EOFError):
            pass  # not cached yet (or unreadable): compute and (re)write it
        data, target = self.dataset[index]
        data = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        target = np.asarray(target)
        with written_atomically(path, durable=False) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, data=data, target=target)
        return data, target[()]
