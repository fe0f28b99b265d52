#!/usr/bin/env bash
# Rebuild the bundled sample model from ../shared/data end to end (every step resumable: rerun after a kill).
#   bash training/run_sample.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
python -m training convert-lite0
# face crops under the crop contract (128 px, margin 0.3, 32 frames, every face track)
python -m training prepare ffpp="$DATA/ffpp_mini" --out data/prepared2/ffpp_mini --workers 2
python -m training prepare lfw="$DATA/lfw" --out data/prepared2/lfw --frames 1 --limit 3000 --workers 2
for run in sample sample-scratch; do
  python -m training train "configs/${run//-/_}.toml" --run-dir "runs/$run"
  python -m training calibrate "runs/$run" --policy youden
  # UTKFace was never trained on: the whole set is a held-out audit of false alarms by gender and race
  python -m training evaluate "runs/$run" --audit utkface="$DATA/utkface" --max-photos 1500
done
