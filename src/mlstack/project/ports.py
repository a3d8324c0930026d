"""Host ports, checked before anything is created (`up`, `serve`): a refused command leaves
nothing behind."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Mapping

from mlstack.errors import PortInUse


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (the check Docker's port publishing would fail)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def check_ports(bind: str, ports: Mapping[str, int], held_by_stack: Iterable[int] = ()) -> None:
    """Raise PortInUse for the first configured port something else already holds."""
    ours = set(held_by_stack)
    for key, port in ports.items():
        if port in ours:
            continue
        if not port_free(bind, port):
            env_name = "MLSTACK_" + key.upper().replace(".", "_")
            raise PortInUse(
                f"port {port} on {bind} is already in use ({key})",
                f"free it, or choose another port: set {key} in mlstack.yaml, "
                f"{env_name}=<port>, or --set {key}=<port>",
            )
