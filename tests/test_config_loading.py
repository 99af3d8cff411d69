"""The configuration's conversion by msgspec, its error messages, and its JSON Schema
(``camoffload config --schema`` / ``--show``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from camoffload.cli import main as cli_main
from pipeline.config import Config, EdgeConfig, WorkerConfig, config_schema, load_config
from pipeline.errors import ConfigError


def test_environment_strings_become_the_declared_types() -> None:
    config = load_config(
        env={
            "CAMOFFLOAD_EDGE_DEADLINE_MS": "500",
            "CAMOFFLOAD_WORKER_MAX_BATCH": " 16\n",  # as an environment file may leave it
            "CAMOFFLOAD_EDGE_BUNDLE": "off",
            "CAMOFFLOAD_WORKER_FROZEN": "yes",
            "CAMOFFLOAD_WORKER_SHARED_SUBSCRIPTION": "FALSE",
            "CAMOFFLOAD_WORKER_THREADS": "none",
            "CAMOFFLOAD_EDGE_METRICS_PORT": "9100",
            "CAMOFFLOAD_EDGE_LEDGER_PATH": "",
            "CAMOFFLOAD_EDGE_QOS": "2",
            "CAMOFFLOAD_MODELS_DIR": "/elsewhere",  # not a section: not a setting
        }
    )
    assert config.edge.deadline_ms == 500.0
    assert isinstance(config.edge.deadline_ms, float)
    assert config.worker.max_batch == 16
    assert isinstance(config.worker.max_batch, int)
    assert (config.edge.bundle, config.worker.frozen) == (False, True)
    assert config.worker.shared_subscription is False
    assert config.worker.threads is None
    assert config.edge.metrics_port == 9100
    assert config.edge.ledger_path is None
    assert config.edge.qos == 2


def test_toml_values_keep_their_types_and_a_number_may_fill_a_string(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[broker]\nprotocol = 5\n[edge]\nrate = 30\nsplit = 2\nlocal_model = "m"\n'
        'policy = "threshold"\nconfidence_threshold = 1\n[worker]\ncpus = 0\n'
    )
    config = load_config(path, env={})
    assert config.broker.protocol == "5"
    assert (config.edge.rate, config.edge.split, config.worker.cpus) == ("30", 2, "0")
    assert config.edge.confidence_threshold == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("edge.deadline_ms=abc", "edge.deadline_ms must be a number > 0, got 'abc'"),
        ("edge.deadline_ms=0", "edge.deadline_ms must be > 0, got '0'"),
        ("edge.jpeg_quality=101", "edge.jpeg_quality must be 1-100, got '101'"),
        ("edge.max_in_flight=1.5", "edge.max_in_flight must be an integer > 0, got '1.5'"),
        ("edge.confidence_threshold=-0.1", "edge.confidence_threshold must be 0-1"),
        ("edge.motion_threshold=nan", "edge.motion_threshold must be 0-1"),
        ("worker.device=tpu", "worker.device must be one of auto, cpu, cuda, got 'tpu'"),
        ("worker.frozen=maybe", "worker.frozen must be true or false, got 'maybe'"),
        ("worker.max_wait_ms=-1", "worker.max_wait_ms must be >= 0"),
        ("broker.keepalive_s=1", "broker.keepalive_s must be 5-3600"),
    ],
)
def test_a_bad_value_names_its_key_what_it_must_be_and_where_it_was_set(
    override: str, message: str
) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides=[override])
    assert info.value.key == key
    assert str(info.value).startswith(message)
    assert str(info.value).endswith("(from the command line)")


def test_a_bad_value_names_the_variable_or_the_file_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CAMOFFLOAD_WORKER_MAX_QUEUE") as info:
        load_config(env={"CAMOFFLOAD_WORKER_MAX_QUEUE": "lots"})
    assert info.value.key == "worker.max_queue"
    path = tmp_path / "c.toml"
    path.write_text('[edge]\nqos = "high"\n')
    wanted = r"edge\.qos must be an integer 0, 1 or 2, got 'high'"
    with pytest.raises(ConfigError, match=wanted) as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_an_unknown_key_is_refused_with_the_closest_name() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'edge\.deadline_ms'") as info:
        load_config(env={}, overrides=["edge.deadline=500"])
    assert info.value.key == "edge.deadline"
    suggestion = r"CAMOFFLOAD_WORKER_MAXBATCH; did you mean 'worker\.max_batch'"
    with pytest.raises(ConfigError, match=suggestion) as info:
        load_config(env={"CAMOFFLOAD_WORKER_MAXBATCH": "4"})
    assert info.value.key == "worker.maxbatch"


def test_a_section_built_in_code_is_held_to_the_same_declarations() -> None:
    with pytest.raises(ConfigError, match=r"^edge\.jpeg_quality must be 1-100, got 0$") as info:
        EdgeConfig(jpeg_quality=0)
    assert info.value.key == "edge.jpeg_quality"
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(WorkerConfig(), qos=3)
    assert info.value.key == "worker.qos"
    with pytest.raises(ConfigError, match="one of auto, cpu, cuda"):
        WorkerConfig(device="tpu")  # type: ignore[arg-type]
    assert WorkerConfig(threads=None, metrics_port=0).metrics_port == 0


def test_the_schema_names_every_section_and_its_constraints() -> None:
    schema = json.loads(json.dumps(config_schema()))  # plain JSON, nothing Python-only
    definitions = schema["$defs"]
    root = definitions["Config"]
    assert set(root["properties"]) == {"prefix", "broker", "edge", "worker"}
    for section in ("broker", "edge", "worker"):
        name = root["properties"][section]["$ref"].rpartition("/")[2]
        fields = {f.name for f in dataclasses.fields(getattr(Config(), section))}
        fields.discard("password")  # a file may not hold it, so the schema does not offer it
        assert set(definitions[name]["properties"]) == fields
        assert definitions[name]["additionalProperties"] is False
    edge = definitions["EdgeConfig"]["properties"]
    assert (edge["jpeg_quality"]["minimum"], edge["jpeg_quality"]["maximum"]) == (1, 100)
    assert edge["deadline_ms"]["exclusiveMinimum"] == 0
    assert "threshold" in edge["policy"]["enum"]
    assert edge["jpeg_quality"]["default"] == 90


def test_config_command_prints_the_schema_and_the_resolved_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli_main(["config", "--schema"]) == 0
    assert json.loads(capsys.readouterr().out) == config_schema()
    monkeypatch.setenv("CAMOFFLOAD_BROKER_PASSWORD", "s3cret")
    argv = ["config", "--show", "--set", "edge.deadline_ms=300", "--set", "broker.username=cam"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["edge"]["deadline_ms"] == 300.0
    assert shown["broker"]["username"] == "cam"
    assert "password" not in shown["broker"]
    assert "s3cret" not in out
    assert cli_main(["config", "--show", "--set", "edge.qos=7"]) == 1
    assert "edge.qos must be 0, 1 or 2" in capsys.readouterr().err
