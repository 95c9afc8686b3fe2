"""Helpers the tests share: real processes and scratch databases."""
