"""Rendering templates/boot/ and templates/answers/ with Jinja2, pure: context in, text out.

- StrictUndefined: a misspelt variable is an error, never an empty string in a preseed.
- autoescape off: iPXE scripts, preseeds, kickstarts and shell are not HTML; values are made safe
  for their format by validation upstream (host names, MACs, tokens have fixed alphabets) and by
  the `shquote` filter where a template puts a value into shell.
- No sandbox: templates and profile data are the site admin's files; nothing a client sends is
  ever rendered as a template (a MAC or host name is only ever a value).

Every failure is a RenderError naming profile, template and line ("profile lab-test: template
boot/install.ipxe.j2 line 3: 'kernel_url' is undefined").
"""

from __future__ import annotations

import base64
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2

from bootsrv.errors import BootsrvError


class RenderError(BootsrvError):
    exit_code = 2
    http_status = 500

    def __init__(self, profile: str, template: str, line: int | None, rule: str):
        self.profile, self.template, self.line, self.rule = profile, template, line, rule
        where = f"template {template}" + (f" line {line}" if line else "")
        super().__init__(f"profile {profile}: {where}: {rule}")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _grub_url(url: str) -> str:
    """GRUB's network path for an http URL: http://host:port/path -> (http,host:port)/path
    (GRUB's http module has no https; the catalog only allows http(s) URLs, so say it)."""
    scheme, sep, rest = url.partition("://")
    if scheme != "http" or not sep:
        raise ValueError(f"GRUB loads files over http only, not {url!r}")
    host, _, path = rest.partition("/")
    return f"({scheme},{host})/{path}"


def _grub_quote(arg: str) -> str:
    # Single quotes keep GRUB's parser from globbing '?' or expanding '$' (a token URL has '?').
    return "'" + str(arg).replace("'", "'\\''") + "'"


def _url_host(url: str) -> str:
    return urlsplit(url).netloc


def _url_path(url: str) -> str:
    return urlsplit(url).path or "/"


def environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = lambda v: shlex.quote(str(v))
    env.filters["b64"] = _b64
    env.filters["grub_url"] = _grub_url
    env.filters["grub_quote"] = _grub_quote
    env.filters["url_host"] = _url_host  # d-i wants a mirror as hostname + directory
    env.filters["url_path"] = _url_path
    return env


def _template_line(exc: BaseException, templates_dir: Path) -> tuple[str | None, int | None]:
    """The innermost template frame of a render-time traceback: Jinja rewrites tracebacks so
    that template frames carry the template's file name and line."""
    found: tuple[str | None, int | None] = (None, None)
    root = str(templates_dir.resolve())
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(root) or filename == "<template>":
            name = filename[len(root) + 1 :] if filename.startswith(root) else "<string>"
            found = (name, tb.tb_lineno)
        tb = tb.tb_next
    return found


class Renderer:
    def __init__(self, templates_dir: Path):
        self.templates_dir = Path(templates_dir)
        self.env = environment(self.templates_dir)
        self._strings: dict[str, jinja2.Template] = {}

    def render(self, profile: str, template: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(template).render(context)
        except jinja2.TemplateNotFound as exc:
            # Missing itself, or named by an {% include %}/{% extends %} at a line of another.
            name, line = _template_line(exc, self.templates_dir)
            rule = f"template {exc.name!r} not found in {self.templates_dir}"
            raise RenderError(profile, name or template, line, rule) from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(profile, exc.name or template, exc.lineno, f"syntax error: {exc.message}") from None
        except RenderError:
            raise
        except Exception as exc:  # UndefinedError, a filter's TypeError, an included template's error
            name, line = _template_line(exc, self.templates_dir)
            message = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise RenderError(profile, name or template, line, message) from None

    def render_string(self, profile: str, where: str, source: str, context: dict[str, Any]) -> str:
        """A one-line template from profile data (e.g. boot.args[2]); `where` names the key."""
        try:
            # Compiled once per distinct source: compiling costs ~7 ms, rendering ~0.1 ms.
            compiled = self._strings.get(source)
            if compiled is None:
                compiled = self._strings[source] = self.env.from_string(source)
            return compiled.render(context)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(profile, where, None, f"syntax error: {exc.message}") from None
        except Exception as exc:
            message = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
            raise RenderError(profile, where, None, message) from None

    def check(self, profile: str, template: str) -> None:
        """Parse `template` (and what it includes when rendered) for syntax errors now."""
        try:
            self.env.get_template(template)
        except jinja2.TemplateNotFound:
            raise RenderError(
                profile, template, None, f"template {template!r} not found in {self.templates_dir}"
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(profile, exc.name or template, exc.lineno, f"syntax error: {exc.message}") from None
