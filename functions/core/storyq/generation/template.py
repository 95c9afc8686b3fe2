"""The offline generator: a procedural story writer that needs no model and no key.

It writes a titled story in four movements (opening, development, climax, resolution) from
sentence templates, with a cast, a place, an object and a danger drawn for the genre, the
prompt's premise and keywords woven in, in English or Ukrainian, sized to the target word
count. The same seed always gives the same story. `delay_seconds` stretches the run (to stand
in for a 4-5 minute model call) and reports the words "written" so far along the way.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import re
from dataclasses import dataclass

from storyq.generation.contract import (
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    count_words,
)
from storyq.generation.errors import PermanentGenerationError
from storyq.generation.lexicon import Gender, GenreWords, Lexicon, LexiconFileError, Section

# Share of the target each movement gets; the closing line ends the resolution.
_MOVEMENTS: tuple[tuple[Section, float], ...] = (
    ("opening", 0.15),
    ("development", 0.45),
    ("climax", 0.25),
    ("resolution", 0.15),
)
_UKRAINIAN_CODES = frozenset({"uk", "ua", "ukr", "ukrainian", "українська"})
_PREMISE_MAX_WORDS = 40
_KEYWORD_SHARE = 0.12
_ATMOSPHERE_SHARE = 0.15
# Progress is reported at least this often while the delay runs.
_PROGRESS_INTERVAL_SECONDS = 0.25
_WORD = re.compile(r"\S+")


def lexicon_for(language: str) -> Lexicon:
    """Ukrainian for uk/ua (any region), English for everything else.

    The word banks are data files, read on the first story in their language (not on import).
    """
    from storyq.generation.wordbank import load_lexicon

    code = language.strip().lower().replace("_", "-").split("-")[0]
    return load_lexicon("uk" if code in _UKRAINIAN_CODES else "en")


def _genre_of(lexicon: Lexicon, genre: str | None, prompt: str) -> str:
    if genre:
        named = lexicon.genre_aliases.get(genre.strip().lower())
        if named is not None:
            return named
    lowered = prompt.lower()
    for hint, hinted in lexicon.genre_hints:
        if hint in lowered:
            return hinted
    return lexicon.default_genre


def _premise(lexicon: Lexicon, prompt: str) -> str:
    text = " ".join(prompt.split())
    text = re.sub(lexicon.instruction_prefix, "", text, count=1, flags=re.IGNORECASE)
    words = text.split()
    if len(words) > _PREMISE_MAX_WORDS:
        words = [*words[:_PREMISE_MAX_WORDS], "…"]
    if words and words[0].lower() in lexicon.determiners:
        words[0] = words[0].lower()  # it follows a colon: "...came down to this: a dragon"
    return " ".join(words).rstrip(" .!?;:,")


def _keywords(lexicon: Lexicon, premise: str, limit: int = 5) -> list[str]:
    """Content words of the premise; those right after a determiner (likely nouns) when there
    are at least two of them."""
    words = [w.lower() for w in re.findall(r"[^\W\d_]+(?:['\u2019-][^\W\d_]+)*", premise)]

    def content(candidates: list[str]) -> list[str]:
        kept = [w for w in candidates if len(w) >= 4 and w not in lexicon.stopwords]
        return list(dict.fromkeys(kept))[:limit]

    nouns = content([w for prev, w in itertools.pairwise(words) if prev in lexicon.determiners])
    return nouns if len(nouns) >= 2 else content(words)


def _capitalise(sentence: str) -> str:
    for i, char in enumerate(sentence):
        if char.isalpha():
            return sentence[:i] + char.upper() + sentence[i + 1 :]
    return sentence


class _Deck:
    """Draws templates without repeating one until all have been used."""

    def __init__(self, rng: random.Random, cards: tuple[str, ...]) -> None:
        self._rng = rng
        self._cards = cards
        self._pile: list[str] = []

    def draw(self) -> str:
        if not self._pile:
            self._pile = list(self._cards)
            self._rng.shuffle(self._pile)
        return self._pile.pop()


@dataclass
class _Story:
    title: str
    paragraphs: list[list[str]]

    @property
    def content(self) -> str:
        return "\n\n".join(" ".join(paragraph) for paragraph in self.paragraphs)


class _Writer:
    """One story: the cast and setting are drawn once, then sentences fill each movement."""

    def __init__(self, request: GenerationRequest) -> None:
        # Reproducible prose, not secrets: a seeded PRNG is the point.
        self._rng = random.Random(request.effective_seed)  # noqa: S311
        self._lexicon = lexicon_for(request.language)
        self._target = max(1, request.target_words)
        self._request = request
        genre = self._lexicon.genres[_genre_of(self._lexicon, request.genre, request.prompt)]
        self._premise = _premise(self._lexicon, request.prompt)
        self._keywords = _keywords(self._lexicon, self._premise)
        self._slots = self._cast() | self._setting(genre)
        self._sights, self._sounds = genre.sights, genre.sounds
        self._atmosphere = _Deck(self._rng, genre.atmosphere)
        self._keyword_lines = _Deck(self._rng, self._lexicon.keyword_lines)
        self._decks = {
            name: _Deck(self._rng, lines) for name, lines in self._lexicon.sections.items()
        }

    def _cast(self) -> dict[str, str]:
        slots: dict[str, str] = {}
        for role, prefix in (("hero", ""), ("friend", "f")):
            gender: Gender = self._rng.choice(("female", "male"))
            names = [n for n in self._lexicon.names[gender] if n not in slots.values()]
            slots[role] = self._rng.choice(names)
            for key, value in self._lexicon.pronouns[gender].items():
                slots[prefix + key] = value
        return slots

    def _setting(self, genre: GenreWords) -> dict[str, str]:
        slots: dict[str, str] = {}
        choices = {"place": genre.places, "artifact": genre.artifacts, "threat": genre.threats}
        for role, nouns in choices.items():
            noun = self._rng.choice(nouns)
            slots[role] = noun["nom"]
            for case, form in noun.items():
                slots[f"{role}_{case}"] = form
        return slots

    def _fill(self, template: str) -> str:
        keyword = self._rng.choice(self._keywords) if self._keywords else ""
        slots = self._slots | {
            "sight": self._rng.choice(self._sights),
            "sound": self._rng.choice(self._sounds),
            "premise": self._premise,
            "keyword": keyword,
            "Keyword": keyword[:1].upper() + keyword[1:],
        }
        return _capitalise(template.format_map(slots))

    def _next_sentence(self, section: Section) -> str:
        roll = self._rng.random()
        if section in ("development", "climax") and self._keywords and roll < _KEYWORD_SHARE:
            return self._fill(self._keyword_lines.draw())
        if section != "climax" and roll > 1 - _ATMOSPHERE_SHARE:
            return self._fill(self._atmosphere.draw())
        return self._fill(self._decks[section].draw())

    def title(self) -> str:
        given = (self._request.title or "").strip()
        if given:
            return given
        return _capitalise(self._rng.choice(self._lexicon.titles).format_map(self._slots))

    def write(self) -> _Story:
        sentences_by_movement: list[list[str]] = []
        words, budget = 0, 0.0
        for section, share in _MOVEMENTS:
            budget += share * self._target
            lead, tail = self._frame(section)
            movement = self._movement(section, budget - words, lead=lead, tail=tail)
            words += sum(count_words(sentence) for sentence in movement)
            sentences_by_movement.append(movement)
        paragraphs = [p for movement in sentences_by_movement for p in self._paragraphs(movement)]
        return _Story(title=self.title(), paragraphs=paragraphs)

    def _frame(self, section: Section) -> tuple[list[str], list[str]]:
        """The sentences a movement must start and end with."""
        if section == "opening":
            lead = [self._fill(self._decks["opening"].draw())]
            if self._premise:
                lead.append(self._fill(self._rng.choice(self._lexicon.premises)))
            return lead, []
        if section == "climax":
            return [self._fill(self._decks["turn"].draw())], [
                self._fill(self._decks["aftermath"].draw())
            ]
        if section == "resolution":
            return [], [self._fill(self._decks["closing"].draw())]
        return [], []

    def _movement(
        self, section: Section, budget: float, *, lead: list[str], tail: list[str]
    ) -> list[str]:
        """`lead`, then sentences of the section while they fit `budget` words, then `tail`."""
        sentences = list(lead)
        words = sum(count_words(sentence) for sentence in (*lead, *tail))
        while True:
            sentence = self._next_sentence(section)
            length = count_words(sentence)
            if words + length / 2 > budget:
                break
            sentences.append(sentence)
            words += length
        return [*sentences, *tail]

    def _paragraphs(self, sentences: list[str]) -> list[list[str]]:
        """Paragraphs of 3-6 sentences; a lone last sentence joins the paragraph before it."""
        paragraphs: list[list[str]] = []
        rest = list(sentences)
        while rest:
            size = self._rng.randint(3, 6)
            paragraphs.append(rest[:size])
            rest = rest[size:]
        if len(paragraphs) > 1 and len(paragraphs[-1]) == 1:
            paragraphs[-2].extend(paragraphs.pop())
        return paragraphs


def write_story(request: GenerationRequest) -> tuple[str, str]:
    """(title, content) for a request; the same seed gives the same story."""
    story = _Writer(request).write()
    return story.title, story.content


class TemplateGenerator:
    """The `template` generator (GENERATOR=template, the default)."""

    name = "template"

    def __init__(self, *, delay_seconds: float = 0.0) -> None:
        self._delay = max(0.0, delay_seconds)

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        try:
            title, content = write_story(request)
        except LexiconFileError as exc:  # a broken build: no retry would write this story
            raise PermanentGenerationError("generator_misconfigured", str(exc)[:500]) from exc
        words = count_words(content)
        await self._pace(content, on_progress)
        return GenerationResult(
            title=title,
            content=content,
            words=words,
            target_words=request.target_words,
            finish_reason="stop",
            generator=self.name,
        )

    async def _pace(self, content: str, on_progress: ProgressCallback) -> None:
        """Release the text word by word over the delay, as a model streams it."""
        ends = [match.end() for match in _WORD.finditer(content)]
        steps = max(1, math.ceil(self._delay / _PROGRESS_INTERVAL_SECONDS))
        on_progress("")
        for step in range(1, steps + 1):
            if self._delay:
                await asyncio.sleep(self._delay / steps)
            written = len(ends) * step // steps
            on_progress(content[: ends[written - 1]] if written else "")
