#!/usr/bin/env bash
# The regulators' monthly report (issue 21) on a city of N merchants x 36 months: time and
# peak memory of `yuanxin report monthly` (12 months of trend: profiles of every merchant
# at 12 month-ends as known at the ledger's last batch, scored, alerts, the HTML, the CSVs;
# no PDF), for the whole city and for one district.
#
#   bench/monthly_report.sh [MERCHANTS]        default: 20000
#   DROP_CITY=1 bench/monthly_report.sh 200000  remove the simulated files once ingested
#                                               (200,000 merchants: 8 GB city, ~37 GB ledger)
#
# Reuses the city and ledger of bench/city_scale.sh (bench/out/scale-N/) when they are
# there, else simulates and ingests them into bench/out/report-N/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
cargo build --release --locked -p yuanxin-cli
bin=$PWD/target/release/yuanxin
out=bench/out/report-$n
mkdir -p "$out"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(rustc --version)"
source bench/lib.sh
ledger=bench/out/scale-$n/ledger
if [[ ! -f $ledger/manifest.json ]]; then
  ledger=$out/ledger
  if [[ ! -f $ledger/manifest.json ]]; then
    step simulate "$bin" simulate --merchants "$n" --months 36 --seed 2023 --out "$out/city"
    step ingest "$bin" ingest --ledger "$ledger" --ingested-at 2026-07-01T06:00:00+08:00 "$out/city"
    if [[ ${DROP_CITY:-} == 1 ]]; then rm -rf "$out/city"; fi
  fi
fi
echo "ledger: $ledger"
step report-city "$bin" report monthly --ledger "$ledger" --month 2026-06 --no-pdf --out "$out/city-2026-06"
head -1 "$out/report-city.txt" | sed 's/^/  /'
step report-district "$bin" report monthly --ledger "$ledger" --month 2026-06 --district NANSHAN --no-pdf \
  --out "$out/nanshan-2026-06"
head -1 "$out/report-district.txt" | sed 's/^/  /'
