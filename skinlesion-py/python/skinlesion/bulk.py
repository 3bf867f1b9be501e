"""Bulk scoring of image archives on Ray Data (``pip install skinlesion[ray]``).

**Research and education only.** skinlesion is not a medical device and does not diagnose.

>>> from skinlesion import bulk
>>> summary = bulk.write("/archive/images/", "/archive/scores.parquet")   # resumable
>>> table = bulk.read("/archive/scores.parquet")                          # a pyarrow.Table

Files are read by Ray (local, ``s3://``, ``gs://`` paths through pyarrow) and decoded by
skinlesion itself; each worker loads the classifier once and classifies a batch with one
``classify_batch``. A file that is not a readable image becomes a row with ``error`` set, never a
failed job. Rows are keyed by ``path`` and ``content_sha256``: rerunning :func:`write` on the same
output skips every file already scored with the same bytes and model, so an interrupted job
resumes where it stopped.

From a shell: ``python -m skinlesion.bulk INPUT OUTPUT.parquet [--address auto]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import socket
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import DEFAULT_MODEL, DISCLAIMER, LESION_CLASSES, Classifier, preferred_batch_size

__all__ = ["Summary", "score", "write", "read", "schema"]

# Ray and pyarrow are the optional extra; imported on use so `import skinlesion` never needs them.
_RAY_HINT = "skinlesion.bulk needs Ray Data: pip install 'skinlesion[ray]'"
_DEVICES = ("cpu", "cuda", "auto")
_GLOB_CHARS = "*?["
_FILES_PER_BLOCK = 256
_RAY_BATCH = 16
_CODE_BY_NAME = {c.display_name: c.code for c in LESION_CLASSES}

Inputs = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]], Any]
"""A file, a directory, a glob, a URI (``s3://bucket/dir``), a list of those, or a Ray Dataset
with ``bytes`` and ``path`` columns (as ``ray.data.read_binary_files(..., include_paths=True)``)."""


def _imports():
    try:
        import pyarrow
        import ray
        import ray.data
    except ImportError as e:  # pragma: no cover - the extra is installed wherever this is tested
        raise ImportError(_RAY_HINT) from e
    return ray, pyarrow


def schema(classes: Sequence[str]):
    """The output rows' Arrow schema for a model trained on ``classes`` (ISIC codes, in order).

    ``path``, ``content_sha256`` (hex SHA-256 of the file's bytes), the answer (``code``,
    ``class_name``, ``best_guess``, ``confidence``, ``is_cancerous``, ``unknown_reason``,
    ``ood_score``), one ``probability_<CODE>`` per trained class, ``model_name``,
    ``model_version``, then ``error_kind`` and ``error`` (null unless the file could not be
    classified; the answer columns are null then).
    """
    _, pa = _imports()
    fields = [
        ("path", pa.string()),
        ("content_sha256", pa.string()),
        ("code", pa.string()),
        ("class_name", pa.string()),
        ("best_guess", pa.string()),
        ("confidence", pa.float32()),
        ("is_cancerous", pa.bool_()),
        ("unknown_reason", pa.string()),
        ("ood_score", pa.float32()),
        *((f"probability_{code}", pa.float32()) for code in classes),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("error_kind", pa.string()),
        ("error", pa.string()),
    ]
    return pa.schema(fields, metadata={"skinlesion.disclaimer": DISCLAIMER})


class _Scorer:
    """One Ray worker: loads the classifier once, then classifies each of Ray's batches in
    ``classify_batch`` calls of ``batch_size`` images."""

    def __init__(self, model: str, device: str, threads: Optional[int], batch_size: int,
                 skip: Optional[list]) -> None:
        ray, _ = _imports()
        self._classifier = Classifier(model, device=device, threads=threads)
        self._batch_size = batch_size
        self._classes = [c.code for c in self._classifier.classes]
        self._schema = schema(self._classes)
        meta = self._classifier.metadata
        self._model = (meta["name"], meta["version"])
        # A large resume set travels once through the object store (a reference in a list, so
        # that Ray hands it over as is rather than as a constructor argument to keep alive).
        self._skip: Mapping[str, str] = ray.get(skip[0]) if skip else {}

    def __call__(self, batch):
        _, pa = _imports()
        paths = batch.column("path").to_pylist()
        data = batch.column("bytes").to_pylist()
        hashes = [hashlib.sha256(b).hexdigest() for b in data]
        todo = [i for i, (p, h) in enumerate(zip(paths, hashes)) if self._skip.get(p) != h]
        step = self._batch_size
        results = [
            result
            for start in range(0, len(todo), step)
            for result in self._classifier.classify_batch([data[i] for i in todo[start : start + step]], errors="return")
        ]
        rows = [self._row(paths[i], hashes[i], r) for i, r in zip(todo, results)]
        return pa.Table.from_pylist(rows, schema=self._schema)

    def _row(self, path: str, sha256: str, result: Any) -> Dict[str, Any]:
        row: Dict[str, Any] = {"path": path, "content_sha256": sha256}
        row["model_name"], row["model_version"] = self._model
        if isinstance(result, BaseException):
            row["error_kind"], row["error"] = type(result).__name__, str(result)
            return row
        row.update(
            code=result.code,
            class_name=result.class_name,
            best_guess=result.best_guess,
            confidence=result.confidence,
            is_cancerous=result.is_cancerous,
            unknown_reason=result.unknown_reason,
            ood_score=result.ood_score,
        )
        for name, p in result.all_predictions.items():
            row[f"probability_{_CODE_BY_NAME[name]}"] = p
        return row


def score(
    inputs: Inputs,
    *,
    model: Union[str, "os.PathLike[str]", None] = None,
    batch_size: Optional[int] = None,
    concurrency: Optional[int] = None,
    device: str = "cpu",
    threads_per_worker: Optional[int] = None,
    extensions: Optional[Sequence[str]] = None,
    skip: Optional[Mapping[str, str]] = None,
):
    """Scores every file of ``inputs``; returns a lazy ``ray.data.Dataset`` of :func:`schema` rows.

    Args:
        inputs: a file, directory, glob, URI, list of those, or a Ray Dataset with ``bytes`` and
            ``path`` columns. A glob's ``*`` also matches across folders.
        model: a manifest path that exists on every node; ``None`` for the model in this package.
        batch_size: images per ``classify_batch`` call; ``None`` for the device's fastest,
            :func:`skinlesion.preferred_batch_size` (1 on a CPU: this network is fastest one
            image at a time there, see ``benches/RESULTS.md``; 64 on a GPU).
        concurrency: number of workers (each holds one classifier); ``None`` for as many as the
            cluster's CPUs (``device="cpu"``) or GPUs (``"cuda"``) allow (on CPUs, for a Dataset
            input, one worker fewer: its reads need a CPU; never more workers than blocks).
        device: ``"cpu"``, ``"cuda"`` (one GPU per worker) or ``"auto"`` (CUDA when the cluster
            has GPUs).
        threads_per_worker: CPU threads (and Ray CPUs) per worker; ``None`` for 1 on CPU workers
            (measured fastest: one single-threaded worker per core; a multi-threaded worker
            competes with Ray's own threads for the cores), 2 on GPU workers (decoding).
        extensions: keep only files with these extensions (e.g. ``["jpg", "png"]``); ``None``
            keeps every file (a non-image file becomes an error row). Not for Dataset inputs.
        skip: ``{path: content_sha256}`` of files not to score again (:func:`write` passes what
            its output already holds).

    Raises:
        ValueError: a missing input, no files, a bad option, or an unknown device.
        ModelError: the model cannot be loaded.
    """
    options = _Options.checked(model, batch_size, concurrency, device, threads_per_worker, extensions)
    return options.dataset(inputs, skip)


@dataclasses.dataclass(frozen=True)
class _Options:
    """What :func:`score` was asked for, checked (the model loads) before any job starts."""

    model: str
    identity: tuple
    batch_size: Optional[int]
    concurrency: Optional[int]
    device: str
    threads: Optional[int]
    extensions: Optional[Sequence[str]]

    @staticmethod
    def checked(model, batch_size, concurrency, device, threads, extensions) -> "_Options":
        _check_counts(batch_size=batch_size, concurrency=concurrency, threads_per_worker=threads)
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {', '.join(map(repr, _DEVICES))}, not {device!r}")
        model = os.fspath(DEFAULT_MODEL if model is None else model)
        meta = Classifier(model, device="cpu", threads=1).metadata
        return _Options(model, (meta["name"], meta["version"]), batch_size, concurrency, device,
                        threads, extensions)

    def dataset(self, inputs: Inputs, skip: Optional[Mapping[str, str]]):
        ray, _ = _imports()
        _connect(None)
        plan = _Plan.for_cluster(ray.cluster_resources(), self.device, self.threads, self.batch_size,
                                 self.concurrency)
        skip_ref = [ray.put(dict(skip))] if skip else None
        dataset, plan = _read(inputs, self.extensions, plan)
        return dataset.map_batches(
            _Scorer,
            fn_constructor_kwargs={"model": self.model, "device": plan.device, "threads": plan.threads,
                                   "batch_size": plan.batch_size, "skip": skip_ref},
            # Ray's batches hold several forward passes' worth: its per-call cost is then shared.
            batch_size=max(plan.batch_size, _RAY_BATCH),
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=plan.workers),
            num_cpus=plan.threads,
            num_gpus=plan.gpus,
        )


def _check_counts(**options: Any) -> None:
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a positive int, not {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


@dataclasses.dataclass(frozen=True)
class _Plan:
    """How the workers run on this cluster (the defaults are measured: ``benches/bulk``)."""

    device: str
    gpus: int
    threads: int
    batch_size: int
    workers: int
    workers_chosen: bool  # by us, from the cluster's size (not the caller's `concurrency`)

    @staticmethod
    def for_cluster(resources: Mapping[str, float], device: str, threads: Optional[int],
                    batch_size: Optional[int], workers: Optional[int]) -> "_Plan":
        cluster_gpus = int(resources.get("GPU", 0))
        if device == "auto":
            device = "cuda" if cluster_gpus >= 1 else "cpu"
        if device == "cuda" and cluster_gpus < 1:  # Ray would wait for one forever
            raise ValueError('device="cuda" but the Ray cluster has no GPUs')
        gpus = 1 if device == "cuda" else 0
        threads = threads or (2 if gpus else 1)
        batch_size = batch_size or preferred_batch_size(device)
        chosen = workers is None
        workers = workers or max(1, cluster_gpus if gpus else int(resources.get("CPU", 1) // threads))
        return _Plan(device, gpus, threads, batch_size, workers, chosen)


def _read(inputs: Inputs, extensions: Optional[Sequence[str]], plan: _Plan):
    """The input files as a Dataset of ``bytes`` and ``path``, and the plan fitted to them."""
    ray, _ = _imports()
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


def _connect(address: Optional[str]) -> None:
    """Joins ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or starts a local Ray."""
    ray, _ = _imports()
    if ray.is_initialized():
        return
    _probe(address)
    try:
        ray.init(address=address, include_dashboard=False)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address or 'this machine'}: {e}") from e


def _probe(address: Optional[str], timeout: float = 5.0) -> None:
    """Fails fast on a host:port that does not answer (Ray itself retries for minutes)."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is auto, ray://HOST:PORT or HOST:PORT, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e}") from e


@dataclasses.dataclass(frozen=True)
class Summary:
    """What one :func:`write` did."""

    output: str
    scored: int
    errors: int
    already_scored: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (
            f"{self.scored} files scored ({self.errors} errors) in {self.seconds:.1f} s, "
            f"{self.images_per_second:.1f} images/s; {self.already_scored} already in {self.output}"
        )


def write(
    inputs: Inputs,
    output: str,
    *,
    resume: bool = True,
    model: Union[str, "os.PathLike[str]", None] = None,
    batch_size: Optional[int] = None,
    concurrency: Optional[int] = None,
    device: str = "cpu",
    threads_per_worker: Optional[int] = None,
    extensions: Optional[Sequence[str]] = None,
) -> Summary:
    """Scores ``inputs`` into the Parquet dataset (a folder of part files) ``output``.

    With ``resume`` (the default), files that ``output`` already holds with the same bytes and
    model are skipped; a file whose bytes changed is scored again and its old row removed; a part
    file left truncated by an interrupted run is removed (its images are scored again). Without
    ``resume``, ``output`` must hold no results yet. The other options are :func:`score`'s.

    Raises:
        ValueError: bad inputs or options (see :func:`score`), an ``output`` that is a file or
            holds other files' columns, or one scored by another model.
    """
    options = _Options.checked(model, batch_size, concurrency, device, threads_per_worker, extensions)
    filesystem, root = _output_fs(output)
    before = _part_files(filesystem, root)
    if before and not resume:
        raise ValueError(f"{output} already holds results; pass resume=True or a new path")
    done, part_of = _already_scored(filesystem, before, options.identity)
    start = time.monotonic()
    options.dataset(inputs, done).write_parquet(output, ray_remote_args={"num_cpus": 0})  # I/O
    seconds = time.monotonic() - start
    new = [_read_part(filesystem, f, ["path", "error"]) for f in _part_files(filesystem, root) if f not in before]
    rescored = {p for t in new for p in t.column("path").to_pylist() if p in done}
    _drop_rows(filesystem, {part_of[p] for p in rescored}, rescored)
    scored = sum(t.num_rows for t in new)
    errors = sum(t.num_rows - t.column("error").null_count for t in new)
    return Summary(output, scored, errors, len(done) - len(rescored), seconds)


def read(output: str):
    """All rows of a :func:`write` output as one ``pyarrow.Table``."""
    filesystem, root = _output_fs(output)
    import pyarrow as pa

    parts = [_read_part(filesystem, f) for f in _part_files(filesystem, root)]
    if not parts:
        raise ValueError(f"{output} holds no results")
    return pa.concat_tables(parts)


def _output_fs(output: str):
    _imports()
    from pyarrow import fs

    if not isinstance(output, (str, os.PathLike)):
        raise ValueError(f"output must be a path, not {type(output).__name__}")
    output = os.fspath(output)
    uri = output if "://" in output else os.path.abspath(output)
    filesystem, root = fs.FileSystem.from_uri(uri)
    kind = filesystem.get_file_info(root).type
    if kind == fs.FileType.File:
        raise ValueError(f"{output} is a file; the output is a folder of Parquet part files")
    return filesystem, root


def _part_files(filesystem, root: str) -> List[str]:
    from pyarrow import fs

    infos = filesystem.get_file_info(fs.FileSelector(root, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == fs.FileType.File and i.path.endswith(".parquet"))


def _read_part(filesystem, path: str, columns: Optional[List[str]] = None):
    import pyarrow.parquet as pq

    return pq.read_table(path, filesystem=filesystem, columns=columns)


def _already_scored(filesystem, parts: List[str], model: tuple):
    """``{path: content_sha256}`` of every row in ``parts`` and ``{path: part}``.

    Truncated parts are removed (their images run again).
    """
    done: Dict[str, str] = {}
    part_of: Dict[str, str] = {}
    columns = ["path", "content_sha256", "model_name", "model_version"]
    for part in parts:
        try:
            table = _read_part(filesystem, part, columns).to_pydict()
        except (OSError, _imports()[1].ArrowInvalid) as e:  # a cut-short file
            print(f"skinlesion.bulk: removing unreadable part {part} ({e})", file=sys.stderr)
            filesystem.delete_file(part)
            continue
        except KeyError as e:
            raise ValueError(f"{part} is not a skinlesion result file (no column {e})") from e
        for path, sha, name, version in zip(*(table[c] for c in columns)):
            if (name, version) != model:
                raise ValueError(
                    f"{part} holds results of {name} v{version}, not {model[0]} v{model[1]}; "
                    "write this model's scores to a new output"
                )
            done[path] = sha
            part_of[path] = part
    return done, part_of


def _drop_rows(filesystem, parts: set, paths: set) -> None:
    """Rewrites each of ``parts`` without the rows of ``paths`` (via a temporary file and a move)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for part in parts:
        table = _read_part(filesystem, part)
        kept = table.filter(pc.invert(pc.is_in(table.column("path"), value_set=_string_array(paths))))
        scratch = part + ".rewrite"
        with filesystem.open_output_stream(scratch) as f:
            pq.write_table(kept, f)
        filesystem.move(scratch, part)


def _string_array(values):
    import pyarrow as pa

    return pa.array(sorted(values), type=pa.string())


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m skinlesion.bulk``: score files into a Parquet dataset, then print a summary."""
    args = _parser().parse_args(argv)
    print(f"skinlesion.bulk: {DISCLAIMER}", file=sys.stderr)
    try:
        _connect(args.address)
        summary = write(
            args.inputs,
            args.output,
            resume=not args.no_resume,
            model=args.model,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            device=args.device,
            threads_per_worker=args.threads_per_worker,
            extensions=args.extensions,
        )
    except (ValueError, ConnectionError) as e:
        print(f"skinlesion.bulk: error: {e}", file=sys.stderr)
        return 2
    print(f"skinlesion.bulk: {summary}")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skinlesion.bulk",
        description="Score image files (local paths, globs, s3:// or gs:// URIs) on Ray Data into "
        "a Parquet dataset; rerun to resume. Research and education only; not a medical device.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders, globs or URIs")
    p.add_argument("output", metavar="OUTPUT.parquet", help="output folder of Parquet part files")
    p.add_argument("--address", default=None, help="Ray cluster: auto, ray://HOST:10001 or HOST:6379 "
                   "(default: a local Ray on this machine)")
    p.add_argument("--model", default=None, help="model manifest (default: the bundled model)")
    p.add_argument("--batch-size", type=int, default=None, help="images per classify call "
                   "(default: 1 on CPU, 64 on GPU)")
    p.add_argument("--concurrency", type=int, default=None, help="workers (default: fill the cluster)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (cpu)")
    p.add_argument("--threads-per-worker", type=int, default=None, help="CPU threads per worker")
    p.add_argument("--extensions", nargs="+", default=None, help="only files with these extensions")
    p.add_argument("--no-resume", action="store_true", help="refuse an output that already has results")
    return p


if __name__ == "__main__":
    # Through the package, so that Ray's workers find `_Scorer` as `skinlesion.bulk._Scorer`.
    from skinlesion.bulk import main as _main

    sys.exit(_main())
