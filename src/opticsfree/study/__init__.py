"""The one-command study (``opticsfree run CONFIG.toml``) and its report.

Public API::

    load_study_config(path) -> StudyConfig            validated TOML (ConfigError names the key)
    plan_study(cfg) -> list[Stage]                    the stages, in order, with their keys
    run_study(config_path, out=None, device=None) -> summary dict

See docs/study.md.
"""

from opticsfree.study.config import StudyConfig, load_study_config, study_config_from_dict
from opticsfree.study.runner import run_study
from opticsfree.study.base import Stage
from opticsfree.study.engine import StageError
from opticsfree.study.plan import plan_study

__all__ = ["Stage", "StageError", "StudyConfig", "load_study_config", "plan_study", "run_study",
           "study_config_from_dict"]
