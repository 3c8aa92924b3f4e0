#!/usr/bin/env bash
# Runs every CUDA path of ecgaug once and prints its figures (one GPU, under 8 minutes on an H100):
#   1. bench_sampling at batch 512 and 1024 (published-size model, bf16 autocast): ECGs/s at the default steps;
#   2. a short GPU training run, bf16 autocast: VAE 300 steps, then 200 UNet steps (steps/s, ECGs/s);
#   3. a small cache build through torchrun --nproc_per_node 1 with the model of step 2;
#   4. reading that cache through AugmentedDataset + ClassBalancedSampler on this host.
# Data: a generated PTB-XL-format fixture (tests/ptbxl_fixture.py), so nothing is downloaded.
#
#   bash benchmarks/gpu_check.sh [WORK_DIR]          (needs the project installed: pip install -e ".[dev]")
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-runs/gpu_check}
rm -rf "$WORK" && mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MPLBACKEND=Agg
python - <<'EOF'
import torch
assert torch.cuda.is_available(), "gpu_check.sh needs a CUDA GPU"
print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF

echo "== 1. sampling throughput (published size, bf16 autocast, the default sampler and steps)"
for batch in 512 1024; do
  python benchmarks/bench_sampling.py --device cuda --batch_size "$batch" --component_batch_sizes "$batch" --ddpm_steps 100
done

echo "== 2. GPU training, bf16 autocast"
python -c "import sys; sys.path.insert(0, 'tests'); from ptbxl_fixture import make_ptbxl; make_ptbxl('$WORK/ptbxl', num_records=2000)"
start=$(date +%s.%N)
ecgaug train vae --ptbxl "$WORK/ptbxl" --folds 1-7 --size base --output_dir "$WORK/train" --max_steps 300 --batch_size 256 \
  --learning_rate 1e-3 --warmup_steps 20 --checkpoint_every 300 --device cuda --mixed_precision bf16
vae_end=$(date +%s.%N)
ecgaug train unet --ptbxl "$WORK/ptbxl" --folds 1-7 --size base --vae "$WORK/train" --output_dir "$WORK/train" --max_steps 200 \
  --batch_size 512 --learning_rate 1e-3 --warmup_steps 20 --checkpoint_every 200 --device cuda --mixed_precision bf16 --name gpu-check
unet_end=$(date +%s.%N)
python - "$start" "$vae_end" "$unet_end" "$WORK/train" <<'EOF'
import json, sys
start, vae_end, unet_end, out = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
vae = json.load(open(f"{out}/vae_summary.json"))
unet = json.load(open(f"{out}/pipeline/model_index.json"))["training"]["unet"]
for name, record, batch in (("vae", vae, 256), ("unet", unet, 512)):
    steps_per_s = record["steps"] / record["wall_seconds"]
    print(f"train {name}: {record['steps']} steps in {record['wall_seconds']:.1f} s: {steps_per_s:.1f} steps/s, {steps_per_s * batch:.0f} ECGs/s (bf16)")
print(f"train wall time including data loading: vae {vae_end - start:.0f} s, unet {unet_end - vae_end:.0f} s")
EOF

echo "== 3. cache build through torchrun (1 process, GPU)"
start=$(date +%s.%N)
torchrun --nproc_per_node 1 -m ecgaug cache build --ptbxl "$WORK/ptbxl" --output_dir "$WORK/cache" --model "$WORK/train/pipeline" \
  --strategy target --target_count 1500 --shard_size 512 --no_progress
end=$(date +%s.%N)
ecgaug cache verify "$WORK/cache"
python - "$WORK/cache" "$start" "$end" <<'EOF'
import sys
from ecgaug.augment.cache import SyntheticCache
cache = SyntheticCache(sys.argv[1])
print(f"cache build: {len(cache)} ECGs in {float(sys.argv[3]) - float(sys.argv[2]):.1f} s (model loading and planning included)")
EOF

echo "== 4. reading the cache through AugmentedDataset"
python - "$WORK" <<'EOF'
import sys, time
import torch
from torch.utils.data import DataLoader
from ecgaug import PTBXL, AugmentedDataset, ClassBalancedSampler
work = sys.argv[1]
train = AugmentedDataset(PTBXL(f"{work}/ptbxl", "train"), f"{work}/cache")
sampler = ClassBalancedSampler.from_dataset(train, max_synthetic_fraction=0.5, batch_size=256)
loader = DataLoader(train, batch_size=256, sampler=sampler, num_workers=4, pin_memory=True)
start, seen = time.perf_counter(), 0
for signals, targets in loader:
    signals = signals.cuda(non_blocking=True)
    seen += len(signals)
torch.cuda.synchronize()
print(f"AugmentedDataset -> GPU: {seen} items ({train.synthetic_mask.sum()} synthetic in the dataset) at {seen / (time.perf_counter() - start):.0f} items/s")
EOF
echo "gpu_check: done"
