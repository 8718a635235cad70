"""The Jinja2 setup of the templates libhub ships: ``templates/email/`` (digests, notices,
personal messages) and ``templates/web/`` (subscription pages, the staff dashboard), package
data of ``network`` loaded through importlib.resources, so an installed wheel finds them.

`environment()` is the one Environment for them all: ``*.html.j2`` is autoescaped and
``*.txt.j2`` is not; an undefined name is an error, not an empty string; block tags leave no
blank lines; the filters the templates share (``wrap``) are registered here; and the i18n
extension translates text marked with ``_()`` or ``{% trans %}`` into the language in use. Names are
relative to the templates folder (``"web/manage.html.j2"``). A folder with the same layout
may replace the shipped one (``templates_dir``). Route templates written by coordinators
in the config are another matter: they run sandboxed (network/route_templates.py).
"""

from __future__ import annotations

import functools
import textwrap
from pathlib import Path

import jinja2

from network import i18n
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
    # Translated text: ``_("...")`` and ``{% trans %}`` read the language in use
    # (network/i18n.py), so one Environment serves every language. New-style gettext
    # escapes what it is given and formats ``%(name)s`` itself; trimmed blocks let a long
    # sentence span lines in the template and still be one message in the catalog.
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=i18n.gettext, ngettext=i18n.ngettext, newstyle=True
    )
    env.policies["ext.i18n.trimmed"] = True
    env.globals["lang"] = i18n.current
    return env
