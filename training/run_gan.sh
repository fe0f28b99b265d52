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
  python -m training evaluate runs/logo-$g --datasets gan_faces
done
python -m training calibrate runs/gan --policy youden
python -m training evaluate runs/gan --audit utkface="$DATA/utkface" --max-photos 600
# the same recipe without the degradation augmentation: the "before" of the robustness comparison
python -m training train configs/gan_noaug.toml --run-dir runs/gan-noaug
python -m training calibrate runs/gan-noaug --policy youden
python -m training evaluate runs/gan-noaug --datasets gan_faces
# everyday degradations (model/perturb.py) at levels 1, 3, 5 on 200 test files, both runs; the face-swap model too
python -m training robustness runs/gan --max-files 200 --levels 1,3,5
python -m training robustness runs/gan-noaug --max-files 200 --levels 1,3,5
python -m training robustness runs/sample --max-files 150 --levels 1,3,5
# both detectors on held-out real photos and generated test faces in one engine pass: the combined verdict's cost
python -m research.detectors
python -m research.gan_tables
