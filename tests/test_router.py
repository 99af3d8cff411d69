"""The hybrid-models router and the keep-local scores it is compared with.

Hand-computed cases for each policy's decision, the router's training on a synthetic
problem with an obvious answer, its files (round trip, sha256, missing, malformed), and
how a coverage target resolves to a threshold.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from camoffload.training.router import (
    ExitOutputs,
    accuracy_at_coverage,
    coverage_threshold,
    fit_router,
    outcomes,
    policy_scores,
)
from edge_node.local_model import LocalModel, LocalOutput
from edge_node.policies import (
    ConfidenceThreshold,
    EntropyThreshold,
    Route,
    RouterPolicy,
    ScoredPolicy,
    make_policy,
    policy_from_config,
)
from pipeline.config import EdgeConfig
from pipeline.errors import ConfigError, ModelError
from pipeline.models.router import (
    GainRouter,
    default_router_path,
    entropy_score,
    load_router,
    max_softmax_score,
    save_router,
)

MODEL = "fmnist_exit_resnet"
FIELDS = {
    "model": "toy",
    "model_version": "toy-000000000000",
    "split": 1,
    "seed": 0,
    "epochs": 1,
    "command": "test",
    "torch_version": torch.__version__,
    "train_wall_s": 0.0,
    "train_images": 0,
    "val_images": 0,
}


def _output(logits: list[float] | None, confidence: float = 0.5) -> LocalOutput:
    array = None if logits is None else np.array(logits, dtype=np.float32)
    return LocalOutput(label=0, confidence=confidence, activation=None, logits=array)


def _fixed_router(p_loss: float, p_tie: float, p_gain: float, classes: int = 3) -> GainRouter:
    """A router whose output ignores its input: P(loss, tie, gain) as given."""
    router = GainRouter(num_classes=classes, hidden=4)
    with torch.no_grad():
        for parameter in router.parameters():
            parameter.zero_()
        last = router.body[2]
        assert isinstance(last, torch.nn.Linear)
        last.bias.copy_(torch.log(torch.tensor([p_loss, p_tie, p_gain])))
    return router.eval()


# -- scores by hand ----------------------------------------------------------------------


def test_max_softmax_and_entropy_scores_by_hand() -> None:
    # logits (ln 3, 0): softmax (0.75, 0.25)
    logits = np.array([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert max_softmax_score(logits) == pytest.approx([0.75, 0.5])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # 0.5623 nats
    assert entropy_score(logits) == pytest.approx([1 - entropy / math.log(2), 0.0])
    # One class certain: score 1 (no log(0) trouble).
    assert entropy_score(np.array([1000.0, 0.0, 0.0])) == pytest.approx(1.0)


def test_router_keep_score_by_hand() -> None:
    # P(loss, tie, gain) = (0.1, 0.3, 0.6): expected gain 0.5, keep score (1 - 0.5) / 2.
    router = _fixed_router(0.1, 0.3, 0.6)
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    assert router.keep_score(logits).tolist() == pytest.approx([0.25, 0.25])
    assert router.scorer()([2.0, 0.0, -1.0]) == pytest.approx(0.25)
    # All loss: surely keep (1.0); all gain: surely send (0.0).
    assert _fixed_router(0.999998, 1e-6, 1e-6).scorer()([0.0, 0.0, 0.0]) == pytest.approx(
        1.0, abs=1e-5
    )
    assert _fixed_router(1e-6, 1e-6, 0.999998).scorer()([0.0, 0.0, 0.0]) == pytest.approx(
        0.0, abs=1e-5
    )


def test_numpy_scorer_matches_torch() -> None:
    torch.manual_seed(1)
    router = GainRouter(num_classes=10, hidden=8)
    router.fit_standardisation(torch.randn(64, 10) * 3)
    logits = torch.randn(32, 10) * 4
    expected = router.eval().keep_score(logits).detach().numpy()
    scorer = router.scorer()
    assert [scorer(row) for row in logits.numpy()] == pytest.approx(expected, abs=1e-6)


# -- policy decisions --------------------------------------------------------------------


def test_confidence_threshold_routes_by_hand() -> None:
    policy = ConfidenceThreshold(0.8)
    assert policy.route(_output(None, confidence=0.79)) is Route.OFFLOAD
    assert policy.route(_output(None, confidence=0.8)) is Route.LOCAL  # not below: kept
    assert policy.route(None) is Route.OFFLOAD


def test_entropy_threshold_routes_by_hand() -> None:
    unsure = _output([math.log(3.0), 0.0])  # keep score 1 - 0.5623 / ln 2 = 0.1887
    assert EntropyThreshold(0.18).route(unsure) is Route.LOCAL
    assert EntropyThreshold(0.19).route(unsure) is Route.OFFLOAD
    assert EntropyThreshold(0.0).route(_output([0.0, 0.0])) is Route.LOCAL  # 0 is not < 0
    with pytest.raises(ModelError, match="logits"):
        EntropyThreshold(0.5).route(_output(None))
    with pytest.raises(ConfigError):
        EntropyThreshold(1.5)


def test_router_policy_routes_by_hand() -> None:
    scorer = _fixed_router(0.1, 0.3, 0.6).scorer()  # keep score 0.25 for every frame
    frame = _output([1.0, 0.0, 0.0])
    assert RouterPolicy(0.24, scorer).route(frame) is Route.LOCAL
    assert RouterPolicy(0.26, scorer).route(frame) is Route.OFFLOAD
    assert RouterPolicy(0.0, scorer).route(None) is Route.OFFLOAD
    assert RouterPolicy(0.3, scorer).keep_score(frame) == pytest.approx(0.25)
    with pytest.raises(ModelError, match="logits"):
        RouterPolicy(0.3, scorer).route(_output(None))
    with pytest.raises(ModelError, match="reads 3 logits"):
        RouterPolicy(0.3, scorer).route(_output([1.0, 0.0]))
    assert isinstance(RouterPolicy(0.3, scorer), ScoredPolicy)
    assert isinstance(ConfidenceThreshold(0.3), ScoredPolicy)


# -- outcomes and coverage ---------------------------------------------------------------


def test_outcomes_and_accuracy_at_coverage_by_hand() -> None:
    eye = np.eye(3, dtype=np.float32)
    labels = np.array([0, 1, 2, 0])
    # edge right, wrong, right, wrong; cloud right, right, wrong, wrong
    exit_logits = eye[[0, 0, 2, 1]]
    final_logits = eye[[0, 1, 0, 2]]
    outputs = ExitOutputs(exit_logits, final_logits, labels)
    assert outcomes(outputs).tolist() == [1, 2, 0, 1]  # tie, gain, loss, tie
    edge, cloud = outputs.edge_right, outputs.cloud_right
    # Keep the two highest scores (frames 0 and 2: both right locally); send 1 (cloud
    # right) and 3 (cloud wrong): 3 of 4.
    assert accuracy_at_coverage([0.9, 0.1, 0.8, 0.5], edge, cloud, 0.5) == 0.75
    assert accuracy_at_coverage([0.9, 0.1, 0.8, 0.5], edge, cloud, 1.0) == 0.5  # edge only
    assert accuracy_at_coverage([0.9, 0.1, 0.8, 0.5], edge, cloud, 0.0) == 0.5  # cloud only
    # The oracle sends the gain first and keeps the loss: 3 of 4 at 75% coverage.
    oracle = policy_scores(outputs)["oracle"]
    assert accuracy_at_coverage(oracle, edge, cloud, 0.75) == 0.75


def test_coverage_threshold_resolves_to_the_share_kept() -> None:
    scores = np.arange(10) / 10  # 0.0 .. 0.9
    threshold = coverage_threshold(scores, 0.7)
    assert threshold == pytest.approx(0.27)  # the 30% quantile, interpolated
    assert int(np.sum(scores >= threshold)) == 7
    # Through a router policy: the resolved threshold keeps exactly that share.
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    router = GainRouter(num_classes=10, hidden=8).eval()
    frames = [_output(list(row)) for row in rng.normal(0, 3, (200, 10))]
    scorer = router.scorer()
    keep = [scorer(f.logits) for f in frames]  # type: ignore[arg-type]
    for coverage in (0.9, 0.8, 0.7):
        policy = RouterPolicy(coverage_threshold(keep, coverage), scorer)
        local = sum(policy.route(f) is Route.LOCAL for f in frames)
        assert local == round(coverage * len(frames))
    with pytest.raises(ValueError, match="coverage"):
        coverage_threshold(scores, 1.5)


# -- training ----------------------------------------------------------------------------


def _synthetic(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sending gains when the exit predicts class 0, loses when it predicts 3, else ties."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 0.5, (count, 4)).astype(np.float32)
    logits[np.arange(count), rng.integers(0, 4, count)] += 4.0
    predicted = logits.argmax(axis=1)
    targets = np.ones(count, dtype=np.int64)
    targets[predicted == 0] = 2
    targets[predicted == 3] = 0
    return logits, targets


def test_router_learns_an_obvious_rule() -> None:
    logits, targets = _synthetic(3000, seed=0)
    router = fit_router(logits, targets, hidden=16, epochs=20, seed=0, lr=1e-2)
    test_logits, test_targets = _synthetic(1000, seed=1)
    with torch.inference_mode():
        keep = router.keep_score(torch.from_numpy(test_logits)).numpy()
    # Exact scores: 0 for a sure gain, 0.5 for a tie, 1 for a sure loss.
    assert np.mean(keep[test_targets == 2] < 0.2) > 0.97  # gains: send
    assert np.mean(keep[test_targets == 0] > 0.8) > 0.97  # losses: keep
    assert np.mean(np.abs(keep[test_targets == 1] - 0.5) < 0.15) > 0.97
    # So any coverage sends the gains first and the losses last.
    assert keep[test_targets == 2].mean() < keep[test_targets == 1].mean()
    assert keep[test_targets == 1].mean() < keep[test_targets == 0].mean()
    # Seeded: the same run gives the same weights.
    again = fit_router(logits, targets, hidden=16, epochs=20, seed=0, lr=1e-2)
    for key, value in router.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


# -- files -------------------------------------------------------------------------------


def _saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    router = GainRouter(num_classes=3, hidden=4)
    path = tmp_path / "toy.router.pt"
    manifest = save_router(router, dict(FIELDS), path=path)
    assert manifest.params == 3 * 2 * 4 + 4 + 4 * 3 + 3
    assert manifest.macs == 6 * 4 + 4 * 3
    return path


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    loaded, manifest = load_router(path)
    also, _ = load_router(path.with_suffix(".json"))
    logits = torch.randn(5, 3)
    with torch.inference_mode():
        assert torch.equal(loaded.keep_score(logits), also.keep_score(logits))
    data = json.loads(path.with_suffix(".json").read_text())
    assert data["sha256"] == manifest.sha256
    assert data["model"] == "toy"


def test_corrupt_missing_and_malformed_routers_fail_clearly(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[-40] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelError, match="sha256"):
        load_router(path)
    with pytest.raises(ModelError, match="no router manifest"):
        load_router(tmp_path / "absent.router.pt")
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        load_router(path)
    path.with_suffix(".json").write_text(json.dumps({"format": 1, "architecture": "gain_router"}))
    with pytest.raises(ModelError, match="missing or mangles"):
        load_router(path)
    path.with_suffix(".json").write_text(json.dumps({"format": 1, "architecture": "mlp"}))
    with pytest.raises(ModelError, match="architecture"):
        load_router(path)
    other = _saved(tmp_path / "weights-gone")
    other.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_router(other)


def test_router_policy_from_config_at_start(tmp_path: Path) -> None:
    missing = EdgeConfig(local_model=MODEL, policy="router", router=str(tmp_path / "x.pt"))
    with pytest.raises(ModelError, match="no router manifest"):
        policy_from_config(missing)
    foreign = _saved(tmp_path)  # reads "toy", not the local model
    with pytest.raises(ModelError, match="train-router"):
        policy_from_config(EdgeConfig(local_model=MODEL, policy="router", router=str(foreign)))
    with pytest.raises(ConfigError):
        make_policy("router", confidence_threshold=0.5)
    with pytest.raises(ConfigError, match=r"edge\.router"):
        EdgeConfig(local_model=MODEL, policy="router", router=" ")
    entropy = policy_from_config(EdgeConfig(local_model=MODEL, policy="entropy"))
    assert isinstance(entropy, EntropyThreshold)


@pytest.mark.skipif(
    not default_router_path(MODEL).is_file(),
    reason="no committed router in pipeline/models/shipped/",
)
def test_committed_router_scores_local_model_outputs() -> None:
    policy = policy_from_config(
        EdgeConfig(local_model=MODEL, policy="router", confidence_threshold=0.4)
    )
    assert isinstance(policy, RouterPolicy)
    router, manifest = load_router(default_router_path(MODEL))
    assert manifest.model == MODEL
    assert manifest.split == 1
    local = LocalModel(MODEL, split=1)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
    out = local.classify(image)
    assert out.logits is not None
    assert out.logits.shape == (10,)
    assert int(out.logits.argmax()) == out.label
    with torch.inference_mode():
        expected = float(router.keep_score(torch.from_numpy(out.logits[None]))[0])
    assert policy.keep_score(out) == pytest.approx(expected, abs=1e-6)
    assert policy.route(out) is (Route.LOCAL if expected >= 0.4 else Route.OFFLOAD)


@pytest.fixture(scope="module")
def harness_frames() -> tuple[object, list[LocalOutput]]:
    from camoffload.eval.frames import PreparedData
    from camoffload.eval.suite import DataSpec
    from pipeline.datasets import load_fashion_mnist

    test = load_fashion_mnist(split="test").head(50)
    spec = DataSpec(name="fmnist", source="fashion-mnist:test", cloud_model=MODEL)
    data = PreparedData(spec, tuple(test.images), tuple(int(y) for y in test.labels))
    local = LocalModel(MODEL, split=1)
    return data, [local.classify(image) for image in data.images]


@pytest.mark.skipif(
    not default_router_path(MODEL).is_file(),
    reason="no committed router in pipeline/models/shipped/",
)
def test_harness_coverage_uses_each_policys_own_score(
    harness_frames: tuple[object, list[LocalOutput]],
) -> None:
    """The eval harness turns ``coverage`` into a threshold on the policy's own scores."""
    from camoffload.eval.runner import LocalModels

    data, outputs = harness_frames
    models = LocalModels()
    for policy in ("threshold", "entropy", "router"):
        edge = EdgeConfig(local_model=MODEL, policy=policy)
        scores = asyncio.run(models.confidences(MODEL, 1, data, edge))  # type: ignore[arg-type]
        if policy == "threshold":
            assert scores.tolist() == pytest.approx([o.confidence for o in outputs])
        built = policy_from_config(edge)
        assert isinstance(built, ScoredPolicy)
        expected = [built.keep_score(o) for o in outputs]
        assert scores.tolist() == pytest.approx(expected, abs=1e-6)
        threshold = float(np.quantile(scores, 1.0 - 0.8))
        kept = make_policy(policy, confidence_threshold=threshold, local_model=MODEL, split=1)
        assert sum(kept.route(o) is Route.LOCAL for o in outputs) == 40
