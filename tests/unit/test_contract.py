"""The model configurations agree with `tricolor.contract`, the one source of the outputs."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from tricolor import contract
from tricolor.model_config import read_model_config
from tricolor.parameters import ParameterError, Parameters
from tricolor.settings import MODEL_REPOSITORY

WIRE_TYPES = {
    "TYPE_STRING": "BYTES",
    "TYPE_FP32": "FP32",
    "TYPE_INT32": "INT32",
    "TYPE_BOOL": "BOOL",
}


def declared_outputs(model: str) -> dict[str, tuple[str, list[int]]]:
    config = read_model_config(MODEL_REPOSITORY / model / "config.pbtxt")
    type_name = model_config_pb2.DataType.Name
    return {
        output.name: (WIRE_TYPES[type_name(output.data_type)], list(output.dims))
        for output in config.output
    }


@pytest.mark.parametrize("model", ["classify", "postprocess"])
def test_configs_declare_exactly_the_contract_outputs(model: str) -> None:
    expected = {output.name: (output.datatype, list(output.dims)) for output in contract.OUTPUTS}
    assert declared_outputs(model) == expected


def test_classify_takes_the_image_input() -> None:
    config = read_model_config(MODEL_REPOSITORY / "classify" / "config.pbtxt")
    assert [(i.name, list(i.dims)) for i in config.input] == [(contract.IMAGE_INPUT, [1])]
    steps = [step.model_name for step in config.ensemble_scheduling.step]
    assert steps == list(contract.COMPOSING_MODELS)


def test_parameters_are_validated_with_the_model_and_key_named() -> None:
    parameters = Parameters("preprocess", {"resize_size": "200", "draft_factor": "two"})
    with pytest.raises(ParameterError, match="preprocess: parameter resize_size=200 must be >="):
        parameters.integer("resize_size", minimum=224)
    with pytest.raises(ParameterError, match="draft_factor='two' is not an integer"):
        parameters.integer("draft_factor")
    with pytest.raises(ParameterError, match="'top_k' is missing from config.pbtxt"):
        parameters.integer("top_k")
    with pytest.raises(ParameterError, match="one of"):
        Parameters("resnet50", {"runtime": "tvm"}).choice("runtime", ("onnxruntime", "openvino"))
