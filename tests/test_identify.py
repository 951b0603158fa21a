"""deapnos.identify: what a winner is (nearest known optimizer, simplification) and where it is shown.

The probes run real compiled genomes (no mocks); the expectations are independent of the code under
test: zoo entries planted in disguise, hand-scaled copies, and hand-written non-matches.
"""
from __future__ import annotations

import json

import pytest
import torch

from deapnos import zoo
from deapnos.identify import (KNOWN_THRESHOLD, SIMPLIFY_TOL, _probe_inputs, behaviour, identify, nearest_known,
                              similarity, simplify)
from deapnos.space import Genome

torch.set_num_threads(1)

DISGUISED_SIGNSGD = ["none ~ mul(sign_g, softplus(w_1e3))", "none ~ mul(sign_g, softplus(tanh(neg(qh_s))))"]


@pytest.mark.parametrize("text", DISGUISED_SIGNSGD)
def test_quickstart_winners_are_signsgd(text):
    m = nearest_known(Genome.parse(text))
    assert m.name == "signsgd" and m.is_known and m.similarity >= KNOWN_THRESHOLD
    assert m.scale == pytest.approx(0.693, abs=2e-3)          # softplus(~0) = ln 2
    assert simplify(Genome.parse(text)).to_text() == "none ~ sign_g"


def test_scaled_adam_is_adam_and_every_zoo_entry_finds_itself_or_an_equal():
    m = nearest_known(Genome.parse("none ~ mul(two, div(v_hat, sqrt(s_hat)))"))
    assert (m.name, m.is_known) == ("adam", True)
    assert m.similarity == pytest.approx(1.0, abs=1e-6) and m.scale == pytest.approx(2.0, rel=1e-9)
    inputs = _probe_inputs()
    runs = {n: behaviour(zoo.get(n), inputs) for n in zoo.names()}
    yardsticks = ("adam", "sgd", "momentum", "nesterov", "signsgd", "signum", "lion", "rmsprop", "qhm")
    for name in yardsticks + ("adamw",):
        sims = {other: similarity(runs[name], runs[other])[0] for other in yardsticks}
        assert similarity(runs[name], runs[name])[0] == pytest.approx(1.0, abs=1e-6)      # rounding only
        # the yardsticks are told apart from each other (AdamW from Adam by its 1% decay term)
        assert max(s for o, s in sims.items() if o != name) < KNOWN_THRESHOLD, name
    # at the gradient sizes of networks some published optimizers collapse onto a classic: Opt5's
    # min(2, exp(v^)) is 1, so Opt5 is QHM; the clip bounds of a2..a4 (|ln s^|, sigmoid(s^)) never bind
    assert similarity(runs["opt5"], runs["qhm"])[0] >= KNOWN_THRESHOLD
    assert similarity(runs["a2"], runs["a4"])[0] >= KNOWN_THRESHOLD


@pytest.mark.parametrize("text,nearest", [
    ("none ~ div(g, sqrt(qh_s))", "rmsprop"),      # RMSProp-like, but its denominator mixes in g^2
    ("none ~ decay(a2, g)", "sgd"),                # SGD under a linear warm-up: not plain SGD
    ("nest ~ g", "nesterov"),                      # the search's Nest, not textbook Nesterov
    ("none ~ add(sign_lion, w_1e2)", "lion"),      # Lion with a tenth of its weight decay
])
def test_known_non_matches_stay_below_the_threshold(text, nearest):
    m = nearest_known(Genome.parse(text))
    assert m.name == nearest and 0.2 < m.similarity < KNOWN_THRESHOLD
    assert not m.is_known
    assert identify(Genome.parse(text)).label() == f"nearest known: {nearest} ({m.similarity:.3f})"


def test_similarity_is_up_to_one_positive_factor_only():
    inputs = _probe_inputs()
    sgd = behaviour(Genome.parse("none ~ g"), inputs)
    sign = behaviour(Genome.parse("none ~ sign_g"), inputs)
    assert similarity(sgd, 3.0 * sgd) == pytest.approx((1.0, 1 / 3.0))
    assert similarity(sgd, -sgd) == (0.0, 0.0)                  # ascent is not descent
    assert nearest_known(Genome.parse("none ~ sign_g | flip")).name is None
    # a factor that differs between probes (SGD vs signSGD on gradients of other sizes) is no match
    per_probe = sgd / sgd.norm(dim=1, keepdim=True)
    assert similarity(sgd, per_probe)[0] < 0.5
    assert similarity(sgd, sign)[0] < 0.5
    assert similarity(None, sgd) == (0.0, 0.0)


def test_simplification_keeps_real_differences():
    # AdamW's decay 0.01 w is 1% of the update on the probes: kept; 1e-3 w is below the tolerance
    assert simplify(zoo.get("adamw")).to_text() == zoo.text("adamw")
    assert simplify(Genome.parse("none ~ add(div(v_hat, sqrt(s_hat)), w_1e3)")).to_text() == zoo.text("adam")
    assert simplify(zoo.get("lion")).to_text() == zoo.text("lion")
    # the momentum kind and flip stay; a removable decay goes, a real one stays
    assert simplify(Genome.parse("mom ~ mul(g, exp(w_1e6)) | flip")).to_text() == "mom ~ g | flip"
    assert simplify(Genome.parse("none ~ decay(a2, g)")).to_text() == "none ~ decay(a2, g)"
    assert 0 < SIMPLIFY_TOL < 1 - KNOWN_THRESHOLD


def test_identification_is_deterministic():
    text = "none ~ add(mul(sign_g, softplus(w_1e3)), decay(a11, qh_v))"
    a, b = identify(Genome.parse(text)), identify(Genome.parse(text))
    assert a == b
    x = behaviour(Genome.parse(text))
    assert x is not None and torch.equal(x, behaviour(Genome.parse(text)))


def test_show_prints_nearest_and_simplified(capsys):
    from deapnos.cli import main
    assert main(["show", "none ~ mul(sign_g, softplus(w_1e3))"]) == 0
    out = capsys.readouterr().out
    assert "nearest  : signsgd (similarity 0.99" in out and "the same optimizer" in out
    assert "simplest : none ~ sign_g" in out
    assert main(["show", "none ~ div(g, sqrt(qh_s))"]) == 0
    out = capsys.readouterr().out
    assert "nearest  : rmsprop (similarity 0.9" in out and "not a known optimizer" in out


def test_report_labels_a_rediscovery_and_the_winner_json_carries_it(tmp_path):
    from deapnos.report import annotate_identities, export_winner, identity_lines, leaderboard_section
    board = [{"rank": 1, "label": "c1", "baseline": False, "mean": 0.9, "std": 0.01, "n": 3,
              "genome": DISGUISED_SIGNSGD[0]},
             {"rank": 2, "label": "c2", "baseline": False, "mean": 0.8, "std": 0.01, "n": 3,
              "genome": "none ~ div(g, sqrt(qh_s))"},
             {"rank": 3, "label": "adam", "baseline": True, "mean": 0.7, "std": 0.01, "n": 3,
              "genome": zoo.text("adam")}]
    annotate_identities([r for r in board if not r["baseline"]])
    assert "identity" not in board[2]
    text = "\n".join(leaderboard_section(board, [{"task": "t", "seeds": [0], "entries": [], "survivors": []}]))
    assert "**c1** = signsgd (known)" in text and "**c2** |" in text
    assert "not a discovery" in "\n".join(identity_lines(board[0]))
    assert "nearest known optimizer: `rmsprop`" in "\n".join(identity_lines(board[1]))
    export_winner(board[0], tmp_path)
    data = json.loads((tmp_path / "c1.json").read_text())
    assert data["nearest_known"]["name"] == "signsgd" and data["nearest_known"]["known"] is True
    assert data["nearest_known"]["similarity"] >= KNOWN_THRESHOLD and data["simplified"] == "none ~ sign_g"
    assert Genome.load(tmp_path / "c1.json").to_text() == DISGUISED_SIGNSGD[0]    # still a genome file
