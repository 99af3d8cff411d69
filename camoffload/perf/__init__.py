"""The pipeline's performance benchmark (``camoffload bench``, ``bench/pipeline_bench.py``).

The MQTT pipeline (edge transport -> Mosquitto -> worker processes -> edge) against the
seed study's FastAPI design and against the model alone, on the same frames, models and
machine, in one run. docs/performance.md shows a run and says how to read it.
"""
