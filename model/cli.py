"""Command line: ``python -m model predict PATH [PATH ...]``, ``python -m model explain IMAGE``, ``python -m model info``."""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from model import media

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


def _load_detector(model_dir: str | None):
    from model.api import Detector, default_model_dir

    d = Path(model_dir) if model_dir else default_model_dir()
    if (d / "detector.keras").is_file():
        det = Detector.load(d)
    elif model_dir:
        raise SystemExit(f"error: no detector.keras in {d}")
    else:
        print(f"warning: no bundled model at {d}; using an UNTRAINED network", file=sys.stderr)
        det = Detector.untrained()
    print(f"using {det.describe()}", file=sys.stderr)
    if not det.trained:
        print("warning: this model is untrained: labels are 'unknown' and scores are not a verdict", file=sys.stderr)
    return det


def cmd_predict(args) -> int:
    """Rows are written (and flushed) as each file finishes, and nothing of a file is kept after its row: memory
    stays flat on folders of any size. CSV and JSON Lines stream; JSON is one array, valid once finished."""
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
    if args.engine == "ray" or (args.output or "").endswith(".parquet"):
        from model import batch  # detector actors on Ray / streamed Parquet rows

        return batch.run(args)
    files = _expand(args.paths)
    if not files:
        print("error: no image or video files found", file=sys.stderr)
        return 2
    det = _load_detector(args.model)
    if not args.quiet:
        print(f"limits: {lim.describe()}", file=sys.stderr)
    from model.api import CSV_COLUMNS

    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        writer = None
        if args.format == "csv":
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
            writer.writeheader()
        elif args.format == "json":
            out.write("[")
        out.flush()
        for i, f in enumerate(files, 1):
            if not args.quiet:
                print(f"[{i}/{len(files)}] {f}", file=sys.stderr, flush=True)
            res = det.analyze(f, frames=args.frames, strategy=args.strategy)
            if writer is not None:
                writer.writerow(res.csv_row())
            elif args.format == "jsonl":
                out.write(json.dumps(res.to_dict()) + "\n")
            else:
                out.write(("\n" if i == 1 else ",\n") + json.dumps(res.to_dict(), indent=2))
            out.flush()
            del res
        if args.format == "json":
            out.write("\n]\n")
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    return 0


def cmd_explain(args) -> int:
    from PIL import Image

    det = _load_detector(args.model)
    res = det.analyze_image(args.image)
    if res.error:
        print(f"error: {res.error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(res.face_results):
        _, over = det.explain(f.crop)
        p = out / f"{Path(args.image).stem}_face{i}_gradcam.png"
        Image.fromarray(over).save(p)
        print(f"{p}\tscore={f.score:.4f}\tlabel={f.label}")
    if not res.face_results:
        print("no face found", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    det = _load_detector(args.model)
    print(json.dumps(det.card.to_dict(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m model", description="DeepFake-Detect inference.", epilog=EPILOG)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict", help="score images, videos and folders", epilog=EPILOG)
    p.add_argument("paths", nargs="+", help="image files, video files or folders (searched recursively)")
    p.add_argument("--model", help="model folder (default: $DEEPFAKE_MODEL or the bundled sample model)")
    p.add_argument("--frames", type=int, default=None, help="frames sampled per video (default: the model card's crop spec, 32)")
    p.add_argument("--strategy", choices=("max_mean", "mean", "confident"), default="max_mean",
                   help="video aggregation (default max_mean: max over faces per frame, mean over frames)")
    p.add_argument("--format", choices=("csv", "jsonl", "json"), default="csv",
                   help="csv and jsonl (one JSON object per line) are written as each file finishes; json is one array")
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
                   help="ray: score with a pool of detector actors on Ray (same rows; use with --output X.parquet)")
    p.add_argument("--address", help="with --engine ray: Ray cluster address (default $RAY_ADDRESS, else local Ray)")
    p.add_argument("--workers", type=int, help="with --engine ray: detector actors (default: one per CPU or GPU)")
    p.set_defaults(func=cmd_predict)
    e = sub.add_parser("explain", help="write Grad-CAM overlays for each face of an image")
    e.add_argument("image")
    e.add_argument("--model")
    e.add_argument("--out", default="gradcam_out")
    e.set_defaults(func=cmd_explain)
    i = sub.add_parser("info", help="print the model card")
    i.add_argument("--model")
    i.set_defaults(func=cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "frames", 1) is not None and getattr(args, "frames", 1) < 1:
        print("error: --frames must be at least 1", file=sys.stderr)
        return 2
    return args.func(args)
