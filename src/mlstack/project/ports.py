"""Host ports, checked before anything is created (`up`, `serve`): a refused command leaves
nothing behind."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from mlstack.config import StackConfig
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


def published_on(config: StackConfig, key: str) -> str:
    """The address a port of the stack is published on: MLflow's on `bind`, the others on
    this machine's loopback when `bind` goes beyond it."""
    return config.bind if key == "mlflow.port" else config.private_bind


def check_ports(config: StackConfig, held_by_stack: Iterable[int] = ()) -> None:
    """Raise PortInUse for the first configured port something else already holds."""
    ours = set(held_by_stack)
    for key, port in config.published_ports().items():
        bind = published_on(config, key)
        if port in ours:
            continue
        if not port_free(bind, port):
            env_name = "MLSTACK_" + key.upper().replace(".", "_")
            raise PortInUse(
                f"port {port} on {bind} is already in use ({key})",
                f"free it, or choose another port: set {key} in mlstack.yaml, "
                f"{env_name}=<port>, or --set {key}=<port>",
            )


DEFAULT_PORT = 5060  # the first port `serve` tries when --port is not given
PORT_SEARCH = 40  # ... and the next ones


def pick_port(config: StackConfig, requested: int | None, held: int | None) -> int:
    """A served model's host port (on the private address: a model server has no login):
    `requested` when usable, else the one it `held` (redeployed
    under the same name), else the first free one from DEFAULT_PORT."""
    stack_ports = {port: key for key, port in config.published_ports().items()}
    if requested is not None:
        if requested in stack_ports:
            raise PortInUse(
                f"port {requested} on {config.bind} is the stack's {stack_ports[requested]}",
                "choose another port with --port",
            )
        if requested != held and not port_free(config.private_bind, requested):
            raise PortInUse(
                f"port {requested} on {config.private_bind} is already in use",
                "free it, or choose another port with --port",
            )
        return requested
    if held is not None:
        return held
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH):
        if port not in stack_ports and port_free(config.private_bind, port):
            return port
    raise PortInUse(
        f"no free port on {config.private_bind} between {DEFAULT_PORT} and "
        f"{DEFAULT_PORT + PORT_SEARCH - 1}",
        "choose one with --port",
    )
