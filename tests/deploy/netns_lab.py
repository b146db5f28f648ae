"""Several hosts on this machine: network namespaces (`ip netns`) joined by veth pairs to a
bridge in a load-balancer namespace, each host with its own address, as on a real LAN. Nothing
touches the machine's own network: the bridge, the addresses and every process started here
live inside the namespaces, which are deleted at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SUBNET = "10.77.0"  # a private range, only inside these namespaces
BALANCER_ADDRESS = f"{SUBNET}.1"


def unavailable() -> str | None:
    """Why the lab cannot be built here (None when it can)."""
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    probe = f"cxrprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Lab:
    balancer: str  # the load balancer's namespace, which holds the bridge
    hosts: tuple[str, ...]  # one namespace per host
    addresses: tuple[str, ...]  # each host's address on the bridge

    def command(self, namespace: str, argv: list[str]) -> list[str]:
        """`argv` run inside `namespace`."""
        return ["ip", "netns", "exec", namespace, *argv]


@contextmanager
def lab(hosts: int) -> Iterator[Lab]:
    prefix = f"cxr{os.getpid() % 100000}"
    balancer = f"{prefix}-lb"
    names = tuple(f"{prefix}-h{i + 1}" for i in range(hosts))
    addresses = tuple(f"{SUBNET}.{11 + i}" for i in range(hosts))
    made: list[str] = []
    try:
        ip("netns", "add", balancer)
        made.append(balancer)
        ip("-n", balancer, "link", "set", "lo", "up")
        ip("-n", balancer, "link", "add", "br0", "type", "bridge")
        ip("-n", balancer, "addr", "add", f"{BALANCER_ADDRESS}/24", "dev", "br0")
        ip("-n", balancer, "link", "set", "br0", "up")
        for i, (name, address) in enumerate(zip(names, addresses)):
            ip("netns", "add", name)
            made.append(name)
            ip("-n", name, "link", "set", "lo", "up")
            # a veth pair made inside the host's namespace, its far end moved to the balancer's
            ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"port{i}")
            ip("-n", name, "link", "set", f"port{i}", "netns", balancer)
            ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip("-n", balancer, "link", "set", f"port{i}", "master", "br0")
            ip("-n", balancer, "link", "set", f"port{i}", "up")
        yield Lab(balancer, names, addresses)
    finally:
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
