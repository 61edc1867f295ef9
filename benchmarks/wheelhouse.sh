#!/usr/bin/env bash
# Wheels for an air-gapped GPU host: CPython 3.12, manylinux x86-64, with PyTorch 2.11, JAX 0.11
# (CUDA 13), numpy, scipy, pandas, matplotlib, pillow, pyyaml, rich, psutil, statsmodels and the
# rest of HOST_HAS below already installed, and no TensorFlow. Run it where PyPI is reachable:
#
#   benchmarks/wheelhouse.sh [OUT_DIR]          # default: wheelhouse/
#
# It writes spp-search's own wheel and every dependency of the study that the host lacks, resolved
# by pip for Python 3.12 against constraints.txt (the tested versions), and checks the total is
# under 60 MiB. On the host: python -m benchmarks.gpu --wheelhouse OUT_DIR --backend jax
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-wheelhouse}"
python_version="${PYTHON_VERSION:-3.12}"
limit_mib=60

# What the GPU host already has (device KINDS.md, "Python packages already there"), as pip names.
HOST_HAS="absl-py aiohttp anyio attrs certifi charset-normalizer click cloudpickle contourpy cycler
filelock fonttools fsspec grpcio h11 h5py httpcore httpx idna jax jaxlib jinja2 joblib kiwisolver
markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes numpy nvidia-ml-py opt-einsum packaging
pandas patsy pillow protobuf psutil pyarrow pygments pyparsing python-dateutil pyyaml requests rich
scipy six statsmodels tensorboard tensorboard-data-server threadpoolctl tqdm typing-extensions
tzdata urllib3 werkzeug zipp"

# What the study imports that the host may lack (the backend is the host's JAX). The SQLite stores
# of Optuna and MLflow need SQLAlchemy and Alembic; mlflow-skinny has the tracking client and stores
# without the server's dependencies (the full mlflow adds ~30 MB the study never imports).
NEEDS="keras optuna mlflow-skinny sqlalchemy alembic keras-tuner"

rm -rf "$out" && mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python -m pip wheel -q --no-deps -w "$out" . && rm -rf build
python -m pip download -q --only-binary=:all: --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
    -c constraints.txt -d "$tmp" $NEEDS

normalise() { echo "$1" | tr '[:upper:]_.' '[:lower:]--'; }
for wheel in "$tmp"/*.whl; do
    name="$(normalise "$(basename "$wheel" | cut -d- -f1)")"
    keep=1
    for have in $HOST_HAS; do
        [ "$name" = "$(normalise "$have")" ] && keep=0 && break
    done
    [ "$keep" = 1 ] && cp "$wheel" "$out/"
done

total=$(du -sm "$out" | cut -f1)
ls -1 "$out"
echo "wheelhouse $out: $(ls "$out" | wc -l) wheels, ${total} MiB (limit ${limit_mib} MiB)"
if [ "$total" -ge "$limit_mib" ]; then
    echo "error: the wheelhouse must stay under ${limit_mib} MiB, but got ${total} MiB. Drop a dependency." >&2
    exit 1
fi
