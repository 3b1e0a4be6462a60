#!/usr/bin/env bash
# City scale (issue 19): the nightly job on a city of N merchants x 36 months.
#
#   bench/city_scale.sh [MERCHANTS]        default: 200000
#   KEEP_CITY=1 bench/city_scale.sh N      reuse bench/out/scale-N/city from an earlier run
#
# Builds the release binary, then times each step under GNU time (elapsed seconds, peak
# resident memory): simulate (the last 11 days written as daily deliveries), the first
# ingest of the city, a 1,000-row escrow delivery into that ledger, the nightly refresh
# with the first daily delivery (ingest, 12 month-ends of profiles, scores, standing
# offers, alerts, snapshot), the same refresh's profiles as two shards and their gather,
# an 18-month labelled panel, and compaction. Needs about 25 GB of disk per 100,000
# merchants. Output goes to bench/out/scale-N/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200000}
cargo build --release --locked -p yuanxin-cli
bin=$PWD/target/release/yuanxin
out=bench/out/scale-$n
city=$out/city
ledger=$out/ledger
if [[ ${KEEP_CITY:-} == 1 && -f $city/simulation.json ]]; then
  find "$out" -mindepth 1 -maxdepth 1 ! -name city ! -name 'time-simulate.txt' ! -name 'simulate.txt' \
    -exec rm -rf {} +
else
  rm -rf "$out"
fi
mkdir -p "$out"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(rustc --version)"
source bench/lib.sh
[[ -f $city/simulation.json && ${KEEP_CITY:-} == 1 ]] && echo "simulate: kept from an earlier run ($(tail -1 "$out/time-simulate.txt"))" ||
step simulate "$bin" simulate --merchants "$n" --months 36 --seed 2023 --out "$city" --daily-from 2026-06-20
rows=$(python3 -c "import json;d=json.load(open('$city/simulation.json'));print(sum(d['rows'].values()))")
echo "  city: $rows rows in all, $(du -sh "$city" | cut -f1) on disk"
step first-ingest "$bin" ingest --ledger "$ledger" --ingested-at 2026-06-20T06:00:00+08:00 "$city"
grep -E "rows/s" "$out/first-ingest.txt" | sed 's/^/  /'
# 1,000 escrow events of the city under new ids: the small delivery.
delivery=$out/delivery-1000
mkdir -p "$delivery"
python3 -m pip install -q duckdb
python3 - "$city" "$delivery" <<'PY'
import duckdb, sys
duckdb.sql(f"COPY (SELECT * REPLACE (event_id || '-late' AS event_id) FROM '{sys.argv[1]}/escrow_events.parquet' USING SAMPLE 1000 ROWS (reservoir, 7)) TO '{sys.argv[2]}/escrow_events.parquet' (FORMAT parquet)")
PY
step delivery-1000 "$bin" ingest --ledger "$ledger" --ingested-at 2026-06-20T07:00:00+08:00 "$delivery"
common=(--ledger "$ledger" --today 2026-06-21 --data data --models models)
step refresh "$bin" refresh "${common[@]}" --deliveries "$city/_daily/2026-06-20" \
  --ingested-at 2026-06-21T06:00:00+08:00 --profiles "$out/profiles.parquet" --snapshots "$out/snapshots"
sed 's/^/  /' "$out/refresh.txt"
step shard-0-of-2 "$bin" refresh "${common[@]}" --shard 0/2 --parts "$out/parts"
step shard-1-of-2 "$bin" refresh "${common[@]}" --shard 1/2 --parts "$out/parts"
step gather "$bin" refresh "${common[@]}" --gather "$out/parts" --profiles "$out/profiles-sharded.parquet" \
  --snapshots "$out/snapshots-sharded"
cmp "$out/profiles.parquet" "$out/profiles-sharded.parquet" && echo "  shards' profiles = single run's, byte for byte"
step panel-18-months "$bin" profile --ledger "$ledger" --from 2024-12-31 --to 2026-05-31 \
  --label default_12m --out "$out/panel.parquet"
sed 's/^/  /' "$out/panel-18-months.txt"
step compact "$bin" ledger compact --ledger "$ledger" --retain-minutes 0
sed 's/^/  /' "$out/compact.txt"
