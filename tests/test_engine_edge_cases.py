"""Engine edge cases found by running MOABB's own pipelines and evaluations."""

from __future__ import annotations

import pytest
from moabb.datasets import BNCI2014_001, PhysionetMI

from chatbci.bci.datasets import SimulatedMI, display_name


# ----------------------------------------------------------------------------
# One name per dataset


@pytest.mark.parametrize("given, shown", [
    ("PhysionetMotorImagery", "PhysionetMI"),  # MOABB's code, in old journals
    ("PhysionetMI", "PhysionetMI"),
    ("physionetmi", "PhysionetMI"),
    ("SimulatedMI-6b48168cb2", "SimulatedMI"),  # code with the parameter hash
    ("BNCI2014-001", "BNCI2014_001"),
    ("MyLabDataset", "MyLabDataset"),  # not catalogued: kept as given
])
def test_display_name_maps_every_old_name_to_the_catalog_name(given, shown):
    assert display_name(given) == shown


def test_display_name_of_instances_and_classes():
    assert display_name(PhysionetMI()) == "PhysionetMI"
    assert display_name(BNCI2014_001) == "BNCI2014_001"
    small, default = SimulatedMI(n_subjects=3), SimulatedMI()
    assert display_name(small) == display_name(default) == "SimulatedMI"
    # Told apart only on request, and then the suffix says what it is.
    a, b = (display_name(d, distinguish=True) for d in (small, default))
    assert a != b and a.startswith("SimulatedMI (parameters ")
    assert display_name(PhysionetMI(), distinguish=True) == "PhysionetMI"
