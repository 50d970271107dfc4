#!/usr/bin/env bash
# Robust-accuracy tables on the GPU machine: `python -m kwta_demo evaluate` with the full
# attack list for the checkpoints that travelled, inside a deadline; results back in $OUT.
# docs/reproduction.md ("Running the evaluation on the GPU machine") gives the exact
# `run` invocations. Limits that shape this script: one command <= 10 min; the working
# tree that travels <= 64 MiB (so at most two ResNet18 checkpoints per call: see `hold`);
# files back per call <= 8.
#
#   bash scripts/device_evaluate.sh run             # on the device (the default)
#   bash scripts/device_evaluate.sh prepare         # here: test-split tar + foolbox wheels
#   bash scripts/device_evaluate.sh hold NAME...    # here: move the other checkpoints out
#   bash scripts/device_evaluate.sh restore         # here: move them back
#
# `run` evaluates each model separately (a job that runs out of time loses only itself):
# first the main attacks on KWTA_EVAL_N images, then each slow attack on KWTA_EVAL_N_SLOW
# images, every job capped by a weighted share of the time left (main 4, slow 1; at least
# 30 s). Jobs that do not fit are skipped and listed in jobs.tsv. Returns to $OUT:
#   reproduction-TAG.json   the rows of every finished job, merged (scripts/reproduction_report.py)
#   eval-TAG.tar.gz         each job's evaluate JSON/markdown and log, jobs.tsv, nvidia-smi.txt
#   device_evaluate-TAG.log this script's log
#
# Environment (defaults in brackets): OUT; KWTA_EVAL_MODELS [every checkpoint folder
# present, in MODEL_NAMES order]; KWTA_EVAL_DATA [.dev/cifar10-test.tar.gz];
# KWTA_EVAL_DEADLINE_S [450]; KWTA_EVAL_N [1000]; KWTA_EVAL_N_SLOW [100]; KWTA_EVAL_SEED [0];
# KWTA_EVAL_EPS [0.031]; KWTA_EVAL_BATCH [250]; KWTA_EVAL_MAIN [see MAIN below];
# KWTA_EVAL_SLOW [see SLOW]; KWTA_EVAL_DEVICE [auto]; KWTA_EVAL_TAG [models joined by _];
# KWTA_EVAL_WORK [/tmp/kwta-eval]; KWTA_EVAL_LIMIT_CLEAN [all 10,000: for dry runs];
# KWTA_CHECKPOINTS [checkpoints]; PYTHON [python3].
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
CKPT=${KWTA_CHECKPOINTS:-checkpoints}
HELD=.dev/held-checkpoints
MODEL_ORDER="resnet18-relu resnet18-kwta-0.2 resnet18-kwta-0.1 alexnet-relu alexnet-kwta-0.2 alexnet-kwta-0.1"
# The report's PGD as its notebook ran it (corrected), the relative-step variant (report),
# the paper's PGD, the report's DeepFool and VGA, BPDA; then the expensive adaptive attacks.
MAIN_DEFAULT="pgd:corrected,pgd:report,pgd:paper,deepfool:paper,vga:paper,bpda:paper"
SLOW_DEFAULT="gradient-estimation:paper,cw:paper"
SHARED_TAR=${KWTA_CIFAR_TAR:-../shared/cifar10/cifar10-jpeg.tar.gz}
WHEELS="foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3"

present_models() {  # checkpoint folders present, in MODEL_NAMES order, comma-separated
  local out=()
  for m in $MODEL_ORDER; do [ -f "$CKPT/$m/config.json" ] && out+=("$m"); done
  (IFS=,; echo "${out[*]}")
}

run() {  # set up, then run_jobs with its output logged; the log comes back too
  : "${OUT:?OUT must name the folder whose files come back}"
  MODELS=${KWTA_EVAL_MODELS:-$(present_models)}
  [ -n "$MODELS" ] || { echo "no checkpoints under $CKPT and KWTA_EVAL_MODELS unset" >&2; return 3; }
  WORK=${KWTA_EVAL_WORK:-/tmp/kwta-eval}
  TAG=${KWTA_EVAL_TAG:-${MODELS//,/_}}
  rm -rf "$WORK" && mkdir -p "$WORK"
  local log="$WORK/device_evaluate-$TAG.log" rc
  run_jobs 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  cp "$log" "$OUT/"
  ls -l "$OUT"
  return "$rc"
}

run_jobs() {
  local data=${KWTA_EVAL_DATA:-.dev/cifar10-test.tar.gz}
  local deadline=${KWTA_EVAL_DEADLINE_S:-450} n=${KWTA_EVAL_N:-1000}
  local n_slow=${KWTA_EVAL_N_SLOW:-100} seed=${KWTA_EVAL_SEED:-0} eps=${KWTA_EVAL_EPS:-0.031}
  local batch=${KWTA_EVAL_BATCH:-250} main=${KWTA_EVAL_MAIN-$MAIN_DEFAULT}
  local slow=${KWTA_EVAL_SLOW-$SLOW_DEFAULT} work=$WORK tag=$TAG models=$MODELS start
  start=$(date +%s)
  echo "models: $models; n $n (slow $n_slow); seed $seed; eps $eps; deadline ${deadline}s"
  nvidia-smi > "$work/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$work/nvidia-smi.txt"
  export PYTHONUNBUFFERED=1 GIT_PYTHON_REFRESH=quiet  # foolbox imports GitPython; no git binary needed
  if ! "$PY" -c "import foolbox" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed" >&2; return 4; }
      export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    "$PY" -c "import foolbox; print('foolbox', foolbox.__version__)" \
      || { echo "foolbox missing: carry .whl (bash scripts/device_evaluate.sh prepare)" >&2; return 4; }
  fi
  [ -e "$data" ] || { echo "no data at $data (carry it; see prepare)" >&2; return 3; }

  # jobs: "weight|model|name|attacks|n", the main ones first, then each slow attack
  local jobs=() m a
  IFS=, read -ra model_list <<< "$models"
  if [ -n "$main" ]; then
    for m in "${model_list[@]}"; do jobs+=("4|$m|main|$main|$n"); done
  fi
  IFS=, read -ra slow_list <<< "$slow"
  for a in "${slow_list[@]}"; do
    for m in "${model_list[@]}"; do jobs+=("1|$m|${a%%:*}|$a|$n_slow"); done
  done
  printf 'model\tjob\tattacks\tn\tstatus\tseconds\n' > "$work/jobs.tsv"
  local i j weight_left weight name attacks jn left cap t0 rc status stem
  for ((i = 0; i < ${#jobs[@]}; i++)); do
    weight_left=0
    for j in "${jobs[@]:i}"; do weight_left=$((weight_left + ${j%%|*})); done
    IFS='|' read -r weight m name attacks jn <<< "${jobs[i]}"
    left=$((deadline - ($(date +%s) - start)))
    cap=$((left * weight / weight_left))
    [ "$cap" -ge 30 ] || cap=$((left < 30 ? left : 30))
    if [ "$cap" -lt 30 ]; then  # under 30 s a job cannot even load its model and data
      printf '%s\t%s\t%s\t%s\tskipped\t0\n' "$m" "$name" "$attacks" "$jn" >> "$work/jobs.tsv"
      echo "skip $m/$name: ${left}s left"
      continue
    fi
    echo "== $m/$name ($attacks, n $jn): up to ${cap}s of ${left}s left"
    # no dots in the stem: evaluate replaces a stem's last ".suffix" with .json
    stem="$work/eval-${m//./p}-$name"
    t0=$(date +%s)
    timeout -k 10 "$cap" "$PY" -m kwta_demo evaluate --models "$m" --attacks "$attacks" \
      --eps "$eps" --n "$jn" --seed "$seed" --batch-size "$batch" --data "$data" \
      ${KWTA_EVAL_DEVICE:+--device "$KWTA_EVAL_DEVICE"} \
      ${KWTA_EVAL_LIMIT_CLEAN:+--limit-clean "$KWTA_EVAL_LIMIT_CLEAN"} \
      --out "$stem" > "$stem.log" 2>&1
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status="error($rc)" ;; esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$name" "$attacks" "$jn" "$status" \
      "$(($(date +%s) - t0))" >> "$work/jobs.tsv"
    echo "   $status after $(($(date +%s) - t0))s"
    [ "$status" = ok ] || tr '\r' '\n' < "$stem.log" | tail -n 5
  done
  column -t -s $'\t' "$work/jobs.tsv" 2>/dev/null || cat "$work/jobs.tsv"

  if compgen -G "$work/eval-*.json" >/dev/null; then
    "$PY" scripts/reproduction_report.py "$work"/eval-*.json \
      --out "$OUT/reproduction-$tag.json" --markdown "$work/tables-$tag.md" \
      && cat "$work/tables-$tag.md"
  else
    echo "no job finished: nothing to merge"
  fi
  echo "total $(($(date +%s) - start))s"
  tar czf "$OUT/eval-$tag.tar.gz" --exclude "device_evaluate-$tag.log" -C "$work" .
  compgen -G "$work/eval-*.json" >/dev/null || return 5
}

prepare() {  # here: the test split alone (the only split evaluate reads) and the wheels
  mkdir -p .dev
  if [ ! -f .dev/cifar10-test.tar.gz ]; then
    local tmp
    tmp=$(mktemp -d)
    tar xzf "$SHARED_TAR" -C "$tmp" test && tar czf .dev/cifar10-test.tar.gz -C "$tmp" test
    rm -rf "$tmp"
  fi
  if ! compgen -G ".whl/foolbox-*.whl" >/dev/null; then
    # pure-Python wheels; the GPU image has numpy, scipy, requests, setuptools, typing-extensions
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl $WHEELS || return 1
  fi
  ls -l .dev/cifar10-test.tar.gz .whl
}

travel_size() {  # bytes that would travel: tracked + untracked-not-ignored files + carried
  { git ls-files -z --cached --others --exclude-standard; printf '%s\0' "$@"; } \
    | du -cb --apparent-size --files0-from=- 2>/dev/null | tail -1 | cut -f1
}

hold() {  # here: move every checkpoint folder not named out of the tree that travels
  [ $# -gt 0 ] || { echo "usage: $0 hold NAME..." >&2; return 2; }
  if compgen -G "$HELD/*" >/dev/null; then
    echo "$HELD is not empty: run '$0 restore' first" >&2; return 2
  fi
  mkdir -p "$HELD"
  local d name
  for d in "$CKPT"/*/; do
    name=$(basename "$d")
    [ -f "$d/config.json" ] || continue
    [[ " $* " == *" $name "* ]] || mv "$d" "$HELD/$name"
  done
  echo "travelling: $(ls "$CKPT" | tr '\n' ' ')"
  echo "held back:  $(ls "$HELD" | tr '\n' ' ')"
  local bytes
  bytes=$(travel_size .dev/cifar10-test.tar.gz .whl)
  echo "working tree + .dev/cifar10-test.tar.gz + .whl: $bytes bytes (limit 67108864)"
  [ "$bytes" -le 67108864 ] || { echo "too large to travel: hold more back" >&2; return 1; }
}

restore() {  # here: bring the held checkpoints back
  local d
  for d in "$HELD"/*/; do
    [ -d "$d" ] || continue
    [ -e "$CKPT/$(basename "$d")" ] && { echo "$CKPT/$(basename "$d") exists: not overwritten" >&2; return 1; }
    mv "$d" "$CKPT/"
  done
  echo "checkpoints: $(ls "$CKPT" | tr '\n' ' ')"
}

case "${1:-run}" in
  run) run ;;
  prepare) prepare ;;
  hold) shift; hold "$@" ;;
  restore) restore ;;
  *) echo "usage: $0 run|prepare|hold NAME...|restore" >&2; exit 2 ;;
esac
