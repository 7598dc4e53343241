"""Planning scores its candidates in chunks of `candidate_chunk_size` from one shared context cache, with the costs of
unchunked scoring; and the sampler's hot loop calls the world model without host-device syncs."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from argos_wm.pipelines.candidate_scoring import CandidateScorer
from test_pipeline import LATENT_SHAPE, FixedCandidatesProbe, make_inputs, make_pipeline, seeded

pytestmark = pytest.mark.usefixtures("single_thread")


def plan_costs(pipe, candidates, chunk_size, common_noise=True, use_cache=True, batch=2):
    inputs = make_inputs(batch=batch, context=3, horizon=3, seed=4)
    probe = FixedCandidatesProbe(candidates)
    pipe.plan(
        observation_latents=inputs["context_latents"], observation_states=inputs["context_states"],
        observation_actions=inputs["context_actions"], goal_latents=torch.zeros(batch, *LATENT_SHAPE),
        goal_states=torch.full((batch, 2), 256.0), horizon=3, planner=probe, num_inference_steps=2,
        common_noise=common_noise, generator=seeded(2), cost_steps="all", use_cache=use_cache,
        candidate_chunk_size=chunk_size, show_progress=False,
    )  # fmt: skip
    return probe.costs


@pytest.mark.parametrize("use_cache", [True, False])
def test_chunked_scoring_gives_the_costs_of_unchunked_scoring(use_cache):
    pipe = make_pipeline(temporal_context_length=4)  # the window slides during the candidates' rollouts
    candidates = torch.randn(2, 7, 3, 2, generator=seeded(1))
    whole = plan_costs(pipe, candidates, None, use_cache=use_cache)
    assert whole.shape == (2, 7) and whole.std() > 1e-4
    for chunk_size in (1, 3, 7, 100):  # single candidates, a ragged last chunk, exactly M, more than M
        chunked = plan_costs(pipe, candidates, chunk_size, use_cache=use_cache)
        torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_chunked_scoring_shares_the_context_cache(monkeypatch):
    """The context goes through the model once; each chunk expands a copy of its cache."""
    pipe = make_pipeline()
    calls = []
    original = CandidateScorer.score
    monkeypatch.setattr(CandidateScorer, "score", lambda self, c: calls.append(c.shape[1]) or original(self, c))
    frames_seen = []
    model_forward = type(pipe.world_model).forward

    def counting_forward(model, latents, *args, **kwargs):
        frames_seen.append(latents.shape[:2])
        return model_forward(model, latents, *args, **kwargs)

    monkeypatch.setattr(type(pipe.world_model), "forward", counting_forward)
    plan_costs(pipe, torch.randn(2, 5, 3, 2, generator=seeded(1)), 2)
    assert calls == [2, 2, 1]
    context_calls = [shape for shape in frames_seen if shape[1] == 3]  # the only multi-frame call: the context
    assert context_calls == [(2, 3)]
    assert all(shape[1] == 1 and shape[0] in (4, 2) for shape in frames_seen if shape[1] != 3)


@pytest.mark.parametrize("other_steps", [1, 8])
def test_rollouts_with_other_steps_between_chunks_change_no_cost(monkeypatch, other_steps):
    """The Space lets other visitors' steps run between a plan's candidate chunks on the shared scheduler: every chunk
    keeps the plan's own denoising steps (here K = 2)."""
    pipe = make_pipeline()
    candidates = torch.randn(2, 5, 3, 2, generator=seeded(1))
    alone = plan_costs(pipe, candidates, 2)
    original = CandidateScorer.score

    def score_after_another_rollout(self, chunk):
        pipe.rollout(**make_inputs(batch=1), num_inference_steps=other_steps, generator=seeded(9))
        return original(self, chunk)

    monkeypatch.setattr(CandidateScorer, "score", score_after_another_rollout)
    torch.testing.assert_close(plan_costs(pipe, candidates, 2), alone, rtol=0, atol=0)


def test_bad_candidate_chunk_size_is_rejected():
    with pytest.raises(ValueError, match="candidate_chunk_size"):
        plan_costs(make_pipeline(), torch.zeros(2, 3, 3, 2), 0)


class SyncDetector(TorchDispatchMode):
    """Records what makes the host wait for the device: the data-dependent aten ops (`nonzero`, boolean indexing), and
    reading values back (`.item()`, `bool()`, `.tolist()`; on CPU these read memory without dispatching, so the
    Tensor methods themselves are watched)."""

    SYNCING_OPS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::_unique2")
    READ_BACKS = ("item", "tolist", "__bool__")

    def __init__(self):
        super().__init__()
        self.syncs = []

    def __enter__(self):
        self.originals = {name: getattr(torch.Tensor, name) for name in self.READ_BACKS}
        for name, method in self.originals.items():
            setattr(torch.Tensor, name, self._watch(name, method))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, method in self.originals.items():
            setattr(torch.Tensor, name, method)
        return super().__exit__(*exc)

    def _watch(self, name, method):
        def watched(tensor, *args, **kwargs):
            self.syncs.append(name)
            return method(tensor, *args, **kwargs)

        return watched

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.SYNCING_OPS:
            self.syncs.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def test_world_model_forward_syncs_once_by_default_and_never_with_trusted_inputs():
    pipe = make_pipeline()
    model = pipe.world_model
    inputs = {
        "latents": torch.randn(2, 3, *LATENT_SHAPE),
        "signal_levels": torch.rand(2, 3),
        "step_sizes": torch.full((2, 3), 0.25),
        "actions": torch.randn(2, 3, 2),
        "action_mask": torch.tensor([[False, True, True]] * 2),
        "states": torch.randn(2, 3, 2),
    }
    with torch.no_grad():
        with SyncDetector() as checked:
            model(**inputs)
        with SyncDetector() as trusted, model.trusted_inputs():
            model(**inputs)
    assert checked.syncs == ["tolist"]  # the value checks: one stacked tensor read back at once
    assert trusted.syncs == []
    assert model._check_input_values  # restored after the block
    bad = {**inputs, "signal_levels": inputs["signal_levels"] + 2}
    with pytest.raises(ValueError, match="signal_levels"):
        model(**bad)


def test_rollout_syncs_do_not_grow_with_horizon_or_steps():
    """Inputs are checked (and the steps' signal levels read) once: the denoising steps and each frame's cache append
    never wait for the device, so a longer rollout or more steps add no syncs."""
    pipe = make_pipeline()
    counts = {}
    for horizon, steps in ((2, 1), (5, 4)):
        with SyncDetector() as detector:
            pipe.rollout(**make_inputs(horizon=horizon), num_inference_steps=steps, generator=seeded())
        counts[horizon, steps] = len(detector.syncs)
    assert counts[2, 1] == counts[5, 4], counts
