#!/usr/bin/env bash
# Profile speed against the peers (issue: profiles). For each city size, computes the same
# 12 characteristics as of the city's last day three ways — `yuanxin profile --features`,
# DuckDB SQL and Polars (both installed here from PyPI) — checks that the three agree to
# 1e-9, and prints wall time, engine time, events/s and peak memory (GNU time) of each.
#   bench/profile_peers.sh [MERCHANTS...]     default: 20000
#   YUANXIN_BIN=path/to/yuanxin bench/profile_peers.sh   another build, not rebuilt
# A city and its ledger are made under bench/out/ if missing (36 months, seed 2023).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-20000}")
read -r -a sizes <<< "${sizes[*]}"
python3 -m pip install -q duckdb polars pyarrow pandas
if [ -n "${YUANXIN_BIN:-}" ]; then
  bin=$YUANXIN_BIN
else
  cargo build --release --locked -p yuanxin-cli
  bin=target/release/yuanxin
fi
features=rev_total_30d,rev_total_90d,rev_total_365d,rev_cv_6m,days_since_last_sale,active_days_ratio_30d,withdrawals_30d,complaints_90d,prepaid_sales_30d,prepaid_liability,escrow_coverage,payroll_on_time_ratio_6m
asof=2026-06-30
echo "machine: $(nproc) cores; $(rustc --version); duckdb $(python3 -c 'import duckdb;print(duckdb.__version__)'); polars $(python3 -c 'import polars;print(polars.__version__)')"
for n in "${sizes[@]}"; do
  city=bench/out/city-$n
  ledger=bench/out/ledger-$n
  if [ ! -f "$ledger/manifest.json" ]; then
    [ -f "$city/simulation.json" ] || "$bin" simulate --merchants "$n" --months 36 --seed 2023 --out "$city" > /dev/null
    "$bin" ingest --ledger "$ledger" "$city" > /dev/null
  fi
  # Events the twelve characteristics read: wallet flows, escrow events, operations, complaints.
  events=$(python3 - "$ledger" <<'PY'
import json, sys
m = json.load(open(sys.argv[1] + "/manifest.json"))
print(sum(f["rows"] for f in m["files"] if f["table"] in ("wallet_flows", "escrow_events", "operations", "complaints")))
PY
)
  out=bench/out/peers-$n
  mkdir -p "$out"
  done_outputs=()
  run() { # name, command...
    local name=$1; shift
    rm -f "$out/$name.parquet"
    # Every engine starts with the ledger in the page cache (the large city's ledger does not
    # stay there across engines that use most of the memory).
    find "$ledger/data" -name '*.parquet' -print0 | xargs -0 cat > /dev/null
    # An engine that fails (on the large city, typically by running out of memory) is
    # reported as such; the others are still timed and compared.
    if ! /usr/bin/time -f "%e %M" -o "$out/time-$name.txt" "$@" > "$out/log-$name.txt" 2>&1; then
      printf '%-8s %7d merchants: FAILED (%s)\n' "$name" "$n" "$(tail -1 "$out/time-$name.txt")"
      return
    fi
    read -r secs kib < "$out/time-$name.txt"
    printf '%-8s %7d merchants: %6.2f s wall, %8.0f events/s, peak %6.0f MiB   (%s)\n' \
      "$name" "$n" "$secs" "$(awk "BEGIN{print $events/$secs}")" "$(awk "BEGIN{print $kib/1024}")" "$(tail -1 "$out/log-$name.txt")"
    done_outputs+=("$out/$name.parquet")
  }
  run yuanxin "$bin" profile --ledger "$ledger" --as-of "$asof" --features "$features" --out "$out/yuanxin.parquet"
  run duckdb python3 bench/profile_peers.py duckdb "$ledger" "$asof" "$out/duckdb.parquet"
  run polars python3 bench/profile_peers.py polars "$ledger" "$asof" "$out/polars.parquet"
  python3 bench/profile_peers.py compare "${done_outputs[@]}"
  echo "($events events read by the twelve characteristics)"
done
