"""The original app's server with the shipped network: Flask's development server (as the
original README ran it: ``app.run``, threaded) and PyTorch on the same TorchScript file.

    python flask_reference.py MODEL.json PORT
"""

import sys

from flask import Flask, jsonify, request

from torch_model import BAD_IMAGE, Model

model = Model(sys.argv[1])
app = Flask(__name__)


@app.route("/health")
def health():
    return jsonify(status="healthy", model_loaded=True)


@app.route("/predict", methods=["POST"])
def predict():
    if "file" not in request.files:
        return jsonify(success=False, error="No file uploaded"), 400
    try:
        prediction = model.predict(request.files["file"].read())
    except BAD_IMAGE as e:
        return jsonify(success=False, error=str(e)), 400
    return jsonify(success=True, prediction=prediction)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
