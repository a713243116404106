"""A real two-node Ray cluster on 127.0.0.1 for tests/test_ray.py: a head node (`ray start --head`) and a
second node joining it (`ray start --address`), both on this machine, each with 1 CPU and a small object
store, a private temp dir under /tmp (Ray's socket paths must stay under ~107 characters) and its own block
of free ports, so two test runs never collide. Stopping it touches only the processes it started: SIGTERM to
each `ray start --block` process (which stops its node's processes), then SIGKILL to whatever of their
process trees is left; never a bare `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
READY = "will now block forever"      # what `ray start --block` prints once its node is up
START_TIMEOUT_S = 120                  # generous: the machine is shared and loaded
PORTS_PER_NODE = 30                    # 10 service ports and 20 worker ports


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive ports that are free now (a random block in 20000-59999)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def _node_args(base: int) -> list[str]:
    return ["--num-cpus", "1", "--object-store-memory", "100000000", "--disable-usage-stats",
            "--node-manager-port", str(base + 1), "--object-manager-port", str(base + 2),
            "--dashboard-agent-listen-port", str(base + 3), "--dashboard-agent-grpc-port", str(base + 4),
            "--metrics-export-port", str(base + 5), "--runtime-env-agent-port", str(base + 6),
            "--min-worker-port", str(base + 10), "--max-worker-port", str(base + PORTS_PER_NODE - 1)]


def _descendants(pids: set[int]) -> set[int]:
    """`pids` and every process below them now (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo += children.get(pid, [])
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except (OSError, IndexError):
        return "(gone)"


class Cluster:
    def __init__(self, env: dict[str, str]):
        self.env, self.nodes, self.tree = env, [], set()
        self.tmp = Path(tempfile.mkdtemp(prefix="gbray-", dir="/tmp"))
        self.base = free_port_block(2 * PORTS_PER_NODE + 1)
        self.address = f"127.0.0.1:{self.base}"

    def start_node(self, head: bool) -> None:
        index = len(self.nodes)
        log = self.tmp / f"node{index}.log"
        base = self.base + 1 + index * PORTS_PER_NODE
        args = [RAY, "start", "--block", "--temp-dir", str(self.tmp), *_node_args(base)]
        if head:
            args += ["--head", "--node-ip-address", "127.0.0.1", "--port", str(self.base),
                     "--include-dashboard=false", "--dashboard-port", str(base + 7)]
        else:
            args += ["--address", self.address]
        node_tmp = self.tmp / f"t{index}"            # the node's TMPDIR: its tasks' files go when it stops
        node_tmp.mkdir()
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(self.env, TMPDIR=str(node_tmp)), start_new_session=True)
        self.nodes.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {index} did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        tree = _descendants({proc.pid for proc in self.nodes})
        for proc in self.nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in self.nodes:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                pass
        self.tree = tree | _descendants(tree)
        for pid in self.tree:
            if not _alive(pid):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.nodes:
            if proc.poll() is None:
                proc.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Processes of this cluster still alive: of its process trees, or naming its temp dir (after stop:
        none)."""
        named = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and str(self.tmp).encode() in (entry / "cmdline").read_bytes():
                    named.append(int(entry.name))
            except OSError:
                continue
        return sorted(pid for pid in set(named) | self.tree if _alive(pid))


@contextmanager
def local_cluster(env: dict[str, str], nodes: int = 2):
    """A running `nodes`-node cluster (its .address is 'host:port'), stopped at exit whatever happens."""
    cluster = Cluster(env)
    try:
        for index in range(nodes):
            cluster.start_node(head=index == 0)
        yield cluster
    finally:
        cluster.stop()
