"""Face extraction with MTCNN, built once per process.

Crops are square, centred on the detected box, enlarged by ``margin`` (0.3 = 30 % of the box's longer
side added in total, as the original project did), padded with edge pixels where they leave the
image, and resized to the model's input size.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Any, Sequence

import cv2
import numpy as np

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclasses.dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in image pixels
    confidence: float
    keypoints: dict[str, tuple[float, float]]
    crop: np.ndarray | None = dataclasses.field(default=None, repr=False)  # SxSx3 uint8
    crop_box: tuple[int, int, int, int] | None = None  # x0, y0, x1, y1 of the square crop (may leave image)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "confidence": round(float(self.confidence), 4),
            "keypoints": {k: [round(float(a), 1), round(float(b), 1)] for k, (a, b) in self.keypoints.items()},
        }


_DETECTOR = None
_LOCK = threading.Lock()


class _CompiledNet:
    """One MTCNN stage network run as a single compiled TensorFlow graph instead of layer by layer in eager mode.

    The stages call their network once per pyramid scale (P-Net) or per batch of patches (R-Net, O-Net); in
    eager mode every one of those calls pays Keras' per-layer Python overhead, which on a 2-core machine is
    most of MTCNN's time. The graph runs the same kernels on the same inputs: outputs are bit-identical
    (``tests/model/test_faces.py`` pins it). One trace per network (unknown batch and image sizes)."""

    def __init__(self, net, input_shape):
        import tensorflow as tf

        self.net = net
        self._fn = tf.function(lambda x: net(x), input_signature=[tf.TensorSpec(input_shape, tf.float32)],
                               autograph=False)

    def __call__(self, x, *args, **kwargs):
        return self._fn(x)

    def warm_up(self, side: int) -> None:
        self._fn(np.zeros((1, side, side, 3), np.float32))


# P-Net levels searched inside a region: those whose 12-pixel cell (12 / scale image pixels) lies between
# WINDOW_CELL[0] x the smallest and WINDOW_CELL[1] x the largest face side expected there.
WINDOW_CELL = (0.5, 1.5)


def _fast_pnet_stage():
    """mtcnn's P-Net stage with each pyramid level's resize and P-Net run as one compiled graph on an image
    converted to a tensor once (mtcnn converts the float64 image again for every level). Same scales, same
    resize (AREA, float64 in, float32 out), same network, same box generation and NMS as ``StagePNet``."""
    import tensorflow as tf
    from mtcnn.stages import StagePNet
    from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
    from mtcnn.utils.images import build_scale_pyramid

    class FastPNet(StagePNet):
        def __init__(self):
            super().__init__()
            net = self._model

            def level(images, size):
                scaled = tf.image.resize(images, size, method=tf.image.ResizeMethod.AREA)
                return net(scaled)

            def level_window(images, size, begin, extent):
                scaled = tf.image.resize(images, size, method=tf.image.ResizeMethod.AREA)
                return net(scaled[:, begin[0]:begin[0] + extent[0], begin[1]:begin[1] + extent[1], :])

            self._level = tf.function(level, autograph=False, input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.float64), tf.TensorSpec([2], tf.int32)])
            self._level_window = tf.function(level_window, autograph=False, input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.float64), tf.TensorSpec([2], tf.int32),
                tf.TensorSpec([2], tf.int32), tf.TensorSpec([2], tf.int32)])

        def __call__(self, images_normalized, images_oshapes, min_face_size=20, min_size=12, scale_factor=0.709,
                     threshold_pnet=0.6, nms_pnet1=0.5, nms_pnet2=0.7, regions=None, **kwargs):
            groups = [build_scale_pyramid(shape[1], shape[0], min_face_size=min_face_size, scale_factor=scale_factor)
                      for shape in images_oshapes]
            scales = groups[int(np.argmax([g.shape[0] for g in groups]))]
            images = tf.convert_to_tensor(np.asarray(images_normalized, dtype=np.float64))
            shape = np.asarray(images.shape[1:3])
            batch = images.shape[0]
            if regions is not None:
                proposals = [self._window_proposals(images, shape, s, regions, threshold_pnet) for s in scales]
            else:
                # the size as mtcnn's tf.image.resize(images, shape * scale) converts it (float -> int32)
                results = [self._level(images, tf.convert_to_tensor(shape * s, tf.int32)) for s in scales]
                proposals = [generate_bounding_box(r[0], r[1], threshold_pnet) for r in results]
            upscaled = [upscale_bboxes(b, np.asarray([s] * batch)) for b, s in zip(proposals, scales)]
            nms = [smart_nms_from_bboxes(b, threshold=nms_pnet1, method="union", initial_sort=False) for b in upscaled]
            boxes = np.concatenate(nms, axis=0) if len(nms) > 0 else np.empty((0, 6))
            boxes = smart_nms_from_bboxes(boxes, threshold=nms_pnet2, method="union", initial_sort=True)
            return resize_to_square(boxes)

        def _window_proposals(self, images, shape, scale, regions, threshold_pnet):
            """P-Net proposals of one pyramid level inside ``regions`` only: (x0, y0, x1, y1, smallest, largest
            face side) in the images' pixels, the same for every image of the batch. The level is resized from
            the whole image exactly as without regions, then each region's window of it (starting on an even
            pixel: P-Net's stride is 2, and its pooling pads only at a window's far edge, so a window ends on an
            even width or at the level's edge) goes through P-Net. P-Net has no padding otherwise: a proposal
            inside a window is the one the whole level gives there. Levels whose 12-pixel cell (12 / scale image
            pixels) is not within ``WINDOW_CELL`` times a region's face sides are skipped for that region."""
            size = (shape * scale).astype(np.int32)  # as mtcnn converts shape * scale (float -> int32)
            hs, ws = int(size[0]), int(size[1])
            cell = 12.0 / scale
            found = []
            for x0, y0, x1, y1, fmin, fmax in regions:
                if not (WINDOW_CELL[0] * fmin <= cell <= WINDOW_CELL[1] * fmax):
                    continue
                lx0 = max(0, (int(np.floor(x0 * scale)) // 2) * 2)
                ly0 = max(0, (int(np.floor(y0 * scale)) // 2) * 2)
                lx1, ly1 = min(ws, int(np.ceil(x1 * scale))), min(hs, int(np.ceil(y1 * scale)))
                lx1 += int(lx1 < ws and (lx1 - lx0) % 2 == 1)
                ly1 += int(ly1 < hs and (ly1 - ly0) % 2 == 1)
                if lx1 - lx0 < 12 or ly1 - ly0 < 12:
                    continue
                reg, cls = self._level_window(images, size, np.asarray([ly0, lx0], np.int32),
                                              np.asarray([ly1 - ly0, lx1 - lx0], np.int32))
                boxes = generate_bounding_box(reg, cls, threshold_pnet)  # column 0: the image in the batch
                boxes[:, [1, 3]] += lx0
                boxes[:, [2, 4]] += ly0
                found.append(boxes)
            if not found:
                return np.empty((0, 6))
            boxes = np.concatenate(found, axis=0)
            return boxes[np.argsort(-boxes[:, 5], kind="stable")]

        def warm_up(self) -> None:
            self._level(np.zeros((1, 24, 24, 3), np.float64), np.asarray([12, 12], np.int32))
            self._level_window(np.zeros((1, 24, 24, 3), np.float64), np.asarray([24, 24], np.int32),
                               np.asarray([0, 0], np.int32), np.asarray([12, 12], np.int32))

    return FastPNet()


def build_mtcnn(compiled: bool = True):
    """A new MTCNN. ``compiled`` (the engine's): stage networks as compiled graphs (``_CompiledNet``,
    ``_fast_pnet_stage``), same detections as mtcnn's eager pipeline (``compiled=False``) at about a third of
    the time on CPU."""
    from mtcnn import MTCNN

    if not compiled:
        return MTCNN(device="CPU:0")
    from mtcnn.stages import StageONet, StageRNet

    rnet, onet = StageRNet(), StageONet()
    rnet._model = _CompiledNet(rnet._model, [None, 24, 24, 3])
    onet._model = _CompiledNet(onet._model, [None, 48, 48, 3])
    pnet = _fast_pnet_stage()
    for warm in (pnet.warm_up, lambda: rnet._model.warm_up(24), lambda: onet._model.warm_up(48)):
        warm()  # trace each graph now (once; about a second each), not during the first request
    return MTCNN(stages=[pnet, rnet, onet], device="CPU:0")


def get_mtcnn():
    """The process-wide MTCNN (weights ship with the ``mtcnn`` package; works offline), compiled stages."""
    global _DETECTOR
    with _LOCK:
        if _DETECTOR is None:
            _DETECTOR = build_mtcnn()
        return _DETECTOR


def square_crop_box(box: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Square (x0, y0, x1, y1) around an (x, y, w, h) box, side = longer side * (1 + margin)."""
    x, y, w, h = box
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(int(round(side)), 1)
    return x0, y0, x0 + s, y0 + s


def crop_square(image: np.ndarray, crop_box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut a square (edge-padded where it leaves the image) and resize to size x size."""
    x0, y0, x1, y1 = crop_box
    H, W = image.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - W), max(0, y1 - H)
    sub = image[max(0, y0):min(H, y1), max(0, x0):min(W, x1)]
    if pad_l or pad_t or pad_r or pad_b:
        sub = cv2.copyMakeBorder(sub, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if sub.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(sub, (size, size), interpolation=interp))


class FaceExtractor:
    """Detect faces and cut model-ready crops.

    ``min_confidence``: MTCNN score below which a face is dropped. ``min_face_size``: smallest face side in
    pixels. ``max_faces``: keep the most confident N faces per image. ``max_side``: images larger than this
    are downscaled for detection only (boxes are mapped back), which bounds detection time on 4K frames.
    ``mtcnn``: the detector to use (default: the process-wide compiled one; tests pass mtcnn's eager one).
    """

    def __init__(self, crop_size: int = 128, margin: float = 0.3, min_confidence: float = 0.9,
                 min_face_size: int = 20, max_faces: int = 32, max_side: int = 1280, mtcnn=None):
        self.crop_size = int(crop_size)
        self.margin = float(margin)
        self.min_confidence = float(min_confidence)
        self.min_face_size = int(min_face_size)
        self.max_faces = int(max_faces)
        self.max_side = int(max_side)
        self.mtcnn = mtcnn  # None: the process-wide compiled one (``get_mtcnn``)

    def _faces_from_raw(self, image: np.ndarray, raw: list[dict], scale: float) -> list[Face]:
        faces = []
        for r in raw:
            conf = float(r["confidence"])
            x, y, w, h = (float(v) / scale for v in r["box"])
            if conf < self.min_confidence or min(w, h) < self.min_face_size:
                continue
            kps = {k: (float(r["keypoints"][k][0]) / scale, float(r["keypoints"][k][1]) / scale)
                   for k in KEYPOINTS if k in r.get("keypoints", {})}
            box = (int(round(x)), int(round(y)), int(round(w)), int(round(h)))
            cb = square_crop_box(box, self.margin)
            faces.append(Face(box=box, confidence=conf, keypoints=kps,
                              crop=crop_square(image, cb, self.crop_size), crop_box=cb))
        faces.sort(key=lambda f: -f.confidence)
        return faces[: self.max_faces]

    def _prep(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        # Downscale so that the smallest wanted face is 20 px for MTCNN (its pyramid starts there) and the
        # longer side is at most max_side. (mtcnn 1.0 misses large faces when min_face_size > 20 is passed
        # directly, so we scale the image instead.)
        H, W = image.shape[:2]
        scale = min(1.0, self.max_side / max(H, W), 20.0 / max(self.min_face_size, 1))
        if scale < 1.0:
            image = cv2.resize(image, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
        return image, scale

    def _mtcnn_kw(self) -> dict:
        return dict(min_face_size=max(12, min(20, self.min_face_size)), threshold_onet=min(self.min_confidence, 0.8))

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in one HxWx3 uint8 RGB image, most confident first."""
        return self.detect_batch([image])[0]

    def detect_in(self, images: Sequence[np.ndarray], regions: Sequence[tuple[float, ...]]) -> list[list[Face]]:
        """Faces of same-sized ``images`` whose MTCNN proposals start inside ``regions``: (x0, y0, x1, y1, smallest,
        largest expected face side) in image pixels, shared by all images. P-Net searches only those windows of
        the pyramid levels that fit the expected sizes (``_fast_pnet_stage``); R-Net and O-Net run as always. A
        face found this way is the face the whole image gives there, barring a proposal outside the windows or
        at a skipped level that would have suppressed or outscored it (``tests/model/test_faces.py`` compares
        with whole-image detection on real frames). With an MTCNN that cannot search windows (mtcnn's eager one)
        this is ``detect_batch``."""
        if not images:
            return []
        det = self.mtcnn or get_mtcnn()
        if not hasattr(det.stages[0], "_window_proposals") or len({im.shape for im in images}) != 1:
            return self.detect_batch(images)
        prepped = [self._prep(im) for im in images]
        scale = prepped[0][1]
        rects = [tuple(float(v) * scale for v in r) for r in regions]
        raws = det.detect_faces([p[0] for p in prepped], regions=rects, **self._mtcnn_kw())
        return [self._faces_from_raw(im, raw or [], scale) for im, raw in zip(images, raws)]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces for several images; same-sized images go through MTCNN as one batch."""
        if not images:
            return []
        det = self.mtcnn or get_mtcnn()
        kw = self._mtcnn_kw()
        prepped = [self._prep(im) for im in images]
        shapes = {p[0].shape for p in prepped}
        if len(images) > 1 and len(shapes) == 1:
            raws = det.detect_faces([p[0] for p in prepped], **kw)
        else:
            raws = [det.detect_faces(p[0], **kw) for p in prepped]
        return [self._faces_from_raw(im, raw or [], scale) for im, raw, (_, scale) in zip(images, raws, prepped)]
