"""What :func:`score` was asked for, checked, and how its workers fit the cluster."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional, Sequence, Union

from .. import DEFAULT_MODEL, ConfigError, preferred_batch_size, read_metadata
from .._skinlesion import parse_precision
from ._cluster import connect, imports
from ._files import Inputs, read_inputs
from ._rows import Scorer

# Ray places a GPU worker on a whole GPU, so "cuda:N" has no meaning here.
_DEVICES = ("cpu", "cuda", "auto")
_RAY_BATCH = 16


def score(
    inputs: Inputs,
    *,
    model: Union[str, "os.PathLike[str]", None] = None,
    batch_size: Optional[int] = None,
    concurrency: Optional[int] = None,
    device: str = "cpu",
    precision: str = "auto",
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
        precision: ``"auto"``, ``"fp32"`` or ``"bf16"``, as :class:`skinlesion.Classifier`'s;
            each row's ``model_precision`` says which ran.
        threads_per_worker: CPU threads (and Ray CPUs) per worker; ``None`` for 1 on CPU workers
            (measured fastest: one single-threaded worker per core; a multi-threaded worker
            competes with Ray's own threads for the cores), 2 on GPU workers (decoding).
        extensions: keep only files with these extensions (e.g. ``["jpg", "png", "dcm"]``);
            ``None`` keeps every file (a non-image file becomes an error row), so DICOM files are
            scored whatever they are called (PACS exports name them by UID). Not for Dataset
            inputs.
        skip: ``{path: content_sha256}`` of files not to score again (:func:`write` passes what
            its output already holds).

    Raises:
        ValueError: a missing input, no files, a bad option, or an unknown device or precision.
        ModelError: the model cannot be loaded.
    """
    options = Options.checked(model, batch_size, concurrency, device, precision, threads_per_worker,
                              extensions)
    return options.dataset(inputs, skip)


@dataclasses.dataclass(frozen=True)
class Options:
    """What :func:`score` was asked for, checked (the model loads) before any job starts."""

    model: str
    identity: tuple
    batch_size: Optional[int]
    concurrency: Optional[int]
    device: str
    precision: str
    threads: Optional[int]
    extensions: Optional[Sequence[str]]

    @staticmethod
    def checked(model, batch_size, concurrency, device, precision, threads, extensions) -> "Options":
        check_counts(batch_size=batch_size, concurrency=concurrency, threads_per_worker=threads)
        if device not in _DEVICES:
            raise ValueError(f"device must be one of {', '.join(map(repr, _DEVICES))}, not {device!r}")
        try:
            precision = parse_precision(precision) if isinstance(precision, str) else None
        except ConfigError as e:
            raise ValueError(str(e)) from None
        if precision is None:
            raise ValueError("precision must be a str: auto, fp32, bf16 or bf16-checked")
        model = os.fspath(DEFAULT_MODEL if model is None else model)
        meta = read_metadata(model)  # the manifest alone: no network is loaded here
        return Options(model, (meta["name"], meta["version"]), batch_size, concurrency, device,
                       precision, threads, extensions)

    def dataset(self, inputs: Inputs, skip: Optional[Mapping[str, str]]):
        ray, _ = imports()
        connect(None)
        plan = Plan.for_cluster(ray.cluster_resources(), self.device, self.threads, self.batch_size,
                                 self.concurrency)
        skip_ref = [ray.put(dict(skip))] if skip else None
        dataset, plan = read_inputs(inputs, self.extensions, plan)
        return dataset.map_batches(
            Scorer,
            fn_constructor_kwargs={"model": self.model, "device": plan.device,
                                   "precision": self.precision, "threads": plan.threads,
                                   "batch_size": plan.batch_size, "skip": skip_ref},
            # Ray's batches hold several forward passes' worth: its per-call cost is then shared.
            batch_size=max(plan.batch_size, _RAY_BATCH),
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=plan.workers),
            num_cpus=plan.threads,
            num_gpus=plan.gpus,
        )


def check_counts(**options: Any) -> None:
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a positive int, not {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the workers run on this cluster (the defaults are measured: ``benches/bulk``)."""

    device: str
    gpus: int
    threads: int
    batch_size: int
    workers: int
    workers_chosen: bool  # by us, from the cluster's size (not the caller's `concurrency`)

    @staticmethod
    def for_cluster(resources: Mapping[str, float], device: str, threads: Optional[int],
                    batch_size: Optional[int], workers: Optional[int]) -> "Plan":
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
        return Plan(device, gpus, threads, batch_size, workers, chosen)
