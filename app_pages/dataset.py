import streamlit as st

from dashboard import charts, dataset, settings

st.title("Dataset explorer")
root = settings.data_root()
found = dataset.prepared_folders(root)
st.caption(f"Prepared datasets (made by `python -m training prepare`) are looked up under **{root}** "
           "(set `DEEPFAKE_DATA` to change it). A typed folder must lie under an allowed root.")
typed = st.text_input("Prepared folder (optional, relative to the data root or absolute)", "")
folder = None
if typed.strip():
    try:
        folder = settings.resolve_any(typed.strip())
        if not (folder / "crops.csv").is_file():
            st.error(f"No crops.csv in {folder}: not a prepared dataset folder.")
            folder = None
    except settings.PathNotAllowed as e:
        st.error(f"Refused: {e}")
elif found:
    folder = st.selectbox("Prepared dataset", found, format_func=lambda p: str(p.relative_to(root)) if root in p.parents else str(p))

if folder is None:
    if not found and not typed.strip():
        st.info("No prepared dataset on this machine. Prepare one, e.g. "
                "`python -m training prepare ffpp=/data/FaceForensics++ --out data/prepared/ffpp`.")
        dataset.sample_run_splits()
else:
    df = dataset.load_index(folder)
    if df is None or df.empty:
        st.error("The index is empty or unreadable.")
    else:
        shown = dataset.filter_ui(df)
        st.markdown(f"**{len(shown)}** of {len(df)} crops from {shown['video'].nunique()} videos/images")
        if len(shown):
            # splits are made per run at training time (runs/<name>/splits.csv); crops are coloured by label
            st.plotly_chart(charts.counts(shown, "method", "split" if "split" in shown else "label"), width="stretch")
            dataset.grid(shown, folder)
