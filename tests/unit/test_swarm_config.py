"""The swarm target's keys: target, mlflow.replicas, swarm.*; each bad value one line."""

from __future__ import annotations

import pytest

from mlstack.config import StackConfig
from mlstack.config.loading import load_config
from mlstack.errors import ConfigError

OPEN = ["allow_unauthenticated=true"]


def test_local_is_the_default_target_with_one_replica() -> None:
    config = load_config(env={}).config
    assert config.target == "local" and config.mlflow.replicas == 1
    assert config.swarm.endpoint_mode == "dnsrr" and config.swarm.data_node is None


def test_swarm_target_from_the_environment_defaults_to_two_replicas() -> None:
    env = {"MLSTACK_TARGET": "swarm", "MLSTACK_ALLOW_UNAUTHENTICATED": "true"}
    config = load_config(env=env).config
    assert config.target == "swarm" and config.mlflow.replicas == 2
    assert config.swarm.publish_mode == "host"
    assert config.exposed  # a swarm's published port answers on every node's address


def test_swarm_keys_from_flags() -> None:
    sets = ["target=swarm", "auth=true", "swarm.endpoint_mode=vip", "swarm.data_node=node-2"]
    config = load_config(env={}, sets=[*sets, "mlflow.replicas=3"]).config
    assert config.mlflow.replicas == 3 and config.swarm.data_node == "node-2"
    assert config.swarm.publish_mode == "ingress"


def _refused(sets: list[str]) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(env={}, sets=sets)
    text = f"{caught.value.message}; {caught.value.hint}"
    assert "\n" not in text
    return text


@pytest.mark.parametrize("value", ["0", "-1"])
def test_replicas_below_one_are_refused_with_the_fix(value: str) -> None:
    text = _refused(["target=swarm", *OPEN, f"mlflow.replicas={value}"])
    assert "mlflow.replicas must be 1 or more" in text and "mlflow.replicas: 1" in text


def test_replicas_on_the_local_target_are_refused() -> None:
    text = _refused(["mlflow.replicas=2"])
    assert "replicas need target: swarm" in text


def test_an_unknown_target_and_endpoint_mode_are_refused() -> None:
    text = _refused(["target=kubernetes", "swarm.endpoint_mode=mesh"])
    assert "'local' or 'swarm'" in text and "'dnsrr' or 'vip'" in text


def test_swarm_without_auth_is_refused_as_exposed() -> None:
    text = _refused(["target=swarm"])
    assert "auth" in text and "allow_unauthenticated" in text


def test_config_as_dict_round_trips() -> None:
    config = StackConfig(target="swarm", auth=True, mlflow={"replicas": 3})
    again = StackConfig.from_mapping(config.as_dict())
    assert again == config and again.as_dict()["swarm"]["endpoint_mode"] == "dnsrr"


def test_tls_on_a_swarm_is_refused_for_now() -> None:
    text = _refused(["target=swarm", "auth=true", "tls=true"])
    assert "tls is not supported with target: swarm" in text
