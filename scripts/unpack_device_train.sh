#!/usr/bin/env bash
# Put the files returned by the two device calls (scripts/device_train.sh train, then
# fetch) back together: checks the weights tar's checksum, unpacks it into a staging
# folder, loads every checkpoint there strictly, and only then moves the ones that load
# into checkpoints/ (with SHA256SUMS when the tar was complete). The summaries go to
# runs/device-train/. With only call 1's folder, the models complete in it are kept.
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
rm -rf "$stage" && mkdir -p "$stage/extract" "$root/runs/device-train" "$root/checkpoints"
for dir in "${dirs[@]}"; do
  cp "$dir"/* "$stage"/
done
tar xzf "$stage/results.tar.gz" -C "$root/runs/device-train"
[ -f "$stage/weights.tar.sha256" ] || cp "$root/runs/device-train/weights.tar.sha256" "$stage/"
cat "$stage"/weights.tar.part-* > "$stage/weights.tar"
complete=1
if ! (cd "$stage" && sha256sum -c weights.tar.sha256); then
  complete=0
  echo "WARNING: the weights tar is incomplete or damaged; keeping only checkpoints that load" >&2
fi
tar xf "$stage/weights.tar" -C "$stage/extract" || [ "$complete" = 0 ]
rm "$stage/weights.tar"

PY=${PYTHON:-python}
STAGE=$stage/extract ROOT=$root COMPLETE=$complete "$PY" - <<'EOF'
import json
import os
import shutil
from pathlib import Path

import kwta_demo
from kwta_demo.checkpoints import CheckpointError

stage, root = Path(os.environ["STAGE"]) / "checkpoints", Path(os.environ["ROOT"]) / "checkpoints"
complete = os.environ["COMPLETE"] == "1"
ok = []
for name in kwta_demo.MODEL_NAMES:
    folder = stage / name
    if not folder.is_dir():
        print(f"{name}: MISSING")
        continue
    try:
        model = kwta_demo.load_model(folder, device="cpu")  # strict; manifest-checked when present
    except CheckpointError as e:
        print(f"{name}: DOES NOT LOAD ({e})")
        continue
    m = json.loads((folder / "metrics.json").read_text())
    print(f"{name}: loads ({model.config.activation}, gamma={model.config.gamma}); "
          f"clean accuracy {100 * m['clean_accuracy']:.2f}% on {m['test_images']} test images")
    ok.append(name)
for name in ok:
    shutil.rmtree(root / name, ignore_errors=True)
    shutil.move(str(stage / name), str(root / name))
if complete and (stage / "SHA256SUMS").is_file() and len(ok) == len(kwta_demo.MODEL_NAMES):
    shutil.copy(stage / "SHA256SUMS", root / "SHA256SUMS")
    for name in ok:
        kwta_demo.load_model(root / name, device="cpu")  # the manifest covers them in place
    print(f"all {len(ok)} checkpoints in {root}, manifest verified")
else:
    print(f"{len(ok)} checkpoints moved to {root}; no manifest copied (incomplete set): "
          "run python -c 'from kwta_demo.checkpoints import write_manifest; "
          "write_manifest(\"checkpoints\")' once all six are there")
EOF
echo "summaries: $root/runs/device-train/summary.md and training_curves.png"
