"""camoffload's command line and the demo: the composition root of the four packages."""

from camoffload.openmp_env import prefer_passive_waiting

# Before the command line imports torch: its OpenMP runtime reads this once, at load.
prefer_passive_waiting()

__version__ = "0.1.0"

__all__ = ["__version__"]
