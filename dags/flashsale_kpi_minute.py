"""Minute-level KPIs: every minute, spark-submit the KPI job (YARN on `cluster`, local[*] on `local`).

Two runs overlap at most (max_active_runs=2): each Spark app refreshes the snapshot until the next
minute's app has published (the hand-over, flashsale/redis_keys.py) or kpi_refresh_for_seconds after
its submission, so the next app's YARN start-up (~20-45 s on 2 cores) never leaves the dashboard
without fresh data. Downtime causes no catch-up storm (catchup=False), a run times out before the
minute after next, and a failed, timed-out or killed run kills its YARN application
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
    max_active_runs=2,
    dagrun_timeout=timedelta(seconds=119),
    tags=["flashsale", "kpi"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
) as dag:
    FlashsaleSparkSubmitOperator(
        task_id="compute_kpis",
        application=app_path("kpi_job.py"),
        name="flashsale-kpi",
        # --refresh: after its first cycle the app keeps refreshing the snapshot until the next app has
        # published or settings.kpi_refresh_for_seconds (< the timeout): the YARN start is paid once a minute
        application_args=["--submitted-at", "{{ macros.time.time() }}", "--refresh"],
        execution_timeout=timedelta(seconds=118),
        retry_on_timeout=False,  # the next minute's run supersedes it (and see the operator's docstring)
    )
