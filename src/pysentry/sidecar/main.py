"""The ``daprd`` entry point: parse the flags, configure the logs, get the first identity, then
:func:`pysentry.sidecar.runtime.run` on the event loop until SIGTERM/SIGINT."""

from __future__ import annotations

# isort: off
from pysentry.sidecar import earlygc  # noqa: F401  first: the collector is off during the imports
# isort: on

import gc
import logging
import sys
from collections.abc import Callable, Sequence

from pysentry import __version__, logs
from pysentry.errors import ConfigError, PysentryError
from pysentry.procname import set_process_name
from pysentry.sidecar.options import parse_options
from pysentry.sidecar.ports import StartupError
from pysentry.sidecar.prelude import early_start, identity_first
from pysentry.sidecar.scopes import RUNTIME, SCOPES

# Only what the first certificate needs is imported up front (issue 13, lever 5): with
# --enable-mtls and --sentry-address it is requested before asyncio is imported (prelude.py);
# the servers, the app channel, the Configuration (pydantic) and name resolution after it
# (runtime.py).

log = logging.getLogger("pysentry.sidecar")

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    gc.disable()  # start-up allocates only what lives on; settle_gc() turns it back on
    set_process_name("daprd")
    try:
        opts = parse_options(argv)
        if opts.print_version:
            print(__version__)
            return
        logs.configure(
            opts.log_level, opts.log_as_json, scope=RUNTIME, app_id=opts.app_id, scopes=SCOPES
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    try:
        early = early_start(opts) if identity_first(opts) else None
        import asyncio

        from pysentry.sidecar.runtime import run

        try:
            import uvloop

            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        except ImportError:  # pragma: no cover
            factory = asyncio.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(run(opts, early))
    except (StartupError, ConfigError, PysentryError) as err:
        log.critical("Fatal error from runtime: %s", err)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
    except Exception as err:  # a long-lived task failed: log it once, exit 1
        first = err.exceptions[0] if isinstance(err, BaseExceptionGroup) else err
        log.critical("Fatal error from runtime: %s", first, exc_info=first)
        print(f"error: {first}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
