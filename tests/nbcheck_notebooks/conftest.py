"""The notebooks here are inputs of tests/test_nbcheck.py, several made to fail on purpose.

`make test` runs `pytest --nbval tests notebooks`; nbval must not collect them. They are
collected only under `--nbcheck` (which the tests pass explicitly, on copies).
"""


def pytest_ignore_collect(collection_path, config):
    """Keeps these notebooks away from nbval; --nbcheck may still collect them."""
    if collection_path.suffix == ".ipynb" and not config.getoption("nbcheck", default=False):
        return True
    return None
