"""monitoring/ against a real Prometheus (Debian's `prometheus` package) scraping the test server.

Checked: promtool accepts the scrape config and the alert rules; Prometheus scrapes the
embedded server with them and loads the rules healthy; every alert expression and every
Grafana panel query evaluates, and every series they name is one the server really exports
(a renamed metric would otherwise leave a dashboard panel silently empty).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import ARTIFACTS, generated_images, scrape, stop_process, wait_for
from tricolor.launcher import TritonServer
from tricolor.settings import PROJECT_ROOT, free_ports

pytestmark = pytest.mark.integration

MONITORING = PROJECT_ROOT / "monitoring"
SERIES = re.compile(r"\b(?:nv|tricolor)_[a-z0-9_]+\b")
# only the container's server exports these: GPU metrics need a GPU, the latency summaries need
# the --metrics-config summary_latencies=true it passes (tests/test_deploy.py checks both flags)
CONTAINER_ONLY_SERIES = re.compile(r"nv_gpu_[a-z_]+|nv_inference_[a-z_]+_summary_us")
# the queries that are empty on this server, by name: on container-only series, or `offset 7d`
# (a week before this server started)
EMPTY_HERE = {
    "alert TricolorConfidenceDrift",  # offset 7d
    "panel 'Top-1 confidence median vs 7 days ago' #1",  # offset 7d
    'panel "classify latency p50 / p99 (Triton\'s request summaries)" #0',
    "panel 'Queue time p99 per model' #0",  # a latency summary
    "panel 'GPU utilisation and memory' #0",
    "panel 'GPU utilisation and memory' #1",
}
# an alert's comparison (`a > b`), which `a > bool b` turns into a 0 / 1 value
ALERT_CONDITION = re.compile(r"\s(>|<|>=|<=)\s")
ADAPTER_VALUES = PROJECT_ROOT / "deploy" / "k8s" / "prometheus-adapter-values.yaml"
ADAPTER_TARGET_LABELS = {"namespace": "tricolor", "pod": "triton-0"}


def prometheus_binaries() -> tuple[str, str]:
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    if os.environ.get("CI"):  # .ci/run installs it: missing there is a failure, not a skip
        pytest.fail("prometheus / promtool not on PATH (Debian package `prometheus`)")
    pytest.skip("prometheus / promtool not installed (apt-get install prometheus)")


def queries() -> dict[str, str]:
    """Every PromQL expression tricolor ships: the alert rules and the dashboard's panels."""
    found = {}
    for group in yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"]:
        for rule in group["rules"]:
            found[f"alert {rule['alert']}"] = rule["expr"]
    dashboard = json.loads((MONITORING / "grafana" / "tricolor.json").read_text())
    for panel in dashboard["panels"]:
        for index, target in enumerate(panel.get("targets", [])):
            found[f"panel {panel['title']!r} #{index}"] = target["expr"]
    return found


def api(base: str, path: str, **params: str) -> dict:
    url = f"{base}/api/v1/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:  # a bad query answers 400 with the reason as JSON
        return json.load(exc)


def test_promtool_accepts_config_and_rules(tmp_path: Path) -> None:
    _, promtool = prometheus_binaries()
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    config = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert config.returncode == 0, config.stdout + config.stderr
    assert "3 rules found" in config.stdout + config.stderr


@pytest.fixture(scope="module")
def prometheus(server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping the test server every second with monitoring/'s rules."""
    binary, _ = prometheus_binaries()
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["scrape_configs"][0]["static_configs"][0]["targets"] = [
        server.metrics_url.removeprefix("http://").removesuffix("/metrics")
    ]
    # the target labels Kubernetes discovery gives a pod (prometheus-adapter's rule needs them)
    config["scrape_configs"][0]["static_configs"][0]["labels"].update(ADAPTER_TARGET_LABELS)
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(MONITORING / "alerts.yml", work / "alerts.yml")
    (port,) = free_ports(1)
    log_path = ARTIFACTS / "prometheus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def readiness() -> str:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited ({process.returncode}): see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:
                return f"HTTP {response.status}"
        except OSError as exc:
            return repr(exc)

    try:
        wait_for(readiness, lambda seen: seen == "HTTP 200", "prometheus ready")
        yield base
    finally:
        stop_process(process)
        log.close()


def query_value(base: str, query: str) -> float | None:
    """The query's single value now, None while Prometheus has no sample for it."""
    result = api(base, "query", query=query)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait_for_value(base: str, query: str, expected: float) -> None:
    """Wait until Prometheus (scraping every second) has exactly `expected` for a counter."""
    value = wait_for(
        lambda: query_value(base, query),
        lambda seen: seen is not None and seen >= expected,
        f"prometheus: {query} reaching {expected:g}",
    )
    assert value == expected, f"prometheus: {query} is {value:g}, expected exactly {expected:g}"


def exported_names(server: TritonServer) -> set[str]:
    """The names of tricolor's and Triton's series on the server's own metrics endpoint."""
    samples = (line.split("{")[0].split(" ")[0] for line in server.metrics_text().splitlines())
    return {name for name in samples if SERIES.fullmatch(name)}


def test_prometheus_scrapes_the_server(server: TritonServer, prometheus: str, client) -> None:
    images = generated_images()
    decoded, refused = "tricolor_decoded_images_total", "tricolor_rejected_images_total"
    decoded_query = f"sum({decoded})"
    refused_query = f'sum({refused}{{reason="undecodable"}}) or vector(0)'
    # the server's own counts, and Prometheus caught up with them before the traffic
    decoded_before = scrape(server, decoded)
    refused_before = scrape(server, refused, reason="undecodable")
    wait_for_value(prometheus, decoded_query, decoded_before)
    wait_for_value(prometheus, refused_query, refused_before)
    results = client.classify_many([*images.values(), b"not an image"], [*images, "bad"])
    assert sum(result.error is None for result in results) == len(images)
    wait_for_value(prometheus, decoded_query, decoded_before + len(images))
    wait_for_value(prometheus, refused_query, refused_before + 1)
    targets = api(prometheus, "targets")["data"]["activeTargets"]
    assert [target["health"] for target in targets] == ["up"], targets


def test_every_shipped_query_evaluates_on_real_series(
    server: TritonServer, prometheus: str, client
) -> None:
    images = generated_images()
    client.classify_many([*images.values(), b""], [*images, "empty"])  # series of each kind
    exported = exported_names(server)
    wait_for(
        lambda: set(api(prometheus, "label/__name__/values")["data"]),
        lambda seen: exported <= seen,
        "prometheus holding every series the server exports",
    )
    problems = []
    for where, expression in queries().items():
        answer = api(prometheus, "query", query=expression)
        if answer["status"] != "success":
            problems.append(f"{where}: {answer.get('error')}")
        problems += [
            f"{where}: no series named {name}"
            for name in SERIES.findall(expression)
            if name not in exported and not CONTAINER_ONLY_SERIES.fullmatch(name)
        ]
    assert not problems, "\n".join(problems)
    # after the traffic every query has a result: a misspelt label (`{model="clasify"}`)
    # evaluates fine to an empty vector, the silent empty panel. An alert's condition is asked
    # with `bool` (a false one filters every series out)
    assert EMPTY_HERE <= set(queries()), EMPTY_HERE - set(queries())
    expected_answers = {
        where: ALERT_CONDITION.sub(r"\1 bool ", expression)
        if where.startswith("alert ")
        else expression
        for where, expression in queries().items()
        if where not in EMPTY_HERE
    }
    wait_for(
        lambda: [
            where
            for where, expression in expected_answers.items()
            if not api(prometheus, "query", query=expression).get("data", {}).get("result")
        ],
        lambda empty: not empty,
        "every shipped query answering with at least one series",
    )
    # rules are evaluated every second once loaded
    wait_for(
        lambda: [
            (rule["name"], rule["health"], rule.get("lastError", ""))
            for group in api(prometheus, "rules")["data"]["groups"]
            for rule in group["rules"]
        ],
        lambda rules: [health for _, health, _ in rules] == ["ok"] * 3,
        "the three alert rules evaluated healthy",
    )


def adapter_query(template: str, series: str) -> str:
    """A prometheus-adapter query as the adapter sends it for the HPA's pods, its templates
    filled in the way the adapter fills them (resource overrides namespace and pod), and its
    range windows scaled from production's 1-minute scrape to this Prometheus's 1 s one: a
    window too short for enough production samples is too short here too."""
    matchers = (
        f'namespace="{ADAPTER_TARGET_LABELS["namespace"]}",pod=~"{ADAPTER_TARGET_LABELS["pod"]}"'
    )
    filled = (
        template.replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )
    seconds = {"s": 1, "m": 60, "h": 3600}
    return re.sub(
        r"\[(\d+)([smh])\]",
        lambda window: f"[{int(window[1]) * seconds[window[2]] * 1000 // 60}ms]",
        filled,
    )


def test_the_autoscalers_adapter_query_has_samples_after_traffic(
    server: TritonServer, prometheus: str, client
) -> None:
    # the HorizontalPodAutoscaler scales on this rule's answer: empty means it never scales
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    name = rule["name"]["matches"].strip("^$")
    images = generated_images()
    results = client.classify_many(list(images.values()), list(images))
    assert all(result.error is None for result in results)
    # the adapter discovers the metric through seriesQuery first
    wait_for(
        lambda: {
            found["__name__"]
            for found in api(prometheus, "series", **{"match[]": rule["seriesQuery"]})["data"]
        },
        lambda names: names == {name},
        f"prometheus: series for {rule['seriesQuery']}",
    )
    query = adapter_query(rule["metricsQuery"], name)

    def answer() -> list[dict]:
        reply = api(prometheus, "query", query=query)
        assert reply["status"] == "success", f"{query}: {reply.get('error')}"
        return reply["data"]["result"]

    (pod,) = wait_for(answer, bool, f"prometheus: samples for {query}")
    assert pod["metric"] == {"pod": ADAPTER_TARGET_LABELS["pod"]}
    assert float(pod["value"][1]) >= 0, pod
