"""The *environment* of the processes mlgen starts: the user's, without the secrets it knows.

mlgen needs the Anthropic API key in one place, the SDK client of the LLM planner. Nothing it
starts needs the key: not git (its own calls or Copier's), pip, nor the service's tests and
training, which run code mlgen did not write. The command line calls
:func:`take_api_key` before anything else runs, so the key leaves this process's environment
before any child can inherit it; every ``subprocess`` call in mlgen passes :func:`child_env`, so
a program that uses mlgen as a library and keeps the key in its environment leaks it to no
child either.

"Before anything else runs" includes imports: ``mlgen.cli`` must not import Copier at module
level, because importing it starts a process (plumbum runs ``uname -p``) with the environment
as it is. ``render`` and ``update`` import Copier inside the functions that use it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

API_KEY = "ANTHROPIC_API_KEY"
# The credentials the anthropic SDK reads from the environment, named one by one rather than
# guessed from a pattern: PATH, HOME, proxies, pip's index settings and git's own variables must
# reach git and pip unchanged. Given ``api_key=``, the SDK consults none of these.
SECRET_VARIABLES = frozenset(
    {API_KEY, "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_IDENTITY_TOKEN", "ANTHROPIC_WEBHOOK_SIGNING_KEY"}
)


def child_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without :data:`SECRET_VARIABLES`, then ``overrides``."""
    env = {name: value for name, value in os.environ.items() if name not in SECRET_VARIABLES}
    return {**env, **(overrides or {})}


def take_api_key() -> str | None:
    """The API key (None when unset), after removing every secret from this process's environment.

    Copier runs git through plumbum, whose ``local.env`` is the copy of ``os.environ`` taken when
    plumbum was imported: the secrets are removed there too. (Imported later, plumbum copies the
    environment already cleaned.)
    """
    key = os.environ.get(API_KEY) or None
    for name in SECRET_VARIABLES:
        os.environ.pop(name, None)
    if "plumbum" in sys.modules:
        from plumbum import local

        for name in SECRET_VARIABLES:
            local.env.pop(name, None)
    return key
