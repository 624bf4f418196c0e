"""An app-id for ``dapr run`` without ``--app-id``: two random words, as Dapr's CLI makes them.

Dapr lower-cases a "silly name" (adjective + noun) and joins the words with ``-``, e.g.
``brave-otter``, picking again while the name is in use by a running sidecar.
"""

from __future__ import annotations

import secrets
from collections.abc import Container

ADJECTIVES = (
    "amber", "bold", "brave", "breezy", "bright", "calm", "clever", "cosmic", "crimson", "daring",
    "dusty", "eager", "fancy", "fuzzy", "gentle", "giant", "golden", "happy", "hidden", "icy",
    "jolly", "keen", "lively", "lucky", "lunar", "mellow", "misty", "noble", "polar", "proud",
    "quick", "quiet", "rapid", "rusty", "shiny", "silent", "silver", "snowy", "solar", "sunny",
    "swift", "tidy", "velvet", "vivid", "wild", "witty", "zesty",
)  # fmt: skip
NOUNS = (
    "badger", "beacon", "bison", "canyon", "comet", "condor", "coyote", "crane", "falcon",
    "ferret", "fjord", "gecko", "glacier", "harbor", "heron", "ibex", "jaguar", "kestrel", "koala",
    "lagoon", "lemur", "lynx", "marmot", "meadow", "meteor", "moose", "nebula", "ocelot", "orca",
    "otter", "panda", "pelican", "pebble", "puffin", "quasar", "raven", "reef", "salmon", "sparrow",
    "summit", "tapir", "thistle", "tundra", "walrus", "willow", "yak", "zebra",
)  # fmt: skip
MAX_TRIES = 1000


def generate_app_id(in_use: Container[str] = ()) -> str:
    """``<adjective>-<noun>`` not in ``in_use`` (a number is added if the words run out)."""
    for attempt in range(MAX_TRIES):
        name = f"{secrets.choice(ADJECTIVES)}-{secrets.choice(NOUNS)}"
        if attempt > MAX_TRIES // 2:
            name += f"-{secrets.randbelow(10_000)}"
        if name not in in_use:
            return name
    raise RuntimeError("no free app-id found")  # 2209 names, then numbered ones: unreachable
