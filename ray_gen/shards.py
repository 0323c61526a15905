"""The two kinds of shard. Plain classes: the Ray actors are these classes wrapped, tests use them directly.

Per simulated minute t (the tick protocol, driven by ray_gen.engine):
  1. CityShard.propose(t, *snapshots)  -> its cities' order requests (drawn against the stock
     snapshot each warehouse published at the end of t-1)
  2. WarehouseShard.reserve(t, *proposals) -> one batched call per tick: arrivals and shipments, then
     the requests served in (city, seq) order; emits inventory_fact; returns served masks + snapshot
  3. CityShard.commit(t, *served) -> orders_fact for the served requests
Nothing depends on which shard holds which entity, so 1 shard and 4 shards give identical records.
"""

from __future__ import annotations

import numpy as np

from ray_gen import actions, model
from ray_gen.catalogue import build_catalogue
from ray_gen.params import SimParams
from ray_gen.records import inventory_batch, orders_batch
from ray_gen.sinks import ShardWriter, SinkSpec
from ray_gen.streams import ADS_PAUSE, CITY_ORDERS, SUBSTITUTE, WAREHOUSE_RESTOCK, rng_for


def split(ids: int, shards: int) -> list[np.ndarray]:
    """Contiguous, deterministic shard membership."""
    return [a.astype(np.int64) for a in np.array_split(np.arange(ids), shards)]


def minute_start_ms(p: SimParams, minute: int) -> int:
    return int(p.start.timestamp() * 1000) + minute * 60_000


def _book(book: dict, minute: int, idx: np.ndarray, units: np.ndarray) -> None:
    """Add (flat index, units) to what happens at `minute` (shipments leaving, restocks landing)."""
    old_i, old_u = book.get(minute, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
    book[minute] = (np.r_[old_i, idx], np.r_[old_u, units])


class _Buffered:
    """What both shard kinds do with their ShardWriter (``self.writer``)."""

    writer: ShardWriter

    def flush(self) -> dict:
        """Write what is buffered. Real-time runs call it after every minute: a minute's records must reach
        the store when the minute is simulated, not when batch_size records have piled up."""
        self.writer.flush()
        return {}

    def close(self) -> dict:
        return self.writer.close()


class CityShard(_Buffered):
    def __init__(self, p: SimParams, shard: int, sink: SinkSpec):
        self.p, self.shard = p, shard
        self.cat = build_catalogue(p)
        self.cities = split(p.n_cities, p.city_shards)[shard]
        self.writer = ShardWriter(sink, f"city-{shard:03d}", p.batch_size)
        self._pending: model.Orders | None = None
        self._pending_warehouse = np.zeros(0, dtype=np.int64)  # fulfilling warehouse per pending request
        self._pending_minute = -1
        self._pending_substitute = np.zeros(0, dtype=bool)  # pending requests that moved to a substitute
        self._paused_stats: dict = {}
        self.iv: actions.Interventions | None = None  # only closed-loop runs set it (see intervene)

    def intervene(self, minute: int, iv: actions.Interventions) -> None:
        """The radar's reroutes and ad pauses in force from `minute` on (ray_gen/actions.py)."""
        self.iv = iv

    def propose(self, minute: int, *snapshots: dict) -> dict:
        """Draw this minute's order requests for every city of the shard."""
        available, load = {}, np.zeros(self.cat.n_warehouses)
        for snap in snapshots:
            available.update(snap["available"])
            load[snap["warehouses"]] = snap["load"]
        lam = model.city_lambda(self.p, self.cat, minute, model.warehouse_pressure(load, self.p))
        iv = self.iv
        cdfs: dict[int, np.ndarray] = {}
        shelves: dict[int, np.ndarray] = {}
        parts, substitute = [], []
        stats: dict[str, float] = dict.fromkeys(("suppressed_requests", "suppressed_units", "substituted_requests"), 0)
        stats["suppressed_revenue"] = 0.0
        for c in self.cities:
            w = int(self.cat.city_warehouse[c])
            if w not in cdfs:
                shelves[w] = available[w] if iv is None else actions.storefront(available, w, iv.routing)
                cdfs[w] = model.choice_cdf(self.cat, self.p, shelves[w])
            rng = rng_for(self.p.seed, CITY_ORDERS, int(c), minute)
            o = model.draw_orders(rng, int(c), float(lam[c]), cdfs[w], self.cat, self.p)
            moved = np.zeros(len(o), dtype=bool)
            if iv is not None and len(iv.pauses):
                o, moved = self._pause(o, int(c), w, minute, iv.pauses, shelves[w], stats)
            parts.append(o)
            substitute.append(moved)
        orders = model.Orders.concat(parts)
        warehouse = self.cat.city_warehouse[orders.city]
        if iv is not None:
            warehouse = actions.route(warehouse, orders.product, iv.routing, self.cat.n_products)
        self._pending, self._pending_warehouse, self._pending_minute = orders, warehouse, minute
        self._pending_substitute = np.concatenate(substitute) if substitute else np.zeros(0, dtype=bool)
        self._paused_stats = stats
        return {
            "shard": self.shard,
            "city": orders.city,
            "seq": orders.seq,
            "product": orders.product,
            "qty": orders.qty,
            "warehouse": warehouse,
        }

    def _pause(
        self, o: model.Orders, city: int, w: int, minute: int, pauses: np.ndarray, shelf: np.ndarray, stats: dict
    ) -> tuple[model.Orders, np.ndarray]:
        """Paused ads at warehouse w: thin the paused SKUs' requests (stream ADS_PAUSE); a share of the
        thinned ones buys a substitute (stream SUBSTITUTE: its own, so no other draw shifts), the rest is
        suppressed. Returns the requests that happen, in (city, seq) order, and which are substitutes."""
        p, cat = self.p, self.cat
        u = rng_for(p.seed, ADS_PAUSE, city, minute).random(len(o))
        keep = actions.kept_after_pause(
            u, np.full(len(o), w), o.product, pauses, p.pause_ads_demand_factor, cat.n_products
        )
        gone = np.flatnonzero(~keep)
        rng = rng_for(p.seed, SUBSTITUTE, city, minute)  # a fixed number of draws per thinned request
        moves, pick, z = rng.random(len(gone)), rng.random(len(gone)), rng.standard_normal(len(gone))
        blocked = np.zeros(cat.n_products, dtype=bool)
        blocked[pauses[pauses[:, 0] == w, 1]] = True
        sub = np.full(len(gone), -1, dtype=np.int64)
        wants = moves < p.pause_ads_substitution
        sub[wants] = actions.pick_substitutes(
            pick[wants], o.product[gone[wants]], cat.category, cat.choice_weight, shelf, blocked
        )
        moved = sub >= 0
        lost = gone[~moved]
        value = np.round(o.qty[lost] * o.unit_price[lost], 2)
        stats["suppressed_requests"] += len(lost)
        stats["suppressed_units"] += int(o.qty[lost].sum())
        stats["suppressed_revenue"] += float(value.sum())
        stats["substituted_requests"] += int(moved.sum())
        product, unit_price = o.product.copy(), o.unit_price.copy()
        to = gone[moved]
        product[to] = sub[moved]
        unit_price[to] = np.round(
            cat.discounted_price()[sub[moved]] * np.exp(cat.price_sigma[sub[moved]] * z[moved]), 2
        )
        happens = keep.copy()
        happens[to] = True
        is_sub = np.zeros(len(o), dtype=bool)
        is_sub[to] = True
        idx = np.flatnonzero(happens)
        o = model.Orders(o.city, o.seq, product, o.qty, unit_price, o.offset_ms).take(idx)
        return o, is_sub[idx]

    def commit(self, minute: int, *served_maps: dict) -> dict:
        """Emit orders_fact for the requests the warehouses served."""
        if self._pending_minute != minute:
            raise RuntimeError(f"commit for minute {minute} but minute {self._pending_minute} is pending")
        o = self._pending
        if o is None:
            raise RuntimeError(f"commit for minute {minute}: it is already committed")
        served = np.zeros(len(o), dtype=np.bool_)
        for m in served_maps:
            if self.shard in m:
                served |= m[self.shard]
        idx = np.flatnonzero(served)
        product = o.product[idx]
        value = np.round(o.qty * o.unit_price, 2)
        batch = orders_batch(
            self.p.run_id,
            minute_start_ms(self.p, minute),
            minute,
            city=o.city[idx],
            seq=o.seq[idx],
            product=product,
            seller=self.cat.seller[product],
            warehouse=self._pending_warehouse[idx],
            qty=o.qty[idx],
            value=value[idx],
            offset_ms=o.offset_ms[idx],
        )
        self.writer.add("orders_fact", batch)
        self._pending = None
        # revenue lost = the value of requests that met an empty shelf
        sub = self._pending_substitute & served
        return {
            "orders": len(idx),
            "requests": len(o),
            "revenue": float(value[idx].sum()),
            "margin": float((value[idx] * self.cat.margin_rate[product]).sum()),
            "lost_revenue": float(value[~served].sum()),
            "substituted_units": int(o.qty[sub].sum()),
            "substituted_revenue": float(value[sub].sum()),
            **self._paused_stats,
        }


class WarehouseShard(_Buffered):
    def __init__(self, p: SimParams, shard: int, sink: SinkSpec):
        self.p, self.shard = p, shard
        cat = self.cat = build_catalogue(p)
        self.warehouses = split(p.n_warehouses, p.warehouse_shards)[shard]
        self.local = {int(w): i for i, w in enumerate(self.warehouses)}
        n_p = cat.n_products
        self.on_hand = cat.initial_stock[self.warehouses].astype(np.int64)  # physically in the warehouse
        self.reserved = np.zeros_like(self.on_hand)  # promised to orders, not yet shipped
        rate = cat.baseline_rate[self.warehouses]
        lead_demand = rate * p.reorder_cover_minutes
        self.reorder_point = np.ceil(lead_demand + p.safety_z * np.sqrt(lead_demand)).astype(np.int64)
        self.restock_size = np.ceil(rate * p.restock_cover_minutes).astype(np.int64) + p.min_initial_stock
        self.restock_due = np.full(self.on_hand.shape, -1, dtype=np.int64)  # minute a pending restock lands
        self.shipments: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # due minute -> (flat index, units)
        # closed loop: due minute -> (flat, units) of the radar's restocks and the transfers coming in
        self.radar_restocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.radar_inbound = np.zeros(self.on_hand.size, dtype=np.int64)  # flat: those units on the way
        self._ordered = np.zeros(0, dtype=np.int64)  # flat pairs the radar acted on: an inventory event this minute
        self._action_stats: dict = {}  # the radar's action costs since the last reserve
        self.paused = 0  # (warehouse, product) pairs of ours whose ads are paused (the table in force)
        self.capacity = cat.warehouse_capacity[self.warehouses].astype(np.float64)
        self.load = np.zeros(len(self.warehouses))  # last minute's served orders / capacity
        # what buyers (pressure) and the fulfilment delay react to: an EWMA of the load (model.smooth_load)
        self.smoothed_load = model.initial_load(cat, p)[self.warehouses]
        self.delay = model.fulfillment_delay(self.smoothed_load, p)
        self.n_products = n_p
        self.writer = ShardWriter(sink, f"warehouse-{shard:03d}", p.batch_size)

    def snapshot(self) -> dict:
        """What cities see when they choose: available stock and the smoothed load per warehouse."""
        available = self.on_hand - self.reserved
        return {
            "warehouses": self.warehouses,
            "load": self.smoothed_load.copy(),
            "available": {int(w): available[i] for i, w in enumerate(self.warehouses)},
        }

    def intervene(self, minute: int, iv: actions.Interventions) -> np.ndarray:
        """The radar's orders at `minute` for our warehouses: restocks land after the action lead time;
        transfers leave our donor warehouses now (what they can give); paused ads save spend while the
        table holds. Returns the transfers dispatched, rows (receiver, product, units, landing minute),
        for every warehouse shard's ``receive``. Costs are tallied with this minute's ``reserve``."""
        p = self.p
        mine = iv.restocks[np.isin(iv.restocks[:, 0], self.warehouses)]
        if len(mine):
            flat = self._flat(mine[:, 0], mine[:, 1])
            _book(self.radar_restocks, minute + p.action_restock_lead_minutes, flat, mine[:, 2])
            np.add.at(self.radar_inbound, flat, mine[:, 2])
            self._ordered = np.r_[self._ordered, flat]
            units = int(mine[:, 2].sum())
            self._add_stats(
                restock_orders=len(mine),
                restock_units=units,
                restock_cost=len(mine) * p.restock_cost_fixed + units * p.restock_cost_per_unit,
            )
        self.paused = int(np.isin(np.unique(iv.pauses, axis=0)[:, 0], self.warehouses).sum())
        out = iv.transfers[np.isin(iv.transfers[:, 2], self.warehouses)]
        if len(out) == 0:
            return np.zeros((0, 4), dtype=np.int64)
        flat = self._flat(out[:, 2], out[:, 1])
        on_hand = self.on_hand.reshape(-1)
        sent = actions.dispatch(on_hand - self.reserved.reshape(-1), flat, out[:, 3])
        np.subtract.at(on_hand, flat, sent)  # the units leave the donor now
        self._ordered = np.r_[self._ordered, flat[sent > 0]]
        n, units = int((sent > 0).sum()), int(sent.sum())
        self._add_stats(
            transfers=n,
            transfer_units=units,
            transfer_cost=n * p.transfer_cost_fixed + units * p.transfer_cost_per_unit,
        )
        go = sent > 0
        landing = np.full(int(go.sum()), minute + p.transfer_minutes, dtype=np.int64)
        return np.column_stack([out[go, 0], out[go, 1], sent[go], landing]).astype(np.int64)

    def receive(self, minute: int, *dispatched: np.ndarray) -> None:
        """Transfers on their way to our warehouses (from any shard's ``intervene`` at `minute`): announced
        as inbound now, sellable from their landing minute like a restock."""
        rows = np.concatenate(
            [np.zeros((0, 4), dtype=np.int64)] + [np.asarray(d, np.int64).reshape(-1, 4) for d in dispatched]
        )
        rows = rows[np.isin(rows[:, 0], self.warehouses)]
        for due in np.unique(rows[:, 3]):
            sel = rows[rows[:, 3] == due]
            flat = self._flat(sel[:, 0], sel[:, 1])
            _book(self.radar_restocks, int(due), flat, sel[:, 2])
            np.add.at(self.radar_inbound, flat, sel[:, 2])
            self._ordered = np.r_[self._ordered, flat]

    def _flat(self, warehouse: np.ndarray, product: np.ndarray) -> np.ndarray:
        local = np.array([self.local[int(w)] for w in warehouse], dtype=np.int64)
        return local * self.n_products + np.asarray(product, dtype=np.int64)

    def _add_stats(self, **stats) -> None:
        for k, v in stats.items():
            self._action_stats[k] = self._action_stats.get(k, 0) + v

    def reserve(self, minute: int, *proposals: dict) -> tuple[dict, dict, dict]:
        on_hand, reserved = self.on_hand.reshape(-1), self.reserved.reshape(-1)  # flat views
        changed = [np.arange(on_hand.size)] if minute == 0 else []  # minute 0: the opening stock of every SKU
        changed.append(self._ordered)  # the radar's restocks ordered for this minute: inbound changed
        self._ordered = np.zeros(0, dtype=np.int64)
        avail_before = on_hand - reserved

        # restocks landing now
        due = np.flatnonzero(self.restock_due.reshape(-1) == minute)
        on_hand[due] += self.restock_size.reshape(-1)[due]
        self.restock_due.reshape(-1)[due] = -1
        changed.append(due)
        idx, units = self.radar_restocks.pop(minute, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        np.add.at(on_hand, idx, units)
        np.subtract.at(self.radar_inbound, idx, units)
        changed.append(idx)
        # reserved units whose fulfilment delay has passed leave the building
        idx, units = self.shipments.pop(minute, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        np.subtract.at(on_hand, idx, units)
        np.subtract.at(reserved, idx, units)
        changed.append(idx)

        # requests for our warehouses, in (city, seq) order whatever shard they came from
        mine = [(prop, np.flatnonzero(np.isin(prop["warehouse"], self.warehouses))) for prop in proposals]
        city = np.concatenate([pr["city"][i] for pr, i in mine]) if mine else np.zeros(0, np.int64)
        seq = np.concatenate([pr["seq"][i] for pr, i in mine]) if mine else np.zeros(0, np.int64)
        product = np.concatenate([pr["product"][i] for pr, i in mine]) if mine else np.zeros(0, np.int64)
        qty = np.concatenate([pr["qty"][i] for pr, i in mine]) if mine else np.zeros(0, np.int64)
        wh = np.concatenate([pr["warehouse"][i] for pr, i in mine]) if mine else np.zeros(0, np.int64)
        order = np.lexsort((seq, city))
        local_wh = np.array([self.local[int(w)] for w in np.unique(wh)], dtype=np.int64)
        lookup = np.zeros(self.cat.n_warehouses, dtype=np.int64)
        lookup[np.unique(wh)] = local_wh
        key = lookup[wh] * self.n_products + product
        served_sorted = model.serve_in_order(on_hand - reserved, key[order], qty[order])
        served = np.empty_like(served_sorted)
        served[order] = served_sorted
        np.add.at(reserved, key[served], qty[served])
        changed.append(key[served])

        # load and delay: orders served this minute against capacity, smoothed over several minutes
        self.load = np.bincount(lookup[wh[served]], minlength=len(self.warehouses)) / self.capacity
        self.smoothed_load = model.smooth_load(self.smoothed_load, self.load, self.p)
        self.delay = model.fulfillment_delay(self.smoothed_load, self.p)
        ship_at = minute + np.ceil(self.delay[lookup[wh[served]]]).astype(np.int64)
        for due_minute in np.unique(ship_at):
            sel = ship_at == due_minute
            _book(self.shipments, int(due_minute), key[served][sel], qty[served][sel])

        available = on_hand - reserved
        if (available < 0).any() or (on_hand < 0).any() or (reserved < 0).any():  # an invariant, not input
            raise AssertionError("inventory went negative: the serving rule is broken")
        changed.append(self._order_restocks(minute, available))

        stats = self._emit_inventory(minute, np.unique(np.concatenate(changed)))
        stats.update(
            lost_orders=int((~served).sum()),
            lost_units=int(qty[~served].sum()),
            stockouts=int(((avail_before > 0) & (available <= 0)).sum()),
            stocked_out_skus=int((available <= 0).sum()),
            paused_sku_minutes=self.paused,
            ad_spend_saved=self.paused * self.p.ad_spend_per_sku_minute,
            **self._action_stats,
        )
        self._action_stats = {}
        offsets = np.cumsum([0] + [len(i) for _, i in mine])
        served_by_shard = {}
        for k, (pr, i) in enumerate(mine):
            mask = np.zeros(len(pr["city"]), dtype=bool)
            mask[i] = served[offsets[k] : offsets[k + 1]]
            served_by_shard[pr["shard"]] = mask
        return served_by_shard, self.snapshot(), stats

    def _order_restocks(self, minute: int, available: np.ndarray) -> np.ndarray:
        """SKUs at or under their reorder point with nothing on the way get a restock after a lead time.
        Returns the flat pairs ordered for (their inbound changed: they get an inventory event)."""
        need = (available.reshape(self.on_hand.shape) <= self.reorder_point) & (self.restock_due < 0)
        for i, w in enumerate(self.warehouses):
            products = np.flatnonzero(need[i])
            if len(products) == 0:
                continue
            rng = rng_for(self.p.seed, WAREHOUSE_RESTOCK, int(w), minute)
            lead = self.p.restock_lead_minutes
            self.restock_due[i, products] = minute + lead + rng.integers(0, lead // 3 + 1, len(products))
        return np.flatnonzero(need.reshape(-1))

    def inbound(self, minute: int, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(units on the way, minutes after the end of `minute` until the earliest lands; 0 if none) per
        flat pair. A restock due at minute d is sellable from the start of d: d - minute - 1 minutes on."""
        due = self.restock_due.reshape(-1)[flat]
        units = np.where(due >= 0, self.restock_size.reshape(-1)[flat], 0) + self.radar_inbound[flat]
        earliest = np.where(due >= 0, due, np.iinfo(np.int64).max)
        for d, (idx, _) in self.radar_restocks.items():  # a few due minutes, each a small array
            hit = np.isin(flat, idx)
            earliest[hit] = np.minimum(earliest[hit], d)
        return units, np.where(units > 0, (earliest - minute - 1).astype(np.float64), 0.0)

    def _emit_inventory(self, minute: int, flat: np.ndarray) -> dict:
        local_wh, product = np.divmod(flat, self.n_products)
        inbound_units, inbound_due = self.inbound(minute, flat)
        batch = inventory_batch(
            self.p.run_id,
            minute_start_ms(self.p, minute) + 59_999,
            minute,
            warehouse=self.warehouses[local_wh],
            product=product,
            on_hand=self.on_hand.reshape(-1)[flat],
            reserved=self.reserved.reshape(-1)[flat],
            delay=np.round(self.delay[local_wh], 3),
            inbound_units=inbound_units,
            inbound_due_minutes=inbound_due,
        )
        self.writer.add("inventory_fact", batch)
        return {"inventory_events": len(flat)}
