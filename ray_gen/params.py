"""Simulator parameters: one frozen, validated object. Bad input names the field; nothing is coerced."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

Pos = Annotated[float, Field(gt=0)]
NonNeg = Annotated[float, Field(ge=0)]

# 11.11 sale: the simulated clock starts two hours before midnight (warm-up), the spike hits at 00:00
DEFAULT_START = datetime(2025, 11, 10, 22, 0, tzinfo=UTC)


class FlashCurve(BaseModel):
    """Flash intensity over the sale: warm-up ramp, a spike at `spike_minute`, exponential decay, later waves."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    warmup_level: NonNeg = 0.4  # intensity at minute 0, ramping linearly to 1.0 at the spike
    spike_minute: Annotated[int, Field(ge=0)] = 120
    spike_peak: NonNeg = 8.0  # extra intensity at the spike (total = 1 + peak)
    spike_decay_minutes: Pos = 25.0
    waves: tuple[tuple[int, float, float], ...] = ((360, 3.0, 15.0), (720, 2.0, 15.0))  # (minute, peak, decay)

    @classmethod
    def flat(cls) -> FlashCurve:
        """No sale: constant intensity 1 (the control for 'stockouts need a spike')."""
        return cls(warmup_level=1.0, spike_peak=0.0, waves=())


class SimParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    seed: Annotated[int, Field(ge=0)] = 1111
    run_id: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_]+$")] = "r1111"
    start: AwareDatetime = DEFAULT_START
    minutes: Annotated[int, Field(ge=1)] = 24 * 60

    # catalogue sizes
    n_cities: Annotated[int, Field(ge=1, le=500)] = 27
    n_warehouses: Annotated[int, Field(ge=1, le=200)] = 20
    n_products: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    n_categories: Annotated[int, Field(ge=1, le=100)] = 12
    n_sellers: Annotated[int, Field(ge=1)] = 1_500

    # demand
    base_orders_per_city_minute: Pos = 20.0  # lambda before intensity, discount, city and pressure factors
    flash: FlashCurve = FlashCurve()
    discount_elasticity: NonNeg = 1.5  # demand x (1 - discount)^-elasticity
    popularity_tail: Annotated[float, Field(gt=0.5, le=5)] = 1.1  # Pareto alpha: smaller = heavier tail
    scarcity_boost: NonNeg = 1.0  # "only N left": weight x (1 + boost * exp(-available / scale))
    scarcity_scale_units: Pos = 10.0
    extra_units_mean: Annotated[float, Field(ge=0, le=20)] = 0.25  # units per order = 1 + Poisson(extra_units_mean)
    price_sigma_min: NonNeg = 0.05  # per-category log-price sigma is drawn in [min, max]
    price_sigma_max: NonNeg = 0.25

    # inventory and fulfilment
    stock_cover_minutes: Pos = 180.0  # initial stock = this many minutes of baseline demand (x noise)
    min_initial_stock: Annotated[int, Field(ge=0)] = 5
    safety_z: NonNeg = 4.0  # safety stock = z * sqrt(expected units): covers Poisson noise, not a flash spike
    reorder_cover_minutes: Pos = 90.0  # reorder when available < this many minutes of baseline demand (> lead time)
    restock_cover_minutes: Pos = 120.0  # a restock brings this many minutes of baseline demand
    restock_lead_minutes: Annotated[int, Field(ge=1)] = 45
    # minutes from reservation to shipping at zero load; x (1 + load + max(0, load - 1)^2), so at exactly
    # capacity (smoothed load 1) the delay is 2 x base = 30 min (the KPI's kpi_overload_delay_minutes)
    base_fulfillment_minutes: Pos = 15.0
    max_fulfillment_minutes: Pos = 24 * 60.0
    # warehouse capacity = its baseline orders per minute x headroom x exp(sigma * z), z ~ N(0, 1) per
    # warehouse (own stream): sized for a busy day, not all alike; only the flash spike overloads some
    capacity_headroom: Pos = 5.0
    capacity_headroom_sigma: NonNeg = 0.35
    # demand x 1 / (1 + s * max(0, smoothed load - 1)) for overloaded warehouses (buyers see slow delivery)
    pressure_sensitivity: NonNeg = 0.5
    # the load buyers and the delay react to: EWMA of orders/capacity with weight 1 / this on the newest
    # minute (1 = last minute's load only, which rings period-2 after a spike)
    load_smoothing_minutes: Annotated[float, Field(ge=1)] = 10.0

    # economics (ray_gen/actions.py, Progress): NPR; assumptions, not measurements
    margin_rate_min: Annotated[float, Field(ge=0, le=1)] = 0.08  # per-category gross margin rate drawn in [min, max]
    margin_rate_max: Annotated[float, Field(ge=0, le=1)] = 0.35
    sale_discounts: bool = True  # False: a normal day (no discounts: list prices, choice by popularity alone)

    # closed loop (flashsale backtest --act, ray_gen/actions.py): how the world answers the radar's actions
    action_restock_lead_minutes: Annotated[int, Field(ge=1)] = 45  # a restock the radar orders lands this much later
    restock_cost_fixed: NonNeg = 2_000.0  # per restock order the radar places (expedited PO, inbound handling)
    restock_cost_per_unit: NonNeg = 20.0
    transfer_minutes: Annotated[int, Field(ge=1)] = 20  # a reroute's units land at the receiver this much later
    transfer_cost_fixed: NonNeg = 1_500.0  # per dispatched transfer (a van between warehouses)
    transfer_cost_per_unit: NonNeg = 15.0
    pause_ads_demand_factor: Annotated[float, Field(ge=0, le=1)] = (
        0.5  # share of a SKU's demand left while its ads are paused
    )
    # share of the paused-away demand that buys a substitute (same category, same warehouse, in stock) instead
    pause_ads_substitution: Annotated[float, Field(ge=0, le=1)] = 0.5
    ad_spend_per_sku_minute: NonNeg = 10.0  # ad spend of one (warehouse, product) pair per minute: saved while paused

    # the planned sale calendar (ray_gen/sale_plan.py): the planner's forecast of each event's lift and decay
    # is off by a log-normal factor with this sigma (own stream), then rounded; 0: the true numbers, rounded
    plan_error_sigma: NonNeg = 0.2

    # normal-day history (ray_gen/history.py): the archive the KPI baseline reads
    history_drift_sigma: NonNeg = 0.3  # day-to-day popularity drift: log-normal multiplier per product per day

    # distribution and sinks
    city_shards: Annotated[int, Field(ge=1, le=256)] = 2
    warehouse_shards: Annotated[int, Field(ge=1, le=256)] = 2
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000  # records per sink write

    @model_validator(mode="after")
    def _consistent(self) -> SimParams:
        if self.price_sigma_max < self.price_sigma_min:
            raise ValueError("price_sigma_max must be >= price_sigma_min")
        if self.margin_rate_max < self.margin_rate_min:
            raise ValueError("margin_rate_max must be >= margin_rate_min")
        if self.city_shards > self.n_cities:
            raise ValueError(f"city_shards ({self.city_shards}) must be <= n_cities ({self.n_cities})")
        if self.warehouse_shards > self.n_warehouses:
            raise ValueError(
                f"warehouse_shards ({self.warehouse_shards}) must be <= n_warehouses ({self.n_warehouses})"
            )
        return self

    def replace(self, **changes) -> SimParams:
        return make_params(**{**dict(self), **changes})


class ParamsError(ValueError):
    """A simulator parameter is invalid; the message names the field."""


def make_params(**values) -> SimParams:
    """Build SimParams, turning pydantic's report into one line that names the bad field."""
    try:
        return SimParams(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "params"
        raise ParamsError(f"simulator parameter {field}: {err['msg']} (got {err.get('input')!r})") from None
