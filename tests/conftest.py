"""Suite-wide settings: everything offline, no analytics, and no test writes into the repo's data/."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path, monkeypatch):
    """Point the data root and the signing-key directory at temporary directories unless a test sets its own."""
    monkeypatch.setenv("INSTRUCT_CURATOR_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("INSTRUCT_CURATOR_KEYS", str(tmp_path / "keys"))
