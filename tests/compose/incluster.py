"""Checks that run inside the compose network (piped to `python -` in the airflow-scheduler container,
which has the rendered Hadoop conf, the settings of the stack and every client). Prints one JSON line.

    archive RUN_ID   ids of RUN_ID's records in the hot store and the HDFS archive, and where the
                     archive's blocks are (NameNode fsck over HTTP)
"""

import json
import sys
import urllib.request

import pyarrow.parquet as pq

from flashsale.contracts import INVENTORY_FACT, ORDERS_FACT
from flashsale.hot_layout import existing_buckets
from flashsale.settings import load_settings
from flashsale.stores import hdfs_filesystem, mongo_client


def archive(run_id: str) -> dict:
    s = load_settings()
    fs = hdfs_filesystem(s)
    root = s.archive_root.removeprefix(s.hdfs_url)
    out: dict = {"root": root, "collections": {}}
    with mongo_client(s) as c:
        db = c.get_default_database()
        names = db.list_collection_names()
        for contract in (ORDERS_FACT, INVENTORY_FACT):
            hot = [
                d["_id"]
                for _, n in existing_buckets(contract, names)
                for d in db[n].find({"_id": {"$regex": f"^{run_id}"}}, {"_id": 1})
            ]
            files = fs.glob(f"{root}/{contract.name}/date=*/hour=*/*.parquet")
            archived = []
            for f in files:
                ids = pq.read_table(fs.open(f, "rb"), columns=[contract.key]).column(0).to_pylist()
                archived += [i for i in ids if str(i).startswith(run_id)]
            out["collections"][contract.name] = {"hot": hot, "archived": archived, "files": len(files)}
    nn = s.namenode_http
    with urllib.request.urlopen(f"{nn}/fsck?ugi=root&path={root}&files=1&blocks=1&locations=1", timeout=120) as r:
        fsck = r.read().decode()
    out["fsck"] = fsck[-200_000:]
    return out


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    print(json.dumps({"archive": archive}[cmd](*args)))
