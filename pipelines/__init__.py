"""The Kubeflow v2 pipeline: the same stages as dvc.yaml, wired through components/*/component.py."""
