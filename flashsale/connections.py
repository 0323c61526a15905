"""Airflow connections derived from the settings (exported as AIRFLOW_CONN_* to the Airflow processes)."""

from __future__ import annotations

import json

from flashsale.settings import Settings

SPARK_CONN_ID = {"local": "spark_local", "cluster": "spark_yarn"}
MONGO_CONN_ID = "flashsale_mongo"
REDIS_CONN_ID = "flashsale_redis"


def spark_conn_id(settings: Settings) -> str:
    return SPARK_CONN_ID[settings.profile]


def airflow_connections(s: Settings) -> dict[str, dict]:
    conns: dict[str, dict] = {
        "spark_local": {"conn_type": "spark", "host": "local[*]", "extra": {"deploy-mode": "client"}},
        "spark_yarn": {"conn_type": "spark", "host": "yarn", "extra": {"deploy-mode": "client", "queue": "default"}},
        REDIS_CONN_ID: {
            "conn_type": "redis",
            "host": s.redis_host or s.bind_host,
            "port": s.redis_port,
            "password": s.redis_password.get_secret_value() if s.redis_password else None,
            "extra": {"db": 0},
        },
    }
    if s.external_mongo:
        conns[MONGO_CONN_ID] = {"conn_type": "mongo", "extra": {"uri": s.mongo_url}}
    else:
        conns[MONGO_CONN_ID] = {
            "conn_type": "mongo",
            "host": s.bind_host,
            "port": s.mongo_port,
            "schema": s.mongo_db,
            "login": s.mongo_user,
            "password": s.mongo_password.get_secret_value() if s.mongo_password else None,
            "extra": {"authMechanism": "SCRAM-SHA-256", "authSource": s.mongo_db},
        }
    return conns


def airflow_connection_env(s: Settings) -> dict[str, str]:
    return {f"AIRFLOW_CONN_{cid.upper()}": json.dumps(c) for cid, c in airflow_connections(s).items()}
