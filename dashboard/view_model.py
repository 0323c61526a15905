"""Snapshot -> display models. Plain functions on plain dicts: no Streamlit, no Redis, no clock.

The Streamlit page (dashboard/app.py) only renders what :func:`resolve` returns. Everything a manager
reads (tile values, alert rows and their order, freshness text, stale/down banners, what is greyed out)
is decided here, so it is tested without a browser (tests/unit/test_dashboard_view_model.py).

Snapshot fields are those of the Redis contract (flashsale/redis_keys.py). Missing optional fields
degrade to "—" / empty tables instead of raising: an older or partial snapshot must never put a
traceback on screen.

The first table is the operator's action queue (the snapshot's ``queue``, kpi/rules.py ``action_queue``):
at most ``kpi_queue_size`` open alerts with an action to take on pairs still in stock, ranked by expected
loss (what doing nothing costs within the horizon). Pairs already out of stock are counted apart, the
costliest named. Everything else (monitor, clearing, actionable beyond the queue) is summarized in counts
by action, city and category, never listed by the thousand; restocks are grouped into one order per
warehouse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Literal

# action -> (label, background colour of the cell). Acting actions are upper case and coloured; "monitor" is
# lower case and grey, so the difference survives greyscale (stale view) and colour blindness. No emoji:
# servers and kiosks often lack an emoji font.
ACTIONS: dict[str, tuple[str, str]] = {
    "pause_ads": ("PAUSE ADS", "#f8c4c4"),
    "restock": ("RESTOCK", "#fddcaa"),
    "reroute": ("REROUTE", "#c6ddfa"),
    "monitor": ("monitor", "#ececec"),
}
UI_LABELS = {"airflow": "Airflow", "yarn_resourcemanager": "YARN", "hdfs_namenode": "HDFS", "ray_dashboard": "Ray"}
QUEUE_COLUMNS = ("#", "Product", "Warehouse", "City", "ETA pessim.", "P(stockout)", "Exp. loss", "Action", "Reason")
# pairs already out of stock: no ETA or probability left to show, the loss and the action are what count
EMPTY_SHELF_COLUMNS = ("#", "Product", "Warehouse", "City", "Exp. loss", "Action", "Reason")
DEFAULT_QUEUE_SIZE = 20  # an older snapshot without its own queue: rank its alerts the job's way


# ------------------------------------------------------------------ formatting
def parse_ts(value: Any) -> datetime | None:
    """ISO-8601 -> aware datetime (naive = UTC); None when absent or unparsable."""
    if not value or not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def format_age(seconds: float) -> str:
    """14 -> "14 s ago", 185 -> "3 min 5 s ago", 7300 -> "2 h 1 min ago"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s ago"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min {r} s ago" if r else f"{m} min ago"
    h, r = divmod(s, 3600)
    return f"{h} h {r // 60} min ago"


def format_eta(minutes: Any) -> str:
    """Minutes to stock out -> "0 min" / "38 min" / "2 h 05 min"; None (no demand) -> "—"."""
    if minutes is None or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        return "—"
    m = max(0.0, float(minutes))
    if m < 10:
        return f"{m:.1f} min"
    if m < 120:
        return f"{m:.0f} min"
    h, r = divmod(int(round(m)), 60)
    return f"{h} h {r:02d} min"


def _num(v: Any, default: float = 0.0) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else default


def _int(v: Any) -> int:
    return int(_num(v))


def _signed(n: float) -> str:
    return f"+{n:,.0f}" if n > 0 else f"{n:,.0f}" if n < 0 else "±0"


# ------------------------------------------------------------------ display models
@dataclass(frozen=True)
class Freshness:
    """How fresh the snapshot is. Stale is judged by when the KPI job *computed* it (wall clock), never by
    its data time: under the data clock (an accelerated or replayed sale) data time runs ahead of the
    wall clock, and a dead KPI job would otherwise look fresh until the snapshot expires."""

    as_of: datetime | None  # data time (the window end)
    age_s: float | None  # seconds since the KPI job computed the snapshot
    clock: str  # the data time, "12:03:10" in the display time zone
    ago: str  # "14 s ago": since it was computed
    text: str  # "data as of 12:03:10, updated 14 s ago"
    stale: bool


DeltaColor = Literal["normal", "inverse", "off"]  # st.metric's delta_color values used here


@dataclass(frozen=True)
class Tile:
    key: str
    label: str
    value: str
    delta: str | None = None
    delta_color: DeltaColor = "normal"
    help: str | None = None
    chart: tuple[float, ...] | None = None
    arrow: bool = True  # False: no up/down arrow (no change, or not a quantity)


@dataclass(frozen=True)
class AlertRow:
    rank: int
    alert_id: str
    product: str
    warehouse: str
    city: str
    eta_median: str
    eta_pessimistic: str
    p_stockout: float
    action: str  # raw action key (restock, ...)
    action_label: str  # "RESTOCK +120"
    reason: str
    status: str
    expected_loss: str  # "12,400" (margin lost within the horizon if nobody acts)

    def cells(self) -> tuple:
        return (
            self.rank,
            self.product,
            self.warehouse,
            self.city,
            self.eta_pessimistic,
            self.p_stockout,
            self.expected_loss,
            self.action_label,
            self.reason,
        )

    def shelf_cells(self) -> tuple:
        """The row under EMPTY_SHELF_COLUMNS (a pair already out of stock)."""
        return (self.rank, self.product, self.warehouse, self.city, self.expected_loss, self.action_label, self.reason)


@dataclass(frozen=True)
class GeoRow:
    place: str
    high: int
    watch: int
    expected_stockouts: float


@dataclass(frozen=True)
class WarehouseRow:
    warehouse: str
    city: str
    load: str  # "1.4× cap"
    delay: str  # "35 min"
    reason: str


@dataclass(frozen=True)
class DashboardView:
    run_id: str
    freshness: Freshness
    tiles: tuple[Tile, ...]
    queue: tuple[AlertRow, ...]  # the action queue, by expected loss
    alerts_total: int  # open alerts of every kind
    out_of_stock: int  # pairs already out of stock with an action (not warnings: listed apart from the queue)
    empty_shelves: tuple[AlertRow, ...]  # the costliest of them (as many as the queue holds), by expected loss
    summary: tuple[str, ...]  # what is not in the queue, counted; restock orders grouped by warehouse
    geo_level: str  # "city" or "province"
    geo: tuple[GeoRow, ...]
    overloaded: tuple[WarehouseRow, ...]
    warehouses_total: int
    risk_trend: tuple[float, ...]  # expected stockouts per run, oldest first
    risk_trend_label: str


@dataclass(frozen=True)
class Banner:
    level: str  # "error" | "warning" | "info"
    text: str


@dataclass(frozen=True)
class Fetch:
    """Outcome of one Redis read: a snapshot, no snapshot (None, error None), or an error message."""

    snapshot: dict | None = None
    error: str | None = None


@dataclass(frozen=True)
class Screen:
    view: DashboardView | None  # what to draw; None = nothing to show yet
    banner: Banner | None
    greyed: bool  # True: the view is the last good data, not live
    last_good: dict | None = field(default=None, repr=False)  # keep for the next refresh


# ------------------------------------------------------------------ builders
def freshness(snapshot: dict, now: datetime, stale_seconds: float, tz: tzinfo | None = None) -> Freshness:
    as_of = parse_ts(snapshot.get("data_as_of"))
    computed = parse_ts(snapshot.get("computed_at"))
    if as_of is None or computed is None:
        return Freshness(as_of, None, "—", "unknown age", "unknown data time or update time", True)
    age = (now - computed).total_seconds()
    clock = as_of.astimezone(tz).strftime("%H:%M:%S") if tz else as_of.astimezone().strftime("%H:%M:%S")
    ago = format_age(age)
    return Freshness(as_of, age, clock, ago, f"data as of {clock}, updated {ago}", age > stale_seconds)


def _action_label(action: str, numbers: dict) -> str:
    label = ACTIONS.get(action, (action or "?", ""))[0]
    if action == "restock" and numbers.get("suggested_units"):
        inbound = f" ({_int(numbers['inbound_units']):,} on the way)" if numbers.get("inbound_units") else ""
        return f"{label} +{_int(numbers['suggested_units']):,} u{inbound}"
    if action == "reroute" and numbers.get("reroute_from_warehouse_id") is not None:
        units = f" {_int(numbers['surplus_units']):,} u" if numbers.get("surplus_units") else ""
        return f"{label}{units} from W{_int(numbers['reroute_from_warehouse_id'])}"
    return label


def snapshot_queue(snapshot: dict) -> tuple[list[dict], dict]:
    """(queue, summary): the snapshot's own, or for an older snapshot without a ``queue`` key its alerts ranked
    the job's way. build_view computes it once and hands it to queue_rows and summary_lines."""
    from kpi.rules import action_queue

    if snapshot.get("queue") is not None:
        return list(snapshot["queue"]), dict(snapshot.get("queue_summary") or {})
    return action_queue(list(snapshot.get("alerts") or []), DEFAULT_QUEUE_SIZE)


def queue_rows(snapshot: dict, queue: list[dict] | None = None) -> tuple[AlertRow, ...]:
    """The queue's rows (``queue``: snapshot_queue's, computed here when not given)."""
    warehouses = {w.get("warehouse_id"): w for w in snapshot.get("warehouses") or []}
    skus = {(s.get("product_id"), s.get("warehouse_id")): s for s in snapshot.get("sku_risk") or []}
    rows = []
    for i, a in enumerate(snapshot_queue(snapshot)[0] if queue is None else queue):
        pid, wid = a.get("product_id"), a.get("warehouse_id")
        n = a.get("numbers") or {}
        sku = skus.get((pid, wid), {})
        wh = warehouses.get(wid) or sku
        category = a.get("category") or sku.get("category")
        loss = n.get("expected_loss")
        rows.append(
            AlertRow(
                rank=_int(a.get("rank", i + 1)),
                alert_id=str(a.get("alert_id", f"{pid}:{wid}")),
                product=f"#{pid} {category}" if category else f"#{pid}",
                warehouse=wh.get("warehouse_name") or f"W{wid}",
                city=wh.get("city") or a.get("city") or "—",
                eta_median=format_eta(n.get("eta_median_min")),
                eta_pessimistic=format_eta(n.get("eta_pessimistic_min")),
                p_stockout=round(_num(n.get("p_stockout")), 4),
                action=str(a.get("action", "")),
                action_label=_action_label(str(a.get("action", "")), n),
                reason=str(a.get("reason", "")),
                status=str(a.get("status", "")),
                expected_loss=f"{_num(loss):,.0f}" if loss is not None else "—",
            )
        )
    return tuple(rows)


def _top(counts: dict | None, k: int = 3) -> str:
    items = sorted(((str(a), _int(b)) for a, b in (counts or {}).items()), key=lambda kv: (-kv[1], kv[0]))
    more = f", +{len(items) - k} more" if len(items) > k else ""
    return ", ".join(f"{a} {b:,}" for a, b in items[:k]) + more


def summary_lines(snapshot: dict, summary: dict | None = None) -> tuple[str, ...]:
    """The rest of the alerts, counted (never listed), the pairs already out of stock (counted, the costliest
    named), and the restocks as one order per warehouse (``summary``: snapshot_queue's, computed here when
    not given)."""
    if summary is None:
        _, summary = snapshot_queue(snapshot)
    names = {w.get("warehouse_id"): w.get("warehouse_name") for w in snapshot.get("warehouses") or []}

    def warehouse(wid) -> str:
        return names.get(wid) or f"W{wid}"

    lines = []
    rest = _int(summary.get("not_in_queue"))
    if rest:
        lines.append(
            f"Not in the queue: {rest:,} alerts ({_int(summary.get('actionable_not_in_queue')):,} actionable, "
            f"expected loss {_num(summary.get('expected_loss_not_in_queue')):,.0f}). "
            f"By action: {_top(summary.get('by_action'), 4)}. By city: {_top(summary.get('by_city'))}. "
            f"By category: {_top(summary.get('by_category'))}."
        )
    empty = summary.get("out_of_stock") or {}
    if count := _int(empty.get("count")):
        shown = (empty.get("items") or [])[:5]
        lines.append(
            f"Out of stock now (not in the queue): {count:,} pairs, expected loss "
            f"{_num(empty.get('expected_loss')):,.0f} within the horizon. Costliest: "
            + "; ".join(
                f"#{a.get('product_id')} at {warehouse(a.get('warehouse_id'))}"
                f" ({str(a.get('action') or '').replace('_', ' ')})"
                for a in shown
            )
            + ("" if count <= len(shown) else f"; +{count - len(shown):,} more")
        )
    orders = summary.get("restock_orders") or []
    if orders:
        lines.append(
            "Restock orders: "
            + "; ".join(
                f"{warehouse(o.get('warehouse_id'))}: {len(o.get('lines') or [])} lines, {_int(o.get('units')):,} u"
                for o in orders
            )
        )
    return tuple(lines)


def tiles(snapshot: dict, fresh: Freshness) -> tuple[Tile, ...]:
    k = snapshot.get("kpis") or {}
    opm = [_num(p.get("orders")) for p in snapshot.get("orders_per_minute") or []]
    trend = snapshot.get("trend") or []
    last = _int(k.get("orders_last_minute"))
    prev_minute = opm[-2] if len(opm) >= 2 else None

    def trend_delta(name: str) -> str | None:
        if len(trend) < 2:
            return None
        return f"{_signed(_num(k.get(name)) - _num(trend[-2].get(name)))} vs last run"

    def trend_chart(name: str) -> tuple[float, ...] | None:
        pts = tuple(_num(p.get(name)) for p in trend)
        return pts if len(pts) >= 2 else None

    n_wh = len(snapshot.get("warehouses") or [])
    out = (
        Tile(
            "orders",
            "Orders / min",
            f"{last:,}",
            f"{_signed(last - prev_minute)} vs prev. min" if prev_minute is not None else None,
            "normal",
            f"orders in the last complete minute; window average {_num(k.get('orders_per_minute_avg')):,.1f}/min",
            tuple(opm) if len(opm) >= 2 else None,
        ),
        Tile(
            "high_risk",
            "High-risk SKUs",
            f"{_int(k.get('high_risk_sku_count')):,}",
            trend_delta("high_risk_sku_count"),
            "inverse",
            f"distinct products with a warehouse at high stockout risk "
            f"({_int(k.get('high_risk_pairs')):,} product×warehouse pairs, {_int(k.get('watch_pairs')):,} on watch)",
            trend_chart("high_risk_sku_count"),
        ),
        Tile(
            "alerts",
            "Open alerts",
            f"{_int(k.get('open_alerts')):,}",
            trend_delta("open_alerts"),
            "inverse",
            "alerts open after hysteresis (new, open or clearing)",
            trend_chart("open_alerts"),
        ),
        Tile(
            "overloaded",
            "Overloaded warehouses",
            f"{_int(k.get('overloaded_warehouses')):,} / {n_wh}"
            if n_wh
            else f"{_int(k.get('overloaded_warehouses')):,}",
            None,
            "off",
            "load over capacity or fulfillment delay over its limit",
        ),
        Tile(
            "freshness",
            "Data freshness",
            fresh.ago,
            f"data as of {fresh.clock}",
            "off",
            f"{fresh.text}; KPI run {snapshot.get('run_id', '?')}",
            arrow=False,
        ),
    )
    # no change: grey, no arrow (an up arrow on "±0" reads as "worse")
    return tuple(replace(t, delta_color="off", arrow=False) if t.delta and t.delta.startswith("±0") else t for t in out)


def geo_rows(snapshot: dict, limit: int = 8) -> tuple[str, tuple[GeoRow, ...]]:
    """Risk by city (by province when there are more cities than fit), most expected stockouts first."""
    cities = snapshot.get("geo_city") or []
    level, rows = (
        ("city", cities)
        if len(cities) <= limit or not snapshot.get("geo_province")
        else ("province", snapshot.get("geo_province") or [])
    )
    rows = [r for r in rows if _int(r.get("high_risk_pairs")) or _int(r.get("watch_pairs"))]
    rows.sort(key=lambda r: (-_num(r.get("expected_stockouts")), str(r.get(level))))
    return level, tuple(
        GeoRow(
            str(r.get(level)),
            _int(r.get("high_risk_pairs")),
            _int(r.get("watch_pairs")),
            round(_num(r.get("expected_stockouts")), 2),
        )
        for r in rows[:limit]
    )


def overloaded_rows(snapshot: dict) -> tuple[WarehouseRow, ...]:
    whs = [w for w in snapshot.get("warehouses") or [] if w.get("overloaded")]
    whs.sort(key=lambda w: (-_num(w.get("load_ratio")), -_num(w.get("fulfillment_delay"))))
    return tuple(
        WarehouseRow(
            warehouse=w.get("warehouse_name") or f"W{w.get('warehouse_id')}",
            city=w.get("city") or "—",
            load=f"{_num(w.get('load_ratio')):.2f}× cap",
            delay=f"{_num(w.get('fulfillment_delay')):.0f} min" if w.get("fulfillment_delay") is not None else "—",
            reason=str(w.get("reason") or ""),
        )
        for w in whs
    )


def build_view(snapshot: dict, now: datetime, stale_seconds: float, tz: tzinfo | None = None) -> DashboardView:
    fresh = freshness(snapshot, now, stale_seconds, tz)
    level, geo = geo_rows(snapshot)
    trend = snapshot.get("trend") or []
    alerts = snapshot.get("alerts") or []
    queue, summary = snapshot_queue(snapshot)  # once: an older snapshot's queue is computed here
    return DashboardView(
        run_id=str(snapshot.get("run_id", "?")),
        freshness=fresh,
        tiles=tiles(snapshot, fresh),
        queue=queue_rows(snapshot, queue),
        alerts_total=_int(snapshot.get("alerts_total", len(alerts))),
        out_of_stock=_int((summary.get("out_of_stock") or {}).get("count")),
        empty_shelves=queue_rows(snapshot, list((summary.get("out_of_stock") or {}).get("items") or [])),
        summary=summary_lines(snapshot, summary),
        geo_level=level,
        geo=geo,
        overloaded=overloaded_rows(snapshot),
        warehouses_total=len(snapshot.get("warehouses") or []),
        risk_trend=tuple(round(_num(p.get("expected_stockouts")), 3) for p in trend),
        risk_trend_label=f"expected stockouts, last {len(trend)} runs",
    )


# ------------------------------------------------------------------ the refresh state machine
def resolve(
    fetch: Fetch,
    last_good: dict | None,
    now: datetime,
    stale_seconds: float,
    refresh_seconds: float,
    tz: tzinfo | None = None,
) -> Screen:
    """What to show after one read. Live data when fresh; otherwise the newest data we have, greyed,
    under a banner that says why. A later successful read recovers by itself (no state but last_good)."""
    retry = f"retrying every {refresh_seconds:g} s"

    def fallback(banner_text: str, level: str) -> Screen:
        if last_good is None:
            return Screen(None, Banner(level, banner_text), True, None)
        try:
            view = build_view(last_good, now, stale_seconds, tz)
        except Exception:  # noqa: BLE001 - the last good snapshot rendered before; be safe anyway
            return Screen(None, Banner(level, banner_text), True, None)
        return Screen(
            view,
            Banner(level, f"{banner_text} Showing the last good data ({view.freshness.text}), greyed out."),
            True,
            last_good,
        )

    if fetch.error is not None:
        return fallback(f"⚠ Redis unreachable ({fetch.error}); {retry}.", "error")
    if fetch.snapshot is None:
        return fallback(
            f"⚠ No KPI snapshot in Redis (never written or expired: is the KPI job running?); {retry}.",
            "warning" if last_good else "info",
        )
    try:
        view = build_view(fetch.snapshot, now, stale_seconds, tz)
    except Exception as exc:  # noqa: BLE001 - a malformed snapshot must not reach the screen as a traceback
        return fallback(f"⚠ The KPI snapshot could not be read ({type(exc).__name__}); {retry}.", "error")
    newest = fetch.snapshot
    if last_good is not None and _as_of(last_good) > _as_of(newest):
        newest = last_good  # never replace newer data by an older snapshot
    if view.freshness.stale:
        limit = format_age(stale_seconds).removesuffix(" ago")
        return Screen(
            view,
            Banner(
                "warning",
                f"⚠ Stale data: the latest KPI snapshot was computed {view.freshness.ago} "
                f"(limit {limit}; data as of {view.freshness.clock}); is the KPI job running? "
                f"{retry.capitalize()}.",
            ),
            True,
            newest,
        )
    return Screen(view, None, False, newest)


def _as_of(snapshot: dict) -> datetime:
    return parse_ts(snapshot.get("data_as_of")) or datetime.min.replace(tzinfo=UTC)


def ui_links(urls: dict[str, str]) -> tuple[tuple[str, str | None], ...]:
    """(label, url or None when the profile does not run it) for Airflow, YARN, HDFS, Ray, in that order."""
    return tuple((label, urls.get(key)) for key, label in UI_LABELS.items())


__all__ = [
    "ACTIONS",
    "EMPTY_SHELF_COLUMNS",
    "QUEUE_COLUMNS",
    "AlertRow",
    "Banner",
    "DashboardView",
    "Fetch",
    "Freshness",
    "GeoRow",
    "Screen",
    "Tile",
    "WarehouseRow",
    "queue_rows",
    "snapshot_queue",
    "build_view",
    "format_age",
    "format_eta",
    "freshness",
    "geo_rows",
    "overloaded_rows",
    "parse_ts",
    "resolve",
    "tiles",
    "ui_links",
    "summary_lines",
]
