"""Where the dashboard looks for things, and safe resolution of user-typed paths.

Environment variables:
    DEEPFAKE_MODEL   model folder for the Detect page (default: the bundled sample model runs/sample/model)
    DEEPFAKE_RUNS    folder of run folders (default: runs/ in the repository)
    DEEPFAKE_DATA    allowed root for prepared datasets and crops (default: data/ in the repository)
    DEEPFAKE_CACHE   private folder for generated sample media (default: $XDG_CACHE_HOME or ~/.cache, /deepfake-detect)
Resource limits of the analysis (frame size, video length, decoder memory and time, analyses at once) are
read by ``model.limits`` from DEEPFAKE_MAX_FRAME, DEEPFAKE_MAX_VIDEO_S, DEEPFAKE_MAX_IMAGE_MP,
DEEPFAKE_DECODE_MEM_MB, DEEPFAKE_DECODE_TIMEOUT_S, DEEPFAKE_ISOLATE and DEEPFAKE_MAX_ANALYSES.
"""
from __future__ import annotations

import os
import tomllib
from pathlib import Path

from model.api import REPO_ROOT


def runs_root() -> Path:
    return Path(os.environ.get("DEEPFAKE_RUNS", REPO_ROOT / "runs")).expanduser().resolve()


def data_root() -> Path:
    return Path(os.environ.get("DEEPFAKE_DATA", REPO_ROOT / "data")).expanduser().resolve()


def allowed_roots() -> list[Path]:
    """Folders the dashboard may read user-named files from."""
    return [data_root(), runs_root()]


class PathNotAllowed(ValueError):
    pass


def resolve_under(root: Path, user_path: str) -> Path:
    """Resolve a user-typed path (relative to ``root`` or absolute) and refuse anything outside ``root``
    (``..``, absolute paths elsewhere, symlinks pointing out)."""
    root = Path(root).resolve()
    if "\x00" in user_path:
        raise PathNotAllowed("invalid path")
    p = Path(user_path).expanduser()
    candidate = (p if p.is_absolute() else root / p).resolve()
    if candidate != root and root not in candidate.parents:
        raise PathNotAllowed(f"{user_path!r} is outside the allowed folder {root}")
    return candidate


def resolve_any(user_path: str, roots: list[Path] | None = None) -> Path:
    """First allowed root under which ``user_path`` resolves; PathNotAllowed if none. Relative paths are
    tried against each root and against the repository (run files store repository-relative paths)."""
    last = None
    p = Path(user_path)
    if not p.is_absolute() and "\x00" not in user_path:
        cand = (REPO_ROOT / p).resolve()
        for r in roots or allowed_roots():
            if cand == r or r in cand.parents:
                return cand
    for r in roots or allowed_roots():
        try:
            return resolve_under(r, user_path)
        except PathNotAllowed as e:
            last = e
    raise last or PathNotAllowed(user_path)


def max_upload_mb() -> int:
    """server.maxUploadSize from .streamlit/config.toml (Streamlit's default 200 MB otherwise)."""
    f = REPO_ROOT / ".streamlit" / "config.toml"
    try:
        return int(tomllib.loads(f.read_text()).get("server", {}).get("maxUploadSize", 200))
    except (OSError, tomllib.TOMLDecodeError, ValueError):
        return 200


def cache_root() -> Path:
    """Where the app may cache what it generates (sample media); created private (0700) by its users."""
    env = os.environ.get("DEEPFAKE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "deepfake-detect"


def limits_problem() -> str | None:
    """None when the analysis limits from the environment are valid; else one line naming the variable and what
    it allows (the page shows it instead of analysing)."""
    from model import limits

    try:
        limits.current()
    except ValueError as e:
        return f"The server's analysis limits are misconfigured: {e}. Fix the environment variable and restart."
    return None


def limits_note() -> str:
    """The analysis limits, in a sentence for the upload screen."""
    from model import limits

    lim = limits.current()
    w, h = lim.max_frame
    return (f"Videos up to {w}×{h} px (the first {lim.max_video_s:g} s are analysed); "
            f"images up to {lim.max_image_mp:g} MP.")
