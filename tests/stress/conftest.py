import pytest

from tests.stress.harness import prepare_database


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """The example site's database (migrated, 20 products), made once per test session."""
    return prepare_database(tmp_path_factory.mktemp("stress-site"))

