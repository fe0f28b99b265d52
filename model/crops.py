"""The face-crop contract: ONE definition of how a face becomes a model input.

``CropSpec`` holds every choice that changes the pixels a model sees -- crop margin, output size,
interpolation, the detector's scale (maximum side, minimum face, confidence), faces kept per frame and
frames per video. It is written into every run's config and model card, and ``prepare`` (training crops),
``evaluate`` and inference (CLI and app) all cut faces through the functions of this module, so a face in
training and the same face at inference are the same image.

    spec = CropSpec(size=128)
    faces = image_faces(image, spec)                # list[Face] with .crop (size x size RGB uint8)
    vf = video_faces("clip.mp4", spec)              # VideoFaces: frames, faces per frame, track ids
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from model.faces import Face, FaceExtractor


@dataclasses.dataclass(frozen=True)
class CropSpec:
    size: int = 128  # output side in pixels (= the model's input size)
    # square side = longer box side * (1 + margin), centred on the box, edge-padded. v3 contract: 0 (the MTCNN box
    # itself) -- the crop tight face-crop datasets (DFDC's export) share with the engine; v1/v2 cards say 0.3
    margin: float = 0.0
    interpolation: str = "area"  # resize: cv2 INTER_AREA when shrinking, INTER_LINEAR when enlarging
    image_max_side: int = 1280  # images: detection runs on a copy downscaled to this longer side
    video_max_side: int = 640  # video frames: detection runs on frames downscaled to this longer side
    decode_max_side: int = 1920  # video frames are downscaled to this longer side right after decoding
    min_face_px: int = 20  # smallest face side in pixels
    video_min_face_frac: float = 0.055  # videos: faces smaller than this fraction of the short side are ignored
    min_confidence: float = 0.9  # MTCNN confidence
    max_faces: int = 32  # faces kept per image / per frame (most confident first)
    frames: int = 32  # frames sampled uniformly per video
    # videos: MTCNN searches the whole frame on every k-th sampled frame of each group of 8 (and its last); in the
    # frames between two such keyframes it searches only around the keyframes' face tracks (``chunk_faces``),
    # falling back to the whole frame when the faces there do not follow them. 1 = every sampled frame whole
    # (every card made before this field)
    video_keyframe_every: int = 1

    def __post_init__(self):
        if self.size < 16:
            raise ValueError("crop size must be at least 16 px")
        if self.interpolation != "area":
            raise ValueError("interpolation: only 'area' (INTER_AREA down, INTER_LINEAR up) is implemented")
        if not 0 <= self.margin <= 2:
            raise ValueError("margin must be in [0, 2]")
        if self.frames < 1 or self.max_faces < 1 or self.video_keyframe_every < 1:
            raise ValueError("frames, max_faces and video_keyframe_every must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, **defaults) -> "CropSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d or {})
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown crop-spec key(s): {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return cls(**{**defaults, **d})

    def replace(self, **kw) -> "CropSpec":
        return dataclasses.replace(self, **kw)

    # ---- the extractors this spec implies
    def image_extractor(self) -> FaceExtractor:
        return FaceExtractor(crop_size=self.size, margin=self.margin, min_confidence=self.min_confidence,
                             min_face_size=self.min_face_px, max_faces=self.max_faces, max_side=self.image_max_side)

    def video_extractor(self, short_side: int) -> FaceExtractor:
        """Video frames: detect on frames downscaled to ``video_max_side``, ignoring faces smaller than
        ``video_min_face_frac`` of the frame's short side (40 px at 720p). About 4x faster than full
        resolution on 720p; smaller faces are too small for a reliable verdict anyway."""
        return FaceExtractor(crop_size=self.size, margin=self.margin, min_confidence=self.min_confidence,
                             min_face_size=max(self.min_face_px, int(self.video_min_face_frac * short_side)),
                             max_faces=self.max_faces, max_side=self.video_max_side)


def image_faces(image: np.ndarray, spec: CropSpec) -> list[Face]:
    """Faces of one RGB image, cut by the contract (most confident first)."""
    return spec.image_extractor().detect(image)


@dataclasses.dataclass
class VideoFaces:
    info: Any  # model.video.VideoInfo
    frames: list[tuple[int, np.ndarray]]  # (frame index, RGB frame after decode downscale)
    faces: list[list[Face]]  # per frame
    tracks: list[list[int]]  # per frame, a track id per face
    notes: list[str] = dataclasses.field(default_factory=list)
    detect_s: float = 0.0
    decode_s: float = 0.0


def video_faces(path, spec: CropSpec, frames: int | None = None, max_duration_s: float = 600.0,
                progress: Callable[[float, str], None] | None = None, detect_batch: int = 8,
                keep_frames: bool = True) -> VideoFaces:
    """Sample ``frames`` (default ``spec.frames``) frames, detect and crop faces, link them into tracks."""
    import time

    from model import video

    t0 = time.perf_counter()
    if progress:
        progress(0.0, "decoding frames")
    info, decoded = video.read_frames(path, n=frames or spec.frames, max_duration_s=max_duration_s,
                                      max_side=spec.decode_max_side)
    decode_s = time.perf_counter() - t0
    h, w = decoded[0][1].shape[:2]
    vx = spec.video_extractor(min(h, w))
    per_frame: list[list[Face]] = []
    t0 = time.perf_counter()
    done = 0
    for chunk in video.iter_batches(decoded, video.KEYFRAME_GROUP):
        per_frame.extend(chunk_faces(vx, chunk, spec, detect_batch))
        done += len(chunk)
        if progress:
            progress(0.9 * done / len(decoded), f"detecting faces: frame {done}/{len(decoded)}")
    detect_s = time.perf_counter() - t0
    tracks = video.link_tracks([[f.box for f in faces] for faces in per_frame])
    if not keep_frames:
        decoded = [(i, np.zeros((0, 0, 3), np.uint8)) for i, _ in decoded]
    return VideoFaces(info=info, frames=decoded, faces=per_frame, tracks=tracks, detect_s=detect_s, decode_s=decode_s)


def chunk_faces(vx: FaceExtractor, group: Sequence[tuple[int, np.ndarray]], spec: CropSpec,
                detect_batch: int = 1) -> list[list[Face]]:
    """Faces of every frame of ``group`` ((index, frame) pairs; at most ``video.KEYFRAME_GROUP``): MTCNN on the
    keyframes (``video.keyframe_positions``; every frame when ``spec.video_keyframe_every`` is 1) over the whole
    frame. Between two keyframes whose faces all pair up (``video.track_pairs``), MTCNN searches only around the
    tracks (``video.track_regions``; ``FaceExtractor.detect_in``): every box still comes from MTCNN on its own
    frame, cut by the contract. A frame whose faces there do not follow the tracks (one missing or extra, or away
    from the keyframes' path: ``video.faces_follow``) is searched whole. Where a track is lost, a face appears or
    no face is found between two keyframes, the frame half way is searched whole and both halves are handled
    alike, down to every frame. Prepare (``video_faces``) and the engine both detect through this function."""
    from model import video

    def detect(positions: list[int]) -> dict[int, list[Face]]:
        return dict(zip(positions, [faces for sub in video.iter_batches([group[j] for j in positions], detect_batch)
                                    for faces in vx.detect_batch([f for _, f in sub])]))

    keys = video.keyframe_positions(len(group), spec.video_keyframe_every)
    found = detect(keys)
    todo = list(zip(keys, keys[1:]))
    while todo:
        a, b = todo.pop()
        between = list(range(a + 1, b))
        if not between:
            continue
        pairs = video.track_pairs(found[a], found[b])
        if pairs is None:
            # no face at the keyframes, a track lost or a face appearing: the middle frame is searched whole and
            # each half handled the same way (a fast-moving face is followed over shorter spans)
            mid = (a + b) // 2
            found.update(detect([mid]))
            todo += [(a, mid), (mid, b)]
            continue
        got = vx.detect_in([group[j][1] for j in between], video.track_regions(found[a], found[b], pairs))
        off = []
        for j, faces in zip(between, got):
            if video.faces_follow(faces, video.expected_boxes(found[a], found[b], pairs, (j - a) / (b - a))):
                found[j] = faces
            else:
                off.append(j)
        found.update(detect(off))
    return [found[j] for j in range(len(group))]


def crop_box_image(image: np.ndarray, box: Sequence[float], spec: CropSpec) -> np.ndarray:
    """The contract's crop of an (x, y, w, h) box of ``image``."""
    from model.faces import crop_square, square_crop_box

    return crop_square(image, square_crop_box(box, spec.margin), spec.size)


def crop_from_source(path, frame: int, box: Sequence[float], spec: CropSpec) -> np.ndarray | None:
    """Re-cut a stored face (source file, decoded frame index, box in that frame's pixels) by the contract.

    Returns None when the file is not on this machine or the frame cannot be decoded (the dashboard then
    says so). Boxes of video faces are in the pixels of the frame after ``decode_max_side`` downscaling,
    exactly as ``video_faces`` returns them.
    """
    from pathlib import Path

    from model import media, video

    p = Path(path)
    if not p.is_file():
        return None
    try:
        if media.kind_of(p) == "image":
            img = media.load_image(p)
        else:
            img = video.read_frame(p, int(frame), max_side=spec.decode_max_side)
    except media.MediaError:
        return None
    if img is None:
        return None
    return crop_box_image(img, box, spec)
