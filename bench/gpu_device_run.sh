#!/usr/bin/env bash
# The GPU check on a lent CUDA machine that has Python 3.12 and torch but no Ray (docs/benchmarks.md,
# "GPU figures"): unpack the bundle `make gpu-bundle` packed, run `python -m bench.gpu_check`, and leave
# its log and JSON in $OUT (the device tool brings that folder back). From the repository root:
#
#   bash bench/gpu_device_run.sh [bench.gpu_check's options]
#
# with .gpu-bundle carried along (GPU_BUNDLE=path for another archive). Exits with the GPU check's status.
set -euo pipefail

bundle=${GPU_BUNDLE:-.gpu-bundle/site-cp312.tar.xz}
if [[ ! -f $bundle ]]; then
    echo "error: $bundle is missing: run \`make gpu-bundle\` here first and carry .gpu-bundle" >&2
    exit 2
fi
out=${OUT:-bench/out}
mkdir -p "$out" bench/out
site=$(mktemp -d /tmp/ray-rl-site.XXXXXX)
tar -xJf "$bundle" -C "$site"
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1 MUJOCO_GL=egl RAY_USAGE_STATS_ENABLED=0

python3 -c 'import platform, ray, torch; print(f"python {platform.python_version()}, ray {ray.__version__}, torch {torch.__version__}, cuda {torch.version.cuda}, gpu available {torch.cuda.is_available()}")'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

status=0
python3 -m bench.gpu_check "$@" 2>&1 | tee "$out/gpu_check.log" || status=$?
if [[ $out != bench/out ]]; then
    cp bench/out/gpu.json bench/out/learner_throughput.json "$out/" 2>/dev/null || true
fi
exit "$status"
