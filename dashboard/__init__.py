"""Streamlit building blocks for the DeepFake-Detect dashboard (app_pages/ stay thin and call these)."""
