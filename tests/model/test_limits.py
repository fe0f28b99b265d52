import threading
import time

import pytest

from model import limits
from model.limits import Limits, Slots


def test_defaults_and_environment():
    d = Limits.from_env({})
    assert d == Limits() and d.max_frame == (3840, 2160) and d.max_video_s == 600 and d.max_analyses == 1
    assert d.isolate and d.max_image_pixels == 40_000_000
    e = Limits.from_env({"DEEPFAKE_MAX_FRAME": "1920x1080", "DEEPFAKE_MAX_VIDEO_S": "30", "DEEPFAKE_ISOLATE": "0",
                         "DEEPFAKE_MAX_ANALYSES": "3", "DEEPFAKE_DECODE_MEM_MB": "256", "DEEPFAKE_DECODE_TIMEOUT_S": " "})
    assert (e.max_frame, e.max_video_s, e.isolate, e.max_analyses, e.decode_mem_mb) == ((1920, 1080), 30, False, 3, 256)
    assert e.decode_timeout_s == Limits().decode_timeout_s  # blank: default
    with pytest.raises(ValueError, match="DEEPFAKE_MAX_FRAME"):
        Limits.from_env({"DEEPFAKE_MAX_FRAME": "big"})
    with pytest.raises(ValueError, match="DEEPFAKE_MAX_ANALYSES"):
        Limits.from_env({"DEEPFAKE_MAX_ANALYSES": "two"})
    with pytest.raises(ValueError, match="max_analyses must be positive"):
        Limits(max_analyses=0)


def test_frame_allowed_either_orientation_and_replace():
    lim = Limits(max_frame=(3840, 2160))
    assert lim.frame_allowed(3840, 2160) and lim.frame_allowed(2160, 3840)
    assert not lim.frame_allowed(7680, 4320) and not lim.frame_allowed(2161, 2161)
    assert lim.replace(max_video_s=None, max_analyses=2) == Limits(max_analyses=2)


def test_configure_resizes_the_process_slots():
    before = limits.current()
    try:
        limits.configure(max_analyses=3)
        assert limits.SLOTS.size == 3 and limits.current().max_analyses == 3
    finally:
        limits.configure(before)
    assert limits.SLOTS.size == before.max_analyses


def test_slots_never_exceed_the_limit_and_serve_in_order():
    slots = Slots(2)
    running, peak, order = [0], [0], []
    lock = threading.Lock()

    def work(i):
        with slots.slot():
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
                order.append(i)
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = []
    for i in range(6):
        t = threading.Thread(target=work, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.01)  # arrival order 0..5
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and sorted(order) == list(range(6))
    assert order[2:] == [2, 3, 4, 5]  # first come, first served once the first two hold the slots
    assert slots.busy == 0 and slots.waiting == 0


def test_waiter_is_told_its_place_and_a_stopped_waiter_leaves_the_queue():
    slots = Slots(1)
    release = threading.Event()
    told_b, told_c = [], []
    entered = []

    def holder():
        with slots.slot():
            entered.append("a")
            release.wait(10)

    def stopped(ahead):
        told_b.append(ahead)
        raise KeyboardInterrupt  # what a stopped Streamlit session looks like from here

    def b():
        with pytest.raises(KeyboardInterrupt):
            with slots.slot(on_wait=stopped):
                entered.append("b")

    def c():
        with slots.slot(on_wait=told_c.append):
            entered.append("c")

    ta = threading.Thread(target=holder)
    ta.start()
    while not entered:
        time.sleep(0.01)
    tb = threading.Thread(target=b)
    tb.start()
    tb.join(5)
    assert told_b == [1] and slots.waiting == 0  # b left the queue
    tc = threading.Thread(target=c)
    tc.start()
    time.sleep(0.3)
    assert told_c == [1] and entered == ["a"]
    release.set()
    tc.join(5)
    ta.join(5)
    assert entered == ["a", "c"] and slots.busy == 0


def test_analysis_waits_for_a_free_slot_and_says_so(tiny_detector, astronaut_png):
    """Detector.analyze takes a process-wide slot; a second analysis reports 'waiting' until it is free."""
    messages, result = [], []
    t = None
    with limits.analysis_slot():
        t = threading.Thread(target=lambda: result.append(
            tiny_detector.analyze(astronaut_png, progress=lambda f, m: messages.append(m))))
        t.start()
        deadline = time.time() + 10
        while not messages and time.time() < deadline:
            time.sleep(0.02)
        assert messages == ["waiting for a free analysis slot (1 ahead of you)"]
        assert not result
    t.join(120)
    assert result and result[0].error == "" and result[0].faces == 1


def _rss_anon_mb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("RssAnon"))


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc_trim")
def test_release_free_memory_gives_fragmented_heap_back():
    out = {}

    def work():  # in a thread, as a Streamlit session's analysis runs: its own malloc arena
        blocks = [bytes(1000) + bytes([i % 256]) for i in range(300_000)]
        keep = blocks[::16]  # fragmentation: the heap cannot simply shrink from the top
        del blocks
        out["freed"] = _rss_anon_mb()
        out["released"] = limits.release_free_memory()
        out["after"] = _rss_anon_mb()
        out["kept"] = len(keep)

    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert out["released"] and out["after"] < out["freed"] - 100, out


def test_leaving_an_analysis_slot_releases_memory(monkeypatch):
    calls = []
    monkeypatch.setattr(limits, "release_free_memory", lambda: calls.append(1) or True)
    with limits.analysis_slot():
        assert limits.SLOTS.busy == 1
    with pytest.raises(RuntimeError):
        with limits.analysis_slot():
            raise RuntimeError("analysis failed")
    assert calls == [1, 1] and limits.SLOTS.busy == 0
