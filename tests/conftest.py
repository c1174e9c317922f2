"""Shared test set-up: an isolated user cache for the whole session (transfer matrices and
decoded datasets are built once per session, never written to the real user cache)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    if "OPTICSFREE_TEST_CACHE" in os.environ:  # reuse between local runs if asked
        os.environ["OPTICSFREE_CACHE"] = os.environ["OPTICSFREE_TEST_CACHE"]
    else:
        os.environ["OPTICSFREE_CACHE"] = str(tmp_path_factory.mktemp("opticsfree-cache"))
    yield
