"""Human consistency study for MeDiM: clinicians rate image–report pairs, blinded and resumable.

Parts: ``models`` (SQLAlchemy schema), ``store`` (all database logic), ``study`` (builder and hooks for new pairs),
``ui`` (Gradio rating tab/app), ``stats`` (agreement statistics and exports), ``__main__`` (command line).
Heavy modules (Gradio, pandas, SciPy) load only when their part is used.
"""

from eval_human.store import AuthenticationError, NotAssignedError, StudyError, StudyStore
from eval_human.study import add_pairs_from_folder, build_study, submit_generated_pair

__all__ = [
    "AuthenticationError",
    "NotAssignedError",
    "StudyError",
    "StudyStore",
    "add_pairs_from_folder",
    "build_study",
    "submit_generated_pair",
    "build_rating_app",
    "build_rating_tab",
]


def __getattr__(name: str):
    """Import the Gradio UI only when asked for, so the store and CLI stay light."""
    if name in ("build_rating_app", "build_rating_tab"):
        from eval_human import ui

        return getattr(ui, name)
    raise AttributeError(f"module 'eval_human' has no attribute {name!r}")
