"""Minute-level KPIs: every minute, look at the KPI app serving the snapshot and spark-submit a new one
(YARN on `cluster`, local[*] on `local`) when it is needed.

One app serves for settings.kpi_refresh_for_seconds (an hour) on a warm SparkSession, refreshing the
snapshot from the buckets that changed. Each minute's run only looks (flashsale/redis_keys.py
kpi_app_decision) unless the snapshot is stale (the app died or hangs: replaced within a minute), the
serving app ends within the hand-over lead (its successor starts and takes over once it has published),
or no app ever ran. So two runs overlap at most (max_active_runs=2: the serving app's, and a looking or
starting one). Downtime causes no catch-up storm (catchup=False), and a failed, timed-out or killed run
kills its YARN application (cluster.airflow_spark.FlashsaleSparkSubmitOperator). Parsing this file does no I/O.
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
    dagrun_timeout=timedelta(minutes=65),
    tags=["flashsale", "kpi"],
    default_args={"retries": 1, "retry_delay": timedelta(seconds=2)},
) as dag:
    FlashsaleSparkSubmitOperator(
        task_id="compute_kpis",
        application=app_path("kpi_job.py"),
        name="flashsale-kpi",
        # --refresh: after its first cycle the app keeps refreshing the snapshot until its successor has
        # published or settings.kpi_refresh_for_seconds (<= 60 min, < the timeout): one YARN start an hour
        application_args=["--submitted-at", "{{ macros.time.time() }}", "--refresh"],
        supervise_kpi_app=True,
        # one app serves an hour: its executors (settings.kpi_executor_*) get the JIT's full tiers
        # (spark_java_options keeps the JVM at C1 for the short apps' start-up; the hour's cycles are
        # steady-state work)
        conf={"spark.executor.extraJavaOptions": "-XX:+UseSerialGC"},
        execution_timeout=timedelta(minutes=64),
        retry_on_timeout=False,  # the next minute's run replaces it (and see the operator's docstring)
    )
