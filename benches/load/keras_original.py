"""The original app as its README describes it: Flask's development server and a Keras CNN of
the original architecture (two convolution layers on 128-px images, HAM10000's seven classes).

Untrained weights (the bench measures speed, and the original's weights are not available);
the input path is the original's (PIL → RGB → 128×128 → /255) and the JSON has the same shape.
The forward pass is ``model(x, training=False)``, Keras's fast path for one sample (faster than
``model.predict`` per request): the peer at its best. Runs in its own venv (tensorflow-cpu).

    python keras_original.py PORT
"""

import io
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402

threads = int(os.environ.get("TORCH_THREADS", "1"))  # the same setting as every Python peer
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
CLASSES = ["Actinic keratosis", "Basal cell carcinoma", "Benign keratosis", "Dermatofibroma",
           "Melanoma", "Melanocytic nevi", "Vascular lesion"]
CANCEROUS = {"Melanoma", "Basal cell carcinoma"}

tf.keras.utils.set_random_seed(0)
model = tf.keras.Sequential([
    tf.keras.Input((128, 128, 3)),
    tf.keras.layers.Conv2D(32, 3, activation="relu"),
    tf.keras.layers.MaxPooling2D(),
    tf.keras.layers.Conv2D(64, 3, activation="relu"),
    tf.keras.layers.MaxPooling2D(),
    tf.keras.layers.Flatten(),
    tf.keras.layers.Dense(128, activation="relu"),
    tf.keras.layers.Dropout(0.5),
    tf.keras.layers.Dense(len(CLASSES), activation="softmax"),
])
app = Flask(__name__)


@app.route("/health")
def health():
    return jsonify(status="healthy", model_loaded=True)


@app.route("/predict", methods=["POST"])
def predict():
    if "file" not in request.files:
        return jsonify(success=False, error="No file uploaded"), 400
    try:
        image = Image.open(io.BytesIO(request.files["file"].read())).convert("RGB").resize((128, 128))
    except (UnidentifiedImageError, OSError) as e:
        return jsonify(success=False, error=str(e)), 400
    x = np.asarray(image, np.float32)[None] / 255.0
    probs = model(x, training=False).numpy()[0]
    best = int(np.argmax(probs))
    return jsonify(success=True, prediction={
        "class_name": CLASSES[best],
        "is_cancerous": CLASSES[best] in CANCEROUS,
        "confidence": float(probs[best]),
        "all_predictions": {name: float(p) for name, p in zip(CLASSES, probs)},
    })


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
