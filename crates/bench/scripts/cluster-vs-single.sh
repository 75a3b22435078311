#!/usr/bin/env bash
# The cluster targets of docs/performance.md: three runs, each a fresh single node and a fresh
# local 3-node cluster (every shard on 3 voters), with jet-bench's (1) produce 1,000,000 × 100 B
# acks=all and (4) consume them from earliest, plus each broker's peak RSS. Take the medians.
#   cargo build --release -p jet -p jet-bench && crates/bench/scripts/cluster-vs-single.sh
# Uses ports 38092 and 39091-39193 on 127.0.0.1 and /tmp/bs, /tmp/bc; stops what it started.
set -u
T=${CARGO_TARGET_DIR:-$HOME/.cache/jet-target}
J=$T/release/jet; JB=$T/release/jet-bench
run_single() {
  rm -rf /tmp/bs && mkdir -p /tmp/bs
  $J --data-dir /tmp/bs/d --listen 127.0.0.1:38092 --http-listen off > /tmp/bs/log 2>&1 & P=$!
  sleep 3
  $JB --brokers 127.0.0.1:38092 produce --messages 1000000 --size 100 --partitions 4 --acks all --linger-ms 5 2>&1 | grep '^produce' | tail -1
  $JB --brokers 127.0.0.1:38092 consume --messages 1000000 2>&1 | grep '^consume' | tail -1
  grep VmHWM /proc/$P/status
  kill $P; wait $P 2>/dev/null
}
run_cluster() {
  rm -rf /tmp/bc && mkdir -p /tmp/bc
  SEEDS=127.0.0.1:39191,127.0.0.1:39192,127.0.0.1:39193
  for i in 1 2 3; do $J --node-id $i --listen 127.0.0.1:3909$i --peer-listen 127.0.0.1:3919$i --http-listen off --data-dir /tmp/bc/n$i --seeds $SEEDS --bootstrap-expect 3 > /tmp/bc/n$i.log 2>&1 & done
  sleep 6
  B=127.0.0.1:39091,127.0.0.1:39092,127.0.0.1:39093
  $JB --brokers $B produce --messages 1000000 --size 100 --partitions 4 --acks all --linger-ms 5 2>&1 | grep '^produce' | tail -1
  $JB --brokers $B consume --messages 1000000 2>&1 | grep '^consume' | tail -1
  for p in $(pgrep -f 'listen 127.0.0.1:3909'); do grep VmHWM /proc/$p/status; done
  pkill -f 'listen 127.0.0.1:3909'; sleep 2
}
for r in 1 2 3; do
  echo "=== run $r single"; run_single
  echo "=== run $r cluster"; run_cluster
done
