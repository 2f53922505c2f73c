"""The *template*: the packaged ``copier.yml``, ``template/``, ``prompts/`` and ``runtime/``.

Every service is rendered from it: the template store (store.py) snapshots it, rendering
(render.py) runs Copier on that snapshot, and the LLM planner reads its prompts (prompt.py).
"""

from __future__ import annotations

from pathlib import Path

from mlgen.errors import RenderError


def template_root() -> Path:
    """The folder holding ``copier.yml`` and ``template/``.

    In an installed wheel it is ``mlgen/_template/`` (force-included at build time); in a
    checkout it is the repository root, two levels above this package.
    """
    here = Path(__file__).resolve().parent
    for root in (here / "_template", here.parents[1]):
        if (root / "copier.yml").is_file() and (root / "template").is_dir():
            return root
    raise RenderError(
        f"mlgen's template is missing: neither {here / '_template'} nor {here.parents[1]} holds "
        "copier.yml and template/. Reinstall mlgen (pip install --force-reinstall mlgen)."
    )
