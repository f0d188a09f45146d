"""Ends a local Ray cluster's processes when the coordinator that started it dies without
shutting it down (SIGKILL, an out-of-memory kill).

Ray stops its raylet and GCS when the driver that started them dies, but its dashboard and
runtime-env agents were seen to outlive a SIGKILLed coordinator by a minute or more.  A
small watcher process, started right after `ray.init`, remembers the cluster's processes
(the coordinator's descendants at that moment, by pid and start time) and the session
directory's name; once the coordinator is gone it kills whatever of them is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def start(session_dir: str) -> subprocess.Popen:
    """Start the watcher for the cluster this process just started (its session directory)."""
    import psutil

    procs = [(p.pid, p.create_time()) for p in psutil.Process().children(recursive=True)]
    marker = os.path.basename(session_dir.rstrip("/"))
    return subprocess.Popen([sys.executable, "-m", "fl.ray_reaper", str(os.getpid()), marker, json.dumps(procs)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def leftovers(procs: list, marker: str) -> list:
    """The cluster's processes still running: remembered ones (same pid and start time) and
    any whose command line names the session."""
    import psutil

    out = {}
    for pid, created in procs:
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 1e-3:
                out[pid] = p
        except psutil.NoSuchProcess:
            pass
    for p in psutil.process_iter(["cmdline"]):
        try:
            if p.pid != os.getpid() and marker and marker in " ".join(p.info["cmdline"] or []):
                out[p.pid] = p
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return list(out.values())


def main(argv: list[str]) -> int:
    coordinator, marker, procs = int(argv[0]), argv[1], json.loads(argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped by a coordinator that shut Ray down
    while _alive(coordinator):
        time.sleep(0.25)
    for p in leftovers(procs, marker):
        try:
            p.kill()
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
