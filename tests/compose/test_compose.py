"""compose/: valid against the Compose specification, and only commands and settings that exist.

Docker is not available here, so the file is validated against the Compose
specification's JSON schema as vendored by check-jsonschema
(``check-jsonschema --builtin-schema vendor.compose-spec``), read directly.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from carechain.cli import COMMANDS
from carechain.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "compose" / ".env.example"
DOCKERFILE = ROOT / "compose" / "Dockerfile"
VAR = re.compile(r"\bCARECHAIN_[A-Z0-9_]+\b")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _compose_schema() -> dict[str, Any]:
    # Locate the package without importing it (its CLI module needs a newer click than faust allows).
    spec = importlib.util.find_spec("check_jsonschema")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


#: A concrete version in every third-party image tag (checked against public sources, see compose/README.md).
PINNED = re.compile(r"^[a-z0-9./_-]+:\d+\.\d+\.\d+(-[a-z0-9]+)?$")


def test_every_infrastructure_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    images = {name: svc["image"] for name, svc in compose["services"].items() if "image" in svc}
    third_party = {name: image for name, image in images.items() if not image.startswith("carechain:")}
    assert {"mosquitto", "kafka", "topics", "timescaledb"} <= set(third_party)
    for name, image in third_party.items():
        assert PINNED.match(image), f"{name}: {image} is not pinned to a version"
        assert "latest" not in image, f"{name}: {image} floats"
    assert images["topics"] == images["kafka"]  # the topic tool matches the broker
    readme = (ROOT / "compose" / "README.md").read_text(encoding="utf-8")
    for image in set(third_party.values()):
        assert image in readme, f"{image}: the README says where the tag was verified"


def test_the_distributed_system_is_all_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"mosquitto", "kafka", "timescaledb", "migrate", "bridge", "worker", "alerts", "api"} <= set(services)
    assert "timescale/timescaledb" in services["timescaledb"]["image"]
    assert re.search(r"pg1[67]$", services["timescaledb"]["image"])
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_long_running_services_have_health_checks_and_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"migrate", "topics"}
    for name, svc in services.items():
        if name not in one_shot:
            assert "healthcheck" in svc, name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            want = "service_completed_successfully" if dep in one_shot else "service_healthy"
            assert cond["condition"] == want, (name, dep)
    for name in ("bridge", "worker", "alerts"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_mosquitto_uses_the_secured_configuration(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["mosquitto"]["volumes"]
    for source in ("./mosquitto/mosquitto.conf", "./mosquitto/acl", "./mosquitto/passwd", "./mosquitto/certs"):
        assert any(m.startswith(source + ":") for m in mounts), source
    conf = (ROOT / "compose" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert "allow_anonymous false" in conf and "acl_file" in conf and "certfile" in conf
    assert "8883:8883" in compose["services"]["mosquitto"]["ports"]


def test_every_carechain_command_exists(compose: dict[str, Any]) -> None:
    used = []
    for svc in compose["services"].values():
        if svc.get("image", "").startswith("carechain:"):
            cmd = svc["command"]
            assert isinstance(cmd, list) and cmd
            used.append(cmd[0])
    assert set(used) == {"db", "bridge", "worker", "alerts", "api"}
    assert set(used) <= set(COMMANDS)
    assert 'ENTRYPOINT ["carechain"]' in DOCKERFILE.read_text(encoding="utf-8")


def test_every_carechain_variable_is_a_setting(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    texts = [COMPOSE.read_text(encoding="utf-8"), ENV_EXAMPLE.read_text(encoding="utf-8"), DOCKERFILE.read_text()]
    names = {m for text in texts for m in VAR.findall(text)}
    assert names, "no CARECHAIN_ variables found"
    unknown = sorted(n for n in names if n[len("CARECHAIN_") :].lower() not in fields)
    assert unknown == []


def test_env_example_sets_only_carechain_settings_and_parses() -> None:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        assert VAR.fullmatch(key), key
        values[key[len("CARECHAIN_") :].lower()] = value
    settings = Settings(**values)  # the example's values are valid settings
    assert settings.database_url.startswith("postgresql://")
