"""Dataset explorer building blocks."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import charts, loaders, runs, settings

FILTERS = ("dataset", "method", "label", "file_label", "compression", "split")
PAGE = 24


def prepared_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob("crops.csv") if p.parent.is_dir())


def load_index(folder: Path) -> pd.DataFrame | None:
    df = loaders.cached_csv(folder / "crops.csv")
    if df is None:
        return None
    df = df.copy()
    df["label"] = df["label"].map({0: "real", 1: "fake", "0": "real", "1": "fake"}).fillna(df["label"])
    return df


def filter_ui(df: pd.DataFrame) -> pd.DataFrame:
    cols = st.columns(len(FILTERS))
    for c, f in zip(cols, FILTERS):
        if f in df:
            opts = sorted(df[f].astype(str).unique())
            chosen = c.multiselect(f, opts, default=opts, key=f"filter_{f}")
            df = df[df[f].astype(str).isin(chosen)]
    return df


def crop_image(folder: Path, rel: str):
    """A crop of ``crops.csv`` as an RGB array, whether a PNG or a record in a Ray-prepared shard
    (``shards/x.tfrecord@offset``); None when missing or unreadable. The file is resolved under ``folder``."""
    from training import shards

    path, offset = shards.parse_ref(rel)
    try:
        f = settings.resolve_under(folder, path)
    except settings.PathNotAllowed:
        return None
    ref = f"{f}@{offset}" if offset is not None else f
    try:
        return shards.open_crop(ref)
    except (FileNotFoundError, ValueError):
        return None


def grid(df: pd.DataFrame, folder: Path) -> None:
    pages = max(1, -(-len(df) // PAGE))
    page = st.number_input(f"Page (of {pages}, {PAGE} crops each)", 1, pages, 1)
    sub = df.iloc[(page - 1) * PAGE: page * PAGE]
    cols = st.columns(8)
    for i, (_, r) in enumerate(sub.iterrows()):
        img = crop_image(folder, str(r["crop"]))
        with cols[i % 8]:
            if img is not None:
                st.image(img, caption=f"{r['label']} · {r['method']}", width="stretch")
            else:
                st.caption(f"missing: {r['crop']}")
    options = list(sub.index)
    if options:
        sel = st.selectbox("Inspect crop", options, format_func=lambda i: f"{df.loc[i, 'crop']}")
        r = df.loc[sel]
        c1, c2 = st.columns([1, 2])
        img = crop_image(folder, str(r["crop"]))
        if img is not None:
            c1.image(img, caption="full size", width=256)
        c2.markdown("**Provenance**")
        c2.dataframe(r.drop(labels=[c for c in ("kps",) if c in r]).astype(str).rename("value"))


def sample_run_splits() -> None:
    """With no prepared data on this machine: the bundled run's split table (real counts, no images)."""
    run = settings.runs_root() / "sample"
    s = runs.read_csv(run / "splits.csv")
    if s is None:
        st.info("No bundled run found either.")
        return
    st.markdown("The bundled sample model's training data, by identity group and split (counts of face crops; "
                "the images themselves are research-only and not shipped):")
    s = s.copy()
    s["label"] = s["label"].map({0: "real", 1: "fake"})
    st.plotly_chart(charts.counts(s.loc[s.index.repeat(s["crops"])].assign(crops=1), "split", "label"),
                    width="stretch")
    st.dataframe(s, hide_index=True)
