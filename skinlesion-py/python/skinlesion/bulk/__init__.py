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

The package: :mod:`._cluster` (Ray and pyarrow on demand, joining a cluster), :mod:`._plan`
(options checked and fitted to the cluster), :mod:`._files` (inputs to a Dataset), :mod:`._rows`
(the schema and the workers that fill it), :mod:`._parts` (the Parquet output, resuming),
:mod:`.__main__` (the command line).
"""

from __future__ import annotations

from ._parts import Summary, read, write
from ._plan import score
from ._rows import schema

__all__ = ["Summary", "score", "write", "read", "schema"]
