"""`raysr bench`: its flags and dispatch (the benchmarks themselves are the sibling modules)."""

from __future__ import annotations

import argparse
from pathlib import Path

_WHAT = ["forward", "engine", "seams", "pipeline", "official", "memory", "video", "post", "scaling", "items", "all"]


def _height_width(text: str) -> tuple[int, int]:
    """``WxH`` → (H, W)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 1920x1080, got {text!r}") from None
    return height, width


def _cmd_bench(args: argparse.Namespace) -> int:
    from raysr.bench import (bench_engine, bench_forward, bench_items, bench_memory, bench_pipeline, bench_post,
                             bench_scaling, bench_seams, bench_video_path, print_results, write_json)

    def given(**values):  # only what the user set: the defaults live in raysr.bench
        return {key: value for key, value in values.items() if value is not None}

    common = given(model=args.model, weights_dir=args.weights_dir, tile=args.tile, precision=args.precision)
    pipeline = given(images=args.images, size=args.size, repeats=args.repeats, bench_dir=args.bench_dir)
    memory = given(size=args.big_size, bench_dir=args.bench_dir)
    video = given(clip=args.clip, model=args.video_model, repeats=args.repeats, weights_dir=args.weights_dir)
    sections = {}
    if args.what == "forward":
        sections["forward"] = bench_forward(**given(model=args.model, size=args.input, batch=args.batch,
                                                    precision=args.precision, repeats=args.repeats,
                                                    weights_dir=args.weights_dir, compile=args.compile,
                                                    compile_mode=args.compile_mode))
    if args.what in ("engine", "all"):
        sections["engine"] = bench_engine(**given(size=args.size, repeats=args.repeats, weights_dir=args.weights_dir,
                                                  tile=args.tile))
    if args.what in ("seams", "all"):
        sections["seams"] = bench_seams(**common, **given(size=args.size))
    if args.what in ("pipeline", "official", "all"):
        sections["pipeline"] = bench_pipeline(**common, **pipeline, **given(compile=args.compile), with_run=not args.no_run,
                                              with_official=args.what != "pipeline")
    if args.what in ("memory", "all"):
        sections["memory"] = bench_memory(**common, **memory, with_official=not args.no_official)
    if args.what in ("video", "all"):
        sections["video"] = bench_video_path(**video)
    if args.what in ("post", "all"):
        sections["post"] = bench_post(**given(size=args.size, repeats=args.repeats))
    if args.what == "scaling":  # not in `all`: it starts two Ray clusters
        sections["scaling"] = bench_scaling(**common, **given(images=args.images, size=args.size, actors=args.actors,
                                                              address=args.address))
    if args.what == "items":  # not in `all`: minutes of Ray tasks, no model
        sections["items"] = bench_items(**given(items=args.images, side=args.size, address=args.address))
    results = sections if len(sections) > 1 else next(iter(sections.values()))
    print_results(results)
    if args.json:
        write_json(results, args.json)
    return 0


def add_bench_command(commands: argparse._SubParsersAction) -> None:
    """Add `raysr bench` to the `raysr` command's subcommands."""
    bench = commands.add_parser("bench", help="speed and memory figures for this machine (table + JSON)")
    bench.add_argument("what", choices=_WHAT,
                       help="engine: bare forward + GEMM peak; seams: tiled vs untiled output per "
                            "tile_pad/overlap; pipeline: bare vs `upscale` vs `run`; official: "
                            "pipeline + the official RealESRGANer loop; memory: peak memory of one big image; "
                            "video: segment path vs a sequential loop; post: one core's time per item of colour, "
                            "metrics and write; scaling: `run` with 1 model actor vs N; "
                            "items: `run` and its resume over many tiny images, no model time; "
                            "all: everything but scaling and items")
    bench.add_argument("--model", help="image model, registry name or weights path (default RealESRGAN_x4plus)")
    bench.add_argument("--video-model", help="model for `video` (default realesr-animevideov3)")
    bench.add_argument("--clip", type=Path, help="video for `video` (default: a generated clip)")
    bench.add_argument("--images", type=int, help="images for pipeline/official (default 4), scaling (default 8) "
                                                         "and items (default 20000)")
    bench.add_argument("--size", type=int,
                       help="input side in px (engine and scaling default 128, pipeline 256, seams and post 512, "
                            "items 32)")
    bench.add_argument("--big-size", type=int, help="input side for `memory` (default 2048: 2048² → 8192²)")
    bench.add_argument("--tile", type=int, help="tile size for raysr and the official loop (default 128)")
    bench.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"], help="raysr's precision (default auto)")
    bench.add_argument("--repeats", type=int, help="timed repeats of the bare forward and video runs")
    bench.add_argument("--no-run", action="store_true", help="skip `raysr run` (starts Ray)")
    bench.add_argument("--no-official", action="store_true", help="`memory` without the official loop")
    bench.add_argument("--bench-dir", type=Path, help="official peer venv home (default $RAYSR_BENCH_DIR or "
                                                      "~/.cache/raysr/bench-official)")
    bench.add_argument("--input", type=_height_width, help="`forward`: input WxH, e.g. 1920x1080 (default 512x512)")
    bench.add_argument("--batch", type=int, help="`forward`: inputs per call (default 1)")
    bench.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the model: `forward` times both (default on), "
                            "`pipeline`/`official` run raysr compiled (default off)")
    bench.add_argument("--compile-mode", help="`forward`: torch.compile mode of the compiled variant "
                                              "(default: torch's; e.g. max-autotune-no-cudagraphs)")
    bench.add_argument("--actors", type=int, help="`scaling`: model actors of the second run "
                                                  "(default: the cluster's GPUs, else this machine's cores)")
    bench.add_argument("--address", help="`scaling`, `items`: a running Ray cluster (default: a local "
                                                 "multi-node one / a local Ray)")
    bench.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    bench.add_argument("--weights-dir", type=Path)
    bench.set_defaults(func=_cmd_bench)
