"""Protein-ligand complexes from real docked poses: AmberTools parameters, tleap topologies, systems and MD."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

EXTRA = "the docking and MD engines are the `campaign` extra: pip install -e '.[campaign]'"
pytest.importorskip("vina", reason=EXTRA)
pytest.importorskip("openmm", reason=EXTRA)

import openmm  # noqa: E402
from rdkit import Chem  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from mummi_like.streams.tailer import read_frame  # noqa: E402
from mummi_scales.drug_discovery import complexes as cx  # noqa: E402
from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.docking import DockingConfig, dock_batch, dock_payload  # noqa: E402

PROGESTERONE = dict(data.known_ligands())["known-progesterone"]
BUTYLAMINE = "CCCCN"
"""Protonated at pH 7.4 (an ammonium): the charged ligand, +1."""
FAST = DockingConfig(receptor="dockstring", box_size=20.0, exhaustiveness=4, max_evals=20_000, seed=1)
DOCKSTRING = data.docking_receptor("PGR", "dockstring", Path("unused: dockstring's receptor is not prepared"))
POCKET = 5.0
"""Truncation radius (angstrom) of the tests: small, so MD is quick."""


def dock(folder: Path, ligands: list[list[str]]) -> dict[str, dict[str, float | str]]:
    """Dock ``ligands`` into PGR with the fast setting, poses under ``folder/poses``."""
    folder.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return dock_batch(**dock_payload(FAST, ligands, {}, folder).kwargs)  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, cx.PreparedComplex]:
    """Progesterone and butylamine docked into PGR and built as truncated complexes sharing one cache."""
    root = tmp_path_factory.mktemp("complexes")
    results = dock(root / "dock", [["known-progesterone", PROGESTERONE], ["butylamine", BUTYLAMINE]])
    prepared = {}
    for ligand, smiles in (("known-progesterone", PROGESTERONE), ("butylamine", BUTYLAMINE)):
        prepared[ligand] = cx.prepare_complex(
            ligand, smiles, root / "dock" / str(results[ligand]["poses"]), DOCKSTRING, root / ligand,
            pocket_radius=POCKET, cache=root / "cache",
        )
    return prepared


def _charges(system: openmm.System) -> np.ndarray:
    force = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    return np.array([force.getParticleParameters(i)[0]._value for i in range(force.getNumParticles())])


@pytest.mark.slow
def test_complex_is_receptor_then_ligand_and_parts_are_slices(built: dict[str, cx.PreparedComplex]) -> None:
    complex = built["known-progesterone"]
    n = len(complex.receptor_atoms) + len(complex.ligand_atoms)
    assert complex.receptor_atoms == list(range(len(complex.receptor_atoms)))
    assert complex.ligand_atoms == list(range(len(complex.receptor_atoms), n))
    assert len(complex.ligand_atoms) == 53  # C21H30O2: every hydrogen is there
    positions = cx.initial_positions(complex)
    assert positions.shape == (n, 3)
    for part, atoms in (("receptor", complex.receptor_atoms), ("ligand", complex.ligand_atoms)):
        system, topology = cx.build_system(complex, part)
        assert system.getNumParticles() == topology.getNumAtoms() == len(atoms)
        part_positions = openmm.app.AmberInpcrdFile(str(complex.inpcrd(part))).getPositions(asNumpy=True)
        np.testing.assert_allclose(part_positions.value_in_unit(openmm.unit.nanometer), positions[atoms], atol=1e-6)
        np.testing.assert_allclose(_charges(system), _charges(cx.build_system(complex)[0])[atoms], atol=1e-6)
    assert cx.load_complex(complex.folder) == complex
    assert (complex.folder / cx.COMPLEX_PDB).is_file()


@pytest.mark.slow
def test_ligand_sits_in_its_docked_pose(built: dict[str, cx.PreparedComplex]) -> None:
    complex = built["known-progesterone"]
    pose = cx.read_pose(_pose_path(complex), complex.ligand_id)
    placed = cx.initial_positions(complex)[complex.ligand_atoms] * 10.0
    docked = pose.GetConformer().GetPositions()
    # The same atoms at the same places, in any order (tleap keeps the mol2's, which is the pose's).
    distances = np.linalg.norm(placed[:, None, :] - docked[None, :, :], axis=-1)
    assert distances.min(axis=1).max() < 1e-3


def _pose_path(complex: cx.PreparedComplex) -> Path:
    return complex.folder.parent / "dock" / "poses" / f"{complex.ligand_id}.sdf"


@pytest.mark.slow
def test_charged_ligand_has_its_net_charge(built: dict[str, cx.PreparedComplex]) -> None:
    amine, steroid = built["butylamine"], built["known-progesterone"]
    assert amine.net_charge == 1 and steroid.net_charge == 0
    ligand, _ = cx.build_system(amine, "ligand")
    assert _charges(ligand).sum() == pytest.approx(1.0, abs=1e-3)
    assert _charges(cx.build_system(steroid, "ligand")[0]).sum() == pytest.approx(0.0, abs=1e-3)


@pytest.mark.slow
def test_pocket_is_per_target_not_per_ligand(built: dict[str, cx.PreparedComplex]) -> None:
    amine, steroid = built["butylamine"], built["known-progesterone"]
    assert len(amine.pocket_ca) == len(steroid.pocket_ca) == 22  # PGR: C-alphas within 10 A of the box center
    for complex in (amine, steroid):
        atoms = list(cx.build_system(complex)[1].atoms())
        assert all(atoms[index].name == "CA" for index in complex.pocket_ca)
    # The same receptor atoms: identical positions, in the same order.
    np.testing.assert_allclose(cx.initial_positions(amine)[amine.pocket_ca],
                               cx.initial_positions(steroid)[steroid.pocket_ca], atol=1e-6)
    assert len(amine.receptor_atoms) != len(steroid.receptor_atoms)  # truncation follows each ligand


@pytest.mark.slow
def test_truncation_restrains_backbone_and_whole_protein_does_not(
    built: dict[str, cx.PreparedComplex], tmp_path: Path
) -> None:
    complex = built["butylamine"]
    topology = cx.build_system(complex)[1]
    atoms = list(topology.atoms())
    assert complex.restrained_atoms and {atoms[i].name for i in complex.restrained_atoms} == set(cx.BACKBONE)
    system = cx.build_system(complex)[0]
    restraint = next(f for f in system.getForces() if isinstance(f, openmm.CustomExternalForce))
    assert restraint.getNumParticles() == len(complex.restrained_atoms)
    assert restraint.getForceGroup() == cx.RESTRAINT_GROUP
    free = cx.build_system(complex, restrain=False)[0]
    assert not any(isinstance(f, openmm.CustomExternalForce) for f in free.getForces())

    whole = cx.prepare_complex("butylamine", BUTYLAMINE, _pose_path(complex), DOCKSTRING, tmp_path / "whole",
                               pocket_radius=None, cache=complex.folder.parent / "cache")
    assert whole.restrained_atoms == []
    assert len(whole.receptor_atoms) > 4 * len(complex.receptor_atoms)
    assert len(whole.pocket_ca) == 22
    # The ligand was parameterized once and reused.
    assert len(list((complex.folder.parent / "cache" / "ligands").iterdir())) == 2


@pytest.mark.slow
def test_receptor_is_cached_once_and_free_of_clashes(built: dict[str, cx.PreparedComplex]) -> None:
    cache = built["butylamine"].folder.parent / "cache"
    path = cx.prepared_receptor(DOCKSTRING, cache)
    assert [p.name for p in path.parent.iterdir()] == ["receptor.pdb"]  # no temporary file left behind
    residues = cx._read_receptor(path)
    atoms = [(index, name, xyz) for index, residue in enumerate(residues) for name, element, xyz in residue.atoms
             if element != "H"]
    xyz = np.array([atom[2] for atom in atoms])
    distances = np.linalg.norm(xyz[:, None, :] - xyz[None, :, :], axis=-1)
    owner = np.array([atom[0] for atom in atoms])
    peptide = np.array([[a[1] == "C" and b[1] == "N" and b[0] == a[0] + 1 for b in atoms] for a in atoms])
    between = (owner[:, None] != owner[None, :]) & ~peptide & ~peptide.T
    # dockstring's PGR has two arginine nitrogens 1.52 A apart; the relaxation pushes them to a contact distance.
    assert distances[between].min() > 2.2


@pytest.mark.slow
def test_solvent_cutoff_and_hydrogen_mass_options(built: dict[str, cx.PreparedComplex]) -> None:
    complex = built["butylamine"]
    fast = cx.build_system(complex, solvent="obc2", cutoff=2.0)[0]
    obc = next(f for f in fast.getForces() if isinstance(f, openmm.GBSAOBCForce))
    assert obc.getNonbondedMethod() == openmm.GBSAOBCForce.CutoffNonPeriodic
    accurate = cx.build_system(complex, solvent="gbn2", cutoff=None)[0]
    assert any(isinstance(f, openmm.CustomGBForce) for f in accurate.getForces())
    nonbonded = next(f for f in accurate.getForces() if isinstance(f, openmm.NonbondedForce))
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    heavy = cx.build_system(complex, hydrogen_mass=1.5)[0]
    topology = cx.build_system(complex)[1]
    hydrogen = next(a.index for a in topology.atoms() if a.element.symbol == "H")
    assert heavy.getParticleMass(hydrogen)._value == pytest.approx(1.5)
    assert fast.getParticleMass(hydrogen)._value == pytest.approx(1.008, abs=1e-3)


def test_ligand_amber_cannot_parameterize_fails_naming_ligand_tool_and_reason(tmp_path: Path) -> None:
    boronic = Chem.AddHs(Chem.MolFromSmiles("OB(O)c1ccccc1"))
    AllChem.EmbedMolecule(boronic, randomSeed=1)
    pose = tmp_path / "phenylboronic.sdf"
    Chem.MolToMolFile(boronic, str(pose))
    with pytest.raises(cx.ComplexError, match=r"ligand phenylboronic .*antechamber failed.*no AM1 parameters"):
        cx.prepare_complex("phenylboronic", "OB(O)c1ccccc1", pose, DOCKSTRING, tmp_path / "c", pocket_radius=POCKET,
                           cache=tmp_path / "cache")
    assert not (tmp_path / "c" / cx.COMPLEX_JSON).exists()
    assert list((tmp_path / "cache" / "ligands").iterdir()) == []  # no half-made parameters in the cache


def test_missing_pose_and_missing_complex_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(cx.ComplexError, match=r"ligand x: pose file .*nope.sdf does not exist; dock the ligand"):
        cx.prepare_complex("x", "C", tmp_path / "nope.sdf", DOCKSTRING, tmp_path / "c", pocket_radius=None,
                           cache=tmp_path / "cache")
    with pytest.raises(cx.ComplexError, match="holds no prepared complex"):
        cx.load_complex(tmp_path)


@pytest.mark.slow
def test_simulate_streams_frames_with_observables(built: dict[str, cx.PreparedComplex], tmp_path: Path) -> None:
    complex = built["known-progesterone"]
    stream = tmp_path / "trajectory.h5md"
    stats = cx.simulate(complex, cx.initial_positions(complex), steps=200, report_interval=50, seed=7,
                        stream=stream, timestep=0.004, hydrogen_mass=1.5, minimize_iterations=50)
    assert stats["frames"] == 4 and len(stats["ligand_rmsd"]) == len(stats["contacts"]) == 4
    assert stats["ns_per_day"] > 0 and np.isfinite(stats["potential_energy"])
    n = len(complex.receptor_atoms) + len(complex.ligand_atoms)
    last = read_frame(stream, 3)
    assert last.positions.shape == (n, 3) and last.step == 200
    contact_map = last.observables["ca_contact_map"]
    assert contact_map.shape == (22, 22) and contact_map.dtype == np.float32
    assert set(np.unique(contact_map)) <= {0.0, 1.0} and np.all(np.diag(contact_map) == 1.0)
    rmsd = float(last.observables["ligand_rmsd"])
    assert rmsd == pytest.approx(stats["ligand_rmsd"][-1]) and 0.0 < rmsd < 3.0  # 0.8 ps: still in its pose
    assert int(last.observables["contacts"]) == stats["contacts"][-1] > 10
    # The streamed observable agrees with one computed from the streamed positions.
    observables = cx.Observables.of(complex, cx.initial_positions(complex))
    assert observables.ligand_rmsd(last.positions.astype(np.float64)) == pytest.approx(rmsd, abs=1e-3)


# What the observables gave when they were computed in numpy (a Kabsch fit by SVD, full receptor-by-ligand and
# C-alpha distance matrices), on frames 0, 10, 40 and 97 of MDAnalysis's adenylate kinase trajectory (adk: 3341
# atoms, open to closed), residues 150-151 taken as the ligand and 20 C-alphas within 12 A of it as the pocket:
# MDAnalysis must reproduce them. Contact maps as np.packbits of the boolean map, in hex.
ADK_RMSD = {0: 0.0, 10: 2.794843330456967, 40: 2.3310935995448614, 97: 1.0635692921132571}
ADK_CONTACTS = {0: 24, 10: 33, 40: 34, 97: 30}
ADK_MAPS = {
    0: "e6003fe047fc0077c0007e000fe000ce00001fe001ee001fe001f80017c601fe641dfe01cf80007800078601c7e01c7e0007",
    10: "e6007fe047fc0077c0007e000fe000ce04001ee001ee001fe001fc2007c701fee43ffe01cf800078000f8e01c7e03c7e0107",
    40: "e6007fe047fc0037c0007e000fe000ce00001fe001e2001fe001fc0017c6017e6417fe01cf80007800078c01c7e01c7e0007",
    97: "e6003fe047fc0037c0007e000fe000ce04001fe001ea001fe001f80017c601fe6435fe01cf80007800078401c7e01c7e0007",
}
ADK_FIT_97 = [[0.7749560291300425, 0.060423147426073784, 0.6291201762542068],
              [-0.2630624578334714, 0.9359331913933926, 0.2341520969942227],
              [-0.5746662476547674, -0.3469554791371738, 0.741202131205169]]
"""The numpy fit of frame 97's pocket onto frame 0's: ``(p - centre) @ this + centre``, the transpose of the
rotation :func:`~mummi_scales.drug_discovery.receptors.superpose` returns."""


def test_observables_reproduce_the_numpy_values_on_a_real_trajectory() -> None:
    import MDAnalysis
    from MDAnalysisTests.datafiles import DCD, PSF

    from mummi_scales.drug_discovery.receptors import superpose

    with warnings.catch_warnings():  # MDAnalysis's own filters let its DCD reader's notice of a 3.0 change through
        warnings.simplefilter("ignore", DeprecationWarning)
        universe = MDAnalysis.Universe(PSF, DCD)
    ligand = universe.select_atoms("resid 150:151 and not name H*").indices
    receptor = universe.select_atoms("not resid 150:151 and not name H*").indices
    frames = {ts.frame: universe.atoms.positions.astype(np.float64) / 10.0  # nm, as OpenMM gives them
              for ts in universe.trajectory[[0, 10, 40, 97]]}
    reference = frames[0]
    center = reference[ligand].mean(axis=0)
    pocket = [atom.index for atom in universe.select_atoms("name CA and not resid 150:151")
              if np.linalg.norm(reference[atom.index] - center) < 1.2]
    assert len(pocket) == 20
    observables = cx.Observables(ligand, receptor, pocket, reference)
    for index, positions in frames.items():
        assert observables.ligand_rmsd(positions) == pytest.approx(ADK_RMSD[index], abs=1e-9)
        assert observables.contacts(positions) == ADK_CONTACTS[index]
        contact_map = observables.ca_contact_map(positions)
        assert contact_map.dtype == np.float32 and contact_map.shape == (20, 20)
        assert np.packbits(contact_map.astype(bool)).tobytes().hex() == ADK_MAPS[index]
    fit = superpose(frames[97][pocket] * 10.0, reference[pocket] * 10.0)
    np.testing.assert_allclose(fit.rotation.T, ADK_FIT_97, atol=1e-9)
    np.testing.assert_allclose(fit.origin, [-26.982785129547118, 2.8245566964149473, -4.471664091944694], atol=1e-9)
    np.testing.assert_allclose(fit.target, [-15.540426754951477, 2.5705668538808824, -8.636136674880982], atol=1e-9)


def test_md_platform_follows_the_resources_the_backend_gave_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    import openmm

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    platform, properties = cx.md_platform()
    assert (platform.getName(), properties) == ("CPU", {"Threads": "3"})  # the task's cores, not the node's
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    names = {openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())}
    if "CUDA" in names:
        assert cx.md_platform()[0].getName() == "CUDA"
    else:  # this OpenMM has no CUDA platform: a GPU task must say so, not silently run on the CPU
        with pytest.raises(cx.ComplexError, match="no CUDA platform.*ask for no GPUs"):
            cx.md_platform()
