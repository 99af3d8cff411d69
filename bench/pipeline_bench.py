"""The MQTT pipeline against the seed's HTTP design and the model alone: the full run.

(Not ``bench/pipeline.py``: a script of that name would shadow the ``pipeline`` package
for every script in this folder, since Python puts the script's folder first on the path.)

``camoffload bench --full`` with the same options; ``camoffload bench`` is the short
version (JPEG only). Every payload kind (JPEG, raw pixels, normalised float32 tensor,
the split-1 activation as uint8 codes and as float16), 1 and 2 worker processes, one
frame at a time, rising offered load and saturated, side by side with the model alone
in rounds. Prints Markdown tables and one ``RATIO`` line per payload kind, last.
docs/performance.md.

    .venv/bin/python bench/pipeline_bench.py [--payloads jpeg,raw,tensor,split,split16] \\
        [--workers 1,2] [--frames 6000] [--rates 100,250,500,1000] [--window 256] [--no-http]
"""

from __future__ import annotations

import argparse
import sys

from camoffload.bench_commands import add_bench_options, run_bench_command


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_bench_options(parser)
    args = parser.parse_args()
    args.full = True
    return run_bench_command(args)


if __name__ == "__main__":
    sys.exit(main())
