"""Optional link from the demo to the human-evaluation study (`eval_human`): send a generated pair to be rated.

It is on only when MEDIM_STUDY_DB (a SQLite path or SQLAlchemy URL) and MEDIM_STUDY_ID (a study id or name) are
set and `eval_human` can be imported; otherwise `StudyHook.enabled` is False and `reason` says why, so the demo
hides the button and can show that reason instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)


@dataclass
class StudyHook:
    """Where generated pairs go for rating; `enabled` False means the feature is off (see `reason`)."""

    store: Any = None
    study_id: int | None = None
    reason: str = ""

    @property
    def enabled(self) -> bool:
        return self.store is not None and self.study_id is not None

    def submit(self, image: Image.Image, report: str, source: dict[str, Any]) -> int:
        """Add one pair to the study; returns its item id. Raises RuntimeError when the hook is off."""
        if not self.enabled:
            raise RuntimeError(f"Rating is not available: {self.reason}")
        from eval_human.study import submit_generated_pair

        return int(submit_generated_pair(self.store, self.study_id, image, report, source))


def study_hook_from_env(env: dict[str, str] | None = None) -> StudyHook:
    """Open the study named by MEDIM_STUDY_DB / MEDIM_STUDY_ID, or return a disabled hook saying why."""
    env = os.environ if env is None else env
    db, study = env.get("MEDIM_STUDY_DB"), env.get("MEDIM_STUDY_ID")
    if not db or not study:
        return StudyHook(reason="set MEDIM_STUDY_DB and MEDIM_STUDY_ID to send pairs to a rating study")
    try:
        from eval_human.store import StudyStore
        from eval_human.study import submit_generated_pair  # noqa: F401  (checks the API is there)
    except ImportError as error:
        return StudyHook(reason=f"the eval_human module is not installed ({error})")
    try:
        store = StudyStore(db)
        study_id = int(study) if study.strip().isdigit() else store.study_id_by_name(study.strip())
        store.study_info(study_id)  # fails early on an unknown id
    except Exception as error:  # a wrong path, an unknown study or a schema problem: keep the demo running
        logger.warning("rating study unavailable: %s", error)
        return StudyHook(reason=f"the rating study could not be opened ({type(error).__name__}: {error})")
    return StudyHook(store=store, study_id=study_id)
