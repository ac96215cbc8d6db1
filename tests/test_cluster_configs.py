"""The cluster configuration in cluster/, checked offline (no network, no cloud, no
Kubernetes):

- the Ray cluster launcher config (cluster/aws.yaml) through Ray's own validator, and
  broken variants of it rejected by the same validator; its `ray start` lines through
  Ray's own `ray start` option parser;
- every KubeRay manifest against the RayCluster / RayJob CRD schemas (served version v1,
  ../shared/data/kuberay-crds) as `kubectl apply` would check it: strict about unknown
  fields, Kubernetes' `int-or-string` quantities, list-map keys unique; deliberately wrong
  manifests rejected;
- every `avrsp …` command in the manifests, the Dockerfile and cluster/README.md through
  the real command-line parser (`workflows.cli.build_parser`);
- the Dockerfile's instructions (a small parser: FROM, RUN, COPY, ENTRYPOINT, CMD,
  continuation lines), what it installs and what its build context keeps;
- what holds the files together: GPU limits where jobs ask for GPUs, token authentication
  never off, the names of the ConfigMap and Secrets the pods read, one image everywhere,
  the MLflow server's arguments through MLflow's own parser.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER = CLUSTER / "aws.yaml"
DOCKERFILE = CLUSTER / "Dockerfile"
README = CLUSTER / "README.md"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [doc for doc in yaml.load_all(f, Loader=Loader) if doc is not None]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """``(file name, document)`` for every document of every file under cluster/kuberay."""
    return [(p.name, doc) for p in sorted(KUBERAY.glob("*.yaml")) for doc in load_documents(p)]


def ray_resources() -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in manifests() if d["apiVersion"].startswith("ray.io/")]


def resource_id(item: tuple[str, dict[str, Any]]) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec of a RayCluster, or of the cluster a RayJob starts."""
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def ray_containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(group, container)`` for the head and every worker group of a cluster spec."""
    for container in spec["headGroupSpec"]["template"]["spec"]["containers"]:
        yield "head", container
    for group in spec.get("workerGroupSpecs", []):
        for container in group["template"]["spec"]["containers"]:
            yield group["groupName"], container


def all_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in manifests():
        if doc["apiVersion"].startswith("ray.io/"):
            for group, container in ray_containers(cluster_spec(doc)):
                yield f"{name}:{group}", container
        elif doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield f"{name}:{doc['metadata']['name']}", container


def gpus(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def example(kind: str, name: str) -> dict[str, Any]:
    """A ConfigMap or Secret of cluster/kuberay/config.example.yaml."""
    for doc in load_documents(KUBERAY / "config.example.yaml"):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"config.example.yaml has no {kind} {name}")


def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- the Ray cluster launcher config -------------------------------------------------------


def launcher() -> dict[str, Any]:
    with open(LAUNCHER) as f:
        return yaml.load(f, Loader=Loader)


def ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` checks before it touches the cloud: defaults merged, then validated."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_launcher_config_passes_rays_validator() -> None:
    prepared = ray_validate(launcher())
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the head runs drivers, not tasks
    assert head["max_workers"] == 0
    workers = {name: t for name, t in types.items() if name != prepared["head_node_type"]}
    gpu_types = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    cpu_types = [t for t in workers.values() if not t["resources"].get("GPU")]
    assert gpu_types and cpu_types
    assert all(t["min_workers"] == 0 for t in workers.values())  # both scale from zero
    # the global cap lets every type reach its own maximum at once
    assert prepared["max_workers"] >= sum(t["max_workers"] for t in workers.values())
    # what the autoscaler runs on a new head: the common setup first, then the head's
    assert (
        prepared["head_setup_commands"][: len(prepared["setup_commands"])]
        == (prepared["setup_commands"])
    )


def _drop(path: tuple[str, ...]) -> Any:
    def mutate(cfg: dict[str, Any]) -> None:
        node = cfg
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(path: tuple[str, ...], value: Any) -> Any:
    def mutate(cfg: dict[str, Any]) -> None:
        node = cfg
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


BROKEN_LAUNCHER = {
    "no head_node_type": (_drop(("head_node_type",)), "head_node_type"),
    "worker type without resources": (
        _drop(("available_node_types", "gpu-worker", "resources")),
        "'resources' is a required property",
    ),
    "fractional GPU count": (
        _set(("available_node_types", "gpu-worker", "resources", "GPU"), 0.5),
        "is not of type 'integer'",
    ),
    "misspelt top-level key": (_set(("setup_command",), []), "setup_command"),
    "min_workers over the global cap": (
        _set(("available_node_types", "cpu-worker", "min_workers"), 99),
        "max_workers",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_LAUNCHER))
def test_launcher_validator_rejects_broken_variants(case: str) -> None:
    import jsonschema

    mutate, reason = BROKEN_LAUNCHER[case]
    config = launcher()
    mutate(config)
    with pytest.raises((jsonschema.ValidationError, ValueError)) as excinfo:
        ray_validate(config)
    assert reason in str(excinfo.value)


def ray_start_lines(commands: list[str]) -> list[tuple[dict[str, str], list[str]]]:
    """``(environment, arguments after 'ray start')`` of each `ray start` in ``commands``
    (shell lines like ``ulimit -n 65536; RAY_AUTH_MODE=token ray start --head …``)."""
    found = []
    for command in commands:
        for part in command.split(";"):
            tokens = shlex.split(part)
            env = {}
            while tokens and re.fullmatch(r"[A-Z_]+=\S*", tokens[0]):
                key, _, value = tokens.pop(0).partition("=")
                env[key] = value
            if tokens[:2] == ["ray", "start"]:
                found.append((env, tokens[2:]))
    return found


def parse_ray_start(args: list[str]) -> dict[str, Any]:
    """``ray start`` options as Ray's own CLI parses them (nothing is started)."""
    from ray.scripts.scripts import start

    args = [a.replace("$RAY_HEAD_IP", "10.0.0.1") for a in args]
    return start.make_context("start", args).params


def test_launcher_starts_ray_with_the_dashboard_and_token_auth() -> None:
    config = launcher()
    head = ray_start_lines(config["head_start_ray_commands"])
    worker = ray_start_lines(config["worker_start_ray_commands"])
    assert len(head) == 1 and len(worker) == 1
    for env, _ in head + worker:
        assert env.get("RAY_AUTH_MODE") == "token"
    params = parse_ray_start(head[0][1])
    assert params["head"] and params["dashboard_host"] == "0.0.0.0"
    assert params["dashboard_port"] == 8265
    assert params["autoscaling_config"] == "~/ray_bootstrap_config.yaml"  # where `ray up` puts it
    worker_params = parse_ray_start(worker[0][1])
    assert not worker_params["head"]
    assert worker_params["address"].endswith(f":{params['port']}")  # the head's GCS port


def test_launcher_ray_start_parser_catches_typos() -> None:
    import click

    with pytest.raises(click.UsageError):
        parse_ray_start(["--head", "--dashboard-hosts=0.0.0.0"])


def test_launcher_installs_ffmpeg_and_the_project_wheel() -> None:
    config = launcher()
    setup = config["setup_commands"]
    assert any("apt-get install" in c and re.search(r"\bffmpeg\b", c) for c in setup)
    installs = [c for c in setup if "pip install" in c and ".whl" in c]
    assert len(installs) == 1
    wheel = re.search(r"(~/[\w.-]+)/([\w*.-]+\.whl)", installs[0])
    assert wheel, installs[0]
    mount, pattern = wheel.groups()
    # the wheel comes from a file mount of the folder `pip wheel --wheel-dir dist` fills
    assert config["file_mounts"][mount] == "./dist"
    name = pyproject()["project"]["name"]
    version = pyproject()["project"]["version"]
    assert fnmatch.fnmatch(f"{name}-{version}-py3-none-any.whl", pattern)
    assert not fnmatch.fnmatch(f"other-{version}-py3-none-any.whl", pattern)
    # the same environment runs `ray start`: it is put on PATH for the start commands' shells
    assert any("avrsp-env/bin" in c and ".bashrc" in c for c in setup)


def test_launcher_copies_rays_token_to_every_node() -> None:
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    token = "~/" + str(_get_default_token_path().relative_to(Path.home()))
    assert launcher()["file_mounts"][token] == token  # this machine's token, same path there


# --- KubeRay manifests against the CRD schemas --------------------------------------------


def _kube_to_jsonschema(node: Any) -> Any:
    """An OpenAPI v3 schema of a CRD as JSON Schema that checks what the API server does:

    - ``x-kubernetes-int-or-string``: an integer or a string (quantities like ``16Gi``);
    - ``nullable``: null allowed;
    - objects with declared ``properties`` and no ``additionalProperties`` refuse unknown
      fields (kubectl's strict field validation) unless ``x-kubernetes-preserve-unknown-fields``;
    - ``x-kubernetes-list-map-keys`` / ``x-kubernetes-list-type: set`` stay, checked by the
      keywords of :func:`crd_validator`. CEL rules (``x-kubernetes-validations``) are not
      evaluated.
    """
    if isinstance(node, list):
        return [_kube_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {key: _kube_to_jsonschema(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string") and not ({"anyOf", "oneOf"} & out.keys()):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_validator(schema: dict[str, Any]) -> Any:
    import jsonschema
    from jsonschema import validators

    def list_map_keys(validator: Any, keys: list[str], instance: Any, _schema: Any) -> Any:
        if not validator.is_type(instance, "array"):
            return
        seen: dict[tuple[Any, ...], int] = {}
        for i, item in enumerate(instance):
            if isinstance(item, dict):
                key = tuple(item.get(k) for k in keys)
                if key in seen:
                    yield jsonschema.ValidationError(
                        f"entries {seen[key]} and {i} have the same {'/'.join(keys)} {key}"
                    )
                seen[key] = i

    def list_type(validator: Any, kind: str, instance: Any, _schema: Any) -> Any:
        if kind == "set" and validator.is_type(instance, "array"):
            items = [json.dumps(x, sort_keys=True) for x in instance]
            if len(set(items)) != len(items):
                yield jsonschema.ValidationError(f"{instance!r} has repeated items (a set)")

    cls = validators.extend(
        jsonschema.Draft7Validator,
        {"x-kubernetes-list-map-keys": list_map_keys, "x-kubernetes-list-type": list_type},
    )
    return cls(schema)


@pytest.fixture(scope="session")
def crds(shared_data: Path) -> dict[str, tuple[dict[str, Any], Any]]:
    """kind → (the CRD, a validator of its served v1 schema)."""
    out = {}
    for kind, filename in CRD_FILES.items():
        (crd,) = load_documents(shared_data / "kuberay-crds" / filename)
        (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v["served"]]
        out[kind] = (crd, crd_validator(_kube_to_jsonschema(v1["schema"]["openAPIV3Schema"])))
    return out


def schema_errors(crds: dict[str, tuple[dict[str, Any], Any]], doc: dict[str, Any]) -> list[str]:
    crd, validator = crds[doc["kind"]]
    group, _, version = doc["apiVersion"].partition("/")
    assert (group, version) == (crd["spec"]["group"], "v1")
    assert doc["kind"] == crd["spec"]["names"]["kind"]
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


@pytest.mark.shared
@pytest.mark.parametrize("item", ray_resources(), ids=resource_id)
def test_manifest_matches_the_crd_schema(crds: Any, item: tuple[str, dict[str, Any]]) -> None:
    assert schema_errors(crds, item[1]) == []


def _train_job() -> dict[str, Any]:
    (doc,) = load_documents(KUBERAY / "rayjob-train.yaml")
    return doc


def _head(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]


def _worker_group(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]


def _misspell(doc: dict[str, Any]) -> None:
    doc["spec"]["shutdownAfterJobFinish"] = doc["spec"].pop("shutdownAfterJobFinishes")


def _duplicate_env(doc: dict[str, Any]) -> None:
    _head(doc)["env"] = [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]


def _gpu_words(doc: dict[str, Any]) -> None:
    _worker_group(doc)["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"
    ] = "one"


def _no_group_name(doc: dict[str, Any]) -> None:
    del _worker_group(doc)["groupName"]


def _bool_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["shutdownAfterJobFinishes"] = "yes"


def _auth_mode(doc: dict[str, Any]) -> None:
    doc["spec"]["rayClusterSpec"]["authOptions"]["mode"] = "on"


WRONG_MANIFESTS = {  # what is wrong → (the change, where the schema must say so)
    "misspelt field": (_misspell, "spec: Additional properties"),
    "repeated env name": (_duplicate_env, "containers.0.env: entries 0 and 1"),
    "GPU count in words": (_gpu_words, "limits.nvidia.com/gpu"),
    "worker group without groupName": (_no_group_name, "'groupName' is a required property"),
    "boolean as text": (_bool_as_text, "shutdownAfterJobFinishes: 'yes' is not of type"),
    "unknown auth mode": (_auth_mode, "authOptions.mode: 'on' is not one of"),
}


@pytest.mark.shared
@pytest.mark.parametrize("case", sorted(WRONG_MANIFESTS))
def test_wrong_manifests_fail_the_crd_schema(crds: Any, case: str) -> None:
    mutate, where = WRONG_MANIFESTS[case]
    doc = _train_job()
    assert schema_errors(crds, doc) == []
    mutate(doc)
    errors = schema_errors(crds, doc)
    assert any(where in e for e in errors), errors


# --- what holds the manifests together ----------------------------------------------------


def test_gpu_jobs_get_the_gpus_they_ask_for() -> None:
    for name, doc in ray_resources():
        spec = cluster_spec(doc)
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        gpu_groups = {n: g for n, g in groups.items() if "gpu" in n}  # named for what they hold
        assert gpu_groups, f"{name}: no GPU worker group"
        for group_name, group in groups.items():
            (container,) = group["template"]["spec"]["containers"]
            resources = container["resources"]
            has_gpu = gpus(container) >= 1
            assert has_gpu == (group_name in gpu_groups), f"{name}:{group_name}"
            if has_gpu:  # an extended resource: requests, when given, equal limits
                assert resources["requests"].get("nvidia.com/gpu", gpus(container)) == gpus(
                    container
                )
        assert not any(gpus(c) for group, c in ray_containers(spec) if group == "head")
        if doc["kind"] != "RayJob":
            continue
        available = sum(
            g["maxReplicas"] * gpus(g["template"]["spec"]["containers"][0])
            for g in gpu_groups.values()
        )
        assert 0 < gpu_demand(doc["spec"]["entrypoint"]) <= available, name


def gpu_demand(entrypoint: str) -> int:
    """GPUs an `avrsp train` / `avrsp tune` entrypoint needs at once."""
    args = avrsp_args(entrypoint)
    assert args is not None
    parsed = parse_avrsp(args)
    if parsed.command == "train":
        return parsed.num_workers if parsed.gpu else 0
    if parsed.command == "tune":
        per_worker = 1 if (parsed.gpus_per_trial or 0) > 0 else 0
        return (parsed.max_concurrent or 1) * (parsed.workers_per_trial or 1) * per_worker
    raise AssertionError(f"no GPU demand known for avrsp {parsed.command}")


def test_token_auth_is_never_turned_off() -> None:
    token_secret = example("Secret", "avrsp-ray-token")
    assert "auth_token" in token_secret["stringData"]  # the key KubeRay reads
    for name, doc in ray_resources():
        auth = cluster_spec(doc)["authOptions"]
        assert auth["mode"] == "token", name
        assert auth["secretName"] == token_secret["metadata"]["name"], name
        # Ray needs a version of 2.52 or later for token mode; the image's Ray is 2.60
        assert cluster_spec(doc)["rayVersion"] == "2.60.0", name
    for where, container in all_containers():
        for env in container.get("env", []):
            if env["name"] == "RAY_AUTH_MODE":
                assert env.get("value") == "token", where
    texts = [p.read_text() for p in [LAUNCHER, DOCKERFILE, *KUBERAY.glob("*.yaml")]]
    for text in texts:
        assert not re.search(r"RAY_AUTH_MODE\s*[=:]\s*[\"']?disabled", text)
        assert not re.search(r"mode:\s*[\"']?disabled", text)


def test_pods_read_mlflow_and_object_store_settings_from_configmap_and_secret() -> None:
    config = example("ConfigMap", "avrsp-config")
    store = example("Secret", "avrsp-object-store")
    assert config["data"]["MLFLOW_TRACKING_URI"].startswith("http://")
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= store["stringData"].keys()
    containers = list(all_containers())
    assert len(containers) >= 8
    for where, container in containers:
        sources = container.get("envFrom", [])
        config_maps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
        secrets = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
        assert config_maps == [config["metadata"]["name"]], where
        assert secrets == [store["metadata"]["name"]], where
        for env in container.get("env", []):  # a single value from a Secret: it exists
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in example("Secret", ref["name"])["stringData"], where


def test_example_secrets_hold_placeholders_only() -> None:
    secrets = [d for d in load_documents(KUBERAY / "config.example.yaml") if d["kind"] == "Secret"]
    assert len(secrets) == 3
    for secret in secrets:
        assert "data" not in secret  # base64 would hide a real value from review
        for key, value in secret["stringData"].items():
            assert "REPLACE_ME" in value, f"{secret['metadata']['name']}.{key}"


def test_rayjobs_shut_their_cluster_down() -> None:
    jobs = [d for _, d in ray_resources() if d["kind"] == "RayJob"]
    assert {j["metadata"]["name"] for j in jobs} == {"avrsp-train-stage1", "avrsp-tune-table5"}
    for job in jobs:
        assert job["spec"]["shutdownAfterJobFinishes"] is True
        assert job["spec"]["ttlSecondsAfterFinished"] > 0


def test_one_image_everywhere_built_from_the_dockerfile() -> None:
    import ray

    images = {container["image"] for _, container in all_containers()}
    assert len(images) == 1, images
    (base,) = [i.args for i in dockerfile() if i.name == "FROM"]
    ray_minor = ".".join(ray.__version__.split(".")[:2])
    assert base.split(":")[1].startswith(ray_minor + ".")  # the image's Ray is the project's


def test_ray_start_params_are_ray_start_options() -> None:
    for name, doc in ray_resources():
        spec = cluster_spec(doc)
        groups = [("head", spec["headGroupSpec"])] + [
            (g["groupName"], g) for g in spec["workerGroupSpecs"]
        ]
        for group_name, group in groups:
            args = [f"--{k}={v}" for k, v in group.get("rayStartParams", {}).items()]
            head = ["--head"] if group_name == "head" else ["--address=10.0.0.1:6379"]
            params = parse_ray_start(head + args)
            if group_name == "head":
                assert params["num_cpus"] == 0, name  # the head runs no tasks


def test_mlflow_server_arguments_parse_and_admit_its_clients() -> None:
    import mlflow.cli
    from mlflow.server.security_utils import is_allowed_host_header

    (deployment,) = [d for n, d in manifests() if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["mlflow", "server"]
    params = mlflow.cli.cli.commands["server"].make_context("server", container["args"]).params
    assert params["artifacts_destination"].startswith("s3://")
    assert params["serve_artifacts"]  # clients reach artifacts only through the server
    assert params["default_artifact_root"] is None  # so new experiments use mlflow-artifacts:/
    backend = [e for e in container["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    assert backend and "secretKeyRef" in backend[0]["valueFrom"]
    uri = example("Secret", "avrsp-mlflow-db")["stringData"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql://")
    allowed = params["allowed_hosts"].split(",")
    tracking = example("ConfigMap", "avrsp-config")["data"]["MLFLOW_TRACKING_URI"]
    assert is_allowed_host_header(allowed, tracking.removeprefix("http://"))  # the Ray pods
    assert is_allowed_host_header(allowed, "localhost:5000")  # kubectl port-forward
    assert not is_allowed_host_header(allowed, "mlflow.attacker.example:5000")
    (service,) = [d for n, d in manifests() if d["kind"] == "Service"]
    assert service["metadata"]["name"] == tracking.removeprefix("http://").split(":")[0]
    assert service["spec"]["ports"][0]["port"] == params["port"] == 5000


# --- every `avrsp …` command through the real parser --------------------------------------


def avrsp_args(line: str) -> list[str] | None:
    """The arguments after the `avrsp` program in a shell line (env prefixes allowed)."""
    tokens = shlex.split(line, comments=True)
    for i, token in enumerate(tokens):
        if token == "avrsp" or token.endswith("/avrsp"):
            return tokens[i + 1 :]
        if not (re.fullmatch(r"[A-Z_]+=\S*", token) or token in ("env", "-u", "RAY_ADDRESS")):
            return None
    return None


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"avrsp {shlex.join(args)}: the avrsp parser rejects it (stderr above)")


def parse_avrsp(args: list[str]) -> argparse.Namespace:
    """Parse ``avrsp ARGS`` with the real parser; for `avrsp submit COMMAND ARGS`, also the
    submitted command (as `avrsp submit` itself checks it). Returns the namespace of the
    command that does the work."""
    from workflows.cli import build_parser

    parser = build_parser()
    if args[:1] == ["submit"]:
        if _subparser(parser, "submit") is None:
            pytest.skip("`avrsp submit` is not registered in workflows/cli.py yet")
        outer = _parse(parser, args)
        inner = list(outer.job_args)
        args = [outer.job_command, *(inner[1:] if inner[:1] == ["--"] else inner)]
    return _parse(parser, args)


def readme_commands() -> list[tuple[int, str]]:
    """``(line number, command)`` of every `avrsp` line in README.md's fenced blocks, with
    continuation lines joined."""
    found, in_block, pending, start = [], False, "", 0
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        if not pending:
            start = number
        pending += line.strip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        if avrsp_args(pending) is not None:
            found.append((start, pending))
        pending = ""
    return found


def entrypoints() -> list[tuple[str, str]]:
    found = [
        (f"{name}:{doc['metadata']['name']}", doc["spec"]["entrypoint"])
        for name, doc in ray_resources()
        if doc["kind"] == "RayJob"
    ]
    found += [(f"README.md:{n}", command) for n, command in readme_commands()]
    return found


def test_readme_commands_are_found() -> None:
    commands = [avrsp_args(c) for _, c in readme_commands()]
    firsts = [c[0] for c in commands if c]
    # the walk-through's steps: data, submission, following the jobs
    assert {"preprocess", "synth", "submit", "jobs"} <= set(firsts)
    assert sum(c[0] == "submit" and "train" in c for c in commands if c) >= 3
    assert avrsp_args("RAY_ADDRESS=http://h:8265 .venv/bin/avrsp jobs list") == ["jobs", "list"]
    assert avrsp_args("kubectl apply -f avrsp.yaml") is None


@pytest.mark.parametrize(("where", "command"), entrypoints(), ids=[w for w, _ in entrypoints()])
def test_avrsp_commands_parse_with_the_real_cli(where: str, command: str) -> None:
    args = avrsp_args(command)
    assert args, f"{where}: no avrsp command in {command!r}"
    parsed = parse_avrsp(args)
    if args[0] == "submit":  # and its config and options, as `avrsp submit` checks them
        from workflows.cli import build_parser
        from workflows.submit import check_command, project_root

        outer = build_parser().parse_args(args)
        inner = list(outer.job_args)
        check_command(outer.job_command, inner[inner[:1] == ["--"] :], project_root())
    # a submitted command runs on the cluster: its data and storage must be shared locations
    if args[0] == "submit" or where.startswith("rayjob"):
        for option in ("data", "storage", "out"):
            value = getattr(parsed, option, None)
            if value:
                assert value.startswith(("s3://", "/mnt/shared/")), f"{where}: --{option} {value}"


def test_rayjob_entrypoints_are_the_submittable_commands() -> None:
    submit = pytest.importorskip("workflows.submit", reason="avrsp submit is not there yet")
    for name, doc in ray_resources():
        if doc["kind"] == "RayJob":
            args = avrsp_args(doc["spec"]["entrypoint"])
            assert args and args[0] in submit.SUBMITTABLE, name


# --- the Dockerfile -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case: FROM, RUN, COPY, …
    args: str  # the rest, continuation lines joined with spaces
    line: int  # where it starts

    def exec_form(self) -> list[str] | None:
        """The JSON array of ENTRYPOINT/CMD/RUN exec form, or None for shell form."""
        if self.args.startswith("["):
            value = json.loads(self.args)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            return value
        return None


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions of a Dockerfile: comments and blank lines dropped (also inside a
    continued instruction, as Docker does), a trailing backslash continues the line."""
    instructions, parts, start = [], [], 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not parts:
            start = number
        continued = line.endswith("\\")
        parts.append(line[:-1].strip() if continued else line)
        if continued:
            continue
        name, _, args = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(name.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_dockerfile_parser_joins_continuations_and_skips_comments() -> None:
    text = '# c\nFROM a:b\nRUN x \\\n  # inside\n    && y \\\n    && z\n\nCMD ["info"]\n'
    parsed = parse_dockerfile(text)
    assert [(i.name, i.args, i.line) for i in parsed] == [
        ("FROM", "a:b", 2),
        ("RUN", "x && y && z", 3),
        ("CMD", '["info"]', 8),
    ]
    assert parsed[2].exec_form() == ["info"] and parsed[1].exec_form() is None


def test_dockerfile_builds_on_ray_260_python_311() -> None:
    instructions = dockerfile()
    assert instructions[0].name == "FROM"
    (base,) = [i for i in instructions if i.name == "FROM"]
    repository, _, tag = base.args.partition(":")
    assert repository == "rayproject/ray"
    # Ray's tags: {version}-py{XY}-{cpu|gpu|cuXXX}
    assert re.fullmatch(r"2\.60\.\d+-py311-(gpu|cu\d+)", tag), tag


def test_dockerfile_installs_ffmpeg_and_the_project() -> None:
    instructions = dockerfile()
    runs = [i.args for i in instructions if i.name == "RUN"]
    assert any(re.search(r"apt-get install\b.*\bffmpeg\b", r) for r in runs)
    installs = [r for r in runs if re.search(r"pip install\b[^&]*\s\.(\s|$)", r)]
    assert len(installs) == 1  # the project itself, from the copied sources
    copied = set()
    for i in instructions:
        if i.name == "COPY":
            words = [w for w in i.args.split() if not w.startswith("--")]
            copied |= {w.rstrip("/") for w in words[:-1]}
    meta = pyproject()
    packages = {p.rstrip("*") for p in meta["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", meta["project"]["readme"], *packages} <= copied
    assert not copied & {".", ".venv", "runs", "data"}
    # and the build context keeps exactly those
    ignore = dockerignore()
    assert not [c for c in copied if ignore(c)]
    assert ignore(".venv") and ignore("runs") and ignore("avrsp/__pycache__")


def dockerignore() -> Any:
    """``ignored(path)`` by cluster/Dockerfile.dockerignore (the last matching rule wins)."""
    rules = []
    for raw in (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, line.lstrip("!").rstrip("/")))

    def ignored(path: str) -> bool:
        result = False
        parts = path.split("/")
        for negated, pattern in rules:
            prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
            if pattern.startswith("**/"):
                hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
            else:
                hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
            if hit:
                result = not negated
        return result

    return ignored


def test_dockerfile_entrypoint_is_the_avrsp_cli() -> None:
    instructions = dockerfile()
    (entrypoint,) = [i for i in instructions if i.name == "ENTRYPOINT"]
    (cmd,) = [i for i in instructions if i.name == "CMD"]
    program = entrypoint.exec_form()
    assert program == ["avrsp"]
    assert "avrsp" in pyproject()["project"]["scripts"]  # the console script pip installs
    args = cmd.exec_form()
    assert args, "CMD in exec form: the default arguments of avrsp"
    assert parse_avrsp(args).command == args[0]
