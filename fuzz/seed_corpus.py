"""Seeds the fuzz corpora from real HAM10000 images (read from ../shared at run time; the images
are never committed): encoded files in every supported format, HTTP requests, and C ABI pixel
buffers. Usage: python seed_corpus.py DATA_DIR CORPUS_DIR [N_IMAGES]
"""

import csv
import io
import os
import struct
import sys

from PIL import Image

BOUNDARY = b"----fuzz-boundary"
# The token the fuzz target's server accepts (fuzz_targets/http_request.rs).
TOKEN = b"fuzz-token-0123456789"


def multipart(files, field=b"file"):
    body = b""
    for i, data in enumerate(files):
        body += (
            b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"" + field
            + b"\"; filename=\"f" + str(i).encode() + b".jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            + data + b"\r\n"
        )
    return body + b"--" + BOUNDARY + b"--\r\n"


def post(path, body, content_type=b"multipart/form-data; boundary=" + BOUNDARY, token=TOKEN):
    authorization = b"Authorization: Bearer " + token + b"\r\n" if token else b""
    return (
        b"POST " + path + b" HTTP/1.1\r\nHost: x\r\n" + authorization + b"Content-Type: "
        + content_type + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def h2_get(path):
    """An HTTP/2 prior-knowledge GET: the preface, empty SETTINGS, one HEADERS frame (HPACK:
    :method GET and :scheme http from the static table, :path as a literal)."""
    def frame(kind, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    block = b"\x82\x86\x44" + bytes([len(path)]) + path
    return b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 5, 1, block)


def main():
    data, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    with open(os.path.join(data, "labels.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:n]
    targets = {t: os.path.join(out, t) for t in ("classify_bytes", "http_request", "c_api")}
    for folder in targets.values():
        os.makedirs(folder, exist_ok=True)

    def write(target, name, content):
        with open(os.path.join(targets[target], name), "wb") as f:
            f.write(content)

    for i, row in enumerate(rows):
        path = os.path.join(data, "images", row["image_id"] + ".jpg")
        jpeg = open(path, "rb").read()
        image = Image.open(path).convert("RGB")
        small = image.resize((40, 30))
        write("classify_bytes", f"{i}.jpg", jpeg)
        if i % 4 == 0:
            # Large enough (for the fuzz model's 64-pixel input) to be decoded at a reduced
            # scale by libjpeg-turbo; under the target's 64 KB input limit.
            buffer = io.BytesIO()
            image.resize((1024, 768)).save(buffer, "JPEG", quality=75)
            write("classify_bytes", f"{i}-large.jpg", buffer.getvalue())
        for fmt in ("PNG", "BMP", "TIFF", "WEBP", "GIF"):
            buffer = io.BytesIO()
            small.save(buffer, fmt)
            write("classify_bytes", f"{i}.{fmt.lower()}", buffer.getvalue())
        write("http_request", f"predict-{i}", post(b"/predict", multipart([jpeg])))
        if i % 4 == 0:
            write("http_request", f"batch-{i}", post(b"/predict/batch", multipart([jpeg, jpeg])))
            write("http_request", f"explain-{i}", post(b"/explain?class=MEL", multipart([jpeg])))
        # Header: format (0 grey, 1 RGB, 2 RGBA), width, height, stride (u16 LE), then pixels.
        for fmt, mode, channels in ((0, "L", 1), (1, "RGB", 3), (2, "RGBA", 4)):
            pixels = small.convert(mode).tobytes()
            header = struct.pack("<BHHH", fmt, 40, 30, 40 * channels)
            write("c_api", f"{i}-{mode}", header + pixels)
    for name, request in {
        "get-page": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "get-health": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "get-ready-metrics": b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN + b"\r\n\r\n",
        "h2-get-health": h2_get(b"/health"),
        "h2-get-metrics": h2_get(b"/metrics"),
        "no-token": post(b"/predict", multipart([b"abc"]), token=None),
        "wrong-token": post(b"/predict", multipart([b"abc"]), token=b"not-the-fuzz-token-000"),
        "no-file": post(b"/predict", multipart([b"abc"], field=b"image")),
        "raw-body": post(b"/predict", b"\xff\xd8\xff", content_type=b"image/jpeg"),
        "chunked": b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n5\r\n--b\r\n\r\n0\r\n\r\n",
    }.items():
        write("http_request", name, request)
    print(f"seed_corpus: {len(rows)} images into {out}")


if __name__ == "__main__":
    main()
