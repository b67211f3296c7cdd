"""Command-line parsing shared by the tools: ``--flag value`` and Ultralytics' ``key=value`` are the same thing.

Every option of a tool can be given either way: ``--target-flops 0.5``, ``--target-flops=0.5`` and
``target_flops=0.5`` are equal; so are ``--seeds 0 1 2`` and ``seeds=0,1,2`` (lists), ``--ablate`` and
``ablate=True`` (switches). Other names of one option (``p.add_argument("--student", "--model", ...)``) are
equal too, so ``model=x`` sets ``--student``. One setting under two names with different values (``--data a data=b``,
``--student x model=y``) is an error, while one name repeated keeps its last value (``--imgsz 128 --imgsz 320``, as
in argparse and in Ultralytics' ``key=value``). Every error (such a conflict, an unknown argument, a bad value, a
missing required option) is a :class:`~yolo_kd.core.errors.KDError`: one line (``yolo_kd: error: ...``, exit 2)
through ``run_cli``, no usage block, no traceback. Options are never abbreviated (``--res`` is not ``--resume``).

Use it in a command::

    from .args import ArgParser, parse_args

    def build_parser() -> ArgParser:
        p = ArgParser(prog="export_int8", description="...")
        p.add_argument("--model", required=True)
        p.add_argument("--imgsz", type=int, default=640)
        p.add_argument("--keep-float", nargs="*", default=None)
        return p

    def main(argv=None) -> int:
        args = parse_args(build_parser(), argv).args  # model=best.pt imgsz=320 == --model best.pt --imgsz 320
        ...

A tool that passes other Ultralytics training arguments through (``lr0=0.01``, ``--optimizer SGD``) asks for them::

        parsed = parse_args(build_parser(), argv, passthrough=True, reserved={"name": "runs are named by this tool"})
        parsed.args        # argparse.Namespace of the tool's own options
        parsed.overrides   # {"lr0": 0.01, "optimizer": "SGD"}: validated against Ultralytics' argument names
        parsed.given       # {"model": "model=best.pt", "lr0": "lr0=0.01", ...}: what the user set, as spelled

``reserved`` names Ultralytics arguments the tool refuses to pass through (with the reason). This module does not
import torch or Ultralytics unless ``passthrough`` is used, so the torch-free deploy tools can use it.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any, Mapping, NamedTuple, Sequence

from ..core.errors import KDError

#: a ``key=value`` token (the key is a name, so paths like ``a/b=c.pt`` or ``best.onnx=0.6`` are not keys)
_KEY_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*=")
_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(\.\d*)?[eE][-+]?\d+$")


class ArgParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one-line :class:`KDError` and whose options are never abbreviated."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's "usage: ... error: ..." block -> one line
        raise KDError(f"{message} (see {self.prog} --help)")


class Parsed(NamedTuple):
    """What :func:`parse_args` found."""

    args: argparse.Namespace  #: the tool's own options (defaults filled in)
    overrides: dict[str, Any]  #: other Ultralytics arguments (only with ``passthrough=True``)
    given: dict[str, str]  #: option dest or Ultralytics key -> how the user spelled it (``--teacher``, ``kd_cls=2``)


def smart(value: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, ``"none"`` -> None, anything else stays a string."""
    low = value.strip().lower()
    if low in {"true", "false"}:
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _is_flag(tok: str) -> bool:
    return tok.startswith("-") and tok != "-" and not _NUMBER.match(tok)


def _is_value(tok: str) -> bool:
    """Whether ``tok`` can be the value of a preceding option (not an option, not a key=value)."""
    return not _is_flag(tok) and not _KEY_VALUE.match(tok)


def _find_action(parser: argparse.ArgumentParser, name: str) -> argparse.Action | None:
    """The option ``--name`` / ``--na-me`` / ``--na_me`` of ``parser``, or None."""
    actions = parser._option_string_actions  # noqa: SLF001 (argparse has no public lookup)
    body = name[2:] if name.startswith("--") else name
    for opt in (name, f"--{body.replace('_', '-')}", f"--{body.replace('-', '_')}"):
        if opt in actions:
            return actions[opt]
    return None


def _flag_form(opt: str) -> str:
    """``--kd_cls`` and ``--kd-cls`` are one form of one option."""
    return "--" + opt.lstrip("-").replace("_", "-")


def _as_bool(value: str, spelled: str) -> bool:
    low = value.strip().lower()
    if low in {"true", "1", "yes", ""}:
        return True
    if low in {"false", "0", "no"}:
        return False
    raise KDError(f"'{spelled}' must be True or False")


def _split_list(value: str) -> list[str]:
    """``0,1,2``, ``[0, 1, 2]`` or ``0 1 2`` -> ['0', '1', '2']."""
    value = value.strip().strip("[]()")
    return [v.strip().strip("'\"") for v in re.split(r"[,\s]+", value) if v.strip()]


def _occurrence(action: argparse.Action, opt: str, values: list[str] | None, spelled: str) -> tuple[list[str], Any]:
    """argparse tokens for one occurrence of ``action`` and its comparable value. ``values`` None: no value given."""
    nargs = action.nargs
    if nargs == 0:  # store_true / store_false / store_const / count
        on = True if values is None else _as_bool(values[0], spelled)
        return ([opt] if on else []), on == (action.const is not False)
    if nargs == "?":
        if values is None:
            return [opt], action.const
        value = values[0]
        if isinstance(action.const, bool) and value.strip().lower() in {"true", "false"}:  # resume=True
            return ([opt] if smart(value) else []), (action.const if smart(value) else None)
        return [f"{opt}={value}"], smart(value)
    if nargs in (None, 1) and values is not None and len(values) == 1:
        return [f"{opt}={values[0]}"], smart(values[0])
    values = values or []
    if nargs in (None, 1) or (isinstance(nargs, int) and len(values) != nargs) or (nargs == "+" and not values):
        what = "one value" if nargs in (None, 1) else f"{nargs} values" if isinstance(nargs, int) else "at least one value"
        raise KDError(f"'{spelled}' needs {what}")
    return [opt, *values], tuple(smart(v) for v in values)


def parse_args(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    *,
    passthrough: bool = False,
    reserved: Mapping[str, str] | None = None,
) -> Parsed:
    """Parse ``argv`` (default ``sys.argv[1:]``) with ``parser``, accepting ``key=value`` for every option.

    Args:
        parser: the tool's parser (an :class:`ArgParser`, or any ``argparse.ArgumentParser``).
        passthrough: collect unknown ``key=value`` / ``--key value`` as Ultralytics training arguments (validated
            against Ultralytics' argument names) instead of refusing them.
        reserved: Ultralytics argument -> why this tool does not take it (refused in one line).
    Raises:
        KDError: a conflict, an unknown or reserved argument, or a value argparse refuses (one line each).
    """
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    if "-h" in argv or "--help" in argv:
        parser.print_help()
        raise SystemExit(0)
    seen: dict[str, tuple[str, Any, str]] = {}  # dest -> (spelling, comparable value, form)
    given: dict[str, str] = {}
    chunks: dict[str, list[str]] = {}  # dest -> its tokens in argparse's own form
    positionals: list[str] = []
    extra: dict[str, tuple[str, str, str]] = {}  # Ultralytics key -> (spelling, raw value, form)

    def use(action: argparse.Action, opt: str, values: list[str] | None, spelled: str, form: str) -> None:
        """One occurrence of a tool option. ``form`` is how it was named (``--imgsz``, ``imgsz=``): the same form
        again replaces the earlier value (argparse's and Ultralytics' own rule), another form with another value is
        a conflict."""
        toks, value = _occurrence(action, opt, values, spelled)
        if isinstance(action, (argparse._AppendAction, argparse._CountAction)):  # noqa: SLF001 (repeatable by design)
            chunks[f"{action.dest}#{len(chunks)}"] = toks
            given.setdefault(action.dest, form)
            return
        if action.dest in seen:
            before, old, old_form = seen[action.dest]
            if old_form != form and old != value:
                raise KDError(f"'{before}' and '{spelled}' both set {action.option_strings[0]}: give it once")
            if old_form != form:
                return
        seen[action.dest] = (spelled, value, form)
        given[action.dest] = form if form.startswith("-") else spelled
        chunks[action.dest] = toks

    def add_extra(key: str, value: str, spelled: str, form: str) -> None:
        key = key.replace("-", "_")
        if key in extra:
            before, old, old_form = extra[key]
            if old_form != form and smart(old) != smart(value):
                raise KDError(f"'{before}' and '{spelled}' both set {key}: give it once")
            if old_form != form:
                return
        extra[key] = (spelled, value, form)
        given[key] = form if form.startswith("-") else spelled

    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            positionals.extend(argv[i:])
            break
        if _is_flag(tok):
            opt, eq, inline = tok.partition("=")
            action = _find_action(parser, opt)
            if action is None:
                if not tok.startswith("--") or not passthrough:
                    parser.error(f"unknown argument '{tok}'")
                if eq:
                    value = inline
                elif i < len(argv) and _is_value(argv[i]):
                    value, i = argv[i], i + 1
                else:
                    value = "True"
                add_extra(opt[2:], value, f"{opt} {value}" if not eq else tok, _flag_form(opt))
                continue
            opt = action.option_strings[0] if action.option_strings else opt
            values: list[str] | None
            if eq:
                values = _split_list(inline) if action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1 else [inline]
            elif action.nargs == 0:
                values = None
            elif action.nargs in (None, 1):
                if i >= len(argv):
                    parser.error(f"argument {opt}: expected one argument")
                values, i = [argv[i]], i + 1  # the next token, whatever it looks like (argparse's rule, e.g. -1)
            elif action.nargs == "?":
                values = None
                if i < len(argv) and _is_value(argv[i]):
                    values, i = [argv[i]], i + 1
            else:  # lists: every following value
                values = []
                while i < len(argv) and _is_value(argv[i]):
                    values.append(argv[i])
                    i += 1
            spelled = tok if eq or values is None else f"{tok} {' '.join(values)}"
            use(action, opt, values, spelled, _flag_form(tok.partition("=")[0]))
        elif _KEY_VALUE.match(tok):
            key, _, value = tok.partition("=")
            action = _find_action(parser, f"--{key}")
            if action is None:
                if not passthrough:
                    parser.error(f"unknown argument '{tok}'")
                add_extra(key, value, tok, f"{key.replace('-', '_')}=")
                continue
            lists = action.nargs in ("+", "*") or (isinstance(action.nargs, int) and action.nargs > 1)
            use(action, action.option_strings[0], _split_list(value) if lists else [value], tok, f"{key.replace('-', '_')}=")
        else:
            positionals.append(tok)
    args = parser.parse_args(positionals + [t for toks in chunks.values() for t in toks])
    overrides = ultralytics_overrides({k: v for k, (_, v, _) in extra.items()}, reserved) if extra else {}
    return Parsed(args, overrides, given)


def ultralytics_overrides(raw: Mapping[str, str], reserved: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate Ultralytics training arguments by name and convert their values the way ``yolo`` does."""
    from ultralytics.cfg import DEFAULT_CFG_DICT, smart_value

    out: dict[str, Any] = {}
    for key, value in raw.items():
        if reserved and key in reserved:
            raise KDError(f"'{key}' is set by this tool: {reserved[key]}")
        if key.startswith("kd_"):  # the tool's --kd-<key> options did not match it
            raise KDError(f"unknown distillation setting '{key[3:]}' ({key}={value}): the keys are those of cfg/kd_default.yaml")
        if key not in DEFAULT_CFG_DICT:
            raise KDError(f"unknown training argument '{key}': see 'yolo cfg' for Ultralytics arguments, --help for ours")
        out[key] = smart_value(value)
    return out
