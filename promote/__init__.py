"""promote: plan and apply Helm releases through an ordered chain of environments, Git being the truth."""

__version__ = "0.1.0"
