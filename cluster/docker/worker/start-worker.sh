#!/bin/sh
# DataNode and NodeManager of one worker host. If either daemon exits, stop the other and exit
# non-zero so the restart policy restarts the pair (a half-alive worker is not colocated).
set -eu
mkdir -p /data/hdfs/data /data/yarn/local /data/yarn/logs
hdfs datanode &
dn=$!
yarn nodemanager &
nm=$!
trap 'kill -TERM "$dn" "$nm" 2>/dev/null; wait; exit 0' TERM INT
while kill -0 "$dn" 2>/dev/null && kill -0 "$nm" 2>/dev/null; do
  sleep 5
done
echo "start-worker: a daemon exited; stopping the other" >&2
kill -TERM "$dn" "$nm" 2>/dev/null || true
wait || true
exit 1
