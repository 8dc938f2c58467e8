"""Settings: command-line flag > environment variable > TOML config file > default.

Every setting is one ``Spec`` row, resolved by one function, so a wrong value always gets the
same kind of sentence naming where it came from (``--batch-size``, ``FILEDROP_BATCH_SIZE`` or the
config file's key).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from filedrop.errors import ConfigError
from filedrop.inbox import STATE_FOLDER

ENVIRONMENTS: dict[str, tuple[str, str]] = {
    # name: (identiverse base URL, API base URL). The sandbox is `filedrop sandbox` on its default
    # port; production's API URL is inferred from staging's naming in the API guide, hence
    # overridable with FILEDROP_API_URL.
    "sandbox": ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    "staging": ("https://auth.staging.amili.no", "https://api.staging.amili.no"),
    "production": ("https://auth.amili.no", "https://api.amili.no"),
}


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


_EXPECTED = {
    _positive_int: "a whole number of 1 or more",
    _non_negative_float: "a number of seconds",
}


@dataclass(frozen=True)
class Spec:
    """One setting: its name (the TOML key and dataclass field), parser and default."""

    name: str
    parse: Callable[[str], Any]
    default: Any = None
    help: str = ""

    @property
    def env(self) -> str:
        return f"FILEDROP_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SPECS: tuple[Spec, ...] = (
    Spec("env", _choice(*ENVIRONMENTS), None, "sandbox, staging or production"),
    Spec("auth_url", str, None, "identiverse base URL (overrides the environment's)"),
    Spec("api_url", str, None, "API base URL (overrides the environment's)"),
    Spec("client_id", str, None, "client id issued by Amili"),
    Spec("client_secret", str, None, "client secret (prefer FILEDROP_CLIENT_SECRET_FILE)"),
    Spec("client_secret_file", Path, None, "file holding the client secret (a mounted secret)"),
    Spec("org_id", str, None, "organisation UUID"),
    Spec("inbox", Path, None, "the folder to process"),
    Spec("mapping", Path, None, "a mapping file, or a folder of them"),
    Spec("state", Path, None, "the journal (default: .filedrop/state.db inside the inbox)"),
    Spec("batch_size", _positive_int, 100, "invoices per batch"),
    Spec("concurrent_batches", _positive_int, 4, "POSTs in flight at once"),
    Spec("concurrent_files", _positive_int, 2, "files processed at once"),
    Spec("poll_initial_s", _non_negative_float, 1.0, "first wait before polling a batch"),
    Spec("poll_max_interval_s", _non_negative_float, 30.0, "longest wait between polls"),
    Spec("poll_timeout_s", _non_negative_float, 300.0, "stop waiting for a batch after this"),
    Spec("stability_s", _non_negative_float, 5.0, "a file must stay unchanged this long"),
    Spec("rescan_s", _non_negative_float, 30.0, "watch: rescan the inbox this often"),
    Spec("connect_timeout_s", _non_negative_float, 5.0, "HTTP connect timeout"),
    Spec("read_timeout_s", _non_negative_float, 30.0, "HTTP read timeout"),
    Spec("archive", _bool, False, "move original and outcome to archive/ when done"),
    Spec("polling", _bool, False, "watch: poll the folder (network shares) instead of events"),
    Spec("log_format", _choice("text", "json"), "text", "log lines as text or JSON"),
    Spec(
        "heartbeat_s", _non_negative_float, 10.0, "watch: write the daemon's heartbeat this often"
    ),
    Spec("claim_stale_s", _non_negative_float, 900.0, "trust another host's claim this long"),
    Spec("retry_initial_s", _non_negative_float, 10.0, "first wait after the API was down"),
    Spec("retry_max_s", _non_negative_float, 600.0, "longest wait after the API was down"),
    Spec("shutdown_s", _non_negative_float, 8.0, "at a stop, in-flight work gets this long"),
    Spec(
        "observer_poll_s", _non_negative_float, 1.0, "watch --polling lists the folder this often"
    ),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved settings; see ``SPECS`` for meanings and defaults."""

    env: str | None = None
    auth_url: str | None = None
    api_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    client_secret_file: Path | None = None
    org_id: str | None = None
    inbox: Path | None = None
    mapping: Path | None = None
    state: Path | None = None
    batch_size: int = 100
    concurrent_batches: int = 4
    concurrent_files: int = 2
    poll_initial_s: float = 1.0
    poll_max_interval_s: float = 30.0
    poll_timeout_s: float = 300.0
    stability_s: float = 5.0
    rescan_s: float = 30.0
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    archive: bool = False
    polling: bool = False
    log_format: str = "text"
    heartbeat_s: float = 10.0
    claim_stale_s: float = 900.0
    retry_initial_s: float = 10.0
    retry_max_s: float = 600.0
    shutdown_s: float = 8.0
    observer_poll_s: float = 1.0

    @property
    def journal_path(self) -> Path:
        """Where the journal lives: ``state``, else ``.filedrop/state.db`` in the inbox."""
        if self.state is not None:
            return self.state
        if self.inbox is None:
            raise ConfigError(
                "FILEDROP_INBOX is not set; set it (or --inbox) to the folder to process."
            )
        return self.inbox / STATE_FOLDER / "state.db"

    def urls(self) -> tuple[str, str]:
        """(auth base URL, API base URL) for the chosen environment and overrides."""
        if self.env is None:
            # Always required, even with both URLs overridden: the environment names the set
            # of invoice numbers in the journal that must never be sent twice.
            raise ConfigError(
                "FILEDROP_ENV is not set; set it to sandbox, staging or production. "
                "Nothing was sent."
            )
        auth, api = ENVIRONMENTS.get(self.env or "", (None, None))
        return (self.auth_url or auth or "").rstrip("/"), (self.api_url or api or "").rstrip("/")

    def secret(self) -> str:
        """The client secret, from FILEDROP_CLIENT_SECRET_FILE (a mounted secret) or the value."""
        if self.client_secret_file is not None:
            try:
                return self.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"FILEDROP_CLIENT_SECRET_FILE {self.client_secret_file} cannot be read "
                    f"({exc.strerror}); check the path and its permissions. Nothing was sent."
                ) from exc
        if not self.client_secret:
            raise ConfigError(
                "FILEDROP_CLIENT_SECRET (or FILEDROP_CLIENT_SECRET_FILE) is not set; "
                "set it to the secret Amili issued. Nothing was sent."
            )
        return self.client_secret

    def require_for_sending(self) -> None:
        """Check every setting that sending needs, before anything is sent (exit code 2)."""
        self.urls()
        missing = [
            spec.env
            for spec in (SPEC_BY_NAME["client_id"], SPEC_BY_NAME["org_id"])
            if not getattr(self, spec.name)
        ]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set; "
                "set them to the values Amili issued. Nothing was sent."
            )
        if not _UUID.fullmatch(self.org_id or ""):
            raise ConfigError(
                f'FILEDROP_ORG_ID is "{self.org_id}", which is not a UUID like '
                "3fa85f64-5717-4562-b3fc-2c963f66afa6; use the organisation id Amili issued. "
                "Nothing was sent."
            )
        self.secret()
        self.require_inbox()
        if self.mapping is None:
            raise ConfigError(
                "FILEDROP_MAPPING is not set; set it (or --mapping) to a mapping file or a "
                "folder of them. Nothing was sent."
            )
        if not self.mapping.exists():
            raise ConfigError(
                f"FILEDROP_MAPPING {self.mapping} does not exist; point it at a mapping file or "
                "a folder of them. Nothing was sent."
            )

    def require_inbox(self) -> Path:
        if self.inbox is None:
            raise ConfigError(
                "FILEDROP_INBOX is not set; set it (or --inbox) to the folder to process."
            )
        if not self.inbox.is_dir():
            raise ConfigError(
                f"FILEDROP_INBOX {self.inbox} is not a folder; create it or fix the path."
            )
        return self.inbox


def _parse(spec: Spec, raw: object, where: str) -> Any:
    """Parse one raw value (text from a flag or env, or a TOML value), naming ``where`` on error."""
    if spec.parse is Path and isinstance(raw, str):
        return Path(raw).expanduser()
    if isinstance(raw, bool) and spec.parse is _bool:
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{where} is {raw!r}, which is not a {spec.help or spec.name} value.")
    try:
        return spec.parse(raw)
    except ValueError as exc:
        reason = str(exc) if "must" in str(exc) else f"expected {_EXPECTED[spec.parse]}"
        raise ConfigError(f'{where} is "{raw}", which is not valid: {reason}.') from exc


def load_settings(
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every setting. ``flags`` holds only options given on the command line.

    The config file is ``config_file`` (``--config``), else ``FILEDROP_CONFIG``, else none.
    """
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    environ = environ or {}
    config_path = config_file or (
        Path(environ["FILEDROP_CONFIG"]) if environ.get("FILEDROP_CONFIG") else None
    )
    from_file: dict[str, Any] = {}
    if config_path is not None:
        from_file = _read_config(config_path)
    values: dict[str, Any] = {}
    for spec in SPECS:
        if spec.name in flags:
            values[spec.name] = _parse(spec, flags[spec.name], spec.flag)
        elif environ.get(spec.env, "") != "":
            values[spec.name] = _parse(spec, environ[spec.env], spec.env)
        elif spec.name in from_file:
            values[spec.name] = _parse(spec, from_file[spec.name], f"{config_path}: {spec.name}")
        else:
            values[spec.name] = spec.default
    return Settings(**values)


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"The config file {path} cannot be read ({exc.strerror}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}.") from exc
    known = {f.name for f in fields(Settings)}
    for key in data:
        if key not in known:
            raise ConfigError(
                f'{path}: key "{key}" is not a setting; known keys: {", ".join(sorted(known))}.'
            )
    return data
