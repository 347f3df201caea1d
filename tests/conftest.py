"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture
def emulator(tmp_path):
    """A running cloud emulator, with a service-account key for it at `emulator.key_path`."""
    from tests.cloud_emulator import CloudEmulator
    from tests.cloud_helpers import PROJECT

    with CloudEmulator() as emu:
        emu.key_path = emu.write_service_account_key(tmp_path / "key.json", PROJECT)
        yield emu


@pytest.fixture
def emu(emulator):
    """The same emulator, under the shorter name the emulator and submission tests use."""
    return emulator
