"""Consistency checks for the deployment files: manifests/ and Dockerfile.suggestion."""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def suggestions():
    return load_yaml(MANIFESTS / "katib-config.yaml")["runtime"]["suggestions"]


def dockerfile_instructions(name, dockerfile="Dockerfile.suggestion"):
    """Arguments of every `name` instruction in a Dockerfile, in order."""
    args = []
    for line in (ROOT / dockerfile).read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(None, 1)
        if parts and parts[0].upper() == name:
            args.append(parts[1].strip() if len(parts) > 1 else "")
    return args


def test_katib_config_is_a_katib_config():
    config = load_yaml(MANIFESTS / "katib-config.yaml")
    assert config["apiVersion"] == "config.kubeflow.org/v1beta1"
    assert config["kind"] == "KatibConfig"
    assert config["init"]["controller"]["trialResources"]


def test_registered_algorithms_match_registry():
    from katib_services.algorithms import registry

    in_config = {entry["algorithmName"] for entry in suggestions()}
    implemented = set(registry.names())
    assert in_config == implemented, (
        f"implemented but missing from katib-config.yaml: {sorted(implemented - in_config)}; "
        f"in katib-config.yaml but not implemented: {sorted(in_config - implemented)}"
    )


def test_suggestion_entries_pass_algorithm_and_share_one_image():
    entries = suggestions()
    for entry in entries:
        assert entry.get("args")[:2] == ["--algorithm", entry["algorithmName"]], entry
    images = {entry["image"] for entry in entries}
    assert len(images) == 1, f"suggestions use several images: {sorted(images)}"


RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def test_suggestion_containers_run_restricted_with_requests_and_limits():
    for entry in suggestions():
        context = entry["securityContext"]
        if entry["algorithmName"] == "pbt":  # root owns a fresh checkpoint volume: root, but nothing else
            assert context["runAsUser"] == 0 and context["runAsNonRoot"] is False
            context = {**context, "runAsNonRoot": True, "runAsUser": 65532}
        assert {k: context.get(k) for k in RESTRICTED} == RESTRICTED, entry["algorithmName"]
        assert context["runAsUser"] == 65532  # the image's user
        resources = entry["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys() and "memory" in resources["limits"], entry["algorithmName"]
    for entry in load_yaml(MANIFESTS / "katib-config.yaml")["runtime"]["earlyStoppings"]:
        assert {"cpu", "memory"} <= entry["resources"]["requests"].keys() and "memory" in entry["resources"]["limits"]


def mebibytes(quantity: str) -> float:
    return float(quantity.removesuffix("Mi"))


def test_memory_limits_follow_the_issue_targets():
    """Katib's default 100Mi for every algorithm whose measured peak allows it (README, Operations)."""
    limits = {entry["algorithmName"]: mebibytes(entry["resources"]["limits"]["memory"]) for entry in suggestions()}
    assert all(limits[name] == 100 for name in ("random", "grid", "tpe", "multivariate-tpe", "pbt")), limits
    assert all(limit <= 256 for limit in limits.values()), limits


def test_metrics_port_args_container_port_and_scrape_annotations_agree():
    annotations = load_yaml(MANIFESTS / "scrape-annotations.yaml")["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    for entry in suggestions():
        port = entry["args"][entry["args"].index("--metrics-port") + 1]
        assert [p["containerPort"] for p in entry["ports"] if p["name"] == "metrics"] == [int(port)]
        assert annotations["prometheus.io/port"] == port
    cmd = json.loads(dockerfile_instructions("CMD", "Dockerfile.earlystop")[-1])
    assert cmd[cmd.index("--metrics-port") + 1] != annotations["prometheus.io/port"]  # two containers of one pod


def test_kustomization_replaces_katib_config():
    kustomization = load_yaml(MANIFESTS / "kustomization.yaml")
    generators = [g for g in kustomization["configMapGenerator"] if g["name"] == "katib-config"]
    assert len(generators) == 1, kustomization["configMapGenerator"]
    generator = generators[0]
    assert generator["behavior"] == "replace"
    assert generator.get("namespace") == "kubeflow"
    assert generator["files"] == ["katib-config.yaml"]
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True


def test_kustomization_does_not_pretend_to_retag_the_suggestion_image():
    # Kustomize's image transformer does not touch the image strings inside the
    # ConfigMap data, so an `images:` entry for them would silently do nothing.
    image_names = {entry["image"].rsplit(":", 1)[0] for entry in suggestions()}
    kustomization = load_yaml(MANIFESTS / "kustomization.yaml")
    retagged = {entry["name"] for entry in kustomization.get("images") or []}
    assert not image_names & retagged, (
        "kustomize `images:` cannot change images inside katib-config.yaml; "
        "edit manifests/katib-config.yaml instead"
    )


@pytest.mark.parametrize(
    "dockerfile,entrypoint,port",
    [("Dockerfile.suggestion", "katib-suggestion", "6789"), ("Dockerfile.earlystop", "katib-earlystopping", "6788")],
)
def test_dockerfiles_run_the_service_as_non_root(dockerfile, entrypoint, port):
    users = dockerfile_instructions("USER", dockerfile)
    assert users, f"{dockerfile} has no USER instruction"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}, f"final USER is {users[-1]!r}"

    entrypoints = dockerfile_instructions("ENTRYPOINT", dockerfile)
    assert entrypoints, f"{dockerfile} has no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == [entrypoint]

    exposed = {p for args in dockerfile_instructions("EXPOSE", dockerfile) for p in args.split()}
    assert port in exposed or f"{port}/tcp" in exposed, f"EXPOSE lists {sorted(exposed)}"


@pytest.mark.parametrize("dockerfile", ["Dockerfile.suggestion", "Dockerfile.earlystop"])
def test_dockerfiles_are_multi_stage_with_nothing_built_in_the_final_stage(dockerfile):
    """The build stage makes the virtualenv; the final stage installs nothing (no pip, no compiler,
    no package manager) and takes only the virtualenv from the build stage."""
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    stages = re.split(r"(?m)^FROM\s", text)[1:]
    assert len(stages) >= 2, f"{dockerfile} is not multi-stage"
    final = re.sub(r"(?m)^\s*#.*$", "", stages[-1])
    for forbidden in ("pip install", "pip3 install", "apt-get", "apk add", "gcc", "build-essential"):
        assert forbidden not in final, f"the final stage of {dockerfile} runs {forbidden!r}"
    copies = re.findall(r"(?m)^COPY\s+--from=\S+\s+(\S+)", final)
    assert copies == ["/opt/venv"], copies


def test_registered_early_stopping_rules_match_the_service():
    from katib_services.earlystopping.rules import RULES

    entries = load_yaml(MANIFESTS / "katib-config.yaml")["runtime"]["earlyStoppings"]
    assert {entry["algorithmName"] for entry in entries} == set(RULES)
    assert all(set(entry) <= {"algorithmName", "image", "imagePullPolicy", "resources"} for entry in entries)
    assert len({entry["image"] for entry in entries}) == 1

