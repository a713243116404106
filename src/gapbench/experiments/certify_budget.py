"""certify-budget: how much data does a certificate cost? (Kawaguchi, Kaelbling & Bengio §6 made measurable)

With the same budget of MNIST training points (all 60k at the paper preset; at the smaller presets each arm
draws its own n_train-point subset of the training file, so the points are not the same ones), two ways to
certify a network's 0-1 risk:
(a) held-out: train a deterministic net on all but n_val points and certify it on those n_val points with the
    exact binomial tail (gapbench.certificate.certify, its training record checked disjoint from them), for
    several n_val;
(b) PAC-Bayes: pbb2021-mnist's FCN with a data-free prior (S_bound = every training point, which the posterior
    also trains on) and with a prior trained on S_prior (S_bound = the other half).
The figure plots each certificate against the number of points it is computed on. The held-out certificate
bounds the deterministic net; the PAC-Bayes one the stochastic classifier Q (never its mean network).
Selection: every certificate of (a) is reported, none is chosen by its value, so |F| = 1 each; (b) pays
|F| = 2 (two priors looked at).

The n_val points of (a) are a random split of the training file (gapbench.data.subsets). Measured at the quick
preset with the earlier layout, the file's last n_val rows: validation error 0.072-0.095 against test error
0.092-0.114 (0.0765 vs 0.1015 at n_val = 2,000), 3 of 4 held-out certificates below the test error, and the
held-out certificate at n_val = 500 (0.0962) below PAC-Bayes's (0.1095). With the random split: validation
error 0.096-0.116 against test error 0.092-0.113 (0.106 vs 0.100 at n_val = 2,000), every certificate above
its test error, and PAC-Bayes's 0.1095 below the held-out 0.1230 at n_val = 500.
"""

from __future__ import annotations

from ..config import DataConfig, ModelConfig, RunConfig, TrainConfig, to_dict
from . import register
from .base import Claim, Experiment
from .pacbayes_jobs import budget_job
from .params import choice, count, fraction, positive
from .pbb2021_mnist import (
    DATASET,
    PRIORS,
    certificate_block,
    model_config,
    posterior_block,
    prior_block,
    split_spec,
)


def _heldout(p, n_val: int):
    run = RunConfig(data=DataConfig(name=DATASET, n_val=n_val, n_test=p["n_test"], subset_seed=p["seed"],
                                    pool_size=None if p["n_train"] is None else p["n_train"] - n_val),
                    model=ModelConfig(arch="mlp", depth=p["fcn_depth"], width=p["fcn_width"], init_seed=p["seed"]),
                    train=TrainConfig(lr=p["heldout_lr"], momentum=p["momentum"], batch_size=p["batch_size"],
                                      max_epochs=p["heldout_epochs"], stop="epochs", sgd_seed=p["seed"]))
    return {"hp": {"method": "held-out", "n_val": n_val}, "run": to_dict(run),
            "certificate": {"delta": p["delta"]}}


def _pacbayes(p, prior: str):
    return {"hp": {"method": f"PAC-Bayes, {prior} prior", "n_val": 0, "arch": "fcn", "prior": prior,
                   "objective": p["objective"], "prior_std": p["prior_std"], "family_size": len(PRIORS)},
            "split": split_spec(p, prior), "model": to_dict(model_config(p, "fcn")),
            "prior": prior_block(p, prior), "posterior": posterior_block(p, p["objective"], p["prior_std"]),
            "certificate": certificate_block(p, len(PRIORS))}


def points(p):
    return [_heldout(p, n) for n in p["n_val"]] + [_pacbayes(p, prior) for prior in PRIORS]


def _heldout_rows(t):
    return sorted((r for r in t.rows if r["hp.method"] == "held-out"), key=lambda r: r["n_bound"])


def _holding_out_costs_accuracy(t, p):
    """The price of a held-out certificate: the net certified on the most points trained on the fewest, and its
    test error is higher than the net certified on the fewest."""
    rows = _heldout_rows(t)
    if len(rows) < 2:
        return False, None, "fewer than two held-out runs"
    first, last = rows[0], rows[-1]
    return (last["test_error_mean"] > first["test_error_mean"], last["test_error_mean"] - first["test_error_mean"],
            "held-out (n_val: certificate, test error of the deterministic net): "
            + ", ".join(f"{int(r['n_bound'])}: {r['certificate']:.4f}, {r['test_error_mean']:.4f}" for r in rows))


def _pacbayes_competes(t, p):
    """The data-dependent PAC-Bayes certificate is below the held-out one certified on the fewest points."""
    pb = [r for r in t.rows if r.get("hp.prior") == "trained"]
    ho = _heldout_rows(t)
    if not pb or not ho:
        return False, None, "missing runs"
    return (pb[0]["certificate"] < ho[0]["certificate"], pb[0]["certificate"] - ho[0]["certificate"],
            f"PAC-Bayes (S_prior-trained prior, n = {int(pb[0]['n_bound'])}) {pb[0]['certificate']:.4f} vs held-out "
            f"at n_val = {int(ho[0]['n_bound'])} {ho[0]['certificate']:.4f}")


def _covers(t, p):
    """Each certificate ≥ the test error of what it bounds: the deterministic net (held-out) or Q (PAC-Bayes)."""
    def certified_error(r):
        return r["test_error_mean"] if r["hp.method"] == "held-out" else r["test_error_stochastic"]
    bad = [r for r in t.rows if r["certificate"] < certified_error(r)]
    return not bad, float(len(bad)), (f"{len(bad)} of {len(t.rows)} certificates below the test error of what "
                                      f"they certify (each may fail with probability ≤ δ = {p['delta']})")


def plot(t, fig, p):
    ax = fig.subplots(1, 1)
    ho = _heldout_rows(t)
    ax.plot([r["n_bound"] for r in ho], [r["certificate"] for r in ho], marker="o",
            label="held-out binomial certificate (deterministic net)")
    ax.plot([r["n_bound"] for r in ho], [r["test_error_mean"] for r in ho], marker=".", ls="--",
            label="its test error")
    for r in t.rows:
        if r["hp.method"] != "held-out":
            ax.scatter([r["n_bound"]], [r["certificate"]], marker="*", s=120, label=f"{r['hp.method']} (stochastic Q)")
            ax.scatter([r["n_bound"]], [r["test_error_stochastic"]], marker="x", label=f"{r['hp.method']}: test error")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("points the certificate is computed on")
    ax.set_ylabel("0-1 risk")
    ax.set_title(f"certificate vs data spent on certification (δ = {p['delta']})", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)


BASE = {"n_train": None, "n_test": None, "seed": 0, "n_val": [1000, 5000, 10000, 20000],
        "fcn_depth": 3, "fcn_width": 600, "cnn_width": 32, "cnn_fc_width": 128,   # pbb2021-mnist's FCN
        "heldout_lr": 0.01, "heldout_epochs": 20,      # ours: plain SGD for the deterministic net
        "objective": "f_quad", "prior_std": 0.03, "prior_fraction": 0.5, "prior_lr": 0.005, "prior_momentum": 0.99,
        "prior_epochs": 70, "prior_dropout": 0.2, "lr": 0.001, "momentum": 0.95, "epochs": 100, "batch_size": 250,
        "kl_penalty": 1.0, "p_min": 1e-5, "delta": 0.035, "delta_mc": 0.01, "passes": 10}  # as pbb2021-mnist

SPEC = {"n_train": count(optional=True), "n_test": count(optional=True),
        "seed": count(0), "n_val": count(many=True), "fcn_depth": count(), "fcn_width": count(),
        "cnn_width": count(), "cnn_fc_width": count(), "heldout_lr": positive(), "heldout_epochs": count(),
        "objective": choice("f_quad", "f_classic", "f_kl_inverse"), "prior_std": positive(),
        "prior_fraction": fraction(low_open=True, high_open=True), "prior_lr": positive(),
        "prior_momentum": fraction(high_open=True), "prior_epochs": count(), "prior_dropout": fraction(high_open=True),
        "lr": positive(), "momentum": fraction(high_open=True), "epochs": count(), "batch_size": count(),
        "kl_penalty": positive(), "p_min": fraction(low_open=True), "delta": fraction(low_open=True, high_open=True),
        "delta_mc": fraction(low_open=True, high_open=True), "passes": count()}

QUICK = {**BASE, "n_train": 10000, "n_test": 2000, "n_val": [500, 1000, 2000, 4000], "fcn_depth": 1, "fcn_width": 200,
         "heldout_epochs": 5, "prior_epochs": 10, "epochs": 5, "passes": 5}
TOO_SMALL = "one epoch on 400 points: the PAC-Bayes posterior has not moved from its barely trained prior"

EXPERIMENT = register(Experiment(
    spec=SPEC,
    name="certify-budget",
    paper="Kawaguchi, Kaelbling & Bengio, Generalization in Deep Learning (§6), against Pérez-Ortiz et al. 2021",
    figure="§6 (validation certificates) vs PAC-Bayes certificates on the same data",
    summary="A held-out certificate costs the points it is computed on; a PAC-Bayes certificate with a learnt "
            "prior certifies on half the data while training on all of it.",
    presets={"smoke": {**QUICK, "n_train": 400, "n_test": 200, "n_val": [50, 100], "fcn_width": 16,
                       "heldout_epochs": 2, "prior_epochs": 2, "epochs": 1, "passes": 2, "batch_size": 100},
             "quick": QUICK, "demo": QUICK, "paper": BASE},
    points=points,
    job=budget_job,
    claims=(Claim("holding_out_costs_accuracy", "the net certified on the most held-out points has the higher test "
                  "error (it trained on fewer)", _holding_out_costs_accuracy),
            Claim("pacbayes_competes", "the data-dependent PAC-Bayes certificate beats the held-out one at the "
                  "smallest n_val", _pacbayes_competes, expected_not_held={"smoke": TOO_SMALL}),
            Claim("covers_test_error", "every certificate ≥ the test error of what it certifies", _covers)),
    plot=plot,
    notes={"smoke": "400 points: plumbing only", "quick": "10,000 points, FCN 784-200-10",
           "demo": "as quick", "paper": "all 60,000 MNIST training points, PBB's FCN"},
))
