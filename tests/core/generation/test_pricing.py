"""What an attempt's tokens cost at the MODEL_PRICES setting."""

from __future__ import annotations

import pytest

from storyq.generation import Usage
from storyq.generation.pricing import cost_usd

PRICES = {"gpt-4o-mini": (0.15, 0.60), "*": (1.0, 4.0)}


def test_a_listed_model_costs_its_prompt_and_completion_prices_per_million() -> None:
    usage = Usage(model="gpt-4o-mini", prompt_tokens=2_000, completion_tokens=1_500)
    # 2,000 x $0.15 / 1M + 1,500 x $0.60 / 1M
    assert cost_usd(usage, PRICES) == pytest.approx(0.0003 + 0.0009)


def test_an_unlisted_model_costs_the_catch_all_price_or_nothing() -> None:
    usage = Usage(model="other", prompt_tokens=1_000_000, completion_tokens=0)
    assert cost_usd(usage, PRICES) == pytest.approx(1.0)
    assert cost_usd(usage, {"gpt-4o-mini": (0.15, 0.60)}) == 0.0


def test_no_tokens_cost_nothing() -> None:
    assert cost_usd(Usage(model="gpt-4o-mini"), PRICES) == 0.0
