#!/usr/bin/env bash
# Our message service beside the anchors, in one run on the same machine (figures in bench/results/):
#   ../shared/bench/db_limits.py   raw batched SKIP LOCKED dequeue (deq_k100_c4) on MariaDB
#   ../shared/bench/peer_kombu.py  kombu's SQL transport (publish, consume with 1 and 4 consumers)
#   bench/messaging.py             ours: publish, consume with 1 and 4 processes, latency at 200 msgs/s
# Then prints the ratios the messaging issue states targets for.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SHARED=../shared/bench
OUT=bench/results
mkdir -p "$OUT"
mariadb -uroot -h127.0.0.1 -e 'CREATE DATABASE IF NOT EXISTS bench'
N=${N:-20000}
RUNS=${RUNS:-3}  # each figure is the median of RUNS runs
echo "== db_limits (dequeue, k=100, 1 and 4 consumers, MariaDB)"
$PY $SHARED/db_limits.py --url mysql+pymysql://root@127.0.0.1:3306/bench --tests dequeue --k 100 \
  --consumers 1,4 --modes delete --runs "$RUNS" --n-batch "$N" --json "$OUT/db_limits.json" > "$OUT/db_limits.log"
grep SUMMARY "$OUT/db_limits.log"
echo "== kombu SQL transport (MariaDB)"
$PY $SHARED/peer_kombu.py --url sqla+mysql+pymysql://root@127.0.0.1:3306/bench --n 5000 --runs "$RUNS" \
  --tests throughput --no-raw --deadline 120 --json "$OUT/peer_kombu.json" > "$OUT/peer_kombu.log"
grep SUMMARY "$OUT/peer_kombu.log"
echo "== prodagent message service"
$PY -m bench.messaging --n "$N" --runs "$RUNS" --json "$OUT/messaging.json" | tail -13
$PY - <<'PYEOF'
import json
import re
from pathlib import Path

def median(log, test):
    for line in Path(log).read_text().splitlines():
        if line.startswith("SUMMARY") and f"test={test} " in line:
            return float(re.search(r"median=([\d,.]+)", line).group(1).replace(",", ""))
    return None

import statistics

rows = json.loads(Path("bench/results/messaging.json").read_text())
ours = {key: statistics.median(r["value"] for r in rows if (r["backend"], r["measure"]) == key)
        for key in {(r["backend"], r["measure"]) for r in rows}}
raw = median("bench/results/db_limits.log", "deq_k100_c4_delete")
kombu = median("bench/results/peer_kombu.log", "consume_c4")
c4 = ours[("mariadb", "consume_c4")]
print(f"ours consume, 4 processes, MariaDB: {c4:.0f} msgs/s")
print(f"raw deq_k100_c4 (same run): {raw:.0f} msgs/s  -> ours/raw = {c4 / raw:.2f} (target >= 0.5)")
print(f"kombu consume_c4 (same run): {kombu:.0f} msgs/s -> ours/kombu = {c4 / kombu:.1f} (target >= 3)")
print(f"latency at 200 msgs/s on MariaDB: p50 {ours[('mariadb', 'latency_p50')]:.1f} ms (target < 50), "
      f"p99 {ours[('mariadb', 'latency_p99')]:.1f} ms")
PYEOF
