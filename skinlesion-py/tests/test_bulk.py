"""skinlesion.bulk on a local Ray (2 CPUs): rows equal in-process answers, resumes, bad arguments."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

import skinlesion
from skinlesion import bulk

from test_skinlesion import MODEL, REPO, sample_test_split

ray = pytest.importorskip("ray")
CORRUPT = {"empty.jpg": "empty_input", "truncated.jpg": "decode", "notes.txt": "unsupported_format"}
DICOM = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> pathlib.Path:
    """200 real test-split images, the first of them again as JPEG-in-DICOM named by UID alone
    (as PACS exports are), and 3 files that are not images."""
    folder = tmp_path_factory.mktemp("archive")
    images = sample_test_split(200)
    for image in images:
        shutil.copy(image, folder)
    fixtures = tmp_path_factory.mktemp("dicom")
    script = REPO / "skinlesion-core" / "tests" / "reference" / "dicom_fixtures.py"
    subprocess.run([sys.executable, str(script), str(fixtures), str(images[0])], check=True)
    shutil.copy(fixtures / "ham-0.dcm", folder / DICOM)
    (folder / "empty.jpg").write_bytes(b"")
    data = images[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.txt").write_text("not an image\n")
    return folder


@pytest.fixture(scope="module")
def uninterrupted(archive, tmp_path_factory) -> tuple[bulk.Summary, dict]:
    output = tmp_path_factory.mktemp("out") / "scores.parquet"
    summary = bulk.write(archive, output)
    return summary, rows_by_path(output)


def rows_by_path(output) -> dict:
    rows = bulk.read(str(output)).to_pylist()
    by_path = {row["path"]: row for row in rows}
    assert len(by_path) == len(rows), "a path appears twice"
    return by_path


def files(folder: pathlib.Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir())


def test_rows_equal_classify_batch(archive, uninterrupted):
    summary, rows = uninterrupted
    assert (summary.scored, summary.errors, summary.already_scored) == (204, 3, 0)
    assert sorted(rows) == files(archive)
    classifier = skinlesion.Classifier(MODEL, device="cpu", threads=1)
    images = [p for p in files(archive) if os.path.basename(p) not in CORRUPT]
    codes = {c.display_name: c.code for c in classifier.classes}
    # Threads and batches as a CPU worker has them (1 thread, one image per call): a forward
    # pass's rounding depends on both (probabilities move by about 2e-6).
    for path, prediction in zip(images, (classifier.classify_batch([p])[0] for p in images)):
        row = rows[path]
        assert row["error"] is None and row["error_kind"] is None
        assert (row["code"], row["class_name"], row["best_guess"]) == (
            prediction.code, prediction.class_name, prediction.best_guess)
        assert (row["is_cancerous"], row["unknown_reason"]) == (prediction.is_cancerous, prediction.unknown_reason)
        assert row["confidence"] == pytest.approx(prediction.confidence, abs=1e-6)
        assert row["ood_score"] == pytest.approx(prediction.ood_score, rel=1e-6)
        for name, p in prediction.all_predictions.items():
            assert row[f"probability_{codes[name]}"] == pytest.approx(p, abs=1e-6), name
        assert (row["model_name"], row["model_version"]) == (classifier.metadata["name"], classifier.metadata["version"])
        assert row["model_precision"] == classifier.precision
        assert row["dicom"] == prediction.dicom
    # The DICOM file is scored as the JPEG it wraps.
    wrapped, jpeg = rows[str(archive / DICOM)], rows[str(archive / sample_test_split(1)[0].name)]
    for key in (k for k in jpeg if k.startswith("probability_")):
        assert wrapped[key] == pytest.approx(jpeg[key], abs=1e-6), key
    assert (wrapped["dicom"]["modality"], wrapped["dicom"]["sop_class"]) == ("DMS", "Dermoscopic Photography Image Storage")
    assert jpeg["dicom"] is None
    for name, kind in CORRUPT.items():
        row = rows[str(archive / name)]
        assert row["error_kind"] == kind and row["error"], row
        assert row["code"] is None and row["confidence"] is None and row["probability_MEL"] is None


def test_parquet_reads_back_with_the_documented_schema(uninterrupted):
    summary, _ = uninterrupted
    table = pq.read_table(summary.output)  # plain pyarrow, no skinlesion
    codes = [c.code for c in skinlesion.Classifier(MODEL, device="cpu").classes]
    expected = bulk.schema(codes)
    assert table.schema.remove_metadata().equals(expected.remove_metadata())
    assert table.schema.metadata[b"skinlesion.disclaimer"].decode() == skinlesion.DISCLAIMER
    assert table.num_rows == 204


def test_resume_after_a_partial_run_and_a_cut_short_part(archive, uninterrupted, tmp_path):
    _, expected = uninterrupted
    output = tmp_path / "scores.parquet"
    first = bulk.write(files(archive)[:120], output)
    assert first.scored == 120
    # What a kill during a write leaves: a part file cut short.
    part = next(output.iterdir())
    (output / "cut-short.parquet").write_bytes(part.read_bytes()[:300])
    second = bulk.write(archive, output)
    assert (second.scored, second.already_scored) == (84, 120)
    assert not (output / "cut-short.parquet").exists()
    assert rows_by_path(output) == expected


def test_resume_after_ctrl_c(archive, uninterrupted, tmp_path):
    _, expected = uninterrupted
    output = tmp_path / "scores.parquet"
    cli = [sys.executable, "-m", "skinlesion.bulk", str(archive), str(output)]
    # One worker (of one thread, as each of the default two): 4 blocks of 51 files, so the
    # interrupt lands with three quarters of the work left, not the last few images of 8 blocks
    # that two workers finish together. SIGINT as a terminal delivers it: a suite started in
    # the background inherits it ignored.
    slow = ["--concurrency", "1"]
    run = subprocess.Popen(cli + slow, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while not list(output.glob("*.parquet")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    log = run.communicate(timeout=120)[0]
    assert run.returncode != 0, f"the run finished before it was interrupted:\n{log}"
    partial = len(bulk.read(str(output))) if list(output.glob("*.parquet")) else 0
    assert 0 < partial < 204, partial
    resumed = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{204 - partial} files scored" in resumed.stdout, resumed.stdout
    assert rows_by_path(output) == expected


def test_a_changed_file_is_scored_again_and_its_old_row_dropped(archive, tmp_path):
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in sorted(os.listdir(archive))[:6]:
        shutil.copy(archive / name, folder)
    output = tmp_path / "scores.parquet"
    bulk.write(folder, output)
    changed = sorted(folder.iterdir())[0]
    changed.write_bytes((archive / "notes.txt").read_bytes())
    again = bulk.write(folder, output)
    assert (again.scored, again.already_scored) == (1, 5)
    rows = rows_by_path(output)
    assert len(rows) == 6 and rows[str(changed)]["error_kind"] == "unsupported_format"


def test_a_ray_dataset_input_and_a_glob(archive, uninterrupted):
    _, expected = uninterrupted
    some = files(archive)[:4]
    dataset = ray.data.read_binary_files(some, include_paths=True)
    rows = {r["path"]: r for r in bulk.score(dataset).take_all()}
    assert sorted(rows) == some and all(rows[p] == expected[p] for p in some)
    globbed = bulk.score(str(archive / "*.txt")).take_all()
    assert [r["path"] for r in globbed] == [str(archive / "notes.txt")]
    # A URI goes through pyarrow's filesystems, as s3:// and gs:// do.
    uri = bulk.score(f"file://{archive}/*.txt").take_all()
    assert [r["error_kind"] for r in uri] == ["unsupported_format"] and uri[0]["path"].endswith("notes.txt")
    with pytest.raises(ValueError, match=re.escape("lacks the column(s) ['bytes', 'path']")):
        bulk.score(ray.data.range(3))


def test_cli_prints_a_summary_and_fails_clearly(archive, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for name in sorted(os.listdir(archive))[:5]:
        shutil.copy(archive / name, small)
    out = subprocess.run([sys.executable, "-m", "skinlesion.bulk", str(small), str(tmp_path / "o.parquet")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert re.search(r"5 files scored \(\d errors\) in [\d.]+ s, [\d.]+ images/s", out.stdout), out.stdout
    assert "not a medical device" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in (
        ([str(empty)], "no files match"),
        ([str(small), "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        ([str(small), "--concurrency", "0"], "concurrency must be at least 1"),
    ):
        start = time.monotonic()
        bad = subprocess.run([sys.executable, "-m", "skinlesion.bulk", *args, str(tmp_path / "x.parquet")],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
        assert time.monotonic() - start < 60, "an unreachable cluster is reported without minutes of retries"


@pytest.mark.parametrize(
    "inputs, options, message",
    [
        ("/no/such/folder", {}, "no files match '/no/such/folder'"),
        ([], {}, "no input files given"),
        (b"bytes", {}, "inputs must be paths"),
        (None, {"concurrency": 0}, "concurrency must be at least 1"),
        (None, {"batch_size": -3}, "batch_size must be at least 1"),
        (None, {"threads_per_worker": 1.5}, "threads_per_worker must be a positive int"),
        (None, {"device": "tpu"}, "device must be one of 'cpu', 'cuda', 'auto', not 'tpu'"),
        (None, {"device": "cuda"}, "the Ray cluster has no GPUs"),
        (None, {"precision": "fp16"}, "unknown precision \"fp16\": use auto, fp32, bf16 or bf16-checked"),
        (None, {"precision": 16}, "precision must be a str"),
        (None, {"extensions": ["png"]}, "with extensions ['png']"),
    ],
)
def test_bad_arguments_are_value_errors(archive, inputs, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        bulk.score(archive if inputs is None else inputs, **options)


def test_outputs_that_cannot_take_results(archive, uninterrupted, tmp_path):
    summary, _ = uninterrupted
    with pytest.raises(ValueError, match="already holds results"):
        bulk.write(archive, summary.output, resume=False)
    a_file = tmp_path / "file.parquet"
    a_file.write_bytes(b"x")
    with pytest.raises(ValueError, match="is a file"):
        bulk.write(archive, a_file)
    with pytest.raises(skinlesion.ModelNotFoundError):
        bulk.score(archive, model=tmp_path / "missing.json")


def test_the_ray_pin_is_the_same_for_the_package_and_the_tests():
    pyproject = (REPO / "skinlesion-py" / "pyproject.toml").read_text()
    requirements = (REPO / "scripts" / "requirements-dev.txt").read_text()
    extra = re.search(r'ray = \["(ray\[[^\]]+\]==[\d.]+)"\]', pyproject).group(1)
    assert re.search(rf"^{re.escape(extra)}$", requirements, re.M), extra
