"""Unit tests of promote.engine."""
