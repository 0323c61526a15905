"""The sale's world: cities, warehouses and products, built deterministically from the seed.

Every actor rebuilds the same catalogue from SimParams (cheap: tens of ms), so nothing large is
shipped between processes and no shard can disagree about a product's price or a city's warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from ray_gen.params import SimParams
from ray_gen.streams import CAPACITY, CATALOGUE, MARGIN, rng_for

# 27 cities in the 7 provinces of Nepal (Daraz Nepal's 11.11 covered 27 cities)
CITY_NAMES: tuple[tuple[str, str], ...] = (
    ("Kathmandu", "Bagmati"),
    ("Lalitpur", "Bagmati"),
    ("Bhaktapur", "Bagmati"),
    ("Bharatpur", "Bagmati"),
    ("Hetauda", "Bagmati"),
    ("Pokhara", "Gandaki"),
    ("Gorkha", "Gandaki"),
    ("Baglung", "Gandaki"),
    ("Biratnagar", "Koshi"),
    ("Dharan", "Koshi"),
    ("Itahari", "Koshi"),
    ("Birtamode", "Koshi"),
    ("Damak", "Koshi"),
    ("Birgunj", "Madhesh"),
    ("Janakpur", "Madhesh"),
    ("Kalaiya", "Madhesh"),
    ("Rajbiraj", "Madhesh"),
    ("Lahan", "Madhesh"),
    ("Butwal", "Lumbini"),
    ("Siddharthanagar", "Lumbini"),
    ("Nepalgunj", "Lumbini"),
    ("Tulsipur", "Lumbini"),
    ("Ghorahi", "Lumbini"),
    ("Birendranagar", "Karnali"),
    ("Dhangadhi", "Sudurpashchim"),
    ("Bhimdatta", "Sudurpashchim"),
    ("Tikapur", "Sudurpashchim"),
)
CATEGORY_NAMES = (
    "electronics",
    "fashion",
    "beauty",
    "home",
    "grocery",
    "mobiles",
    "appliances",
    "sports",
    "toys",
    "books",
    "health",
    "automotive",
)


@dataclass(frozen=True)
class Catalogue:
    # cities
    city_name: tuple[str, ...]
    city_province: tuple[str, ...]
    city_demand: np.ndarray  # demand factor per city (mean 1)
    city_warehouse: np.ndarray  # the one warehouse serving each city
    # warehouses
    warehouse_city: np.ndarray
    warehouse_capacity: np.ndarray  # orders per minute it can pick and ship
    warehouse_orders: np.ndarray  # expected orders per minute at intensity 1 (the cities it serves)
    # products
    category: np.ndarray  # category index per product
    category_name: tuple[str, ...]
    category_sigma: np.ndarray  # log-price sigma per category
    base_price: np.ndarray
    discount: np.ndarray  # fraction off, 0..0.8
    seller: np.ndarray
    popularity: np.ndarray  # heavy-tailed (Pareto) weight
    choice_weight: np.ndarray  # popularity x discount multiplier, normalised to sum 1
    discount_effect: float  # sale-wide lambda multiplier from the average discount
    margin_rate: np.ndarray  # gross margin per unit of revenue, per product (its category's)
    # inventory
    baseline_rate: np.ndarray  # expected units per minute per (warehouse, product) at intensity 1
    initial_stock: np.ndarray  # (warehouse, product)

    @property
    def n_cities(self) -> int:
        return len(self.city_name)

    @property
    def n_warehouses(self) -> int:
        return len(self.warehouse_city)

    @property
    def n_products(self) -> int:
        return len(self.base_price)

    def discounted_price(self) -> np.ndarray:
        return self._discounted_price

    # per-product arrays every order draw reads: computed once per catalogue (not per draw), read-only
    @cached_property
    def _discounted_price(self) -> np.ndarray:
        return _read_only(self.base_price * (1.0 - self.discount))

    @cached_property
    def price_sigma(self) -> np.ndarray:
        """Log-price sigma per product (its category's)."""
        return _read_only(self.category_sigma[self.category])


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _cities(p: SimParams, rng: np.random.Generator):
    names = [
        CITY_NAMES[i] if i < len(CITY_NAMES) else (f"City-{i:03d}", f"Province-{i % 7 + 1}") for i in range(p.n_cities)
    ]
    # a few big cities and a long tail of small ones (Kathmandu-like capital first)
    demand = rng.lognormal(0.0, 0.6, p.n_cities)
    demand = np.sort(demand)[::-1]
    demand = demand / demand.mean()
    return tuple(n for n, _ in names), tuple(pr for _, pr in names), demand


def _warehouses(p: SimParams, provinces: tuple[str, ...], demand: np.ndarray):
    """Warehouses sit in the busiest cities; every other city is served from its own province if it can be."""
    order = np.argsort(-demand, kind="stable")
    wh_city = np.array([order[i % len(order)] for i in range(p.n_warehouses)], dtype=np.int64)
    city_wh = np.full(len(demand), -1, dtype=np.int64)
    for w, c in enumerate(wh_city):
        if city_wh[c] < 0:
            city_wh[c] = w
    for c in range(len(demand)):
        if city_wh[c] >= 0:
            continue
        same_province = [w for w, wc in enumerate(wh_city) if provinces[wc] == provinces[c]]
        city_wh[c] = same_province[0] if same_province else 0  # else: the capital's hub
    return wh_city, city_wh


def _products(p: SimParams, rng: np.random.Generator):
    n = p.n_products
    n_cat = p.n_categories
    category = rng.integers(0, n_cat, n)
    cat_names = tuple(CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"category-{i}" for i in range(n_cat))
    cat_median_price = np.exp(rng.uniform(np.log(300), np.log(20_000), n_cat))  # NPR
    cat_sigma = rng.uniform(p.price_sigma_min, p.price_sigma_max, n_cat)
    base_price = np.round(cat_median_price[category] * rng.lognormal(0.0, 0.5, n), 2)
    base_price = np.maximum(base_price, 1.0)
    discount = np.round(rng.beta(2.0, 5.0, n) * 0.8, 2)
    seller = rng.integers(0, p.n_sellers, n)
    popularity = (1.0 - rng.random(n)) ** (-1.0 / p.popularity_tail)  # Pareto(alpha), >= 1
    return category, cat_names, cat_sigma, base_price, discount, seller, popularity


@lru_cache(maxsize=8)
def build_catalogue(p: SimParams) -> Catalogue:
    rng = rng_for(p.seed, CATALOGUE)
    city_name, city_province, demand = _cities(p, rng)
    wh_city, city_wh = _warehouses(p, city_province, demand)
    category, cat_names, cat_sigma, base_price, discount, seller, popularity = _products(p, rng)
    if not p.sale_discounts:  # a normal day: list prices (drawn all the same, so nothing else shifts)
        discount = np.zeros_like(discount)

    weight = popularity * (1.0 - discount) ** (-p.discount_elasticity)
    weight = weight / weight.sum()
    discount_effect = float(np.mean((1.0 - discount) ** (-p.discount_elasticity)) ** 0.5)

    # baseline orders/minute per warehouse: sum of the lambdas of the cities it serves
    city_rate = p.base_orders_per_city_minute * discount_effect * demand
    wh_orders = np.bincount(city_wh, weights=city_rate, minlength=p.n_warehouses)
    units_per_order = 1.0 + p.extra_units_mean
    baseline_rate = wh_orders[:, None] * weight[None, :] * units_per_order
    # sized for a busy day, not all alike (own stream: the catalogue's other draws do not shift)
    headroom = p.capacity_headroom * np.exp(
        p.capacity_headroom_sigma * rng_for(p.seed, CAPACITY).standard_normal(p.n_warehouses)
    )
    capacity = np.maximum(1, np.ceil(headroom * wh_orders)).astype(np.int64)
    cat_margin = rng_for(p.seed, MARGIN).uniform(p.margin_rate_min, p.margin_rate_max, p.n_categories)

    noise = rng.lognormal(0.0, 0.3, baseline_rate.shape)
    cover = baseline_rate * p.stock_cover_minutes
    # planners stock for normal-day demand plus noise; a flash spike is what they under-plan for
    stock = np.ceil(cover * noise + p.safety_z * np.sqrt(cover)).astype(np.int64) + p.min_initial_stock
    return Catalogue(
        city_name=city_name,
        city_province=city_province,
        city_demand=demand,
        city_warehouse=city_wh,
        warehouse_city=wh_city,
        warehouse_capacity=capacity,
        warehouse_orders=wh_orders,
        category=category,
        category_name=cat_names,
        category_sigma=cat_sigma,
        base_price=base_price,
        discount=discount,
        seller=seller,
        popularity=popularity,
        choice_weight=weight,
        discount_effect=discount_effect,
        margin_rate=cat_margin[category],
        baseline_rate=baseline_rate,
        initial_stock=stock,
    )


def dimension_records(cat: Catalogue) -> dict[str, list[dict]]:
    """The three dimensions as contract records (products_dim, warehouses_dim, cities_dim)."""
    cities = [
        {
            "city_id": i,
            "city": cat.city_name[i],
            "province": cat.city_province[i],
            "demand_factor": float(cat.city_demand[i]),
        }
        for i in range(cat.n_cities)
    ]
    warehouses = [
        {
            "warehouse_id": w,
            "warehouse_name": f"WH-{cat.city_name[int(c)]}-{w:02d}",
            "city_id": int(c),
            "capacity": int(cat.warehouse_capacity[w]),
        }
        for w, c in enumerate(cat.warehouse_city)
    ]
    products = [
        {
            "product_id": i,
            "category": cat.category_name[int(cat.category[i])],
            "base_price": float(cat.base_price[i]),
            "seller_id": int(cat.seller[i]),
            "popularity": float(cat.popularity[i]),
            "discount_pct": float(cat.discount[i] * 100),
        }
        for i in range(cat.n_products)
    ]
    return {"products_dim": products, "warehouses_dim": warehouses, "cities_dim": cities}
