"""The one public API that the CLI and the dashboard both call.

    det = Detector.load()                     # every bundled detector of the registry (or a folder / $DEEPFAKE_MODEL)
    res = det.analyze_image("photo.jpg")      # Result: faces with P(fake) per detector, file scores, verdicts
    res = det.analyze_video("clip.mp4")       # Result: frames, face tracks, aggregated scores
    res = det.analyze("any/path" or bytes)    # dispatch on content; errors captured in res.error
    res.detectors["generated"]["score"]       # one detector's calibrated P(fake) of the file
    res.verdict                               # combined verdict (model.registry.VERDICT_RULE)
    res.provenance                            # content credentials (C2PA) + EXIF camera: beside the score, never in it
    heat, over = det.explain(face_crop, detector="generated")   # Grad-CAM heat map [0, 1] and overlay image

One file flows through four steps: decode -> find faces (once) -> every detector scores them (crops cut once per
distinct crop contract; ``Scorer`` is one detector) -> aggregate per detector and combine the verdicts. Adding a
detector is one registry entry (``model.registry``); the flow does not change.

Scores are P(fake) in [0, 1]; ``label`` is ``fake`` when score >= threshold, ``real`` below it, and
``unknown`` when no face was found or when the model is untrained (its scores are no verdict). A result's
``score`` / ``label`` are the default (first) detector's, the meaning they had before there were several.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from model import isolation, limits, media, provenance, registry, results, video
from model.crops import CropSpec, chunk_faces, crop_box_image, image_faces
from model.faces import Face
from model.media import MediaError

REPO_ROOT = Path(__file__).resolve().parent.parent
MODEL_ENV = "DEEPFAKE_MODEL"


# The bundled sample model: runs/sample/model in a source checkout (and an editable install). A wheel ships the
# same two files as the package data model/bundled/ (pyproject.toml maps that folder into the package).
_PACKAGED_MODEL = Path(__file__).resolve().parent / "bundled"
BUNDLED_MODEL = (_PACKAGED_MODEL if (_PACKAGED_MODEL / "detector.keras").is_file()
                 else REPO_ROOT / "runs" / "sample" / "model")


class ModelNotFound(FileNotFoundError):
    """No detector.keras where the model is expected; the message is one line for the user."""


def default_model_dir() -> Path:
    env = os.environ.get(MODEL_ENV)
    return Path(env).expanduser() if env else BUNDLED_MODEL


def require_model_dir(directory: str | os.PathLike | None = None) -> Path:
    """The model folder to load (``directory``, else ``$DEEPFAKE_MODEL``, else the bundled model), or
    ModelNotFound naming where it looked: no caller falls back to an untrained network."""
    d = Path(directory).expanduser() if directory else default_model_dir()
    if (d / "detector.keras").is_file():
        return d
    source = "--model" if directory else f"${MODEL_ENV}" if os.environ.get(MODEL_ENV) else "the bundled model"
    raise ModelNotFound(f"no detector.keras in {d} ({source}); pass --model FOLDER or set {MODEL_ENV}")


# --------------------------------------------------------------------------- results
@dataclasses.dataclass
class FaceResult:
    box: list[int]
    confidence: float
    keypoints: dict[str, list[float]]
    score: float  # calibrated P(fake)
    label: str
    frame: int | None = None
    track: int | None = None
    crop: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    raw_score: float | None = None  # the network's output before calibration
    # every detector's {"score", "raw_score", "label"} for this face (score/label/raw_score above: the default's)
    detectors: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "crop"}
        d["score"] = round(float(self.score), 6)
        if self.raw_score is not None:
            d["raw_score"] = round(float(self.raw_score), 6)
        return d


@dataclasses.dataclass
class TrackResult:
    id: int
    frames: list[int]
    scores: list[float]
    score: float
    label: str
    detectors: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # per detector: score, label

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "frames": self.frames, "scores": [round(s, 6) for s in self.scores],
                "score": round(self.score, 6), "label": self.label, "detectors": self.detectors}


@dataclasses.dataclass
class FrameResult:
    index: int
    time_s: float
    faces: list[FaceResult]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "time_s": round(self.time_s, 3), "faces": [f.to_dict() for f in self.faces]}


@dataclasses.dataclass
class Result:
    """Result for one file (image or video). ``faces`` counts faces (image) or face tracks (video)."""

    path: str
    kind: str
    score: float | None = None  # calibrated P(fake) of the file
    label: str = "unknown"
    error: str = ""
    note: str = ""  # e.g. "first 600 s analysed" when a limit shortened the analysis
    threshold: float = 0.5
    model: str = ""
    model_trained: bool = False
    width: int = 0
    height: int = 0
    face_results: list[FaceResult] = dataclasses.field(default_factory=list)  # image faces
    frames: list[FrameResult] = dataclasses.field(default_factory=list)  # video frames
    tracks: list[TrackResult] = dataclasses.field(default_factory=list)  # video tracks
    strategy: str | None = None
    video_info: dict[str, Any] | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # seconds per stage
    image: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)  # image / key frame
    image_frame: int | None = None  # videos: the frame index of ``image`` (the frame of the highest RAW face score)
    raw_score: float | None = None  # file score before calibration
    # content credentials and EXIF camera/software (``model.provenance.Provenance.to_dict()``), read once per file
    # by ``Detector.analyze``; evidence beside the score, never part of it. None when not read.
    provenance: dict[str, Any] | None = None
    # per detector (registry order; the first is the default): score, raw_score, label, threshold, detects
    detectors: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    verdict: str = "unknown"  # combined verdict of the detectors (model.registry.VERDICT_RULE)

    @property
    def faces(self) -> int:
        return len(self.tracks) if self.kind == "video" else len(self.face_results)

    @property
    def all_faces(self) -> list[FaceResult]:
        if self.kind == "video":
            return [f for fr in self.frames for f in fr.faces]
        return self.face_results

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path, "kind": self.kind, "faces": self.faces,
            "score": None if self.score is None else round(float(self.score), 6),
            "raw_score": None if self.raw_score is None else round(float(self.raw_score), 6),
            "label": self.label, "error": self.error, "note": self.note, "threshold": self.threshold,
            "model": self.model, "model_trained": self.model_trained,
            "score_meaning": "P(fake) in [0, 1]", "provenance": self.provenance,
            "detectors": self.detectors, "verdict": self.verdict, "verdict_rule": registry.VERDICT_RULE,
        }
        if self.kind == "image":
            d.update(width=self.width, height=self.height, face_results=[f.to_dict() for f in self.face_results])
        else:
            d.update(strategy=self.strategy, video_info=self.video_info,
                     timings={k: round(v, 4) for k, v in self.timings.items()},
                     tracks=[t.to_dict() for t in self.tracks], frames=[f.to_dict() for f in self.frames],
                     image_frame=self.image_frame)
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def csv_columns(self) -> list[str]:
        """The CSV columns of this result: ``model.results.COLUMNS`` + a score/label pair per detector + verdict."""
        return results.columns(list(self.detectors))

    def csv_row(self) -> dict[str, Any]:
        """The CSV row of this result (``csv_columns()``)."""
        return results.csv_row({"path": self.path, "kind": self.kind, "faces": self.faces, "score": self.score,
                                "label": self.label, "error": self.error, "note": self.note,
                                "provenance": self.provenance, "detectors": self.detectors, "verdict": self.verdict},
                               list(self.detectors))


CSV_COLUMNS = results.COLUMNS  # the first ten columns; a result's whole row: Result.csv_columns()


class _VideoScan:
    """What ``Detector.analyze_video`` accumulates while frames stream: frame results, face tracks (only each
    track's best crop is kept, by the default detector's score), per-frame raw scores of every detector, the key
    frame (the highest-scoring face's) and timings."""

    def __init__(self, res: Result, keys: list[str]):
        self.res = res
        self.fps = 25.0
        self.timings = {"decode_s": 0.0, "detect_s": 0.0, "classify_s": 0.0}
        self.linker = video.TrackLinker()
        self.track_best: dict[int, FaceResult] = {}
        self.raw_frames: dict[str, list[list[float]]] = {k: [] for k in keys}
        self.key: np.ndarray | None = None
        self.key_index: int | None = None
        self.best = -1.0

    def add_chunk(self, det: "Detector", chunk, per_frame: list[list[Face]], raw: dict[str, np.ndarray]) -> None:
        i = 0
        for (idx, frame), faces in zip(chunk, per_frame):
            frs = []
            for f, tid in zip(faces, self.linker.add([f.box for f in faces])):
                frs.append(self._add_face(det._face_result(f, {k: float(r[i]) for k, r in raw.items()}, frame=idx,
                                                           track=tid), frame))
                i += 1
            for k in self.raw_frames:
                self.raw_frames[k].append([f.detectors[k]["raw_score"] for f in frs])
            self.res.frames.append(FrameResult(index=idx, time_s=idx / self.fps, faces=frs))

    def _add_face(self, fr: FaceResult, frame: np.ndarray) -> FaceResult:
        prev = self.track_best.get(fr.track)
        if prev is None or fr.raw_score > prev.raw_score:
            if prev is not None:
                prev.crop = None  # only each track's best crop is kept
            self.track_best[fr.track] = fr
        else:
            fr.crop = None
        if fr.raw_score > self.best:
            self.best, self.key, self.key_index = fr.raw_score, frame, fr.frame
        return fr


def _video_info(info, sampled: int) -> dict[str, Any]:
    return {"frame_count": info.frame_count, "fps": round(info.fps, 3), "width": info.width, "height": info.height,
            "rotation": info.rotation, "duration_s": round(info.duration_s, 3), "sampled_frames": sampled,
            "sequential": info.sequential, "analysed_s": info.analysed_s}


# --------------------------------------------------------------------------- one detector
class Scorer:
    """One detector of the registry: a network and its model card (what it detects, its face-crop contract, its
    calibration and threshold). It scores crops cut by its own contract; ``Detector`` runs the flow around it."""

    def __init__(self, model, card, key: str = "model", name: str = ""):
        import tensorflow as tf

        self.model = model
        self.card = card
        self.key = key
        self.name = name or card.backbone
        self.input_size = int(model.input_shape[1])
        self.spec = card.spec()
        self.calibration = card.calibrator()
        tspec = tf.TensorSpec([None, self.input_size, self.input_size, 3], tf.float32)
        self._compiled = tf.function(lambda x: model(x, training=False)[:, 0], input_signature=[tspec], autograph=False)
        self._traced = threading.Event()
        self._trace_lock = threading.Lock()  # one thread traces the classifier (Keras tracing is not thread-safe)
        self._gradcam = None
        self._lock = threading.Lock()  # lazy initialisations shared by concurrent sessions

    @property
    def detects(self) -> str:
        return self.card.detects or "face manipulation (its model card does not say which)"

    @property
    def looks_for(self) -> str:
        return self.card.looks_for

    @property
    def threshold(self) -> float:
        return float(self.card.threshold)

    @property
    def trained(self) -> bool:
        return bool(self.card.trained)

    def cut(self) -> tuple:
        """What decides the crop's pixels once a face's box is known: crops are shared between detectors with
        the same cut."""
        return (self.spec.size, self.spec.margin, self.spec.interpolation)

    def _predict(self, x):
        """The compiled classifier on a batch of crops; the first call (the trace) is made by one thread at a time,
        so a request arriving during the background warm-up waits for it instead of tracing beside it."""
        if not self._traced.is_set():
            with self._trace_lock:
                out = self._compiled(x)
                self._traced.set()
                return out
        return self._compiled(x)

    def score_crops(self, crops: Sequence[np.ndarray] | np.ndarray, batch_size: int = 32) -> np.ndarray:
        """RAW network P(fake) for face crops (N x S x S x 3, RGB 0-255), batched through a compiled
        tf.function. Only one batch at a time is converted to float32."""
        if isinstance(crops, np.ndarray) and crops.ndim == 3:
            crops = crops[None]
        if len(crops) == 0:
            return np.zeros((0,), np.float32)
        out = [self._predict(np.asarray(crops[i:i + batch_size], dtype=np.float32)).numpy()
               for i in range(0, len(crops), batch_size)]
        return np.concatenate(out).astype(np.float32)

    def calibrate(self, raw):
        """Calibrated P(fake) for raw network scores (the model card's calibration; identity when none)."""
        return self.calibration.apply(raw)

    def label_for(self, score: float | None, threshold: float | None = None) -> str:
        if score is None or not self.trained:
            return "unknown"
        return "fake" if score >= (self.threshold if threshold is None else threshold) else "real"

    def verdict(self, raw: float | None) -> dict[str, Any]:
        """{score, raw_score, label} of one raw score (None: no face)."""
        score = None if raw is None else float(self.calibrate(float(raw)))
        return {"score": score, "raw_score": None if raw is None else float(raw), "label": self.label_for(score)}

    def explain(self, crop: np.ndarray, target: str = "fake") -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM for one face crop: (heat map in [0, 1], S x S; overlay RGB uint8)."""
        from model import gradcam

        with self._lock:
            if self._gradcam is None:
                self._gradcam = gradcam.make_gradcam_fn(self.model)
        c = np.asarray(crop)
        if c.shape[:2] != (self.input_size, self.input_size):
            import cv2

            c = cv2.resize(c, (self.input_size, self.input_size))
        cam = self._gradcam(c[None].astype(np.float32), target)[0]
        heat = gradcam.normalize_cam(cam, self.input_size)
        return heat, gradcam.overlay(c.astype(np.uint8), heat)


# --------------------------------------------------------------------------- the engine
class Detector:
    """The analysis flow around one or several ``Scorer``s (the registry's detectors): decode, find faces once,
    let every detector score them, aggregate and combine. The first scorer is the default: ``score``, ``label``,
    ``threshold``, ``model``, ``card`` and ``spec`` are its (the single-detector API callers rely on)."""

    def __init__(self, model=None, card=None, spec: CropSpec | None = None, name: str = "",
                 scorers: Sequence[Scorer] | None = None):
        self.scorers = list(scorers) if scorers else [Scorer(model, card, key="model", name=name)]
        if len({s.key for s in self.scorers}) != len(self.scorers):
            raise ValueError("detector keys must be unique")
        first = self.scorers[0]
        self.name = name or first.name
        self.spec = spec or first.spec  # detection settings (shared by all) and the default detector's crop
        if self.spec.size != first.input_size:
            raise ValueError(f"crop spec size {self.spec.size} != model input {first.input_size}")
        for s in self.scorers[1:]:
            if s.spec.size != s.input_size:
                raise ValueError(f"{s.key}: crop spec size {s.spec.size} != model input {s.input_size}")

    # the default detector's attributes (single-detector callers)
    @property
    def default(self) -> Scorer:
        return self.scorers[0]

    @property
    def model(self):
        return self.default.model

    @property
    def card(self):
        return self.default.card

    @property
    def calibration(self):
        return self.default.calibration

    @property
    def input_size(self) -> int:
        return self.default.input_size

    @property
    def threshold(self) -> float:
        return self.default.threshold

    @property
    def trained(self) -> bool:
        return self.default.trained

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.scorers]

    def scorer(self, key: str | None = None) -> Scorer:
        if key is None:
            return self.default
        for s in self.scorers:
            if s.key == key:
                return s
        raise KeyError(f"no detector {key!r} loaded (loaded: {', '.join(self.keys)})")

    def score_crops(self, crops, batch_size: int = 32) -> np.ndarray:
        """The default detector's RAW P(fake) for crops cut by its contract (``calibrate`` before showing)."""
        return self.default.score_crops(crops, batch_size)

    def calibrate(self, raw):
        return self.default.calibrate(raw)

    def label_for(self, score: float | None, threshold: float | None = None) -> str:
        return self.default.label_for(score, threshold)

    def warm_up(self, background: bool = False) -> threading.Thread | None:
        """Build MTCNN and trace every compiled graph (each detector's classifier, MTCNN's three stages) on tiny
        inputs, so the first real request pays only for its own work. ``background``: do it in a daemon thread
        (returned) -- a request that arrives meanwhile waits for the graphs it needs instead of tracing them twice."""
        if background:
            def run():
                try:
                    self.warm_up()
                except Exception as e:  # noqa: BLE001 - an optimisation: the first request traces instead
                    logging.getLogger(__name__).warning("detector warm-up failed (the first request will build "
                                                        "the graphs): %s", str(e).splitlines()[0] if str(e) else e)

            t = threading.Thread(target=run, name="detector-warm-up", daemon=True)
            t.start()
            return t
        from model.faces import get_mtcnn

        for s in self.scorers:
            s._predict(np.zeros((1, s.input_size, s.input_size, 3), np.float32))
        get_mtcnn()
        return None

    # ---- construction
    @classmethod
    def load(cls, directory: str | os.PathLike | None = None, detectors: str | Sequence[str] | None = None,
             **spec_overrides) -> "Detector":
        """Load detectors with safe_mode: ``directory`` (a model folder: ``detector.keras`` + ``model_card.json``)
        or ``$DEEPFAKE_MODEL`` -> that one detector; otherwise the registry's detectors (``detectors``: keys or
        "faceswap,generated"; default every bundled one). ModelNotFound when a folder has no detector.keras.
        The face-crop contract comes from each model card; ``spec_overrides`` (e.g. ``min_confidence=0.8``)
        change detection settings for this session only."""
        from model.network import load_detector

        if directory or os.environ.get(MODEL_ENV):
            if detectors not in (None, "all"):
                raise registry.RegistryError("--detectors chooses among the bundled detectors; with --model (or "
                                             f"${MODEL_ENV}) the one model folder is the detector")
            d = require_model_dir(directory)
            model, card = load_detector(d)
            scorers = [Scorer(model, card, key="model", name=str(d))]
        else:
            scorers = []
            for key in registry.parse(detectors):
                d = registry.entry(key).folder
                model, card = load_detector(d)
                scorers.append(Scorer(model, card, key=key, name=str(d)))
        first = scorers[0]
        spec = first.spec.replace(**spec_overrides) if spec_overrides else None
        return cls(spec=spec, name=first.name, scorers=scorers)

    @classmethod
    def untrained(cls, backbone: str = "efficientnet_b0", input_size: int = 128) -> "Detector":
        from model.network import ModelCard, build_detector

        card = ModelCard(backbone=backbone, input_size=input_size, crop_spec=CropSpec(size=input_size).to_dict())
        return cls(build_detector(backbone, input_size), card, name=f"untrained {backbone}")

    def describe(self) -> str:
        def one(s: Scorer) -> str:
            state = "trained" if s.trained else "UNTRAINED (random weights: scores are not a verdict)"
            return f"{s.key}: {s.name} [{s.card.backbone}, {s.input_size}px, threshold {s.threshold:.3f}, {state}]"

        return "model " + "; ".join(one(s) for s in self.scorers)

    def _base(self, path: str, kind: str) -> Result:
        res = Result(path=path, kind=kind, threshold=self.threshold, model=self.name, model_trained=self.trained)
        res.detectors = {s.key: {**s.verdict(None), "threshold": s.threshold, "detects": s.detects}
                         for s in self.scorers}
        return res

    # ---- the steps every file goes through
    def find_faces(self, image: np.ndarray) -> list[Face]:
        """Step 1: the faces of one image, found once (the default contract's detection settings and crop)."""
        return image_faces(image, self.spec)

    def score_faces(self, faces: Sequence[tuple[np.ndarray, Face]]) -> dict[str, np.ndarray]:
        """Step 2: every detector's RAW P(fake) for ``faces`` ((image the face is in, Face) pairs). Each face is
        cut once per distinct crop contract: the detection's own crop serves every detector with the default cut."""
        own = (self.spec.size, self.spec.margin, self.spec.interpolation)
        cuts: dict[tuple, list[np.ndarray]] = {own: [f.crop for _, f in faces]}
        out = {}
        for s in self.scorers:
            c = own if s is self.default else s.cut()
            if c not in cuts:
                cuts[c] = [crop_box_image(img, f.box, s.spec) for img, f in faces]
            out[s.key] = s.score_crops(cuts[c])
        return out

    def conclude(self, res: Result, raw: dict[str, float | None]) -> Result:
        """Step 3: the file's score and label per detector from its aggregated raw scores, the default detector's
        as ``score`` / ``label``, and the combined verdict."""
        for s in self.scorers:
            res.detectors[s.key] = {**s.verdict(raw[s.key]), "threshold": s.threshold, "detects": s.detects}
        d = res.detectors[self.default.key]
        res.raw_score, res.score, res.label = d["raw_score"], d["score"], d["label"]
        res.verdict = registry.combine(v["label"] for v in res.detectors.values())
        return res

    def _face_result(self, f: Face, raw: dict[str, float], frame: int | None = None,
                     track: int | None = None) -> FaceResult:
        per = {s.key: s.verdict(raw[s.key]) for s in self.scorers}
        d = per[self.default.key]
        return FaceResult(box=[int(v) for v in f.box], confidence=round(float(f.confidence), 4),
                          keypoints={k: [round(a, 1), round(b, 1)] for k, (a, b) in f.keypoints.items()},
                          score=d["score"], label=d["label"], frame=frame, track=track, crop=f.crop,
                          raw_score=d["raw_score"], detectors=per)

    # ---- images
    def analyze_array(self, image: np.ndarray, path: str = "<array>") -> Result:
        res = self._base(path, "image")
        res.height, res.width = image.shape[:2]
        res.image = image
        faces = self.find_faces(image)
        raw = self.score_faces([(image, f) for f in faces])
        res.face_results = [self._face_result(f, {k: float(r[i]) for k, r in raw.items()})
                            for i, f in enumerate(faces)]
        return self.conclude(res, {k: (float(max(r)) if len(r) else None) for k, r in raw.items()})

    def analyze_image(self, source: str | os.PathLike | bytes, path: str | None = None) -> Result:
        """Decode (in a child process unless isolation is off; bytes from memory) and analyse an image."""
        name = path or (str(source) if not isinstance(source, (bytes, bytearray)) else "<bytes>")
        try:
            image = isolation.load_image(source)
        except MediaError as e:
            res = self._base(name, "image")
            res.error = str(e)
            return res
        return self.analyze_array(image, name)

    # ---- videos
    def analyze_video(self, path: str | os.PathLike, frames: int | None = None, strategy: str = video.DEFAULT_STRATEGY,
                      max_duration_s: float | None = None, progress: Callable[[float, str], None] | None = None,
                      detect_batch: int = 1, chunk_frames: int = 8) -> Result:
        """Frames stream from the decoder (a child process unless isolation is off), downscaled on arrival to the
        crop contract's ``decode_max_side``; faces are detected (``spec.video_extractor``, ``detect_batch`` frames
        per MTCNN call: batching costs ~45 MB per 720p frame for little speed) and the crops of ``chunk_frames``
        frames scored together by every detector, so memory does not grow with the frame count: the result keeps
        one key frame (the highest-scoring face's) and, per face track, the crop of its highest-scoring face.
        ``frames`` defaults to ``spec.frames``, ``max_duration_s`` to ``Limits.max_video_s``."""
        if strategy not in video.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {video.STRATEGIES}")
        if chunk_frames % video.KEYFRAME_GROUP:
            raise ValueError(f"chunk_frames must be a multiple of {video.KEYFRAME_GROUP} (keyframe groups)")
        res = self._base(str(path), "video")
        res.strategy = strategy
        if progress:
            progress(0.0, "decoding frames")
        scan = _VideoScan(res, self.keys)
        try:
            info = self._scan_video(path, scan, frames or self.spec.frames, max_duration_s, progress, detect_batch,
                                    chunk_frames)
        except MediaError as e:
            res.error = str(e)
            res.frames = []
            return res
        res.timings = scan.timings
        res.note = info.note()
        res.video_info = _video_info(info, len(res.frames))
        res.tracks = self._track_results(res.frames, strategy)
        self.conclude(res, {k: video.aggregate(v, strategy) for k, v in scan.raw_frames.items()})
        res.image, res.image_frame = scan.key, scan.key_index
        if progress:
            progress(1.0, "done")
        return res

    def _scan_video(self, path, scan: "_VideoScan", n: int, max_duration_s: float | None, progress,
                    detect_batch: int, chunk_frames: int):
        """Decode, detect and score the sampled frames chunk by chunk into ``scan`` -> the stream's VideoInfo."""
        timings = scan.timings
        t0 = time.perf_counter()
        with isolation.video_frames(path, n=n, max_duration_s=max_duration_s,
                                    max_side=self.spec.decode_max_side) as stream:
            scan.fps = stream.info.fps or 25.0
            planned = max(stream.planned, 1)
            timings["decode_s"] += time.perf_counter() - t0
            vx = None
            for chunk in video.iter_batches(video.timed(stream, timings, "decode_s"), chunk_frames):
                if vx is None:
                    scan.res.height, scan.res.width = chunk[0][1].shape[:2]
                    vx = self.spec.video_extractor(min(scan.res.height, scan.res.width))
                    scan.key = chunk[0][1]
                per_frame, raw = self._detect_and_score(vx, chunk, detect_batch, timings)
                scan.add_chunk(self, chunk, per_frame, raw)
                if progress:
                    done = len(scan.res.frames)
                    progress(min(0.99, done / planned), f"analysing frames: {done}/{planned}")
            return stream.info

    def _detect_and_score(self, vx, chunk, detect_batch: int, timings: dict[str, float]):
        """Faces of each frame of ``chunk`` ((index, frame) pairs) and every detector's raw scores of them."""
        t0 = time.perf_counter()
        per_frame = [faces for group in video.iter_batches(chunk, video.KEYFRAME_GROUP)
                     for faces in chunk_faces(vx, group, self.spec, detect_batch)]
        t1 = time.perf_counter()
        raw = self.score_faces([(frame, f) for (_, frame), faces in zip(chunk, per_frame) for f in faces])
        timings["detect_s"] += t1 - t0
        timings["classify_s"] += time.perf_counter() - t1
        return per_frame, raw

    def _track_results(self, frames: list[FrameResult], strategy: str) -> list[TrackResult]:
        """One TrackResult per face track: its frames, the default detector's calibrated face scores and
        aggregated score, and every detector's aggregated score and label."""
        tracks: dict[int, list[FaceResult]] = {}
        for fr in frames:
            for f in fr.faces:
                tracks.setdefault(f.track, []).append(f)
        out = []
        for tid, faces in sorted(tracks.items()):
            per = {s.key: s.verdict(video.aggregate([[f.detectors[s.key]["raw_score"]] for f in faces], strategy))
                   for s in self.scorers}
            per = {k: {"score": round(v["score"], 6), "label": v["label"]} for k, v in per.items()}
            d = per[self.default.key]
            out.append(TrackResult(id=tid, frames=[f.frame for f in faces],
                                   scores=[float(v) for v in self.calibrate([f.raw_score for f in faces])],
                                   score=float(d["score"]), label=d["label"], detectors=per))
        return out

    # ---- dispatch
    def analyze(self, path: str | os.PathLike | bytes, frames: int | None = None,
                strategy: str = video.DEFAULT_STRATEGY,
                progress: Callable[[float, str], None] | None = None, display_name: str | None = None) -> Result:
        """Analyse any file or in-memory upload; every user-input problem is returned in ``result.error``, never
        raised. The type comes from the content (magic bytes), not the name. Runs in one of the process-wide
        analysis slots (``limits.analysis_slot``); while waiting, ``progress`` is told the place in the queue.
        The file's content credentials (``model.provenance``) are read once, before the analysis, into
        ``result.provenance``, also when the analysis fails; they never change the score or the label."""
        is_bytes = isinstance(path, (bytes, bytearray, memoryview))
        name = display_name or ("<bytes>" if is_bytes else str(path))
        try:
            kind = media.content_kind(path, name=name)
        except MediaError as e:
            res = self._base(name, media.kind_by_extension(name) or "unknown")
            res.error = str(e)
            return res
        on_wait = None
        if progress:
            def on_wait(ahead: int) -> None:
                progress(0.0, f"waiting for a free analysis slot ({ahead} ahead of you)")
        prov = None
        try:
            with limits.analysis_slot(on_wait):
                prov = provenance.read(path)  # path or bytes, once per file; never raises
                if kind == "image":
                    res = self.analyze_image(path)
                elif is_bytes:
                    from model import uploads

                    with uploads.spooled(path, name) as p:
                        res = self.analyze_video(p, frames=frames, strategy=strategy, progress=progress)
                else:
                    res = self.analyze_video(path, frames=frames, strategy=strategy, progress=progress)
        except MediaError as e:
            res = self._base(name, kind)
            res.error = str(e)
        except (OSError, MemoryError) as e:
            res = self._base(name, kind)
            res.error = f"could not read file: {type(e).__name__}: {e}".splitlines()[0]
        res.path = name
        res.provenance = prov.to_dict() if prov is not None else None
        return res

    # ---- explanations
    def explain(self, crop: np.ndarray, target: str = "fake", detector: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM of one detector (default: the default one) for one face crop: (heat map in [0, 1], S x S;
        overlay RGB uint8)."""
        return self.scorer(detector).explain(crop, target)
