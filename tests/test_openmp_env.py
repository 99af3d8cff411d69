"""camoffload's processes set torch's OpenMP threads to sleep when idle, before torch
loads, and keep a user's own choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import camoffload.cli, os, torch; print(os.environ['OMP_WAIT_POLICY'])"


def _policy(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_command_line_makes_idle_openmp_threads_sleep() -> None:
    assert _policy(None) == "PASSIVE"


def test_the_policy_is_set_before_torch_loads() -> None:
    # libgomp reads the variable once, as torch loads it: the package sets it first.
    probe = (
        "import sys, camoffload, os; print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.stdout.split() == ["False", "PASSIVE"], done.stderr


@pytest.mark.parametrize("chosen", ["ACTIVE", "passive"])
def test_a_policy_the_user_chose_is_kept(chosen: str) -> None:
    assert _policy(chosen) == chosen
