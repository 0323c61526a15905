"""Cold baseline from the archive: typical units/min per (product, warehouse) over archived hours.

The archive (written by the archival job) is Parquet under ``<archive_root>/orders_fact/date=YYYY-MM-DD/
hour=HH/``. Only the last ``days`` dates are read (partition pruning on the directory names). A missing
or empty archive gives an empty baseline: the KPI job then runs on the window alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

BASELINE_COLUMNS = ["product_id", "warehouse_id", "baseline_velocity"]


def empty_baseline() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": pd.Series(dtype="int64"),
            "warehouse_id": pd.Series(dtype="int64"),
            "baseline_velocity": pd.Series(dtype="float64"),
        }
    )


def baseline_from_table(table: pa.Table) -> pd.DataFrame:
    """``table``: product_id, warehouse_id, order_qty, date, hour (one row per archived order).

    baseline_velocity = archived units of the pair / (archived hours x 60): minutes of archive without a
    sale of that pair count as zero demand."""
    if table.num_rows == 0:
        return empty_baseline()
    hours = pc.count_distinct(
        pc.binary_join_element_wise(pc.cast(table["date"], pa.string()), pc.cast(table["hour"], pa.string()), "/")
    ).as_py()
    agg = table.group_by(["product_id", "warehouse_id"]).aggregate([("order_qty", "sum")]).to_pandas()
    agg["baseline_velocity"] = agg["order_qty_sum"].astype(float) / (hours * 60.0)
    return agg[BASELINE_COLUMNS].astype({"product_id": "int64", "warehouse_id": "int64"})


def _committed(fs, root: str, path: str) -> bool:
    """Only partitions the archival job committed (flashsale/archive_layout.py: a manifest exists) are trusted:
    a crashed write may leave files behind that the next run replaces."""
    import re

    from flashsale.archive_layout import manifest_path

    m = re.search(r"date=(\d{4})-(\d{2})-(\d{2})/hour=(\d{2})", path)
    if not m:
        return False
    batch_id = f"orders_fact-{m.group(1)}{m.group(2)}{m.group(3)}T{m.group(4)}"
    return fs.exists(manifest_path(root.rsplit("/", 1)[0], batch_id))


def read_archive_baseline(archive_root: str | None, as_of: datetime, days: int) -> tuple[pd.DataFrame, dict]:
    """(baseline frame, info) from the archive; tolerant of a missing/empty archive."""
    import fsspec
    import pyarrow.dataset as ds
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    info = {"source": archive_root, "partitions": 0, "rows": 0, "pairs": 0}
    if not archive_root:
        return empty_baseline(), info
    fs, root = fsspec.core.url_to_fs(archive_root.rstrip("/") + "/orders_fact")
    try:
        dates = [p for p in fs.ls(root, detail=False) if p.rsplit("/", 1)[-1].startswith("date=")]
    except (FileNotFoundError, OSError):
        return empty_baseline(), info
    cutoff = (as_of - timedelta(days=days)).date().isoformat()
    last = as_of.date().isoformat()
    keep = [d for d in dates if cutoff <= d.rsplit("=", 1)[-1] <= last]
    if not keep:
        return empty_baseline(), info
    files = [f for d in keep for f in fs.find(d) if f.endswith(".parquet") and _committed(fs, root, f)]
    if not files:
        return empty_baseline(), info
    part = ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.string())]), flavor="hive")
    dataset = ds.dataset(
        files, filesystem=PyFileSystem(FSSpecHandler(fs)), format="parquet", partitioning=part, partition_base_dir=root
    )
    table = dataset.to_table(columns=["product_id", "warehouse_id", "order_qty", "date", "hour"])
    base = baseline_from_table(table)
    info.update(partitions=len(keep), rows=table.num_rows, pairs=len(base))
    return base, info
