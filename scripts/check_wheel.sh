#!/usr/bin/env bash
# The wheel is the product: build the wheel and the sdist, install each into a fresh
# venv with the lowest paho-mqtt and aiomqtt the project allows, and from a folder
# outside the source tree run `camoffload demo --frames 20` and `camoffload eval --list`.
# CI runs it after the tests (.ci/run); it needs .venv from `bootstrap.sh --dev` for the
# build tool, and about 6 GB of disk for a second torch while it runs.
#
#   bash scripts/check_wheel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

# The floors in pyproject.toml that a fresh install could land on and the code leans on.
FLOORS=(paho-mqtt==2.2.0 aiomqtt==2.3.0)
case "$(uname -m)" in
  aarch64 | arm64) default_torch="torch==2.9.1 torchvision==0.24.1" ;;
  *) default_torch="torch==2.14.1 torchvision==0.29.1" ;;
esac
TORCH_SPEC=${TORCH_SPEC:-$default_torch}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip() { "$work/venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

echo "check_wheel: building the wheel and the sdist"
.venv/bin/python -m build --outdir "$work/dist" "$src" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/camoffload-*.whl)
sdist=$(ls "$work"/dist/camoffload-*.tar.gz)

# What the product needs at run time must be inside the wheel, not beside the checkout.
listing=$("$src/.venv/bin/python" -m zipfile -l "$wheel")
for needed in pipeline/models/shipped/fmnist_exit_resnet.pt \
  pipeline/models/shipped/fmnist_exit_resnet.json \
  pipeline/models/shipped/fmnist_exit_resnet.router.pt \
  pipeline/models/shipped/fmnist_exit_resnet.gompertz.json \
  pipeline/models/shipped/efficientnet_lite2.gompertz.json \
  pipeline/models/shipped/nanodet_coco.gompertz.json \
  pipeline/models/shipped/detectors/ssdlite_person.onnx \
  pipeline/models/shipped/detectors/ssdlite_person.json \
  pipeline/models/shipped/detectors/nanodet_coco.onnx \
  pipeline/models/shipped/detectors/nanodet_coco.json \
  camoffload/data/vtest_clip.avi camoffload/eval/suites/seed-study.toml \
  camoffload/dashboard/static/index.html camoffload/dashboard/static/dashboard.js \
  camoffload/dashboard/static/vendor/uPlot.iife.min.js camoffload/dashboard/static/vendor/uPlot.LICENSE \
  licenses/LICENSE licenses/THIRD_PARTY_NOTICES.md; do
  grep -q "$needed" <<<"$listing" || { echo "check_wheel: $needed is not in $wheel" >&2; exit 1; }
done

python3 -m venv "$work/venv"
echo "check_wheel: installing $TORCH_SPEC into a fresh venv"
# shellcheck disable=SC2086  # the spec is a list of requirements
pip install $TORCH_SPEC

run_outside() {  # run_outside LABEL: the two commands, from a folder with nothing in it
  local label=$1 out
  mkdir -p "$work/elsewhere" && cd "$work/elsewhere"
  out=$("$work/venv/bin/camoffload" demo --frames 20 2>"$work/demo.log") \
    || { cat "$work/demo.log" >&2; echo "check_wheel: demo failed from the $label" >&2; exit 1; }
  echo "$out"
  grep -q "^frames  *20$" <<<"$out" || { echo "check_wheel: the demo did not replay 20 frames" >&2; exit 1; }
  grep -q "^decided exactly once  *yes$" <<<"$out" \
    || { echo "check_wheel: not every frame was decided exactly once" >&2; exit 1; }
  grep -q "^people in view  *up to [1-9]" <<<"$out" \
    || { echo "check_wheel: the demo saw no people from the $label" >&2; exit 1; }
  # Captured first: grep -q stops reading at its match, and under pipefail the list's
  # writer would fail on the closed pipe.
  suites=$("$work/venv/bin/camoffload" eval --list)
  for suite in seed-study security specialize; do
    grep -q "^$suite " <<<"$suites" \
      || { echo "check_wheel: eval --list lacks the built-in suite $suite from the $label" >&2; exit 1; }
  done
  # The shipped weights (sha256-checked against the manifest), router and calibrations.
  "$work/venv/bin/python" - <<'PY' || { echo "check_wheel: the $label's models do not load" >&2; exit 1; }
from pipeline.calibration import default_calibration_path, load_calibration
from pipeline.models import default_router_path, load_early_exit, load_router

network, manifest = load_early_exit("fmnist_exit_resnet")
load_router(default_router_path("fmnist_exit_resnet"))
for model in ("fmnist_exit_resnet", "efficientnet_lite2", "nanodet_coco"):
    load_calibration(default_calibration_path(model))
print(f"check_wheel: loaded {manifest.version} with its router and calibrations")
# The dashboard's page and its vendored chart library, where the app looks for them.
from camoffload.dashboard.web import build_app
from importlib.resources import files
static = files("camoffload.dashboard") / "static"
for name in ("index.html", "dashboard.js", "dashboard.css", "vendor/uPlot.iife.min.js"):
    assert (static / name).is_file(), name
print("check_wheel: the dashboard's page and assets are installed")
PY
  cd "$src"
}

echo "check_wheel: installing the wheel with ${FLOORS[*]}"
pip install "$wheel[imagenet]" "${FLOORS[@]}"
run_outside wheel

echo "check_wheel: installing the sdist over it"
pip uninstall -y camoffload
pip install "$sdist[imagenet]" "${FLOORS[@]}"
run_outside sdist
echo "check_wheel: the wheel and the sdist work outside the tree (with ${FLOORS[*]})"
