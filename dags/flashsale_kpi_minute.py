"""Minute-level KPIs: every minute, spark-submit the KPI job (YARN on `cluster`, local[*] on `local`).

Runs never overlap (max_active_runs=1), downtime causes no catch-up storm (catchup=False), a run
times out before the next minute, and a failed, timed-out or killed run kills its YARN application
(cluster.airflow_spark.FlashsaleSparkSubmitOperator). Parsing this file does no I/O.
"""

from datetime import datetime, timedelta

from airflow.sdk import DAG

from cluster.airflow_spark import FlashsaleSparkSubmitOperator, app_path

with DAG(
    dag_id="flashsale_kpi_minute",
    description="Minute KPIs and alerts from the last 15 minutes into the Redis snapshot",
    schedule="* * * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=58),
    tags=["flashsale", "kpi"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
) as dag:
    FlashsaleSparkSubmitOperator(
        task_id="compute_kpis",
        application=app_path("kpi_job.py"),
        name="flashsale-kpi",
        # --refresh: after its first cycle the app keeps refreshing the snapshot until
        # settings.kpi_refresh_for_seconds (< the timeout): the YARN start is paid once per minute, not per snapshot
        application_args=["--submitted-at", "{{ macros.time.time() }}", "--refresh"],
        execution_timeout=timedelta(seconds=55),
    )
