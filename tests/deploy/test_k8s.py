"""deploy/k8s: schema-valid manifests that agree with the configs they mount.

Schemas: the Kubernetes JSON schemas shipped in ``kubernetes-validate`` (strict: unknown
fields fail). Agreement: every blendgate container mounts a config from the ConfigMap that
loads; its pod's ``terminationGracePeriodSeconds`` covers the preStop pause plus the config's
``server.drain_grace_s``; readiness is ``/health``; CPU and memory are requested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import parse_config
from gateway.drain import DRAIN_MARGIN_S

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUBERNETES_VERSION = "1.33.0"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [(name, d) for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.parametrize("name,doc", _documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_matches_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # raises when invalid


def test_pods_drain_within_their_grace_and_configs_load() -> None:
    docs = [d for _, d in _documents()]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"blendgate-gateway",
                                                            "blendgate-ranker"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        config_file = container["args"][container["args"].index("--config") + 1]
        config = parse_config(yaml.safe_load(configmap["data"][Path(config_file).name]))
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
        assert (pod["terminationGracePeriodSeconds"]
                >= pause + config.server.drain_grace_s + DRAIN_MARGIN_S)
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    ranker = next(d for d in deployments if d["metadata"]["name"] == "blendgate-ranker")
    gateway_config = parse_config(yaml.safe_load(configmap["data"]["gateway.yaml"]))
    (blend,) = gateway_config.models
    assert blend.ranker.type == "remote" and blend.fuser.type == "remote"
    assert str(blend.ranker.url).startswith("http://blendgate-ranker:")  # the ranker Service
    assert "nvidia.com/gpu" in ranker["spec"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
