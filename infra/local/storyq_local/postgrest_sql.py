"""The SQL side of the Supabase emulator: PostgREST's routine resolution and query shapes.

Owns what PostgREST decides from its schema cache and the statements it would run:

- reading a function's overloads from `pg_catalog` (`LOOKUP_ROUTINES`, `routines_from_rows`);
- choosing the overload named arguments call, with PostgREST's rules (`choose_routine`): every
  required parameter given, every given key a parameter; else a single unnamed json/jsonb one;
- the call itself, by named notation fed from `json_to_record($1::json)`, and the JSON body built
  in SQL the way PostgREST builds it (scalar → value, composite → object, setof → array);
- the table reads the emulator answers (`?select=&col=op.value&order=&limit=&offset=`).

Every identifier goes through `psycopg.sql.Identifier`, every value is a bound parameter.
"""

from __future__ import annotations

import csv
import difflib
import enum
import re
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


# ---------------------------------------------------------------------------------------------
# Table reads: GET /rest/v1/<table>?select=a,b&col=eq.1&order=a.desc&limit=10&offset=0

RESERVED_PARAMS = frozenset({"select", "order", "limit", "offset", "columns", "on_conflict"})
_COMPARISONS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "like",
    "ilike": "ilike",
}
_IS_VALUES = {
    "null": "is null",
    "not_null": "is not null",
    "true": "is true",
    "false": "is false",
    "unknown": "is unknown",
}
_IDENT = re.compile(r"^[^\s,()\":.*]+$")


class QueryParamError(Exception):
    """A query string PostgREST would refuse (400 PGRST100), or a feature the emulator lacks."""

    def __init__(self, message: str, details: str, *, code: str = "PGRST100") -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.code = code


@dataclass
class TableRead:
    """A parsed table read: the statement and its named parameters."""

    columns: sql.Composable = field(default_factory=lambda: sql.SQL("*"))
    filters: list[sql.Composable] = field(default_factory=list)
    order: list[sql.Composable] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    values: dict[str, str] = field(default_factory=dict)

    def bind(self, value: str) -> sql.Composable:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def _identifier(text: str, what: str) -> sql.Identifier:
    name = text.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if not name or not _IDENT.match(name):
        raise QueryParamError(f"failed to parse {what}", f"unexpected {text!r}", code="PGRST100")
    return sql.Identifier(name)


def _select(text: str) -> sql.Composable:
    items: list[sql.Composable] = []
    for raw in text.split(","):
        item = raw.strip()
        if item == "*":
            items.append(sql.SQL("*"))
            continue
        if "(" in item or "::" in item or "->" in item:
            raise QueryParamError(
                "Feature not implemented",
                f"the Supabase emulator reads plain columns only, not {item!r}",
                code="PGRST127",
            )
        alias, _, column = item.rpartition(":")
        ident = _identifier(column, "select parameter")
        items.append(
            sql.SQL("{} as {}").format(ident, _identifier(alias, "select parameter"))
            if alias
            else ident
        )
    return sql.SQL(", ").join(items) if items else sql.SQL("*")


def _order(text: str) -> list[sql.Composable]:
    terms: list[sql.Composable] = []
    for raw in text.split(","):
        column, *modifiers = raw.strip().split(".")
        words = [
            sql.SQL({"asc": "asc", "desc": "desc"}[m]) for m in modifiers if m in ("asc", "desc")
        ]
        nulls = {"nullsfirst": "nulls first", "nullslast": "nulls last"}
        words += [sql.SQL(nulls[m]) for m in modifiers if m in nulls]
        if len(words) != len(modifiers):
            raise QueryParamError("failed to parse order", f"unexpected {raw!r}")
        terms.append(sql.SQL(" ").join([_identifier(column, "order"), *words]))
    return terms


def _in_list(text: str) -> list[str]:
    """`(a,b,"c,d")` → ['a', 'b', 'c,d'] (postgrest-py quotes with " and escapes with \\)."""
    if not (text.startswith("(") and text.endswith(")")):
        raise QueryParamError("failed to parse filter", f"in. expects (a,b,...), got {text!r}")
    if not text[1:-1].strip():
        return []
    reader = csv.reader(
        [text[1:-1]], delimiter=",", quotechar='"', escapechar="\\", skipinitialspace=True
    )
    return next(reader)


def _condition(
    read: TableRead, column: sql.Identifier, operator: str, value: str
) -> sql.Composable:
    if operator in _COMPARISONS:
        if operator in ("like", "ilike"):
            value = value.replace("*", "%")
        return sql.SQL("{} {} {}").format(column, sql.SQL(_COMPARISONS[operator]), read.bind(value))
    if operator == "is" and value.lower() in _IS_VALUES:
        return sql.SQL("{} {}").format(column, sql.SQL(_IS_VALUES[value.lower()]))
    if operator == "in":
        items = _in_list(value)
        if not items:
            return sql.SQL("false")
        placeholders = sql.SQL(", ").join(read.bind(item) for item in items)
        return sql.SQL("{} in ({})").format(column, placeholders)
    raise QueryParamError("failed to parse filter", f"unknown operator {operator!r}")


def _filter(read: TableRead, key: str, text: str) -> None:
    if key in ("or", "and", "not.or", "not.and"):
        raise QueryParamError(
            "Feature not implemented",
            "the Supabase emulator does not read logical filters (or=, and=)",
            code="PGRST127",
        )
    negate = text.startswith("not.")
    operator, dot, value = text.removeprefix("not.").partition(".")
    if not dot:
        raise QueryParamError("failed to parse filter", f"expected op.value, got {text!r}")
    condition = _condition(read, _identifier(key, "filter"), operator, value)
    read.filters.append(sql.SQL("not ({})").format(condition) if negate else condition)


def _count(text: str, what: str) -> int:
    if not text.isdigit():
        raise QueryParamError(f"failed to parse {what}", f"expected a number, got {text!r}")
    return int(text)


def parse_table_read(items: Iterable[tuple[str, str]], *, max_rows: int | None) -> TableRead:
    """The query string of a table read → its parts (filters bound as parameters)."""
    read = TableRead()
    for key, value in items:
        if key == "select":
            read.columns = _select(value)
        elif key == "order":
            read.order = _order(value)
        elif key == "limit":
            read.limit = _count(value, "limit")
        elif key == "offset":
            read.offset = _count(value, "offset")
        elif key not in RESERVED_PARAMS:
            _filter(read, key, value)
    if max_rows is not None:
        read.limit = max_rows if read.limit is None else min(read.limit, max_rows)
    return read


def table_statement(schema: str, table: str, read: TableRead, *, exact_count: bool) -> sql.Composed:
    """`select <json array>, <rows>, <first row>, <total or null>` for a table read."""
    relation = sql.SQL(".").join([sql.Identifier(schema), sql.Identifier(table)])
    where = (
        sql.SQL(" where ") + sql.SQL(" and ").join(read.filters) if read.filters else sql.SQL("")
    )
    order = sql.SQL(" order by ") + sql.SQL(", ").join(read.order) if read.order else sql.SQL("")
    limit = (
        sql.SQL(" limit {}").format(sql.Literal(read.limit))
        if read.limit is not None
        else sql.SQL("")
    )
    offset = sql.SQL(" offset {}").format(sql.Literal(read.offset))
    rows = sql.SQL("select {columns} from {relation}{where}{order}{limit}{offset}").format(
        columns=read.columns,
        relation=relation,
        where=where,
        order=order,
        limit=limit,
        offset=offset,
    )
    total = (
        sql.SQL("(select count(*) from {relation}{where})").format(relation=relation, where=where)
        if exact_count
        else sql.SQL("null::bigint")
    )
    return sql.SQL(
        "select coalesce(json_agg(_t), '[]')::text, count(*), (json_agg(_t) -> 0)::text, {total}"
        " from ({rows}) _t"
    ).format(total=total, rows=rows)
