"""Unit tests of promote.helm."""
