"""Entry point for `python app.py` and Hugging Face Spaces: launches the MeDiM Gradio demo (see app/ui.py).

Environment: MEDIM_CHECKPOINT (checkpoint directory or hub id), MEDIM_THREADS (torch threads, default 2),
MEDIM_STUDY_DB + MEDIM_STUDY_ID (optional rating study).
"""

import os

# Set before torch is imported. Passive OpenMP waiting keeps a 2-thread run fast when the cores are shared
# (another process, a noisy Space host): spinning threads otherwise make each step tens of times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from app.ui import main  # noqa: E402

if __name__ == "__main__":
    main()
