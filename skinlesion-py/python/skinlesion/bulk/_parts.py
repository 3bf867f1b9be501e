"""The output: a folder of Parquet part files, written, resumed and read back."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Union

from ._cluster import imports
from ._files import Inputs
from ._plan import Options


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
    precision: str = "auto",
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
    options = Options.checked(model, batch_size, concurrency, device, precision, threads_per_worker,
                              extensions)
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
    imports()
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
        except (OSError, imports()[1].ArrowInvalid) as e:  # a cut-short file
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
