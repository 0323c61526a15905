"""hadoop-conf/*.xml for the compose network: the same files with only the addresses and sizes changed.

hadoop-conf/ is the one Hadoop configuration; it names 127.0.0.1 because every local daemon runs on
loopback. In containers each daemon has its own host, so the compose job ``hadoop-conf`` renders
the files into the ``hadoop-conf`` volume with this overlay and nothing else: every other property
(replication, scheduler, vmem check, ``${flashsale.run.dir}`` paths, ...) comes through unchanged.

    python -m cluster.hadoop_conf SRC_DIR DST_DIR
"""

from __future__ import annotations

import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NAMENODE, RESOURCEMANAGER = "namenode", "resourcemanager"
NODEMANAGER_MB = 3840  # YARN memory of each compose worker

# property -> value in containers (None = drop it, so Hadoop's default applies)
OVERLAY: dict[str, dict[str, str | None]] = {
    "core-site": {"fs.defaultFS": f"hdfs://{NAMENODE}:9000"},
    "hdfs-site": {
        "dfs.namenode.rpc-bind-host": "0.0.0.0",
        "dfs.namenode.http-address": f"{NAMENODE}:9870",
        "dfs.namenode.http-bind-host": "0.0.0.0",
        "dfs.namenode.secondary.http-address": f"{NAMENODE}:9868",
        # every worker container runs a DataNode on the same ports, on its own address
        "dfs.datanode.address": "0.0.0.0:9866",
        "dfs.datanode.http.address": "0.0.0.0:9864",
        "dfs.datanode.ipc.address": "0.0.0.0:9867",
        # container IPs have no reverse DNS on every engine
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
    },
    "yarn-site": {
        "yarn.resourcemanager.hostname": RESOURCEMANAGER,
        "yarn.resourcemanager.bind-host": "0.0.0.0",
        "yarn.resourcemanager.address": f"{RESOURCEMANAGER}:8032",
        "yarn.resourcemanager.scheduler.address": f"{RESOURCEMANAGER}:8030",
        "yarn.resourcemanager.resource-tracker.address": f"{RESOURCEMANAGER}:8031",
        "yarn.resourcemanager.admin.address": f"{RESOURCEMANAGER}:8033",
        "yarn.resourcemanager.webapp.address": f"{RESOURCEMANAGER}:8088",
        # a NodeManager registers under its own container hostname
        "yarn.nodemanager.hostname": None,
        "yarn.nodemanager.bind-host": "0.0.0.0",
        "yarn.nodemanager.address": "0.0.0.0:8041",
        "yarn.nodemanager.localizer.address": "0.0.0.0:8040",
        "yarn.nodemanager.webapp.address": "0.0.0.0:8042",
        # two workers: a Spark app's AM (256m + 384m overhead -> 768 MB) and executors (640m + 384m ->
        # 1024 MB, FLASHSALE_SPARK_EXECUTOR_MEMORY): a minute KPI app with its two executors takes 2816 MB,
        # an archival run (one executor) 1792 MB; two overlapping KPI apps and an archival run take 7424 MB,
        # so 3840 MB per worker (docker-compose.yml limits it to 4864M)
        "yarn.nodemanager.resource.memory-mb": str(NODEMANAGER_MB),
        "yarn.nodemanager.resource.cpu-vcores": "4",
        "yarn.scheduler.maximum-allocation-mb": "1280",
    },
}


def render_xml(name: str, text: str) -> str:
    root = ET.fromstring(text)
    overlay = dict(OVERLAY.get(name, {}))
    for prop in list(root.iter("property")):
        key = prop.findtext("name", "").strip()
        if key not in overlay:
            continue
        value = overlay.pop(key)
        if value is None:
            root.remove(prop)
        else:
            value_elem = prop.find("value")
            if value_elem is None:
                raise ValueError(f"{name}: property {key!r} has no <value> element")
            value_elem.text = value
    for key, value in overlay.items():  # properties hadoop-conf leaves to Hadoop's defaults
        if value is not None:
            prop = ET.SubElement(root, "property")
            ET.SubElement(prop, "name").text = key
            ET.SubElement(prop, "value").text = value
    header = (
        '<?xml version="1.0"?>\n<!-- rendered by cluster/hadoop_conf.py from hadoop-conf/: edit those, not this -->\n'
    )
    return header + ET.tostring(root, encoding="unicode") + "\n"


def render(src: Path, dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(src.iterdir()):
        target = dst / path.name
        if path.suffix == ".xml":
            target.write_text(render_xml(path.stem, path.read_text()))
        elif path.is_file():
            shutil.copyfile(path, target)
        else:
            continue
        written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m cluster.hadoop_conf SRC_DIR DST_DIR")
    for p in render(Path(sys.argv[1]), Path(sys.argv[2])):
        print(f"rendered {p}")
