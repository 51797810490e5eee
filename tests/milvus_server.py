"""Run a standalone Milvus server (the `milvus` PyPI package) until told to stop.

    .venv-milvus/bin/python tests/milvus_server.py BASE_DIR PORT [--exit-with-parent]

It must run with the interpreter of .venv-milvus: the `milvus` package pins versions that
clash with pymilvus 3 in the main venv. Stays in the foreground; prints "ready" once the
server's health check answers (clients should still poll: tests/fixtures_milvus.py does).
SIGTERM or SIGINT stops the server (SIGKILL after a grace period) and exits.

Why not just `milvus-server --data BASE_DIR`: its embedded etcd always binds 127.0.0.1:2379
and 2380, so a second Milvus on the machine (another test run, a developer's server) makes it
crash at start. Here etcd gets free ports through an etcd config file (ETCD_CONFIG_PATH),
and PORT is bound exactly or the launch fails (the package would silently move to another).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

STOP_GRACE_SECONDS = 10
POLL_SECONDS = 0.5


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_etcd_config(base_dir: Path) -> tuple[Path, int]:
    """An embedded-etcd config on free loopback ports; returns its path and the client port."""
    client_port, peer_port = free_loopback_port(), free_loopback_port()
    client_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    config = base_dir / "embedded-etcd.yaml"
    config.write_text(
        "name: default\n"
        f"listen-client-urls: {client_url}\n"
        f"advertise-client-urls: {client_url}\n"
        f"listen-peer-urls: {peer_url}\n"
        f"initial-advertise-peer-urls: {peer_url}\n"
        f"initial-cluster: default={peer_url}\n"
    )
    return config, client_port


def announce_when_healthy(proc: subprocess.Popen, health_url: str, port: int) -> None:
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(health_url, timeout=2) as response:
                if b"OK" in response.read():
                    print(f"ready on 127.0.0.1:{port}", flush=True)
                    return
        except OSError:
            pass
        time.sleep(POLL_SECONDS)


def exit_when_orphaned() -> None:
    """SIGTERM ourselves when our parent dies (we get re-parented), e.g. a killed pytest,
    so that no server outlives the run that started it."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_dir", type=Path, help="data, logs and config go here")
    parser.add_argument("port", type=int, help="the gRPC port clients connect to")
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop the server when the process that started this one dies",
    )
    args = parser.parse_args()
    base_dir = args.base_dir.absolute()
    base_dir.mkdir(parents=True, exist_ok=True)

    etcd_config, etcd_client_port = write_etcd_config(base_dir)
    os.environ["ETCD_CONFIG_PATH"] = str(etcd_config)  # Milvus maps env vars onto its config

    from milvus import default_server  # only importable in .venv-milvus

    default_server.set_base_dir(str(base_dir))
    # config.update (not the listen_port setter) makes these exact ports, failing if taken.
    default_server.config.update(proxy_port=args.port, etcd_port=etcd_client_port)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        # Runs in the main thread while it may sit in proc.wait(): only send signals here
        # (a nested wait would deadlock on Popen's lock); the main thread reaps the process.
        stopping.set()
        proc = default_server.server_proc
        if proc is None:  # milvus not spawned yet
            raise SystemExit(0)
        proc.terminate()
        killer = threading.Timer(STOP_GRACE_SECONDS, proc.kill)
        killer.daemon = True  # must not keep us alive once milvus is gone
        killer.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Spawn and return: readiness is watched by a thread below, so that a signal arriving
    # during the start-up never has to interrupt the package's own blocking health loop.
    default_server.wait_for_started = False
    default_server.start()
    proc = default_server.server_proc
    health_url = f"http://127.0.0.1:{default_server.webservice_port}/healthz"
    threading.Thread(
        target=announce_when_healthy, args=(proc, health_url, args.port), daemon=True
    ).start()
    if args.exit_with_parent:
        threading.Thread(target=exit_when_orphaned, daemon=True).start()

    return_code = proc.wait()
    if stopping.is_set():
        return 0
    print(
        f"milvus exited on its own with code {return_code}; see {base_dir / 'logs'}",
        file=sys.stderr,
        flush=True,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
