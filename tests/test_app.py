"""The Django layer's foundation: the ASPECTS settings dict and its system checks."""

import dataclasses
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from aspects_app.checks import check_settings
from aspects_app.conf import DEFAULTS, AspectsSettings, get_config


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages)


def test_defaults_when_aspects_is_empty() -> None:
    assert get_config() == AspectsSettings()
    assert {key: getattr(get_config(), key.lower()) for key in DEFAULTS} == DEFAULTS


def test_config_is_typed_and_frozen() -> None:
    config = get_config()
    assert config.working_memory_mb == 256 and config.cpu_queue == "aspects-cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend = "numpy"  # type: ignore[misc]


def test_override_settings_clears_the_cache() -> None:
    assert get_config().backend == "auto"  # fills the cache first
    with override_settings(ASPECTS={"BACKEND": "numpy", "ORBS": {"trine": 8}}):
        config = get_config()
        assert config.backend == "numpy"
        assert config.orbs == {"trine": 8}
        assert config.working_memory_mb == DEFAULTS["WORKING_MEMORY_MB"]
    assert get_config() == AspectsSettings()


def test_get_config_does_not_alias_defaults() -> None:
    with override_settings(ASPECTS={"BACKEND": "cupy"}):
        get_config()
    assert DEFAULTS["BACKEND"] == "auto"


def test_unknown_key_is_improperly_configured() -> None:
    with override_settings(ASPECTS={"BACKEN": "numpy"}), pytest.raises(ImproperlyConfigured, match="BACKEN"):
        get_config()


@pytest.mark.parametrize(
    ("aspects", "expected"),
    [
        ({"BACKEND": "tpu"}, ["aspects_app.E001"]),
        ({"BACKEND": None}, ["aspects_app.E001"]),
        ({"WORKING_MEMORY_MB": 0}, ["aspects_app.E002"]),
        ({"WORKING_MEMORY_MB": -5}, ["aspects_app.E002"]),
        ({"WORKING_MEMORY_MB": "256"}, ["aspects_app.E002"]),
        ({"WORKING_MEMORY_MB": True}, ["aspects_app.E002"]),
        ({"WORKING_MEMORY_MB": float("nan")}, ["aspects_app.E002"]),
        ({"BACKEND": "gpu", "WORKING_MEMORY_MB": None}, ["aspects_app.E001", "aspects_app.E002"]),
        ({"DEVICE_MEMORY_LIMIT_MB": 0}, ["aspects_app.E005"]),
        ({"DEVICE_MEMORY_LIMIT_MB": "8 GiB"}, ["aspects_app.E005"]),
        ({"DEVICE_MEMORY_LIMIT_MB": float("inf")}, ["aspects_app.E005"]),
        ({"BACKEND_": "numpy"}, ["aspects_app.E000"]),
    ],
)
def test_bad_values_are_reported(aspects: dict[str, Any], expected: list[str]) -> None:
    with override_settings(ASPECTS=aspects):
        assert ids(check_settings()) == expected


@pytest.mark.parametrize(
    "aspects",
    [
        {},
        {"BACKEND": "numpy", "WORKING_MEMORY_MB": 64},
        {"BACKEND": "auto", "WORKING_MEMORY_MB": 0.5},
        {"BACKEND": "cupy", "ORBS": {"conjunction": 10}, "MAX_CHARTS_PER_REQUEST": 10},
    ],
)
def test_good_values_pass(aspects: dict[str, Any]) -> None:
    with override_settings(ASPECTS=aspects):
        assert check_settings() == []


def test_check_is_registered_under_its_tag() -> None:
    # Proves AspectsAppConfig.ready() imported the checks module.
    with override_settings(ASPECTS={"BACKEND": "tpu"}):
        assert ids(run_checks(tags=["aspects_app"])) == ["aspects_app.E001"]


@pytest.mark.django_db
def test_all_checks_pass_including_database_checks() -> None:
    # databases= runs the database-tagged checks too, against SQLite or the real PostgreSQL in CI.
    assert run_checks(databases=["default"]) == []
