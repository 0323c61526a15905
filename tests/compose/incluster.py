"""Checks that run inside the compose network (piped to `python -` in the airflow-scheduler container,
which has the rendered Hadoop conf, the settings of the stack and every client). Prints one JSON line.

    archive RUN_ID   ids of RUN_ID's records (o-RUN_ID-..., i-RUN_ID-...) in the hot store and the HDFS
                     archive, and where the archive's blocks are (NameNode fsck over HTTP)
    tasklog DAG RUN  the result line of DAG's run RUN (a glob: '*' reads every run; ARCHIVE_RESULT /
                     KPI_RESULT) from its Airflow task log, and Spark's task locality per stage as the
                     driver logged it (client mode: the driver's INFO lines are in the task log). A stage
                     reading files (HDFS Parquet) is the first parentless stage after a
                     "FileSourceScanExec: Planning scan" line; and the KPI app's executor moves
                     (KPI_SPREAD lines, spark/executor_spread.py)
    spread           a two-executor Spark app on YARN (client mode, as the DAGs submit): its executors
                     are crowded onto one worker on purpose (move_executor), then the KPI app's
                     rebalance() must spread them again; prints where they ran at each step
"""

import glob
import json
import re
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
    root = (s.archive_root or "").removeprefix(s.hdfs_url)
    out: dict = {"root": root, "collections": {}}
    with mongo_client(s) as c:
        db = c.get_default_database()
        names = db.list_collection_names()
        for contract in (ORDERS_FACT, INVENTORY_FACT):
            hot = [
                d["_id"]
                for _, n in existing_buckets(contract, names)
                for d in db[n].find({"_id": {"$regex": f"^[a-z]+-{run_id}-"}}, {"_id": 1})
            ]
            files = fs.glob(f"{root}/{contract.name}/date=*/hour=*/*.parquet")
            archived = []
            for f in files:
                ids = pq.read_table(fs.open(f, "rb"), columns=[contract.key]).column(0).to_pylist()
                archived += [i for i in ids if str(i).split("-")[1:2] == [run_id]]
            out["collections"][contract.name] = {"hot": hot, "archived": archived, "files": len(files)}
    nn = s.namenode_http
    with urllib.request.urlopen(f"{nn}/fsck?ugi=root&path={root}&files=1&blocks=1&locations=1", timeout=120) as r:
        fsck = r.read().decode()
    out["fsck"] = fsck[-200_000:]
    return out


STARTING = re.compile(
    r"Starting task \S+ in stage (\d+)\.\d+ \(TID \d+\) \(([^,]+), ?executor [^,]+, partition \d+, (\w+),"
)
SUBMITTING = re.compile(r"DAGScheduler: Submitting \d+ missing tasks from \w+ (\d+) ")
PARENTS = re.compile(r"DAGScheduler: Parents of final stage: List\((.*)\)")
FINAL = re.compile(r"DAGScheduler: Final stage: \w+ (\d+) ")


def tasklog(dag_id: str, run_id: str) -> dict:
    s = load_settings()
    logs = sorted(glob.glob(f"{s.run_dir}/airflow/logs/dag_id={dag_id}/run_id={run_id}/task_id=*/attempt=*.log"))
    result, tasks, scans, moves = None, [], set(), []
    scan_pending, final, parents = False, None, None
    for path in logs:
        for line in open(path, errors="replace"):
            try:
                event = str(json.loads(line).get("event", ""))
            except ValueError:
                event = line
            for ev in event.splitlines():
                if ev.startswith(("ARCHIVE_RESULT ", "KPI_RESULT ")):
                    result = json.loads(ev.split(" ", 1)[1])
                elif ev.startswith("KPI_SPREAD "):
                    moves.append(json.loads(ev.split(" ", 1)[1]))
                elif "FileSourceScanExec: Planning scan" in ev:
                    scan_pending = True
                elif m := FINAL.search(ev):
                    final = int(m.group(1))
                elif m := PARENTS.search(ev):
                    parents = m.group(1).strip()
                elif (m := SUBMITTING.search(ev)) and scan_pending:
                    if int(m.group(1)) == final and parents == "":
                        scans.add(final)
                        scan_pending = False
                elif m := STARTING.search(ev):
                    tasks.append((int(m.group(1)), m.group(2), m.group(3)))

    def share(rows):
        count: dict[str, int] = {}
        for _, _, loc in rows:
            count[loc] = count.get(loc, 0) + 1
        return {"tasks": len(rows), "locality": count, "hosts": sorted({h for _, h, _ in rows})}

    return {
        "logs": logs,
        "result": result,
        "scan_stages": sorted(scans),
        "file_reads": share([t for t in tasks if t[0] in scans]),
        "all_tasks": share(tasks),
        "executor_moves": moves,
    }


def spread() -> dict:
    import os
    import time

    from pyspark.sql import SparkSession

    from cluster.spark_submit import submit_conf
    from spark.executor_spread import executor_nodes, live_nodes, move_executor, rebalance

    def settle(ok, what: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            nodes = executor_nodes(spark)
            if len(nodes) == 2 and ok(nodes):
                return nodes
            time.sleep(1)
        raise AssertionError(f"{what}: executors {executor_nodes(spark)} after {timeout:.0f} s")

    s = load_settings()
    conf, env = submit_conf(s, "yarn")
    os.environ.update(env)
    builder = SparkSession.builder.master("yarn").appName("flashsale-spread-check")
    for key, value in {**conf, "spark.executor.instances": "2", "spark.executor.cores": "1"}.items():
        builder = builder.config(key, value)
    t0 = time.monotonic()
    spark = builder.getOrCreate()
    try:
        steps = [settle(lambda n: True, "two executors")]
        for _ in range(3):  # another app may take the room first: the replacement then lands elsewhere
            nodes = steps[-1]
            if len(set(nodes.values())) == 1:
                break
            free = live_nodes(spark)
            stay, leave = sorted(nodes, key=lambda e: free[nodes[e]], reverse=True)  # onto the node with more room
            error = move_executor(spark, leave, nodes[stay], 2)
            assert error is None, error
            steps.append(settle(lambda n, gone=leave: gone not in n, "a replacement"))
        assert len(set(steps[-1].values())) == 1, f"could not crowd the executors: {steps}, free {live_nodes(spark)}"
        deadline = time.monotonic() + 120
        while not ((moved := rebalance(spark)) or {}).get("moved") and time.monotonic() < deadline:
            time.sleep(3)  # what the KPI app does between cycles: no room on the other node yet, or an error
        steps.append(settle(lambda n: len(set(n.values())) == 2, f"rebalance {moved}"))
        return {"steps": steps, "moved": moved, "seconds": round(time.monotonic() - t0, 1)}
    finally:
        spark.stop()


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    print(json.dumps({"archive": archive, "tasklog": tasklog, "spread": spread}[cmd](*args)))
