"""What the tests share, one module per concern; nothing here is a test.

- ``paths``: where the checkout, its schemas and the test data are.
- ``repo``: throwaway Git repositories of definitions (the python-app chart, two environments), and
  edits of their definition.
- ``cli``: running promote, in-process (the one runner) or as its own process, and reading its
  JSON documents.
- ``kube``: the session cluster through the API and kubectl: live objects, pods, namespaces.
- ``helm``: helm's own CLI and its release storage, read independently of promote.
- ``wait``: the one polling loop.
- ``fieldpath``: plan field paths (``spec.template.spec.containers[name=app].ports[0]``).
- ``contract``: the published JSON Schemas and Secret-leak checks.
- ``charts``: tiny charts written on the fly.

The oracle is kept apart from the code under test: what helm and the cluster hold is read through
helm's CLI and the API, never through promote.
"""
