#!/usr/bin/env bash
# What only a CUDA GPU can measure, in one run: the CUDA k-WTA paths against the CPU
# reference (tests/test_kwta_cuda.py: Triton's radix select, kthvalue, topk, autocast),
# then `python -m kwta_demo bench --device cuda`. Writes into $OUT (default results/):
# test-kwta-cuda.txt and bench-cuda.json.
#
# Needs torch with CUDA, triton, torchvision, numpy, safetensors and pytest. WHEELS=DIR
# installs safetensors and pytest from a folder of wheels on a machine without a package
# index, made beforehand with:
#   pip download safetensors pytest --only-binary=:all: --python-version 3.10 \
#       --platform manylinux_2_17_x86_64 -d DIR
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results}"
mkdir -p "$out"
if [ -n "${WHEELS:-}" ]; then
  python -m pip install -q --no-index --find-links "$WHEELS" safetensors pytest
fi
python - <<'PY'
import importlib.util, sys
import torch
missing = [m for m in ("numpy", "safetensors", "pytest", "torchvision", "triton")
           if importlib.util.find_spec(m) is None]
if not torch.cuda.is_available() or missing:
    sys.exit(f"cannot run the CUDA checks: CUDA available {torch.cuda.is_available()}, "
             f"missing {missing or 'nothing'}")
print("torch", torch.__version__, "on", torch.cuda.get_device_name())
PY
# --noconftest: the shared fixtures need Pillow, which these tests do not use
status=0
python -m pytest -q -p no:cacheprovider --noconftest tests/test_kwta_cuda.py \
  > "$out/test-kwta-cuda.txt" 2>&1 || status=$?
tail -n 3 "$out/test-kwta-cuda.txt"
python -m kwta_demo bench --device cuda --output "$out/bench-cuda.json"
exit "$status"
