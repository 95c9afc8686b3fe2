"""The offline `template` generator: a titled, multi-paragraph story of about the target
length, shaped by prompt, genre and language, the same for the same seed."""

# The Ukrainian test text is Cyrillic on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
import time

import pytest

from storyq.config import Settings
from storyq.generation import (
    GenerationRequest,
    TemplateGenerator,
    build_generator,
    count_words,
    quality_label,
)
from storyq.generation.template import write_story

CYRILLIC = re.compile(r"[\u0400-\u04ff]")
LATIN = re.compile(r"[A-Za-z]")


def request(**overrides: object) -> GenerationRequest:
    fields: dict[str, object] = {
        "job_id": "0d6f5b1e-7a55-4b7e-9a8e-3f0c1c2d4e5f",
        "prompt": "Write a story about a lighthouse keeper who collects storms in jars",
        "target_words": 800,
    }
    fields.update(overrides)
    return GenerationRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("target", [100, 300, 1200, 5000])
@pytest.mark.parametrize("language", ["en", "uk"])
def test_the_story_is_about_as_long_as_asked(target: int, language: str) -> None:
    for seed in range(20):
        _, content = write_story(request(target_words=target, language=language, seed=seed))
        assert abs(count_words(content) - target) <= max(20, target * 0.05)


def test_the_story_has_a_title_and_paragraphs() -> None:
    title, content = write_story(request())
    paragraphs = content.split("\n\n")
    assert title
    assert title not in ("", content)
    assert len(paragraphs) >= 6
    assert all(paragraph.strip().endswith((".", '"', "»")) for paragraph in paragraphs)


def test_a_given_title_is_kept() -> None:
    title, _ = write_story(request(title="Jars of Thunder"))
    assert title == "Jars of Thunder"


def test_the_same_seed_writes_the_same_story_and_another_seed_another() -> None:
    assert write_story(request(seed=7)) == write_story(request(seed=7))
    assert write_story(request(seed=7)) != write_story(request(seed=8))
    # Without a seed the job id decides: a retried job writes the same story
    assert write_story(request()) == write_story(request())
    assert write_story(request()) != write_story(request(job_id="another-job"))


def test_the_prompt_shapes_the_story() -> None:
    _, content = write_story(request(seed=3))
    # the premise, without the "write a story about" instruction
    assert "a lighthouse keeper who collects storms in jars" in content
    assert "Write a story" not in content


def test_the_genre_shapes_the_setting() -> None:
    mystery_places = ("manor", "night train", "museum", "warehouse", "library")
    for seed in range(5):
        _, content = write_story(request(genre="Mystery", seed=seed, prompt="a missing cat"))
        assert any(place in content for place in mystery_places)
    # Without a genre, the prompt hints at one (a dragon: fantasy)
    fantasy_places = ("tower", "Whispering Wood", "mill", "mountain pass", "chapel")
    _, content = write_story(request(prompt="a dragon who bakes bread", seed=1))
    assert any(place in content for place in fantasy_places)


@pytest.mark.parametrize("language", ["uk", "uk-UA", "ua"])
def test_ukrainian_stories_are_written_in_ukrainian(language: str) -> None:
    title, content = write_story(
        request(
            language=language,
            prompt="Напиши історію про доглядача маяка, який збирає бурі в банки",
            genre="фентезі",
        )
    )
    assert CYRILLIC.search(title)
    assert not LATIN.search(title + content)
    assert "доглядача маяка, який збирає бурі в банки" in content
    assert "Напиши історію" not in content
    assert len(content.split("\n\n")) >= 6


async def test_the_delay_is_spread_over_growing_progress_reports() -> None:
    # Given a generator that takes a second
    generator = TemplateGenerator(delay_seconds=1.0)
    reports: list[tuple[float, int]] = []
    began = time.monotonic()

    # When it writes a story
    result = await generator.generate(
        request(target_words=500),
        lambda words: reports.append((time.monotonic() - began, words)),
    )

    # Then it took the delay, and the words reported grew steadily to the story's length
    assert time.monotonic() - began >= 1.0
    words = [count for _, count in reports]
    assert words == sorted(words)
    assert words[-1] == result.words
    assert len({count for at, count in reports if at < 0.9}) >= 3
    assert (result.finish_reason, result.generator, result.quality) == ("stop", "template", "high")
    assert result.words == count_words(result.content)


def test_quality_follows_length_and_finish_reason() -> None:
    assert quality_label(words=1000, target_words=1000, finish_reason="stop") == "high"
    assert quality_label(words=700, target_words=1000, finish_reason="stop") == "medium"
    assert quality_label(words=300, target_words=1000, finish_reason="stop") == "low"
    assert quality_label(words=2000, target_words=1000, finish_reason="stop") == "low"
    assert quality_label(words=950, target_words=1000, finish_reason="length") == "medium"
    assert quality_label(words=400, target_words=1000, finish_reason="length") == "low"


def test_build_generator_picks_by_setting(worker_free_settings: Settings) -> None:
    template = build_generator(worker_free_settings.model_copy(update={"generator": "template"}))
    assert template.name == "template"
    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        build_generator(worker_free_settings.model_copy(update={"generator": "openai"}))
