"""Human-readable views of certificates: one row per certificate, root first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from pysentry.cli.console import go_time, rfc1123


@dataclass(frozen=True, slots=True)
class CertRow:
    role: str
    subject: str
    issuer: str
    uri_sans: str
    not_before: str
    not_after: str


def uri_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.get_values_for_type(x509.UniformResourceIdentifier))


def _name(name: x509.Name) -> str:
    return name.rfc4514_string() or "<empty>"


def rows(chain_root_first: Sequence[x509.Certificate]) -> tuple[CertRow, ...]:
    """``chain_root_first`` = root, issuer(s)..., leaf."""
    out = []
    last = len(chain_root_first) - 1
    for index, cert in enumerate(chain_root_first):
        role = "root" if index == 0 else "leaf" if index == last else "issuer"
        out.append(
            CertRow(
                role=role,
                subject=_name(cert.subject),
                issuer=_name(cert.issuer),
                uri_sans=", ".join(uri_sans(cert)) or "-",
                not_before=go_time(cert.not_valid_before_utc),
                not_after=go_time(cert.not_valid_after_utc),
            )
        )
    return tuple(out)


def render(chain_root_first: Sequence[x509.Certificate], indent: str = "  ") -> str:
    """Plain text, stable for tests and logs: one block per certificate."""
    lines = []
    for row in rows(chain_root_first):
        lines.append(f"{indent}[{row.role}]")
        lines.append(f"{indent}  subject:   {row.subject}")
        lines.append(f"{indent}  issuer:    {row.issuer}")
        lines.append(f"{indent}  URI SAN:   {row.uri_sans}")
        lines.append(f"{indent}  NotBefore: {row.not_before}")
        lines.append(f"{indent}  NotAfter:  {row.not_after}")
    return "\n".join(lines)


def describe_root(root: x509.Certificate, verb: str) -> str:
    """``root O=cluster.local (serial 1f…, <verb> Mon, 22 Nov 2027 19:05:29 UTC)``."""
    return (
        f"root {_name(root.subject)} (serial {root.serial_number:x}, {verb} "
        f"{rfc1123(root.not_valid_after_utc)})"
    )
