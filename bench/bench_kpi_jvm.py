"""First KPI cycle on YARN with the JVMs' default flags vs settings.spark_java_options (C1-only JIT,
serial GC), alternated on the same peak window so both see the same machine.

    .venv/bin/python -m bench.bench_kpi_jvm [--pairs 3] [--orders-per-min 1000]

The minute apps are short-lived: most of a first cycle is JVM start-up and warm-up (driver, YARN AM,
executor), where C2 compilation and parallel GC threads compete for 2 cores. Own database and Redis
namespace; JSON into bench/results/kpi_jvm_flags.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import uuid
from datetime import UTC, datetime

from bench.bench_kpi import RESULTS, _cycle, _insert
from flashsale.redis_keys import keys_for
from flashsale.settings import load_settings
from flashsale.stores import mongo_client, redis_client
from kpi import scenarios as synthetic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--orders-per-min", type=int, default=1000)
    a = ap.parse_args()
    base = load_settings(profile="cluster")
    common = dict(
        profile="cluster",
        mongo_db="flashsale_bench_kpi_jvm",
        mongo_auth_source=base.mongo_db,
        kpi_redis_namespace=f"fsr:bench:{uuid.uuid4().hex[:6]}",
    )
    variants = {"jvm_defaults": load_settings(spark_java_options="", **common), "tuned": load_settings(**common)}
    as_of = datetime.now(UTC).replace(second=0, microsecond=0)
    with mongo_client(variants["tuned"]) as c:
        c.drop_database(common["mongo_db"])
        _insert(
            c.get_default_database(),
            synthetic.peak(as_of, minutes=15, orders_per_min=a.orders_per_min, products=100, warehouses=10),
            base.hot_bucket_minutes,
        )
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    try:
        for i in range(a.pairs):
            for name, s in variants.items():
                redis_client(s).delete(*keys_for(s).all())
                r = _cycle(s, "yarn", as_of)
                runs[name].append(
                    {
                        "submit_to_snapshot_s": r["submit_to_snapshot_s"],
                        "timings_s": r["timings_s"],
                        "load_1min": os.getloadavg()[0],
                    }
                )
                print(i, name, r["submit_to_snapshot_s"], flush=True)
    finally:
        redis_client(base).delete(*keys_for(variants["tuned"]).all())
        with mongo_client(base) as c:
            c.drop_database(common["mongo_db"])
    med = {k: statistics.median(r["submit_to_snapshot_s"] for r in v) for k, v in runs.items()}
    out = {
        "measured_at": datetime.now(UTC).isoformat(),
        "java_options": variants["tuned"].spark_java_options,
        "params": vars(a),
        "median_submit_to_snapshot_s": med,
        "ratio_tuned_vs_defaults": round(med["tuned"] / med["jvm_defaults"], 3),
        "median_s": {
            k: {
                t: statistics.median(r["timings_s"].get(t, 0) for r in v)
                for t in ("spark_session_s", "spark_compute_s", "read_facts_s")
            }
            for k, v in runs.items()
        },
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kpi_jvm_flags.json").write_text(json.dumps(out, indent=2))
    print(
        json.dumps(
            {k: out[k] for k in ("median_submit_to_snapshot_s", "ratio_tuned_vs_defaults", "median_s")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
