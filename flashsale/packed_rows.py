"""Variable-length byte rows assembled column by column in numpy: record ids and BSON documents.

A row is a sequence of pieces: the same bytes in every row (`bytes`), or per-row bytes (`Rows`: row i
takes ``matrix[i, :lengths[i]]``), or an Arrow string column (`Strings`). Consecutive rows whose
pieces have the same lengths (a "run") share one layout, so a run is written as one 2-D block: a
template holding the bytes that are the same in the whole run, then one column range per piece that
varies. Keys that come sorted (city then seq; warehouse then product) give long runs, which is what
makes this 3-10x faster than Arrow's string kernels or per-row Python; any order gives the same
bytes, only more slowly.

Used by ray_gen/records.py (ids) and by `bson_documents` (the hot-store writer's documents, byte for
byte what pymongo makes of ``to_document(contract, row)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class Rows:
    """Row i's bytes are ``matrix[i, :lengths[i]]``. ``run_constant``: a function of the other pieces'
    lengths (a length prefix, a type byte), so a run takes it from its first row, in the template."""

    matrix: np.ndarray  # (n, w) uint8
    lengths: np.ndarray | int
    run_constant: bool = False


@dataclass(frozen=True)
class Strings:
    """An Arrow string column, used in place (rows of one run are adjacent and of one length)."""

    array: pa.Array

    def __post_init__(self):
        if not pa.types.is_string(self.array.type) or self.array.null_count:
            raise ValueError("Strings: a string column without nulls is needed")

    def parts(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, data) of the column as numpy views, honouring the array's slice offset."""
        _, offsets, data = self.array.buffers()
        n, at = len(self.array), self.array.offset
        off = np.frombuffer(offsets, dtype=np.int32)[at : at + n + 1]
        return off, (np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8))


Piece = bytes | Rows | Strings


def pack(n: int, pieces: Sequence[Piece]) -> tuple[np.ndarray, np.ndarray]:
    """The n rows as one byte buffer and its n + 1 offsets (int64)."""
    if n == 0:
        return np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64)
    lengths: list[np.ndarray | int] = []
    strings: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k, piece in enumerate(pieces):
        if isinstance(piece, bytes):
            lengths.append(len(piece))
        elif isinstance(piece, Rows):
            lengths.append(piece.lengths)
        else:
            strings[k] = piece.parts()
            lengths.append(np.diff(strings[k][0]))
    row_len = np.zeros(n, dtype=np.int64)
    for ln in lengths:
        row_len += ln
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    varying_lengths = {k: ln for k, ln in enumerate(lengths) if isinstance(ln, np.ndarray)}
    varying = list(varying_lengths)
    change = np.zeros(n - 1, dtype=bool)
    for k in varying:
        change |= varying_lengths[k][1:] != varying_lengths[k][:-1]
    bounds = [0, *(np.flatnonzero(change) + 1).tolist(), n]
    # lengths of the varying pieces -> (template, fills: (piece index, column, width))
    layouts: dict[tuple[int, ...], tuple[np.ndarray, list[tuple[int, int, int]]]] = {}
    for s, e in zip(bounds[:-1], bounds[1:]):
        key = tuple(int(varying_lengths[k][s]) for k in varying)
        if key not in layouts:
            parts: list[np.ndarray] = []
            run_fills: list[tuple[int, int, int]] = []
            at = 0
            for k, piece in enumerate(pieces):
                w = int(varying_lengths[k][s]) if k in varying_lengths else int(lengths[k])
                if isinstance(piece, bytes):
                    parts.append(np.frombuffer(piece, dtype=np.uint8))
                elif isinstance(piece, Rows) and piece.run_constant:
                    parts.append(piece.matrix[s, :w])
                else:
                    parts.append(np.zeros(w, dtype=np.uint8))
                    run_fills.append((k, at, w))
                at += w
            layouts[key] = (np.concatenate(parts) if parts else np.zeros(0, np.uint8), run_fills)
        template, fills = layouts[key]
        block = data[offsets[s] : offsets[e]].reshape(e - s, len(template))
        block[:] = template
        for k, at, w in fills:
            if k in strings:
                off, chars = strings[k]
                block[:, at : at + w] = chars[off[s] : off[e]].reshape(e - s, w)
            else:
                rows = pieces[k]
                assert isinstance(rows, Rows)  # a fill is a Strings (handled above) or a per-row Rows piece
                block[:, at : at + w] = rows.matrix[s:e, :w]
    return data, offsets


def string_array(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """pack()'s output as an Arrow string column (zero-copy for the bytes)."""
    if offsets[-1] >= 2**31:
        raise ValueError("packed rows: too many bytes for a 32-bit-offset string array")
    n = len(offsets) - 1
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])


# --- "-<n>" for non-negative ints (id parts) -----------------------------------------------------


def _dash_decimals(values: np.ndarray) -> Rows:
    top = int(values.max()) if len(values) else 0
    digits = np.ones(len(values), dtype=np.int64)
    for k in range(1, len(str(top))):
        digits += values >= 10**k
    out = np.zeros((len(values), -(-(len(str(top)) + 1) // 8) * 8), dtype=np.uint8)  # whole 8-byte words
    out[:, 0] = ord("-")
    for k in range(len(str(top))):  # the k-th digit from the right sits at column digits - k
        rows = np.flatnonzero(digits > k)
        out[rows, digits[rows] - k] = ord("0") + (values[rows] // 10**k) % 10
    return Rows(out, digits + 1)


_TABLE_MAX = 1 << 20  # values below this come from a cached table (8 MB at most); larger ones are encoded
_table = Rows(np.zeros((0, 8), np.uint8), np.zeros(0, np.int64))


def _row_lengths(rows: Rows) -> np.ndarray:
    """``rows.lengths`` of a Rows that has one length per row (as the cached table always has)."""
    assert isinstance(rows.lengths, np.ndarray)
    return rows.lengths


def dash_decimals(values: np.ndarray) -> Rows:
    """ "-<v>" for each non-negative int v."""
    global _table
    if len(values) == 0 or int(values.min()) < 0:
        if len(values):
            raise ValueError("dash_decimals: values must be non-negative")
        return Rows(np.zeros((0, 8), np.uint8), np.zeros(0, np.int64))
    top = int(values.max())
    if top >= _TABLE_MAX:
        return _dash_decimals(values)
    if top >= len(_row_lengths(_table)):
        _table = _dash_decimals(np.arange(min(max(top + 1, 2 * len(_row_lengths(_table)), 1 << 16), _TABLE_MAX)))
    words = _table.matrix.view(np.uint64)  # (size, 1): a gather moves one word per row
    return Rows(words[values].view(np.uint8), _row_lengths(_table)[values])


# --- BSON documents -------------------------------------------------------------------------------

_INT32 = (-(2**31), 2**31 - 1)


def _le(values: np.ndarray, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=dtype).view(np.uint8).reshape(len(values), np.dtype(dtype).itemsize)


def bson_documents(batch: pa.RecordBatch, id_column: str) -> tuple[bytes, np.ndarray]:
    """Each row as the BSON document pymongo encodes for ``{"_id": row[id_column], **row}``.

    Returns (all documents back to back, n + 1 offsets). Types as pymongo writes the row's Python
    values: str -> string, int -> int32 when it fits else int64, float -> double, timestamp ->
    UTC datetime (milliseconds). Nulls and other types are refused.
    """
    n = batch.num_rows
    pieces: list[Piece] = [b""]  # placeholder for the document length
    for name, column in [("_id", batch.column(id_column)), *zip(batch.schema.names, batch.columns)]:
        key = name.encode() + b"\0"
        if column.null_count:
            raise ValueError(f"bson_documents: {name} has nulls")
        t = column.type
        if pa.types.is_string(t):
            s = Strings(column)
            size = np.diff(s.parts()[0]) + 1
            pieces += [b"\x02" + key, Rows(_le(size, "<i4"), 4, run_constant=True), s, b"\0"]
        elif pa.types.is_integer(t):
            v = column.to_numpy().astype(np.int64, copy=False)
            wide = (v < _INT32[0]) | (v > _INT32[1])
            if wide.any():
                type_byte = np.where(wide, 0x12, 0x10).astype(np.uint8).reshape(n, 1)
                pieces += [Rows(type_byte, 1, run_constant=True), key, Rows(_le(v, "<i8"), np.where(wide, 8, 4))]
            else:
                pieces += [b"\x10" + key, Rows(_le(v.astype(np.int32), "<i4"), 4)]
        elif pa.types.is_floating(t):
            pieces += [b"\x01" + key, Rows(_le(column.to_numpy().astype(np.float64, copy=False), "<f8"), 8)]
        elif pa.types.is_timestamp(t) and t.unit == "ms":
            ms = column.cast(pa.int64()).to_numpy()
            pieces += [b"\x09" + key, Rows(_le(ms, "<i8"), 8)]
        else:
            raise ValueError(f"bson_documents: no BSON encoding for {name}: {t}")
    pieces.append(b"\0")
    # the document length: 4 + the other pieces, the same in a run (it is a function of their lengths)
    total = np.full(n, 4, dtype=np.int64)
    for p in pieces[1:]:
        total += _piece_len(p)
    pieces[0] = Rows(_le(total, "<i4"), 4, run_constant=True)
    data, offsets = pack(n, pieces)
    return data.tobytes(), offsets


def raw_bson_documents(batch: pa.RecordBatch, id_column: str) -> list:
    """bson_documents() as RawBSONDocuments: insert_many sends their bytes as they are (no encoding)."""
    from bson.raw_bson import RawBSONDocument

    data, offsets = bson_documents(batch, id_column)
    o = offsets.tolist()
    return [RawBSONDocument(data[a:b]) for a, b in zip(o[:-1], o[1:])]


def _piece_len(p: Piece) -> np.ndarray | int:
    if isinstance(p, bytes):
        return len(p)
    if isinstance(p, Rows):
        return p.lengths
    return np.diff(p.parts()[0])
