"""The radar's actions have their real effects and costs in the simulated world (ray_gen/actions.py,
shards, engine.Progress): paused ads thin demand, move a share to substitutes and save ad spend; a
reroute moves units after a transfer delay at a cost; a restock lands after its lead time at a cost."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow.dataset as ds
import pytest
from scipy import stats

from ray_gen import actions
from ray_gen.catalogue import build_catalogue
from ray_gen.engine import run
from ray_gen.params import make_params
from ray_gen.shards import WarehouseShard
from ray_gen.sinks import SinkSpec

SMALL = dict(n_products=600, minutes=40, city_shards=1, warehouse_shards=1, batch_size=50_000, seed=3)


def sale(tmp_path, name, p, interventions=None):
    out = tmp_path / name
    progress, _, _ = run(p, SinkSpec("parquet", path=str(out)), interventions=interventions)
    tables = {c: ds.dataset(out / c, format="parquet").to_table() for c in ("orders_fact", "inventory_fact")}
    return progress, {c: t.to_pandas() for c, t in tables.items()}


def minute_of(p, ts):
    return ((ts - p.start).dt.total_seconds() // 60).astype(int)


def same_province_pair(cat):
    prov = [cat.city_province[int(c)] for c in cat.warehouse_city]
    return next(
        (a, b) for a in range(cat.n_warehouses) for b in range(cat.n_warehouses) if a < b and prov[a] == prov[b]
    )


# ---------------------------------------------------------------- pure pieces
def test_reroutes_are_transfers_with_units_and_legacy_tables_still_route_demand():
    iv = actions.Interventions(reroutes=[[1, 5, 2, 30]])
    assert iv.transfers.tolist() == [[1, 5, 2, 30]] and iv.routing.shape == (0, 3)
    legacy = actions.Interventions(reroutes=[[1, 5, 2]])
    assert legacy.routing.tolist() == [[1, 5, 2]] and legacy.transfers.shape == (0, 4)
    assert actions.Interventions().transfers.shape == (0, 4)
    assert actions.Interventions(reroutes=np.zeros((0, 3), dtype=np.int64)).routing.shape == (0, 3)
    with pytest.raises(ValueError, match="units"):
        actions.Interventions(reroutes=[[1, 5, 2, 0]])
    with pytest.raises(ValueError, match="own donor"):
        actions.Interventions(reroutes=[[2, 5, 2, 10]])


def test_a_donor_never_sends_more_than_it_has():
    available = np.array([10, 0, -3, 7])
    sent = actions.dispatch(available, np.array([0, 0, 1, 2, 3]), np.array([6, 6, 5, 5, 2]))
    assert sent.tolist() == [6, 4, 0, 0, 2]  # two rows share pair 0's 10 units; nothing from an empty shelf


def test_substitutes_are_same_category_in_stock_not_paused_and_by_choice_weight():
    category = np.array([0, 0, 0, 0, 1, 1, 2])
    weight = np.array([1.0, 1.0, 2.0, 5.0, 1.0, 1.0, 1.0])
    shelf = np.array([9, 9, 9, 0, 9, 0, 0])  # product 3 sold out, 5 and 6 too
    blocked = np.zeros(7, dtype=bool)
    blocked[0] = True  # product 0 is the paused one
    u = np.random.default_rng(4).random(30_000)
    sub = actions.pick_substitutes(u, np.zeros(30_000, dtype=np.int64), category, weight, shelf, blocked)
    counts = np.bincount(sub, minlength=7)
    assert counts[[0, 3, 4, 5, 6]].sum() == 0  # same category, in stock, not paused
    assert stats.chisquare(counts[[1, 2]], np.array([1, 2]) / 3 * len(u)).pvalue > 0.001  # by weight
    none = actions.pick_substitutes(u[:3], np.array([4, 6, 4]), category, weight, shelf, np.eye(7, dtype=bool)[4])
    assert none.tolist() == [-1, -1, -1]  # nothing else in stock in categories 1 and 2


def test_margin_rates_are_per_category_and_drawn_on_their_own():
    p = make_params(**SMALL)
    cat = build_catalogue(p)
    assert ((cat.margin_rate >= p.margin_rate_min) & (cat.margin_rate <= p.margin_rate_max)).all()
    for c in range(p.n_categories):
        assert len(np.unique(cat.margin_rate[cat.category == c])) <= 1
    other = build_catalogue(p.replace(margin_rate_min=0.5, margin_rate_max=0.6))
    assert np.array_equal(other.base_price, cat.base_price) and np.array_equal(other.initial_stock, cat.initial_stock)


# ---------------------------------------------------------------- in the engine
def test_a_plain_run_tallies_margin_and_no_action_costs(tmp_path):
    p = make_params(**SMALL)
    progress, t = sale(tmp_path, "plain", p)
    o = t["orders_fact"]
    cat = build_catalogue(p)
    assert progress.margin == pytest.approx((o.order_value * cat.margin_rate[o.product_id]).sum(), rel=1e-9)
    assert 0 < progress.margin < progress.revenue
    assert progress.action_cost == progress.ad_spend_saved == progress.suppressed_units == 0
    assert progress.net_margin == progress.margin
    assert progress.unserved_units == progress.lost_units and progress.unserved_revenue == progress.lost_revenue
    assert progress.as_dict()["net_margin"] == progress.net_margin


def test_restock_costs_a_fixed_fee_per_order_and_a_price_per_unit():
    p = make_params(**SMALL, restock_cost_fixed=100.0, restock_cost_per_unit=2.0, action_restock_lead_minutes=5)
    shard = WarehouseShard(p, 0, SinkSpec("null"))
    shard.intervene(0, actions.Interventions(restocks=[[1, 4, 30], [2, 9, 20]]))
    before = shard.on_hand[1, 4]
    s = [shard.reserve(m)[2] for m in range(6)]
    assert s[0]["restock_orders"] == 2 and s[0]["restock_units"] == 50 and s[0]["restock_cost"] == 2 * 100 + 50 * 2
    assert "restock_cost" not in s[1]  # charged once, when ordered
    assert shard.on_hand[1, 4] - before == 30  # landed after the lead time (nothing sold: no requests)


def test_a_transfer_leaves_the_donor_at_once_and_lands_after_the_transfer_delay(tmp_path):
    base = make_params(**{**SMALL, "n_warehouses": 20, "transfer_minutes": 7, "transfer_cost_fixed": 50.0})
    cat = build_catalogue(base)
    w, d = same_province_pair(cat)
    prod = int(np.argmax(cat.initial_stock[d]))
    want = 10**6  # more than the donor holds: it sends what is sellable
    iv = actions.Interventions(reroutes=[[w, prod, d, want]])
    runs = {}
    for shards in (1, 4):
        p = base.replace(city_shards=shards, warehouse_shards=shards)
        runs[shards] = sale(tmp_path, f"s{shards}", p, lambda m, iv=iv: iv if m == 3 else None)
    plain_pr, plain = sale(tmp_path, "plain", base)
    for name in plain:  # donor and receiver in different shards give the same records
        cols = sorted(runs[1][1][name].columns)
        key = "order_id" if name == "orders_fact" else "inventory_event_id"
        a = runs[1][1][name][cols].sort_values(key, ignore_index=True)
        b = runs[4][1][name][cols].sort_values(key, ignore_index=True)
        assert a.equals(b), name
    progress, t = runs[1]
    inv = t["inventory_fact"].assign(minute=lambda x: minute_of(base, x.inventory_ts))
    pinv = plain["inventory_fact"].assign(minute=lambda x: minute_of(base, x.inventory_ts))

    def on_hand(frame, wh, minute):
        rows = frame[(frame.warehouse_id == wh) & (frame.product_id == prod) & (frame.minute <= minute)]
        return rows.sort_values("minute").iloc[-1]

    sent = progress.transfer_units
    assert progress.transfers == 1 and sent > 0
    assert progress.transfer_cost == pytest.approx(50.0 + sent * base.transfer_cost_per_unit)
    at3 = on_hand(inv, d, 3)
    assert at3.minute == 3 and at3.inventory_on_hand - at3.reserved_stock == 0  # all its sellable stock left
    arrival = on_hand(inv, w, 3)
    assert arrival.minute == 3 and arrival.inbound_units == sent and arrival.inbound_due_minutes == 7 - 1
    landed = on_hand(inv, w, 10)
    assert landed.minute == 10  # an event at the landing minute, with the units on hand
    gained = landed.inventory_on_hand - on_hand(pinv, w, 10).inventory_on_hand
    assert gained >= sent - 5  # (the receiver's own sales differ a little once the units are sellable)
    assert on_hand(inv, w, 9).inventory_on_hand - on_hand(pinv, w, 9).inventory_on_hand <= 0  # not before


def test_paused_ads_thin_demand_move_a_share_to_substitutes_and_save_ad_spend(tmp_path):
    p = make_params(**{**SMALL, "minutes": 20, "pause_ads_demand_factor": 0.2, "ad_spend_per_sku_minute": 3.0})
    cat = build_catalogue(p)
    w = int(cat.city_warehouse[0])
    top = np.argsort(cat.baseline_rate[w])[::-1][:8]  # the warehouse's best sellers
    iv = actions.Interventions(pauses=np.column_stack([np.full(8, w), top]))
    runs = {
        s: sale(tmp_path, f"sub{s}", p.replace(pause_ads_substitution=s), lambda m: iv if m == 0 else None)
        for s in (0.0, 0.5, 1.0)
    }
    none, half, full = (runs[s][0] for s in (0.0, 0.5, 1.0))
    assert none.paused_sku_minutes == 8 * p.minutes and none.ad_spend_saved == 8 * p.minutes * 3.0
    # nothing moves at share 0: every thinned request is suppressed (the old behaviour)
    assert none.substituted_requests == 0 and none.suppressed_requests > 100
    thinned = none.suppressed_requests
    for pr, share in ((half, 0.5), (full, 1.0)):
        moved = pr.substituted_requests
        assert pr.suppressed_requests + moved == pytest.approx(thinned, rel=0.1)
        assert moved / (moved + pr.suppressed_requests) == pytest.approx(share, abs=0.06)
        assert pr.substituted_units > 0 and 0 < pr.substituted_revenue < pr.revenue
        assert pr.unserved_units == pr.lost_units + pr.suppressed_units
    o = runs[0.5][1]["orders_fact"]
    o0 = runs[0.0][1]["orders_fact"]
    home = cat.city_warehouse[o.city_id.to_numpy()] == w
    # the substitutes: same categories as the paused SKUs, more sold than without substitution
    paused_cats = set(cat.category[top].tolist())
    in_cat = np.isin(cat.category[o.product_id.to_numpy()], list(paused_cats)) & ~np.isin(o.product_id, top) & home
    home0 = cat.city_warehouse[o0.city_id.to_numpy()] == w
    in_cat0 = np.isin(cat.category[o0.product_id.to_numpy()], list(paused_cats)) & ~np.isin(o0.product_id, top) & home0
    assert in_cat.sum() > in_cat0.sum()
    # the substitution has its own stream: minute 0's kept requests are the same records with or without it
    m0, m00 = o[minute_of(p, o.order_ts) == 0], o0[minute_of(p, o0.order_ts) == 0]
    kept = m0[m0.order_id.isin(m00.order_id)].sort_values("order_id", ignore_index=True)
    assert len(kept) == len(m00)
    assert kept.equals(m00.sort_values("order_id", ignore_index=True))


def test_net_margin_counts_revenue_margin_action_costs_and_ad_spend_saved(tmp_path):
    p = make_params(**{**SMALL, "minutes": 12, "action_restock_lead_minutes": 4})
    cat = build_catalogue(p)
    w, d = same_province_pair(cat)
    iv = actions.Interventions(
        restocks=[[w, 1, 40]], reroutes=[[w, 2, d, 5]], pauses=[[w, int(np.argmax(cat.baseline_rate[w]))]]
    )
    progress, t = sale(tmp_path, "acted", p, lambda m: iv if m == 0 else None)
    o = t["orders_fact"]
    margin = float((o.order_value * cat.margin_rate[o.product_id]).sum())
    assert progress.restock_cost == p.restock_cost_fixed + 40 * p.restock_cost_per_unit
    assert progress.transfer_cost == p.transfer_cost_fixed + 5 * p.transfer_cost_per_unit
    assert progress.ad_spend_saved == p.minutes * p.ad_spend_per_sku_minute
    assert progress.net_margin == pytest.approx(
        margin - progress.restock_cost - progress.transfer_cost + progress.ad_spend_saved, rel=1e-9
    )
    assert (o.order_ts >= p.start).all() and (o.order_ts < p.start + timedelta(minutes=p.minutes)).all()
