"""Dimension seeding: writes products_dim, warehouses_dim and cities_dim (idempotent, re-runnable).

It seeds the catalogue the running pipeline uses: `flashsale seed` without options reads it from the
settings when the task runs (the run directory's pipeline.env, written by `flashsale run`; the
simulator's defaults when no pipeline runs). The write never exposes a partial table to a concurrent KPI
read (ray_gen.runner.seed_dimensions: insert, replace in place, then delete).

Declarative: parsing this file does no I/O and reads no settings; the task runs `flashsale seed`.
"""

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="flashsale_seed_dimensions",
    description="Seed the dimension tables (products, warehouses, cities); safe to re-run at any time",
    schedule=None,  # on demand; re-running the same catalogue writes nothing
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["flashsale", "dimensions"],
    default_args={"retries": 2, "retry_delay": timedelta(seconds=10)},
) as dag:
    BashOperator(
        task_id="seed_dimensions",
        bash_command="flashsale seed",  # no options: the running pipeline's catalogue, read at run time
        execution_timeout=timedelta(minutes=10),
    )
