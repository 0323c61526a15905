"""Keep a long-running app's executors on different YARN nodes (next to each worker's DataNode).

The CapacityScheduler hands out one container per node heartbeat (hadoop-conf/capacity-scheduler.xml), so
an app's executors usually land on different nodes, but not always: while another app (an archival run,
the previous KPI app) waits for containers it takes a node's turn, and the hour-long KPI app would keep
both executors on one node for its whole hour. Between two refresh cycles the KPI app checks where its
executors run; when two share a node while another live node has room for one, it replaces one of them,
asking YARN for the new container on the empty node (Spark's locality preference, which the scheduler's
delay scheduling honours while that node has room).

``spread_move`` is the rule (pure); ``rebalance`` is the edge: Spark's status store, the ResourceManager's
REST API and SparkContext.killExecutors / requestTotalExecutors (developer APIs, YARN only, no dynamic
allocation).
"""

from __future__ import annotations

import json
import math
import time
import urllib.request
from collections import Counter

# Spark's default executor memory overhead on YARN: max(384 MB, 10 % of the heap)
OVERHEAD_MIN_MB = 384
OVERHEAD_FACTOR = 0.10


def container_mb(executor_mb: int, overhead_mb: int | None, min_allocation_mb: int) -> int:
    """The YARN container an executor asks for: heap + overhead, rounded up to the scheduler's increment."""
    overhead = overhead_mb if overhead_mb is not None else max(OVERHEAD_MIN_MB, int(OVERHEAD_FACTOR * executor_mb))
    step = max(1, min_allocation_mb)
    return math.ceil((executor_mb + overhead) / step) * step


def spread_move(executor_hosts: dict[str, str], free_mb: dict[str, int], need_mb: int) -> tuple[str, str] | None:
    """(executor to replace, node to ask for) when two of the app's executors share a node while a live
    node holding none of them has ``need_mb`` free; None when the executors are spread as far as they can be.

    ``executor_hosts``: executor id -> node; ``free_mb``: every live NodeManager -> its free memory."""
    per_node = Counter(executor_hosts.values())
    crowded = [node for node, n in per_node.items() if n > 1]
    empty = [node for node, free in free_mb.items() if node not in per_node and free >= need_mb]
    if not crowded or not empty:
        return None
    source = max(crowded, key=lambda node: (per_node[node], node))
    target = max(empty, key=lambda node: (free_mb[node], node))
    # the newest executor on the crowded node (ids are increasing integers on YARN)
    victim = max((e for e, node in executor_hosts.items() if node == source), key=lambda e: (len(e), e))
    return victim, target


def live_nodes(spark) -> dict[str, int]:
    """Every RUNNING NodeManager -> its free memory (MB), from the ResourceManager's REST API."""
    webapp = spark.sparkContext._jsc.hadoopConfiguration().get("yarn.resourcemanager.webapp.address")
    url = f"http://{webapp}/ws/v1/cluster/nodes?states=RUNNING"
    with urllib.request.urlopen(url, timeout=5) as r:
        nodes = (json.loads(r.read()).get("nodes") or {}).get("node") or []
    return {n["nodeHostName"]: int(n["availMemoryMB"]) for n in nodes}


def executor_nodes(spark) -> dict[str, str]:
    """The app's live executors: id -> node (the driver left out)."""
    sc = spark.sparkContext
    summaries = sc._jvm.scala.jdk.javaapi.CollectionConverters.asJava(sc._jsc.sc().statusStore().executorList(True))
    return {e.id(): e.hostPort().rsplit(":", 1)[0] for e in summaries if e.id() != "driver"}


def move_executor(spark, executor_id: str, node: str, total: int) -> str | None:
    """Replace ``executor_id`` by a new executor that YARN places on ``node`` while it has room: killing
    lowers the app's target by one; the request restores it to ``total`` with a locality preference.
    None when both were acknowledged, else what was not."""
    jsc = spark.sparkContext._jsc.sc()
    to_scala = spark.sparkContext._jvm.org.apache.spark.api.python.PythonUtils
    if not jsc.killExecutors(to_scala.toSeq([executor_id])):
        return f"YARN did not acknowledge killing executor {executor_id}"
    prefer = to_scala.toScalaMap({node: 1})
    for attempt in range(3):  # the kill is done: without the request the app keeps one executor less
        if jsc.requestTotalExecutors(total, 1, prefer):
            return None
        time.sleep(1 + attempt)
    return f"executor {executor_id} was killed but its replacement was refused: {total - 1} executors for now"


def rebalance(spark) -> dict | None:
    """Move one executor off a crowded node if ``spread_move`` says so; returns what it did (or None).
    Only for YARN apps with more than one executor; any failure is reported, never raised: a placement
    is worth a retry next cycle, not the app."""
    sc = spark.sparkContext
    if sc.master != "yarn":
        return None
    jsc = sc._jsc.sc()
    try:
        executors = executor_nodes(spark)
        if len(set(executors.values())) == len(executors):  # no node holds two (the usual case): no REST call
            return None
        hadoop = sc._jsc.hadoopConfiguration()
        conf = jsc.getConf()
        overhead = conf.getSizeAsMb("spark.executor.memoryOverhead", "0") or None
        need = container_mb(
            conf.getSizeAsMb("spark.executor.memory", "1g"),
            overhead,
            hadoop.getInt("yarn.scheduler.minimum-allocation-mb", 1024),
        )
        free = live_nodes(spark)
        move = spread_move(executors, free, need)
        if move is None:
            return None
        victim, target = move
        total = max(len(executors), conf.getInt("spark.executor.instances", len(executors)))
        if error := move_executor(spark, victim, target, total):
            return {"moved": None, "error": error}
        return {"moved": victim, "from": executors[victim], "to": target, "free_mb": free, "need_mb": need}
    except Exception as exc:  # noqa: BLE001 - reported in the app's log; the next cycle tries again
        return {"moved": None, "error": repr(exc)[:300]}
