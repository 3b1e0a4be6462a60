#!/usr/bin/env bash
# Score-endpoint throughput with the service's state on its SQLite file, on PostgreSQL with
# one replica, and on PostgreSQL with two replicas sharing the database (issue 20), all in
# one run on this machine. Starts the release `yuanxin serve` three times (one on SQLite,
# two on a throwaway PostgreSQL cluster from scripts/lib/pg.sh) with the demo city, then
# loads each configuration in turn, ROUNDS times, with wrk (Debian's package, installed if
# missing): /healthz on the SQLite replica (the trivial reference), the lender score on the
# SQLite replica, on one PostgreSQL replica, and on both PostgreSQL replicas at once (one
# wrk per replica, half the connections each; the figure is their sum). Each score writes
# a durable, signed query-log entry before it is answered; afterwards the script checks
# that the PostgreSQL log verifies against both replicas' checkpoint files and holds one
# entry per 2xx response.
#   bench/load_replicas.sh [SECONDS] [CONNECTIONS] [ROUNDS]   default: 5 s, 64 connections, 3 rounds
# Servers, PostgreSQL and wrk share this machine's cores: the ratios are the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
conns=${2:-64}
rounds=${3:-3}
source bench/lib.sh
need_wrk
cargo build --release --locked -p yuanxin-cli
bin=target/release/yuanxin
source scripts/lib/pg.sh
start_pg
out=bench/out/replicas
rm -rf "$out" && mkdir -p "$out/models"
cp models/default-scorecard.json models/registry.json "$out/models/"
[ -f data/demo/profiles-latest.parquet ] || "$bin" demo > /dev/null
"$pgbin/createdb" -h 127.0.0.1 -p "$pgport" -U yuanxin yuanxin_bench
pgurl="postgres://yuanxin@127.0.0.1:$pgport/yuanxin_bench"
pids=()
cleanup() { kill "${pids[@]}" 2> /dev/null || true; stop_pg; }
trap cleanup EXIT
serve() { # name, database, extra arguments...
  local name=$1 db=$2
  shift 2
  YUANXIN_LOG=off YUANXIN_RATE_PER_SECOND=1000000000 YUANXIN_RATE_BURST=1000000000 YUANXIN_MAX_CONCURRENCY=4096 \
    YUANXIN_KEY_FILE="$out/shared.key" YUANXIN_CHECKPOINTS="$out/$name.checkpoints" \
    "$bin" serve --addr 127.0.0.1:0 --models "$out/models" --db "$db" "$@" > "$out/$name.txt" 2> "$out/$name.err" &
  pids+=($!)
  for _ in $(seq 150); do grep -q "Yuanxin serving on" "$out/$name.txt" 2> /dev/null && break; sleep 0.2; done
  # A replica with demo keys is ready once it has printed them.
  if [ "$*" != "--no-demo-keys" ]; then
    for _ in $(seq 150); do grep -q "demo merchant:" "$out/$name.txt" 2> /dev/null && break; sleep 0.2; done
  fi
}
addr_of() { head -1 "$out/$1.txt" | sed -E 's|.*http://([^ ]+).*|\1|'; }
serve sqlite "$out/db.sqlite"
serve pg-a "$pgurl"
serve pg-b "$pgurl" --no-demo-keys
lite=$(addr_of sqlite); pga=$(addr_of pg-a); pgb=$(addr_of pg-b)
lite_key=$(grep "demo lender key" "$out/sqlite.txt" | awk '{print $NF}')
pg_key=$(grep "demo lender key" "$out/pg-a.txt" | awk '{print $NF}')
merchant=$(grep "demo merchant:" "$out/sqlite.txt" | awk '{print $NF}')
path="/v1/merchants/$merchant/score?purpose=pre_loan"
echo "machine: $(nproc) cores; $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2); ${rounds} rounds of ${secs} s, ${conns} connections; PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
non2xx() { awk '/Non-2xx/ {n = $NF} END {print n + 0}' "$1"; }
: > "$out/summary.txt"
for r in $(seq "$rounds"); do
  wrk -t2 -c"$conns" -d"${secs}s" "http://$lite/healthz" > "$out/healthz.$r.txt"
  echo "healthz $(rps "$out/healthz.$r.txt") $(non2xx "$out/healthz.$r.txt")" >> "$out/summary.txt"
  wrk -t2 -c"$conns" -d"${secs}s" -H "Authorization: Bearer $lite_key" "http://$lite$path" > "$out/sqlite.$r.txt"
  echo "sqlite $(rps "$out/sqlite.$r.txt") $(non2xx "$out/sqlite.$r.txt")" >> "$out/summary.txt"
  wrk -t2 -c"$conns" -d"${secs}s" -H "Authorization: Bearer $pg_key" "http://$pga$path" > "$out/pg1.$r.txt"
  echo "postgres-1 $(rps "$out/pg1.$r.txt") $(non2xx "$out/pg1.$r.txt")" >> "$out/summary.txt"
  wrk -t1 -c$((conns / 2)) -d"${secs}s" -H "Authorization: Bearer $pg_key" "http://$pga$path" > "$out/pg2a.$r.txt" &
  first=$!
  wrk -t1 -c$((conns / 2)) -d"${secs}s" -H "Authorization: Bearer $pg_key" "http://$pgb$path" > "$out/pg2b.$r.txt"
  wait "$first"
  sum=$(awk -v a="$(rps "$out/pg2a.$r.txt")" -v b="$(rps "$out/pg2b.$r.txt")" 'BEGIN {print a + b}')
  echo "postgres-2 $sum $(( $(non2xx "$out/pg2a.$r.txt") + $(non2xx "$out/pg2b.$r.txt") + 0 ))" >> "$out/summary.txt"
done
median() { grep "^$1 " "$out/summary.txt" | awk '{print $2}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median healthz)
echo "| configuration | score requests/s (median of $rounds) | vs /healthz |"
echo "|---|---:|---:|"
echo "| /healthz (SQLite replica) | $h | 1.00× |"
for c in sqlite postgres-1 postgres-2; do
  v=$(median "$c")
  echo "| score, $c | $v | $(awk -v v="$v" -v h="$h" 'BEGIN {printf "%.2f×", v / h}') |"
done
echo "non-2xx responses per round: $(awk '{s += $3} END {print s + 0}' "$out/summary.txt")"
# The shared log: one sequence, verified against each replica's checkpoints.
kill "${pids[@]}" 2> /dev/null || true
wait 2> /dev/null || true
pids=()
for r in pg-a pg-b; do
  "$bin" audit verify --db "$pgurl" --checkpoints "$out/$r.checkpoints" --key-file "$out/shared.key"
done
# The log's write path: entries per commit (group commit) on each store.
pg_stats=$("$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U yuanxin -d yuanxin_bench -Atc "SELECT count(*) || ' entries in ' || count(head) || ' commits' FROM log_entries")
lite_stats=$(python3 -c "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); n, h = c.execute('SELECT count(*), count(head) FROM log_entries').fetchone(); print(f'{n} entries in {h} commits')" "$out/db.sqlite")
echo "query log, PostgreSQL (both replicas): $pg_stats"
echo "query log, SQLite: $lite_stats"
