"""Settings: command-line flag > environment variable > TOML config file > default.

Every setting is one field of ``Settings`` that carries its default, parser and help; ``SPECS``
(the table that gives each setting its flag, variable and key), the CLI's flags and their help are
built from those fields, so a default is written once. One function resolves them all, so a wrong
value always gets the same kind of sentence naming where it came from (``--batch-size``,
``FILEDROP_BATCH_SIZE`` or the config file's key).
"""

from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from filedrop.errors import ConfigError
from filedrop.inbox import ARCHIVE
from filedrop.journal.engines import PostgresLocation, location_from_text, redact
from filedrop.journal.location import default_journal_path
from filedrop.logs import joined, printable
from filedrop.read.limits import ReadLimits

_READ_LIMITS = ReadLimits()

#: The invoice types a mapping may give. Amili's guide shows NOTICE; PAYMENT_REMINDER is an
#: assumption to confirm with Amili, hence a setting rather than a fixed list.
DEFAULT_INVOICE_TYPES = ("NOTICE", "PAYMENT_REMINDER")

ENVIRONMENTS: dict[str, tuple[str, str]] = {
    # name: (identiverse base URL, API base URL). The sandbox is `filedrop sandbox` on its default
    # port; production's API URL is inferred from staging's naming in the API guide, hence
    # overridable with FILEDROP_API_URL.
    "sandbox": ("http://127.0.0.1:8765", "http://127.0.0.1:8765"),
    "staging": ("https://auth.staging.amili.no", "https://api.staging.amili.no"),
    "production": ("https://auth.amili.no", "https://api.amili.no"),
}


_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")

#: Variables filedrop reads that are not settings themselves.
OTHER_VARIABLES = ("FILEDROP_CONFIG",)

#: Settings one process has once, whatever inboxes it serves: one journal, one log.
SHARED_SETTINGS = ("state", "state_password_file", "allow_network_journal", "log_format")

#: What an inbox is called when the config lists none (in metrics and in reports).
DEFAULT_INBOX_NAME = "default"

#: An inbox's name: a word for logs, metrics labels and ``--inbox NAME``.
_INBOX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

#: Which commands have a flag for a setting (its ``flag_on``): the two that send, or every
#: command that reads the journal too.
RUN_AND_WATCH = ("run", "watch")
ALL_SETTINGS_COMMANDS = ("run", "watch", "status", "resolve", "journal", "report")


# Each parser raises ValueError("must ...") so that every refusal reads the same way.


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number of 1 or more") from None
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(value):
        raise ValueError("must be a finite number of seconds")
    return value


def _seconds(text: str) -> float:
    """Seconds where 0 means "at once" (a stability window, a shutdown grace period)."""
    value = _float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_seconds(text: str) -> float:
    """Seconds where 0 makes no sense: a timeout, or the wait in a loop that would spin."""
    value = _float(text)
    if value <= 0:
        raise ValueError("must be more than 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a port number from 0 to 65535") from None
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number from 0 to 65535")
    return value


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _choice(*choices: str) -> Callable[[str], str]:
    """Accept one of ``choices`` in any case (``Sandbox`` is ``sandbox``)."""

    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return lowered

    return parse


def _org_id(text: str) -> str:
    """An organisation UUID in small letters: the same id in capitals is the same organisation
    at Amili, and written either way it must name the same invoices in the journal, or an
    inbox or a run set up with the other would send them again. Any other text stays as it
    is, for ``require_for_sending`` to refuse as it was written."""
    text = text.strip()
    return text.lower() if _UUID.fullmatch(text) else text


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of upper-case API names (``NOTICE,PAYMENT_REMINDER``)."""
    names = tuple(part.strip() for part in text.split(","))
    if not all(re.fullmatch(r"[A-Z][A-Z0-9_]*", name) for name in names):
        raise ValueError(
            "must be names in capitals separated by commas, like NOTICE,PAYMENT_REMINDER"
        )
    return names


def _about(
    parse: Callable[[str], Any], help: str, *, flag_on: tuple[str, ...] = ()
) -> dict[str, Any]:
    """What makes a ``Settings`` field a setting: its parser, its help and the commands that
    have a flag for it. ``SPECS`` is built from these fields, so each default is written once."""
    return {"parse": parse, "help": help, "flag_on": flag_on}


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Resolved settings: every setting with its default, parser and meaning, once.

    ``sources`` says where each given value came from (``--batch-size``, ``FILEDROP_BATCH_SIZE``
    or ``filedrop.toml: batch_size``), so that messages can name it; defaults are not in it.
    """

    env: str | None = field(
        default=None,
        metadata=_about(
            _choice(*ENVIRONMENTS), "sandbox, staging or production", flag_on=RUN_AND_WATCH
        ),
    )
    auth_url: str | None = field(
        default=None, metadata=_about(str, "identiverse base URL (overrides the environment's)")
    )
    api_url: str | None = field(
        default=None, metadata=_about(str, "API base URL (overrides the environment's)")
    )
    client_id: str | None = field(default=None, metadata=_about(str, "client id issued by Amili"))
    client_secret: str | None = field(
        default=None,
        repr=False,
        metadata=_about(str, "client secret (prefer FILEDROP_CLIENT_SECRET_FILE)"),
    )
    client_secret_file: Path | None = field(
        default=None, metadata=_about(Path, "file holding the client secret (a mounted secret)")
    )
    org_id: str | None = field(default=None, metadata=_about(_org_id, "organisation UUID"))
    inbox: Path | None = field(
        default=None,
        metadata=_about(
            Path,
            "the folder to process; with [[inbox]] tables in the config, --inbox NAME serves "
            "only the inbox of that name",
            flag_on=(*ALL_SETTINGS_COMMANDS, "validate"),
        ),
    )
    mapping: Path | None = field(
        default=None,
        metadata=_about(Path, "mapping file or folder", flag_on=(*RUN_AND_WATCH, "validate")),
    )
    state: Path | PostgresLocation | None = field(
        default=None,
        metadata=_about(
            location_from_text,
            "the journal, one for every inbox: a SQLite file (default: "
            "$XDG_STATE_HOME/filedrop/journal.db, else ~/.local/state/filedrop/journal.db) or a "
            "postgresql:// URL",
            flag_on=ALL_SETTINGS_COMMANDS,
        ),
    )
    state_password_file: Path | None = field(
        default=None,
        metadata=_about(Path, "file holding the PostgreSQL journal's password (a mounted secret)"),
    )
    allow_network_journal: bool = field(
        default=False,
        metadata=_about(
            _bool, "allow a SQLite journal on NFS, SMB/CIFS, SSHFS or another FUSE mount"
        ),
    )
    batch_size: int = field(
        default=100, metadata=_about(_positive_int, "invoices per batch", flag_on=RUN_AND_WATCH)
    )
    concurrent_batches: int = field(
        default=4, metadata=_about(_positive_int, "POSTs in flight at once", flag_on=RUN_AND_WATCH)
    )
    concurrent_files: int = field(
        default=2, metadata=_about(_positive_int, "files processed at once")
    )
    poll_initial_s: float = field(
        default=1.0, metadata=_about(_positive_seconds, "first wait before polling a batch")
    )
    poll_max_interval_s: float = field(
        default=30.0, metadata=_about(_positive_seconds, "longest wait between polls")
    )
    poll_timeout_s: float = field(
        default=300.0,
        metadata=_about(
            _seconds,
            "stop waiting for a batch after this, a failing poll's retries included",
            flag_on=RUN_AND_WATCH,
        ),
    )
    stability_s: float = field(
        default=5.0,
        metadata=_about(
            _seconds,
            "unchanged this long = ready (a CSV whose last line has no line ending: a minute)",
            flag_on=RUN_AND_WATCH,
        ),
    )
    rescan_s: float = field(
        default=30.0,
        metadata=_about(
            _positive_seconds, "watch: rescan the inbox this often", flag_on=("watch",)
        ),
    )
    connect_timeout_s: float = field(
        default=5.0, metadata=_about(_positive_seconds, "HTTP connect timeout")
    )
    read_timeout_s: float = field(
        default=30.0,
        metadata=_about(
            _positive_seconds, "HTTP read timeout: a whole answer, however slowly it comes"
        ),
    )
    archive: bool = field(
        default=False,
        metadata=_about(
            _bool, "move original and outcome to archive/ when done", flag_on=RUN_AND_WATCH
        ),
    )
    polling: bool = field(
        default=False,
        metadata=_about(
            _bool,
            "watch: poll the folder (SMB/CIFS/NFS/SSHFS, Docker Desktop mounts) instead of events",
            flag_on=("watch",),
        ),
    )
    log_format: str = field(
        default="text", metadata=_about(_choice("text", "json"), "log lines as text or JSON")
    )
    metrics_port: int | None = field(
        default=None,
        metadata=_about(
            _port,
            "watch: serve /metrics, /healthz and /readyz on this port (0: any free one)",
            flag_on=("watch",),
        ),
    )
    metrics_host: str = field(
        default="127.0.0.1",
        metadata=_about(str, "watch: the address the metrics port listens on (0.0.0.0: all)"),
    )
    metrics_file: Path | None = field(
        default=None,
        metadata=_about(
            Path,
            "run: write the metrics to this file for node_exporter's textfile collector",
            flag_on=("run",),
        ),
    )
    heartbeat_s: float = field(
        default=10.0,
        metadata=_about(_positive_seconds, "renew claims and the daemon's heartbeat this often"),
    )
    claim_stale_s: float = field(
        default=60.0,
        metadata=_about(
            _positive_seconds, "a claim on a file is free this long after its last heartbeat"
        ),
    )
    retry_initial_s: float = field(
        default=10.0, metadata=_about(_positive_seconds, "watch: first wait after the API was down")
    )
    retry_max_s: float = field(
        default=600.0,
        metadata=_about(_positive_seconds, "watch: longest wait after the API was down"),
    )
    shutdown_s: float = field(
        default=8.0, metadata=_about(_seconds, "at a stop, in-flight work gets this long")
    )
    observer_poll_s: float = field(
        default=1.0,
        metadata=_about(_positive_seconds, "watch --polling lists the folder this often"),
    )
    max_file_bytes: int = field(
        default=_READ_LIMITS.max_file_bytes,
        metadata=_about(_positive_int, "a larger input file is refused unread"),
    )
    max_inflated_bytes: int = field(
        default=_READ_LIMITS.max_inflated_bytes,
        metadata=_about(_positive_int, "a workbook inflating to more is refused unread"),
    )
    max_inflation_ratio: int = field(
        default=_READ_LIMITS.max_inflation_ratio,
        metadata=_about(_positive_int, "a workbook part inflating more times is refused unread"),
    )
    max_rows: int = field(
        default=_READ_LIMITS.max_rows,
        metadata=_about(_positive_int, "a sheet reaching a later row is refused unread"),
    )
    max_columns: int = field(
        default=_READ_LIMITS.max_columns,
        metadata=_about(
            _positive_int, "a sheet reaching a later column, or a CSV header wider, is refused"
        ),
    )
    max_read_memory_bytes: int = field(
        default=_READ_LIMITS.max_read_memory_bytes,
        metadata=_about(_positive_int, "memory a workbook's reader may use"),
    )
    max_read_s: float = field(
        default=_READ_LIMITS.max_read_s,
        metadata=_about(_positive_seconds, "how long a workbook's reader may take"),
    )
    read_in_subprocess: bool = field(
        default=_READ_LIMITS.read_in_subprocess,
        metadata=_about(_bool, "read workbooks in a child process, so a crash is one file's error"),
    )

    invoice_types: tuple[str, ...] = field(
        default=DEFAULT_INVOICE_TYPES,
        metadata=_about(_names, "the invoice types a mapping may give, separated by commas"),
    )

    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    default_state: Path | None = field(default=None, repr=False, compare=False)
    """The journal when ``state`` is not given: the user's, from the environment the settings
    were read from (``default_journal_path``)."""
    inbox_name: str | None = field(default=None, compare=False)
    """This inbox's name in the config's list of inboxes; None when the config lists none."""
    inboxes: tuple[Settings, ...] = field(default=(), repr=False, compare=False)
    """Each inbox the config lists (``[[inbox]]``), resolved; empty when it lists none, and then
    these settings are the one inbox's."""

    def each_inbox(self) -> tuple[Settings, ...]:
        """The settings of every inbox to serve: the listed ones, else these."""
        return self.inboxes or (self,)

    @property
    def name(self) -> str:
        """The inbox's name, as logs and metrics show it (``default`` without a list)."""
        return self.inbox_name or DEFAULT_INBOX_NAME

    def where(self, name: str) -> str:
        """Where ``name``'s value came from: its flag, variable or config key, else its variable."""
        return self.sources.get(name) or SPEC_BY_NAME[name].env

    def read_limits(self) -> ReadLimits:
        """The ``max_*`` and ``read_in_subprocess`` settings, which messages name as set."""
        names = [f.name for f in fields(ReadLimits) if f.name != "sources"]
        return ReadLimits(
            **{name: getattr(self, name) for name in names},
            sources={name: self.where(name) for name in names},
        )

    @property
    def journal_path(self) -> Path | PostgresLocation:
        """Where the journal lives: ``state`` (a file or a PostgreSQL URL), else the user's own
        for every inbox (for settings built by hand, from the process's environment)."""
        if isinstance(self.state, PostgresLocation):
            return self.state.with_password_file(
                self.state_password_file, setting=self.where("state_password_file")
            )
        if self.state is not None:
            return self.state
        return self.default_state or default_journal_path(os.environ)

    def require_target(self) -> str:
        """``environment:organisation``, the scope within which an invoice number goes out once."""
        missing = [name for name in ("env", "org_id") if not self._given(name)]
        if missing:
            raise ConfigError(_not_set(missing, sending=False))
        return f"{self.env}:{self.org_id}"

    def urls(self) -> tuple[str, str]:
        """(auth base URL, API base URL) for the chosen environment and overrides."""
        if self.env is None:
            # Always required, even with both URLs overridden: the environment names the set
            # of invoice numbers in the journal that must never be sent twice.
            raise ConfigError(_not_set(["env"], sending=True))
        auth, api = ENVIRONMENTS[self.env]
        return (self.auth_url or auth).rstrip("/"), (self.api_url or api).rstrip("/")

    def url_origins(self) -> str:
        """Which URL serves what, and why, when only one of the two is overridden; else "".

        A token from one Amili and an API from another fail in puzzling ways (a refused token, an
        unknown path), so the errors they cause carry this.
        """
        if self.env is None or (self.auth_url is None) == (self.api_url is None):
            return ""
        auth, api = self.urls()
        from_env = f"from {self.where('env')}={self.env}"
        auth_origin = self.where("auth_url") if self.auth_url else from_env
        api_origin = self.where("api_url") if self.api_url else from_env
        return f"token from {auth}/token ({auth_origin}), API at {api} ({api_origin})"

    def secret(self) -> str:
        """The client secret, from FILEDROP_CLIENT_SECRET_FILE (a mounted secret) or the value."""
        path = self.client_secret_file
        if path is not None:
            where = self.where("client_secret_file")
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{where} {path} cannot be read ({exc.strerror}); check the path and its "
                    "permissions. Nothing was sent."
                ) from exc
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{where} {path} is not UTF-8 text; save the secret Amili issued as plain "
                    "UTF-8 text. Nothing was sent."
                ) from exc
        if not self.client_secret:
            raise ConfigError(_not_set(["client_secret"], sending=True))
        return self.client_secret

    def require_for_sending(self) -> None:
        """Check every setting that sending needs, before anything is sent (exit code 2).

        Every missing one is named in the same sentence, so one fix-and-rerun is enough.
        """
        required = ("env", "client_id", "client_secret", "org_id", "inbox", "mapping")
        missing = [name for name in required if not self._given(name)]
        if missing:
            raise ConfigError(_not_set(missing, sending=True))
        if not _UUID.fullmatch(self.org_id or ""):
            raise ConfigError(
                f'{self.where("org_id")} is "{self.org_id}", which is not a UUID like '
                "3fa85f64-5717-4562-b3fc-2c963f66afa6; use the organisation id Amili issued. "
                "Nothing was sent."
            )
        self.secret()
        self.require_writable_inbox()
        if self.mapping is not None and not self.mapping.exists():
            raise ConfigError(
                f"{self.where('mapping')} {self.mapping} does not exist; point it at a mapping "
                "file or a folder of them. Nothing was sent."
            )

    def require_inbox(self) -> Path:
        if self.inbox is None:
            raise ConfigError(_not_set(["inbox"], sending=False))
        if not self.inbox.is_dir():
            raise ConfigError(
                f"{self.where('inbox')} {self.inbox} is not a folder; create it or fix the path."
            )
        try:
            str(self.inbox.absolute()).encode()
        except UnicodeEncodeError:
            # Each file's path would reach the journal, which records text, as an "unexpected
            # error" file after file, run after run.
            raise ConfigError(
                f"{self.where('inbox')} {printable(str(self.inbox.absolute()))} is not UTF-8 "
                "(a folder named in another code page, such as Latin-1), and the journal records "
                "each file's path as UTF-8 text; rename the folder, or point the setting at a "
                "path in UTF-8. Nothing was sent."
            ) from None
        return self.inbox

    def require_writable_inbox(self) -> Path:
        """The inbox, which sending needs writable: each outcome is written next to its input.

        Checked at start, so a container whose bind-mounted inbox belongs to another user stops
        with this sentence instead of failing file by file.
        """
        inbox = self.require_inbox()
        if not os.access(inbox, os.W_OK | os.X_OK):
            raise ConfigError(
                f"{self.where('inbox')} {inbox} is not writable by this user (uid {os.getuid()}), "
                "and outcomes are written next to the inputs; give it that user or group "
                f"(e.g. chown {os.getuid()} {inbox}). Nothing was sent."
            )
        return inbox

    def _given(self, name: str) -> bool:
        if name == "client_secret":
            return bool(self.client_secret) or self.client_secret_file is not None
        return getattr(self, name) is not None and getattr(self, name) != ""


#: Each required setting: how a message names it, and what to set it to.
_WANTED = {
    "env": ("FILEDROP_ENV", "sandbox, staging or production"),
    "client_id": ("FILEDROP_CLIENT_ID", "the client id Amili issued"),
    "client_secret": (
        "FILEDROP_CLIENT_SECRET (or FILEDROP_CLIENT_SECRET_FILE)",
        "the secret Amili issued",
    ),
    "org_id": ("FILEDROP_ORG_ID", "the organisation id Amili issued"),
    "inbox": ("FILEDROP_INBOX", "the folder to process"),
    "mapping": ("FILEDROP_MAPPING", "a mapping file or a folder of them"),
}
_ISSUED = ("client_id", "client_secret", "org_id")


def _not_set(names: list[str], *, sending: bool) -> str:
    """One sentence for every missing setting: ``A, B and C are not set; set A to ...``."""
    labels = [_WANTED[name][0] for name in names]
    issued = [name for name in names if name in _ISSUED]
    if len(names) == 1:
        sentence = f"{labels[0]} is not set; set it to {_WANTED[names[0]][1]}."
    else:
        todo = [f"{_WANTED[name][0]} to {_WANTED[name][1]}" for name in names if name not in issued]
        if len(issued) == 1:
            todo.append(f"{_WANTED[issued[0]][0]} to {_WANTED[issued[0]][1]}")
        elif issued and todo:
            variables = joined([_WANTED[name][0].split(" ")[0] for name in issued])
            todo.append(f"{variables} to the values Amili issued")
        else:
            todo.append("them to the values Amili issued")
        sentence = f"{joined(labels)} are not set; set {'; '.join(todo)}."
    return f"{sentence} Nothing was sent." if sending else sentence


@dataclass(frozen=True)
class Spec:
    """One setting as the outside sees it: TOML key, variable, flag, parser, default, help."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    flag_on: tuple[str, ...]

    @property
    def env(self) -> str:
        return f"FILEDROP_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_switch(self) -> bool:
        """A true/false setting: its flag takes no value (``--archive``)."""
        return self.parse is _bool

    @property
    def default_text(self) -> str:
        """The default as README and --help show it (``100``, ``1``, ``false``); "" for none."""
        if self.default is None:
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        return str(self.default)

    @property
    def help_text(self) -> str:
        """``invoices per batch (FILEDROP_BATCH_SIZE, default 100)``."""
        default = f", default {self.default_text}" if self.default_text else ""
        return f"{self.help} ({self.env}{default})"


SPECS: tuple[Spec, ...] = tuple(
    Spec(
        name=f.name,
        parse=f.metadata["parse"],
        default=f.default,
        help=f.metadata["help"],
        flag_on=f.metadata["flag_on"],
    )
    for f in fields(Settings)
    if "parse" in f.metadata
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
KNOWN_VARIABLES = (*(spec.env for spec in SPECS), *OTHER_VARIABLES)


def _parse(spec: Spec, raw: object, where: str) -> Any:
    """Parse one raw value (text from a flag or env, or a TOML value), naming ``where`` on error."""
    if spec.parse is Path and isinstance(raw, str):
        return Path(raw).expanduser()
    if isinstance(raw, bool) and spec.parse is _bool:
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{where} is {raw!r}, which is not a {spec.help} value.")
    try:
        return spec.parse(raw)
    except ValueError as exc:
        # Redacted: a connection URL may carry a password.
        raise ConfigError(f'{where} is "{redact(raw)}", which is not valid: {exc}.') from exc


def did_you_mean(name: str, known: Sequence[str], *, prefix: str = "") -> str:
    """``; did you mean X?`` for the closest known name, or "" when none is close.

    Names are compared without their shared ``prefix``, which would make everything look close.
    """
    stems = {candidate.removeprefix(prefix).lower(): candidate for candidate in known}
    close = difflib.get_close_matches(name.removeprefix(prefix).lower(), stems, n=1)
    return f"; did you mean {stems[close[0]]}?" if close else ""


def _check_variables(environ: Mapping[str, str]) -> None:
    """An unknown FILEDROP_* variable is a typo that would otherwise be silently ignored."""
    for name in sorted(environ):
        if name.startswith("FILEDROP_") and name not in KNOWN_VARIABLES:
            hint = did_you_mean(name, KNOWN_VARIABLES, prefix="FILEDROP_") or (
                "; unset it ('filedrop run --help' lists the settings)."
            )
            raise ConfigError(f"{name} is not a setting{hint}")


def load_settings(
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every setting. ``flags`` holds only options given on the command line.

    The config file is ``config_file`` (``--config``), else ``FILEDROP_CONFIG``, else none. When
    it lists inboxes (``[[inbox]]`` tables), each inbox's settings are resolved too, and
    ``--inbox`` names the one inbox to serve rather than a folder.
    """
    flags = {key: value for key, value in (flags or {}).items() if value is not None}
    environ = environ or {}
    _check_variables(environ)
    config_path = config_file or (
        Path(environ["FILEDROP_CONFIG"]) if environ.get("FILEDROP_CONFIG") else None
    )
    from_file: dict[str, Any] = {}
    tables: list[Any] | None = None
    if config_path is not None:
        from_file = _read_config(config_path)
        if isinstance(from_file.get("inbox"), list):
            tables = from_file.pop("inbox")
    chosen = flags.pop("inbox", None) if tables is not None else None
    variables = {spec.name: environ[spec.env] for spec in SPECS if environ.get(spec.env, "")}
    common: list[_Layer] = [(flags, lambda spec: spec.flag), (variables, lambda spec: spec.env)]
    if config_path is not None:
        common.append((from_file, _key_in(config_path)))
    top = _resolve(common, environ=environ)
    if tables is None:
        return top
    assert config_path is not None  # tables come from the config file
    inboxes = _inboxes(
        tables, config_path=config_path, flags=flags, rest=common[1:], environ=environ
    )
    if chosen is not None:
        inboxes = _choose(inboxes, str(chosen), config_path=config_path)
    return replace(top, inboxes=inboxes)


#: One source of settings: the values it gives (by setting name), and how a message names each.
_Layer = tuple[Mapping[str, object], Callable[[Spec], str]]


def _key_in(path: Path, *, inbox: str | None = None) -> Callable[[Spec], str]:
    """How a config key is named in messages: ``filedrop.toml: batch_size``, or within an inbox
    ``filedrop.toml: inbox "acme": batch_size`` (its folder is its ``folder`` key)."""
    if inbox is None:
        return lambda spec: f"{path}: {spec.name}"
    return lambda spec: f'{path}: inbox "{inbox}": {_TABLE_KEYS.get(spec.name, spec.name)}'


def _resolve(layers: Sequence[_Layer], *, environ: Mapping[str, str], **extra: Any) -> Settings:
    """Each setting from the first layer that gives it, parsed, else its default."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        for given, where in layers:
            if spec.name in given:
                sources[spec.name] = where(spec)
                values[spec.name] = _parse(spec, given[spec.name], sources[spec.name])
                break
    return Settings(**values, sources=sources, default_state=default_journal_path(environ), **extra)


#: The key of an inbox table that gives a setting, where it is not the setting's own name.
_TABLE_KEYS = {"inbox": "folder"}


def _inboxes(
    tables: list[Any],
    *,
    config_path: Path,
    flags: Mapping[str, object],
    rest: Sequence[_Layer],
    environ: Mapping[str, str],
) -> tuple[Settings, ...]:
    """Each ``[[inbox]]`` table's settings: a flag, then the table's own key, then what is not
    given there as the top level resolves it (environment, then top-level key, then default)."""
    if not tables:
        raise ConfigError(
            f"{config_path}: inbox is an empty list; add [[inbox]] tables, or remove it."
        )
    inboxes: list[Settings] = []
    folders: dict[Path, str] = {}
    for number, table in enumerate(tables, start=1):
        name = _inbox_name(table, number=number, config_path=config_path)
        if any(inbox.inbox_name == name for inbox in inboxes):
            raise ConfigError(
                f'{config_path}: inbox "{name}" is listed twice; give each inbox a name of its own.'
            )
        own = _table_settings(table, name=name, config_path=config_path)
        layers: list[_Layer] = [
            (flags, lambda spec: spec.flag),
            (own, _key_in(config_path, inbox=name)),
            *rest,
        ]
        inbox = _resolve(layers, environ=environ, inbox_name=name)
        if inbox.inbox is not None:
            _own_folder(inbox.inbox, name, folders, config_path=config_path)
        inboxes.append(inbox)
    return tuple(inboxes)


def in_archive_of(folder: Path, other: Path) -> bool:
    """Whether the real ``folder`` lies inside the real inbox folder ``other``'s ``archive/``,
    where that inbox keeps what it is done with (``_own_folder``, and ``watch`` while it runs)."""
    return folder.is_relative_to(other / ARCHIVE)


def _own_folder(given: Path, name: str, folders: dict[Path, str], *, config_path: Path) -> None:
    """Refuse an inbox whose folder is another's, or inside another's ``archive/``, however it
    is spelled: through a symbolic link or ``..``, two inboxes of one folder each took every
    file, and sent it to each one's organisation, writing one outcome over the other's.

    ``folders`` maps each earlier inbox's real folder to its name; this one's is added."""
    folder = Path(os.path.realpath(given))
    leads = "" if folder == given.absolute() else f" (it leads to {folder})"
    for other, other_name in folders.items():
        if folder == other:
            raise ConfigError(
                f'{config_path}: inbox "{name}": folder {given}{leads} is inbox "{other_name}"\'s'
                " folder too; give each inbox a folder of its own."
            )
        pairs = ((name, folder, other_name, other), (other_name, other, name, folder))
        for inner, inner_folder, outer, outer_folder in pairs:
            if in_archive_of(inner_folder, outer_folder):
                raise ConfigError(
                    f'{config_path}: inbox "{inner}"\'s folder is inside inbox "{outer}"\'s '
                    f'{ARCHIVE}/ folder, where "{outer}" keeps what it is done with; give each '
                    "inbox a folder of its own, outside the others' archives."
                )
    folders[folder] = name


def _inbox_name(table: object, *, number: int, config_path: Path) -> str:
    """The ``name`` of the ``number``-th ``[[inbox]]`` table, checked."""
    if not isinstance(table, dict):
        raise ConfigError(
            f"{config_path}: inbox entry {number} is not a table; list inboxes as [[inbox]] "
            "tables, each with its name and folder."
        )
    name = table.get("name")
    if name is None:
        raise ConfigError(
            f'{config_path}: inbox entry {number} has no "name"; give each inbox a name of its own.'
        )
    if not isinstance(name, str) or not _INBOX_NAME.fullmatch(name):
        shown = f'"{name}"' if isinstance(name, str) else repr(name)
        raise ConfigError(
            f"{config_path}: inbox entry {number}: name is {shown}, which is not a name; use "
            "letters, digits, '.', '_' and '-', starting with a letter or digit."
        )
    return name


def _table_settings(table: dict[str, Any], *, name: str, config_path: Path) -> dict[str, Any]:
    """The settings one ``[[inbox]]`` table gives, by setting name; a wrong key is one sentence
    naming the inbox and the key."""
    keys = {
        _TABLE_KEYS.get(spec, spec): spec for spec in SPEC_BY_NAME if spec not in SHARED_SETTINGS
    }
    given: dict[str, Any] = {}
    for key, value in table.items():
        if key == "name":
            continue
        where = f'{config_path}: inbox "{name}": key "{key}"'
        if key in SHARED_SETTINGS:
            raise ConfigError(
                f"{where} is one setting for every inbox (one journal, one log); set it at the "
                "top level of the file."
            )
        if key == "inbox":
            raise ConfigError(f'{where} is not a setting of an inbox; its folder is its "folder".')
        if key not in keys:
            hint = did_you_mean(key, [*keys, "name"]) or (
                f"; an inbox's keys are name and the settings' names: {', '.join(keys)}."
            )
            raise ConfigError(f"{where} is not a setting{hint}")
        given[keys[key]] = value
    return given


def _choose(inboxes: tuple[Settings, ...], name: str, *, config_path: Path) -> tuple[Settings]:
    """The inbox ``--inbox NAME`` names, alone."""
    for inbox in inboxes:
        if inbox.inbox_name == name:
            return (inbox,)
    names = ", ".join(inbox.name for inbox in inboxes)
    raise ConfigError(
        f'--inbox is "{name}", which names none of the inboxes in {config_path} ({names}).'
    )


class NotUtf8Error(ValueError):
    """A file people write (a config, a mapping) that is not UTF-8; the message says where."""


def read_written_text(path: Path) -> str:
    """A TOML file people write, as text. The byte order mark Notepad writes is dropped; a file
    saved in another encoding (Windows-1252 by Notepad or Excel) raises ``NotUtf8Error`` naming
    the line and the byte, which TOML, UTF-8 by definition, cannot take."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        shown = bytes([byte]).decode("cp1252", errors="replace")
        raise NotUtf8Error(
            f'is not UTF-8 text (line {line} holds the byte 0x{byte:02X}, "{shown}" in '
            "Windows-1252); save it as UTF-8"
        ) from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(read_written_text(path))
    except OSError as exc:
        raise ConfigError(f"The config file {path} cannot be read ({exc.strerror}).") from exc
    except NotUtf8Error as exc:
        raise ConfigError(f"The config file {path} {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}.") from exc
    inbox = data.get("inbox")
    if isinstance(inbox, dict):
        raise ConfigError(
            f"{path}: [inbox] is one table; list inboxes as [[inbox]] tables, or give "
            'inbox = "FOLDER".'
        )
    for key in data:
        if key not in SPEC_BY_NAME:
            hint = did_you_mean(key, list(SPEC_BY_NAME)) or (
                f"; the keys are the settings' names: {', '.join(SPEC_BY_NAME)}."
            )
            raise ConfigError(f'{path}: key "{key}" is not a setting{hint}')
    return data
