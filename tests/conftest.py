"""Shared test settings: strict JAX numerics where jax is used, and golden-file updates."""
import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files (diagnostics, SVG, DOT) from the current output")


@pytest.fixture
def update_golden(request) -> bool:
    return request.config.getoption("--update-golden") or os.environ.get("DIAGRAMMAR_UPDATE_GOLDEN") == "1"


@pytest.fixture(autouse=True, scope="session")
def _run_from_repository_root():
    """Tests name zoo files as circuits/...; run them from the checkout's root."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    old = os.getcwd()
    os.chdir(root)
    yield
    os.chdir(old)
