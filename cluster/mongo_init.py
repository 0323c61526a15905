"""The compose init job of the sharded MongoDB, and the bucket keeper. Idempotent: a second run is a no-op.

    python -m cluster.mongo_init init --keyfile K --config cfgrs/mongo-cfg:27017 \
        --shard shard1/mongo-shard1:27017 --shard shard2/mongo-shard2:27017 --mongos mongos:27017
    python -m cluster.mongo_init keep --mongos mongos:27017      # shards the next buckets, every minute

``init``: initiate each replica set (config servers and shards), add the shards, create the root
user (FLASHSALE_MONGO_ROOT_USER / _PASSWORD) and the app user (FLASHSALE_MONGO_USER / _PASSWORD,
role ``flashsaleWriter`` on FLASHSALE_MONGO_DB), then run the sharding plan of
``flashsale/sharding.py``. Before any user exists, it authenticates as the cluster's internal
``__system`` user with the shared keyfile (mounted read-only, never in the environment), the
bootstrap path that needs no localhost exception and no ``docker exec``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from flashsale import sharding
from flashsale.settings import Settings, load_settings


def log(msg: str) -> None:
    print(f"mongo-init: {msg}", flush=True)


def parse_rs(spec: str) -> tuple[str, list[str]]:
    """'name/host:port,host:port' -> (name, hosts)."""
    name, _, hosts = spec.partition("/")
    if not name or not hosts:
        raise ValueError(f"replica set spec {spec!r} is not NAME/HOST:PORT[,HOST:PORT...]")
    return name, hosts.split(",")


def initiate_config(name: str, hosts: list[str], configsvr: bool) -> dict:
    return {"_id": name, "configsvr": configsvr, "members": [{"_id": i, "host": h} for i, h in enumerate(hosts)]}


def _client(
    host: str, keyfile: Path | None = None, user: str | None = None, password: str | None = None, direct: bool = False
):
    import pymongo

    kwargs: dict = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000, "directConnection": direct}
    if keyfile is not None:  # internal auth: the keyfile's content, whitespace removed, is __system's password
        kwargs.update(username="__system", password="".join(keyfile.read_text().split()), authSource="local")
    elif user is not None:
        kwargs.update(username=user, password=password, authSource="admin")
    return pymongo.MongoClient(host, **kwargs)


def _wait(what: str, probe, timeout: float = 180.0, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
            if result:
                return result
            err = "not yet"
        except Exception as exc:  # noqa: BLE001 - reported when we give up
            err = str(exc).splitlines()[0][:200]
        if time.monotonic() > deadline:
            raise SystemExit(f"mongo-init: gave up waiting for {what}: {err}")
        time.sleep(every)


def ensure_replica_set(spec: str, keyfile: Path, configsvr: bool) -> None:
    from pymongo.errors import OperationFailure

    name, hosts = parse_rs(spec)
    client = _client(hosts[0], keyfile=keyfile, direct=True)
    try:
        _wait(f"{hosts[0]}", lambda: client.admin.command("ping"))
        try:
            client.admin.command("replSetGetStatus")
            log(f"replica set {name} already initiated")
        except OperationFailure as exc:
            if exc.code != 94:  # NotYetInitialized
                raise
            client.admin.command("replSetInitiate", initiate_config(name, hosts, configsvr))
            log(f"replica set {name} initiated with {', '.join(hosts)}")
        _wait(f"a primary in {name}", lambda: client.admin.command("hello").get("isWritablePrimary"))
    finally:
        client.close()


def ensure_shards(mongos, shards: list[str]) -> None:
    present = {s["_id"] for s in mongos.admin.command("listShards")["shards"]}
    for spec in shards:
        name, _ = parse_rs(spec)
        if name in present:
            log(f"shard {name} already added")
            continue
        mongos.admin.command("addShard", spec, name=name)
        log(f"shard {name} added")


def _secret(value, env_name: str) -> str:
    if value is None:
        raise SystemExit(f"mongo-init: {env_name} is not set (see .env.example)")
    return value.get_secret_value()


def ensure_users(mongos, s: Settings) -> None:
    admin = mongos.admin
    root_pw = _secret(s.mongo_root_password, "FLASHSALE_MONGO_ROOT_PASSWORD")
    if admin.command("usersInfo", s.mongo_root_user)["users"]:
        admin.command("updateUser", s.mongo_root_user, pwd=root_pw)  # .env is the source of truth
    else:
        admin.command("createUser", s.mongo_root_user, pwd=root_pw, roles=[{"role": "root", "db": "admin"}])
        log(f"root user {s.mongo_root_user} created")
    app_db = mongos[s.mongo_db]
    role = sharding.app_role(s.mongo_db)
    if app_db.command("rolesInfo", sharding.APP_ROLE)["roles"]:
        app_db.command({"updateRole": sharding.APP_ROLE, "privileges": role["privileges"], "roles": role["roles"]})
    else:
        app_db.command(role)
    app_pw = _secret(s.mongo_password, "FLASHSALE_MONGO_PASSWORD")
    if app_db.command("usersInfo", s.mongo_user)["users"]:
        app_db.command("updateUser", s.mongo_user, pwd=app_pw, roles=[{"role": sharding.APP_ROLE, "db": s.mongo_db}])
    else:
        app_db.command(sharding.app_user(s.mongo_db, s.mongo_user, app_pw))
        log(f"app user {s.mongo_user} created on {s.mongo_db}")


def init(args, s: Settings) -> None:
    keyfile = Path(args.keyfile)
    ensure_replica_set(args.config, keyfile, configsvr=True)
    for spec in args.shard:
        ensure_replica_set(spec, keyfile, configsvr=False)
    mongos = _client(args.mongos, keyfile=keyfile)
    try:
        _wait("mongos", lambda: mongos.admin.command("listShards"))
        ensure_shards(mongos, args.shard)
        ensure_users(mongos, s)
    finally:
        mongos.close()
    root = _client(
        args.mongos, user=s.mongo_root_user, password=_secret(s.mongo_root_password, "FLASHSALE_MONGO_ROOT_PASSWORD")
    )
    try:
        now = datetime.now(UTC)
        names = sharding.initial_collections(now, s.hot_bucket_minutes, ahead=args.ahead)
        for line in sharding.apply(root, sharding.cluster_commands(s.mongo_db, names)):
            log(line)
    finally:
        root.close()
    log("sharded cluster ready")


def keep(args, s: Settings) -> None:
    """Shard the next buckets before the writer's first insert creates them unsharded."""
    root = _client(
        args.mongos, user=s.mongo_root_user, password=_secret(s.mongo_root_password, "FLASHSALE_MONGO_ROOT_PASSWORD")
    )
    done: set[str] = set()
    while True:
        names = [
            n
            for n in sharding.upcoming_buckets(datetime.now(UTC), s.hot_bucket_minutes, ahead=args.ahead)
            if n not in done
        ]
        try:
            cmds = [c for n in names for c in sharding.collection_commands(s.mongo_db, n)]
            sharding.apply(root, cmds)
            done.update(names)
            if names:
                log(f"sharded ahead: {', '.join(names)}")
            if args.heartbeat:  # the compose healthcheck reads its age
                Path(args.heartbeat).write_text(datetime.now(UTC).isoformat())
        except Exception as exc:  # noqa: BLE001 - keep trying; the healthcheck sees the log
            log(f"retrying after: {exc}")
        if args.once:
            return
        time.sleep(args.every)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cluster.mongo_init")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_init = sub.add_parser("init")
    p_init.add_argument("--keyfile", required=True)
    p_init.add_argument("--config", required=True, help="config server replica set: NAME/HOST:PORT[,...]")
    p_init.add_argument("--shard", action="append", required=True, help="shard replica set: NAME/HOST:PORT[,...]")
    p_init.add_argument("--mongos", required=True)
    p_init.add_argument("--ahead", type=int, default=3, help="buckets after the current one to shard now")
    p_keep = sub.add_parser("keep")
    p_keep.add_argument("--mongos", required=True)
    p_keep.add_argument("--ahead", type=int, default=3)
    p_keep.add_argument("--every", type=float, default=60.0)
    p_keep.add_argument("--once", action="store_true")
    p_keep.add_argument("--heartbeat", help="file touched after each successful pass")
    args = ap.parse_args(argv)
    s = load_settings()
    (init if args.cmd == "init" else keep)(args, s)


if __name__ == "__main__":
    main(sys.argv[1:])
