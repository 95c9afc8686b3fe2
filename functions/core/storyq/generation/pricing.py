"""What an attempt's tokens cost, from the MODEL_PRICES setting (storyq.config).

Prices are US dollars per million tokens, prompt and completion apart, as providers list them.
A model without a price (and no `*` entry) costs 0: the tokens are still recorded, so the cost
can be worked out later.
"""

from __future__ import annotations

from collections.abc import Mapping

from storyq.generation.contract import Usage

PER_TOKENS = 1_000_000
ANY_MODEL = "*"


def cost_usd(usage: Usage, prices: Mapping[str, tuple[float, float]]) -> float:
    """US dollars for `usage` at `prices` (model -> (prompt, completion) per million tokens),
    rounded to 8 decimals (what the attempts table keeps)."""
    price = prices.get(usage.model or "", prices.get(ANY_MODEL))
    if price is None:
        return 0.0
    prompt, completion = price
    dollars = (usage.prompt_tokens * prompt + usage.completion_tokens * completion) / PER_TOKENS
    return round(dollars, 8)
