"""Reading every array of an .npz archive at once, faster than indexing np.load's NpzFile.

np.load parses each member's .npy header with ast.literal_eval (~50 us a member): the default
library holds 288 small arrays and the model 66, so the rover's start-up spent ~20 ms there.
read_all opens the archive with np.load (the same errors for a file that is not one) and reads
each member's bytes from its zip; a header in the form numpy writes it is parsed by a regular
expression, anything else (another version's layout, a structured or object dtype) goes through
np.load's own reader. The arrays are the same values, dtypes and shapes np.load gives, writable.
"""
import re

import numpy as np

_MAGIC = b"\x93NUMPY"
_HEADER = re.compile(r"\{'descr': '([<>|=][a-zA-Z]\d+)', 'fortran_order': (False|True), 'shape': \(((?:\d+, ?)*\d*)\), \}\s*$")


def _array(data: bytes):
    """A member's bytes -> the array, or None where the header is not numpy's plain form."""
    if data[:6] != _MAGIC or data[6] not in (1, 2, 3):
        return None
    size = 2 if data[6] == 1 else 4
    start = 8 + size
    end = start + int.from_bytes(data[8:start], "little")
    match = _HEADER.match(data[start:end].decode("latin1"))
    if match is None:
        return None
    dtype = np.dtype(match[1])
    shape = tuple(int(v) for v in match[3].replace(" ", "").split(",") if v)
    count = int(np.prod(shape, dtype=np.int64))
    if dtype.hasobject or len(data) - end < count * dtype.itemsize:
        return None
    flat = np.frombuffer(data, dtype, count=count, offset=end).copy()     # a copy: writable, like np.load's
    return flat.reshape(shape, order="F" if match[2] == "True" else "C")


def read_all(path) -> dict:
    """{name: array} of every member of the .npz at `path` (names without .npy), as np.load reads them."""
    with np.load(path) as npz:
        arrays, members = {}, set(npz.zip.namelist())
        for name in npz.files:
            member = name if name in members else name + ".npy"
            a = _array(npz.zip.read(member))
            arrays[name] = npz[name] if a is None else a
        return arrays
