"""The table reads the Supabase emulator answers, as PostgREST parses and runs them:
`GET /rest/v1/<table>?select=a,b&col=eq.1&order=a.desc&limit=10&offset=0`.

Owns parsing the query string (`parse_table_read`: select, filters, order, limit, offset, with
PostgREST's 400 PGRST100 for what it cannot parse) and the one statement that answers it
(`table_statement`: the JSON array, the row count, the first row, and the exact total when
`Prefer: count=exact` asks for it). Every identifier goes through `psycopg.sql.Identifier`, every
value is a bound parameter.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from psycopg import sql

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
