"""Tests of the dev-cluster harness (devcluster/) itself."""
