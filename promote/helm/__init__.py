"""The helm adapter: the only package that runs helm.

- `binary`: which helm runs ($PROMOTE_HELM, beside Python, PATH), its version, its environment;
- `failure`: helm's stderr classified into promote's HelmError subclasses;
- `client`: argv through pyhelm3, run with a timeout and killed on cancel (imports pyhelm3: load it
  only where helm runs).
"""
