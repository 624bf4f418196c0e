"""Dapr's multi-app run template (``dapr.yaml``, ``pkg/runfileconfig``), read into run flags.

``version`` is required; ``common`` holds the shared settings (config, protocol, log level, env,
log destinations …), each entry of ``apps`` its ``appDirPath`` (required, relative to the
template), ``appID`` (default: the directory's name), ports, ``command`` and its own shared
settings, which win over ``common``'s. ``configFilePath`` is relative to the app directory;
without one, ``<appDirPath>/.dapr/config.yaml`` is used when it exists, then ``common``'s, then
``$HOME/.dapr/config.yaml``. Keys pysentry does not know are named in one warning.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pysentry.cli.console import CliError
from pysentry.cli.runflags import FLAGS, RunArgs, Value, convert

TEMPLATE_NAME = "dapr.yaml"
DESTINATIONS = ("console", "file", "fileAndConsole")
#: Keys of Dapr's ``SharedRunConfig``: allowed in ``common`` and in each app.
SHARED = frozenset(
    {"configFilePath", "appProtocol", "apiListenAddresses", "enableProfiling", "logLevel",
     "appMaxConcurrency", "placementHostAddress", "resourcesPath", "resourcesPaths", "appSSL",
     "maxBodySize", "readBufferSize", "enableAppHealthCheck", "appHealthCheckPath",
     "appHealthProbeInterval", "appHealthProbeTimeout", "appHealthThreshold", "enableApiLogging",
     "runtimePath", "env", "daprdLogDestination", "appLogDestination", "schedulerHostAddress"}
)  # fmt: skip
#: Kubernetes-only keys of an app (``dapr run -f -k``): accepted, unused.
_K8S_KEYS = frozenset({"containerImage", "containerImagePullPolicy", "createService"})
_BY_YAML = {f.yaml: f for f in FLAGS if f.yaml}
_APP_KEYS = frozenset(_BY_YAML) | SHARED | _K8S_KEYS | {"appDirPath", "command"}


@dataclass(frozen=True, slots=True)
class AppSpec:
    args: RunArgs
    app_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    daprd_log: str = "file"
    app_log: str = "fileAndConsole"

    @property
    def app_id(self) -> str:
        return self.args.str_("app-id")


@dataclass(frozen=True, slots=True)
class Template:
    path: Path
    name: str
    apps: tuple[AppSpec, ...]
    unknown_keys: tuple[str, ...] = ()


def run_file_path(path: str) -> Path:
    """Dapr's ``getRunFilePath``: a YAML file, or a directory holding ``dapr.yaml``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(
            f"Failed to get run file path: error getting file info for {path}: no such "
            "file or directory"
        )
    if p.is_dir():
        if not (p / TEMPLATE_NAME).is_file():
            raise CliError(f"Failed to get run file path: {TEMPLATE_NAME} not found in {str(p)!r}")
        return p / TEMPLATE_NAME
    if p.suffix not in (".yaml", ".yml"):
        raise CliError(f"Failed to get run file path: file {path!r} is not a YAML file")
    return p


def _env(value: object, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CliError(f"run template {where}.env: must be a map of names to values")
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}


def _value(key: str, raw: object, where: str) -> Value:
    flag = _BY_YAML[key]
    label = f"run template {where}.{key}"
    if flag.kind == "list":
        items = raw if isinstance(raw, list) else [raw]
        return [str(x) for x in items if x not in (None, "")]
    if isinstance(raw, bool):
        raw = "true" if raw else "false"
    return convert(flag, str(raw), label)


def _resolve(base: Path, raw: str, what: str) -> str:
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.exists():
        raise CliError(f"run template {what}: {str(path)!r} does not exist")
    return str(path.resolve())


def _apply(
    args: RunArgs, section: dict[str, object], keys: frozenset[str], base: Path, where: str
) -> None:
    for key, raw in section.items():
        if key not in keys or key not in _BY_YAML or raw is None:
            continue
        flag = _BY_YAML[key]
        value = _value(key, raw, where)
        if key == "configFilePath" and isinstance(value, str) and value:
            value = _resolve(base, value, f"{where}.{key}")
        if key == "resourcesPaths" and isinstance(value, list):
            value = [_resolve(base, v, f"{where}.{key}") for v in value]
        args.values[flag.name] = value
        if flag.name not in args.given:
            args.given.append(flag.name)
    single = section.get("resourcesPath")
    if "resourcesPath" in keys and isinstance(single, str) and single:
        current = args.list_("resources-path")
        args.values["resources-path"] = [*current, _resolve(base, single, where)]
        if "resources-path" not in args.given:
            args.given.append("resources-path")


def _destination(value: object, default: str) -> str:
    if value in (None, ""):
        return default
    if value not in DESTINATIONS:
        raise CliError(f"invalid log destination type: {value}")
    return str(value)


def load_template(path: Path, home_config: Path) -> Template:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        doc = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as err:
        raise CliError(f"error in parsing the provided app config file: {err}") from err
    if not isinstance(doc, dict):
        raise CliError("error in parsing the provided app config file: not a YAML map")
    if not doc.get("version"):
        raise CliError("required field 'version' not found in the provided run template file")
    base = Path.cwd() if str(path) == "-" else path.absolute().parent
    common = doc.get("common") or {}
    apps = doc.get("apps") or []
    if not isinstance(common, dict) or not isinstance(apps, list):
        raise CliError("run template: 'common' must be a map and 'apps' a list")
    unknown = [f"common.{k}" for k in common if k not in SHARED]
    specs = []
    for index, app in enumerate(apps):
        where = f"apps[{index}]"
        if not isinstance(app, dict):
            raise CliError(f"run template {where}: must be a map")
        unknown += [f"{where}.{k}" for k in app if k not in _APP_KEYS]
        if not app.get("appDirPath"):
            raise CliError("required field 'appDirPath' not found in the provided app config file")
        app_dir = Path(_resolve(base, str(app["appDirPath"]), f"{where}.appDirPath"))
        args = RunArgs()
        _apply(args, common, SHARED, base, "common")
        _apply(args, app, _APP_KEYS, app_dir, where)
        if "configFilePath" not in app:
            local = app_dir / ".dapr" / "config.yaml"
            if local.is_file():
                args.values["config"] = str(local)
            elif not args.str_("config") and home_config.is_file():
                args.values["config"] = str(home_config)
        if not args.str_("app-id"):
            args.values["app-id"] = app_dir.name
        command = app.get("command") or []
        if not isinstance(command, list):
            raise CliError(f"run template {where}.command: must be a list, e.g. [python3, app.py]")
        args.command = [str(c) for c in command]
        env = _env(common.get("env"), "common") | _env(app.get("env"), where)
        specs.append(
            AppSpec(
                args,
                app_dir,
                env,
                _destination(
                    app.get("daprdLogDestination", common.get("daprdLogDestination")), "file"
                ),
                _destination(
                    app.get("appLogDestination", common.get("appLogDestination")), "fileAndConsole"
                ),
            )
        )
    return Template(path, str(doc.get("name") or ""), tuple(specs), tuple(unknown))
