"""A tiny PySpark job for the stack tests: sums 0..n-1 on the executors and prints it."""

import sys

from pyspark.sql import SparkSession

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
spark = SparkSession.builder.appName("flashsale-tiny").getOrCreate()
total = spark.range(n).selectExpr("sum(id) AS s").first()["s"]
print(f"TINY_JOB_SUM={total}")
spark.stop()
