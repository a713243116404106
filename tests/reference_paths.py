"""Slow, obviously correct references for deep paths: explicit enumeration of every path with
itertools.product,
plain numpy loops for the forward pass, and Theorems 7/8 from explicit P×P matrices. Tiny nets only."""

from __future__ import annotations

import itertools

import numpy as np


def weights_of(net) -> list[np.ndarray]:
    """Weight matrices of an nn.Sequential of Linear layers, in order, as float64 numpy arrays."""
    return [m.weight.detach().double().numpy() for m in net if hasattr(m, "weight")]


def biases_of(net) -> list[np.ndarray | None]:
    return [None if m.bias is None else m.bias.detach().double().numpy() for m in net if hasattr(m, "weight")]


def gates(weights: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    """0/1 gate vectors of every hidden layer for one input x, by an explicit loop."""
    h, out = np.asarray(x, dtype=float), []
    for w in weights[:-1]:
        pre = np.array([sum(w[j, i] * h[i] for i in range(w.shape[1])) for j in range(w.shape[0])])
        out.append((pre > 0).astype(float))
        h = pre * out[-1]
    return out


def paths(weights: list[np.ndarray]):
    """Every path (i_0, …, i_{L−1}) from an input unit to the last hidden layer, i_0 slowest."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights[:-1]]
    return list(itertools.product(*[range(s) for s in sizes]))


def path_weights(weights: list[np.ndarray]) -> np.ndarray:
    """w̄[k, p] = W_L[k, i_{L−1}] · … · W_1[i_1, i_0]."""
    all_paths = paths(weights)
    out = np.zeros((weights[-1].shape[0], len(all_paths)))
    for k in range(weights[-1].shape[0]):
        for p, units in enumerate(all_paths):
            value = weights[-1][k, units[-1]]
            for layer, (i_in, i_out) in enumerate(zip(units[:-1], units[1:], strict=True)):
                value *= weights[layer][i_out, i_in]
            out[k, p] = value
    return out


def path_features(gate_weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """z[n, p] = x_n[i_0] · Π_l σ_l(x_n)[i_l], gates from `gate_weights`."""
    all_paths = paths(gate_weights)
    out = np.zeros((len(x), len(all_paths)))
    for n, row in enumerate(x):
        sig = gates(gate_weights, row)
        for p, units in enumerate(all_paths):
            out[n, p] = row[units[0]] * np.prod([sig[layer][i] for layer, i in enumerate(units[1:])])
    return out


def path_norms(weights: list[np.ndarray], biases: list[np.ndarray | None], p: float) -> np.ndarray:
    """(Σ over every path to output k, from an input unit or any layer's bias unit, of Π |edge|^p)^{1/p}."""
    num_out = weights[-1].shape[0]
    total = np.zeros(num_out)
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    for start in range(len(weights) + 1):                   # start = 0: input unit; s > 0: bias of layer s
        if start > 0 and biases[start - 1] is None:
            continue
        for units in itertools.product(*[range(s) for s in sizes[start:-1]]):
            for k in range(num_out):
                chain = (*units, k)
                value = 1.0 if start == 0 else abs(biases[start - 1][chain[0]]) ** p
                for offset, (i_in, i_out) in enumerate(zip(chain[:-1], chain[1:], strict=True)):
                    value *= abs(weights[start + offset][i_out, i_in]) ** p
                total[k] += value
    return total ** (1.0 / p)


def theorem7(z_pop, y_pop, z_tr, y_tr, wbar) -> dict:
    """Every factor of Theorem 7 from explicit P×P matrices (E = mean over the population rows)."""
    g = z_pop.T @ z_pop / len(z_pop) - z_tr.T @ z_tr / len(z_tr)
    v = y_pop.T @ z_pop / len(z_pop) - y_tr.T @ z_tr / len(z_tr)          # (K, P)
    c_y = (y_pop ** 2).sum(1).mean() - (y_tr ** 2).sum(1).mean()
    lam, u = np.linalg.eigh(g)
    norms, v_norms = np.linalg.norm(wbar, axis=1), np.linalg.norm(v, axis=1)
    cos = np.array([v[k] @ wbar[k] / (v_norms[k] * norms[k]) for k in range(len(wbar))])
    mass = (wbar @ u) ** 2 / norms[:, None] ** 2
    rhs = c_y + sum(-2 * v_norms[k] * norms[k] * cos[k] + norms[k] ** 2 * (lam * mass[k]).sum()
                    for k in range(len(wbar)))
    order = np.argsort(-np.abs(lam))
    return {"rhs": rhs, "c_y": c_y, "path_norms": norms, "v_norms": v_norms, "cosines": cos,
            "eigenvalues": lam[order], "mass": mass[:, order]}


def theorem8_constants(z_pop, y_pop, z_held, y_held) -> dict:
    """The six plug-in constants of Theorem 8 from explicit matrices, one held-out point at a time."""
    second = z_pop.T @ z_pop / len(z_pop)
    c_zz = max(np.linalg.eigvalsh(second - np.outer(z, z)).max() for z in z_held)
    fourth = sum(np.linalg.matrix_power(second - np.outer(z, z), 2) for z in z_pop) / len(z_pop)
    mean_yz = y_pop.T @ z_pop / len(z_pop)
    c_yz = max(np.abs(np.outer(y, z) - mean_yz).max() for y, z in zip(y_held, z_held, strict=True))
    var_yz = sum((np.outer(y, z) - mean_yz) ** 2 for y, z in zip(y_pop, z_pop, strict=True)) / len(z_pop)
    sq_pop, sq_held = (y_pop ** 2).sum(1), (y_held ** 2).sum(1)
    return {"c_zz": c_zz, "gamma2_zz": np.linalg.norm(fourth, 2), "c_yz": c_yz, "gamma2_yz": var_yz.max(),
            "c_y": np.abs(sq_pop.mean() - sq_held).max(), "gamma2_y": ((sq_pop.mean() - sq_pop) ** 2).mean()}
