#!/usr/bin/env bash
# Simulator and ingestion throughput and peak memory (issue: foundation).
#
#   bench/simulate_ingest.sh [MERCHANTS...]      default: 20000 200000
#
# Builds the release binary, simulates each city for 36 months with seed 2023, and ingests
# the smallest one into a fresh ledger, again (every row a duplicate), then a delivery of
# 1,000 new escrow events (rows of the city under new event ids, made with DuckDB) into
# that ledger: the daily case, whose cost should follow the delivery; peak memory is the maximum resident set size
# reported by GNU time. Needs ~40 GB of free disk for the 200,000-merchant city. Output
# goes to bench/out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-20000 200000}")
read -r -a sizes <<< "${sizes[*]}"
cargo build --release --locked -p yuanxin-cli
bin=target/release/yuanxin
out=bench/out
mkdir -p "$out"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(rustc --version)"
for n in "${sizes[@]}"; do
  dir="$out/city-$n"
  rm -rf "$dir"
  /usr/bin/time -f "%e s elapsed, %M KiB peak RSS" -o "$out/time-sim-$n.txt" \
    "$bin" simulate --merchants "$n" --months 36 --seed 2023 --out "$dir" > "$out/sim-$n.txt"
  rows=$(python3 -c "import json;d=json.load(open('$dir/simulation.json'));print(sum(d['rows'].values()))")
  secs=$(awk '{print $1}' "$out/time-sim-$n.txt")
  rss=$(awk '{print $4}' "$out/time-sim-$n.txt")
  size=$(du -sh "$dir" | cut -f1)
  printf 'simulate %7d merchants x 36 months: %11d rows in %7.1f s = %9.0f rows/s, peak RSS %6.0f MiB, %s on disk\n' \
    "$n" "$rows" "$secs" "$(awk "BEGIN{print $rows/$secs}")" "$(awk "BEGIN{print $rss/1024}")" "$size"
done
n=${sizes[0]}
dir="$out/city-$n"
ledger="$out/ledger-$n"
rm -rf "$ledger"
/usr/bin/time -f "%e s elapsed, %M KiB peak RSS" -o "$out/time-ingest-$n.txt" \
  "$bin" ingest --ledger "$ledger" "$dir" > "$out/ingest-$n.txt"
rows=$(python3 -c "import json;d=json.load(open('$dir/simulation.json'));print(sum(d['rows'].values()))")
secs=$(awk '{print $1}' "$out/time-ingest-$n.txt")
rss=$(awk '{print $4}' "$out/time-ingest-$n.txt")
printf 'ingest   %7d merchants x 36 months: %11d rows in %7.1f s = %9.0f rows/s, peak RSS %6.0f MiB\n' \
  "$n" "$rows" "$secs" "$(awk "BEGIN{print $rows/$secs}")" "$(awk "BEGIN{print $rss/1024}")"
# Re-ingesting the same city: every row is a recognised duplicate.
/usr/bin/time -f "%e s elapsed, %M KiB peak RSS" -o "$out/time-reingest-$n.txt" \
  "$bin" ingest --ledger "$ledger" "$dir" > "$out/reingest-$n.txt"
secs=$(awk '{print $1}' "$out/time-reingest-$n.txt")
rss=$(awk '{print $4}' "$out/time-reingest-$n.txt")
printf 're-ingest (all duplicates):                  %11d rows in %7.1f s = %9.0f rows/s, peak RSS %6.0f MiB\n' \
  "$rows" "$secs" "$(awk "BEGIN{print $rows/$secs}")" "$(awk "BEGIN{print $rss/1024}")"
# A small delivery into the big ledger: 1,000 escrow events under new ids.
python3 -m pip install -q duckdb
delivery="$out/delivery-1000"
rm -rf "$delivery" && mkdir -p "$delivery"
python3 - "$dir" "$delivery" <<'PY'
import duckdb, sys
duckdb.sql(f"COPY (SELECT * REPLACE (event_id || '-late' AS event_id) FROM '{sys.argv[1]}/escrow_events.parquet' USING SAMPLE 1000 ROWS (reservoir, 7)) TO '{sys.argv[2]}/escrow_events.parquet' (FORMAT parquet)")
PY
/usr/bin/time -f "%e s elapsed, %M KiB peak RSS" -o "$out/time-delivery-$n.txt" \
  "$bin" ingest --ledger "$ledger" "$delivery" > "$out/delivery-$n.txt"
secs=$(awk '{print $1}' "$out/time-delivery-$n.txt")
rss=$(awk '{print $4}' "$out/time-delivery-$n.txt")
printf 'a 1,000-row escrow delivery into that ledger:        1000 rows in %7.2f s, peak RSS %6.0f MiB\n' \
  "$secs" "$(awk "BEGIN{print $rss/1024}")"
# Compaction of that ledger: the delivery added a file to every month partition it touched.
/usr/bin/time -f "%e s elapsed, %M KiB peak RSS" -o "$out/time-compact-$n.txt" \
  "$bin" ledger compact --ledger "$ledger" > "$out/compact-$n.txt"
secs=$(awk '{print $1}' "$out/time-compact-$n.txt")
rss=$(awk '{print $4}' "$out/time-compact-$n.txt")
printf 'compaction: %s in %7.1f s, peak RSS %6.0f MiB\n' \
  "$(cat "$out/compact-$n.txt")" "$secs" "$(awk "BEGIN{print $rss/1024}")"
