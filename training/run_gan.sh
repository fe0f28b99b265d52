# Build the generated-face detector (runs/gan) and its leave-one-generator-out folds from ../shared/data end to end
# (every step resumable: rerun after a kill).   bash training/run_gan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
python -m training convert-lite --variant lite0
# the v3 crop contract (128 px, margin 0): the face-swap detector's, so one cut of a face serves both detectors
python -m training prepare gan_faces="$DATA/gan_faces" --out data/prepared3/gan_faces --margin 0 --frames 1 --workers 2
[ -f data/prepared3/lfw/crops.csv ] || python -m training prepare lfw="$DATA/lfw" --out data/prepared3/lfw --margin 0 --frames 1 --limit 3000 --workers 2
# leave-one-generator-out first (the headline): each fold never sees one generator in training or validation
for g in stylegan2 sd21 other_gan; do
  python -m training train configs/logo_$g.toml --run-dir runs/logo-$g
done
python -m training train configs/gan.toml --run-dir runs/gan
for g in stylegan2 sd21 other_gan; do
  python -m training calibrate runs/logo-$g --policy youden
  python -m training evaluate runs/logo-$g
done
python -m training calibrate runs/gan --policy youden
python -m training evaluate runs/gan --audit utkface="$DATA/utkface" --max-photos 1500
