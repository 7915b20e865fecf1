"""routelib: uncertainty-based routing from on-device small LMs to stronger LLMs.

An executable reproduction of Chuang et al. 2025 (arXiv 2502.04428). Modules, one per concern:
``config`` (paths, seed), ``data`` (the 14 datasets), ``hub`` (Hugging Face loader),
``models`` (model registry, GGUF cache), ``backend`` (batched transformers backend),
``fake`` (test backend), ``prompts``, ``grading``, ``answer`` (answer + grade records),
``runs`` (resumable cached generation), ``selection`` (prompt/scoring choice on train data),
``report`` (accuracy tables), ``passes`` (model passes feeding the UQ methods), ``stats`` (statistic names), ``uq`` (the 8 uncertainty
methods), ``probe`` (trained MLP probes), ``metrics`` (AUROC), ``routing`` (router simulation),
``calibration`` (calibration data and threshold transfer), ``distributions`` (confidence
distribution shift), ``cli``.

Importing routelib has no side effects and loads neither torch nor a model.
"""
__version__ = "0.1.0"
