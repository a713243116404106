"""The paper analyses: the mathematical constructions the experiments measure, pure functions of a trained
model or of seeded draws, no training and no store.

- deep_paths: KKB §5's path weights, path features, their Gram matrix and the two-phase net; the measures
  (path norms) and bounds (Theorem 8) build on it.
- theorem7: KKB §5's Theorem 7, the gap of a fixed net decomposed exactly from the Gram matrix.
- two_phase: KKB §5.3.1's two-phase training pieces (gates from phase 1, the points phase 1 never saw).
- nk_linear: NK 2019 §3's overparameterized linear example in closed form.
- memorization: KKB §3's random-feature linear model that memorizes and grows its norm for free.
- slices: NK 2019 §4's two-dimensional slices of a hypersphere classifier.

The jobs that train and then run these analyses live in gapbench.experiments.analysis_jobs.
"""
