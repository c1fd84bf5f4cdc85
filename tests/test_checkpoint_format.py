"""Nested containers <-> HDF5: exact round trips (types, dtypes, shapes, key order) and refusals."""

import math
import random

import h5py
import numpy as np
import pytest
import torch

from eventsnn.checkpoint import CheckpointError
from eventsnn.checkpoint.format import decode_name, encode_name, read_tree, write_tree


def round_trip(tree, tmp_path):
    path = tmp_path / "tree.h5"
    with h5py.File(path, "w") as file:
        write_tree(file.create_group("tree"), tree)
    with h5py.File(path, "r") as file:
        return read_tree(file["tree"])


def assert_identical(a, b, where="root"):
    """Equality that also demands the same types, dtypes, shapes and key order."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_identical(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        bits = [t.contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
        assert torch.equal(*bits), where  # bitwise, so NaN and -0.0 count
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_python_scalars_keep_their_exact_type(tmp_path):
    tree = {
        "int": 3,
        "float_integral": 3.0,
        "bool": True,
        "false": False,
        "none": None,
        "str": "héllo, wörld",
        "empty_str": "",
        "big": 2**63 - 1,
        "negative": -(2**63),
        "beyond_int64": 2**64 + 1,
        "very_negative": -(2**200),
        "nan": float("nan"),
        "inf": float("-inf"),
        "tiny": 5e-324,
    }
    assert_identical(round_trip(tree, tmp_path), tree)


def test_containers_keep_list_tuple_and_key_order_and_key_types(tmp_path):
    tree = {
        "z": [1, (2.0, [None, {}]), ()],
        "a": (),
        "m": [],
        "int_keys": {3: "three", 0: "zero", -1: [True]},
        "mixed": {"1": "str one", 2: "int two"},
        "nested": {"deep": {"deeper": {"deepest": (1, "x")}}},
        "ints": [3, -1, 2**63 - 1],
        "floats": (0.5, 1.0, float("inf")),
        "numbers_and_bools": [1, 2.0, True],
        "ints_and_big_int": (1, 2**70),
    }
    back = round_trip(tree, tmp_path)
    assert_identical(back, tree)
    assert list(back["int_keys"]) == [3, 0, -1]


@pytest.mark.parametrize(
    "dtype",
    [
        torch.float32,
        torch.float64,
        torch.float16,
        torch.bfloat16,
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
        torch.complex64,
        torch.float8_e4m3fn,
    ],
)
def test_tensors_keep_dtype_shape_and_bits(tmp_path, dtype):
    gen = torch.Generator().manual_seed(0)
    raw = torch.randn(3, 4, 5, generator=gen) * 100
    tensor = raw.to(dtype) if dtype is not torch.bool else raw > 0
    tree = {
        "t": tensor,
        "scalar": tensor[0, 0, 0].clone(),
        "empty": tensor[:0],
        "view": tensor.permute(2, 0, 1),
    }
    assert_identical(round_trip(tree, tmp_path), {k: v.contiguous() for k, v in tree.items()})


def test_tensor_nan_and_negative_zero_survive_bitwise(tmp_path):
    tensor = torch.tensor([float("nan"), -0.0, float("inf"), 1e-45])
    back = round_trip({"t": tensor}, tmp_path)["t"]
    assert back.view(torch.int32).tolist() == tensor.view(torch.int32).tolist()


def test_numpy_arrays_and_scalars(tmp_path):
    events = np.zeros(4, dtype=[("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
    events["t"] = [1, 2, 3, 2**40]
    tree = {
        "events": events,
        "matrix": np.arange(12, dtype=np.float32).reshape(3, 4),
        "zero_d": np.array(7, dtype=np.uint16),
        "np_float": np.float32(1.5),
        "np_int": np.int64(-4),
        "np_bool": np.bool_(True),
        "rng": np.random.default_rng(0).bit_generator.state["state"]["state"],
    }
    assert_identical(round_trip(tree, tmp_path), tree)


def test_python_and_numpy_random_states_round_trip(tmp_path):
    tree = {"python": random.getstate(), "numpy": np.random.get_state()}
    back = round_trip(tree, tmp_path)
    assert_identical(back, tree)
    random.setstate(back["python"])
    np.random.set_state(back["numpy"])


def test_awkward_keys_round_trip(tmp_path):
    keys = ["a/b", "/", "", ".", "..", "%", "%2F", "@type", "@keys", "x.y.z", " ", "ü", "a%b/c"]
    tree = {key: i for i, key in enumerate(keys)} | {"t/ensor": torch.ones(2)}
    assert_identical(round_trip(tree, tmp_path), tree)


@pytest.mark.parametrize(
    "key", ["", ".", "/", "%", "%25", "@", "@@x", "a/b/c", "plain", "%2E", "x@y", "50%/50%"]
)
def test_encode_name_is_invertible_and_hdf5_safe(key):
    name = encode_name(key)
    assert decode_name(name) == key
    assert "/" not in name and name not in ("", ".") and not name.startswith("@")


def test_lightning_like_optimizer_state_round_trips(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    tree = {"optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()]}
    back = round_trip(tree, tmp_path)
    assert_identical(back, tree)
    fresh = torch.optim.AdamW(model.parameters())
    fresh.load_state_dict(back["optimizer_states"][0])
    assert fresh.param_groups[0]["betas"] == (0.8, 0.9)


@pytest.mark.parametrize(
    ("tree", "where", "what"),
    [
        ({"a": {"b": [1, {2, 3}]}}, "/tree/a/b/1", "builtins.set"),
        ({"a": [b"bytes"]}, "/tree/a/0", "builtins.bytes"),
        ({"f": lambda: 0}, "/tree/f", "function"),
        ({"m": torch.nn.Linear(1, 1)}, "/tree/m", "Linear"),
        ({"o": np.array([object()])}, "/tree/o", "Python objects"),
        ({"s": torch.eye(2).to_sparse()}, "/tree/s", "dense"),
        ({"k": {(1, 2): 0}}, "/tree/k", "key (1, 2)"),
        ({"k": {True: 0}}, "/tree/k", "key True"),
        ({"k": {1: "a", "1": "b"}}, "/tree/k", "share one name"),
    ],
)
def test_unstorable_values_are_refused_naming_the_key_path(tmp_path, tree, where, what):
    with h5py.File(tmp_path / "bad.h5", "w") as file, pytest.raises(CheckpointError) as error:
        write_tree(file.create_group("tree"), tree)
    assert where in str(error.value) and what in str(error.value)


def test_reading_a_damaged_tree_names_the_missing_key(tmp_path):
    path = tmp_path / "tree.h5"
    with h5py.File(path, "w") as file:
        write_tree(file.create_group("tree"), {"outer": {"gone": torch.ones(2), "kept": 1}})
    with h5py.File(path, "a") as file:
        del file["tree/outer/gone"]
    with h5py.File(path, "r") as file, pytest.raises(CheckpointError, match="/tree/outer/gone"):
        read_tree(file["tree"])


@pytest.mark.parametrize(
    ("dtype_tag", "message"),
    [("load", "unknown tensor dtype 'load'"), ("float64", "data of torch.float32 cannot hold")],
)
def test_reading_a_tensor_with_a_bad_dtype_tag_names_it(tmp_path, dtype_tag, message):
    path = tmp_path / "tree.h5"
    with h5py.File(path, "w") as file:
        write_tree(file.create_group("tree"), {"w": torch.ones(3)})
        file["tree/w"].attrs["@dtype"] = dtype_tag
    with h5py.File(path, "r") as file, pytest.raises(CheckpointError, match=f"/tree/w: {message}"):
        read_tree(file["tree"])
