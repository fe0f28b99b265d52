"""Command line: ``python -m model predict PATH [PATH ...]``, ``python -m model explain IMAGE [--method M]``,
``python -m model evaluate FOLDER_OR_ZIP``, ``python -m model info``."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from model import media
from model.video import DEFAULT_STRATEGY, STRATEGIES

FRAMES_HELP = "frames sampled per video (default: the model card's crop contract, 32 for the bundled model)"
STRATEGY_HELP = f"video aggregation (default {DEFAULT_STRATEGY}: max over faces per frame, mean over frames)"
EPILOG = "Scores are P(fake) in [0, 1]; label is fake/real at the model's threshold, unknown without a face."


def _expand(paths: list[str]) -> list[str]:
    out = []
    for p in paths:
        pp = Path(p)
        if pp.is_dir():
            for f in sorted(pp.rglob("*")):
                if f.is_file() and f.suffix.lower() in media.IMAGE_EXTS | media.VIDEO_EXTS:
                    out.append(str(f))
        else:
            out.append(p)  # missing files become an error row
    return out


def _load_detector(model_dir: str | None, detectors: str | None = None):
    """The detector of ``--model``, else ``$DEEPFAKE_MODEL``, else the registry's bundled detectors
    (``--detectors``); without one the command stops with one line (it never scores with an untrained network)."""
    from model.api import Detector, ModelNotFound
    from model.registry import RegistryError

    try:
        det = Detector.load(model_dir, detectors=detectors)
    except (ModelNotFound, RegistryError) as e:
        raise SystemExit(f"error: {e}") from None
    print(f"using {det.describe()}", file=sys.stderr)
    if not det.trained:
        print("warning: this model is untrained: labels are 'unknown' and scores are not a verdict", file=sys.stderr)
    return det


def cmd_predict(args) -> int:
    """Rows are written (and flushed) as each file finishes, and nothing of a file is kept after its row: memory
    stays flat on folders of any size. Both engines write full records through one writer (``model.results``)."""
    from model import limits

    previous = limits.current()
    try:
        return _predict(args, limits)
    finally:
        limits.configure(previous)  # main() may run inside another program (tests)


def _predict(args, limits) -> int:
    try:
        lim = limits.configure(limits.Limits.from_env().replace(
            max_frame=args.max_frame and limits.parse_size(args.max_frame), max_video_s=args.max_video_s,
            decode_mem_mb=args.decode_mem_mb, decode_timeout_s=args.decode_timeout_s,
            isolate=False if args.no_isolation else None))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.engine == "ray":
        from model import batch

        missing = batch.ray_missing("--engine ray", "ray.data")
        if missing:
            print(missing, file=sys.stderr)
            return 2
    files = _expand(args.paths)
    if not files:
        print("error: no image or video files found", file=sys.stderr)
        return 2
    if args.engine == "ray":
        if args.model and not (Path(args.model) / "detector.keras").is_file():
            print(f"error: no detector.keras in {args.model}", file=sys.stderr)
            return 2
        keys = _detector_keys(args)
        records = batch.score_files(files, args.model, frames=args.frames, strategy=args.strategy,
                                    workers=args.workers, address=args.address, limits=lim,
                                    detectors=None if keys == ["model"] else keys)
    else:
        det = _load_detector(args.model, args.detectors)
        keys = det.keys
        records = _local_records(det, files, args)
    if not args.quiet:
        print(f"limits: {lim.describe()}", file=sys.stderr)
    from model.results import ResultWriter

    with ResultWriter(args.output, args.format, detectors=keys) as w:
        for i, rec in enumerate(records, 1):
            w.write(rec)
            if not args.quiet and args.engine == "ray" and (i % 100 == 0 or i == len(files)):
                print(f"[{i}/{len(files)}] scored", file=sys.stderr, flush=True)
    return 0


def _detector_keys(args) -> list[str]:
    """The detectors' keys (the CSV's score_<key>/label_<key> columns) without loading them (the Ray driver)."""
    from model import registry

    if args.model or os.environ.get("DEEPFAKE_MODEL"):
        if args.detectors not in (None, "all"):
            raise SystemExit("error: --detectors chooses among the bundled detectors; with --model (or "
                             "$DEEPFAKE_MODEL) the one model folder is the detector")
        return ["model"]
    try:
        return registry.parse(args.detectors)
    except registry.RegistryError as e:
        raise SystemExit(f"error: {e}") from None


def _local_records(det, files: list[str], args):
    """Full records, one file at a time (the Result itself is dropped once its record is made)."""
    for i, f in enumerate(files, 1):
        if not args.quiet:
            print(f"[{i}/{len(files)}] {f}", file=sys.stderr, flush=True)
        yield det.analyze(f, frames=args.frames, strategy=args.strategy).to_dict()


def _method_file_tag(method: str) -> str:
    return method.replace("+", "p")


def cmd_explain(args) -> int:
    from PIL import Image

    from model import explain

    methods = list(explain.METHODS) if args.method == "all" else [args.method]
    if args.steps < 1:
        print("error: --steps must be at least 1", file=sys.stderr)
        return 2
    det = _load_detector(args.model)
    res = det.analyze_image(args.image)
    if res.error:
        print(f"error: {res.error}", file=sys.stderr)
        return 1
    if not res.face_results:
        print("no face found", file=sys.stderr)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = []
    print("file\tmethod\tscore\tseconds" + ("\tdeletion_area\trandom_area" if args.deletion else ""))
    for i, f in enumerate(res.face_results):
        for m in methods:
            if args.deletion:
                fa = explain.faithfulness(det, f.crop, m, target=args.target, steps=args.steps, fill=args.fill)
                ex = fa.explanation
            else:
                ex = explain.explain(det, f.crop, m, target=args.target)
            p = out / f"{Path(args.image).stem}_face{i}_{_method_file_tag(m)}.png"
            Image.fromarray(ex.overlay).save(p)
            line = f"{p}\t{m}\t{f.score:.4f}\t{ex.seconds:.3f}"
            entry = {"face": i, "box": f.box, "score": round(f.score, 6), "method": m, "target": args.target,
                     "seconds": round(ex.seconds, 4), "overlay": str(p)}
            if args.deletion:
                line += f"\t{fa.curve.area:.4f}\t{fa.baseline.area:.4f}"
                entry.update(deletion=fa.curve.to_dict(), random_baseline=fa.baseline.to_dict())
            print(line)
            report.append(entry)
    j = out / f"{Path(args.image).stem}_explain.json"
    j.write_text(json.dumps({"image": args.image, "model": det.name, "score_meaning": "P(fake) in [0, 1]",
                             "faces": report}, indent=2) + "\n")
    print(f"details: {j}", file=sys.stderr)
    return 0


def cmd_evaluate(args) -> int:
    from model import testset

    def prog(done, total, msg):
        if not args.quiet:
            print(f"[{done}/{total}] {msg}", file=sys.stderr, flush=True)

    try:
        ts = testset.open_test_set(args.folder, max_files=args.max_files, max_bytes=int(args.max_mb * 1e6),
                                   progress=None)
    except testset.TestSetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with ts:
        print(f"{ts.source}: {len(ts.items)} files ({ts.n_real} real, {ts.n_fake} fake), "
              f"{len(ts.problems)} skipped", file=sys.stderr)
        det = _load_detector(args.model)
        table = testset.score(det, ts, frames=args.frames, strategy=args.strategy, progress=prog)
    thr = det.threshold if args.threshold is None else args.threshold
    s = testset.summary(table, thr)
    ranked = testset.by_error(table)
    if args.output:
        ranked.to_csv(args.output, index=False, float_format="%.6f")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in s.items() if k not in ("roc", "pr")}, indent=2) + "\n")
    fmt = lambda v: "n/a (needs real and fake files)" if v is None else f"{v:.4f}"  # noqa: E731
    print(f"files scored: {s['n_scored']} of {s['n_files']} ({s['n_real']} real, {s['n_fake']} fake); "
          f"problems: {s['n_problems']}")
    print(f"AUC {fmt(s['auc'])}   AP {fmt(s['ap'])}   (score = P(fake))")
    print(f"at threshold {thr:.4f}: TN {s['tn']}  FP {s['fp']}  FN {s['fn']}  TP {s['tp']}  "
          f"detection rate {fmt(s['detection_rate'])}  false alarms {fmt(s['false_alarm_rate'])}")
    bad = table[table["error"].astype(bool)]
    for _, r in bad.iterrows():
        print(f"  skipped {r['name']}: {r['error']}")
    if not args.output:
        print("per-file scores (worst mistakes first):")
        ranked.drop(columns=["error_size"]).to_csv(sys.stdout, index=False, float_format="%.6f")
    return 0


def cmd_info(args) -> int:
    det = _load_detector(args.model)
    print(json.dumps(det.card.to_dict(), indent=2))
    return 0


def _add_research_commands(sub) -> None:
    from model.explain import DEFAULT_METHOD, FILLS, METHODS, TARGETS

    e = sub.add_parser("explain", help="write explanation overlays (and deletion curves) for each face of an image",
                       epilog=f"methods: {', '.join(METHODS)} (or all). " + EPILOG)
    e.add_argument("image")
    e.add_argument("--model")
    e.add_argument("--method", choices=(*METHODS, "all"), default=DEFAULT_METHOD,
                   help=f"explanation method (default {DEFAULT_METHOD}: the fast compiled Grad-CAM)")
    e.add_argument("--target", choices=TARGETS, default="fake", help="explain the fake (default) or the real score")
    e.add_argument("--deletion", action="store_true",
                   help="also measure faithfulness: deletion-curve area of the map and of a random map (lower = better)")
    e.add_argument("--steps", type=int, default=16, help="deletion steps (default 16)")
    e.add_argument("--fill", choices=FILLS, default="mean", help="what replaces deleted pixels (default mean colour)")
    e.add_argument("--out", default="gradcam_out")
    e.set_defaults(func=cmd_explain)
    v = sub.add_parser("evaluate", help="score your own test set: a folder or zip with real/ and fake/ subfolders",
                       epilog=EPILOG)
    v.add_argument("folder", help="folder or .zip holding real/ and fake/ (images and videos, any depth)")
    v.add_argument("--model")
    v.add_argument("--frames", type=int, default=None, help=FRAMES_HELP)
    v.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY, help=STRATEGY_HELP)
    v.add_argument("--threshold", type=float, help="operating threshold (default: the model's)")
    v.add_argument("--output", help="write per-file scores (worst mistakes first) to this CSV")
    v.add_argument("--json", help="write the summary metrics to this JSON file")
    v.add_argument("--max-files", type=int, default=2000, help="refuse zips/folders with more files (default 2000)")
    v.add_argument("--max-mb", type=float, default=4000, help="refuse zips unpacking to more (default 4000 MB)")
    v.add_argument("--quiet", action="store_true", help="no progress on stderr")
    v.set_defaults(func=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m model", description="DeepFake-Detect inference.", epilog=EPILOG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="score images, videos and folders", epilog=EPILOG)
    p.add_argument("paths", nargs="+", help="image files, video files or folders (searched recursively)")
    p.add_argument("--model", help="model folder (default: $DEEPFAKE_MODEL or the bundled sample model)")
    p.add_argument("--detectors", metavar="NAMES",
                   help="bundled detectors to run, comma-separated: faceswap, generated (default: all bundled ones; "
                        "not with --model). score/label are the first one's; score_<name>/label_<name> each one's; "
                        "verdict the combined verdict (fake when any detector says fake)")
    p.add_argument("--frames", type=int, default=None, help=FRAMES_HELP)
    p.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY, help=STRATEGY_HELP)
    p.add_argument("--format", choices=("csv", "jsonl", "json"), default="csv",
                   help="csv (the columns in the README) and jsonl (the full result, one JSON object per line) are written as "
                        "each file finishes; json is one array of full results; an --output ending in .parquet "
                        "writes the csv columns as Parquet")
    p.add_argument("--output", help="write results to this file instead of stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument("--max-frame", metavar="WxH", help="refuse videos with larger frames, either orientation "
                   "(default $DEEPFAKE_MAX_FRAME or 3840x2160)")
    p.add_argument("--max-video-s", type=float, metavar="S",
                   help="analyse only the first S seconds of a video (default $DEEPFAKE_MAX_VIDEO_S or 600)")
    p.add_argument("--decode-mem-mb", type=int, metavar="MB",
                   help="memory limit of the decoder process per file (default $DEEPFAKE_DECODE_MEM_MB or 768)")
    p.add_argument("--decode-timeout-s", type=float, metavar="S",
                   help="wall-time limit for decoding one file (default $DEEPFAKE_DECODE_TIMEOUT_S or 120)")
    p.add_argument("--no-isolation", action="store_true",
                   help="decode in this process instead of a limited child process (trusted files only; faster)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: score with a pool of detector actors on Ray (same rows, same limits; needs Ray)")
    p.add_argument("--address", help="with --engine ray: Ray cluster address (default $RAY_ADDRESS, else local Ray)")
    p.add_argument("--workers", type=int, help="with --engine ray: detector actors (default: one per CPU or GPU)")
    p.set_defaults(func=cmd_predict)
    _add_research_commands(sub)
    i = sub.add_parser("info", help="print the model card")
    i.add_argument("--model")
    i.set_defaults(func=cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "frames", 1) is not None and getattr(args, "frames", 1) < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    from model import limits

    try:
        limits.Limits.from_env()  # a bad DEEPFAKE_* value: one line before any work
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return args.func(args)
