"""Story generators: the contract, the offline `template` writer and the `openai` client.

`build_generator(settings)` picks one by GENERATOR. The openai module is imported only when it
is chosen, so the template generator's cold start does not pay for the openai package.
"""

from __future__ import annotations

from storyq.config import Settings
from storyq.generation.contract import (
    GenerationRequest,
    GenerationResult,
    Generator,
    ProgressCallback,
    Quality,
    Usage,
    count_words,
    estimated_tokens,
    quality_label,
    seed_from_job_id,
)
from storyq.generation.errors import (
    GenerationError,
    PermanentGenerationError,
    TransientGenerationError,
)
from storyq.generation.template import TemplateGenerator

__all__ = [
    "GenerationError",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "PermanentGenerationError",
    "ProgressCallback",
    "Quality",
    "TemplateGenerator",
    "TransientGenerationError",
    "Usage",
    "build_generator",
    "count_words",
    "estimated_tokens",
    "quality_label",
    "seed_from_job_id",
]


def build_generator(settings: Settings) -> Generator:
    """The generator GENERATOR names (raises ValueError when it is misconfigured)."""
    if settings.generator == "openai":
        from storyq.generation.openai_chat import OpenAIGenerator

        return OpenAIGenerator.from_settings(settings)
    return TemplateGenerator(delay_seconds=settings.generation_delay_seconds)
