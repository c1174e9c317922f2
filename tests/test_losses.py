"""Losses: hand-computed values, zero when the margins hold, gradient direction, mining."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from opticsfree.errors import ConfigError
from opticsfree.losses.dense import batch_all_quadruplet, batch_all_triplet
from opticsfree.losses import (
    ChenQuadrupletLoss,
    ChenQuadrupletMiner,
    Criterion,
    QuadrupletLoss,
    QuadrupletMiner,
)


def unit(*angles):
    """2-D unit vectors at the given angles (radians)."""
    a = torch.tensor(angles, dtype=torch.float32)
    return torch.stack([torch.cos(a), torch.sin(a)], dim=1)


def chord(a, b):
    """Euclidean distance between unit vectors at angles a and b."""
    return 2 * math.sin(abs(a - b) / 2)


def relu(x):
    return max(x, 0.0)


def avg_nonzero(values):
    nz = [v for v in values if v > 0]
    return sum(nz) / len(nz) if nz else 0.0


def random_batch(n_classes=3, per_class=3, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    a = F.normalize(torch.randn(len(labels), dim, generator=g), dim=1)
    o = F.normalize(torch.randn(len(labels), dim, generator=g), dim=1)
    return a, o, labels


def d(x, y):
    return float((x - y).norm())


# ---- the seed's quadruplet loss ------------------------------------------------------------------


def test_quadruplet_hand_computed_value():
    # anchor at 0 rad; positive 0.5, close positive 0.3, negative 0.4: both terms are active.
    a, refs = unit(0.0), unit(0.5, 0.3, 0.4)
    loss = QuadrupletLoss(margin_close=0.05, margin=0.2)(
        a, torch.tensor([0]), (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([2])),
        refs, torch.tensor([0, 0, 1]))
    expected = relu(chord(0, 0.5) - chord(0, 0.3) + 0.05) + relu(chord(0, 0.3) - chord(0, 0.4) + 0.2)
    assert expected == pytest.approx(0.2459 + 0.1016, abs=1e-3)
    assert float(loss) == pytest.approx(expected, abs=1e-6)


def test_quadruplet_is_zero_when_the_ranking_holds_with_margins():
    a, refs = unit(0.0), unit(0.0, 0.3, math.pi)  # own original, then class, then the rest
    idx = (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    loss = QuadrupletLoss(0.05, 0.2)(a, torch.tensor([0]), idx, refs, torch.tensor([0, 0, 1]))
    assert float(loss) == 0.0


def test_quadruplet_gradient_pulls_toward_positive_and_pushes_from_negative():
    labels, ref_labels = torch.tensor([0]), torch.tensor([0, 0, 1])
    idx = (torch.tensor([0]), torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    # Only the first term active (negative far): the anchor moves toward its own original and
    # away from the close positive.
    a = unit(0.0).requires_grad_()
    refs = unit(0.5, -0.3, 2.5)
    QuadrupletLoss(0.05, 0.2)(a, labels, idx, refs, ref_labels).backward()
    step = -a.grad[0]
    assert float(step @ (refs[0] - a[0].detach())) > 0
    assert float(step @ (refs[1] - a[0].detach())) < 0
    # Only the second term active (own original coincides with the anchor): toward the close
    # positive, away from the negative.
    a = unit(0.0).requires_grad_()
    refs = unit(0.0, 0.3, -0.35)
    QuadrupletLoss(0.05, 0.2)(a, labels, idx, refs, ref_labels).backward()
    step = -a.grad[0]
    assert float(step @ (refs[1] - a[0].detach())) > 0
    assert float(step @ (refs[2] - a[0].detach())) < 0


def brute_quadruplets(a, o, y, m1, m2):
    out = {}
    for i, c, n in itertools.product(range(len(a)), repeat=3):
        if c != i and y[c] == y[i] and y[n] != y[i]:
            out[(i, c, n)] = relu(d(a[i], o[i]) - d(a[i], o[c]) + m1) + relu(d(a[i], o[c]) - d(a[i], o[n]) + m2)
    return out


def test_quadruplet_all_mining_matches_brute_force():
    a, o, y = random_batch()
    brute = brute_quadruplets(a, o, y, 0.05, 0.2)
    miner = QuadrupletMiner("all", 0.05, 0.2)
    ai, pi, ci, ni = miner(a, y, o, y)
    assert torch.equal(ai, pi)  # the positive is the anchor's own original
    assert {(int(i), int(c), int(n)) for i, c, n in zip(ai, ci, ni)} == {k for k, v in brute.items() if v > 0}
    expected = avg_nonzero(list(brute.values()))
    assert float(QuadrupletLoss(0.05, 0.2)(a, y, (ai, pi, ci, ni), o, y)) == pytest.approx(expected, abs=1e-5)
    # Without indices the loss uses all tuples itself.
    assert float(QuadrupletLoss(0.05, 0.2)(a, y, None, o, y)) == pytest.approx(expected, abs=1e-5)


def test_quadruplet_hard_mining_takes_the_worst_tuple_per_anchor():
    a, o, y = random_batch(seed=3)
    brute = brute_quadruplets(a, o, y, 0.05, 0.2)
    ai, _, ci, ni = QuadrupletMiner("hard", 0.05, 0.2)(a, y, o, y)
    assert sorted(ai.tolist()) == list(range(len(a)))
    for i, c, n in zip(ai.tolist(), ci.tolist(), ni.tolist()):
        worst = max(v for (j, _, _), v in brute.items() if j == i)
        assert brute[(i, c, n)] == pytest.approx(worst, abs=1e-5)


def test_quadruplet_miner_needs_paired_references():
    a, o, y = random_batch()
    with pytest.raises(ValueError, match="paired"):
        QuadrupletMiner()(a, y)
    with pytest.raises(ValueError, match="paired"):
        QuadrupletMiner()(a, y, o[:-1], y[:-1])


# ---- Chen's quadruplet loss ----------------------------------------------------------------------


def test_chen_hand_computed_value():
    # anchor 0; positive 0.6; n1 (class 1) 0.5; n2 (class 2) 0.9
    a, refs = unit(0.0), unit(0.6, 0.5, 0.9)
    idx = tuple(torch.tensor([v]) for v in (0, 0, 1, 2))
    loss = ChenQuadrupletLoss(alpha1=0.4, alpha2=0.2)(a, torch.tensor([0]), idx, refs, torch.tensor([0, 1, 2]))
    dap2, dan2, dnn2 = chord(0, 0.6) ** 2, chord(0, 0.5) ** 2, chord(0.5, 0.9) ** 2
    expected = relu(dap2 - dan2 + 0.4) + relu(dap2 - dnn2 + 0.2)
    assert expected > 0.4
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_chen_is_zero_when_margins_hold():
    a, refs = unit(0.0), unit(0.05, 2.0, -2.0)
    idx = tuple(torch.tensor([v]) for v in (0, 0, 1, 2))
    assert float(ChenQuadrupletLoss(0.4, 0.2)(a, torch.tensor([0]), idx, refs, torch.tensor([0, 1, 2]))) == 0.0


def test_chen_mining_matches_brute_force():
    a, o, y = random_batch(n_classes=4, per_class=2, seed=5)

    def n2_of(i, n1):
        cands = [k for k in range(len(o)) if y[k] != y[i] and y[k] != y[n1]]
        return min(cands, key=lambda k: d(o[n1], o[k]))

    ai, pi, n1, n2 = ChenQuadrupletMiner("all")(a, y, o, y)
    want = {(i, p, n, n2_of(i, n)) for i, p, n in itertools.product(range(len(a)), repeat=3)
            if y[p] == y[i] and y[n] != y[i]}
    assert set(zip(ai.tolist(), pi.tolist(), n1.tolist(), n2.tolist())) == want
    ai, pi, n1, n2 = ChenQuadrupletMiner("hard")(a, y, o, y)
    for i, p, n, m in zip(ai.tolist(), pi.tolist(), n1.tolist(), n2.tolist()):
        assert p == max((k for k in range(len(o)) if y[k] == y[i]), key=lambda k: d(a[i], o[k]))
        assert n == min((k for k in range(len(o)) if y[k] != y[i]), key=lambda k: d(a[i], o[k]))
        assert m == n2_of(i, n) and len({int(y[i]), int(y[n]), int(y[m])}) == 3
    loss = ChenQuadrupletLoss(0.4, 0.2)(a, y, (ai, pi, n1, n2), o, y)
    expected = avg_nonzero([relu(d(a[i], o[p]) ** 2 - d(a[i], o[n]) ** 2 + 0.4)
                            + relu(d(a[i], o[p]) ** 2 - d(o[n], o[m]) ** 2 + 0.2)
                            for i, p, n, m in zip(ai.tolist(), pi.tolist(), n1.tolist(), n2.tolist())])
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_chen_gradient_pushes_negative_pair_apart():
    # First term inactive (n1 far from the anchor), second active (n1 and n2 close together).
    a = unit(0.0)
    refs = unit(0.1, 2.0, 2.2).requires_grad_()
    idx = tuple(torch.tensor([v]) for v in (0, 0, 1, 2))
    ChenQuadrupletLoss(0.4, 0.2)(a, torch.tensor([0]), idx, refs, torch.tensor([0, 1, 2])).backward()
    r = refs.detach()
    assert float(-refs.grad[1] @ (r[2] - r[1])) < 0  # n1 moves away from n2
    assert float(-refs.grad[2] @ (r[1] - r[2])) < 0  # and n2 away from n1
    assert float(-refs.grad[0] @ (a[0] - r[0])) > 0  # the positive moves toward the anchor


# ---- the training criterion ----------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_triplet_online_is_batch_all_over_lensless_anchors_and_original_references(fast):
    a, o, y = random_batch(seed=7)
    crit = Criterion("triplet", margin=0.2)
    crit.fast = fast
    expected = avg_nonzero([relu(d(a[i], o[p]) - d(a[i], o[n]) + 0.2)
                            for i, p, n in itertools.product(range(len(a)), repeat=3)
                            if y[p] == y[i] and y[n] != y[i]])
    assert float(crit.online(a, o, y)) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("loss", ["triplet", "quadruplet"])
@pytest.mark.parametrize("balanced", [True, False])
def test_dense_batch_all_path_matches_pml_in_value_and_gradient(loss, balanced):
    a, o, y = random_batch(n_classes=4, per_class=5, dim=8, seed=11)
    if not balanced:  # unequal class counts: the dense path declines and PML computes it
        y = torch.tensor([0] * 7 + [1] * 5 + [2] * 5 + [3] * 3)
    dense = {"triplet": lambda: batch_all_triplet(a, o, y, y.clone(), 0.2),
             "quadruplet": lambda: batch_all_quadruplet(a, o, y, y.clone(), 0.05, 0.2)}[loss]()
    assert (dense is None) == (not balanced)
    results = []
    for fast in (True, False):
        ai, oi = a.clone().requires_grad_(), o.clone().requires_grad_()
        crit = Criterion(loss)
        crit.fast = fast
        value = crit.online(ai, oi, y)
        value.backward()
        results.append((value.detach(), ai.grad, oi.grad))
    for x, z in zip(*results):
        torch.testing.assert_close(x, z, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("loss,mining", [("triplet", "semihard"), ("triplet", "hard"), ("quadruplet", "hard"),
                                         ("quadruplet-chen", "all")])
def test_other_minings_give_finite_losses_with_gradients(loss, mining):
    a, o, y = random_batch(seed=1)
    a.requires_grad_()
    o.requires_grad_()
    value = Criterion(loss, mining).online(a, o, y)
    assert torch.isfinite(value)
    value.backward()
    assert a.grad is not None and o.grad is not None


def test_ce_plus_triplet_is_the_sum():
    a, o, y = random_batch(seed=2)
    logits = torch.randn(len(y), 3, generator=torch.Generator().manual_seed(0))
    both = Criterion("ce+triplet", ce_weight=0.5).online(a, o, y, logits)
    ce = F.cross_entropy(logits, y)
    trip = Criterion("triplet").online(a, o, y)
    assert float(both) == pytest.approx(float(ce + 0.5 * trip), abs=1e-6)
    assert float(Criterion("ce").online(None, None, y, logits)) == pytest.approx(float(ce), abs=1e-6)


def test_tuples_use_each_row_as_its_tuple():
    a, p, cp, n = (F.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(s)), dim=1)
                   for s in range(4))
    y, yn = torch.tensor([0, 0, 1, 1]), torch.tensor([1, 2, 0, 2])
    trip = Criterion("triplet", margin=0.3).tuples(a, [p, n], y, yn)
    assert float(trip) == pytest.approx(avg_nonzero([relu(d(a[i], p[i]) - d(a[i], n[i]) + 0.3) for i in range(4)]), abs=1e-5)
    quad = Criterion("quadruplet", quad_margins=(0.1, 0.3)).tuples(a, [p, cp, n], y, yn)
    want = avg_nonzero([relu(d(a[i], p[i]) - d(a[i], cp[i]) + 0.1) + relu(d(a[i], cp[i]) - d(a[i], n[i]) + 0.3)
                        for i in range(4)])
    assert float(quad) == pytest.approx(want, abs=1e-5)
    with pytest.raises(ConfigError, match="online"):
        Criterion("quadruplet-chen").tuples(a, [p, n], y, yn)


def test_criterion_rejects_unknown_names():
    with pytest.raises(ConfigError, match="loss"):
        Criterion("contrastive")
    with pytest.raises(ConfigError, match="mining 'semihard'"):
        Criterion("quadruplet", "semihard")


def test_distillation_terms_follow_their_equations():
    from opticsfree.losses.distill import Distillation, distillation_kl, feature_alignment

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    T = 3.0
    p_t, p_s = torch.softmax(t / T, 1), torch.softmax(s / T, 1)
    want = T ** 2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    torch.testing.assert_close(distillation_kl(s, t, T), want)
    assert float(distillation_kl(t, t, T)) == pytest.approx(0.0, abs=1e-6)
    s.requires_grad_(True)
    distillation_kl(s, t.requires_grad_(True), T).backward()
    assert s.grad is not None and t.grad is None                     # no gradient into the teacher
    e, f = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1), torch.randn(5, 8, generator=g)
    torch.testing.assert_close(feature_alignment(e, f), (1 - (e * torch.nn.functional.normalize(f, dim=1)).sum(1)).mean())
    assert float(feature_alignment(e, e)) == pytest.approx(0.0, abs=1e-6)
    both = Distillation(2.0, T, 0.5)(s.detach(), t.detach(), e, f)
    torch.testing.assert_close(both, 2.0 * distillation_kl(s.detach(), t.detach(), T) + 0.5 * feature_alignment(e, f))
    for bad in [dict(kd_weight=-1), dict(temperature=0), dict(feature_weight=-0.1)]:
        with pytest.raises(ValueError, match="expected kd_weight"):
            Distillation(**bad)
    with pytest.raises(ValueError, match="same shape"):
        distillation_kl(s.detach(), t[:3])


def test_quadruplet_chen_with_batch_all_mining_is_chens_loss_on_both_paths():
    """``--loss quadruplet-chen --mining all`` is Chen's loss whether the criterion takes its
    fast path or not (it once computed the batch-all triplet loss on the fast path)."""
    a, o, y = random_batch(n_classes=4, per_class=5, dim=8, seed=3)
    values = []
    for fast in (True, False):
        crit = Criterion("quadruplet-chen", "all")
        crit.fast = fast
        values.append(crit.online(a, o, y))
    torch.testing.assert_close(values[0], values[1])
    assert not torch.allclose(values[0], batch_all_triplet(a, o, y, y.clone(), 0.2))
