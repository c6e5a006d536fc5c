"""The H5MD writer and OpenMM reporter: layout, completion counter, validation, and MDAnalysis reading our files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_like.streams import H5MDReporter, H5MDWriter

N_ATOMS = 3
OBSERVABLES = {"contacts": ((N_ATOMS, N_ATOMS), np.uint8), "rmsd": ((), np.float32), "cv": (2, np.float64)}


def frame(i: int) -> dict:
    """A deterministic frame ``i`` with every declared observable."""
    rng = np.random.default_rng(i)
    return {
        "positions": rng.uniform(0.0, 3.0, size=(N_ATOMS, 3)),
        "step": 100 * i,
        "time": 0.2 * i,
        "box": [3.0, 3.5, 4.0 + i],
        "observables": {
            "contacts": (rng.uniform(size=(N_ATOMS, N_ATOMS)) > 0.5).astype(np.uint8),
            "rmsd": np.float32(0.1 * i),
            "cv": rng.normal(size=2),
        },
    }


def write(path: Path, frames: int, **options) -> H5MDWriter:
    writer = H5MDWriter(path, N_ATOMS, observables=OBSERVABLES, periodic=True, **options)
    for i in range(frames):
        writer.write_frame(**frame(i))
    return writer


def read_swmr(path: Path) -> h5py.File:
    """Open a file as a tailer does: the only way to read one that is still being written."""
    return h5py.File(path, "r", libver="latest", swmr=True, locking=False)


def complete(path: Path) -> int:
    with read_swmr(path) as f:
        return int(f["mummi_like/complete"][0])


def test_round_trip_of_positions_box_step_time_and_observables_in_the_h5md_layout(tmp_path: Path) -> None:
    path = tmp_path / "traj.h5md"
    with write(path, 4):
        pass
    assert not list(tmp_path.glob(".*")), "the temporary creation name must be gone"
    with h5py.File(path, "r") as f:
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/author"].attrs["name"] == "mummi-like" and "name" in f["h5md/creator"].attrs
        trajectory = f["particles/trajectory"]
        position = trajectory["position/value"]
        assert position.shape == (4, N_ATOMS, 3) and position.dtype == np.float32
        assert position.chunks == (1, N_ATOMS, 3) and position.maxshape == (None, N_ATOMS, 3)
        assert position.attrs["unit"] == "nm" and trajectory["position/time"].attrs["unit"] == "ps"
        assert trajectory["box"].attrs["dimension"] == 3
        assert list(trajectory["box"].attrs["boundary"]) == 3 * ["periodic"]
        assert trajectory["box/edges/value"].attrs["unit"] == "nm"
        assert list(trajectory["position/step"][:]) == [0, 100, 200, 300]
        np.testing.assert_allclose(trajectory["box/edges/time"][:], [0.0, 0.2, 0.4, 0.6])
        assert int(f["mummi_like/complete"][0]) == 4
        for i in range(4):
            expected = frame(i)
            np.testing.assert_allclose(position[i], expected["positions"], rtol=1e-6)
            np.testing.assert_allclose(trajectory["box/edges/value"][i], np.diag(expected["box"]), rtol=1e-6)
            for name, value in expected["observables"].items():
                stored = f[f"observables/{name}/value"][i]
                assert f[f"observables/{name}/value"].dtype == np.dtype(OBSERVABLES[name][1])
                np.testing.assert_allclose(stored, value, rtol=1e-6)
                assert int(f[f"observables/{name}/step"][i]) == 100 * i


def test_frames_become_complete_only_at_a_flush(tmp_path: Path) -> None:
    path = tmp_path / "traj.h5md"
    writer = write(path, 2, flush_every=3)
    assert (writer.frames_written, writer.frames_complete, complete(path)) == (2, 0, 0)
    writer.write_frame(**frame(2))
    assert (writer.frames_complete, complete(path)) == (3, 3)
    writer.write_frame(**frame(3))
    assert complete(path) == 3
    writer.close()
    assert complete(path) == 4
    writer.close()  # closing twice is harmless
    with pytest.raises(ValueError, match="closed"):
        writer.write_frame(**frame(4))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.update(positions=np.zeros((N_ATOMS + 1, 3))), r"positions has shape \(4, 3\), expected \(3, 3\)"),
        (lambda f: f["observables"].update(contacts=np.zeros((2, 2), np.uint8)), "observable 'contacts' has shape"),
        (lambda f: f["observables"].update(contacts=np.zeros((3, 3))), "float64, which does not cast to .* uint8"),
        (lambda f: f["observables"].pop("cv"), r"missing \['cv'\]"),
        (lambda f: f["observables"].update(extra=1.0), r"not declared \['extra'\]"),
        (lambda f: f.update(box=None), "needs a box"),
        (lambda f: f.update(box=np.ones((2, 2))), r"box has shape \(2, 2\)"),
        (lambda f: f.update(step=50), "step 50 is smaller than the previous frame's 100"),
        (lambda f: f.update(time=float("nan")), "time is nan"),
    ],
)
def test_an_invalid_frame_is_refused_whole_and_the_file_keeps_its_complete_frames(
    tmp_path: Path, change, message: str
) -> None:
    path = tmp_path / "traj.h5md"
    with write(path, 2) as writer:
        bad = frame(2)
        change(bad)
        with pytest.raises(ValueError, match=message) as raised:
            writer.write_frame(**bad)
        assert f"{path}: frame 2" in str(raised.value)
        assert writer.frames_written == 2
        with read_swmr(path) as f:
            assert int(f["mummi_like/complete"][0]) == 2
            assert {f[name].shape[0] for name in ("particles/trajectory/position/value", "observables/cv/value")} == {2}
        assert writer.write_frame(**frame(2)) == 2, "the writer keeps going after a refused frame"


@pytest.mark.parametrize(
    ("field", "poison"),
    [
        ("positions", lambda f: f["positions"].__setitem__((1, 2), np.nan)),
        ("observable 'rmsd'", lambda f: f["observables"].update(rmsd=np.float32(np.inf))),
        ("observable 'cv'", lambda f: f["observables"]["cv"].__setitem__(0, np.nan)),
        ("box", lambda f: f.update(box=[3.0, np.nan, 3.0])),
    ],
)
def test_nan_or_inf_raises_naming_file_frame_and_field_and_writes_nothing(tmp_path: Path, field: str, poison) -> None:
    path = tmp_path / "traj.h5md"
    with write(path, 3) as writer:
        bad = frame(3)
        poison(bad)
        with pytest.raises(ValueError) as raised:
            writer.write_frame(**bad)
    text = str(raised.value)
    assert str(path) in text and "frame 3" in text and field in text and "NaN or infinite" in text
    assert "not written" in text
    with h5py.File(path, "r") as f:
        assert int(f["mummi_like/complete"][0]) == 3
        assert f["particles/trajectory/position/value"].shape[0] == 3
        assert np.isfinite(f["particles/trajectory/position/value"][:]).all()


def test_constructor_refuses_bad_sizes_and_observable_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_atoms"):
        H5MDWriter(tmp_path / "a.h5md", 0)
    with pytest.raises(ValueError, match="flush_every"):
        H5MDWriter(tmp_path / "a.h5md", 1, flush_every=0)
    with pytest.raises(ValueError, match="observable name 'a/b'"):
        H5MDWriter(tmp_path / "a.h5md", 1, observables={"a/b": ((), float)})
    assert list(tmp_path.iterdir()) == []


def write_pdb(path: Path, n_atoms: int) -> Path:
    lines = [
        f"ATOM  {i + 1:5d}  C   MOL A   1    {0.0:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00           C"
        for i in range(n_atoms)
    ]
    path.write_text("\n".join([*lines, "END", ""]))
    return path


def test_mdanalysis_reads_frames_coordinates_times_box_and_observables(tmp_path: Path) -> None:
    mda = pytest.importorskip("MDAnalysis")
    path = tmp_path / "traj.h5md"
    with write(path, 5):
        pass
    universe = mda.Universe(str(write_pdb(tmp_path / "top.pdb", N_ATOMS)), str(path))
    assert universe.trajectory.n_frames == 5
    for i, ts in enumerate(universe.trajectory):
        expected = frame(i)
        np.testing.assert_allclose(ts.positions, 10.0 * expected["positions"], atol=1e-4)
        assert ts.time == pytest.approx(expected["time"])
        np.testing.assert_allclose(ts.dimensions, [10.0 * x for x in expected["box"]] + [90.0] * 3, atol=1e-4)
        assert ts.data["step"] == expected["step"]
        np.testing.assert_array_equal(ts.data["contacts"], expected["observables"]["contacts"])


def test_mdanalysis_reads_a_file_still_being_written_through_an_swmr_handle(tmp_path: Path) -> None:
    mda = pytest.importorskip("MDAnalysis")
    from MDAnalysis.coordinates.H5MD import H5MDReader

    path = tmp_path / "traj.h5md"
    topology = str(write_pdb(tmp_path / "top.pdb", N_ATOMS))
    with write(path, 3) as writer, read_swmr(path) as handle:
        # The Reader class, not the name "H5MD": MDAnalysis takes an iterable h5py.File for a list of files.
        universe = mda.Universe(topology, handle, format=H5MDReader)
        assert universe.trajectory.n_frames == writer.frames_complete == 3
        np.testing.assert_allclose(universe.trajectory[2].positions, 10.0 * frame(2)["positions"], atol=1e-4)


def test_the_framework_writes_streams_without_openmm_installed(tmp_path: Path) -> None:
    probe = (
        "import sys; sys.modules['openmm'] = None\n"  # any `import openmm` now fails
        "import mummi_like.streams as s\n"
        f"w = s.H5MDWriter({str(tmp_path / 'a.h5md')!r}, 2); w.write_frame([[0, 0, 0], [1, 1, 1]], step=0, time=0.0)\n"
        "w.close(); print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def small_simulation(periodic: bool):
    """Three particles held by two harmonic bonds, on the Reference platform: a real OpenMM run in milliseconds."""
    openmm = pytest.importorskip("openmm")
    from openmm import app, unit

    system = openmm.System()
    topology = app.Topology()
    residue = topology.addResidue("MOL", topology.addChain())
    carbon = app.Element.getBySymbol("C")
    atoms = [topology.addAtom(f"C{i}", carbon, residue) for i in range(3)]
    bonds = openmm.HarmonicBondForce()
    for i in range(3):
        system.addParticle(12.0)
    for i, j in ((0, 1), (1, 2)):
        bonds.addBond(i, j, 0.15, 2.0e4)
        topology.addBond(atoms[i], atoms[j])
    if periodic:
        vectors = [openmm.Vec3(2.0, 0, 0), openmm.Vec3(0, 2.5, 0), openmm.Vec3(0, 0, 3.0)] * unit.nanometer
        system.setDefaultPeriodicBoxVectors(*vectors)
        topology.setPeriodicBoxVectors(vectors)
        bonds.setUsesPeriodicBoundaryConditions(True)
    system.addForce(bonds)
    integrator = openmm.VerletIntegrator(0.001 * unit.picoseconds)
    simulation = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("Reference"))
    simulation.context.setPositions(np.array([[0.0, 0.0, 0.0], [0.17, 0.0, 0.0], [0.17, 0.14, 0.0]]) + 0.5)
    return simulation


def bond_length(simulation, state) -> np.ndarray:
    from openmm import unit

    positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    return np.float64(np.linalg.norm(positions[1] - positions[0]))


def test_openmm_reporter_writes_a_frame_per_interval_with_box_and_observables(tmp_path: Path) -> None:
    simulation = small_simulation(periodic=True)
    path = tmp_path / "md.h5md"
    reporter = H5MDReporter(path, 10, observables={"bond": bond_length}, selection=[0, 1])
    simulation.reporters.append(reporter)
    simulation.step(50)
    final = simulation.context.getState(getPositions=True).getPositions(asNumpy=True)._value
    with read_swmr(path) as f:
        assert int(f["mummi_like/complete"][0]) == 5, "every report is complete as soon as it is written"
    reporter.close()
    with h5py.File(path, "r") as f:
        trajectory = f["particles/trajectory"]
        positions = trajectory["position/value"][:]
        assert positions.shape == (5, 2, 3)
        assert list(trajectory["position/step"][:]) == [10, 20, 30, 40, 50]
        np.testing.assert_allclose(trajectory["position/time"][:], [0.01, 0.02, 0.03, 0.04, 0.05], rtol=1e-9)
        np.testing.assert_allclose(positions[-1], final[:2], atol=1e-6)
        lengths = f["observables/bond/value"][:]
        np.testing.assert_allclose(lengths, np.linalg.norm(positions[:, 1] - positions[:, 0], axis=1), atol=1e-5)
        assert len(set(np.round(lengths, 6))) > 1, "the bond vibrates: every frame is a new state"
        np.testing.assert_allclose(trajectory["box/edges/value"][0], np.diag([2.0, 2.5, 3.0]), atol=1e-6)


def test_openmm_reporter_stops_the_simulation_at_a_nan_observable(tmp_path: Path) -> None:
    simulation = small_simulation(periodic=False)
    path = tmp_path / "md.h5md"

    def diverging(simulation, state) -> np.ndarray:
        return np.array([np.nan if simulation.currentStep >= 30 else 1.0])

    with H5MDReporter(path, 10, observables={"cv": diverging}) as reporter:
        assert reporter.describeNextReport(simulation) == {"steps": 10, "periodic": None, "include": ["positions"]}
        simulation.reporters.append(reporter)
        with pytest.raises(ValueError, match=r"frame 2 \(step 30\): observable 'cv' contains 1 NaN"):
            simulation.step(50)
    with h5py.File(path, "r") as f:
        assert int(f["mummi_like/complete"][0]) == 2
        assert f["particles/trajectory/position/value"].shape == (2, 3, 3)
        assert list(f["particles/trajectory/box"].attrs["boundary"]) == 3 * ["none"]
        assert "edges" not in f["particles/trajectory/box"]
