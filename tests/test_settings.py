"""Settings resolve flag > environment > TOML > default, and every mistake names the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from filedrop.errors import ConfigError
from filedrop.settings import load_settings


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    """Each source wins over the ones below it."""
    config = tmp_path / "filedrop.toml"
    config.write_text('batch_size = 7\nconcurrent_batches = 3\nenv = "staging"\n')
    settings = load_settings(
        flags={"batch_size": "9"},
        environ={"FILEDROP_BATCH_SIZE": "8", "FILEDROP_CONCURRENT_BATCHES": "2"},
        config_file=config,
    )
    assert settings.batch_size == 9
    assert settings.concurrent_batches == 2
    assert settings.env == "staging"
    assert settings.poll_timeout_s == 300.0


def test_config_file_from_environment(tmp_path: Path) -> None:
    """FILEDROP_CONFIG names the TOML file when --config is not given."""
    config = tmp_path / "c.toml"
    config.write_text("stability_s = 30\npolling = true\n")
    settings = load_settings(environ={"FILEDROP_CONFIG": str(config)})
    assert (settings.stability_s, settings.polling) == (30.0, True)


@pytest.mark.parametrize(
    ("flags", "environ", "message"),
    [
        ({}, {"FILEDROP_BATCH_SIZE": "ten"}, 'FILEDROP_BATCH_SIZE is "ten", which is not valid'),
        ({"batch_size": "0"}, {}, '--batch-size is "0", which is not valid: must be 1 or more.'),
        ({}, {"FILEDROP_ENV": "prod"}, "must be one of sandbox, staging, production"),
        ({}, {"FILEDROP_ARCHIVE": "maybe"}, "must be true or false"),
    ],
)
def test_a_bad_value_names_its_setting(flags: dict, environ: dict, message: str) -> None:
    """A value that does not parse is one sentence naming the flag or variable."""
    with pytest.raises(ConfigError) as caught:
        load_settings(flags=flags, environ=environ)
    assert message in str(caught.value)


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    """A typo in the TOML file is named, with the keys that exist."""
    config = tmp_path / "c.toml"
    config.write_text("bach_size = 5\n")
    with pytest.raises(ConfigError, match='key "bach_size" is not a setting'):
        load_settings(config_file=config)


def test_missing_environment_is_an_error_that_says_so(tmp_path: Path) -> None:
    """run/watch without FILEDROP_ENV: one sentence, and nothing was sent."""
    settings = load_settings(environ={"FILEDROP_INBOX": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        settings.require_for_sending()
    assert str(caught.value) == (
        "FILEDROP_ENV is not set; set it to sandbox, staging or production. Nothing was sent."
    )


def test_secret_comes_from_a_mounted_file(tmp_path: Path) -> None:
    """FILEDROP_CLIENT_SECRET_FILE is read and stripped; the secret never shows in repr."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n")
    settings = load_settings(environ={"FILEDROP_CLIENT_SECRET_FILE": str(secret)})
    assert settings.secret() == "s3cr3t-value"
    assert "s3cr3t" not in repr(load_settings(environ={"FILEDROP_CLIENT_SECRET": "s3cr3t"}))


def test_missing_credentials_are_named(tmp_path: Path) -> None:
    """Missing client id and org id are named together."""
    settings = load_settings(environ={"FILEDROP_ENV": "staging", "FILEDROP_INBOX": str(tmp_path)})
    with pytest.raises(ConfigError, match="FILEDROP_CLIENT_ID and FILEDROP_ORG_ID are not set"):
        settings.require_for_sending()


def test_environment_picks_both_urls_and_overrides_win() -> None:
    """FILEDROP_ENV chooses the URLs; FILEDROP_API_URL overrides one of them."""
    staging = load_settings(environ={"FILEDROP_ENV": "staging"})
    assert staging.urls() == ("https://auth.staging.amili.no", "https://api.staging.amili.no")
    custom = load_settings(
        environ={"FILEDROP_ENV": "production", "FILEDROP_API_URL": "http://127.0.0.1:9/"}
    )
    assert custom.urls() == ("https://auth.amili.no", "http://127.0.0.1:9")


def test_journal_defaults_to_the_inbox(tmp_path: Path) -> None:
    """Without FILEDROP_STATE the journal lives in .filedrop/ inside the inbox."""
    settings = load_settings(environ={"FILEDROP_INBOX": str(tmp_path)})
    assert settings.journal_path == tmp_path / ".filedrop" / "state.db"


def test_every_setting_has_one_default() -> None:
    """Settings() and the spec table agree on every default, and name the same settings."""
    from dataclasses import fields

    from filedrop.settings import SPECS, Settings

    assert [spec.name for spec in SPECS] == [f.name for f in fields(Settings)]
    defaults = Settings()
    assert {spec.name: spec.default for spec in SPECS} == {
        f.name: getattr(defaults, f.name) for f in fields(Settings)
    }
