"""Cached loaders: the detectors (and with them MTCNN) load once per process with st.cache_resource."""
from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path

import streamlit as st

from dashboard import runs
from model import registry
from model.api import MODEL_ENV, ModelNotFound, require_model_dir


def _stamp(d: Path) -> tuple:
    """Modification times of the files a detector is made from: a retrained or recalibrated model reloads."""
    return tuple(p.stat().st_mtime_ns if p.is_file() else 0 for p in (d / "detector.keras", d / "model_card.json"))


@st.cache_resource(show_spinner="Loading the detector (first time only)…", max_entries=4)
def _get_detector(model_dir: str, stamp: tuple):
    from model.api import Detector
    from model.uploads import sweep_stale_once

    sweep_stale_once()  # upload folders left by a killed server process

    det = Detector.load(model_dir)
    # MTCNN and the compiled graphs are built while the page renders and the user picks a file; an analysis
    # that starts sooner waits for them (get_mtcnn's lock, tf.function's trace lock) rather than doing it twice.
    det.warm_up(background=True)
    return det


def get_detector(model_dir: str):
    return _get_detector(model_dir, _stamp(Path(model_dir)))


_PRELOADED: dict[tuple, Future] = {}


def _registry_key() -> tuple[tuple[str, ...], tuple] | None:
    found = registry.available()
    return (tuple(e.key for e in found), tuple(_stamp(e.folder) for e in found)) if found else None


def preload() -> Future | None:
    """At server start: load the registry's detectors and warm them (MTCNN, every compiled graph) in a daemon
    thread; the Detect page's loader takes that detector (waiting for it if a visitor comes sooner) instead of
    loading its own. Nothing with $DEEPFAKE_MODEL set (the page loads that folder) or without a model. Returns
    the future of the detector."""
    key = None if os.environ.get(MODEL_ENV) else _registry_key()
    if key is None or key in _PRELOADED:
        return _PRELOADED.get(key) if key else None
    fut: Future = Future()
    _PRELOADED[key] = fut

    def run():
        try:
            fut.set_result(_load_registry(key[0], warm_in_background=False))
        except Exception as e:  # noqa: BLE001 - the page then loads the detectors itself and shows its error
            logging.getLogger(__name__).warning("preloading the detectors failed (the first visitor loads them): %s",
                                                str(e).splitlines()[0] if str(e) else type(e).__name__)
            fut.set_exception(e)

    threading.Thread(target=run, name="detector-preload", daemon=True).start()
    return fut


@st.cache_resource(show_spinner="Loading the detectors (first time only)…", max_entries=4)
def _get_registry_detector(keys: tuple[str, ...], stamp: tuple):
    fut = _PRELOADED.pop((keys, stamp), None)  # the cache holds it from now on (and drops it when a model changes)
    if fut is not None and fut.exception() is None:
        return fut.result()  # loaded at server start (waits here if it is still loading)
    return _load_registry(keys, warm_in_background=True)


def _load_registry(keys: tuple[str, ...], warm_in_background: bool):
    from model.api import Detector
    from model.uploads import sweep_stale_once

    sweep_stale_once()  # upload folders left by a killed server process
    det = Detector.load(detectors=list(keys))
    det.warm_up(background=warm_in_background)
    return det


def detector():
    """The detectors of the Detect/About/own-test-set pages: $DEEPFAKE_MODEL (that one folder), else every
    detector of the registry whose model folder exists (``model.registry.available``). Without one the page shows
    one error line and stops: it never scores with an untrained network."""
    if os.environ.get(MODEL_ENV):
        try:
            d = require_model_dir()
        except ModelNotFound as e:
            st.error(f"No model to analyse with: {e}.")
            st.stop()
        return get_detector(str(d))
    key = _registry_key()
    if key is None:
        st.error(f"No model to analyse with: no detector.keras in {registry.REGISTRY[0].folder} (the bundled "
                 f"model); set {MODEL_ENV} to a model folder.")
        st.stop()
    return _get_registry_detector(*key)


def run_detector(run: Path):
    """The detector a run produced (its misclassifications are explained with its own model)."""
    return get_detector(str(run / "model")) if (run / "model" / "detector.keras").is_file() else detector()


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def load_csv(path: str, mtime: float):
    return runs.read_csv(Path(path))


def cached_csv(path: Path):
    return load_csv(str(path), path.stat().st_mtime) if path.is_file() else None
