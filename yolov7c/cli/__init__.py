"""`yolov7c` command line: one argparse sub-command per verb, each a thin call into the API.

Command groups live in sibling modules (``core``, ``passes``, ``scale``, ``backends``,
``report``, ``detect``, ``train``); each exposes ``register(subparsers)`` that adds its
verbs with a ``func`` default. Every verb prints a human table by default and exactly one
JSON object on stdout with ``--json``. Progress goes to stderr through ``logging``; what
third-party libraries print (TVM, torch warnings, C++ logs) goes to a log file, or to stderr
with ``--verbose``. A library ``UserError`` prints one line — its argument name shown as the
verb's flag (``img`` → ``--img``) — and exits 2, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import io
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from ..errors import UserError

COMMAND_MODULES = ("core", "passes", "scale", "backends", "report", "detect", "train", "plan")

# library argument names that differ from the CLI option's dest
ARG_ALIASES = {"iou_thr": "iou", "score_thr": "score", "db_dir": "db", "fmt": "format",
               "source": "model", "path": "path"}

_json_sink: list[Any] = []  # where emit_json writes while a command runs (the real stdout)
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]")


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (the ``--json`` contract)."""
    out = _json_sink[-1] if _json_sink else sys.stdout
    out.write(json.dumps(obj, indent=1, default=_json_default) + "\n")
    out.flush()


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    return str(o)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors in flag syntax (``--img 100000: expected an integer in
    1..8192``), no abbreviated flags (``--im`` is not ``--img``) and a suggestion for a
    mistyped flag (``--imgg`` → ``--img``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        m = re.match(r"argument ([^:]+): (.*)", message, re.S)
        if m:
            flag = m.group(1).split("/")[-1]
            v = re.match(r"(\S+): (expected .*)", m.group(2), re.S)
            message = f"{flag} {v.group(1)}: {v.group(2)}" if v else f"{flag}: {m.group(2)}"
        u = re.match(r"unrecognized arguments: (.*)", message)
        if u:
            message += self._suggest(u.group(1).split())
        self.exit(2, f"{self.prog}: error: {_ESCAPES.sub('', ' '.join(message.split()))[:500]}\n")

    def _suggest(self, unknown: list[str]) -> str:
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        hints = [c[0] for u in unknown if u.startswith("-")
                 for c in [difflib.get_close_matches(u.split("=")[0], known, 1, 0.6)] if c]
        return f"; did you mean {' / '.join(hints)}?" if hints else f"; see {self.prog} --help"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"yolov7c {version('yolov7c')}"
    except PackageNotFoundError:
        return "yolov7c (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from .bounds import apply_bounds
    parser = Parser(prog="yolov7c", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:  # a command group not written yet
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(sub)
    for verb, p in sub.choices.items():
        if "--verbose" not in p._option_string_actions:
            p.add_argument("--verbose", action="store_true",
                           help="show third-party logs (TVM, torch) on stderr")
        if "--max-memory" not in p._option_string_actions:
            p.add_argument("--max-memory", type=float, metavar="GiB",
                           help="refuse models whose one-image activations exceed this (their "
                                "weights: a quarter of it) before building them (default 4)")
        apply_bounds(verb, p)
    return parser


def flag_map(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest → the option's long flag (``max_det`` → ``--max-det``) for one sub-command."""
    out: dict[str, str] = {}
    for a in parser._actions:
        longs = [s for s in a.option_strings if s.startswith("--")]
        if longs:
            out[a.dest] = longs[0]
    return out


def user_message(e: BaseException, flags: dict[str, str]) -> str:
    """One printable line; a leading library argument name becomes its flag."""
    msg = _ESCAPES.sub("", " ".join(str(e).split()))[:500]
    msg = _flag_syntax(msg, flags)
    if msg.startswith("--"):  # already speaks in flags
        return msg
    arg = getattr(e, "arg", None)
    m = re.match(r"([a-z][a-z_]*)(?=[ :=]|$)", msg)
    lead = m.group(1) if m else None
    for name in (arg, lead):
        # the verb's own flag first (detect --source), then the library alias
        dest = (name if name in flags else ARG_ALIASES.get(name, name)) if name else None
        if dest not in flags:
            continue
        if msg.startswith(name):  # "img 0: ..." → "--img 0: ..."
            rest = msg[len(name):]
            return flags[dest] + (" " + rest[1:] if rest.startswith("=") else rest)
        return f"{flags[dest]}: {msg}"
    return msg


def _flag_syntax(msg: str, flags: dict[str, str]) -> str:
    """Python keyword syntax for the verb's own options in a library message becomes flag
    syntax: ``device='cpu'`` → ``--device cpu``, ``max_memory=<GiB>`` → ``--max-memory <GiB>``."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        dest = name if name in flags else ARG_ALIASES.get(name, name)
        if dest not in flags:
            return m.group(0)
        return f"{flags[dest]} {m.group(3)}"
    return re.sub(r"(?<![\w-])([a-z][a-z_]*)=(['\"]?)([^\s'\",;)]*)\2", sub, msg)


def log_path(command: str) -> Path:
    """Where third-party output of a run goes (``$YOLOV7C_LOG`` overrides)."""
    env = os.environ.get("YOLOV7C_LOG")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"yolov7c-{os.getuid()}" / f"{command}.log"


def _cache_log_path(command: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yolov7c" / f"{command}.log"


def open_log(command: str) -> Any:
    """The run's log file, opened safely: its folder private to this user (0700, ours, no
    symlink), the file itself not a symlink, FIFO or device (``io_util.open_regular``). A
    temp folder someone else prepared is passed over for the user's cache folder; when no
    place is safe, one note on stderr and the logs are discarded. ``$YOLOV7C_LOG`` names the
    file directly (same file checks)."""
    from ..io_util import open_regular, private_dir
    env = bool(os.environ.get("YOLOV7C_LOG"))
    reasons = []
    for path in [log_path(command)] + ([] if env else [_cache_log_path(command)]):
        try:
            if not env:
                if path.parent.name == "yolov7c":
                    path.parent.parent.mkdir(parents=True, exist_ok=True)
                private_dir(path.parent)
            return os.fdopen(open_regular(path), "w", buffering=1)
        except (UserError, OSError) as e:
            reasons.append(str(e))
    print(f"yolov7c: no safe log file ({'; '.join(reasons)}); third-party logs discarded",
          file=sys.stderr)
    return open(os.devnull, "w")


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


@contextlib.contextmanager
def routed_output(command: str, as_json: bool, verbose: bool) -> Iterator[None]:
    """Our progress → stderr; our results → stdout (with ``--json``: the JSON object alone);
    everything else (third-party Python logs and warnings, and C-level writes to fds 1/2
    from TVM/torch) → the log file, or stderr when ``verbose``. The fd juggling only happens
    when the process's real streams are in use (not under an in-process capture)."""
    real = sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
    saved: list[int] = []
    old_streams = sys.stdout, sys.stderr
    opened: list[Any] = []
    log_file = None
    sinks = len(_json_sink)
    try:
        if real:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = [os.dup(1), os.dup(2)]
            term_out = io.TextIOWrapper(os.fdopen(os.dup(saved[0]), "wb"), line_buffering=True)
            term_err = io.TextIOWrapper(os.fdopen(os.dup(saved[1]), "wb"), line_buffering=True)
            opened += [term_out, term_err]
            if verbose:
                if as_json:
                    os.dup2(saved[1], 1)  # C-level stdout writes must not reach the JSON
            else:
                log_file = open_log(command)
                os.dup2(log_file.fileno(), 1)
                os.dup2(log_file.fileno(), 2)
            sys.stdout = term_err if as_json else term_out
            sys.stderr = term_err
            _json_sink.append(term_out)
        else:
            if as_json:
                _json_sink.append(sys.stdout)
                sys.stdout = sys.stderr
        _configure_logging(sys.stderr, verbose, log_file)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        sys.stdout, sys.stderr = old_streams
        del _json_sink[sinks:]
        _unconfigure_logging()
        for fd_to, fd_from in zip((1, 2), saved):
            os.dup2(fd_from, fd_to)
            os.close(fd_from)
        for f in opened:
            with contextlib.suppress(Exception):
                f.close()
        if log_file is not None:
            log_file.close()


_handlers: list[tuple[logging.Logger, logging.Handler]] = []
_levels: list[tuple[logging.Logger, int]] = []


def _configure_logging(term: Any, verbose: bool, log_file: Any) -> None:
    ours = logging.getLogger("yolov7c")
    h = logging.StreamHandler(term)
    h.setFormatter(_Plain())
    ours.addHandler(h)
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    ours.propagate = False
    root = logging.getLogger()
    rh = logging.StreamHandler(term if verbose or log_file is None else log_file)
    rh.setLevel(logging.DEBUG if verbose else logging.WARNING)
    root.addHandler(rh)
    logging.captureWarnings(True)
    _handlers.extend([(ours, h), (root, rh)])
    # the verbs print pass records and errors themselves: the pass manager's own lines
    # (also those of a checkpoint's pipeline replay) only with --verbose
    quiet = logging.getLogger("yolov7c.passes")
    _levels.append((quiet, quiet.level))
    quiet.setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    if not verbose and log_file is None:  # in-process, quiet: third-party warnings hidden
        rh.setLevel(logging.ERROR)


def _unconfigure_logging() -> None:
    while _handlers:
        logger, h = _handlers.pop()
        logger.removeHandler(h)
    while _levels:
        logger, level = _levels.pop()
        logger.setLevel(level)
    logging.getLogger("yolov7c").propagate = True
    logging.captureWarnings(False)


def main(argv: Sequence[str] | None = None) -> int:
    from ..limits import memory_limit
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    try:  # a parse error (one line) or --help/--version: their exit code, returned
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the verb's parser, its flags suggested
            (sub.choices[args.command] if getattr(args, "command", None) else parser).error(
                f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    flags = flag_map(sub.choices[args.command])
    with routed_output(args.command, bool(getattr(args, "json", False)),
                       bool(getattr(args, "verbose", False))):
        try:
            with memory_limit(getattr(args, "max_memory", None)):
                return int(args.func(args) or 0)
        except UserError as e:
            print(f"yolov7c {args.command}: error: {user_message(e, flags)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"yolov7c {args.command}: interrupted", file=sys.stderr)
            return 130
        except OSError as e:  # a path the user gave that cannot be read or written
            if isinstance(e, BrokenPipeError):
                return 0
            where = f" {e.filename}" if e.filename else ""
            print(f"yolov7c {args.command}: error:{where}: {e.strerror or e}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
