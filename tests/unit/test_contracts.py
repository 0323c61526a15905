"""Each fact and dim accepts a good record and rejects each kind of bad one, naming the field."""

from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from bson.int64 import Int64

from flashsale import contracts as c

TS = datetime(2026, 11, 11, 0, 5, tzinfo=UTC)
GOOD = {
    "orders_fact": {
        "order_id": "o-1-0-5-1",
        "product_id": 7,
        "seller_id": 2,
        "warehouse_id": 3,
        "city_id": 4,
        "order_qty": 2,
        "order_value": 19.5,
        "order_ts": TS,
    },
    "inventory_fact": {
        "inventory_event_id": "i-1-3-7-1",
        "product_id": 7,
        "warehouse_id": 3,
        "inventory_on_hand": 10,
        "reserved_stock": 2,
        "fulfillment_delay": 12.5,
        "inventory_ts": TS,
        "inbound_units": 30,
        "inbound_due_minutes": 45.0,
    },
    "products_dim": {
        "product_id": 7,
        "category": "phones",
        "base_price": 199.0,
        "seller_id": 2,
        "popularity": 0.4,
        "discount_pct": 30.0,
    },
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


# ---------------------------------------------------------------- the column-wise batch validator
_CATEGORY = {"missing": "missing", "greater than": "out_of_bounds"}  # every other bad case is a wrong type


@pytest.mark.parametrize("whole", [False, True], ids=["projection", "whole_documents"])
@pytest.mark.parametrize("name", list(GOOD))
def test_batch_validator_agrees_with_the_record_validator(name, whole):
    """Every bad case the pydantic model rejects, in one batch: each rejected, naming the same field."""
    contract = c.CONTRACTS[name]
    cases = list(_bad_cases(name))
    docs = []
    for field, value, _ in cases:
        record = {k: v for k, v in GOOD[name].items() if not (k == field and value is MISSING)}
        if value is not MISSING:
            record[field] = value
        docs.append(c.to_document(contract, record) if whole and field != contract.key else record)
    docs.append(c.to_document(contract, GOOD[name]) if whole else GOOD[name])
    out = c.validate_batch(name, docs, whole_documents=whole)
    assert out.valid.to_pylist() == [GOOD[name]] and out.valid.schema == c.arrow_schema(contract)
    assert list(out.rejected) == list(range(len(cases)))
    for (field, _, fragment), reason in zip(cases, out.reasons):
        assert reason.startswith(f"{name}.{field}: {_CATEGORY.get(fragment, 'wrong_type')}"), reason
    expected = {r: 0 for r in out.by_reason}
    for _, _, fragment in cases:
        expected[_CATEGORY.get(fragment, "wrong_type")] += 1
    assert out.by_reason == expected


def test_batch_validator_known_answers():
    t = TS
    good = GOOD["orders_fact"]
    docs = [
        good,
        {**good, "order_id": "o-2", "order_ts": t.astimezone(timezone(timedelta(hours=5, minutes=45)))},  # same instant
        {**good, "order_id": "o-3", "product_id": None},  # a null is missing
        {**good, "order_id": "o-4", "order_qty": 0},  # gt=0
        {**good, "order_id": "o-5", "product_id": 8},  # no such product
        {**good, "order_id": "o-6", "order_ts": t + timedelta(seconds=61)},  # after as_of + 60 s
        {**good, "order_id": "o-7", "order_ts": t + timedelta(seconds=60)},  # exactly at the skew limit: fine
        {**good, "order_id": "o-8", "order_value": 2.0, "product_id": Int64(7)},  # BSON's Int64 is an int
        {**good, "order_id": "o-9", "order_ts": t.replace(microsecond=1500)},  # not representable in ms
        {**good, "order_id": "o-10", "seller_id": 2**63},  # beyond int64
        {**good, "order_id": "x" * 129},  # ids are at most 128 characters
        {
            **good,
            "order_id": "o-12",
            "order_qty": -1,
            "city_id": "4",
        },  # the first failing column (contract order) names it
    ]
    out = c.validate_batch("orders_fact", docs, known_ids={"product_id": [7]}, as_of=t, future_skew_seconds=60)
    assert [r["order_id"] for r in out.valid.to_pylist()] == ["o-1-0-5-1", "o-2", "o-7", "o-8"]
    assert out.valid.column("order_ts").to_pylist()[1] == t  # converted to UTC, not shifted
    assert list(out.rejected) == [2, 3, 4, 5, 8, 9, 10, 11]
    assert out.by_reason == {"missing": 1, "wrong_type": 3, "out_of_bounds": 2, "unknown_id": 1, "future_ts": 1}
    assert out.reasons[0] == "orders_fact.product_id: missing"
    assert out.reasons[-1] == "orders_fact.city_id: wrong_type (got '4')"
    q = out.quality(docs)
    assert (q["read"], q["valid"], q["quarantined"]) == (12, 4, 8)
    assert q["examples"][0] == "o-3: orders_fact.product_id: missing"


def test_batch_validator_whole_documents_check_id_and_extra_fields():
    doc = c.to_document(c.ORDERS_FACT, GOOD["orders_fact"])
    docs = [
        doc,
        {**doc, "_id": "other"},
        {**doc, "surprise": 1},
        GOOD["orders_fact"],
        {**doc, "_id": "other", "surprise": 1},
    ]
    out = c.validate_batch("orders_fact", docs, whole_documents=True)
    assert out.valid.num_rows == 2 and list(out.rejected) == [1, 2, 4]
    assert out.reasons == [
        "orders_fact._id: key_mismatch (must equal order_id)",
        "orders_fact.surprise: unexpected_field",
        "orders_fact._id: key_mismatch (must equal order_id)",
    ]
    assert out.by_reason["key_mismatch"] == 2 and out.by_reason["unexpected_field"] == 1
    projected = c.validate_batch("orders_fact", docs)  # a projection read: _id and other fields are not looked at
    assert projected.valid.num_rows == 5 and "key_mismatch" not in projected.by_reason


def test_batch_validator_empty_batch():
    out = c.validate_batch("inventory_fact", [])
    assert out.valid.num_rows == 0 and out.valid.schema == c.arrow_schema("inventory_fact") and out.quarantined == 0
