"""What tricolor's three Python-backend models share; importable only inside Triton's stub.

- `load_config`: the model configuration and its validated `Parameters`, once in `initialize`;
- `Failure`: one request's error with the right Triton code: the input's fault (INVALID_ARG)
  or ours (INTERNAL, logged with its traceback);
- `gather` / `respond`: the rows of every request of one `execute` as one batch, and the
  answers scattered back, one response or one error per request;
- `ExecutingRequests`: the `tricolor_executing_requests` gauge the launcher drains on, and
  `execute`'s last guard (an unexpected exception fails the call's requests as INTERNAL).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from tricolor.parameters import Parameters


def load_config(args: dict[str, Any]) -> tuple[dict[str, Any], Parameters]:
    config = json.loads(args["model_config"])
    return config, Parameters.from_model_config(config)


def metric_labels(args: dict[str, Any]) -> dict[str, str]:
    return {"model": args["model_name"], "version": args["model_version"]}


@dataclass(frozen=True)
class Failure:
    """Why one request gets an error instead of outputs."""

    message: str
    internal: bool = False

    @classmethod
    def ours(cls, context: str) -> Failure:
        """Our own fault, from inside an `except`: logged with the traceback, INTERNAL."""
        pb_utils.Logger.log_error(f"{context}\n{traceback.format_exc()}")
        return cls(f"internal error: {context} (the server log has the traceback)", True)

    def response(self) -> Any:
        code = pb_utils.TritonError.INTERNAL if self.internal else pb_utils.TritonError.INVALID_ARG
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(self.message, code))


@dataclass
class Batch:
    """The rows of one `execute`'s requests: per input, every complete request's rows stacked.

    `outcomes[i]` is request i's row count, or its `Failure` (set by `gather` for a missing
    input, or later by the model); `respond` scatters the answers by it.
    """

    outcomes: list[int | Failure]
    arrays: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def rows(self) -> Iterator[tuple[int, slice]]:
        """(request index, its rows in `arrays`) of the requests gathered without a failure."""
        offset = 0
        for index, outcome in enumerate(self.outcomes):
            if isinstance(outcome, int):
                yield index, slice(offset, offset + outcome)
                offset += outcome

    def stacked(self, name: str) -> np.ndarray:
        return np.concatenate(self.arrays[name])

    @property
    def empty(self) -> bool:
        return not any(isinstance(outcome, int) for outcome in self.outcomes)


def gather(requests: list, names: tuple[str, ...]) -> Batch:
    batch = Batch(outcomes=[], arrays={name: [] for name in names})
    for request in requests:
        tensors = {name: pb_utils.get_input_tensor_by_name(request, name) for name in names}
        missing = [name for name, tensor in tensors.items() if tensor is None]
        if missing:
            batch.outcomes.append(Failure(f"input(s) missing: {', '.join(missing)}"))
            continue
        arrays = {name: tensor.as_numpy() for name, tensor in tensors.items()}
        batch.outcomes.append(len(arrays[names[0]]))
        for name, array in arrays.items():
            batch.arrays[name].append(array)
    return batch


def respond(
    outcomes: list[int | Failure], outputs: Callable[[slice], dict[str, np.ndarray] | Failure]
) -> list:
    """One response per request: `outputs(rows)` for its rows among the successful ones' rows
    (in request order), or its failure."""
    responses, offset = [], 0
    for outcome in outcomes:
        if isinstance(outcome, Failure):
            responses.append(outcome.response())
            continue
        rows = slice(offset, offset + outcome)
        offset += outcome
        result = outputs(rows)
        if isinstance(result, Failure):
            responses.append(result.response())
            continue
        tensors = [pb_utils.Tensor(name, array) for name, array in result.items()]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses


class ExecutingRequests:
    """The requests inside this instance's `execute` right now (the launcher's drain waits for
    zero), and the guard around it."""

    def __init__(self, args: dict[str, Any]) -> None:
        # every MetricFamily stays referenced, or its metrics fail on first use
        self.family = pb_utils.MetricFamily(
            name="tricolor_executing_requests",
            description="Requests inside the model's execute right now",
            kind=pb_utils.MetricFamily.GAUGE,
        )
        self.gauge = self.family.Metric(labels=metric_labels(args))
        self.model = args["model_name"]

    def run(self, requests: list, execute: Callable[[list], list]) -> list:
        self.gauge.increment(len(requests))
        try:
            return execute(requests)
        except Exception:  # noqa: BLE001 (a bug of ours must not take the batch's answers down)
            failure = Failure.ours(f"{self.model} failed on a batch of {len(requests)}")
            return [failure.response() for _ in requests]
        finally:
            self.gauge.increment(-len(requests))
