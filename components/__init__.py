"""Pipeline stages. One package per stage: params.py (typed section), core.py (the logic),
__main__.py (the CLI that dvc.yaml runs) and component.py (the Kubeflow component)."""
