"""Time a run spent running: wall time minus the stretches the process was stopped.

The campaign is paused with ``kill -STOP`` while someone times something else, and a record's wall time
should say what the cell costs, not how long it was held. A stopped process cannot see its own stop
(SIGSTOP cannot be caught), so a daemon thread ticks every quarter second and books any gap much longer
than a tick as paused. Load alone does not look like a pause: a niced thread on a busy 2-core machine is
still scheduled within milliseconds, far below the two-second threshold.
"""
from __future__ import annotations

import threading
import time

TICK_S = 0.25
PAUSE_GAP_S = 2.0

_lock = threading.Lock()
_paused_s = 0.0
_thread: threading.Thread | None = None


def _watch() -> None:
    global _paused_s
    last = time.monotonic()
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        if now - last > PAUSE_GAP_S:
            with _lock:
                _paused_s += now - last - TICK_S
        last = now


def _ensure_watching() -> None:
    global _thread
    if _thread is None:
        with _lock:
            if _thread is None:
                _thread = threading.Thread(target=_watch, name="hashlab-pause-watch", daemon=True)
                _thread.start()


def paused_seconds() -> float:
    """Seconds this process has been stopped since the watch started."""
    _ensure_watching()
    with _lock:
        return _paused_s


def active_time() -> float:
    """A monotonic clock that stands still while the process is stopped: a drop-in for ``time.perf_counter``
    when the difference of two readings should be the time spent running."""
    _ensure_watching()
    return time.perf_counter() - paused_seconds()
