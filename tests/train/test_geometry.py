"""The geometry task: its input and target geometry are what its knobs say."""

import jax.numpy as jnp
import numpy as np
import pytest

from diagrammar.train.geometry import GeometryTask


def test_rules_label_the_grid_as_documented():
    u, v = np.divmod(np.arange(16), 4)
    assert np.array_equal(GeometryTask(rule="parity").labels, (u + v) % 2)
    assert np.array_equal(GeometryTask(rule="halves").labels, (u >= 2).astype(int))
    assert np.array_equal(GeometryTask(rule="quadrants").labels, 2 * (u >= 2) + (v >= 2))


def test_targets_are_orthogonal_codes_of_the_categories():
    task = GeometryTask(rule="quadrants", target_dims=8)
    assert np.array_equal(task.codes @ task.codes.T, 8 * np.eye(4)) and not task.codes.sum(axis=1).any()
    assert np.array_equal(task.targets, task.codes[task.labels])


@pytest.mark.parametrize("structure,rank", [(1.0, 2), (0.0, 16)])
def test_input_structure_puts_the_prototypes_on_the_grid_or_not(structure, rank):
    task = GeometryTask(input_structure=structure, input_dims=32)
    centred = task.prototypes - task.prototypes.mean(axis=0)
    assert np.linalg.matrix_rank(centred, tol=1e-8) == min(rank, 15)
    if structure == 1.0:  # distances are the grid's, scaled
        u, v = np.divmod(np.arange(16), 4)
        grid = np.hypot(u[:, None] - u[None], v[:, None] - v[None])
        dist = np.linalg.norm(task.prototypes[:, None] - task.prototypes[None], axis=-1)
        assert np.allclose(dist / dist[0, 1], grid / grid[0, 1])


def test_examples_are_noisy_prototypes_and_the_loss_scores_the_codes():
    task = GeometryTask(noise=0.0, per_condition=3, seed=4)
    data = task.train_data
    assert data["x"].shape == (48, 32)
    assert np.allclose(np.asarray(data["x"]), task.prototypes[np.asarray(data["condition"])], atol=1e-6)
    loss, aux = task.loss(lambda x: data["target"], data, False)
    assert float(loss) == 0.0 and float(aux["acc"]) == 1.0
    loss, aux = task.loss(lambda x: -data["target"], data, False)
    assert float(loss) == pytest.approx(4 * 8) and float(aux["acc"]) == 0.0
    noisy = GeometryTask(noise=0.5, seed=4)
    assert not jnp.allclose(noisy.train_data["x"], noisy.test_data["x"])


@pytest.mark.parametrize("kw", [dict(rule="xor"), dict(input_structure=1.5), dict(target_dims=6), dict(target_dims=4, rule="quadrants"), dict(grid=1)])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        GeometryTask(**kw)
