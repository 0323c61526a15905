"""The whole simulation in-process (shards as plain objects, Parquet files as the sink): dynamics,
invariants and determinism. Ray and the hot store are exercised in test_sim_services.py."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT, validate
from ray_gen.engine import run
from ray_gen.params import FlashCurve, make_params
from ray_gen.sinks import SinkSpec

BASE = dict(n_products=3_000, minutes=200, city_shards=1, warehouse_shards=1, batch_size=20_000)


def simulate(tmp_path, name, **params):
    out = tmp_path / name
    p = make_params(**{**BASE, **params})
    progress, counts, interrupted = run(p, SinkSpec("parquet", path=str(out)))
    tables = {c: ds.dataset(out / c, format="parquet").to_table() for c in ("orders_fact", "inventory_fact")}
    return p, progress, counts, tables


def sorted_by_key(table: pa.Table, key: str) -> pa.Table:
    return table.sort_by(key)


@pytest.fixture(scope="module")
def sale(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("sale"), "sale")


def test_one_shard_and_four_shards_give_identical_records(tmp_path, sale):
    _, _, _, one = sale
    _, _, _, four = simulate(tmp_path, "four", city_shards=4, warehouse_shards=4)
    for name, key in (("orders_fact", "order_id"), ("inventory_fact", "inventory_event_id")):
        assert one[name].num_rows > 0
        assert sorted_by_key(one[name], key).equals(sorted_by_key(four[name], key)), name


def test_same_seed_same_records_other_seed_other_records(tmp_path, sale):
    p, _, _, first = sale
    _, _, _, again = simulate(tmp_path, "again", minutes=30)
    _, _, _, other = simulate(tmp_path, "other", minutes=30, seed=7)
    cutoff = pa.scalar(p.start + timedelta(minutes=30), pa.timestamp("ms", tz="UTC"))
    head = first["orders_fact"].filter(pa.compute.less(first["orders_fact"]["order_ts"], cutoff))
    assert head.num_rows > 0
    # a shorter run with the same seed is exactly the first minutes of the longer one, ids included
    assert sorted_by_key(head, "order_id").equals(sorted_by_key(again["orders_fact"], "order_id"))
    assert not np.array_equal(
        again["orders_fact"]["product_id"].to_numpy()[:500], other["orders_fact"]["product_id"].to_numpy()[:500]
    )


def test_every_record_meets_its_contract_and_ids_are_unique(sale):
    _, progress, counts, tables = sale
    for contract in (ORDERS_FACT, INVENTORY_FACT):
        t = tables[contract.name]
        for record in t.slice(0, 20_000).to_pylist():
            validate(contract, record)
        assert len(set(t[contract.key].to_pylist())) == t.num_rows
        assert counts[contract.name]["generated"] == counts[contract.name]["written"] == t.num_rows
    assert progress.orders == tables["orders_fact"].num_rows
    assert progress.requests == progress.orders + progress.lost_orders  # unmet demand is lost, not sold


def test_inventory_never_goes_negative_and_reserved_is_on_hand(sale):
    _, _, _, tables = sale
    inv = tables["inventory_fact"]
    on_hand, reserved = inv["inventory_on_hand"].to_numpy(), inv["reserved_stock"].to_numpy()
    assert on_hand.min() >= 0 and reserved.min() >= 0
    assert np.all(reserved <= on_hand)
    assert (on_hand == reserved).any()  # some SKUs really ran out of sellable stock


def test_inventory_events_account_for_every_sold_unit(sale):
    """Stock falls exactly by what was sold and shipped: on_hand_end = opening + restocks - shipped."""
    p, _, _, tables = sale
    inv = tables["inventory_fact"].to_pandas()
    orders = tables["orders_fact"].to_pandas()
    last = inv.sort_values("inventory_ts").groupby(["warehouse_id", "product_id"]).last()
    first = inv.sort_values("inventory_ts").groupby(["warehouse_id", "product_id"]).first()
    sold = orders.groupby(["warehouse_id", "product_id"])["order_qty"].sum()
    # units sold are either still reserved or already shipped out of on_hand; restocks only add
    shipped_or_reserved = (first["inventory_on_hand"] - last["inventory_on_hand"]) + last["reserved_stock"]
    gap = sold.reindex(last.index, fill_value=0) - shipped_or_reserved
    assert (gap >= 0).all()  # >= 0: restocks (which add stock) are the only other change
    no_restock = gap == 0
    assert no_restock.mean() > 0.5


def test_inventory_events_announce_each_restock_until_it_lands(sale):
    """inbound_units / inbound_due_minutes: a restock is announced by the event of the minute it is
    ordered and lands when announced: the pair has an event at that minute."""
    p, _, _, tables = sale
    inv = tables["inventory_fact"].to_pandas()
    inv["minute"] = (inv["inventory_ts"] - p.start).dt.total_seconds().floordiv(60).astype(int)
    assert (inv["inbound_units"] >= 0).all() and (inv["inbound_due_minutes"] >= 0).all()
    assert ((inv["inbound_units"] == 0) == (inv["inbound_due_minutes"] == 0)).mean() > 0.99  # due 0 only if none
    inv = inv.sort_values(["warehouse_id", "product_id", "minute"])
    prev = inv.groupby(["warehouse_id", "product_id"]).shift(1)
    ordered = inv[(inv["inbound_units"] > prev["inbound_units"]) & (inv["minute"] > 0)]
    assert len(ordered) > 50  # restocks were ordered during the run, each announced by an event
    landing = ordered.assign(land=ordered["minute"] + ordered["inbound_due_minutes"].astype(int) + 1)
    landing = landing[landing["land"] < p.minutes]
    at = inv.set_index(["warehouse_id", "product_id", "minute"])
    keys = list(zip(landing["warehouse_id"], landing["product_id"], landing["land"]))
    assert len(keys) > 20 and all(k in at.index for k in keys)  # an event at every landing minute
    landed = at.loc[keys]
    # it landed: less is inbound, unless the pair, still at its reorder point, ordered the next one at once
    reordered = landed["inbound_due_minutes"].to_numpy() >= p.restock_lead_minutes - 1
    assert ((landed["inbound_units"].to_numpy() < landing["inbound_units"].to_numpy()) | reordered).all()


def test_top_one_percent_of_skus_take_a_heavy_share_of_orders(sale):
    p, _, _, tables = sale
    per_sku = np.bincount(tables["orders_fact"]["product_id"].to_numpy(), minlength=p.n_products)
    top = np.sort(per_sku)[::-1][: p.n_products // 100]
    share = top.sum() / per_sku.sum()
    assert share > 0.15, share  # a uniform choice would give 1%


def test_stockouts_emerge_under_a_flash_spike_and_not_without_one(tmp_path, sale):
    _, spike, _, _ = sale
    _, flat, _, _ = simulate(tmp_path, "flat", flash=FlashCurve.flat())
    assert spike.stockouts >= 50
    assert spike.lost_orders > 0.005 * spike.requests
    assert flat.stockouts <= spike.stockouts / 20  # a normal day: safety stock absorbs Poisson noise
    assert flat.lost_orders < 0.001 * flat.requests


def test_stop_request_flushes_what_was_generated(tmp_path):
    out = tmp_path / "stopped"
    p = make_params(**{**BASE, "minutes": 100})
    calls = {"n": 0}

    def stop_after_ten_checks():
        calls["n"] += 1
        return calls["n"] > 10

    progress, counts, interrupted = run(p, SinkSpec("parquet", path=str(out)), should_stop=stop_after_ten_checks)
    assert interrupted and progress.minute == 9
    stored = ds.dataset(out / "orders_fact", format="parquet").count_rows()
    assert stored == counts["orders_fact"]["generated"] == progress.orders > 0


def test_real_time_writes_every_minute_when_it_is_simulated(tmp_path):
    """Fast-forward hands the sink full batches; real time writes each minute once it is simulated, so
    the KPI job never waits for batch_size records to pile up in a shard."""
    from ray_gen.engine import LocalBackend

    class Watched(LocalBackend):  # keeps the shard objects to look into their buffers
        def __init__(self):
            self.shards = []

        def city(self, p, k, sink):
            self.shards.append(super().city(p, k, sink))
            return self.shards[-1]

        def warehouse(self, p, k, sink):
            self.shards.append(super().warehouse(p, k, sink))
            return self.shards[-1]

    p = make_params(**{**BASE, "minutes": 4, "batch_size": 1_000_000})
    held, tables = {}, {}
    for label, speed in (("fast", None), ("realtime", 6_000.0)):  # 6,000 simulated minutes per minute: 10 ms each
        backend, held[label] = Watched(), []

        def on_progress(_, backend=backend, label=label):
            held[label].append(sum(sum(s.writer.pending_rows.values()) for s in backend.shards))

        run(p, SinkSpec("parquet", path=str(tmp_path / label)), backend, speed=speed, on_progress=on_progress)
        tables[label] = ds.dataset(tmp_path / label / "orders_fact", format="parquet").to_table().sort_by("order_id")
    assert held["realtime"] == [0, 0, 0, 0]  # nothing held back after any minute
    assert min(held["fast"]) > 0  # fast-forward batches up (flushed at the end)
    assert tables["fast"].equals(tables["realtime"])  # pacing changes when records are written, never which
