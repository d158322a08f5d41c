"""The test suite: unit/ (no cluster), cluster/ (by command, on the dev cluster), devcluster/ (the harness),
support/ (what they share), testdata/ (fixture files)."""
