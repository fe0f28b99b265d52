"""Engine on a real FaceForensics++ clip (skipped when ../shared/data is absent)."""
import json
import subprocess
import sys

import pytest

from tests.conftest import FFPP, REPO, needs_ffpp

CLIP = FFPP / "manipulated_sequences" / "Deepfakes" / "c40" / "videos" / "183_253.mp4"


@needs_ffpp
@pytest.mark.slow
def test_cli_on_ffpp_clip_analyses_32_frames_and_reports_tracks(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "model", "predict", str(CLIP), "--format", "json", "--output", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())[0]
    assert d["error"] == "" and d["video_info"]["sampled_frames"] == 32
    assert len(d["frames"]) == 32 and d["faces"] >= 1 and d["tracks"]
    main = max(d["tracks"], key=lambda t: len(t["frames"]))
    assert len(main["frames"]) >= 28  # one talking head followed through the clip
    assert 0 <= d["score"] <= 1
