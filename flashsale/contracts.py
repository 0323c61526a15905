"""Data contracts: the single definition of every fact and dimension.

Each ``Contract`` lists its fields once (name, kind, bounds). From that one list we derive the
pydantic model that validates a record at a boundary, the column-wise batch validator that
quarantines documents read from the hot store (``validate_batch``: the KPI job and the archiver),
the Arrow schema used by Parquet sinks and the archive, and the Spark DDL the KPI job reads with.
Validation is strict: a string is never turned into a number, a naive timestamp is never guessed to
be UTC; the rejection names the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, create_model
from pydantic_core import ErrorDetails

Kind = Literal["id", "int", "float", "str", "ts"]


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    ge: float | None = None  # inclusive lower bound for numbers
    gt: float | None = None  # exclusive lower bound for numbers


@dataclass(frozen=True)
class Contract:
    name: str  # collection / table name
    key: str  # unique id column (also the Mongo _id, so a retried insert cannot duplicate)
    columns: tuple[Column, ...]
    time_column: str | None = None  # the indexed event-time column facts are windowed on

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


# Ids are strings for facts (deterministic, e.g. "o-<run>-<shard>-<seq>") and ints for dimensions.
ORDERS_FACT = Contract(
    "orders_fact",
    key="order_id",
    time_column="order_ts",
    columns=(
        Column("order_id", "id"),
        Column("product_id", "int", ge=0),
        Column("seller_id", "int", ge=0),
        Column("warehouse_id", "int", ge=0),
        Column("city_id", "int", ge=0),
        Column("order_qty", "int", gt=0),
        Column("order_value", "float", ge=0),
        Column("order_ts", "ts"),
    ),
)

INVENTORY_FACT = Contract(
    "inventory_fact",
    key="inventory_event_id",
    time_column="inventory_ts",
    columns=(
        Column("inventory_event_id", "id"),
        Column("product_id", "int", ge=0),
        Column("warehouse_id", "int", ge=0),
        Column("inventory_on_hand", "int", ge=0),
        Column("reserved_stock", "int", ge=0),
        Column("fulfillment_delay", "float", ge=0),  # minutes
        Column("inventory_ts", "ts"),
        # restocks ordered and not yet landed (what a WMS reports as "on order"): the KPI job's stockout
        # risk only counts demand until they land. Due: minutes after inventory_ts when the earliest lands
        # (0 when nothing is inbound).
        Column("inbound_units", "int", ge=0),
        Column("inbound_due_minutes", "float", ge=0),
    ),
)

PRODUCTS_DIM = Contract(
    "products_dim",
    key="product_id",
    columns=(
        Column("product_id", "int", ge=0),
        Column("category", "str"),
        Column("base_price", "float", gt=0),
        Column("seller_id", "int", ge=0),
        Column("popularity", "float", gt=0),
        Column("discount_pct", "float", ge=0),
    ),
)

WAREHOUSES_DIM = Contract(
    "warehouses_dim",
    key="warehouse_id",
    columns=(
        Column("warehouse_id", "int", ge=0),
        Column("warehouse_name", "str"),
        Column("city_id", "int", ge=0),
        Column("capacity", "int", gt=0),  # orders per minute it can pick and ship
    ),
)

CITIES_DIM = Contract(
    "cities_dim",
    key="city_id",
    columns=(
        Column("city_id", "int", ge=0),
        Column("city", "str"),
        Column("province", "str"),
        Column("demand_factor", "float", gt=0),
    ),
)

FACTS = (ORDERS_FACT, INVENTORY_FACT)
DIMS = (PRODUCTS_DIM, WAREHOUSES_DIM, CITIES_DIM)
CONTRACTS = {c.name: c for c in FACTS + DIMS}

_PY_TYPES: dict[Kind, Any] = {
    "id": Annotated[StrictStr, Field(min_length=1, max_length=128)],
    "int": StrictInt,
    "float": Annotated[float, Field(allow_inf_nan=False)],  # strict: an int is a float, a str or NaN is not
    "str": Annotated[StrictStr, Field(min_length=1)],
    "ts": AwareDatetime,
}
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "id": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "ts": pa.timestamp("ms", tz="UTC"),  # MongoDB stores millisecond UTC datetimes
}
_SPARK_TYPES: dict[Kind, str] = {"id": "STRING", "int": "BIGINT", "float": "DOUBLE", "str": "STRING", "ts": "TIMESTAMP"}


def _pydantic_type(col: Column) -> Any:
    base = _PY_TYPES[col.kind]
    if col.ge is None and col.gt is None:
        return base
    return Annotated[base, Field(ge=col.ge, gt=col.gt)]


def _build_model(contract: Contract) -> type[BaseModel]:
    fields = {c.name: (_pydantic_type(c), ...) for c in contract.columns}
    model = create_model(  # type: ignore[call-overload]
        "".join(p.title() for p in contract.name.split("_")),
        __config__=ConfigDict(extra="forbid", strict=True, frozen=True),
        **fields,
    )
    return model


MODELS: dict[str, type[BaseModel]] = {c.name: _build_model(c) for c in CONTRACTS.values()}


class ContractError(ValueError):
    """A record broke its contract; ``field`` names the offending field."""

    def __init__(self, contract: str, field: str, reason: str):
        self.contract, self.field, self.reason = contract, field, reason
        super().__init__(f"{contract}.{field}: {reason}")


def validate(contract: Contract | str, record: dict) -> BaseModel:
    """Validate one record; raise ContractError naming the first bad field."""
    contract = CONTRACTS[contract] if isinstance(contract, str) else contract
    doc = {k: v for k, v in record.items() if k != "_id"}  # Mongo's _id mirrors the key
    if "_id" in record and record["_id"] != record.get(contract.key):
        raise ContractError(contract.name, "_id", f"must equal {contract.key}")
    try:
        return MODELS[contract.name].model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "<record>"
        raise ContractError(contract.name, field, _reason(err)) from None


def _reason(err: ErrorDetails) -> str:
    kind = err["type"]
    if kind == "missing":
        return "missing"
    if kind == "extra_forbidden":
        return "unexpected field"
    if kind == "timezone_aware":
        return "must be a timezone-aware (UTC) datetime"
    return f"{err['msg']} (got {err.get('input')!r})"


def partition_valid(contract: Contract | str, records: Iterable[dict]) -> tuple[list[dict], list[tuple[dict, str]]]:
    """Split records into (valid, [(record, reason)]) instead of failing a whole batch."""
    good, bad = [], []
    for rec in records:
        try:
            validate(contract, rec)
            good.append(rec)
        except ContractError as exc:
            bad.append((rec, str(exc)))
    return good, bad


# ---------------------------------------------------------------- batch validation (column-wise)
# Why a second validator: the hot store hands us hundreds of thousands of documents per read, and
# pydantic costs 10-20 us per document (it was the archiver's per-document loop). This one checks a batch column
# by column: each column's Python values are classified by their *type* once per distinct type (a
# column holds one or two), then bounds, lengths, finiteness, dimension ids and future times are
# checked on the Arrow/numpy array. It applies the same rules as the pydantic model above, derived
# from the same Column list; tests/unit/test_contracts.py runs every bad case through both.
REASONS = ("missing", "wrong_type", "out_of_bounds", "unknown_id", "future_ts")
WHOLE_DOCUMENT_REASONS = ("key_mismatch", "unexpected_field")  # only when whole Mongo documents are checked
_CODE = {r: i + 1 for i, r in enumerate(REASONS + WHOLE_DOCUMENT_REASONS)}  # 0 = valid
_ID_MAX_LEN = 128
_INT64 = (-(2**63), 2**63)


class _Absent:
    """Marks a field the document does not have (None is a present null; both are ``missing``)."""


_ABSENT = _Absent()


def _type_code(kind: Kind, t: type) -> int:
    """0 if a value of Python type ``t`` may fill a column of ``kind``; else its reason code."""
    if t is _Absent or t is type(None):
        return _CODE["missing"]
    if kind in ("id", "str"):
        ok = issubclass(t, str)
    elif kind == "int":
        ok = issubclass(t, int) and not issubclass(t, bool)  # bson's Int64 is an int; a bool is not
    elif kind == "float":
        ok = issubclass(t, (int, float)) and not issubclass(t, bool)  # an int is a float, as in pydantic
    else:  # ts: a datetime (awareness is checked per value below)
        ok = issubclass(t, datetime)
    return 0 if ok else _CODE["wrong_type"]


_BUILD_TYPES: dict[Kind, pa.DataType] = {
    "id": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "ts": pa.timestamp("us", tz="UTC"),  # built in us so that sub-millisecond values are seen, not truncated
}


def _column(kind: Kind, values: list) -> tuple[np.ndarray, pa.Array, np.ndarray | None]:
    """(reason code per value, Arrow array with a null wherever the code is not 0, absent mask or None
    when every document has the field)."""
    n = len(values)
    types = list(map(type, values))
    by_type = {t: _type_code(kind, t) for t in set(types)}
    if len(set(by_type.values())) <= 1:
        code = np.full(n, next(iter(by_type.values()), 0), np.int8)
    else:
        code = np.fromiter(map(by_type.__getitem__, types), np.int8, n)
    absent = np.fromiter((t is _Absent for t in types), bool, n) if _Absent in by_type else None
    if kind == "ts":  # a naive timestamp is never guessed to be UTC (pyarrow would take it as UTC)
        naive = np.fromiter((c == 0 and v.utcoffset() is None for c, v in zip(code, values)), bool, n)
        code[naive] = _CODE["wrong_type"]
    clean = values if not code.any() else [v if c == 0 else None for c, v in zip(code, values)]
    try:
        arr = pa.array(clean, type=_BUILD_TYPES[kind], from_pandas=False)
    except OverflowError:  # BSON ints are 64-bit, a Python record's need not be: out of bounds, not a crash
        big = np.fromiter((c == 0 and not (_INT64[0] <= v < _INT64[1]) for c, v in zip(code, values)), bool, n)
        code[big] = _CODE["out_of_bounds"]
        arr = pa.array([v if c == 0 else None for c, v in zip(code, values)], type=_BUILD_TYPES[kind])
    if kind == "ts":  # finer than the contract's milliseconds: rejected, never truncated
        sub_ms = arr.cast(pa.int64()).fill_null(0).to_numpy() % 1000 != 0
        code[(code == 0) & sub_ms] = _CODE["wrong_type"]
    return code, arr, absent


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean Arrow array as numpy, null = False."""
    return np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(frozen=True)
class BatchValidation:
    """The outcome of ``validate_batch``: valid rows, and every rejected document with its reason."""

    contract: Contract
    valid: pa.Table  # typed rows in ``arrow_schema(contract)``, input order kept
    rejected: np.ndarray  # input positions of the quarantined documents
    reasons: list[str]  # "<contract>.<field>: <reason>[ (got <value>)]" for each rejected document
    by_reason: dict[str, int]
    read: int

    @property
    def quarantined(self) -> int:
        return len(self.rejected)

    def quality(self, docs: Sequence[dict] | None = None, examples: int = 5) -> dict:
        """The data-quality summary (the KPI snapshot's ``data_quality`` entry, plus a few examples)."""
        keys = [
            str(docs[i].get(self.contract.key, docs[i].get("_id"))) if docs is not None else str(i)
            for i in self.rejected[:examples]
        ]
        return {
            "read": self.read,
            "valid": self.valid.num_rows,
            "quarantined": self.quarantined,
            "by_reason": self.by_reason,
            "examples": [f"{k}: {r}" for k, r in zip(keys, self.reasons)],
        }


def validate_batch(
    contract: Contract | str,
    docs: Sequence[dict],
    *,
    known_ids: Mapping[str, Iterable] | None = None,
    as_of: datetime | None = None,
    future_skew_seconds: int = 0,
    whole_documents: bool = False,
) -> BatchValidation:
    """Split documents into typed valid rows and quarantined ones, column by column.

    Per document the first failing check names the reason, checking ``_id`` (whole documents only),
    then the columns in contract order, then unexpected fields (whole documents only). Per column:
    ``missing`` (absent or null), ``wrong_type`` (kind mismatch: a numeric string, a bool, an
    int-valued float for an int, NaN/inf, an empty or > 128-character id, an empty string, a naive or
    sub-millisecond timestamp), ``out_of_bounds`` (the Column's ge/gt), ``unknown_id`` (not in
    ``known_ids[column]``, the ids the dimensions hold), ``future_ts`` (time column after ``as_of`` +
    skew). ``whole_documents``: the documents are whole Mongo documents (not projections), so ``_id``
    must equal the key (``key_mismatch``) and no other field may appear (``unexpected_field``).
    Nothing is coerced; an aware timestamp in another zone is the same instant, stored as UTC.
    """
    contract = CONTRACTS[contract] if isinstance(contract, str) else contract
    docs = docs if isinstance(docs, list) else list(docs)
    n = len(docs)
    first = np.zeros(n, np.int8)  # reason code of each document's first failure (0 = valid)
    where = np.full(n, -1, np.int16)  # and the column it failed on (-1: _id, len(columns): an extra field)
    known_ids = known_ids or {}
    latest = as_of + timedelta(seconds=future_skew_seconds) if as_of is not None else None

    def fail(code: np.ndarray | int, mask: np.ndarray, column: int) -> None:
        hit = mask & (first == 0)
        first[hit] = code[hit] if isinstance(code, np.ndarray) else code
        where[hit] = column

    if whole_documents:
        ids = [d.get("_id", _ABSENT) for d in docs]
        keys = [d.get(contract.key, _ABSENT) for d in docs]
        if ids != keys:  # the common case (every _id mirrors its key) costs one list comparison
            fail(
                _CODE["key_mismatch"],
                np.fromiter((i is not _ABSENT and (k is _ABSENT or i != k) for i, k in zip(ids, keys)), bool, n),
                -1,
            )
        has_id = np.fromiter((i is not _ABSENT for i in ids), np.int64, n) if any(i is _ABSENT for i in ids) else 1
    present = np.zeros(n, np.int64)  # contract fields each document has (for the unexpected-field check)
    arrays = []
    for j, col in enumerate(contract.columns):
        code, arr, absent = _column(col.kind, [d.get(col.name, _ABSENT) for d in docs])
        present += 1 if absent is None else ~absent
        if col.kind in ("id", "str"):
            length = pc.utf8_length(arr)
            short = _mask(pc.less(length, 1))
            too_long = _mask(pc.greater(length, _ID_MAX_LEN)) if col.kind == "id" else False
            code[(code == 0) & (short | too_long)] = _CODE["wrong_type"]
        if col.kind == "float":
            code[(code == 0) & ~_mask(pc.is_finite(arr))] = _CODE["wrong_type"]
        if col.ge is not None:
            code[(code == 0) & _mask(pc.less(arr, col.ge))] = _CODE["out_of_bounds"]
        if col.gt is not None:
            code[(code == 0) & _mask(pc.less_equal(arr, col.gt))] = _CODE["out_of_bounds"]
        if col.name in known_ids:
            ids_known = pa.array(list(known_ids[col.name]), type=arr.type)
            code[(code == 0) & ~_mask(pc.is_in(arr, value_set=ids_known))] = _CODE["unknown_id"]
        if col.name == contract.time_column and latest is not None:
            code[(code == 0) & _mask(pc.greater(arr, pa.scalar(latest, arr.type)))] = _CODE["future_ts"]
        fail(code, code != 0, j)
        arrays.append(arr)
    if whole_documents:
        fail(
            _CODE["unexpected_field"],
            np.fromiter(map(len, docs), np.int64, n) > present + has_id,
            len(contract.columns),
        )

    ok = first == 0
    schema = arrow_schema(contract)
    if not ok.all():
        keep = pa.array(ok)
        arrays = [a.filter(keep) for a in arrays]
    valid = pa.Table.from_arrays([a.cast(f.type) for a, f in zip(arrays, schema)], schema=schema)
    rejected = np.flatnonzero(~ok)
    names = REASONS + WHOLE_DOCUMENT_REASONS
    by_reason = dict.fromkeys(names if whole_documents else REASONS, 0)
    for code, count in zip(*np.unique(first[rejected], return_counts=True)):
        by_reason[names[code - 1]] = int(count)
    reasons = [_reason_text(contract, docs[i], names[first[i] - 1], int(where[i])) for i in rejected]
    return BatchValidation(contract, valid, rejected, reasons, by_reason, n)


def _reason_text(contract: Contract, doc: dict, reason: str, column: int) -> str:
    if column == -1:
        return f"{contract.name}._id: {reason} (must equal {contract.key})"
    if column == len(contract.columns):
        allowed = {"_id", *contract.column_names}
        return f"{contract.name}.{next(k for k in doc if k not in allowed)}: {reason}"
    name = contract.columns[column].name
    if reason == "missing":
        return f"{contract.name}.{name}: missing"
    return f"{contract.name}.{name}: {reason} (got {doc[name]!r:.80})"


def arrow_schema(contract: Contract | str) -> pa.Schema:
    contract = CONTRACTS[contract] if isinstance(contract, str) else contract
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind], nullable=False) for c in contract.columns])


def spark_ddl(contract: Contract | str) -> str:
    contract = CONTRACTS[contract] if isinstance(contract, str) else contract
    return ", ".join(f"{c.name} {_SPARK_TYPES[c.kind]}" for c in contract.columns)


def to_document(contract: Contract, record: dict) -> dict:
    """A validated record as a Mongo document, keyed by its deterministic id."""
    return {"_id": record[contract.key], **record}


__all__ = [
    "BatchValidation",
    "CITIES_DIM",
    "CONTRACTS",
    "Column",
    "Contract",
    "ContractError",
    "DIMS",
    "FACTS",
    "INVENTORY_FACT",
    "MODELS",
    "ORDERS_FACT",
    "PRODUCTS_DIM",
    "REASONS",
    "WAREHOUSES_DIM",
    "arrow_schema",
    "partition_valid",
    "spark_ddl",
    "to_document",
    "validate",
    "validate_batch",
]
