"""vrft: reinforcement fine-tuning of vision-language models with verifiable rewards, on Ray.

The code lives in the repository's top-level folders and is imported under this one name:
``vrft.rollout`` (rollout/), ``vrft.learner`` (learner/), ``vrft.verifiers`` (verifiers/),
``vrft.orchestrator`` (orchestrator/). Each of those bare names is a different project on PyPI
(``verifiers`` is a widely used RL-environments library), so none of them is installed at the top
level. pyproject.toml maps the folders into this package for an
install (``package-dir``); this file does the same for a checkout used without installing it.
``vrft.testing`` (vrft/testing/) holds the offline fixtures: tiny models, synthetic data.
"""

import os as _os

# A checkout on sys.path without an install (a `ray job submit` working dir, which Ray puts on the
# job's and its workers' PYTHONPATH; the GPU check's PYTHONPATH=<repo>): the sub-packages are this
# folder's siblings, so the repository root joins this package's search path. An installed wheel
# holds them inside this folder and has no pyproject.toml beside it, so nothing is added there.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _root not in __path__:
    __path__.append(_root)
