"""The workload identity a process holds: an X.509-SVID chain and its private key.

``X509Svid.from_chain(chain, key)`` reads the SPIFFE ID from the leaf and checks that the key
belongs to the leaf. ``renewal_at()`` is Dapr's: NotBefore + 50% of (NotAfter - NotBefore).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from pysentry.errors import PeerRejected
from pysentry.pki.keys import PrivateKey, dump_private_key, same_public_key
from pysentry.pki.pem import dump_certificates
from pysentry.pki.svid import id_from_cert
from pysentry.spiffe import SpiffeId

RENEWAL_FRACTION = 0.5


@dataclass(frozen=True, slots=True, eq=False)
class X509Svid:
    """A SPIFFE X.509 identity: ``chain`` is ``(leaf, issuer, ...)``, never the root."""

    spiffe_id: SpiffeId
    chain: tuple[x509.Certificate, ...]
    private_key: PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("X509Svid: empty certificate chain")
        if not same_public_key(self.chain[0].public_key(), self.private_key.public_key()):
            raise ValueError("X509Svid: the private key does not match the leaf certificate")

    @classmethod
    def from_chain(cls, chain: tuple[x509.Certificate, ...], key: PrivateKey) -> X509Svid:
        """The SVID for ``chain`` (leaf first) and ``key``; the ID comes from the leaf's URI SAN."""
        if not chain:
            raise PeerRejected("x509svid: empty certificates chain")
        return cls(id_from_cert(chain[0]), tuple(chain), key)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    @property
    def serial(self) -> str:
        """The leaf's serial number in hex, as ``openssl x509 -serial`` prints it (no colons)."""
        return f"{self.leaf.serial_number:X}"

    def renewal_at(self) -> datetime:
        """When to renew: NotBefore + 50% of the (backdated) validity window."""
        return self.not_before + self.lifetime * RENEWAL_FRACTION

    def expired(self, now: datetime) -> bool:
        return now > self.not_after

    def chain_pem(self) -> bytes:
        return dump_certificates(self.chain)

    def key_pem(self) -> bytes:
        """PKCS#8 PEM of the private key. Never log it."""
        return dump_private_key(self.private_key)
