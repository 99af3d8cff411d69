"""One typed, closed configuration for every process.

Layers, later wins: built-in defaults < TOML file < environment < command line
(:mod:`pipeline.config.loader`). The sections are frozen dataclasses whose field types
declare their ranges and choices (:mod:`pipeline.config.sections`,
:mod:`pipeline.config.broker`, :mod:`pipeline.config.constraints`); msgspec converts
and checks every value against them, and writes the JSON Schema from them
(:mod:`pipeline.config.schema`).

Unknown keys are errors, not silently ignored. The broker password is a secret: it is
read only from ``CAMOFFLOAD_BROKER_PASSWORD`` or from ``broker.password_file``, never
from the command line or a URL.
"""

from pipeline.config.broker import PASSWORD_ENV, BrokerConfig, MqttProtocol
from pipeline.config.loader import ENV_PREFIX, load_config
from pipeline.config.schema import config_schema
from pipeline.config.sections import DEFAULT_MODEL, DEFAULT_PREFIX, Config, EdgeConfig, WorkerConfig

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PREFIX",
    "ENV_PREFIX",
    "PASSWORD_ENV",
    "BrokerConfig",
    "Config",
    "EdgeConfig",
    "MqttProtocol",
    "WorkerConfig",
    "config_schema",
    "load_config",
]
