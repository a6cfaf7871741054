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


TINY_MODADD = """# A tiny modular-addition MLP for command-line and training-run tests.
axis p = 7
axis arg = 2
axis hidden = 8

circuit Tiny(a: int[], b: int[]) -> [p]:
    x = stack(onehot(a, p), onehot(b, p), along = arg)
    h = relu(linear(x, (arg, p) -> hidden))
    return linear(h, hidden -> p)
"""


@pytest.fixture(scope="session")
def tiny_source() -> str:
    """TINY_MODADD's text, for module-scoped fixtures that write it where they train."""
    return TINY_MODADD


@pytest.fixture
def tiny(tmp_path) -> str:
    """The path of a file holding TINY_MODADD (a model that trains in a second)."""
    path = tmp_path / "tiny.circuit"
    path.write_text(TINY_MODADD)
    return str(path)
