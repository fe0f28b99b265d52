"""The detectors load once, at server start (``streamlit_app.py``'s lifespan calls ``loaders.preload``)."""


def test_the_page_gets_the_detector_preloaded_at_server_start(monkeypatch):
    import model.api as api
    from dashboard import loaders

    made = []

    class Loaded:
        def warm_up(self, background=False):
            made.append(("warm", background))

    monkeypatch.setattr(api.Detector, "load", classmethod(
        lambda cls, directory=None, detectors=None, **kw: made.append(tuple(detectors)) or Loaded()))
    monkeypatch.setattr(loaders, "_PRELOADED", {})
    monkeypatch.delenv(api.MODEL_ENV, raising=False)
    loaders._get_registry_detector.clear()
    try:
        fut = loaders.preload()
        det = fut.result(timeout=60)
        keys, stamp = loaders._registry_key()
        assert keys == ("faceswap", "generated") and made == [keys, ("warm", False)]  # loaded and warmed, once
        assert loaders.preload() is fut  # a second call starts nothing
        assert loaders._get_registry_detector(keys, stamp) is det and len(made) == 2  # the page takes it
        assert loaders._PRELOADED == {}  # and the cache alone holds it (a changed model frees it)
    finally:
        loaders._get_registry_detector.clear()


def test_no_preload_for_a_model_folder_or_after_a_failed_one(monkeypatch):
    import model.api as api
    from dashboard import loaders

    monkeypatch.setattr(loaders, "_PRELOADED", {})
    monkeypatch.setenv(api.MODEL_ENV, "/nowhere")
    assert loaders.preload() is None  # $DEEPFAKE_MODEL: the page loads that folder itself
    monkeypatch.delenv(api.MODEL_ENV)

    def broken(cls, directory=None, detectors=None, **kw):
        raise OSError("disk gone")

    monkeypatch.setattr(api.Detector, "load", classmethod(broken))
    fut = loaders.preload()
    assert isinstance(fut.exception(timeout=60), OSError)  # the first visitor's page then loads (and shows) it
