"""DeepFake-Detect dashboard pages (``st.navigation``): the script every browser session runs. Served by
``streamlit_app.py`` (``streamlit run streamlit_app.py``), which loads the detectors when the server starts."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402

st.set_page_config(page_title="DeepFake-Detect", page_icon=":material/face:", layout="wide")

pages = [
    st.Page("app_pages/detect.py", title="Detect", icon=":material/search:", default=True),
    st.Page("app_pages/dataset.py", title="Dataset explorer", icon=":material/folder_open:"),
    st.Page("app_pages/training.py", title="Training", icon=":material/show_chart:"),
    st.Page("app_pages/evaluation.py", title="Evaluation", icon=":material/target:"),
    st.Page("app_pages/misclassified.py", title="Misclassifications", icon=":material/error:"),
    st.Page("app_pages/own_test_set.py", title="Your test set", icon=":material/fact_check:"),
    st.Page("app_pages/about.py", title="About / model card", icon=":material/info:"),
]
st.navigation(pages).run()
