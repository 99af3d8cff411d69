#!/usr/bin/env bash
# The pipeline through a real broker with CUDA workers, and the transport ceiling, on a
# lent GPU machine (16 cores, no network, no Mosquitto): the run docs/performance.md
# asks for. One call, about 8 minutes; everything it prints also goes to $OUT.
#
# Here, once, before the call (the device has no Mosquitto and no network):
#   mkdir -p .gpu && (cd .gpu && apt-get download mosquitto libmosquitto1 libcjson1 \
#       libwebsockets17 libev4 libuv1)          # Debian 12's; add what dpkg -x lacks
#   echo /.gpu/ >> .git/info/exclude
# Then, with the device tool: run `bash scripts/gpu_bench.sh` carrying `.gpu`.
# The machine's own Python must have torch with CUDA; the script installs camoffload
# from the tree with --no-deps and says which other imports are missing, if any.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu-bench}"
mkdir -p "$out"
exec > >(tee "$out/gpu_bench.txt") 2>&1

root="$PWD/.gpu/root"
mkdir -p "$root"
for deb in .gpu/*.deb; do dpkg -x "$deb" "$root"; done
export PATH="$root/usr/sbin:$root/usr/bin:$PATH"
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mosquitto -h | head -1 || { echo "gpu_bench: no runnable mosquitto from .gpu/*.deb" >&2; exit 1; }

python=${PYTHON:-python3}
"$python" -m pip install --no-deps --no-build-isolation -q -e . || true
"$python" - <<'PY'
import importlib, sys
missing = [m for m in ("torch", "aiomqtt", "paho.mqtt", "msgspec", "msgpack", "numpy", "cv2",
                        "psutil", "starlette") if importlib.util.find_spec(m) is None]
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
if missing:
    sys.exit(f"gpu_bench: missing {', '.join(missing)}: carry a venv or wheels")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true

echo "== the transport ceiling: a free model, 1-8 worker processes"
"$python" -m camoffload bench --model null --payloads jpeg,raw --no-http \
    --workers 1,2,4,8 --frames 20000 --window 512

echo "== the pipeline with CUDA workers (float16), against the model alone"
"$python" -m camoffload bench --payloads jpeg,raw,split --no-http --workers 1,2,4 \
    --frames 20000 --window 512 --max-batch 256 \
    --worker-set worker.device=cuda --worker-set worker.half=true
