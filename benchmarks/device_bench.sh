#!/usr/bin/env bash
# The k-WTA speed bench on one CUDA GPU (written for the project's H200 runs).
#
#   run from the repository root, with $OUT an empty folder for the results:
#   OUT=/some/dir bash benchmarks/device_bench.sh
#
# Writes $OUT/bench-cuda-h200.json (float32) and $OUT/bench-cuda-h200-bf16.json (bf16
# autocast), each with the printed table beside it, and $OUT/pytest.txt: the CPU equality
# tests plus the triton kernel against the reference on the GPU itself. Copy the JSON
# files to results/ and the tables into docs/performance.md. About 4-6 minutes; each
# step has its own time limit, 560 s in all: one 10-minute device call.
set -uo pipefail  # no -e: every step runs and reports, whatever an earlier one did
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
# The H200 image's python3 holds torch, torchvision and triton; a local .venv wins.
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONUNBUFFERED=1
TAG=${TAG:-h200}

timeout 100 "$PY" - <<'PY' 2>&1 | tee "$OUT/gpu-check.txt"
# The triton kernel against the reference on the GPU, every dtype and awkward input.
import torch
from kwta_demo import kwta_triton as KT
from kwta_demo.kwta import kwta_threshold, kwta, kwta_reference
assert torch.cuda.is_available(), "no CUDA device"
bad, n = [], 0
g = torch.Generator(device="cuda").manual_seed(0)
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for rows, cols in ((1, 65536), (128, 65536), (16, 802816), (7, 4099), (64, 512)):
        for kind in ("randn", "ties", "special"):
            x = torch.randn(rows, cols, device="cuda", generator=g)
            if kind == "ties":
                x = (x * 4).round()
            if kind == "special":
                x[0, ::7] = float("nan"); x[-1, ::3] = float("inf"); x[-1, 1::5] = -0.0
            x = x.to(dtype)
            for gamma in (0.2, 0.1):
                k = max(1, int(gamma * cols))
                n += 1
                if not torch.equal(x >= KT.radix_threshold(x, k), x >= kwta_threshold(x, k)):
                    bad.append((str(dtype), rows, cols, kind, gamma))
print(f"triton radix select vs reference: {n} cases, {len(bad)} mismatches {bad[:5]}")
x = torch.randn(32, 64, 32, 32, device="cuda", requires_grad=True)
a, b = kwta(x, 0.1), kwta_reference(x, 0.1)
print("kwta auto == reference on CUDA:", torch.equal(a, b), "checked:", KT._checked)
PY

timeout 300 "$PY" -m kwta_demo bench --device cuda --output "$OUT/bench-cuda-$TAG.json" \
    2>&1 | tee "$OUT/bench-cuda-$TAG.txt"
timeout 100 "$PY" -m kwta_demo bench --device cuda --amp bf16 --repeats 5 \
    --workloads resnet18-32-forward-b128,resnet18-32-train-b128,tv-resnet18-224-forward-b16,attack-click \
    --output "$OUT/bench-cuda-$TAG-bf16.json" 2>&1 | tee "$OUT/bench-cuda-$TAG-bf16.txt"
timeout 60 "$PY" -m pytest -q -p no:cacheprovider tests/test_kwta_fast.py > "$OUT/pytest.txt" 2>&1
tail -3 "$OUT/pytest.txt"
