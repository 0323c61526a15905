"""The SparkSubmitOperator our DAGs use: the project's Spark conf, the profile's connection, and no
zombie YARN applications.

Everything that touches settings, HDFS or YARN happens in ``execute``/``on_kill`` (task run time),
never when a DAG file is parsed. Each task try tags its YARN application uniquely; on failure,
timeout or kill, the operator kills the applications carrying its tag (apache/airflow#15280).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowTaskTimeout

from flashsale.connections import SPARK_CONN_ID
from flashsale.settings import PROJECT_ROOT


def app_path(name: str) -> str:
    return str(PROJECT_ROOT / "spark" / name)


class FlashsaleSparkSubmitOperator(SparkSubmitOperator):
    """``retry_on_timeout=False``: a try that used its whole execution_timeout fails for good (its quick
    failures are still retried). For the minute DAG the next scheduled run supersedes it, and a retry
    born at the timeout races the dag run's own timeout: Airflow 3 gives the retry a new task-instance
    id, and the scheduler flushing the timed-out run then dies with StaleDataError (seen here;
    apache/airflow#63926)."""

    def __init__(
        self,
        *,
        profile: str | None = None,
        retry_on_timeout: bool = True,
        supervise_kpi_app: bool = False,
        **kwargs: Any,
    ) -> None:
        profile = profile or os.environ.get("FLASHSALE_PROFILE", "local")  # env only: no I/O at parse time
        kwargs.setdefault("conn_id", SPARK_CONN_ID[profile])
        kwargs.setdefault("spark_binary", "spark-submit")
        super().__init__(**kwargs)
        self.retry_on_timeout = retry_on_timeout
        self.supervise_kpi_app = supervise_kpi_app
        self.yarn_tag: str | None = None

    def execute(self, context: Any) -> Any:
        from flashsale.settings import get_settings

        s = get_settings()
        if self.supervise_kpi_app:
            if not self.kpi_app_needed(s):
                return None  # a live app serves the snapshot: this minute's run only looked
            try:
                return self._submit_app(s, context)
            except BaseException:
                self.release_launch(s)  # the next minute's run may start one at once, not after the grace
                raise
        return self._submit_app(s, context)

    def _submit_app(self, s, context: Any) -> Any:
        from airflow.sdk import BaseHook

        from cluster.spark_submit import ensure_spark_archives, submit_conf
        from cluster.yarn import safe_tag

        master = BaseHook.get_connection(self._conn_id).host
        if master is None:
            raise AirflowFailException(f"connection {self._conn_id!r} has no host (the Spark master)")
        conf, env = submit_conf(s, master)
        ti = context["ti"]
        self.yarn_tag = safe_tag(f"af-{ti.dag_id}-{ti.run_id}-{ti.try_number}")
        conf["spark.yarn.tags"] = self.yarn_tag
        if self.supervise_kpi_app:  # the hour-long KPI app's shape (ignored by local[*])
            conf["spark.executor.instances"] = str(s.kpi_executor_instances)
            conf["spark.executor.cores"] = str(s.kpi_executor_cores)
        self.conf = {**conf, **(self.conf or {})}
        self.env_vars = {**env, **(self.env_vars or {})}
        if master == "yarn":
            ensure_spark_archives(s, echo=self.log.info)
        self.log.info("submitting %s to %s (YARN tag %s)", self.application, master, self.yarn_tag)
        return self.guarded(lambda: super(FlashsaleSparkSubmitOperator, self).execute(context))

    def kpi_app_needed(self, s) -> bool:
        """The minute DAG's look at the KPI app serving the snapshot (flashsale.redis_keys.kpi_app_decision):
        True when this run must start one (and it claimed the start), False when one serves or starts."""
        import time

        from flashsale.redis_keys import claim_launch, keys_for, kpi_app_decision, read_head, read_launch
        from flashsale.stores import redis_client

        r, keys = redis_client(s), keys_for(s)
        launch = read_launch(r, keys)
        start, why = kpi_app_decision(
            read_head(r, keys),
            launch,
            time.time(),
            stale_s=s.kpi_app_stale_seconds,
            lead_s=s.kpi_handover_lead_seconds,
            grace_s=s.kpi_launch_grace_seconds,
        )
        self.log.info("KPI app: %s", why)
        if not start:
            return False
        args = [str(a) for a in self.application_args or []]
        submitted_at = float(args[args.index("--submitted-at") + 1]) if "--submitted-at" in args else time.time()
        if not claim_launch(r, keys, submitted_at, s.kpi_launch_grace_seconds, launch):
            self.log.info("KPI app: another run claimed the start meanwhile")
            return False
        self._claimed_at = submitted_at
        return True

    def release_launch(self, s) -> None:
        """Forget this run's start claim when its app failed to start (if no other run claimed since)."""
        from flashsale.redis_keys import keys_for, read_launch
        from flashsale.stores import redis_client

        r, keys = redis_client(s), keys_for(s)
        mine = getattr(self, "_claimed_at", None)
        if mine is not None and (read_launch(r, keys) or {}).get("submitted_at") == mine:
            r.delete(keys.launch)
            self.log.info("KPI app: the start failed; its claim is released")

    def guarded(self, submit) -> Any:
        """Run ``submit``; whatever ends it early kills this try's YARN applications first."""
        try:
            return submit()
        except BaseException as exc:
            self.kill_submit_process()
            self.kill_yarn_applications()
            if isinstance(exc, AirflowTaskTimeout) and not self.retry_on_timeout:
                raise AirflowFailException(
                    f"timed out after {self.execution_timeout}; not retried: the next scheduled run supersedes it"
                ) from exc
            raise

    def on_kill(self) -> None:
        try:
            self.kill_submit_process()
            super().on_kill()
        finally:
            self.kill_yarn_applications()

    def kill_submit_process(self) -> list[int]:
        """Kill the local spark-submit JVM and its children. In client mode the driver lives there, with
        the job's Python process under it: an exception in execute (a timeout) leaves the hook's
        subprocess running, and the hook's own on_kill kills only the JVM, orphaning the Python driver
        (seen here: timed-out KPI drivers kept reading the hot store for minutes)."""
        import psutil

        from cluster.process import end_processes

        sp = getattr(getattr(self, "_hook", None), "_submit_sp", None)
        if sp is None or sp.poll() is not None:
            return []
        try:
            root = psutil.Process(sp.pid)
            family = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return []
        end_processes(family, grace_seconds=0)  # nothing to save: the try has already failed
        sp.poll()  # reap the JVM
        self.log.warning("killed spark-submit (pid %s) and %d child process(es)", sp.pid, len(family) - 1)
        return [p.pid for p in family]

    def kill_yarn_applications(self) -> list[str]:
        if not self.yarn_tag:
            return []
        from cluster.yarn import kill_apps_with_tag
        from flashsale.settings import get_settings

        s = get_settings()
        if s.profile != "cluster":
            return []
        killed = kill_apps_with_tag(s, self.yarn_tag)
        if killed:
            self.log.warning("killed YARN application(s) %s of this failed task", ", ".join(killed))
        return killed
