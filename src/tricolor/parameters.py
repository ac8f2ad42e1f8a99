"""A model's `parameters` block, read and validated once at load: a bad config fails there.

Every value comes from the model's `config.pbtxt` (the one source of each setting); a missing
or malformed entry is an error naming the model and the parameter, never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class ParameterError(ValueError):
    """A parameter is missing or out of range; the message names the model and the parameter."""


@dataclass(frozen=True)
class Parameters:
    model: str
    values: Mapping[str, str]

    @classmethod
    def from_model_config(cls, config: Mapping[str, Any]) -> Parameters:
        """From Triton's JSON model configuration (`json.loads(args["model_config"])`)."""
        return cls(
            model=config["name"],
            values={
                key: entry["string_value"] for key, entry in config.get("parameters", {}).items()
            },
        )

    def text(self, key: str) -> str:
        if key not in self.values:
            raise ParameterError(f"{self.model}: parameter {key!r} is missing from config.pbtxt")
        return self.values[key]

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        value = self.text(key)
        if value not in choices:
            raise ParameterError(f"{self.model}: parameter {key}={value!r}: one of {choices}")
        return value

    def integer(self, key: str, minimum: int | None = None, maximum: int | None = None) -> int:
        return int(self._number(key, int, "an integer", minimum, maximum))

    def number(self, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        return self._number(key, float, "a number", minimum, maximum)

    def _number(
        self,
        key: str,
        parse: type[int] | type[float],
        kind: str,
        minimum: float | None,
        maximum: float | None,
    ) -> float:
        raw = self.text(key)
        try:
            value = parse(raw)
        except ValueError as exc:
            raise ParameterError(f"{self.model}: parameter {key}={raw!r} is not {kind}") from exc
        if minimum is not None and value < minimum:
            raise ParameterError(f"{self.model}: parameter {key}={value} must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise ParameterError(f"{self.model}: parameter {key}={value} must be <= {maximum}")
        return value
