"""Settings resolve flag > environment > TOML > default, and every mistake names the setting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from filedrop.api.client import AmiliClient, ApiError
from filedrop.errors import ConfigError
from filedrop.sandbox import Sandbox
from filedrop.settings import SPECS, Settings, load_settings


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
        (
            {},
            {"FILEDROP_BATCH_SIZE": "ten"},
            'FILEDROP_BATCH_SIZE is "ten", which is not valid: must be a whole number of 1 or '
            "more.",
        ),
        ({"batch_size": "0"}, {}, '--batch-size is "0", which is not valid: must be 1 or more.'),
        (
            {},
            {"FILEDROP_ENV": "prod"},
            'FILEDROP_ENV is "prod", which is not valid: must be one of sandbox, staging, '
            "production.",
        ),
        (
            {},
            {"FILEDROP_ARCHIVE": "maybe"},
            'FILEDROP_ARCHIVE is "maybe", which is not valid: must be true or false.',
        ),
        (
            {},
            {"FILEDROP_CONNECT_TIMEOUT_S": "0"},
            'FILEDROP_CONNECT_TIMEOUT_S is "0", which is not valid: must be more than 0.',
        ),
        (
            {},
            {"FILEDROP_READ_TIMEOUT_S": "0"},
            'FILEDROP_READ_TIMEOUT_S is "0", which is not valid: must be more than 0.',
        ),
        (
            {},
            {"FILEDROP_POLL_INITIAL_S": "0"},
            'FILEDROP_POLL_INITIAL_S is "0", which is not valid: must be more than 0.',
        ),
        (
            {},
            {"FILEDROP_RETRY_INITIAL_S": "-1"},
            'FILEDROP_RETRY_INITIAL_S is "-1", which is not valid: must be more than 0.',
        ),
        (
            {},
            {"FILEDROP_STABILITY_S": "-1"},
            'FILEDROP_STABILITY_S is "-1", which is not valid: must be 0 or more.',
        ),
        (
            {},
            {"FILEDROP_POLL_TIMEOUT_S": "nan"},
            'FILEDROP_POLL_TIMEOUT_S is "nan", which is not valid: must be a finite number of '
            "seconds.",
        ),
        (
            {},
            {"FILEDROP_RESCAN_S": "soon"},
            'FILEDROP_RESCAN_S is "soon", which is not valid: must be a number of seconds.',
        ),
    ],
)
def test_a_bad_value_names_its_setting(flags: dict, environ: dict, message: str) -> None:
    """A value that does not parse or makes no sense is one sentence naming the flag or variable."""
    with pytest.raises(ConfigError) as caught:
        load_settings(flags=flags, environ=environ)
    assert str(caught.value) == message


def test_a_bad_value_in_the_config_file_names_file_and_key(tmp_path: Path) -> None:
    """A TOML value that makes no sense names the file and its key."""
    config = tmp_path / "c.toml"
    config.write_text("connect_timeout_s = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config)
    assert str(caught.value) == (
        f'{config}: connect_timeout_s is "0", which is not valid: must be more than 0.'
    )


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"FILEDROP_ENV": "Sandbox"}, ("env", "sandbox")),
        ({"FILEDROP_ENV": "PRODUCTION"}, ("env", "production")),
        ({"FILEDROP_LOG_FORMAT": "JSON"}, ("log_format", "json")),
    ],
)
def test_choices_are_accepted_in_any_case(environ: dict, expected: tuple[str, str]) -> None:
    """FILEDROP_ENV=Sandbox is the sandbox; the case of a choice does not matter."""
    settings = load_settings(environ=environ)
    name, value = expected
    assert getattr(settings, name) == value


def test_a_config_file_saved_by_notepad_loads_or_says_to_save_it_as_utf8(tmp_path: Path) -> None:
    """The byte order mark Notepad writes is dropped; a file saved as Windows-1252 is one
    sentence naming the file, the line and the byte (it was "unexpected error: 'utf-8' codec")."""
    config = tmp_path / "c.toml"
    config.write_bytes(b"\xef\xbb\xbfbatch_size = 5\n")
    assert load_settings(config_file=config).batch_size == 5
    config.write_bytes('batch_size = 5\ninbox = "/srv/innboks/økonomi"\n'.encode("cp1252"))
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config)
    assert str(caught.value) == (
        f'The config file {config} is not UTF-8 text (line 2 holds the byte 0xF8, "ø" in '
        "Windows-1252); save it as UTF-8."
    )


def test_unknown_config_key_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    """A typo in the TOML file is named, with the key that was probably meant."""
    config = tmp_path / "c.toml"
    config.write_text("bach_size = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config)
    assert (
        str(caught.value) == f'{config}: key "bach_size" is not a setting; did you mean batch_size?'
    )


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "FILEDROP_BATCHSIZE",
            "FILEDROP_BATCHSIZE is not a setting; did you mean FILEDROP_BATCH_SIZE?",
        ),
        ("FILEDROP_ORGID", "FILEDROP_ORGID is not a setting; did you mean FILEDROP_ORG_ID?"),
        (
            "FILEDROP_CONFIGFILE",
            "FILEDROP_CONFIGFILE is not a setting; did you mean FILEDROP_CONFIG?",
        ),
        (
            "FILEDROP_XYZZY",
            "FILEDROP_XYZZY is not a setting; unset it ('filedrop run --help' lists the settings).",
        ),
    ],
)
def test_an_unknown_filedrop_variable_is_refused_with_the_closest_name(
    variable: str, message: str
) -> None:
    """A mistyped FILEDROP_* variable is an error, not silently ignored."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={variable: "5"})
    assert str(caught.value) == message


def test_known_extra_variables_and_other_programs_variables_are_fine(tmp_path: Path) -> None:
    """FILEDROP_CONFIG is not a setting but is known; variables without the prefix are ignored."""
    config = tmp_path / "c.toml"
    config.write_text("batch_size = 7\n")
    settings = load_settings(environ={"FILEDROP_CONFIG": str(config), "BATCHSIZE": "9"})
    assert settings.batch_size == 7


def test_missing_environment_is_an_error_that_says_so(tmp_path: Path, org_id: str) -> None:
    """run/watch without FILEDROP_ENV: one sentence, and nothing was sent."""
    settings = load_settings(
        environ={
            "FILEDROP_CLIENT_ID": "c",
            "FILEDROP_CLIENT_SECRET": "s",
            "FILEDROP_ORG_ID": org_id,
            "FILEDROP_INBOX": str(tmp_path),
            "FILEDROP_MAPPING": str(tmp_path),
        }
    )
    with pytest.raises(ConfigError) as caught:
        settings.require_for_sending()
    assert str(caught.value) == (
        "FILEDROP_ENV is not set; set it to sandbox, staging or production. Nothing was sent."
    )


def test_every_missing_setting_is_named_in_one_sentence() -> None:
    """With nothing set, one sentence names all six settings that sending needs."""
    with pytest.raises(ConfigError) as caught:
        load_settings().require_for_sending()
    assert str(caught.value) == (
        "FILEDROP_ENV, FILEDROP_CLIENT_ID, FILEDROP_CLIENT_SECRET "
        "(or FILEDROP_CLIENT_SECRET_FILE), FILEDROP_ORG_ID, FILEDROP_INBOX and FILEDROP_MAPPING "
        "are not set; set FILEDROP_ENV to "
        "sandbox, staging or production; FILEDROP_INBOX to the folder to process; "
        "FILEDROP_MAPPING to a mapping file or a folder of them; FILEDROP_CLIENT_ID, "
        "FILEDROP_CLIENT_SECRET and FILEDROP_ORG_ID to the values Amili issued. Nothing was sent."
    )


def test_secret_comes_from_a_mounted_file(tmp_path: Path) -> None:
    """FILEDROP_CLIENT_SECRET_FILE is read and stripped; the secret never shows in repr."""
    secret = tmp_path / "secret"
    secret.write_text("s3cr3t-value\n", encoding="utf-8")
    settings = load_settings(environ={"FILEDROP_CLIENT_SECRET_FILE": str(secret)})
    assert settings.secret() == "s3cr3t-value"
    assert "s3cr3t" not in repr(load_settings(environ={"FILEDROP_CLIENT_SECRET": "s3cr3t"}))


def test_missing_credentials_are_named_together(tmp_path: Path) -> None:
    """Missing env, client id and org id: one sentence names the three."""
    settings = load_settings(
        environ={
            "FILEDROP_CLIENT_SECRET": "s",
            "FILEDROP_INBOX": str(tmp_path),
            "FILEDROP_MAPPING": str(tmp_path),
        }
    )
    with pytest.raises(ConfigError) as caught:
        settings.require_for_sending()
    assert str(caught.value) == (
        "FILEDROP_ENV, FILEDROP_CLIENT_ID and FILEDROP_ORG_ID are not set; set FILEDROP_ENV to "
        "sandbox, staging or production; FILEDROP_CLIENT_ID and FILEDROP_ORG_ID to the values "
        "Amili issued. Nothing was sent."
    )


def test_a_secret_file_that_is_not_utf8_is_one_sentence(tmp_path: Path) -> None:
    """A secret file in another encoding is named, with what to do, instead of a traceback."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfes\x00e\x00")
    settings = load_settings(environ={"FILEDROP_CLIENT_SECRET_FILE": str(secret)})
    with pytest.raises(ConfigError) as caught:
        settings.secret()
    assert str(caught.value) == (
        f"FILEDROP_CLIENT_SECRET_FILE {secret} is not UTF-8 text; save the secret Amili issued "
        "as plain UTF-8 text. Nothing was sent."
    )


def test_environment_picks_both_urls_and_overrides_win() -> None:
    """FILEDROP_ENV chooses the URLs; FILEDROP_API_URL overrides one of them."""
    staging = load_settings(environ={"FILEDROP_ENV": "staging"})
    assert staging.urls() == ("https://auth.staging.amili.no", "https://api.staging.amili.no")
    custom = load_settings(
        environ={"FILEDROP_ENV": "production", "FILEDROP_API_URL": "http://127.0.0.1:9/"}
    )
    assert custom.urls() == ("https://auth.amili.no", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("environ", "journal"),
    [
        ({"XDG_STATE_HOME": "/srv/state", "HOME": "/home/kari"}, "/srv/state/filedrop/journal.db"),
        ({"HOME": "/home/kari"}, "/home/kari/.local/state/filedrop/journal.db"),
        (
            {"XDG_STATE_HOME": "relative", "HOME": "/home/kari"},
            "/home/kari/.local/state/filedrop/journal.db",
        ),
    ],
)
def test_journal_defaults_to_the_users_state_folder_for_every_inbox(
    tmp_path: Path, environ: dict[str, str], journal: str
) -> None:
    """Without FILEDROP_STATE the journal is the user's own, outside every inbox."""
    settings = load_settings(environ={"FILEDROP_INBOX": str(tmp_path), **environ})
    assert settings.journal_path == Path(journal)


def test_filedrop_state_names_the_journal(tmp_path: Path) -> None:
    """FILEDROP_STATE wins over the default."""
    settings = load_settings(
        environ={"FILEDROP_STATE": str(tmp_path / "j.db"), "XDG_STATE_HOME": "/srv/state"}
    )
    assert settings.journal_path == tmp_path / "j.db"


def test_every_setting_has_one_default() -> None:
    """The settings table is built from Settings: each default is Settings()' own."""
    defaults = Settings()
    assert {spec.name: spec.default for spec in SPECS} == {
        spec.name: getattr(defaults, spec.name) for spec in SPECS
    }
    assert load_settings() == defaults


def test_the_daemon_timings_are_settings() -> None:
    """The watch daemon's timings keep their names and defaults."""
    defaults = {spec.name: spec.default for spec in SPECS}
    assert {name: defaults[name] for name in DAEMON_TIMINGS} == DAEMON_TIMINGS


DAEMON_TIMINGS = {
    "heartbeat_s": 10.0,
    "claim_stale_s": 60.0,
    "retry_initial_s": 10.0,
    "retry_max_s": 600.0,
    "shutdown_s": 8.0,
    "observer_poll_s": 1.0,
}


@pytest.mark.parametrize(
    ("environ", "origins"),
    [
        (
            {"FILEDROP_ENV": "staging", "FILEDROP_AUTH_URL": "http://a/"},
            "token from http://a/token (FILEDROP_AUTH_URL), "
            "API at https://api.staging.amili.no (from FILEDROP_ENV=staging)",
        ),
        (
            {"FILEDROP_ENV": "production", "FILEDROP_API_URL": "http://b"},
            "token from https://auth.amili.no/token (from FILEDROP_ENV=production), "
            "API at http://b (FILEDROP_API_URL)",
        ),
        ({"FILEDROP_ENV": "staging"}, ""),
        (
            {
                "FILEDROP_ENV": "staging",
                "FILEDROP_AUTH_URL": "http://a",
                "FILEDROP_API_URL": "http://b",
            },
            "",
        ),
    ],
)
def test_url_origins_say_which_url_came_from_where(environ: dict, origins: str) -> None:
    """With one of the two URLs overridden, each URL is named with where it came from."""
    assert load_settings(environ=environ).url_origins() == origins


def test_an_unknown_api_path_names_where_the_urls_came_from(
    sandbox: Sandbox,
    make_client: Callable[..., AmiliClient],
    org_id: str,
    example_invoice: dict[str, Any],
) -> None:
    """A 404 from a mistaken API URL names both URLs and where each came from."""
    origins = (
        f"token from {sandbox.url}/token (FILEDROP_AUTH_URL), "
        f"API at {sandbox.url}/x (from FILEDROP_ENV=sandbox)"
    )
    client = make_client(api_url=f"{sandbox.url}/x", url_origins=origins)
    with pytest.raises(ApiError) as caught:
        client.create_invoices(org_id, [example_invoice])
    path = f"/x/collection/v1/orgs/{org_id}/invoices"
    assert str(caught.value) == (
        f"Amili answered POST {path} with HTTP 404: "
        f'\'{{"message": "No route for POST {path}"}}\'; it did not process the request, '
        "check FILEDROP_ORG_ID and the API base URL (FILEDROP_ENV or FILEDROP_API_URL): "
        f"{origins}."
    )
