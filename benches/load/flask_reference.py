"""The original app, rebuilt from its description as the load benchmark's reference.

Flask's development server (as the original README ran it: ``app.run``, threaded), PyTorch
loading the same TorchScript model, and the same preprocessing and calibration as the model's
manifest says: PIL decode → RGB → bilinear resize to the model's input → normalise → forward →
softmax(logits / T + log prior), the Unknown rule, and the same JSON.

    python flask_reference.py MODEL.json PORT
"""

import json
import math
import pathlib
import sys

import numpy as np
import torch
from flask import Flask, jsonify, request
from PIL import Image, UnidentifiedImageError

manifest_path = pathlib.Path(sys.argv[1])
port = int(sys.argv[2])
meta = json.loads(manifest_path.read_text())
module = torch.jit.load(str(manifest_path.parent / meta["weights"]["file"]), map_location="cpu")
module.eval()

CODES = {"AK": "Actinic keratosis", "BCC": "Basal cell carcinoma", "BKL": "Benign keratosis",
         "DF": "Dermatofibroma", "MEL": "Melanoma", "NV": "Melanocytic nevi",
         "SCC": "Squamous cell carcinoma", "VASC": "Vascular lesion"}
CANCEROUS = {"MEL", "BCC", "SCC"}
classes = meta["classes"]
spec = meta["input"]
calibration = meta["calibration"]
mean = np.array(spec["mean"], np.float32)
std = np.array(spec["std"], np.float32)
log_prior = torch.tensor(calibration.get("log_prior") or [0.0] * len(classes))
# Format 1 answered the largest logit + decision_bias; format 2 the most probable class.
format_1 = meta["format"] == "skinlesion-model/1"
decision_bias = torch.tensor(calibration.get("decision_bias") or [0.0] * len(classes))
gate = calibration.get("dermoscopy_gate")

app = Flask(__name__)


def preprocess(file) -> torch.Tensor:
    image = Image.open(file.stream).convert("RGB")
    w, h = spec["width"], spec["height"]
    if spec["resize"] == "center_crop":
        iw, ih = image.size
        scale = min(iw / w, ih / h)
        cw, ch = round(w * scale), round(h * scale)
        left, top = (iw - cw) // 2, (ih - ch) // 2
        image = image.crop((left, top, left + cw, top + ch))
    image = image.resize((w, h), Image.BILINEAR)
    x = np.asarray(image, np.float32) / 255.0
    if spec.get("colour_constancy", "none") == "shades-of-gray":
        # The core's Shades of Gray (p = 6): each channel's illuminant estimate to 0.8.
        illuminant = np.mean(x.reshape(-1, 3).astype(np.float64) ** 6, axis=0) ** (1 / 6)
        gains = np.where(illuminant > 0, np.clip(0.8 / np.maximum(illuminant, 1e-12), 0.2, 5.0), 1.0)
        x = np.minimum(x * gains.astype(np.float32), 1.0)
    x = (x - mean) / std
    return torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)


@app.route("/health")
def health():
    return jsonify(status="healthy", model_loaded=True)


@app.route("/predict", methods=["POST"])
def predict():
    if "file" not in request.files:
        return jsonify(success=False, error="No file uploaded"), 400
    try:
        x = preprocess(request.files["file"])
    except (UnidentifiedImageError, OSError) as e:
        return jsonify(success=False, error=str(e)), 400
    with torch.no_grad():
        output = module(x)[0]
    # A gated (format-2) network returns its dermoscopy-gate score after the logits.
    logits, score = output[: len(classes)], (float(output[len(classes)]) if gate else None)
    probs = torch.softmax(logits / calibration["temperature"] + log_prior, dim=0)
    # Format 2 answers the most probable class; format 1 the largest logit + decision bias.
    decision = int(torch.argmax(logits + decision_bias if format_1 else probs))
    confidence = float(probs[decision])
    refused = gate is not None and not score <= gate["threshold"]
    unsure = not confidence >= calibration["unknown_threshold"]
    code = "UNK" if refused or unsure else classes[decision]
    reason = "not_dermoscopy" if refused else "low_confidence" if unsure else None
    order = sorted(range(len(classes)), key=lambda i: list(CODES).index(classes[i]))
    return jsonify(success=True, prediction={
        "class_name": CODES.get(code, "Unknown"),
        "is_cancerous": code in CANCEROUS,
        "confidence": confidence if not math.isnan(confidence) else 0.0,
        "all_predictions": {CODES[classes[i]]: float(probs[i]) for i in order},
        "unknown_reason": reason,
        "ood_score": score,
    })


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, threaded=True)
