"""Nested Python containers <-> an HDF5 group, exactly and without pickle.

The mapping (documented in docs/checkpoint-format.md):

- ``dict``  -> group, ``@type = "dict"``, ``@keys`` = JSON list of the keys in order (str or int);
  each value is stored under its key's name (``%``-escaped, see :func:`encode_name`).
- ``list`` / ``tuple`` -> group, ``@type = "list" | "tuple"``, ``@length``; items "0", "1", ...;
  a non-empty one of only ints (64-bit) or only floats -> an int64 / float64 dataset, same tag.
- ``torch.Tensor`` -> dataset, ``@type = "tensor"``, ``@dtype`` = torch dtype name; dtypes numpy
  lacks (bfloat16, float8) are stored as same-width integers and viewed back.
- ``numpy.ndarray`` -> dataset, ``@type = "ndarray"``; numpy scalar -> 0-d dataset, ``"npscalar"``.
- ``bool``, ``int``, ``float``, ``str``, ``None`` -> an attribute of the parent group (numpy bool,
  int64, float64, UTF-8 string, empty attribute), so each reads back as its own type; an int
  beyond 64 bits (numpy's PCG64 state) -> a string dataset, ``@type = "bigint"``.

Anything else raises :class:`CheckpointError` naming the key path. Reading trusts nothing: a missing
or malformed node raises :class:`CheckpointError` naming the key path too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

import h5py
import numpy as np
import torch

from eventsnn.checkpoint.errors import CheckpointError

TYPE_ATTR = "@type"
KEYS_ATTR = "@keys"
LENGTH_ATTR = "@length"
DTYPE_ATTR = "@dtype"

_INT64 = np.iinfo(np.int64)
# torch dtypes whose tensors convert to numpy directly; others are stored as same-width integers
_NUMPY_NATIVE = {
    torch.bool,
    torch.uint8,
    torch.int8,
    torch.int16,
    torch.int32,
    torch.int64,
    torch.float16,
    torch.float32,
    torch.float64,
    torch.complex64,
    torch.complex128,
}
_SAME_WIDTH_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_TORCH_DTYPES = {
    name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)
}


def encode_name(key: str) -> str:
    """HDF5 name of a key: escape '%' and '/', a leading '@' (tags), and the names '' and '.'."""
    if key == "":
        return "%"
    name = key.replace("%", "%25").replace("/", "%2F")
    if name == ".":
        return "%2E"
    return "%40" + name[1:] if name.startswith("@") else name


def decode_name(name: str) -> str:
    """Inverse of :func:`encode_name`."""
    return "" if name == "%" else unquote(name)


def write_tree(group: h5py.Group, tree: Mapping[str, Any]) -> None:
    """Write a dict into an existing, empty group (the group becomes the dict)."""
    _write_dict(group, tree, group.name)


def read_tree(
    group: h5py.Group, device: torch.device | str | None = None, keys: Iterable[Any] | None = None
) -> Any:
    """Read a group written by :func:`write_tree` back into Python objects, tensors on `device`.

    With `keys`, read only those entries of the (dict) group that exist: a cheap partial read.
    """
    if keys is None:
        return _read_node(group, group.name, device)
    wanted = set(keys)
    return _read_dict(group, group.name, device, [k for k in dict_keys(group) if k in wanted])


def _join(where: str, key: Any) -> str:
    return f"{where.rstrip('/')}/{key}"


def _write_dict(group: h5py.Group, mapping: Mapping, where: str) -> None:
    group.attrs[TYPE_ATTR] = "dict"
    names: set[str] = set()
    for key in mapping:
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise CheckpointError(
                f"{where}: key {key!r} has type {type(key).__name__}; only str and int keys can be "
                "stored"
            )
        name = encode_name(str(key))
        if name in names:
            raise CheckpointError(f"{where}: keys {key!r} and {str(key)!r} would share one name")
        names.add(name)
    group.attrs[KEYS_ATTR] = json.dumps(list(mapping))
    for key, value in mapping.items():
        _write_value(group, encode_name(str(key)), value, _join(where, key))


def _write_sequence(group: h5py.Group, items: list | tuple, where: str) -> None:
    group.attrs[TYPE_ATTR] = "tuple" if isinstance(items, tuple) else "list"
    group.attrs[LENGTH_ATTR] = len(items)
    for i, value in enumerate(items):
        _write_value(group, str(i), value, _join(where, i))


def _write_value(parent: h5py.Group, name: str, value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        _write_dict(parent.create_group(name), value, where)
    elif isinstance(value, list | tuple) and _all_int64(value):
        _write_number_sequence(parent, name, value, np.int64)
    elif isinstance(value, list | tuple) and _all_float(value):
        _write_number_sequence(parent, name, value, np.float64)
    elif isinstance(value, list | tuple):
        _write_sequence(parent.create_group(name), value, where)
    elif isinstance(value, torch.Tensor):
        _write_tensor(parent, name, value, where)
    elif isinstance(value, np.ndarray | np.generic):
        kind = "ndarray" if isinstance(value, np.ndarray) else "npscalar"
        if value.dtype.hasobject:
            raise CheckpointError(f"{where}: numpy arrays of Python objects cannot be stored")
        _create_dataset(parent, name, value, where).attrs[TYPE_ATTR] = kind
    elif isinstance(value, int) and not isinstance(value, bool) and not _fits_int64(value):
        parent.create_dataset(name, data=str(value)).attrs[TYPE_ATTR] = "bigint"
    else:
        parent.attrs[name] = _scalar_attribute(value, where)


def _all_int64(items: list | tuple) -> bool:
    return len(items) > 0 and all(type(x) is int and _fits_int64(x) for x in items)


def _all_float(items: list | tuple) -> bool:
    return len(items) > 0 and all(type(x) is float for x in items)


def _write_number_sequence(
    parent: h5py.Group, name: str, items: list | tuple, dtype: type[np.generic]
) -> None:
    dataset = parent.create_dataset(name, data=np.asarray(items, dtype=dtype))
    dataset.attrs[TYPE_ATTR] = "tuple" if isinstance(items, tuple) else "list"


def _write_tensor(parent: h5py.Group, name: str, tensor: torch.Tensor, where: str) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        raise CheckpointError(
            f"{where}: only dense tensors with data can be stored (got layout {tensor.layout}, "
            f"quantized={tensor.is_quantized}, meta={tensor.is_meta})"
        )
    data = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous()
    if data.dtype not in _NUMPY_NATIVE:
        data = data.view(_SAME_WIDTH_INT[data.element_size()])
    dataset = _create_dataset(parent, name, data.numpy(), where)
    dataset.attrs[TYPE_ATTR] = "tensor"
    dataset.attrs[DTYPE_ATTR] = str(tensor.dtype).removeprefix("torch.")


def _fits_int64(value: int) -> bool:
    return _INT64.min <= value <= _INT64.max


def _create_dataset(parent: h5py.Group, name: str, array: Any, where: str) -> h5py.Dataset:
    try:
        return parent.create_dataset(name, data=array)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{where}: cannot store {type(array).__name__}: {error}") from error


def _scalar_attribute(value: Any, where: str) -> Any:
    if value is None:
        return h5py.Empty(np.uint8)
    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, str):
        return value
    raise CheckpointError(
        f"{where}: cannot store a value of type {type(value).__module__}.{type(value).__qualname__}"
        " (allowed: dict, list, tuple, tensor, numpy array, bool, int, float, str, None)"
    )


def _read_node(node: h5py.Group | h5py.Dataset, where: str, device: Any) -> Any:
    kind = node.attrs.get(TYPE_ATTR)
    if isinstance(node, h5py.Group):
        if kind == "dict":
            return _read_dict(node, where, device)
        if kind in ("list", "tuple"):
            length = _int_attr(node, LENGTH_ATTR, where)
            items = [_read_child(node, str(i), _join(where, i), device) for i in range(length)]
            return tuple(items) if kind == "tuple" else items
    elif kind == "tensor":
        return _read_tensor(node, where, device)
    elif kind in ("list", "tuple"):
        items = _read_data(node, where).tolist()
        return tuple(items) if kind == "tuple" else items
    elif kind == "bigint":
        return int(_read_data(node, where).decode())
    elif kind in ("ndarray", "npscalar"):
        value = _read_data(node, where)
        return np.asarray(value) if kind == "ndarray" else value
    raise CheckpointError(f"{where}: unknown node type {kind!r}")


def dict_keys(group: h5py.Group) -> list[str | int]:
    """The keys, in order, of a dict stored in `group`, without reading its values."""
    try:
        return json.loads(group.attrs[KEYS_ATTR])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{group.name}: missing or malformed {KEYS_ATTR}") from error


def _read_dict(group: h5py.Group, where: str, device: Any, keys: list | None = None) -> dict:
    return {
        key: _read_child(group, encode_name(str(key)), _join(where, key), device)
        for key in (dict_keys(group) if keys is None else keys)
    }


def _read_child(group: h5py.Group, name: str, where: str, device: Any) -> Any:
    if name in group:
        return _read_node(group[name], where, device)
    if name in group.attrs:
        return _scalar_value(group.attrs[name], where)
    raise CheckpointError(f"{where}: missing")


def _read_tensor(dataset: h5py.Dataset, where: str, device: Any) -> torch.Tensor:
    dtype = _TORCH_DTYPES.get(str(dataset.attrs.get(DTYPE_ATTR, "")))
    if dtype is None:
        raise CheckpointError(f"{where}: unknown tensor dtype {dataset.attrs.get(DTYPE_ATTR)!r}")
    tensor = torch.from_numpy(np.asarray(_read_data(dataset, where)))
    if tensor.dtype != dtype:
        if tensor.element_size() != dtype.itemsize:
            raise CheckpointError(f"{where}: data of {tensor.dtype} cannot hold {dtype}")
        tensor = tensor.view(dtype)
    return tensor if device is None else tensor.to(device)


def _read_data(dataset: h5py.Dataset, where: str) -> Any:
    try:
        return dataset[()]
    except OSError as error:
        raise CheckpointError(f"{where}: unreadable data ({error})") from error


def _int_attr(group: h5py.Group, name: str, where: str) -> int:
    value = group.attrs.get(name)
    if not isinstance(value, np.integer):
        raise CheckpointError(f"{where}: missing or malformed {name}")
    return int(value)


def _scalar_value(value: Any, where: str) -> Any:
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, str):
        return value
    raise CheckpointError(f"{where}: unreadable attribute value {value!r}")
