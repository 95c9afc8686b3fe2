"""Helpers the tests share: their local stacks (built by storyq_local.stack) and API users."""
