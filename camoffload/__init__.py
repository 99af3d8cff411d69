"""camoffload's command line and the demo: the composition root of the four packages."""

__version__ = "0.1.0"

__all__ = ["__version__"]
