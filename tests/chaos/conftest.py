import pytest


@pytest.fixture(autouse=True)
def no_faults_left(request):
    """A test that fails must not leave its faults (a held request above all) to the next one."""
    yield
    if "rig" in request.fixturenames:
        request.getfixturevalue("rig").proxy.clear()
