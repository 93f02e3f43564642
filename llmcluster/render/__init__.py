"""Renderers: plan objects -> text artifacts (jinja2 templates under ``templates/``).

Templates receive plan objects (never raw config). :func:`template_environment` gives
every renderer the same strict settings: undefined names are errors, blocks do not leave
blank lines behind, and files end with a newline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).parent / "templates"


def template_environment(filters: Mapping[str, Callable[..., Any]] | None = None,
                         directory: Path = TEMPLATE_DIR) -> jinja2.Environment:
    """A jinja2 environment over ``directory`` (default :data:`TEMPLATE_DIR`) with ``filters`` registered."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(filters or {})
    return env
