"""The deployment files in deploy/: parsed, validated against the published Kubernetes and
Compose JSON schemas (offline, from schemas bundled in Python packages), and checked
against each other, the server and the documentation.

No container engine or cluster is needed: these tests catch the mistakes that would
otherwise surface only at `docker build`, `docker compose up` or `kubectl apply`.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shlex
import tempfile
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from cryptography.hazmat.primitives import serialization
from dockerfile_parse import DockerfileParser
from litestar.handlers import HTTPRouteHandler

import service.web.ops
from ledger.blobs.kek import load_kek
from ledger.errors import LedgerNotInitialized
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"

PORT = 8080
# What a container must listen on (the server's own default, 127.0.0.1, is unreachable).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - asserted of the deployment, not bound here
POD_TMP = "/tmp"  # noqa: S108 - a mount path in the pod, not a file this test writes
# The oldest Kubernetes minor the manifests promise to work with, and the newest one whose
# schemas the installed kubernetes-validate bundles.
K8S_VERSIONS = ["1.28", kubernetes_validate.latest_version()]
ENV_NAME = re.compile(r"\bPROV_[A-Z0-9_]*[A-Z0-9]\b")

Doc = dict[str, Any]


# --- loading -------------------------------------------------------------------------


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


@cache
def load_yaml(path: Path) -> tuple[Doc, ...]:
    with path.open(encoding="utf-8") as stream:
        return tuple(doc for doc in yaml.safe_load_all(stream) if doc is not None)


def k8s_objects() -> Iterator[tuple[Path, Doc]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_yaml(path):
            yield path, doc


def k8s_object(kind: str, name: str | None = None) -> Doc:
    found = [
        doc
        for _, doc in k8s_objects()
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


def compose() -> Doc:
    (doc,) = load_yaml(COMPOSE)
    return doc


def pod_spec() -> Doc:
    return k8s_object("Deployment")["spec"]["template"]["spec"]


def all_containers() -> list[Doc]:
    spec = pod_spec()
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container() -> Doc:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "prov"]
    return container


def resolve_port(container: Doc, port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def documented_settings() -> set[str]:
    """Every PROV_* name in the first column of a table in docs/configuration.md."""
    text = CONFIGURATION_DOC.read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*`(PROV_[A-Z0-9_]+)`", text, flags=re.MULTILINE))


def server_routes() -> set[str]:
    return {
        path
        for value in vars(service.web.ops).values()
        if isinstance(value, HTTPRouteHandler)
        for path in value.paths
    }


# --- the Dockerfile --------------------------------------------------------------------


class Stage:
    def __init__(self, base: str, name: str | None) -> None:
        self.base = base
        self.name = name
        self.instructions: list[tuple[str, str]] = []

    def values(self, instruction: str) -> list[str]:
        return [value for name, value in self.instructions if name == instruction]


@cache
def dockerfile() -> tuple[DockerfileParser, tuple[Stage, ...]]:
    parser = DockerfileParser(fileobj=io.BytesIO(DOCKERFILE.read_bytes()))
    stages: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            words = value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif instruction != "COMMENT" and stages:
            stages[-1].instructions.append((instruction, value))
    return parser, tuple(stages)


def substitute(value: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], value)


def copy_sources(value: str) -> tuple[dict[str, str], list[str]]:
    """A COPY's flags and its sources (its last word is the destination)."""
    words = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    assert len(paths) >= 2, f"COPY {value!r} needs a source and a destination"
    return flags, paths[:-1]


def exec_form(value: str) -> list[str]:
    words = json.loads(value)
    assert isinstance(words, list), f"{value!r} is not in exec (JSON) form"
    return words


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out, by .dockerignore's rules: patterns in
    order, the last one that matches the path or one of its parents wins, `!` re-includes,
    `*` stays within one path segment, `**` spans any number, `[...]` is a class."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = []
        for part in re.split(r"(\*\*/?|\*|\?|\[[^\]/]+\])", pattern.strip("/")):
            if part.startswith("["):
                out.append(part)
            elif part.startswith("**"):
                out.append("(?:.*/)?" if part.endswith("/") else ".*")
            elif part == "*":
                out.append("[^/]*")
            elif part == "?":
                out.append("[^/]")
            else:
                out.append(re.escape(part))
        return re.compile("".join(out))

    candidates = [str(p) for p in [*reversed(PurePosixPath(path).parents), PurePosixPath(path)]]
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = regex(line.removeprefix("!"))
        if any(pattern.fullmatch(candidate) for candidate in candidates if candidate != "."):
            excluded = not negate
    return excluded


def test_dockerfile_is_multi_stage_on_a_slim_python_matching_the_project() -> None:
    parser, stages = dockerfile()
    assert parser.is_multistage
    assert len(stages) >= 2
    runtime_base = parser.parent_images[-1]
    assert re.fullmatch(r"python:3\.\d+-slim(@sha256:[0-9a-f]{64})?", runtime_base), runtime_base
    # The venv built in the first stage symlinks to its base's interpreter.
    assert len(set(parser.parent_images)) == 1, parser.parent_images
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(n) for n in re.search(r">=\s*(\d+)\.(\d+)", requires).groups())  # type: ignore[union-attr]
    image = tuple(int(n) for n in re.match(r"python:(\d+)\.(\d+)", runtime_base).groups())  # type: ignore[union-attr]
    assert image >= minimum


def test_dockerfile_runtime_stage_runs_prov_serve_as_a_fixed_non_root_user() -> None:
    parser, stages = dockerfile()
    runtime = stages[-1]
    (user,) = runtime.values("USER")
    uid, _, gid = substitute(user, parser.args).partition(":")
    assert uid.isdigit(), f"USER {user!r}: use a numeric UID so runAsNonRoot can verify it"
    assert int(uid) >= 1000
    assert not gid or int(gid) != 0
    # Kubernetes runs the pod as the same UID, so the data dir and Secret group line up.
    assert pod_spec()["securityContext"]["runAsUser"] == int(uid)
    assert pod_spec()["securityContext"]["runAsNonRoot"] is True

    (entrypoint,) = runtime.values("ENTRYPOINT")
    (command,) = runtime.values("CMD")
    assert [*exec_form(entrypoint), *exec_form(command)] == ["prov", "serve"]
    assert parser.envs["PROV_HOST"] == ALL_INTERFACES
    assert int(parser.envs["PROV_PORT"]) == PORT
    assert [int(p.split("/")[0]) for p in runtime.values("EXPOSE")] == [PORT]
    (workdir,) = runtime.values("WORKDIR")
    # The data dir: the SQLite default and the ledger key file live there.
    assert Path(parser.envs["PROV_LEDGER_KEY_FILE"]).parent == Path(workdir)
    (create_user,) = [r for r in runtime.values("RUN") if "useradd" in r]
    assert workdir in create_user, "the data dir must be created owned by the runtime user"


def test_dockerfile_healthcheck_requests_healthz_without_curl() -> None:
    _, stages = dockerfile()
    (healthcheck,) = stages[-1].values("HEALTHCHECK")
    command = healthcheck.split("CMD", 1)[1].strip()
    words = exec_form(command)
    assert words[:2] == ["python", "-c"]
    assert "curl" not in healthcheck
    assert "/healthz" in words[2]
    assert "8080" in words[2]
    compile(words[2], "HEALTHCHECK", "exec")  # the one-liner is valid Python


def test_dockerfile_installs_the_server_extra() -> None:
    """The base install is the client alone; the image runs the service, so it must ask for
    the `server` extra, which must exist in pyproject.toml."""
    _, stages = dockerfile()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert "sqlalchemy" in " ".join(extras["server"])
    installs = [r for stage in stages for r in stage.values("RUN") if "pip install" in r]
    assert installs, "no stage installs the project"
    assert any("[server]" in run for run in installs), installs


def test_dockerfile_copies_only_existing_paths_the_build_context_keeps() -> None:
    _, stages = dockerfile()
    stage_names = {stage.name for stage in stages}
    copied: set[str] = set()
    for index, stage in enumerate(stages):
        for value in [*stage.values("COPY"), *stage.values("ADD")]:
            flags, sources = copy_sources(value)
            if "from" in flags:
                assert flags["from"] in stage_names, f"COPY --from={flags['from']}: no such stage"
                assert index > 0
                continue
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is not in the repository"
                assert not dockerignore_excludes(source.rstrip("/")), (
                    f"COPY {source}: .dockerignore leaves it out of the build context"
                )
                copied.add(source.rstrip("/"))
    # Everything the wheel is built from: pyproject's readme and every package it finds.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(PurePosixPath(path.parent.name).match(pattern) for pattern in includes)
    }
    assert packages, "pyproject.toml's package include list matched no package"
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".venv/bin/python", True),
        (".git/config", True),
        ("prov.db", True),
        ("prov-ledger.key", True),
        ("ledger/stray.key", True),
        ("service/__pycache__/cli.cpython-311.pyc", True),
        ("ledger/stale.pyc", True),
        ("tests/test_deploy.py", True),
        ("pyproject.toml", False),
        ("ledger/ledger.py", False),
        ("migrations/versions/0001_initial.py", False),
    ],
)
def test_dockerignore_keeps_secrets_and_local_state_out(path: str, excluded: bool) -> None:
    assert dockerignore_excludes(path) is excluded


# --- YAML and schemas ------------------------------------------------------------------


def test_deploy_holds_the_expected_yaml_files() -> None:
    names = {str(path.relative_to(DEPLOY)) for path in yaml_files()}
    expected = {"compose.yaml", "k8s/kustomization.yaml", "k8s/deployment.yaml"}
    assert expected | {"k8s/service.yaml", "k8s/configmap.yaml", "k8s/secret.yaml"} <= names


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses_to_mappings(path: Path) -> None:
    docs = load_yaml(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_manifests_match_the_official_schemas(version: str) -> None:
    validated = []
    for path, doc in k8s_objects():
        try:
            # strict: unknown fields (a misspelt key) are errors, as `kubectl apply` has them.
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            location = "/".join(str(p) for p in error.path)
            pytest.fail(f"{path.name} {doc['kind']} at {location}: {error.message}")
        validated.append(doc["kind"])
    assert {"ConfigMap", "Secret", "Deployment", "Service"} <= set(validated)


def test_kubernetes_schema_check_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(k8s_object("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def compose_validator() -> jsonschema.protocols.Validator:
    schema = get_builtin_schema("vendor.compose-spec")
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def test_compose_file_matches_the_compose_spec_schema() -> None:
    errors = sorted(compose_validator().iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_schema_check_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["prov"]["depend_on"] = ["db"]
    assert not compose_validator().is_valid(broken)


# --- compose ---------------------------------------------------------------------------


def test_compose_runs_prov_after_a_healthy_postgres_15() -> None:
    services = compose()["services"]
    db, prov = services["db"], services["prov"]

    assert re.fullmatch(r"postgres:15(\.\d+)?(-[\w.]+)?", db["image"]), db["image"]
    assert "pg_isready" in db["healthcheck"]["test"]
    db_volume, _, db_target = db["volumes"][0].partition(":")
    assert db_target == "/var/lib/postgresql/data"
    assert db_volume in compose()["volumes"]

    assert prov["depends_on"]["db"]["condition"] == "service_healthy"
    context = (COMPOSE.parent / prov["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / prov["build"]["dockerfile"]).resolve() == DOCKERFILE

    env = prov["environment"]
    database = env["PROV_DATABASE_URL"]
    assert database.startswith("postgresql://")
    assert re.search(r"@db:5432/", database), "PROV_DATABASE_URL must point at the db service"
    assert database.rsplit("/", 1)[1] == db["environment"]["POSTGRES_DB"]
    assert env["PROV_HOST"] == ALL_INTERFACES
    assert int(env["PROV_PORT"]) == PORT


def test_compose_keeps_the_ledger_key_in_a_named_volume() -> None:
    prov = compose()["services"]["prov"]
    key_file = PurePosixPath(prov["environment"]["PROV_LEDGER_KEY_FILE"])
    # "source:target[:mode]" -> {target: source}
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in prov["volumes"]}
    holding = [target for target in mounts if PurePosixPath(target) in key_file.parents]
    assert holding, f"no volume holds {key_file}"
    assert mounts[holding[0]] in compose()["volumes"], "the key volume must be a named volume"


def test_compose_publishes_and_health_checks_the_server_port() -> None:
    prov = compose()["services"]["prov"]
    targets = [int(str(port).rsplit(":", 1)[1]) for port in prov["ports"]]
    assert targets == [PORT]
    test = prov["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert "curl" not in test
    assert f"127.0.0.1:{PORT}/healthz" in test[-1]
    compile(test[-1], "compose healthcheck", "exec")


# --- Kubernetes ------------------------------------------------------------------------


def test_kubernetes_deployment_runs_replicas_with_an_init_migration() -> None:
    deployment = k8s_object("Deployment")
    assert deployment["spec"]["replicas"] >= 2
    init_containers = pod_spec()["initContainers"]
    (migrate,) = [c for c in init_containers if c.get("args") == ["init"]]
    assert migrate["image"] == main_container()["image"]
    assert main_container()["args"] == ["serve"]
    # The init container needs the same settings, database and key as the server.
    assert migrate["envFrom"] == main_container()["envFrom"]
    assert migrate["env"] == main_container()["env"]
    assert migrate["volumeMounts"] == main_container()["volumeMounts"]


def test_kubernetes_probes_hit_the_servers_routes_on_its_port() -> None:
    container = main_container()
    assert resolve_port(container, "http") == PORT
    probes = {
        name: container[name]["httpGet"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for get in probes.values():
        assert resolve_port(container, get["port"]) == PORT
        assert get["path"] in server_routes()


def test_kubernetes_containers_are_locked_down() -> None:
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    for container in all_containers():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == POD_TMP]
        assert "emptyDir" in volumes[tmp["name"]]
        resources = container["resources"]
        assert resources["requests"]["memory"]
        assert resources["limits"]["memory"]
    assert pod_spec()["automountServiceAccountToken"] is False


def test_kubernetes_ledger_key_is_one_secret_mounted_as_the_key_file() -> None:
    config = k8s_object("ConfigMap")["data"]
    key_file = PurePosixPath(config["PROV_LEDGER_KEY_FILE"])
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    for container in all_containers():
        (mount,) = [
            m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == key_file.parent
        ]
        assert mount["readOnly"] is True
        secret = volumes[mount["name"]]["secret"]
        (item,) = [i for i in secret["items"] if i["path"] == key_file.name]
        assert item["key"] in k8s_object("Secret", secret["secretName"])["stringData"]
        # Owner and group may read (the group is fsGroup); nobody may write or execute.
        assert secret["defaultMode"] & 0o337 == 0
    assert pod_spec()["securityContext"]["fsGroup"] == pod_spec()["securityContext"]["runAsUser"]


def test_kubernetes_placeholder_keys_are_not_keys() -> None:
    placeholders = k8s_object("Secret", "prov-ledger-key")["stringData"]
    assert set(placeholders) == {"ledger.key", "replay.key", "blobs.kek"}
    for name in ("ledger.key", "replay.key"):
        with pytest.raises(ValueError, match=r"."):
            serialization.load_pem_private_key(placeholders[name].encode(), password=None)
    kek = Path(tempfile.mkdtemp()) / "blobs.kek"
    kek.write_text(placeholders["blobs.kek"])
    with pytest.raises(LedgerNotInitialized):
        load_kek(kek)


def test_kubernetes_replicas_share_every_key_and_the_subject_key_store() -> None:
    config = k8s_object("ConfigMap")["data"]
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    mounted = {
        str(PurePosixPath(mount["mountPath"]) / item["path"])
        for mount in main_container()["volumeMounts"]
        if "secret" in volumes[mount["name"]]
        for item in volumes[mount["name"]]["secret"]["items"]
    }
    # Keys each replica would otherwise make for itself, beside a read-only ledger key.
    for setting in ("PROV_LEDGER_KEY_FILE", "PROV_REPLAY_KEY_FILE", "PROV_KEK_FILE"):
        assert config[setting] in mounted, setting
    for container in all_containers():
        names = {var["name"]: var for var in container["env"]}
        source = names["PROV_SUBJECT_KEYS_URL"]["valueFrom"]["secretKeyRef"]
        url = k8s_object("Secret", source["name"])["stringData"][source["key"]]
        assert url.startswith("postgresql://")
        assert url != k8s_object("Secret", "prov-database")["stringData"]["url"]


def test_kubernetes_env_sources_exist() -> None:
    for container in all_containers():
        for source in container["envFrom"]:
            assert k8s_object("ConfigMap", source["configMapRef"]["name"])
        names = [var["name"] for var in container["env"]]
        assert "PROV_DATABASE_URL" in names
        for var in container["env"]:
            if "secretKeyRef" not in var.get("valueFrom", {}):
                continue
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["key"] in k8s_object("Secret", ref["name"])["stringData"]
    config = k8s_object("ConfigMap")["data"]
    assert config["PROV_HOST"] == ALL_INTERFACES
    assert int(config["PROV_PORT"]) == PORT
    assert all(isinstance(value, str) for value in config.values())


def test_kubernetes_service_reaches_the_pods_on_the_server_port() -> None:
    service_spec = k8s_object("Service")["spec"]
    pod_labels = k8s_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service_spec.get("type", "ClusterIP") == "ClusterIP"
    assert service_spec["selector"].items() <= pod_labels.items()
    (port,) = service_spec["ports"]
    assert port["port"] == PORT
    assert resolve_port(main_container(), port["targetPort"]) == PORT
    selector = k8s_object("Deployment")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    disruption_budget = k8s_object("PodDisruptionBudget")["spec"]
    assert disruption_budget["selector"]["matchLabels"].items() <= pod_labels.items()


def test_kubernetes_objects_share_one_namespace() -> None:
    namespace = k8s_object("Namespace")["metadata"]["name"]
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    assert kustomization["namespace"] == namespace
    for path, doc in k8s_objects():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, path.name


def test_kustomization_lists_every_manifest_but_the_placeholder_secrets() -> None:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    assert len(resources) == len(set(resources))
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # Applying the placeholders would overwrite the real ledger key.
    assert set(resources) == manifests - {"secret.yaml"}
    image_names = {image["name"] for image in kustomization["images"]}
    assert {container["image"] for container in all_containers()} <= image_names


# --- settings and documentation --------------------------------------------------------


def env_names_used() -> dict[str, set[str]]:
    """Every PROV_* name in the deployment files and the deployment guide, by file."""
    paths = [DOCKERFILE, *yaml_files(), DEPLOY_DOC]
    return {
        str(path.relative_to(ROOT)): set(ENV_NAME.findall(path.read_text(encoding="utf-8")))
        for path in paths
    }


def test_settings_used_in_deployment_are_real_and_documented() -> None:
    used = set().union(*env_names_used().values())
    assert {"PROV_DATABASE_URL", "PROV_LEDGER_KEY_FILE", "PROV_HOST"} <= used
    settings = {f"PROV_{field.upper()}" for field in Settings.__struct_fields__}
    assert not used - settings, f"not settings the server reads: {sorted(used - settings)}"
    documented = documented_settings()
    assert not used - documented, f"missing from docs/configuration.md: {sorted(used - documented)}"


def test_server_defaults_and_routes_match_the_deployment() -> None:
    assert Settings().port == PORT
    assert {"/healthz", "/readyz", "/metrics"} <= server_routes()
    annotations = k8s_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in server_routes()
    assert int(annotations["prometheus.io/port"]) == PORT


def test_compose_keeps_blobs_in_seaweedfs_and_their_keys_beside_the_ledger_key() -> None:
    services = compose()["services"]
    prov, s3, bucket = services["prov"], services["s3"], services["s3-bucket"]
    env = prov["environment"]
    assert env["PROV_BLOB_STORE"].startswith("s3://prov-blobs/")
    assert env["PROV_S3_ENDPOINT"] == "http://s3:8333"
    assert "-s3.port=8333" in s3["command"]
    assert "prov-blobs" in bucket["command"][0]
    assert prov["depends_on"]["s3-bucket"]["condition"] == "service_completed_successfully"
    # No setting moves the blob keys off the ledger key's volume (into the object store or
    # the database, whose backups must not hold them).
    assert "PROV_KEK_FILE" not in env
    assert "PROV_SUBJECT_KEYS_FILE" not in env
    blob_volume = s3["volumes"][0].split(":")[0]
    assert blob_volume in compose()["volumes"]
