"""The template generator's word banks: ``words/<code>.json``, read and checked once per process.

A file holds only words; `storyq.generation.lexicon` gives them their types and grammar. Keys:

- ``names``: ``female`` and ``male`` first names (at least two each: hero and friend differ);
- ``pronouns``: per gender, what ``{he}``, ``{his}``, ... stand for (the same keys for both);
- ``instruction_prefix``: a regex for "write me a story about", cut from the prompt's start;
- ``determiners`` and ``stopwords``: how keywords are picked from the prompt;
- ``titles``, ``premises``, ``keyword_lines`` and ``sections`` (one list per `Section`):
  sentence templates, with the slots `storyq.generation.lexicon` lists;
- ``default_genre`` and ``genres``: per genre, the ``aliases`` a request may name it by, the
  ``hints`` in a prompt that suggest it (tried genre by genre in the file's order), its
  ``places``, ``artifacts`` and ``threats`` (nouns), and ``sights``, ``sounds`` and
  ``atmosphere`` lines.

Aliases, hints, determiners and stopwords are matched in lower case. A noun is written as its
language's helper takes it: in English a phrase with its article, or ``{"nom", "loc"}`` when
"in <phrase>" is the wrong preposition (`en_noun`); in Ukrainian ``{"nom", "gen", "acc"?,
"loc"?}`` (`uk_noun`).

A file that does not fit raises `LexiconFileError` naming the file and every problem found. The
package does not import this module: the template generator does, for its first story.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Annotated, Any, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from storyq.generation.lexicon import (
    GenreWords,
    Lexicon,
    LexiconFileError,
    Noun,
    Section,
    en_noun,
    uk_noun,
)

SECTIONS: tuple[Section, ...] = get_args(Section)
# What template._Writer adds to the names, pronouns and nouns for every sentence but the title.
_SENTENCE_SLOTS = frozenset({"sight", "sound", "premise", "keyword", "Keyword"})

Text = Annotated[str, StringConstraints(min_length=1)]
Texts = Annotated[tuple[Text, ...], Field(min_length=1)]
Lowered = Annotated[str, StringConstraints(min_length=1, to_lower=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Noun(_Model):
    def forms(self) -> Noun:
        raise NotImplementedError


class EnglishNoun(_Noun):
    """A phrase with its article, or {"nom": ..., "loc": ...} when "in <phrase>" is wrong."""

    nom: Text
    loc: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _phrase(cls, value: Any) -> Any:
        return {"nom": value} if isinstance(value, str) else value

    def forms(self) -> Noun:
        return en_noun(self.nom, self.loc)


class UkrainianNoun(_Noun):
    """Nominative and genitive; accusative and locative (with its preposition) when they differ
    from the nominative."""

    nom: Text
    gen: Text
    acc: Text | None = None
    loc: Text | None = None

    def forms(self) -> Noun:
        return uk_noun(self.nom, gen=self.gen, acc=self.acc, loc=self.loc)


class GenreFile[N: _Noun](_Model):
    aliases: Annotated[tuple[Lowered, ...], Field(min_length=1)]
    hints: tuple[Lowered, ...] = ()
    places: Annotated[tuple[N, ...], Field(min_length=1)]
    artifacts: Annotated[tuple[N, ...], Field(min_length=1)]
    threats: Annotated[tuple[N, ...], Field(min_length=1)]
    sights: Texts
    sounds: Texts
    atmosphere: Texts

    def nouns(self) -> tuple[N, ...]:
        return (*self.places, *self.artifacts, *self.threats)


class ByGender[T](_Model):
    female: T
    male: T


class Sections(_Model):
    opening: Texts
    development: Texts
    turn: Texts
    climax: Texts
    aftermath: Texts
    resolution: Texts
    closing: Texts


class LexiconFile[N: _Noun](_Model):
    names: ByGender[Annotated[tuple[Text, ...], Field(min_length=2)]]
    pronouns: ByGender[dict[str, str]]
    instruction_prefix: Text
    determiners: tuple[Lowered, ...]
    stopwords: tuple[Lowered, ...]
    titles: Texts
    premises: Texts
    keyword_lines: Texts
    sections: Sections
    default_genre: Text
    genres: Annotated[dict[str, GenreFile[N]], Field(min_length=1)]

    @field_validator("instruction_prefix")
    @classmethod
    def _a_regex(cls, value: str) -> str:
        try:
            re.compile(value, flags=re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    def problems(self) -> list[str]:
        """What the types cannot say: the parts of the file agree with each other."""
        return [*self._genre_problems(), *self._template_problems()]

    def _genre_problems(self) -> Iterator[str]:
        if self.default_genre not in self.genres:
            yield f"default_genre: {self.default_genre!r} is not one of the genres"
        for kind, one in (("aliases", "alias"), ("hints", "hint")):
            seen: dict[str, str] = {}
            for name, genre in self.genres.items():
                for word in getattr(genre, kind):
                    if seen.setdefault(word, name) != name:
                        yield f"genres.{name}.{kind}: the {one} {word!r} is {seen[word]}'s too"

    def _template_problems(self) -> Iterator[str]:
        female, male = self.pronouns.female.keys(), self.pronouns.male.keys()
        if female != male:
            yield f"pronouns: female and male differ in {sorted(female ^ male)}"
        pronouns = female & male
        # The cases every noun has ({place_gen}, ...): a story may draw any of them.
        cases = functools.reduce(
            frozenset.intersection,
            (frozenset(noun.forms()) for genre in self.genres.values() for noun in genre.nouns()),
        )
        cast = {"hero", "friend", *pronouns, *(f"f{key}" for key in pronouns)}
        setting = {
            slot
            for role in ("place", "artifact", "threat")
            for slot in (role, *(f"{role}_{case}" for case in cases))
        }
        in_titles = cast | setting
        in_sentences = in_titles | _SENTENCE_SLOTS
        for where, template in self._templates():
            allowed = in_titles if where.startswith("titles.") else in_sentences
            try:
                unknown = _slots(template) - allowed
            except ValueError as exc:
                yield f"{where}: {exc}: {template!r}"
                continue
            if unknown:
                listed = ", ".join(f"{{{slot}}}" for slot in sorted(unknown))
                yield f"{where}: unknown slot {listed} in {template!r}"

    def _templates(self) -> Iterator[tuple[str, str]]:
        """(where, template) for every sentence template of the file."""
        lists = [
            ("titles", self.titles),
            ("premises", self.premises),
            ("keyword_lines", self.keyword_lines),
            *((f"sections.{name}", getattr(self.sections, name)) for name in SECTIONS),
            *(
                (f"genres.{name}.atmosphere", genre.atmosphere)
                for name, genre in self.genres.items()
            ),
        ]
        for where, templates in lists:
            yield from ((f"{where}.{i}", template) for i, template in enumerate(templates))


def _slots(template: str) -> set[str]:
    """The slots a `str.format` template names (ValueError when it is not one)."""
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


# Which noun grammar each language's file is written in.
_FILES: dict[str, type[LexiconFile[Any]]] = {
    "en": LexiconFile[EnglishNoun],
    "uk": LexiconFile[UkrainianNoun],
}


def words_file(code: str) -> Traversable:
    """Where a language's word bank ships: inside the package, next to this module."""
    return resources.files("storyq.generation") / "words" / f"{code}.json"


@functools.cache
def load_lexicon(code: str) -> Lexicon:
    """The word bank of a language ("en", "uk"), read the first time it is asked for."""
    if code not in _FILES:
        raise LexiconFileError(f"no word bank for the language {code!r}")
    return read_lexicon(words_file(code), code=code)


def read_lexicon(path: Traversable, *, code: str) -> Lexicon:
    """Read and check one word bank file (`code` says which noun grammar it is written in)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except OSError as exc:
        raise LexiconFileError(f"word bank {path} cannot be read: {exc}") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a repeated key
        raise LexiconFileError(f"word bank {path} is not valid JSON: {exc}") from exc
    try:
        data = _FILES[code].model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '(the file)'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise LexiconFileError(_listed(path, problems)) from exc
    problems = data.problems()
    if problems:
        raise LexiconFileError(_listed(path, problems))
    return _lexicon(code, data)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key written twice (json would silently keep the last)."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"repeated keys {repeated}")
    return dict(pairs)


def _listed(path: Traversable, problems: list[str], limit: int = 20) -> str:
    shown = [f"\n  {problem}" for problem in problems[:limit]]
    if len(problems) > limit:
        shown.append(f"\n  ... and {len(problems) - limit} more")
    return f"word bank {path} is malformed:{''.join(shown)}"


def _lexicon(code: str, data: LexiconFile[Any]) -> Lexicon:
    genres = data.genres.items()
    return Lexicon(
        code=code,
        names={"female": data.names.female, "male": data.names.male},
        pronouns={"female": data.pronouns.female, "male": data.pronouns.male},
        genres={name: _genre_words(genre) for name, genre in genres},
        default_genre=data.default_genre,
        genre_aliases={alias: name for name, genre in genres for alias in genre.aliases},
        genre_hints=tuple((hint, name) for name, genre in genres for hint in genre.hints),
        stopwords=frozenset(data.stopwords),
        instruction_prefix=data.instruction_prefix,
        titles=data.titles,
        premises=data.premises,
        determiners=frozenset(data.determiners),
        keyword_lines=data.keyword_lines,
        sections={section: getattr(data.sections, section) for section in SECTIONS},
    )


def _genre_words(genre: GenreFile[Any]) -> GenreWords:
    return GenreWords(
        places=tuple(noun.forms() for noun in genre.places),
        artifacts=tuple(noun.forms() for noun in genre.artifacts),
        threats=tuple(noun.forms() for noun in genre.threats),
        sights=genre.sights,
        sounds=genre.sounds,
        atmosphere=genre.atmosphere,
    )
