"""Each fact and dim accepts a good record and rejects each kind of bad one, naming the field."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from flashsale import contracts as c

TS = datetime(2026, 11, 11, 0, 5, tzinfo=timezone.utc)
GOOD = {
    "orders_fact": {"order_id": "o-1-0-5-1", "product_id": 7, "seller_id": 2, "warehouse_id": 3, "city_id": 4,
                    "order_qty": 2, "order_value": 19.5, "order_ts": TS},
    "inventory_fact": {"inventory_event_id": "i-1-3-7-1", "product_id": 7, "warehouse_id": 3, "inventory_on_hand": 10,
                       "reserved_stock": 2, "fulfillment_delay": 12.5, "inventory_ts": TS},
    "products_dim": {"product_id": 7, "category": "phones", "base_price": 199.0, "seller_id": 2,
                     "popularity": 0.4, "discount_pct": 30.0},
    "warehouses_dim": {"warehouse_id": 3, "warehouse_name": "KTM-1", "city_id": 4, "capacity": 120},
    "cities_dim": {"city_id": 4, "city": "Kathmandu", "province": "Bagmati", "demand_factor": 1.6},
}


@pytest.mark.parametrize("name", list(GOOD))
def test_good_record_is_accepted(name):
    model = c.validate(name, GOOD[name])
    assert model.model_dump() == GOOD[name]


@pytest.mark.parametrize("name", list(GOOD))
def test_mongo_id_must_mirror_the_key(name):
    contract = c.CONTRACTS[name]
    doc = c.to_document(contract, GOOD[name])
    c.validate(name, doc)
    with pytest.raises(c.ContractError, match=r"\._id: must equal"):
        c.validate(name, {**doc, "_id": "other"})


def _bad_cases(name):
    """(field, bad value or MISSING, expected reason fragment) for every column of the contract."""
    for col in c.CONTRACTS[name].columns:
        yield col.name, MISSING, "missing"
        if col.kind in ("int", "float"):
            yield col.name, "12", "valid"  # a numeric string is never coerced
            if col.kind == "int":
                yield col.name, True, "valid"  # nor is a bool
                yield col.name, 1.5, "valid"
        if col.ge is not None or col.gt is not None:
            yield col.name, -1, "greater than"
        if col.kind in ("id", "str"):
            yield col.name, 42, "valid string"
            yield col.name, "", "at least 1"
        if col.kind == "float":
            yield col.name, float("nan"), "finite"
        if col.kind == "ts":
            yield col.name, TS.replace(tzinfo=None), "timezone-aware"
            yield col.name, "2026-11-11T00:05:00Z", "valid datetime"


MISSING = object()
CASES = [(name, *case) for name in GOOD for case in _bad_cases(name)]


@pytest.mark.parametrize("name,field,value,reason", CASES, ids=[f"{n}.{f}={v!r}" for n, f, v, _ in CASES])
def test_bad_record_is_rejected_naming_the_field(name, field, value, reason):
    record = dict(GOOD[name])
    if value is MISSING:
        del record[field]
    else:
        record[field] = value
    with pytest.raises(c.ContractError) as exc:
        c.validate(name, record)
    assert exc.value.field == field
    assert str(exc.value).startswith(f"{name}.{field}: ")
    assert reason in exc.value.reason


@pytest.mark.parametrize("name", list(GOOD))
def test_unexpected_field_is_rejected(name):
    with pytest.raises(c.ContractError, match="unexpected field") as exc:
        c.validate(name, {**GOOD[name], "surprise": 1})
    assert exc.value.field == "surprise"


def test_partition_valid_quarantines_with_reasons():
    bad = {**GOOD["orders_fact"], "order_qty": -3}
    good, rejected = c.partition_valid("orders_fact", [GOOD["orders_fact"], bad])
    assert good == [GOOD["orders_fact"]]
    assert rejected[0][0] is bad and "orders_fact.order_qty" in rejected[0][1]


@pytest.mark.parametrize("name", list(GOOD))
def test_arrow_and_spark_schemas_come_from_the_same_columns(name):
    contract = c.CONTRACTS[name]
    schema = c.arrow_schema(contract)
    assert schema.names == contract.column_names
    table = pa.Table.from_pylist([GOOD[name]], schema=schema)
    assert table.num_rows == 1
    ddl = c.spark_ddl(contract)
    assert [part.split()[0] for part in ddl.split(", ")] == contract.column_names
