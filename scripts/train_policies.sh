#!/usr/bin/env bash
# Reproduce the shipped end-to-end checkpoints (policies/checkpoints/{cnn,gru,transformer}.pt).
#
# Each step is one `reflexdrive train` command (recorded inside the checkpoint it writes;
# a fine-tune also records its --init's command under meta["init"]). A step whose
# checkpoint exists is skipped; one killed midway continues with the same command plus
# --resume (its expert data under runs/imit/<name>/data is reused).
# Measured on a busy 2-core CPU box: about 30 min per from-scratch step, 10-15 min per
# fine-tune, ~2 h in all when two steps share the cores.
#
#   bash scripts/train_policies.sh            # all three, then copy them into policies/checkpoints
#   STEPS="cnn" bash scripts/train_policies.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RD=".venv/bin/reflexdrive"
OUT="${OUT:-runs/imit}"
STEPS="${STEPS:-cnn gru transformer}"
COMMON=(--target policy --method dagger --batch-size 128 --envs 256 --sequence-length 32
        --dagger-epochs 1 --checkpoint-every 250 --command-inputs shuffle --latency fixed:0
        --mode lockstep --device cpu --threads 1)
# from scratch: behaviour cloning on 800 expert episodes, then 2 DAgger rounds
SCRATCH=(--episodes 800 --epochs 3 --lr 0.001 --dagger-rounds 2 --dagger-episodes 200
         --dagger-beta 0.5 --seed 0
         --scenario-weights highway=0.4,lead-brake=0.2,cut-in=0.2,stopped-vehicle=0.2)
# fine-tune: 3 more DAgger rounds, weighted towards the lead-brake hazard
FINE=(--episodes 200 --epochs 0 --lr 0.0003 --dagger-rounds 3 --dagger-episodes 300
      --dagger-beta 0.3)
FINE_MIX=highway=0.35,lead-brake=0.35,cut-in=0.1,stopped-vehicle=0.2

train() {   # skipped when the step's checkpoint (OUT/<name>/<policy>.pt) exists
  local args=("$@") policy out
  for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in --policy) policy="${args[i+1]}" ;; --out) out="${args[i+1]}" ;; esac
  done
  [ -f "$out/$policy.pt" ] && { echo "exists: $out/$policy.pt"; return; }
  "$RD" train "${COMMON[@]}" "$@"
}

for step in $STEPS; do
  case "$step" in
    cnn)
      train --policy cnn "${SCRATCH[@]}" --out "$OUT/cnn-l"
      train --policy cnn "${FINE[@]}" --seed 1 --scenario-weights "$FINE_MIX" \
            --init "$OUT/cnn-l/cnn.pt" --out "$OUT/cnn-f"
      train --policy cnn "${FINE[@]}" --seed 2 \
            --scenario-weights highway=0.3,lead-brake=0.45,cut-in=0.1,stopped-vehicle=0.15 \
            --init "$OUT/cnn-f/cnn.pt" --out "$OUT/cnn-f2"
      cp "$OUT/cnn-f2/cnn.pt" policies/checkpoints/cnn.pt ;;
    gru)   # warm start from the first cnn fine-tune (the gru starts driving as that cnn)
      [ -f "$OUT/cnn-f/cnn.pt" ] || STEPS=cnn "$0"
      train --policy gru "${FINE[@]}" --seed 1 --scenario-weights "$FINE_MIX" \
            --init "$OUT/cnn-f/cnn.pt" --out "$OUT/gru-w"
      train --policy gru "${FINE[@]}" --seed 2 \
            --scenario-weights highway=0.3,lead-brake=0.45,cut-in=0.1,stopped-vehicle=0.15 \
            --init "$OUT/gru-w/gru.pt" --out "$OUT/gru-w2"
      cp "$OUT/gru-w2/gru.pt" policies/checkpoints/gru.pt ;;
    transformer)
      train --policy transformer "${SCRATCH[@]}" --out "$OUT/transformer-l"
      train --policy transformer "${FINE[@]}" --seed 1 --scenario-weights "$FINE_MIX" \
            --init "$OUT/transformer-l/transformer.pt" --out "$OUT/transformer-f"
      cp "$OUT/transformer-f/transformer.pt" policies/checkpoints/transformer.pt ;;
    *) echo "unknown step '$step': allowed values are cnn, gru, transformer" >&2; exit 2 ;;
  esac
done
