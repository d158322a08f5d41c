"""Tests on the real local control plane (the session dev cluster), one module per command."""
