"""Campaign inputs: a user's own library file in each format, and the enrichment factor of a ranking."""

from __future__ import annotations

import gzip
import math
import random
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("rdkit", reason="the docking engines are the `campaign` extra: pip install -e '.[campaign]'")

from mummi_scales.drug_discovery import data  # noqa: E402

MOLECULES = Path(__file__).parents[2] / "data" / "molecules"
SAFE = re.compile(r"user-[A-Za-z0-9._-]+")

SMI = [
    ("user-aspirin", "CC(=O)Oc1ccc(cc1)C(=O)O"),
    ("user-acetonitrile_a_triple_bond_not_a_comment", "CC#N"),
    ("user-broken_ring", "C1CC(N"),
    ("user-ethanol", "CCO"),
    ("user-4", "c1ccccc1"),
    ("user-ethanol-2", "CCO"),
]
CSV = [
    ("user-aspirin", "CC(=O)Oc1ccc(cc1)C(=O)O"),
    ("user-pentavalent_carbon", "C(C)(C)(C)(C)C"),
    ("user-empty_cell", ""),
    ("user-3", "c1ccncc1"),
]
SDF = [
    ("user-paracetamol", "CC(=O)Nc1ccc(O)cc1"),
    ("user-caffeine", "Cn1c(=O)c2c(ncn2C)n(C)c1=O"),
    ("user-pentavalent_nitrogen", "CN(C)(C)(C)C"),
    ("user-unreadable_record", ""),
    ("user-4", "O"),
]


@pytest.mark.parametrize(("name", "expected"), [("library.smi", SMI), ("library.csv", CSV), ("library.sdf", SDF)])
@pytest.mark.parametrize("compressed", [False, True])
def test_each_format_reads_plain_or_gzipped_keeping_bad_records(
    tmp_path: Path, name: str, expected: list[tuple[str, str]], compressed: bool
) -> None:
    path = MOLECULES / name
    if compressed:
        path = tmp_path / f"{name}.gz"
        path.write_bytes(gzip.compress((MOLECULES / name).read_bytes()))
    assert data.read_library(path) == expected


def test_txt_is_read_as_smiles_and_names_may_hold_tabs(tmp_path: Path) -> None:
    path = tmp_path / "mine.TXT"
    path.write_text("CCO\tethanol absolute\nCC#N   \n# CCCC commented out\n\nN#N\n")
    assert data.read_library(path) == [("user-ethanol_absolute", "CCO"), ("user-1", "CC#N"), ("user-2", "N#N")]


def test_a_csv_id_column_wins_over_name_and_column_case_does_not_matter(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("\ufeffName,Smiles,ID\naspirin,CC(=O)Oc1ccc(cc1)C(=O)O,CHEMBL25\n")  # a BOM, as Excel writes
    assert data.read_library(path) == [("user-CHEMBL25", "CC(=O)Oc1ccc(cc1)C(=O)O")]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (None, "missing.smi", r"cannot read the library .*missing\.smi.*check the path"),
        (b"CCO\n", "library.mol2", r"cannot tell the format of the library .*library\.mol2.*\.smi\[\.gz\]"),
        (b"not gzip at all", "library.smi.gz", r"cannot read the library .*library\.smi\.gz.*compressed with gzip"),
        (b"\xff\xfe\x00bad", "library.smi", r"cannot read the library .*UTF-8"),
        (b"name,structure\naspirin,CCO\n", "library.csv", r"has no SMILES column \(its columns: name, structure\)"),
        (b"# only a comment\n\n", "library.smi", r"the library .*library\.smi holds no molecules"),
        (b"smiles,name\n", "library.csv", r"holds no molecules"),
        (b"", "library.sdf", r"holds no molecules"),
    ],
)
def test_bad_library_files_raise_errors_that_name_the_file_and_the_fix(
    tmp_path: Path, content: bytes | None, name: str, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        data.read_library(path)


@given(st.text(max_size=300), st.integers(min_value=0, max_value=10**6))
def test_ids_are_file_name_safe_bounded_and_deterministic(name: str, record: int) -> None:
    ident = data.safe_id(name, record)
    assert SAFE.fullmatch(ident) and len(ident) <= len(data.USER_PREFIX) + data.MAX_NAME
    assert ident == data.safe_id(name, record)


@given(st.from_regex(r"[A-Za-z0-9._-]{1,100}", fullmatch=True))
def test_safe_names_are_kept_as_they_are(name: str) -> None:
    assert data.safe_id(name, 0) == f"user-{name}"


@given(st.lists(st.sampled_from(["a", "a-2", "a-3", "b", "user-1", "a-2-2"]), max_size=12))
def test_repeated_ids_get_suffixes_without_renaming_unique_ones(ids: list[str]) -> None:
    unique = data._unique(ids)
    assert len(unique) == len(ids) and len(set(unique)) == len(unique)
    for index, ident in enumerate(ids):
        if ident not in ids[:index]:
            assert unique[index] == ident  # the first of each id keeps it
        else:
            assert unique[index].startswith(f"{ident}-") and unique[index] not in ids


@pytest.mark.slow
def test_bad_records_of_a_user_library_are_reported_by_docking_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("vina")
    from mummi_scales.drug_discovery.docking import dock_batch

    bad = [[ident, smiles] for ident, smiles in [*CSV, *SDF] if smiles in ("", "C(C)(C)(C)(C)C", "CN(C)(C)(C)C")]
    pdbqt, center, size = data.receptor("PGR")
    monkeypatch.chdir(tmp_path)
    result = dock_batch(bad, str(pdbqt), list(center), [12.0, 12.0, 12.0], exhaustiveness=1, seed=0)
    assert set(result) == {ident for ident, _ in bad}
    assert result["user-pentavalent_carbon"]["error"].startswith("parse: 'C(C)(C)(C)(C)C': Explicit valence")
    assert result["user-pentavalent_nitrogen"]["error"].startswith("parse: 'CN(C)(C)(C)C'")
    assert all("error" in result[ident] for ident in ("user-empty_cell", "user-unreadable_record"))


def _ranked(count: int) -> dict[str, float]:
    """``m0`` .. ``m<count-1>`` scored -count .. -1: ``m0`` is the best."""
    return {f"m{index}": float(index - count) for index in range(count)}


def test_enrichment_factor_on_hand_computed_rankings() -> None:
    scores = _ranked(10)
    actives = {"m0", "m2"}  # A = 2 of N = 10: random picks 0.2 actives per molecule
    assert data.enrichment_factor(scores, actives, 0.1) == pytest.approx(5.0)  # top 1: m0, 1/1 / 0.2
    assert data.enrichment_factor(scores, actives, 0.2) == pytest.approx(2.5)  # top 2: m0 m1, 1/2 / 0.2
    assert data.enrichment_factor(scores, actives, 0.3) == pytest.approx(2 / 3 / 0.2)  # top 3 holds both
    assert data.enrichment_factor(scores, actives, 1.0) == pytest.approx(1.0)
    assert data.enrichment_factor(scores, {"m9"}, 0.5) == 0.0


def test_enrichment_factor_shares_the_cutoff_among_ties_whatever_the_order() -> None:
    scores = {"a": -5.0, "b": -5.0, "c": -5.0, "d": -1.0}
    # top 1 of 4; three molecules tie for it, one of them active: 1/3 of an active expected in the top 1
    assert data.enrichment_factor(scores, {"a"}, 0.25) == pytest.approx((1 / 3) / (1 / 4))
    assert data.enrichment_factor(dict(reversed(scores.items())), {"a"}, 0.25) == pytest.approx(4 / 3)
    assert data.enrichment_factor({"x": -9.0, **scores}, {"a"}, 0.4) == pytest.approx((1 / 3) / 2 / (1 / 5))


def test_enrichment_factor_with_fewer_molecules_than_one_over_the_fraction_takes_the_best() -> None:
    assert data.enrichment_factor(_ranked(3), {"m0"}, 0.01) == pytest.approx(3.0)  # N/A, not 1/x = 100
    assert data.enrichment_factor(_ranked(3), {"m1"}, 0.01) == 0.0


def test_enrichment_factor_at_one_percent_of_300_is_the_top_3_not_4() -> None:
    scores = _ranked(300)
    random.Random(0).shuffle(items := list(scores.items()))
    assert data.enrichment_factor(dict(items), {"m0", "m1", "m2"}, 0.01) == pytest.approx(100.0)


def test_failures_scored_infinite_rank_last_and_bad_input_is_refused() -> None:
    scores = {**_ranked(4), "failed": float("inf")}
    assert data.enrichment_factor(scores, {"failed", "m0"}, 0.2) == pytest.approx((1 / 1) / (2 / 5))
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        data.enrichment_factor(scores, {"m0"}, 0.0)
    with pytest.raises(ValueError, match="NaN scores cannot be ranked: bad"):
        data.enrichment_factor({"bad": float("nan"), "m0": -1.0}, {"m0"}, 0.5)
    with pytest.raises(ValueError, match="none of the 1 actives is among the 5 scored molecules"):
        data.enrichment_factor(scores, {"absent"}, 0.5)
    with pytest.raises(ValueError, match="no scored molecules"):
        data.enrichment_factor({}, {"m0"}, 0.5)


@given(st.dictionaries(st.text(min_size=1, max_size=3), st.floats(-15, 0), min_size=1, max_size=30), st.data())
def test_enrichment_factor_is_within_its_bounds(scores: dict[str, float], draw: st.DataObject) -> None:
    actives = draw.draw(st.sets(st.sampled_from(sorted(scores)), min_size=1))
    fraction = draw.draw(st.floats(0.01, 1.0))
    factor = data.enrichment_factor(scores, actives, fraction)
    top = max(1, math.ceil(round(fraction * len(scores), 9)))
    assert 0.0 <= factor <= min(len(scores) / top, len(scores) / len(actives)) + 1e-9



@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_a_gzipped_library_cut_short_is_refused_naming_the_file(tmp_path: Path, keep: float) -> None:
    whole = gzip.compress("".join(f"CCO ethanol-{index}\n" for index in range(2000)).encode())
    path = tmp_path / "library.smi.gz"
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(ValueError, match=rf"cannot read the library {re.escape(str(path))}: .*compressed with gzip"):
        data.read_library(path)


@pytest.mark.parametrize("name", ["library.smi", "library.csv", "library.sdf"])
def test_random_bytes_named_like_a_library_are_refused_naming_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(random.Random(7).randbytes(4096))
    with pytest.raises(ValueError, match=rf"cannot read the library {re.escape(str(path))}: .*UTF-8"):
        data.read_library(path)


def test_a_nul_inside_a_smiles_record_is_kept_for_docking_to_report(tmp_path: Path) -> None:
    from mummi_scales.drug_discovery.docking import LigandError, prepare_ligand

    path = tmp_path / "library.smi"
    path.write_bytes(b"CC\x00O with-nul\nCCO ethanol\n")
    assert data.read_library(path) == [("user-with-nul", "CC\x00O"), ("user-ethanol", "CCO")]
    with pytest.raises(LigandError, match=r"^parse: 'CC\\x00O': syntax error"):
        prepare_ligand("CC\x00O", seed=0)
