"""Configuration layering and validation; the topic scheme and reply routing."""

from __future__ import annotations

from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.topics import Topics, reply_target, request_properties


def test_layers_file_env_cli_later_wins(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        'prefix = "site-a"\n[edge]\nedge_id = "porch"\ndeadline_ms = 300\n[worker]\nmax_batch = 4\n'
    )
    config = load_config(
        path,
        env={"CAMOFFLOAD_EDGE_DEADLINE_MS": "400", "CAMOFFLOAD_WORKER_MAX_BATCH": "16"},
        overrides=["worker.max_batch=32", "worker.shared_subscription=false"],
    )
    assert config.prefix == "site-a"
    assert config.edge.edge_id == "porch"
    assert config.edge.deadline_ms == 400.0
    assert config.worker.max_batch == 32
    assert config.worker.shared_subscription is False
    assert config.topics.frames("porch") == "site-a/frames/porch"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["edge.nope=1"], "edge.nope"),
        (["nosection.x=1"], "nosection.x"),
        (["edge.qos=3"], "edge.qos"),
        (["edge.deadline_ms=abc"], "edge.deadline_ms"),
        (["edge.rate=fast"], "edge.rate"),
        (["broker.url=http://h"], "broker.url"),
        (["broker.url=mqtt://u:secret@h"], "broker.url"),
        (["broker.protocol=4"], "broker.protocol"),
        (["broker.password_file=/x"], "broker.username"),
        (["worker.worker_id=a/b"], "worker.worker_id"),
        (["worker.shared_subscription=maybe"], "worker.shared_subscription"),
        (["broker.password=hunter2"], "broker.password"),
        (["prefix=$SYS"], "prefix"),
        (["worker.half=true"], "worker.half"),  # float16 on the default CPU device
        (["worker.metrics_port=70000"], "worker.metrics_port"),
        (["worker.drain_timeout_s=-1"], "worker.drain_timeout_s"),
    ],
)
def test_invalid_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=overrides)
    assert info.value.key == key


def test_password_only_from_env_or_file(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[broker]\nusername = "cam"\npassword = "x"\n')
    with pytest.raises(ConfigError, match="secret"):
        load_config(toml, env={})
    config = load_config(
        env={"CAMOFFLOAD_BROKER_PASSWORD": "s3cret"},
        overrides=["broker.url=mqtts://cam@broker.example:8883"],
    )
    assert config.broker.read_password() == "s3cret"
    assert (config.broker.host, config.broker.port, config.broker.tls) == (
        "broker.example",
        8883,
        True,
    )
    assert "s3cret" not in repr(config)
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = load_config(
        env={}, overrides=["broker.username=cam", f"broker.password_file={secret}"]
    )
    assert config.broker.read_password() == "from-file"


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[edge\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})


def test_topic_scheme() -> None:
    t = Topics("cam")
    assert t.frames("e1") == "cam/frames/e1"
    assert t.shared_frames("g") == "$share/g/cam/frames/+"
    assert t.results("e1") == "cam/results/e1"
    assert t.worker_status("w") == "cam/status/workers/w"
    assert t.edge_status("e1") == "cam/status/edges/e1"
    assert t.events("e1") == "cam/events/e1"
    assert t.edge_of_frames_topic("cam/frames/e1") == "e1"
    assert t.edge_of_frames_topic("cam/frames/a/b") is None
    assert t.edge_of_frames_topic("other/frames/e1") is None
    with pytest.raises(ConfigError):
        t.frames("a+b")
    with pytest.raises(ConfigError):
        Topics("a//b")


def test_reply_target_honours_a_response_topic_in_the_edges_own_results() -> None:
    t = Topics("cam")
    for own in ("cam/results/e1", "cam/results/e1/session-7"):
        target = reply_target(t, "cam/frames/e1", request_properties(own, b"corr"))
        assert target is not None
        assert target.topic == own
        assert target.properties is not None
        assert target.properties.CorrelationData == b"corr"
    fallback = reply_target(t, "cam/frames/e1", Properties(PacketTypes.PUBLISH))
    assert fallback is not None
    assert (fallback.topic, fallback.properties) == ("cam/results/e1", None)


@pytest.mark.parametrize(
    "foreign",
    ["anywhere/r", "cam/results/e2", "cam/results/e10", "cam/status/workers/w1", "cam/results"],
)
def test_reply_target_refuses_a_response_topic_outside_the_edges_results(foreign: str) -> None:
    # A device must not steer a worker's reply onto another device's results or onto
    # worker status: the reply goes to its own results topic, correlation kept.
    target = reply_target(Topics("cam"), "cam/frames/e1", request_properties(foreign, b"c"))
    assert target is not None
    assert target.topic == "cam/results/e1"
    assert target.properties is not None
    assert target.properties.CorrelationData == b"c"


def test_reply_target_needs_a_frames_topic() -> None:
    t = Topics("cam")
    assert reply_target(t, "cam/elsewhere", None) is None
