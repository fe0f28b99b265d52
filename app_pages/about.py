import streamlit as st

from dashboard import about, loaders

st.title("About DeepFake-Detect")
det = loaders.detector()
about.render(det)
