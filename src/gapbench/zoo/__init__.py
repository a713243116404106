"""Model zoos: registered families of trained models for judging a measure or bound (issue 14).

Registered zoos (``ZOOS``; ``gapbench zoo list``):

- ``mnist-hparams``: Jiang et al. 2020-style grid of MLPs and the small CNN (depth, width, learning rate,
  batch size, weight decay, training-set size, seed), each trained to training cross-entropy ≤ 0.01;
  ``--set dataset=fashion_mnist`` or ``cifar10`` (when its files are present).
- ``nk-m-sweep``: nk2019-fig1's models (two draws per training-set size m); reuses that experiment's runs.
- ``nk-hypersphere``: nk2019-hypersphere's models, with S, S' (``ZooModel.mirrored``) and the test set.

Every zoo has the presets ``smoke`` (seconds, for tests), ``quick`` (minutes on a CPU) and ``paper``, and a
typed spec: each ``--set`` value is checked (gapbench.experiments.params).

API (what ``gapbench evaluate`` builds on)::

    zoo = build_zoo(name, preset="quick", *, out, overrides=None, workers=1, backend="local",
                    progress=True)               # trains what OUT lacks (a resumable sweep), returns the Zoo
    zoo = load_zoo(out, name, preset=None)       # trains nothing; preset None: the most recently built
    zoo.name, zoo.preset, zoo.params             # params: the resolved preset + --set values
    zoo.provenance                               # {datasets, pools, checksums, gapbench, git_sha, torch, ...}
    len(zoo), iter(zoo)                          # the models that met the stop rule (== zoo.models())
    zoo.models(include_capped=False)             # add the ones that hit max_epochs with include_capped=True
    zoo.counts()                                 # {converged, max_epochs, failed, missing, total}: for the card
    zoo.varied                                   # the hyperparameters that vary across the zoo
    zoo[model_id]                                # one model by id

    model.id          stable string: the model's RunConfig signature (its checkpoint's name)
    model.hp          dict of its grid point's hyperparameters (e.g. depth, width, lr, ..., seed)
    model.model()     the trained nn.Module in eval mode (checkpoint loaded once, checksum-verified)
    model.init()      an nn.Module at the initial weights, as measures' init= expects
    model.data        its Dataset (.train = S, .test), loaded once per zoo and DataConfig
    model.mirrored    S' as a Split for nk-hypersphere, else None
    model.train_error, model.test_error, model.gap (= test − train error), model.m (training-set size)
    model.stop_reason 'converged' | 'max_epochs' | 'failed';  model.capped;  model.values (all stored values)
    model.run         the gapbench.trained.Run (history, seeds, train indices, init_source)

    export_zoo(zoo, dest)      # dest/manifest.json + dest/checkpoints/<id>.pt (sha256 per file)
    import_zoo(src, out)       # verifies every checksum, then load_zoo(out, name) works there

CLI: ``gapbench zoo build NAME --preset P [--set k=v] [--out DIR] [--workers N] [--backend local|ray]``,
``gapbench zoo list``, ``gapbench zoo show NAME``, ``gapbench zoo export NAME DEST``, ``gapbench zoo import SRC``.
"""

from __future__ import annotations

from . import mnist_hparams, nk  # noqa: F401  (register the zoos)
from .base import ZOOS, Member, ZooDef, register
from .build import build_zoo, load_zoo
from .transfer import export_zoo, import_zoo
from .types import Zoo, ZooModel

__all__ = ["ZOOS", "Member", "Zoo", "ZooDef", "ZooModel", "build_zoo", "export_zoo", "import_zoo", "load_zoo",
           "register"]
