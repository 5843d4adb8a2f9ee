"""Test and benchmark harnesses that run real processes (shipped so bench/ can use them)."""
