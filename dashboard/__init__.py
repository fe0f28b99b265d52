"""Streamlit building blocks for the DeepFake-Detect dashboard (pages/ stay thin and call these)."""
