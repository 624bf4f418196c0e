"""Sentry's CA credentials at start: load them from the store, or generate and save a CA.

The store itself (files, crash-atomic generation, the change stream) is
:mod:`pysentry.credentials`; this module adds Dapr's log lines and names Sentry's flags in
errors about the location.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cryptography import x509

from pysentry.clock import system_clock
from pysentry.credentials import (
    CredentialPaths,
    CredentialStore,
    FileStore,
    IncompleteCredentials,
    StoredCredentials,
    StoreLocationError,
    StoreState,
)
from pysentry.pki.bundle import CaBundle
from pysentry.sentry.ca import CaSettings
from pysentry.sentry.options import SentryOptions

log = logging.getLogger(__name__)


def file_store(options: SentryOptions) -> FileStore:
    return FileStore(
        CredentialPaths(options.ca_path, options.issuer_cert_path, options.issuer_key_path)
    )


def _flag_for(options: SentryOptions, blocker: Path) -> str:
    """The flag whose value leads through ``blocker`` (a path that should be a directory)."""
    for flag, name in (
        ("--issuer-ca-filename", options.issuer_ca_filename),
        ("--issuer-certificate-filename", options.issuer_certificate_filename),
        ("--issuer-key-filename", options.issuer_key_filename),
    ):
        path = Path(name)
        if path.is_absolute() and (blocker == path.parent or blocker in path.parents):
            return f"{flag} {name!r}"
    return f"--issuer-credentials {str(options.issuer_credentials)!r}"


def location_error(options: SentryOptions, err: StoreLocationError) -> StoreLocationError:
    """``err`` reworded for Sentry's command line: the flag, what is wrong, and the fix."""
    flag = _flag_for(options, err.blocker)
    if flag.startswith("--issuer-credentials"):
        names = f"{options.ca_path.name}, {options.issuer_cert_path.name} and "
        fix = f"pass a directory that holds (or may hold) {names}{options.issuer_key_path.name}"
    else:
        fix = "pass a file path whose directory exists (or may be created)"
    return StoreLocationError(
        f"{flag}: {str(err.blocker)!r} is a file, not a directory; {fix}, or move the file out "
        "of the way",
        blocker=err.blocker,
    )


def _previous_roots(store: CredentialStore, bundle: CaBundle) -> tuple[x509.Certificate, ...]:
    if not isinstance(store, FileStore):
        return ()
    return tuple(r for r in store.history.recall(system_clock()) if r not in bundle.trust_anchors)


def load_or_generate(
    store: CredentialStore, options: SentryOptions, settings: CaSettings
) -> StoredCredentials:
    """The bundle to start with, and the store version it corresponds to (taken before loading,
    so a change racing with the load is seen again by the watcher). Blocking: run in a thread."""
    try:
        for note in store.prepare():
            log.warning("Issuer credentials: %s", note)
        state = store.state()
        if state is StoreState.COMPLETE:
            log.info("Root and issuer certs found: using credentials from store")
            return store.load(now=system_clock())
        if state is StoreState.PARTIAL:
            store.load(now=system_clock())  # raises, naming what is missing
            raise IncompleteCredentials(f"incomplete issuer credentials in {store.location}")
        log.info("Root and issuer certs not found: generating self signed CA")
        bundle = CaBundle.generate(
            settings.trust_domain,
            options.namespace,
            now=system_clock(),
            algorithm=options.ca_key_algorithm,
            skew=settings.clock_skew,
        )
        previous = _previous_roots(store, bundle)
        if previous:
            bundle = dataclasses.replace(bundle, trust_anchors=(*bundle.trust_anchors, *previous))
            log.warning(
                "Kept %d previous root certificate(s) in ca.crt, so sidecars that still hold a "
                "certificate from the old CA are trusted until they renew; once every sidecar "
                "has a certificate from the new CA, run 'dapr mtls drop-old-roots' (right away "
                "if the old root key was compromised)",
                len(previous),
            )
        log.info("Generating self-signed CA certs and persisting to store")
        store.save(bundle)
        if isinstance(store, FileStore):
            store.history.remember(bundle.trust_anchors)
        log.info("Self-signed certs and JWT root key generated and persisted successfully")
        return StoredCredentials(bundle, store.version())
    except StoreLocationError as err:
        raise location_error(options, err) from err
