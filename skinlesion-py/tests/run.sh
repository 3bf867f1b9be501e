#!/usr/bin/env bash
# The Python package's tests, as CI runs them (from `make test`):
#  1. build the wheel with maturin (release);
#  2. install it into a fresh venv next to nothing but its declared dependency (torch==<pin>,
#     linked from the project venv rather than installed a second time: another 5 GB copy once
#     filled CI's disk) and smoke-test it from outside the repository;
#  3. install it into the project venv and run pytest, which also executes the notebook.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
venv_python=.venv/bin/python

rm -f target/wheels/skinlesion-*.whl
(cd skinlesion-py && "$root/.venv/bin/maturin" build --release --quiet -o "$root/target/wheels")
wheel=$(ls target/wheels/skinlesion-*.whl)
echo "python: built $wheel"

smoke=target/py-smoke-venv
rm -rf "$smoke"
# Without pip: an empty site-packages (the project venv's pip installs into it), so nothing but
# the linked torch can satisfy the wheel's requirements.
python3 -m venv --without-pip "$smoke"
smoke_site=$("$smoke/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
"$venv_python" skinlesion-py/tests/link_dependencies.py "$smoke_site" torch
# --no-index: the wheel's declared dependencies must already be satisfied by what was linked, so
# this proves the wheel asks for exactly the torch it was built against, and downloads nothing.
"$venv_python" -m pip --python "$smoke/bin/python" install --quiet --disable-pip-version-check \
  --no-index "$wheel"
image=$("$venv_python" -c 'import csv,os,sys; d=os.environ.get("SKINLESION_DATA","../shared/data/ham10000"); r=next(r for r in csv.DictReader(open(d+"/labels.csv")) if r["split"]=="test"); print(os.path.abspath(d+"/images/"+r["image_id"]+".jpg"))')
(cd /tmp && env -u LD_LIBRARY_PATH -u PYTHONPATH "$root/$smoke/bin/python" - "$image" <<'PY'
import pathlib, sys
import skinlesion
assert "site-packages" in skinlesion.__file__, skinlesion.__file__
prediction = skinlesion.Classifier(device="cpu").classify(pathlib.Path(sys.argv[1]))
assert abs(sum(prediction.all_predictions.values()) - 1) < 1e-4
print("python: wheel smoke test in a fresh venv:", prediction)
PY
)

"$venv_python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"
"$venv_python" -m pytest -q skinlesion-py/tests
