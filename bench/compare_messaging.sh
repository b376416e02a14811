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
echo "== db_limits (dequeue, k=100, 1 and 4 consumers, MariaDB)"
$PY $SHARED/db_limits.py --url mysql+pymysql://root@127.0.0.1:3306/bench --tests dequeue --k 100 \
  --consumers 1,4 --modes delete --runs 1 --n-batch "$N" --json "$OUT/db_limits.json" | grep -E "SUMMARY|deq_" | tail -8
echo "== kombu SQL transport (MariaDB)"
$PY $SHARED/peer_kombu.py --url sqla+mysql+pymysql://root@127.0.0.1:3306/bench --n 5000 --runs 1 \
  --tests throughput --no-raw --deadline 120 --json "$OUT/peer_kombu.json" | grep -E "SUMMARY|kombu" | tail -8
echo "== prodagent message service"
$PY -m bench.messaging --n "$N" --json "$OUT/messaging.json" | tail -14
$PY - <<'PYEOF'
import json
from pathlib import Path

def find(rows, *words):
    hits = []
    def walk(x):
        if isinstance(x, dict):
            text = json.dumps(x)
            if all(w in text for w in words):
                for key in ("median", "value", "msgs_per_s", "rate"):
                    if isinstance(x.get(key), (int, float)):
                        hits.append(x[key])
                        return
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
    walk(rows)
    return hits

ours = {(r["backend"], r["measure"]): r["value"] for r in json.loads(Path("bench/results/messaging.json").read_text())}
raw = find(json.loads(Path("bench/results/db_limits.json").read_text()), "deq_k100_c4", "pymysql")
kombu = find(json.loads(Path("bench/results/peer_kombu.json").read_text()), "consume", "4")
c4 = ours[("mariadb", "consume_c4")]
print(f"ours consume, 4 processes, MariaDB: {c4:.0f} msgs/s")
if raw:
    print(f"raw deq_k100_c4 (same run): {raw[0]:.0f} msgs/s  -> ours/raw = {c4 / raw[0]:.2f} (target >= 0.5)")
if kombu:
    print(f"kombu consume c4 (same run): {kombu[0]:.0f} msgs/s -> ours/kombu = {c4 / kombu[0]:.1f} (target >= 3)")
print(f"latency at 200 msgs/s on MariaDB: p50 {ours[('mariadb', 'latency_p50')]:.1f} ms (target < 50), "
      f"p99 {ours[('mariadb', 'latency_p99')]:.1f} ms")
PYEOF
