"""Claims on jobs, so that exactly one replica runs each: lease files created with O_EXCL.

A job's claims are the files lease-1, lease-2, ... in its directory; the highest number is the current
claim. A replica claims a job by creating the next number with O_CREAT | O_EXCL, which succeeds for
exactly one of several replicas trying at once (on a local filesystem and on NFS v3 and later), and
it tries only when the job has no claim yet or the current one is stale. The holder renews its claim
(touches the file) while it runs the job. A claim is stale when
- its holder handed it back (a shutdown before the job finished): the file says so;
- its holder was a process on this machine (same host name, boot and PID namespace) that is gone; or
- its file's modification time has not changed for lease_s seconds while this replica watched it.
  That is measured with this replica's own clock, so the clocks of different machines need not agree;
  a replica that has just started waits lease_s from when it first sees a claim.
Numbers are never reused: a holder too slow to renew in time sees a higher number and stops, and
does not write the job's record again.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

LEASE_PATTERN = re.compile(r"lease-([0-9]{1,18})")

# Holders alive in this process. Another JobQueue of this process (tests run two replicas in one
# process) is alive exactly while its token is here; a previous process that had the same pid (a
# container restarted as pid 1) is not.
_live_tokens: set[str] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: enough to tell, on the same machine, whether that process still runs."""

    host: str
    boot: str
    pid_namespace: str
    pid: int
    token: str

    @classmethod
    def this_process(cls) -> "Owner":
        host, boot, pid_namespace = _this_machine()
        return cls(host=host, boot=boot, pid_namespace=pid_namespace, pid=os.getpid(), token=uuid.uuid4().hex)

    def register(self) -> None:
        with _live_lock:
            _live_tokens.add(self.token)

    def unregister(self) -> None:
        with _live_lock:
            _live_tokens.discard(self.token)

    def is_gone(self) -> bool:
        """True only when this owner is certainly not running: a process of this machine that exited."""
        if not self.boot or (self.host, self.boot, self.pid_namespace) != _this_machine():
            return False  # another machine or container: only its lease time can tell
        if self.pid == os.getpid():
            with _live_lock:
                return self.token not in _live_tokens
        return not _process_runs(self.pid)


class Claim:
    """This replica's claim on one job."""

    def __init__(self, path: Path, generation: int) -> None:
        self.path = path
        self.generation = generation
        self.released = False
        self.lock = threading.Lock()  # record writes of the holder against its handing back

    def held(self) -> bool:
        """Still ours: not handed back, and no other replica has claimed the job since."""
        return not self.released and self.path.exists() and not (self.path.parent / f"lease-{self.generation + 1}").exists()

    def renew(self) -> bool:
        """Touch the lease so that other replicas see it is alive; False if it is no longer ours."""
        if not self.held():
            return False
        try:
            os.utime(self.path)
        except FileNotFoundError:  # the job was deleted
            return False
        return True

    def release(self) -> None:
        """Hand the job back: any replica may claim it at once."""
        self.released = True
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "w") as file:
                json.dump({"released": True}, file)
            os.replace(temporary, self.path)
        except FileNotFoundError:  # the job is gone; nothing to hand back
            Path(temporary).unlink(missing_ok=True)


class Leases:
    """Claims for one replica, and its watch over other replicas' claims."""

    def __init__(self, owner: Owner, lease_s: float) -> None:
        self.owner = owner
        self.lease_s = lease_s
        self._seen: dict[Path, tuple[int, float]] = {}  # lease -> (mtime_ns, when this replica first saw it so)
        self._lock = threading.Lock()

    def claim(self, job_dir: Path) -> Claim | None:
        """Claim the job if nobody holds a live claim on it; None if another replica has it."""
        current = newest_lease(job_dir)
        if current is not None and not self.is_stale(current[1]):
            return None
        generation = current[0] + 1 if current else 1
        path = job_dir / f"lease-{generation}"
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except (FileExistsError, FileNotFoundError, NotADirectoryError):
            return None  # another replica was quicker, or the job was deleted
        with os.fdopen(descriptor, "w") as file:
            json.dump(asdict(self.owner), file)
        return Claim(path, generation)

    def is_stale(self, path: Path) -> bool:
        try:
            mtime_ns = path.stat().st_mtime_ns
            content = json.loads(path.read_bytes() or b"{}")
        except FileNotFoundError:
            return False  # the job is being deleted: leave it
        except ValueError:
            content = {}  # just created and not yet written: live, as far as anyone knows
        if content.get("released") or _owner_of(content).is_gone():
            return True
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(path)
            if seen is None or seen[0] != mtime_ns:
                self._seen[path] = (mtime_ns, now)
                return False
            return now - seen[1] >= self.lease_s

    def forget_all_but(self, job_dirs: set[Path]) -> None:
        """Stop watching the claims of jobs that are no longer pending."""
        with self._lock:
            self._seen = {path: seen for path, seen in self._seen.items() if path.parent in job_dirs}


def newest_lease(job_dir: Path) -> tuple[int, Path] | None:
    try:
        generations = [int(match.group(1)) for name in os.listdir(job_dir) if (match := LEASE_PATTERN.fullmatch(name))]
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not generations:
        return None
    newest = max(generations)
    return newest, job_dir / f"lease-{newest}"


def _owner_of(content: dict) -> Owner:
    try:
        return Owner(
            host=str(content["host"]), boot=str(content["boot"]), pid_namespace=str(content["pid_namespace"]), pid=int(content["pid"]), token=str(content["token"])
        )
    except (KeyError, TypeError, ValueError):
        return Owner(host="", boot="", pid_namespace="", pid=0, token="")  # unknown: never judged gone


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a killed child that nobody has reaped yet is a zombie: it runs nothing
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@functools.cache
def _this_machine() -> tuple[str, str, str]:
    """(host name, boot id, PID namespace): two processes with the same triple see each other's pids."""
    try:
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = ""
    return socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"), pid_namespace


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
