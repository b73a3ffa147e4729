import pytest

from tests.chaos.harness import open_rig
from tests.support.waiting import wait_until

# What a module's rig is unless its RIG_OPTIONS says otherwise.
RIG_DEFAULTS = {
    "folder": "chaos",  # the rig's temporary folder (its logs are there), under pytest's own
    "worker_env": {},  # variables for every worker of the module
    "first_worker": "w1",  # started (and ready) before the module's first test
    "first_worker_holds_every_lease": False,  # and, if set, waited for until it holds every lease
}


@pytest.fixture(scope="module")
def rig(request, tmp_path_factory):
    """One stack and one KCL for the module. A module says how its rig differs
    with a dict RIG_OPTIONS of the keys of RIG_DEFAULTS."""
    options = {**RIG_DEFAULTS, **getattr(request.module, "RIG_OPTIONS", {})}
    unknown = set(options) - set(RIG_DEFAULTS)
    assert not unknown, f"{request.module.__name__}: unknown RIG_OPTIONS {sorted(unknown)}"
    with open_rig(tmp_path_factory.mktemp(options["folder"]), **options["worker_env"]) as rig:
        first = options["first_worker"]
        rig.worker(first)
        if options["first_worker_holds_every_lease"]:
            wait_until(lambda: set(rig.lease_owners().values()) == {first}, 120,
                       f"{first} to hold every lease")
        yield rig


@pytest.fixture(autouse=True)
def no_faults_left(request):
    """A test that fails must not leave its faults (a held request above all) to the next one."""
    yield
    if "rig" in request.fixturenames:
        request.getfixturevalue("rig").proxy.clear()
