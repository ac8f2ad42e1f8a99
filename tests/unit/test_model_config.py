"""tricolor.model_config: Triton's own schema reads every config in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tricolor.model_config import read_model_config, string_parameter
from tricolor.settings import MODEL_REPOSITORY


@pytest.mark.parametrize(
    "path",
    sorted(MODEL_REPOSITORY.glob("*/config.pbtxt")) + sorted(MODEL_REPOSITORY.glob("*/configs/*")),
    ids=lambda path: str(path.relative_to(MODEL_REPOSITORY)),
)
def test_every_config_parses_with_its_model_name(path: Path) -> None:
    model = path.relative_to(MODEL_REPOSITORY).parts[0]
    assert read_model_config(path).name == model


def test_string_parameter_reads_the_parameters_block(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text(
        'name: "m"\nparameters [ { key: "resize_size", value: { string_value: "256" } } ]\n'
    )
    config = read_model_config(path)
    assert string_parameter(config, "resize_size") == "256"
    with pytest.raises(KeyError, match="model 'm' has no parameter 'thumbnail_size'"):
        string_parameter(config, "thumbnail_size")


def test_an_invalid_config_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nno_such_field: 1\n')
    with pytest.raises(
        ValueError, match=re.escape(f"{path}: not a valid Triton model configuration")
    ):
        read_model_config(path)
