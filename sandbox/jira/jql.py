"""A small JQL subset: tokenizer and recursive-descent parser producing an immutable syntax tree.

EMULATOR CODE. Error texts follow the messages Jira returns ("Error in the JQL Query: …"). Evaluation
against issues lives in ``state.py``; this module only knows the language.
"""

from __future__ import annotations

from dataclasses import dataclass

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"})
_RESERVED_CHARS = "+;?*/%^$#@[]"
_OPERATORS = ("!=", ">=", "<=", "!~", "=", ">", "<", "~")
_VALID_OPERATORS = (
    "'=', '!=', '<', '>', '<=', '>=', '~', '!~', 'IN', 'NOT IN', 'IS' and 'IS NOT'"
)


class JqlError(Exception):
    """A JQL query Jira would reject with 400; ``message`` is Jira's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Token:
    """One lexical token with its 1-based character position."""

    kind: str  # WORD, STRING, OP, LPAREN, RPAREN, COMMA, AND, OR, NOT, EOF
    text: str
    position: int

    @property
    def lowered(self) -> str:
        """The token text in lower case (JQL keywords are case-insensitive)."""
        return self.text.lower()


@dataclass(frozen=True)
class Value:
    """A literal operand; ``quoted`` tells whether it was written as a string."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Function:
    """A function operand such as ``currentUser()`` or ``membersOf("group")``."""

    name: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Empty:
    """The ``EMPTY`` / ``null`` operand."""


@dataclass(frozen=True)
class ValueList:
    """A parenthesised list operand for ``in`` / ``not in``."""

    items: tuple[Value | Function, ...]


Operand = Value | Function | Empty | ValueList


@dataclass(frozen=True)
class Clause:
    """``field operator operand``."""

    field: str
    operator: str  # lower case: "=", "!=", "in", "not in", "is", "is not", ">", ...
    operand: Operand


@dataclass(frozen=True)
class And:
    """All children hold."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """At least one child holds."""

    children: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """The child does not hold."""

    child: Node


Node = Clause | And | Or | Not


@dataclass(frozen=True)
class SortKey:
    """One ``ORDER BY`` item."""

    field: str
    descending: bool


@dataclass(frozen=True)
class Query:
    """A parsed query: optional restriction plus ordering."""

    where: Node | None
    order_by: tuple[SortKey, ...]

    @property
    def bounded(self) -> bool:
        """Whether the query has a search restriction (Jira Cloud refuses unbounded queries)."""
        return self.where is not None


def _error(detail: str, position: int | None = None) -> JqlError:
    where = f" (line 1, character {position})" if position is not None else ""
    return JqlError(f"Error in the JQL Query: {detail}{where}")


def tokenize(jql: str) -> list[Token]:
    """Split a JQL string into tokens, rejecting reserved characters outside quotes."""
    tokens: list[Token] = []
    i = 0
    while i < len(jql):
        ch = jql[i]
        pos = i + 1
        if ch.isspace():
            i += 1
        elif ch in "\"'":
            i, text = _read_string(jql, i)
            tokens.append(Token("STRING", text, pos))
        elif ch == "(":
            tokens.append(Token("LPAREN", ch, pos))
            i += 1
        elif ch == ")":
            tokens.append(Token("RPAREN", ch, pos))
            i += 1
        elif ch == ",":
            tokens.append(Token("COMMA", ch, pos))
            i += 1
        elif jql.startswith("&&", i):
            tokens.append(Token("AND", "&&", pos))
            i += 2
        elif jql.startswith("||", i):
            tokens.append(Token("OR", "||", pos))
            i += 2
        elif any(jql.startswith(op, i) for op in _OPERATORS):
            op = next(op for op in _OPERATORS if jql.startswith(op, i))
            tokens.append(Token("OP", op, pos))
            i += len(op)
        elif ch == "!":
            tokens.append(Token("NOT", ch, pos))
            i += 1
        elif ch in _RESERVED_CHARS or ch in "&|":
            raise _error(
                f"The character '{ch}' is a reserved JQL character. You must enclose it in a "
                f"string or use the escape '\\u{ord(ch):04x}' instead.",
                pos,
            )
        else:
            start = i
            while i < len(jql) and (jql[i].isalnum() or jql[i] in "_-:."):
                i += 1
            if i == start:
                raise _error(f"The character '{ch}' is a reserved JQL character.", pos)
            tokens.append(_word(jql[start:i], pos))
    tokens.append(Token("EOF", "", len(jql) + 1))
    return tokens


def _word(text: str, pos: int) -> Token:
    lowered = text.lower()
    if lowered == "and":
        return Token("AND", text, pos)
    if lowered == "or":
        return Token("OR", text, pos)
    if lowered == "not":
        return Token("NOT", text, pos)
    return Token("WORD", text, pos)


def _read_string(jql: str, start: int) -> tuple[int, str]:
    quote = jql[start]
    i = start + 1
    out: list[str] = []
    while i < len(jql):
        ch = jql[i]
        if ch == "\\" and i + 1 < len(jql):
            out.append(jql[i + 1])
            i += 2
            continue
        if ch == quote:
            return i + 1, "".join(out)
        out.append(ch)
        i += 1
    raise _error(f"The quoted string '{jql[start + 1:]}' has not been completed.", start + 1)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0

    def peek(self) -> Token:
        return self._tokens[self._index]

    def advance(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def at_order_by(self) -> bool:
        token = self.peek()
        return token.kind == "WORD" and token.lowered == "order"

    def query(self) -> Query:
        where: Node | None = None
        if self.peek().kind != "EOF" and not self.at_order_by():
            where = self.or_expr()
        order: tuple[SortKey, ...] = ()
        if self.at_order_by():
            order = self.order_by()
        token = self.peek()
        if token.kind != "EOF":
            raise _error(f"Expecting either 'OR' or 'AND' but got '{token.text}'.", token.position)
        return Query(where, order)

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.peek().kind == "OR":
            self.advance()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    def and_expr(self) -> Node:
        children = [self.not_expr()]
        while self.peek().kind == "AND":
            self.advance()
            children.append(self.not_expr())
        return children[0] if len(children) == 1 else And(tuple(children))

    def not_expr(self) -> Node:
        token = self.peek()
        if token.kind == "NOT":
            self.advance()
            return Not(self.not_expr())
        if token.kind == "LPAREN":
            self.advance()
            inner = self.or_expr()
            closing = self.peek()
            if closing.kind != "RPAREN":
                if closing.kind == "EOF":
                    raise _error("Expecting ')' before the end of the query.")
                raise _error(f"Expecting ')' but got '{closing.text}'.", closing.position)
            self.advance()
            return inner
        return self.clause()

    def field_name(self) -> str:
        token = self.peek()
        if token.kind in ("WORD", "STRING") and token.lowered not in KEYWORDS:
            self.advance()
            return token.text
        if token.kind == "EOF":
            raise _error("Expecting a field name at the end of the query.")
        raise _error(f"Expecting a field name but got '{token.text}'.", token.position)

    def operator(self) -> str:
        token = self.advance()
        if token.kind == "OP":
            return token.text
        if token.kind == "WORD" and token.lowered == "in":
            return "in"
        if token.kind == "WORD" and token.lowered == "is":
            if self.peek().kind == "NOT":
                self.advance()
                return "is not"
            return "is"
        if token.kind == "NOT" and token.text != "!":
            nxt = self.advance()
            if nxt.kind == "WORD" and nxt.lowered == "in":
                return "not in"
            raise _error(f"Expecting 'IN' but got '{nxt.text}'.", nxt.position)
        got = "the end of the query" if token.kind == "EOF" else f"'{token.text}'"
        raise _error(
            f"Expecting operator but got {got}. The valid operators are {_VALID_OPERATORS}.",
            None if token.kind == "EOF" else token.position,
        )

    def clause(self) -> Clause:
        field = self.field_name()
        operator = self.operator()
        operand = self.operand()
        if operator in ("is", "is not") and not isinstance(operand, Empty):
            raise _error(
                f"The operator '{operator.upper()}' only supports the 'EMPTY' or 'null' values."
            )
        if operator in ("in", "not in") and not isinstance(operand, ValueList | Function):
            raise _error(
                f"The operator '{operator.upper()}' only supports a list of values or a function."
            )
        return Clause(field, operator, operand)

    def operand(self) -> Operand:
        token = self.peek()
        if token.kind == "LPAREN":
            self.advance()
            items = [self.single_value()]
            while self.peek().kind == "COMMA":
                self.advance()
                items.append(self.single_value())
            closing = self.advance()
            if closing.kind != "RPAREN":
                raise _error("Expecting ')' before the end of the query.")
            return ValueList(tuple(items))
        if token.kind == "WORD" and token.lowered in ("empty", "null"):
            self.advance()
            return Empty()
        return self.single_value()

    def single_value(self) -> Value | Function:
        token = self.advance()
        if token.kind == "STRING":
            return Value(token.text, quoted=True)
        if token.kind == "WORD" and token.lowered not in KEYWORDS:
            if self.peek().kind == "LPAREN":
                return self.function_args(token.text)
            return Value(token.text)
        got = "the end of the query" if token.kind == "EOF" else f"'{token.text}'"
        hint = (
            ""
            if token.kind == "EOF"
            else f" You must surround '{token.text}' in quotation marks to use it as a value."
        )
        raise _error(
            f"Expecting either a value, list or function but got {got}.{hint}",
            None if token.kind == "EOF" else token.position,
        )

    def function_args(self, name: str) -> Function:
        self.advance()  # (
        args: list[str] = []
        while self.peek().kind != "RPAREN":
            token = self.advance()
            if token.kind not in ("WORD", "STRING"):
                raise _error(f"Expecting ')' but got '{token.text}'.", token.position)
            args.append(token.text)
            if self.peek().kind == "COMMA":
                self.advance()
        self.advance()  # )
        return Function(name, tuple(args))

    def order_by(self) -> tuple[SortKey, ...]:
        self.advance()  # order
        by = self.advance()
        if not (by.kind == "WORD" and by.lowered == "by"):
            raise _error(f"Expecting 'by' but got '{by.text}'.", by.position)
        keys = [self.sort_key()]
        while self.peek().kind == "COMMA":
            self.advance()
            keys.append(self.sort_key())
        return tuple(keys)

    def sort_key(self) -> SortKey:
        field = self.field_name()
        token = self.peek()
        descending = False
        if token.kind == "WORD" and token.lowered in ("asc", "desc"):
            self.advance()
            descending = token.lowered == "desc"
        return SortKey(field, descending)


def parse(jql: str) -> Query:
    """Parse a JQL string; raise :class:`JqlError` with Jira's wording on bad syntax."""
    return _Parser(tokenize(jql)).query()
