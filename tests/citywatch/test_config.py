import subprocess
import sys

import pytest
import yaml

from citywatch import config as config_mod


def test_shipped_configuration_is_valid():
    cfg = config_mod.load(env={})
    assert cfg.mqtt.topic_prefix == "citywatch/v1"
    assert cfg.database.url is None  # zero-setup default: embedded PostgreSQL


@pytest.mark.parametrize("doc, path, message", [
    ({"mqtt": {"qos": 2}}, "mqtt.qos", "unknown key"),
    ({"ingest": {"batch_size": 0}}, "ingest.batch_size", "greater than or equal to 1"),
    ({"mqtt": {"protocol": "4"}}, "mqtt.protocol", "should match pattern"),
    ({"database": {"timescale": {"enabled": "maybe"}}}, "database.timescale.enabled", "valid boolean"),
    ({"detectors": {"quality": {"min_brightness": 300}}}, "detectors.quality.min_brightness", "less than or equal"),
    ({"nonsense": 1}, "nonsense", "unknown key"),
])
def test_each_error_names_its_yaml_path(doc, path, message):
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate(doc, "test.yaml")
    assert any(p.startswith(f"{path}:") and message in p for p in err.value.problems), err.value.problems


def test_all_errors_are_reported_at_once():
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.validate({"ingest": {"batch_size": -1, "max_future_s": -5}, "bogus": True})
    assert len(err.value.problems) == 3


def test_environment_overrides_the_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"database": {"url": "postgresql://file/db"}}))
    cfg = config_mod.load(f, env={"CITYWATCH_DATABASE_URL": "postgresql://env/db",
                                  "CITYWATCH_MQTT_URL": "mqtts://u:p@broker:8883",
                                  "CITYWATCH_DATA_DIR": str(tmp_path / "d")})
    assert cfg.database.url == "postgresql://env/db"
    assert cfg.mqtt.url == "mqtts://u:p@broker:8883"
    assert cfg.data_path == tmp_path / "d"


def test_config_check_command_lists_errors_and_fails(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("mqtt:\n  keepalive_s: 1\n  colour: blue\n")
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "config", "check", str(f)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "mqtt.keepalive_s:" in out.stderr and "mqtt.colour: unknown key" in out.stderr


def test_config_check_command_accepts_the_shipped_file():
    out = subprocess.run([sys.executable, "-m", "citywatch.cli", "config", "check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "1707 subjects" in out.stdout
