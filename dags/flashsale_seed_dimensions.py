"""Dimension seeding: writes products_dim, warehouses_dim and cities_dim (idempotent, re-runnable).

Declarative: parsing this file does no I/O; the task runs `flashsale seed` at run time.
"""

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="flashsale_seed_dimensions",
    description="Seed the dimension tables (products, warehouses, cities); safe to re-run at any time",
    schedule=None,  # on demand (and by `make run`); re-running rewrites the same rows
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["flashsale", "dimensions"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
) as dag:
    BashOperator(
        task_id="seed_dimensions",
        bash_command="flashsale seed",
        execution_timeout=timedelta(minutes=10),
    )
