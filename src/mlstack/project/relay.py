"""The stack's services as a CLI on another machine reaches them: through a relay container.

On a remote engine PostgreSQL and S3 are published on the server's loopback only (and MLflow too
unless the stack is exposed), so the CLI cannot connect to them. A small container on the stack's
network, from the MLflow image (it has Python), relays each connection the engine forwards
(engine/relay.py). It is made on first use, kept between commands (0.5 s to create, ~10 MB),
labelled as the stack's, and removed by `down` with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlstack import labels
from mlstack.engine import EngineAPI, ServiceSpec

RELAY_SERVICE = "relay"
# Waits for SIGTERM, which ends it at once (`down` does not wait out a grace).
_IDLE = ["python", "-S", "-c", "import signal; signal.pause()"]


def relay_spec(project: str, image: str, extra_labels: Mapping[str, str]) -> ServiceSpec:
    return ServiceSpec(
        name=RELAY_SERVICE,
        container_name=f"{project}-{RELAY_SERVICE}",
        image=image,
        command=tuple(_IDLE),
        environment={},
        ports=(),
        volumes=(),
        labels={**extra_labels, labels.PROJECT: project, labels.SERVICE: RELAY_SERVICE},
        restart="no",
        stop_signal=None,
        stop_grace_period=2.0,
        healthcheck=None,
        depends_on=(),
    ).with_hash()


class Relay:
    """Local addresses of the stack's in-network services, forwarded on first use."""

    def __init__(
        self, engine: EngineAPI, spec: ServiceSpec, network: str, labels_of_net: Mapping[str, str]
    ) -> None:
        self.engine = engine
        self.spec = spec
        self.network = network
        self.network_labels = dict(labels_of_net)
        self._addresses: dict[tuple[str, int], tuple[str, int]] = {}
        self._ready = False

    def address(self, host: str, port: int) -> tuple[str, int]:
        """127.0.0.1:<port> on this machine, relayed to `host:port` in the stack's network."""
        key = (host, port)
        if key not in self._addresses:
            self._ensure()
            self._addresses[key] = self.engine.forward(self.spec.container_name, host, port)
        return self._addresses[key]

    def _ensure(self) -> None:
        if self._ready:
            return
        engine, spec = self.engine, self.spec
        info = engine.inspect(spec.container_name)
        current = info is not None and info.labels.get(labels.SPEC_HASH) == spec.spec_hash
        if info is not None and not current:
            engine.remove(spec.container_name)
        if info is None or not current:
            engine.ensure_network(self.network, self.network_labels)
            engine.create(spec, self.network, aliases=[])
        if info is None or not current or not info.running:
            engine.start(spec.container_name)
        self._ready = True
