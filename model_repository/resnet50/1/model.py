"""resnet50 on CPU: the exported ONNX run by ONNX Runtime, all requests of a call in one run.

Loaded only through `configs/cpu.pbtxt`; on GPU hosts `config.pbtxt` serves `model.plan` with
the TensorRT backend and this file is ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


def _parameter(parameters: dict, name: str, default: str) -> str:
    return parameters.get(name, {}).get("string_value", default)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = config.get("parameters", {})
        model_path = (
            Path(args["model_repository"])
            / args["model_version"]
            / _parameter(parameters, "model_file", "model.onnx")
        )
        if not model_path.exists():
            raise pb_utils.TritonModelException(
                f"{model_path} is missing: export it with `make setup`"
            )
        options = ort.SessionOptions()
        try:
            options.intra_op_num_threads = int(_parameter(parameters, "intra_op_threads", "2"))
            options.inter_op_num_threads = int(_parameter(parameters, "inter_op_threads", "1"))
        except ValueError as exc:
            raise pb_utils.TritonModelException(
                f"thread parameters must be integers: {exc}"
            ) from exc
        runtime = _parameter(parameters, "runtime", "onnxruntime")
        if runtime not in ("onnxruntime", "openvino"):
            raise pb_utils.TritonModelException(
                f"parameter runtime={runtime!r}: onnxruntime or openvino"
            )
        if runtime == "openvino":
            self._load_openvino(model_path, options.intra_op_num_threads)
        else:
            self._load_onnxruntime(
                model_path, options, _parameter(parameters, "allow_spinning", "1")
            )
        labels = {"model": args["model_name"], "version": args["model_version"]}
        # requests inside execute right now: the launcher drains until every model is idle
        self.executing_family = pb_utils.MetricFamily(
            name="tricolor_executing_requests",
            description="Requests inside the model's execute right now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.executing = self.executing_family.Metric(labels=labels)

    def _load_onnxruntime(self, model_path: Path, options, allow_spinning: str) -> None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", allow_spinning)
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        self.num_classes = session.get_outputs()[0].shape[1]
        self._infer = lambda batch: session.run(["logits"], {input_name: batch})[0]
        metadata = session.get_modelmeta().custom_metadata_map
        pb_utils.Logger.log_info(
            f"resnet50: ONNX Runtime {ort.__version__} on {model_path.name}, "
            f"{options.intra_op_num_threads} intra-op threads, weights "
            f"{metadata.get('weights', 'unknown')}"
        )
        if "warning" in metadata:
            pb_utils.Logger.log_warn(f"resnet50: {metadata['warning']}")

    def _load_openvino(self, model_path: Path, threads: int) -> None:
        """The opt-in OpenVINO CPU runtime on the same ONNX (`pip install -e .[openvino]`)."""
        try:
            import openvino as ov  # noqa: PLC0415 (optional dependency)
        except ImportError as exc:
            raise pb_utils.TritonModelException(
                "runtime openvino: the openvino package is not installed (the `openvino` extra)"
            ) from exc
        compiled = ov.Core().compile_model(
            str(model_path),
            "CPU",
            # f32: parity with ONNX Runtime; the default on AMX CPUs is bf16 (and its AMX kernels
            # died with SIGILL on this project's VM)
            {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        self.num_classes = int(compiled.output(0).get_partial_shape()[1].get_length())
        request = compiled.create_infer_request()
        self._infer = lambda batch: np.asarray(request.infer({0: batch})[0], dtype=np.float32)
        pb_utils.Logger.log_info(
            f"resnet50: OpenVINO {ov.__version__} on {model_path.name}, {threads} threads"
        )

    def execute(self, requests: list) -> list:
        self.executing.increment(len(requests))
        try:
            return self._execute(requests)
        finally:
            self.executing.increment(-len(requests))

    def _execute(self, requests: list) -> list:
        tensors = [pb_utils.get_input_tensor_by_name(request, "input") for request in requests]
        batches = [tensor.as_numpy() for tensor in tensors if tensor is not None]
        try:
            logits = self.run(np.concatenate(batches)) if batches else None
        except Exception as exc:  # ONNX Runtime raises its own types: every request gets it
            return [self._error(f"ONNX Runtime failed: {exc}") for _ in requests]
        responses, offset = [], 0
        for tensor in tensors:
            if tensor is None:
                responses.append(self._error("input 'input' is missing"))
                continue
            rows = tensor.shape()[0]
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("logits", logits[offset : offset + rows])]
                )
            )
            offset += rows
        return responses

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return self._infer(batch)

    @staticmethod
    def _error(message: str):
        return pb_utils.InferenceResponse(
            error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        )
