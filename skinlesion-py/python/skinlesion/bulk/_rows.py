"""The output rows: their schema, and the Ray workers that classify files into them."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, Mapping, Optional, Sequence

from .. import DICOM_FIELDS, DISCLAIMER, LESION_CLASSES, Classifier, LesionClass
from ._cluster import imports

_COLUMN_BY_NAME = {c.display_name: c.probability_column for c in LESION_CLASSES}


def schema(classes: Sequence[str]):
    """The output rows' Arrow schema for a model trained on ``classes`` (ISIC codes, in order).

    ``path``, ``content_sha256`` (hex SHA-256 of the file's bytes), the answer (``code``,
    ``class_name``, ``best_guess``, ``confidence``, ``is_cancerous``, ``unknown_reason``,
    ``ood_score``), one ``probability_<CODE>`` per trained class, ``dicom`` (for a DICOM file,
    a struct of what it says about the image, :data:`skinlesion.DICOM_FIELDS`, never who the
    patient is; null for other files), ``model_name``,
    ``model_version``, ``model_precision`` (``fp32`` or ``bf16``: the arithmetic that scored it), then ``error_kind`` (the core's name of the error kind, e.g. ``decode``)
    and ``error`` (null unless the file could not be classified; the answer columns are null then).
    """
    _, pa = imports()
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
        *((LesionClass(code).probability_column, pa.float32()) for code in classes),
        ("dicom", pa.struct([(field, pa.string()) for field in DICOM_FIELDS])),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("model_precision", pa.string()),
        ("error_kind", pa.string()),
        ("error", pa.string()),
    ]
    return pa.schema(fields, metadata={"skinlesion.disclaimer": DISCLAIMER})


class Scorer:
    """One Ray worker: loads the classifier once, then classifies each of Ray's batches in
    ``classify_batch`` calls of ``batch_size`` images."""

    def __init__(self, model: str, device: str, precision: str, threads: Optional[int],
                 batch_size: int, skip: Optional[list]) -> None:
        ray, _ = imports()
        self._classifier = Classifier(model, device=device, precision=precision, threads=threads)
        self._batch_size = batch_size
        self._classes = [c.code for c in self._classifier.classes]
        self._schema = schema(self._classes)
        meta = self._classifier.metadata
        self._model = (meta["name"], meta["version"])
        # A large resume set travels once through the object store (a reference in a list, so
        # that Ray hands it over as is rather than as a constructor argument to keep alive).
        self._skip: Mapping[str, str] = ray.get(skip[0]) if skip else {}

    def __call__(self, batch):
        _, pa = imports()
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
        row["model_precision"] = self._classifier.precision
        if isinstance(result, BaseException):
            # The core's name of the kind ("decode"), as every interface names it.
            row["error_kind"], row["error"] = getattr(result, "kind", type(result).__name__), str(result)
            return row
        row.update(
            code=result.code,
            class_name=result.class_name,
            best_guess=result.best_guess,
            confidence=result.confidence,
            is_cancerous=result.is_cancerous,
            unknown_reason=result.unknown_reason,
            ood_score=result.ood_score,
            dicom=result.dicom,
        )
        for name, p in result.all_predictions.items():
            row[_COLUMN_BY_NAME[name]] = p
        return row
