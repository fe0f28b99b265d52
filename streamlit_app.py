"""DeepFake-Detect dashboard: ``streamlit run streamlit_app.py``.

The server (``st.App``) runs ``app_main.py`` for every browser session; at start it loads and warms the detectors
in a background thread (``dashboard.loaders.preload``), so the first visitor does not wait for TensorFlow, the
models and MTCNN (``python -m bench.cold`` measures it).
"""
import os
from contextlib import asynccontextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402


@asynccontextmanager
async def lifespan(_app):
    from dashboard.loaders import preload

    preload()
    yield


app = st.App("app_main.py", lifespan=lifespan)
