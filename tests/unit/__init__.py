"""Fast tests of pure logic that need no cluster.

The tree mirrors promote/: tests/unit/test_values.py tests promote/values.py, tests/unit/helm/test_failure.py
tests promote/helm/failure.py. Where one module has several test files, each is test_<module>_<aspect>.py.
"""
