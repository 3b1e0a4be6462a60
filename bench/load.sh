#!/usr/bin/env bash
# Load benchmark of the service (issue: the service). Starts the release `yuanxin serve` on
# loopback with the demo city, a fresh database and a copy of the registry, then drives it
# with wrk (Debian's package, installed if missing): a trivial endpoint (/healthz), the
# lender score (authentication, consent check, durable query-log write) and the lender
# eligibility decision (the same, plus the decision). The three are run in turn, ROUNDS
# times; the table has each endpoint's median round (by requests/s) and the ratio of the
# medians to the trivial endpoint's, all measured in the same run.
#   bench/load.sh [SECONDS] [CONNECTIONS] [ROUNDS]   default: 5 s, 64 connections, 3 rounds
#   WARMUP=SECONDS bench/load.sh                      seconds of each endpoint before the rounds,
#                                                     not counted (default 5; 0: none)
#   YUANXIN_BIN=path/to/yuanxin bench/load.sh         another build (e.g. an older commit's), not rebuilt
# Server and load generator share this machine's cores, so absolute figures understate the
# server alone; the ratios are the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-64}
rounds=${3:-3}
source bench/lib.sh
need_wrk
if [ -n "${YUANXIN_BIN:-}" ]; then
  bin=$YUANXIN_BIN
else
  cargo build --release --locked -p yuanxin-cli
  bin=target/release/yuanxin
fi
out=bench/out/load
rm -rf "$out" && mkdir -p "$out/models"
cp models/default-scorecard.json models/registry.json "$out/models/"
[ -f data/demo/profiles-latest.parquet ] || "$bin" demo > /dev/null
# The service's secrets and checkpoints go beside its database, in the output folder.
YUANXIN_LOG=off YUANXIN_RATE_PER_SECOND=1000000000 YUANXIN_RATE_BURST=1000000000 YUANXIN_MAX_CONCURRENCY=4096 \
  "$bin" serve --addr 127.0.0.1:0 --models "$out/models" --db "$out/db.sqlite" > "$out/serve.txt" 2> "$out/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "demo merchant:" "$out/serve.txt" 2>/dev/null && break; sleep 0.2; done
addr=$(head -1 "$out/serve.txt" | sed -E 's|.*http://([^ ]+).*|\1|')
lender=$(grep "demo lender key" "$out/serve.txt" | awk '{print $NF}')
merchant=$(grep "demo merchant:" "$out/serve.txt" | awk '{print $NF}')
cat > "$out/eligibility.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"amount":"200000","term_months":12,"loan_purpose":"working_capital","purpose":"pre_loan"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $lender"
LUA
# A new database grows its files (the WAL, the log's table) in its first seconds, so a cold
# first round measures that growth rather than the service; each endpoint runs once first.
warmup=${WARMUP:-5}
if [ "$warmup" -gt 0 ]; then
  wrk -t2 -c"$conns" -d"${warmup}s" "http://$addr/healthz" > /dev/null
  wrk -t2 -c"$conns" -d"${warmup}s" -H "Authorization: Bearer $lender" "http://$addr/v1/merchants/$merchant/score?purpose=pre_loan" > /dev/null
  wrk -t2 -c"$conns" -d"${warmup}s" -s "$out/eligibility.lua" "http://$addr/v1/merchants/$merchant/eligibility" > /dev/null
fi
echo "machine: $(nproc) cores; $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${warmup} s warm-up then ${rounds} rounds of ${secs} s per endpoint, ${conns} connections, 2 wrk threads; server: $(head -1 "$out/serve.txt")"
run() { # name, wrk args...
  local name=$1; shift
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$@" > "$out/$name.txt"
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out/$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$out/$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$out/$name.txt")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out/$name.txt")
  echo "$name $rps $p50 $p99 ${non2xx:-0}" >> "$out/summary.txt"
}
: > "$out/summary.txt"
for _ in $(seq "$rounds"); do
  run healthz "http://$addr/healthz"
  run score -H "Authorization: Bearer $lender" "http://$addr/v1/merchants/$merchant/score?purpose=pre_loan"
  run eligibility -s "$out/eligibility.lua" "http://$addr/v1/merchants/$merchant/eligibility"
done
entries=$("$bin" audit verify --db "$out/db.sqlite")
echo "every round (requests/s): $(awk '{printf "%s %.0f  ", $1, $2}' "$out/summary.txt")"
# The median round of each endpoint.
for name in healthz score eligibility; do
  grep "^$name " "$out/summary.txt" | sort -k2 -g | awk -v n="$rounds" 'NR == int((n + 1) / 2)'
done > "$out/median.txt"
base=$(awk '$1=="healthz" {print $2}' "$out/median.txt")
printf '| endpoint | requests/s | p50 | p99 | non-2xx | vs /healthz |\n|---|---|---|---|---|---|\n'
while read -r name rps p50 p99 non2xx; do
  printf '| %s | %.0f | %s | %s | %s | %.2f× |\n' "$name" "$rps" "$p50" "$p99" "$non2xx" "$(awk "BEGIN{print $rps/$base}")"
done < "$out/median.txt"
echo "$entries (every served score and decision was logged before its response)"
