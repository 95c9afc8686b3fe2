"""The SQL side of the Supabase emulator's RPC: PostgREST's routine resolution and calls.

Owns what PostgREST decides from its schema cache and the statement it would run:

- reading a function's overloads from `pg_catalog` (`LOOKUP_ROUTINES`, `routines_from_rows`);
- choosing the overload named arguments call, with PostgREST's rules (`choose_routine`): every
  required parameter given, every given key a parameter; else a single unnamed json/jsonb one;
- the call itself, by named notation fed from `json_to_record($1::json)`, and the JSON body built
  in SQL the way PostgREST builds it (scalar → value, composite → object, setof → array).

Table reads are in `tables`. Every identifier goes through `psycopg.sql.Identifier`, every value
is a bound parameter.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

# Types come out schema-qualified unless they live in pg_catalog: run it with an empty search_path.
LOOKUP_ROUTINES = sql.SQL(
    """
    select p.proname::text,
           coalesce(p.proargnames, array[]::text[]),
           coalesce(p.proargmodes::text[], array[]::text[]),
           array(select pg_catalog.format_type(a.t, null)
                 from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]))
                      with ordinality as a(t, n)
                 order by a.n),
           p.pronargdefaults::int,
           p.proretset,
           p.prorettype = 'pg_catalog.void'::pg_catalog.regtype,
           rt.typtype = 'c' or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    join pg_catalog.pg_type rt on rt.oid = p.prorettype
    where n.nspname = %s and p.proname = %s and p.prokind = 'f'
    """
)

LOOKUP_ROUTINE_NAMES = sql.SQL(
    """
    select distinct p.proname::text from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = %s and p.prokind = 'f'
    """
)

_INPUT_MODES = frozenset({"i", "b", "v"})
_JSON_TYPES = frozenset({"json", "jsonb"})


class Shape(enum.Enum):
    """How PostgREST renders a routine's result."""

    VOID = "void"
    SCALAR = "scalar"
    COMPOSITE = "composite"
    SETOF_SCALAR = "setof scalar"
    SETOF_COMPOSITE = "setof composite"


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool
    variadic: bool = False


@dataclass(frozen=True)
class Routine:
    schema: str
    name: str
    params: tuple[Param, ...]
    shape: Shape

    @property
    def signature(self) -> str:
        args = ", ".join(f"{p.name} => {p.type}" for p in self.params)
        return f"{self.schema}.{self.name}({args})"

    @property
    def single_unnamed_json(self) -> bool:
        return (
            len(self.params) == 1
            and not self.params[0].name
            and (self.params[0].type in _JSON_TYPES)
        )


def _shape(setof: bool, void: bool, composite: bool) -> Shape:
    if void:
        return Shape.VOID
    if setof:
        return Shape.SETOF_COMPOSITE if composite else Shape.SETOF_SCALAR
    return Shape.COMPOSITE if composite else Shape.SCALAR


def _params(names: list[str], modes: list[str], types: list[str], ndefaults: int) -> list[Param]:
    inputs: list[tuple[str, str, bool]] = []
    for i, type_name in enumerate(types):
        mode = modes[i] if modes else "i"
        if mode in _INPUT_MODES:
            inputs.append((names[i] if i < len(names) else "", type_name, mode == "v"))
    first_default = len(inputs) - ndefaults
    return [
        Param(name=name, type=type_name, required=i < first_default, variadic=variadic)
        for i, (name, type_name, variadic) in enumerate(inputs)
    ]


def routines_from_rows(schema: str, rows: Iterable[Sequence[Any]]) -> list[Routine]:
    """Rows of `LOOKUP_ROUTINES` → the overloads of one function."""
    return [
        Routine(
            schema=schema,
            name=name,
            params=tuple(_params(list(names), list(modes), list(types), ndefaults)),
            shape=_shape(setof, void, composite),
        )
        for name, names, modes, types, ndefaults, setof, void, composite in rows
    ]


def _accepts(routine: Routine, keys: frozenset[str]) -> bool:
    if any(not p.name for p in routine.params):
        return False
    required = {p.name for p in routine.params if p.required}
    every = {p.name for p in routine.params}
    return required <= keys <= every


@dataclass(frozen=True)
class Choice:
    """The overload to call, or why there is none (no match, or several)."""

    routine: Routine | None = None
    candidates: tuple[Routine, ...] = field(default=())


def choose_routine(overloads: Sequence[Routine], keys: Iterable[str], *, json_body: bool) -> Choice:
    """PostgREST's overload resolution for named arguments (and the single json parameter)."""
    given = frozenset(keys)
    named = [r for r in overloads if _accepts(r, given)]
    if len(named) == 1:
        return Choice(routine=named[0])
    if named:
        return Choice(candidates=tuple(named))
    unnamed = [r for r in overloads if json_body and r.single_unnamed_json]
    if len(unnamed) == 1:
        return Choice(routine=unnamed[0])
    return Choice(candidates=tuple(unnamed))


def no_routine_hint(
    schema: str, name: str, keys: Sequence[str], overloads: Sequence[Routine], names: Sequence[str]
) -> str | None:
    """PostgREST's fuzzy 'Perhaps you meant to call the function ...' hint."""
    prefix = f"Perhaps you meant to call the function {schema}."
    if not overloads:
        close = difflib.get_close_matches(name, [n for n in names if n != name], n=1, cutoff=0.75)
        return prefix + close[0] if close else None
    listed = {"(" + ", ".join(sorted(p.name for p in r.params)) + ")" for r in overloads}
    wanted = "(" + ", ".join(sorted(keys)) + ")"
    close = difflib.get_close_matches(wanted, sorted(listed), n=1, cutoff=0.33)
    return prefix + name + close[0] if close else None


_BODY = {
    Shape.VOID: "count(*)::text",
    Shape.SCALAR: "(json_agg(_r.v) -> 0)::text",
    Shape.COMPOSITE: "(json_agg(_r) -> 0)::text",
    Shape.SETOF_SCALAR: "coalesce(json_agg(_r.v), '[]')::text",
    Shape.SETOF_COMPOSITE: "coalesce(json_agg(_r), '[]')::text",
}


def call_statement(
    routine: Routine, keys: Iterable[str], *, text_args: bool = False
) -> sql.Composed:
    """`select <json body>, <response GUCs> from json_to_record(%s::json) ..., fn(a := _.a) _r`.

    With `text_args` (GET, arguments from the query string) every argument arrives as text and
    is cast to the parameter's type, as PostgreSQL's input functions read query-string values.
    One parameter: the JSON document of the arguments (or the whole body for a single unnamed
    json/jsonb parameter).
    """
    target = sql.SQL(".").join([sql.Identifier(routine.schema), sql.Identifier(routine.name)])
    alias = (
        sql.SQL("_r")
        if routine.shape in (Shape.COMPOSITE, Shape.SETOF_COMPOSITE)
        else (sql.SQL("_r(v)"))
    )
    select = sql.SQL(
        "select {body}, current_setting('response.status', true),"
        " current_setting('response.headers', true) from "
    ).format(body=sql.SQL(_BODY[routine.shape]))
    if routine.single_unnamed_json:
        call = sql.SQL("{fn}(%s::{type}) {alias}").format(
            fn=target, type=sql.SQL(routine.params[0].type), alias=alias
        )
        return select + call
    given = set(keys)
    params = [p for p in routine.params if p.name in given]
    if not params:  # the (empty) arguments document stays the statement's one parameter
        return select + sql.SQL("(select %s::json) as _, {fn}() {alias}").format(
            fn=target, alias=alias
        )
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(p.name), sql.SQL("text" if text_args else p.type))
        for p in params
    )
    arguments = sql.SQL(", ").join(_argument(p, text_args) for p in params)
    source = sql.SQL("json_to_record(%s::json) as _({columns}), {fn}({arguments}) {alias}")
    return select + source.format(columns=columns, fn=target, arguments=arguments, alias=alias)


def _argument(param: Param, text_args: bool) -> sql.Composed:
    value = sql.SQL("_.{}").format(sql.Identifier(param.name))
    if text_args:
        value = sql.SQL("{}::{}").format(value, sql.SQL(param.type))
    variadic = sql.SQL("variadic ") if param.variadic else sql.SQL("")
    return sql.SQL("{}{} := {}").format(variadic, sql.Identifier(param.name), value)
