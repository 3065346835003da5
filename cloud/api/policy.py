"""An evaluator for oslo.policy check strings.

A policy maps rule names (``identity:get_project``) to check strings::

    (role:reader and system_scope:all) or project_id:%(target.project.id)s

Grammar, loosest binding first: ``or``, ``and``, ``not`` (keywords are case-insensitive), with
parentheses for grouping. The leaves are:

- ``@`` or an empty check string: always true; ``!``: always false.
- ``role:NAME``: NAME is one of ``creds["roles"]`` (case-insensitive).
- ``rule:NAME``: the result of another rule of the same policy.
- ``KEY:VALUE`` (a generic check): the credential KEY equals VALUE, which is either
  ``%(dotted.key)s``, a value taken from the target, or a literal: ``True``/``False`` match
  booleans only, ``None`` matches a missing or null credential, a quoted (``'x'``, ``"x"``) or
  bare word is a string. A list-valued credential matches if any element does. Values compare as
  strings, so ``1`` matches the integer 1.
- ``LITERAL:%(dotted.key)s``: the reverse form, with a quoted string, number, ``True``,
  ``False`` or ``None`` on the left, compared with the target value (``'member':%(target.role
  .name)s``, ``None:%(target.project.domain_id)s``).

A substitution absent from the target makes its check false, never an error, and a null target
value only ever matches the ``None`` literal: a project-scoped token (no ``domain_id``) must not
match a resource whose ``domain_id`` is null. Nested targets are flattened into dotted keys, so
``{"target": {"project": {"id": "p"}}}`` and ``{"target.project.id": "p"}`` are equivalent.

Check strings are parsed once, when the policy is built, into a tree of small check objects;
evaluating a rule walks that tree with plain dict lookups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Policy", "PolicyDenied", "PolicyError"]


class PolicyError(Exception):
    """A policy is malformed (bad syntax, unknown or cyclic rule reference) or a rule is unknown."""


class PolicyDenied(Exception):
    """The policy does not allow an operation; ``rule`` names the rule that denied it."""

    def __init__(self, rule: str) -> None:
        super().__init__(f"policy does not allow {rule}")
        self.rule = rule


_MISSING: Any = object()


class _Context:
    """What one evaluation looks at: the credentials, the flattened target, the lowered roles."""

    __slots__ = ("creds", "roles", "target")

    def __init__(self, creds: Mapping[str, Any], target: Mapping[str, Any]) -> None:
        self.creds = creds
        self.target = target
        roles = creds.get("roles") or ()
        if isinstance(roles, str):  # one role given bare; iterating it would yield letters
            roles = (roles,)
        self.roles = frozenset(r.lower() for r in roles if isinstance(r, str))


def _matches(actual: Any, expected: Any) -> bool:
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_matches(item, expected) for item in actual)
    if isinstance(actual, bool) or isinstance(expected, bool):
        # Keep booleans apart from strings and ints: ``is_admin:True`` must not match "True" or 1.
        return actual is expected
    return str(actual) == str(expected)


class _Check:
    __slots__ = ()

    def __call__(self, ctx: _Context) -> bool:
        raise NotImplementedError


class _Const(_Check):
    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __call__(self, ctx: _Context) -> bool:
        return self.value


_ALWAYS = _Const(True)
_NEVER = _Const(False)


class _Role(_Check):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name.lower()

    def __call__(self, ctx: _Context) -> bool:
        return self.name in ctx.roles


class _CredIsLiteral(_Check):
    __slots__ = ("expected", "key")

    def __init__(self, key: str, expected: Any) -> None:
        self.key, self.expected = key, expected

    def __call__(self, ctx: _Context) -> bool:
        return _matches(ctx.creds.get(self.key), self.expected)


class _CredIsTarget(_Check):
    __slots__ = ("key", "target_key")

    def __init__(self, key: str, target_key: str) -> None:
        self.key, self.target_key = key, target_key

    def __call__(self, ctx: _Context) -> bool:
        expected = ctx.target.get(self.target_key)
        if expected is None:
            return False
        return _matches(ctx.creds.get(self.key), expected)


class _LiteralIsTarget(_Check):
    __slots__ = ("literal", "target_key")

    def __init__(self, literal: Any, target_key: str) -> None:
        self.literal, self.target_key = literal, target_key

    def __call__(self, ctx: _Context) -> bool:
        value = ctx.target.get(self.target_key, _MISSING)
        if value is _MISSING:
            return False
        return _matches(value, self.literal)


# ``and``/``or`` loop by hand (noqa SIM110): ``all()``/``any()`` over a generator costs about
# three times as much per node, and these run on every API call.
class _And(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: list[_Check]) -> None:
        self.checks = tuple(checks)

    def __call__(self, ctx: _Context) -> bool:
        for check in self.checks:  # noqa: SIM110
            if not check(ctx):
                return False
        return True


class _Or(_Check):
    __slots__ = ("checks",)

    def __init__(self, checks: list[_Check]) -> None:
        self.checks = tuple(checks)

    def __call__(self, ctx: _Context) -> bool:
        for check in self.checks:  # noqa: SIM110
            if check(ctx):
                return True
        return False


class _Not(_Check):
    __slots__ = ("check",)

    def __init__(self, check: _Check) -> None:
        self.check = check

    def __call__(self, ctx: _Context) -> bool:
        return not self.check(ctx)


# A token is a parenthesis or a run of anything else up to whitespace or a parenthesis;
# ``%(...)s`` and quoted strings are kept whole, so their parentheses and spaces do not split.
_TOKEN = re.compile(r"""\s*(?:([()])|((?:%\([^)]*\)s|'[^']*'|"[^"]*"|[^\s()'"])+))""")
_KEYWORDS = frozenset({"and", "or", "not"})
_NUMBER = re.compile(r"-?\d+")


def _tokens(text: str) -> Iterator[tuple[int, str]]:
    pos = 0
    end = len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unterminated quote at position {pos + 1}")
        token = m.group(1) or m.group(2)
        yield m.start(m.lastindex or 0), token.lower() if token.lower() in _KEYWORDS else token
        pos = m.end()


def _unquote(text: str) -> str | None:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None


def _literal(text: str, *, bare_is_string: bool) -> tuple[bool, Any]:
    """(is it a literal, its value). A bare word is a literal only on the right-hand side."""
    quoted = _unquote(text)
    if quoted is not None:
        return True, quoted
    if text in ("True", "False"):
        return True, text == "True"
    if text == "None":
        return True, None
    if bare_is_string or _NUMBER.fullmatch(text):
        return True, text
    return False, None


def _leaf(token: str, resolve: Callable[[str], _Check]) -> _Check:
    if token == "@":
        return _ALWAYS
    if token == "!":
        return _NEVER
    # The left side may be a quoted literal that itself contains ':'.
    colon = token.find(":", token.find(token[0], 1) + 1 if token[0] in "'\"" else 0)
    if colon <= 0:
        raise ValueError(f"expected KIND:VALUE, '@' or '!', got {token!r}")
    kind, value = token[:colon], token[colon + 1 :]
    if not value:
        raise ValueError(f"empty value in {token!r}")
    if kind == "rule":
        return resolve(value)  # the named rule's own tree: no indirection when evaluating
    if kind == "role":
        return _Role(_unquote(value) or value)
    target_key: str | None = None
    if value.startswith("%(") and value.endswith(")s"):
        target_key = value[2:-2]
        if not target_key or "%" in target_key or ")" in target_key:
            raise ValueError(f"malformed substitution in {token!r}")
    elif "%(" in value:
        raise ValueError(f"a substitution must be the whole value in {token!r}")
    left_is_literal, left = _literal(kind, bare_is_string=False)
    if left_is_literal:
        if target_key is None:
            _, right = _literal(value, bare_is_string=True)
            return _ALWAYS if _matches(left, right) else _NEVER
        return _LiteralIsTarget(left, target_key)
    if "%(" in kind:
        raise ValueError(f"a substitution may only be on the right of ':' in {token!r}")
    if "'" in kind or '"' in kind:
        raise ValueError(f"malformed credential key in {token!r}")
    if target_key is not None:
        return _CredIsTarget(kind, target_key)
    return _CredIsLiteral(kind, _literal(value, bare_is_string=True)[1])


class _Parser:
    """Recursive descent over the tokens: or_expr := and_expr ('or' and_expr)*, and so on."""

    def __init__(self, text: str, resolve: Callable[[str], _Check]) -> None:
        self.tokens = list(_tokens(text))
        self.i = 0
        self.resolve = resolve

    def parse(self) -> _Check:
        if not self.tokens:
            return _ALWAYS
        check = self._or()
        if self.i < len(self.tokens):
            pos, tok = self.tokens[self.i]
            raise ValueError(f"unexpected {tok!r} at position {pos + 1}")
        return check

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _or(self) -> _Check:
        checks = [self._and()]
        while self._peek() == "or":
            self.i += 1
            checks.append(self._and())
        return checks[0] if len(checks) == 1 else _Or(checks)

    def _and(self) -> _Check:
        checks = [self._not()]
        while self._peek() == "and":
            self.i += 1
            checks.append(self._not())
        return checks[0] if len(checks) == 1 else _And(checks)

    def _not(self) -> _Check:
        if self._peek() == "not":
            self.i += 1
            return _Not(self._not())
        return self._atom()

    def _atom(self) -> _Check:
        if self.i >= len(self.tokens):
            raise ValueError("unexpected end of check string")
        pos, tok = self.tokens[self.i]
        self.i += 1
        if tok == "(":
            check = self._or()
            if self._peek() != ")":
                raise ValueError(f"unbalanced '(' at position {pos + 1}")
            self.i += 1
            return check
        if tok == ")" or tok in _KEYWORDS:
            raise ValueError(f"unexpected {tok!r} at position {pos + 1}")
        return _leaf(tok, self.resolve)


def _is_mapping(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # the exact test is the cheap one


def _flatten(target: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not target:
        return {}
    if not any(_is_mapping(v) for v in target.values()):
        return target  # already flat: callers may pass dotted keys themselves
    flat: dict[str, Any] = {}
    _flatten_into(flat, "", target)
    return flat


def _flatten_into(flat: dict[str, Any], prefix: str, node: Mapping[str, Any]) -> None:
    for key, value in node.items():
        if _is_mapping(value):
            _flatten_into(flat, f"{prefix}{key}.", value)
        else:
            flat[prefix + key] = value


def _check_strings(rules: Mapping[Any, Any], origin: str) -> dict[str, str]:
    if not isinstance(rules, Mapping):
        raise PolicyError(f"{origin} must map rule names to check strings")
    for name, text in rules.items():
        if not isinstance(name, str) or not isinstance(text, str):
            raise PolicyError(
                f"{origin} must map rule names to check strings, got {name!r}: {text!r}"
            )
    return dict(rules)


class Policy:
    """A parsed set of rules: ``defaults`` with ``overrides`` replacing (or adding) rules."""

    def __init__(
        self, defaults: Mapping[str, str], overrides: Mapping[str, str] | None = None
    ) -> None:
        self._rules = _check_strings(defaults, "policy defaults")
        self._rules.update(_check_strings(overrides or {}, "policy overrides"))
        self._checks: dict[str, _Check] = {}
        # Rules are parsed depth first, a referenced rule before the rule naming it, so that
        # ``rule:NAME`` links straight to NAME's tree; a rule met again while still being
        # parsed closes a cycle.
        parsing: list[str] = []

        def resolve(name: str) -> _Check:
            if name not in self._rules:
                raise PolicyError(f"rule {parsing[-1]!r} references unknown rule {name!r}")
            if name in parsing:
                cycle = " -> ".join([*parsing[parsing.index(name) :], name])
                raise PolicyError(f"rule references form a cycle: {cycle}")
            if name not in self._checks:
                parsing.append(name)
                text = self._rules[name]
                try:
                    self._checks[name] = _Parser(text, resolve).parse()
                except ValueError as exc:
                    raise PolicyError(f"rule {name!r}: {exc} (check string {text!r})") from None
                parsing.pop()
            return self._checks[name]

        for name in self._rules:
            resolve(name)

    @classmethod
    def from_file(cls, defaults: Mapping[str, str], path: Path | None) -> Policy:
        """The defaults overridden by a YAML or JSON file of rule name -> check string."""
        if path is None:
            return cls(defaults)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PolicyError(f"policy file {path} is neither YAML nor JSON: {exc}") from exc
        # An empty file is an empty mapping, as oslo.policy treats it.
        overrides = _check_strings({} if data is None else data, f"policy file {path}")
        return cls(defaults, overrides)

    def allowed(
        self, rule: str, creds: Mapping[str, Any], target: Mapping[str, Any] | None = None
    ) -> bool:
        """Whether ``rule`` passes for these credentials and target; an unknown rule raises."""
        check = self._checks.get(rule)
        if check is None:
            raise PolicyError(f"unknown policy rule {rule!r}")
        return check(_Context(creds, _flatten(target)))

    def enforce(
        self, rule: str, creds: Mapping[str, Any], target: Mapping[str, Any] | None = None
    ) -> None:
        """Raise ``PolicyDenied(rule)`` unless ``rule`` passes."""
        if not self.allowed(rule, creds, target):
            raise PolicyDenied(rule)

    def rules(self) -> dict[str, str]:
        """The effective check string of every rule, overrides applied."""
        return dict(self._rules)
