"""The `raysr` command: parse arguments, call the package, print results. No logic here."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from raysr import __version__


def _engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", type=int, help="tile size in input px (default: auto from free memory)")
    parser.add_argument("--tile-pad", type=int, help="context px around each tile")
    parser.add_argument("--tile-overlap", type=int, help="cross-fade px between tiles")
    parser.add_argument("--tile-batch", type=int, help="tiles per forward pass")
    parser.add_argument("--pre-pad", type=int, help="reflect padding around the image")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--outscale", type=float, help="final scale (default: the model's)")
    parser.add_argument("--alpha", choices=["model", "classical"], help="how alpha is upscaled")
    parser.add_argument("--denoise-strength", type=float, help="realesr-general-x4v3 only, 0..1")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="torch.compile the model (pays off with a fixed --tile and long runs)")


def _engine_options(args: argparse.Namespace):
    from raysr.engine import EngineOptions

    given = {
        key: getattr(args, key)
        for key in ("tile", "tile_pad", "tile_overlap", "tile_batch", "pre_pad", "precision",
                    "device", "outscale", "alpha", "denoise_strength", "compile")
        if getattr(args, key, None) is not None
    }
    return EngineOptions(**given)


def _cmd_upscale(args: argparse.Namespace) -> int:
    from raysr.models.load import load_model
    from raysr.quick import upscale_path

    options = _engine_options(args)
    model = load_model(args.model, args.weights_dir, denoise_strength=options.denoise_strength,
                       scale=args.scale)
    report = upscale_path(
        args.input, args.output, model, options, fmt=args.format, quality=args.quality,
        on_error=lambda line: print(f"error: {line}", file=sys.stderr), temporal_strength=args.temporal_strength,
        force=args.force,
    )
    skipped = f"{report.skipped} skipped (done before with these settings; --force redoes them), " if report.skipped else ""
    print(f"{report.ok} upscaled, {skipped}{len(report.failures)} failed -> {args.output}")
    return 1 if report.failures else 0


def _cmd_run(args: argparse.Namespace) -> int:
    from raysr.job.run import run_job
    from raysr.job.spec import load_spec

    overrides = {"resume": args.resume, "force": True if args.force else None,
                 "retry_failed_only": True if args.retry_failed else None}
    spec = load_spec(args.job, **overrides)
    report = run_job(spec, address=args.address, dry_run=args.dry_run)
    if report.dry_run:
        from raysr.job.estimate import format_estimates

        counts = ", ".join(f"{count} {status}" for status, count in sorted(report.counts.items()))
        print(f"dry run: {report.listed} inputs: {counts}")
        if report.estimates:
            print(format_estimates(report.estimates))
        if report.actors:
            print(f"model actors: {report.actors}")
        return 0
    print(report.line())
    if report.missing:
        print(f"error: {len(report.missing)} listed inputs have no manifest row:", file=sys.stderr)
        for uri in report.missing[:20]:
            print(f"  {uri}", file=sys.stderr)
    elif report.counts["error"]:
        failed = report.counts["error"]
        print(f"{failed} item{'s' if failed != 1 else ''} failed; see `raysr manifest summary "
              f"{report.manifest_uri}`, or `raysr report {report.manifest_uri}` for a page of them", file=sys.stderr)
    return report.exit_code


def _cmd_submit(args: argparse.Namespace) -> int:
    from raysr.job.spec import load_spec
    from raysr.submit import relative_local_paths, submit_job, wait_for_job

    for path in relative_local_paths(load_spec(args.job)):
        print(f"warning: {path!r} is a relative local path; on the cluster it resolves inside the job's "
              "working dir, which holds only the spec: use s3:// or an absolute path on shared storage",
              file=sys.stderr)
    job_id = submit_job(args.job, args.address, pip=args.runtime_env_pip, image=args.image,
                        install=not args.no_install)
    print(job_id)
    if not args.wait:
        return 0
    state = wait_for_job(job_id, args.address, on_change=lambda s: print(f"{s.job_id}: {s.status}", file=sys.stderr))
    if state.status != "SUCCEEDED":
        print(f"{state.message}\nlogs: raysr logs {job_id} --address {args.address or '$RAY_API_SERVER_ADDRESS'}",
              file=sys.stderr)
    return 0 if state.status == "SUCCEEDED" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    from raysr.submit import job_state

    state = job_state(args.job_id, args.address)
    print(f"{state.job_id}: {state.status}")
    if state.message:
        print(state.message)
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from raysr.submit import follow_logs, job_logs

    if not args.follow:
        print(job_logs(args.job_id, args.address), end="")
        return 0
    for chunk in follow_logs(args.job_id, args.address):
        print(chunk, end="", flush=True)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from raysr.submit import stop_job

    stopping = stop_job(args.job_id, args.address)
    print(f"{args.job_id}: {'stop requested' if stopping else 'already finished'}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from raysr.job.spec import load_spec
    from raysr.job.validate import validate_job

    report = validate_job(load_spec(args.job), sample=args.sample, seed=args.seed,
                          compare_models=args.compare or None)
    print(report.to_text())
    return 0


def _cmd_manifest_summary(args: argparse.Namespace) -> int:
    from raysr.manifest import find_manifest
    from raysr.report.summary import format_summary, read_latest_run, summarize

    latest, runs = read_latest_run(find_manifest(args.path))
    print(format_summary(summarize(latest, runs=runs)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from raysr.manifest import find_manifest
    from raysr.report import write_report

    given = {key: getattr(args, key) for key in ("sample", "thumb_px", "crop_px") if getattr(args, key) is not None}
    path = write_report(find_manifest(args.path), args.out, **given)  # defaults live in write_report's signature
    print(f"report written to {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raysr", description=__doc__.split(":")[0])
    parser.add_argument("--version", action="version", version=f"raysr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    upscale = commands.add_parser("upscale", help="upscale one image or a folder on this machine")
    upscale.add_argument("input", type=Path)
    upscale.add_argument("output", type=Path)
    upscale.add_argument("--model", "-m", required=True, help="registry name or weights path")
    upscale.add_argument("--scale", type=int, help="factor for classical models (bicubic, lanczos, area)")
    upscale.add_argument("--format", default="png", choices=["png", "jpg", "webp", "tiff"])
    upscale.add_argument("--quality", type=int, default=95, help="jpg/webp quality")
    upscale.add_argument("--temporal-strength", type=float, default=0.0,
                         help="videos: blend each frame with the flow-warped previous output (0 off … 1)")
    upscale.add_argument("--weights-dir", type=Path)
    upscale.add_argument("--force", action="store_true",
                         help="redo images whose outputs a run with the same settings already wrote")
    _engine_args(upscale)
    upscale.set_defaults(func=_cmd_upscale)

    from raysr.weights.cli import add_weights_command  # beside the resolver it drives

    add_weights_command(commands)
    run = commands.add_parser("run", help="run a job spec on Ray (embedded locally, or --address)")
    run.add_argument("job", type=Path)
    run.add_argument("--address", help="Ray cluster address (default: start Ray on this machine)")
    run.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                     help="skip items already done with the same input, model and settings (default on)")
    run.add_argument("--force", action="store_true", help="reprocess every item")
    run.add_argument("--retry-failed", action="store_true", help="reprocess only items whose last row is an error")
    run.add_argument("--dry-run", action="store_true", help="list what would be processed and skipped")
    run.set_defaults(func=_cmd_run)

    address_help = "the head's job server, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS)"
    submit = commands.add_parser("submit", help="run a job spec on a remote Ray cluster (Ray's job API)")
    submit.add_argument("job", type=Path)
    submit.add_argument("--address", help=address_help)
    install = submit.add_mutually_exclusive_group()
    install.add_argument("--runtime-env-pip", action="append", metavar="SPEC",
                         help="pip requirement installing raysr on the cluster (repeatable; default raysr==VERSION)")
    install.add_argument("--image", help="container image with raysr inside (Ray's image_uri runtime env)")
    install.add_argument("--no-install", action="store_true", help="install nothing: the cluster already has raysr")
    submit.add_argument("--wait", action="store_true", help="wait for the job to end; exit 1 unless it succeeded")
    submit.set_defaults(func=_cmd_submit)
    for name, func, text in (("status", _cmd_status, "a submitted job's status"),
                             ("logs", _cmd_logs, "a submitted job's driver output"),
                             ("stop", _cmd_stop, "stop a submitted job")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job_id")
        sub.add_argument("--address", help=address_help)
        if name == "logs":
            sub.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
        sub.set_defaults(func=func)

    validate = commands.add_parser("validate", help="degrade a sample, restore it, score models vs bicubic")
    validate.add_argument("job", type=Path)
    validate.add_argument("--sample", type=int, help="items to sample (default: the spec's validate.sample)")
    validate.add_argument("--seed", type=int, help="sampling and degradation seed")
    validate.add_argument("--compare", action="append", help="another model to score (repeatable)")
    validate.set_defaults(func=_cmd_validate)

    manifest = commands.add_parser("manifest", help="read a job's manifest")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True)
    summary = manifest_commands.add_parser("summary", help="counts, throughput, failures, slowest items")
    summary.add_argument("path", help="manifest folder or s3:// prefix, or the job's output folder")
    summary.set_defaults(func=_cmd_manifest_summary)

    report = commands.add_parser("report", help="one self-contained HTML report of a job's manifest")
    report.add_argument("path", help="manifest folder or s3:// prefix, or the job's output folder")
    report.add_argument("--out", type=Path, default=Path("report.html"), help="HTML file to write")
    report.add_argument("--sample", type=int,
                        help="images to show before/after (default 6), and as many videos on one frame each")
    report.add_argument("--thumb-px", type=int, help="thumbnail long side in px")
    report.add_argument("--crop-px", type=int, help="side of the 1:1 before/after crops in px")
    report.set_defaults(func=_cmd_report)

    from raysr.bench.cli import add_bench_command  # bench's many flags live beside the benchmarks

    add_bench_command(commands)
    return parser


def _log_to_stderr() -> None:
    """raysr's own log lines on stderr, plain, from INFO up: the job's plan (which model
    actors it starts) belongs in a run's output and in a submitted job's logs."""
    logger = logging.getLogger("raysr")
    if not any(getattr(handler, "_raysr_cli", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._raysr_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that a run unwinds as it does on Ctrl-C."""


@contextlib.contextmanager
def _sigterm_unwinds():
    """`raysr stop`, a pod's deletion or a scheduler's time limit send SIGTERM, whose default is to die on the
    spot: the run's last manifest rows would be lost and its lease left for 30 minutes. Raise instead."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def _raise(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    _log_to_stderr()
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_unwinds():
            return int(args.func(args) or 0)
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `raysr manifest summary … | head`: the reader left, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python flushes stdout at exit
        return 141  # as a shell reports a process ended by SIGPIPE
    except Exception as error:  # a user-facing error: one line, no traceback
        from raysr.errors import USER_ERRORS

        if not isinstance(error, USER_ERRORS):
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
