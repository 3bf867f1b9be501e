"""DICOM fixtures and pydicom's own pixels for them, for the DICOM tests of every interface.

    python dicom_fixtures.py OUT_DIR HAM_JPEG [HAM_JPEG ...]

Writes into OUT_DIR:
- pydicom's bundled colour test files, each with `NAME.rgb`: pydicom's decoding of its first
  frame as 8-bit RGB (the reference the core's decoder is held to), listed in `fixtures.json`;
- `ham-N.dcm`: each HAM10000 JPEG wrapped byte for byte as JPEG-in-DICOM (Dermoscopic
  Photography Image Storage, JPEG Baseline, YBR_FULL_422), with body site, laterality, age and
  sex, and identifiers (name, ID, birth date) that must never come out of any interface;
- `ham-0-ybr.dcm` / `ham-0-rgb.dcm`: the first JPEG's pixels stored uncompressed as YBR_FULL and
  as RGB (with `.rgb` references);
- refusals: `mr-16bit.dcm` (monochrome), `rgb-16bit.dcm` (16-bit colour), `no-pixels.dcm`,
  `jpeg-ls.dcm` (a transfer syntax this build does not decode).

Nothing is downloaded: only the files pydicom ships inside its wheel are used.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import convert_color_space
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    generate_uid,
)

DERMOSCOPY = "1.2.840.10008.5.1.4.1.1.77.1.7"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
PYDICOM_COLOUR = [
    "SC_rgb_dcmtk_+eb+cy+np.dcm",
    "SC_rgb_dcmtk_+eb+cy+s2.dcm",
    "SC_rgb_dcmtk_+eb+cy+n1.dcm",
    "SC_rgb_dcmtk_+eb+cy+n2.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_dcmtk_+eb+cr.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_rgb_jpeg_lossy_gdcm.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_rle_2frame.dcm",
    "examples_jpeg2k.dcm",
    "examples_ybr_color.dcm",
]
# Identifiers the fixtures carry so that tests can prove they never come out.
IDENTIFIERS = {"PatientName": "Doe^Jane", "PatientID": "SL-SECRET-4711",
               "PatientBirthDate": "19800314", "AccessionNumber": "ACC-90210"}


def first_frame_rgb(ds):
    arr = ds.pixel_array  # pydicom converts YBR to RGB by default
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return np.ascontiguousarray(arr[0] if frames > 1 else arr, dtype=np.uint8)


def kind(ts):
    if ts == JPEGBaseline8Bit or ts.name.startswith("JPEG Extended"):
        return "jpeg"
    if "2000" in ts.name:
        return "jpeg2000"
    if "RLE" in ts.name:
        return "rle"
    if ts.is_compressed:
        return "jpeg-lossless"
    return "uncompressed"


def describe(name, ds, out):
    rgb = first_frame_rgb(ds)
    (out / f"{name}.rgb").write_bytes(rgb.tobytes())
    ts = ds.file_meta.TransferSyntaxUID
    return {"file": name, "width": int(ds.Columns), "height": int(ds.Rows),
            "frames": int(ds.get("NumberOfFrames", 1) or 1), "transfer_syntax": str(ts),
            "photometric": str(ds.PhotometricInterpretation), "kind": kind(ts)}


def base(sop_class, ts):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ts
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    return ds


def dermoscopy(ts):
    ds = base(DERMOSCOPY, ts)
    ds.Modality = "DMS"
    ds.PatientAge = "045Y"
    ds.PatientSex = "F"
    ds.ImageLaterality = "L"
    region = Dataset()
    region.CodeValue = "40983000"
    region.CodingSchemeDesignator = "SCT"
    region.CodeMeaning = "Upper arm"
    ds.AnatomicRegionSequence = [region]
    return ds


def image_module(ds, rows, columns, photometric, samples=3, bits=8):
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if samples == 3:
        ds.PlanarConfiguration = 0


def wrap_jpeg(jpeg: Path, path: Path):
    width, height = Image.open(jpeg).size
    ds = dermoscopy(JPEGBaseline8Bit)
    image_module(ds, height, width, "YBR_FULL_422")
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([jpeg.read_bytes()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def uncompressed(jpeg: Path, photometric, path: Path):
    rgb = np.asarray(Image.open(jpeg).convert("RGB"))
    pixels = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", photometric)
    ds = dermoscopy(ExplicitVRLittleEndian)
    image_module(ds, rgb.shape[0], rgb.shape[1], photometric)
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return ds


def refusals(out: Path):
    shutil.copy(TEST_FILES / "MR_small.dcm", out / "mr-16bit.dcm")
    ds = base(SECONDARY_CAPTURE, ExplicitVRLittleEndian)
    image_module(ds, 4, 4, "RGB", bits=16)
    ds.PixelData = bytes(4 * 4 * 3 * 2)
    ds.save_as(out / "rgb-16bit.dcm", enforce_file_format=True)
    ds = base("1.2.840.10008.5.1.4.1.1.88.22", ExplicitVRLittleEndian)  # Enhanced SR
    ds.Modality = "SR"
    ds.save_as(out / "no-pixels.dcm", enforce_file_format=True)
    ds = dermoscopy(JPEGLSLossless)
    image_module(ds, 8, 8, "RGB")
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(60) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(out / "jpeg-ls.dcm", enforce_file_format=True)


def main():
    out = Path(sys.argv[1])
    jpegs = [Path(p) for p in sys.argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    fixtures = []
    for name in PYDICOM_COLOUR:
        shutil.copy(TEST_FILES / name, out / name)
        fixtures.append(describe(name, pydicom.dcmread(out / name), out))
    for i, jpeg in enumerate(jpegs):
        wrap_jpeg(jpeg, out / f"ham-{i}.dcm")
    if jpegs:
        for photometric in ("YBR_FULL", "RGB"):
            name = f"ham-0-{photometric.split('_')[0].lower()}.dcm"
            uncompressed(jpegs[0], photometric, out / name)
            fixtures.append(describe(name, pydicom.dcmread(out / name), out))
    refusals(out)
    (out / "fixtures.json").write_text(json.dumps(
        {"colour": fixtures, "identifiers": list(IDENTIFIERS.values())}, indent=1))


if __name__ == "__main__":
    main()
