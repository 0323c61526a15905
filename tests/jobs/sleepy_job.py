"""Starts a SparkSession (so YARN has a running application), sleeps, then exits with a given code."""

import sys
import time

from pyspark.sql import SparkSession

seconds, code = float(sys.argv[1]), int(sys.argv[2])
spark = SparkSession.builder.appName("flashsale-sleepy").getOrCreate()
spark.range(10).count()
print("SLEEPY_JOB_RUNNING", flush=True)
time.sleep(seconds)
if code:
    import os

    os._exit(code)  # die without stopping the SparkContext, like a crashed driver
spark.stop()
