"""FastAPI + uvicorn + PyTorch on the same TorchScript file: the common modern deployment.

One uvicorn worker; the handler is a plain ``def``, so FastAPI runs it on its thread pool (the
forward pass releases the GIL), as its documentation recommends for blocking work.

    python fastapi_reference.py MODEL.json PORT
"""

import sys

import uvicorn
from fastapi import FastAPI, File, UploadFile
from fastapi.responses import JSONResponse

from torch_model import BAD_IMAGE, Model

model = Model(sys.argv[1])
app = FastAPI()


@app.get("/health")
def health():
    return {"status": "healthy", "model_loaded": True}


@app.post("/predict")
def predict(file: UploadFile = File(...)):
    try:
        prediction = model.predict(file.file.read())
    except BAD_IMAGE as e:
        return JSONResponse({"success": False, "error": str(e)}, status_code=400)
    return {"success": True, "prediction": prediction}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
