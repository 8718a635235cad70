"""The Jinja2 setup of the templates libhub ships: ``templates/email/`` (digests, notices,
personal messages) and ``templates/web/`` (subscription pages, the staff dashboard), package
data of ``network`` loaded through importlib.resources, so an installed wheel finds them.

`environment()` is the one Environment for them all: ``*.html.j2`` is autoescaped and
``*.txt.j2`` is not; an undefined name is an error, not an empty string; block tags leave no
blank lines; and the filters the templates share (``wrap``) are registered here. Names are
relative to the templates folder (``"web/manage.html.j2"``). A folder with the same layout
may replace the shipped one (``templates_dir``). Route templates written by coordinators
in the config are another matter: they run sandboxed (network/route_templates.py).
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import jinja2

from network.errors import ConfigError

PACKAGE = "network"
FOLDER = "templates"


def wrap(text: str, width: int = 72, indent: str = "") -> str:
    """Every line of ``text`` wrapped at ``width`` and indented; blank lines stay blank.
    Long words and hyphens are never broken: a link cut in two no longer works."""
    lines: list[str] = []
    for paragraph in str(text).split("\n"):
        wrapped = textwrap.wrap(
            paragraph,
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines.extend(wrapped or [""])
    return "\n".join(lines)


def gettext(message: str) -> str:
    """``message`` in the reader's language: marks a string for translation (identity for
    now; the catalogs replace it)."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


@functools.lru_cache(maxsize=8)
def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The Environment of the shipped templates, or of ``templates_dir`` when given."""
    loader: jinja2.BaseLoader
    if templates_dir is None:
        loader = jinja2.PackageLoader(PACKAGE, FOLDER)
    else:
        if not templates_dir.is_dir():
            raise ConfigError(f"templates not found: {templates_dir} is not a folder")
        loader = jinja2.FileSystemLoader(str(templates_dir))
    env = jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2"), default_for_string=True, default=False
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["wrap"] = wrap
    # Strings a person reads are marked ({% trans %}, _("...")) for the translation
    # catalogs; until a catalog is installed they are shown as written.
    env.add_extension("jinja2.ext.i18n")
    env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)
    return env
