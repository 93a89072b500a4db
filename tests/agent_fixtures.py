"""Fixtures for tests that run a real agent server with the scripted LLM."""
