"""Time limits shared by the whole suite, in one place.

A module of its own, not ``conftest.py``: tests/nbcheck_notebooks/ has a
conftest too, and ``from conftest import ...`` would find whichever pytest
imported last.
"""

import os

#: Seconds any test waits for a subprocess or a Jupyter kernel (start-up, a
#: reply, a whole run) before it fails. Generous on purpose: a run beside other
#: CPU-heavy jobs must not fail on time. ``TF1_EMA_TEST_TIMEOUT`` overrides it.
TIMEOUT = float(os.environ.get("TF1_EMA_TEST_TIMEOUT", "900"))
