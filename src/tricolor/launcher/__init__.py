"""Start `tritonserver` on tricolor's model repository, watch it, drain it, stop it.

- `installation`: which `tritonserver` runs (the `nvidia-pytriton` wheel's, or one on PATH) and
  the Python-backend stub it needs;
- `process`: one server process on given ports: start, readiness, the drain before a stop;
- `metrics`: the metrics endpoint's text read with `prometheus_client`;
- `supervision`: `tricolor serve`, which restarts the server when a stub dies.

Each Triton 2.51 behaviour worked around here is named where the workaround lives, so it can go
when Triton fixes it.
"""

from tricolor.launcher.errors import LauncherError
from tricolor.launcher.installation import TritonInstallation, find_installation
from tricolor.launcher.metrics import metric_sum
from tricolor.launcher.process import ServerOptions, TritonServer, start_on_free_ports
from tricolor.launcher.supervision import Stub, python_stubs, serve

__all__ = [
    "LauncherError",
    "ServerOptions",
    "Stub",
    "TritonInstallation",
    "TritonServer",
    "find_installation",
    "metric_sum",
    "python_stubs",
    "serve",
    "start_on_free_ports",
]
