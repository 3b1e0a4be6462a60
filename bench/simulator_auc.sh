#!/usr/bin/env bash
# Is the simulated city as hard to score as a real one? Simulates 4,000 merchants over 36
# months, builds a monthly profile panel with the 12-month default label, and fits two
# reference models in scikit-learn (installed here) on 2024 as-of dates, testing on 2025;
# then Yuanxin's scorecard and boosted trees on the same panel and split, without the
# merchants' industry and district (the default; scikit-learn's models see neither) and
# with them. It also lists
# the "tells": characteristics with values that only later-defaulting rows have.
#   bench/simulator_auc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q scikit-learn pyarrow pandas
cargo build --release --locked -p yuanxin-cli
bin=target/release/yuanxin
out=bench/out/auc
rm -rf "$out"
mkdir -p "$out"
"$bin" simulate --merchants 4000 --months 36 --seed 2023 --out "$out/city" > /dev/null
"$bin" ingest --ledger "$out/ledger" "$out/city" > /dev/null
"$bin" profile --ledger "$out/ledger" --from 2024-01-31 --to 2025-06-30 --label default_12m \
  --oot-from 2025-01-01 --out "$out/panel.parquet"
python3 - "$out/panel.parquet" <<'PY'
import sys
import numpy as np, pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
df = pq.read_table(sys.argv[1]).to_pandas()
df = df[df.label_status == "ok"]
meta = {"merchant_id", "as_of", "industry", "district", "insufficient_data", "insufficient_reason",
        "closed_on", "truncated_windows", "missing_reasons", "default_12m", "label_status", "split"}
feats = [c for c in df.columns if c not in meta]
X, y = df[feats].astype(float), df.default_12m.astype(int)
train = (df.split == "train").values
print(f"{len(df)} labelled rows, bad rate {y.mean():.4f}, {train.sum()} train / {(~train).sum()} test")
best = max(max(a, 1 - a) for a in (roc_auc_score(y[X[f].notna()], X[f][X[f].notna()])
           for f in feats if X[f].notna().sum() > 100 and X[f].nunique() > 1))
print(f"best single characteristic AUC {best:.3f}")
# Tells: a characteristic whose values beyond some threshold (above the highest value any
# good row has, or below the lowest) occur only among rows that later default — a value
# only the distress path produces — in at least 1 % of the bad rows (and five): with twenty
# good rows to each bad one, the last few values of a shared tail fall to either side by
# chance, so those are shown apart, as extremes, not as tells.
tells, extremes = [], []
material = max(5, int(0.01 * (y == 1).sum()))
for f in feats:
    v = X[f]
    good, bad = v[(y == 0) & v.notna()], v[(y == 1) & v.notna()]
    if len(good) == 0 or len(bad) == 0:
        continue
    for n, side, edge in [((bad > good.max()).sum(), ">", good.max()),
                          ((bad < good.min()).sum(), "<", good.min())]:
        line = f"{f} {side} {edge:g} ({n} bad rows, no good one)"
        if n >= material:
            tells.append(line)
        elif n >= 5:
            extremes.append(line)
print(f"tells (≥ {material} bad rows beyond every good one):", "none" if not tells else "")
for t in tells:
    print("  " + t)
print("extremes (5 or more, fewer than that):", "none" if not extremes else "")
for t in extremes:
    print("  " + t)
Xf = X.fillna(X[train].median()).clip(X[train].quantile(0.01), X[train].quantile(0.99), axis=1)
Xs = (Xf - Xf[train].mean()) / (Xf[train].std() + 1e-9)
lr = LogisticRegression(max_iter=3000, C=0.1).fit(Xs[train], y[train])
print(f"logistic regression, out-of-time AUC {roc_auc_score(y[~train], lr.predict_proba(Xs[~train])[:, 1]):.3f}")
gb = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(X[train], y[train])
print(f"gradient boosting, out-of-time AUC {roc_auc_score(y[~train], gb.predict_proba(X[~train])[:, 1]):.3f}")
PY
# Yuanxin: the scorecard, and boosted trees with the catalogue's monotone constraints (the
# default on panels) and without them (`--monotone none`), each without industry and
# district (the default, as scikit-learn's) and with them (`--descriptive`).
for variant in scorecard boost "boost --monotone none"; do
  for with in "" "industry,district"; do
    read -r method extra <<< "$variant"
    args=(train --data "$out/panel.parquet" --target default_12m --method "$method" --quiet --json
          --out "$out/model.json")
    [ -n "$extra" ] && read -r -a more <<< "$extra" && args+=("${more[@]}")
    [ -n "$with" ] && args+=(--descriptive "$with")
    "$bin" "${args[@]}" | python3 -c "
import json, sys
r = json.load(sys.stdin)
print(f\"Yuanxin $variant{', with industry and district' if '$with' else ''}: out-of-time AUC \"
      f\"{r['metrics']['test']['auc']:.3f} ({len(r['characteristics'])} characteristics, fit {r['fit_seconds']:.2f} s)\")"
  done
done
