"""`structure.json`: a fitted `TaskStructure` as a JSON-ready dict and back (unknown keys from newer versions warn
and are dropped)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._validation import InputError, check_is_fitted


def structure_to_dict(structure: Any) -> dict[str, Any]:
    """A JSON-ready description (parameters and fitted structure) for `structure.json`."""
    check_is_fitted(structure, ["segment_tasks_"])
    params = structure.get_params()
    params["test"] = params["test"] if isinstance(params["test"], str) else getattr(params["test"], "name", "custom")

    def clean(a: np.ndarray) -> Any:
        return [None if not np.isfinite(x) else float(x) for x in a.ravel()]

    return {
        "params": params,
        "segment_tasks": structure.segment_tasks_.astype(int).tolist(),
        "step_tasks": structure.step_tasks_.astype(int).tolist(),
        "pvalues": {"shape": list(structure.pvalues_.shape), "values": clean(structure.pvalues_)},
        "statistics": {"shape": list(structure.statistics_.shape), "values": clean(structure.statistics_)},
        "n_tests": structure.n_tests_,
        "conditioning_used": getattr(structure, "conditioning_", None),
        "conditioning_dims": getattr(structure, "conditioning_dims_", None),
        "decision_used": getattr(structure, "decision_", None),
        "carryover_used": getattr(structure, "carryover_", None),
        "reduction_used": getattr(structure, "reduction_", None),
        "task_names": getattr(structure, "task_names_", None),
        "context_used": getattr(structure, "context_", None),
        "markov_pvalue": getattr(structure, "markov_pvalue_", None),
        "critical_pvalue": getattr(structure, "critical_pvalue_", None),
        **{name: {"shape": list(value.shape), "values": clean(value)}
           for name in ("step_pvalues", "step_statistics", "step_r2", "temporal_pvalues", "kept_share")
           if (value := getattr(structure, f"{name}_", None)) is not None},
        "report": structure.report_rows(),
    }


def structure_from_dict(cls: type, payload: dict[str, Any]) -> Any:
    """Rebuild a fitted `cls` (`TaskStructure`) from `structure_to_dict` output.

    Unknown keys (written by a newer version) warn and are dropped, as in `SpecialistConfig.from_dict`.
    """
    if not isinstance(payload, dict):
        raise InputError(f"Invalid structure description: expected a JSON object, got {type(payload).__name__}.")
    known = {"params", "segment_tasks", "step_tasks", "pvalues", "statistics", "n_tests", "conditioning_used",
             "conditioning_dims", "decision_used", "carryover_used", "reduction_used", "context_used", "markov_pvalue",
             "critical_pvalue", "task_names", "step_pvalues", "step_statistics", "step_r2", "temporal_pvalues",
             "kept_share",
             "report"}
    params = dict(payload.get("params") or {})
    valid_params = set(cls().get_params())
    unknown = sorted(set(payload) - known) + [f"params.{k}" for k in sorted(set(params) - valid_params)]
    if unknown:
        warnings.warn(f"Ignoring unknown TaskStructure keys {unknown} (written by a newer hf_specialist?).",
                      UserWarning, stacklevel=3)
        params = {k: v for k, v in params.items() if k in valid_params}
    try:
        structure = cls(**params)
        structure.segment_tasks_ = np.asarray(payload["segment_tasks"], dtype=bool)
        structure.step_tasks_ = np.asarray(payload["step_tasks"], dtype=bool)
        for name in ("pvalues", "statistics", "step_pvalues", "step_statistics", "step_r2", "temporal_pvalues",
                     "kept_share"):
            if name not in ("pvalues", "statistics") and name not in payload:  # optional (older files, no reduction)
                continue
            block = payload[name]
            values = np.array([np.nan if v is None else v for v in block["values"]], dtype=float)
            setattr(structure, f"{name}_", values.reshape(block["shape"]))
        structure.n_tests_ = int(payload["n_tests"])
        structure.conditioning_ = payload.get("conditioning_used")
        structure.conditioning_dims_ = payload.get("conditioning_dims")
        structure.decision_ = payload.get("decision_used")
        structure.markov_pvalue_ = payload.get("markov_pvalue")
        structure.carryover_ = payload.get("carryover_used")
        structure.reduction_ = payload.get("reduction_used")
        names = payload.get("task_names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise InputError(f"`task_names` must be a list of strings, got {names!r}")
        structure.task_names_ = names
        if payload.get("context_used") is not None:  # fitted by hfs.discover / sweep_layers
            structure.context_ = payload["context_used"]
        if payload.get("critical_pvalue") is not None:
            structure.critical_pvalue_ = float(payload["critical_pvalue"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"Invalid structure description: {err}") from err
    structure.n_segments_, structure.n_tasks_ = structure.segment_tasks_.shape
    structure.n_steps_ = structure.step_tasks_.shape[0]
    if structure.task_names_ is not None and len(structure.task_names_) != structure.n_tasks_:
        raise InputError(f"Invalid structure description: {len(structure.task_names_)} task names for "
                         f"{structure.n_tasks_} tasks.")
    return structure
