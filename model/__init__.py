"""DeepFake-Detect inference engine: detector network, face extraction, image/video analysis, Grad-CAM.

Scores are always P(fake) in [0, 1].
"""
import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["__version__"]
