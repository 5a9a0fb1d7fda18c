#!/bin/bash
# Train the default's candidates side by side on one GPU, score each on the packed validation pairs, and pack the
# weights into OUT_DIR (see train/candidates.py for what to prepare). Usage:
#     bash train/candidates.sh OUT_DIR [minutes scale, default 1] [validation pairs, default 400]
# Candidates (all read the packed cache's corpus, task mixture 50 % image->report, guidance 1.5, batch 512):
#   A  the published default, warm, peak lr 6e-4 (the chain's)
#   C  the same at 1.5e-3 (sqrt batch scaling from the chain's batch 64)
#   B  6 x 256 from scratch: causal-LM pretraining, then the medim stage adapts it
# and R, the published default itself, scored on the same device and seed as the reference.
set -u
OUT=${1:?usage: bash train/candidates.sh OUT_DIR [scale] [pairs]}; SCALE=${2:-1}; PAIRS=${3:-400}
PREP=${CANDIDATES_DIR:-.candidates}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
if ls "$PREP"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$PREP"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:-}:$PWD
DEV=cpu; python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEV=cuda
MP=no; [ $DEV = cuda ] && MP=bf16
stamp "device $DEV"
python3 -c "import torch, transformers, diffusers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)"
python3 -m train.candidates check "$PREP/reference.npy" --device $DEV || { stamp "backbone check failed"; exit 3; }
python3 -m train.candidates unpack "$PREP/pack" --cache runs/candidates/cache --corpus runs/candidates/corpus || exit 4
N=$(python3 -c "import json; print(json.load(open('runs/candidates/corpus/corpus.json'))['n'])")
m() { python3 -c "print(round($1 * $SCALE, 3))"; }
COMMON="data.root=runs/candidates/corpus data.synthetic_n=$N logging.tensorboard=false optim.mixed_precision=$MP threads=4
 optim.batch_size=512 optim.max_steps=1000000 optim.ema_decay=0.999 eval.val_every=2000 eval.save_every=1000000
 eval.sample_every=0 sampler.guidance_scale=1.5"
MIX="diffusion.task_weights={joint: 0.25, report2image: 0.25, image2report: 0.5}"
BODY="model.backbone.num_hidden_layers=6 model.backbone.hidden_size=256 model.backbone.intermediate_size=704
 model.backbone.head_dim=64"
mkdir -p runs/logs
for c in A B C; do mkdir -p runs/cand$c; ln -sfn ../candidates/cache runs/cand$c/cache; done
cp -r assets/default/text_tokenizer assets/default/image_tokenizer runs/candB/
python3 -m train medim --config demo-cpu --init-from assets/default output_dir=runs/candA $COMMON "$MIX" \
  optim.lr=6e-4 optim.max_minutes=$(m 5.5) > runs/logs/A.log 2>&1 &
python3 -m train medim --config demo-cpu --init-from assets/default output_dir=runs/candC $COMMON "$MIX" \
  optim.lr=1.5e-3 optim.max_minutes=$(m 5.5) > runs/logs/C.log 2>&1 &
( python3 -m train pretrain --config demo-cpu output_dir=runs/candB $COMMON "$MIX" $BODY optim.lr=2e-3 \
    pretrain.max_minutes=$(m 1.25) \
  && python3 -m train medim --config demo-cpu output_dir=runs/candB $COMMON "$MIX" $BODY optim.lr=2e-3 \
    pretrain.max_minutes=$(m 1.25) optim.max_minutes=$(m 4.0) ) > runs/logs/B.log 2>&1 &
wait
stamp "training done"
score() {  # checkpoint, result path
  timeout 150 python3 -m benchmarks.sampler --checkpoint "$1" --corpus "$PREP/val$PAIRS" --pairs $PAIRS \
    --settings default --device $DEV --threads 4 --out "$2" > "${2%.md}.log" 2>&1
}
for c in A B C; do
  tail -c 400 runs/logs/$c.log | tr '\r' '\n' | tail -2
  [ -f runs/cand$c/medim/model.safetensors ] && score runs/cand$c/medim runs/cand$c/sampler.md &
done
mkdir -p runs/candR && score assets/default runs/candR/sampler.md &
wait
stamp "scoring done"
cp runs/candR/sampler.md "$OUT/R_sampler.md" 2>/dev/null
for c in A B C; do
  grep "\[sampler\]" runs/cand$c/sampler.log 2>/dev/null
  ( cd runs/cand$c && tar czf "$OUT/$c.tgz" --exclude=text_tokenizer --exclude=image_tokenizer medim logs \
      sampler.md sampler.json sampler.log train_config.yaml ../logs/$c.log 2>/dev/null )
done
grep "\[sampler\]" runs/candR/sampler.log 2>/dev/null
# files over 15 MB travel in parts: cat C.tgz.part* > C.tgz
for f in "$OUT"/*.tgz; do
  [ "$(stat -c %s "$f")" -gt 15000000 ] && split -b 15000000 -d "$f" "$f.part" && rm "$f"
done
ls -la "$OUT"; stamp "done"
