"""The inputs: paths, folders, globs and URIs expanded, read as a Ray Dataset."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

from ._cluster import imports

if TYPE_CHECKING:
    from ._plan import Plan

_GLOB_CHARS = "*?["
_FILES_PER_BLOCK = 256

Inputs = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], Any]
"""A file, a directory, a glob, a URI (``s3://bucket/dir``), a list of those, or a Ray Dataset
with ``bytes`` and ``path`` columns (as ``ray.data.read_binary_files(..., include_paths=True)``)."""


def read_inputs(inputs: Inputs, extensions: Optional[Sequence[str]], plan: "Plan"):
    """The input files as a Dataset of ``bytes`` and ``path``, and the plan fitted to them."""
    ray, _ = imports()
    if isinstance(inputs, ray.data.Dataset):
        missing = {"bytes", "path"} - set(inputs.schema().names)
        if missing:
            raise ValueError(f"the input Dataset lacks the column(s) {sorted(missing)}")
        # Its reads ask for CPUs of their own (Ray's default: 1 each); workers holding every CPU
        # would wait for them forever. Leave them one, unless told how many workers to run.
        if not plan.gpus and plan.workers_chosen:
            plan = dataclasses.replace(plan, workers=max(1, plan.workers - 1))
        return inputs, plan
    paths = _expand(inputs, extensions)
    # Reading is I/O: zero CPUs, so that it never waits for the CPUs the workers hold, and a few
    # reads per worker at a time. Each block becomes one part file (an interrupted run loses only
    # the blocks in flight); at least 4 per worker so that small jobs stream, at most
    # _FILES_PER_BLOCK files each (measured: blocks of 64 cost a quarter of the throughput in
    # Ray's per-task overhead, 256 nothing measurable). No more workers than blocks.
    per_block = max(plan.batch_size, min(_FILES_PER_BLOCK, -(-len(paths) // (4 * plan.workers))))
    blocks = max(1, -(-len(paths) // per_block))
    plan = dataclasses.replace(plan, workers=min(plan.workers, blocks))
    dataset = ray.data.read_binary_files(
        paths, include_paths=True, num_cpus=0, concurrency=2 * plan.workers, override_num_blocks=blocks
    )
    return dataset, plan


def _expand(inputs: Inputs, extensions: Optional[Sequence[str]]) -> List[str]:
    """Every input file: globs expanded, folders listed (recursively), each input checked."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(inputs, (bytes, bytearray)) or not isinstance(inputs, Sequence):
        raise ValueError(f"inputs must be paths, a glob or a Ray Dataset, not {type(inputs).__name__}")
    wanted = tuple(f".{e.lstrip('.').lower()}" for e in extensions or ())
    paths: List[str] = []
    for item in map(os.fspath, inputs):
        found = [p for p in _list_files(item) if not wanted or p.lower().endswith(wanted)]
        if not found:
            raise ValueError(f"no files match {item!r}" + (f" with extensions {list(extensions)}" if wanted else ""))
        paths.extend(found)
    if not paths:
        raise ValueError("no input files given")
    return paths


def _list_files(item: str) -> List[str]:
    """The files of a path, folder, glob or URI (through pyarrow, so ``s3://`` and ``gs://`` too)."""
    import fnmatch

    from pyarrow import fs

    uri = item if "://" in item else os.path.abspath(item)
    wildcard = min((uri.find(c) for c in _GLOB_CHARS if c in uri), default=-1)
    base = uri if wildcard < 0 else uri[:wildcard].rsplit("/", 1)[0]
    filesystem, root = fs.FileSystem.from_uri(base)
    prefix = base[: len(base) - len(root)] if base.endswith(root) else ""
    info = filesystem.get_file_info(root)
    if info.type == fs.FileType.File and wildcard < 0:
        return [uri]
    if info.type != fs.FileType.Directory:
        return []
    pattern = root + uri[len(base) :] if wildcard >= 0 else None
    infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    files = (i.path for i in infos if i.type == fs.FileType.File)
    return sorted(prefix + p for p in files if pattern is None or fnmatch.fnmatch(p, pattern))
