#!/usr/bin/env bash
# Rebuild the bundled sample model from ../shared/data (resumable: rerun after a kill).
#   bash training/run_sample.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
python -m training convert-lite0
python -m training prepare ffpp="$DATA/ffpp_mini" --out data/prepared/ffpp_mini --frames 32 --workers 2
python -m training prepare utkface="$DATA/utkface" --out data/prepared/utkface --frames 1 --workers 2
python -m training train configs/sample.toml
python -m training threshold runs/sample --policy fpr --target-fpr 0.1
python -m training evaluate runs/sample
python -m training train configs/sample_scratch.toml
python -m training threshold runs/sample-scratch --policy fpr --target-fpr 0.1
python -m training evaluate runs/sample-scratch
