#!/usr/bin/env bash
# Model benchmark against the Python peers (issue: models), in one run on this machine:
# Yuanxin's scorecard and boosted trees, optbinning, scorecardpy, toad, LightGBM and XGBoost
# on every dataset of a folder (each sub-folder with a meta.json and a split.csv; default:
# the four shared ones in ../shared/datasets) with its fixed split, one thread each.
# Prints test AUC, KS, fit seconds (median of 3) and prediction rows/s, then the goals.
#   bench/model_peers.sh [DATASETS_DIR]
# The peers go into their own virtualenv (bench/out/venv): scorecardpy needs pandas 2.x.
set -euo pipefail
cd "$(dirname "$0")/.."
datasets=${1:-../shared/datasets}
venv=bench/out/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "pandas<3" numpy scikit-learn lightgbm xgboost optbinning scorecardpy toad
cargo build --release --locked -p yuanxin-cli
echo "machine: $(nproc) cores; $(rustc --version); $("$venv/bin/python" -c 'import sklearn,lightgbm,xgboost,optbinning,pandas;print("scikit-learn",sklearn.__version__,"LightGBM",lightgbm.__version__,"XGBoost",xgboost.__version__,"optbinning",optbinning.__version__,"pandas",pandas.__version__)')"
"$venv/bin/python" bench/model_peers.py target/release/yuanxin "$datasets" bench/out/models
