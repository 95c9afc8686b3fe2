"""The types and grammar of the template generator's word banks.

The words themselves are data: ``words/<code>.json`` next to this module, read and checked by
`storyq.generation.wordbank` the first time a story in that language is written. This module
gives them their shape (`Lexicon`, `GenreWords`) and grammar (`en_noun`, `uk_noun`: a noun
phrase in the cases the templates use).

Sentence templates are `str.format` strings. The slots they may use:

- ``{hero}``, ``{friend}``: the two names (nominative);
- pronouns and verb endings of the hero (``{he}``, ``{his}``, ``{him}``, ...; in Ukrainian also
  ``{l}``/``{lsya}``, the past-tense endings -в/-ла and -вся/-лася); the friend's are the same
  keys prefixed with ``f`` (``{fhe}``, ``{fl}``);
- ``{place}``, ``{artifact}``, ``{threat}`` and their case forms ``{place_gen}``,
  ``{place_loc}`` (with its preposition), ``{artifact_acc}``, ...; ``{..._title}`` for titles;
- ``{sight}``, ``{sound}``: a detail of the genre (Ukrainian: already in the accusative);
- ``{premise}``, ``{keyword}``, ``{Keyword}``: taken from the prompt.

Titles may use only the names, pronouns and nouns. A template with any other slot fails when its
file is read, not in the middle of a story.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Gender = Literal["female", "male"]
# "turn" opens the climax (the danger arrives), "aftermath" ends it, "closing" ends the story.
Section = Literal["opening", "development", "turn", "climax", "aftermath", "resolution", "closing"]
Noun = Mapping[str, str]

SMALL_TITLE_WORDS = frozenset(
    {"a", "an", "and", "at", "beyond", "by", "from", "in", "of", "on", "the", "to", "under"}
)


def title_case(phrase: str) -> str:
    """'the manor on raven hill' -> 'Manor on Raven Hill' (no leading article)."""
    words = phrase.split()
    if words and words[0].lower() == "the":
        words = words[1:]
    cased = [
        word if i > 0 and word.lower() in SMALL_TITLE_WORDS else word[:1].upper() + word[1:]
        for i, word in enumerate(words)
    ]
    return " ".join(cased)


def en_noun(phrase: str, loc: str | None = None) -> Noun:
    """An English noun phrase with its article ('the old mill'); `loc` adds its preposition."""
    return {
        "nom": phrase,
        "gen": phrase,
        "acc": phrase,
        "loc": loc or f"in {phrase}",
        "title": title_case(phrase),
    }


def uk_noun(nom: str, *, gen: str, acc: str | None = None, loc: str | None = None) -> Noun:
    """A Ukrainian noun phrase in the cases the templates use (`loc` with its preposition)."""
    return {"nom": nom, "gen": gen, "acc": acc or nom, "loc": loc or nom, "title": nom}


class LexiconFileError(ValueError):
    """A word bank file that is missing or does not fit the types below (names the file)."""


@dataclass(frozen=True)
class GenreWords:
    """What makes a story of one genre: its places, objects, dangers, details and mood."""

    places: tuple[Noun, ...]
    artifacts: tuple[Noun, ...]
    threats: tuple[Noun, ...]
    sights: tuple[str, ...]
    sounds: tuple[str, ...]
    atmosphere: tuple[str, ...]


@dataclass(frozen=True)
class Lexicon:
    """Everything the writer needs for one language."""

    code: str
    names: Mapping[Gender, tuple[str, ...]]
    pronouns: Mapping[Gender, Mapping[str, str]]
    genres: Mapping[str, GenreWords]
    default_genre: str
    genre_aliases: Mapping[str, str]
    # Substrings of a prompt that suggest a genre when the request names none.
    genre_hints: tuple[tuple[str, str], ...]
    stopwords: frozenset[str]
    # A regex for "write me a story about" and the like, stripped from the prompt's premise.
    instruction_prefix: str
    titles: tuple[str, ...]
    premises: tuple[str, ...]
    # Words that start a noun phrase ("a", "the"): the word after one makes a better keyword,
    # and a premise starting with one reads better in lower case after a colon.
    determiners: frozenset[str]
    keyword_lines: tuple[str, ...]
    sections: Mapping[Section, tuple[str, ...]] = field(default_factory=dict)
