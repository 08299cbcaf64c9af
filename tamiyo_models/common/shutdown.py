"""Stopping long work cleanly when asked to: SIGTERM (what `kill PID`, systemd, a container runtime or a
scheduler sends) becomes a `SystemExit` in the main thread, so the `finally` blocks that close environment
workers and process pools run, as they do on Ctrl-C.

Without it Python dies on SIGTERM at once, and worker processes started through a forkserver (the episode
generator's pool, the online learner's vector environments) are not its children: they are left behind,
orphaned, holding memory and sometimes a core, until someone kills them by PID.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ProcessPoolExecutor


def exit_on_sigterm() -> None:
    """From now on SIGTERM raises SystemExit(143) in the main thread (143 = 128 + SIGTERM, the shell's code for
    a process ended by it). A no-op outside the main thread, where Python cannot install signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Drop a pool's queued work and end its workers now. `shutdown(wait=True)`, what leaving a `with` block
    does, would first run every queued task: minutes of episodes after the user asked to stop."""
    # The executor has no public way to end running tasks; its worker table (emptied by shutdown) is the way.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
