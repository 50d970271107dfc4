#!/usr/bin/env bash
# Train the six shipped checkpoints on the GPU machine and bring them back in two calls.
# docs/training.md ("Training the shipped checkpoints on the GPU machine") gives the exact
# `run` invocations. Limits that shape this script: one command <= 10 min, files back per
# call <= 8, each <= 16 MiB, <= 64 MiB together; the six float16 checkpoints are ~95 MB.
#
#   bash scripts/device_train.sh train   # call 1: train everything, pack, return part 1
#   bash scripts/device_train.sh fetch   # call 2, at once (warm <= 30 s): return the rest
#   bash scripts/device_train.sh pack    # re-pack what $WORK holds (after a failed run)
#
# Environment: OUT (set by the device tool), KWTA_WORK (default /tmp/kwta-train),
# KWTA_TRAIN_DATA (default .dev/cifar10-jpeg.tar.gz, carried), KWTA_DEADLINE_S (default
# 450: seconds the Python run may take; the whole command ends ~1 min after), PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."

WORK=${KWTA_WORK:-/tmp/kwta-train}
DATA=${KWTA_TRAIN_DATA:-.dev/cifar10-jpeg.tar.gz}
DEADLINE=${KWTA_DEADLINE_S:-450}
PY=${PYTHON:-python3}
PART_BYTES=15M     # each returned file stays under the 16 MiB limit
FIRST_PARTS=4      # 4 x 15 MiB + the small files stay under the 64 MiB per call
: "${OUT:?OUT must name the folder whose files come back}"

pack() {
  # Small files (configs, cards, metrics, summaries, chart, log) in one archive; the
  # whole checkpoint tree, weights included, in one tar split into 15 MiB parts. The
  # tar lists AlexNet first, then ResNet18, so part 1 alone already holds whole models.
  cd "$WORK" || return 1
  local members=()
  for name in alexnet-relu alexnet-kwta-0.2 alexnet-kwta-0.1 \
              resnet18-relu resnet18-kwta-0.2 resnet18-kwta-0.1; do
    [ -d "checkpoints/$name" ] && members+=("checkpoints/$name")
  done
  [ -f checkpoints/SHA256SUMS ] && members+=(checkpoints/SHA256SUMS)
  rm -f weights.tar weights.tar.part-* weights.tar.sha256
  if [ ${#members[@]} -gt 0 ]; then
    tar cf weights.tar "${members[@]}"
    sha256sum weights.tar > weights.tar.sha256
    split -b "$PART_BYTES" -d -a 2 weights.tar weights.tar.part-
    rm -f weights.tar
  fi
  local small=()
  for f in summary.json summary.md training_curves.png train.log nvidia-smi.txt \
           weights.tar.sha256 checkpoints findings; do
    [ -e "$f" ] && small+=("$f")
  done
  tar czf results.tar.gz --exclude='*.safetensors' "${small[@]}"
  echo "packed: $(ls weights.tar.part-* 2>/dev/null | wc -l) weight parts"
  cat weights.tar.sha256 2>/dev/null
  cd - >/dev/null || return 1
}

send() {  # copy the named files of $WORK to $OUT
  for f in "$@"; do [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"; done
  ls -l "$OUT"
  du -cb "$OUT"/* | tail -1
}

case "${1:-train}" in
  train)
    shift || true
    rm -rf "$WORK" && mkdir -p "$WORK"
    nvidia-smi > "$WORK/nvidia-smi.txt" 2>&1 || true
    export PYTHONUNBUFFERED=1
    # The Python run watches its own deadline; `timeout` is the backstop that still
    # leaves time to pack and return whatever was finished.
    timeout -k 10 $((DEADLINE + 60)) "$PY" scripts/device_train.py --data "$DATA" \
      --work "$WORK" --deadline-s "$DEADLINE" "$@" 2>&1 | tee "$WORK/train.log"
    rc=${PIPESTATUS[0]}
    echo "device_train.py exit status: $rc"
    pack
    parts=$(cd "$WORK" && ls weights.tar.part-* 2>/dev/null | head -n "$FIRST_PARTS")
    # shellcheck disable=SC2086
    send results.tar.gz train.log $parts
    left=$(cd "$WORK" && ls weights.tar.part-* 2>/dev/null | tail -n +"$((FIRST_PARTS + 1))")
    echo "left for 'fetch': ${left:-nothing}"
    exit "$rc"
    ;;
  fetch)
    [ -d "$WORK" ] || { echo "no $WORK: this is a fresh machine, the trained files are gone" >&2; exit 3; }
    left=$(cd "$WORK" && ls weights.tar.part-* 2>/dev/null | tail -n +"$((FIRST_PARTS + 1))")
    # shellcheck disable=SC2086
    send weights.tar.sha256 $left
    ;;
  pack)
    pack
    ;;
  *)
    echo "usage: $0 train|fetch|pack [device_train.py options]" >&2
    exit 2
    ;;
esac
