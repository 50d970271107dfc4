#!/usr/bin/env bash
# Put the files returned by the two device calls (scripts/device_train.sh train, then
# fetch) back together: checks the weights tar's checksum, unpacks the checkpoints into
# checkpoints/ and the summaries into runs/device-train/, then loads every checkpoint
# strictly (which also verifies checkpoints/SHA256SUMS).
#
#   bash scripts/unpack_device_train.sh FILES_AT_OF_CALL_1 [FILES_AT_OF_CALL_2]
#
# KWTA_UNPACK_ROOT (default: the checkout) is where checkpoints/ and runs/device-train/ go.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 DIR_OF_CALL_1 [DIR_OF_CALL_2]" >&2; exit 2; }
root=${KWTA_UNPACK_ROOT:-$PWD}
dirs=()
for dir in "$@"; do dirs+=("$(cd "$dir" && pwd)"); done

stage=$root/.dev/kwta-train
rm -rf "$stage" && mkdir -p "$stage" "$root/runs/device-train"
for dir in "${dirs[@]}"; do
  cp "$dir"/* "$stage"/
done
cat "$stage"/weights.tar.part-* > "$stage/weights.tar"
(cd "$stage" && sha256sum -c weights.tar.sha256)
tar xzf "$stage/results.tar.gz" -C "$root/runs/device-train"
tar xf "$stage/weights.tar" -C "$root"  # checkpoints/<name>/... and checkpoints/SHA256SUMS
rm "$stage/weights.tar"

PY=${PYTHON:-python}
KWTA_UNPACK_ROOT=$root "$PY" - <<'EOF'
import json
import os
from pathlib import Path
import kwta_demo

for name in kwta_demo.MODEL_NAMES:
    folder = Path(os.environ["KWTA_UNPACK_ROOT"]) / "checkpoints" / name
    if not folder.is_dir():
        print(f"{name}: MISSING")
        continue
    model = kwta_demo.load_model(folder, device="cpu")  # strict, manifest-checked
    m = json.loads((folder / "metrics.json").read_text())
    print(f"{name}: loads ({model.config.activation}, gamma={model.config.gamma}); "
          f"clean accuracy {100 * m['clean_accuracy']:.2f}% on {m['test_images']} test images")
EOF
echo "summaries: $root/runs/device-train/summary.md and training_curves.png"
