"""Suite-wide settings: everything offline, no analytics, no test writes into the repo's data/, and release
signing keys in a directory of the test session (never the user's ~/.config/instruct-curator/keys)."""
import logging
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# one key directory for the session, set before any fixture (module-scoped ones included) signs a release;
# tests about keys set their own
os.environ["INSTRUCT_CURATOR_KEYS"] = tempfile.mkdtemp(prefix="curator-test-keys-")
# Ray Data's usage poller thread outlives a Ray test and logs a failed Prometheus query at DEBUG with its traceback;
# formatting a traceback calls `ast.parse` on CPython 3.11, and two threads in `ast.parse` at once can corrupt its
# shared recursion counter ("AST constructor recursion depth mismatch", gh-106905), failing whichever test parses.
logging.getLogger("ray.data._internal.usage").setLevel(logging.INFO)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    """Point the data root at a temporary directory unless a test sets its own."""
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))


@pytest.fixture(scope="module")
def spec():
    """The starter spec (a module may define its own `spec`)."""
    from tiny_model import starter_spec
    return starter_spec()


@pytest.fixture(scope="module")
def pairs(spec):
    """One pair per seed of `spec`."""
    from tiny_model import seed_pairs
    return seed_pairs(spec)
