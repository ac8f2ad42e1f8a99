"""resnet50 on CPU: the exported ONNX run by ONNX Runtime, all requests of a call in one run.

Loaded only through `configs/cpu.pbtxt`; on GPU hosts `config.pbtxt` serves `model.plan` with
the TensorRT backend and this file is ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from tricolor.python_backend import ExecutingRequests, Failure, gather, load_config, respond

RUNTIMES = ("onnxruntime", "openvino")


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        _, parameters = load_config(args)
        model_path = Path(args["model_repository"]) / args["model_version"]
        model_path /= parameters.text("model_file")
        if not model_path.exists():
            raise pb_utils.TritonModelException(
                f"{model_path} is missing: export it with `make setup`"
            )
        threads = parameters.integer("intra_op_threads", minimum=1)
        if parameters.choice("runtime", RUNTIMES) == "openvino":
            self._load_openvino(model_path, threads)
        else:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = parameters.integer("inter_op_threads", minimum=1)
            allow_spinning = parameters.choice("allow_spinning", ("0", "1"))
            self._load_onnxruntime(model_path, options, allow_spinning)
        self.executing = ExecutingRequests(args)

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
        return self.executing.run(requests, self._execute)

    def _execute(self, requests: list) -> list:
        batch = gather(requests, ("input",))
        if batch.empty:
            return respond(batch.outcomes, lambda rows: {})
        try:
            logits = self._infer(batch.stacked("input"))
        except Exception:  # noqa: BLE001 (ONNX Runtime raises its own types; not the input's fault)
            failure = Failure.ours("ONNX Runtime failed")
            return [failure.response() for _ in requests]
        return respond(batch.outcomes, lambda rows: {"logits": logits[rows]})
