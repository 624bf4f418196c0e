"""What the commands need from a Dapr ``Configuration`` file: mTLS on/off, cert TTL and skew."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pysentry.errors import ConfigError
from pysentry.pki.profiles import DEFAULT_CLOCK_SKEW, DEFAULT_WORKLOAD_TTL


@dataclass(frozen=True, slots=True)
class MtlsSettings:
    """``spec.mtls`` of a configuration file, with Sentry's defaults filled in."""

    enabled: bool
    workload_cert_ttl: timedelta
    allowed_clock_skew: timedelta
    sentry_address: str


DEFAULTS = MtlsSettings(False, DEFAULT_WORKLOAD_TTL, DEFAULT_CLOCK_SKEW, "")


def read_mtls(path: Path, *, required: bool) -> MtlsSettings:
    """Load ``path``; a missing file gives the defaults unless ``required`` (then ConfigError)."""
    if not path.exists():
        if required:
            raise ConfigError(f"configuration file {str(path)!r} not found")
        return DEFAULTS
    from pysentry.config.configuration import load_configuration  # pydantic: ~0.5 s, load lazily

    mtls = load_configuration(path).spec.mtls
    return MtlsSettings(
        enabled=mtls.enabled,
        workload_cert_ttl=mtls.workload_cert_ttl,
        allowed_clock_skew=mtls.allowed_clock_skew,
        sentry_address=mtls.sentry_address or "",
    )


def name_resolution_metadata(path: Path) -> dict[str, object]:
    """``spec.nameResolution.configuration`` when the component is ``sqlite`` (else {})."""
    if not path.exists():
        return {}
    from pysentry.config.configuration import load_configuration

    spec = load_configuration(path).spec.name_resolution
    if spec is None or spec.component not in ("", "sqlite"):
        return {}
    return dict(spec.configuration)
