"""Data contracts: the single definition of every fact and dimension.

Each ``Contract`` lists its fields once (name, kind, bounds). From that one list we derive the
pydantic model that validates a record at a boundary, the Arrow schema used by Parquet sinks and the
archive, and the Spark DDL the KPI job reads with. Validation is strict: a string is never turned
into a number, a naive timestamp is never guessed to be UTC; the rejection names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Iterable, Literal

import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, create_model

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


def _reason(err: dict) -> str:
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
    "CITIES_DIM", "CONTRACTS", "Column", "Contract", "ContractError", "DIMS", "FACTS", "INVENTORY_FACT",
    "MODELS", "ORDERS_FACT", "PRODUCTS_DIM", "WAREHOUSES_DIM", "arrow_schema",
    "partition_valid", "spark_ddl", "to_document", "validate",
]
