"""What a finished generation records: the job row's `result`, from the generator that writes it
through the store to the API that shows it."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic.alias_generators import to_camel


class ResultUsage(BaseModel):
    """What the story cost in LLM tokens: the sums over the job's attempts that recorded usage
    (the failed ones included), added by the database when the job completes."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float  # at the worker's configured prices
    attempts: int  # the attempts whose usage was recorded
    # Some tokens were counted by the worker: the provider sent no usage (a cut stream).
    estimated: bool = False


class JobResult(BaseModel):
    """What a completed job records about its generation: the job row's `result`, stored as
    camelCase JSON (written so since the first release; GET /api/job shows part of it). Every
    field may be missing from a row written by hand or by an older worker."""

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )

    generation_time: float | None = None  # seconds, start of the attempt to its last token
    quality: str | None = None  # storyq.generation.contract.Quality: high, medium or low
    words: int | None = None
    target_words: int | None = None
    finish_reason: str | None = None  # the generator's: stop, length, ...
    generator: str | None = None  # template or openai
    model: str | None = None
    # Written by the database at completion, never by the worker (see as_row).
    usage: ResultUsage | None = None

    @field_validator("*", mode="wrap")
    @classmethod
    def _unreadable_is_unknown(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        # A row written by hand or by another version may hold a value of another type: the
        # field is then unknown (None) rather than the whole job unreadable.
        try:
            return handler(value)
        except ValidationError:
            return None

    def as_row(self) -> dict[str, object]:
        """The jsonb the SQL function stores (without `usage`: Postgres sums it from the
        attempts' rows when the job completes)."""
        return self.model_dump(mode="json", by_alias=True, exclude={"usage"})
