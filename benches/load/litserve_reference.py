"""LitServe on the same TorchScript file, with its dynamic batching on.

Requests are decoded (and refused with a 400) one by one in ``decode_request``, batched by
LitServe up to MAX_BATCH images or BATCH_TIMEOUT seconds, and run in one forward pass. Tuned
once on this machine at concurrency 16 (see benches/RESULTS.md): max batch 2 (this network is
slower per image in larger CPU batches, as skinlesion-server's own --max-batch default found)
and a 5 ms timeout. One worker process (the model's threads: TORCH_THREADS).

    python litserve_reference.py MODEL.json PORT
"""

import os
import sys

import litserve as ls
import torch
from fastapi import HTTPException

from torch_model import BAD_IMAGE, Model

MAX_BATCH = int(os.environ.get("LITSERVE_MAX_BATCH", "2"))
BATCH_TIMEOUT = float(os.environ.get("LITSERVE_BATCH_TIMEOUT", "0.005"))


class SkinLesionAPI(ls.LitAPI):
    def setup(self, device):
        self.model = Model(sys.argv[1])

    def decode_request(self, request):
        upload = request["file"]
        try:
            return self.model.preprocess(upload.file.read())
        except BAD_IMAGE as e:
            raise HTTPException(status_code=400, detail=str(e))

    def batch(self, inputs):
        return torch.cat(inputs)

    def predict(self, x):
        return self.model.forward(x)

    def unbatch(self, output):
        return list(output)

    def encode_response(self, output):
        return {"success": True, "prediction": self.model.prediction(output)}


if __name__ == "__main__":
    api = SkinLesionAPI(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(port=int(sys.argv[2]), generate_client_file=False, log_level="warning")
