"""The JSON Schema of a configuration file, for editors (``camoffload config --schema``).

msgspec writes it from the same annotations the loader converts with, so names,
types, choices, ranges and defaults cannot drift from what :func:`load_config`
accepts. Two things it cannot see are added here: every table is closed, as the
loader is, and the broker password is left out because a file may not hold it.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from pipeline.config.sections import Config

__all__ = ["config_schema"]

DIALECT = "https://json-schema.org/draft/2020-12/schema"  # msgspec writes 2020-12


def config_schema() -> dict[str, Any]:
    """The schema of the whole configuration: ``prefix`` and one object per section."""
    schema: dict[str, Any] = msgspec.json.schema(Config)
    for definition in schema["$defs"].values():
        definition["additionalProperties"] = False
        if "description" in definition:  # a class docstring, as indented in the source
            definition["description"] = inspect.cleandoc(definition["description"])
    del schema["$defs"]["BrokerConfig"]["properties"]["password"]
    document = {"$schema": DIALECT, "title": "camoffload configuration", **schema}
    # As JSON has it (a tuple default is an array): what the printed schema reads back as.
    result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(document))
    return result
