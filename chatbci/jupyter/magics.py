"""IPython magics: ``%load_ext chatbci``, then ``%chatbci`` and ``%%chat``.

- ``%chatbci open PATH [--create] [--offline] [--human NAME] [--n-jobs N]``: show
  a chat panel on the workspace in PATH (it becomes the current panel);
  ``--create`` makes a new workspace there if there is none;
- ``%%chat [--no-wait]``: send the cell's text to the current panel; the
  exchange is also shown under the cell. The cell waits for the answer (in a
  notebook a cell is a step: "Run All" must not run the next cell before
  this one's answer exists); ``--no-wait`` returns at once, like the panel's
  own text box;
- ``%chatbci export FORMAT [--curated] [--out DIR]``: export the session
  (md, html, tex, json, ipynb or all);
- ``%chatbci autonomy suggest|assist|auto``, ``%chatbci stop``,
  ``%chatbci status``, ``%chatbci help``.
"""

from __future__ import annotations

import argparse
import shlex

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

USAGE = """%chatbci open PATH [--create] [--offline] [--human NAME] [--n-jobs N]
                                                  show a chat panel (--create: a new workspace)
%%chat [--no-wait]                                send the cell; waits for the answer
%chatbci export FORMAT [--curated] [--out DIR]    md, html, tex, json, ipynb or all
%chatbci autonomy suggest|assist|auto             change the autonomy level
%chatbci stop                                     stop the running benchmark
%chatbci status                                   the current panel's workspace and state"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{message}\n{USAGE}")


def _panel():
    from .panel import current_panel

    panel = current_panel()
    if panel is None:
        raise UsageError("no chat panel is open: run `%chatbci open PATH` (or "
                         "`chatbci.chat(PATH)`) first.")
    return panel


@magics_class
class ChatMagics(Magics):
    """``%chatbci`` and ``%%chat``."""

    @line_magic("chatbci")
    def chatbci(self, line):
        try:
            words = shlex.split(line)
        except ValueError as err:
            raise UsageError(f"cannot read {line!r}: {err}") from None
        if not words or words[0] in ("help", "-h", "--help"):
            print(USAGE)
            return None
        command, rest = words[0], words[1:]
        if command == "open":
            p = _Parser(prog="%chatbci open", add_help=False)
            p.add_argument("path")
            p.add_argument("--offline", action="store_true")
            p.add_argument("--human", default="researcher")
            p.add_argument("--n-jobs", type=int, default=-1)
            p.add_argument("--create", action="store_true")
            args = p.parse_args(rest)
            from .panel import chat

            try:
                chat(args.path, "offline" if args.offline else None, human=args.human,
                     n_jobs=args.n_jobs, create=args.create)
            except Exception as err:  # noqa: BLE001 - WorkspaceNotFoundError & co.
                raise UsageError(str(err)) from None
            return None
        if command == "export":
            p = _Parser(prog="%chatbci export", add_help=False)
            p.add_argument("format", nargs="?", default="md")
            p.add_argument("--curated", action="store_true")
            p.add_argument("--out", default=None)
            args = p.parse_args(rest)
            panel = _panel()
            try:
                import chatbci.export  # noqa: F401
            except ImportError as err:
                raise UsageError(f"exports are not available in this installation ({err}); "
                                 "update chatbci.") from None
            kwargs = {"curated": args.curated}
            if args.out:
                kwargs["out"] = args.out
            try:
                paths = panel.export(args.format, wait=True, **kwargs)
            except RuntimeError as err:
                raise UsageError(str(err)) from None
            for path in paths or []:
                print(path)
            return None
        if command == "autonomy":
            if len(rest) != 1 or rest[0] not in ("suggest", "assist", "auto"):
                raise UsageError("usage: %chatbci autonomy suggest|assist|auto")
            _panel().set_autonomy(rest[0])
            return None
        if command == "stop":
            _panel().stop()
            return None
        if command == "status":
            panel = _panel()
            print(f"{panel.workspace.config.title} ({panel.workspace.path}); "
                  f"model {panel.session.backend.model}; autonomy {panel.session.autonomy}; "
                  f"{'busy' if panel.busy else 'idle'}; "
                  f"{sum(c.state == 'pending' for c in panel.cards.values())} pending "
                  "suggestion(s)")
            return None
        raise UsageError(f"unknown command {command!r}.\n{USAGE}")

    @cell_magic("chat")
    def chat(self, line, cell):
        import ipywidgets as widgets
        from IPython.display import display

        p = _Parser(prog="%%chat", add_help=False)
        p.add_argument("--no-wait", dest="wait", action="store_false")
        # Waiting is the default; --wait is still accepted (it was the way to wait).
        p.add_argument("--wait", dest="wait", action="store_true")
        p.add_argument("--timeout", type=float, default=None)
        args = p.parse_args(shlex.split(line))
        text = cell.strip()
        if not text:
            raise UsageError("%%chat needs a message in the cell.")
        panel = _panel()
        from .render import CSS

        mirror = widgets.VBox([widgets.HTML(f"<style>{CSS}</style>")],
                              layout=widgets.Layout(width="100%"))
        mirror.add_class("chatbci-panel")
        mirror.add_class("chatbci-mirror")
        display(mirror)
        try:
            panel.send(text, wait=args.wait, timeout=args.timeout, mirror=mirror)
        except TimeoutError as err:
            raise UsageError(f"{err} It goes on in the panel; %chatbci stop ends it.") from None
        except KeyboardInterrupt:
            # Kernel -> Interrupt while the cell waits: the human wants the work to end.
            panel.stop()
            raise
        return None


def load_ipython_extension(ipython):
    """Register ``%chatbci`` and ``%%chat``."""
    ipython.register_magics(ChatMagics)


def unload_ipython_extension(ipython):  # pragma: no cover - nothing to undo
    pass
