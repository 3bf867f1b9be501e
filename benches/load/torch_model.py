"""The shipped model served from Python, as the load benchmark's Python servers all serve it.

One implementation of what the Rust core does, for the Flask, FastAPI and LitServe references:
PIL decode → RGB → the manifest's resize → colour constancy → normalise → TorchScript forward →
softmax(logits / T + log prior), the dermoscopy gate, the Unknown rule, and the same JSON.
Threads: ``TORCH_THREADS`` (the bench sets skinlesion-server's CPU default, one per forward pass).
Precision: ``TORCH_PRECISION`` ``fp32`` (default) or ``bf16``, the artifact's bf16 network (the
manifest's ``other_precisions``): the same network and arithmetic skinlesion-server runs.
"""

import io
import json
import math
import os
import pathlib

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

CODES = {"AK": "Actinic keratosis", "BCC": "Basal cell carcinoma", "BKL": "Benign keratosis",
         "DF": "Dermatofibroma", "MEL": "Melanoma", "NV": "Melanocytic nevi",
         "SCC": "Squamous cell carcinoma", "VASC": "Vascular lesion"}
CANCEROUS = {"MEL", "BCC", "SCC"}
BAD_IMAGE = (UnidentifiedImageError, OSError, ValueError)


class Model:
    def __init__(self, manifest_path: str) -> None:
        torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
        path = pathlib.Path(manifest_path)
        meta = json.loads(path.read_text())
        weights = meta["weights"]
        if os.environ.get("TORCH_PRECISION", "fp32") == "bf16":
            weights = next(o["weights"] for o in meta["other_precisions"] if o["precision"] == "bf16")
        self.module = torch.jit.load(str(path.parent / weights["file"]), map_location="cpu").eval()
        self.classes = meta["classes"]
        self.spec = meta["input"]
        self.calibration = meta["calibration"]
        self.mean = np.array(self.spec["mean"], np.float32)
        self.std = np.array(self.spec["std"], np.float32)
        n = len(self.classes)
        self.log_prior = torch.tensor(self.calibration.get("log_prior") or [0.0] * n)
        # Format 1 answered the largest logit + decision_bias; format 2 the most probable class.
        self.format_1 = meta["format"] == "skinlesion-model/1"
        self.decision_bias = torch.tensor(self.calibration.get("decision_bias") or [0.0] * n)
        self.gate = self.calibration.get("dermoscopy_gate")
        self.order = sorted(range(n), key=lambda i: list(CODES).index(self.classes[i]))

    def preprocess(self, data: bytes) -> torch.Tensor:
        """1×3×H×W input of one encoded image; raises one of ``BAD_IMAGE``."""
        image = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = self.spec["width"], self.spec["height"]
        if self.spec["resize"] == "center_crop":
            iw, ih = image.size
            scale = min(iw / w, ih / h)
            cw, ch = round(w * scale), round(h * scale)
            left, top = (iw - cw) // 2, (ih - ch) // 2
            image = image.crop((left, top, left + cw, top + ch))
        image = image.resize((w, h), Image.BILINEAR)
        x = np.asarray(image, np.float32) / 255.0
        if self.spec.get("colour_constancy", "none") == "shades-of-gray":
            # The core's Shades of Gray (p = 6): each channel's illuminant estimate to 0.8.
            illuminant = np.mean(x.reshape(-1, 3).astype(np.float64) ** 6, axis=0) ** (1 / 6)
            gains = np.where(illuminant > 0, np.clip(0.8 / np.maximum(illuminant, 1e-12), 0.2, 5.0), 1.0)
            x = np.minimum(x * gains.astype(np.float32), 1.0)
        x = (x - self.mean) / self.std
        return torch.from_numpy(x.transpose(2, 0, 1).copy()).unsqueeze(0)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(batch)

    def prediction(self, output: torch.Tensor) -> dict:
        """The HTTP API's ``prediction`` object from one row of the network's output."""
        n = len(self.classes)
        # A gated (format-2) network returns its dermoscopy-gate score after the logits.
        logits, score = output[:n], (float(output[n]) if self.gate else None)
        probs = torch.softmax(logits / self.calibration["temperature"] + self.log_prior, dim=0)
        decision = int(torch.argmax(logits + self.decision_bias if self.format_1 else probs))
        confidence = float(probs[decision])
        refused = self.gate is not None and not score <= self.gate["threshold"]
        unsure = not confidence >= self.calibration["unknown_threshold"]
        code = "UNK" if refused or unsure else self.classes[decision]
        reason = "not_dermoscopy" if refused else "low_confidence" if unsure else None
        return {
            "class_name": CODES.get(code, "Unknown"),
            "is_cancerous": code in CANCEROUS,
            "confidence": confidence if not math.isnan(confidence) else 0.0,
            "all_predictions": {CODES[self.classes[i]]: float(probs[i]) for i in self.order},
            "unknown_reason": reason,
            "ood_score": score,
        }

    def predict(self, data: bytes) -> dict:
        return self.prediction(self.forward(self.preprocess(data))[0])
