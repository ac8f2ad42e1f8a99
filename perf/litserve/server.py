"""Runs in .venv-litserve: the LitServe peer, a `LitAPI` as LitServe's docs write one (PIL,
torchvision's transform, torch), serving torchvision's ResNet-50 with seeded random weights
(as tricolor's offline export and the TorchServe peer). One request: JSON {"image": base64}.

    .venv-litserve/bin/python perf/litserve/server.py --port 8100 --workers 1 --threads 2 \\
        [--max-batch-size 4 --batch-timeout 0.005]
"""

from __future__ import annotations

import argparse
import base64
import io

import litserve as ls
import torch
import torchvision
from PIL import Image
from torchvision.models import ResNet50_Weights

TOP_K = 5


class ResNet50API(ls.LitAPI):
    def __init__(self, threads: int, **batching: float) -> None:
        super().__init__(**batching)
        self.threads = threads

    def setup(self, device: str) -> None:
        torch.set_num_threads(self.threads)
        torch.manual_seed(0)
        self.model = torchvision.models.resnet50(weights=None).eval().to(device)
        # the V2 weights' preprocessing (resize 232, crop 224, normalise): no download
        self.transform = ResNet50_Weights.IMAGENET1K_V2.transforms()
        self.device = device

    def decode_request(self, request: dict) -> torch.Tensor:
        image = Image.open(io.BytesIO(base64.b64decode(request["image"]))).convert("RGB")
        return self.transform(image)

    def batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(inputs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:  # unbatched (max_batch_size 1)
            images = images.unsqueeze(0)
        with torch.inference_mode():
            return torch.softmax(self.model(images.to(self.device)), dim=1)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, output: torch.Tensor) -> dict:
        if output.dim() == 2:
            output = output[0]
        scores, indices = torch.topk(output, TOP_K)
        return {"class_ids": indices.tolist(), "scores": scores.tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1, help="LitServe's workers_per_device")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--max-batch-size", type=int, default=1)
    parser.add_argument("--batch-timeout", type=float, default=0.0)
    args = parser.parse_args()
    batching = {}
    if args.max_batch_size > 1:
        batching = {"max_batch_size": args.max_batch_size, "batch_timeout": args.batch_timeout}
    api = ResNet50API(args.threads, **batching)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=args.workers, timeout=120)
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False)


if __name__ == "__main__":
    main()
