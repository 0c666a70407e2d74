#!/usr/bin/env bash
# The GPU check of the speed work, as one prepared script (run it on a machine with a CUDA device):
#   OTLAB_DATA=<folder with MNIST/raw> scripts/bench_gpu.sh
# 1. the fp16 path's tests and the CUDA-only tests (GradScaler on CUDA, autocast cache, AMP penalty recipe);
# 2. otlab vs the PyTorch-GAN scripts' loops at their networks, one lever at a time (batch 64);
# 3. precision (fp32 / bf16 / fp16) x torch.compile (CUDA graphs) at model=dcgan, batch 256.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q tests/test_fp16_cpu.py tests/test_precision_scope.py tests/test_trainer.py -k "fp16 or cuda or precision or autocast"
python scripts/bench_train.py --device cuda --nets peer --methods gan,wgan_gp --steps 200 --warmup 30 --repeats 2
python scripts/bench_train.py --device cuda --methods gan,wgan_gp --steps 100 --warmup 20 --repeats 1 --no-bf16 --precision-compare
