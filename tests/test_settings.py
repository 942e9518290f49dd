from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError, load_settings


def test_defaults_come_from_the_config_file():
    settings = load_settings(environ={})
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.timezone == "Asia/Shanghai"
    assert settings.model_name == "vosk-model-small-cn-0.22"
    assert settings.api_keys == ()


def test_environment_overrides_every_kind_of_setting(tmp_path):
    settings = load_settings(
        environ={
            "GATEWAY_DATABASE_URL": "postgresql+asyncpg://u@127.0.0.1/test",
            "GATEWAY_MODEL_MIRRORS": "/srv/models, https://mirror.example/vosk",
            "GATEWAY_API_KEYS": "k1,k2",
            "GATEWAY_MAX_CALLS": "7",
            "GATEWAY_IDLE_TIMEOUT_S": "2.5",
            "GATEWAY_VAD_ENABLED": "off",
            "GATEWAY_DATA_DIR": str(tmp_path),
        }
    )
    assert settings.effective_database_url == "postgresql+asyncpg://u@127.0.0.1/test"
    assert settings.model_mirrors == ("/srv/models", "https://mirror.example/vosk")
    assert settings.api_keys == ("k1", "k2")
    assert settings.max_calls == 7
    assert settings.idle_timeout_s == 2.5
    assert settings.vad_enabled is False
    assert settings.model_cache_path == tmp_path / "models"


def test_sqlite_is_the_embedded_default(tmp_path):
    settings = load_settings(environ={"GATEWAY_DATA_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"


def test_bad_values_are_named_in_the_error():
    with pytest.raises(SettingsError, match="max_calls"):
        load_settings(environ={"GATEWAY_MAX_CALLS": "many"})
    with pytest.raises(SettingsError, match="vad_enabled"):
        load_settings(environ={"GATEWAY_VAD_ENABLED": "perhaps"})


def test_settings_file_from_environment(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('port = 9100\napi_keys = ["abc"]\n')
    settings = load_settings(environ={"GATEWAY_SETTINGS": str(path)})
    assert settings.port == 9100 and settings.api_keys == ("abc",)
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        path.write_text('colour = "red"\n')
        load_settings(environ={"GATEWAY_SETTINGS": str(path)})
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={"GATEWAY_SETTINGS": str(tmp_path / "missing.toml")})


def test_every_setting_is_in_the_default_file():
    import dataclasses
    import tomllib

    from gateway.settings import DEFAULT_SETTINGS_FILE

    documented = set(tomllib.loads(DEFAULT_SETTINGS_FILE.read_text()))
    assert documented == {f.name for f in dataclasses.fields(Settings)}


def test_every_setting_is_documented_in_the_readme():
    import dataclasses

    from gateway.settings import DEFAULT_SETTINGS_FILE

    readme = (DEFAULT_SETTINGS_FILE.parent.parent / "README.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"GATEWAY_{f.name.upper()}" not in readme]
    assert missing == []


def test_webhook_routes_come_from_toml_tables_and_environment(tmp_path):
    from gateway.settings import WebhookRoute

    path = tmp_path / "site.toml"
    path.write_text('claims_webhook_url = "https://claims.example/hook"\nclaims_webhook_secret = "c"\n'
                    '[webhooks.survey_result]\nurl = "https://crm.example/survey"\nsecret = "s"\nbackoff_s = 5\n')
    settings = load_settings(environ={"GATEWAY_SETTINGS": str(path), "GATEWAY_WEBHOOKS_SURVEY_RESULT_SECRET": "s2",
                                      "GATEWAY_WEBHOOKS_REMINDER_CALL_URL": "https://crm.example/remind",
                                      "GATEWAY_WEBHOOKS_REMINDER_CALL_BACKOFF_S": "0.5"})
    assert settings.delivery_routes == {
        "claim_report": WebhookRoute("claim_report", "https://claims.example/hook", "c", 2.0),
        "survey_result": WebhookRoute("survey_result", "https://crm.example/survey", "s2", 5.0),
        "reminder_call": WebhookRoute("reminder_call", "https://crm.example/remind", "", 0.5),
    }
    assert load_settings(environ={}).delivery_routes == {}
    assert load_settings(environ={}).db_auto_upgrade is True
    assert load_settings(environ={"GATEWAY_DB_AUTO_UPGRADE": "false"}).db_auto_upgrade is False


def test_webhook_routes_refuse_unknown_keys_and_half_routes(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[webhooks.survey_result]\nurl = "https://crm.example/survey"\ncolour = "red"\n')
    with pytest.raises(SettingsError, match="unknown setting 'webhooks.survey_result.colour'"):
        load_settings(environ={"GATEWAY_SETTINGS": str(path)})
    with pytest.raises(SettingsError, match="webhooks.survey_result.url"):
        load_settings(environ={"GATEWAY_WEBHOOKS_SURVEY_RESULT_SECRET": "s"})
    with pytest.raises(SettingsError, match="GATEWAY_WEBHOOKS_SURVEY_RESULT_COLOUR"):
        load_settings(environ={"GATEWAY_WEBHOOKS_SURVEY_RESULT_COLOUR": "red"})
    with pytest.raises(SettingsError, match="backoff_s"):
        load_settings(environ={"GATEWAY_WEBHOOKS_X_URL": "http://x", "GATEWAY_WEBHOOKS_X_BACKOFF_S": "soon"})
    with pytest.raises(SettingsError, match="set twice"):
        load_settings(environ={"GATEWAY_CLAIMS_WEBHOOK_URL": "http://c", "GATEWAY_WEBHOOKS_CLAIM_REPORT_URL": "http://d"})
    with pytest.raises(SettingsError, match="webhooks"):
        load_settings(environ={"GATEWAY_WEBHOOKS": "http://x"})


def test_instance_retention_is_days_longer_than_death_or_zero_to_keep():
    assert load_settings(environ={}).instance_retention_days == 7.0
    assert load_settings(environ={"GATEWAY_INSTANCE_RETENTION_DAYS": "0"}).instance_retention_days == 0.0
    for bad in ("-1", "0.0001"):  # 8.6 s: live peers would be pruned
        with pytest.raises(SettingsError, match="instance_retention_days"):
            load_settings(environ={"GATEWAY_INSTANCE_RETENTION_DAYS": bad})
